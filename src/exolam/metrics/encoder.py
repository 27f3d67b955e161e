"""Encoder and latent-action diagnostics for the Distracting Control experiment (App. D; Sec. 4.3).

Remark 4.3 splits the exogenous energy as E[||eps||^2 | s'] = P[xi' != xi | s'] * E[||h(s', xi') -
h(s', xi)||^2 | s', xi' != xi] (Eq. 12) and bounds it by P[xi' != xi | s'] * delta_h(s') (Eq. 14), with

    delta_h(s) = sup_{xi, xi~} ||h(s, xi~) - h(s, xi)||^2                                  (Eq. 13)

the xi-sensitivity of the representation h the LAM reads (`LapoLAM.embed`: 2 I - 1 for pixels, the
online encoder f(I) for the "ema" variant). The environment fixes the switching frequency, so an
encoder helps only through delta_h. Both metrics take paired renders of the same physics state s
under two exogenous states xi, xi~ (`Transitions.o_alt`, `o_next_alt`).

- `xi_sensitivity(h, o, o_alt)`  per sample d_i = ||h(o~_i) - h(o_i)||^2 (summed over feature dims):
      mean      E_i d_i            Eq. (13) with the sup over (xi, xi~) replaced by the data's pair
      max       max_i d_i          the sample sup: the largest observed change of h at a fixed state
      between   E_i ||h(o_i) - h(o_pi(i))||^2, pi a fixed derangement (pairs of different frames)
      relative  mean / between     the xi-induced change in units of the typical change between frames
  The sup of Eq. (13) over all of Xi is not observable; a sample max over N random pairs is a lower
  bound of it and noisy, the mean is the stable number (exactly the sensitivity factor of Eq. (12)
  when xi~ is drawn like xi'). Raw values depend on h's dimension and scale (12288 pixels in [-1, 1]
  against 4096 Tanh features): scaling h by c multiplies mean and max by c^2, and a collapsed h (a
  constant) has delta_h = 0 while carrying nothing. `relative` divides both out: it is unchanged
  under h -> c h, 0 when h ignores xi, ~1 when h moves as much with xi at a fixed state as between
  unrelated frames, so it is the number to compare across encoders.
- `z_consistency(model, batch)`  continuous z, z = encode(o, o'), z~ = encode(o~, o~'):
      mse       E||z - z~||^2                                    (as `pixel.consistency_loss`, Fig. 5b)
      relative  E||z - z~||^2 / E||z - mean z||^2   0: z is the same under both exogenous states;
                ~2: z~ independent of z with the same law (E||z - z~||^2 = 2 tr Cov z); scale-free.
- `target_robustness(y, y~)`  a prediction target y(o, o') against y(o~, o~') (Def. 4.7, Eq. 18):
      mean, max, relative as `z_consistency`'s mse and relative, plus the sample sup (max) and
      independent, the relative value of a y~ independent of y (chance level: 2 only when y and y~
      spread alike); relative is the number `exolam diagnose target` ranks candidate targets of
      L_xi-robust (Eq. 19) by.

The derangement pi is one random cycle through the batch (a fixed seed), so consecutive frames of a
trajectory, which barely differ, are not the pairs that set the scale.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.metrics.pixel import evaluating, need_alt

DERANGEMENT_SEED = 0


def derangement(n: int, seed: int = DERANGEMENT_SEED) -> torch.Tensor:
    """A fixed permutation pi of range(n) with pi(i) != i for every i (n >= 2): one random n-cycle."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    pi = torch.empty(n, dtype=torch.long)
    pi[order] = order.roll(-1)
    return pi


