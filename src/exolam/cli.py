"""`exolam` command line (docs/design.md, "Commands and files").

    exolam reproduce <experiment> [--quick] [--seeds N] [--out DIR] [--device cpu|cuda] [--jobs J] [--shard K/N]
                                  [--field.sub value ...]
    exolam report [--out DIR]
    exolam control train-expert | collect [...]    (App. D's expert and demonstrations: cli_control.py)
    exolam import mp4|npz|hdf5|lerobot-v21 SRC --out DST [...]    (own video into LeRobot v3: cli_import.py)
    exolam train --data D --out DIR [...] | label --checkpoint C --data D --out O    (own video: cli_own.py)
    exolam diagnose --checkpoint C --data D --out R | diagnose encoder --encoder SPEC --data D --out R
                    | diagnose target --target T [T ...] --data D --out R    (workflows/diagnose*.py)

--jobs J runs the sweep's tasks in J worker processes (1 torch thread each; 0 = in this process).
--shard K/N runs only the K-th of N slices of the sweep's rows (a SLURM array, several hosts on a
shared folder); each shard writes its own file and `exolam report` merges them into results.csv,
summary.json and the figure, exactly as an unsharded run writes them (runs/sweep.py).

<experiment> is leakage | sensitivity | auxiliary | gridworld | swap | xexo-sweep, or a group:
linear (the three linear figures) | all. A single experiment accepts any config field as a flag
(`--env.p-switch 0.5`, tyro style) except the fields it sets itself (its Config.SET_BY, refused
with the flag to use instead); a group accepts only the common flags (COMMON).

Bad input ends in one line naming the flag or file and the value, exit code 2, and nothing written:
the flags are checked (cliargs.py), then every config is validated and every run folder checked
(RunDir.check) before the first experiment of the command starts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import time

from exolam.cliargs import Flag, Given, check, config_flags
from exolam.errors import ConfigError

USAGE = "\n".join([
    "usage: exolam reproduce <experiment> [--quick | --preset NAME] [--seeds N] [--out DIR] [--device cpu|cuda] "
    "[--jobs J] [--shard K/N] [--solver sgd|closed-form] [--field value ...]",
    "       exolam report [--out DIR]",
    "       exolam control train-expert|collect [...]",
    "       exolam import mp4|npz|hdf5|lerobot-v21 SRC --out DST [...]",
    "       exolam train --data D --out DIR [...]",
    "       exolam label --checkpoint C --data D --out O",
    "       exolam diagnose --checkpoint C --data D --out R",
    "       exolam diagnose encoder --encoder SPEC [--encoder SPEC ...] --data D --out R",
    "       exolam diagnose target --target action|flow|frame-diff|next-frame [...] --data D --out R"])
COMMON = ("seeds", "device", "solver")  # config fields a group passes on to each experiment that has them
CLI_FLAGS = {"--quick": Flag("quick", bool, config=False), "--out": Flag("out", str, config=False),
             "--jobs": Flag("jobs", int, config=False), "--shard": Flag("shard", str, config=False),
             "--preset": Flag("preset", str, config=False)}


def _tyro_parse(cls, default, args: list[str], prog: str):
    """tyro.cli on arguments cliargs.check accepted; `--help` prints tyro's help and exits 0."""
    import tyro

    text = io.StringIO()
    try:
        with contextlib.redirect_stderr(text), contextlib.redirect_stdout(text):
            return tyro.cli(cls, default=default, args=args, prog=prog)
    except SystemExit as e:
        if e.code == 0:
            sys.stdout.write(text.getvalue())
            raise
        raise ConfigError(f"{prog}: tyro refused {' '.join(args)!r}, which passed our checks (a bug: please "
                          f"report it; see {prog} --help)") from None


@dataclasses.dataclass(frozen=True)
class Options:
    """The CLI's own flags (never part of a config: shards of one sweep share its config.json)."""

    quick: bool = False
    out: str = "runs"
    jobs: int | None = None  # None: the experiment's default (grid world: 2 on CPU; linear: 0)
    shard: tuple[int, int] | None = None
    preset: str | None = None  # a named preset of the experiment (its PRESETS); --quick = --preset quick


