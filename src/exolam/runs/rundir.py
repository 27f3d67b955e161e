"""Run directories: the file contract of docs/design.md ("Commands and files").

`DIR/<experiment>/` holds `config.json` (fully resolved), `results.csv` (one row per config x seed),
`summary.json` (mean and standard error per config) and `<experiment>.png`. Every file is written
to a temporary name and renamed (`files.atomic_write`), so nothing half-written is ever left. A rerun of the same config
skips the (config, seed) rows already in results.csv (an interrupted sweep resumes); a rerun with
a different config refuses instead of overwriting. Two processes never record one results file at
once (`held`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import shutil
from pathlib import Path

from exolam.errors import ConfigError
from exolam.runs.files import atomic_write, current_names, read_json
from exolam.runs.launch import rank0
from exolam.runs.outdir import Lock, parent_folder, remove_stale


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
            if not same_config(recorded, config):
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

    @contextlib.contextmanager
    def held(self):
        """Hold this run (or this shard of it: the shards of one sweep run side by side) for the calling
        process: the lock `DIR/.<experiment>[.shard-K-of-N].lock` (outdir.Lock; a second process is refused
        naming the holder's PID), then the temporaries of dead writers in the folder swept. DIR is created
        if needed and removed again if it is left empty."""
        name = self.name if self.shard is None else f"{self.name}.shard-{self.shard[0]}-of-{self.shard[1]}"
        with parent_folder(self.path, f"{self.path}: cannot create the run folder"), \
                Lock(self.path.parent / name) if rank0() else contextlib.nullcontext():  # ranks > 0 record nothing
            remove_stale(self.path, recursive=True)
            yield self

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
        writes. Shard files stay (a shard still running may add rows; merging again is idempotent)."""
        rows = self.recorded()
        if self.shard_files():
            merged = RunDir(self.path.parent, self.name)
            merged._write(list(rows.values()), order)
        return self.rows(self.merged_csv)

    def recorded(self) -> dict[tuple[str, int], dict]:
        """Every row of results.csv and of the shard files, by (config, seed); writes nothing. A
        (config, seed) two files record differently is refused."""
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
        return rows

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
        return current_names(read_json(self.config_json, "restore it, or remove the folder and rerun"))

    def save_figure(self, fig) -> Path:
        target = self.path / f"{self.name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        atomic_write(target, buf.getvalue())
        return target


# where and how a run executes, not what it computes: a sweep may resume on another machine (a GPU,
# N processes per model); rows say where they ran (the grid world's `device` column)
EXECUTION = ("device", "train.devices", "train.strategy", "train.save_every", "train.log_every")


def same_config(recorded: dict, config: dict) -> bool:
    """Whether a recorded config.json and `config` describe one run (execution fields aside)."""
    return _identity(recorded) == _identity(json.loads(json.dumps(config)))


def _identity(config: dict) -> dict:
    out = {k: v for k, v in current_names(config).items() if k not in EXECUTION}
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
