"""`exolam reproduce` and `exolam report`: the paper's experiments (docs/design.md, "Commands and files").

    exolam reproduce <experiment> [--quick | --preset NAME] [--seeds N] [--out DIR] [--device cpu|cuda]
                                  [--jobs J] [--shard K/N] [--field.sub value ...]
    exolam report [--out DIR]

<experiment> is leakage | sensitivity | auxiliary | gridworld | swap | xexo-sweep | control, or a group:
linear (the three linear figures) | all. A single experiment's command is its Config plus `Options`
(one dataclass, `command`): any config field is a flag (`--env.p-switch 0.5`) except the fields it
sets itself (its Config.SET_BY, refused with the flag to use instead); a group accepts only the
common flags (COMMON) and the options.

--jobs J runs the sweep's tasks in J worker processes (1 torch thread each; 0 = in this process).
--shard K/N runs only the K-th of N slices of the sweep's rows (a SLURM array, several hosts on a
shared folder); each shard writes its own file and `exolam report` merges them into results.csv,
summary.json and the figure, exactly as an unsharded run writes them (runs/sweep.py).

Bad input ends in one line naming the flag or file and the value, exit code 2, and nothing written:
the flags are checked (cli/flags.py), then every config is validated and every run folder checked
(RunDir.check) before the first experiment of the command starts.
"""

from __future__ import annotations

import dataclasses
import time
import typing

import tyro

from exolam.cli.flags import config_flags, parse, project
from exolam.errors import ConfigError

COMMON = {"seeds": "seeds per row", "device": "cpu or cuda",  # config fields a group passes on to each
          "solver": "linear experiments: sgd or closed-form"}  # experiment that has them


@dataclasses.dataclass
class Options:
    """Run an experiment of the paper (or a group: linear, all) and print its claims."""

    quick: bool = False
    """the quick preset: the paper's qualitative result in seconds to a minute, instead of the paper's budget"""
    preset: str | None = None
    """a named preset of the experiment (its PRESETS); --quick is --preset quick"""
    out: str = "runs"
    """folder that holds one run folder per experiment"""
    jobs: int | None = None
    """worker processes for the sweep's tasks, 1 torch thread each; 0: this process; None: the experiment's"""
    shard: str | None = None
    """K/N: run only the K-th of N slices of the sweep's rows; `exolam report` merges the shards"""


@dataclasses.dataclass
class Report:
    """Merge sharded runs and write the report of every finished experiment (report.md)."""

    out: str = "runs"
    """folder of the run folders, as given to `exolam reproduce --out`"""


def command(name: str, mod) -> type:
    """`exolam reproduce NAME`'s one dataclass: the command's Options and the experiment's Config."""
    cls = dataclasses.make_dataclass(f"reproduce_{name}", [], bases=(mod.Config, Options))
    cls.__doc__ = (mod.__doc__ or name).strip().split("\n\n")[0]
    return cls


def group_command(names: list[str], mods: dict) -> type:
    """`exolam reproduce GROUP`'s dataclass: the Options and the COMMON fields of its experiments."""
    fields = []
    for field, doc in COMMON.items():
        kinds = [typing.get_type_hints(mods[n].Config)[field] for n in names
                 if field in {f.name for f in dataclasses.fields(mods[n].Config)}]
        if kinds:  # the first one casts for all: tests/test_cli_errors.py checks that their types agree
            help_ = tyro.conf.arg(help=f"{doc} (default: each experiment's own)")
            fields.append((field, typing.Annotated[kinds[0] | None, help_], dataclasses.field(default=None)))
    cls = dataclasses.make_dataclass("reproduce_group", fields, bases=(Options,))
    cls.__doc__ = f"Run {', '.join(names)}, each as `exolam reproduce <experiment>` runs it."
    return cls


def _options(cfg) -> Options:
    from exolam.runs.sweep import check_jobs, parse_shard

    opts = project(cfg, Options)
    if opts.preset is not None and opts.quick and opts.preset != "quick":
        raise ConfigError(f"--quick and --preset {opts.preset} contradict each other; give one")
    return dataclasses.replace(opts, quick=opts.quick or opts.preset == "quick",
                               jobs=None if opts.jobs is None else check_jobs(opts.jobs),
                               shard=None if opts.shard is None else parse_shard(opts.shard))


