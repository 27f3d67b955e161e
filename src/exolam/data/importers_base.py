"""What every importer of `exolam import` shares (data/importers.py runs them; importers_sources.py and
importers_hdf5.py are the readers): the kinds and their options, frame layout and resizing, the feature
of an array, the check of one episode, input fingerprints. Readers import this module, never
importers.py, so the runner and its readers form no import cycle."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from exolam.errors import ConfigError, check_positive_int

KINDS = ("mp4", "npz", "hdf5", "lerobot-v21")
LAYOUTS = ("robomimic", "laom")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv")
NPZ_KEYS = {"obs": ("obs", "observations", "observation", "images", "image", "frames"),
            "action": ("ta", "actions", "action"), "reward": ("rewards", "reward"),
            "done": ("done", "dones", "terminals"), "start": ("ep_start", "is_first", "episode_starts")}


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Options of `exolam import` (None: the source's own value or the kind's default)."""

    fps: int | None = None
    """frames per second; None: the source's own (mp4, hdf5 attributes), required for npz and hdf5 laom"""
    image_size: int | None = None
    """frames are resized to image_size x image_size (even); None: kept as they are"""
    camera: str = "observation.image"
    """mp4, npz, hdf5 laom: the feature key of the single camera"""
    task: str | None = None
    """mp4, npz, hdf5: the task text of every episode; None: the source's own, else empty"""
    layout: str | None = None
    """hdf5 only: robomimic or laom"""
    camera_keys: tuple[str, ...] | None = None
    """hdf5 robomimic only: the obs keys to import as cameras (comma-separated allowed); None: every image key"""
    flip_vertical: bool = False
    """flip every frame upside down (sources stored bottom-up)"""
    flip_horizontal: bool = False
    """mirror every frame left to right"""
    codec: str = "av1"
    """video codec of the new dataset: av1 or h264"""

    def validate(self, kind: str) -> "ImportOptions":
        from exolam.data.video import CODECS

        if kind not in KINDS:
            raise ConfigError(f"kind = {kind!r} must be one of {', '.join(KINDS)}")
        if self.fps is not None:
            check_positive_int("fps", self.fps)
        if self.image_size is not None:
            check_positive_int("image_size", self.image_size)
            if self.image_size % 2:
                raise ConfigError(f"image_size = {self.image_size} must be even (videos are yuv420p)")
        if not isinstance(self.camera, str) or not self.camera or "/" in self.camera:
            raise ConfigError(f"camera = {self.camera!r} must be a non-empty feature key without '/'")
        if self.camera != "observation.image" and (kind == "lerobot-v21" or self.layout == "robomimic"):
            raise ConfigError(f"camera applies to mp4, npz and hdf5 --layout laom (not {self.layout or kind}), "
                              "whose single camera it names")
        if self.codec not in CODECS:
            raise ConfigError(f"codec = {self.codec!r} must be one of {', '.join(sorted(CODECS))}")
        if kind == "hdf5" and self.layout not in LAYOUTS:
            raise ConfigError(f"hdf5 needs --layout, one of {', '.join(LAYOUTS)} (got {self.layout!r})")
        if kind != "hdf5" and self.layout is not None:
            raise ConfigError(f"layout applies to hdf5 only, not {kind}")
        if self.camera_keys is not None and (kind, self.layout) != ("hdf5", "robomimic"):
            raise ConfigError("camera_keys applies to hdf5 with layout robomimic only")
        if self.camera_keys is not None and (not self.camera_keys or not all(self.camera_keys)):
            raise ConfigError(f"camera_keys = {self.camera_keys!r} must name at least one obs key")
        return self


# ---------------------------------------------------------------------------------------- frames

def image_layout(shape, where: str) -> str:
    """'hwc' or 'chw' for uint8 frames of shape [T, ., ., .] with 1 or 3 channels."""
    if len(shape) == 4 and shape[3] in (1, 3):
        return "hwc"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "chw"
    raise ConfigError(f"{where}: shape {tuple(shape)} is not frames [T, H, W, C] or [T, C, H, W] with C = 1 or 3")