def _options(given: dict[str, Given]) -> Options:
    from exolam.runs.sweep import check_jobs, parse_shard

    out = given["out"].value if "out" in given else "runs"
    if not out:
        raise ConfigError("--out = '' must name a folder")
    preset = given["preset"].value if "preset" in given else None
    if preset is not None and "quick" in given and preset != "quick":
        raise ConfigError(f"--quick and --preset {preset} contradict each other; give one")
    return Options(quick="quick" in given or preset == "quick", preset=preset, out=out,
                   jobs=check_jobs(given["jobs"].value) if "jobs" in given else None,
                   shard=parse_shard(given["shard"].value) if "shard" in given else None)


def _single(name: str, mod, args: list[str]):
    """The config of one experiment: flags checked against its Config and SET_BY, then parsed by tyro."""
    usage = f"exolam reproduce {name}"
    given = check(args, {**CLI_FLAGS, **config_flags(mod.Config)}, name, usage, set_by=getattr(mod.Config, "SET_BY", {}))
    opts = _options(given)
    presets = getattr(mod, "PRESETS", {"quick": mod.quick_config})
    if opts.preset is not None and opts.preset not in presets:
        raise ConfigError(f"--preset = {opts.preset!r}: {name} has presets {', '.join(presets)} (default: the paper's)")
    default = presets[opts.preset or "quick"]() if opts.quick or opts.preset else mod.Config()
    tyro_args = [a for g in given.values() if g.flag.config for a in g.tyro_args()]
    return [(name, mod, _tyro_parse(mod.Config, default, tyro_args, usage))], opts


def _group(target: str, names: list[str], mods: dict, args: list[str]):
    """Configs of a group: the common flags, cast like a single experiment's, go to those that have them."""
    tables = {n: config_flags(mods[n].Config) for n in names}
    common = {}
    for spelling in (f"--{f}" for f in COMMON):
        flags = [t[spelling] for t in tables.values() if spelling in t]
        if flags:  # the first one casts for all: tests/test_cli_errors.py checks that their types agree
            common[spelling] = flags[0]
    single_only = {s: f"{s} applies to a single experiment only, not to the group '{target}' (common flags: "
                      f"{', '.join(list(CLI_FLAGS) + list(common))})" for t in tables.values() for s in t}
    set_by = {p: h for n in names for p, h in getattr(mods[n].Config, "SET_BY", {}).items()}
    given = check(args, {**CLI_FLAGS, **common}, f"the group '{target}'", f"exolam reproduce {target}",
                  set_by=set_by, elsewhere=single_only)
    opts = _options(given)
    if opts.preset not in (None, "quick"):
        raise ConfigError(f"--preset {opts.preset} applies to a single experiment, not to the group '{target}'")
    configs = []
    for n in names:
        cfg = mods[n].quick_config() if opts.quick else mods[n].Config()
        mine = {g.flag.path: g.value for g in given.values() if g.flag.config and g.flag.name in tables[n]}
        configs.append((n, mods[n], dataclasses.replace(cfg, **mine)))
    for g in given.values():
        have = [n for n in names if g.flag.name in tables[n]]
        if g.flag.config and len(have) < len(names):
            rest = [n for n in names if n not in have]
            print(f"{g.flag.name} applies to {', '.join(have)} only (not {', '.join(rest)})")
    return configs, opts


