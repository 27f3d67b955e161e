"""Shared machinery of the linear-LAM figures (Fig. 2c, 3 right, 4): cells, training, evaluation.

A *cell* is one (env config, objective, seed). All cells of a figure train together as ensembles
(`train.linear.train_linear_ensemble`), in groups that are the tasks of the sweep runner
(runs/sweep.py): rows are recorded as each group finishes, so a killed sweep resumes where it
stopped, and `--shard K/N` / `--jobs J` split the cells across machines / processes. `--solver closed-form` replaces SGD by the global optimum
(`theory.py`) for the objectives that have one (L_LAM, L_LAM + lam L_X-exo).
"""

from __future__ import annotations

import abc
import dataclasses
import os
from typing import Literal

import torch

from exolam.data.transitions import Transitions
from exolam.envs.linear import LinearEnvConfig, LinearExBMDP, make_linear_exbmdp
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.set_by import check_set_by
from exolam.metrics.latent import (consistency_var, exo_energy, innovation_encoder, leakage_var, least_squares,
                                   probe_nmse, probe_nmse_given_o)
from exolam.models.linear import LinearLAM
from exolam.objectives import format_objective, parse_objective, term_weights
from exolam.runs.rundir import RunDir
from exolam.runs.sweep import Task, run_tasks, shard_items
from exolam.theory import check_prop_4_8, lam_optimum, xexo_optimum
from exolam.train.linear import Diverged, LinearTrainConfig, train_linear_ensemble

# every linear row; `_given_o` = the gauge-free companion (metrics/latent.py, "The gauge")
METRICS = ["probe_nmse", "probe_nmse_given_o", "leakage_var", "leakage_var_given_o", "consistency_var",
           "consistency_var_given_o", "loss_lam_test", "loss_train"]
# with `bounds`: Prop. 4.8 (Eq. 20) and Remark 4.3 (Eq. 12-14) on each model
BOUND_METRICS = ["prop48_lhs", "prop48_rhs", "prop48_L", "prop48_eta", "exo_energy", "exo_switch_freq",
                 "exo_sensitivity", "exo_bound", "exo_energy_z", "exo_sensitivity_z", "exo_bound_z", "exo_ratio_z"]


@dataclasses.dataclass
class LinearSweepConfig(abc.ABC):
    """Fields shared by the linear figures; App. B Table 1 defaults. Each figure's Config says its grid."""

    env: LinearEnvConfig = dataclasses.field(default_factory=LinearEnvConfig)
    train: LinearTrainConfig = dataclasses.field(default_factory=LinearTrainConfig)
    seeds: int = 4
    """seeds per config (the paper reports mean +- standard error over 4)"""
    solver: Literal["sgd", "closed-form"] = "sgd"
    """sgd: Adam as in the paper; closed-form: the global optimum where one exists"""
    eval_samples: int = 2000
    """held-out transitions for leakage_var / consistency_var"""
    group: int = 96
    """models trained together in one ensemble (rows are recorded per group)"""
    device: str = "cpu"
    """cpu, cuda or cuda:<i>"""
    with_optimum: bool = False
    """also evaluate the closed-form global optimum of L_LAM for each L_LAM cell (Prop. 4.2 check)"""
    bounds: bool = False
    """also evaluate Prop. 4.8's bound and Remark 4.3's exogenous-energy split on every model"""

    @abc.abstractmethod
    def grid(self) -> list[dict]:
        """The swept points of the experiment (env fields and optionally `objective`)."""

    def validate(self) -> None:
        """Everything that can be checked before a run folder exists, the grid included."""
        check_set_by(self)
        self.env.validate()
        self.train.validate(self.env.d_o)
        for name in ("seeds", "eval_samples", "group"):
            check_positive_int(name, getattr(self, name))
        if self.solver not in ("sgd", "closed-form"):
            raise ConfigError(f"solver = {self.solver!r} must be 'sgd' or 'closed-form'")
        if self.device != "cpu" and not (self.device == "cuda" or
                                         (self.device.startswith("cuda:") and self.device[5:].isdigit())):
            raise ConfigError(f"device = {self.device!r} must be 'cpu', 'cuda' or 'cuda:<index>'")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device = {self.device!r} but no CUDA device is available here")
        cells = make_cells(self, self.grid())
        _check_memory(self, cells)


def quick_sizes(cfg: LinearSweepConfig) -> LinearSweepConfig:
    """The data and training sizes every linear `--quick` preset shares (1k trajectories, 1.5k steps)."""
    cfg.env = dataclasses.replace(cfg.env, n_traj=1000, n_test_traj=200)
    cfg.train = dataclasses.replace(cfg.train, steps=1500)
    return cfg


