"""Metrics on latent actions z (design.md metrics table), computed on held-out data.

- `probe_nmse`     linear probe a_hat = M z + b, least squares on the train split,
                   NMSE = E||a_hat - a||^2 / E||a - mean(a)||^2 on the test split      (Sec. 4)
- `leakage_var`    E_{s,xi,a}[ Var_{xi' ~ T(.|xi)} z ] / E||z||^2                        (Fig. 2c)
- `consistency_var` E_{s,a}[ Var_{(xi,xi') ~ mu T} z ] / E||z||^2                        (Fig. 4b)
- `exo_energy`     E||eps||^2 = P[xi' != xi] * E[||h(s',xi') - h(s',xi)||^2 | xi' != xi] and
                   the bound P[xi' != xi] * delta_h of Remark 4.3, Eq. (12)-(14)

The probe is fitted in closed form: it is the optimum the paper's SGD probe (20k steps) converges
to, without the optimizer's noise.
"""

from __future__ import annotations

import torch


def probe_nmse(z_train: torch.Tensor, a_train: torch.Tensor, z_test: torch.Tensor, a_test: torch.Tensor) -> float:
    """Held-out NMSE of the least-squares linear probe z -> a (0: z determines a linearly; ~1: no info)."""
    z_train, z_test = z_train.detach(), z_test.detach()
    X = torch.cat([z_train, torch.ones_like(z_train[:, :1])], 1).double()
    sol = torch.linalg.lstsq(X, a_train.double(), driver="gelsd").solution
    a_hat = torch.cat([z_test, torch.ones_like(z_test[:, :1])], 1).double() @ sol
    a_test = a_test.double()
    err = (a_hat - a_test).pow(2).sum(1).mean()
    var = (a_test - a_test.mean(0)).pow(2).sum(1).mean()
    return float(err / var)


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
