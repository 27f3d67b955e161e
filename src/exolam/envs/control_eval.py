"""Policy evaluation in Distracting Control (App. D: "We evaluate the learned policy and report the
normalized return").

`evaluate_policy(cfg, act, episodes, seed, steps)` rolls a pixel policy out in `DistractingControl(cfg)`
under the same exogenous noise as the data (the env's own xi drift, or its discrete switching) and
returns the undiscounted return sum_t r_t of every episode:

    o_t = render(s_t, xi_t) / 255  (float32 [3, H, W] in [0, 1]),   a_t = clip(float32 act(o_t), spec),
    s_{t+1}, r_t = step(s_t, a_t),   t < min(steps, the task's own length; cheetah-run: 1000)

`frame_stack=N` hands `act` the last N renders of each episode, channel-stacked oldest first ([3N, H, W];
before the N-th step the first render fills the stack, as the training windows pad: data/windows.py).
`observe="state"` hands it the proprio state s_t instead (float32, as `observation.state` is stored):
the reference policy a perfect encoder could reach (`bc-state`).

Episodes run in lockstep: up to `LOCKSTEP` environments (each owns its mujoco.Renderer; interleaved
renders are bit-identical to one environment's, tests/test_control_eval.py) step together, with one
batched `act` call per step on the images of the episodes still running. Episode e resets with
`seeding.control_eval(seed, e)`, a stream disjoint from the collection's `control_episode`, so the
returns are a function of (cfg, act, seed, e) alone, whatever the batching.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from exolam import seeding
from exolam.envs.control import ControlConfig, DistractingControl
from exolam.errors import ConfigError

LOCKSTEP = 16  # environments stepped together (each holds a physics copy and a GL context)
MAX_EPISODES = 1_000_033  # seeding.control_eval's stride: episode ids stay below it


def _check_int(name: str, value, least: int, most: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least or (
            most is not None and value > most):
        bound = f"in [{least}, {most}]" if most is not None else f">= {least}"
        raise ConfigError(f"{name} = {value!r} must be an integer {bound}")


def _images(envs: list[DistractingControl]) -> torch.Tensor:
    """The envs' current renders as float32 [B, 3, H, W] in [0, 1]."""
    frames = np.stack([e.render() for e in envs])
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div_(255.0)


def _actions(act: Callable, images: torch.Tensor, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    a = act(images)
    a = a.detach().float().cpu().numpy() if torch.is_tensor(a) else np.asarray(a, dtype=np.float64)
    want = (images.shape[0],) + lo.shape
    if a.shape != want or not np.all(np.isfinite(a)):
        raise ConfigError(f"act returned actions of shape {tuple(a.shape)} (finite, shape {want} expected)")
    return np.clip(a.astype(np.float32), lo, hi)  # float32, as the collection's actions (control_collect)


def _run(envs: list[DistractingControl], act: Callable, reset_seeds: list[int], steps: float, frame_stack: int = 1,
         observe: str = "image") -> list[float]:
    """One lockstep group: len(reset_seeds) <= len(envs) episodes; their returns."""
    envs = envs[: len(reset_seeds)]
    spec = envs[0].action_spec()
    lo, hi = np.asarray(spec.minimum, np.float32), np.asarray(spec.maximum, np.float32)
    states = [env.reset(s)["state"] for env, s in zip(envs, reset_seeds)]
    stacks: list[list[torch.Tensor]] = [[] for _ in envs]  # the last frame_stack renders of each episode
    returns = [0.0] * len(envs)
    running = list(range(len(envs)))
    t = 0
    while running and t < steps:
        if observe == "state":
            x = torch.from_numpy(np.stack([states[i] for i in running]).astype(np.float32))
        else:
            for i, img in zip(running, _images([envs[i] for i in running])):
                stacks[i] = (stacks[i] or [img] * frame_stack)[1:] + [img] if frame_stack > 1 else [img]
            x = torch.stack([torch.cat(stacks[i]) for i in running])
        actions = _actions(act, x, lo, hi)
        still = []
        for i, a in zip(running, actions):
            out = envs[i].step(a)
            states[i] = out["state"]
            returns[i] += out["reward"]
            if not out["done"]:
                still.append(i)
        running, t = still, t + 1
    return returns


def evaluate_policy(cfg: ControlConfig, act: Callable[[torch.Tensor], np.ndarray], episodes: int, seed: int,
                    steps: int | None = None, frame_stack: int = 1, observe: str = "image") -> list[float]:
    """Undiscounted return of each of `episodes` episodes of `act` in DistractingControl(cfg) (App. D).

    act(images float32 torch [B, 3, H, W] in [0, 1]) -> actions [B, d_a] (numpy or torch), cast to
    float32 and clipped to the action spec here, as the collection's actions. Episode e resets with
    `seeding.control_eval(seed, e)`; `steps` truncates every episode (None: the task's own length).
    """
    if not isinstance(cfg, ControlConfig):
        raise ConfigError(f"cfg = {type(cfg).__name__} must be a ControlConfig")
    if not callable(act):
        raise ConfigError(f"act = {act!r} must be callable (images [B, 3, H, W] -> actions [B, d_a])")
    _check_int("episodes", episodes, 1, MAX_EPISODES)
    _check_int("seed", seed, 0)
    if steps is not None:
        _check_int("steps", steps, 1)
    _check_int("frame_stack", frame_stack, 1)
    if observe not in ("image", "state"):
        raise ConfigError(f"observe = {observe!r} must be image or state")
    cfg.validate()
    reset_seeds = [seeding.control_eval(int(seed), e) for e in range(int(episodes))]
    envs = [DistractingControl(cfg) for _ in range(min(LOCKSTEP, len(reset_seeds)))]
    try:
        returns: list[float] = []
        for k in range(0, len(reset_seeds), len(envs)):
            returns += _run(envs, act, reset_seeds[k: k + len(envs)], math.inf if steps is None else steps,
                            frame_stack, observe)
        return returns
    finally:
        for env in envs:
            env.close()
