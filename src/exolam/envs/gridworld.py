"""The 4x4 grid world of Sec. 5 (Fig. 5a): a controllable square above a row of exogenous noise.

Frame layout (one channel, 4x4, values in [0, 1]):

- rows 0-2 (the 3x4 *control region*): the endogenous state s is the agent's cell, drawn as 1.0
  at that cell and 0 elsewhere. Cells are indexed s = 4*row + col, so s in 0..11.
- row 3 (the *exogenous region*): the exogenous state xi, four pixels drawn i.i.d. as
  Bernoulli(0.5) * sigma, fresh in every frame. sigma is the noise intensity swept in Fig. 5b.

Actions move the square by one cell: 0 left, 1 right, 2 up, 3 down. The behaviour policy is
deterministic and follows a closed snaking tour (a Hamiltonian cycle of the 3x4 region, the purple
arrow of Fig. 5a), so the action is a function of the observation. This correlates o and a, which
violates Assumption 4.4, and the multiplicative pixel noise breaks Assumption 4.1 (Sec. 5).

Sampling. Because the policy is deterministic and xi is i.i.d. per frame, a transition taken from a
trajectory that starts at a uniformly random tour position has the same distribution as one whose
tour position is drawn uniformly on its own (the tour's stationary distribution is uniform). So
`make_dataset` draws (tour position, xi, xi') independently per transition.

Paired views (Def. 4.5, Sec. 4.2 xi'-swap). `o_alt`, `o_next_alt` render the same (s, s') with both
bottom rows (xi~, xi~') redrawn independently at the same sigma. At sigma = 0 the two views are
identical; for sigma > 0 they coincide in a frame with probability 1/16 (the paper asks for
"distinct" exogenous states; an independent redraw is the plain reading of "another exogenous
state drawn as in the data" and keeps the pair's marginals equal to the data's).

`q` is the controllable change q_xi = h(s', xi) - h(s, xi) (Eq. 10): the agent's move in the top
rows, zero in the bottom row. It is the exogenous-robust target of q-pred (Sec. 4.5).
"""

from __future__ import annotations

import dataclasses

import torch

from exolam import seeding
from exolam.data.transitions import Transitions
from exolam.errors import ConfigError, check_positive_int, check_range

H = W = 4
CONTROL_ROWS = 3
N_CELLS = CONTROL_ROWS * W  # 12 endogenous states
N_ACTIONS = 4
# (d_row, d_col) of each action, indexed by the action id: left, right, up, down
ACTION_DELTAS = ((0, -1), (0, 1), (-1, 0), (1, 0))

EXO_REGION = torch.zeros(H, W, dtype=torch.bool)
EXO_REGION[CONTROL_ROWS:, :] = True
CONTROL_REGION = ~EXO_REGION

_TOUR = (
    (0, 0), (0, 1), (0, 2), (0, 3), (1, 3), (2, 3),
    (2, 2), (1, 2), (1, 1), (2, 1), (2, 0), (1, 0),
)


def tour() -> list[tuple[int, int]]:
    """The 12 cells (row, col) of the closed snaking tour, in visiting order (Fig. 5a)."""
    return list(_TOUR)


def cell_index(row: int, col: int) -> int:
    """Endogenous state index s = 4*row + col of a control-region cell."""
    return row * W + col


def _action_between(a: tuple[int, int], b: tuple[int, int]) -> int:
    delta = (b[0] - a[0], b[1] - a[1])
    if delta not in ACTION_DELTAS:
        raise AssertionError(f"tour step {a} -> {b} is not a legal move")
    return ACTION_DELTAS.index(delta)


# the policy as lookup tables over tour positions and over cells
_TOUR_CELLS = torch.tensor([cell_index(r, c) for r, c in _TOUR], dtype=torch.int64)
_TOUR_ACTIONS = torch.tensor(
    [_action_between(_TOUR[i], _TOUR[(i + 1) % N_CELLS]) for i in range(N_CELLS)], dtype=torch.int64
)
_ACTION_OF_CELL = torch.empty(N_CELLS, dtype=torch.int64)
_ACTION_OF_CELL[_TOUR_CELLS] = _TOUR_ACTIONS


def noise_floor(sigma: float) -> float:
    """Per-pixel variance of Bernoulli(0.5)*sigma: sigma^2/4.

    This is the exogenous-region MSE of an FDM that predicts the mean sigma/2, i.e. whose z carries
    none of xi' (Fig. 5b, right: exo_region_mse / noise_floor = 1.0 means no leakage).
    """
    return sigma**2 / 4.0


def agent_cell(o: torch.Tensor) -> torch.Tensor:
    """The agent's cell s in 0..11 from observations o of shape [..., 1, 4, 4] (argmax of rows 0-2)."""
    if o.dim() < 3 or tuple(o.shape[-3:]) != (1, H, W):
        raise ConfigError(f"gridworld observation shape {tuple(o.shape)} must end with (1, {H}, {W})")
    top = o[..., 0, :CONTROL_ROWS, :].reshape(*o.shape[:-3], N_CELLS)
    return top.argmax(dim=-1)


def policy_action(o: torch.Tensor) -> torch.Tensor:
    """The deterministic tour policy pi(o) -> a (int64 [...]) for o of shape [..., 1, 4, 4].

    The action depends on o only through the agent's cell, so equal observations give equal actions.
    """
    return _ACTION_OF_CELL.to(o.device)[agent_cell(o)]


