import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from exolam.cli import main

TINY = ["--env.n-traj", "40", "--env.n-test-traj", "10", "--train.steps", "40", "--eval-samples", "50", "--seeds", "2"]


def _run(args):
    return main(list(args))


def test_leakage_writes_its_files_and_resumes(tmp_path, capsys):
    args = ["reproduce", "leakage", "--out", str(tmp_path), "--p-switches", "0", "0.5", *TINY]
    assert _run(args) == 0
    d = tmp_path / "leakage"
    for f in ("config.json", "results.csv", "summary.json", "leakage.png"):
        assert (d / f).exists(), f
    rows = list(csv.DictReader(open(d / "results.csv")))
    assert len(rows) == 4 and {"probe_nmse", "leakage_var", "consistency_var", "seed", "config"} <= set(rows[0])
    summary = json.loads((d / "summary.json").read_text())
    assert [r["p_switch"] for r in summary["rows"]] == [0.0, 0.5]
    assert summary["rows"][0]["leakage_var"]["mean"] < 1e-9  # no switching, no leak
    before = (d / "results.csv").read_text()
    # interrupted sweep: drop the last row, rerun -> only it is recomputed, same numbers
    lines = before.splitlines(keepends=True)
    (d / "results.csv").write_text("".join(lines[:-1]))
    capsys.readouterr()
    assert _run(args) == 0
    assert "3 rows already recorded" in capsys.readouterr().out
    assert (d / "results.csv").read_text() == before
    assert _run(["report", "--out", str(tmp_path)]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "leakage/leakage.png" in text and "| Probe NMSE and leakage_var" in text


def test_a_different_config_never_overwrites(tmp_path, capsys):
    assert _run(["reproduce", "leakage", "--out", str(tmp_path), "--p-switches", "0", *TINY]) == 0
    assert _run(["reproduce", "leakage", "--out", str(tmp_path), "--p-switches", "0.5", *TINY]) == 2
    assert "different config" in capsys.readouterr().err


def test_closed_form_solver_and_objectives_without_one(tmp_path, capsys):
    args = ["reproduce", "auxiliary", "--out", str(tmp_path), "--solver", "closed-form", "--p-switches", "0.5",
            "--lambdas", "1", *TINY]
    assert _run(args) == 0
    out = capsys.readouterr().out
    assert "no closed form for lam+robust-action:1, lam+robust-q:1" in out
    rows = list(csv.DictReader(open(tmp_path / "auxiliary" / "results.csv")))
    assert sorted({r["objective"] for r in rows}) == ["lam", "lam+xexo:1"]
    assert {r["solver"] for r in rows} == {"closed-form"}


@pytest.mark.parametrize("args,field", [
    (["--p-switches", "1.5"], "p_switches[0] = 1.5"),
    (["--p-switches", "nan"], "p_switches[0] = nan"),
    (["--env.alpha", "-1"], "env.alpha"),
    (["--env.n-xi", "1"], "env.n_xi"),
    (["--train.d-z", "500"], "train.d_z"),
    (["--train.steps", "0"], "train.steps"),
    (["--env.d-o", "-4"], "env.d_o"),
    (["--env.alpha", "abc"], "--env.alpha = 'abc' must be a number"),
    (["--env.p-switch", "0.5"], "--env.p-switch: leakage sweeps p_switch: use --p-switches"),
    (["--bogus", "1"], "unknown option '--bogus' for leakage"),
])
def test_bad_input_is_one_line_exit_2_and_no_run_folder(tmp_path, capsys, args, field):
    assert _run(["reproduce", "leakage", "--quick", "--out", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and field in err, err
    assert not (tmp_path / "leakage").exists()


def test_unknown_experiment_and_objective(tmp_path, capsys):
    assert _run(["reproduce", "nope", "--out", str(tmp_path)]) == 2
    assert "experiment: unknown name 'nope'" in capsys.readouterr().err
    assert _run(["reproduce", "auxiliary", "--out", str(tmp_path), "--lambdas", "-1", *TINY]) == 2
    assert "lambdas[0] = -1.0" in capsys.readouterr().err
    assert _run(["reproduce", "auxiliary", "--out", str(tmp_path), "--terms", "robust-flow", *TINY]) == 2
    assert "terms: unknown objective 'robust-flow'" in capsys.readouterr().err
    assert not (tmp_path / "auxiliary").exists()


def test_console_script_exit_code_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "exolam.cli", "reproduce", "leakage", "--env.alpha", "-2",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert not Path(tmp_path, "leakage").exists()


def test_cuda_without_a_gpu_and_report_without_runs(tmp_path, capsys):
    import torch

    if not torch.cuda.is_available():
        assert _run(["reproduce", "leakage", "--device", "cuda", "--out", str(tmp_path), *TINY]) == 2
        assert "no CUDA device" in capsys.readouterr().err
    assert _run(["report", "--out", str(tmp_path)]) == 2
    assert "no experiment results" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()
