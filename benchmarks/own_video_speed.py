"""Own video end to end (`exolam train` -> `exolam label`): frames/s of each stage at 64x64 and 224x224 on CPU.

In one run, for each --sizes S (default 64 and 224):

1. write    a synthetic LeRobot v3.0 dataset, --episodes x --frames (default 100 x 20) of smooth moving
            colour waves (as `smooth()` in tests/test_data_lerobot.py, one seed per episode) at S x S,
            codec --codec (default h264, libx264; av1 = libsvtav1), with `lerobot_write.write_dataset`:
            encoding frames/s and the size of the videos;
2. decode   windows/s of `WindowSource(WindowDataset(..., image_size=64))` (o_t, o_{t+1}, uniformly random
            windows, batch --batch) with W = --workers DataLoader workers (default 0 1 2; the first batch,
            with the worker start-up, untimed); 2 frames are decoded per window; and at W = 0 the same
            with `--paired-view augment` (data/augment.py: o~, o~' drawn by colour / camera augmentation);
3. train    the lapo LAM with its own widths (`LapoLAMConfig` defaults, objective lam; frame gap 1, frames
            decoded at every update, no guards: the loader path, as before issue 23's defaults) at
            --image-size 64, i.e. the 224 frames resized to 64 by the loader:
              step     updates/s of the engine's step (forward, backward, clip 5, Adam foreach; fp32, 1
                       thread) on one in-memory batch (the loader's first), built by `workflows.train_own.plan` as
                       `train_own` builds it; samples/s = updates/s x batch; loader/train = decoded
                       windows/s / trained samples/s: below 1 the loader starves training at that W;
              e2e      `train_own(TrainOwnConfig(num_workers=W, train=TrainConfig(steps=--train-steps,
                       batch_size=--batch)))`
                       for W in --train-workers (default 0 1), the real command: its updates/s as the
                       finished checkpoint records it (engine.fit's loop, the first batch and worker
                       start-up included; with W=1 the decode worker and training share the 2 cores);
            and at S > 64 the same lapo LAM at --image-size S (lapo accepts it; only the vq LAM is
            refused above 64 px): step rate at --native-batch on a batch decoded at S (W=0 decode rate
            at S too), to read what training at full resolution costs per sample against 64 px;
4. label    `label_dataset` with the W=0 e2e checkpoint over the whole dataset (decode + IDM + the
            copy written, frames/s of all frames), beside `latent_actions` alone (decode + IDM);
5. features EfficientNet-Lite0 (`load_encoder("efficientnet-lite0")`, [1280, 7, 7], its own resize to 224)
            on a --feature-episodes-episode dataset at S: `cache_features` (extraction + the float16
            files written once = what every epoch costs without a cache) against reading the finished
            cache through `CachedFeatures` (mmap -> float32 tensors), frames/s, and per epoch of the full
            dataset; and the real command on it, `train_own` with `--encoder efficientnet-lite0` (frozen
            features, --train-steps updates), with the feature cache (`OUT/features`, built once inside the
            call) and with `cache_features=False` (f on both frames of every window at every update):
            updates/s of each, and the whole call's wall time (the cached one includes building the cache).

The batch is small (--batch 16, not `exolam train`'s 128) so a few updates fit in seconds on a loaded
CPU; per-sample rates barely depend on it at these sizes, but read them as such. Loader and the
training step are timed apart: on a 2-core machine W workers and training share the cores, so W >= 1
ratios are upper bounds of what runs side by side (the e2e W=1 row is the measured overlap).
Numbers taken while other jobs share the CPU are lower than on an idle machine and drift between
runs: read them as ratios (loader / training, W=k / W=0, cached / uncached, 224 / 64), which are
measured side by side; the load average is printed first.

    OMP_NUM_THREADS=1 python benchmarks/own_video_speed.py          # ~2 min on our loaded 2-core CPU
    OMP_NUM_THREADS=1 python benchmarks/own_video_speed.py --episodes 4 --frames 10 --sizes 64 \\
        --workers 0 1 --train-workers 0 --train-steps 1 --seconds 0.3 --feature-episodes 1   # smoke, ~15 s
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from exolam.train.engine import TrainConfig

CAM = "observation.images.cam"
TRAIN_SIZE = 64  # the training size of these rows (`exolam train`'s default is min(32, stored): own_train_speed.py)


def smooth(n: int, size: int, seed: int) -> np.ndarray:
    """uint8 [n, size, size, 3]: smooth moving colour waves (tests/test_data_lerobot.py `smooth`)."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    fx, fy = r.uniform(0.3, 0.8, 2)
    t = np.arange(n)[:, None, None, None]
    c = np.arange(3)[None, None, None, :]
    waves = 127 + 100 * np.sin(2 * np.pi * (fx * x[None, :, :, None] + fy * y[None, :, :, None] + 0.1 * t + c / 3))
    return np.clip(waves, 0, 255).astype(np.uint8)


