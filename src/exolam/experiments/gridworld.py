"""Fig. 5b: the practical VQ LAM on the 4x4 grid world (Sec. 5) across the noise intensity sigma.

Objectives (Sec. 5): vanilla L_LAM (Eq. 5), L_LAM + L_X-exo (Eq. 16, paired views at the same sigma)
and L_LAM + L_xi-robust with the action as the eta-robust target (Eq. 19, 1 % labels), trained as in
App. C Table 2 (experiments/vqlam.py, on the engine). Per row (config x seed), on the held-out split:

- consistency loss E||z - z~||^2 after quantization (Fig. 5b left, primary), before it, code-flip rate
- exogenous-region MSE, raw and divided by the noise floor sigma^2/4 (Fig. 5b right; 1.0 = z carries
  none of xi', below 1 = xi' leaked into z), and the control-region MSE
- probe accuracy z -> action (held-out), codebook perplexity / codes used

Paper (Sec. 5): at sigma = 0 the three agree; as sigma grows the vanilla LAM's consistency loss rises
and its exogenous-region MSE stays low, while both auxiliary objectives keep consistency low and the
exogenous-region MSE high. At sigma = 0 the two views are identical, so the consistency loss is 0 by
construction for every objective; agreement there is judged on probe accuracy and control-region MSE.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

from exolam.errors import ConfigError, check_range
from exolam.experiments.vqlam import GRID_FRAMES, METRICS, Job, VQSweepConfig, make_job, run_jobs
from exolam.models.vq import VQLAMConfig
from exolam.objectives import format_objective, parse_objective
from exolam.plotting import errorbar_panel, figure
from exolam.runs.rundir import RunDir, summarize
from exolam.train.engine import TrainConfig, resolve_precision

NAME = "gridworld"
KEYS = ["sigma", "objective"]
VANILLA = "lam"


@dataclasses.dataclass
class Config(VQSweepConfig):
    sigmas: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    """noise intensities sigma of the bottom row (Fig. 5b x-axis)"""
    objectives: tuple[str, ...] = ("lam", "lam+xexo:1", "lam+robust-action:1")
    """vanilla, X-exo (lam_X-exo = 1) and Action-pred (lam_act = 1), App. C Table 2"""
    # fields this experiment sets itself: refused with the hint (cli/flags.py `check`)
    SET_BY: ClassVar[dict[str, str]] = {"env.sigma": "gridworld sweeps sigma: use --sigmas",
        "env.seed": "the dataset seed is the run seed: use --seeds", **GRID_FRAMES}

    def validate(self) -> None:
        super().validate()
        if not self.sigmas:
            raise ConfigError("sigmas must list at least one noise intensity")
        for i, s in enumerate(self.sigmas):
            check_range(f"sigmas[{i}]", s, 0.0, 1.0)
        if len(set(self.sigmas)) != len(self.sigmas):
            raise ConfigError(f"sigmas = {self.sigmas} lists a value twice")
        objs = [format_objective(parse_objective(o, f"objectives[{i}]")) for i, o in enumerate(self.objectives)]
        if not objs or len(set(objs)) != len(objs):
            raise ConfigError(f"objectives = {self.objectives} must be non-empty and distinct")


def quick_config() -> Config:
    """CI size: IDM width 32, 600 updates, 8k transitions, sigma in {0, 0.5, 1}, 2 seeds (18 jobs)."""
    cfg = Config(sigmas=(0.0, 0.5, 1.0), seeds=2)
    cfg.env = dataclasses.replace(cfg.env, n_train=8192, n_test=1024)
    cfg.model = VQLAMConfig(idm_channels=(32, 32, 32))
    cfg.train = TrainConfig(steps=600)
    return cfg


def jobs(cfg: Config) -> list[Job]:
    """One job per sigma x objective x seed, seeds innermost (so a config's seeds finish together)."""
    out = []
    for sigma in cfg.sigmas:
        for objective in cfg.objectives:
            obj = format_objective(parse_objective(objective))
            key = f"sigma={sigma:g}|objective={obj}"
            for seed in range(cfg.seeds):
                out.append(make_job(key, seed, obj, cfg, sigma, extra=(("sigma", float(sigma)),)))
    return out


def plan(cfg: Config) -> list[tuple[str, int]]:
    return [(j.config, j.seed) for j in jobs(cfg)]


def run(cfg: Config, run_dir: RunDir, jobs_parallel: int | None = None, log=print) -> None:
    cfg.validate()
    run_jobs(jobs(cfg), run_dir, jobs_parallel=jobs_parallel, device=cfg.device, log=log)


def summarize_rows(cfg: Config, rows: list[dict]) -> dict:
    return {"rows": summarize(rows, KEYS, METRICS),
            "objectives": [format_objective(parse_objective(o)) for o in cfg.objectives],
            "steps": cfg.train.steps, "precision": resolve_precision(cfg.train.precision, cfg.device)}


LABELS = {"lam": "vanilla $L_{LAM}$", "lam+xexo:1": "+ $L_{X\\text{-}exo}$", "lam+robust-action:1": "+ Action-pred"}
NAMES = {"lam": "vanilla L_LAM", "lam+xexo:1": "L_LAM + L_X-exo", "lam+robust-action:1": "L_LAM + Action-pred"}


def _series(summary: dict, objective: str, metric: str):
    rows = sorted((r for r in summary["rows"] if r["objective"] == objective), key=lambda r: r["sigma"])
    return [r["sigma"] for r in rows], [r[metric] for r in rows]


def plot(summary: dict):
    # the code-flip rate is the scale-free companion of the consistency loss (= flips x code distance)
    panels = [("consistency_post", "consistency loss $E\\|z-\\tilde z\\|^2$ (lower better)"),
              ("code_flip_rate", "code-flip rate across views (scale-free)"),
              ("exo_mse_norm", "exo-region MSE / ($\\sigma^2/4$) (1 = no leak)"),
              ("probe_acc", "probe accuracy z -> a (held-out)")]
    fig, axes = figure(1, 4, width=4.0)
    for ax, (metric, title) in zip(axes, panels):
        for i, obj in enumerate(summary["objectives"]):
            x, stats = _series(summary, obj, metric)
            keep = [(xi, s) for xi, s in zip(x, stats) if math.isfinite(s["mean"])]
            if keep:
                errorbar_panel(ax, [k[0] for k in keep], [k[1] for k in keep], LABELS.get(obj, obj), f"C{i}",
                               err="std")
        ax.set_xlabel("noise intensity $\\sigma$")
        ax.set_title(title, fontsize=9)
        ax.set_ylabel("")
    axes[2].axhline(1.0, color="gray", ls=":", lw=1)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Fig. 5b: practical VQ LAM on the grid world ({summary['steps']} updates, mean $\\pm$ std)",
                 fontsize=10)
    return fig


