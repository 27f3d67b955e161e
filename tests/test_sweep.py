"""The sweep runner (runs/sweep.py): N shards writing one folder, merged by `exolam report`, give exactly
the files of an unsharded run; bad --shard / --jobs values are one line."""

import pytest

from exolam.cli import main
from exolam.errors import ConfigError
from exolam.runs.rundir import RunDir
from exolam.runs.sweep import parse_shard

GRID = ["--quick", "--sigmas", "0.5", "1", "--objectives", "lam", "lam+xexo:1", "--seeds", "2", "--train.steps", "12",
        "--env.n-train", "256", "--env.n-test", "128", "--model.idm-channels", "8"]
LINEAR = ["--quick", "--p-switches", "0", "0.5", "--seeds", "2", "--train.steps", "40", "--env.n-traj", "64",
          "--env.n-test-traj", "32", "--eval-samples", "256"]


def _files(out, name):
    run = RunDir(out, name)
    return run.merged_csv.read_text(), run.summary_json.read_text()


@pytest.mark.parametrize("name,args,n", [("gridworld", GRID, 3), ("leakage", LINEAR, 2)])
def test_shards_merged_by_report_equal_an_unsharded_run(tmp_path, name, args, n):
    assert main(["reproduce", name, *args, "--out", str(tmp_path / "one"), "--jobs", "0"]) == 0
    for k in range(1, n + 1):  # N shards into one folder (here one after the other)
        assert main(["reproduce", name, *args, "--out", str(tmp_path / "many"), "--jobs", "0", "--shard", f"{k}/{n}"]) == 0
    shard_rows = [len(RunDir(tmp_path / "many", name).rows(f)) for f in RunDir(tmp_path / "many", name).shard_files()]
    assert len(shard_rows) == n and all(r > 0 for r in shard_rows)
    assert not RunDir(tmp_path / "many", name).merged_csv.exists()  # nothing merged before the report
    assert main(["report", "--out", str(tmp_path / "many")]) == 0
    assert _files(tmp_path / "many", name) == _files(tmp_path / "one", name)
    # a shard rerun has nothing left to do; a second report changes nothing
    assert main(["reproduce", name, *args, "--out", str(tmp_path / "many"), "--jobs", "0", "--shard", f"1/{n}"]) == 0
    assert main(["report", "--out", str(tmp_path / "many")]) == 0
    assert _files(tmp_path / "many", name) == _files(tmp_path / "one", name)


def test_a_partial_sweep_is_reported_as_partial(tmp_path):
    out = str(tmp_path)
    assert main(["reproduce", "gridworld", *GRID, "--out", out, "--jobs", "0", "--shard", "1/3"]) == 0
    assert main(["report", "--out", out]) == 0
    text = (tmp_path / "report.md").read_text()
    assert "partial: 3 of 8 rows" in text


@pytest.mark.parametrize("flag,match", [(["--shard", "3/2"], "--shard = '3/2': K must be in 1..N"),
                                        (["--shard", "0/2"], "K must be in 1..N"),
                                        (["--shard", "a/b"], "--shard = 'a/b' must be K/N"),
                                        (["--jobs", "-1"], "--jobs = -1 must be an integer >= 0")])
def test_bad_shard_and_jobs_are_one_line(tmp_path, capsys, flag, match):
    assert main(["reproduce", "gridworld", *GRID, "--out", str(tmp_path / "x"), *flag]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


def test_parse_shard():
    assert parse_shard("2/5") == (2, 5)
    with pytest.raises(ConfigError):
        parse_shard("1/0")


def test_a_sweep_resumes_on_another_device_but_not_under_another_config(tmp_path):
    cfg = {"device": "cpu", "seeds": 3, "train": {"steps": 16000, "devices": 1, "save_every": 1000}}
    run = RunDir(tmp_path, "gridworld").open(cfg)
    RunDir(tmp_path, "gridworld").check({**cfg, "device": "cuda", "train": {**cfg["train"], "devices": 4}})
    with pytest.raises(ConfigError, match="different config.json"):
        run.check({**cfg, "train": {**cfg["train"], "steps": 600}})


def test_staged_npz_round_trip_and_a_damaged_file_is_one_line(tmp_path):
    import numpy as np

    from exolam.runs.files import load_npz, save_npz

    path = tmp_path / "ep.npz"
    save_npz(path, {"a": np.arange(6.0).reshape(3, 2), "task": "push"})
    back = load_npz(path, ["a", "task"], "stage it again")
    assert np.array_equal(back["a"], np.arange(6.0).reshape(3, 2)) and str(back["task"]) == "push"
    assert [p.name for p in tmp_path.iterdir()] == ["ep.npz"]  # no temporary left
    path.write_bytes(path.read_bytes()[:40])  # truncated, as a kill outside the atomic write leaves it
    with pytest.raises(ConfigError, match="ep.npz: cannot be read .*rerun to stage it again"):
        load_npz(path, ["a"], "stage it again")


def test_a_run_folder_recorded_before_a_key_rename_resumes(tmp_path):
    """config.json recorded with a model config's old key (`frame`, now `image_size`) is the same run."""
    from exolam.runs.rundir import RunDir

    run = RunDir(tmp_path, "gridworld")
    run.open({"model": {"frame": 4, "d_z": 32}, "seeds": 3})
    run.check({"model": {"image_size": 4, "d_z": 32}, "seeds": 3})  # no ConfigError: the same run
    assert run.config()["model"] == {"image_size": 4, "d_z": 32}
    with pytest.raises(ConfigError, match="different config.json"):
        run.check({"model": {"image_size": 6, "d_z": 32}, "seeds": 3})
