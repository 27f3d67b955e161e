"""Distracting Control (App. D): dm_control cheetah-run under drifting colour and camera.

The exogenous state xi = material colours + camera pose and zoom, written by us with the
Distracting Control Suite's parameterization (DCS [29]; the PyPI package is broken with current
dependencies, see shared/notes/anchors.md). The paper's setting is (Delta_color, Delta_cam) =
(0.5, 0.05): "Delta_color controls the maximum per-channel color perturbation and Delta_cam scales
the magnitude of camera pose and zoom randomization. Both ... drift continuously across timesteps."

xi layout (`xi_dim(n_mat)` = 3 n_mat + 4 floats, float64 per frame; xi = 0 is the undistorted scene):

- xi[3m:3m+3], m < n_mat: RGB offset of material m (`model.mat_rgba[m, :3]`, all materials,
  the floor grid included, as DCS). Box per channel: [max(-Dc, -orig), min(Dc, 1 - orig)], i.e.
  DCS's [orig - Dc, orig + Dc] clipped to [0, 1], so offset and colour are one-to-one.
- xi[-4:] = (d_h, d_v, d_roll, d_zoom) of camera `camera_id` (cheetah: 0, `side`, mode trackcom):
  horizontal / polar angle offsets of the camera around its look-at point, roll about the viewing
  axis, each in [-(pi/2) s, (pi/2) s] (s = Delta_cam), and radius factor r / r0 - 1 in
  [-0.5 s, 1.5 s] (DCS's max_zoom_in/out_percent). With `upper_quadrant` (DCS's
  limit_to_upper_quadrant, on except for reacher) the polar angle never passes the horizontal
  through the look-at point (cheetah starts exactly there, so d_v <= 0: the camera only rises).

Camera mechanics. The base pose (p0, R0) is MuJoCo's own for the current physics state (trackcom
follows the centre of mass). Look-at point L = p0 + f (f . (com - p0)), f = camera forward axis,
com = subtree com of the camera's body. The distracted camera sits at L + sphere(r0 (1 + d_zoom),
h0 + d_h, v0 + d_v), looks at L with world-z up, rolled by d_roll. It is written to
`data.cam_xpos/cam_xmat` only for the render and restored after, so physics data are untouched.

Drift ("drift" mode), per timestep after each physics step, as DCS's dynamic mode:
- colour: Gaussian random walk, std `color_step` * Dc (DCS step_std = 0.03 s), clipped to its box;
- camera: DCS's velocity walk. The Cartesian offset of the camera from L gets a velocity that
  walks with std `cam_vel_std` * s metres/step, clipped to +-`cam_max_vel` * s (DCS: 0.1 s, 0.4 s);
  the moved offset is converted back to (r, h, v) and clipped to the box. Roll likewise with
  (pi/300) s and (pi/50) s rad/step. Zoom therefore drifts through r.
- at every reset the whole xi is drawn uniformly in its box, velocities start at 0 (DCS resamples
  the pose at reset too).

Discrete mode (links this setting to the linear analysis, Sec. 4): n_xi configurations drawn once,
uniformly in the same box, from `seed` alone (shared by all episodes); xi_0 uniform among them;
each step xi switches w.p. p_switch to a uniformly drawn *other* configuration, exactly as
`envs.linear` (so xi' given xi is uniform at p_switch = (n_xi - 1)/n_xi, and n_xi = 2, p_switch = 1
alternates deterministically; `envs/linear.py` explains why).

Rendering: the fast path of shared/notes/platform.md sec. 4 (`mujoco.Renderer`, shadows,
reflections and MSAA off, skybox on: ~900 frames/s at 64x64 against ~57 with default visuals).
Headless: MUJOCO_GL defaults to egl, falling back to osmesa; neither -> one ConfigError line.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from exolam.envs.suite import GL_PACKAGES, ensure_gl, load_task
from exolam.errors import ConfigError, check_positive_int, check_range

MODES = ("drift", "discrete")
CAM_FIELDS = ("d_h", "d_v", "d_roll", "d_zoom")
_STREAM_EPISODE, _STREAM_CONFIGS = 0, 1  # SeedSequence spawn keys: episodes vs discrete set


def xi_dim(n_mat: int) -> int:
    """Length of the flat xi vector: 3 RGB offsets per material + (d_h, d_v, d_roll, d_zoom)."""
    return 3 * n_mat + len(CAM_FIELDS)


@dataclasses.dataclass
class ControlConfig:
    """Distracting cheetah-run of App. D. Defaults: the paper's (Delta_color, Delta_cam) = (0.5, 0.05)."""

    domain: str = "cheetah"
    """dm_control domain"""
    task: str = "run"
    """dm_control task"""
    image_size: int = 64
    """rendered frames are image_size x image_size"""
    camera_id: int = 0
    """dm_control camera rendered"""
    mode: str = "drift"  # "drift" (App. D) | "discrete" (n_xi configurations, p_switch)
    delta_color: float = 0.5
    """Delta_color: how far colours may drift from the originals (App. D; 0: no colour noise)"""
    delta_cam: float = 0.05
    """Delta_cam: how far the camera may drift and roll (App. D; 0: no camera noise)"""
    color_step: float = 0.03  # colour walk std per step, in units of delta_color (DCS step_std = 0.03 s)
    cam_vel_std: float = 0.1  # camera velocity walk std, metres/step per unit delta_cam (DCS vel_std)
    cam_max_vel: float = 0.4  # camera speed clip, metres/step per unit delta_cam (DCS max_vel)
    roll_vel_std: float = math.pi / 300  # rad/step per unit delta_cam (DCS roll_std)
    roll_max_vel: float = math.pi / 50  # rad/step per unit delta_cam (DCS max_roll_vel)
    upper_quadrant: bool = True  # DCS limit_to_upper_quadrant
    n_xi: int = 4
    """discrete mode: number of exogenous configurations xi"""
    p_switch: float = 0.5
    """discrete mode: probability that xi switches at a step"""
    seed: int = 0
    """seed of the exogenous process"""

    def validate(self, prefix: str = "env") -> "ControlConfig":
        for name in ("domain", "task"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ConfigError(f"{prefix}.{name} = {getattr(self, name)!r} must be a non-empty string")
        check_positive_int(f"{prefix}.image_size", self.image_size)
        if not 8 <= self.image_size <= 1024:
            raise ConfigError(f"{prefix}.image_size = {self.image_size} is outside the allowed range [8, 1024]")
        if isinstance(self.camera_id, bool) or not isinstance(self.camera_id, int) or self.camera_id < 0:
            raise ConfigError(f"{prefix}.camera_id = {self.camera_id!r} must be an integer >= 0")
        if self.mode not in MODES:
            raise ConfigError(f"{prefix}.mode = {self.mode!r} must be one of {', '.join(MODES)}")
        check_range(f"{prefix}.delta_color", self.delta_color, 0.0, 1.0)
        check_range(f"{prefix}.delta_cam", self.delta_cam, 0.0, 1.0)
        for name in ("color_step", "cam_vel_std", "cam_max_vel", "roll_vel_std", "roll_max_vel"):
            check_range(f"{prefix}.{name}", getattr(self, name), 0.0, 10.0)
        check_positive_int(f"{prefix}.n_xi", self.n_xi)
        check_range(f"{prefix}.p_switch", self.p_switch, 0.0, 1.0)
        if self.mode == "discrete" and self.n_xi < 2 and self.p_switch > 0:
            raise ConfigError(f"{prefix}.n_xi = {self.n_xi} must be >= 2 when p_switch > 0 (a switch needs another state)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"{prefix}.seed = {self.seed!r} must be an integer >= 0")
        return self


# ---------------------------------------------------------------- camera geometry -----------------
def _cart2sphere(v: np.ndarray) -> np.ndarray:
    r = float(np.linalg.norm(v))
    return np.array([r, math.atan2(v[1], v[0]), math.acos(max(-1.0, min(1.0, v[2] / r)))])


def _sphere2cart(r: float, h: float, v: float) -> np.ndarray:
    return r * np.array([math.sin(v) * math.cos(h), math.sin(v) * math.sin(h), math.cos(v)])


def _lookat_xmat(cam_pos: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """Camera frame (columns x right, y up, z backward, MuJoCo's convention) looking at `target`
    with world z up, then rolled by `roll` about the viewing axis; returned row-major as cam_xmat."""
    back = cam_pos - target
    back = back / np.linalg.norm(back)
    right = np.cross(np.array([0.0, 0.0, 1.0]), back)
    if np.linalg.norm(right) < 1e-9:  # looking straight down/up: any right axis will do
        right = np.array([1.0, 0.0, 0.0])
    right = right / np.linalg.norm(right)
    up = np.cross(back, right)
    c, s = math.cos(roll), math.sin(roll)
    right, up = c * right + s * up, -s * right + c * up
    return np.stack([right, up, back], axis=1).reshape(9)


# ---------------------------------------------------------------- the environment -----------------
@dataclasses.dataclass
class XiStream:
    """One exogenous trajectory: xi and the drift's velocities (drift mode) or the configuration index
    (discrete mode). The env advances its own; a collector may advance a paired one alongside."""

    xi: np.ndarray
    cam_vel: np.ndarray
    roll_vel: float = 0.0
    index: int = -1


class DistractingControl:
    """dm_control task whose frames render under the exogenous state xi (layout in the module doc).

    `reset(seed)` and `step(action)` return a dict: `state` (proprio observation, flat float64),
    `reward`, `xi` (copy of the current xi), `done`. `render(xi=None)` renders the current physics
    state under the env's xi, or under any given xi (the paired render), restoring everything after.
    """

    def __init__(self, cfg: ControlConfig):
        self.cfg = cfg.validate()
        ensure_gl()
        import mujoco

        self._env = load_task(cfg.domain, cfg.task, seed=0, field="env.domain/task")
        self.physics = self._env.physics
        m = self.physics.model.ptr
        if cfg.camera_id >= m.ncam:
            raise ConfigError(f"env.camera_id = {cfg.camera_id} but {cfg.domain} has {m.ncam} cameras")
        self.n_mat = int(m.nmat)
        self.xi_dim = xi_dim(self.n_mat)
        self._rgb0 = np.array(m.mat_rgba[:, :3], dtype=np.float64)
        self._env.reset()
        self._base_camera()
        lo, hi = self.xi_bounds(cfg, self._rgb0)
        if cfg.upper_quadrant:  # polar angle <= pi/2 (1e-12: cheetah's v0 is pi/2 up to rounding)
            hi[-3] = max(0.0, min(hi[-3], 0.5 * math.pi - self._sph0[2] + 1e-12))
            lo[-3] = min(lo[-3], hi[-3])
        self.xi_low, self.xi_high = lo, hi
        m.vis.quality.offsamples = 0  # no MSAA: must be set before the GL buffer is made
        try:
            self._renderer = mujoco.Renderer(m, cfg.image_size, cfg.image_size)
        except Exception as e:  # noqa: BLE001 - any GL failure becomes one line
            raise ConfigError(
                f"MUJOCO_GL={os.environ.get('MUJOCO_GL')} cannot render ({type(e).__name__}); set MUJOCO_GL=egl or "
                f"osmesa before mujoco is imported and install {GL_PACKAGES}"
            ) from e
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 1
        self.configs = None
        if cfg.mode == "discrete":
            g = np.random.default_rng(np.random.SeedSequence(cfg.seed, spawn_key=(_STREAM_CONFIGS,)))
            self.configs = lo + (hi - lo) * g.random((cfg.n_xi, self.xi_dim))
        self._episode = 0
        self._own = XiStream(np.zeros(self.xi_dim), np.zeros(3))
        self._rng = None
        self._done = False

    # -- xi box -------------------------------------------------------------------------------------
    @staticmethod
    def xi_bounds(cfg: ControlConfig, rgb0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-component [low, high] of xi (colour boxes clipped to [0, 1] around each material)."""
        dc, s = cfg.delta_color, cfg.delta_cam
        c_lo = np.maximum(-dc, -rgb0).reshape(-1)
        c_hi = np.minimum(dc, 1.0 - rgb0).reshape(-1)
        ang = 0.5 * math.pi * s
        cam_lo = np.array([-ang, -ang, -ang, -0.5 * s])
        cam_hi = np.array([ang, ang, ang, 1.5 * s])
        return np.concatenate([c_lo, cam_lo]), np.concatenate([c_hi, cam_hi])

    # -- episode ------------------------------------------------------------------------------------
    def action_spec(self):
        """dm_control's action spec (cheetah: 6 dims in [-1, 1])."""
        return self._env.action_spec()

    def reset(self, seed: int | None = None) -> dict:
        """New episode. seed None -> the config seed's next episode; same seed -> same episode."""
        if seed is None:
            seed = self._episode
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ConfigError(f"reset seed = {seed!r} must be an integer >= 0")
        seed = int(seed)
        self._episode = seed + 1
        ss = np.random.SeedSequence(self.cfg.seed, spawn_key=(_STREAM_EPISODE, seed))
        phys_seed, xi_seed = ss.generate_state(2)
        self._env.task.random.seed(int(phys_seed))
        ts = self._env.reset()
        self._rng = np.random.default_rng(int(xi_seed))
        self._own = self.new_stream(self._rng)
        self._write_colors(self.xi)
        return self._out(ts)

    def step(self, action) -> dict:
        """One control step, then xi moves (drift walk or discrete switch)."""
        if self._rng is None or self._done:  # dm_control would silently start a new episode
            raise ConfigError("DistractingControl.step called before reset() or after the episode ended")
        ts = self._env.step(np.asarray(action, dtype=np.float64))
        self.advance(self._own, self._rng)
        self._write_colors(self.xi)
        return self._out(ts)

    def _out(self, ts) -> dict:
        self._done = bool(ts.last())
        state = np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in ts.observation.values()])
        return {"state": state, "reward": float(ts.reward or 0.0), "xi": self.xi.copy(), "done": self._done}

    # -- xi streams: the env's own, and any paired one (envs/control_collect.py) -------------------------
    @property
    def xi(self) -> np.ndarray:
        """The env's current exogenous state (its own stream's)."""
        return self._own.xi

    @property
    def xi_index(self) -> int:
        """Discrete mode: the index of the current configuration (-1 in drift mode)."""
        return self._own.index

    def new_stream(self, g: np.random.Generator, avoid: int | None = None) -> XiStream:
        """A stream at its reset draw: uniform in the xi box, velocities 0 (drift); a uniform configuration,
        one other than `avoid` if given (discrete)."""
        if self.configs is not None:
            if avoid is None:
                i = int(g.integers(self.cfg.n_xi))
            else:
                j = int(g.integers(self.cfg.n_xi - 1))
                i = j + (j >= avoid)
            return XiStream(self.configs[i].copy(), np.zeros(3), 0.0, i)
        return XiStream(self.xi_low + (self.xi_high - self.xi_low) * g.random(self.xi_dim), np.zeros(3))

    def advance(self, st: XiStream, g: np.random.Generator) -> None:
        """One timestep of a stream's dynamics (module doc): the drift walk, or a switch w.p. p_switch."""
        cfg, n = self.cfg, 3 * self.n_mat
        if self.configs is not None:
            if g.random() < cfg.p_switch:
                j = int(g.integers(cfg.n_xi - 1))
                st.index = j + (j >= st.index)
            st.xi = self.configs[st.index].copy()
            return
        xi, lo, hi = st.xi, self.xi_low, self.xi_high
        xi[:n] = np.clip(xi[:n] + g.normal(0.0, cfg.color_step * cfg.delta_color, n), lo[:n], hi[:n])
        s = cfg.delta_cam
        st.cam_vel = np.clip(st.cam_vel + g.normal(0.0, cfg.cam_vel_std * s, 3), -cfg.cam_max_vel * s,
                             cfg.cam_max_vel * s)
        r0, h0, v0 = self._sph0
        off = _sphere2cart(r0 * (1 + xi[-1]), h0 + xi[-4], v0 + xi[-3]) + st.cam_vel
        r, h, v = _cart2sphere(off)
        d_h = (h - h0 + math.pi) % (2 * math.pi) - math.pi
        xi[-4] = np.clip(d_h, lo[-4], hi[-4])
        xi[-3] = np.clip(v - v0, lo[-3], hi[-3])
        xi[-1] = np.clip(r / r0 - 1.0, lo[-1], hi[-1])
        st.roll_vel = float(np.clip(st.roll_vel + g.normal(0.0, cfg.roll_vel_std * s), -cfg.roll_max_vel * s,
                                    cfg.roll_max_vel * s))
        xi[-2] = np.clip(xi[-2] + st.roll_vel, lo[-2], hi[-2])

    # -- rendering ----------------------------------------------------------------------------------
    def _write_colors(self, xi: np.ndarray) -> None:
        rgb = np.clip(self._rgb0 + xi[: 3 * self.n_mat].reshape(self.n_mat, 3), 0.0, 1.0)
        self.physics.model.ptr.mat_rgba[:, :3] = rgb

    def _base_camera(self) -> None:
        """Spherical pose (r0, h0, v0) of the undistorted camera around its look-at point, taken once
        after a first reset (constant for trackcom and fixed cameras)."""
        p0, f, L = self._camera_frame()
        self._sph0 = _cart2sphere(p0 - L)

    def _camera_frame(self):
        d, m, c = self.physics.data.ptr, self.physics.model.ptr, self.cfg.camera_id
        p0 = np.array(d.cam_xpos[c])
        f = -np.array(d.cam_xmat[c]).reshape(3, 3)[:, 2]
        com = np.array(d.subtree_com[m.cam_bodyid[c]])
        return p0, f, p0 + f * float(np.dot(com - p0, f))

    def camera_pose(self, xi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cam_xpos [3], cam_xmat [9]) of the distracted camera for the current physics state."""
        _, _, L = self._camera_frame()
        r0, h0, v0 = self._sph0
        pos = L + _sphere2cart(r0 * (1.0 + xi[-1]), h0 + xi[-4], v0 + xi[-3])
        return pos, _lookat_xmat(pos, L, float(xi[-2]))

    def render(self, xi: np.ndarray | None = None) -> np.ndarray:
        """uint8 [H, W, 3] of the current physics state under xi (default: the env's own xi)."""
        if self._rng is None:
            raise ConfigError("DistractingControl.render called before reset()")
        own = xi is None
        xi = self.xi if own else np.asarray(xi, dtype=np.float64)
        if xi.shape != (self.xi_dim,):
            raise ConfigError(f"xi shape {tuple(xi.shape)} must be ({self.xi_dim},)")
        d, c = self.physics.data.ptr, self.cfg.camera_id
        saved_pos, saved_mat = np.array(d.cam_xpos[c]), np.array(d.cam_xmat[c])
        try:
            if not own:
                self._write_colors(xi)
            d.cam_xpos[c], d.cam_xmat[c] = self.camera_pose(xi)
            self._renderer.update_scene(d, camera=c)
            return self._renderer.render().copy()
        finally:
            d.cam_xpos[c], d.cam_xmat[c] = saved_pos, saved_mat
            if not own:
                self._write_colors(self.xi)

    def close(self) -> None:
        if getattr(self, "_renderer", None) is not None:
            self._renderer.close()
            self._renderer = None