def write(root: Path, size: int, codec: str, episodes: int, frames: int) -> float:
    """Write the dataset; returns encoding frames/s (frame synthesis excluded)."""
    from exolam.data.lerobot_write import write_dataset

    eps = [{CAM: smooth(frames, size, e), "action": np.random.default_rng(e).normal(size=(frames, 2)).astype(
        np.float32)} for e in range(episodes)]
    feats = {CAM: {"dtype": "video", "shape": [size, size, 3]}, "action": {"dtype": "float32", "shape": [2]}}
    t = time.perf_counter()
    write_dataset(root, eps, feats, fps=30, codec=codec)
    return episodes * frames / (time.perf_counter() - t)


def loader_rate(root: Path, workers: int, batch: int, seconds: float, image_size: int | None, augment: bool = False):
    """(windows/s, first batch) of WindowSource; the first batch (worker start-up) is not timed."""
    from exolam.data.augment import PairedAugment
    from exolam.data.windows import WindowDataset, WindowSource

    win = WindowDataset(root, {"o": CAM}, frame_gap=1, image_size=image_size,
                        paired_view=PairedAugment() if augment else None)
    src = WindowSource(win, seed=0, steps=100_000, batch_size=batch, num_workers=workers)
    it = src.batches()
    first = next(it)
    n, t = 0, time.perf_counter()
    while True:
        n += len(next(it))
        if time.perf_counter() - t >= seconds:
            break
    rate = n / (time.perf_counter() - t)
    del it, src  # stops the persistent workers
    return rate, first


def step_rate(root: Path, out: Path, image_size: int, batch, steps: int, warmup: int) -> float:
    """Updates/s of the engine's step for `exolam train`'s default model at image_size, on one fixed batch."""
    from exolam.objectives import Objective
    from exolam.workflows.train_own import TrainOwnConfig, plan

    cfg = TrainOwnConfig(data=str(root), out=str(out), image_size=image_size,
                         train=TrainConfig(batch_size=len(batch))).validate()
    p = plan(cfg)
    model = p.model()
    objective = Objective(p.objective, model.d_z, p.target_dims)
    model.train(), objective.train()
    params = [q for q in list(model.parameters()) + list(objective.parameters()) if q.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.train.lr, foreach=True)
    clip = cfg.train.grad_clip

    def step():
        loss, _ = objective(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        opt.step()

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)


def e2e_rate(root: Path, out: Path, steps: int, batch: int, workers: int) -> tuple[float, float, Path]:
    """(updates/s recorded by the checkpoint, wall s of the whole train_own call, checkpoint) of `exolam train`."""
    from exolam.workflows.train_own import TrainOwnConfig, train_own

    from exolam.models.lapo import LapoLAMConfig

    cfg = TrainOwnConfig(data=str(root), out=str(out), image_size=TRAIN_SIZE, num_workers=workers, frame_gap=1,
                         idm_channels=LapoLAMConfig.idm_channels, fdm_channels=LapoLAMConfig.fdm_channels,
                         cache_features=False, guard_every=0,  # the loader path, the LAM's own widths (as before)
                         train=TrainConfig(steps=steps, batch_size=batch, save_every=steps, log_every=0))
    t = time.perf_counter()
    ckpt = train_own(cfg, log=lambda _: None)
    wall = time.perf_counter() - t
    meta = json.loads((ckpt / "config.json").read_text())
    return float(meta["updates_per_s"]), wall, ckpt


