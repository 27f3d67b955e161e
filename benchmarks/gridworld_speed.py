"""Grid-world VQ LAM training speed: the naive loop vs our sweep path, measured side by side in one run.

    naive: fp32, 1 process with 2 torch threads, plain autograd loop (`train.train_single`)
    ours:  bf16 autocast, 2 processes x 1 torch thread each (`train_vq.train_vq`), aggregate rate

Both at the paper's size (App. C Table 2: IDM conv [128, 128, 128], batch 128) on sigma = 1 data,
for each objective of Fig. 5b (vanilla, + X-exo, + Action-pred: X-exo runs the IDM and FDM twice).
Prints updates/s, the ratio, and the projected time of the full Fig. 5b sweep (3 objectives x
6 sigmas x 3 seeds = 54 runs x 16k updates, evaluation excluded) for both paths.

    python benchmarks/gridworld_speed.py                 # ~2-3 min; run on a quiet machine
    python benchmarks/gridworld_speed.py --updates 20 --naive-threads 1 --workers 1   # smoke check

Never run it next to other CPU work: torch with 2 threads collapses when another process holds a
core (notes/platform.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import multiprocessing
import os
import time

OBJECTIVES = ("lam", "lam+xexo:1", "lam+robust-action:1")
FULL_RUNS_PER_OBJECTIVE = 6 * 3  # sigmas x seeds of Fig. 5b
FULL_UPDATES = 16_000
WARMUP = 15


def _job(objective: str):
    from exolam.envs.gridworld import GridWorldConfig
    from exolam.train_vq import VQSweepConfig, VQTrainConfig, make_job

    cfg = VQSweepConfig(env=GridWorldConfig(n_train=8192, n_test=256), train=VQTrainConfig(precision="fp32"))
    return make_job(f"bench|{objective}", 0, objective, cfg, 1.0)


def naive_rates(updates: int, threads: int) -> dict[str, float]:
    """updates/s of the plain fp32 autograd loop (train.train_single), one process, `threads` threads."""
    import torch

    from exolam.envs.gridworld import make_dataset
    from exolam.train import train_single
    from exolam.train_vq import build

    torch.set_num_threads(threads)
    rates = {}
    for objective in OBJECTIVES:
        job = _job(objective)
        lam, obj = build(job)
        train, _ = make_dataset(job.env)
        t = job.train
        train_single(lam, obj, train, 0, WARMUP, t.batch_size, t.lr, t.grad_clip)
        t0 = time.perf_counter()
        train_single(lam, obj, train, 1, updates, t.batch_size, t.lr, t.grad_clip)
        rates[objective] = updates / (time.perf_counter() - t0)
    return rates


def _ours_worker(updates: int, barrier) -> dict[str, float]:
    """One of the sweep's worker processes: 1 thread, bf16 autocast, train_vq."""
    import torch

    from exolam.envs.gridworld import make_dataset
    from exolam.train_vq import build, train_vq

    torch.set_num_threads(1)
    rates = {}
    for objective in OBJECTIVES:
        job = _job(objective)
        tcfg = dataclasses.replace(job.train, precision="bf16")
        lam, obj = build(job)
        train, _ = make_dataset(job.env)
        train_vq(lam, obj, train, 0, dataclasses.replace(tcfg, steps=WARMUP))
        barrier.wait()  # both processes time the same objective at the same time
        t0 = time.perf_counter()
        train_vq(lam, obj, train, 1, dataclasses.replace(tcfg, steps=updates))
        rates[objective] = updates / (time.perf_counter() - t0)
    return rates


def ours_rates(updates: int, workers: int) -> list[dict[str, float]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(workers)
        with ctx.Pool(workers) as pool:
            return pool.starmap(_ours_worker, [(updates, barrier)] * workers)


def sweep_hours(rate: dict[str, float]) -> float:
    return sum(FULL_RUNS_PER_OBJECTIVE * FULL_UPDATES / rate[o] for o in OBJECTIVES) / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=300, help="timed updates per objective and path")
    p.add_argument("--naive-threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    print(f"VQ LAM, paper size (IDM 128x3, batch 128), sigma = 1, {args.updates} timed updates per objective "
          f"(after {WARMUP} warm-up)")
    t0 = time.perf_counter()
    naive = naive_rates(args.updates, args.naive_threads)
    per_proc = ours_rates(args.updates, args.workers)
    ours = {o: sum(r[o] for r in per_proc) for o in OBJECTIVES}
    print(f"\n{'objective':<22}{'naive fp32 1x' + str(args.naive_threads) + 'thr':>20}"
          f"{'ours bf16 ' + str(args.workers) + 'x1thr':>24}{'ratio':>8}")
    for o in OBJECTIVES:
        procs = " + ".join(f"{r[o]:.1f}" for r in per_proc)
        print(f"{o:<22}{naive[o]:>16.1f} u/s{ours[o]:>12.1f} u/s ({procs}){ours[o] / naive[o]:>7.2f}x")
    hn, ho = sweep_hours(naive), sweep_hours(ours)
    print(f"\nprojected Fig. 5b sweep (54 runs x {FULL_UPDATES} updates, no eval): naive {hn:.2f} h, "
          f"ours {ho:.2f} h, speed-up {hn / ho:.2f}x")
    print(f"(benchmark wall time {time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