def _by(summary: dict) -> dict[tuple, dict]:
    return {(r["sigma"], r["objective"]): r for r in summary["rows"]}


def _m(row: dict, metric: str) -> float:
    return row[metric]["mean"]


def claims(summary: dict) -> list[dict]:
    """Three claim rows of Sec. 5, each judged from the numbers with thresholds fixed in advance."""
    by = _by(summary)
    sigmas = sorted({r["sigma"] for r in summary["rows"]})
    aux = [o for o in summary["objectives"] if o != VANILLA]
    noisy = [s for s in sigmas if s > 0]
    out = []

    # 1. sigma = 0: agreement on the metrics of Fig. 5b (consistency, exo-region MSE; + control MSE),
    #    each within 0.01 of each other; probe accuracy is reported but not part of the paper's claim
    if 0.0 in sigmas:
        rows0 = [by[(0.0, o)] for o in summary["objectives"] if (0.0, o) in by]
        cons = [_m(r, "consistency_post") for r in rows0]
        exo = [_m(r, "exo_mse") for r in rows0]
        ctl = [_m(r, "control_mse") for r in rows0]
        acc = [_m(r, "probe_acc") for r in rows0]
        ok = [max(v) - min(v) <= 0.01 for v in (cons, exo, ctl)]
        out.append({
            "claim": "At sigma = 0 the three LAMs perform comparably (Fig. 5b metrics)",
            "paper": "all three objectives comparable at sigma = 0",
            "ours": (f"consistency {', '.join(f'{c:.3g}' for c in cons)} (0 by construction: the views coincide); "
                     f"exo-region MSE {', '.join(f'{c:.4f}' for c in exo)}; control MSE "
                     f"{', '.join(f'{c:.4f}' for c in ctl)} (tolerance 0.01). Not judged: probe accuracy "
                     f"{', '.join(f'{a:.2f}' for a in acc)} (the tour policy makes a a function of o, so z need "
                     "not carry it without L_xi-robust)"),
            "holds": "yes" if all(ok) else ("partly" if any(ok) else "no"),
        })

    # 2. vanilla: consistency rises with sigma; normalized exo MSE well below 1 (< 0.5) at sigma >= 0.4
    if len(noisy) >= 1 and all((s, VANILLA) in by for s in sigmas):
        cons = [_m(by[(s, VANILLA)], "consistency_post") for s in sigmas]
        rises = sum(b > a for a, b in zip(cons, cons[1:]))
        exo = {s: _m(by[(s, VANILLA)], "exo_mse_norm") for s in noisy}
        judged = [s for s in noisy if s >= 0.4] or noisy[-1:]
        low = [s for s in judged if exo[s] < 0.5]
        mono = rises == len(cons) - 1
        # two parts: (a) consistency rises at every step, (b) exo MSE low at every judged sigma;
        # partly = (a) or some of (b) holds
        holds = "yes" if mono and len(low) == len(judged) else ("partly" if mono or low else "no")
        misses = [f"{s:g}" for s in judged if s not in low]
        out.append({
            "claim": "Vanilla LAM encodes xi' as sigma grows: consistency loss rises, exo-region MSE stays low",
            "paper": "vanilla: high consistency loss and low exogenous-region MSE as sigma grows",
            "ours": (f"vanilla consistency {' -> '.join(f'{c:.3g}' for c in cons)} over sigma "
                     f"{', '.join(f'{s:g}' for s in sigmas)} ({rises}/{len(cons) - 1} steps up); normalized "
                     f"exo MSE {', '.join(f'{exo[s]:.2f}@{s:g}' for s in noisy)} (threshold < 0.5 at sigma >= 0.4"
                     f"{'; fails at ' + ', '.join(misses) if misses else ''})"),
            "holds": holds,
        })

    # 3. auxiliary objectives: lower consistency and normalized exo MSE closer to 1 than vanilla. The
    #    consistency loss is flip rate x the squared distance between flipped codes, so a codebook that
    #    merely shrinks lowers it with the same flips: "lower" also needs a lower code-flip rate (the
    #    scale-free part; analysis/code_scale.py in the full sweep's folder measured exactly that case)
    for obj in aux:
        if not noisy or not all((s, obj) in by and (s, VANILLA) in by for s in noisy):
            continue
        flip = {s: (_m(by[(s, obj)], "code_flip_rate"), _m(by[(s, VANILLA)], "code_flip_rate")) for s in noisy}
        lower = [s for s in noisy if _m(by[(s, obj)], "consistency_post") < _m(by[(s, VANILLA)], "consistency_post")
                 and not flip[s][0] >= flip[s][1]]  # a missing flip rate (NaN) does not veto
        nearer = [s for s in noisy if abs(1 - _m(by[(s, obj)], "exo_mse_norm"))
                  < abs(1 - _m(by[(s, VANILLA)], "exo_mse_norm"))]
        high = [s for s in noisy if _m(by[(s, obj)], "exo_mse_norm") >= 0.8]
        both = [s for s in noisy if s in lower and s in nearer]
        fails = [s for s in noisy if s not in both or s not in high]
        holds = "yes" if not fails else ("partly" if both else "no")
        out.append({
            "claim": f"{NAMES.get(obj, obj)} keeps consistency lower and exo-region MSE near the "
                     "noise floor",
            "paper": "auxiliary objectives keep exogenous-region MSE high and consistency low at all sigma",
            "ours": ("sigma: consistency, code-flip rate, normalized exo MSE (obj vs vanilla each): " + "; ".join(
                f"{s:g}: {_m(by[(s, obj)], 'consistency_post'):.3g} vs {_m(by[(s, VANILLA)], 'consistency_post'):.3g}, "
                f"{flip[s][0]:.2f} vs {flip[s][1]:.2f}, "
                f"{_m(by[(s, obj)], 'exo_mse_norm'):.2f} vs {_m(by[(s, VANILLA)], 'exo_mse_norm'):.2f}"
                for s in noisy) + (f" (criteria: lower consistency and flip rate, exo MSE nearer 1 and >= 0.8; misses "
                                   f"at sigma {', '.join(f'{s:g}' for s in fails)})" if fails else
                                   " (criteria: lower consistency and flip rate, exo MSE nearer 1 and >= 0.8: met at "
                                   "every sigma)")),
            "holds": holds,
        })
    return out