def _check_pair(name: str, a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise ConfigError(f"{name}: {a_name} and {b_name} must be tensors")
    if tuple(a.shape) != tuple(b.shape):
        raise ConfigError(f"{name}: {b_name} shape {tuple(b.shape)} must equal {a_name} shape {tuple(a.shape)} "
                          f"(paired renders of the same states)")
    if a.ndim < 2 or a.shape[0] == 0:
        raise ConfigError(f"{name}: needs a non-empty batch [B, ...], got shape {tuple(a.shape)}")


def _apply(fn: Callable, xs: tuple[torch.Tensor, ...], chunk: int) -> torch.Tensor:
    """fn(*xs) over the batch in chunks, flattened to [B, features], in float64."""
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ConfigError(f"chunk = {chunk!r} must be a positive integer")
    outs = []
    for i in range(0, xs[0].shape[0], chunk):
        y = fn(*(x[i:i + chunk] for x in xs))
        n = min(chunk, xs[0].shape[0] - i)
        if not isinstance(y, torch.Tensor) or y.ndim == 0 or y.shape[0] != n:
            raise ConfigError(f"the encoder returned {type(y).__name__} of shape {tuple(getattr(y, 'shape', ()))} "
                              f"for a chunk of {n} samples (a tensor [{n}, ...] expected)")
        outs.append(y.detach().reshape(n, -1).double().cpu())
    out = torch.cat(outs)
    if not torch.isfinite(out).all():
        raise ConfigError("the encoder's outputs hold NaN or inf (did training diverge?)")
    return out


def _ratio(num: float, den: float) -> float:
    """num / den; NaN when den is 0 (no spread to compare with: a one-sample batch or a constant)."""
    return num / den if den > 0 else math.nan


def xi_sensitivity(h: Callable[[torch.Tensor], torch.Tensor], o: torch.Tensor, o_alt: torch.Tensor,
                   chunk: int = 256) -> dict[str, float]:
    """xi-sensitivity delta_h of Eq. (13) on paired renders: {"mean", "max", "between", "relative"}.

    h maps a chunk of frames [b, C, H, W] to features [b, ...] (e.g. `model.embed`); it runs under
    no_grad, in eval mode when it is an nn.Module or a bound method of one. o, o_alt [B, C, H, W]:
    o_alt[i] renders the same physics state as o[i] under another xi. See the module doc for the
    definitions and why `relative` is the one to compare across encoders.
    """
    _check_pair("xi_sensitivity", o, o_alt, "o", "o_alt")
    owner = h if isinstance(h, torch.nn.Module) else getattr(h, "__self__", None)
    with evaluating(owner):
        f, f_alt = _apply(h, (o,), chunk), _apply(h, (o_alt,), chunk)
    d = (f_alt - f).pow(2).sum(1)
    mean = float(d.mean())
    between = float((f - f[derangement(len(f))]).pow(2).sum(1).mean()) if len(f) > 1 else math.nan
    return {"mean": mean, "max": float(d.max()), "between": between, "relative": _ratio(mean, between)}


def z_consistency(model, batch: Transitions, chunk: int = 256) -> dict[str, float]:
    """Consistency of a continuous z across exogenous states: {"mse", "relative"} (module doc).

    lam: anything with `encode(o, o_next) -> z [B, d_z]` (run under no_grad, eval mode for modules);
    batch: `Transitions` with the paired views `o_alt`, `o_next_alt`.
    """
    need_alt(batch, "z_consistency")
    _check_pair("z_consistency", batch.o, batch.o_alt, "o", "o_alt")
    _check_pair("z_consistency", batch.o_next, batch.o_next_alt, "o_next", "o_next_alt")
    with evaluating(model):
        z = _apply(model.encode, (batch.o, batch.o_next), chunk)
        z_alt = _apply(model.encode, (batch.o_alt, batch.o_next_alt), chunk)
    pair = target_robustness(z, z_alt)
    return {"mse": pair["mean"], "relative": pair["relative"]}


def target_robustness(y: torch.Tensor, y_alt: torch.Tensor) -> dict[str, float]:
    """eta of Def. 4.7 (Eq. 18) on paired windows: {"mean", "max", "relative", "independent"}.

    y, y_alt [B, ...]: a target y(o, o') and y(o~, o~') of the same state pair (s, s') under another
    exogenous trajectory. mean = E||y - y~||^2 (the expectation the proof of Prop. 4.8 bounds by eta,
    App. A.3); max = the sample sup, a lower bound of eta; relative = mean / E||y - E y||^2, scale-free:
    0 when y ignores xi (an action label), ~2 when y~ is independent of y with the same law.
    independent = the relative value a y~ independent of y with y~'s own measured law would give,

        (tr Cov y + tr Cov y~ + ||E y - E y~||^2) / tr Cov y,

    the chance level to read `relative` against: when the paired view spreads y~ wider than y (or
    shifts it), an independent y~ gives more than 2, and relative ~ independent means y carries
    nothing of y~ whatever its value. A continuous z is a target of its own IDM, so `z_consistency`
    is this function on (z, z~).
    """
    _check_pair("target_robustness", y, y_alt, "y", "y_alt")
    y, y_alt = y.detach().double().cpu().flatten(1), y_alt.detach().double().cpu().flatten(1)
    d = (y - y_alt).pow(2).sum(1)
    mu, mu_alt = y.mean(0), y_alt.mean(0)
    spread = float((y - mu).pow(2).sum(1).mean())
    chance = spread + float((y_alt - mu_alt).pow(2).sum(1).mean()) + float((mu - mu_alt).pow(2).sum())
    return {"mean": float(d.mean()), "max": float(d.max()), "relative": _ratio(float(d.mean()), spread),
            "independent": _ratio(chance, spread)}
