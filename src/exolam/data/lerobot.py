"""LeRobot datasets with pyarrow + PyAV only: write v3.0, read v3.0 and v2.1 (no `lerobot` package).

Layout written (LeRobotDataset v3.0; many episodes per parquet/mp4 file):

    meta/info.json        codebase_version "v3.0", robot_type, total_episodes, total_frames, total_tasks,
                          chunks_size, data_files_size_in_mb, video_files_size_in_mb, fps, splits
                          {"train": "0:N"}, data_path, video_path (the templates below) and features:
                          {key: {dtype, shape, names[, info | fps]}}; a video feature has shape
                          [H, W, C], names [height, width, channels] and an `info` block (video.height,
                          video.width, video.codec, video.pix_fmt, video.is_depth_map, video.fps,
                          video.channels, has_audio); every other feature records `fps`
    meta/tasks.parquet    task (the pandas index, as LeRobot writes it) and task_index
    meta/stats.json       {feature: {mean, std, min, max, count}}: per element of a numeric feature
                          (all frames); per channel, shape [C, 1, 1], in [0, 1] for a video (over up
                          to 16 evenly spaced frames of each episode)
    meta/episodes/chunk-000/file-000.parquet   one row per episode: episode_index, tasks, length,
                          data/chunk_index, data/file_index, dataset_from_index, dataset_to_index,
                          videos/<key>/{chunk_index, file_index, from_timestamp, to_timestamp},
                          meta/episodes/{chunk_index, file_index}
    data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet      one row per frame: every non-video
                          feature, timestamp (float32, t / fps), frame_index, episode_index, index
                          (global frame number) and task_index
    videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4     frames of consecutive
                          episodes; episode e is shown from from_timestamp to to_timestamp

A new data (video) file starts once the current one reaches data_files_size_in_mb
(video_files_size_in_mb); file_index wraps into the next chunk after chunks_size files. Numeric
features of shape (1,) are scalar columns, other shapes (fixed-size) list columns, nested for more
than one dim; the reader restores [T, *shape] from info.json. `action` is optional (action-free video).
The writer is `data/lerobot_write.py` (`write_dataset`); both keep `data/layout.py`; video I/O is `data/video.py`.

v2.1 layout read: `meta/episodes.jsonl` (episode_index, tasks, length), `meta/tasks.jsonl`, one parquet
per episode at `data_path` = data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet and one
mp4 per episode and camera at `video_path` =
videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4, episode_chunk =
episode_index // chunks_size (v2.0 is read the same way).

Reading: episodes must be numbered 0..N-1; an episode's tasks come from its metadata row (`tasks`), so
tasks.parquet / tasks.jsonl are not needed; frame t of an episode is the frame shown at
from_timestamp + t / fps in its mp4 (index round(time * fps), as LeRobot's torchcodec path does); a
to_timestamp one frame short (some writers) is read with one `note` line, anything else refused. Video
features whose `names` start with "channel(s)" (a few ported v2.0 datasets) have shape [C, H, W].

Field names were checked against huggingface/lerobot (sources: data/layout.py).

Bad input raises ConfigError with one line naming the file (and the episode): checked when the
dataset is opened (info.json, episode metadata, which files exist, v3 parquet columns and mp4 headers),
when an episode is first read (its rows, NaN/inf, v2.1 columns, its video's header and frame count) and
by `validate(deep=True)` (every frame decoded). A reader opens everything read-only and writes nothing.
"""

from __future__ import annotations

import collections
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from exolam.data import video
from exolam.data.columns import column_numpy, np_dtype, parquet_schema
from exolam.data.layout import LEGACY, VERSION
from exolam.errors import ConfigError, note
from exolam.runs.files import read_json

__all__ = ["LeRobotDataset", "open_dataset"]


@dataclass
class _Episode:
    index: int
    length: int
    tasks: list
    data: Path  # its parquet file
    videos: dict = field(default_factory=dict)  # key -> (mp4 path, index of its first frame in that file)


def open_dataset(root, *, decode_threads: int = 1) -> "LeRobotDataset":
    """Open a LeRobot v3.0 or v2.1 dataset folder read-only (cheap checks only; see the module doc)."""
    return LeRobotDataset(root, decode_threads=decode_threads)


