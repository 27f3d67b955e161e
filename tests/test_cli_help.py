"""`exolam --help` and every command's `--help`: one line per command, every flag described, required
flags shown as required (cli/flags.py: the command's dataclass is both the flag table and the help)."""

import contextlib
import dataclasses
import io
import re

import pytest

from exolam.cli import COMMANDS, main, resolve
from exolam.cli.flags import config_flags, parse, required, show_help
from exolam.cli.reproduce import command, group_command
from exolam.experiments.registry import GROUPS, available, expand

SKIP = ("(default:", "(required)", "(repeatable)", "(fixed to:")


def flag_help(cls) -> dict[str, str]:
    """{flag: its description in tyro's help, without the metavar and the default / required note}."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        show_help(cls, "exolam test")
    entries, current = {}, None
    for line in out.getvalue().splitlines():
        body = line.strip().strip("│").strip()
        if re.match(r"--[a-z]", body):
            names = re.match(r"((?:--[\w.-]+(?:, )?)+)", body).group(1)
            current = names.split(",")[0].strip()
            entries[current] = body[len(names):]
        elif current and body and not set(body) <= set("─-╰╯╭╮ "):
            entries[current] += " " + body
        else:
            current = None
    for flag, text in entries.items():
        text = re.sub(r"\((?:default|fixed to): [^)]*\)|\((?:required|repeatable)\)", " ", text)
        entries[flag] = " ".join(t for t in text.split() if not re.fullmatch(r"[A-Z_]+|\{.*\}\S*|\[.*\]", t))
    return entries


def command_classes():
    mods = available()
    classes = {name: resolve(cls) for name, (_, cls, _) in COMMANDS.items()}
    classes |= {f"reproduce {n}": command(n, m) for n, m in mods.items()}
    classes |= {f"reproduce {g}": group_command(expand(g), mods) for g in [*GROUPS, "all"]}
    return classes


@pytest.mark.parametrize("name,cls", command_classes().items())
def test_every_flag_has_a_description_and_required_ones_say_so(name, cls, monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # one column of groups (wider: side by side)
    described = flag_help(cls)
    for spelling, flag in config_flags(cls).items():
        if flag.negated:
            continue
        assert re.search(r"[a-z]{2}", described.get(spelling, "")), f"{name}: {spelling} has no description"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        show_help(cls, "exolam test")
    text = " ".join(out.getvalue().split())
    for field in required(cls):
        assert re.search(rf"--{field.replace('_', '-')} \S+ .*?\(required\)", text), (name, field)


def test_the_check_sees_a_field_without_a_description(monkeypatch):
    monkeypatch.setenv("COLUMNS", "100")  # one column of groups (wider: side by side)

    @dataclasses.dataclass
    class Half:
        """A command."""

        told: int = 1
        """has a docstring"""
        silent: int = 2

    assert flag_help(Half)["--told"] == "has a docstring" and flag_help(Half)["--silent"] == ""


def test_top_level_help_lists_every_command_with_its_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, (_, cls, line) in COMMANDS.items():
        assert f"exolam {name} " in out and line in out, name
        assert resolve(cls).__doc__.strip().splitlines()[0] == line, name  # one source: the command's docstring
    assert "control videos" in out


@pytest.mark.parametrize("args", [["train", "--help"], ["label", "-h"], ["import", "--help"], ["import", "mp4", "-h"],
                                  ["diagnose", "--help"], ["diagnose", "encoder", "--help"], ["control", "--help"],
                                  ["diagnose", "target", "-h"], ["control", "collect", "--help"], ["report", "-h"],
                                  ["reproduce", "--help"], ["reproduce", "gridworld", "--help"], ["reproduce", "all", "-h"]])
def test_help_exits_0_and_names_the_command(args, capsys):
    assert main(args) == 0
    assert f"exolam {args[0]}" in capsys.readouterr().out


def test_required_flags_are_refused_by_name(capsys):
    assert main(["train", "--data", "d"]) == 2
    assert "--out is required (see exolam train --help)" in capsys.readouterr().err


def test_our_parse_agrees_with_tyro():
    """The checked flags build the config tyro would build from the same arguments (one mechanism, two readers)."""
    import tyro

    from exolam.workflows.train_own import TrainOwnConfig

    args = ["--data", "d", "--out", "o", "--idm-channels", "8", "16", "--train.lr", "1e-3", "--model", "vq",
            "--train.precision", "32", "--camera", "observation.image"]
    assert parse(TrainOwnConfig, args, "exolam train") == tyro.cli(TrainOwnConfig, args=args)


def test_renamed_train_flags_say_their_new_name(capsys):
    assert main(["train", "--data", "d", "--out", "o", "--lr", "1e-3"]) == 2
    assert "--lr is now --train.lr" in capsys.readouterr().err
