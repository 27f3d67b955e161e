"""The augmented paired view (data/augment.py) and its use by `exolam train` (X-exo) and `exolam diagnose`."""

import json

import numpy as np
import pytest
import torch

from exolam.cli.diagnose import model_command
from exolam.cli.own import train_command
from exolam.data.augment import PairedAugment
from exolam.data.lerobot_write import write_dataset
from exolam.data.windows import WindowDataset
from exolam.errors import ConfigError
from exolam.models import checkpoint

IMG = "observation.image"
TINY = "--image-size 16 --train.batch-size 4 --idm-channels 4 4 --fdm-channels 4 4 --train.precision 32 --train.steps 2"


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    """Action-free video without a paired view: 2 episodes x 6 frames of a drifting 16 px texture."""
    g = np.random.default_rng(0)
    base = g.integers(0, 256, (3, 24, 24), dtype=np.uint8)
    eps = [{IMG: np.stack([np.roll(base, (e + t, t), axis=(1, 2))[:, :16, :16].transpose(1, 2, 0) for t in range(6)])}
           for e in range(2)]
    return write_dataset(tmp_path_factory.mktemp("video") / "d", eps, {IMG: {"dtype": "video", "shape": [16, 16, 3]}},
                         10, codec="h264")


def test_parse_and_refusals():
    assert PairedAugment.parse("augment") == PairedAugment()
    a = PairedAugment.parse(" augment:shift=0, color=0.5,switch=1 ", seed=3)
    assert (a.color, a.shift, a.switch, a.seed) == (0.5, 0, 1.0, 3)
    assert PairedAugment.parse(a.spec()) == PairedAugment(0.5, 0, 1.0)
    for spec, match in [("crop", "the one kind is 'augment'"), ("augment:blur=1", "'blur=1' is not color=X"),
                        ("augment:color=x", "color = 'x' is not a number"), ("augment:shift=1.5", "is not a number"),
                        ("augment:color=2", "color"), ("augment:switch=-0.1", "switch"),
                        ("augment:shift=-1", "shift = -1 must be an integer >= 0"),
                        ("augment:color=0,shift=0", "a copy of the data"), ("augment:color=0.1,color=0.2", "twice")]:
        with pytest.raises(ConfigError, match=match) as e:
            PairedAugment.parse(spec)
        assert "\n" not in str(e.value)


def test_colour_and_shift_are_exact():
    aug = PairedAugment(color=0.5, shift=2)
    frame = torch.zeros(3, 8, 8)
    frame[:, 3, 4] = 0.5
    gain, offset = torch.tensor([1.2, 1.0, 0.8]), torch.tensor([0.1, 0.0, -0.1])
    out = aug.apply(frame, (gain, offset, 0, 0))
    assert torch.allclose(out, (frame * gain[:, None, None] + offset[:, None, None]).clamp(0, 1))
    moved = aug.apply(frame, (torch.ones(3), torch.zeros(3), 1, -2))  # content moves right 1, up 2
    assert moved[:, 1, 5].tolist() == [0.5] * 3 and float(moved.sum()) == pytest.approx(1.5)
    edge = torch.arange(8.0).repeat(8, 1)[None] / 8  # replicated edges: no wrap-around
    assert aug.apply(edge, (torch.ones(1), torch.zeros(1), 2, 0))[0, 0, :3].tolist() == [0.0, 0.0, 0.0]


def test_views_are_a_function_of_seed_episode_and_t():
    o, o_next = torch.rand(3, 8, 8), torch.rand(3, 8, 8)
    aug = PairedAugment(color=0.3, shift=1, seed=0)
    a1, a2 = aug.views(1, 4, o, o_next), aug.views(1, 4, o, o_next)
    assert torch.equal(a1[0], a2[0]) and torch.equal(a1[1], a2[1])
    assert not torch.equal(aug.views(1, 5, o, o_next)[0], a1[0])
    assert not torch.equal(PairedAugment(color=0.3, shift=1, seed=1).views(1, 4, o, o_next)[0], a1[0])
    # switch = 0: the next frame keeps xi~ (same frame in, same frame out); switch = 1: a fresh xi~'
    keep = [PairedAugment(0.3, 1, switch=0.0).views(0, t, o, o) for t in range(20)]
    assert all(torch.equal(x, y) for x, y in keep)
    fresh = [PairedAugment(0.3, 1, switch=1.0).views(0, t, o, o) for t in range(20)]
    assert sum(not torch.equal(x, y) for x, y in fresh) >= 19
    half = [PairedAugment(0.3, 1, switch=0.5).views(0, t, o, o) for t in range(400)]
    assert 0.4 < sum(not torch.equal(x, y) for x, y in half) / 400 < 0.6


def test_windows_carry_the_augmented_view(video):
    aug = PairedAugment(color=0.3, shift=1)
    wd = WindowDataset(video, {"o": IMG}, frame_gap=2, paired_view=aug)
    item = wd[5]
    ep, t = wd.window(5)
    assert item["o_alt"].shape == item["o"].shape and not torch.equal(item["o_alt"], item["o"])
    assert torch.equal(item["o_alt"], aug.views(ep, t, item["o"], item["o_next"])[0])
    assert 0 <= float(item["o_next_alt"].min()) and float(item["o_next_alt"].max()) <= 1
    with pytest.raises(ConfigError, match="either from the dataset .* not both"):
        WindowDataset(video, {"o": IMG, "o_alt": IMG}, paired_view=aug)