class LeRobotDataset:
    """A LeRobot dataset on disk: numeric columns and decoded video frames of one episode at a time.

    Episodes are numbered 0..N-1 (their episode_index). Caches (parquet tables, episode columns,
    open videos) live per process and are not pickled, so DataLoader workers build their own.
    """

    def __init__(self, root, *, decode_threads: int = 1):
        self.root = Path(root)
        self.decode_threads = decode_threads
        self._info_path = self.root / "meta" / "info.json"
        if not self.root.is_dir():
            raise ConfigError(f"{self.root}: is not a folder (a LeRobot dataset root holds meta/, data/, videos/)")
        info = read_json(self._info_path, "is this a LeRobot dataset folder?")
        self.info, self.version = info, info.get("codebase_version")
        if self.version != VERSION and self.version not in LEGACY:
            raise ConfigError(f"{self._info_path}: codebase_version = {self.version!r} is not one this reader "
                              f"knows ({', '.join((*LEGACY, VERSION))})")
        for k in ("fps", "features", "data_path") + (("chunks_size",) if self.version in LEGACY else ()):
            if k not in info:
                raise ConfigError(f"{self._info_path}: key '{k}' is missing")
        fps = info["fps"]
        if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
            raise ConfigError(f"{self._info_path}: fps = {fps!r} must be a positive number")
        self.fps = fps
        self.features = self._check_features(info["features"])
        self.video_keys = [k for k, ft in self.features.items() if ft["dtype"] == "video"]
        self.numeric_keys = [k for k, ft in self.features.items() if np_dtype(ft) is not None]
        if self.video_keys and not isinstance(info.get("video_path"), str):
            raise ConfigError(f"{self._info_path}: video_path is missing (features {self.video_keys} are videos)")
        self._episodes = self._open_v3() if self.version == VERSION else self._open_legacy()
        self.episode_lengths = [e.length for e in self._episodes]
        self.num_frames = sum(self.episode_lengths)
        total = info.get("total_frames")
        if isinstance(total, int) and total != self.num_frames:
            raise ConfigError(f"{self._info_path}: total_frames = {total}, the episodes' lengths sum to "
                              f"{self.num_frames}")
        self._reset_caches()
        self._check_data_files()
        if self.version == VERSION:  # few, large mp4 files: probe their headers now
            for ep in self._episodes:
                for key in self.video_keys:
                    self._video(key, ep)

    # -- opening

    def _check_features(self, feats) -> dict:
        """info.json's features, checked; fills `video_shapes` ({key: (H, W, C)})."""
        if not isinstance(feats, dict) or not feats:
            raise ConfigError(f"{self._info_path}: features must be a non-empty object")
        self.video_shapes = {}
        for key, ft in feats.items():
            where = f"{self._info_path}: features['{key}']"
            ok = isinstance(ft, dict) and isinstance(ft.get("dtype"), str) and isinstance(ft.get("shape"), list)
            if not ok or not all(isinstance(d, int) and d > 0 for d in ft["shape"]):
                raise ConfigError(f"{where} needs a dtype (str) and a shape (list of positive ints)")
            if ft["dtype"] != "video":
                continue
            shape, names = list(ft["shape"]), ft.get("names") or ["height", "width", "channels"]
            if len(shape) != 3:
                raise ConfigError(f"{where}: a video has a 3-dim shape, got {shape}")
            if names[0] in ("channel", "channels"):  # a few ported v2.0 datasets store [C, H, W]
                shape = shape[1:] + shape[:1]
            self.video_shapes[key] = tuple(shape)
            codec = (ft.get("info") or ft.get("video_info") or {}).get("video.codec")
            if codec is not None and not video.decodable(str(codec)):
                raise ConfigError(f"{where}: video.codec '{codec}' cannot be decoded by this PyAV/FFmpeg build")
        return feats

    def _open_v3(self) -> list[_Episode]:
        folder = self.root / "meta" / "episodes"
        files = sorted(folder.glob("chunk-*/file-*.parquet"))
        if not files:
            raise ConfigError(f"{folder}: holds no chunk-*/file-*.parquet (the episode metadata)")
        need = ["episode_index", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                "dataset_to_index"]
        need += [f"videos/{k}/{c}" for k in self.video_keys for c in ("chunk_index", "file_index", "from_timestamp",
                                                                      "to_timestamp")]
        rows = []
        for f in files:
            names = parquet_schema(f).names
            for c in need:
                if c not in names:
                    raise ConfigError(f"{f}: column '{c}' is missing")
            cols = pq.read_table(f, columns=need + (["tasks"] if "tasks" in names else [])).to_pydict()
            rows += [(f, {k: v[r] for k, v in cols.items()}) for r in range(len(cols["episode_index"]))]
        rows.sort(key=lambda fr: fr[1]["episode_index"])
        episodes, short = [], set()
        for i, (f, r) in enumerate(rows):
            if r["episode_index"] != i:
                raise ConfigError(f"{f}: episode_index {r['episode_index']} found where {i} was expected "
                                  "(episodes must be numbered 0..N-1)")
            n = r["length"]
            if not isinstance(n, int) or n < 1 or r["dataset_to_index"] - r["dataset_from_index"] != n:
                raise ConfigError(f"{f}: episode {i}: length {n} disagrees with dataset_from_index "
                                  f"{r['dataset_from_index']} .. dataset_to_index {r['dataset_to_index']}")
            data = self._path("data_path", f, i, chunk_index=r["data/chunk_index"], file_index=r["data/file_index"])
            ep = _Episode(i, n, list(r.get("tasks") or []), data)
            for key in self.video_keys:
                t0, t1 = r[f"videos/{key}/from_timestamp"], r[f"videos/{key}/to_timestamp"]
                spans = round((t1 - t0) * self.fps)
                if spans == n - 1 > 0:  # to_timestamp = the last frame's own time (some writers)
                    short.add(i)
                elif spans != n:
                    raise ConfigError(f"{f}: episode {i}: {key} spans {t1 - t0:.4f} s = {(t1 - t0) * self.fps:.2f} "
                                      f"frames at {self.fps} fps, but its length is {n} frames")
                path = self._path("video_path", f, i, video_key=key, chunk_index=r[f"videos/{key}/chunk_index"],
                                  file_index=r[f"videos/{key}/file_index"])
                ep.videos[key] = (path, round(t0 * self.fps))
            episodes.append(ep)
        if short:
            note(self.root, f"to_timestamp of {len(short)} of {len(episodes)} episodes is the time of their last frame, "
                            "not one frame past it; frames are read from from_timestamp, as LeRobot's reader does")
        return episodes

    def _open_legacy(self) -> list[_Episode]:
        path = self.root / "meta" / "episodes.jsonl"
        try:
            lines = path.read_text().splitlines()
        except FileNotFoundError:
            raise ConfigError(f"{path}: missing (a v2.1 dataset lists its episodes there)") from None
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{path}: cannot be read ({e})") from None
        rows = []
        for n, line in enumerate(lines, 1):
            if line.strip():
                try:
                    r = json.loads(line)
                    rows.append((int(r["episode_index"]), int(r["length"]), list(r.get("tasks") or [])))
                except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                    raise ConfigError(f"{path}: line {n} is not a JSON object with episode_index and length") from None
        if not rows:
            raise ConfigError(f"{path}: lists no episode")
        rows.sort()
        chunks = self.info["chunks_size"]
        if not isinstance(chunks, int) or chunks < 1:
            raise ConfigError(f"{self._info_path}: chunks_size = {chunks!r} must be a positive integer")
        episodes = []
        for i, (index, n, tasks) in enumerate(rows):
            if index != i or n < 1:
                raise ConfigError(f"{path}: episode {index} (length {n}) is out of place: episodes must be numbered "
                                  "0..N-1 and hold at least one frame")
            data = self._path("data_path", path, i, episode_chunk=i // chunks, episode_index=i)
            ep = _Episode(i, n, tasks, data)
            for key in self.video_keys:
                mp4 = self._path("video_path", path, i, episode_chunk=i // chunks, video_key=key, episode_index=i)
                if not mp4.is_file():
                    raise ConfigError(f"{mp4}: missing (video '{key}' of episode {i})")
                ep.videos[key] = (mp4, 0)
            episodes.append(ep)
        return episodes

    def _path(self, template: str, source: Path, episode: int, **fields) -> Path:
        try:
            return self.root / self.info[template].format(**fields)
        except (KeyError, IndexError, ValueError, TypeError) as e:
            raise ConfigError(f"{self._info_path}: {template} = {self.info[template]!r} cannot be filled for "
                              f"episode {episode} from {source} ({e!r})") from None

    def _check_data_files(self) -> None:
        """Every data file exists; v3 files (few) also have every numeric column (v2.1's: when first read)."""
        first = {}
        for ep in self._episodes:
            first.setdefault(ep.data, ep)
        for path, ep in first.items():
            if not path.is_file():
                raise ConfigError(f"{path}: missing (the data of episode {ep.index})")
            if self.version == VERSION:
                self._table(ep)

    # -- reading

    def _episode(self, episode: int) -> _Episode:
        if isinstance(episode, bool) or not isinstance(episode, (int, np.integer)) \
                or not 0 <= episode < len(self._episodes):
            raise IndexError(f"episode {episode!r} is out of range 0..{len(self._episodes) - 1}")
        return self._episodes[int(episode)]

    def _table(self, ep: _Episode) -> tuple[pa.Table, dict]:
        """The numeric columns of the parquet file holding `ep`, and {episode: (first row, rows) or None}."""
        cached = self._tables.pop(ep.data, None)
        if cached is None:
            names = parquet_schema(ep.data).names
            for key in self.numeric_keys + (["episode_index"] if self.version == VERSION else []):
                if key not in names:
                    raise ConfigError(f"{ep.data}: column '{key}' (a feature in meta/info.json) is missing "
                                      f"(episode {ep.index})")
            cols = [c for c in dict.fromkeys(self.numeric_keys + ["episode_index", "frame_index"]) if c in names]
            try:
                table = pq.read_table(ep.data, columns=cols, memory_map=True)
            except (OSError, pa.ArrowException) as e:
                raise ConfigError(f"{ep.data}: cannot be read as parquet ({e}) (episode {ep.index})") from None
            runs = {}  # v3 files hold several episodes, each in one run of rows (None: split in pieces)
            if self.version == VERSION:
                e = table.column("episode_index").to_numpy()
                cuts = np.flatnonzero(np.diff(e)) + 1
                for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(e)]):
                    runs[int(e[a])] = None if int(e[a]) in runs else (int(a), int(b - a))
            cached = (table, runs)
        self._tables[ep.data] = cached
        while len(self._tables) > 4:
            self._tables.popitem(last=False)
        return cached

    def _rows(self, ep: _Episode) -> pa.Table:
        """The parquet rows of one episode, checked against its length and frame_index."""
        table, runs = self._table(ep)
        if self.version == VERSION:
            if ep.index in runs and runs[ep.index] is None:
                raise ConfigError(f"{ep.data}: the rows of episode {ep.index} are not contiguous")
            table = table.slice(*runs.get(ep.index, (0, 0)))
        if table.num_rows != ep.length:
            raise ConfigError(f"{ep.data}: episode {ep.index} has {table.num_rows} rows, its length in the "
                              f"episode metadata is {ep.length}")
        if "frame_index" in table.column_names and not np.array_equal(table.column("frame_index").to_numpy(),
                                                                       np.arange(ep.length)):
            raise ConfigError(f"{ep.data}: episode {ep.index}: frame_index is not 0..{ep.length - 1} in order")
        return table

    def column(self, key: str, episode: int) -> np.ndarray:
        """A numeric feature of one episode, [T, *shape] in its info.json dtype (NaN/inf refused)."""
        if key not in self.features or key in self.video_keys or key not in self.numeric_keys:
            raise ConfigError(f"{self._info_path}: '{key}' is not a numeric feature of this dataset "
                              f"(numeric: {self.numeric_keys})")
        ep = self._episode(episode)
        cached = self._columns.pop((key, ep.index), None)
        if cached is None:
            ft = self.features[key]
            cached = column_numpy(self._rows(ep).column(key), ft["shape"], np_dtype(ft), f"{ep.data}: episode "
                            f"{ep.index}: '{key}'")
            if cached.dtype.kind == "f":
                bad = np.flatnonzero(~np.isfinite(cached.reshape(ep.length, -1)).all(1))
                if len(bad):
                    raise ConfigError(f"{ep.data}: episode {ep.index} frame {bad[0]}: '{key}' holds NaN or inf "
                                      f"({len(bad)} frame(s) do)")
            cached.setflags(write=False)
        self._columns[(key, ep.index)] = cached
        while len(self._columns) > 512:
            self._columns.popitem(last=False)
        return cached

    def _video(self, key: str, ep: _Episode) -> video.VideoReader:
        """The open reader of one episode's video, its header checked against the metadata."""
        path, first = ep.videos[key]
        try:
            reader = video.open_reader(path, self.fps, self.decode_threads)
        except ConfigError as e:
            raise ConfigError(f"{e} (video '{key}' of episode {ep.index})") from None
        if (path, ep.index) not in self._checked:
            h, w, _ = self.video_shapes[key]
            if (reader.height, reader.width) != (h, w):
                raise ConfigError(f"{path}: frames are {reader.height}x{reader.width}, meta/info.json says {h}x{w} "
                                  f"for '{key}' (episode {ep.index})")
            end, n = first + ep.length, reader.num_frames
            if n and (n < end if self.version == VERSION else n != end):
                raise ConfigError(f"{path}: holds {n} frames, episode {ep.index} needs frames {first}..{end - 1} "
                                  "(its length and timestamps in the episode metadata)")
            self._checked.add((path, ep.index))
        return reader

    def frames_at(self, key: str, episode: int, indices) -> np.ndarray:
        """Decoded frames t in `indices` of one episode: uint8 [n, H, W, C]."""
        if key not in self.video_keys:
            raise ConfigError(f"{self._info_path}: '{key}' is not a video feature (videos: {self.video_keys})")
        ep = self._episode(episode)
        idx = [int(t) for t in indices]
        for t in idx:
            if not 0 <= t < ep.length:
                raise IndexError(f"frame {t} is out of range 0..{ep.length - 1} of episode {ep.index}")
        reader, first = self._video(key, ep), ep.videos[key][1]
        try:
            imgs = reader.read([first + t for t in idx], gray=self.video_shapes[key][2] == 1)
        except ConfigError as e:
            raise ConfigError(f"{e} (video '{key}' of episode {ep.index}, length {ep.length})") from None
        h, w, c = self.video_shapes[key]
        return np.stack(imgs) if imgs else np.zeros((0, h, w, c), np.uint8)

    def frames(self, key: str, episode: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Decoded frames start..stop-1 of one episode: uint8 [n, H, W, C]."""
        stop = self._episode(episode).length if stop is None else stop
        return self.frames_at(key, episode, range(start, stop))

    def validate(self, deep: bool = False) -> None:
        """Run every per-episode check now (rows, NaN/inf, video headers); `deep` also decodes every frame."""
        for ep in self._episodes:
            for key in self.numeric_keys:
                self.column(key, ep.index)
            for key in self.video_keys:
                self._video(key, ep)
                if deep:
                    for t in range(0, ep.length, 64):
                        self.frames(key, ep.index, t, min(t + 64, ep.length))

    @property
    def episode_tasks(self) -> list[list[str]]:
        """The task strings of each episode."""
        return [e.tasks for e in self._episodes]

    def _reset_caches(self) -> None:
        self._tables, self._columns, self._checked = collections.OrderedDict(), collections.OrderedDict(), set()

    def __getstate__(self):
        state = dict(self.__dict__)
        for k in ("_tables", "_columns", "_checked"):
            state.pop(k)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._reset_caches()

    def __repr__(self) -> str:
        return (f"LeRobotDataset({str(self.root)!r}, {self.version}, {len(self._episodes)} episodes, "
                f"{self.num_frames} frames, fps {self.fps}, videos {self.video_keys})")

