"""Distracting Control environment (App. D): rendering, paired renders, drift bounds, discrete xi."""

import math

import numpy as np
import pytest

pytest.importorskip("dm_control")

from exolam.envs.control import ControlConfig, DistractingControl, xi_dim  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402

N_STEPS = 20


@pytest.fixture(scope="module")
def env():
    e = DistractingControl(ControlConfig())
    yield e
    e.close()


@pytest.fixture(scope="module")
def discrete_env():
    e = DistractingControl(ControlConfig(mode="discrete", n_xi=3, p_switch=0.3, seed=5))
    yield e
    e.close()


def _rollout(env, seed, n=N_STEPS):
    out = env.reset(seed)
    g = np.random.default_rng(123)
    frames, xis, states = [env.render()], [out["xi"]], [out["state"]]
    for _ in range(n):
        out = env.step(g.uniform(-1, 1, 6))
        frames.append(env.render())
        xis.append(out["xi"])
        states.append(out["state"])
    return np.stack(frames), np.stack(xis), np.stack(states)


def test_frames_are_uint8_64x64_and_specs(env):
    out = env.reset(0)
    frame = env.render()
    assert frame.dtype == np.uint8 and frame.shape == (64, 64, 3)
    assert frame.std() > 0  # not a blank buffer
    assert out["state"].shape == (17,) and out["xi"].shape == (xi_dim(env.n_mat),) == (env.xi_dim,)
    spec = env.action_spec()
    assert spec.shape == (6,) and np.all(spec.minimum == -1) and np.all(spec.maximum == 1)


def test_same_seed_same_frames_other_seed_differs(env):
    f1, x1, s1 = _rollout(env, 3)
    f2, x2, s2 = _rollout(env, 3)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_array_equal(s1, s2)
    f3, x3, _ = _rollout(env, 4)
    assert not np.array_equal(x1, x3) and not np.array_equal(f1, f3)


def test_xi_zero_is_the_undistorted_scene(env):
    env.reset(0)
    pos, mat = env.camera_pose(np.zeros(env.xi_dim))
    d = env.physics.data.ptr
    np.testing.assert_allclose(pos, d.cam_xpos[0], atol=1e-9)
    np.testing.assert_allclose(mat, d.cam_xmat[0], atol=1e-9)


def test_paired_render(env):
    env.reset(1)
    for _ in range(5):
        env.step(np.full(6, 0.3))
    own_xi = env.xi.copy()
    phys = env.physics.get_state().copy()
    rgba = env.physics.model.mat_rgba.copy()
    cam = (env.physics.data.cam_xpos.copy(), env.physics.data.cam_xmat.copy())
    frame = env.render()
    np.testing.assert_array_equal(env.render(xi=own_xi.copy()), frame)  # same xi -> same frame
    other = env.xi_low + (env.xi_high - env.xi_low) * np.random.default_rng(9).random(env.xi_dim)
    alt = env.render(xi=other)
    assert alt.shape == frame.shape and not np.array_equal(alt, frame)
    # colours only, camera only: each acts on the frame
    colour_only = own_xi.copy()
    colour_only[:-4] = other[:-4]
    cam_only = own_xi.copy()
    cam_only[-4:] = other[-4:]
    assert not np.array_equal(env.render(xi=colour_only), frame)
    assert not np.array_equal(env.render(xi=cam_only), frame)
    # nothing of the env moved: physics, its xi, the model colours, MuJoCo's camera pose
    np.testing.assert_array_equal(env.physics.get_state(), phys)
    np.testing.assert_array_equal(env.xi, own_xi)
    np.testing.assert_array_equal(env.physics.model.mat_rgba, rgba)
    np.testing.assert_array_equal(env.physics.data.cam_xpos, cam[0])
    np.testing.assert_array_equal(env.physics.data.cam_xmat, cam[1])
    np.testing.assert_array_equal(env.render(), frame)


