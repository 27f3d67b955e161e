"""Policy evaluation in Distracting Control (envs/control_eval.py, App. D): deterministic returns,
lockstep = one episode at a time, truncation, seeds disjoint from collection, one-line errors."""

import numpy as np
import pytest
import torch

pytest.importorskip("dm_control")

from exolam import seeding  # noqa: E402
from exolam.envs import control_eval  # noqa: E402
from exolam.envs.control import ControlConfig, DistractingControl  # noqa: E402
from exolam.envs.control_eval import evaluate_policy  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402

CFG = ControlConfig(image_size=32)
STEPS = 60
W = torch.randn(3 * 8 * 8, 6, generator=torch.Generator().manual_seed(0)) / (3 * 8 * 8) ** 0.5


def zero(images):
    return np.zeros((images.shape[0], 6), dtype=np.float32)


def pixel_policy(images):
    """A fixed random linear-tanh map of the (subsampled) frames: the returns depend on what is rendered.
    One image at a time, so an action does not depend on the batch size: a BLAS may take another kernel
    (another summation order) for another number of rows, and the lockstep test compares returns exactly."""
    x = 3 * (images[:, :, ::4, ::4].flatten(1) - 0.5)
    return torch.tanh(torch.cat([row[None] @ W for row in x])).numpy()


def test_same_seed_same_returns_other_seed_differs():
    r1 = evaluate_policy(CFG, pixel_policy, 2, seed=3, steps=STEPS)
    r2 = evaluate_policy(CFG, pixel_policy, 2, seed=3, steps=STEPS)
    assert len(r1) == 2 and all(isinstance(r, float) and r > 0 for r in r1) and r1 == r2
    assert evaluate_policy(CFG, pixel_policy, 2, seed=4, steps=STEPS) != r1


@pytest.mark.parametrize("value", [0.0, 0.7])
def test_constant_policy_matches_a_hand_rollout(value):
    got = evaluate_policy(CFG, lambda im: zero(im) + value, 2, seed=5, steps=STEPS)
    env = DistractingControl(CFG)
    try:
        want = []
        for e in range(2):
            env.reset(seeding.control_eval(5, e))
            want.append(sum(env.step(np.full(6, value, np.float32))["reward"] for _ in range(STEPS)))
    finally:
        env.close()
    assert got == want and (value == 0 or min(got) > 0)


def test_lockstep_equals_one_episode_at_a_time(monkeypatch):
    calls = []

    def recording(images):
        calls.append((tuple(images.shape), images.dtype, float(images.min()), float(images.max())))
        return pixel_policy(images)

    lock = evaluate_policy(CFG, recording, 3, seed=1, steps=10)
    assert len(calls) == 10 and {c[:2] for c in calls} == {((3, 3, 32, 32), torch.float32)}
    assert all(0.0 <= c[2] and c[3] <= 1.0 for c in calls)
    monkeypatch.setattr(control_eval, "LOCKSTEP", 2)  # groups of 2 + 1, reusing the envs
    assert evaluate_policy(CFG, pixel_policy, 3, seed=1, steps=10) == lock
    monkeypatch.setattr(control_eval, "LOCKSTEP", 1)
    assert evaluate_policy(CFG, pixel_policy, 3, seed=1, steps=10) == lock


def test_steps_truncate_and_none_runs_the_task_length():
    n = []

    def counting(images):
        n.append(images.shape[0])
        return zero(images)

    evaluate_policy(CFG, counting, 1, seed=0, steps=7)
    assert n == [1] * 7
    n.clear()
    evaluate_policy(CFG, counting, 1, seed=0)
    assert len(n) == 1000  # cheetah-run's own length


def test_eval_seeds_never_collection_seeds():
    ev = {seeding.control_eval(s, e) for s in range(50) for e in range(200)}
    col = {seeding.control_episode(s, e) for s in range(50) for e in range(200)}
    assert len(ev) == 50 * 200 and not ev & col
    assert seeding.control_eval(0, 0) > seeding.control_episode(2**48 // 1_000_033 - 1, 1_000_032)


@pytest.mark.parametrize("kwargs, field", [
    ({"episodes": 0}, "episodes"), ({"episodes": 1.5}, "episodes"), ({"seed": -1}, "seed"),
    ({"steps": 0}, "steps"), ({"act": None}, "act"), ({"cfg": {"image_size": 32}}, "cfg"),
    ({"cfg": ControlConfig(image_size=4)}, "env.image_size"),
])
def test_bad_arguments_are_one_line(kwargs, field):
    args = {"cfg": CFG, "act": zero, "episodes": 1, "seed": 0, "steps": 2, **kwargs}
    with pytest.raises(ConfigError, match=field):
        evaluate_policy(**args)


def test_wrong_action_shape_is_one_line():
    with pytest.raises(ConfigError, match="act returned actions of shape"):
        evaluate_policy(CFG, lambda im: np.zeros((im.shape[0], 5)), 1, seed=0, steps=2)


def test_a_frame_stack_holds_the_last_renders_padded_with_the_first():
    """frame_stack=3: act sees [I_0, I_0, I_0], then [I_0, I_0, I_1], [I_0, I_1, I_2] (oldest first);
    observe="state" hands it the float32 proprio state, the one a state policy was trained on."""
    seen = []

    def record(x):
        seen.append(x.clone())
        return np.zeros((x.shape[0], 6), np.float32)

    evaluate_policy(CFG, record, 1, 0, steps=3, frame_stack=3)
    assert [tuple(x.shape) for x in seen] == [(1, 9, 32, 32)] * 3
    frames = [seen[0][0, 6:], seen[1][0, 6:], seen[2][0, 6:]]  # I_0, I_1, I_2: the newest of each stack
    assert not torch.equal(frames[0], frames[2])
    assert torch.equal(seen[0][0], torch.cat([frames[0]] * 3))
    assert torch.equal(seen[1][0], torch.cat([frames[0], frames[0], frames[1]]))
    assert torch.equal(seen[2][0], torch.cat(frames))
    single = []
    evaluate_policy(CFG, lambda x: single.append(x) or np.zeros((x.shape[0], 6), np.float32), 1, 0, steps=3)
    assert all(torch.equal(a[0], b) for a, b in zip(single, frames))  # the same renders, one at a time
    states = []
    evaluate_policy(CFG, lambda x: states.append(x) or np.zeros((x.shape[0], 6), np.float32), 1, 0, steps=2,
                    observe="state")
    env = DistractingControl(CFG)
    assert states[0].dtype == torch.float32 and torch.equal(states[0][0], torch.from_numpy(
        env.reset(seeding.control_eval(0, 0))["state"].astype(np.float32)))
    env.close()