def reproduce(argv: list[str]) -> int:
    from exolam.experiments.registry import GROUPS, available, expand
    from exolam.runs.files import to_jsonable
    from exolam.runs.rundir import RunDir

    if not argv or argv[0].startswith("-"):
        raise ConfigError("reproduce needs an experiment name (exolam reproduce <experiment> ...)")
    target, args = argv[0], list(argv[1:])
    mods = available()
    if target not in mods and target not in GROUPS and target != "all":
        raise ConfigError(f"experiment: unknown name '{target}' (allowed: {', '.join(list(mods) + list(GROUPS) + ['all'])})")
    names = expand(target)
    if "-h" in args or "--help" in args:
        if len(names) == 1:
            with contextlib.suppress(SystemExit):  # tyro prints the help and exits 0
                _tyro_parse(mods[target].Config, mods[target].Config(), ["--help"], f"exolam reproduce {target}")
        else:
            print(f"usage: exolam reproduce {target} [--quick] [--out DIR] [--seeds N] [--device D] [--solver S] "
                  "[--jobs J] [--shard K/N]\n"
                  f"runs {', '.join(names)}; their other flags: exolam reproduce <experiment> --help")
        return 0
    if len(names) == 1:
        configs, opts = _single(target, mods[target], args)
    else:
        configs, opts = _group(target, names, mods, args)
    runs = [RunDir(opts.out, name, opts.shard) for name, _, _ in configs]
    for run, (_, _, cfg) in zip(runs, configs):  # everything is checked before the first run starts
        cfg.validate()
        run.check(to_jsonable(cfg))
    for run, (name, mod, cfg) in zip(runs, configs):
        t0 = time.time()
        shard = f" shard {opts.shard[0]}/{opts.shard[1]}" if opts.shard else ""
        with run.held():
            try:
                run.open(to_jsonable(cfg))
                print(f"[{name}] {opts.preset or ('quick' if opts.quick else 'full')} preset{shard} -> {run.path}",
                      flush=True)
                mod.run(cfg, run, opts.jobs)
            except BaseException:  # bad input found late, a crash or ^C: a folder with nothing recorded goes
                run.discard_if_empty()
                raise
        if opts.shard:
            print(f"[{name}]{shard} done in {time.time() - t0:.1f} s: {run.results_csv}; when every shard has "
                  f"run, `exolam report --out {opts.out}` merges them", flush=True)
            continue
        from exolam.experiments.report import finish

        summary = finish(name, mod, cfg, run)
        if summary is None:  # nothing recorded (every row skipped)
            continue
        print(f"[{name}] done in {time.time() - t0:.1f} s: {run.path / (name + '.png')}", flush=True)
        for c in mod.claims(summary):
            print(f"  [{c['holds']}] {c['claim']}: {c['ours']}")
    return 0


def report(argv: list[str]) -> int:
    from exolam.experiments.report import write_report

    if "-h" in argv or "--help" in argv:
        print("usage: exolam report [--out DIR]")
        return 0
    opts = _options(check(list(argv), {"--out": CLI_FLAGS["--out"]}, "report", "exolam report"))
    print(f"wrote {write_report(opts.out)}")
    return 0


def diagnose(argv: list[str]) -> int:
    """`exolam diagnose encoder ...` (choose an encoder: delta_h), `exolam diagnose target ...` (choose an
    L_xi-robust target: eta) or `exolam diagnose --checkpoint ...` (a LAM)."""
    if argv and argv[0] == "encoder":
        from exolam.workflows.diagnose_encoder import diagnose_encoder_command

        return diagnose_encoder_command(argv[1:])
    if argv and argv[0] == "target":
        from exolam.workflows.diagnose_target import diagnose_target_command

        return diagnose_target_command(argv[1:])
    from exolam.cli_diagnose import diagnose_command

    return diagnose_command(argv)


OUT_OF_MEMORY = ("can't allocate memory", "out of memory")  # torch's CPU allocator; CUDA's


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from exolam.cli_control import control
    from exolam.cli_import import import_command
    from exolam.cli_own import label_command, train_command

    commands = {"reproduce": reproduce, "report": report, "control": control, "train": train_command,
                "label": label_command, "import": import_command, "diagnose": diagnose}
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
            return 0 if argv else 2
        if argv[0] not in commands:
            raise ConfigError(f"command: unknown '{argv[0]}' (allowed: {', '.join(commands)})")
        return commands[argv[0]](argv[1:])
    except ConfigError as e:
        print(f"exolam: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("exolam: interrupted; rerun the same command to resume", file=sys.stderr)
        return 130
    except (MemoryError, RuntimeError) as e:  # an allocation the up-front checks did not foresee
        if not isinstance(e, MemoryError) and not any(s in str(e) for s in OUT_OF_MEMORY):
            raise
        what = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        print(f"exolam: error: out of memory ({what}); lower the image size, batch size or widths", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `exolam ... --help | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
