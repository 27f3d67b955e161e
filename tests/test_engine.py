"""The training engine (train/engine.py) and checkpoint folders (models/checkpoint.py): exact resume after
kill -9, 2-process DDP = 1 process, hooks and metrics, exolam.load, incompatible checkpoints."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import exolam
from exolam.data.sampling import TensorSource
from exolam.envs.gridworld import GridWorldConfig, make_dataset
from exolam.errors import ConfigError
from exolam.models import checkpoint
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.objectives import Objective
from exolam.train import engine

torch.set_num_threads(1)
MODEL = VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8))
ENV = GridWorldConfig(n_train=256, n_test=64, sigma=1.0)


def train(out: Path, steps: int, devices: int = 1, save_every: int = 10, objective: str = "lam+robust-action:1",
          hooks=(), sleep: float = 0.0) -> engine.FitResult:
    """One small grid-world run through the engine (also the body of the subprocesses below)."""
    cfg = engine.TrainConfig(steps=steps, batch_size=32, precision="32", devices=devices, save_every=save_every,
                             log_every=5)
    fabric = engine.make_fabric(cfg, "cpu")
    if devices > 1:
        return engine.launch(fabric, _fit, out, cfg, objective, hooks, sleep)
    return _fit(fabric, out, cfg, objective, hooks, sleep)


def _fit(fabric, out, cfg, objective, hooks, sleep):
    torch.set_num_threads(1)
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / f"rank{fabric.global_rank}-of-{fabric.world_size}").touch()
    torch.manual_seed(0)
    model, obj = VQLAM(MODEL), Objective(objective, MODEL.d_z, {"action": 4})
    data, _ = make_dataset(ENV)
    source = TensorSource(data, 0, cfg.steps, cfg.batch_size, device=fabric.device)
    slow = [lambda step, m: time.sleep(sleep)] if sleep else []
    return engine.fit(fabric, model, obj, source, cfg, spec={"test": objective}, ckpt=Path(out) / "ckpt",
                      metrics=Path(out) / "metrics.jsonl", hooks=list(hooks) + slow)


def _weights(out: Path) -> dict:
    return load_file(out / "ckpt" / "model.safetensors")


def test_kill_9_then_resume_is_bit_identical(tmp_path):
    full = tmp_path / "full"
    train(full, 40)
    part = tmp_path / "part"
    code = (f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); import test_engine as t; "
            f"from pathlib import Path; t.train(Path({str(part)!r}), 40, sleep=0.05)")
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a mid-run checkpoint, then kill without warning
        try:
            if json.loads((part / "ckpt" / "config.json").read_text())["step"] >= 20:
                break
        except (OSError, ValueError):  # not written yet, or caught between the folder's two renames
            pass
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step = json.loads((part / "ckpt" / "config.json").read_text())["step"]
    assert 20 <= step < 40, "the run was not interrupted mid-way"
    result = train(part, 40)
    assert result.start == step
    assert sorted(p.name for p in part.iterdir()) == ["ckpt", "metrics.jsonl", "rank0-of-1"]  # no debris
    a, b = _weights(full), _weights(part)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    heads = [load_file(p / "ckpt" / "training_state" / "objective.safetensors") for p in (full, part)]
    assert all(torch.equal(heads[0][k], heads[1][k]) for k in heads[0])
    lines = [json.loads(x) for x in (part / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == list(range(5, 41, 5))  # no line twice after the resume
    assert (part / "metrics.jsonl").read_text() == (full / "metrics.jsonl").read_text()


def test_two_processes_on_the_same_global_batch_match_one(tmp_path):
    """gloo DDP: each rank takes half the global batch; averaged gradients (and the VQ codebook's EMA
    statistics, all-reduced by the library) reproduce the 1-process update."""
    train(tmp_path / "one", 6, objective="lam")
    train(tmp_path / "two", 6, devices=2, objective="lam")
    a, b = _weights(tmp_path / "one"), _weights(tmp_path / "two")
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-5, rtol=1e-4), k
    assert sorted(p.name for p in (tmp_path / "two").glob("rank*")) == ["rank0-of-2", "rank1-of-2"]


def test_hooks_metrics_and_load(tmp_path):
    seen = []
    train(tmp_path, 12, hooks=[lambda step, model: seen.append((step, type(model).__name__))])
    assert seen == [(k, "VQLAM") for k in range(1, 13)]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 10] and {"loss", "lam", "robust-action", "bottleneck"} <= set(lines[0])
    model = exolam.load(tmp_path / "ckpt")
    assert isinstance(model, VQLAM) and model.cfg == MODEL and not model.training
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["step"] == meta["steps"] == 12 and meta["objective"] == "lam+robust-action:1"
    assert meta["target_dims"] == {"action": 4} and meta["train"]["lr"] == 3e-4 and "loss_train" in meta


def test_incompatible_checkpoints_are_one_line(tmp_path):
    train(tmp_path, 10)
    ck = tmp_path / "ckpt"
    with pytest.raises(ConfigError, match="written by another run"):  # resume under another spec
        cfg = engine.TrainConfig(steps=20, batch_size=32, precision="32")
        model, obj = VQLAM(MODEL), Objective("lam+robust-action:1", MODEL.d_z, {"action": 4})
        data, _ = make_dataset(ENV)
        engine.fit(engine.make_fabric(cfg), model, obj, TensorSource(data, 0, 20, 32), cfg, spec={"other": 1}, ckpt=ck)
    meta = json.loads((ck / "config.json").read_text())
    meta["model"]["config"]["d_z"] = 4
    (ck / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"model.safetensors does not fit the VQLAM .*shape"):
        exolam.load(ck)
    meta["model"]["class"] = "os.system"
    (ck / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="outside exolam"):
        exolam.load(ck)
    (ck / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: unreadable"):
        exolam.load(ck)
    (ck / "config.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(ConfigError, match="not an exolam checkpoint"):
        exolam.load(ck)
    (ck / "model.safetensors").write_bytes(b"\x00" * 10)
    (ck / "config.json").write_text(json.dumps({**meta, "model": json.loads(json.dumps(meta["model"]))}))
    with pytest.raises(ConfigError, match="checkpoint"):
        exolam.load(ck)


def test_a_replacement_killed_between_renames_keeps_the_old_folder(tmp_path):
    train(tmp_path, 10)
    ck = tmp_path / "ckpt"
    os.replace(ck, checkpoint._aside(ck))  # as if killed after moving the old folder aside
    assert isinstance(exolam.load(ck), VQLAM) and ck.is_dir()


def test_torchrun_trains_a_sweep_with_ranks_and_rank_0_records(tmp_path):
    """Under torchrun (2 ranks, gloo) the sweep's jobs train as DDP and rank 0 alone writes the rows,
    which match those of Fabric's own 2-process launch."""
    args = ["reproduce", "gridworld", "--quick", "--sigmas", "1", "--objectives", "lam", "--seeds", "2",
            "--train.steps", "12", "--env.n-train", "256", "--env.n-test", "64", "--model.idm-channels", "8",
            "--train.devices", "2", "--jobs", "0"]
    torchrun = Path(sys.executable).parent / "torchrun"
    exolam_cli = Path(sys.executable).parent / "exolam"
    done = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(exolam_cli), *args, "--out",
                           str(tmp_path / "tr")], env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    from exolam.cli import main

    assert main([*args, "--out", str(tmp_path / "spawn")]) == 0
    a, b = ((tmp_path / d / "gridworld" / "results.csv").read_text().splitlines() for d in ("tr", "spawn"))
    assert len(a) == 3 and [r.split(",")[:7] for r in a] == [r.split(",")[:7] for r in b]
    for ra, rb in zip(a[1:], b[1:]):
        for x, y in zip(ra.split(",")[7:], rb.split(",")[7:]):
            assert x == y or float(x) == pytest.approx(float(y), rel=1e-4, abs=1e-6)