def test_xexo_trains_and_diagnoses_on_video_without_a_paired_view(video, tmp_path, capsys):
    with pytest.raises(ConfigError, match="make one with --paired-view augment"):
        train_command(f"--data {video} --out {tmp_path / 'x'} {TINY} --objective lam+xexo:1".split())
    with pytest.raises(ConfigError, match="--paired-view applies only with xexo"):
        train_command(f"--data {video} --out {tmp_path / 'x'} {TINY} --paired-view augment".split())
    with pytest.raises(ConfigError, match="'noise=1' is not color=X"):
        train_command(f"--data {video} --out {tmp_path / 'x'} {TINY} --objective lam+xexo:1 "
                      "--paired-view augment:noise=1".split())
    assert not (tmp_path / "x").exists()
    run = tmp_path / "run"
    assert train_command(f"--data {video} --out {run} {TINY} --objective lam+xexo:1 "
                         "--paired-view augment:color=0.3,shift=1".split()) == 0
    meta = checkpoint.read_config(run / "checkpoint")
    assert meta["spec"]["data"]["paired_view"] == "augment:color=0.3,shift=1,switch=0.5"
    assert meta["data"]["paired_view"] == "augment:color=0.3,shift=1,switch=0.5"
    # the same command resumes (finds it finished); another paired view is another run
    assert train_command(f"--data {video} --out {run} {TINY} --objective lam+xexo:1 "
                         "--paired-view augment:color=0.3,shift=1".split()) == 0
    with pytest.raises(ConfigError, match="holds a run with another config"):
        train_command(f"--data {video} --out {run} {TINY} --objective lam+xexo:1 --paired-view augment".split())

    plain = tmp_path / "plain"
    assert model_command(["--checkpoint", str(run), "--data", str(video), "--out", str(plain)]) == 0
    res = json.loads((plain / "diagnose.json").read_text())
    assert res["paired"]["measured"] is False and "--paired-view augment" in res["paired"]["reason"]
    out = tmp_path / "aug"
    assert model_command(["--checkpoint", str(run), "--data", str(video), "--out", str(out),
                             "--paired-view", "augment:color=0.3,shift=1"]) == 0
    res = json.loads((out / "diagnose.json").read_text())
    assert res["paired_view"] == "augment:color=0.3,shift=1,switch=0.5" and res["paired"]["measured"] is True
    assert res["paired"]["identical_views"] == 0 and "swap_gap_swap" in res["paired"]
    assert "drawn by augmentation" in (out / "report.md").read_text()
    with pytest.raises(ConfigError, match="the one kind is 'augment'"):
        model_command(["--checkpoint", str(run), "--data", str(video), "--out", str(tmp_path / "bad"),
                          "--paired-view", "flip"])
    assert not (tmp_path / "bad").exists()


def test_target_and_encoder_diagnoses_take_the_augmented_view(video, tmp_path):
    from exolam.cli.diagnose import encoder_command, target_command

    with pytest.raises(ConfigError, match="make one with --paired-view augment"):
        target_command(["--target", "next-frame", "--data", str(video), "--out", str(tmp_path / "t0")])
    # a pure colour change (no shift, xi~ kept for the next frame) moves every pixel target
    out = tmp_path / "t"
    assert target_command(["--target", "next-frame", "frame-diff", "--data", str(video), "--out", str(out),
                                    "--paired-view", "augment:color=0.5,shift=0,switch=0"]) == 0
    res = json.loads((out / "target.json").read_text())
    assert res["data"]["alt"] == "augment:color=0.5,shift=0,switch=0"
    eta = {r["target"]: r["eta"]["relative"] for r in res["targets"]}
    assert eta["next-frame"] > 0.01 and eta["frame-diff"] > 0.01
    enc = tmp_path / "e"
    assert encoder_command(["--encoder", "pixels", "--data", str(video), "--out", str(enc),
                                     "--paired-view", "augment:color=0.3,shift=1"]) == 0
    row = json.loads((enc / "encoder.json").read_text())["encoders"][0]
    assert row["delta_h"]["mean"] > 0 and row["env_switch_freq"] is None


def test_numeric_cameras_are_refused(tmp_path):
    eps = [{"observation.grid": np.zeros((5, 1, 4, 4), dtype=np.float32)} for _ in range(2)]
    root = write_dataset(tmp_path / "grid", eps, {"observation.grid": {"dtype": "float32", "shape": [1, 4, 4]}}, 10)
    with pytest.raises(ConfigError, match="camera 'observation.grid' is a numeric feature"):
        WindowDataset(root, {"o": "observation.grid"}, paired_view=PairedAugment())
    with pytest.raises(ConfigError, match="camera 'observation.grid' is a numeric feature"):
        train_command(f"--data {root} --out {tmp_path / 'r'} --image-size 4 --model vq --objective lam+xexo:1 "
                      "--paired-view augment".split())
    assert not (tmp_path / "r").exists()
