"""Guards while `exolam train` trains: is a latent action being learned (workflows/diagnose.py's checks, live)?

Every `every` updates, on a fixed sample of windows drawn once from the training data (the same
windows at every check, so the numbers form a curve), in eval mode and without gradients:

    fdm_ratio      FDM error with z permuted across the windows / with z intact (~1: the FDM ignores z)
    z_swap         E||z(o, o'_other) - z(o, o')||^2 / E||z - mean z||^2 with o' taken from another window
                   (~0: z ignores o', so it cannot carry the action that led to o')
    usage          participation ratio of z's covariance (continuous z, out of d_z) or the codebook
                   perplexity (VQ, out of K): ~1 is a collapsed bottleneck
    loss           L_LAM (Eq. 5) on those windows

Each check appends {"step", "guard": {...}} to metrics.jsonl and prints one line; `finish` plots
guards.png, and if the last check finds the LAM degenerate (diagnose's thresholds: fdm_ratio < 1.1 or
z_swap < 0.05) prints diagnose's advice and returns the record the checkpoint keeps. With `stop`, a
check that finds it degenerate after a quarter of the updates ends training with `Degenerate` (exit
code 3; the last periodic checkpoint stays, resumable).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from exolam.errors import Degenerate
from exolam.metrics.encoder import derangement
from exolam.metrics.pixel import evaluating
from exolam.objectives import sq_err
from exolam.runs.progress import append
from exolam.workflows.diagnose import ADVICE, THRESHOLDS, latent_section


class Guard:
    """An engine hook (`fit(hooks=[guard])`) measuring the module doc's numbers every `every` updates."""

    def __init__(self, batch, every: int, steps: int, metrics: Path | None, stop: bool = False, log=print):
        self.batch, self.every, self.steps, self.metrics, self.stop, self.log = batch, every, steps, metrics, stop, log
        self.perm = derangement(len(batch.o))
        self.records: list[dict] = []

    def __call__(self, step: int, model) -> None:
        if step % self.every and step != self.steps:
            return
        g = measure(getattr(model, "module", model), self.batch, self.perm)
        self.records.append({"step": step, **g})
        if self.metrics is not None:
            append(self.metrics, {"step": step, "guard": g})
        self.log(f"[guard] update {step}: FDM error with z permuted x{g['fdm_ratio']:.3f} (~1: ignores z), z change "
                 f"when o' is swapped {g['z_swap']:.3f} (~0: ignores o'), {g['usage_name']} {g['usage']:.2f}, "
                 f"loss {g['loss']:.4g}" + ("  <- degenerate so far" if g["degenerate"] else ""))
        if self.stop and g["degenerate"] and step >= self.steps // 4:
            raise Degenerate(f"update {step}: the LAM is degenerate ({_why(g)}); stopped (--stop-if-degenerate). "
                             + ADVICE)

    def finish(self, folder: Path) -> dict | None:
        """guards.png in `folder`; the last check, with diagnose's advice printed when it is degenerate."""
        if not self.records:
            return None
        _plot(self.records, folder / "guards.png")
        last = self.records[-1]
        if last["degenerate"]:
            self.log(f"[guard] the trained LAM is degenerate ({_why(last)}). {ADVICE}")
        return last


def _why(g: dict) -> str:
    return "; ".join(w for w, bad in ((f"the FDM ignores z, x{g['fdm_ratio']:.3f}", g["fdm_ratio"] <
                                       THRESHOLDS["fdm_ignores_z_ratio"]),
                                      (f"z ignores o', {g['z_swap']:.3f}", g["z_swap"] < THRESHOLDS["z_ignores_next"]))
                     if bad)


@torch.no_grad()
def measure(model, batch, perm: torch.Tensor) -> dict:
    """The module doc's numbers for `model` on `batch`."""
    with evaluating(model):
        out = model.idm(batch.o, batch.o_next)
        z = out.z.float()
        target = model.fdm_target(batch.o_next) if hasattr(model, "fdm_target") else batch.o_next
        pred, perm_pred = model.fdm(batch.o, out.z), model.fdm(batch.o, out.z[perm])
        z_other = model.idm(batch.o, batch.o_next[perm]).z.float()
    intact, permuted = float((pred.float() - target).pow(2).mean()), float((perm_pred.float() - target).pow(2).mean())
    spread = float((z - z.mean(0)).pow(2).sum(1).mean())
    swap = float((z_other - z).pow(2).sum(1).mean()) / spread if spread > 0 else 0.0
    lat = latent_section(z, out.codes, getattr(getattr(model, "cfg", None), "codebook_size", None))
    usage, name = (lat["perplexity"], f"codebook perplexity (of {lat['K']})") if lat["kind"] == "vq" else \
        (lat["participation_ratio"], f"participation ratio (of {lat['d_z']})")
    ratio = permuted / intact if intact > 0 else math.inf
    return {"fdm_ratio": ratio, "z_swap": swap, "usage": usage, "usage_name": name,
            "loss": float(sq_err(pred.float(), target)),
            "degenerate": ratio < THRESHOLDS["fdm_ignores_z_ratio"] or swap < THRESHOLDS["z_ignores_next"]}


def _plot(records: list[dict], path: Path) -> None:
    from exolam.plotting import figure

    fig, axes = figure(1, 4, width=3.2)
    steps = [r["step"] for r in records]
    for ax, (key, title, line) in zip(axes, [
            ("fdm_ratio", "FDM error, z permuted / intact", THRESHOLDS["fdm_ignores_z_ratio"]),
            ("z_swap", "z change when o' is swapped", THRESHOLDS["z_ignores_next"]),
            ("usage", records[-1]["usage_name"], None), ("loss", "L_LAM on the guard windows", None)]):
        ax.plot(steps, [r[key] for r in records], marker="o", ms=3)
        if line is not None:
            ax.axhline(line, color="C3", lw=0.8, ls="--")
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("updates", fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
