"""Training objectives as composable weighted terms (Sec. 3.2, 4.4, 4.5).

    L = L_LAM + lam_xexo * L_X-exo + lam_robust * L_xi-robust(y)

- `lam`    L_LAM      = E ||o' - fdm(o, idm(o, o'))||^2                       Eq. (5)
- `xexo`   L_X-exo    = E ||o' - fdm(o, idm(o~, o~'))||^2                     Eq. (16)
- `robust-<target>`   L_xi-robust = E ||y - W idm(o, o')||^2, W learned       Eq. (19)
  with target y = `action` (a, only where `label_mask` is set), `q` (the controllable change
  q_xi = h(s', xi) - h(s, xi)), `flow` (the optical flow of (I, I'), App. D "Flow-pred", computed
  by the data pipeline: `exolam.data.flow`).

Normalization (it decides what lambda means): every squared error is *summed over dimensions*
and averaged over the batch. With d_o = 128 against d_a = 8 the reconstruction terms dwarf the
action term at lambda = 1, which is why the experiments sweep lambda.

Written on the command line as `lam+xexo:1.0+robust-action:1.0`. Any bottleneck loss the IDM
reports (VQ codebook + commitment) is added once per IDM call.
"""

from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError

TARGETS = ("action", "q", "flow")
TERMS = ("lam", "xexo") + tuple(f"robust-{t}" for t in TARGETS)


@dataclasses.dataclass(frozen=True)
class Term:
    name: str  # one of TERMS
    weight: float = 1.0

    @property
    def target(self) -> str | None:
        return self.name.split("-", 1)[1] if self.name.startswith("robust-") else None


def parse_objective(spec: str, field: str = "objective") -> tuple[Term, ...]:
    """`"lam+xexo:1.0+robust-action:0.5"` -> terms; `lam` must come first with weight 1."""
    terms = []
    for part in spec.split("+"):
        name, _, w = part.strip().partition(":")
        if name not in TERMS:
            raise ConfigError(f"{field}: unknown term '{name}' in '{spec}' (allowed: {', '.join(TERMS)})")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise ConfigError(f"{field}: weight '{w}' of '{name}' is not a number") from None
        if not math.isfinite(weight) or weight < 0:
            raise ConfigError(f"{field}: weight of '{name}' = {w} must be finite and >= 0")
        terms.append(Term(name, weight))
    if not terms or terms[0].name != "lam" or terms[0].weight != 1.0:
        raise ConfigError(f"{field}: '{spec}' must start with the reconstruction term 'lam' (weight 1)")
    if len({t.name for t in terms}) != len(terms):
        raise ConfigError(f"{field}: '{spec}' names a term twice")
    return tuple(terms)


def term_weights(objective: str | tuple[Term, ...]) -> list[float]:
    """The weight of every term in `TERMS` order (0 where absent), e.g. `lam+xexo:2` -> [1, 2, 0, 0, 0].

    The one place an objective becomes a positional vector: the linear ensembles stack these rows
    and index their columns by name (`TERMS.index`), so a new term touches only this module.
    """
    terms = parse_objective(objective) if isinstance(objective, str) else objective
    w = {t.name: t.weight for t in terms}
    return [w.get(name, 0.0) for name in TERMS]


def format_objective(terms: tuple[Term, ...]) -> str:
    return "+".join(t.name if t.name == "lam" else f"{t.name}:{t.weight:g}" for t in terms)


def robust_target(batch: Transitions, target: str, n_actions: int | None = None):
    """(y, mask) for L_xi-robust: the action (one-hot if discrete) where labelled, q, or the flow."""
    if target == "flow":
        if batch.flow is None:
            raise ConfigError("objective robust-flow needs optical-flow targets `flow` in the data "
                              "(computed by the data pipeline: exolam.data.flow.optical_flow; the `flow` extra)")
        return batch.flow.flatten(1), None
    if target == "q":
        if batch.q is None:
            raise ConfigError("objective robust-q needs the controllable change q in the data")
        return batch.q.flatten(1), None
    if batch.a is None:
        raise ConfigError("objective robust-action needs action labels in the data")
    y = batch.a
    if not y.is_floating_point():
        y = nn.functional.one_hot(y, n_actions).float()
    return y.flatten(1), batch.label_mask


def sq_err(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared error summed over all non-batch dims, averaged over the (masked) batch."""
    per = (pred - target).pow(2).flatten(1).sum(1)
    if mask is None:
        return per.mean()
    return (per * mask).sum() / mask.sum().clamp_min(1)


class Objective(nn.Module):
    """A weighted sum of terms; owns the robust heads W (d_y x d_z, no bias) of Eq. (19)."""

    def __init__(self, terms: tuple[Term, ...] | str, d_z: int, target_dims: dict[str, int] | None = None):
        super().__init__()
        self.terms = parse_objective(terms) if isinstance(terms, str) else tuple(terms)
        self.heads = nn.ModuleDict()
        for t in self.terms:
            if t.target is not None:
                if not target_dims or t.target not in target_dims:
                    raise ConfigError(f"objective term {t.name}: the data has no '{t.target}' target")
                self.heads[t.target] = nn.Linear(d_z, target_dims[t.target], bias=False)
        self.target_dims = dict(target_dims or {})

    def forward(self, model, batch: Transitions) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Total loss and its parts (`lam`, `xexo`, `robust-*`, `bottleneck`)."""
        out = model.idm(batch.o, batch.o_next)
        # what the FDM predicts: o' itself, or a model's own target (LapoLAM's EMA features f_EMA(I'), App. D)
        target = model.fdm_target(batch.o_next) if hasattr(model, "fdm_target") else batch.o_next
        parts = {"lam": sq_err(model.fdm(batch.o, out.z), target), "bottleneck": out.loss}
        total = parts["lam"] + out.loss
        for t in self.terms[1:]:
            if t.name == "xexo":
                if batch.o_alt is None:
                    raise ConfigError("objective xexo needs paired views o_alt / o_next_alt in the data")
                out_alt = model.idm(batch.o_alt, batch.o_next_alt)
                parts["xexo"] = sq_err(model.fdm(batch.o, out_alt.z), target)
                total = total + t.weight * parts["xexo"] + out_alt.loss
            else:
                y, mask = robust_target(batch, t.target, self.target_dims.get(t.target))
                parts[t.name] = sq_err(self.heads[t.target](out.z), y, mask)
                total = total + t.weight * parts[t.name]
        return total, parts