def run_sweep(cfg: LinearSweepConfig, run: RunDir, jobs: int = 0, log=print) -> None:
    """Validate, then train or solve every cell of cfg.grid() in run's shard not yet recorded."""
    cfg.validate()
    run_cells(plan(cfg), cfg, run, jobs, log)


def plan_keys(cfg: LinearSweepConfig) -> list[tuple[str, int]]:
    return [(c.config, c.seed) for c in plan(cfg)]


def check_sweep(name: str, values, lo: float | None = None, hi: float | None = None) -> None:
    """A swept list: at least one value, no repeats, each finite and inside [lo, hi]."""
    if len(values) == 0:
        raise ConfigError(f"{name} is empty: give at least one value")
    for i, v in enumerate(values):
        check_range(f"{name}[{i}]", v, lo, hi)
    if len(set(values)) != len(values):
        raise ConfigError(f"{name} = {tuple(values)} lists a value twice")


def _check_memory(cfg: LinearSweepConfig, cells: list) -> None:
    """Refuse a batch size whose per-step tensors cannot fit in this machine's memory (before any run).

    Per model and step: the index stream (1000 steps x batch, int64), the features and their second
    moment (batch x width, width^2 with width <= 5 n_xi d_s + d_a), fp32; a few copies of each.
    """
    env, b = cfg.env, cfg.train.batch_size
    width = 5 * env.n_xi * env.d_s + env.d_a
    models = 1 if cfg.solver == "closed-form" else min(cfg.group, len(cells))
    need = models * (1000 * b * 8 + 4 * 4 * (b * width + width * width))
    have = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    if need > have // 2:
        raise ConfigError(f"train.batch_size = {b} needs ~{need / 2**30:.1f} GiB per step for {models} models, more "
                          f"than half of this machine's {have / 2**30:.1f} GiB; lower --train.batch-size or --group")


@dataclasses.dataclass(frozen=True)
class Cell:
    config: str  # the row's config key, e.g. "p_switch=0.5|objective=lam"
    env: LinearEnvConfig
    objective: str
    seed: int
    extra: tuple = ()  # (column, value) pairs written to the row (the swept values)

    @property
    def family(self) -> tuple[str, ...]:
        """The objective's term names: an ensemble holds one family, so it computes only its terms."""
        return tuple(t.name for t in parse_objective(self.objective))


def make_cells(cfg: LinearSweepConfig, grid: list[dict]) -> list[Cell]:
    """One cell per grid point x seed; a grid point sets env fields and optionally `objective`."""
    cells = []
    for point in grid:
        env_changes = {k: v for k, v in point.items() if k != "objective"}
        objective = format_objective(parse_objective(point.get("objective", "lam")))
        env = dataclasses.replace(cfg.env, **env_changes)
        env.validate()
        key = "|".join(f"{k}={v}" for k, v in point.items())
        for seed in range(cfg.seeds):
            cells.append(Cell(key, env, objective, seed, tuple(point.items())))
    return cells


def evaluate(model: LinearLAM, env: LinearExBMDP, n_eval: int, splits=None, heads=None,
             bounds: bool = False) -> dict[str, float]:
    """Both probes (train -> test split), the variance metrics and their gauge-free companions,
    held-out L_LAM; with `bounds` also Prop. 4.8 and Remark 4.3 (`bound_metrics`).

    `splits` = (train, test) Transitions already rendered from `env` (rendered here if None);
    `heads` = {"action" | "q": W} the model's trained L_xi-robust heads, if any.
    """
    model = model.double()
    enc = lambda o, on: model.encode(o.double(), on.double())  # noqa: E731
    with torch.no_grad():
        tr, te = splits or (env.transitions("train"), env.transitions("test"))
        z_tr, z_te = enc(tr.o, tr.o_next), enc(te.o, te.o_next)
        if not (torch.isfinite(z_tr).all() and torch.isfinite(z_te).all()):
            raise ConfigError("the model's latent actions hold NaN or inf: training diverged; lower --train.lr")
        loss = (model.decode(te.o.double(), z_te) - te.o_next.double()).pow(2).sum(1).mean()
        out = {"probe_nmse": probe_nmse(z_tr, tr.a, z_te, te.a),
               "probe_nmse_given_o": probe_nmse_given_o(z_tr, tr.o, tr.a, z_te, te.o, te.a),
               "loss_lam_test": float(loss)}
        enc_r = innovation_encoder(enc, tr.o, z_tr)
        views = env.views_over_xi_next("test", n_eval)
        out["leakage_var"], out["leakage_var_given_o"] = leakage_var(enc, *views), leakage_var(enc_r, *views)
        pairs = env.views_over_xi_pairs("test", n_eval)
        out["consistency_var"], out["consistency_var_given_o"] = consistency_var(enc, *pairs), consistency_var(enc_r, *pairs)
        if bounds:
            out.update(bound_metrics(model, env, tr, te, z_tr, enc_r, heads or {}))
    return out


