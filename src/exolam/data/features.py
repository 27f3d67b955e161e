"""Feature caches: o = f(I) (Sec. 4.3) for every frame of a LeRobot dataset, computed once, read by mmap.

A frozen encoder f (models/encoders.py) costs the same at every epoch; a LAM trained on o = f(I) (the
observation of Eq. 5, whose xi-sensitivity delta_h sets the exogenous energy of Eq. 12-14) can read
the features from disk instead. Layout of `out_dir`:

    features.json            {"format": "exolam-features", "version": 1,
                              "encoder": spec (Encoder.name), "fingerprint": hash of its weights,
                              "dataset": {"root": absolute path, "info_sha256": sha256 of meta/info.json,
                                          "camera": key, "image_size": N or null (native)},
                              "dtype": "float16" | "float32", "feature_shape": [...],
                              "lengths": [T_0, ...], "complete": bool}
    episode_000000.npy       float [T_e, *feature_shape]: f(frame t of episode e), t = 0..T_e-1

Frames are decoded as uint8, scaled to [0, 1] and resized to image_size x image_size (bilinear with
antialiasing, as data/windows.py does for training) before f; a numeric image feature ([C, H, W], the
grid world's export) is used as stored. dtype float16 (default) halves the disk (EfficientNet-Lite0's
map at 224 is 62,720 values a frame: 125 kB in float16) at ~1e-3 relative precision; values beyond
float16's range (65504) are refused with the advice to use float32.

Resumable: features.json is written first; every episode is written to a temporary name, fsynced
and renamed, so a killed run leaves only whole files and a rerun skips the episodes already there.
A rerun into the same folder with another encoder, other weights, another dataset, camera, image
size or dtype is refused with one ConfigError line (choose another out_dir). One writer per folder.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from exolam.data.fields import camera_key
from exolam.data.lerobot import LeRobotDataset, open_dataset
from exolam.errors import ConfigError, check_positive_int
from exolam.runs.files import atomic_write, read_json

FORMAT, VERSION, META = "exolam-features", 1, "features.json"
DTYPES = ("float16", "float32")
IDENTITY = ("encoder", "fingerprint", "dataset", "dtype", "feature_shape", "lengths")


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize with antialiasing to size x size (as data/windows.py); a no-op at that size."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


class Frames(torch.nn.Module):
    """The identity f: a cache of the frames themselves, resized to the training size (float32, so what
    training reads equals what it would decode). `exolam train` on pixels decodes every frame once this
    way instead of two frames per window at every update."""

    name, fingerprint = "frames", "identity"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def out_shape_for(self, size: int, channels: int) -> tuple[int, int, int]:
        return (channels, size, size)


def episode_file(e: int) -> str:
    return f"episode_{e:06d}.npy"


def dataset_identity(ds: LeRobotDataset, camera: str, image_size: int | None) -> dict:
    """What a cache is of: the dataset root, a hash of its meta/info.json, the camera and the image size."""
    digest = hashlib.sha256((ds.root / "meta" / "info.json").read_bytes()).hexdigest()
    return {"root": str(ds.root.absolute()), "info_sha256": digest, "camera": camera, "image_size": image_size}


def load_frames(ds: LeRobotDataset, camera: str, episode: int, indices, image_size: int | None) -> torch.Tensor:
    """Frames t in `indices` of one episode as float [n, C, H, W] in [0, 1], resized as for training."""
    idx = [int(t) for t in indices]
    if camera in ds.video_keys:
        x = torch.from_numpy(ds.frames_at(camera, episode, idx)).permute(0, 3, 1, 2).float().div_(255)
    elif camera in ds.numeric_keys:
        col = ds.column(camera, episode)[idx]
        x = torch.from_numpy(np.ascontiguousarray(col)).float()
        if col.dtype == np.uint8:
            x = x.div_(255)
    else:
        raise ConfigError(f"{ds.root}: '{camera}' is not a feature of this dataset (cameras are video features)")
    return resize(x, image_size) if image_size is not None else x


def encode_episode(encoder, ds: LeRobotDataset, camera: str, episode: int, image_size: int | None,
                   batch: int = 64, device: str | torch.device = "cpu") -> np.ndarray:
    """f(I) for every frame of one episode: float32 [T, *feature_shape] (uncached, in chunks of `batch`)."""
    out, n = [], ds.episode_lengths[episode]
    for t in range(0, n, batch):
        x = load_frames(ds, camera, episode, range(t, min(t + batch, n)), image_size).to(device)
        out.append(encoder(x).float().cpu().numpy())
    return np.concatenate(out)


def _save_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()  # np.save into a file loses the errno of a failed write ("problem writing element")
    np.save(buf, array)
    atomic_write(path, buf.getbuffer(), fix="choose another out_dir")


def _done(path: Path, length: int, shape: tuple, dtype: str) -> bool:
    """An episode file that is whole and of the expected shape and dtype (else it is recomputed)."""
    if not path.is_file():
        return False
    try:
        a = np.load(path, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return a.shape == (length, *shape) and a.dtype == np.dtype(dtype)


def _check_same(meta: dict, old: dict, path: Path) -> None:
    """Refuse to extend a cache of another spec (one line naming the first difference)."""
    for k in IDENTITY:
        if old.get(k) != meta[k]:
            if k == "dataset":
                sub = next(s for s in meta[k] if (old.get(k) or {}).get(s) != meta[k][s])
                k, was, now = f"dataset.{sub}", (old.get("dataset") or {}).get(sub), meta["dataset"][sub]
            else:
                was, now = old.get(k), meta[k]
            raise ConfigError(f"{path}: a cache with {k} = {was!r} is there, this run has {k} = {now!r}; "
                              "choose another out_dir (or delete that one)")


def cache_features(encoder, dataset_root, camera: str | None, out_dir, image_size: int | None = None,
                   batch: int = 64, dtype: str = "float16", device: str | torch.device = "cpu", log=None) -> Path:
    """Compute and store f(I) for every frame of every episode (module docstring); returns out_dir.

    encoder: an `exolam.models.encoders.Encoder` (e.g. `load_encoder("efficientnet-lite0")`; data/ does
    not import models/), i.e. a module with `name`, `fingerprint` and `out_shape_for(size, channels)`.
    camera None = the dataset's first camera (data/fields.py). Resumes an interrupted run; refuses a
    folder holding a cache of another spec. `log(msg)` (optional) gets one line per episode written.
    """
    if not all(hasattr(encoder, a) for a in ("name", "fingerprint", "out_shape_for")):
        raise ConfigError(f"cache_features: encoder {encoder!r} is not an Encoder (pass load_encoder(spec))")
    check_positive_int("batch", batch)
    if image_size is not None:
        check_positive_int("image_size", image_size)
    if dtype not in DTYPES:
        raise ConfigError(f"dtype = {dtype!r} must be one of {', '.join(DTYPES)}")
    ds = open_dataset(dataset_root)
    camera = camera_key(ds, camera, paired=True)
    encoder = encoder.to(device)
    size = image_size or ds.video_shapes.get(camera, (None, None))[0] or int(ds.features[camera]["shape"][-1])
    channels = ds.video_shapes[camera][2] if camera in ds.video_keys else int(ds.features[camera]["shape"][0])
    shape = encoder.out_shape_for(size, channels)
    meta = {"format": FORMAT, "version": VERSION, "encoder": encoder.name, "fingerprint": encoder.fingerprint,
            "dataset": dataset_identity(ds, camera, image_size), "dtype": dtype, "feature_shape": list(shape),
            "lengths": list(ds.episode_lengths), "complete": False}
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{out}: cannot create the cache folder ({e.strerror or e})") from None
    if (out / META).exists():
        _check_same(meta, read_json(out / META, "delete the folder to rebuild the cache"), out / META)
    else:
        atomic_write(out / META, json.dumps(meta, indent=2) + "\n")
    limit = np.finfo(np.float16).max
    for e, n in enumerate(ds.episode_lengths):
        path = out / episode_file(e)
        if _done(path, n, shape, dtype):
            continue
        t0 = time.perf_counter()
        feats = encode_episode(encoder, ds, camera, e, image_size, batch, device)
        if dtype == "float16" and np.abs(feats).max(initial=0) > limit:
            raise ConfigError(f"{out}: features of episode {e} exceed float16's range ({limit:g}); use dtype float32")
        _save_npy(path, feats.astype(dtype))
        if log is not None:
            log(f"episode {e}: {n} frames in {time.perf_counter() - t0:.1f} s -> {path}")
    atomic_write(out / META, json.dumps({**meta, "complete": True}, indent=2) + "\n")
    return out


class CachedFeatures:
    """A finished feature cache, read-only: `cache[e]` = features of episode e, [T_e, *feature_shape] (mmap)."""

    def __init__(self, path):
        self.path = Path(path)
        self.meta = read_json(self.path / META, "is this a folder written by cache_features?")
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise ConfigError(f"{self.path / META}: not an exolam feature cache (format {FORMAT!r}, version {VERSION})")
        if not self.meta.get("complete"):
            raise ConfigError(f"{self.path}: the cache is incomplete (a run was interrupted); rerun cache_features "
                              "with the same arguments to finish it")
        self.encoder, self.dtype = self.meta["encoder"], self.meta["dtype"]
        self.feature_shape, self.lengths = tuple(self.meta["feature_shape"]), list(self.meta["lengths"])
        self._open: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.lengths)

    def __getitem__(self, episode: int) -> np.ndarray:
        if not 0 <= episode < len(self):
            raise IndexError(f"episode {episode} is out of range 0..{len(self) - 1}")
        if episode not in self._open:
            path = self.path / episode_file(episode)
            want = (self.lengths[episode], *self.feature_shape)
            try:
                a = np.load(path, mmap_mode="r")
            except (OSError, ValueError) as e:
                raise ConfigError(f"{path}: unreadable ({type(e).__name__}); rerun cache_features to rebuild "
                                  "it") from None
            if a.shape != want:
                raise ConfigError(f"{path}: shape {a.shape}, features.json says {want}")
            self._open[episode] = a
        return self._open[episode]

    def check(self, dataset_root, camera: str, image_size: int | None = None, encoder: str | None = None) -> None:
        """Refuse (one line) a cache that is not of this dataset / camera / image size (/ encoder spec)."""
        ds = open_dataset(dataset_root)
        want = {**self.meta, "dataset": dataset_identity(ds, camera, image_size), "lengths": ds.episode_lengths}
        if encoder is not None:
            want["encoder"] = encoder
        _check_same(want, self.meta, self.path / META)

    def __repr__(self) -> str:
        return f"CachedFeatures({str(self.path)!r}, {self.encoder}, {len(self)} episodes, {self.feature_shape})"
