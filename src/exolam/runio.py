"""Run directories: the file contract of design.md ("Commands and files").

`DIR/<experiment>/` holds `config.json` (fully resolved), `results.csv` (one row per config x seed),
`summary.json` (mean and standard error per config) and `<experiment>.png`. Every file is written
to a temporary name and renamed, so nothing half-written is ever left. A rerun of the same config
skips the (config, seed) rows already in results.csv (an interrupted sweep resumes); a rerun with
a different config refuses instead of overwriting.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import shutil
from pathlib import Path

from exolam.errors import ConfigError


def atomic_write(path: Path, data: str | bytes) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def to_jsonable(obj):
    if dataclasses.is_dataclass(obj):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(x) for x in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


class RunDir:
    """One experiment's output folder; `open()` creates it or resumes it (same config only)."""

    def __init__(self, out: str | Path, experiment: str):
        self.path = Path(out) / experiment
        self.name = experiment
        self._created = False

    @property
    def results_csv(self) -> Path:
        return self.path / "results.csv"

    def open(self, config: dict) -> "RunDir":
        cfg_text = json.dumps(config, indent=2, sort_keys=True)
        cfg_file = self.path / "config.json"
        if cfg_file.exists():
            if json.loads(cfg_file.read_text()) != json.loads(cfg_text):
                raise ConfigError(f"{self.path}: holds a finished or partial run with a different config.json; "
                                  "choose another --out or remove that folder")
            return self
        self._created = not self.path.exists()
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write(cfg_file, cfg_text + "\n")
        return self

    def discard_if_empty(self) -> None:
        """Remove a folder this run created when nothing was recorded (bad input, early failure)."""
        if self._created and not self.results_csv.exists():
            shutil.rmtree(self.path, ignore_errors=True)

    def rows(self) -> list[dict]:
        if not self.results_csv.exists():
            return []
        with open(self.results_csv, newline="") as f:
            return [{k: _parse(v) for k, v in r.items()} for r in csv.DictReader(f)]

    def done_keys(self) -> set[tuple[str, int]]:
        return {(r["config"], int(r["seed"])) for r in self.rows()}

    def append(self, new_rows: list[dict], order: list[tuple[str, int]] | None = None) -> None:
        """Record finished rows (rewrites the csv atomically).

        With `order` (the sweep's (config, seed) keys) rows are kept in that order, so the file is
        the same however the sweep was grouped or interrupted; otherwise earlier rows come first.
        """
        rows = self.rows() + new_rows
        if order is not None:
            rank = {key: i for i, key in enumerate(order)}
            rows.sort(key=lambda r: rank.get((r["config"], int(r["seed"])), len(rank)))
        cols = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in cols})
        atomic_write(self.results_csv, buf.getvalue())

    def write_summary(self, summary: dict) -> None:
        atomic_write(self.path / "summary.json", json.dumps(summary, indent=2, sort_keys=True) + "\n")

    def save_figure(self, fig) -> Path:
        target = self.path / f"{self.name}.png"
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
        atomic_write(target, buf.getvalue())
        return target


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
