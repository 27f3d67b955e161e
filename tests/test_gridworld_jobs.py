"""Grid-world VQ LAM jobs on the engine and the sweep runner (experiments/vqlam.py): determinism, resume,
checkpoints, bf16-mixed."""

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from exolam.envs.gridworld import GridWorldConfig, make_dataset
from exolam.errors import ConfigError
from exolam.experiments.vqlam import VQSweepConfig, make_job, run_job, run_jobs
from exolam.models.checkpoint import load_model
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.runs.rundir import RunDir
from exolam.train.engine import TrainConfig

torch.set_num_threads(1)

TINY = VQSweepConfig(env=GridWorldConfig(n_train=256, n_test=128),
                     model=VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8)),
                     train=TrainConfig(steps=25, batch_size=32, precision="32", save_every=10))


def _jobs(cfg=TINY):
    out = []
    for sigma, obj in ((1.0, "lam"), (1.0, "lam+xexo:1")):
        for seed in (0, 1):
            out.append(make_job(f"sigma={sigma:g}|objective={obj}", seed, obj, cfg, sigma, extra=(("sigma", sigma),)))
    return out


def _csv(run: RunDir) -> str:
    return run.results_csv.read_text()


def test_resume_after_interruption_matches_uninterrupted(tmp_path):
    jobs = _jobs()
    # uninterrupted, in one worker process (the pool path, 1 thread)
    full = RunDir(tmp_path / "a", "sweep").open({"x": 1})
    run_jobs(jobs, full, jobs_parallel=1, log=lambda *_: None)
    assert len(full.rows()) == 4
    # "killed" after two jobs, then rerun with the same job list, in this process
    part = RunDir(tmp_path / "b", "sweep").open({"x": 1})
    run_jobs(jobs[2:], part, jobs_parallel=0, log=lambda *_: None)  # finished out of job order
    assert _csv(part) != _csv(full)
    trained = []
    run_jobs(jobs, part, jobs_parallel=0, log=trained.append)
    assert any("2 rows already recorded" in m for m in trained)
    assert _csv(part) == _csv(full)
    # a kill between a checkpoint write and its row: drop a middle row, keep its checkpoint
    rows = part.rows()
    part.results_csv.unlink()
    part.append([rows[0], rows[2], rows[3]])
    ckpt = part.path / "checkpoints" / jobs[1].name
    stamp = (ckpt / "model.safetensors").stat().st_mtime_ns
    run_jobs(jobs, part, jobs_parallel=0, log=lambda *_: None)
    assert (ckpt / "model.safetensors").stat().st_mtime_ns == stamp  # evaluated from it, not retrained
    assert _csv(part) == _csv(full)
    # nothing left to do: the file is untouched
    before = _csv(part)
    run_jobs(jobs, part, jobs_parallel=0, log=lambda *_: None)
    assert _csv(part) == before
    assert not list(part.path.rglob(".*tmp*")) and not list(part.path.rglob(".*.old"))


def test_same_seed_same_numbers_other_seed_differs(tmp_path):
    job = _jobs()[0]
    [a] = run_job(job, "cpu", str(tmp_path / "c1"))
    [b] = run_job(job, "cpu", str(tmp_path / "c2"))
    assert a == b
    [c] = run_job(dataclasses.replace(job, seed=5, env=dataclasses.replace(job.env, seed=5)), "cpu", str(tmp_path / "c3"))
    assert c["loss_train"] != a["loss_train"]


def test_checkpoint_round_trip(tmp_path):
    """exolam.load rebuilds the VQLAM from its folder alone; it computes what the trained model computes."""
    import exolam

    job = _jobs()[1]
    run_job(job, "cpu", str(tmp_path))
    folder = tmp_path / job.name
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "training_state"]
    fresh = exolam.load(folder)
    meta = json.loads((folder / "config.json").read_text())
    assert isinstance(fresh, VQLAM) and meta["spec"]["seed"] == job.seed and meta["model"]["class"].endswith("VQLAM")
    assert meta["objective"] == job.objective and meta["data"]["kind"] == "tensors" and meta["step"] == 25
    again = load_model(folder)
    _, test = make_dataset(job.env)
    with torch.no_grad():
        a, b = again.idm(test.o, test.o_next), fresh.idm(test.o, test.o_next)
        assert torch.equal(a.z, b.z) and torch.equal(a.codes, b.codes)
        assert torch.equal(again.fdm(test.o, a.z), fresh.fdm(test.o, b.z))
    with pytest.raises(ConfigError, match="no such folder"):
        load_model(tmp_path / "missing")


