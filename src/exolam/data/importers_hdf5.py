"""HDF5 importers (`exolam import hdf5 SRC --layout robomimic|laom`), used by `data/importers.py`.

SRC is one .hdf5/.h5 file or a folder of them (sorted by name; episodes of all files in order). Needs
h5py (`pip install -e '.[hdf5]'`). Files are opened read-only.

robomimic / LIBERO (https://robomimic.github.io/docs/datasets/overview.html): `data/demo_N` groups
(sorted by N), each with `actions` [T, A] -> `action`; `obs/<key>` [T, ...]: image-shaped uint8 ones
(C = 1 or 3, channels last or second) are the cameras -> `observation.images.<key>` (video; choose them
with `camera_keys`, default all), every other one -> `observation.<key>`; `states` [T, S] (flattened
MuJoCo states) -> `sim_state` (float64 kept, for exact restores); `rewards` -> `next.reward`; `dones` ->
`next.done` (bool). Other floats are stored as float32, ints as int64 (LeRobot's dtypes). Only
`obs` is required; the first demo decides which of these exist and every demo must match it.
`next_obs` (redundant), `mask/` filter keys and `model_file` are not imported: every demo is.
fps: `fps`, else `data.attrs["env_args"]["env_kwargs"]["control_freq"]` (robosuite: 20). Task:
`task`, else LIBERO's `data.attrs["problem_info"]["language_instruction"]`, else env_args' `env_name`.
LIBERO stores its images upside down (LIBERO#11: `np.flipud` shows them upright; OpenVLA (openvla#295)
flips both axes): pass `flip_vertical` (and `flip_horizontal` for OpenVLA's 180 degree rotation).

laom (dunnolab/laom, checked in joon-stack/laom `scripts/data_collection/collect_data.py` and the
readers of `src/utils.py`): one group per trajectory at the file root, named "0", "1", ... (sorted
numerically), each with `obs` uint8 [T, H, W, C] -> `camera` (video), `actions` float32 [T, A] ->
`action`, `states` float32 [T, S] (the flat proprio observation) -> `observation.state`; group attr
`traj_return` and file attrs `domain_name`, `task_name`, `img_hw`, ... Other members are ignored.
fps: `fps` (required: the file does not record it; dm_control's is 1 / control_timestep). Task: `task`,
else "<domain_name>-<task_name>"; robot_type "dm_control/<domain_name>" when recorded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from exolam.data.importers_base import (ImportOptions, check_episode, fingerprint, image_layout, int_sorted,
                                   numeric_feature, prepare_frames, video_feature)
from exolam.errors import ConfigError


def open_hdf5(src: Path, opts: ImportOptions):
    import importlib.util

    if importlib.util.find_spec("h5py") is None:
        raise ConfigError("hdf5 imports need h5py: pip install -e '.[hdf5]'") from None
    return (RobomimicSource if opts.layout == "robomimic" else LaomSource)(src, opts)


def _text(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _is_image(ds) -> bool:
    s = ds.shape
    return ds.dtype == np.uint8 and len(s) == 4 and (s[3] in (1, 3) or s[1] in (1, 3))


class _Hdf5Source:
    """Episodes = (file, group path) pairs; `fields` {feature: (member name, layout or None)}."""

    def __init__(self, src: Path, opts: ImportOptions):
        import h5py

        self.files = [src] if src.is_file() else sorted(p for p in src.iterdir() if p.suffix.lower() in (".hdf5", ".h5")
                                                        and not p.name.startswith("."))
        if not self.files:
            raise ConfigError(f"{src}: holds no .hdf5/.h5 file")
        self.opts, self.handles, self.episodes, self.tasks = opts, {}, [], {}
        for f in self.files:
            try:
                self.handles[f] = h5py.File(f, "r")
            except OSError as e:
                self.close()
                raise ConfigError(f"{f}: cannot be opened as HDF5 ({e})") from None
        try:
            self._scan()
            if not self.episodes:
                raise ConfigError(f"{src}: holds no episode ({self.EMPTY})")
            self._fields_from(*self.episodes[0])
            for f, path in self.episodes:
                self._check_group(f, path)
        except BaseException:
            self.close()
            raise
        self.inputs = fingerprint(src, self.files)

    def where(self, f: Path, path: str) -> str:
        return f"{f} ({path})"

    def _fields_from(self, f: Path, path: str) -> None:
        group, where = self.handles[f][path], self.where(f, path)
        self.fields, self.features = {}, {}
        for feat, name in self.members(group, where):
            ds = group.get(name)
            if ds is None or not hasattr(ds, "shape"):
                raise ConfigError(f"{where}: '{name}' is missing or not a dataset (every episode needs it)")
            if feat.startswith("video:"):
                feat = feat[6:]
                layout = image_layout(ds.shape, f"{where}: '{name}'")
                self.features[feat] = video_feature(ds.shape, layout, self.opts, f"{where}: '{name}'")
            else:
                try:
                    self.features[feat] = numeric_feature(ds.dtype, ds.shape[1:], feat, keep64=feat == "sim_state")
                    layout = None
                except TypeError:
                    raise ConfigError(f"{where}: '{name}' has dtype {ds.dtype}, not numeric") from None
            self.fields[feat] = (name, layout)

    def _check_group(self, f: Path, path: str) -> None:
        group, where, n = self.handles[f][path], self.where(f, path), None
        for feat, (name, layout) in self.fields.items():
            ds = group.get(name)
            if ds is None or not hasattr(ds, "shape"):
                raise ConfigError(f"{where}: '{name}' is missing (the first episode has it)")
            if layout is not None and (not _is_image(ds) or image_layout(ds.shape, where) != layout):
                raise ConfigError(f"{where}: '{name}' has shape {ds.shape} and dtype {ds.dtype}, the first episode's "
                                  f"are frames of {self.features[feat]['shape']}")
            if n is not None and (len(ds.shape) == 0 or ds.shape[0] != n):
                raise ConfigError(f"{where}: '{name}' has {ds.shape[:1]} steps, the others {n} (inconsistent lengths)")
            n = ds.shape[0] if ds.shape else 0

    def __len__(self):
        return len(self.episodes)

    def episode(self, i: int) -> dict:
        f, path = self.episodes[i]
        group, where, arrays = self.handles[f][path], self.where(f, path), {}
        try:
            for feat, (name, layout) in self.fields.items():
                x = group[name][()]
                arrays[feat] = x if layout is None else prepare_frames(x, layout, self.opts)
        except OSError as e:
            raise ConfigError(f"{where}: cannot be read ({e}); truncated?") from None
        return check_episode(where, {**arrays, "task": self.opts.task or self.tasks.get(f, "")}, self.features)

    def close(self):
        for h in self.handles.values():
            h.close()
        self.handles = {}


class RobomimicSource(_Hdf5Source):
    """robomimic / LIBERO: data/demo_N/{actions, obs/<key>, states, rewards, dones} (module doc)."""

    EMPTY = "robomimic layout: data/demo_N groups"

    def _scan(self) -> None:
        freqs = {}
        for f, h in self.handles.items():
            data = h.get("data")
            if data is None or not hasattr(data, "keys"):
                raise ConfigError(f"{f}: group 'data' is missing (robomimic layout: data/demo_N/...; "
                                  "is this a LAOM file? pass --layout laom)")
            demos = [k for k in data.keys() if re.fullmatch(r"demo_\d+", k)]
            self.episodes += [(f, f"data/{k}") for k in int_sorted(demos, name=lambda k: k[5:])]
            env, problem = self._json(f, data, "env_args"), self._json(f, data, "problem_info")
            task = problem.get("language_instruction") or env.get("env_name") or ""
            self.tasks[f] = " ".join(task) if isinstance(task, list) else _text(task)
            freq = (env.get("env_kwargs") or {}).get("control_freq")
            robots = (env.get("env_kwargs") or {}).get("robots")
            self.robot_type = (robots[0] if isinstance(robots, list) and robots else robots) or None
            if freq is not None:
                freqs[f] = freq
        if self.opts.fps is None:
            if not freqs or len(set(freqs.values())) > 1 or len(freqs) < len(self.files):
                raise ConfigError(f"{self.files[0]}: the control frequency is not recorded (or differs between "
                                  f"files: {sorted(set(freqs.values()))}); pass --fps")
            self.fps = int(round(float(next(iter(freqs.values())))))
        else:
            self.fps = self.opts.fps

    @staticmethod
    def _json(f: Path, data, attr: str) -> dict:
        if attr not in data.attrs:
            return {}
        try:
            out = json.loads(_text(data.attrs[attr]))
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError(f"{f}: data.attrs['{attr}'] is not JSON") from None
        return out if isinstance(out, dict) else {}

    def members(self, group, where: str):
        obs = group.get("obs")
        if obs is None or not hasattr(obs, "keys"):
            raise ConfigError(f"{where}: group 'obs' is missing (robomimic layout: data/demo_N/obs/<key>)")
        keys = list(obs.keys())
        cams = list(self.opts.camera_keys) if self.opts.camera_keys else [k for k in keys if _is_image(obs[k])]
        for k in cams:
            if k not in obs:
                raise ConfigError(f"{where}: obs key '{k}' (--camera-keys) is missing; obs holds {sorted(keys)}")
            if not _is_image(obs[k]):
                raise ConfigError(f"{where}: obs/{k} has shape {obs[k].shape} and dtype {obs[k].dtype}, not uint8 "
                                  "frames [T, H, W, C] or [T, C, H, W] with C = 1 or 3")
        out = [(f"video:observation.images.{k}", f"obs/{k}") for k in cams]
        out += [(f"observation.{k}", f"obs/{k}") for k in keys if k not in cams and not _is_image(obs[k])]
        out += [(feat, name) for name, feat in (("actions", "action"), ("states", "sim_state"),
                                                ("rewards", "next.reward"), ("dones", "next.done")) if name in group]
        return out


class LaomSource(_Hdf5Source):
    """LAOM: <trajectory>/{obs, actions, states} at the file root (module doc)."""

    EMPTY = "laom layout: one group per trajectory at the root, named 0, 1, ..."

    def _scan(self) -> None:
        if self.opts.fps is None:
            raise ConfigError("--fps is needed: LAOM files do not record a frame rate (dm_control: 1 / control "
                              "timestep, e.g. cheetah 100, walker 40)")
        self.fps, self.robot_type = self.opts.fps, None
        for f, h in self.handles.items():
            groups = [k for k in h.keys() if hasattr(h[k], "keys")]
            if "data" in groups:
                raise ConfigError(f"{f}: holds a 'data' group, not trajectory groups 0, 1, ... (a robomimic file? "
                                  "pass --layout robomimic)")
            self.episodes += [(f, k) for k in int_sorted(groups, name=lambda k: k)]
            dom, task = (_text(h.attrs[a]) if a in h.attrs else "" for a in ("domain_name", "task_name"))
            self.tasks[f] = f"{dom}-{task}" if dom and task else dom or task
            self.robot_type = f"dm_control/{dom}" if dom else self.robot_type

    def members(self, group, where: str):
        out = [("video:" + self.opts.camera, "obs")]
        return out + [(feat, name) for name, feat in (("actions", "action"), ("states", "observation.state"))
                      if name in group]
