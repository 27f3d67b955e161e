"""Files that are whole or absent, and the JSON spellings of our configs and results.

Every file a command writes goes through `atomic_write` (temporary name, fsync, rename) or
`atomic_dir` (a folder built under a temporary name, then renamed), so a killed or failed command
never leaves a half-written file; resumable jobs (imports, collections) stage their per-episode
arrays with `save_npz` / `load_npz` in a folder opened by `open_staging`. `to_jsonable` /
`from_jsonable` turn config dataclasses into JSON and back; `finite_json` makes a result dict strict
JSON (NaN -> null).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import typing
from pathlib import Path

from exolam.errors import ConfigError


def atomic_write(path: Path, data, fix: str = "choose another --out") -> None:
    """Write `data` (str, bytes, or a callable writing into a binary file object, e.g. np.save) to a
    temporary name, fsync, then rename; a failed write leaves neither file (ConfigError naming the path)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if callable(data):
                data(f)
            else:
                f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise ConfigError(f"{path}: cannot write ({e.strerror or e}); {fix}") from None
        raise


def save_npz(path: Path, arrays: dict, fix: str = "choose another --out") -> None:
    """A dict of arrays as one compressed .npz, written atomically (`atomic_write`): a staged episode."""
    import numpy as np

    atomic_write(path, lambda f: np.savez_compressed(f, **{k: np.asarray(v) for k, v in arrays.items()}), fix)


def load_npz(path: Path, keys, redo: str) -> dict:
    """The arrays `keys` of a `save_npz` file; a damaged or foreign file is one ConfigError line saying
    to delete it and rerun to `redo`."""
    import zipfile

    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in keys}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(f"{path}: cannot be read ({type(e).__name__}); delete it and rerun to {redo}") from None


def open_staging(staging: Path, spec_name: str, spec: dict, check) -> None:
    """Start or resume the staging folder of a resumable job (an import, a collection): create it, hold the
    job's `spec` in `staging/spec_name` (written on the first run; `check(path)` on a resume refuses
    another job's folder), and remove the leftovers of a killed write (`atomic_write`'s `.NAME.tmpPID`;
    every renamed file is whole, so the staged files present are the ones done)."""
    try:
        staging.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{staging}: cannot create ({e.strerror or e}); choose another --out") from None
    if (staging / spec_name).exists():
        check(staging / spec_name)
    else:
        atomic_write(staging / spec_name, json.dumps(spec, indent=2) + "\n")
    for p in staging.glob(".*.tmp*"):
        p.unlink(missing_ok=True)


def atomic_dir(path: Path, build, fix: str = "choose another --out") -> None:
    """Build a folder with `build(tmp)` under a temporary sibling name, then rename it to `path` (absent or
    an empty folder): the folder is whole or absent; a failed build leaves nothing (ConfigError on OSError)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        shutil.rmtree(tmp, ignore_errors=True)
        build(tmp)
        if path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        os.replace(tmp, path)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):
            raise ConfigError(f"{path}: cannot write ({e.strerror or e}); {fix}") from None
        raise


def fresh_out(out_dir) -> Path:
    """A report's --out folder, absent or empty (`atomic_dir` then renames the finished report into it);
    an occupied one is refused before anything is computed: a report is never overwritten."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out}: exists and is not empty; a report is never overwritten (choose another "
                          "--out or remove it)")
    return out


def read_json(path: Path, fix: str) -> dict:
    """A JSON object file of ours; missing, unreadable or malformed -> ConfigError naming it and `fix`."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: missing; {fix}") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot be read ({e.strerror or e}); {fix}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: is not UTF-8 text; {fix}") from None
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: is not valid JSON ({e.msg} at line {e.lineno} column {e.colno}; cut short?); "
                          f"{fix}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: holds a JSON {type(data).__name__}, not an object; {fix}")
    return data


RENAMED = {"frame": "image_size", "frame_shape": "stored_shape"}
"""Config keys renamed since runs were recorded (old -> new); `current_names` reads a recorded config,
spec or checkpoint config.json in today's names, so those runs still resume and load."""


def current_names(obj):
    """`obj` (parsed JSON) with every key in RENAMED spelled by its new name, at any depth."""
    if isinstance(obj, dict):
        return {RENAMED.get(k, k): current_names(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [current_names(v) for v in obj]
    return obj


LATE = "late"
"""Field metadata flag of a config field added after runs were recorded: `to_jsonable` leaves it out
while it holds its default, so the specs (resume keys) of those runs stay as they were."""


def to_jsonable(obj):
    """Dataclasses -> dicts (fields marked LATE left out at their default), tuples -> lists, paths -> str."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)
                if not (f.metadata.get(LATE) and getattr(obj, f.name) == f.default)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def finite_json(x):
    """A result dict ready for `json.dumps` as strict JSON: NaN / inf -> None (null), tuples -> lists, keys str."""
    if isinstance(x, dict):
        return {str(k): finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def from_jsonable(cls, data: dict):
    """The dataclass `cls` from `to_jsonable`'s dict (nested dataclasses and tuples restored); a key
    that is not a field of `cls` raises TypeError."""
    if not isinstance(data, dict):
        raise TypeError(f"{cls.__name__}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = set(data) - names
    if unknown:
        raise TypeError(f"{cls.__name__} has no field {sorted(unknown)[0]!r}")
    return cls(**{k: _restore(hints[k], v) for k, v in data.items()})


def _restore(hint, value):
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return from_jsonable(hint, value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        args = typing.get_args(hint)
        inner = args[0] if args else None
        return tuple(_restore(inner, v) for v in value) if inner is not None else tuple(value)
    return value
