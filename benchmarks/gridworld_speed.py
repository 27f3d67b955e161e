"""Grid-world VQ LAM: what the training engine costs per update against a plain hand-written loop.

    hand:   `hand_loop` below: the loop the engine replaced (`train_vq.train_vq`): Adam (foreach),
            `clip_grad_norm_`, `torch.autocast` for bf16, minibatches `data.index(idx)` from `batch_indices`
    engine: `train.engine.fit` on a 1-device Fabric (`ckpt=None`, `metrics=None`): the sweep's path

Both at the paper's size (App. C Table 2: `VQLAMConfig()` defaults, batch 128) on sigma = 1 data
(n_train 8192), same precision, 1 process x 1 torch thread, for each objective of Fig. 5b (vanilla,
+ X-exo, + Action-pred; X-exo runs the IDM and FDM twice). After a warm-up of each path the two
are timed in ABBA order (hand, engine, engine, hand, ...), so a drift in machine load hits both
alike; each timed segment is one whole call (optimizer set-up included). The same on a tiny VQ LAM
isolates the engine's fixed cost per update in ms (Python and Fabric wrappers; the compute is the
same), which is far below the run-to-run noise of the paper-size rates. Then --workers processes
(the sweep's layout: 2 x 1 thread) train through the engine at the same time, released together by
a Barrier, and their summed rate projects the full Fig. 5b sweep (3 objectives x 6 sigmas x 3 seeds
= 54 runs x 16k updates, evaluation excluded).

    OMP_NUM_THREADS=1 python benchmarks/gridworld_speed.py     # ~4 min on our 2-core CPU (AVX2): 221-260 s measured
    OMP_NUM_THREADS=1 python benchmarks/gridworld_speed.py --updates 10 --repeats 1 --warmup 2   # smoke, ~50 s

--precision defaults to "32": on an AVX2-only CPU bf16 is emulated and ~15x slower (use
bf16-mixed only where the CPU has avx512_bf16 / AMX). Absolute rates drift +-20 % between runs
(and more next to other CPU work); the ratios are measured side by side in one run. With Linux
autogroup scheduling (sched_autogroup_enabled = 1) a `nice`d job started from another session still
takes its fair share: next to one, the --workers processes get about 1 core between them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time

OBJECTIVES = ("lam", "lam+xexo:1", "lam+robust-action:1")
FULL_RUNS_PER_OBJECTIVE = 6 * 3  # sigmas x seeds of Fig. 5b
FULL_UPDATES = 16_000


def hand_loop(lam, objective, data, seed: int, steps: int, batch_size: int, lr: float, grad_clip: float,
              bf16: bool) -> float:
    """The plain loop (same math as the engine): returns the mean loss over the last 1 % of updates."""
    import torch

    from exolam.data.sampling import batch_indices

    lam.train(), objective.train()
    params = [p for p in list(lam.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)
    tail, acc = max(1, steps // 100), torch.zeros(())
    for step, idx in enumerate(batch_indices(seed, len(data), steps, batch_size)):
        batch = data.index(idx)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss, _ = objective(lam, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        if step >= steps - tail:
            acc += loss.detach().float()
    return float(acc) / tail


class Bench:
    """One objective at paper size: a model per path (same init), the training data, both timed calls."""

    def __init__(self, objective: str, precision: str, model=None):
        import torch

        from exolam.data.sampling import TensorSource
        from exolam.data.transitions import Transitions
        from exolam.envs.gridworld import GridWorldConfig, make_dataset
        from exolam.experiments.vqlam import VQSweepConfig, build, fields_read, make_job
        from exolam.train import engine

        torch.set_num_threads(1)
        cfg = VQSweepConfig(env=GridWorldConfig(n_train=8192, n_test=256),
                            train=engine.TrainConfig(precision=precision))
        if model is not None:
            cfg.model = model
        self.job = make_job(f"bench|{objective}", 0, objective, cfg, 1.0)
        self.hand_model, self.hand_obj = build(self.job)
        self.engine_model, self.engine_obj = build(self.job)
        data, _ = make_dataset(self.job.env)
        fields = fields_read(self.engine_obj)  # the hand loop gathers the same fields (as train_vq did)
        self.data = Transitions(**{k: v for k, v in data.fields().items() if k in fields})
        self.fabric = engine.make_fabric(self.job.train, "cpu")  # once per job, as in vqlam.run_job
        self._engine, self._source = engine, TensorSource

    def hand(self, steps: int, seed: int) -> float:
        t, bf16 = self.job.train, self.job.train.precision == "bf16-mixed"
        t0 = time.perf_counter()
        hand_loop(self.hand_model, self.hand_obj, self.data, seed, steps, t.batch_size, t.lr, t.grad_clip, bf16)
        return time.perf_counter() - t0

    def engine(self, steps: int, seed: int) -> float:
        import dataclasses

        cfg = dataclasses.replace(self.job.train, steps=steps)
        t0 = time.perf_counter()
        source = self._source(self.data, seed, steps, cfg.batch_size, None, self.fabric.device)
        self._engine.fit(self.fabric, self.engine_model, self.engine_obj, source, cfg, spec={}, ckpt=None, metrics=None)
        return time.perf_counter() - t0


def one_process(updates: int, repeats: int, warmup: int, precision: str) -> dict[str, tuple[list, list]]:
    """Per objective: (hand seconds, engine seconds) of each repeat, ABBA order after a warm-up."""
    out = {}
    for objective in OBJECTIVES:
        b = Bench(objective, precision)
        b.hand(warmup, 0), b.engine(warmup, 0)
        hand, eng = [], []
        for r in range(repeats):
            first, second = (b.hand, b.engine) if r % 2 == 0 else (b.engine, b.hand)
            t1, t2 = first(updates, 1 + r), second(updates, 1 + r)
            hand.append(t1 if r % 2 == 0 else t2)
            eng.append(t2 if r % 2 == 0 else t1)
        out[objective] = (hand, eng)
        print(f"  {objective}: hand {', '.join(f'{updates / t:.2f}' for t in hand)} u/s; "
              f"engine {', '.join(f'{updates / t:.2f}' for t in eng)} u/s", flush=True)
    return out


def fixed_cost(updates: int, repeats: int, precision: str) -> tuple[float, float]:
    """(hand, engine) seconds per update on a tiny VQ LAM (objective lam, batch 128, ABBA, best repeat), where
    the compute is small and what the engine adds per update (Python, Fabric wrappers) shows in ms."""
    from exolam.models.vq import VQLAMConfig

    b = Bench("lam", precision, VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8)))
    b.hand(20, 0), b.engine(20, 0)
    hand, eng = [], []
    for r in range(repeats):
        pair = (b.hand, b.engine) if r % 2 == 0 else (b.engine, b.hand)
        t = [f(updates, 1 + r) for f in pair]
        hand.append(t[r % 2]), eng.append(t[1 - r % 2])
    return min(hand) / updates, min(eng) / updates


def _worker(updates: int, warmup: int, precision: str, barrier) -> dict[str, float]:
    """One of the sweep's worker processes (1 thread): engine updates/s per objective, timed together."""
    import torch

    torch.set_num_threads(1)
    rates = {}
    for objective in OBJECTIVES:
        b = Bench(objective, precision)
        b.engine(warmup, 0)
        barrier.wait()  # every process times the same objective at the same time
        rates[objective] = updates / b.engine(updates, 1)
    return rates


