"""One way to declare a command: a typed config dataclass, checked by us, helped by tyro.

Every `exolam` command is a dataclass with a docstring per field (a command that reuses a config
subclasses or nests it, so a setting has one spelling everywhere: `--train.lr`). From that one
class come both the accepted flags (`config_flags`, read here) and the `--help` text (tyro's).

Why not leave the parsing to tyro: tyro reports a bad flag in a multi-line box, and it accepts
inputs that the CLI contract refuses (docs/design.md, "Commands and files"): an empty sweep list, a
flag given twice (the last silently wins), a field the experiment sets itself (the flag would be
ignored). So every token is looked up, counted and cast here, a bad one ends in one ConfigError line
that names the flag and the value, and the config is built from the checked values (`parse`).

Spellings accepted: tyro's (`--env.p-switch 0.5`, switches `--with-optimum` / `--no-with-optimum`),
the same with underscores (`--env.p_switch`), and `--flag=value`. A field marked
`tyro.conf.Positional` is read from the leading arguments; `tyro.conf.UseAppendAction` makes a tuple
flag repeatable (`--encoder A --encoder B`); `T | None` reads as T (None: the documented default).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import sys
import types
import typing

import tyro

from exolam.errors import ConfigError

POSITIONAL = typing.get_args(tyro.conf.Positional[str])[1]
APPEND = typing.get_args(tyro.conf.UseAppendAction[str])[1]
FOLDERS = ("out", "data", "checkpoint")  # flags naming a folder: '' is refused


@dataclasses.dataclass(frozen=True)
class Flag:
    """One accepted option: the field it sets and the type its values are read as."""

    path: str  # dotted python field path ("env.p_switch"), or an option of the CLI itself ("out")
    kind: object  # the field's annotation: int, float, str, bool, Literal[...], tuple[T, ...], tuple[T1, T2]
    negated: bool = False  # the `--no-x` spelling of a bool switch
    repeat: bool = False  # a tuple flag that may be given again, adding its values (`--encoder A --encoder B`)
    positional: bool = False  # read from the leading arguments, named in upper case (SRC)

    @property
    def name(self) -> str:
        """tyro's spelling: hyphens for underscores, `--env.no-x` for a negated switch."""
        if self.positional:
            return self.path.upper()
        head, _, last = self.path.rpartition(".")
        spelled = (f"{head}." if head else "") + ("no-" if self.negated else "") + last
        return "--" + spelled.replace("_", "-")


@dataclasses.dataclass(frozen=True)
class Given:
    """A flag as the user gave it, with its values cast."""

    flag: Flag
    typed: str  # the flag as typed, without `=value`
    raw: tuple[str, ...]  # its values as typed
    value: object


def config_flags(cls, prefix: str = "") -> dict[str, Flag]:
    """Every flag of the Config dataclass `cls`, by tyro spelling; nested dataclasses give `--env.x`.

    A field of a type not handled here is a programming error (TypeError), found by the tests that
    build every experiment's table, rather than a flag passed on unchecked.
    """
    table = {}
    for f in dataclasses.fields(cls):
        kind, marks = _annotation(cls, f.name)
        path = prefix + f.name
        if POSITIONAL in marks:
            continue
        if dataclasses.is_dataclass(kind):
            table.update(config_flags(kind, path + "."))
            continue
        if not _supported(kind) or (kind is bool and _optional(cls, f.name)):  # `bool | None`: tyro wants a value
            raise TypeError(f"{cls.__name__}.{f.name}: type {kind} has no command-line check (cli/flags.py)")
        for negated in (False, True) if kind is bool else (False,):
            flag = Flag(path, kind, negated, repeat=APPEND in marks)
            table[flag.name] = flag
    return table


def _annotation(cls, name: str) -> tuple[object, tuple]:
    """The type a field's flag reads (`T | None` -> T) and its tyro markers (Positional, UseAppendAction)."""
    return _unwrap(typing.get_type_hints(cls, include_extras=True)[name])


def _optional(cls, name: str) -> bool:
    kind = typing.get_type_hints(cls)[name]
    return typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in typing.get_args(kind)


def _unwrap(kind, marks: tuple = ()) -> tuple[object, tuple]:
    if typing.get_origin(kind) is typing.Annotated:
        return _unwrap(typing.get_args(kind)[0], marks + kind.__metadata__)
    inner = [t for t in typing.get_args(kind) if t is not type(None)]
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and len(inner) == 1:
        return _unwrap(inner[0], marks)
    return kind, marks


def positionals(cls) -> list[Flag]:
    """The fields read from the leading arguments, in order."""
    return [Flag(f.name, kind, positional=True) for f in dataclasses.fields(cls)
            for kind, marks in [_annotation(cls, f.name)] if POSITIONAL in marks]


def required(cls) -> list[str]:
    """Fields without a default (not positional): flags the command cannot run without."""
    return [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING and POSITIONAL not in _annotation(cls, f.name)[1]]


def _supported(kind) -> bool:
    if kind in (int, float, str, bool) or typing.get_origin(kind) is typing.Literal:
        return True
    items = [t for t in typing.get_args(kind) if t is not Ellipsis]
    return typing.get_origin(kind) is tuple and bool(items) and all(t is not bool and _supported(t) for t in items)