def test_drift_stays_in_box_and_moves(env):
    cfg = env.cfg
    n_col = 3 * env.n_mat
    ang = 0.5 * math.pi * cfg.delta_cam
    assert np.all(env.xi_low[:n_col] >= -cfg.delta_color) and np.all(env.xi_high[:n_col] <= cfg.delta_color)
    assert np.all(env.xi_low[-4:] >= [-ang, -ang, -ang, -0.5 * cfg.delta_cam] * np.ones(4) - 1e-12)
    assert np.all(env.xi_high[-4:] <= [ang, ang, ang, 1.5 * cfg.delta_cam] * np.ones(4) + 1e-12)
    env.reset(2)
    g = np.random.default_rng(0)
    xis = []
    for _ in range(300):
        out = env.step(g.uniform(-1, 1, 6))
        xis.append(out["xi"])
        rgb = env.physics.model.mat_rgba[:, :3]
        assert np.all(rgb >= 0) and np.all(rgb <= 1)
        np.testing.assert_allclose(rgb, np.clip(env._rgb0 + out["xi"][:n_col].reshape(-1, 3), 0, 1))
    xis = np.stack(xis)
    assert np.all(xis >= env.xi_low - 1e-12) and np.all(xis <= env.xi_high + 1e-12)
    steps = np.abs(np.diff(xis, axis=0))
    assert np.all(steps[:, :n_col].max(axis=0) > 0)  # every colour channel moves
    assert np.all(np.ptp(xis[:, [-4, -2, -1]], axis=0) > 1e-3)  # horizontal, roll, zoom drift
    assert steps[:, :n_col].max() < 10 * cfg.color_step * cfg.delta_color  # a walk, not a jump


def test_discrete_mode_configs_and_switch_rate(discrete_env):
    env, cfg = discrete_env, discrete_env.cfg
    assert env.configs.shape == (cfg.n_xi, env.xi_dim)
    assert np.all(env.configs >= env.xi_low) and np.all(env.configs <= env.xi_high)
    n, switches, prev = 0, 0, None
    for ep in range(2):
        out = env.reset(ep)
        prev = out["xi"]
        for _ in range(1000):
            out = env.step(np.zeros(6))
            match = np.flatnonzero(np.all(env.configs == out["xi"], axis=1))
            assert match.size == 1 and match[0] == env.xi_index
            switches += int(not np.array_equal(out["xi"], prev))  # a switch always changes xi
            prev, n = out["xi"], n + 1
    sd = math.sqrt(cfg.p_switch * (1 - cfg.p_switch) / n)
    assert abs(switches / n - cfg.p_switch) < 4 * sd  # binomial, 4 sigma (~6e-5 false alarm)
    # the configurations are the seed's, not the episode's
    e2 = DistractingControl(ControlConfig(mode="discrete", n_xi=3, p_switch=0.3, seed=5))
    np.testing.assert_array_equal(e2.configs, env.configs)
    e2.close()


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"mode": "wobble"}, "env.mode"),
        ({"delta_color": 1.5}, "env.delta_color"),
        ({"delta_cam": -0.1}, "env.delta_cam"),
        ({"image_size": 0}, "env.image_size"),
        ({"mode": "discrete", "n_xi": 1, "p_switch": 0.5}, "env.n_xi"),
        ({"p_switch": 1.5}, "env.p_switch"),
        ({"seed": -1}, "env.seed"),
        ({"color_step": float("nan")}, "env.color_step"),
    ],
)
def test_bad_config_names_field(changes, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        ControlConfig(**changes).validate()


def test_unknown_task_is_config_error():
    with pytest.raises(ConfigError, match="env.domain/task"):
        DistractingControl(ControlConfig(domain="cheetah", task="fly"))


def test_gl_backend_fallback_and_clear_error():
    from exolam.envs.suite import choose_backend

    assert choose_backend(lambda b: True) == "egl"
    assert choose_backend(lambda b: b == "osmesa") == "osmesa"
    with pytest.raises(ConfigError, match="libosmesa6"):
        choose_backend(lambda b: False)


def test_episode_end_needs_reset(env):
    out = env.reset(0)
    n = 0
    while not out["done"]:
        out = env.step(np.zeros(6))
        n += 1
    assert n == 1000  # cheetah-run: 1000 control steps
    with pytest.raises(ConfigError, match="reset"):
        env.step(np.zeros(6))
    with pytest.raises(ConfigError, match="seed"):
        env.reset(-1)
    env.reset(0)


def test_load_task_drops_only_the_settotalmass_warning(caplog):
    """dm_control logs MuJoCo's `settotalmass` deprecation at every cheetah load; that one record is
    dropped, any other absl warning still reaches the log."""
    import logging

    from exolam.envs.suite import load_task

    with caplog.at_level(logging.WARNING, logger="absl"):
        load_task("cheetah", "run", seed=0)
        logging.getLogger("absl").warning("another warning")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["another warning"]
