"""`exolam train` and `exolam label`: LAMs on your own LeRobot video (workflows/train_own.py, workflows/label.py).

    exolam train --data PATH --out DIR [--camera KEY] [--image-size 64] [--frame-gap 1] [--model lapo|vq]
                 [--encoder pixels|ema|SPEC] [--proj-channels C] [--objective lam+xexo:1+robust-action:1] [--label-fraction f]
                 [--codebook-update ema|loss] [--d-z N] [--idm-channels W ...] [--fdm-channels W ...] [--steps N] [--batch-size B] [--lr LR]
                 [--seed S] [--devices N] [--strategy auto|ddp|ddp_spawn] [--precision auto|32|bf16-mixed]
                 [--num-workers W] [--device cpu|cuda] [--save-every N] [--log-every N]
    exolam label --checkpoint C --data D --out O [--camera KEY] [--batch-size B] [--device cpu|cuda]

Rerunning a train command resumes its checkpoint (another config in the same --out is refused);
rerunning a finished label command returns its output. Flags are checked like `reproduce`'s
(cliargs.py): an unknown flag or a bad value ends in one line, exit code 2.
"""

from __future__ import annotations

import dataclasses
import types
import typing

from exolam.cliargs import Flag, check
from exolam.errors import ConfigError

LABEL_FLAGS = {"--checkpoint": Flag("checkpoint", str), "--data": Flag("data", str), "--out": Flag("out", str),
               "--camera": Flag("camera", str), "--batch-size": Flag("batch_size", int),
               "--device": Flag("device", typing.Literal["cpu", "cuda"])}


def _flags(cls) -> dict[str, Flag]:
    """One flag per field of `cls` (`--image-size`), an optional field read as its inner type."""
    table = {}
    for f in dataclasses.fields(cls):
        kind = typing.get_type_hints(cls)[f.name]
        if typing.get_origin(kind) in (typing.Union, types.UnionType):
            kind = next(t for t in typing.get_args(kind) if t is not type(None))
        flag = Flag(f.name, kind)
        table[flag.name] = flag
    return table


def _help(usage: str, doc: str) -> None:
    print(f"usage: {usage}")
    print(doc)


def train_command(argv: list[str]) -> int:
    from exolam.workflows.train_own import TrainOwnConfig, train_own

    usage = __doc__.split("\n\n")[1].strip().split("\n    exolam label")[0].strip()
    if "-h" in argv or "--help" in argv:
        _help(usage, _field_help(TrainOwnConfig))
        return 0
    given = check(list(argv), _flags(TrainOwnConfig), "train", "exolam train")
    for need in ("data", "out"):
        if need not in given:
            raise ConfigError(f"--{need} is required (see exolam train --help)")
    cfg = TrainOwnConfig(**{path: g.value for path, g in given.items()})
    path = train_own(cfg, log=lambda m: print(m, flush=True))
    print(f"checkpoint: {path}")
    return 0


def label_command(argv: list[str]) -> int:
    from exolam.workflows import label

    usage = "exolam label --checkpoint C --data D --out O [--camera KEY] [--batch-size B] [--device cpu|cuda]"
    if "-h" in argv or "--help" in argv:
        _help(usage, label.__doc__.strip())
        return 0
    given = check(list(argv), LABEL_FLAGS, "label", "exolam label")
    for need in ("checkpoint", "data", "out"):
        if need not in given:
            raise ConfigError(f"--{need} is required (see exolam label --help)")
    kw = {path: g.value for path, g in given.items()}
    path = label.label_dataset(kw.pop("checkpoint"), kw.pop("data"), kw.pop("out"),
                               log=lambda m: print(m, flush=True), **kw)
    print(f"labelled dataset: {path}")
    return 0


def _field_help(cls) -> str:
    """`--flag TYPE (default): doc` per field, from the dataclass and its attribute docstrings."""
    import inspect
    import re

    src = inspect.getsource(cls)
    docs = dict(re.findall(r"^\s+(\w+):[^\n]*\n\s+\"\"\"(.*?)\"\"\"", src, re.M))
    lines = [(cls.__doc__ or "").strip()]
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else None
        lines.append(f"  --{f.name.replace('_', '-'):16s} (default {default!r}) {docs.get(f.name, '')}".rstrip())
    return "\n".join(lines)
