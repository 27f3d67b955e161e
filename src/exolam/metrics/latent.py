"""Metrics on latent actions z (docs/design.md metrics table), computed on held-out data.

- `probe_nmse`         linear probe a_hat = M z + b, least squares on the train split,
                       NMSE = E||a_hat - a||^2 / E||a - mean(a)||^2 on the test split      (Sec. 4)
- `probe_nmse_given_o` the same probe from [z, o], its held-out error divided by that of a probe
                       from o alone: what z adds to the current observation
- `leakage_var`        E_{s,xi,a}[ Var_{xi' ~ T(.|xi)} z ] / E||z||^2                       (Fig. 2c)
- `consistency_var`    E_{s,a}[ Var_{(xi,xi') ~ mu T} z ] / E||z||^2                       (Fig. 4b)
- `innovation_encoder` z - (linear prediction of z from o): the `..._given_o` variance metrics
- `exo_energy`         E||eps||^2 = P[xi' != xi] * E[||h(s',xi') - h(s',xi)||^2 | xi' != xi] and
                       the bound P[xi' != xi] * delta_h of Remark 4.3, Eq. (12)-(14)

The gauge. A LAM's FDM sees o, so L_LAM cannot tell z from z + F o (the FDM's A o absorbs F o;
with L_X-exo the F with F o = F o~ on paired views stay free). Which representative a solver or an
SGD path lands on is arbitrary, and it moves the metrics on z alone:

    metric                               invariant under z -> z + F o    under z -> M z (M invertible)
    probe_nmse                           no                              yes
    probe_nmse_given_o                   yes                             yes
    leakage_var, consistency_var         no                              only M = c Q (Q orthogonal)
    *_given_o (on innovation_encoder)    yes                             only M = c Q

(leakage_var's numerator is invariant, o being fixed across its views; its denominator is not.)
Report the gauge-free companions beside the paper's metrics and say when they disagree.

Probes are fitted in closed form (`fit_linear_probe`): the optimum the paper's SGD probe (20k
steps) converges to, without the optimizer's noise.
"""

from __future__ import annotations

from typing import Callable

import torch

from exolam.errors import ConfigError


def _design(x: torch.Tensor, intercept: bool = True) -> torch.Tensor:
    """[x, 1] (or x) in float64 on the CPU, x flattened to (N, features)."""
    x = x.detach().reshape(x.shape[0], -1).double().cpu()
    return torch.cat([x, torch.ones(x.shape[0], 1, dtype=torch.float64)], 1) if intercept else x


def least_squares(x_train: torch.Tensor, y_train: torch.Tensor, intercept: bool = True) -> torch.Tensor:
    """Coefficients M of the least-squares map [x, 1] M = y (without the 1 if not `intercept`).

    Solved by the normal equations on RMS-scaled columns with a pseudo-inverse that drops directions
    below 1e-10 of the largest eigenvalue: the minimum-norm solution, so rank-deficient x (a one-hot
    code, or o = H_xi s spanning n_xi d_s of d_o dims) is fine, and float rounding noise in such
    directions is not fitted. One d x d solve instead of an SVD of the N x d design: 50x faster at
    N = 80k. The one least-squares solver of every probe and head here and in pixel.py.
    """
    if x_train.shape[0] != y_train.shape[0]:
        raise ConfigError(f"probe: {x_train.shape[0]} inputs but {y_train.shape[0]} targets in the train split")
    if x_train.shape[0] == 0:
        raise ConfigError("probe: the train split is empty")
    X = _design(x_train, intercept)
    if not torch.isfinite(X).all():
        raise ConfigError("probe: the latent actions hold NaN or inf (did training diverge?)")
    Y = y_train.detach().reshape(len(X), -1).double().cpu()
    rms = X.pow(2).mean(0).sqrt()
    zero = rms == 0  # a feature never non-zero in the train split gets coefficient 0 (not noise / 1e-300)
    scale = torch.where(zero, torch.ones_like(rms), rms)
    Xs = X / scale
    sol = torch.linalg.pinv(Xs.T @ Xs, rtol=1e-10, hermitian=True) @ (Xs.T @ Y) / scale[:, None]
    sol[zero] = 0.0
    return sol


