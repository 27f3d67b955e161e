"""dm_control suite access shared by the distracted env (`control.py`) and the state-based expert
(`control_expert.py`): the headless GL backend chosen before MuJoCo is first imported (whoever imports
it first, the renderer or the expert's trainer), task names checked with a clear line, loads without
MuJoCo's deprecation noise."""

from __future__ import annotations

import ctypes.util
import logging
import os
import subprocess
import sys

from exolam.errors import ConfigError

GL_PACKAGES = "libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6 (run `make sysdeps` as root)"

# ---------------------------------------------------------------- headless GL ---------------------
_GL_CHECKED = False


def _probe_gl(backend: str) -> bool:
    """Whether a MuJoCo GL context opens under `backend`, tried in a subprocess (a failed EGL/OSMesa
    start cannot be undone in-process: PyOpenGL binds its platform at first import)."""
    lib = {"egl": "EGL", "osmesa": "OSMesa"}[backend]
    if ctypes.util.find_library(lib) is None:
        return False
    env = dict(os.environ, MUJOCO_GL=backend, PYOPENGL_PLATFORM=backend)
    code = "import mujoco; c = mujoco.GLContext(8, 8); c.make_current(); print('ok')"
    try:
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "ok" in out.stdout


def choose_backend(probe=None) -> str:
    """First of egl, osmesa whose context opens (`probe(name) -> bool`), else ConfigError."""
    probe = probe or _probe_gl
    for backend in ("egl", "osmesa"):
        if probe(backend):
            return backend
    raise ConfigError(f"no headless GL backend: neither EGL nor OSMesa opens a context; install {GL_PACKAGES}")


def ensure_gl() -> str:
    """Pick the headless GL backend before mujoco/dm_control are imported; returns its name.

    An explicit MUJOCO_GL is respected. Unset: egl if a context opens, else osmesa, else ConfigError.
    If mujoco was already imported with MUJOCO_GL unset, the choice is mujoco's (glfw) and a failed
    render says to set MUJOCO_GL first.
    """
    global _GL_CHECKED
    if os.environ.get("MUJOCO_GL") or _GL_CHECKED:
        return os.environ.get("MUJOCO_GL", "")
    if "mujoco" in sys.modules or "OpenGL" in sys.modules:  # too late to choose for mujoco
        os.environ["MUJOCO_GL"] = "egl"
    else:
        backend = choose_backend()
        os.environ["MUJOCO_GL"] = backend
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    _GL_CHECKED = True
    return os.environ["MUJOCO_GL"]




class _SkipTotalmassWarning(logging.Filter):
    """dm_control's cheetah.xml uses `<compiler settotalmass>`, which MuJoCo 3 deprecates; dm_control logs
    MuJoCo's warning through absl at every load, so each collection worker and evaluation env printed it.
    It is not ours to act on (the pinned dm_control ships the XML); every other absl record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "settotalmass" not in record.getMessage()


_SKIP_TOTALMASS = _SkipTotalmassWarning()


def check_task(domain: str, task: str, field: str = "domain/task") -> None:
    ensure_gl()  # before dm_control imports mujoco: mujoco binds its GL backend at first import
    from dm_control import suite

    if (domain, task) not in suite.ALL_TASKS:
        raise ConfigError(f"{field} = {domain}-{task} is not a dm_control suite task")


def load_task(domain: str, task: str, seed: int, field: str = "domain/task"):
    """`dm_control.suite.load(domain, task)` with task seed `seed`; an unknown task is refused naming `field`."""
    from dm_control import suite

    check_task(domain, task, field)
    logging.getLogger("absl").addFilter(_SKIP_TOTALMASS)  # a no-op once added (logging.Filterer)
    return suite.load(domain, task, task_kwargs={"random": seed})
