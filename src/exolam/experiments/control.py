"""App. D: latent actions in Distracting Control (cheetah-run under drifting colour and camera).

Pipeline (one row per method x label fraction x seed; experiments/control_jobs.py runs one row):

    expert (shipped, envs/control_expert.py) --collect--> LeRobot v3 dataset with paired renders
    LAM variant --frozen IDM--> z --pi(z|o), pi_Dec(a|z)--> return in the distracted env
    BC pi_BC(a|o) on the labelled episodes (`bc`) and on every training episode (`bc-all`)

Variants (`variants`, `OBJECTIVE[@ENCODER]`): `lam` (L_LAM, Eq. 5), `lam+xexo:1` (+ L_X-exo on the
paired renders, Eq. 16), `lam+robust-action:1` (+ L_xi-robust with the labelled episodes' actions,
Eq. 19), `lam+robust-flow:1` (+ L_xi-robust with the DIS optical flow of (I, I') as target) and
`lam@ema` (the jointly trained vision encoder f with an EMA target for o', App. D after Cui et al.).
Weights lambda = 1, as App. C uses in the grid world; every squared error is summed over its
dimensions (objectives.py), so the action and flow terms are small beside L_LAM's pixels.

Normalized return = return / (mean return of `bc-all` over seeds), as LAOM reports it; the table
also gives raw returns and the demonstrations' own (`expert`). Diagnostics per latent row on
held-out episodes: probe NMSE z -> a and NMSE(a | z, s), z consistency across paired renders, the
xi'-swap gap, and the xi-sensitivity delta_h (Eq. 13) of the representation the LAM reads (pixels
vs the EMA encoder; Sec. 4.3 predicts lower delta_h -> lower probe NMSE).

Presets: `--quick` (CI: a few short episodes, tiny models, every stage), `--preset cpu` (the claims
at reduced scale, 32 px, in about an hour on 2 cores) and the default, the paper's scale (500 x 1000
episodes at 64 px; a GPU job with `--device cuda`, runnable on CPU). App. D gives no training
hyperparameters; ours are in the presets below and in README "Distracting Control".
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import ClassVar

from exolam.envs.control import ControlConfig
from exolam.errors import ConfigError, check_positive_int, check_range
from exolam.experiments.control_jobs import (BASELINES, METRICS, ControlTask, parse_variant, run_group, shares_lam,
                                             variant_name)
from exolam.set_by import check_set_by
from exolam.models.lapo import LapoLAMConfig
from exolam.models.policy import DecoderConfig, PolicyConfig
from exolam.plotting import figure
from exolam.runs.files import LATE
from exolam.runs.rundir import RunDir, summarize
from exolam.runs.sweep import Task, run_tasks
from exolam.train.engine import TrainConfig, resolve_precision

NAME = "control"
KEYS = ["method", "label_fraction"]
VANILLA = "lam"


@dataclasses.dataclass
class Config:
    env: ControlConfig = dataclasses.field(default_factory=ControlConfig)
    """the distracted env of collection and evaluation (paper: drift, Delta_color 0.5, Delta_cam 0.05)"""
    episodes: int = 500
    """demonstrations collected (paper: 500)"""
    steps: int = 1000
    """steps per demonstration episode (cheetah: 1000)"""
    test_episodes: int = 25
    """the last episodes, held out for the probes and diagnostics"""
    data_seed: int = 0
    """collection seed (the dataset is shared by every row)"""
    expert: str = ""
    """exported expert folder; '' = the one shipped with exolam"""
    data: str = ""
    """an existing collection (`exolam control collect`'s OUT/dataset); '' = collect into the run folder"""
    variants: tuple[str, ...] = ("lam", "lam+xexo:1", "lam+robust-action:1", "lam+robust-flow:1", "lam@ema")
    """LAM variants: an objective string, @ema for the jointly trained EMA encoder, @SPEC for a frozen one"""
    label_fractions: tuple[float, ...] = (0.02, 0.1, 0.5)
    """share of training episodes with action labels (decoder, BC, Action-pred); whole episodes"""
    model: LapoLAMConfig = dataclasses.field(default_factory=LapoLAMConfig)
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=50_000, batch_size=128))
    policy: PolicyConfig = dataclasses.field(default_factory=PolicyConfig)
    policy_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=20_000, batch_size=128))
    decoder: DecoderConfig = dataclasses.field(default_factory=DecoderConfig)
    decoder_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=10_000, batch_size=128))
    bc_train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(steps=20_000, batch_size=128))
    eval_episodes: int = 10
    """evaluation episodes per policy and seed"""
    eval_steps: int = 1000
    """steps per evaluation episode"""
    probe_windows: int = 8192
    """windows sampled for the probes (train) and the diagnostics (held out)"""
    frame_gap: int = 1
    """k of the LAM's windows (I_t, I_t+k); App. D does not say (cheetah runs at 100 steps/s)"""
    seeds: int = 3
    """seeds per variant (mean +- std)"""
    device: str = "cpu"
    """cpu or cuda"""
    frame_stack: int = dataclasses.field(default=1, metadata={LATE: True})
    """N: every observation o (the LAM's, every policy's, in training and in the env) is the last N frames"""
    codec: str = dataclasses.field(default="h264", metadata={LATE: True})
    """codec of the collected frames: h264 (crf 23) or h264-lossless (the renders the policies see, exactly)"""
    # fields this experiment sets itself: refused with the hint (cli/flags.py `check`)
    SET_BY: ClassVar[dict[str, str]] = {
        "model.image_size": "the LAM reads the env's frames: use --env.image-size",
        "policy.image_size": "the policies read the env's frames: use --env.image-size",
        "model.encoder": "each variant sets its encoder: write it in --variants (lam@ema, lam@SPEC)",
        "policy.out_dim": "set to d_z (latent policy) or the action dim (BC)",
        "decoder.d_z": "set to the LAM's d_z: use --model.d-z",
        "model.in_channels": "3 per stacked frame: use --frame-stack",
        "policy.in_channels": "3 per stacked frame: use --frame-stack"}

    def validate(self) -> None:
        check_set_by(self)
        self.env.validate()
        for name in ("episodes", "steps", "test_episodes", "eval_episodes", "eval_steps", "probe_windows", "seeds",
                     "frame_gap", "frame_stack"):
            check_positive_int(name, getattr(self, name))
        if self.codec not in ("h264", "av1", "h264-lossless"):
            raise ConfigError(f"codec = {self.codec!r} must be one of h264, av1, h264-lossless")
        if self.test_episodes >= self.episodes:
            raise ConfigError(f"test_episodes = {self.test_episodes} must be < episodes = {self.episodes}")
        if not self.variants:
            raise ConfigError("variants must list at least one LAM variant")
        names = [variant_name(v) for v in self.variants]
        for i, v in enumerate(self.variants):
            parse_variant(v, f"variants[{i}]")
        if len(set(names)) != len(names):
            raise ConfigError(f"variants = {self.variants} lists a variant twice")
        if not self.label_fractions or len(set(self.label_fractions)) != len(self.label_fractions):
            raise ConfigError(f"label_fractions = {self.label_fractions} must be non-empty and distinct")
        for i, f in enumerate(self.label_fractions):
            check_range(f"label_fractions[{i}]", f, 1e-9, 1.0)
        for name in ("train", "policy_train", "decoder_train", "bc_train"):
            t = getattr(self, name).validate(name)
            if t.devices != 1:  # its LAM and policies train in-process, side by side in --jobs workers
                raise ConfigError(f"{name}.devices = {t.devices}: the control experiment trains each model in one "
                                  "process (parallel runs: --jobs)")
        self.model.validate()
        self.policy.validate()
        self.decoder.validate()
        if self.data and not Path(self.data).exists():
            raise ConfigError(f"data = {self.data!r} does not exist (collect one with `exolam control collect`)")
        if self.device != "cpu" and not self.device.startswith("cuda"):
            raise ConfigError(f"device = {self.device!r} must be 'cpu' or 'cuda[:i]'")