def bound_metrics(model: LinearLAM, env: LinearExBMDP, tr: Transitions, te: Transitions, z_tr: torch.Tensor,
                  enc_r, heads: dict) -> dict[str, float]:
    """Prop. 4.8 (Eq. 20) and Remark 4.3 (Eq. 12-14) measured on one model, held-out split.

    Prop. 4.8: lhs = E||W(z - z~)||^2 against rhs = 6 L_xi-robust + 3 eta. A model trained with a
    robust head uses it (target a, or q with eta = E||q - q~||^2 > 0); any other model gets the
    least-squares head z -> a of the train split (the bound holds for every W).
    Remark 4.3: E||eps||^2 of the data, eps = h(s', xi') - h(s', xi), = P[xi' != xi] x sensitivity
    <= P[xi' != xi] delta_h(s') (Eq. 12-14), and the same split of the part that reaches z, D eps
    (`_z`: the emission seen through the IDM's o'-map, gauge-free since z -> z + F o leaves D);
    exo_ratio_z = E||D eps||^2 / E||z - probe_o(o)||^2: the exogenous energy in z against z's
    innovation energy (it exceeds 1 when D eps partly cancels against the rest of z).
    """
    sl = env.split("test")
    xi_alt = env.xi_alt[sl]
    d = lambda x: x.double()  # noqa: E731
    z, z_alt = model.encode(d(te.o), d(te.o_next)), model.encode(d(te.o_alt), d(te.o_next_alt))
    if "q" in heads:
        W, y, y_alt = d(heads["q"]), d(te.q), d(env.render(te.a, xi_alt))
    elif "action" in heads:
        W, y, y_alt = d(heads["action"]), d(te.a), d(te.a)
    else:
        W, y, y_alt = least_squares(z_tr, tr.a, intercept=False).T, d(te.a), d(te.a)  # no bias, like the heads
    p48 = check_prop_4_8(z, z_alt, y, y_alt, W)
    out = {"prop48_lhs": p48["lhs"], "prop48_rhs": p48["rhs"], "prop48_L": (p48["rhs"] - 3 * p48["eta"]) / 6,
           "prop48_eta": p48["eta"]}
    xi, xi_next, rows = env.xi[sl], env.xi_next[sl], torch.arange(len(te))
    h = torch.einsum("kos,bs->kbo", d(env.H), d(te.s_next))  # h(s', k) for every exogenous state k

    def split(h):  # Eq. (12) and the bound (14) for the emission h (n_xi, N, dims)
        delta_h = torch.stack([(h[i] - h[j]).pow(2).sum(-1) for i in range(len(h)) for j in range(i)]).amax(0)
        return exo_energy(h[xi, rows], h[xi_next, rows], xi_next != xi, delta_h)

    e, ez = split(h), split(h @ model.D.detach().T)
    energy_r = enc_r(te.o, te.o_next).pow(2).sum(-1).mean()
    out.update({"exo_energy": e["energy"], "exo_switch_freq": e["switch_freq"], "exo_sensitivity": e["sensitivity"],
                "exo_bound": e["bound"], "exo_energy_z": ez["energy"], "exo_sensitivity_z": ez["sensitivity"],
                "exo_bound_z": ez["bound"], "exo_ratio_z": float(ez["energy"] / energy_r.clamp_min(1e-30))})
    return out


def _closed_form(cell: Cell, tr: Transitions, d_z: int) -> tuple[LinearLAM, float]:
    terms = parse_objective(cell.objective)
    if len(terms) == 1:
        return lam_optimum(tr.o, tr.o_next, d_z)
    if [t.name for t in terms] == ["lam", "xexo"]:
        return xexo_optimum(tr.o, tr.o_next, tr.o_alt, tr.o_next_alt, d_z, terms[1].weight)
    raise AssertionError("closed_form called on an objective without one")


def has_closed_form(objective: str) -> bool:
    return [t.name for t in parse_objective(objective)] in (["lam"], ["lam", "xexo"])


