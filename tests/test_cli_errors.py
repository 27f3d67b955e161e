"""The catalogue of bad command lines: each ends in one stderr line naming the flag or file and the
value, exit code 2, and nothing written (no run folder, no rewritten file, no experiment started)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from exolam.cli import main
from exolam.cli.flags import Flag, check, config_flags
from exolam.cli.reproduce import COMMON, Options
from exolam.errors import ConfigError
from exolam.experiments.registry import GROUPS, available, expand

TINY = ["--env.n-traj", "40", "--env.n-test-traj", "10", "--train.steps", "40", "--eval-samples", "50", "--seeds", "2"]

CASES = [
    # flags of a single experiment
    (["reproduce", "leakage", "--bogus", "1"], "unknown option '--bogus' for leakage"),
    (["reproduce", "leakage", "stray"], "unexpected argument 'stray' for leakage"),
    (["reproduce", "leakage", "--train.steps"], "--train.steps needs a value"),
    (["reproduce", "leakage", "--train.steps", "40", "50"], "--train.steps takes one value (got 2: '40 50')"),
    (["reproduce", "leakage", "--env.n_traj", "4", "--env.n-traj=5"],
     "--env.n-traj given twice: '--env.n_traj 4' and '--env.n-traj 5'"),
    (["reproduce", "leakage", "--train.steps", "abc"], "--train.steps = 'abc' must be an integer"),
    (["reproduce", "leakage", "--train.steps=4.5"], "--train.steps = '4.5' must be an integer"),
    (["reproduce", "leakage", "--env.alpha", "abc"], "--env.alpha = 'abc' must be a number"),
    (["reproduce", "leakage", "--solver", "xyz"], "--solver = 'xyz' must be one of: sgd, closed-form"),
    (["reproduce", "leakage", "--p-switches"], "--p-switches needs at least one value"),
    (["reproduce", "leakage", "--p-switches", "0", "abc"], "--p-switches = 'abc' must be a number"),
    (["reproduce", "sensitivity", "--alphas"], "--alphas needs at least one value"),
    (["reproduce", "leakage", "--with-optimum", "false"], "--with-optimum takes no value (got 'false')"),
    (["reproduce", "leakage", "--with-optimum", "--no-with-optimum"], "given twice: '--with-optimum' and"),
    (["reproduce", "gridworld", "--train.precision", "fp16"], "--train.precision = 'fp16' must be one of: auto, 32, bf16-mixed"),
    (["reproduce", "gridworld", "--model.fdm-channels", "3", "4"],
     "--model.fdm-channels needs exactly 4 values (got 2: '3 4')"),
    (["reproduce", "leakage", "--out"], "--out needs a value"),
    (["reproduce", "leakage", "--out", ""], "--out = '' must name a folder"),
    (["reproduce", "leakage", "--quick=yes"], "--quick takes no value (got 'yes')"),
    # fields the experiment sets itself (SET_BY)
    (["reproduce", "leakage", "--env.p-switch", "0.5"], "--env.p-switch: leakage sweeps p_switch: use --p-switches"),
    (["reproduce", "leakage", "--env.p_switch=0.5"], "--env.p_switch: leakage sweeps p_switch: use --p-switches"),
    (["reproduce", "sensitivity", "--env.p-switch", "0.5"], "--env.p-switch: sensitivity sweeps p_switch"),
    (["reproduce", "auxiliary", "--env.p-switch", "0.5"], "--env.p-switch: auxiliary sweeps p_switch"),
    (["reproduce", "sensitivity", "--env.alpha", "1"], "--env.alpha: sensitivity sweeps alpha: use --alphas"),
    (["reproduce", "gridworld", "--env.sigma", "0.5"], "--env.sigma: gridworld sweeps sigma: use --sigmas"),
    (["reproduce", "gridworld", "--env.seed", "1"], "--env.seed: the dataset seed is the run seed: use --seeds"),
    (["reproduce", "swap", "--env.sigma", "0.5"], "--env.sigma: swap sweeps sigma"),
    (["reproduce", "xexo-sweep", "--train.steps", "5"], "--train.steps: xexo-sweep sets the updates per budget"),
    # groups: the common flags, cast the same way
    (["reproduce", "linear", "--solver", "xyz"], "--solver = 'xyz' must be one of: sgd, closed-form"),
    (["reproduce", "linear", "--seeds", "abc"], "--seeds = 'abc' must be an integer"),
    (["reproduce", "linear", "--seeds"], "--seeds needs a value"),
    (["reproduce", "linear", "--env.n-traj", "40"], "--env.n-traj applies to a single experiment only, not to the "
                                                    "group 'linear'"),
    (["reproduce", "linear", "--workers", "2"], "unknown option '--workers' for the group 'linear'"),
    (["reproduce", "gridworld", "--shard", "3/2"], "--shard = '3/2': K must be in 1..N"),
    (["reproduce", "linear", "--jobs", "x"], "--jobs"),
    (["reproduce", "all", "--seeds", "1", "--seeds", "2"], "--seeds given twice: '--seeds 1' and '--seeds 2'"),
    # values out of range, found by validate() before any run starts (more in test_cli.py)
    (["reproduce", "linear", "--seeds", "0"], "seeds = 0"),
    pytest.param(["reproduce", "leakage", "--device", "xyz"], "device = 'xyz'"),
    pytest.param(["reproduce", "linear", "--device", "xyz"], "device = 'xyz'"),
    pytest.param(["reproduce", "leakage", "--quick", "--p-switches", "1.5"], "p_switches[0] = 1.5"),
    pytest.param(["reproduce", "leakage", "--quick", "--p-switches", "0.5", "0.5"], "p_switches = (0.5, 0.5)"),
    pytest.param(["reproduce", "sensitivity", "--quick", "--alphas", "-1"], "alphas[0] = -1.0"),
    # other commands
    (["reproduce", "nope"], "experiment: unknown name 'nope'"),
    (["reproduce", "--quick"], "reproduce needs an experiment name"),
    (["report", "--bogus"], "unknown option '--bogus' for report"),
    (["report", "runs"], "unexpected argument 'runs' for report"),
]


def _fails(capsys, args, expected: str, where: Path) -> tuple[str, str]:
    """Run args; assert exit 2, one stderr line holding `expected`, no experiment started, `where` unchanged.

    Returns (stdout, stderr)."""
    before = sorted(p.relative_to(where) for p in where.rglob("*"))
    rc = main(list(args))
    out, err = capsys.readouterr()
    assert rc == 2, (out, err)
    assert err.startswith("exolam: error: ") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert "preset ->" not in out, out  # no experiment started
    assert sorted(p.relative_to(where) for p in where.rglob("*")) == before
    return out, err


@pytest.mark.parametrize("args,expected", CASES)
def test_bad_flag(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)  # the default --out is runs/, here under tmp_path
    _fails(capsys, args, expected, tmp_path)


def test_every_flag_table_is_sound():
    """Every experiment's flags build; SET_BY names real fields; group flags agree in type."""
    mods = available()
    for name, mod in mods.items():
        table = config_flags(mod.Config)
        assert not table.keys() & config_flags(Options).keys(), name
        paths = {f.path for f in table.values()}
        assert set(getattr(mod.Config, "SET_BY", {})) <= paths, name
    for group in [*GROUPS, "all"]:
        for field in COMMON:
            kinds = {repr(config_flags(mods[n].Config)[f"--{field}"].kind) for n in expand(group)
                     if f"--{field}" in config_flags(mods[n].Config)}
            assert len(kinds) <= 1, (group, field, kinds)


