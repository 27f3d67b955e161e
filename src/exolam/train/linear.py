"""Linear LAM ensembles with closed-form gradients (the image LAMs train on `train.engine`).

- `train_linear_ensemble`: M linear LAMs (seeds x configs of one figure) stacked along a leading
  dim and trained together in one process, with the gradients of Eq. (5) + (16) + (19) written in
  closed form (the loss is quadratic in each factor) and one Adam pass over a flat parameter buffer. Model m sees
  the same init and minibatch stream as a one-by-one run with its seed, so the two agree.
  The reference it is checked against is the engine's autograd loop (tests/test_train_linear.py).
"""

from __future__ import annotations

import dataclasses
import torch

from exolam.data.sampling import batch_indices
from exolam.envs.linear import LinearExBMDP
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.models.linear import LinearParams
from exolam.objectives import TERMS, term_weights


@dataclasses.dataclass
class LinearTrainConfig:
    """App. B Table 1: Adam, lr 1e-3, batch 128, 20k steps; d_z = 8."""

    d_z: int = 8
    """latent action dim"""
    steps: int = 20_000
    """Adam steps"""
    batch_size: int = 128
    """transitions per step"""
    lr: float = 1e-3
    """Adam learning rate"""

    def validate(self, d_o: int, prefix: str = "train") -> "LinearTrainConfig":
        for name in ("d_z", "steps", "batch_size"):
            check_positive_int(f"{prefix}.{name}", getattr(self, name))
        check_range(f"{prefix}.lr", self.lr, 0.0, None, lo_open=True)
        check_range(f"{prefix}.d_z", self.d_z, 1, d_o)
        return self


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

    def features(self, idx: torch.Tensor, blocks: tuple[str, ...]) -> torch.Tensor:
        """The per-sample feature vectors x of minibatch idx (M, B) -> X (M, B, width), see `linear_grads`.

        A view block ("o", "o'", "o~", "o~'", "q") is phi = onehot(xi) (x) s, n_xi d_s wide, so the
        observation is o = phi @ H_cat; "a" is the action. View blocks come first, in the given order.
        """
        M, B = idx.shape
        d_s = self.d_s
        K = self.H_cat.shape[1] // d_s
        s, a, xi = self.gather(idx)  # xi (M, B, 4): xi, xi~, xi', xi~'
        src = {"o": (s, 0), "o~": (s, 1), "o'": (s + a, 2), "o~'": (s + a, 3), "q": (a, 0)}
        views = [b for b in blocks if b != "a"]
        V = len(views)
        X = s.new_zeros(M, B, V * K * d_s + (a.shape[-1] if "a" in blocks else 0))
        phi = X[..., : V * K * d_s].view(M, B, V, K, d_s)
        states = torch.stack([src[v][0] for v in views], 2).unsqueeze(3)  # (M, B, V, 1, d_s)
        which = torch.stack([xi[..., src[v][1]] for v in views], 2)  # (M, B, V)
        phi.scatter_(3, which[..., None, None].expand(M, B, V, 1, d_s), states)
        if "a" in blocks:
            X[..., V * K * d_s :] = a
        return X


def feature_blocks(terms: set[str], k: int, d_a: int) -> dict[str, slice]:
    """Layout of X for an ensemble whose objectives use `terms`: the block name -> its columns."""
    names = ["o", "o'"] + (["o~", "o~'"] if "xexo" in terms else []) + (["q"] if "robust-q" in terms else [])
    at = {n: slice(i * k, (i + 1) * k) for i, n in enumerate(names)}
    if "robust-action" in terms:
        at["a"] = slice(len(names) * k, len(names) * k + d_a)
    return at


COL = {name: i for i, name in enumerate(TERMS)}  # column of each term in the weight / loss-part rows


