"""The readers behind `exolam import` (data/importers.py): mp4 folders, LAPO-style npz chunks, LeRobot v2.1.

Each source exposes `features`, `fps`, `robot_type`, `inputs` (the files it reads, for the resume
spec), `len()` and `episode(i) -> {feature key: array, "task": str}`, checked by `check_episode`.
"""

from __future__ import annotations

import dataclasses
import zipfile
from pathlib import Path

import numpy as np

from exolam.data.importers_base import (NPZ_KEYS, VIDEO_EXT, ImportOptions, check_episode, fingerprint, image_layout,
                                        int_sorted, numeric_feature, prepare_frames, video_feature)
from exolam.errors import ConfigError


class Mp4Source:
    """A folder of video files (VIDEO_EXT, any case; sorted by name), one episode each, decoded by PyAV
    to RGB -> `camera` (video); no action. fps: `fps`, else the files' average rate (rounded; they must
    agree). Without `fps` every decoded frame is kept in order; with it the video is resampled: output
    frame k is the last decoded frame shown at or before k / fps."""

    def __init__(self, src: Path, opts: ImportOptions):
        import av

        if not src.is_dir():
            raise ConfigError(f"{src}: is not a folder (mp4 imports a folder of video files)")
        self.files = sorted(p for p in src.iterdir() if p.suffix.lower() in VIDEO_EXT and not p.name.startswith("."))
        if not self.files:
            raise ConfigError(f"{src}: holds no video file ({' '.join(VIDEO_EXT)})")
        self.opts, self.robot_type, shapes, rates = opts, None, set(), {}
        for f in self.files:
            try:
                with av.open(str(f)) as c:
                    if not c.streams.video:
                        raise ConfigError(f"{f}: holds no video stream")
                    s = c.streams.video[0]
                    shapes.add((s.height, s.width))
                    rate = s.average_rate or s.guessed_rate
                    rates[f] = float(rate) if rate else None
            except av.error.FFmpegError as e:
                raise ConfigError(f"{f}: cannot be opened as a video ({getattr(e, 'strerror', None) or e})") from None
        if opts.fps is None:
            bad = [f for f, r in rates.items() if not r]
            if bad:
                raise ConfigError(f"{bad[0]}: records no frame rate; pass --fps")
            if len({round(r) for r in rates.values()}) > 1:
                raise ConfigError(f"{src}: the videos have different frame rates "
                                  f"({sorted({round(r) for r in rates.values()})}); pass --fps to resample them")
        self.rates = rates
        self.fps = opts.fps or round(next(iter(rates.values())))
        if len(shapes) > 1 and not opts.image_size:
            raise ConfigError(f"{src}: the videos have different sizes {sorted(shapes)}; pass --image-size N")
        h, w = shapes.pop()
        self.features = {opts.camera: video_feature((0, h, w, 3), "hwc", opts, str(self.files[0]))}
        self.inputs = fingerprint(src, self.files)

    def __len__(self):
        return len(self.files)

    def episode(self, i: int) -> dict:
        import av
        from av.video.reformatter import VideoReformatter

        f, n, r = self.files[i], self.opts.image_size, VideoReformatter()
        frames, times = [], []
        try:
            with av.open(str(f)) as c:
                s = c.streams.video[0]
                s.codec_context.thread_count = 1
                for frame in c.decode(s):
                    img = r.reformat(frame, width=n, height=n, format="rgb24", interpolation="AREA", threads=1)
                    frames.append(img.to_ndarray())
                    times.append(frame.time)
        except av.error.FFmpegError as e:
            raise ConfigError(f"{f}: cannot be decoded after {len(frames)} frames "
                              f"({getattr(e, 'strerror', None) or e}); truncated?") from None
        if not frames:
            raise ConfigError(f"{f}: holds no decodable frame")
        x = np.stack(frames)
        rate = self.rates[f]
        if self.opts.fps is not None and not (rate and round(rate) == self.fps):
            x = x[resample(times, rate or self.fps, self.fps)]
        x = prepare_frames(x, "hwc", dataclasses.replace(self.opts, image_size=None))
        return check_episode(str(f), {self.opts.camera: x, "task": self.opts.task}, self.features)

    def close(self):
        pass


def resample(times, rate: float, fps: int) -> np.ndarray:
    """Indices of the decoded frames shown at k / fps (the last one at or before it)."""
    t = np.array([np.nan if v is None else v for v in times], float)
    if np.isnan(t).any():
        t = np.arange(len(t)) / rate
    t -= t[0]
    k = np.arange(int(np.ceil((t[-1] + 1.0 / rate) * fps - 1e-6)))
    return np.clip(np.searchsorted(t, k / fps + 1e-9, side="right") - 1, 0, len(t) - 1)


