"""`exolam import KIND SRC --out DST [options]`: bring outside data into the LeRobot v3.0 layout.

    exolam import mp4 VIDEOS/ --out DST [--fps F] [--image-size N] [--camera KEY] [--task TEXT]
    exolam import npz CHUNKS/ --out DST --fps F [--image-size N] [--camera KEY] [--task TEXT]
    exolam import hdf5 FILE_OR_DIR --layout robomimic --out DST [--camera-keys K1,K2] [--fps F] [--task TEXT]
    exolam import hdf5 FILE_OR_DIR --layout laom --out DST --fps F [--camera KEY] [--task TEXT]
    exolam import lerobot-v21 DATASET/ --out DST
    every kind: [--image-size N] [--flip-vertical] [--flip-horizontal] [--codec av1|h264]

What each kind reads, and how a killed import resumes (rerun the same command), is documented in
`data/importers.py` and `data/importers_hdf5.py`. Flags are checked strictly (cliargs.check): an
unknown flag, a flag of another kind, a missing or bad value ends in one line and exit code 2.
"""

from __future__ import annotations

import typing

from exolam.cliargs import Flag, check
from exolam.errors import ConfigError

USAGE = __doc__.split("\n\n")[1]
COMMON = {"--out": Flag("out", str, config=False), "--image-size": Flag("image_size", int, config=False),
          "--flip-vertical": Flag("flip_vertical", bool, config=False),
          "--flip-horizontal": Flag("flip_horizontal", bool, config=False),
          "--codec": Flag("codec", typing.Literal["av1", "h264"], config=False)}
EXTRA = {"--fps": Flag("fps", int, config=False), "--task": Flag("task", str, config=False),
         "--camera": Flag("camera", str, config=False), "--layout": Flag("layout", typing.Literal["robomimic", "laom"],
                                                                         config=False),
         "--camera-keys": Flag("camera_keys", tuple[str, ...], config=False)}
ALLOWED = {"mp4": ("--fps", "--task", "--camera"), "npz": ("--fps", "--task", "--camera"),
           "hdf5": ("--fps", "--task", "--camera", "--layout", "--camera-keys"), "lerobot-v21": ()}


def import_command(argv: list[str]) -> int:
    """`exolam import ...` (argv after `import`); returns the exit code, raises ConfigError on bad input."""
    from exolam.data.importers import import_dataset
    from exolam.data.importers_base import KINDS, ImportOptions

    if not argv or argv[0] in ("-h", "--help") or "-h" in argv or "--help" in argv:
        print("usage:\n" + USAGE)
        return 0 if argv else 2
    kind = argv[0]
    if kind not in KINDS:
        raise ConfigError(f"import: unknown kind '{kind}' (allowed: {', '.join(KINDS)})")
    if len(argv) < 2 or argv[1].startswith("--"):
        raise ConfigError(f"import {kind}: SRC is missing (exolam import {kind} SRC --out DST)")
    table = {**COMMON, **{s: EXTRA[s] for s in ALLOWED[kind]}}
    other = {s: f"{s} does not apply to {kind} (its flags: {', '.join(table)})" for s in EXTRA if s not in table}
    given = {k: g.value for k, g in check(list(argv[2:]), table, f"import {kind}", f"exolam import {kind}",
                                           elsewhere=other).items()}
    out = given.pop("out", None)
    if not out:
        raise ConfigError(f"import {kind}: --out DST is required (the folder of the new dataset)")
    if "camera_keys" in given:
        given["camera_keys"] = tuple(k for v in given["camera_keys"] for k in v.split(",") if k)
    path = import_dataset(kind, argv[1], out, ImportOptions(**given))
    from exolam.runs.files import read_json

    done = read_json(path / "meta" / "exolam_import.json", "rerun the import")
    print(f"imported {kind} {argv[1]}: {done.get('episodes')} episodes, {done.get('frames')} frames -> {path}")
    return 0
