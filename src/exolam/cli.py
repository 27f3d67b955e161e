"""`exolam` command line (design.md, "Commands and files").

    exolam reproduce <experiment> [--quick] [--seeds N] [--out DIR] [--device cpu|cuda] [--field.sub value ...]
    exolam report [--out DIR]

<experiment> is leakage | sensitivity | auxiliary | gridworld | swap | xexo-sweep, or a group:
linear (the three linear figures) | all. A single experiment accepts any config field as a flag
(`--env.p-switch 0.5`, tyro style); a group accepts only the common flags. Bad input prints one
line naming the field and exits 2, leaving no run folder behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import sys
import time

USAGE = ("usage: exolam reproduce <experiment> [--quick] [--seeds N] [--out DIR] [--device cpu|cuda] "
         "[--solver sgd|closed-form] [--field value ...]\n       exolam report [--out DIR]")
COMMON = {"--seeds": int, "--device": str, "--solver": str}


class UsageError(Exception):
    pass


def _take(args: list[str], flag: str, default=None, has_value=True):
    """Remove `flag` (and its value) from args; return the value (or True for a switch)."""
    for i, a in enumerate(args):
        if a == flag or a.startswith(flag + "="):
            if not has_value:
                del args[i]
                return True
            if "=" in a:
                del args[i]
                return a.split("=", 1)[1]
            if i + 1 >= len(args):
                raise UsageError(f"{flag} needs a value")
            val = args[i + 1]
            del args[i : i + 2]
            return val
    return default


def _tyro_parse(cls, default, args: list[str], prog: str):
    """tyro.cli with its boxed error turned into one line."""
    import tyro

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(err):
            return tyro.cli(cls, default=default, args=args, prog=prog)
    except SystemExit as e:
        text = err.getvalue()
        if e.code == 0:  # --help
            sys.stdout.write(text)
            raise
        box = r"\s│╭╰╮╯─━┃|+\-"
        lines = [re.sub(f"^[{box}]+|[{box}]+$", "", ln) for ln in text.splitlines()]
        lines = [ln for ln in lines if ln]
        msg = next((ln for ln in lines if ":" in ln and ("rror" in ln or "nrecognized" in ln)), None)
        msg = msg or (lines[0] if lines else "invalid arguments")
        raise UsageError(msg) from None


def _config(mod, name: str, args: list[str], quick: bool, single: bool):
    default = mod.quick_config() if quick else mod.Config()
    if single:
        return _tyro_parse(mod.Config, default, args, f"exolam reproduce {name}")
    for flag, cast in COMMON.items():
        val = _take(args, flag)
        field = flag[2:]
        if val is not None and any(f.name == field for f in dataclasses.fields(default)):
            try:
                default = dataclasses.replace(default, **{field: cast(val)})
            except ValueError:
                raise UsageError(f"{flag} = {val!r} must be of type {cast.__name__}") from None
    return default


def reproduce(argv: list[str]) -> int:
    from exolam.experiments.registry import GROUPS, available, expand
    from exolam.experiments.plotting import close
    from exolam.runio import RunDir, to_jsonable
    from exolam.errors import ConfigError

    if not argv or argv[0].startswith("-"):
        raise UsageError("reproduce needs an experiment name")
    target, args = argv[0], list(argv[1:])
    mods = available()
    if target not in mods and target not in GROUPS and target != "all":
        raise UsageError(f"experiment: unknown name '{target}' (allowed: {', '.join(list(mods) + list(GROUPS) + ['all'])})")
    quick = bool(_take(args, "--quick", False, has_value=False))
    out = _take(args, "--out", "runs")
    names = expand(target)
    single = len(names) == 1
    configs = [(n, mods[n], _config(mods[n], n, list(args), quick, single)) for n in names]
    if not single:
        leftover = [a for a in args if a.startswith("--") and a.split("=")[0] not in COMMON]
        if leftover:
            raise UsageError(f"'{leftover[0]}' applies to a single experiment only, not to the group '{target}'")
    for _, _, cfg in configs:  # every config is checked before any run starts
        cfg.validate()
    for name, mod, cfg in configs:
        run = RunDir(out, name)
        t0 = time.time()
        try:
            run.open(to_jsonable(cfg))
            print(f"[{name}] {'quick' if quick else 'full'} preset -> {run.path}", flush=True)
            mod.run(cfg, run)
        except (ConfigError, KeyboardInterrupt):
            run.discard_if_empty()
            raise
        summary = json.loads((run.path / "summary.json").read_text())
        fig = mod.plot(summary)
        png = run.save_figure(fig)
        close(fig)
        print(f"[{name}] done in {time.time() - t0:.1f} s: {png}", flush=True)
        for c in mod.claims(summary):
            print(f"  [{c['holds']}] {c['claim']}: {c['ours']}")
    return 0


def report(argv: list[str]) -> int:
    from exolam.experiments.report import write_report

    args = list(argv)
    out = _take(args, "--out", "runs")
    if args:
        raise UsageError(f"report: unexpected argument '{args[0]}'")
    print(f"wrote {write_report(out)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from exolam.errors import ConfigError

    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {"reproduce": reproduce, "report": report}
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0 if argv else 2
        if argv[0] not in commands:
            raise UsageError(f"command: unknown '{argv[0]}' (allowed: {', '.join(commands)})")
        return commands[argv[0]](argv[1:])
    except (ConfigError, UsageError) as e:
        print(f"exolam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exolam: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