def processes(workers: int, updates: int, warmup: int, precision: str) -> list[dict[str, float]]:
    ctx = multiprocessing.get_context("spawn")
    with ctx.Manager() as manager:
        barrier = manager.Barrier(workers)
        with ctx.Pool(workers) as pool:
            return pool.starmap(_worker, [(updates, warmup, precision, barrier)] * workers)


def sweep_hours(rate: dict[str, float]) -> float:
    """Wall hours of the Fig. 5b sweep's training at `rate` (updates/s of all workers together)."""
    return sum(FULL_RUNS_PER_OBJECTIVE * FULL_UPDATES / rate[o] for o in OBJECTIVES) / 3600


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--updates", type=int, default=80, help="updates per timed call")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per path and objective (ABBA order)")
    p.add_argument("--warmup", type=int, default=5, help="untimed updates per path and objective first")
    p.add_argument("--precision", default="32", choices=("32", "bf16-mixed", "auto"))
    p.add_argument("--workers", type=int, default=2, help="processes x 1 thread for the sweep projection (0: skip)")
    args = p.parse_args()
    os.environ.setdefault("MPLBACKEND", "Agg")
    import torch

    from exolam.train.engine import resolve_precision

    torch.set_num_threads(1)
    precision = resolve_precision(args.precision, "cpu")
    wall = time.perf_counter()
    print(f"VQ LAM, paper size (VQLAMConfig() defaults, batch 128), sigma = 1, n_train 8192, precision {precision}, "
          f"torch {torch.__version__}, 1 thread; {args.repeats} x {args.updates} timed updates per path and objective "
          f"(after {args.warmup} warm-up); load average {os.getloadavg()[0]:.1f}", flush=True)
    one = one_process(args.updates, args.repeats, args.warmup, precision)
    print(f"\n{'objective':<22}{'hand u/s':>10}{'engine u/s':>12}{'overhead':>10}{'best-of':>9}   per repeat pair")
    hand_rate, eng_rate = {}, {}
    for o, (h, e) in one.items():
        hand_rate[o], eng_rate[o] = args.updates * len(h) / sum(h), args.updates * len(e) / sum(e)
        per = ", ".join(f"{100 * (te / th - 1):+.1f}" for th, te in zip(h, e))
        print(f"{o:<22}{hand_rate[o]:>10.2f}{eng_rate[o]:>12.2f}{100 * (sum(e) / sum(h) - 1):>+9.1f}%"
              f"{100 * (min(e) / min(h) - 1):>+8.1f}%   ({per} %)")
    tot = [sum(sum(x[i]) for x in one.values()) for i in (0, 1)]
    best = [sum(min(x[i]) for x in one.values()) for i in (0, 1)]
    print(f"engine overhead per update (goal <= 5 %), all objectives together: {100 * (tot[1] / tot[0] - 1):+.1f} % "
          f"on total time, {100 * (best[1] / best[0] - 1):+.1f} % on each path's best repeat (interference only "
          f"slows a repeat down, so best-of is the less noisy figure)")

    th, te = fixed_cost(200, 6, precision)
    paper = sum(sum(x[0]) for x in one.values()) / (args.updates * args.repeats * len(one))  # hand s/update, mean
    print(f"fixed cost per update (tiny VQ LAM, lam, batch 128, best of 6 x 200): hand {1e3 * th:.2f} ms, "
          f"engine {1e3 * te:.2f} ms: the engine adds {1e3 * (te - th):+.2f} ms per update = "
          f"{100 * (te - th) / paper:+.2f} % of a paper-size update ({1e3 * paper:.0f} ms, objectives' mean)")

    h1, e1 = sweep_hours({o: 2 * r for o, r in hand_rate.items()}), sweep_hours({o: 2 * r for o, r in eng_rate.items()})
    print(f"\nprojected Fig. 5b sweep (54 runs x {FULL_UPDATES} updates, no eval), 2 workers x 1 thread assumed "
          f"to give 2x the 1-process rate: hand {h1:.2f} h, engine {e1:.2f} h")
    if args.workers:
        t = time.perf_counter()
        per_proc = processes(args.workers, args.updates, args.warmup, precision)
        agg = {o: sum(r[o] for r in per_proc) for o in OBJECTIVES}
        print(f"\nengine, {args.workers} processes x 1 thread at once ({args.updates} updates each, "
              f"{time.perf_counter() - t:.0f} s):")
        print(f"{'objective':<22}{'aggregate u/s':>14}{'per process':>24}{'vs 1 process':>14}")
        for o in OBJECTIVES:
            procs = " + ".join(f"{r[o]:.2f}" for r in per_proc)
            print(f"{o:<22}{agg[o]:>14.2f}{procs:>24}{agg[o] / eng_rate[o]:>13.2f}x")
        hm, hh = sweep_hours(agg), sweep_hours({o: agg[o] * hand_rate[o] / eng_rate[o] for o in OBJECTIVES})
        print(f"projected Fig. 5b sweep with the measured {args.workers}-process aggregate: engine {hm:.2f} h "
              f"(hand loop at the same scaling: {hh:.2f} h)")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
