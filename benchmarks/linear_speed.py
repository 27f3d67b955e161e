"""Linear LAM speed, measured side by side in one run (issue: Speed; never asserted in tests).

1. throughput of the stacked ensemble (model-steps/s) vs the one-by-one autograd loop on the same
   configs (the auxiliary figure's mix of objectives), and their ratio;
2. final SGD L_LAM after the paper's 20k steps vs the closed-form optimum on the same data;
3. wall time of `exolam reproduce linear --quick`, and the projected full-fidelity suite time.

    python benchmarks/linear_speed.py [--steps 400] [--skip-quick] [--skip-optimum]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import torch

from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp
from exolam.experiments import auxiliary, leakage, sensitivity
from exolam.models.linear import LinearParams
from exolam.objectives import Objective
from exolam.theory import lam_optimum
from exolam.train import LinearTrainConfig, train_linear_ensemble, train_single

SPECS = ["lam", "lam+xexo:1", "lam+robust-action:1", "lam+robust-q:1"]
WEIGHTS = {"lam": [1, 0, 0, 0], "lam+xexo:1": [1, 1, 0, 0], "lam+robust-action:1": [1, 0, 1, 0], "lam+robust-q:1": [1, 0, 0, 1]}


def ensemble_rate(envs, specs, seeds, steps):
    w = torch.tensor([WEIGHTS[s] for s in specs], dtype=torch.float32)
    cfg = LinearTrainConfig(steps=steps)
    train_linear_ensemble(envs[:2], w[:2], seeds[:2], LinearTrainConfig(steps=20))  # warm-up
    t = time.perf_counter()
    train_linear_ensemble(envs, w, seeds, cfg)
    return len(envs) * steps / (time.perf_counter() - t)


def one_by_one_rate(envs, specs, seeds, steps):
    t = time.perf_counter()
    for env, spec, seed in zip(envs, specs, seeds):
        p = LinearParams.init([seed], env.cfg.d_o, 8, env.cfg.d_a)
        obj = Objective(spec, 8, {"action": env.cfg.d_a, "q": env.cfg.d_o})
        train_single(p.select(0), obj, env.transitions("train"), seed, steps, 128, 1e-3)
    return len(envs) * steps / (time.perf_counter() - t)


def full_suite_models() -> tuple[int, int]:
    """(all models, of which L_LAM-only) in the three full-fidelity linear figures, 4 seeds."""
    n = len(leakage.Config().p_switches) * 4
    s = sensitivity.Config()
    n += len(s.alphas) * len(s.p_switches) * 4
    a = auxiliary.Config()
    n_lam = n + len(a.p_switches) * 4
    return n + len(a.p_switches) * len(auxiliary.objectives(a)) * 4, n_lam


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--models", type=int, default=48)
    ap.add_argument("--skip-quick", action="store_true")
    ap.add_argument("--skip-optimum", action="store_true")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    base = LinearEnvConfig(p_switch=0.5)
    envs = [make_linear_exbmdp(base, seed) for seed in range(4)]
    M = args.models
    specs = [SPECS[m % 4] for m in range(M)]
    seeds = [m // 4 % 4 for m in range(M)]
    ens_envs = [envs[s] for s in seeds]
    per_obj = {spec: ensemble_rate(ens_envs, [spec] * M, seeds, args.steps) for spec in SPECS}
    vanilla = per_obj["lam"]
    mixed = ensemble_rate(ens_envs, specs, seeds, args.steps)
    single = one_by_one_rate(envs[:4], SPECS, [0, 1, 2, 3], max(100, args.steps // 2))
    print("\n| path | model-steps/s | vs one-by-one |\n|---|---|---|")
    print(f"| one-by-one autograd loop (4 objectives) | {single:,.0f} | 1.0x |")
    for spec, rate in per_obj.items():
        print(f"| ensemble M={M}, all `{spec}` | {rate:,.0f} | {rate / single:.1f}x |")
    print(f"| ensemble M={M}, 4 objectives mixed in one stack | {mixed:,.0f} | {mixed / single:.1f}x |")
    homog = len(SPECS) / sum(1 / r for r in per_obj.values())  # the Fig. 4 sweep groups by objective
    print(f"| Fig. 4 mix, grouped by objective (harmonic mean) | {homog:,.0f} | {homog / single:.1f}x |")
    n_models, n_lam = full_suite_models()
    proj = (n_lam / vanilla + (n_models - n_lam) / homog) * 20_000
    print(f"\nfull-fidelity linear suite: {n_models} models x 20k steps -> projected {proj / 60:.1f} min of training")

    if not args.skip_optimum:
        env = envs[0]
        tr = env.transitions("train")
        _, loss_cf = lam_optimum(tr.o, tr.o_next, 8)
        p, _ = train_linear_ensemble([env], torch.tensor([[1.0, 0, 0, 0]]), [0], LinearTrainConfig())
        with torch.no_grad():
            loss_sgd = float(Objective("lam", 8)(p.select(0), tr)[0])
        print(f"\nL_LAM after 20k Adam steps {loss_sgd:.2f} vs closed-form optimum {loss_cf:.2f}: "
              f"+{100 * (loss_sgd / loss_cf - 1):.2f} %")

    if not args.skip_quick:
        with tempfile.TemporaryDirectory() as d:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "exolam.cli", "reproduce", "linear", "--quick", "--out", d],
                           check=True, stdout=subprocess.DEVNULL, env={**os.environ})
            print(f"\n`exolam reproduce linear --quick`: {time.perf_counter() - t:.1f} s wall")


if __name__ == "__main__":
    main()