def fit_linear_probe(x_train: torch.Tensor, y_train: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """Least-squares affine map x -> y (`least_squares`); returns predict(x) -> y_hat (float64, CPU)."""
    sol = least_squares(x_train, y_train)
    return lambda x: _design(x) @ sol


def _probe_error(x_train, a_train, x_test, a_test) -> torch.Tensor:
    """Held-out E||a_hat - a||^2 (summed over dims) of the probe x -> a fitted on the train split."""
    a_test = a_test.detach().double().cpu()
    return (fit_linear_probe(x_train, a_train)(x_test) - a_test).pow(2).sum(1).mean()


def probe_nmse(z_train: torch.Tensor, a_train: torch.Tensor, z_test: torch.Tensor, a_test: torch.Tensor) -> float:
    """Held-out NMSE of the linear probe z -> a (0: z determines a linearly; ~1: no info)."""
    a_test = a_test.detach().double().cpu()
    var = (a_test - a_test.mean(0)).pow(2).sum(1).mean()
    return float(_probe_error(z_train, a_train, z_test, a_test) / var)


def probe_nmse_given_o(z_train: torch.Tensor, o_train: torch.Tensor, a_train: torch.Tensor,
                       z_test: torch.Tensor, o_test: torch.Tensor, a_test: torch.Tensor) -> float:
    """What z tells about a beyond the current observation o (gauge-free companion of `probe_nmse`):

        NMSE(a | z, o) = E_test||a - probe_[z,o](z, o)||^2 / E_test||a - probe_o(o)||^2

    both probes affine, fitted by least squares on the train split. 1: z adds nothing beyond o;
    0: z supplies all of a that o lacks. Unchanged under z -> z + F o (the [z, o] probe absorbs F)
    and under any invertible z -> M z. Where a is independent of o (the linear Ex-BMDP) the
    denominator is ~ Var a and the two probes agree whenever z is uncorrelated with o.
    """
    zo_train, zo_test = torch.cat([z_train.detach(), o_train], 1), torch.cat([z_test.detach(), o_test], 1)
    return float(_probe_error(zo_train, a_train, zo_test, a_test) / _probe_error(o_train, a_train, o_test, a_test))


def innovation_encoder(encode, o_train: torch.Tensor, z_train: torch.Tensor):
    """encode_r(o, o') = z - probe_o(o): z minus its least-squares prediction from o (train split).

    z -> z + F o moves the prediction by F o too, so encode_r, and every variance metric computed
    on it (the `*_given_o` columns), is the same for every representative of the gauge.
    """
    predict = fit_linear_probe(o_train, z_train)
    return lambda o, o_next: encode(o, o_next).double().cpu() - predict(o)


def weighted_variance_ratio(z_views: torch.Tensor, weights: torch.Tensor) -> float:
    """E_n[ Var_w z ] / E_{n,w}||z||^2 for z_views (V, N, d_z) and weights (V, N) summing to 1 over V.

    Var_w z = sum_v w_v ||z_v - zbar||^2 with zbar = sum_v w_v z_v: the spread of z over the
    views (exogenous states) of the same underlying sample n.
    """
    z, w = z_views.detach().double(), weights.double().unsqueeze(-1)
    zbar = (w * z).sum(0)
    var = (w * (z - zbar).pow(2)).sum(0).sum(-1).mean()
    energy = (w * z.pow(2)).sum(0).sum(-1).mean()
    return float(var / energy.clamp_min(1e-30))


def leakage_var(encode, o: torch.Tensor, o_next_views: torch.Tensor, weights: torch.Tensor) -> float:
    """Fig. 2c: how much z moves with the future exogenous state xi' alone.

    encode(o, o_next) -> z; o (N, d_o) is one (s, xi) per sample, o_next_views (V, N, d_o) its
    next observation under every xi', weights (V, N) = T_xi(xi'|xi) (so 0 at p_switch = 0).
    """
    z = torch.stack([encode(o, on) for on in o_next_views])
    return weighted_variance_ratio(z, weights)


def consistency_var(encode, o_views: torch.Tensor, o_next_views: torch.Tensor, weights: torch.Tensor) -> float:
    """Fig. 4b: how much z moves with (xi, xi') at fixed (s, a); weights (V, N) = mu(xi) T(xi'|xi)."""
    z = torch.stack([encode(o, on) for o, on in zip(o_views, o_next_views)])
    return weighted_variance_ratio(z, weights)


def exo_energy(h_next_same: torch.Tensor, h_next_other: torch.Tensor, switched: torch.Tensor,
               delta_h: torch.Tensor | None = None) -> dict[str, float]:
    """Remark 4.3: split E||eps||^2 into switching frequency x xi-sensitivity.

    h_next_same = h(s', xi), h_next_other = h(s', xi') (N, d_o); switched (N,) bool = [xi' != xi];
    delta_h (N,) optional = sup_{xi, xi~} ||h(s', xi~) - h(s', xi)||^2 (Eq. 13) for the bound (14).
    """
    eps2 = (h_next_other - h_next_same).pow(2).sum(-1).double()
    freq = switched.double().mean()
    sens = eps2[switched].mean() if bool(switched.any()) else torch.zeros((), dtype=torch.float64)
    out = {"energy": float(eps2.mean()), "switch_freq": float(freq), "sensitivity": float(sens)}
    if delta_h is not None:
        out["bound"] = float(freq * delta_h.double().mean())
    return out
