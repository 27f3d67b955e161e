"""Fig. 3 (right): action NMSE grows with the xi-sensitivity alpha of the emission (Remark 4.3).

alpha scales R_xi in H_xi = H_0 + alpha R_xi, a proxy for the vision encoder's xi-sensitivity
delta_h (Eq. 13): E||eps||^2 <= P[xi' != xi] delta_h (Eq. 14). Grid alpha x p_switch, vanilla L_LAM.
"""

from __future__ import annotations

import dataclasses

from exolam.experiments import linear_sweep as ls
from exolam.experiments.plotting import errorbar_panel, figure
from exolam.runio import RunDir, summarize

NAME = "sensitivity"
KEYS = ["alpha", "p_switch"]


@dataclasses.dataclass
class Config(ls.LinearSweepConfig):
    alphas: tuple[float, ...] = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0)
    """swept xi-sensitivities alpha"""
    p_switches: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75)
    """one curve per switching probability"""


def quick_config() -> Config:
    cfg = Config(alphas=(0.0, 0.5, 1.0, 2.0), p_switches=(0.0, 0.5), seeds=2, eval_samples=500)
    cfg.env = dataclasses.replace(cfg.env, n_traj=1000, n_test_traj=200)
    cfg.train = dataclasses.replace(cfg.train, steps=1500)
    return cfg


def run(cfg: Config, run_dir: RunDir, log=print) -> None:
    cfg.validate()
    grid = [{"alpha": a, "p_switch": p} for p in cfg.p_switches for a in cfg.alphas]
    ls.run_cells(ls.make_cells(cfg, grid), cfg, run_dir, log)
    run_dir.write_summary({"rows": summarize(run_dir.rows(), KEYS, ls.METRICS)})


def _curves(summary: dict) -> dict[float, list[dict]]:
    curves: dict[float, list[dict]] = {}
    for r in summary["rows"]:
        curves.setdefault(r["p_switch"], []).append(r)
    return {p: sorted(rs, key=lambda r: r["alpha"]) for p, rs in sorted(curves.items())}


def plot(summary: dict):
    fig, ax = figure(1, 1, width=5.0)
    for i, (p, rs) in enumerate(_curves(summary).items()):
        errorbar_panel(ax[0], [r["alpha"] for r in rs], [r["probe_nmse"] for r in rs], f"p_switch = {p:g}", f"C{i}")
    ax[0].set_xlabel("xi-sensitivity alpha  ($H_\\xi = H_0 + \\alpha R_\\xi$)")
    ax[0].set_ylabel("probe NMSE")
    ax[0].set_title("Fig. 3 right: NMSE rises with alpha")
    ax[0].legend(fontsize=8)
    return fig


def claims(summary: dict) -> list[dict]:
    parts, n_up, n_mono = [], 0, 0
    curves = {p: rs for p, rs in _curves(summary).items() if p > 0}
    for p, rs in curves.items():
        v = [r["probe_nmse"]["mean"] for r in rs]
        up, mono = v[-1] > v[0], all(b >= a for a, b in zip(v, v[1:]))
        n_up, n_mono = n_up + up, n_mono + mono
        parts.append(f"p={p:g}: {v[0]:.3f} -> {v[-1]:.3f}{'' if mono else ' (not monotone)'}")
    k = len(curves)
    holds = "yes" if k and n_mono == k else ("partly" if n_up else "no")
    a0, a1 = (_curves(summary)[next(iter(curves))][i]["alpha"] for i in (0, -1)) if k else (0, 0)
    return [{
        "claim": "Probe NMSE rises with the xi-sensitivity alpha (Fig. 3 right)",
        "paper": "action NMSE increases with alpha and with p_switch",
        "ours": f"alpha {a0:g} -> {a1:g}: " + "; ".join(parts),
        "holds": holds,
    }]
