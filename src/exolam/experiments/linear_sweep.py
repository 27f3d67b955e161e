"""Shared machinery of the linear-LAM figures (Fig. 2c, 3 right, 4): cells, training, evaluation.

A *cell* is one (env config, objective, seed). All cells of a figure train together as ensembles
(`train.train_linear_ensemble`), in groups whose rows are recorded as each group finishes, so a
killed sweep resumes where it stopped. `--solver closed-form` replaces SGD by the global optimum
(`theory.py`) for the objectives that have one (L_LAM, L_LAM + lam L_X-exo).
"""

from __future__ import annotations

import collections
import dataclasses
import sys
from typing import Literal

import torch

from exolam.data.transitions import Transitions
from exolam.envs.linear import LinearEnvConfig, LinearExBMDP, make_linear_exbmdp
from exolam.errors import ConfigError, check_positive_int
from exolam.runio import RunDir
from exolam.metrics.latent import consistency_var, leakage_var, probe_nmse
from exolam.models.linear import LinearLAM
from exolam.objectives import Term, format_objective, parse_objective
from exolam.theory import lam_optimum, xexo_optimum
from exolam.train import LinearTrainConfig, train_linear_ensemble

METRICS = ["probe_nmse", "leakage_var", "consistency_var", "loss_lam_test", "loss_train"]


@dataclasses.dataclass
class LinearSweepConfig:
    """Fields shared by the linear figures; App. B Table 1 defaults."""

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
    with_optimum: bool = False
    """also evaluate the closed-form global optimum of L_LAM for each L_LAM cell (Prop. 4.2 check)"""

    def validate(self) -> None:
        self.env.validate()
        self.train.validate(self.env.d_o)
        for name in ("seeds", "eval_samples", "group"):
            check_positive_int(name, getattr(self, name))
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ConfigError(f"device = {self.device!r} but no CUDA device is available here")


@dataclasses.dataclass(frozen=True)
class Cell:
    config: str  # the row's config key, e.g. "p_switch=0.5|objective=lam"
    env: LinearEnvConfig
    objective: str
    seed: int
    extra: tuple = ()  # (column, value) pairs written to the row (the swept values)

    @property
    def weights(self) -> list[float]:
        w = {t.name: t.weight for t in parse_objective(self.objective)}
        return [1.0, w.get("xexo", 0.0), w.get("robust-action", 0.0), w.get("robust-q", 0.0)]


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


def evaluate(lam: LinearLAM, env: LinearExBMDP, n_eval: int, splits=None) -> dict[str, float]:
    """Probe NMSE (train -> test split), leakage_var, consistency_var and held-out L_LAM.

    `splits` = (train, test) Transitions already rendered from `env` (rendered here if None).
    """
    lam = lam.double()
    enc = lambda o, on: lam.encode(o.double(), on.double())  # noqa: E731
    with torch.no_grad():
        tr, te = splits or (env.transitions("train"), env.transitions("test"))
        z_te = enc(te.o, te.o_next)
        loss = (lam.decode(te.o.double(), z_te) - te.o_next.double()).pow(2).sum(1).mean()
        out = {"probe_nmse": probe_nmse(enc(tr.o, tr.o_next), tr.a, z_te, te.a), "loss_lam_test": float(loss)}
        out["leakage_var"] = leakage_var(enc, *env.views_over_xi_next("test", n_eval))
        out["consistency_var"] = consistency_var(enc, *env.views_over_xi_pairs("test", n_eval))
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


def run_cells(cells: list[Cell], cfg: LinearSweepConfig, run: RunDir, log=print) -> None:
    """Train (or solve) every cell not yet in run's results.csv, recording rows group by group."""
    done = run.done_keys()
    todo = [c for c in cells if (c.config, c.seed) not in done]
    if cfg.solver == "closed-form":
        skipped = sorted({c.objective for c in todo if not has_closed_form(c.objective)})
        if skipped:
            log(f"closed-form solver: no closed form for {', '.join(skipped)} (L_xi-robust learns a head W "
                "coupled to the rank-limited IDM); those rows are skipped, use --solver sgd for them")
        todo = [c for c in todo if has_closed_form(c.objective)]
    if len(done):
        log(f"{run.path}: resuming, {len(done)} rows already recorded, {len(todo)} to go")
    # an ensemble holds models of one objective family, so it computes only that family's terms
    families: dict[tuple, list[Cell]] = {}
    for c in todo:
        families.setdefault(tuple(wt > 0 for wt in c.weights[1:]), []).append(c)
    size = 1 if cfg.solver == "closed-form" else cfg.group
    groups = [f[i : i + size] for f in families.values() for i in range(0, len(f), size)]

    # each (env config, seed) dataset is generated once and dropped after its last cell
    env_key = lambda c: (dataclasses.astuple(c.env), c.seed)  # noqa: E731
    uses = collections.Counter(env_key(c) for c in todo)
    envs: dict[tuple, LinearExBMDP] = {}
    n_done = 0
    for group in groups:
        for c in group:
            if env_key(c) not in envs:
                envs[env_key(c)] = make_linear_exbmdp(c.env, c.seed)
        group_envs = [envs[env_key(c)] for c in group]
        if cfg.solver == "sgd":
            w = torch.tensor([c.weights for c in group])
            params, parts = train_linear_ensemble(group_envs, w, [c.seed for c in group], cfg.train,
                                                  device=cfg.device)
            models = [params.select(m) for m in range(len(group))]
            train_loss = (parts * w).sum(1).tolist()
        rows = []
        for m, (c, e) in enumerate(zip(group, group_envs)):
            splits = (e.transitions("train"), e.transitions("test"))  # rendered once per cell
            if cfg.solver == "closed-form":
                lam, loss = _closed_form(c, splits[0], cfg.train.d_z)
            else:
                lam, loss = models[m], train_loss[m]
            row = {"config": c.config, "seed": c.seed, **dict(c.extra), "objective": c.objective,
                   "solver": cfg.solver, **evaluate(lam, e, cfg.eval_samples, splits), "loss_train": loss}
            if cfg.with_optimum and c.objective == "lam":  # Prop. 4.2 check
                opt, loss_opt = lam_optimum(splits[0].o, splits[0].o_next, cfg.train.d_z)
                row.update({f"optimum_{k}": v for k, v in evaluate(opt, e, cfg.eval_samples, splits).items()})
                row["optimum_loss_train"] = loss_opt
            rows.append(row)
            uses[env_key(c)] -= 1
            if not uses[env_key(c)]:
                del envs[env_key(c)]
        run.append(rows, order=[(c.config, c.seed) for c in cells])
        n_done += len(group)
        log(f"  {run.name}: {n_done}/{len(todo)} cells done")
        sys.stdout.flush()