def _small(cfg: Config, **kw) -> Config:
    return dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, image_size=32), **kw)


def quick_config() -> Config:
    """CI size: 6 episodes x 60 steps at 32 px, tiny models, 30 updates per stage, 2 seeds."""
    tiny = TrainConfig(steps=30, batch_size=16)
    return _small(Config(), episodes=6, steps=60, test_episodes=2, label_fractions=(0.25,), seeds=2,
                  model=LapoLAMConfig(idm_channels=(8, 16), fdm_channels=(8, 16)), train=tiny,
                  policy=PolicyConfig(channels=(8, 16), hidden=32), policy_train=tiny,
                  decoder=DecoderConfig(hidden=32), decoder_train=tiny, bc_train=tiny, eval_episodes=2,
                  eval_steps=40, probe_windows=128)


def cpu_config() -> Config:
    """The claims at reduced scale on 2 cores: 50 episodes x 1000 steps at 32 px, 3 seeds. LAM lr 1e-3:
    at App. C's 3e-4 a 32 px LAM of this size learned no latent action within 2,000 updates (`exolam
    diagnose`: the FDM ignored z, error x1.01 with z permuted); at 1e-3 it did (x3.5). Frames stored
    losslessly (the policies train on the renders they see live); one frame: a stack of 2-4 gave pixel
    BC no return within the seed noise at this budget (docs/results/control-cpu-stack/analysis)."""
    return _small(Config(), episodes=50, test_episodes=5, label_fractions=(0.1,), codec="h264-lossless",
                  model=LapoLAMConfig(idm_channels=(32, 64, 64), fdm_channels=(16, 32, 64)),
                  train=TrainConfig(steps=3000, batch_size=32, lr=1e-3),
                  policy=PolicyConfig(channels=(16, 32, 64), hidden=128),
                  policy_train=TrainConfig(steps=2000, batch_size=64),
                  decoder_train=TrainConfig(steps=2000, batch_size=64), bc_train=TrainConfig(steps=2000, batch_size=64),
                  eval_episodes=5, probe_windows=2048)


