"""One-way importers into the LeRobot v3.0 layout: `import_dataset(kind, src, out, options)`.

Kinds (what each reads is in its source's docstring): `mp4` (importers_sources.Mp4Source: a folder of videos, one
episode each, no actions), `npz` (NpzSource: LAPO-style chunks), `hdf5` with layout `robomimic` or
`laom` (data/importers_hdf5.py), `lerobot-v21` (LeRobotV21Source: a v2.1/v2.0 dataset re-encoded as
v3.0). Every kind also takes `image_size` (resize every camera to N x N with swscale's area filter),
`flip_vertical` / `flip_horizontal` (reverse rows / columns; both = a 180 degree rotation) and `codec`
(av1, LeRobot's default, or h264). Frames need even height and width (yuv420p): pass image_size
otherwise. One episode is held in memory at a time (pass image_size for long high-resolution videos).

Resumable and atomic (the pattern of `envs/control_collect.py`): each checked episode is saved to the
sibling folder `<out parent>/.<out name>.import-staging/episode_{i:06d}.npz` (temporary name, fsync,
rename) beside `spec.json` (kind, resolved SRC, options, and the name, size and mtime of every input
file); a rerun skips the staged episodes, and a staging folder of another spec (other options, or
input files added, removed or changed since, e.g. a bad video replaced) is rebuilt from scratch.
Once all are staged, `write_dataset` builds OUT under a temporary name and renames it; then
`OUT/meta/exolam_import.json` (the spec, episodes, frames) is written and the staging folder removed.
A rerun of a finished import with the same spec returns at once. OUT is never half-written; one
import per OUT at a time (`outdir.claim`: a second one is refused naming the first's PID). Bad input
(or a full disk) ends in one ConfigError line naming the file (episode, key) and removes the staging
folder; a killed import leaves its staged episodes for the rerun. Sources are only read (OUT equal to
or inside SRC is refused).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from exolam.data.importers_base import ImportOptions
from exolam.data.lerobot_write import write_dataset
from exolam.errors import ConfigError, note
from exolam.runs.files import atomic_write, load_npz, open_staging, read_json, save_npz
from exolam.runs.outdir import check_outside, claim
from exolam.runs.progress import bar as progress_bar

FORMAT, SPEC, DONE = 1, "spec.json", "exolam_import.json"


def open_source(kind: str, src, opts: ImportOptions):
    """The reader of `src` for `kind` (checks the input's structure; reads no frames yet)."""
    src = Path(src)
    if not src.exists():
        raise ConfigError(f"{src}: missing")
    if kind == "hdf5":
        from exolam.data.importers_hdf5 import open_hdf5

        return open_hdf5(src, opts)
    from exolam.data.importers_sources import LeRobotV21Source, Mp4Source, NpzSource

    return {"mp4": Mp4Source, "npz": NpzSource, "lerobot-v21": LeRobotV21Source}[kind](src, opts)


# ------------------------------------------------------------------------------- staging, writing

def import_dataset(kind: str, src, out, options: ImportOptions | None = None, *, progress: bool = True,
                   log=print) -> Path:
    """Import `src` (a `kind` of KINDS) into the LeRobot v3.0 dataset `out`; returns `out` (module doc)."""
    opts = (options or ImportOptions()).validate(kind)
    src, out = Path(src), Path(out)
    check_outside(out, {"SRC": src})
    staging, done = out.with_name(f".{out.name}.import-staging"), out / "meta" / DONE
    source = open_source(kind, src, opts)
    try:
        spec = json.loads(json.dumps({"format": FORMAT, "kind": kind, "src": str(src.resolve()),
                                      "options": dataclasses.asdict(opts), "inputs": source.inputs}))
        with claim(out, staging=staging):  # out against SRC: checked above, before SRC is opened
            if out.exists():
                if done.is_file():
                    _check_spec(done, spec, "this dataset was imported")
                    return out
                if not (staging / SPEC).is_file():
                    raise ConfigError(f"{out}: already exists and is not an import of ours; choose another --out")
                _check_spec(staging / SPEC, spec, "staging was made")
                _finish(staging, done, spec, out)
                return out
            try:
                _stage_and_write(kind, source, spec, staging, out, opts, progress, log)
            except ConfigError:  # refused (bad input, a full disk): nothing of this import stays
                shutil.rmtree(staging, ignore_errors=True)
                raise
            if kind == "mp4" and opts.fps is None:  # said once it is written (a refusal stays one line)
                note(out, f"fps {source.fps}, the videos' own frame rate (--fps resamples them)")
            if kind in ("mp4", "npz") and opts.task is None:
                note(out, "no --task: every episode's task is the empty string")
            return out
    finally:
        source.close()


def _stage_and_write(kind: str, source, spec: dict, staging: Path, out: Path, opts: ImportOptions, progress: bool,
                     log) -> None:
    """Stage every episode not staged yet (a staging folder of other inputs or options is rebuilt), then
    write OUT from the staged episodes and finish."""
    if (staging / SPEC).is_file():
        try:
            diff = _spec_diff(read_json(staging / SPEC, ""), spec)
        except ConfigError:  # a damaged spec.json: nothing staged under it can be trusted
            diff = ["an unreadable spec.json"]
        if diff:
            log(f"[import] {staging}: made by another import ({'; '.join(diff)}); staging again from scratch")
            shutil.rmtree(staging)
    n = len(source)
    open_staging(staging, SPEC, spec, lambda path: _check_spec(path, spec, "staging was made"))
    todo = [i for i in range(n) if not (staging / _name(i)).exists()]
    bar = progress_bar(n, n - len(todo), f"import {kind}", show=progress, every=10, unit="episodes")
    for i in todo:
        save_npz(staging / _name(i), source.episode(i))
        bar and bar.update()
    bar and bar.close()
    bar = progress_bar(n, 0, "write v3.0", show=progress, every=10, unit="episodes")

    def staged():
        for i in range(n):
            ep = load_npz(staging / _name(i), [*source.features, "task"], "stage it again")
            yield {**ep, "task": str(ep["task"])}
            bar and bar.update()

    write_dataset(out, staged(), source.features, source.fps, codec=opts.codec, robot_type=source.robot_type)
    bar and bar.close()
    _finish(staging, done=out / "meta" / DONE, spec=spec, out=out)


def _name(i: int) -> str:
    return f"episode_{i:06d}.npz"


def _spec_diff(have: dict, want: dict) -> list[str]:
    """What differs between a recorded import spec and the one asked for, one phrase each."""
    diff = [f"options.{k}={have.get('options', {}).get(k)!r} (asked {v!r})" for k, v in want["options"].items()
            if (have.get("options") or {}).get(k) != v]
    diff += [f"{k}={have.get(k)!r} (asked {want[k]!r})" for k in ("format", "kind", "src") if have.get(k) != want[k]]
    if have.get("inputs") != want["inputs"]:
        diff.append("other input files (added, removed or changed since)")
    return diff


def _check_spec(path: Path, want: dict, what: str) -> None:
    diff = _spec_diff(read_json(path, f"remove {path.parent} to start afresh"), want)
    if diff:
        raise ConfigError(f"{path}: {what} with {'; '.join(diff)}; use another --out or remove "
                          f"{path.parent if path.name == SPEC else path.parent.parent}")


def _finish(staging: Path, done: Path, spec: dict, out: Path) -> None:
    info = read_json(out / "meta" / "info.json", "the dataset was damaged after writing; remove it and rerun")
    atomic_write(done, json.dumps({**spec, "episodes": info.get("total_episodes"),
                                   "frames": info.get("total_frames")}, indent=2) + "\n")
    shutil.rmtree(staging, ignore_errors=True)