def render(s: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
    """Emission o = h(s, xi) (Sec. 3): s int64 [N] cells, xi float32 [N, 4] bottom rows -> [N, 1, 4, 4]."""
    n = s.shape[0]
    o = torch.zeros(n, 1, H, W, dtype=torch.float32, device=s.device)
    o[torch.arange(n, device=s.device), 0, s // W, s % W] = 1.0
    o[:, 0, CONTROL_ROWS, :] = xi.to(torch.float32)
    return o


def sample_xi(n: int, sigma: float, generator: torch.Generator) -> torch.Tensor:
    """n exogenous rows, each pixel Bernoulli(0.5) * sigma, as float32 [n, 4]."""
    bits = torch.randint(0, 2, (n, W), generator=generator)
    return bits.to(torch.float32) * sigma


@dataclasses.dataclass
class GridWorldConfig:
    """Grid-world dataset of Sec. 5. sigma is the exogenous noise intensity (Fig. 5b x-axis)."""

    sigma: float = 0.0
    """exogenous noise intensity: probability that a bottom-row cell flips (Fig. 5b x-axis)"""
    n_train: int = 32768
    """training transitions"""
    n_test: int = 4096
    """held-out transitions (probes and metrics)"""
    label_fraction: float = 0.01  # App. C Table 2: action label fraction 1 %
    seed: int = 0
    """dataset seed"""

    def validate(self) -> "GridWorldConfig":
        check_range("env.sigma", self.sigma, 0.0, 1.0)
        check_positive_int("env.n_train", self.n_train)
        check_positive_int("env.n_test", self.n_test)
        check_range("env.label_fraction", self.label_fraction, 0.0, 1.0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"env.seed = {self.seed!r} must be an integer >= 0")
        return self


def n_labelled(n: int, label_fraction: float) -> int:
    """Number of action-labelled transitions: round(fraction * n), at least 1 when fraction > 0."""
    if label_fraction <= 0:
        return 0
    return min(n, max(1, round(label_fraction * n)))


def _make_split(n: int, cfg: GridWorldConfig, generator: torch.Generator) -> Transitions:
    pos = torch.randint(0, N_CELLS, (n,), generator=generator)
    s = _TOUR_CELLS[pos]
    s_next = _TOUR_CELLS[(pos + 1) % N_CELLS]
    a = _TOUR_ACTIONS[pos]
    xi = sample_xi(n, cfg.sigma, generator)
    xi_next = sample_xi(n, cfg.sigma, generator)
    xi_alt = sample_xi(n, cfg.sigma, generator)
    xi_next_alt = sample_xi(n, cfg.sigma, generator)
    o = render(s, xi)
    label_mask = torch.zeros(n, dtype=torch.bool)
    label_mask[torch.randperm(n, generator=generator)[: n_labelled(n, cfg.label_fraction)]] = True
    return Transitions(
        o=o,
        o_next=render(s_next, xi_next),
        a=a,
        s=s,
        s_next=s_next,
        xi=xi,
        xi_next=xi_next,
        o_alt=render(s, xi_alt),
        o_next_alt=render(s_next, xi_next_alt),
        q=render(s_next, xi) - o,
        label_mask=label_mask,
    )


def make_dataset(cfg: GridWorldConfig) -> tuple[Transitions, Transitions]:
    """(train, test) transitions of the grid world; deterministic given cfg.seed.

    Each split has its own generator (seeded 2*seed and 2*seed+1), so the test split does not
    change with n_train and no two (seed, split) pairs share a stream.
    """
    cfg.validate()
    splits = []
    for split_id, n in ((0, cfg.n_train), (1, cfg.n_test)):
        g = torch.Generator().manual_seed(seeding.gridworld_split(cfg.seed, split_id))
        splits.append(_make_split(n, cfg, g))
    return splits[0], splits[1]


# ---------------------------------------------------------------- LeRobot export

# dataset feature of each Transitions field an exported grid world carries (data/windows.py `fields`)
LEROBOT_FIELDS = {"o": "observation.grid", "o_alt": "observation.grid_alt", "a": "action",
                  "label_mask": "action_is_labeled"}


def export_lerobot(data: Transitions, root, fps: int = 10):
    """Write a grid-world split as a LeRobot v3.0 dataset (data/lerobot_write.py); returns its root.

    Transitions are drawn independently (module docstring), so each becomes a 2-frame episode:
    frame 0 = (o, o~, a, label), frame 1 = (o', o~', the tour's next action, unlabelled). The frame
    features carry `info.exogenous_region` (EXO_REGION, 1 where xi renders: what `exolam diagnose`
    measures saliency on). Frames are float32 [1, 4, 4] parquet columns, not video: exact, so a model
    trained on the export with
    `WindowSource(WindowDataset(root, LEROBOT_FIELDS), seed, ...)` sees the numbers the in-memory
    `TensorSource(data, seed, ...)` gives, batch for batch (tests/test_gridworld_export.py).
    """
    from exolam.data.lerobot_write import write_dataset

    grid = {"dtype": "float32", "shape": [1, H, W], "names": ["channel", "height", "width"],
            "info": {"exogenous_region": EXO_REGION.int().tolist()}}  # [H, W]: 1 where xi renders
    features = {"observation.grid": grid, "observation.grid_alt": grid,
                "action": {"dtype": "int64", "shape": [1], "names": ["move"]},
                "action_is_labeled": {"dtype": "bool", "shape": [1], "names": None}}
    a_next = policy_action(data.o_next)

    def episodes():
        for i in range(len(data)):
            yield {"observation.grid": torch.stack([data.o[i], data.o_next[i]]).numpy(),
                   "observation.grid_alt": torch.stack([data.o_alt[i], data.o_next_alt[i]]).numpy(),
                   "action": torch.stack([data.a[i], a_next[i]]).numpy(),
                   "action_is_labeled": torch.stack([data.label_mask[i], torch.tensor(False)]).numpy(),
                   "task": "tour the top three rows"}

    return write_dataset(root, episodes(), features, fps, robot_type="exolam-gridworld")