PRESETS = {"quick": quick_config, "cpu": cpu_config}


def methods(cfg: Config) -> list[tuple[str, float]]:
    """(method, label_fraction) of every row config: latent variants and bc per fraction, bc-all, bc-state,
    expert."""
    out = [(variant_name(v), f) for f in cfg.label_fractions for v in cfg.variants]
    out += [("bc", f) for f in cfg.label_fractions] + [("bc-all", 1.0), ("bc-state", 1.0), ("expert", 1.0)]
    return out


def tasks(cfg: Config, data: str, n_episodes: int) -> list[ControlTask]:
    out = []
    for method, f in methods(cfg):
        for seed in range(1 if method == "expert" else cfg.seeds):
            trains = {k: dataclasses.replace(getattr(cfg, k), precision=resolve_precision(getattr(cfg, k).precision,
                                                                                          cfg.device))
                      for k in ("train", "policy_train", "decoder_train", "bc_train")}
            out.append(ControlTask(method, f, seed, data, cfg.env, n_episodes - cfg.test_episodes, n_episodes,
                                   cfg.model, trains["train"], cfg.policy, trains["policy_train"], cfg.decoder,
                                   trains["decoder_train"], trains["bc_train"], cfg.eval_episodes, cfg.eval_steps,
                                   cfg.probe_windows, cfg.frame_gap, cfg.device, cfg.frame_stack))
    return out


def plan(cfg: Config) -> list[tuple[str, int]]:
    return [(t.config, t.seed) for t in tasks(cfg, "", cfg.episodes)]