def video_feature(shape, layout: str, opts: ImportOptions, where: str) -> dict:
    """The feature of frames with source `shape` [T, ...] after `opts` (resize)."""
    h, w, c = shape[1:] if layout == "hwc" else (shape[2], shape[3], shape[1])
    if opts.image_size:
        h = w = opts.image_size
    if h % 2 or w % 2:
        raise ConfigError(f"{where}: frames are {h}x{w}; video needs even height and width (pass --image-size N)")
    return {"dtype": "video", "shape": [int(h), int(w), int(c)]}


def prepare_frames(x, layout: str, opts: ImportOptions) -> np.ndarray:
    """uint8 [T, H, W, C] frames after the flips and resize of `opts`."""
    x = np.asarray(x)
    x = x.transpose(0, 2, 3, 1) if layout == "chw" else x
    if opts.flip_vertical:
        x = x[:, ::-1]
    if opts.flip_horizontal:
        x = x[:, :, ::-1]
    n = opts.image_size
    if not n or x.shape[1:3] == (n, n):
        return np.ascontiguousarray(x)
    import av
    from av.video.reformatter import VideoReformatter

    c, fmt, r = x.shape[3], "gray" if x.shape[3] == 1 else "rgb24", VideoReformatter()
    out = np.empty((len(x), n, n, c), np.uint8)
    for t, img in enumerate(x):
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[..., 0] if c == 1 else img), format=fmt)
        out[t] = r.reformat(frame, width=n, height=n, format=fmt, interpolation="AREA", threads=1) \
            .to_ndarray().reshape(n, n, c)
    return out


def numeric_feature(dtype, shape, key: str = "", keep64: bool = False) -> dict:
    """The feature of numeric arrays [T, *shape]: floats as float32 (float64 with `keep64`), ints as int64,
    `next.done` as bool (LeRobot's dtypes); TypeError for a non-numeric dtype."""
    dt = np.dtype(dtype)
    if dt.kind not in "biuf":
        raise TypeError(dt)
    name = {"b": "bool", "f": "float64" if keep64 and dt == np.float64 else "float32"}.get(dt.kind, "int64")
    return {"dtype": "bool" if key == "next.done" else name, "shape": [int(d) for d in shape] or [1]}


def check_episode(where: str, arrays: dict, features: dict) -> dict:
    """`arrays` cast to `features` ([T] accepted for shape [1]); ConfigError naming `where` and the key."""
    out, n = {}, None
    for key, ft in features.items():
        if key not in arrays:
            raise ConfigError(f"{where}: '{key}' is missing")
        x, shape = np.asarray(arrays[key]), tuple(ft["shape"])
        if ft["dtype"] != "video":
            x = x.reshape(len(x), *shape) if x.ndim == 1 and shape == (1,) else x
            if x.dtype.kind not in "biuf":
                raise ConfigError(f"{where}: '{key}' has dtype {x.dtype}, not numeric")
            x = x.astype(ft["dtype"], copy=False)
            if x.dtype.kind == "f" and len(x) and not np.isfinite(x).all():
                bad = int(np.flatnonzero(~np.isfinite(x.reshape(len(x), -1)).all(1))[0])
                raise ConfigError(f"{where}: '{key}' holds NaN or inf (step {bad})")
        elif x.dtype != np.uint8:
            raise ConfigError(f"{where}: '{key}' has dtype {x.dtype}; frames must be uint8")
        if x.shape[1:] != shape:
            raise ConfigError(f"{where}: '{key}' has shape {tuple(x.shape)}, other episodes (T, "
                              f"{', '.join(map(str, shape))})")
        if n is not None and len(x) != n:
            raise ConfigError(f"{where}: '{key}' has {len(x)} steps, the others {n} (inconsistent lengths)")
        out[key], n = x, len(x)
    if not n:
        raise ConfigError(f"{where}: the episode has no frames")
    return {**out, "task": str(arrays.get("task") or "")}


def fingerprint(root: Path, files) -> list:
    """[name, size, mtime_ns] of each input file (a changed source is refused on resume)."""
    out = []
    for f in files:
        st = f.stat()
        out.append([str(f.relative_to(root)) if f != root else f.name, st.st_size, st.st_mtime_ns])
    return out


def int_sorted(paths, name=lambda p: p.stem):
    """Numerically when every name is an integer (LAPO's 0.npz, 1.npz, 10.npz), else by name."""
    paths = list(paths)
    if paths and all(name(p).isdigit() for p in paths):
        return sorted(paths, key=lambda p: int(name(p)))
    return sorted(paths, key=name)