def test_a_repeatable_flag_adds_its_values_and_others_are_given_once():
    table = {"--encoder": Flag("encoder", tuple[str, ...], repeat=True), "--out": Flag("out", str)}
    given = check(["--encoder", "a", "b", "--out", "r", "--encoder=c"], table, "t", "exolam t")
    assert given["encoder"].value == ("a", "b", "c") and given["out"].value == "r"
    with pytest.raises(ConfigError, match="--out given twice"):
        check(["--out", "r", "--out", "s"], table, "t", "exolam t")


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    for out in ("afile", "afile/sub"):
        _, err = _fails(capsys, ["reproduce", "leakage", "--out", str(tmp_path / out)], "afile: is a file", tmp_path)
        assert "--out" in err
    assert (tmp_path / "afile").read_text() == "x"


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="needs Linux /proc")
def test_out_cannot_be_created(tmp_path, capsys):
    for target in ("leakage", "linear"):
        _, err = _fails(capsys, ["reproduce", target, "--quick", "--out", "/proc/exolam-test"],
                        "/proc/exolam-test/leakage: cannot create the run folder", tmp_path)
        assert "--out" in err
    assert not Path("/proc/exolam-test").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished tiny leakage run (spelled with underscores, `=` and a negated switch)."""
    out = tmp_path_factory.mktemp("finished")
    args = ["reproduce", "leakage", "--out", str(out), "--p-switches", "0", "0.5", "--env.n_traj=40",
            "--no-with-optimum", *TINY[2:]]
    assert main(args) == 0
    return out, args


def _copy(finished, tmp_path) -> tuple[Path, list[str]]:
    """The finished run copied to tmp_path/runs, and the command that resumes it there."""
    out, args = finished
    shutil.copytree(out, tmp_path / "runs")
    return tmp_path / "runs" / "leakage", [str(tmp_path / "runs") if a == str(out) else a for a in args]


def test_flags_take_effect_in_every_spelling(finished, tmp_path):
    d, _ = _copy(finished, tmp_path)
    cfg = json.loads((d / "config.json").read_text())
    assert cfg["env"]["n_traj"] == 40 and cfg["with_optimum"] is False and cfg["p_switches"] == [0.0, 0.5]


def _cut(text: str) -> str:  # the last row cut in the middle
    return text[: text.rindex("\n", 0, len(text) - 1) + 18]  # "p_switch=0.5,1,0.": 3 columns


DAMAGES = [  # {n}: the header's number of columns
    (_cut, "results.csv: line 5 is truncated (3 of {n} columns, no line end); remove the line or the folder to "
           "resume"),
    (lambda t: t[:-3], "results.csv: line 5 is truncated ({n} of {n} columns, no line end)"),
    (lambda t: _cut(t) + "\n", "results.csv: line 5 is truncated (3 of {n} columns); remove the line"),
    (lambda t: t.replace("\np_switch=0.5,1,", "\np_switch=0.5,x,"), "results.csv: line 5: seed = 'x' is not an integer"),
    (lambda t: t.replace("\np_switch=0.0,1,", "\np_switch=0.0,1,extra,"), "results.csv: line 3 has {n1} columns"),
    (lambda t: t.replace("\np_switch=0.5,1,", "\np_switch=0.5,0,"), "results.csv: line 5: repeats the config and seed"),
    (lambda t: t.replace("config,seed,", "cfg,seed,", 1), "results.csv: line 1 is not our header"),
    (lambda t: "", "results.csv: is empty"),
]


@pytest.mark.parametrize("damage,expected", DAMAGES)
def test_damaged_results_csv_on_rerun(finished, tmp_path, capsys, damage, expected):
    d, args = _copy(finished, tmp_path)
    text = (d / "results.csv").read_text()
    n = len(text.splitlines()[0].split(","))  # columns of the header
    (d / "results.csv").write_text(damage(text))
    _, err = _fails(capsys, args, expected.format(n=n, n1=n + 1), tmp_path)
    assert str(d / "results.csv") in err


@pytest.mark.parametrize("damage,expected", DAMAGES + [
    (lambda t: t.splitlines(keepends=True)[0], "no experiment results found"),  # the header alone: no row yet
])
def test_damaged_results_csv_on_report(finished, tmp_path, capsys, damage, expected):
    """`exolam report` reads results.csv as a rerun does: a damaged file is one line, never a traceback."""
    d, _ = _copy(finished, tmp_path)
    text = (d / "results.csv").read_text()
    n = len(text.splitlines()[0].split(","))
    (d / "results.csv").write_text(damage(text))
    _fails(capsys, ["report", "--out", str(tmp_path / "runs")], expected.format(n=n, n1=n + 1), tmp_path)


def test_damaged_config_json_on_rerun_and_report(finished, tmp_path, capsys):
    d, args = _copy(finished, tmp_path)
    (d / "config.json").write_text((d / "config.json").read_text()[:40])
    _fails(capsys, args, "leakage/config.json: is not valid JSON", tmp_path)
    _fails(capsys, ["report", "--out", str(tmp_path / "runs")], "leakage/config.json: is not valid JSON", tmp_path)


@pytest.mark.parametrize("summary", [lambda t: t[: len(t) // 2], lambda t: "[]", lambda t: json.dumps({"rows": []})])
def test_damaged_summary_json_is_rebuilt_by_report(finished, tmp_path, capsys, summary):
    """results.csv is the record: report rebuilds summary.json (and the figure) from it."""
    d, _ = _copy(finished, tmp_path)
    good = (d / "summary.json").read_text()
    (d / "summary.json").write_text(summary(good))
    assert main(["report", "--out", str(tmp_path / "runs")]) == 0
    assert (d / "summary.json").read_text() == good


def test_damaged_summary_json_is_rewritten_on_rerun(finished, tmp_path, capsys):
    d, args = _copy(finished, tmp_path)
    good = (d / "summary.json").read_text()
    (d / "summary.json").write_text(good[:30])
    assert main(args) == 0
    assert (d / "summary.json").read_text() == good


def test_group_checks_every_folder_before_the_first_run(tmp_path, monkeypatch, capsys):
    """A conflict in the 3rd experiment of `linear` stops the command before the 1st has written anything."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "auxiliary").mkdir(parents=True)
    (tmp_path / "runs" / "auxiliary" / "config.json").write_text('{"other": 1}\n')
    _fails(capsys, ["reproduce", "linear", "--quick"], "runs/auxiliary: holds a finished or partial run with a "
                                                       "different config.json", tmp_path)
    (tmp_path / "runs" / "auxiliary" / "config.json").unlink()
    (tmp_path / "runs" / "auxiliary" / "results.csv").write_text("config,seed\n")
    _fails(capsys, ["reproduce", "linear", "--quick"], "runs/auxiliary: holds results.csv but no config.json",
           tmp_path)
    assert sorted(os.listdir(tmp_path / "runs")) == ["auxiliary"]


