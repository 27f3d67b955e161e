"""Linear Ex-BMDP generator (Sec. 4 "Linear LAM experiment", App. B Table 1).

    s_{t+1} = s_t + a_t,         a_t ~ N(0, I_{d_a}),   s_0 ~ N(0, I_{d_s})         (d_a = d_s)
    xi_{t+1} = xi_t w.p. 1 - p_switch, else uniform over the other n_xi - 1 states
    o = h(s, xi) = H_xi s,       H_xi = H_0 + alpha R_xi                            (Eq. 3)

so o' - o = q_xi + eps with q_xi = H_xi (s' - s) = H_xi a (Eq. 10) and
eps = (H_xi' - H_xi) s' (Eq. 11). Entries of H_0 and R_xi are N(0, 1/d_s), so an observation has
E||o||^2 = d_o E||s||^2 / d_s: alpha is the scale of the xi-sensitivity relative to H_0.

Choices the paper leaves open (documented in the README):
- n_xi = 4 and 10-step trajectories: the unpredictability of xi' peaks at p_switch = 3/4, inside
  the swept range [0, 1], and the state stays O(1)-scaled (E||s_t||^2 = d_s (1 + t)).
- the paired view (o~, o~') of each transition keeps (s, s') and draws xi~ uniformly from the
  states != xi, then xi~' ~ T_xi(.|xi~) (Def. 4.5 needs xi != xi~; Assumption 4.4).

The dataset stores states and indices only; observations are rendered on demand
(`render`), which keeps an ensemble of many datasets in memory.
"""

from __future__ import annotations

import dataclasses

import torch

from exolam import seeding
from exolam.data.transitions import Transitions
from exolam.errors import ConfigError, check_positive_int, check_range


@dataclasses.dataclass
class LinearEnvConfig:
    """Linear Ex-BMDP; defaults are App. B Table 1 plus the documented open choices."""

    d_s: int = 8
    """endogenous state dim (= action dim d_a, since s' = s + a)"""
    d_o: int = 128
    """observation dim"""
    n_xi: int = 4
    """number of exogenous states"""
    p_switch: float = 0.5
    """probability that xi switches at a step (to a uniform other state)"""
    alpha: float = 1.0
    """xi-sensitivity: H_xi = H_0 + alpha R_xi"""
    n_traj: int = 8000
    """training trajectories"""
    n_test_traj: int = 1000
    """held-out test trajectories (metrics and the probe's test split)"""
    traj_len: int = 10
    """transitions per trajectory"""

    def validate(self, prefix: str = "env") -> "LinearEnvConfig":
        for name in ("d_s", "d_o", "n_xi", "n_traj", "n_test_traj", "traj_len"):
            check_positive_int(f"{prefix}.{name}", getattr(self, name))
        check_range(f"{prefix}.p_switch", self.p_switch, 0.0, 1.0)
        check_range(f"{prefix}.alpha", self.alpha, 0.0, None)
        if self.n_xi < 2 and self.p_switch > 0:
            raise ConfigError(f"{prefix}.n_xi = {self.n_xi} must be >= 2 when p_switch > 0 (a switch needs another state)")
        if self.n_xi < 2:
            raise ConfigError(f"{prefix}.n_xi = {self.n_xi} must be >= 2 (paired views need a second exogenous state)")
        return self

    @property
    def d_a(self) -> int:
        return self.d_s


def transition_matrix(n_xi: int, p_switch: float) -> torch.Tensor:
    """T_xi(xi' | xi) as an [n_xi, n_xi] row-stochastic matrix (Eq. 2)."""
    off = p_switch / (n_xi - 1)
    T = torch.full((n_xi, n_xi), off, dtype=torch.float64)
    T.fill_diagonal_(1.0 - p_switch)
    return T