def _npz_members(path: Path) -> dict:
    """{key: (shape, dtype, byte offset of the data when stored uncompressed else None)}, headers only."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                if not info.filename.endswith(".npy"):
                    continue
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = getattr(np.lib.format, "read_array_header_{}_{}".format(*version), None)
                    if read is None:  # format 3.0 (utf-8 field names): read the member once
                        a = np.load(path, allow_pickle=False)[info.filename[:-4]]
                        out[info.filename[:-4]] = (a.shape, a.dtype, None)
                        continue
                    shape, fortran, dtype = read(f)
                    header = f.tell()
                offset = None
                if info.compress_type == zipfile.ZIP_STORED and not fortran and not dtype.hasobject:
                    with open(path, "rb") as raw:  # the local header: 30 bytes + name + extra field
                        raw.seek(info.header_offset + 26)
                        lens = np.frombuffer(raw.read(4), "<u2")
                    offset = info.header_offset + 30 + int(lens[0]) + int(lens[1]) + header
                out[info.filename[:-4]] = (tuple(shape), dtype, offset)
    except (OSError, zipfile.BadZipFile, ValueError, EOFError) as e:
        raise ConfigError(f"{path}: cannot be read as .npz ({type(e).__name__}: {e}); truncated?") from None
    return out


class NpzSource:
    """A folder of .npz chunks (LAPO, schmidtdominik/LAPO `lapo/data_loader.py`: `<int>.npz` holding obs
    uint8 [N, 64, 64, C], ta int [N], done bool [N], rewards, ep_returns, values), read in order
    (numerically when every stem is an integer, else by name) as ONE stream of consecutive steps: an
    episode may continue into the next chunk. Keys (the first present of each NPZ_KEYS list, decided by
    the first chunk): observations uint8 [N, H, W, C] or [N, C, H, W], C = 1 or 3 (required) ->
    `camera`; actions (numeric [N, ...]) -> `action`; rewards -> `next.reward`; boundaries `done` (True
    at the LAST step of an episode, also stored as `next.done`) or else `ep_start` (True at the FIRST).
    Without a boundary array each file is one episode; steps after the last done form a last
    (unfinished) episode. Other keys are ignored. fps: `fps` (required). Members stored uncompressed
    (np.savez) are memory-mapped, compressed ones read one member at a time."""

    def __init__(self, src: Path, opts: ImportOptions):
        if not src.is_dir():
            raise ConfigError(f"{src}: is not a folder (npz imports a folder of .npz chunks)")
        self.files = int_sorted(p for p in src.glob("*.npz") if not p.name.startswith("."))
        if not self.files:
            raise ConfigError(f"{src}: holds no .npz file")
        if opts.fps is None:
            raise ConfigError("--fps is needed: npz chunks do not record a frame rate")
        self.opts, self.fps, self.robot_type, self._cache = opts, opts.fps, None, (None, {})
        self.members = [_npz_members(f) for f in self.files]
        first = self.members[0]
        self.keys = {role: next((k for k in names if k in first), None) for role, names in NPZ_KEYS.items()}
        if self.keys["obs"] is None:
            raise ConfigError(f"{self.files[0]}: no observation array (keys {', '.join(NPZ_KEYS['obs'])}); "
                              f"it holds {sorted(first)}")
        if self.keys["done"]:
            self.keys["start"] = None
        shape, dtype, _ = first[self.keys["obs"]]
        self.layout = image_layout(shape, f"{self.files[0]}: '{self.keys['obs']}'")
        self.features = {opts.camera: video_feature(shape, self.layout, opts, f"{self.files[0]}: '{self.keys['obs']}'")}
        roles = {"action": "action", "reward": "next.reward", "done": "next.done"}
        for role, feat in roles.items():
            if self.keys[role]:
                shape, dt, _ = first[self.keys[role]]
                try:
                    self.features[feat] = numeric_feature(dt, shape[1:], feat)
                except TypeError:
                    raise ConfigError(f"{self.files[0]}: '{self.keys[role]}' has dtype {dt}, not numeric") from None
        self.segments = self._split()
        self.inputs = fingerprint(src, self.files)

    def _split(self) -> list:
        """Episodes as lists of (file number, start, stop) over the concatenated stream."""
        episodes, current = [], []
        for j, (f, m) in enumerate(zip(self.files, self.members)):
            n = None
            for key in filter(None, self.keys.values()):
                if key not in m:
                    raise ConfigError(f"{f}: key '{key}' is missing (the first chunk has it)")
                if n is not None and m[key][0][:1] != (n,):
                    raise ConfigError(f"{f}: '{key}' has {m[key][0][:1]} rows, "
                                      f"'{self.keys['obs']}' {n} (inconsistent lengths)")
                n = m[key][0][0] if m[key][0] else 0
            if not n:
                raise ConfigError(f"{f}: '{self.keys['obs']}' holds no rows")
            flag = self.keys["done"] or self.keys["start"]
            if flag is None:
                episodes.append([(j, 0, n)])
                continue
            marks = np.asarray(self._array(j, flag)).reshape(n, -1)[:, 0].astype(bool)
            cuts = np.flatnonzero(marks) + (1 if self.keys["done"] else 0)
            start = 0
            for cut in map(int, cuts):
                if cut > start:
                    current.append((j, start, cut))
                if current:
                    episodes.append(current)
                    current = []
                start = cut
            if start < n:
                current.append((j, start, n))
        if current:
            episodes.append(current)
        return episodes

    def _array(self, j: int, key: str):
        shape, dtype, offset = self.members[j][key]
        if offset is not None:
            return np.memmap(self.files[j], dtype, "r", offset, shape) if np.prod(shape) else np.zeros(shape, dtype)
        if self._cache[0] != j:  # compressed: one member at a time, the last chunk's kept
            self._cache = (j, {})
        if key not in self._cache[1]:
            try:
                with np.load(self.files[j], allow_pickle=False) as z:
                    self._cache[1][key] = z[key]
            except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
                raise ConfigError(f"{self.files[j]}: '{key}' cannot be read ({type(e).__name__}: {e})") from None
        return self._cache[1][key]

    def __len__(self):
        return len(self.segments)

    def episode(self, i: int) -> dict:
        segs = self.segments[i]
        where = f"{self.files[segs[0][0]]} (episode {i}, rows {segs[0][1]}..)"
        arrays = {}
        roles = {"obs": self.opts.camera, "action": "action", "reward": "next.reward", "done": "next.done"}
        for role, feat in roles.items():
            if self.keys[role]:
                arrays[feat] = np.concatenate([np.asarray(self._array(j, self.keys[role])[a:b]) for j, a, b in segs])
        if arrays[self.opts.camera].dtype != np.uint8:
            raise ConfigError(f"{where}: '{self.keys['obs']}' has dtype {arrays[self.opts.camera].dtype}, "
                              "frames must be uint8")
        arrays[self.opts.camera] = prepare_frames(arrays[self.opts.camera], self.layout, self.opts)
        return check_episode(where, {**arrays, "task": self.opts.task}, self.features)

    def close(self):
        self._cache = (None, {})


class LeRobotV21Source:
    """A LeRobot v2.1 / v2.0 dataset (read by `open_dataset`): every feature (numeric ones in their dtype;
    narrower ints as int64, float16 as float32; videos decoded and re-encoded), each episode's length and
    first task, fps and robot_type. String/image features are refused."""

    def __init__(self, src: Path, opts: ImportOptions):
        from exolam.data.layout import DEFAULT_FEATURES, LEGACY
        from exolam.data.lerobot import open_dataset

        if opts.fps is not None or opts.task is not None:
            raise ConfigError("lerobot-v21 copies fps and tasks from the dataset; --fps and --task do not apply")
        self.ds, self.opts = open_dataset(src), opts
        info = self.ds._info_path
        if self.ds.version not in LEGACY:
            raise ConfigError(f"{info}: codebase_version {self.ds.version!r} is not {' or '.join(LEGACY)}")
        fps = self.ds.fps
        if float(fps) != round(fps):
            raise ConfigError(f"{info}: fps = {fps} is not an integer (LeRobot v3.0 needs one)")
        self.fps, self.robot_type, self.features = int(round(fps)), self.ds.info.get("robot_type"), {}
        for key, ft in self.ds.features.items():
            if key in DEFAULT_FEATURES:
                continue
            if key in self.ds.video_keys:
                self.features[key] = video_feature((0, *self.ds.video_shapes[key]), "hwc", opts, f"{info}: '{key}'")
            elif key in self.ds.numeric_keys:
                self.features[key] = {**numeric_feature(ft["dtype"], ft["shape"], key, keep64=True),
                                      "names": ft.get("names")}
            else:
                raise ConfigError(f"{info}: feature '{key}' has dtype {ft['dtype']!r}, which this importer cannot "
                                  "copy (video and numeric features only)")
        files = sorted(p for p in src.rglob("*") if p.is_file())
        self.inputs = fingerprint(src, files)

    def __len__(self):
        return len(self.ds.episode_lengths)

    def episode(self, i: int) -> dict:
        arrays = {}
        for key in self.features:
            if key in self.ds.video_keys:
                arrays[key] = prepare_frames(self.ds.frames(key, i), "hwc", self.opts)
            else:
                arrays[key] = self.ds.column(key, i)
        tasks = self.ds.episode_tasks[i]
        where = f"{self.ds.root} (episode {i})"
        return check_episode(where, {**arrays, "task": tasks[0] if tasks else ""}, self.features)

    def close(self):
        pass
