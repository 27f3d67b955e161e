"""2-process CPU DDP through the engine vs 1 process, on the same global batch (never asserted in tests).

The grid-world VQ LAM at the paper's size (App. C Table 2: `VQLAMConfig()` defaults, global batch
128, objective "lam", sigma = 1 data, n_train 8192), trained by `train.engine.fit`:

    1 process: `TrainConfig(devices=1)`, 1 torch thread
    DDP:       `TrainConfig(devices=2)`: `engine.launch` spawns 2 processes (gloo, ddp_spawn), 1 thread
               each, each computing half of the global batch; gradients all-reduced every update

Each timed figure is the engine's own loop time (`FitResult.seconds`, after a warm-up `fit` in the
same process, so spawning, imports and the gloo rendezvous are excluded; they are reported apart
as the set-up cost per run). The two layouts alternate (1, DDP, 1, DDP, ...) so drift hits both alike.
Reported: updates/s of each, the DDP speed-up and parallel efficiency (speed-up / 2: the 2 processes
use 2 cores), and the DDP overhead in core-time per update (2 x t_DDP / t_1 - 1).

    OMP_NUM_THREADS=1 python benchmarks/engine_ddp_speed.py                  # ~1.5 min on our 2-core CPU
    OMP_NUM_THREADS=1 python benchmarks/engine_ddp_speed.py --updates 10 --repeats 1   # smoke, ~20 s

Run it on an otherwise idle machine: with Linux autogroup scheduling (sched_autogroup_enabled = 1)
a `nice`d job started from another session still takes its fair share, so next to one the 2 DDP
processes get about 1 core between them.
"""

from __future__ import annotations

import argparse
import os
import time


def _fit(fabric, updates: int, warmup: int, precision: str) -> tuple[float, float]:
    """In every process: warm-up fit, then the timed fit; (timed loop seconds, warm-up seconds)."""
    import dataclasses

    import torch

    from exolam.data.sampling import TensorSource
    from exolam.envs.gridworld import GridWorldConfig, make_dataset
    from exolam.experiments.vqlam import VQSweepConfig, build, fields_read, make_job
    from exolam.train import engine

    torch.set_num_threads(1)
    cfg = VQSweepConfig(env=GridWorldConfig(n_train=8192, n_test=256),
                        train=engine.TrainConfig(precision=precision, devices=fabric.world_size))
    job = make_job("bench|lam", 0, "lam", cfg, 1.0)
    model, objective = build(job)
    data, _ = make_dataset(job.env)
    seconds = []
    for seed, steps in ((0, warmup), (1, updates)):
        tc = dataclasses.replace(job.train, steps=steps)
        source = TensorSource(data, seed, steps, tc.batch_size, fields_read(objective), fabric.device)
        seconds.append(engine.fit(fabric, model, objective, source, tc, spec={}, ckpt=None, metrics=None).seconds)
    return seconds[1], seconds[0]


def run(devices: int, updates: int, warmup: int, precision: str) -> tuple[float, float]:
    """(timed loop seconds, set-up seconds outside both loops) of one run with `devices` processes."""
    from exolam.train import engine

    cfg = engine.TrainConfig(devices=devices, precision=precision)
    t0 = time.perf_counter()
    fabric = engine.make_fabric(cfg, "cpu")
    if devices > 1:
        try:
            loop, warm = engine.launch(fabric, _fit, updates, warmup, precision)  # rank 0's result
        except Exception as e:  # seen in ~2 of 17 launches here: a rank aborts with SIGABRT
            print(f"  DDP launch failed ({type(e).__name__}: {e}); once more", flush=True)
            t0 = time.perf_counter()
            fabric = engine.make_fabric(cfg, "cpu")
            loop, warm = engine.launch(fabric, _fit, updates, warmup, precision)
    else:
        loop, warm = _fit(fabric, updates, warmup, precision)
    return loop, time.perf_counter() - t0 - loop - warm


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=150, help="timed updates per run")
    p.add_argument("--repeats", type=int, default=2, help="runs per layout (alternating)")
    p.add_argument("--warmup", type=int, default=5, help="untimed updates per run first")
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed", "auto"))
    args = p.parse_args()
    import torch

    torch.set_num_threads(1)
    wall = time.perf_counter()
    print(f"VQ LAM, paper size (VQLAMConfig() defaults), objective lam, global batch 128, precision {args.precision}, "
          f"torch {torch.__version__}; {args.repeats} x {args.updates} timed updates per layout "
          f"(after {args.warmup} warm-up); load average {os.getloadavg()[0]:.1f}", flush=True)
    times = {1: [], 2: []}
    for r in range(args.repeats):
        for devices in (1, 2):
            loop, setup = run(devices, args.updates, args.warmup, args.precision)
            times[devices].append((loop, setup))
            print(f"  repeat {r + 1}, {devices} process{'es' if devices > 1 else ''}: {args.updates / loop:.2f} u/s "
                  f"(set-up outside the loops {setup:.1f} s)", flush=True)
    t1 = sum(t for t, _ in times[1]) / (args.updates * args.repeats)
    t2 = sum(t for t, _ in times[2]) / (args.updates * args.repeats)
    setup = {d: sum(s for _, s in times[d]) / args.repeats for d in (1, 2)}
    speedup = t1 / t2
    print("\n| layout | updates/s | ms / update | core-ms / update |")
    print("|---|---|---|---|")
    print(f"| 1 process x 1 thread | {1 / t1:.2f} | {1e3 * t1:.1f} | {1e3 * t1:.1f} |")
    print(f"| DDP 2 processes x 1 thread (gloo) | {1 / t2:.2f} | {1e3 * t2:.1f} | {2e3 * t2:.1f} |")
    print(f"\nDDP speed-up {speedup:.2f}x, parallel efficiency {100 * speedup / 2:.0f} %, "
          f"DDP time per update {100 * (t2 / t1 - 1):+.1f} % vs 1 process, "
          f"core-time overhead per update {100 * (2 * t2 / t1 - 1):+.1f} %")
    print(f"set-up per run outside the training loops (model, data, Fabric; for DDP also spawn, imports, gloo): "
          f"1 process {setup[1]:.1f} s, DDP {setup[2]:.1f} s")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
