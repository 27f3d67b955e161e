"""Resumable Distracting Control collection: resume = uninterrupted, paired renders, LeRobot layout."""

import json

import numpy as np
import pytest

pytest.importorskip("dm_control")

from codec_noise import assert_decoded_close, assert_same_episodes, record_writes  # noqa: E402
from exolam import seeding  # noqa: E402
from exolam.data.lerobot import open_dataset  # noqa: E402
from exolam.envs import control_collect  # noqa: E402
from exolam.envs.control import ControlConfig, DistractingControl  # noqa: E402
from exolam.envs.control_collect import collect, rollout, staged_name  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402

CFG = ControlConfig(image_size=32)
EPISODES, STEPS, SEED = 3, 12, 7
VIDEOS = ("observation.image", "observation.image_alt")
NUMERIC = ("observation.state", "action", "next.reward", "next.done", "xi", "xi_alt")


def policy(state, rng):
    return rng.uniform(-1.0, 1.0, 6)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The uninterrupted collection: (its dataset, the episodes handed to the writer)."""
    out = tmp_path_factory.mktemp("full")
    with pytest.MonkeyPatch.context() as mp:
        handed = record_writes(mp, control_collect)
        dataset = collect(CFG, policy, out, EPISODES, STEPS, SEED)
    return dataset, handed[0]


@pytest.fixture(scope="module")
def full(full_run):
    return full_run[0]


def test_dataset_layout_features_and_lengths(full):
    assert full.name == "dataset" and not (full.parent / ".staging").exists()
    assert json.loads((full.parent / "collect.json").read_text())["episodes"] == EPISODES
    ds = open_dataset(full)
    assert ds.episode_lengths == [STEPS] * EPISODES and ds.fps == 100
    assert ds.info["features"]["observation.image"]["shape"] == [32, 32, 3]
    assert set(ds.video_keys) == set(VIDEOS)
    env = DistractingControl(CFG)
    try:
        shapes = {"observation.state": (STEPS, 17), "action": (STEPS, 6), "xi": (STEPS, env.xi_dim),
                  "xi_alt": (STEPS, env.xi_dim)}
    finally:
        env.close()
    for key, shape in shapes.items():
        col = ds.column(key, 0)
        assert col.shape == shape and col.dtype == np.float32
    assert ds.frames("observation.image", 1).shape == (STEPS, 32, 32, 3)
    ds.validate(deep=True)


def test_resume_equals_uninterrupted(full_run, tmp_path, monkeypatch):
    full, full_episodes = full_run
    staging = collect(CFG, policy, tmp_path, EPISODES, STEPS, SEED, limit=2)  # "killed" after 2 episodes
    assert sorted(p.name for p in staging.glob("episode_*.npz")) == [staged_name(0), staged_name(1)]
    (staging / staged_name(0)).unlink()  # and one staged episode lost
    (staging / f".{staged_name(2)}.tmp999").write_bytes(b"half an npz")  # a write cut short
    made = []

    def counted(env, policy, seed, e, *a, **k):
        made.append(e)
        return rollout(env, policy, seed, e, *a, **k)

    monkeypatch.setattr(control_collect, "rollout", counted)
    handed = record_writes(monkeypatch, control_collect)
    mine = collect(CFG, policy, tmp_path, EPISODES, STEPS, SEED)
    assert made == [0, 2] and not staging.exists()  # only the missing episodes were collected
    assert_same_episodes(full_episodes, handed[0])  # exact: the raw frames and columns, same machine and code
    a, b = open_dataset(full), open_dataset(mine)
    assert a.episode_lengths == b.episode_lengths
    for e in range(EPISODES):  # exact: parquet columns are lossless, written by our code
        for key in NUMERIC + ("frame_index", "episode_index", "index", "timestamp"):
            np.testing.assert_array_equal(a.column(key, e), b.column(key, e), err_msg=f"{key} episode {e}")
    for key in VIDEOS:  # tolerance: two lossy encodings, not always the same bitstream (DECODED_TOL)
        assert_decoded_close(a, b, key, EPISODES)
    assert collect(CFG, policy, tmp_path, EPISODES, STEPS, SEED) == mine and made == [0, 2]  # finished


def test_paired_render_differs_and_state_matches_physics(full):
    ds = open_dataset(full)
    env = DistractingControl(CFG)
    try:
        for e in range(EPISODES):
            staged = rollout(env, policy, SEED, e, STEPS)  # what collect staged for episode e, exactly
            out = env.reset(seeding.control_episode(SEED, e))
            cols = {k: ds.column(k, e) for k in NUMERIC}
            for k in NUMERIC:
                np.testing.assert_array_equal(staged[k].reshape(cols[k].shape), cols[k], err_msg=k)
            img = ds.frames("observation.image", e).astype(float)
            alt = ds.frames("observation.image_alt", e).astype(float)
            own, cross = [], []
            for t in range(STEPS):  # replay the actions: the columns are this physics, the renders its views
                np.testing.assert_array_equal(out["state"].astype(np.float32), cols["observation.state"][t])
                np.testing.assert_array_equal(out["xi"].astype(np.float32), cols["xi"][t])
                assert not np.allclose(cols["xi"][t], cols["xi_alt"][t])
                r, r_alt = env.render(), env.render(cols["xi_alt"][t].astype(np.float64))
                np.testing.assert_array_equal(r, staged["observation.image"][t])
                np.testing.assert_array_equal(r_alt, staged["observation.image_alt"][t])
                assert np.abs(r.astype(float) - r_alt).mean() > 5  # the paired view differs
                own.append(np.abs(r - img[t]).mean() + np.abs(r_alt - alt[t]).mean())
                cross.append(np.abs(r - alt[t]).mean() + np.abs(r_alt - img[t]).mean())
                out = env.step(cols["action"][t])
                assert np.float32(out["reward"]) == cols["next.reward"][t]
            # decoded frames are their renders up to codec error (h264 yuv420p on 32x32 is coarse)
            assert np.mean(own) < 0.7 * np.mean(cross), (own, cross)
    finally:
        env.close()


def test_mismatched_staging_refused(full, tmp_path):
    collect(CFG, policy, tmp_path, EPISODES, STEPS, SEED, limit=1)
    with pytest.raises(ConfigError, match=r"seed=7 \(asked 8\)"):
        collect(CFG, policy, tmp_path, EPISODES, STEPS, 8)
    with pytest.raises(ConfigError, match=r"steps=12 \(asked 5\)"):
        collect(CFG, policy, tmp_path, EPISODES, 5, SEED)
    with pytest.raises(ConfigError, match=r"env.delta_cam=0.05 \(asked 0.1\)"):
        collect(ControlConfig(image_size=32, delta_cam=0.1), policy, tmp_path, EPISODES, STEPS, SEED)
    with pytest.raises(ConfigError, match="seed=7"):  # a finished collection is checked too
        collect(CFG, policy, full.parent, EPISODES, STEPS, 8)
    with pytest.raises(ConfigError, match="even"):
        collect(ControlConfig(image_size=33), policy, tmp_path / "odd", 1, 2, 0)


def test_paired_stream_drifts_like_the_data(full):
    """xi_alt is its own trajectory under the env's dynamics (Def. 4.5): its steps are as small as xi's,
    while xi_alt and xi stay far apart (independent reset draws)."""
    ds = open_dataset(full)
    for e in range(EPISODES):
        xi, alt = ds.column("xi", e).astype(float), ds.column("xi_alt", e).astype(float)
        step_xi, step_alt = np.abs(np.diff(xi, axis=0)).mean(), np.abs(np.diff(alt, axis=0)).mean()
        assert 0.3 < step_alt / step_xi < 3.0
        assert np.abs(alt - xi).mean() > 5 * step_alt


def test_discrete_paired_stream_switches_like_the_data(tmp_path):
    cfg = ControlConfig(image_size=32, mode="discrete", n_xi=4, p_switch=0.2)
    arrays = rollout(DistractingControl(cfg), policy, 0, 0, 200)
    xi, alt = arrays["xi"], arrays["xi_alt"]
    assert not np.array_equal(alt[0], xi[0])  # another configuration at t = 0
    switches = lambda x: np.any(np.diff(x, axis=0) != 0, axis=1).mean()  # noqa: E731
    assert 0.1 < switches(alt) < 0.3 and 0.1 < switches(xi) < 0.3
