"""Resumable demonstration collection in Distracting Control (issue 8, "Expert and data").

`collect(cfg, policy, out, episodes, steps, seed)` rolls `policy` out in `DistractingControl(cfg)`
and writes a LeRobot v3.0 dataset (through `data.lerobot_write.write_dataset`) to `out/dataset`.
The policy is any `policy(state, rng) -> action` (the trained expert later; tests use a seeded random
policy); it is not part of the staging spec, so resuming with another policy is the caller's mistake.

Per frame t of an episode (the observation is of s_t, the reward and done are those of the step
taken with a_t, as LeRobot's `next.*` columns):

    observation.image      video uint8 [H, W, 3]  render of s_t under the env's xi_t
    observation.image_alt  video uint8 [H, W, 3]  render of the same physics under xi_alt_t (paired)
    observation.state      float32 [S]            proprio state s_t (dm_control observation, flat)
    action                 float32 [A]            a_t = policy(s_t), clipped to the action spec
    next.reward            float32                r_{t+1}
    next.done              bool                   the episode ended at this step
    xi, xi_alt             float32 [xi_dim]       the exogenous states of the two renders (paired)

An episode has `steps` frames, fewer if the task ends first (cheetah: 1000 control steps).
fps = 1 / the task's control timestep (cheetah: 100).

Paired xi_alt: its own exogenous trajectory, run alongside the env's with the same dynamics
(`DistractingControl.new_stream` / `advance`, a per-episode RNG): in drift mode an independent reset
draw (uniform in the xi box, velocities 0) that then drifts exactly as the env's xi does; in discrete
mode a configuration other than the env's at t = 0 that then switches w.p. p_switch. So a window
(t, t+k) of the paired render, (xi~_t, xi~_t+k), follows the exogenous dynamics T_xi as (xi_t, xi_t+k)
does (Def. 4.5: xi~ != xi, xi~' ~ T_xi(.|xi~)), and L_X-exo and the consistency metric see paired
transitions distributed like the data's. xi_alt is stored as float32 and rendered from exactly
those float32 values.

Seeds: episode e uses s_e = `seeding.control_episode(seed, e)` alone: `env.reset(s_e)` (the env adds
its own cfg.seed) and two generators spawned from SeedSequence(s_e): key 0 the policy's rng, key 1
xi_alt. So episode e is a function of (cfg, seed, e), whatever was collected before it.

Resuming: each finished episode is saved to `out/.staging/episode_{e:06d}.npz` (compressed, written
to a temporary name, fsynced and renamed), and a rerun skips the episodes already staged, so a
killed collection continues without duplicate or corrupt episodes. `out/.staging/spec.json` records
(env config, seed, steps, paired); a rerun asking for another spec is refused with one ConfigError
line (the number of episodes may change: episode e does not depend on it). Once every episode is
staged the dataset is written atomically to `out/dataset`, then `out/collect.json` (the spec with
`episodes`), then the staging folder is removed; a rerun of a finished collection with the same spec
returns `out/dataset` at once. Staging costs disk: about 10 MB per 1000-step episode at 64x64
with paired renders (measured, np.savez_compressed), ~5 GB for the paper's 500 x 1000 until the
dataset is written. One collector per `out` at a time (`outdir.claim`: a second is refused naming the
first's PID; a refusal rolls back what it created, a killed collection keeps its staged episodes).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np

from exolam import seeding
from exolam.data import video
from exolam.data.lerobot_write import write_dataset
from exolam.envs.control import ControlConfig, DistractingControl
from exolam.errors import ConfigError, check_positive_int
from exolam.runs.files import atomic_write, load_npz, open_staging, read_json, save_npz
from exolam.runs.outdir import claim

STAGING, DATASET, DONE, SPEC = ".staging", "dataset", "collect.json", "spec.json"
FORMAT = 1
MAX_EPISODES = 1_000_033  # seeding.control_episode's stride: episode ids must stay below it


@dataclasses.dataclass
class CollectConfig:
    """`exolam control collect`: App. D's demonstrations (paper: 500 episodes x 1000 steps, paired)."""

    env: ControlConfig = dataclasses.field(default_factory=ControlConfig)
    episodes: int = 500
    """episodes rolled out"""
    steps: int = 1000
    """steps per episode"""
    seed: int = 0
    """episode e uses seed + e (its start state, exogenous process and expert noise)"""
    codec: str = "h264"
    """video codec of the stored frames: h264, av1, or h264-lossless (bit-exact renders, ~25x h264's size)"""
    paired: bool = True
    """also render every frame under a second exogenous state (<camera>_alt, xi_alt)"""
    expert: str = ""
    """folder of an exported expert (`exolam control train-expert`); '' = the one shipped with exolam"""
    jobs: int = 1
    """processes that roll episodes out (1 thread each); the dataset does not depend on it"""

    def validate(self) -> "CollectConfig":
        self.env.validate()
        check_positive_int("episodes", self.episodes)
        check_positive_int("steps", self.steps)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed = {self.seed!r} must be an integer >= 0")
        check_positive_int("jobs", self.jobs)
        if self.codec not in video.CODECS:
            raise ConfigError(f"codec = {self.codec!r} must be one of {sorted(video.CODECS)}")
        return self