def check(args: list[str], table: dict[str, Flag], where: str, usage: str, *,
          set_by: dict[str, str] | None = None, elsewhere: dict[str, str] | None = None) -> dict[str, Given]:
    """Read `args` against `table`; return {field path: Given}, or raise ConfigError on the first bad token.

    `where` names the target in messages ("leakage"), `usage` the command ("exolam reproduce leakage").
    `set_by` (field path -> hint): fields the experiment sets itself, refused with the hint.
    `elsewhere` (spelling -> message): flags known to another command, refused with that message.
    """
    set_by, elsewhere = set_by or {}, elsewhere or {}
    given: dict[str, Given] = {}
    i = 0
    while i < len(args):
        if not args[i].startswith("--"):
            raise ConfigError(f"unexpected argument {args[i]!r} for {where} (options start with --; "
                              f"see {usage} --help)")
        typed, eq, inline = args[i].partition("=")
        j = i + 1
        while j < len(args) and not args[j].startswith("--"):
            j += 1
        raw = tuple([inline] if eq else []) + tuple(args[i + 1 : j])
        i = j
        spelling = typed.replace("_", "-")
        if spelling not in table:
            raise ConfigError(elsewhere.get(spelling) or f"unknown option {typed!r} for {where} (see {usage} --help)")
        flag = table[spelling]
        if flag.path in set_by:
            raise ConfigError(f"{typed}: {set_by[flag.path]}")
        if flag.path in given:
            first = given[flag.path]
            if not flag.repeat:
                raise ConfigError(f"{flag.name} given twice: {' '.join((first.typed,) + first.raw)!r} and "
                                  f"{' '.join((typed,) + raw)!r}")
            typed, raw = first.typed, first.raw + raw  # a repeatable flag adds its values
        given[flag.path] = Given(flag, typed, raw, _value(flag, raw))
    return given


def _value(flag: Flag, raw: tuple[str, ...]):
    kind, got = flag.kind, f"got {len(raw)}: {' '.join(raw)!r}"
    if kind is bool:
        if raw:
            raise ConfigError(f"{flag.name} takes no value (got {' '.join(raw)!r}); it is a switch")
        return not flag.negated
    if typing.get_origin(kind) is tuple:
        items = typing.get_args(kind)
        if items[-1] is Ellipsis:
            if not raw:
                raise ConfigError(f"{flag.name} needs at least one value")
            return tuple(_cast(flag, items[0], v) for v in raw)
        if len(raw) != len(items):
            raise ConfigError(f"{flag.name} needs exactly {len(items)} values ({got})")
        return tuple(_cast(flag, t, v) for t, v in zip(items, raw))
    if not raw:
        raise ConfigError(f"{flag.name} needs a value")
    if len(raw) > 1:
        raise ConfigError(f"{flag.name} takes one value ({got})")
    return _cast(flag, kind, raw[0])


def _cast(flag: Flag, kind, raw: str):
    if kind is str:
        return raw
    if kind in (int, float):
        try:
            return kind(raw)
        except ValueError:
            raise ConfigError(f"{flag.name} = {raw!r} must be {'an integer' if kind is int else 'a number'}") from None
    choices = typing.get_args(kind)  # Literal
    for c in choices:
        if str(c) == raw:
            return c
    raise ConfigError(f"{flag.name} = {raw!r} must be one of: {', '.join(map(str, choices))}")


def apply(cfg, given: dict[str, Given]):
    """`cfg` with every config flag of `given` set (dotted paths into nested dataclasses), without tyro."""
    for g in given.values():
        cfg = _set(cfg, g.flag.path.split("."), g.value)
    return cfg


def _set(obj, path: list[str], value):
    head, rest = path[0], path[1:]
    return dataclasses.replace(obj, **{head: _set(getattr(obj, head), rest, value) if rest else value})


def parse(cls, args: list[str], prog: str, *, default=None, where: str | None = None,
          set_by: dict[str, str] | None = None, elsewhere: dict[str, str] | None = None,
          drop: dict[str, str] | None = None):
    """The config of command `prog` from its arguments, or None after printing `--help` (tyro's).

    Positional fields take the leading arguments, the rest go through `check`; a field without a
    default is required. `default`: the instance whose values unset flags keep (else `cls`'s defaults).
    """
    if "-h" in args or "--help" in args:
        show_help(cls, prog)
        return None
    args, values = list(args), {}
    for flag in positionals(cls):
        if not args or args[0].startswith("--"):
            raise ConfigError(f"{prog}: {flag.name} is missing (see {prog} --help)")
        values[flag.path] = _cast(flag, flag.kind, args.pop(0))
    drop = drop or {}
    table = {s: f for s, f in config_flags(cls).items() if s not in drop}
    given = check(args, table, where or prog.removeprefix("exolam "), prog, set_by=set_by,
                  elsewhere={**(elsewhere or {}), **drop})
    for path, g in given.items():
        if g.value == "" and path in FOLDERS:
            raise ConfigError(f"{g.flag.name} = '' must name a folder")
    for name in required(cls):
        if name not in given:
            raise ConfigError(f"--{name.replace('_', '-')} is required (see {prog} --help)")
        values[name] = given.pop(name).value
    if default is None:
        return apply(cls(**values), given)
    return apply(dataclasses.replace(default, **values), given)


def show_help(cls, prog: str) -> None:
    """tyro's help of `cls`: every flag with its field docstring, its default or "(required)"."""
    text = io.StringIO()
    with contextlib.suppress(SystemExit), contextlib.redirect_stdout(text):
        tyro.cli(cls, args=["--help"], prog=prog)
    sys.stdout.write(text.getvalue())


def project(cfg, cls):
    """The `cls` part of a command's config (a command class that subclasses `cls` adds its own flags)."""
    return cls(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(cls)})
