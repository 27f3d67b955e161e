"""`exolam control ...`: the Distracting Control expert and its demonstrations (App. D).

    exolam control train-expert [--algo sac|ppo] [--steps N] [--seed S] [--out DIR] [--field value ...]
    exolam control collect [--episodes N] [--steps T] [--seed S] [--expert DIR] [--out DIR] [--jobs J]
                           [--env.delta-color 0.5 --env.delta-cam 0.05 ...] [--codec h264|av1] [--no-paired]
    exolam control videos [--episodes N] [--steps T] [--seed S] [--expert DIR] [--out DIR] [--env.* ...]

train-expert trains (or resumes) an SB3 agent on proprioceptive state and exports it to
OUT/expert (envs/control_expert.py); collect rolls an exported expert (default: the one shipped
with exolam) out in the distracted env and writes the LeRobot v3 dataset OUT/dataset, resuming a
killed collection (envs/control_collect.py); videos writes the same episodes' camera frames as one
mp4 per episode, without actions (a stand-in for a user's own recordings, for `exolam import mp4`). Flags are checked like `reproduce`'s (cliargs.py):
one line, exit code 2, for an unknown flag or a bad value.
"""

from __future__ import annotations

import os
from pathlib import Path

from exolam.cliargs import Flag, apply, check, config_flags
from exolam.errors import ConfigError
from exolam.runs.outdir import check_outside

USAGE = "usage: exolam control train-expert|collect|videos [--out DIR] [--field value ...] (see --help of each)"
OUT = {"--out": Flag("out", str, config=False)}


def _parse(cls, args: list[str], name: str, default_out: str):
    usage = f"exolam control {name}"
    table = {**OUT, **config_flags(cls)}
    if "-h" in args or "--help" in args:
        print(f"usage: {usage} [--out DIR] " + " ".join(f"[{s}]" for s in table if s != "--out"))
        print((cls.__doc__ or "").strip())
        return None, None
    given = check(list(args), table, name, usage)
    out = given["out"].value if "out" in given else default_out
    if not out:
        raise ConfigError("--out = '' must name a folder")
    return apply(cls(), given), out


def train_expert(args: list[str]) -> int:
    from exolam.envs.control_expert import ExpertConfig, load_expert, train_expert

    cfg, out = _parse(ExpertConfig, args, "train-expert", "runs/expert")
    if cfg is None:
        return 0
    os.environ.setdefault("MUJOCO_GL", "egl")
    try:
        import stable_baselines3  # noqa: F401
    except ImportError:
        raise ConfigError("train-expert needs stable-baselines3: pip install -e '.[expert]'") from None
    path = train_expert(cfg, out, log=lambda m: print(m, flush=True))
    ev = load_expert(path).meta["eval"]
    print(f"expert: {path} (return {ev['mean']:.1f} +- {ev['std']:.1f} over {len(ev['returns'])} episodes)")
    return 0


def collect(args: list[str]) -> int:
    from exolam.envs.control_collect import CollectConfig, collect
    from exolam.envs.control_expert import load_expert

    cfg, out = _parse(CollectConfig, args, "collect", "runs/control-data")
    if cfg is None:
        return 0
    cfg.validate()
    check_outside(Path(out), {"--expert": cfg.expert or None})
    expert = load_expert(cfg.expert or None)
    print(f"[collect] {cfg.episodes} x {cfg.steps} steps of {cfg.env.domain}-{cfg.env.task} "
          f"(Delta_color {cfg.env.delta_color:g}, Delta_cam {cfg.env.delta_cam:g}) -> {out}", flush=True)
    path = collect(cfg.env, expert, out, cfg.episodes, cfg.steps, cfg.seed, cfg.codec, cfg.paired,
                   jobs=cfg.jobs)
    print(f"dataset: {path}")
    return 0


def videos(args: list[str]) -> int:
    from exolam.envs.control_collect import VideosConfig, write_videos
    from exolam.envs.control_expert import load_expert

    cfg, out = _parse(VideosConfig, args, "videos", "runs/control-videos")
    if cfg is None:
        return 0
    cfg.validate()
    check_outside(Path(out), {"--expert": cfg.expert or None})
    paths = write_videos(cfg, load_expert(cfg.expert or None), out)
    print(f"videos: {len(paths)} mp4 files in {out} (import them with `exolam import mp4 {out} --out DST`)")
    return 0


def control(argv: list[str]) -> int:
    commands = {"train-expert": train_expert, "collect": collect, "videos": videos}
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] not in commands:
        raise ConfigError(f"control: unknown command '{argv[0]}' (allowed: {', '.join(commands)})")
    return commands[argv[0]](argv[1:])