def staged_name(e: int) -> str:
    return f"episode_{e:06d}.npz"


def _spec(cfg: ControlConfig, seed: int, steps: int, paired: bool) -> dict:
    spec = {"format": FORMAT, "env": dataclasses.asdict(cfg), "seed": seed, "steps": steps, "paired": paired}
    return json.loads(json.dumps(spec))  # normalised as it reads back (tuples -> lists)


def _check_spec(path: Path, want: dict, ignore=("episodes",)) -> None:
    have = read_json(path, f"remove {path.parent} to start the collection afresh")
    diff = []
    for key in sorted(set(have) | set(want)):
        if key in ignore:
            continue
        a, b = have.get(key), want.get(key)
        if key == "env" and isinstance(a, dict) and isinstance(b, dict):
            diff += [f"env.{k}={a.get(k)!r} (asked {b.get(k)!r})"
                     for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
        elif a != b:
            diff.append(f"{key}={a!r} (asked {b!r})")
    if diff:
        raise ConfigError(f"{path}: this collection was made with {', '.join(diff)}; use another --out or "
                          f"remove {path.parent}")


def _features(env: DistractingControl, state_dim: int, action_dim: int, paired: bool) -> dict:
    n = env.cfg.image_size
    img = {"dtype": "video", "shape": [n, n, 3]}
    feats = {"observation.image": img}
    if paired:
        feats["observation.image_alt"] = dict(img)
    feats.update({
        "observation.state": {"dtype": "float32", "shape": [state_dim]},
        "action": {"dtype": "float32", "shape": [action_dim]},
        "next.reward": {"dtype": "float32", "shape": [1]},
        "next.done": {"dtype": "bool", "shape": [1]},
        "xi": {"dtype": "float32", "shape": [env.xi_dim]},
    })
    if paired:
        feats["xi_alt"] = {"dtype": "float32", "shape": [env.xi_dim]}
    return feats


def rollout(env: DistractingControl, policy, seed: int, episode: int, steps: int, paired: bool = True) -> dict:
    """One episode's arrays {feature key: [T, ...]} (see the module doc); a function of its arguments."""
    s = seeding.control_episode(seed, episode)
    g_policy, g_alt = (np.random.default_rng(c) for c in np.random.SeedSequence(s).spawn(2))
    spec = env.action_spec()
    lo, hi = np.asarray(spec.minimum, np.float32), np.asarray(spec.maximum, np.float32)
    out = env.reset(s)
    alt = env.new_stream(g_alt, avoid=env.xi_index if env.configs is not None else None) if paired else None
    cols = {k: [] for k in ("observation.image", "observation.image_alt", "observation.state", "action",
                            "next.reward", "next.done", "xi", "xi_alt")}
    for t in range(steps):
        state = out["state"]
        cols["observation.image"].append(env.render())
        cols["observation.state"].append(state.astype(np.float32))
        cols["xi"].append(out["xi"].astype(np.float32))
        if paired:
            xi_alt = alt.xi.astype(np.float32)
            cols["observation.image_alt"].append(env.render(xi_alt.astype(np.float64)))
            cols["xi_alt"].append(xi_alt)
        action = np.asarray(policy(state.copy(), g_policy), dtype=np.float32).reshape(-1)
        if action.shape != lo.shape or not np.all(np.isfinite(action)):
            raise ConfigError(f"episode {episode} step {t}: the policy returned an action of shape "
                              f"{tuple(action.shape)} (finite, shape {tuple(lo.shape)} expected)")
        action = np.clip(action, lo, hi)
        out = env.step(action)
        if paired:
            env.advance(alt, g_alt)
        cols["action"].append(action)
        cols["next.reward"].append(np.float32(out["reward"]))
        cols["next.done"].append(bool(out["done"]))
        if out["done"]:
            break
    return {k: np.stack(v) for k, v in cols.items() if v}


def collect(cfg: ControlConfig, policy, out, episodes: int, steps: int, seed: int, codec: str = "h264",
            paired: bool = True, *, limit: int | None = None, jobs: int = 1) -> Path:
    """Collect `episodes` episodes of at most `steps` frames into `out/dataset`; returns its path.

    `jobs` > 1 stages the episodes in that many spawned processes (the policy must pickle: the
    exported expert does); the dataset is the same whatever `jobs` is (episode e depends on e alone).

    Resumes a staged collection in `out` (module doc). `limit`: stage only episodes [0, limit) and
    return the staging folder without writing the dataset (a collection cut short on purpose).
    """
    check_positive_int("episodes", episodes)
    check_positive_int("steps", steps)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed = {seed!r} must be an integer >= 0")
    if episodes > MAX_EPISODES:
        raise ConfigError(f"episodes = {episodes} must be <= {MAX_EPISODES}")
    if limit is not None:
        check_positive_int("limit", limit)
    if codec not in video.CODECS:
        raise ConfigError(f"codec = {codec!r} must be one of {sorted(video.CODECS)}")
    cfg.validate()
    if cfg.image_size % 2:
        raise ConfigError(f"env.image_size = {cfg.image_size} must be even to be stored as video (yuv420p)")
    out = Path(out)
    staging, dataset, done = out / STAGING, out / DATASET, out / DONE
    spec = _spec(cfg, seed, steps, bool(paired))
    with claim(out, resumable=lambda: any(staging.glob("episode_*.npz"))):  # sweeps out/.staging too
        if dataset.exists():
            if done.exists():
                _check_spec(done, {**spec, "episodes": episodes}, ignore=())
                return dataset
            if not (staging / SPEC).exists():
                raise ConfigError(f"{dataset}: exists but is not a finished collection ({done} is missing); "
                                  f"use another --out or remove it")
            _check_spec(staging / SPEC, spec)  # killed between the dataset and collect.json: finish up
            _finish(staging, done, spec, episodes)
            return dataset
        open_staging(staging, SPEC, spec, lambda path: _check_spec(path, spec))
        todo = [e for e in range(episodes if limit is None else min(limit, episodes))
                if not (staging / staged_name(e)).exists()]
        if jobs > 1 and len(todo) > 1:  # J spawned processes stage episodes e = k, k + J, ... (1 thread each)
            import concurrent.futures as cf
            import multiprocessing

            with cf.ProcessPoolExecutor(min(jobs, len(todo)), mp_context=multiprocessing.get_context("spawn")) as pool:
                for f in [pool.submit(_stage, cfg, policy, staging, todo[k::jobs], seed, steps, paired)
                          for k in range(min(jobs, len(todo)))]:
                    f.result()
            todo = []
        if limit is not None and limit < episodes and not todo:
            return staging
        env = DistractingControl(cfg)
        try:
            for e in todo:
                save_npz(staging / staged_name(e), rollout(env, policy, seed, e, steps, paired))
            if limit is not None and limit < episodes:
                return staging
            out0 = env.reset(seeding.control_episode(seed, 0))
            feats = _features(env, out0["state"].shape[0], env.action_spec().shape[0], bool(paired))
            fps = round(1.0 / env._env.control_timestep())
        finally:
            env.close()
        keys = list(feats)
        write_dataset(dataset, (load_npz(staging / staged_name(e), keys, "re-collect it") for e in range(episodes)),
                      feats, fps, codec=codec, robot_type=f"dm_control/{cfg.domain}-{cfg.task}")
        _finish(staging, done, spec, episodes)
        return dataset


def _stage(cfg: ControlConfig, policy, staging: Path, todo: list[int], seed: int, steps: int, paired: bool) -> None:
    """A collection worker: stage episodes `todo` (same files as the sequential path)."""
    import torch

    torch.set_num_threads(1)
    env = DistractingControl(cfg)
    try:
        for e in todo:
            save_npz(staging / staged_name(e), rollout(env, policy, seed, e, steps, paired))
    finally:
        env.close()


def _finish(staging: Path, done: Path, spec: dict, episodes: int) -> None:
    atomic_write(done, json.dumps({**spec, "episodes": episodes}, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)


@dataclasses.dataclass
class VideosConfig:
    """`exolam control videos`: action-free camera videos of the distracted task, one mp4 per episode
    (what a user's own recordings look like; the input of `exolam import mp4`)."""

    env: ControlConfig = dataclasses.field(default_factory=ControlConfig)
    episodes: int = 8
    """episodes, one mp4 each"""
    steps: int = 200
    """steps per episode"""
    seed: int = 0
    """episode e uses seed + e"""
    codec: str = "h264"
    """video codec: h264, av1 or h264-lossless"""
    expert: str = ""
    """folder of an exported expert; '' = the one shipped with exolam"""

    def validate(self) -> "VideosConfig":
        CollectConfig(env=self.env, episodes=self.episodes, steps=self.steps, seed=self.seed,
                      codec=self.codec).validate()
        return self


def write_videos(cfg: VideosConfig, policy, out, log=None) -> list[Path]:
    """Episode e of `collect(cfg.env, policy, ..., seed=cfg.seed)` (same frames, no paired render) as
    `out/episode_{e:06d}.mp4`; an existing file is kept (a killed run resumes), each is written under a
    temporary name and renamed. `log(line)`, if given, hears of every episode written."""
    cfg.validate()
    if cfg.env.image_size % 2:
        raise ConfigError(f"env.image_size = {cfg.env.image_size} must be even to be stored as video (yuv420p)")
    out = Path(out)
    with claim(out, resumable=lambda: any(out.glob("episode_*.mp4"))):
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(f"{out}: cannot create ({e.strerror or e}); choose another --out") from None
        env, paths = DistractingControl(cfg.env), []
        try:
            fps = round(1.0 / env._env.control_timestep())
            for e in range(cfg.episodes):
                path = out / f"episode_{e:06d}.mp4"
                if not path.exists():
                    frames = rollout(env, policy, cfg.seed, e, cfg.steps, paired=False)["observation.image"]
                    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}.mp4")
                    writer = video.VideoFileWriter(tmp, cfg.codec, fps, *frames.shape[1:])
                    try:
                        writer.write(frames)
                        writer.close()
                    except BaseException:
                        writer.abort()
                        tmp.unlink(missing_ok=True)
                        raise
                    os.replace(tmp, path)
                    if log is not None:
                        log(f"[videos] episode {e + 1}/{cfg.episodes}: {len(frames)} frames -> {path}")
                paths.append(path)
        finally:
            env.close()
    return paths
