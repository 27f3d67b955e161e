"""`exolam train`'s defaults chosen from the data (workflows/defaults.py, data/windows.frame_change), and a run
with them writing its guards (issue 23)."""

import json

import numpy as np
import pytest
import torch

from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.data.windows import frame_change
from exolam.workflows import defaults
from exolam.workflows.train_own import TrainOwnConfig

torch.set_num_threads(1)
GREY = "observation.grey"


@pytest.fixture(scope="module")
def ramp(tmp_path_factory):
    """2 episodes x 24 frames of uniform grey whose level is t / 100: RMS(I_{t+k} - I_t) = k / 100 exactly."""
    eps = [{GREY: np.full((24, 1, 4, 4), 0.0, np.float32) + (np.arange(24, dtype=np.float32) / 100)[:, None, None, None]}
           for _ in range(2)]
    feats = {GREY: {"dtype": "float32", "shape": [1, 4, 4], "names": ["channel", "height", "width"]}}
    return write_dataset(tmp_path_factory.mktemp("ramp") / "ramp", eps, feats, fps=10)


def test_frame_change_and_the_frame_gap_rule_on_a_known_ramp(ramp):
    change = frame_change(ramp, GREY, None)
    assert sorted(change) == list(range(1, 17))
    assert all(abs(change[k] - k / 100) < 1e-6 for k in change)
    gap, why = defaults.frame_gap(open_dataset(ramp), GREY, None)
    assert gap == 12 and "70%" in why  # the smallest k with k / 100 >= 0.7 * 16 / 100


def test_a_still_video_and_two_frame_episodes_keep_gap_1(tmp_path):
    still = [{GREY: np.full((20, 1, 4, 4), 0.5, np.float32)}]
    feats = {GREY: {"dtype": "float32", "shape": [1, 4, 4], "names": ["channel", "height", "width"]}}
    gap, why = defaults.frame_gap(open_dataset(write_dataset(tmp_path / "still", still, feats, fps=10)), GREY, None)
    assert (gap, "barely change" in why) == (1, True)
    pairs = [{GREY: np.stack([np.zeros((1, 4, 4)), np.ones((1, 4, 4))]).astype(np.float32)} for _ in range(3)]
    gap, why = defaults.frame_gap(open_dataset(write_dataset(tmp_path / "pairs", pairs, feats, fps=10)), GREY, None)
    assert (gap, why) == (1, "no episode is longer than 2 frames")


def test_resolve_fills_only_what_is_left_out(ramp):
    ds = open_dataset(ramp)
    cfg, why = defaults.resolve(TrainOwnConfig(data=str(ramp), out="o"), ds, GREY, (4, 4, 1), is_video=False)
    assert (cfg.image_size, cfg.frame_gap) == (4, 12) and len(why) == 2  # numeric frames keep their size
    assert (cfg.idm_channels, cfg.fdm_channels) == (defaults.IDM_CHANNELS, defaults.FDM_CHANNELS)
    assert cfg.train == defaults.OWN_TRAIN
    cfg, why = defaults.resolve(TrainOwnConfig(data="d", out="o", frame_gap=3), ds, GREY, (480, 640, 3), is_video=True)
    assert (cfg.image_size, cfg.frame_gap, len(why)) == (32, 3, 1) and why[0].startswith("image size 32")
    cfg, why = defaults.resolve(TrainOwnConfig(data="d", out="o", frame_gap=3, image_size=20, idm_channels=(8,)),
                                ds, GREY, (16, 16, 3), is_video=True)
    assert (cfg.image_size, cfg.idm_channels, why) == (20, (8,), [])


def test_training_with_the_defaults_writes_guards_and_records_the_choices(ramp, tmp_path, capsys):
    """Defaults everywhere but the update count: the guard metrics are written and the degenerate flag is
    computed (whether it learns is the benchmark's question, benchmarks/own_defaults.py)."""
    from exolam.cli import main

    assert main(["train", "--data", str(ramp), "--out", str(tmp_path / "r"), "--train.steps", "6",
                 "--guard-every", "3"]) == 0
    out = capsys.readouterr().out
    assert "chosen from the data" in out and "frame gap 12" in out and "image size 4" in out
    lines = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    guards = [x["guard"] for x in lines if "guard" in x]
    assert [x["step"] for x in lines if "guard" in x] == [3, 6]
    assert all({"fdm_ratio", "z_swap", "usage", "loss", "degenerate"} <= set(g) for g in guards)
    assert isinstance(guards[-1]["degenerate"], bool) and (tmp_path / "r" / "guards.png").is_file()
    resolved = json.loads((tmp_path / "r" / "train.json").read_text())
    assert (resolved["image_size"], resolved["frame_gap"]) == (4, 12)
    assert resolved["train"]["lr"] == defaults.OWN_TRAIN.lr and resolved["train"]["batch_size"] == 32
