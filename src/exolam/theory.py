"""Closed forms for the linear LAM (Sec. 4, App. A).

- `lam_optimum`: the global minimizer of L_LAM (Eq. 5) over (A, B, C, D). Writing
  o'_hat = (A + BC) o + BD o', the o-coefficient is free and P = BD has rank <= d_z, so the optimum
  is PCA of the innovation e = o' - K o, K = Sigma_{o'o} Sigma_oo^+ (pseudo-inverse: Sigma_oo is
  rank-deficient when o = H_xi s). A = K, B = U, C = -U^T K, D = U^T, U the top-d_z eigenvectors
  of Sigma_ee; loss = sum of the other eigenvalues. z = U^T e is uncorrelated with o: the canonical
  gauge below, with every direction of o free.
- `xexo_optimum`: the minimizer of L_LAM + lam L_X-exo (Eq. 16): a reduced-rank regression of o'
  on (o; [o o']) and (o; [o~ o~']) stacked with weights (1, lam), the o-part free and the
  [o o']-part BE of rank <= d_z. With lam -> inf (pure X-exo) and whitened u, u~ this is
  CCA (Prop. 4.6): `cca` gives the canonical directions to compare with. Returned in the
  canonical gauge (below), with the view-invariant directions of o free.
- `canonical_gauge`: neither objective identifies z. The FDM's A o absorbs z -> z + F o, i.e.
  (A, C) -> (A - B F, C + F), for every F under L_LAM; under L_LAM + lam L_X-exo the X-exo rows
  change by B F (o~ - o), so exactly the F with F o = F o~ on the paired views stay free
  (`free_directions`; on the linear generator F = Gamma P with P H_xi = I for every xi, i.e.
  z -> z + Gamma s). A probe on z alone depends on the representative, so every closed form is
  returned in one canonical gauge: the solution, among those of equal loss, whose z has the least
  energy along the free directions -- z minus its least-squares prediction from them, the map
  folded into A.
- `check_prop_4_8`: the bound E||W(z - z~)||^2 <= 6 L_xi-robust + 3 eta of Prop. 4.8 (Eq. 20).
- The objectives with a learned head W (L_xi-robust, Eq. 19) have no closed form here: the
  head couples to the rank-constrained IDM; `--solver closed-form` says so and refuses them.
"""

from __future__ import annotations

import torch

from exolam.models.linear import LinearLAM


def _moment(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor | None = None) -> torch.Tensor:
    """E[x y^T] (uncentred: the linear LAM has no bias) with optional sample weights."""
    if w is None:
        return x.T @ y / x.shape[0]
    return (x * w[:, None]).T @ y / w.sum()


def _pinv(S: torch.Tensor) -> torch.Tensor:
    """Pseudo-inverse of a moment matrix; directions below 1e-10 of the largest (rounding noise of
    data confined to a subspace, e.g. o = H_xi s spans n_xi d_s of d_o dims) are treated as zero."""
    return torch.linalg.pinv(S, rtol=1e-10, hermitian=True)