def linear_grads(p: LinearParams, H_cat: torch.Tensor, X: torch.Tensor, at: dict[str, slice], w: torch.Tensor,
                 with_parts: bool = True, out: list[torch.Tensor] | None = None):
    """Loss parts and closed-form gradients of Eq. (5) + lam_x (16) + lam_a (19, y=a) + lam_q (19, y=q).

    Every observation of the linear Ex-BMDP is o = Hbar phi with phi = onehot(xi) (x) s (k = n_xi d_s
    dims) and Hbar = H_cat^T, so every residual is a linear map of the per-sample feature vector
    x = [phi_o, phi_o', phi_o~, phi_o~', phi_q, a] (`_Stacked.features`, layout `at`):

        r   = A o + B z - o'   = [(A + BC) Hbar, (BD - I) Hbar] on [o, o']          Eq. (5), (8)-(9)
        r_x = A o + B z~ - o'  = [A Hbar, -Hbar, BC Hbar, BD Hbar] on [o, o', o~, o~']   Eq. (16)
        e_a = W z - a          = [W C Hbar, W D Hbar, -I] on [o, o', a]             Eq. (19)
        e_q = W z - q          = [W C Hbar, W D Hbar, -Hbar] on [o, o', q]

    and each minibatch loss mean_b ||R x_b||^2 = tr(R S R^T) depends on the batch only through its
    second moment S = mean_b x_b x_b^T. Its gradient is 2 R S, chained to A, B, C, D, W by the
    block structure above: the exact SGD gradient at a cost independent of d_o x batch products.
    With EH = [C Hbar, D Hbar] (one bmm), the o- and o'-columns of every term meet in
    P = dL/d[C Hbar, D Hbar] so that dB = P_B EH^T and d[C, D] = (B^T P_B + sum_y W_y^T P_y) Hbar^T.

    w (M, len(TERMS)) holds each model's term weights (`objectives.term_weights`); squared errors
    are summed over dims and averaged over the batch (objectives.sq_err). `out` optionally holds
    preallocated gradient tensors (the optimizer's flat buffer) to write into.
    Returns (parts (M, len(TERMS)) or None, grads matching LinearParams.tensors()).
    """
    M, n_b, _ = X.shape
    k = H_cat.shape[1]
    Hb = H_cat.transpose(1, 2)  # (M, d_o, k)
    S = X.transpose(1, 2) @ X  # (M, D, D): B times the minibatch's second moment
    scale = lambda term: (2.0 / n_b) * w[:, COL[term]][:, None, None]  # noqa: E731
    o, on, oo = at["o"], at["o'"], slice(at["o"].start, at["o'"].stop)
    d_z = p.B.shape[-1]
    EH = (p.E.view(M, 2 * d_z, -1) @ Hb).view(M, d_z, 2 * k)  # [C Hbar, D Hbar] (rows interleaved, then split)
    BEH = p.B @ EH  # (M, d_o, 2k)
    AH = p.A @ Hb
    parts = X.new_zeros(M, len(TERMS)) if with_parts else None

    R = BEH.clone()  # L_LAM residual map on [o, o']
    R[..., :k] += AH
    R[..., k:] -= Hb
    G = R @ (S[:, oo, oo] * scale("lam"))  # (M, d_o, 2k)
    if with_parts:
        parts[:, COL["lam"]] = (X[..., oo] @ R.transpose(1, 2)).pow(2).sum(-1).mean(-1)
    gA = G[..., :k]
    PB = G  # dL/d(B EH) on [o, o']
    if "o~" in at:  # L_X-exo: the paired view's z~ enters through [o~, o~'] (adjacent blocks)
        alt = slice(at["o~"].start, at["o~'"].stop)
        Sx = S * scale("xexo")
        Gx_o = AH @ Sx[:, o, o] - Hb @ Sx[:, on, o] + BEH @ Sx[:, alt, o]
        Gx_alt = AH @ Sx[:, o, alt] - Hb @ Sx[:, on, alt] + BEH @ Sx[:, alt, alt]
        gA = gA + Gx_o
        PB = PB + Gx_alt
        if with_parts:
            rx = X[..., o] @ AH.transpose(1, 2) - X[..., on] @ Hb.transpose(1, 2) + X[..., alt] @ BEH.transpose(1, 2)
            parts[:, COL["xexo"]] = rx.pow(2).sum(-1).mean(-1)
    PE = p.B.transpose(1, 2) @ PB  # (M, d_z, 2k): dL/d[C Hbar, D Hbar]
    dW = {}
    for target, W in (("action", p.W_a), ("q", p.W_q)):
        term = f"robust-{target}"
        col = "a" if target == "action" else "q"
        if col not in at:
            dW[target] = None
            continue
        WEH = W @ EH  # (M, d_y, 2k)
        Sy = S * scale(term)
        Y = -Sy[:, at[col], oo] if target == "action" else -(Hb @ Sy[:, at[col], oo])
        Gy = WEH @ Sy[:, oo, oo] + Y
        dW[target] = Gy @ EH.transpose(1, 2)
        PE = PE + W.transpose(1, 2) @ Gy
        if with_parts:
            y = X[..., at[col]] if target == "action" else X[..., at[col]] @ Hb.transpose(1, 2)
            parts[:, COL[term]] = (X[..., oo] @ WEH.transpose(1, 2) - y).pow(2).sum(-1).mean(-1)
    out = out or [torch.empty_like(t) for t in p.tensors()]
    torch.bmm(gA, H_cat, out=out[0])
    torch.bmm(PB, EH.transpose(1, 2), out=out[1])
    torch.bmm(PE.reshape(M, 2 * d_z, k), H_cat, out=out[2].view(M, 2 * d_z, -1))  # [dC, dD] interleaved back
    for g, target in ((out[3], "action"), (out[4], "q")):
        g.copy_(dW[target]) if dW[target] is not None else g.zero_()
    return parts, out


