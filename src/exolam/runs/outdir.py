"""The `--out` folder of every command that writes one (import, train, label, diagnose and its encoder /
target variants, control collect / videos): one mechanism for "nothing half-written, nothing left
behind, no two writers". `exolam reproduce` holds each experiment's run folder with the same `Lock`
and sweep (rundir.RunDir.held); its rows resume by their own rules (runs/rundir.py).

    with claim(out, {"--data": data}, resumable=lambda: ckpt.exists()):  # checks, lock, stale sweep
        ...                                                                 # build the output

`claim` does, in this order, before anything is created:
1. **inputs** - `--out` equal to or inside any input (a dataset, a checkpoint, a source) is refused;
   the command's own checks of every input come before `claim` too, so a refusal writes nothing.
2. **lock** - `<parent>/.<name>.lock`, held with `fcntl.flock` for the command's lifetime (the kernel
   drops it when the process dies, so a killed holder never blocks the next run). A second process on
   the same `--out` is refused with one line naming the holder's PID. The lock file is removed on
   release. Only rank 0 of a multi-process launch (torchrun, SLURM, Fabric's ddp launcher) claims
   `--out`; ranks > 0 write nothing, so they neither lock, sweep nor roll back.
3. **stale temporaries** - every temporary name of ours belonging to this `--out` whose writer is
   dead is removed: `.<name>.tmp<PID>` beside it (a folder built by `files.atomic_dir`), and
   `.<file>.tmp<PID>` inside it or inside its staging folder (`files.atomic_write`,
   `checkpoint.write`). A killed checkpoint replacement is adopted by `checkpoint.resolve`.

On leaving the block with an exception the folder is rolled back to what was there before the
command started, unless `resumable()` says a state worth resuming exists (a checkpoint) and the
exception is not a refusal (`ConfigError`: bad input, divergence, a full disk; a rerun of the same
command would meet it again). Rolled back means: entries this process created inside `out` are
removed, then `out` itself and any parent the command created while they are empty. What was there
before is never touched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
from pathlib import Path

from exolam.errors import ConfigError
from exolam.runs.launch import rank0

TMP = re.compile(r"^\..+\.tmp(\d+)(\.[a-z0-9]+)?$")  # .NAME.tmpPID[.ext]: files.atomic_write / atomic_dir,
# checkpoint.write, a video written under a temporary name (.episode_000000.mp4.tmpPID.mp4)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` exists on this machine (a PID we may not signal counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(folder: Path, prefix: str = "", recursive: bool = False) -> list[Path]:
    """Remove the temporaries `.NAME.tmpPID` under `folder` (with `prefix`: only `.{prefix}.tmpPID`, the
    temporary of one target) whose writer PID is no longer alive; returns what was removed."""
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for root, dirs, files in os.walk(folder) if recursive else [next(os.walk(folder))]:
        for name in [*dirs, *files]:
            m = TMP.match(name)
            if not m or (prefix and not name.startswith(f".{prefix}.tmp")) or int(m.group(1)) == os.getpid():
                continue
            if pid_alive(int(m.group(1))):
                continue
            entry = Path(root) / name
            if name in dirs and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
                dirs.remove(name)  # os.walk does not descend into it
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_outside(out: Path, inputs: dict[str, str | Path | None]) -> None:
    """Refuse an `out` equal to or inside any input (named by its flag); inputs that are None are skipped."""
    o = Path(out).resolve()
    for flag, path in inputs.items():
        if path is None:
            continue
        p = Path(path).resolve()
        if o == p or p in o.parents:
            where = "is" if o == p else "lies inside"
            raise ConfigError(f"--out = {out}: {where} {flag} {path}, which is only read; choose another --out")


def lock_path(out: Path) -> Path:
    return out.with_name(f".{out.name}.lock")


@contextlib.contextmanager
def parent_folder(path: Path, fail: str):
    """`path`'s parent, created if missing; on leaving, the folders this made are removed again while
    empty (innermost first). `fail`: the start of the one line that says it cannot be created."""
    parent = path.parent
    made = [d for d in (parent, *parent.parents) if not d.exists()]
    base = made[-1].parent if made else parent
    if base.exists() and not base.is_dir():
        raise ConfigError(f"{fail}: {base} is a file, not a folder; choose another --out")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{fail} ({e.strerror or e}); choose another --out") from None
    try:
        yield parent
    finally:
        for d in made:
            with contextlib.suppress(OSError):
                d.rmdir()


class Lock:
    """An exclusive lock on `target` (a folder or file that may not exist yet): the file
    `<parent>/.<name>.lock` held with `fcntl.flock` and holding our PID; refused, not waited for."""

    def __init__(self, target: str | Path):
        self.target, self.path = Path(target), lock_path(Path(target))
        self._fd: int | None = None

    def __enter__(self) -> "Lock":
        import fcntl

        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise ConfigError(f"--out = {self.target}: cannot create its lock {self.path} ({e.strerror or e}); "
                                  "choose another --out") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ConfigError(f"--out = {self.target}: in use by another exolam process (PID {holder}, lock "
                                  f"{self.path}); wait for it to finish or choose another --out") from None
            try:  # a holder that released between our open and flock unlinked the file: take a fresh one
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def __exit__(self, *exc) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: a process that opened it re-checks the inode
        os.close(self._fd)
        self._fd = None


@contextlib.contextmanager
def claim(out: str | Path, inputs: dict[str, str | Path | None] | None = None, *, staging: Path | None = None,
          resumable=None):
    """Check `out` against `inputs`, lock it, sweep stale temporaries (also in a `staging` folder beside
    it); roll back on failure unless `resumable()` says a state worth resuming exists and the failure is
    no refusal (module doc)."""
    out = Path(out)
    check_outside(out, inputs or {})
    if not rank0():  # a rank > 0 of a multi-process launch: rank 0 holds, sweeps and rolls back
        yield
        return
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out = {out}: exists and is not a folder; choose another --out")
    with parent_folder(out, f"--out = {out}: cannot create {out.parent}"), Lock(out):
        remove_stale(out.parent, out.name)
        for folder in (out, staging):
            if folder is not None:
                remove_stale(folder, recursive=True)
        existed = out.exists()
        before = set(os.listdir(out)) if existed else set()
        try:
            yield
        except BaseException as e:
            if isinstance(e, ConfigError) or not (resumable and resumable()):
                _rollback(out, existed, before)
            raise


def _rollback(out: Path, existed: bool, before: set[str]) -> None:
    """Remove what this process created inside `out`, and `out` itself if it made it and it is left
    empty; what was there before stays."""
    if not out.is_dir():
        return
    for name in set(os.listdir(out)) - before:
        p = out / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()