def _top_eig(S: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    evals, evecs = torch.linalg.eigh((S + S.T) / 2)
    order = evals.argsort(descending=True)
    return evals[order], evecs[:, order[:k]]


def lam_optimum(o: torch.Tensor, o_next: torch.Tensor, d_z: int) -> tuple[LinearLAM, float]:
    """Global minimizer of L_LAM (Eq. 5) in the innovation gauge, and its loss (sum over dims)."""
    o, o_next = o.double(), o_next.double()
    K = _moment(o_next, o) @ _pinv(_moment(o, o))
    e = o_next - o @ K.T
    evals, U = _top_eig(_moment(e, e), d_z)
    model = LinearLAM(o.shape[1], d_z).double()
    with torch.no_grad():
        model.A.copy_(K), model.B.copy_(U), model.C.copy_(-U.T @ K), model.D.copy_(U.T)
    return model, float(evals[d_z:].clamp_min(0).sum())


def free_directions(o: torch.Tensor, o_alt: torch.Tensor | None = None, rtol: float = 1e-9) -> torch.Tensor:
    """Orthonormal basis N (d_o, r) of the directions f with f^T o free under the objective.

    L_LAM (o_alt None): every direction (N = I). L_LAM + lam L_X-exo: the null space of
    E[(o - o~)(o - o~)^T], the view-invariant part of o (eigenvalues below rtol * the largest).
    """
    o = o.double()
    if o_alt is None:
        return torch.eye(o.shape[1], dtype=torch.float64)
    delta = o - o_alt.double()
    evals, evecs = torch.linalg.eigh(_moment(delta, delta))
    return evecs[:, evals <= rtol * evals.max().clamp_min(1e-300)]


def canonical_gauge(model: LinearLAM, o: torch.Tensor, o_next: torch.Tensor, free: torch.Tensor) -> LinearLAM:
    """The same model in the canonical gauge: z -> z - Gamma N^T o, A -> A + B Gamma N^T.

    Gamma = E[z v^T] E[v v^T]^+ regresses z on v = N^T o (uncentred, as the model has no bias), so
    the new z is uncorrelated with every free direction and, F = -Gamma N^T being free, every
    objective term has the same value (the FDM's prediction is unchanged on the data).
    """
    model = model.double()
    o, o_next, N = o.double(), o_next.double(), free.double()
    with torch.no_grad():
        z, v = model.encode(o, o_next), o @ N
        F = _moment(z, v) @ _pinv(_moment(v, v)) @ N.T  # (d_z, d_o)
        out = LinearLAM(o.shape[1], model.d_z).double()
        out.A.copy_(model.A + model.B @ F), out.B.copy_(model.B), out.C.copy_(model.C - F), out.D.copy_(model.D)
    return out


def xexo_optimum(o, o_next, o_alt, o_next_alt, d_z: int, lam_xexo: float,
                 include_lam: bool = True, canonical: bool = True) -> tuple[LinearLAM, float]:
    """Minimizer of [L_LAM] + lam_xexo L_X-exo over (A, B, C, D) by reduced-rank regression.

    Rows (o, v = [o o'], target o') with weight 1 (if include_lam) and (o, v~ = [o~ o~'], o') with
    weight lam_xexo; o'_hat = A o + B E v. Partial out o (free A), then the rank-d_z part:
    M_ols = Sigma_{y v} Sigma_vv^+ on the residualized rows, B = top-d_z eigvecs of the fitted
    covariance, E = B^T M_ols (Eckart-Young). Returns the model (in the canonical gauge unless
    `canonical` is False: then the representative the regression happens to give) and the
    objective's value.
    """
    o, o_next, o_alt, o_next_alt = (t.double() for t in (o, o_next, o_alt, o_next_alt))
    n = o.shape[0]
    v_rows = [torch.cat([o_alt, o_next_alt], 1)]
    weights = [torch.full((n,), float(lam_xexo), dtype=torch.float64)]
    if include_lam:
        v_rows.insert(0, torch.cat([o, o_next], 1))
        weights.insert(0, torch.ones(n, dtype=torch.float64))
    V, w = torch.cat(v_rows), torch.cat(weights)
    O, Y = o.repeat(len(v_rows), 1), o_next.repeat(len(v_rows), 1)
    P_oo = _pinv(_moment(O, O, w))
    Ky, Kv = _moment(Y, O, w) @ P_oo, _moment(V, O, w) @ P_oo
    Yr, Vr = Y - O @ Ky.T, V - O @ Kv.T
    M_ols = _moment(Yr, Vr, w) @ _pinv(_moment(Vr, Vr, w))
    fitted = _moment(Vr @ M_ols.T, Vr @ M_ols.T, w)
    _, Bm = _top_eig(fitted, d_z)
    E = Bm.T @ M_ols  # (d_z, 2 d_o)
    A = Ky - Bm @ E @ Kv  # the free o-coefficient: o'_hat = Ky o + BE (v - Kv o)
    d_o = o.shape[1]
    C, D = E[:, :d_o], E[:, d_o:]
    # A o + B(C o + D o') must equal Ky o + BE(v - Kv o): the o-part of v enters through C.
    model = LinearLAM(d_o, d_z).double()
    with torch.no_grad():
        model.A.copy_(A), model.B.copy_(Bm), model.C.copy_(C), model.D.copy_(D)
    res = Y - (O @ A.T + (V @ E.T) @ Bm.T)
    loss = float((res.pow(2).sum(1) * w).sum() / n)
    if canonical:
        model = canonical_gauge(model, o, o_next, free_directions(o, o_alt))
    return model, loss


def cca(u: torch.Tensor, u_alt: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k canonical directions (a_k, b_k) and correlations between u and u~ (Eq. 25).

    Whitening W_u = Sigma_uu^{-1/2}; SVD of W_u Sigma_{u u~} W_u~; directions mapped back.
    """
    u, u_alt = u.double(), u_alt.double()

    def inv_sqrt(S):
        ev, V = torch.linalg.eigh(S)
        return V @ torch.diag(ev.clamp_min(1e-12).rsqrt()) @ V.T

    Wu, Wv = inv_sqrt(_moment(u, u)), inv_sqrt(_moment(u_alt, u_alt))
    U, sv, Vh = torch.linalg.svd(Wu @ _moment(u, u_alt) @ Wv)
    return Wu @ U[:, :k], Wv @ Vh[:k].T, sv[:k]


def check_prop_4_8(z, z_alt, y, y_alt, W) -> dict[str, float]:
    """Prop. 4.8 (Eq. 20): lhs = E||W(z - z~)||^2 vs rhs = 6 L_xi-robust + 3 eta.

    L_xi-robust is taken as the mean of E||y - Wz||^2 over both views (equal in distribution),
    eta = E||y - y~||^2 (0 for actions, > 0 for q).
    """
    err = lambda yy, zz: (yy - zz @ W.T).pow(2).sum(-1).mean()  # noqa: E731
    L = 0.5 * (err(y, z) + err(y_alt, z_alt))
    eta = (y - y_alt).pow(2).sum(-1).mean()
    lhs = ((z - z_alt) @ W.T).pow(2).sum(-1).mean()
    bound_terms = 3 * err(y, z) + 3 * err(y_alt, z_alt) + 3 * eta  # Eq. (27) before merging
    return {"lhs": float(lhs), "rhs": float(6 * L + 3 * eta), "rhs_eq27": float(bound_terms), "eta": float(eta)}


def lam_leakage_bound(o, o_next_views, weights, B: torch.Tensor) -> float:
    """Prop. 4.2's gap (Eq. 24): E_{s,xi,a,s'} Var_{xi'}[Pi o'] with Pi the projection on range(B).

    Positive means any xi'-independent z is beaten by one that depends on xi'.
    """
    Q, _ = torch.linalg.qr(B.double())
    proj = o_next_views.double() @ Q  # (V, N, d_z): coordinates of Pi o'
    w = weights.double().unsqueeze(-1)
    mean = (w * proj).sum(0)
    return float((w * (proj - mean).pow(2)).sum(0).sum(-1).mean())