def label_rates(ckpt: Path, root: Path, out: Path, frames: int) -> tuple[float, float]:
    """(frames/s of label_dataset, frames/s of latent_actions alone) over every frame of the dataset."""
    from exolam.data.lerobot import open_dataset
    from exolam.models import checkpoint
    from exolam.models.checkpoint import checkpoint_input
    from exolam.workflows.label import label_dataset, latent_actions

    t = time.perf_counter()
    label_dataset(ckpt, root, out, log=lambda _: None)
    full = frames / (time.perf_counter() - t)
    _, inp = checkpoint_input(ckpt)
    lam = checkpoint.load_model(ckpt).float()
    t = time.perf_counter()
    latent_actions(lam, open_dataset(root), CAM, inp["frame_gap"], inp["image_size"])
    return full, frames / (time.perf_counter() - t)


def feature_rates(encoder, root: Path, cache: Path, frames: int, seconds: float) -> tuple[float, float]:
    """(frames/s of cache_features = extraction + writing, frames/s of reading the cache as float32 tensors)."""
    from exolam.data.features import CachedFeatures, cache_features

    t = time.perf_counter()
    cache_features(encoder, root, CAM, cache)
    build = frames / (time.perf_counter() - t)
    n, t = 0, time.perf_counter()
    while True:
        cached = CachedFeatures(cache)  # reopened per pass: the mmap opening is part of a read
        for e in range(len(cached)):
            x = torch.from_numpy(np.asarray(cached[e], dtype=np.float32))
            n += len(x)
        if time.perf_counter() - t >= seconds:
            break
    return build, n / (time.perf_counter() - t)


