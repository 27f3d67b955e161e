"""One-way importers into the LeRobot v3.0 layout: `import_dataset(kind, src, out, options)`.

Kinds (what each reads is in its source's docstring): `mp4` (importers_sources.Mp4Source: a folder of videos, one
episode each, no actions), `npz` (NpzSource: LAPO-style chunks), `hdf5` with layout `robomimic` or
`laom` (data/importers_hdf5.py), `lerobot-v21` (LeRobotV21Source: a v2.1/v2.0 dataset re-encoded as
v3.0). Every kind also takes `image_size` (resize every camera to N x N with swscale's area filter),
`flip_vertical` / `flip_horizontal` (reverse rows / columns; both = a 180 degree rotation) and `codec`
(av1, LeRobot's default, or h264). Frames need even height and width (yuv420p): pass image_size
otherwise. One episode is held in memory at a time (pass image_size for long high-resolution videos).

Resumable and atomic (the pattern of `envs/control_collect.py`): each checked episode is saved to the
sibling folder `<out parent>/.<out name>.import-staging/episode_{i:06d}.npz` (temporary name, fsync,
rename) beside `spec.json` (kind, resolved SRC, options, and the name, size and mtime of every input
file); a rerun skips the staged episodes, and a staging folder of another spec (other options, or
input files added, removed or changed since, e.g. a bad video replaced) is rebuilt from scratch.
Once all are staged, `write_dataset` builds OUT under a temporary name and renames it; then
`OUT/meta/exolam_import.json` (the spec, episodes, frames) is written and the staging folder removed.
A rerun of a finished import with the same spec returns at once. OUT is never half-written; one
import per OUT at a time (`outdir.claim`: a second one is refused naming the first's PID). Bad input
(or a full disk) ends in one ConfigError line naming the file (episode, key) and removes the staging
folder; a killed import leaves its staged episodes for the rerun. Sources are only read (OUT equal to
or inside SRC is refused).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from exolam.data.lerobot_write import write_dataset
from exolam.errors import ConfigError, check_positive_int
from exolam.fileio import atomic_write, load_npz, open_staging, read_json, save_npz
from exolam.outdir import check_outside, claim

KINDS = ("mp4", "npz", "hdf5", "lerobot-v21")
LAYOUTS = ("robomimic", "laom")
VIDEO_EXT = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".ogv", ".flv", ".wmv")
NPZ_KEYS = {"obs": ("obs", "observations", "observation", "images", "image", "frames"),
            "action": ("ta", "actions", "action"), "reward": ("rewards", "reward"),
            "done": ("done", "dones", "terminals"), "start": ("ep_start", "is_first", "episode_starts")}
FORMAT, SPEC, DONE = 1, "spec.json", "exolam_import.json"


@dataclasses.dataclass(frozen=True)
class ImportOptions:
    """Options of `exolam import` (None: the source's own value or the kind's default)."""

    fps: int | None = None
    image_size: int | None = None
    camera: str = "observation.image"
    task: str | None = None
    layout: str | None = None
    camera_keys: tuple[str, ...] | None = None
    flip_vertical: bool = False
    flip_horizontal: bool = False
    codec: str = "av1"

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


def open_source(kind: str, src, opts: ImportOptions):
    """The reader of `src` for `kind` (checks the input's structure; reads no frames yet)."""
    src = Path(src)
    if not src.exists():
        raise ConfigError(f"{src}: missing")
    if kind == "hdf5":
        from exolam.data.importers_hdf5 import open_hdf5

        return open_hdf5(src, opts)
    from exolam.data.importers_sources import LeRobotV21Source, Mp4Source, NpzSource

    return {"mp4": Mp4Source, "npz": NpzSource, "lerobot-v21": LeRobotV21Source}[kind](src, opts)


# ------------------------------------------------------------------------------- staging, writing

def import_dataset(kind: str, src, out, options: ImportOptions | None = None, *, progress: bool = True,
                   log=print) -> Path:
    """Import `src` (a `kind` of KINDS) into the LeRobot v3.0 dataset `out`; returns `out` (module doc)."""
    opts = (options or ImportOptions()).validate(kind)
    src, out = Path(src), Path(out)
    check_outside(out, {"SRC": src})
    staging, done = out.with_name(f".{out.name}.import-staging"), out / "meta" / DONE
    source = open_source(kind, src, opts)
    try:
        spec = json.loads(json.dumps({"format": FORMAT, "kind": kind, "src": str(src.resolve()),
                                      "options": dataclasses.asdict(opts), "inputs": source.inputs}))
        with claim(out, {"SRC": src}, staging=staging):
            if out.exists():
                if done.is_file():
                    _check_spec(done, spec, "this dataset was imported")
                    return out
                if not (staging / SPEC).is_file():
                    raise ConfigError(f"{out}: already exists and is not an import of ours; choose another --out")
                _check_spec(staging / SPEC, spec, "staging was made")
                _finish(staging, done, spec, out)
                return out
            try:
                _stage_and_write(kind, source, spec, staging, out, opts, progress, log)
            except ConfigError:  # refused (bad input, a full disk): nothing of this import stays
                shutil.rmtree(staging, ignore_errors=True)
                raise
            return out
    finally:
        source.close()


def _stage_and_write(kind: str, source, spec: dict, staging: Path, out: Path, opts: ImportOptions, progress: bool,
                     log) -> None:
    """Stage every episode not staged yet (a staging folder of other inputs or options is rebuilt), then
    write OUT from the staged episodes and finish."""
    if (staging / SPEC).is_file():
        try:
            _check_spec(staging / SPEC, spec, "staging was made")
        except ConfigError as e:
            log(f"[import] {staging}: made by another import ({str(e).split(' with ', 1)[-1].split('; use')[0]}); "
                "staging again from scratch")
            shutil.rmtree(staging)
    n = len(source)
    open_staging(staging, SPEC, spec, lambda path: _check_spec(path, spec, "staging was made"))
    todo = [i for i in range(n) if not (staging / _name(i)).exists()]
    bar = _bar(n, n - len(todo), f"import {kind}", progress)
    for i in todo:
        save_npz(staging / _name(i), source.episode(i))
        bar and bar.update()
    bar and bar.close()
    bar = _bar(n, 0, "write v3.0", progress)

    def staged():
        for i in range(n):
            ep = load_npz(staging / _name(i), [*source.features, "task"], "stage it again")
            yield {**ep, "task": str(ep["task"])}
            bar and bar.update()

    write_dataset(out, staged(), source.features, source.fps, codec=opts.codec, robot_type=source.robot_type)
    bar and bar.close()
    _finish(staging, done=out / "meta" / DONE, spec=spec, out=out)


def _name(i: int) -> str:
    return f"episode_{i:06d}.npz"


def _bar(total: int, start: int, desc: str, progress: bool):
    if not (progress and sys.stderr.isatty()):
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, leave=False)


def _check_spec(path: Path, want: dict, what: str) -> None:
    have = read_json(path, f"remove {path.parent} to start afresh")
    diff = [f"options.{k}={have.get('options', {}).get(k)!r} (asked {v!r})" for k, v in want["options"].items()
            if (have.get("options") or {}).get(k) != v]
    diff += [f"{k}={have.get(k)!r} (asked {want[k]!r})" for k in ("format", "kind", "src") if have.get(k) != want[k]]
    if have.get("inputs") != want["inputs"]:
        diff.append("other input files (added, removed or changed since)")
    if diff:
        raise ConfigError(f"{path}: {what} with {'; '.join(diff)}; use another --out or remove "
                          f"{path.parent if path.name == SPEC else path.parent.parent}")


def _finish(staging: Path, done: Path, spec: dict, out: Path) -> None:
    info = read_json(out / "meta" / "info.json", "the dataset was damaged after writing; remove it and rerun")
    atomic_write(done, json.dumps({**spec, "episodes": info.get("total_episodes"),
                                   "frames": info.get("total_frames")}, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
