"""Does the LeRobot video loader keep up with training? (data/lerobot.py, data/windows.py; never asserted in tests)

1. writes synthetic datasets (EPISODES episodes x FRAMES frames of smooth random RGB video) at 64x64 and
   224x224, with AV1 (libsvtav1) and h264 (libx264), and reports the encoding rate;
2. measures decoded windows/s through `WindowSource` (o_t, o_{t+1}, uniformly random windows, resized to
   64x64 when stored larger, batch --batch) with W = 0, 1, 2 DataLoader workers;
3. measures updates/s of a plain Adam step of the VQ LAM (`VQLAM(VQLAMConfig(in_channels=3, image_size=64,
   idm_channels=(32, 32, 32)))`, objective `lam`, batch 128, fp32, 1 thread), i.e. the frames/s training
   consumes (2 per transition), and prints decoded/needed: below 1 the loader would starve training.

Loader and training are timed apart: on a 2-core machine W workers and the training step share the
same cores, so the ratios are upper bounds of what runs side by side.

    OMP_NUM_THREADS=1 python benchmarks/loader_speed.py [--episodes 20] [--frames 100] [--seconds 2]
        [--batch 64] [--workers 0 1 2] [--sizes 64 224] [--codecs av1 h264] [--train-steps 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.data.transitions import Transitions
from exolam.data.windows import WindowDataset, WindowSource
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.objectives import Objective

CAM = "observation.images.cam"


def smooth_episode(frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [frames, size, size, 3]: three moving sinusoid mixtures, one per channel."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    t = np.arange(frames, dtype=np.float32)[:, None, None]
    out = np.empty((frames, size, size, 3), np.uint8)
    for c in range(3):
        wave = np.zeros((frames, size, size), np.float32)
        for _ in range(3):
            fx, fy, speed, phase = rng.uniform(0.5, 3, 2).tolist() + rng.uniform(-0.05, 0.05, 2).tolist()
            wave += np.sin(2 * np.pi * (fx * x + fy * y + speed * t + phase))
        out[..., c] = np.clip(127.5 + 40 * wave, 0, 255)
    return out


def write(root: Path, size: int, codec: str, episodes: int, frames: int) -> float:
    rng = np.random.default_rng(size)
    eps = ({CAM: smooth_episode(frames, size, rng), "action": rng.normal(size=(frames, 2)).astype(np.float32)}
           for _ in range(episodes))
    feats = {CAM: {"dtype": "video", "shape": [size, size, 3]}, "action": {"dtype": "float32", "shape": [2]}}
    t = time.perf_counter()
    write_dataset(root, eps, feats, fps=30, codec=codec)
    return episodes * frames / (time.perf_counter() - t)


def loader_rate(root: Path, workers: int, batch: int, seconds: float) -> float:
    """Windows per second through WindowSource (the first batch, with the worker start-up, not counted)."""
    win = WindowDataset(open_dataset(root), {"o": CAM, "a": "action"}, frame_gap=1, image_size=64)
    src = WindowSource(win, seed=0, steps=10_000, batch_size=batch, num_workers=workers)
    it = src.batches()
    next(it)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        n += len(next(it))
    rate = n / (time.perf_counter() - t)
    del it, src  # stops the persistent workers
    return rate


def train_rate(steps: int) -> float:
    """Adam updates per second of the VQ LAM on 64x64 RGB, batch 128, fp32, 1 thread."""
    torch.manual_seed(0)
    model = VQLAM(VQLAMConfig(in_channels=3, image_size=64, idm_channels=(32, 32, 32)))
    objective = Objective("lam", model.d_z, {})
    opt = torch.optim.Adam(list(model.parameters()) + list(objective.parameters()), lr=1e-3)
    batch = Transitions(o=torch.rand(128, 3, 64, 64), o_next=torch.rand(128, 3, 64, 64))

    def step():
        loss, _ = objective(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()  # warm-up
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=20)
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--codecs", nargs="+", default=["av1", "h264"])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=2.0, help="timing window per loader configuration")
    p.add_argument("--train-steps", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(1)

    updates = train_rate(args.train_steps)
    needed = updates * 128 * 2
    print(f"VQ LAM Adam step, 64x64x3, batch 128, fp32, 1 thread: {updates:.2f} updates/s "
          f"-> {needed:.0f} frames/s needed (2 per transition)\n")
    print(f"{'size':>5} {'codec':>5} {'encode fps':>10} {'MB':>6} {'W':>2} {'windows/s':>10} {'frames/s':>9} "
          f"{'decoded/needed':>14}  verdict")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            for codec in args.codecs:
                root = Path(tmp) / f"{codec}{size}"
                enc = write(root, size, codec, args.episodes, args.frames)
                mb = sum(f.stat().st_size for f in (root / "videos").rglob("*.mp4")) / 2**20
                for w in args.workers:
                    rate = loader_rate(root, w, args.batch, args.seconds)
                    ratio = 2 * rate / needed
                    verdict = "keeps up" if ratio >= 1 else "starves training"
                    print(f"{size:>5} {codec:>5} {enc:>10.0f} {mb:>6.1f} {w:>2} {rate:>10.0f} {2 * rate:>9.0f} "
                          f"{ratio:>14.1f}  {verdict}", flush=True)


if __name__ == "__main__":
    main()
