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
    """Train splits of M datasets as stacked state/index arrays and emission matrices."""

    s: torch.Tensor  # (M, N, d_s)
    a: torch.Tensor  # (M, N, d_a)
    xi4: torch.Tensor  # (M, N, 4): xi, xi~, xi', xi~'
    H_cat: torch.Tensor  # (M, K*d_s, d_o): rows k*d_s..(k+1)*d_s hold H_k^T

    @staticmethod
    def from_envs(envs: list[LinearExBMDP]) -> "_Stacked":
        sl = envs[0].split("train")
        K, d_o, d_s = envs[0].H.shape
        return _Stacked(
            s=torch.stack([e.s[sl] for e in envs]),
            a=torch.stack([e.a[sl] for e in envs]),
            xi4=torch.stack([torch.stack([e.xi[sl], e.xi_alt[sl], e.xi_next[sl], e.xi_next_alt[sl]], -1) for e in envs]),
            H_cat=torch.stack([e.H.transpose(1, 2).reshape(K * d_s, d_o) for e in envs]),
        )

    def phi(self, idx: torch.Tensor, views: tuple[int, ...]) -> torch.Tensor:
        """phi = onehot(xi) (x) s of minibatch idx (M, B) for each view -> (M, V, B, n_xi * d_s).

        The observation is o = H_xi s = phi @ H_cat. Views: 0 o = h(s, xi), 1 o~ = h(s, xi~),
        2 o' = h(s', xi'), 3 o~' = h(s', xi~'), 4 q = H_xi a (the q-pred target).
        """
        M, B = idx.shape
        d_s = self.s.shape[-1]
        K = self.H_cat.shape[1] // d_s
        rows = idx.unsqueeze(-1)
        s = self.s.gather(1, rows.expand(M, B, d_s))
        a = self.a.gather(1, rows.expand(M, B, d_s))
        xi = self.xi4.gather(1, rows.expand(M, B, 4))  # (M, B, 4): xi, xi~, xi', xi~'
        src = {0: (s, 0), 1: (s, 1), 2: (s + a, 2), 3: (s + a, 3), 4: (a, 0)}
        states = torch.stack([src[v][0] for v in views], 1)  # (M, V, B, d_s)
        which = torch.stack([xi[..., src[v][1]] for v in views], 1)  # (M, V, B)
        V = len(views)
        phi = states.new_zeros(M, V, B, K, d_s)
        phi.scatter_(3, which[..., None, None].expand(M, V, B, 1, d_s), states.unsqueeze(3))
        return phi.view(M, V, B, K * d_s)


def linear_grads(p: LinearParams, H_cat: torch.Tensor, phi: torch.Tensor, a: torch.Tensor | None,
                 w: torch.Tensor, alt: bool, with_parts: bool = True):
    """Loss parts and closed-form gradients of Eq. (5) + lam_x (16) + lam_a (19, y=a) + lam_q (19, y=q).

    Row-vector form: z = o C^T + o' D^T (Eq. 8), o'_hat = o A^T + z B^T (Eq. 9), with every
    observation o = phi H_cat (phi = onehot(xi) (x) s, k = n_xi d_s columns). So every product with
    an observation factors through k instead of d_o dims: o A^T = phi (H_cat A^T) and
    dL/dA = G^T o = (G^T phi) H_cat; the same numbers at about half the FLOPs, no rendering.

    phi (M, V, B, k) holds views [o, o', (o~, o~' if alt), (q if the last weight is used)];
    a (M, B, d_a) or None; w (M, 4) per-model weights (1, lam_xexo, lam_action, lam_q). Squared
    errors are summed over dims and averaged over the batch (objectives.sq_err).
    Returns (parts (M, 4) or None, grads matching LinearParams.tensors()).
    """
    M, V, B, k = phi.shape
    f, fn = phi[:, 0], phi[:, 1]  # o, o'
    At, Bt = p.A.transpose(1, 2), p.B.transpose(1, 2)
    HA, HC, HD = H_cat @ At, H_cat @ p.C.transpose(1, 2), H_cat @ p.D.transpose(1, 2)
    z = f @ HC + fn @ HD  # (M, B, d_z)   Eq. (8)
    R = torch.cat([f, z, fn], -1) @ torch.cat([HA, Bt, -H_cat], 1)  # o'_hat - o'   (M, B, d_o)
    c = (2.0 / B) * w  # (M, 4): d(mean_b ||.||^2)/d(residual) = 2/B residual
    parts = torch.zeros(M, 4, dtype=phi.dtype, device=phi.device) if with_parts else None
    G = R * c[:, :1, None]
    dB = G.transpose(1, 2) @ z
    dz = G @ p.B
    dC_in, dD_in = dz.transpose(1, 2) @ f, dz.transpose(1, 2) @ fn
    if alt:  # L_X-exo: o'_hat = o A^T + z~ B^T, z~ from the paired view    Eq. (16)
        fa, fna = phi[:, 2], phi[:, 3]
        za = fa @ HC + fna @ HD
        Rx = R + (za - z) @ Bt
        Gx = Rx * c[:, 1:2, None]
        G = G + Gx
        dB += Gx.transpose(1, 2) @ za
        dza = Gx @ p.B
        dC_in += dza.transpose(1, 2) @ fa
        dD_in += dza.transpose(1, 2) @ fna
        if with_parts:
            parts[:, 1] = Rx.pow(2).sum(-1).mean(-1)
    if with_parts:
        parts[:, 0] = R.pow(2).sum(-1).mean(-1)
    dWa, dWq = torch.zeros_like(p.W_a), torch.zeros_like(p.W_q)
    y_q = phi[:, -1] @ H_cat if V in (3, 5) else None
    for j, (W, y, dW) in enumerate([(p.W_a, a, dWa), (p.W_q, y_q, dWq)]):
        if y is None:
            continue
        err = z @ W.transpose(1, 2) - y  # (M, B, d_y)   Eq. (19)
        if with_parts:
            parts[:, 2 + j] = err.pow(2).sum(-1).mean(-1)
        Gy = err * c[:, 2 + j, None, None]
        dgz = Gy @ W
        dC_in += dgz.transpose(1, 2) @ f
        dD_in += dgz.transpose(1, 2) @ fn
        dW.copy_(Gy.transpose(1, 2) @ z)
    dA = (G.transpose(1, 2) @ f) @ H_cat
    dE = torch.cat([dC_in @ H_cat, dD_in @ H_cat], -1)
    return parts, [dA, dB, dE, dWa, dWq]


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
    data = _Stacked(*[t.to(device) for t in dataclasses.astuple(data)])
    w = weights.to(device=device, dtype=torch.float32)
    params = p.tensors()
    opt = torch.optim.Adam(params, lr=cfg.lr, foreach=True)
    n = data.s.shape[1]
    streams = [batch_indices(sd, n, cfg.steps, cfg.batch_size) for sd in seeds]
    tail = max(1, cfg.steps // 100)
    acc = torch.zeros(len(envs), 4, device=device)
    alt, use_a, use_q = (bool((w[:, k] > 0).any()) for k in (1, 2, 3))
    views = (0, 2) + ((1, 3) if alt else ()) + ((4,) if use_q else ())
    with torch.no_grad():
        for step in range(cfg.steps):
            idx = torch.stack([next(st) for st in streams]).to(device)
            phi = data.phi(idx, views)
            a = data.a.gather(1, idx.unsqueeze(-1).expand(-1, -1, data.a.shape[-1])) if use_a else None
            in_tail = step >= cfg.steps - tail
            parts, grads = linear_grads(p, data.H_cat, phi, a, w, alt, with_parts=in_tail)
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
