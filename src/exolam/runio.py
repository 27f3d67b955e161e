"""Run directories: the file contract of design.md ("Commands and files").

`DIR/<experiment>/` holds `config.json` (fully resolved), `results.csv` (one row per config x seed),
`summary.json` (mean and standard error per config) and `<experiment>.png`. Every file is written
to a temporary name and renamed, so nothing half-written is ever left. A rerun of the same config
skips the (config, seed) rows already in results.csv (an interrupted sweep resumes); a rerun with
a different config refuses instead of overwriting.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
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


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
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


class RunDir:
    """One experiment's output folder; `open()` creates it or resumes it (same config only)."""

    def __init__(self, out: str | Path, experiment: str, shard: tuple[int, int] | None = None):
        self.path = Path(out) / experiment
        self.name = experiment
        self.shard = shard
        self._created: list[Path] = []  # the folders open() made, innermost first

    @property
    def results_csv(self) -> Path:
        """The file this process records rows in: results.csv, or its shard's own file under shards/."""
        if self.shard is None:
            return self.merged_csv
        k, n = self.shard
        return self.path / "shards" / f"results-{k}-of-{n}.csv"

    @property
    def merged_csv(self) -> Path:
        return self.path / "results.csv"

    def in_shard(self, index: int) -> bool:
        """Whether row `index` of the sweep's plan is this process's to run (row i -> shard i mod N + 1)."""
        return self.shard is None or index % self.shard[1] == self.shard[0] - 1

    def shard_files(self) -> list[Path]:
        return sorted((self.path / "shards").glob("results-*-of-*.csv"))

    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def summary_json(self) -> Path:
        return self.path / "summary.json"

    def check(self, config: dict) -> None:
        """Raise ConfigError unless `open(config)` can create or resume this folder; writes nothing.

        The CLI checks every folder of a command before its first experiment starts, so a conflict
        in the last one is found before the first has run. Refused: a file where a folder goes, a
        folder that cannot be written, a run with another config, a damaged config.json or
        results.csv, results.csv without config.json (not a run of ours).
        """
        base = self.path
        while not base.exists() and base != base.parent:
            base = base.parent
        if not base.is_dir():
            raise ConfigError(f"{base}: is a file, not a folder; choose another --out")
        if not os.access(base, os.W_OK | os.X_OK):
            raise ConfigError(f"{base}: is not writable; choose another --out")
        if base != self.path:
            return
        if self.config_json.exists():
            recorded = read_json(self.config_json, "restore it, or remove the folder or choose another --out")
            if _identity(recorded) != _identity(json.loads(json.dumps(config))):
                raise ConfigError(f"{self.path}: holds a finished or partial run with a different config.json; "
                                  "choose another --out or remove that folder")
        elif self.results_csv.exists():
            raise ConfigError(f"{self.path}: holds results.csv but no config.json (not a run of this config); "
                              "choose another --out or remove that folder")
        self.rows()

    def open(self, config: dict) -> "RunDir":
        self.check(config)
        if self.config_json.exists():
            return self
        self._created = [d for d in (self.path, *self.path.parents) if not d.exists()]
        try:
            try:
                self.path.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise ConfigError(f"{self.path}: cannot create the run folder ({e.strerror or e}); "
                                  "choose another --out") from None
            atomic_write(self.config_json, json.dumps(config, indent=2, sort_keys=True) + "\n")
        except ConfigError:
            self.discard_if_empty()
            raise
        return self

    def discard_if_empty(self) -> None:
        """Remove the folders open() created when nothing was recorded (bad input, early failure, ^C).

        Parents go only while empty: another experiment or shard may be writing beside this one."""
        if self._created and not self.results_csv.exists():
            shutil.rmtree(self._created[0], ignore_errors=True)
            for d in self._created[1:]:
                with contextlib.suppress(OSError):
                    d.rmdir()

    def rows(self, f: Path | None = None) -> list[dict]:
        """The rows recorded in `f` (default: this process's file), values parsed as int or float where
        they read as one (config stays text).

        A damaged file (a line cut short, a wrong column count, a bad or repeated seed) is refused with
        its line number: resuming from it would silently drop or duplicate runs.
        """
        f = self.results_csv if f is None else f
        if not f.exists():
            return []
        fix = "remove the line or the folder to resume"
        try:
            text = f.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"{f}: cannot be read ({e}); remove the folder to start over") from None
        if not text:
            raise ConfigError(f"{f}: is empty (not even the header line); remove it or the folder to resume")
        n_ends = text.count("\n")
        reader = csv.reader(io.StringIO(text))
        try:
            header = next(reader)
            if "config" not in header or "seed" not in header or len(set(header)) != len(header):
                raise ConfigError(f"{f}: line 1 is not our header (distinct column names, among them config and "
                                  "seed); remove the folder to start over")
            rows, first = [], {}
            for rec in reader:
                n = reader.line_num
                if len(rec) < len(header) or n > n_ends:  # n > n_ends: no line end, the write was cut short
                    end = ", no line end" if n > n_ends else ""
                    raise ConfigError(f"{f}: line {n} is truncated ({len(rec)} of {len(header)} columns{end}); {fix}")
                if len(rec) > len(header):
                    raise ConfigError(f"{f}: line {n} has {len(rec)} columns, the header {len(header)}; {fix}")
                row = dict(zip(header, rec))
                try:
                    key = (row["config"], int(row["seed"]))
                except ValueError:
                    raise ConfigError(f"{f}: line {n}: seed = {row['seed']!r} is not an integer; {fix}") from None
                if not key[0] or key in first:
                    what = "config is empty" if not key[0] else f"repeats the config and seed of line {first[key]}"
                    raise ConfigError(f"{f}: line {n}: {what}; {fix}")
                first[key] = n
                rows.append({k: v if k == "config" else _parse(v) for k, v in row.items()})
        except csv.Error as e:
            raise ConfigError(f"{f}: line {reader.line_num}: {e}; {fix}") from None
        return rows

    def done_keys(self) -> set[tuple[str, int]]:
        """Rows recorded by this process's file, and for a shard also those already merged."""
        files = [self.results_csv] + ([self.merged_csv] if self.shard is not None else [])
        return {(r["config"], int(r["seed"])) for f in files for r in self.rows(f)}

    def merge(self, order: list[tuple[str, int]]) -> list[dict]:
        """Fold every shard's rows into results.csv, in plan `order`: exactly the file an unsharded run
        writes. A (config, seed) two files record differently is refused. Shard files stay (a shard still
        running may add rows; merging again is idempotent)."""
        rows: dict[tuple[str, int], dict] = {}
        where: dict[tuple[str, int], Path] = {}
        for f in [self.merged_csv] + self.shard_files():
            for r in self.rows(f):
                key = (r["config"], int(r["seed"]))
                if key in rows and _text(rows[key]) != _text(r):
                    raise ConfigError(f"{f}: {key[0]}, seed {key[1]} differs from the row in {where[key]} (shards of "
                                      "different code or configs?); remove one of them")
                rows.setdefault(key, r)
                where.setdefault(key, f)
        if self.shard_files():
            merged = RunDir(self.path.parent, self.name)
            merged._write(list(rows.values()), order)
        return self.rows(self.merged_csv)

    def append(self, new_rows: list[dict], order: list[tuple[str, int]] | None = None) -> None:
        """Record finished rows (rewrites the csv atomically); the only writer of results.csv.

        With `order` (the sweep's (config, seed) keys) rows are kept in that order, so the file is
        the same however the sweep was grouped, finished or interrupted; otherwise earlier rows come first.
        """
        self._write(self.rows() + new_rows, order)

    def _write(self, rows: list[dict], order: list[tuple[str, int]] | None) -> None:
        if order is not None:
            rank = {key: i for i, key in enumerate(order)}
            rows.sort(key=lambda r: rank.get((r["config"], int(r["seed"])), len(rank)))
        cols = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in cols})
        self.results_csv.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.results_csv, buf.getvalue())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.summary_json, json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def summary(self) -> dict:
        return read_json(self.summary_json, f"rerun the `exolam reproduce {self.name}` command that wrote it "
                                            "(it rewrites summary.json from results.csv)")

    def config(self) -> dict:
        return read_json(self.config_json, "restore it, or remove the folder and rerun")

    def save_figure(self, fig) -> Path:
        target = self.path / f"{self.name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        atomic_write(target, buf.getvalue())
        return target