def test_reuse_needs_the_exact_spec(tmp_path):
    jobs = _jobs()[:1]
    src = RunDir(tmp_path, "src").open({})
    run_jobs(jobs, src, jobs_parallel=0, log=lambda *_: None)
    other = [dataclasses.replace(jobs[0], train=dataclasses.replace(jobs[0].train, steps=26))]
    msgs = []
    dst = RunDir(tmp_path, "dst").open({})
    run_jobs(other, dst, jobs_parallel=0, reuse=[src.path / "checkpoints"], log=msgs.append)
    assert not any("can be evaluated from existing" in m for m in msgs)
    same = RunDir(tmp_path, "same").open({})
    run_jobs(jobs, same, jobs_parallel=0, reuse=[src.path / "checkpoints"], log=msgs.append)
    assert any("1 of 1 jobs can be evaluated from existing checkpoints" in m for m in msgs)
    assert same.results_csv.read_text() == src.results_csv.read_text()
    assert not (same.path / "checkpoints" / jobs[0].name).exists()  # evaluated in place, nothing retrained


def test_bf16_path_trains_and_differs_from_fp32(tmp_path):
    job = _jobs()[1]
    bf = dataclasses.replace(job, train=dataclasses.replace(job.train, precision="bf16-mixed", steps=6))
    job = dataclasses.replace(job, train=dataclasses.replace(job.train, steps=6))
    [r32] = run_job(job, "cpu", str(tmp_path / "a"))
    [r16] = run_job(bf, "cpu", str(tmp_path / "b"))
    assert r16["precision"] == "bf16-mixed"
    for k in ("loss_train", "consistency_post", "exo_mse", "control_mse", "probe_acc"):
        assert r16[k] == r16[k] and abs(r16[k]) < 1e6, k  # finite
    assert r16["loss_train"] != r32["loss_train"]  # autocast really ran


def test_bad_input_raises():
    with pytest.raises(ConfigError, match="train.precision"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ConfigError, match="train.grad_clip"):
        TrainConfig(grad_clip=0.0).validate()
    with pytest.raises(ConfigError, match="train.batch_size = 127 must be divisible"):
        TrainConfig(batch_size=127, devices=2).validate()
    with pytest.raises(ConfigError, match="env.sigma"):
        make_job("k", 0, "lam", TINY, 1.5)
    with pytest.raises(ConfigError, match="unknown term"):
        make_job("k", 0, "lam+nope", TINY, 0.5)
    job = _jobs()[0]
    with pytest.raises(ConfigError, match="twice"):
        run_jobs([job, job], RunDir("/nonexistent-never-created", "x"), jobs_parallel=0)
    assert not Path("/nonexistent-never-created").exists()


def test_q_prediction_trains_and_divergence_is_one_error(tmp_path):
    """robust-q (the controllable change, Eq. 10) is a grid-world target too; a diverged run names train.lr."""
    job = make_job("q", 0, "lam+robust-q:1", TINY, 1.0)
    [row] = run_job(job, "cpu", str(tmp_path / "q"))
    assert row["objective"] == "lam+robust-q:1" and row["loss_train"] == row["loss_train"]
    bad = dataclasses.replace(job, train=dataclasses.replace(job.train, lr=1e30))
    with pytest.raises(ConfigError, match="train.lr"):
        run_job(bad, "cpu", str(tmp_path / "bad"))


def test_fields_an_experiment_sets_are_refused_in_python_too():
    from exolam.experiments import gridworld, xexo_sweep

    gridworld.quick_config().validate()
    xexo_sweep.quick_config().validate()
    cfg = gridworld.quick_config()
    cfg.env = dataclasses.replace(cfg.env, sigma=0.3)
    with pytest.raises(ConfigError, match="env.sigma = 0.3 is not used: gridworld sweeps sigma"):
        cfg.validate()
    cfg = xexo_sweep.quick_config()
    cfg.train = dataclasses.replace(cfg.train, steps=5)
    with pytest.raises(ConfigError, match="use --budgets"):
        cfg.validate()


def test_auto_precision_resolves_per_device_and_is_recorded():
    from exolam.train.engine import native_bf16_cpu, resolve_precision

    assert resolve_precision("32", "cpu") == "32" and resolve_precision("bf16-mixed", "cpu") == "bf16-mixed"
    assert resolve_precision("auto", "cuda") == "32"
    assert resolve_precision("auto", "cpu") == ("bf16-mixed" if native_bf16_cpu() else "32")
    cfg = dataclasses.replace(TINY, train=dataclasses.replace(TINY.train, precision="auto"))
    assert make_job("k", 0, "lam", cfg, 0.5).train.precision == resolve_precision("auto", "cpu")


def test_a_job_on_two_processes_matches_one(tmp_path):
    """--train.devices 2: one grid-world model trained by 2 gloo DDP processes on the same global batch."""
    job = make_job("k", 0, "lam", TINY, 1.0)
    two = dataclasses.replace(job, train=dataclasses.replace(job.train, devices=2))
    [r1] = run_job(job, "cpu", str(tmp_path / "one"))
    [r2] = run_job(two, "cpu", str(tmp_path / "two"))
    for k in ("loss_train", "loss_lam_test", "exo_mse", "control_mse"):
        assert r1[k] == pytest.approx(r2[k], rel=1e-4, abs=1e-6), k
