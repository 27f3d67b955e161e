"""Which dataset features a LAM reads: the camera, its paired view, the action and its label mask.

Conventions (shared by `exolam train`, `label` and `diagnose`):

- camera: `--camera KEY`, default the dataset's first video feature (or, if it has none, its first
  numeric feature of image shape [C, H, W], as the grid world's export `observation.grid`).
- paired view: the feature `KEY_alt` (a render of the same state under another exogenous state,
  as `exolam control collect` and the grid world's export write); absent in users' own video.
- action: the feature `action`; label mask: `action_is_labeled` (bool) when present, else every
  frame with an action counts as labelled.
"""

from __future__ import annotations

from exolam.data.lerobot import LeRobotDataset
from exolam.errors import ConfigError

ACTION, LABEL = "action", "action_is_labeled"


def alt_key(camera: str) -> str:
    return f"{camera}_alt"


def image_keys(ds: LeRobotDataset) -> list[str]:
    """Video features, then numeric features shaped like an image ([C, H, W], C in 1..4)."""
    numeric = [k for k in ds.numeric_keys if len(ds.features[k].get("shape", [])) == 3
               and 1 <= int(ds.features[k]["shape"][0]) <= 4]
    return [k for k in ds.video_keys if not k.endswith("_alt")] + [k for k in numeric if not k.endswith("_alt")]


def camera_key(ds: LeRobotDataset, camera: str | None, paired: bool = False) -> str:
    """`camera`, checked, or the default; a missing key names the ones that exist. `paired`: a camera's
    paired view `<camera>_alt` is accepted too (what a frame or feature cache is made of)."""
    keys = image_keys(ds)
    if paired and camera in {alt_key(k) for k in keys} & set(ds.features):
        return camera
    if camera is None:
        if not keys:
            raise ConfigError(f"{ds.root}: no video (or image-shaped) feature to train on (features: {sorted(ds.features)})")
        return keys[0]
    if camera not in keys:
        raise ConfigError(f"--camera = {camera!r} is not a camera of {ds.root} (cameras: {', '.join(keys) or 'none'})")
    return camera


def stored_shape(ds: LeRobotDataset, camera: str) -> tuple[int, int, int]:
    """(H, W, C) of a camera as stored: a video's [H, W, C], or an image-shaped numeric feature's [C, H, W]."""
    if camera in ds.video_keys:
        return tuple(int(d) for d in ds.video_shapes[camera])
    c, h, w = (int(d) for d in ds.features[camera]["shape"])
    return h, w, c


def lam_fields(ds: LeRobotDataset, camera: str, *, paired: bool = False, action: bool = False,
               what: str = "objective") -> dict[str, str]:
    """WindowDataset fields {o, [o_alt], [a, label_mask]}; data the caller needs but D lacks -> one line."""
    fields = {"o": camera}
    if paired:
        if alt_key(camera) not in ds.features:
            raise ConfigError(f"{what} needs paired views, but {ds.root} has no '{alt_key(camera)}' feature (a render "
                              f"of the same state under another exogenous state); make one with --paired-view augment")
        fields["o_alt"] = alt_key(camera)
    if action:
        if ACTION not in ds.numeric_keys:
            raise ConfigError(f"{what} needs action labels, but {ds.root} has no '{ACTION}' feature")
        fields["a"] = ACTION
        if LABEL in ds.numeric_keys:
            fields["label_mask"] = LABEL
    return fields
