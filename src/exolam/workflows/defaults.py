"""What `exolam train` chooses where a flag is left out, and why (issue 23: defaults that learn).

The defaults are sized to learn a latent action on a 2-core CPU in about 10 minutes, measured on four
datasets (`benchmarks/own_defaults.py`; README "Your own data"): the walkthrough's action-free cheetah
videos, its paired cheetah data, the grid world's export and a real bimanual teleoperation dataset.

    image size   min(SIZE, the stored side): frames are never upsampled; a numeric (non-video) frame
                 feature keeps its stored size (it is not resized)
    frame gap    the smallest k whose frame change E RMS(I_{t+k} - I_t) reaches SHARE of the change
                 over MAX_GAP frames (data/windows.py `frame_change`, 64 seeded windows at the training
                 image size): the change grows with k until the motion decorrelates the frames, so k is
                 where most of that change is visible while z still summarises only a few actions
                 (cheetah at 100 fps: 5; bimanual teleoperation at 30 fps: 4; the grid world's 2-frame
                 episodes: 1). Video that barely moves (change over MAX_GAP frames below STILL) keeps 1.
    training     `OWN_TRAIN` (lr 1e-3, batch 32, 5,000 updates) and the widths IDM (32, 64, 64), FDM
                 (16, 32, 64): App. C's lr 3e-4 and widths learned nothing within this budget

Every choice is printed on the start line with its reason, and train.json records the resolved values,
so a rerun resolves the same (the measurement is seeded) and resumes.
"""

from __future__ import annotations

import dataclasses

from exolam.data.windows import frame_change
from exolam.train.engine import TrainConfig

SIZE = 32  # default --image-size (at most the stored side)
MAX_GAP, SHARE, STILL = 16, 0.7, 1e-3  # frame-gap rule (module doc)
OWN_TRAIN = TrainConfig(steps=5000, batch_size=32, lr=1e-3)
IDM_CHANNELS, FDM_CHANNELS = (32, 64, 64), (16, 32, 64)


def frame_gap(ds, key: str, image_size: int | None, seed: int = 0) -> tuple[int, str]:
    """The default frame gap of `key` (module doc) and the reason, in words."""
    if max(ds.episode_lengths) < 3:  # nothing to choose (and a 1-frame dataset is refused by its windows)
        return 1, "no episode is longer than 2 frames"
    change = frame_change(ds, key, image_size, MAX_GAP, seed=seed)
    top = max(change)
    if change[top] < STILL:
        return 1, f"the frames barely change (RMS {change[top]:.4f} over {top} frames)"
    k = min(g for g, c in change.items() if c >= SHARE * change[top])
    return k, (f"the smallest gap whose frame change (RMS {change[k]:.4f}) reaches {SHARE:.0%} of the change over "
               f"{top} frames ({change[top]:.4f})")


def resolve(cfg, ds, camera: str, stored: tuple[int, int, int], is_video: bool):
    """`cfg` (a TrainOwnConfig) with image_size and frame_gap filled where None; the reasons, one per choice."""
    h, w, _ = stored
    why = []
    size = cfg.image_size
    if size is None:
        size = min(SIZE, h, w) if is_video else h
        why.append(f"image size {size} ({'stored size: not resized' if not is_video else f'min({SIZE}, stored {h}x{w})'})")
    gap = cfg.frame_gap
    if gap is None:  # measured at the training size, or the stored one if larger (upsampling adds nothing)
        gap, reason = frame_gap(ds, camera, min(size, h, w) if is_video else None, cfg.seed)
        why.append(f"frame gap {gap} ({reason})")
    widths = {}
    if cfg.model == "lapo":
        widths = {"idm_channels": cfg.idm_channels or IDM_CHANNELS, "fdm_channels": cfg.fdm_channels or FDM_CHANNELS}
    return dataclasses.replace(cfg, image_size=size, frame_gap=gap, **widths), why
