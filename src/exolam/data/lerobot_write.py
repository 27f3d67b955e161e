"""Write LeRobot v3.0 datasets with pyarrow + PyAV (the layout is described in `data/lerobot.py`).

`write_dataset` streams episodes into the data/ parquet and videos/ mp4 files (only metadata and
running statistics stay in memory), then writes meta/: episodes parquet, tasks.parquet, stats.json,
info.json. The whole folder is built under a temporary sibling name and renamed at the end.

Names and values checked against huggingface/lerobot `src/lerobot/datasets/utils.py`
(`DEFAULT_DATA_PATH`, `DEFAULT_VIDEO_PATH`, `DEFAULT_EPISODES_PATH`, `DEFAULT_FEATURES`,
`create_empty_dataset_info`, scalar Value vs Sequence columns in `get_hf_features_from_features`),
`src/lerobot/datasets/v30/convert_dataset_v21_to_v30.py` (episode-metadata columns, `fps` on non-video
features, `tasks.parquet` as a DataFrame of task_index indexed by the task string) and
`src/lerobot/datasets/video_utils.py` (`get_video_info` keys of a video feature's `info` block).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exolam.data import video
from exolam.data.layout import (DATA_PATH, DEFAULT_FEATURES, EPISODES_PATH, NUMERIC, VERSION, VIDEO_PATH)
from exolam.errors import ConfigError, check_positive_int

STATS_FRAMES = 16  # video frames per episode that enter meta/stats.json


def write_dataset(root, episodes, features: dict, fps: int, *, codec: str = "av1", robot_type: str | None = None,
                  chunks_size: int = 1000, data_files_size_in_mb: float = 100, video_files_size_in_mb: float = 200,
                  overwrite: bool = False) -> Path:
    """Write `episodes` as a LeRobot v3.0 dataset at `root`, atomically; returns `root`.

    `features`: {key: {"dtype": "video" | "float32" | "float64" | "int32" | "int64" | "bool",
    "shape": [...], "names": optional}}; a video is uint8 [H, W, C], C = 1 or 3, H and W even.
    `episodes`: an iterable of {key: array [T, *shape]} (shape (1,) may be given as [T]) with an
    optional "task" str ('' when absent). Everything is written into a temporary sibling folder that
    is renamed to `root` at the end: a failure leaves neither. An existing `root` is refused unless
    `overwrite`.
    """
    root = Path(root)
    if codec not in video.CODECS:
        raise ConfigError(f"codec = {codec!r} must be one of {sorted(video.CODECS)}")
    check_positive_int("fps", fps)
    check_positive_int("chunks_size", chunks_size)
    for name, mb in (("data_files_size_in_mb", data_files_size_in_mb), ("video_files_size_in_mb",
                                                                         video_files_size_in_mb)):
        if isinstance(mb, bool) or not isinstance(mb, (int, float)) or not mb > 0:
            raise ConfigError(f"{name} = {mb!r} must be a positive number")
    feats = _check_features(features, fps, codec)
    if root.exists() and not overwrite:
        raise ConfigError(f"{root}: already exists; choose another folder or pass overwrite=True")
    tmp, writer = root.with_name(f".{root.name}.tmp{os.getpid()}"), None
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        writer = _Writer(tmp, feats, fps, codec, chunks_size, data_files_size_in_mb, video_files_size_in_mb)
        for i, episode in enumerate(episodes):
            writer.add(i, episode)
        writer.finish(robot_type)
        if root.exists():
            old = root.with_name(f".{root.name}.old{os.getpid()}")
            os.replace(root, old)
            os.replace(tmp, root)
            shutil.rmtree(old)
        else:
            os.replace(tmp, root)
    except BaseException as e:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ConfigError(f"{root}: cannot write the dataset ({e.strerror or e})") from None
        raise
    return root


def _check_features(features, fps: int, codec: str) -> dict:
    """The info.json `features` of a new dataset (user features first, then LeRobot's defaults)."""
    if not isinstance(features, dict) or not features:
        raise ConfigError("features must be a non-empty dict {key: {'dtype': ..., 'shape': [...]}}")
    out = {}
    for key, ft in features.items():
        where = f"features[{key!r}]"
        if not isinstance(key, str) or not key or "/" in key or key in DEFAULT_FEATURES or key == "task":
            raise ConfigError(f"{where}: the key must be a non-empty str without '/', not one of "
                              f"{sorted(DEFAULT_FEATURES)} or 'task'")
        if not isinstance(ft, dict) or "dtype" not in ft or "shape" not in ft:
            raise ConfigError(f"{where} must be a dict with 'dtype' and 'shape'")
        shape, extra = ft["shape"], ft.get("info") or {}  # info: what the writer of the data knows of it
        if not isinstance(extra, dict):
            raise ConfigError(f"{where}: info must be a dict")
        if (not isinstance(shape, (list, tuple)) or not shape
                or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape)):
            raise ConfigError(f"{where}: shape = {shape!r} must be a non-empty list of positive ints")
        if ft["dtype"] == "video":
            if len(shape) != 3 or shape[2] not in (1, 3) or shape[0] % 2 or shape[1] % 2:
                raise ConfigError(f"{where}: a video has shape [H, W, C] with C = 1 or 3 and even H and W "
                                  f"(yuv420p); got {list(shape)} (pad or crop the frames)")
            (h, w, c), (name, pix_fmt) = shape, video.stored_as(codec)
            out[key] = {"dtype": "video", "shape": [h, w, c], "names": ["height", "width", "channels"],
                        "info": {"video.height": h, "video.width": w, "video.codec": name,
                                 "video.pix_fmt": pix_fmt, "video.is_depth_map": False, "video.fps": fps,
                                 "video.channels": c, "has_audio": False, **extra}}
        elif ft["dtype"] in NUMERIC:
            out[key] = {"dtype": ft["dtype"], "shape": list(shape), "names": ft.get("names"), "fps": fps,
                        **({"info": extra} if extra else {})}
        else:
            raise ConfigError(f"{where}: dtype = {ft['dtype']!r} must be 'video' or one of {list(NUMERIC)}")
    return {**out, **{k: {**v, "fps": fps} for k, v in DEFAULT_FEATURES.items()}}


