"""The one sweep runner: resumable, sharded across machines, parallel across processes on one.

A sweep is a *plan* (the ordered (config, seed) keys of its rows) and *tasks*: a task trains one or
more rows (a grid-world job: one model; a linear group: an ensemble of models) and returns their
results.csv rows. `run_tasks`:

- skips tasks whose rows are already recorded (an interrupted sweep, rerun, resumes);
- runs only the tasks of this process's shard (`RunDir.shard` = (K, N); `--shard K/N`): row i of
  the plan belongs to shard i mod N + 1, so N shards (a SLURM array, several hosts on a shared
  folder, or several processes) split any sweep evenly. A shard records its rows in its own file,
  `shards/results-K-of-N.csv`, so no two processes ever write one file; `exolam report` merges
  them into results.csv, byte-identical to the file an unsharded run writes (`RunDir.merge`);
- runs tasks in `jobs` spawned worker processes with 1 torch thread each (0: in this process with
  its own thread count; a task that must not depend on it fixes its own, as the grid world's does). A worker exits as soon as its parent dies, so a killed sweep leaves no
  busy orphans. Each finished task's rows are recorded at once, in plan order.

Under torchrun or SLURM (one process per rank) every rank runs every task, as the ranks of one DDP
training, and rank 0 alone records the rows.

Everything a task computes must be a function of the task alone (seed-derived data, init and
minibatches; a fixed thread count), so the rows do not depend on J, N or the order tasks finish in.
"""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import multiprocessing
import os
import threading
import time
from typing import Callable

import torch

from exolam.errors import ConfigError
from exolam.runs.launch import launcher_rank
from exolam.runs.rundir import RunDir


@dataclasses.dataclass(frozen=True)
class Task:
    keys: tuple[tuple[str, int], ...]
    """the (config, seed) rows this task records"""
    fn: Callable[..., list[dict]]
    """a module-level function (it is pickled into worker processes) returning the rows"""
    args: tuple = ()


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' -> (K, N) with 1 <= K <= N; anything else -> one ConfigError line."""
    try:
        k, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--shard = {text!r} must be K/N (e.g. 1/4: the first of 4 shards)") from None
    if not 1 <= k <= n:
        raise ConfigError(f"--shard = {text!r}: K must be in 1..N (shards are numbered 1/{max(n, 1)} to "
                          f"{max(n, 1)}/{max(n, 1)})")
    return k, n


def check_jobs(jobs) -> int:
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 0:
        raise ConfigError(f"--jobs = {jobs!r} must be an integer >= 0 (0: in this process)")
    return jobs


def shard_items(items: list, run: RunDir) -> list:
    """The items (in plan order, one per row) whose rows belong to run's shard."""
    return [it for i, it in enumerate(items) if run.in_shard(i)]


def run_tasks(tasks: list[Task], run: RunDir, order: list[tuple[str, int]], jobs: int = 0, log=print) -> None:
    """Run every task of run's shard whose rows are not recorded yet (see the module docstring)."""
    if len(set(order)) != len(order):
        raise ConfigError("sweep lists a (config, seed) twice")
    mine = {key for i, key in enumerate(order) if run.in_shard(i)}
    done = run.done_keys()
    todo = [t for t in tasks if set(t.keys) & mine and not set(t.keys) <= done]
    where = f"{run.name}" + (f" shard {run.shard[0]}/{run.shard[1]}" if run.shard else "")
    if done & mine:
        log(f"{run.path}: resuming {where}, {len(done & mine)} rows already recorded, {len(todo)} tasks to go")
    t0 = time.perf_counter()

    recorder = launcher_rank() == 0  # under torchrun / SLURM every rank trains, rank 0 records

    def record(i: int, rows: list[dict]) -> None:
        if recorder:
            run.append(rows, order=order)
            log(f"  {where}: {i + 1}/{len(todo)} tasks done ({time.perf_counter() - t0:.0f} s)")

    if jobs == 0 or not todo:
        for i, t in enumerate(todo):
            record(i, t.fn(*t.args))
        return
    ctx = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=min(jobs, len(todo)), mp_context=ctx, initializer=_init_worker) as pool:
        futures = [pool.submit(t.fn, *t.args) for t in todo]
        try:
            for i, fut in enumerate(cf.as_completed(futures)):
                record(i, fut.result())
        except cf.process.BrokenProcessPool as e:
            raise RuntimeError("a sweep worker died (killed, out of memory, or the calling script lacks the "
                               "`if __name__ == '__main__':` guard that spawned workers need); rerun the same "
                               "command to resume") from e
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _init_worker() -> None:
    """1 torch thread; exit as soon as the parent dies (a killed sweep leaves no busy orphans)."""
    torch.set_num_threads(1)
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True).start()