def dataset(cfg: Config, run_dir: RunDir, log=print, jobs: int = 1) -> tuple[str, int]:
    """The demonstrations (collected into the run folder unless `data` names one) and their episode count."""
    from exolam.data.lerobot import open_dataset

    if cfg.data:
        path = Path(cfg.data)
    else:
        from exolam.envs.control_collect import collect
        from exolam.envs.control_expert import load_expert

        folder = run_dir.path / "data"
        if run_dir.shard and not (folder / "collect.json").exists():
            raise ConfigError(f"--shard: collect the dataset first (`exolam reproduce control` without --shard, or "
                              f"`exolam control collect --out D` and --data D/dataset); {folder} is not finished")
        log(f"  control: collecting {cfg.episodes} x {cfg.steps} steps into {folder}")
        path = collect(cfg.env, load_expert(cfg.expert or None), folder, cfg.episodes, cfg.steps, cfg.data_seed,
                       codec=cfg.codec, jobs=jobs)
    n = len(open_dataset(path).episode_lengths)
    if n <= cfg.test_episodes:
        raise ConfigError(f"{path}: {n} episodes, but test_episodes = {cfg.test_episodes} must leave training episodes")
    return str(path), n


def run(cfg: Config, run_dir: RunDir, jobs_parallel: int | None = None, log=print) -> None:
    import os

    import torch

    cfg.validate()
    os.environ.setdefault("MUJOCO_GL", "egl")
    if jobs_parallel is None:
        jobs_parallel = 2 if torch.device(cfg.device).type == "cpu" else 0
    data, n = dataset(cfg, run_dir, log, jobs=max(1, jobs_parallel))
    todo = tasks(cfg, data, n)
    root = str(run_dir.path / "checkpoints")
    groups: dict[tuple, list[ControlTask]] = {}
    for i, t in enumerate(todo):  # label fractions of one shared LAM: one task, trained once, in sequence
        groups.setdefault((t.method, t.seed) if shares_lam(t) else (i,), []).append(t)
    run_tasks([Task(tuple((t.config, t.seed) for t in g), run_group, (g, root)) for g in groups.values()], run_dir,
              [(t.config, t.seed) for t in todo], jobs=jobs_parallel, log=log)


def summarize_rows(cfg: Config, rows: list[dict]) -> dict:
    """Per (method, label fraction): mean / std over seeds; normalized return = return / mean bc-all return."""
    bc_all = [float(r["return"]) for r in rows if r["method"] == "bc-all"]
    ref = sum(bc_all) / len(bc_all) if bc_all else math.nan
    rows = [{**r, "normalized_return": float(r["return"]) / ref if ref and math.isfinite(ref) else math.nan}
            for r in rows]
    return {"rows": summarize(rows, KEYS, METRICS + ["normalized_return"]), "bc_all_return": ref,
            "variants": [variant_name(v) for v in cfg.variants], "label_fractions": list(cfg.label_fractions),
            "image_size": cfg.env.image_size, "episodes": cfg.episodes, "lam_steps": cfg.train.steps}


def _label(method: str, f: float) -> str:
    return method if method in ("bc-all", "expert") else f"{method} ({f:g})"


def plot(summary: dict):
    rows = summary["rows"]
    fig, axes = figure(1, 3, width=5.4)
    fig.subplots_adjust(wspace=0.75, left=0.1)
    panels = [("normalized_return", "normalized return (/ BC on all labels)", rows),
              ("probe_nmse", "probe NMSE z -> a (held out)", [r for r in rows if r["method"] not in BASELINES]),
              ("delta_h_rel", "encoder xi-sensitivity delta_h (relative)",
               [r for r in rows if r["method"] not in BASELINES])]
    for ax, (metric, title, rs) in zip(axes, panels):
        rs = [r for r in rs if math.isfinite(r[metric]["mean"])]
        ax.barh(range(len(rs)), [r[metric]["mean"] for r in rs], xerr=[r[metric]["std"] for r in rs],
                color=[f"C{i % 10}" for i in range(len(rs))])
        ax.set_yticks(range(len(rs)), [_label(r["method"], r["label_fraction"]) for r in rs], fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"App. D: Distracting cheetah-run ({summary['episodes']} episodes, {summary['image_size']} px, "
                 f"LAM {summary['lam_steps']} updates; mean $\\pm$ std over seeds)", fontsize=10)
    return fig


def _m(row: dict, metric: str) -> float:
    return row[metric]["mean"]