def test_a_common_flag_some_experiments_lack_is_announced(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "xexo-sweep").mkdir(parents=True)  # a conflict stops it before any training
    (tmp_path / "runs" / "xexo-sweep" / "config.json").write_text("{}\n")
    out, _ = _fails(capsys, ["reproduce", "all", "--quick", "--solver", "closed-form"], "runs/xexo-sweep: holds",
                    tmp_path)
    assert "--solver applies to leakage, sensitivity, auxiliary only (not gridworld, swap, xexo-sweep, control)" in out


@pytest.mark.parametrize("args", [["reproduce", "leakage", "--help"], ["reproduce", "linear", "-h"], ["report", "-h"]])
def test_help_exits_0(capsys, args):
    assert main(args) == 0
    assert "usage: exolam" in capsys.readouterr().out



@pytest.mark.parametrize("late", [ConfigError("env.p_switch = 1.5 found late"), RuntimeError("crash"), KeyboardInterrupt()])
def test_a_run_that_records_nothing_leaves_no_folder(tmp_path, monkeypatch, capsys, late):
    """Bad input found inside run(), a crash or ^C before the first row: the folders made for it go."""
    def run(cfg, run_dir, log=print):
        raise late

    monkeypatch.setattr(available()["leakage"], "run", run)
    args = ["reproduce", "leakage", "--quick", "--out", str(tmp_path / "new" / "runs")]
    if isinstance(late, ConfigError):
        assert main(args) == 2 and "found late" in capsys.readouterr().err
    elif isinstance(late, KeyboardInterrupt):
        assert main(args) == 130
    else:
        with pytest.raises(RuntimeError):
            main(args)
    assert not any(tmp_path.iterdir())
