"""Linear LAM speed, measured side by side in one run (issue: Speed; never asserted in tests).

1. throughput of the stacked ensemble (model-steps/s) per objective family: this tree's path (flat
   parameter buffer, one Adam pass, `linear_grads` on the feature layout) against the previous path
   (`train.py` of commit PREVIOUS, loaded from git: per-tensor foreach Adam, per-view concatenations),
   and against the one-by-one autograd loop (`train.engine.fit`, one model at a time);
2. final SGD L_LAM after the paper's 20k steps vs the closed-form optimum on the same data;
3. wall time of `exolam reproduce linear --quick`, and the projected full-fidelity suite time.

    python benchmarks/linear_speed.py [--steps 1000] [--skip-quick] [--skip-optimum] [--previous REV]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from exolam.data.sampling import TensorSource
from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp
from exolam.experiments import auxiliary, leakage, sensitivity
from exolam.models.linear import LinearParams
from exolam.objectives import Objective, term_weights
from exolam.theory import lam_optimum
from exolam.train import engine
from exolam.train.linear import LinearTrainConfig, train_linear_ensemble

SPECS = ["lam", "lam+xexo:1", "lam+robust-action:1", "lam+robust-q:1"]
PREVIOUS = "c51aa15"  # the last commit before the flat-buffer path


def previous_trainer(rev: str):
    """train_linear_ensemble of `rev` (weights-tensor signature), or None outside a git checkout."""
    root = Path(__file__).resolve().parents[1]
    try:
        src = subprocess.run(["git", "show", f"{rev}:src/exolam/train.py"], cwd=root, check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "previous_train.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("previous_train", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return lambda envs, specs, seeds, cfg: mod.train_linear_ensemble(
        envs, torch.tensor([term_weights(s) for s in specs]), seeds, cfg)


def ensemble_rate(train, envs, specs, seeds, steps):
    train(envs[:2], specs[:2], seeds[:2], LinearTrainConfig(steps=20))  # warm-up
    t = time.perf_counter()
    train(envs, specs, seeds, LinearTrainConfig(steps=steps))
    return len(envs) * steps / (time.perf_counter() - t)


def one_by_one_rate(envs, specs, seeds, steps):
    t = time.perf_counter()
    for env, spec, seed in zip(envs, specs, seeds):
        p = LinearParams.init([seed], env.cfg.d_o, 8, env.cfg.d_a)
        obj = Objective(spec, 8, {"action": env.cfg.d_a, "q": env.cfg.d_o})
        cfg = engine.TrainConfig(steps=steps, batch_size=128, lr=1e-3, grad_clip=1e30, precision="32")
        engine.fit(engine.make_fabric(cfg), p.select(0), obj, TensorSource(env.transitions("train"), seed, steps, 128),
                   cfg, spec={})
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
    ap.add_argument("--previous", default=PREVIOUS, help="git revision of the previous path")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    base = LinearEnvConfig(p_switch=0.5)
    envs = [make_linear_exbmdp(base, seed) for seed in range(4)]
    M = args.models
    seeds = [m // 4 % 4 for m in range(M)]
    ens_envs = [envs[s] for s in seeds]
    previous = previous_trainer(args.previous)
    rows = {}
    for spec in SPECS:  # the two paths alternate per objective, so drift in machine load hits both
        new = ensemble_rate(train_linear_ensemble, ens_envs, [spec] * M, seeds, args.steps)
        old = ensemble_rate(previous, ens_envs, [spec] * M, seeds, args.steps) if previous else float("nan")
        rows[spec] = (new, old)
    single = one_by_one_rate(envs[:4], SPECS, [0, 1, 2, 3], max(100, args.steps // 2))
    print(f"\n| objective (M={M} stacked) | this tree | previous ({args.previous}) | ratio | vs one-by-one |")
    print("|---|---|---|---|---|")
    for spec, (new, old) in rows.items():
        print(f"| `{spec}` | {new:,.0f} | {old:,.0f} | {new / old:.2f}x | {new / single:.1f}x |")
    print(f"| one-by-one autograd loop (4 objectives) | {single:,.0f} | | | 1.0x |")
    vanilla = rows["lam"][0]
    homog = len(SPECS) / sum(1 / r[0] for r in rows.values())  # the Fig. 4 sweep groups by objective
    n_models, n_lam = full_suite_models()
    proj = (n_lam / vanilla + (n_models - n_lam) / homog) * 20_000
    print(f"\nfull-fidelity linear suite: {n_models} models x 20k steps -> projected {proj / 60:.1f} min of training")

    if not args.skip_optimum:
        env = envs[0]
        tr = env.transitions("train")
        _, loss_cf = lam_optimum(tr.o, tr.o_next, 8)
        p, _ = train_linear_ensemble([env], ["lam"], [0], LinearTrainConfig())
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