def _pm(row: dict, metric: str, fmt: str = ".2f") -> str:
    return f"{row[metric]['mean']:{fmt}} ± {row[metric]['std']:{fmt}}"


SPREAD = {1: " (above, beyond the spread)", -1: " (below, beyond the spread)", 0: " (within the spread)"}


def _order(a: dict, b: dict, metric: str) -> int:
    """+1 / -1 when a's mean is above / below b's by more than the seed spread (the sum of their stds),
    0 when the difference is within it (undecided at this many seeds)."""
    d = _m(a, metric) - _m(b, metric)
    return 0 if abs(d) <= a[metric]["std"] + b[metric]["std"] else (1 if d > 0 else -1)


def claims(summary: dict) -> list[dict]:
    """App. D's claims, judged from the numbers with criteria fixed in advance: a difference counts only
    beyond the seed spread (|mean difference| > the sum of the two stds); within it a row is undecided."""
    by = {(r["method"], r["label_fraction"]): r for r in summary["rows"]}
    out = []
    for f in summary["label_fractions"]:
        van = by.get((VANILLA, f))
        remedies = [v for v in summary["variants"] if v != VANILLA and (v, f) in by]
        if van is None or not remedies:
            continue
        order = {v: _order(by[(v, f)], van, "normalized_return") for v in remedies}
        wins, losses = [v for v, o in order.items() if o > 0], [v for v, o in order.items() if o < 0]
        holds = ("yes" if len(wins) == len(remedies) else "undecided" if not wins and not losses
                 else "no" if not wins else "partly")
        out.append({"claim": f"Every remedy beats vanilla L_LAM in normalized return (labels {f:g})",
                    "paper": "X-exo, Action-pred, Flow-pred and the EMA encoder improve on the vanilla LAM",
                    "ours": "; ".join(f"{v} {_pm(by[(v, f)], 'normalized_return')}"
                                      f"{SPREAD[order[v]]}" for v in remedies)
                    + f" vs vanilla {_pm(van, 'normalized_return')} (mean ± std over seeds)",
                    "holds": holds})
        bc = by.get(("bc", f))
        others = [v for v in summary["variants"] if (v, f) in by]
        if bc is not None and others:
            above = [v for v in others if _order(by[(v, f)], bc, "return") > 0]
            below = [v for v in others if _order(by[(v, f)], bc, "return") < 0]
            refs = "; ".join(f"{m} {_pm(by[(m, 1.0)], 'return', '.0f')}" for m in ("bc-all", "bc-state")
                             if (m, 1.0) in by)
            out.append({"claim": f"BC on the labelled data is the upper bound of the latent policies (labels {f:g})",
                        "paper": "pi_BC on the labelled dataset is the upper bound",
                        "ours": f"bc return {_pm(bc, 'return', '.0f')}; "
                        + ", ".join(f"{v} {_pm(by[(v, f)], 'return', '.0f')}" for v in others)
                        + (f"; above it beyond the spread: {', '.join(above)}" if above else "")
                        + (f" (references: {refs})" if refs else ""),
                        "holds": "no" if above else "yes" if len(below) == len(others) else "undecided"})
    f0 = summary["label_fractions"][0]
    pix, ema = by.get((VANILLA, f0)), by.get((f"{VANILLA}@ema", f0))
    if pix is not None and ema is not None:
        d, n = _order(ema, pix, "delta_h_rel"), _order(ema, pix, "probe_nmse")
        out.append({"claim": "Lower encoder xi-sensitivity delta_h goes with lower probe NMSE (pixels vs EMA)",
                    "paper": "Sec. 4.3 / Eq. 14: a low-delta_h encoder reduces exogenous energy and improves the LAM",
                    "ours": f"delta_h (relative) pixels {_pm(pix, 'delta_h_rel', '.3f')} vs EMA "
                            f"{_pm(ema, 'delta_h_rel', '.3f')}; probe NMSE pixels {_pm(pix, 'probe_nmse', '.3f')} vs "
                            f"EMA {_pm(ema, 'probe_nmse', '.3f')}",
                    "holds": "undecided" if not d or not n else "yes" if d == n else "no"})
    return out
