"""`exolam train` speed, before and after issue 23, side by side in one run: samples/s of the LAPO LAM at
32, 64 and 224 px, and how far the training step is from this machine's matmul peak.

Data: a synthetic LeRobot v3.0 dataset stored like a camera, --episodes x --frames of smooth moving colour
waves at 224 x 224 (h264), resized by the loader to each training size S. Per S, each row is the real
command, `train_own(TrainOwnConfig(...))` in this process, --steps[S] updates of batch --batch, frame
gap 1, guards off; samples/s = updates/s (as the checkpoint records it: the loop, loader included) x batch:

    before          the LAPO LAM's own widths (IDM 32-64-128-128, FDM 32-64-128, the old default), frames
                    decoded for every window at every update (`--no-cache-features`), precision auto
    + frame cache   the same, training on frames decoded once into OUT/features (float32, exact)
    + cache, fp32   the same in fp32 (what `precision auto` picks on a CPU without native bf16)
    defaults now    + the new default widths (IDM 32-64-64, FDM 16-32-64): `exolam train`'s defaults
                    (the frame-cache build time is printed apart: it is paid once per run folder)

Then the compute alone: one in-memory batch, forward + backward + Adam, for the old widths at each S, in
fp32 and bf16 autocast, NCHW and channels_last; achieved GFLOP/s = FLOPs of one step
(torch.utils.flop_counter, forward + backward) x steps/s, against the measured peak of a 2048 x 2048
matmul in the same precision on the same threads.

    python benchmarks/own_train_speed.py [--real ../shared/data/open50-10ep]     # ~6 min on 2 cores (+3 with --real)
    python benchmarks/own_train_speed.py --sizes 32 --episodes 2 --frames 10 --seconds 0.5   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from exolam.models.lapo import LapoLAM, LapoLAMConfig
from exolam.train.engine import TrainConfig, native_bf16_cpu
from exolam.workflows.train_own import TrainOwnConfig, train_own

OLD_WIDTHS = {"idm_channels": LapoLAMConfig.idm_channels, "fdm_channels": LapoLAMConfig.fdm_channels}

p = argparse.ArgumentParser()
p.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 224])
p.add_argument("--episodes", type=int, default=20)
p.add_argument("--frames", type=int, default=50)
p.add_argument("--batch", type=int, default=32)
p.add_argument("--seconds", type=float, default=3.0, help="timing window of each compute-only row")
p.add_argument("--real", default="", help="also a real LeRobot dataset (its first camera): the e2e rows on it")
args = p.parse_args()
STEPS = {32: 60, 64: 30, 224: 4}


def peak(dtype: torch.dtype, seconds: float) -> float:
    a, b = torch.randn(2048, 2048).to(dtype), torch.randn(2048, 2048).to(dtype)
    a @ b
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        a @ b
        n += 1
    return 2 * 2048 ** 3 * n / (time.perf_counter() - t0) / 1e9


def compute_row(size: int, bf16: bool, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = LapoLAM(LapoLAMConfig(image_size=size))
    o, o2 = torch.rand(args.batch, 3, size, size), torch.rand(args.batch, 3, size, size)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        o, o2 = (x.contiguous(memory_format=torch.channels_last) for x in (o, o2))
    opt = torch.optim.Adam(model.parameters(), 1e-3)

    def step():
        with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            loss = ((model.decode(o, model.encode(o, o2)).float() - o2) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()

    with FlopCounterMode(display=False) as fc:
        step()
    step()
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        step()
        n += 1
    rate = n / (time.perf_counter() - t0)
    return {"size": size, "precision": "bf16" if bf16 else "fp32", "layout": "channels_last" if channels_last else "NCHW",
            "samples_per_s": round(rate * args.batch, 1), "gflop_per_step": round(fc.get_total_flops() / 1e9, 2),
            "gflop_per_s": round(fc.get_total_flops() * rate / 1e9, 1)}


def e2e(data: Path, root: Path, size: int, name: str, **kw) -> dict:
    train = TrainConfig(steps=STEPS.get(size, 10), batch_size=args.batch, lr=1e-3, precision=kw.pop("precision", "auto"),
                        log_every=0)
    cfg = TrainOwnConfig(data=str(data), out=str(root / f"{name}-{size}"), image_size=size, frame_gap=1, guard_every=0,
                         train=train, **kw)
    t0 = time.perf_counter()
    ckpt = train_own(cfg, log=lambda m: None)
    wall = time.perf_counter() - t0
    meta = json.loads((ckpt / "config.json").read_text())
    rate = meta["updates_per_s"] * args.batch
    return {"size": size, "row": name, "samples_per_s": round(rate, 1), "wall_s": round(wall, 1),
            "train_s": round(meta["train_seconds"], 1)}


def main() -> None:
    print(f"load average {os.getloadavg()[0]:.1f}, torch threads {torch.get_num_threads()}, "
          f"native bf16 {native_bf16_cpu()}, batch {args.batch}", flush=True)
    from own_video_speed import CAM, write  # noqa: F401  (benchmarks/ is the working directory's sibling)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        write(data, 224, "h264", args.episodes, args.frames)
        sets = [("synthetic 224 px h264", data, CAM, args.sizes)]
        if args.real:
            sets.append((Path(args.real).name, Path(args.real), None, [s for s in args.sizes if s <= 64]))
        for label, root, cam, sizes in sets:
            for size in sizes:
                base = {"camera": cam, **OLD_WIDTHS}
                for name, kw in (("before", {**base, "cache_features": False}), ("+ frame cache", base),
                                 ("+ cache, fp32", {**base, "precision": "32"}), ("defaults now", {"camera": cam})):
                    tag = f"{label[:4]}-" + name.replace(" ", "").replace(",", "").replace("+", "p")
                    rows.append({"data": label, **e2e(root, Path(tmp), size, tag, **kw)})
                    rows[-1]["row"] = name
                    print(json.dumps(rows[-1]), flush=True)
    print("\nsamples/s, e2e (`exolam train` loop, loader included):")
    print(f"{'data':>22} {'size':>5} {'before':>9} {'+cache':>9} {'+cache fp32':>12} {'defaults':>9} "
          f"{'cache/before':>13} {'defaults/before':>16}")
    for label, _, _, sizes in sets:
        for size in sizes:
            r = {x["row"]: x["samples_per_s"] for x in rows if x["size"] == size and x["data"] == label}
            print(f"{label:>22} {size:>5} {r['before']:>9} {r['+ frame cache']:>9} {r['+ cache, fp32']:>12} "
                  f"{r['defaults now']:>9} {r['+ frame cache'] / r['before']:>12.1f}x "
                  f"{r['defaults now'] / r['before']:>15.1f}x")
    peaks = {"fp32": peak(torch.float32, args.seconds), "bf16": peak(torch.bfloat16, args.seconds)}
    print(f"\nmatmul peak 2048^2: fp32 {peaks['fp32']:.0f} GFLOP/s, bf16 {peaks['bf16']:.0f} GFLOP/s")
    print("compute only (one in-memory batch; the old widths):")
    for size in args.sizes:
        for bf16 in (False, True):
            for cl in (False, True):
                r = compute_row(size, bf16, cl)
                r["of_peak"] = round(r["gflop_per_s"] / peaks[r["precision"]], 3)
                print(json.dumps(r), flush=True)


if __name__ == "__main__":
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    main()
