"""Optical flow of a pair of frames (I, I'): the xi-robust target of `robust-flow` (Sec. 4.5, App. D).

The flow field is the agent's motion between o and o' and is mostly insensitive to what the
exogenous noise xi changes without moving anything (colour / lighting drift): the flow of a
brightness-constant recolouring is ~0. Classical OpenCV flow, no learned weights:

- `dis` (default): `cv2.DISOpticalFlow`, preset MEDIUM (patch 12 px, variational refinement on):
  sub-pixel accurate on 16-128 px frames (a 2 px shift reads 2.00 +- 0.02) at about a millisecond
  a 64 px pair on one core. FAST (patch 8, no refinement) saves little at these sizes and was off
  by ~0.2 px at 128 px. DIS needs frames >= 12 px a side (the patch).
- `farneback`: `cv2.calcOpticalFlowFarneback` (pyr_scale 0.5, 3 levels, window 9); works on any
  frame size but is inaccurate below ~16 px.

Flow is in pixels of the input frames, channel 0 = dx (rightwards), channel 1 = dy (downwards), and
maps I to I': I'(x + flow(x)) ~ I(x). RGB frames are converted to luma (ITU-R 601, as
cv2.COLOR_RGB2GRAY) and quantized to uint8 first; the computation runs single-threaded per pair
and is deterministic (same frames, same flow).

Size of the target (`size`, default `DEFAULT_SIZE` = 8 x 8, i.e. d_flow = 128): the full-resolution
field (2 x 64 x 64 = 8192 dims) is area-averaged down. sq_err sums over dimensions, so a full-size
target would make lambda mean something different for every frame size and would dominate the
other terms, while W (d_flow x d_z, d_z = 8) can only fit a rank-d_z map of it anyway; 8 x 8
keeps the coarse motion layout (which body part moved where) at a size comparable to d_a.
"""

from __future__ import annotations

import numpy as np
import torch

from exolam.errors import ConfigError

DEFAULT_SIZE = (8, 8)
METHODS = ("dis", "farneback")
DIS_MIN_SIDE = 12  # the MEDIUM preset's patch size
_LUMA = (0.299, 0.587, 0.114)


def _size(size) -> tuple[int, int] | None:
    if size is None:
        return None
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if h < 1 or w < 1:
        raise ConfigError(f"optical flow size {size} must be positive")
    return int(h), int(w)


def flow_dim(size=DEFAULT_SIZE, frame_hw: tuple[int, int] | None = None) -> int:
    """d_flow = 2 h w of the target: `size` (int or (h, w)), or the frame's (H, W) when size is None."""
    hw = _size(size)
    if hw is None:
        if frame_hw is None:
            raise ConfigError("flow_dim(size=None) needs the frame size frame_hw")
        hw = tuple(frame_hw)
    return 2 * hw[0] * hw[1]


def _gray_u8(x: torch.Tensor) -> np.ndarray:
    """[N, C, H, W] float in [0, 1] -> [N, H, W] uint8 luma."""
    c = x.shape[1]
    if c == 3:
        x = (x * x.new_tensor(_LUMA)[:, None, None]).sum(1)
    elif c == 1:
        x = x[:, 0]
    else:
        raise ConfigError(f"optical flow needs gray (C = 1) or RGB (C = 3) frames, got C = {c}")
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def optical_flow(o: torch.Tensor, o_next: torch.Tensor, size=DEFAULT_SIZE, method: str = "dis") -> torch.Tensor:
    """Flow of (o, o') for float frames [..., C, H, W] in [0, 1] -> float32 [..., 2, h, w] (on o's device).

    (h, w) = `size` (int or (h, w); area-averaged from full resolution), or (H, W) if size is None.
    """
    import cv2  # optional dependency: the `flow` extra (opencv-python-headless)

    if o.shape != o_next.shape or o.dim() < 3:
        raise ConfigError(f"optical flow needs two frame batches [..., C, H, W] of one shape, got "
                          f"{tuple(o.shape)} and {tuple(o_next.shape)}")
    if method not in METHODS:
        raise ConfigError(f"optical flow method '{method}' is not one of {', '.join(METHODS)}")
    *lead, c, H, W = o.shape
    if method == "dis" and min(H, W) < DIS_MIN_SIDE:
        raise ConfigError(f"optical flow method 'dis' needs frames >= {DIS_MIN_SIDE} px a side, got {H}x{W}; "
                          "use method 'farneback'")
    hw = _size(size)
    a = _gray_u8(o.detach().reshape(-1, c, H, W).float().cpu())
    b = _gray_u8(o_next.detach().reshape(-1, c, H, W).float().cpu())
    out = np.empty((a.shape[0], H, W, 2), dtype=np.float32)
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)  # deterministic and polite to the 2-core budget; restored below
    try:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM) if method == "dis" else None
        for i in range(a.shape[0]):
            if dis is not None:
                out[i] = dis.calc(a[i], b[i], None)
            else:
                out[i] = cv2.calcOpticalFlowFarneback(a[i], b[i], None, 0.5, 3, 9, 3, 5, 1.1, 0)
    finally:
        cv2.setNumThreads(threads)
    flow = torch.from_numpy(out).permute(0, 3, 1, 2)  # [N, 2, H, W]
    if hw is not None and hw != (H, W):
        flow = torch.nn.functional.adaptive_avg_pool2d(flow, hw)
    return flow.contiguous().reshape(*lead, 2, *flow.shape[-2:]).to(o.device)
