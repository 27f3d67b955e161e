"""Command-line flags, checked by us before tyro parses them.

Why not leave it to tyro: tyro reports a bad flag in a multi-line box, and it accepts inputs that
the CLI contract refuses (docs/design.md, "Commands and files"): an empty sweep list, a flag given twice
(the last silently wins), a field the experiment sets itself (the flag would be ignored). So the
accepted flags are derived here from the Config dataclass, the same source tyro reads; every token
is looked up, counted and cast, and a bad one ends in one ConfigError line that names the flag and
the value. tyro then parses only arguments it accepts, re-spelled the way it spells them, and stays
the parser of record and the author of `--help`.

Spellings accepted: tyro's (`--env.p-switch 0.5`, switches `--with-optimum` / `--no-with-optimum`),
the same with underscores (`--env.p_switch`), and `--flag=value`.
"""

from __future__ import annotations

import dataclasses
import typing

from exolam.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Flag:
    """One accepted option: the field it sets and the type its values are read as."""

    path: str  # dotted python field path ("env.p_switch"), or an option of the CLI itself ("out")
    kind: object  # the field's annotation: int, float, str, bool, Literal[...], tuple[T, ...], tuple[T1, T2]
    negated: bool = False  # the `--no-x` spelling of a bool switch
    config: bool = True  # False: an option of the CLI itself, never handed to tyro
    repeat: bool = False  # a tuple flag that may be given again, adding its values (`--encoder A --encoder B`)

    @property
    def name(self) -> str:
        """tyro's spelling: hyphens for underscores, `--env.no-x` for a negated switch."""
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

    def tyro_args(self) -> list[str]:
        """The same setting in tyro's spelling (`--x=v` keeps a value such as -1 from reading as a flag)."""
        if self.flag.kind is bool:
            return [self.flag.name]
        if typing.get_origin(self.flag.kind) is tuple:
            return [self.flag.name, *self.raw]
        return [f"{self.flag.name}={self.raw[0]}"]


def config_flags(cls, prefix: str = "") -> dict[str, Flag]:
    """Every flag of the Config dataclass `cls`, by tyro spelling; nested dataclasses give `--env.x`.

    A field of a type not handled here is a programming error (TypeError), found by the tests that
    build every experiment's table, rather than a flag passed on unchecked.
    """
    table = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        kind, path = hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(kind):
            table.update(config_flags(kind, path + "."))
            continue
        if not _supported(kind):
            raise TypeError(f"{cls.__name__}.{f.name}: type {kind} has no command-line check (cliargs.py)")
        for negated in (False, True) if kind is bool else (False,):
            flag = Flag(path, kind, negated)
            table[flag.name] = flag
    return table


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
        if g.flag.config:
            cfg = _set(cfg, g.flag.path.split("."), g.value)
    return cfg


def _set(obj, path: list[str], value):
    head, rest = path[0], path[1:]
    return dataclasses.replace(obj, **{head: _set(getattr(obj, head), rest, value) if rest else value})