# where and how a run executes, not what it computes: a sweep may resume on another machine (a GPU,
# N processes per model); rows say where they ran (the grid world's `device` column)
EXECUTION = ("device", "train.devices", "train.strategy", "train.save_every", "train.log_every")


def _identity(config: dict) -> dict:
    out = {k: v for k, v in config.items() if k not in EXECUTION}
    if isinstance(out.get("train"), dict):
        out["train"] = {k: v for k, v in out["train"].items() if f"train.{k}" not in EXECUTION}
    return out


def _text(row: dict) -> dict:
    """A row as the csv spells it (so NaN equals NaN)."""
    return {k: str(_fmt(v)) for k, v in row.items()}


def _fmt(v):
    return repr(v) if isinstance(v, float) else v


def _parse(v: str):
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def summarize(rows: list[dict], keys: list[str], metrics: list[str]) -> list[dict]:
    """Mean and standard error over seeds per config (rows grouped by `keys`), in first-seen order."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, rs in groups.items():
        entry = dict(zip(keys, key))
        entry["n_seeds"] = len(rs)
        for m in metrics:
            vals = [float(r[m]) for r in rs if r.get(m, "") != "" and math.isfinite(float(r[m]))]
            n = len(vals)
            mean = sum(vals) / n if n else float("nan")
            sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else 0.0
            entry[m] = {"mean": mean, "se": sd / math.sqrt(n) if n else float("nan"), "std": sd}
        out.append(entry)
    return out
