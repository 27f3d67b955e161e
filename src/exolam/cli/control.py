"""`exolam control ...`: the Distracting Control expert and its demonstrations (App. D).

    exolam control train-expert [--algo sac|ppo] [--steps N] [--seed S] [--out DIR] [--field value ...]
    exolam control collect [--episodes N] [--steps T] [--seed S] [--expert DIR] [--out DIR] [--jobs J]
                           [--env.delta-color 0.5 --env.delta-cam 0.05 ...] [--codec h264|av1] [--no-paired]
    exolam control videos [--episodes N] [--steps T] [--seed S] [--expert DIR] [--out DIR] [--env.* ...]

train-expert trains (or resumes) an SB3 agent on proprioceptive state and exports it to
OUT/expert (envs/control_expert.py); collect rolls an exported expert (default: the one shipped
with exolam) out in the distracted env and writes the LeRobot v3 dataset OUT/dataset, resuming a
killed collection (envs/control_collect.py); videos writes the same episodes' camera frames as one
mp4 per episode, without actions (a stand-in for a user's own recordings, for `exolam import mp4`).
Each command is its env config plus `--out` (one dataclass, cli/flags.py).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from exolam.cli.flags import parse, project
from exolam.envs.control_collect import CollectConfig, VideosConfig
from exolam.envs.control_expert import ExpertConfig
from exolam.errors import ConfigError
from exolam.runs.outdir import check_outside


@dataclasses.dataclass
class ExpertCommand(ExpertConfig):
    """Train (or resume) the SB3 expert of cheetah-run on its state (App. D)."""

    out: str = "runs/expert"
    """run folder: the SB3 checkpoint, and the exported expert in OUT/expert"""


@dataclasses.dataclass
class CollectCommand(CollectConfig):
    """Roll the expert out in Distracting Control into a paired LeRobot dataset (App. D)."""

    out: str = "runs/control-data"
    """folder of the dataset (OUT/dataset) and its resumable staging"""


@dataclasses.dataclass
class VideosCommand(VideosConfig):
    """Write action-free mp4s of the distracted task: a stand-in for your own recordings."""

    out: str = "runs/control-videos"
    """folder of the videos, one episode_NNNNNN.mp4 per episode"""


def train_expert(args: list[str]) -> int:
    from exolam.envs.control_expert import load_expert, train_expert

    cmd = parse(ExpertCommand, args, "exolam control train-expert")
    if cmd is None:
        return 0
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ConfigError("train-expert needs stable-baselines3: pip install -e '.[expert]'") from None
    path = train_expert(project(cmd, ExpertConfig), cmd.out, log=lambda m: print(m, flush=True))
    ev = load_expert(path).meta["eval"]
    print(f"expert: {path} (return {ev['mean']:.1f} +- {ev['std']:.1f} over {len(ev['returns'])} episodes)")
    return 0


def _with_expert(command, config, args: list[str], prog: str):
    """(the command, its env config validated, the expert) of collect / videos; (None,) * 3 after --help."""
    from exolam.envs.control_expert import load_expert

    cmd = parse(command, args, prog)
    if cmd is None:
        return None, None, None
    cfg = project(cmd, config).validate()
    check_outside(Path(cmd.out), {"--expert": cfg.expert or None})
    return cmd, cfg, load_expert(cfg.expert or None)


def collect(args: list[str]) -> int:
    from exolam.envs.control_collect import collect

    cmd, cfg, expert = _with_expert(CollectCommand, CollectConfig, args, "exolam control collect")
    if cmd is None:
        return 0
    print(f"[collect] {cfg.episodes} x {cfg.steps} steps of {cfg.env.domain}-{cfg.env.task} "
          f"(Delta_color {cfg.env.delta_color:g}, Delta_cam {cfg.env.delta_cam:g}) -> {cmd.out}", flush=True)
    path = collect(cfg.env, expert, cmd.out, cfg.episodes, cfg.steps, cfg.seed, cfg.codec, cfg.paired, jobs=cfg.jobs)
    print(f"dataset: {path}")
    return 0


def videos(args: list[str]) -> int:
    from exolam.envs.control_collect import write_videos

    cmd, cfg, expert = _with_expert(VideosCommand, VideosConfig, args, "exolam control videos")
    if cmd is None:
        return 0
    print(f"[videos] {cfg.episodes} x {cfg.steps} steps of {cfg.env.domain}-{cfg.env.task} -> {cmd.out}", flush=True)
    paths = write_videos(cfg, expert, cmd.out, log=lambda m: print(m, flush=True))
    print(f"videos: {len(paths)} mp4 files in {cmd.out} (import them with `exolam import mp4 {cmd.out} --out DST`)")
    return 0


COMMANDS = {"train-expert": train_expert, "collect": collect, "videos": videos}


def control(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: exolam control train-expert|collect|videos [flags]  (each: --help)\n")
        for name, cls in (("train-expert", ExpertCommand), ("collect", CollectCommand), ("videos", VideosCommand)):
            print(f"  exolam control {name:12s}  {cls.__doc__.splitlines()[0]}")
        return 0 if argv else 2
    if argv[0] not in COMMANDS:
        raise ConfigError(f"control: unknown command '{argv[0]}' (allowed: {', '.join(COMMANDS)})")
    return COMMANDS[argv[0]](argv[1:])