def plan(cfg: LinearSweepConfig) -> list[Cell]:
    """The cells of cfg's sweep that this solver can produce, in row order (the closed-form solver has
    no rows for objectives without a closed form)."""
    cells = make_cells(cfg, cfg.grid())
    return [c for c in cells if cfg.solver == "sgd" or has_closed_form(c.objective)]


def run_cells(cells: list[Cell], cfg: LinearSweepConfig, run: RunDir, jobs: int = 0, log=print) -> None:
    """Train (or solve) every cell of run's shard not yet recorded, as ensembles through the sweep runner."""
    if cfg.solver == "closed-form":
        skipped = sorted({c.objective for c in make_cells(cfg, cfg.grid()) if not has_closed_form(c.objective)})
        if skipped:
            log(f"closed-form solver: no closed form for {', '.join(skipped)} (L_xi-robust learns a head W "
                "coupled to the rank-limited IDM); those rows are skipped, use --solver sgd for them")
    done = run.done_keys()
    todo = [c for c in shard_items(cells, run) if (c.config, c.seed) not in done]
    # an ensemble holds models of one objective family, so it computes only that family's terms
    families: dict[tuple, list[Cell]] = {}
    for c in todo:
        families.setdefault(c.family, []).append(c)
    size = 1 if cfg.solver == "closed-form" else cfg.group
    groups = [f[i : i + size] for f in families.values() for i in range(0, len(f), size)]
    # in this process each (env config, seed) dataset is generated once and dropped after its last group
    last = {_env_key(c): gi for gi, g in enumerate(groups) for c in g}
    tasks = [Task(tuple((c.config, c.seed) for c in g), run_group,
                  (g, cfg, [k for k, gi in last.items() if gi == i] if jobs == 0 else None)) for i, g in enumerate(groups)]
    run_tasks(tasks, run, [(c.config, c.seed) for c in cells], jobs=jobs, log=log)


_ENVS: dict[tuple, LinearExBMDP] = {}  # this process's datasets, shared by the groups that use them


def _env_key(c: Cell) -> tuple:
    return dataclasses.astuple(c.env), c.seed


def run_group(group: list[Cell], cfg: LinearSweepConfig, release: list[tuple] | None) -> list[dict]:
    """One ensemble (or one closed-form cell): train, evaluate, return its rows. `release`: the
    datasets this group uses last (None: drop every dataset it built, as a worker process does)."""
    for c in group:
        if _env_key(c) not in _ENVS:
            _ENVS[_env_key(c)] = make_linear_exbmdp(c.env, c.seed)
    group_envs = [_ENVS[_env_key(c)] for c in group]
    try:
        return _group_rows(group, group_envs, cfg)
    finally:
        for k in ([_env_key(c) for c in group] if release is None else release):
            _ENVS.pop(k, None)


def _group_rows(group: list[Cell], group_envs: list[LinearExBMDP], cfg: LinearSweepConfig) -> list[dict]:
    if cfg.solver == "sgd":
        try:
            params, parts = train_linear_ensemble(group_envs, [c.objective for c in group],
                                                  [c.seed for c in group], cfg.train, device=cfg.device)
        except Diverged as e:
            bad = group[e.model]
            raise ConfigError(f"{bad.config}, seed {bad.seed}: {e}") from None
        weights = torch.tensor([term_weights(c.objective) for c in group])
        train_loss = (parts * weights).sum(1).tolist()
    rows = []
    for m, (c, e) in enumerate(zip(group, group_envs)):
        splits = (e.transitions("train"), e.transitions("test"))  # rendered once per cell
        heads = {}
        if cfg.solver == "closed-form":
            model, loss = _closed_form(c, splits[0], cfg.train.d_z)
        else:
            model, loss = params.select(m), train_loss[m]
            heads = {t: W[m] for t, W in (("action", params.W_a), ("q", params.W_q)) if f"robust-{t}" in c.family}
        row = {"config": c.config, "seed": c.seed, **dict(c.extra), "objective": c.objective,
               "solver": cfg.solver, **evaluate(model, e, cfg.eval_samples, splits, heads, cfg.bounds),
               "loss_train": loss}
        if cfg.with_optimum and c.objective == "lam":  # Prop. 4.2 check
            opt, loss_opt = lam_optimum(splits[0].o, splits[0].o_next, cfg.train.d_z)
            row.update({f"optimum_{k}": v for k, v in evaluate(opt, e, cfg.eval_samples, splits).items()})
            row["optimum_loss_train"] = loss_opt
        rows.append(row)
    return rows
