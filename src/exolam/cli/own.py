"""`exolam import`, `exolam train`, `exolam label`: your own video in, latent actions out.

    exolam import mp4|npz|hdf5|lerobot-v21 SRC --out DST [--fps F] [--image-size N] [--camera KEY] [...]
    exolam train --data D --out DIR [--model lapo|vq] [--objective lam+xexo:1] [--train.lr LR] [...]
    exolam label --checkpoint C --data D --out O [--camera KEY] [--batch-size B] [--device cpu|cuda]

import: data/importers.py (what each kind reads; a killed import resumes when rerun). train:
workflows/train_own.py (`TrainOwnConfig`, which nests the engine's `TrainConfig`: `--train.steps`,
`--train.lr`, ... as in `exolam reproduce`); rerunning a train command resumes its checkpoint (another
config in the same --out is refused). label: workflows/label.py; rerunning a finished label command
returns its output.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Literal

import tyro

from exolam.cli.flags import parse, project
from exolam.data.importers_base import KINDS, ImportOptions
from exolam.errors import ConfigError

# flags a kind of import reads besides the common ones (--out, --image-size, --flip-*, --codec)
ONLY = {"--fps": ("mp4", "npz", "hdf5"), "--task": ("mp4", "npz", "hdf5"), "--camera": ("mp4", "npz", "hdf5"),
        "--layout": ("hdf5",), "--camera-keys": ("hdf5",)}
# the own-data train's flags before the engine's settings were nested (README, changelog)
RENAMED = {f"--{old}": f"--train.{old}" for old in
           ("steps", "batch-size", "lr", "devices", "strategy", "precision", "save-every", "log-every")}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImportCommand(ImportOptions):
    """Bring mp4, npz, hdf5 or LeRobot v2.1 data into a LeRobot v3.0 dataset."""

    kind: Annotated[tyro.conf.Positional[Literal[KINDS]], tyro.conf.arg(metavar="KIND")]
    """what SRC holds: mp4 (a folder of videos), npz (of chunks), hdf5 (a file or folder), lerobot-v21"""
    src: Annotated[tyro.conf.Positional[str], tyro.conf.arg(metavar="SRC")]
    """the file or folder to import (never written)"""
    out: str
    """folder of the new dataset"""


@dataclasses.dataclass
class LabelCommand:
    """Write a copy of a LeRobot dataset with the LAM's latent action on every frame."""

    checkpoint: str
    """an `exolam train` run folder or its checkpoint/"""
    data: str
    """the LeRobot dataset to label (v3.0 or v2.1; read only)"""
    out: str
    """folder of the labelled copy"""
    camera: str | None = None
    """video feature to read; None: the checkpoint's camera"""
    batch_size: int = 256
    """windows per IDM forward pass"""
    device: Literal["cpu", "cuda"] = "cpu"
    """where the IDM runs"""
    as_action: bool = False
    """also write z as the copy's `action` (last frames holding the last valid z; a recorded action becomes
    `action.true`), so a LeRobot policy trains on the pseudo-actions as is"""


def import_command(argv: list[str]) -> int:
    """`exolam import ...` (argv after `import`); returns the exit code, raises ConfigError on bad input."""
    from exolam.data.importers import import_dataset
    from exolam.runs.files import read_json

    if not argv:
        parse(ImportCommand, ["--help"], "exolam import")
        return 2
    kind = argv[0]
    if kind not in KINDS and not kind.startswith("-"):
        raise ConfigError(f"import: unknown kind '{kind}' (allowed: {', '.join(KINDS)})")
    drop = {s: f"{s} does not apply to {kind} (it applies to {', '.join(kinds)})" for s, kinds in ONLY.items()
            if kind not in kinds}
    cmd = parse(ImportCommand, argv, f"exolam import {kind}" if kind in KINDS else "exolam import", drop=drop)
    if cmd is None:
        return 0
    options = project(cmd, ImportOptions)
    if options.camera_keys is not None:
        options = dataclasses.replace(options, camera_keys=tuple(k for v in options.camera_keys for k in v.split(",") if k))
    path = import_dataset(kind, cmd.src, cmd.out, options)
    done = read_json(path / "meta" / "exolam_import.json", "rerun the import")
    print(f"imported {kind} {cmd.src}: {done.get('episodes')} episodes, {done.get('frames')} frames -> {path}")
    return 0


def train_command(argv: list[str]) -> int:
    from exolam.workflows.train_own import TrainOwnConfig, train_own

    renamed = {old: f"{old} is now {new} (every training setting is spelled as in `exolam reproduce`; see "
                    "exolam train --help)" for old, new in RENAMED.items()}
    cfg = parse(TrainOwnConfig, argv, "exolam train", elsewhere=renamed)
    if cfg is not None:
        print(f"checkpoint: {train_own(cfg, log=lambda m: print(m, flush=True))}")
    return 0


def label_command(argv: list[str]) -> int:
    from exolam.workflows.label import label_dataset

    cmd = parse(LabelCommand, argv, "exolam label")
    if cmd is not None:
        path = label_dataset(cmd.checkpoint, cmd.data, cmd.out, cmd.camera, cmd.batch_size, cmd.device,
                             log=lambda m: print(m, flush=True), as_action=cmd.as_action)
        print(f"labelled dataset: {path}")
    return 0
