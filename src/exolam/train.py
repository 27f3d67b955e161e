"""Training loops.

- `train_linear_ensemble`: M linear LAMs (seeds x configs of one figure) stacked along a leading
  dim and trained together in one process, with the gradients of Eq. (5) + (16) + (19) written in
  closed form (the loss is quadratic in each factor) and one multi-tensor Adam step. Model m sees
  the same init and minibatch stream as a one-by-one run with its seed, so the two agree.
- `train_single`: the plain autograd loop for any LAM with the `models/base.py` protocol and an
  `objectives.Objective` (the reference the ensemble is checked against, and the VQ LAM's loop).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterator

import torch

from exolam.data.transitions import Transitions
from exolam.envs.linear import LinearExBMDP
from exolam.errors import check_positive_int, check_range
from exolam.models.linear import LinearParams


@dataclasses.dataclass
class LinearTrainConfig:
    """App. B Table 1: Adam, lr 1e-3, batch 128, 20k steps; d_z = 8."""

    d_z: int = 8
    """latent action dim"""
    steps: int = 20_000
    """Adam steps"""
    batch_size: int = 128
    lr: float = 1e-3

    def validate(self, d_o: int, prefix: str = "train") -> "LinearTrainConfig":
        for name in ("d_z", "steps", "batch_size"):
            check_positive_int(f"{prefix}.{name}", getattr(self, name))
        check_range(f"{prefix}.lr", self.lr, 0.0, None, lo_open=True)
        check_range(f"{prefix}.d_z", self.d_z, 1, d_o)
        return self


def batch_indices(seed: int, n: int, steps: int, batch_size: int, chunk: int = 1000) -> Iterator[torch.Tensor]:
    """The minibatch stream of a model with this seed: `steps` rows of `batch_size` indices < n."""
    g = torch.Generator().manual_seed(7_919 * seed + 3)
    done = 0
    while done < steps:
        k = min(chunk, steps - done)
        yield from torch.randint(n, (k, batch_size), generator=g)
        done += k


@dataclasses.dataclass
class _Stacked:
    """Train splits of M datasets, packed for a fast minibatch gather, and their emission matrices."""

    rows: torch.Tensor  # (M, N, 2 d_s + 4): s, a, then xi, xi~, xi', xi~' (as floats)
    H_cat: torch.Tensor  # (M, K*d_s, d_o): rows k*d_s..(k+1)*d_s hold H_k^T

    @staticmethod
    def from_envs(envs: list[LinearExBMDP]) -> "_Stacked":
        sl = envs[0].split("train")
        K, d_o, d_s = envs[0].H.shape
        pack = lambda e: torch.cat([e.s[sl], e.a[sl], torch.stack(  # noqa: E731
            [e.xi[sl], e.xi_alt[sl], e.xi_next[sl], e.xi_next_alt[sl]], -1).float()], -1)
        return _Stacked(rows=torch.stack([pack(e) for e in envs]),
                        H_cat=torch.stack([e.H.transpose(1, 2).reshape(K * d_s, d_o) for e in envs]))

    @property
    def d_s(self) -> int:
        return (self.rows.shape[-1] - 4) // 2

    def gather(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(s, a, xi4) of minibatch idx (M, B): one row gather over the flattened datasets."""
        M, N, width = self.rows.shape
        flat = (idx + torch.arange(M, device=idx.device).unsqueeze(1) * N).reshape(-1)
        r = self.rows.view(M * N, width).index_select(0, flat).view(M, idx.shape[1], width)
        d_s = self.d_s
        return r[..., :d_s], r[..., d_s : 2 * d_s], r[..., 2 * d_s :].long()

    def phi(self, idx: torch.Tensor, views: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """phi = onehot(xi) (x) s of minibatch idx (M, B) for each view -> (M, V, B, n_xi * d_s), and a.

        The observation is o = H_xi s = phi @ H_cat. Views: 0 o = h(s, xi), 1 o~ = h(s, xi~),
        2 o' = h(s', xi'), 3 o~' = h(s', xi~'), 4 q = H_xi a (the q-pred target).
        """
        M, B = idx.shape
        d_s = self.d_s
        K = self.H_cat.shape[1] // d_s
        s, a, xi = self.gather(idx)  # xi (M, B, 4): xi, xi~, xi', xi~'
        src = {0: (s, 0), 1: (s, 1), 2: (s + a, 2), 3: (s + a, 3), 4: (a, 0)}
        states = torch.stack([src[v][0] for v in views], 1)  # (M, V, B, d_s)
        which = torch.stack([xi[..., src[v][1]] for v in views], 1)  # (M, V, B)
        V = len(views)
        phi = states.new_zeros(M, V, B, K, d_s)
        phi.scatter_(3, which[..., None, None].expand(M, V, B, 1, d_s), states.unsqueeze(3))
        return phi.view(M, V, B, K * d_s), a


def linear_grads(p: LinearParams, H_cat: torch.Tensor, phi: torch.Tensor, a: torch.Tensor | None,
                 w: torch.Tensor, alt: bool, with_parts: bool = True):
    """Loss parts and closed-form gradients of Eq. (5) + lam_x (16) + lam_a (19, y=a) + lam_q (19, y=q).

    Every observation of the linear Ex-BMDP is o = Hbar phi with phi = onehot(xi) (x) s (k = n_xi d_s
    dims) and Hbar = H_cat^T, so every residual is a linear map of the per-sample feature vector
    x = [phi_o, phi_o', phi_o~, phi_o~', a, phi_q]:

        r   = A o + B z - o'   = [(A + BC) Hbar, (BD - I) Hbar, 0, 0, 0, 0] x      Eq. (5), (8)-(9)
        r_x = A o + B z~ - o'  = [A Hbar, -Hbar, BC Hbar, BD Hbar, 0, 0] x         Eq. (16)
        e_a = W z - a          = [W C Hbar, W D Hbar, 0, 0, -I, 0] x               Eq. (19)
        e_q = W z - q          = [W C Hbar, W D Hbar, 0, 0, 0, -Hbar] x

    and each minibatch loss mean_b ||R x_b||^2 = tr(R S R^T) depends on the batch only through
    its second moment S = mean_b x_b x_b^T. Its gradient is 2 R S, chained to A, B, C, D, W by the
    block structure above: the exact SGD gradient at a cost independent of d_o x batch products.

    phi (M, V, B, k) holds views [o, o', (o~, o~' if alt), (phi_q if the q weight is used)];
    a (M, B, d_a) or None; w (M, 4) per-model weights (1, lam_xexo, lam_action, lam_q). Squared
    errors are summed over dims and averaged over the batch (objectives.sq_err).
    Returns (parts (M, 4) or None, grads matching LinearParams.tensors()).
    """
    M, V, B, k = phi.shape
    use_q = V in (3, 5)
    blocks = {"o": phi[:, 0], "o'": phi[:, 1]}
    if alt:
        blocks.update({"o~": phi[:, 2], "o~'": phi[:, 3]})
    if a is not None:
        blocks["a"] = a
    if use_q:
        blocks["q"] = phi[:, -1]
    at, off = {}, 0
    for n, b in blocks.items():
        at[n], off = slice(off, off + b.shape[-1]), off + b.shape[-1]
    X = torch.cat(list(blocks.values()), -1)  # (M, B, D)
    S = X.transpose(1, 2) @ X  # (M, D, D): B times the minibatch's second moment
    Hb = H_cat.transpose(1, 2)  # (M, d_o, k)
    AH, CH, DH = p.A @ Hb, p.C @ Hb, p.D @ Hb  # (M, d_o, k), (M, d_z, k), (M, d_z, k)
    BCH, BDH = p.B @ CH, p.B @ DH
    Bt = p.B.transpose(1, 2)
    parts = torch.zeros(M, 4, dtype=phi.dtype, device=phi.device) if with_parts else None
    oo = slice(0, 2 * k)  # the [o, o'] blocks

    def grad(terms, cols: slice, weight, j):
        """dL_j/d(block columns `cols` of R) = 2 weight/B (R S)[:, cols]; terms = [(R part, rows)]."""
        RS = sum(R @ S[:, rows, cols] for R, rows in terms)
        if with_parts:  # the loss itself, from the residuals of this minibatch
            r = sum(X[:, :, rows] @ R.transpose(1, 2) for R, rows in terms)
            parts[:, j] = r.pow(2).sum(-1).mean(-1)
        return RS * (2.0 / B * weight)[:, None, None]

    G = grad([(torch.cat([AH + BCH, BDH - Hb], -1), oo)], oo, w[:, 0], 0)  # (M, d_o, 2k)
    gA, gC, gD = G[..., :k], Bt @ G[..., :k], Bt @ G[..., k:]
    dB = G[..., :k] @ CH.transpose(1, 2) + G[..., k:] @ DH.transpose(1, 2)
    if alt:
        Gx = grad([(torch.cat([AH, -Hb, BCH, BDH], -1), slice(0, 4 * k))], slice(0, 4 * k), w[:, 1], 1)
        gA = gA + Gx[..., :k]
        gC = gC + Bt @ Gx[..., 2 * k : 3 * k]
        gD = gD + Bt @ Gx[..., 3 * k :]
        dB = dB + Gx[..., 2 * k : 3 * k] @ CH.transpose(1, 2) + Gx[..., 3 * k :] @ DH.transpose(1, 2)
    dW = []
    for j, (W, target) in enumerate([(p.W_a, "a"), (p.W_q, "q")]):
        if target not in at:
            dW.append(torch.zeros_like(W))
            continue
        neg = -Hb if target == "q" else -torch.eye(W.shape[1], dtype=W.dtype, device=W.device).expand(M, -1, -1)
        Gy = grad([(torch.cat([W @ CH, W @ DH], -1), oo), (neg, at[target])], oo, w[:, 2 + j], 2 + j)
        dW.append(Gy[..., :k] @ CH.transpose(1, 2) + Gy[..., k:] @ DH.transpose(1, 2))
        gC = gC + W.transpose(1, 2) @ Gy[..., :k]
        gD = gD + W.transpose(1, 2) @ Gy[..., k:]
    dA = gA @ H_cat
    dE = torch.cat([gC @ H_cat, gD @ H_cat], -1)
    return parts, [dA, dB, dE, dW[0], dW[1]]


def train_linear_ensemble(envs: list[LinearExBMDP], weights: torch.Tensor, seeds: list[int],
                          cfg: LinearTrainConfig, progress: Callable[[int], None] | None = None,
                          device: str = "cpu") -> tuple[LinearParams, torch.Tensor]:
    """Train M = len(envs) linear LAMs at once; weights (M, 4) = (1, lam_xexo, lam_action, lam_q).

    Returns the trained parameters and the final training loss parts (M, 4), averaged over the
    last 1 % of steps.
    """
    d_o = envs[0].cfg.d_o
    p = LinearParams.init(seeds, d_o, cfg.d_z, envs[0].cfg.d_a)
    data = _Stacked.from_envs(envs)
    p = LinearParams(*[t.to(device) for t in p.tensors()])
    data = _Stacked(rows=data.rows.to(device), H_cat=data.H_cat.to(device))  # astuple would deep-copy
    w = weights.to(device=device, dtype=torch.float32)
    params = p.tensors()
    opt = torch.optim.Adam(params, lr=cfg.lr, foreach=True)
    n = data.rows.shape[1]
    streams = [batch_indices(sd, n, cfg.steps, cfg.batch_size) for sd in seeds]
    tail = max(1, cfg.steps // 100)
    acc = torch.zeros(len(envs), 4, device=device)
    alt, use_a, use_q = (bool((w[:, k] > 0).any()) for k in (1, 2, 3))
    views = (0, 2) + ((1, 3) if alt else ()) + ((4,) if use_q else ())
    with torch.no_grad():
        for step in range(cfg.steps):
            idx = torch.stack([next(st) for st in streams]).to(device)
            phi, a = data.phi(idx, views)
            in_tail = step >= cfg.steps - tail
            parts, grads = linear_grads(p, data.H_cat, phi, a if use_a else None, w, alt, with_parts=in_tail)
            for t, g in zip(params, grads):
                t.grad = g
            opt.step()
            if in_tail:
                acc += parts
            if progress is not None and (step + 1) % 500 == 0:
                progress(500)
    return LinearParams(*[t.detach().cpu() for t in params]), (acc / tail).cpu()


def train_single(lam, objective, data: Transitions, seed: int, steps: int, batch_size: int, lr: float,
                 grad_clip: float | None = None, indices: Iterator[torch.Tensor] | None = None) -> list[float]:
    """Plain autograd loop: Adam on lam + objective heads, minibatches from the seed's stream."""
    params = list(lam.parameters()) + list(objective.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    indices = indices if indices is not None else batch_indices(seed, len(data), steps, batch_size)
    losses = []
    for _ in range(steps):
        batch = data.index(next(indices))
        loss, _ = objective(lam, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        opt.step()
        losses.append(float(loss.detach()))
    return losses
