"""Is Fig. 5b's X-exo result a training-length effect? The code-flip rate and the normalized exo-region MSE
of X-exo and of vanilla L_LAM every 1,000 updates of the paper's budget (App. C Table 2: 16k updates, batch
128; `gridworld.Config()`), at sigma = 0.4 and 1, seed 0 (one seed each: a curve, not a mean).

At 1k updates X-exo showed no leak (flip rate 0.00, normalized exo MSE 1.00) and at 16k it flipped as
often as vanilla (docs/results.md, Sec. 5): this logs the path between. Each (objective, sigma) trains
through the engine into OUT/checkpoints (resumable) and appends one line per 1k updates to
OUT/curve.jsonl (`vqlam.evaluate` on the held-out split, the sweep's own metrics); `--plot` draws
OUT/curve.png from the lines.

    PYTHONPATH=src OMP_NUM_THREADS=1 python docs/results/gridworld-xexo-curve/curve.py --out docs/results/gridworld-xexo-curve \\
        [--runs lam+xexo:1@0.4 ...] [--plot]
"""

import argparse
import dataclasses
import json
from pathlib import Path

import torch

from exolam.data.sampling import TensorSource
from exolam.envs.gridworld import make_dataset
from exolam.experiments import gridworld, vqlam
from exolam.train import engine

RUNS = ("lam@0.4", "lam+xexo:1@0.4", "lam@1", "lam+xexo:1@1")
KEEP = ("code_flip_rate", "exo_mse_norm", "consistency_post", "probe_acc")
EVERY = 1000


def run(spec: str, out: Path, steps: int | None = None, every: int = EVERY) -> None:
    objective, _, sigma = spec.partition("@")
    cfg = gridworld.Config()
    train_cfg = None if steps is None else dataclasses.replace(cfg.train, steps=steps)
    job = vqlam.make_job(f"objective={objective}|sigma={sigma}", 0, objective, cfg, float(sigma), train=train_cfg)
    log = out / "curve.jsonl"
    done = {(r["run"], r["step"]) for r in map(json.loads, log.read_text().splitlines())} if log.exists() else set()
    if (spec, job.train.steps) in done:
        return
    train, test = make_dataset(job.env)

    def measure(step: int, model) -> None:
        if step % every or (spec, step) in done:
            return
        inner = getattr(model, "module", model)
        metrics = vqlam.evaluate(inner, train, test, job.env.sigma)  # eval mode inside, fp32
        inner.train()
        with log.open("a") as f:
            f.write(json.dumps({"run": spec, "step": step, **{k: metrics[k] for k in KEEP}}) + "\n")

    torch.manual_seed(job.seed)
    model, objective_ = vqlam.build(job)
    fabric = engine.make_fabric(job.train, "cpu")
    source = TensorSource(train, job.seed, job.train.steps, job.train.batch_size, vqlam.fields_read(objective_),
                          fabric.device)
    engine.fit(fabric, model, objective_, source, job.train, spec=job.spec("cpu"),
               ckpt=out / "checkpoints" / spec.replace(":", "_"), hooks=[measure], desc=spec)


def plot(out: Path) -> None:
    from exolam.plotting import figure

    rows = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    fig, axes = figure(1, 2, width=4.8)
    for ax, (metric, title) in zip(axes, [("code_flip_rate", "code-flip rate across paired views"),
                                          ("exo_mse_norm", "exo-region MSE / noise floor (1: no leak)")]):
        for i, spec in enumerate(RUNS):
            pts = sorted((r["step"], r[metric]) for r in rows if r["run"] == spec)
            if pts:
                ax.plot(*zip(*pts), marker="o", ms=3, color=f"C{i}", label=spec.replace("@", ", sigma = "))
        ax.set_xlabel("updates")
        ax.set_title(title, fontsize=9)
    axes[0].legend(fontsize=7)
    fig.suptitle("Grid world (App. C Table 2), seed 0: X-exo and vanilla along training", fontsize=10)
    fig.savefig(out / "curve.png", dpi=120, bbox_inches="tight")


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--runs", nargs="+", default=list(RUNS))
    p.add_argument("--plot", action="store_true")
    p.add_argument("--steps", type=int, default=None, help="updates (default: the paper's 16k; a smoke run: 20)")
    p.add_argument("--every", type=int, default=EVERY)
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.plot:
        for spec in args.runs:
            run(spec, out, args.steps, args.every)
    plot(out)