class FlatAdam:
    """Adam (Kingma & Ba; torch.optim.Adam's arithmetic, element for element) over one flat buffer.

    The ensemble's parameters are views into `param`, their gradients views into `grad`, so a step
    is a handful of in-place passes over one contiguous buffer instead of a few per tensor. Not
    torch's fused kernel: on this session's AVX2 CPU it was 2x faster over the flat buffer, but
    notes/platform.md measured fused Adam 6-15x slower on the team's AVX-512 machines.
    """

    def __init__(self, tensors: list[torch.Tensor], lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        n = sum(t.numel() for t in tensors)
        self.param = torch.empty(n, dtype=tensors[0].dtype, device=tensors[0].device)
        self.grad, self.m, self.v = torch.zeros_like(self.param), torch.zeros_like(self.param), torch.zeros_like(self.param)
        self._denom = torch.empty_like(self.param)
        self.params, self.grads, off = [], [], 0
        for t in tensors:
            view = lambda buf: buf[off : off + t.numel()].view(t.shape)  # noqa: E731
            view(self.param).copy_(t)
            self.params.append(view(self.param))
            self.grads.append(view(self.grad))
            off += t.numel()
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0

    def step(self) -> None:
        (b1, b2), self.t = self.betas, self.t + 1
        self.m.lerp_(self.grad, 1 - b1)
        self.v.mul_(b2).addcmul_(self.grad, self.grad, value=1 - b2)
        torch.sqrt(self.v, out=self._denom).div_((1 - b2**self.t) ** 0.5).add_(self.eps)
        self.param.addcdiv_(self.m, self._denom, value=-self.lr / (1 - b1**self.t))


class Diverged(ConfigError):
    """Training of model `model` of an ensemble diverged (a non-finite or exploding loss)."""

    def __init__(self, model: int, message: str):
        super().__init__(message)
        self.model = model


def train_linear_ensemble(envs: list[LinearExBMDP], objectives: list[str], seeds: list[int],
                          cfg: LinearTrainConfig, device: str = "cpu") -> tuple[LinearParams, torch.Tensor]:
    """Train M = len(envs) linear LAMs at once, model m on envs[m] with objectives[m] (`lam+xexo:1`).

    Returns the trained parameters and the final training loss parts (M, len(TERMS)), averaged over
    the last 1 % of steps. Raises `Diverged` (a ConfigError naming train.lr) when a model's loss
    becomes non-finite or ends above 10x its value at the first step.
    """
    w = torch.tensor([term_weights(o) for o in objectives], dtype=torch.float32, device=device)
    used = {name for name in TERMS if bool((w[:, COL[name]] > 0).any())}
    if "robust-flow" in used:  # optical flow needs image frames; the linear Ex-BMDP has vectors
        raise ConfigError("objective robust-flow: the linear ensembles have no image frames to take optical flow "
                          "of (allowed there: lam, xexo, robust-action, robust-q)")
    k = envs[0].cfg.n_xi * envs[0].cfg.d_s
    at = feature_blocks(used, k, envs[0].cfg.d_a)
    p = LinearParams.init(seeds, envs[0].cfg.d_o, cfg.d_z, envs[0].cfg.d_a)
    data = _Stacked.from_envs(envs)
    data = _Stacked(rows=data.rows.to(device), H_cat=data.H_cat.to(device))
    opt = FlatAdam([t.to(device) for t in p.tensors()], lr=cfg.lr)
    p = LinearParams(*opt.params)
    n = data.rows.shape[1]
    streams = [batch_indices(sd, n, cfg.steps, cfg.batch_size) for sd in seeds]
    tail = max(1, cfg.steps // 100)
    acc = torch.zeros(len(envs), len(TERMS), device=device)
    first = None
    with torch.no_grad():
        for step in range(cfg.steps):
            idx = torch.stack([next(st) for st in streams]).to(device)
            in_tail = step >= cfg.steps - tail
            parts, _ = linear_grads(p, data.H_cat, data.features(idx, tuple(at)), at, w,
                                    with_parts=in_tail or step == 0, out=opt.grads)
            if step == 0:
                first = (parts * w).sum(1)
            opt.step()
            if in_tail:
                acc += parts
            if (step + 1) % 1000 == 0 or step + 1 == cfg.steps:
                _check_finite(opt.param, p, cfg, step + 1)
    final = ((acc / tail) * w).sum(1)
    bad = ~torch.isfinite(final) | (final > 10 * first)
    if bool(bad.any()):
        m = int(bad.nonzero()[0])
        raise Diverged(m, f"train.lr = {cfg.lr:g}: training diverged (model {m}: loss {float(first[m]):.3g} at the "
                          f"first step, {float(final[m]):.3g} at the end); lower --train.lr")
    return LinearParams(*[t.detach().cpu().clone() for t in p.tensors()]), (acc / tail).cpu()


def _check_finite(flat: torch.Tensor, p: LinearParams, cfg: LinearTrainConfig, step: int) -> None:
    if not bool(torch.isfinite(flat).all()):
        bad = torch.stack([(~torch.isfinite(t)).flatten(1).any(1) for t in p.tensors()]).any(0)
        m = int(bad.nonzero()[0])
        raise Diverged(m, f"train.lr = {cfg.lr:g}: training diverged (model {m}: non-finite weights after "
                          f"{step} steps); lower --train.lr")