def frozen_rates(root: Path, out: Path, steps: int, batch: int) -> dict[str, tuple[float, float]]:
    """{"cached" | "uncached": (updates/s of train_own with a frozen EfficientNet-Lite0, wall s of the call)}."""
    from exolam.workflows.train_own import TrainOwnConfig, train_own

    rates = {}
    for name, cache in (("cached", True), ("uncached", False)):
        cfg = TrainOwnConfig(data=str(root), out=str(out / name), image_size=TRAIN_SIZE, encoder="efficientnet-lite0",
                             cache_features=cache, frame_gap=1, guard_every=0, train=TrainConfig(steps=steps, batch_size=batch, save_every=steps,
                                                                     log_every=0))
        t = time.perf_counter()
        ckpt = train_own(cfg, log=lambda _: None)
        wall = time.perf_counter() - t
        rates[name] = float(json.loads((ckpt / "config.json").read_text())["updates_per_s"]), wall
    return rates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--frames", type=int, default=20, help="frames per episode")
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    p.add_argument("--codec", default="h264", choices=["h264", "av1"])
    p.add_argument("--batch", type=int, default=16, help="loader and training batch (exolam train's default: 32)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="DataLoader workers of the decode stage")
    p.add_argument("--seconds", type=float, default=1.5, help="timing window per loader setting / cache read")
    p.add_argument("--steps", type=int, default=5, help="timed updates of the step rate (after 1 warm-up)")
    p.add_argument("--train-steps", type=int, default=6, help="updates of each train_own e2e run")
    p.add_argument("--train-workers", type=int, nargs="+", default=[0, 1], help="num_workers of the e2e runs")
    p.add_argument("--native-batch", type=int, default=4, help="batch of the full-resolution (S > 64) step")
    p.add_argument("--native-steps", type=int, default=2, help="timed full-resolution updates (after 1 warm-up)")
    p.add_argument("--feature-episodes", type=int, default=4, help="episodes of the EfficientNet-Lite0 dataset")
    args = p.parse_args()
    if 0 not in args.train_workers:
        p.error("--train-workers must include 0 (its checkpoint is labelled)")
    torch.set_num_threads(1)
    wall = time.perf_counter()
    n_frames = args.episodes * args.frames
    print(f"own video: {args.episodes} episodes x {args.frames} frames of smooth synthetic RGB video, {args.codec}; "
          f"lapo LAM (its own widths) trained at {TRAIN_SIZE} px, batch {args.batch}, fp32, "
          f"1 torch thread, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)

    from exolam.models.encoders import load_encoder

    encoder = load_encoder("efficientnet-lite0")
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for size in args.sizes:
            r = rows[size] = {}
            root = tmp / f"data{size}"
            r["encode"] = write(root, size, args.codec, args.episodes, args.frames)
            mb = sum(f.stat().st_size for f in (root / "videos").rglob("*.mp4")) / 2**20
            print(f"\n{size} px: wrote {n_frames} frames at {r['encode']:.0f} frames/s ({mb:.1f} MB of video)",
                  flush=True)
            r["decode"] = {}
            for w in args.workers:
                r["decode"][w], first = loader_rate(root, w, args.batch, args.seconds, TRAIN_SIZE)
                if w == args.workers[0]:
                    batch = first
                print(f"  decode W={w}: {r['decode'][w]:.0f} windows/s ({2 * r['decode'][w]:.0f} frames/s)", flush=True)
            r["augment"], _ = loader_rate(root, 0, args.batch, args.seconds, TRAIN_SIZE, augment=True)
            print(f"  decode W=0 + augmented paired view: {r['augment']:.0f} windows/s", flush=True)
            r["step"] = step_rate(root, tmp / "unused", TRAIN_SIZE, batch, args.steps, 1)
            print(f"  train step at {TRAIN_SIZE} px: {r['step']:.2f} updates/s = {r['step'] * args.batch:.1f} "
                  "samples/s", flush=True)
            r["e2e"] = {}
            for w in args.train_workers:
                ups, dt, ckpt = e2e_rate(root, tmp / f"run{size}w{w}", args.train_steps, args.batch, w)
                r["e2e"][w] = ups
                if w == 0:
                    label_ckpt = ckpt
                print(f"  train_own W={w}: {ups:.2f} updates/s ({args.train_steps} updates; the whole call "
                      f"{dt:.1f} s)", flush=True)
            r["label"], r["idm"] = label_rates(label_ckpt, root, tmp / f"labelled{size}", n_frames)
            print(f"  label: {r['label']:.0f} frames/s (latent_actions alone {r['idm']:.0f})", flush=True)
            if size > TRAIN_SIZE:
                r["native_decode"], nb = loader_rate(root, 0, args.native_batch, args.seconds, None)
                r["native_step"] = step_rate(root, tmp / "unused", size, nb, args.native_steps, 1)
                print(f"  at {size} px (no resize): decode W=0 {r['native_decode']:.0f} windows/s; train step "
                      f"{r['native_step']:.3f} updates/s = {r['native_step'] * args.native_batch:.2f} samples/s "
                      f"(batch {args.native_batch})", flush=True)
            froot = tmp / f"feat{size}"
            write(froot, size, args.codec, args.feature_episodes, args.frames)
            nf = args.feature_episodes * args.frames
            r["uncached"], r["cached"] = feature_rates(encoder, froot, tmp / f"cache{size}", nf, args.seconds)
            print(f"  EfficientNet-Lite0 on {nf} frames: uncached {r['uncached']:.1f} frames/s, cache read "
                  f"{r['cached']:.0f} frames/s", flush=True)
            r["frozen"] = frozen_rates(froot, tmp / f"frozen{size}", args.train_steps, args.batch)
            print("  train_own, frozen EfficientNet-Lite0: " + ", ".join(
                f"{k} {u:.2f} updates/s ({w:.1f} s the call)" for k, (u, w) in r["frozen"].items()), flush=True)

    b = args.batch
    sizes = args.sizes
    col = lambda xs: "".join(f"{x:>14}" for x in xs)  # noqa: E731
    print(f"\n{'stage (frames/s unless said)':<44}" + col(f"{s} px" for s in sizes))
    print(f"{'write (' + args.codec + ' encode)':<44}" + col(f"{rows[s]['encode']:.0f}" for s in sizes))
    for w in args.workers:
        print(f"{f'decode W={w} (2 frames / window, -> 64 px)':<44}"
              + col(f"{2 * rows[s]['decode'][w]:.0f}" for s in sizes))
    print(f"{'decode W=0 + augmented paired view':<44}" + col(f"{2 * rows[s]['augment']:.0f}" for s in sizes))
    print(f"{f'train step at 64 px, samples/s (batch {b})':<44}" + col(f"{rows[s]['step'] * b:.1f}" for s in sizes))
    print(f"{'train step, frames/s consumed (2 / sample)':<44}" + col(f"{2 * rows[s]['step'] * b:.1f}" for s in sizes))
    for w in args.workers:
        print(f"{f'  loader W={w} / train (< 1: starved)':<44}"
              + col(f"{rows[s]['decode'][w] / (rows[s]['step'] * b):.1f}x" for s in sizes))
    for w in args.train_workers:
        print(f"{f'train_own W={w} e2e, samples/s':<44}" + col(f"{rows[s]['e2e'][w] * b:.1f}" for s in sizes))
    if 0 in args.workers:
        print(f"{'  decode share of a serial (W=0) step':<44}" + col(
            f"{100 * (1 / rows[s]['decode'][0]) / (1 / rows[s]['decode'][0] + 1 / (rows[s]['step'] * b)):.0f}%"
            for s in sizes))
    print(f"{'label (label_dataset, all frames)':<44}" + col(f"{rows[s]['label']:.0f}" for s in sizes))
    print(f"{'  latent_actions alone (decode + IDM)':<44}" + col(f"{rows[s]['idm']:.0f}" for s in sizes))
    print(f"{'EfficientNet-Lite0 uncached (extract)':<44}" + col(f"{rows[s]['uncached']:.1f}" for s in sizes))
    print(f"{'EfficientNet-Lite0 cached (read)':<44}" + col(f"{rows[s]['cached']:.0f}" for s in sizes))
    print(f"{'  cached / uncached':<44}" + col(f"{rows[s]['cached'] / rows[s]['uncached']:.0f}x" for s in sizes))
    for k in ("cached", "uncached"):
        print(f"{f'train_own frozen EffNet {k}, samples/s':<44}" + col(f"{rows[s]['frozen'][k][0] * b:.1f}"
                                                                        for s in sizes))
    ratio = {s: rows[s]["frozen"]["cached"][0] / rows[s]["frozen"]["uncached"][0] for s in sizes}
    print(f"{'  cached / uncached':<44}" + col(f"{ratio[s]:.1f}x" for s in sizes))
    for s in sizes:
        r = rows[s]
        if "native_step" in r:
            per64, per = 1 / (r["step"] * b), 1 / (r["native_step"] * args.native_batch)
            print(f"\ntraining at {s} px (lapo LAM frame {s}, batch {args.native_batch}): "
                  f"{r['native_step'] * args.native_batch:.2f} samples/s, {per / per64:.0f}x the cost per sample at "
                  f"{TRAIN_SIZE} px; decode at {s} px (no resize) {r['native_decode']:.0f} windows/s = "
                  f"{r['native_decode'] * per:.0f}x what it trains; 16,000 updates x 128 (exolam train's defaults) "
                  f"~ {16_000 * 128 * per / 3600:.0f} h on one core vs {16_000 * 128 * per64 / 3600:.0f} h at "
                  f"{TRAIN_SIZE} px")
    print(f"per epoch of the {n_frames}-frame dataset, EfficientNet-Lite0 features: " + ", ".join(
        f"{s} px uncached {n_frames / rows[s]['uncached']:.0f} s, cached {n_frames / rows[s]['cached']:.2f} s "
        f"(after a one-time build ~{n_frames / rows[s]['uncached']:.0f} s)" for s in sizes))
    print("loader W=k / train: windows/s decoded / samples/s trained, measured apart (W >= 1 shares the 2 cores "
          "with training: an upper bound); train_own rows are the real command, first batch and start-up included.")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