@dataclasses.dataclass
class LinearExBMDP:
    """One sampled environment + dataset: emission matrices and the state/index arrays.

    Train and test transitions are flattened over trajectories: arrays are [N, ...].
    """

    cfg: LinearEnvConfig
    H: torch.Tensor  # (n_xi, d_o, d_s): H_xi = H_0 + alpha R_xi
    s: torch.Tensor  # (N, d_s)
    a: torch.Tensor  # (N, d_a)
    xi: torch.Tensor  # (N,) int64
    xi_next: torch.Tensor  # (N,)
    xi_alt: torch.Tensor  # (N,) xi~ != xi
    xi_next_alt: torch.Tensor  # (N,) xi~' ~ T(.|xi~)
    n_train: int

    @property
    def s_next(self) -> torch.Tensor:
        return self.s + self.a

    def split(self, part: str) -> slice:
        return slice(0, self.n_train) if part == "train" else slice(self.n_train, self.s.shape[0])

    def render(self, s: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """o = H_xi s for a batch: s (B, d_s), xi (B,) -> (B, d_o) (one matmul per exogenous state)."""
        o = s.new_empty(s.shape[0], self.cfg.d_o)
        for k in range(self.cfg.n_xi):
            rows = xi == k
            o[rows] = s[rows] @ self.H[k].T
        return o

    def transitions(self, part: str = "train", idx: torch.Tensor | None = None) -> Transitions:
        """Render the `Transitions` of a split (or of the rows `idx` of the whole array)."""
        sl = self.split(part) if idx is None else idx
        s, a = self.s[sl], self.a[sl]
        xi, xn, xa, xna = self.xi[sl], self.xi_next[sl], self.xi_alt[sl], self.xi_next_alt[sl]
        s_next = s + a
        return Transitions(
            o=self.render(s, xi), o_next=self.render(s_next, xn), a=a, s=s, s_next=s_next,
            xi=xi, xi_next=xn, o_alt=self.render(s, xa), o_next_alt=self.render(s_next, xna),
            q=self.render(a, xi),
        )

    def views_over_xi_next(self, part: str = "test", n: int | None = None):
        """Render each (s, xi, a) under every xi' (for `leakage_var`, Fig. 2c).

        Returns (o [N, d_o], o_next [n_xi, N, d_o], weights [n_xi, N] = T_xi(xi'|xi)).
        """
        sl = self.split(part)
        s, a, xi = self.s[sl][:n], self.a[sl][:n], self.xi[sl][:n]
        K = self.cfg.n_xi
        o = self.render(s, xi)
        o_next = torch.einsum("kos,bs->kbo", self.H, s + a)
        T = transition_matrix(K, self.cfg.p_switch).to(s.dtype)
        return o, o_next, T[xi].T.contiguous()

    def views_over_xi_pairs(self, part: str = "test", n: int | None = None):
        """Render each (s, a) under every (xi, xi') (for `consistency_var`, Fig. 4b).

        Returns (o [K*K, N, d_o], o_next [K*K, N, d_o], weights [K*K, N] = mu(xi) T(xi'|xi)),
        mu uniform (the stationary distribution of T_xi, and the initial one).
        """
        sl = self.split(part)
        s, a = self.s[sl][:n], self.a[sl][:n]
        K = self.cfg.n_xi
        Hs = torch.einsum("kos,bs->kbo", self.H, s)
        Hs_next = torch.einsum("kos,bs->kbo", self.H, s + a)
        o = Hs.repeat_interleave(K, dim=0)  # pair index = xi * K + xi'
        o_next = Hs_next.repeat(K, 1, 1)
        w = (transition_matrix(K, self.cfg.p_switch) / K).reshape(-1, 1).to(s.dtype).expand(-1, s.shape[0])
        return o, o_next, w.contiguous()


def _markov_chain(n: int, T: int, n_xi: int, p_switch: float, g: torch.Generator) -> torch.Tensor:
    """xi_0..xi_T for n chains: switch w.p. p_switch to a uniform *other* state."""
    xi = torch.empty(n, T + 1, dtype=torch.long)
    xi[:, 0] = torch.randint(n_xi, (n,), generator=g)
    for t in range(T):
        switch = torch.rand(n, generator=g) < p_switch
        other = (xi[:, t] + torch.randint(1, n_xi, (n,), generator=g)) % n_xi
        xi[:, t + 1] = torch.where(switch, other, xi[:, t])
    return xi


def make_linear_exbmdp(cfg: LinearEnvConfig, seed: int) -> LinearExBMDP:
    """Sample H_0, R_xi and the train + test trajectories, deterministically from `seed`.

    H_0 and R_xi depend on the seed only (not on alpha or p_switch), so a sweep over alpha or
    p_switch at one seed varies exactly one factor.
    """
    cfg.validate()
    g_h = torch.Generator().manual_seed(seeding.linear_emission(seed))
    H0 = torch.randn(cfg.d_o, cfg.d_s, generator=g_h) / cfg.d_s**0.5
    R = torch.randn(cfg.n_xi, cfg.d_o, cfg.d_s, generator=g_h) / cfg.d_s**0.5
    H = H0 + cfg.alpha * R

    g = torch.Generator().manual_seed(seeding.linear_trajectories(seed))
    n = cfg.n_traj + cfg.n_test_traj
    T = cfg.traj_len
    s0 = torch.randn(n, 1, cfg.d_s, generator=g)
    a = torch.randn(n, T, cfg.d_s, generator=g)
    s = torch.cat([s0, s0 + a.cumsum(1)], dim=1)  # (n, T+1, d_s)
    xi = _markov_chain(n, T, cfg.n_xi, cfg.p_switch, g)
    xi_alt = (xi[:, :-1] + torch.randint(1, cfg.n_xi, (n, T), generator=g)) % cfg.n_xi
    switch = torch.rand(n, T, generator=g) < cfg.p_switch
    other = (xi_alt + torch.randint(1, cfg.n_xi, (n, T), generator=g)) % cfg.n_xi
    xi_next_alt = torch.where(switch, other, xi_alt)
    flat = lambda x: x.reshape(n * T, *x.shape[2:])  # noqa: E731
    return LinearExBMDP(
        cfg=cfg, H=H, s=flat(s[:, :-1]), a=flat(a), xi=flat(xi[:, :-1]), xi_next=flat(xi[:, 1:]),
        xi_alt=flat(xi_alt), xi_next_alt=flat(xi_next_alt), n_train=cfg.n_traj * T,
    )