class _Writer:
    """Streams episodes into data/ and videos/ files, keeping only the metadata in memory."""

    def __init__(self, tmp: Path, feats: dict, fps: int, codec: str, chunks_size: int, data_mb, video_mb):
        self.tmp, self.feats, self.fps, self.codec, self.chunks_size = tmp, feats, fps, codec, chunks_size
        self.user = [k for k in feats if k not in DEFAULT_FEATURES]
        self.video_keys = [k for k in self.user if feats[k]["dtype"] == "video"]
        self.data_limit, self.video_limit = data_mb * 2**20, video_mb * 2**20
        self.data_at, self.pending, self.pending_bytes = (0, 0), [], 0  # (chunk, file) of the data file being filled
        self.video_at = {k: (0, 0) for k in self.video_keys}
        self.videos = dict.fromkeys(self.video_keys)  # key -> open VideoFileWriter
        self.rows, self.tasks, self.total = [], {}, 0
        self.stats = {k: RunningStats() for k in feats}

    def add(self, i: int, episode) -> None:
        arrays, n = _episode_arrays(i, episode, {k: self.feats[k] for k in self.user})
        task = episode.get("task", "")
        if not isinstance(task, str):
            raise ConfigError(f"episode {i}: task = {task!r} must be a str")
        t_index = self.tasks.setdefault(task, len(self.tasks))
        arrays.update(timestamp=(np.arange(n) / self.fps).astype(np.float32), frame_index=np.arange(n),
                      episode_index=np.full(n, i), index=self.total + np.arange(n), task_index=np.full(n, t_index))
        cols = {k: arrow_column(arrays[k], self.feats[k]["shape"]) for k in self.feats if k not in self.video_keys}
        for k in cols:
            self.stats[k].add(arrays[k].astype(np.float64).reshape(n, *self.feats[k]["shape"]))
        self.pending.append(pa.table(cols))
        self.pending_bytes += self.pending[-1].nbytes
        row = {"episode_index": i, "tasks": [task], "length": n, "data/chunk_index": self.data_at[0],
               "data/file_index": self.data_at[1], "dataset_from_index": self.total, "dataset_to_index": self.total + n}
        if self.pending_bytes >= self.data_limit:
            self._flush_data()
        for key in self.video_keys:
            frames, (h, w, c) = arrays[key], self.feats[key]["shape"]
            chunk, file = self.video_at[key]
            if self.videos[key] is None:
                path = self.tmp / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
                self.videos[key] = video.VideoFileWriter(path, self.codec, self.fps, h, w, c)
            vw = self.videos[key]
            start = vw.frames
            vw.write(frames)
            row.update({f"videos/{key}/chunk_index": chunk, f"videos/{key}/file_index": file,
                        f"videos/{key}/from_timestamp": start / self.fps,
                        f"videos/{key}/to_timestamp": vw.frames / self.fps})
            sample = frames[:: max(1, n // STATS_FRAMES)]
            self.stats[key].add(sample.reshape(-1, c).astype(np.float64) / 255.0)
            if vw.bytes >= self.video_limit:
                vw.close()
                self.videos[key], self.video_at[key] = None, self._next(chunk, file)
        self.rows.append(row)
        self.total += n

    def _next(self, chunk: int, file: int) -> tuple[int, int]:
        return (chunk + 1, 0) if file + 1 >= self.chunks_size else (chunk, file + 1)

    def _flush_data(self) -> None:
        if self.pending:
            path = self.tmp / DATA_PATH.format(chunk_index=self.data_at[0], file_index=self.data_at[1])
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.concat_tables(self.pending), path)
            self.pending, self.pending_bytes, self.data_at = [], 0, self._next(*self.data_at)

    def abort(self) -> None:
        """Close the open mp4 files (the caller removes the folder)."""
        for vw in self.videos.values():
            if vw is not None:
                vw.abort()

    def finish(self, robot_type) -> None:
        if not self.rows:
            raise ConfigError("episodes: no episode given (a dataset needs at least one)")
        self._flush_data()
        for key, vw in self.videos.items():
            if vw is not None:
                vw.close()
        meta = self.tmp / "meta"
        cols = {k: [r[k] for r in self.rows] for k in self.rows[0]}
        cols.update({f"meta/episodes/{c}": [0] * len(self.rows) for c in ("chunk_index", "file_index")})
        path = self.tmp / EPISODES_PATH.format(chunk_index=0, file_index=0)
        path.parent.mkdir(parents=True)
        pq.write_table(pa.table({k: pa.array(v, pa.list_(pa.string()) if k == "tasks" else None)
                                 for k, v in cols.items()}), path)
        pq.write_table(_tasks_table(list(self.tasks)), meta / "tasks.parquet")
        stats = {k: s.result(self.feats[k]) for k, s in self.stats.items() if s.n}
        (meta / "stats.json").write_text(json.dumps(stats, indent=4) + "\n")
        n = len(self.rows)
        info = {"codebase_version": VERSION, "robot_type": robot_type, "total_episodes": n,
                "total_frames": self.total, "total_tasks": len(self.tasks), "chunks_size": self.chunks_size,
                "data_files_size_in_mb": self.data_limit / 2**20, "video_files_size_in_mb": self.video_limit / 2**20,
                "fps": self.fps, "splits": {"train": f"0:{n}"}, "data_path": DATA_PATH,
                "video_path": VIDEO_PATH if self.video_keys else None, "features": self.feats}
        for k in ("data_files_size_in_mb", "video_files_size_in_mb"):
            info[k] = int(info[k]) if float(info[k]).is_integer() else info[k]
        (meta / "info.json").write_text(json.dumps(info, indent=4) + "\n")


def _episode_arrays(i: int, episode, feats: dict) -> tuple[dict, int]:
    """The episode's arrays, checked against `feats` and cast to their dtypes; and its length T."""
    if not isinstance(episode, dict):
        raise ConfigError(f"episode {i}: must be a dict {{feature key: array}}, got {type(episode).__name__}")
    unknown = sorted(set(episode) - set(feats) - {"task"})
    if unknown:
        raise ConfigError(f"episode {i}: key(s) {unknown} are not in features {sorted(feats)}")
    out, n = {}, None
    for key, ft in feats.items():
        if key not in episode:
            raise ConfigError(f"episode {i}: feature '{key}' is missing")
        x, shape = np.asarray(episode[key]), tuple(ft["shape"])
        if ft["dtype"] == "video":
            if x.dtype != np.uint8:
                raise ConfigError(f"episode {i}: '{key}' has dtype {x.dtype}, a video must be uint8 [T, H, W, C]")
        else:
            if shape == (1,) and x.ndim == 1:
                x = x[:, None]
            kind = np.dtype(ft["dtype"]).kind
            if not np.can_cast(x.dtype, ft["dtype"], "same_kind") and not (kind == "f" and x.dtype.kind in "iub"):
                raise ConfigError(f"episode {i}: '{key}' has dtype {x.dtype}, which does not cast to {ft['dtype']}")
            x = x.astype(ft["dtype"], copy=False)
            if kind == "f" and x.ndim > 1:
                bad = np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))
                if len(bad):
                    raise ConfigError(f"episode {i} frame {bad[0]}: '{key}' holds NaN or inf")
        if x.ndim != len(shape) + 1 or x.shape[1:] != shape:
            raise ConfigError(f"episode {i}: '{key}' has shape {tuple(x.shape)}, features say (T, "
                              f"{', '.join(map(str, shape))})")
        if n is not None and len(x) != n:
            raise ConfigError(f"episode {i}: '{key}' has {len(x)} frames, other features {n}")
        out[key], n = x, len(x)
    if not n:
        raise ConfigError(f"episode {i}: has no frames")
    return out, n


