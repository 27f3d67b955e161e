"""Progress of a long loop: on stderr, a tqdm bar on a terminal, else one line every `every` steps; on
disk, a run's metrics.jsonl (`MetricsLog`, `append`).

A terminal gets the live bar (count, rate, ETA and a postfix such as the loss); the log of a job
without one (SLURM, nohup) gets `[desc] k/N unit, r unit/s, ETA m:ss[, postfix]` every `every`
steps and at the end, or nothing with every = 0 (the workers of a sweep, whose runner reports rows).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from exolam.runs.files import atomic_write


def bar(total: int, start: int, desc: str, *, show: bool = True, every: int = 0, unit: str = "it"):
    """A tqdm bar, a `Lines` writer or None (not `show`, or no terminal and every = 0)."""
    if not show:
        return None
    if not sys.stderr.isatty():
        return Lines(total, start, desc, every, unit) if every else None
    from tqdm import tqdm

    return tqdm(total=total, initial=start, desc=desc, leave=False, unit=unit)


class Lines:
    """tqdm's update / set_postfix / close as one stderr line every `every` steps (no terminal)."""

    def __init__(self, total: int, start: int, desc: str, every: int, unit: str = "it"):
        self.total, self.n, self.start, self.desc, self.every, self.unit = total, start, start, desc, every, unit
        self.t0, self.postfix = time.perf_counter(), ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n % self.every == 0 or self.n == self.total:
            rate = (self.n - self.start) / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - self.n) / max(rate, 1e-9)
            print(f"[{self.desc}] {self.n}/{self.total} {self.unit}, {rate:.2f} {self.unit}/s, ETA "
                  f"{int(eta // 60)}:{int(eta % 60):02d}{self.postfix}", file=sys.stderr, flush=True)

    def set_postfix(self, refresh: bool = False, **values) -> None:
        self.postfix = "".join(f", {k} {v}" for k, v in values.items())

    def close(self) -> None:
        pass


class MetricsLog:
    """metrics.jsonl: appended line by line; a resumed run first drops the lines past its step."""

    def __init__(self, path: str | Path, start: int):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            keep = [ln for ln in self.path.read_text().splitlines(keepends=True)
                    if ln.endswith("\n") and _step_of(ln) <= start]
            atomic_write(self.path, "".join(keep))

    def write(self, record: dict) -> None:
        append(self.path, record)


def append(path: str | Path, record: dict) -> None:
    """One JSON line at the end of `path`."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _step_of(line: str) -> int:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):
        return sys.maxsize