def _single(name: str, mod, args: list[str]):
    """The config of one experiment: flags checked against its Config and SET_BY, preset applied."""
    cls, prog = command(name, mod), f"exolam reproduce {name}"
    set_by = getattr(mod.Config, "SET_BY", {})
    given = parse(cls, args, prog, where=name, set_by=set_by)
    if given is None:
        return None, None
    opts = _options(given)
    presets = getattr(mod, "PRESETS", {"quick": mod.quick_config})
    if opts.preset is not None and opts.preset not in presets:
        raise ConfigError(f"--preset = {opts.preset!r}: {name} has presets {', '.join(presets)} (default: the paper's)")
    if opts.quick or opts.preset:  # the preset's values, then the flags again on top of them
        preset = presets[opts.preset or "quick"]()
        given = parse(cls, args, prog, where=name, set_by=set_by,
                      default=cls(**{f.name: getattr(preset, f.name) for f in dataclasses.fields(mod.Config)}))
    return [(name, mod, project(given, mod.Config))], opts


def _group(target: str, names: list[str], mods: dict, args: list[str]):
    """Configs of a group: the common flags, cast like a single experiment's, go to those that have them."""
    cls = group_command(names, mods)
    common = [f for f in COMMON if f in {g.name for g in dataclasses.fields(cls)}]
    options = config_flags(cls)
    single_only = {s: f"{s} applies to a single experiment only, not to the group '{target}' (common flags: "
                      f"{', '.join(options)})" for n in names for s in config_flags(mods[n].Config)}
    set_by = {p: h for n in names for p, h in getattr(mods[n].Config, "SET_BY", {}).items()}
    given = parse(cls, args, f"exolam reproduce {target}", where=f"the group '{target}'", set_by=set_by,
                  elsewhere=single_only)
    if given is None:
        return None, None
    opts = _options(given)
    if opts.preset not in (None, "quick"):
        raise ConfigError(f"--preset {opts.preset} applies to a single experiment, not to the group '{target}'")
    values = {f: getattr(given, f) for f in common if getattr(given, f) is not None}
    configs = []
    for n in names:
        cfg = mods[n].quick_config() if opts.quick else mods[n].Config()
        mine = {f: v for f, v in values.items() if f in {g.name for g in dataclasses.fields(cfg)}}
        configs.append((n, mods[n], dataclasses.replace(cfg, **mine)))
    for f in values:
        have = [n for n in names if f in {g.name for g in dataclasses.fields(mods[n].Config)}]
        if len(have) < len(names):
            rest = [n for n in names if n not in have]
            print(f"--{f} applies to {', '.join(have)} only (not {', '.join(rest)})")
    return configs, opts


def reproduce(argv: list[str]) -> int:
    from exolam.experiments.registry import GROUPS, available, expand
    from exolam.runs.files import to_jsonable
    from exolam.runs.rundir import RunDir

    if argv and argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n", 2)[1].strip("\n"))
        print("\n" + __doc__.split("\n\n", 2)[2].split("\n\n")[0])
        print(f"\nexperiments: {', '.join(available())}; groups: {', '.join(GROUPS)}, all; "
              "each one's flags: exolam reproduce <experiment> --help")
        return 0
    if not argv or argv[0].startswith("-"):
        raise ConfigError("reproduce needs an experiment name (exolam reproduce <experiment> ...)")
    target, args = argv[0], list(argv[1:])
    mods = available()
    if target not in mods and target not in GROUPS and target != "all":
        raise ConfigError(f"experiment: unknown name '{target}' (allowed: {', '.join(list(mods) + list(GROUPS) + ['all'])})")
    names = expand(target)
    if len(names) == 1:
        configs, opts = _single(target, mods[target], args)
    else:
        configs, opts = _group(target, names, mods, args)
    if configs is None:  # --help
        return 0
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

    cfg = parse(Report, argv, "exolam report")
    if cfg is not None:
        print(f"wrote {write_report(cfg.out)}")
    return 0
