"""Distracting Control (App. D): LAM training samples/s against the loader's decode rate, and policy evaluation steps/s.

In one run:

1. collects a small dataset (--episodes x --frames, paired renders on, h264) with a seeded random policy
   `g.uniform(-1, 1, 6)` at the CPU preset's image size (32 px) and at the paper's (64 px), in a temp folder;
2. for each scale (`cpu`: `control.cpu_config()`'s LAM at 32 px, batch 32; `paper`: `control.Config()`'s LAM
   at 64 px, batch 128) and each variant (default `lam`, `lam+xexo:1`, `lam+robust-flow:1`, `lam@ema`), with
   the LAM, `Objective` and `WindowDataset` fields built as `control_jobs.train_lam` builds them (paired view
   `o_alt` for xexo, `flow=True` for robust-flow, `labelled_episodes` for robust-action, `ema_hook` for @ema):
     loader    windows/s of a `WindowSource` over the collected dataset (random windows, the preset's batch),
               with num_workers 0 and 1; the first batch (worker start-up) is not timed;
     training  updates/s of the engine's step on one fixed in-memory batch (the loader's first batch):
               forward, backward, global-norm clip, Adam (foreach), the EMA hook for @ema; fp32, 1 thread;
               --warmup untimed updates first (--paper-warmup at paper scale: none by default, where one
               update takes seconds); samples/s = updates/s x batch size;
   and prints loader / training ("x times what training consumes": below 1 the loader starves training at
   that setting). The experiment runs `WindowSource` with num_workers = 0 inside each sweep worker process
   (2 processes x 1 thread on CPU), so decoding is not overlapped with training there: a step costs
   training time + decode time of its batch. The "W=0 share" column is decode / (training + decode), and
   "effective" is the samples/s of that serial step;
3. env steps/s of `evaluate_policy` (lockstep) at 32 px with a `ConvPolicy` of the cpu preset (random
   weights, `bc_policy`), --eval-episodes x --eval-steps, beside the same rollout with a constant action
   (env step + render alone), so the policy's share of an evaluation step is measured too.

Numbers taken while other jobs share the CPU are lower than on an idle machine and drift between runs:
read them as ratios (loader / training, W=1 / W=0, policy / env), which are measured side by side; the
load average is printed first. With one timed update per paper-scale variant (the default) those rates
are single samples: raise --paper-steps / --repeats where time allows. On a 2-core machine the W=1
worker and the training step would share the cores, so the W=1 ratios are upper bounds of what runs
side by side.

    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/control_train_speed.py        # ~1.5 min on our loaded 2-core CPU
    OMP_NUM_THREADS=1 MUJOCO_GL=egl python benchmarks/control_train_speed.py --episodes 2 --frames 40 \\
        --steps 3 --paper-steps 1 --seconds 0.3 --eval-steps 20 --variants lam lam+robust-flow:1   # smoke, ~1 min
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time

import numpy as np
import torch

VARIANTS = ("lam", "lam+xexo:1", "lam+robust-flow:1", "lam@ema")


def random_policy(state, g):
    return g.uniform(-1, 1, 6)


def scales():
    """name -> the preset whose LAM, batch and image size that scale uses."""
    from exolam.experiments.control import Config, cpu_config

    return {"cpu": cpu_config(), "paper": Config()}


def collect_data(root: str, image_size: int, episodes: int, frames: int) -> tuple[str, float]:
    import logging

    from exolam.envs.control import ControlConfig
    from exolam.envs.control_collect import collect

    logging.getLogger("absl").setLevel(logging.ERROR)
    t = time.perf_counter()
    path = collect(ControlConfig(image_size=image_size), random_policy, os.path.join(root, f"px{image_size}"),
                   episodes, frames, seed=0)
    return str(path), time.perf_counter() - t


def build(cfg, variant: str, data: str, workers: int):
    """(lam, objective, hooks, source) of `variant` as control_jobs.train_lam builds them (seed 0)."""
    from exolam.data.flow import flow_dim
    from exolam.data.lerobot import open_dataset
    from exolam.data.windows import WindowDataset, WindowSource
    from exolam.experiments.control_jobs import ACTION, ALT, IMAGE, labelled_episodes, parse_variant
    from exolam.models.lapo import LapoLAM, ema_hook
    from exolam.objectives import Objective, parse_objective

    objective_text, encoder = parse_variant(variant)
    terms = {t.name for t in parse_objective(objective_text)}
    fields = {"o": IMAGE, "a": ACTION} | ({"o_alt": ALT} if "xexo" in terms else {})
    n = len(open_dataset(data).episode_lengths)
    labelled = labelled_episodes(n, cfg.label_fractions[0], 0) if "robust-action" in terms else None
    ds = WindowDataset(data, fields, frame_gap=1, image_size=cfg.env.image_size, episodes=range(n),
                       labelled_episodes=labelled, flow="robust-flow" in terms)
    source = WindowSource(ds, 0, 1_000_000, cfg.train.batch_size, num_workers=workers)
    torch.manual_seed(0)
    lam = LapoLAM(dataclasses.replace(cfg.model, encoder=encoder, image_size=cfg.env.image_size))
    objective = Objective(objective_text, lam.d_z, {"action": 6, "flow": flow_dim()})
    return lam, objective, [ema_hook] if encoder == "ema" else [], source


def loader_rate(source, seconds: float, repeats: int):
    """(windows/s, the first batch): batches drawn for `seconds` (at least one) per repeat, after an untimed first."""
    it = source.batches()
    first = next(it)
    n, dt = 0, 0.0
    for _ in range(repeats):
        t = time.perf_counter()
        while True:
            n += len(next(it))
            if time.perf_counter() - t >= seconds:
                break
        dt += time.perf_counter() - t
    del it  # stops the persistent worker
    return n / dt, first


def train_rate(lam, objective, hooks, batch, steps: int, repeats: int, warmup: int, lr: float,
               grad_clip: float) -> float:
    """Updates/s of the engine's step (forward, backward, clip, Adam, hooks) on one fixed batch, fp32."""
    lam.train(), objective.train()
    params = [p for p in list(lam.parameters()) + list(objective.parameters()) if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr, foreach=True)

    def step(k: int):
        loss, _ = objective(lam, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        for hook in hooks:
            hook(k, lam)

    for k in range(warmup):  # allocations, Adam state
        step(k + 1)
    t = time.perf_counter()
    for k in range(steps * repeats):
        step(warmup + k + 1)
    return steps * repeats / (time.perf_counter() - t)


def eval_rate(cfg, act, episodes: int, steps: int) -> float:
    from exolam.envs.control_eval import evaluate_policy

    t = time.perf_counter()
    evaluate_policy(cfg.env, act, episodes, 0, steps)  # cheetah never ends before 1000 steps
    return episodes * steps / (time.perf_counter() - t)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=3, help="episodes collected per image size")
    p.add_argument("--frames", type=int, default=200, help="steps per collected episode")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS))
    p.add_argument("--scales", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    p.add_argument("--steps", type=int, default=15, help="timed updates per repeat, cpu scale")
    p.add_argument("--paper-steps", type=int, default=1, help="timed updates per repeat, paper scale (slow: 0.1-1 "
                   "update/s)")
    p.add_argument("--warmup", type=int, default=1, help="untimed updates before the timed ones, cpu scale")
    p.add_argument("--paper-warmup", type=int, default=0, help="the same, paper scale (at seconds per update the "
                   "first update's allocations are negligible)")
    p.add_argument("--repeats", type=int, default=1, help="timed segments per measurement (pooled)")
    p.add_argument("--seconds", type=float, default=1.0, help="loader timing window per repeat and setting")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DataLoader workers to measure")
    p.add_argument("--eval-episodes", type=int, default=2)
    p.add_argument("--eval-steps", type=int, default=200)
    args = p.parse_args()
    if 0 not in args.workers:
        p.error("--workers must include 0 (the experiment's setting)")
    os.environ.setdefault("MUJOCO_GL", "egl")
    torch.set_num_threads(1)
    wall = time.perf_counter()
    presets = {k: v for k, v in scales().items() if k in args.scales}
    print(f"Distracting cheetah-run, random-policy data ({args.episodes} x {args.frames} steps, paired, h264), "
          f"fp32, 1 torch thread, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
          f"timed updates {args.steps} (cpu, after {args.warmup} warm-up) / {args.paper_steps} (paper, after "
          f"{args.paper_warmup}) x {args.repeats}, "
          f"loader {args.seconds:g} s x {args.repeats} per setting", flush=True)
    for name, cfg in presets.items():
        m = cfg.model
        print(f"  {name:<6} {cfg.env.image_size} px, batch {cfg.train.batch_size}, LapoLAM idm {tuple(m.idm_channels)} "
              f"fdm {tuple(m.fdm_channels)}, LAM stage {cfg.train.steps} updates")

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = {}
        for name, cfg in presets.items():
            size = cfg.env.image_size
            if size not in data:
                data[size], dt = collect_data(tmp, size, args.episodes, args.frames)
                print(f"  collected {size} px: {args.episodes * args.frames / dt:.0f} frames/s with the staging and "
                      f"encoding ({dt:.0f} s)", flush=True)
        for name, cfg in presets.items():
            steps, warmup = (args.steps, args.warmup) if name == "cpu" else (args.paper_steps, args.paper_warmup)
            for variant in args.variants:
                rate = {}
                for w in sorted(args.workers):  # W=0 first: its model and first batch are trained on
                    built = build(cfg, variant, data[cfg.env.image_size], w)
                    rate[w], first = loader_rate(built[3], args.seconds, args.repeats)
                    if w == 0:
                        (lam, objective, hooks, _), batch = built, first
                    del built
                ups = train_rate(lam, objective, hooks, batch, steps, args.repeats, warmup, cfg.train.lr,
                                 cfg.train.grad_clip)
                rows[(name, variant)] = (ups, rate)
                print(f"  {name} {variant}: {ups:.2f} updates/s, loader " +
                      ", ".join(f"W={w} {r:.0f} windows/s" for w, r in rate.items()), flush=True)

    ws = [w for w in args.workers if w != 0]
    head = f"{'scale':<7}{'variant':<20}{'batch':>6}{'upd/s':>8}{'samples/s':>10}{'W=0 win/s':>10}{'W=0/train':>10}"
    head += "".join(f"{f'W={w} win/s':>10}{f'W={w}/train':>10}" for w in ws)
    print(f"\n{head}{'W=0 share':>10}{'effective':>10}")
    for (name, variant), (ups, rate) in rows.items():
        b = presets[name].train.batch_size
        need = ups * b
        t_train, t_dec = 1 / ups, b / rate[0]
        line = f"{name:<7}{variant:<20}{b:>6}{ups:>8.2f}{need:>10.1f}{rate[0]:>10.0f}{rate[0] / need:>9.1f}x"
        line += "".join(f"{rate[w]:>10.0f}{rate[w] / need:>9.1f}x" for w in ws)
        print(f"{line}{100 * t_dec / (t_train + t_dec):>9.1f}%{b / (t_train + t_dec):>10.1f}")
    print("W=k/train: windows/s decoded / samples/s trained (< 1: the loader starves training at that setting).")
    print("The experiment's setting is W=0 (WindowSource(num_workers=0) in each sweep process): decode and training "
          "run one after the other, so a step takes training + decode; 'W=0 share' is decode's part of that step and "
          "'effective' the samples/s it gives.")
    for name, cfg in presets.items():
        per = [(v, rows[(name, v)]) for v in args.variants]
        b = cfg.train.batch_size
        unit, div = ("h", 3600) if name == "paper" else ("min", 60)
        est = ", ".join(f"{v} {cfg.train.steps * (1 / ups + b / rate[0]) / div:.1f} {unit}" for v, (ups, rate) in per)
        print(f"projected LAM stage ({name}: {cfg.train.steps} updates, W=0, 1 process at this load): {est}")

    from exolam.experiments.control import cpu_config
    from exolam.models.policy import ConvPolicy, bc_policy

    cfg = cpu_config()
    torch.manual_seed(0)
    pi = ConvPolicy(dataclasses.replace(cfg.policy, image_size=cfg.env.image_size, out_dim=6)).eval()
    act = bc_policy(pi)
    eval_rate(cfg, act, 1, 5)  # warm-up: GL contexts
    zero = eval_rate(cfg, lambda images: np.zeros((images.shape[0], 6), np.float32), args.eval_episodes,
                     args.eval_steps)
    policy = eval_rate(cfg, act, args.eval_episodes, args.eval_steps)
    t_pol = max(0.0, 1 / policy - 1 / zero)
    print(f"\nevaluate_policy at {cfg.env.image_size} px, {args.eval_episodes} episodes x {args.eval_steps} steps in "
          f"lockstep: ConvPolicy {tuple(cfg.policy.channels)} hidden {cfg.policy.hidden} (random weights) "
          f"{policy:.0f} env steps/s; constant action (env + render alone) {zero:.0f} env steps/s; "
          f"policy share of a step {100 * t_pol * policy:.0f}%")
    n = cfg.eval_episodes * cfg.eval_steps
    print(f"projected evaluation per row (cpu preset: {cfg.eval_episodes} x {cfg.eval_steps} steps, lockstep "
          f"{cfg.eval_episodes}): {n / policy:.0f} s at the measured {args.eval_episodes}-episode rate")
    print(f"(benchmark wall time {time.perf_counter() - wall:.0f} s)")


if __name__ == "__main__":
    main()