def arrow_column(x: np.ndarray, shape) -> pa.Array:
    """[T, *shape] -> a scalar column for shape (1,), else (nested) fixed-size lists."""
    if list(shape) == [1]:
        return pa.array(x.reshape(len(x)))
    arr = pa.array(x.reshape(-1))
    for d in reversed(shape):
        arr = pa.FixedSizeListArray.from_arrays(arr, d)
    return arr


def _tasks_table(tasks: list[str]) -> pa.Table:
    """meta/tasks.parquet: task_index with the task strings as the pandas index (what LeRobot reads)."""
    pandas = {"index_columns": ["task"], "column_indexes": [], "creator": {"library": "pyarrow",
                                                                          "version": pa.__version__},
              "columns": [{"name": "task_index", "field_name": "task_index", "pandas_type": "int64",
                           "numpy_type": "int64", "metadata": None},
                          {"name": "task", "field_name": "task", "pandas_type": "unicode",
                           "numpy_type": "object", "metadata": None}]}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({b"pandas": json.dumps(pandas).encode()})


class RunningStats:
    """Running count, sum, sum of squares, min and max over the first axis (float64)."""

    def __init__(self):
        self.n, self.s, self.sq, self.lo, self.hi = 0, 0.0, 0.0, np.inf, -np.inf

    def add(self, x: np.ndarray) -> None:
        self.n += len(x)
        self.s, self.sq = self.s + x.sum(0), self.sq + np.square(x).sum(0)
        self.lo, self.hi = np.minimum(self.lo, x.min(0)), np.maximum(self.hi, x.max(0))

    def result(self, ft: dict) -> dict:
        mean = self.s / self.n
        std = np.sqrt(np.maximum(self.sq / self.n - mean**2, 0.0))
        shape = [ft["shape"][2], 1, 1] if ft["dtype"] == "video" else ft["shape"]
        out = {k: np.reshape(v, shape).tolist() for k, v in (("mean", mean), ("std", std), ("min", self.lo),
                                                                ("max", self.hi))}
        return {**out, "count": [self.n]}
