"""`exolam train` / `exolam label` on own LeRobot video (workflows/train_own.py, workflows/label.py, cli/own.py)."""

import dataclasses
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from exolam.cli.own import label_command, train_command
from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.data.windows import WindowDataset
from exolam.errors import ConfigError
from exolam.models import checkpoint
from exolam.train.engine import TrainConfig
from exolam.workflows.label import label_dataset
from exolam.workflows.train_own import TrainOwnConfig, train_own
from exolam.train import engine

IMG = "observation.image"
TINY = "--image-size 32 --train.batch-size 8 --idm-channels 8 8 --fdm-channels 8 8 --train.precision 32 --train.log-every 1"
TINY_VQ = "--model vq --image-size 32 --frame-gap 1 --train.batch-size 8 --idm-channels 4 --fdm-channels 4 4 4 4 --d-z 4 --train.precision 32"


def tiny(data, out, extra=""):
    """`exolam train` flags of a tiny run; frame gap 1 unless `extra` sets one (the default is measured)."""
    gap = "" if "--frame-gap" in extra else "--frame-gap 1"
    return f"--data {data} --out {out} {TINY} {gap} {extra}".split()


def digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """3 episodes x 12 frames of distracted cheetah at 32 px, with paired views and actions."""
    pytest.importorskip("dm_control")
    from exolam.envs.control import ControlConfig
    from exolam.envs.control_collect import collect

    out = tmp_path_factory.mktemp("collect")
    return collect(ControlConfig(image_size=32), lambda s, g: g.uniform(-1, 1, 6), out, 3, 12, 0)


def free_copy(data, root, size=None, per_file=False):
    """An action-free copy of `data` (camera only), optionally resized, optionally one mp4 per episode."""
    ds = open_dataset(data)
    eps = []
    for e in range(len(ds.episode_lengths)):
        frames = ds.frames(IMG, e)
        if size is not None:
            x = torch.from_numpy(frames).permute(0, 3, 1, 2).float()
            frames = torch.nn.functional.interpolate(x, size=(size, size)).round().clamp(0, 255).byte()
            frames = frames.permute(0, 2, 3, 1).numpy()
        eps.append({IMG: frames})
    shape = list(eps[0][IMG].shape[1:])
    return write_dataset(root, eps, {IMG: {"dtype": "video", "shape": shape}}, int(ds.fps), codec="h264",
                         video_files_size_in_mb=1e-9 if per_file else 200)


@pytest.fixture(scope="module")
def free(data, tmp_path_factory):
    return free_copy(data, tmp_path_factory.mktemp("free") / "free")


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert train_command(tiny(data, out, "--train.steps 4 --train.save-every 2 --frame-gap 2")) == 0
    return out


# ------------------------------------------------------------------------------------------------ train

def test_train_writes_checkpoint_metrics_and_resolved_config(run, data):
    resolved = json.loads((run / "train.json").read_text())
    assert (resolved["camera"], resolved["image_size"], resolved["frame_gap"], resolved["channels"]) == (IMG, 32, 2, 3)
    assert resolved["d_z"] == 8 and resolved["model_class"] == "exolam.models.lapo.LapoLAM"
    assert resolved["data"] == str(Path(data).resolve())
    meta = checkpoint.read_config(run / "checkpoint")
    assert meta["step"] == 4 and meta["spec"]["input"] == {"camera": IMG, "image_size": 32, "channels": 3,
                                                           "stored_shape": [32, 32, 3], "frame_gap": 2}
    lines = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "guard" not in r] == [1, 2, 3, 4]
    guards = [r for r in lines if "guard" in r]  # the last update is always guarded
    assert [r["step"] for r in guards] == [4] and {"fdm_ratio", "z_swap", "usage", "loss"} <= set(guards[0]["guard"])
    assert meta["guard"]["step"] == 4 and (run / "guards.png").exists()
    lam = checkpoint.load_model(run / "checkpoint")
    assert lam.cfg.idm_channels == (8, 8) and lam.cfg.image_size == 32


def test_a_checkpoint_written_before_the_image_size_rename_loads_and_resumes(run, data, tmp_path, capsys):
    """Model configs said `frame` before they said `image_size` (README changelog): such a checkpoint still
    loads, and its run is found finished by the same command, not refused as another config."""
    old = tmp_path / "old"
    shutil.copytree(run, old)
    meta = json.loads((old / "checkpoint" / "config.json").read_text())
    for model in (meta["model"]["config"], meta["spec"]["model"]["config"]):  # the model config, its spec copy
        model["frame"] = model.pop("image_size")
    meta["spec"]["input"]["frame_shape"] = meta["spec"]["input"].pop("stored_shape")  # frames as stored
    (old / "checkpoint" / "config.json").write_text(json.dumps(meta))
    assert checkpoint.load_model(old).cfg.image_size == 32
    assert train_command(tiny(data, old, "--train.steps 4 --train.save-every 2 --frame-gap 2")) == 0
    assert "already finished" in capsys.readouterr().out


def test_resume_is_uninterrupted(data, free, tmp_path, monkeypatch):
    args = "--train.steps 4 --train.save-every 2 --objective lam+xexo:0.5+robust-action:1 --label-fraction 0.5"
    assert train_command(tiny(data, tmp_path / "a", args)) == 0
    save = engine.save

    class Killed(Exception):
        pass

    def save_then_die(fabric, ckpt, model, objective, opt, spec, cfg, source, step, *rest):
        save(fabric, ckpt, model, objective, opt, spec, cfg, source, step, *rest)
        if step == 2:
            raise Killed

    monkeypatch.setattr(engine, "save", save_then_die)
    with pytest.raises(Killed):
        train_command(tiny(data, tmp_path / "b", args))
    assert checkpoint.read_config(tmp_path / "b" / "checkpoint")["step"] == 2
    monkeypatch.setattr(engine, "save", save)
    assert train_command(tiny(data, tmp_path / "b", args)) == 0
    a, b = (load_file(tmp_path / r / "checkpoint" / "model.safetensors") for r in "ab")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert train_command(tiny(data, tmp_path / "b", args)) == 0  # finished: found, not retrained
    with pytest.raises(ConfigError, match="another config"):
        train_command(tiny(data, tmp_path / "b", "--train.steps 4 --train.save-every 2"))


# ------------------------------------------------------------------------------------------------ label

def test_label_aligns_z_with_frames_and_keeps_the_dataset(run, data, tmp_path):
    before = digest(data)
    out = tmp_path / "labelled"
    assert label_command(f"--checkpoint {run / 'checkpoint'} --data {data} --out {out} --batch-size 5".split()) == 0
    assert digest(data) == before  # D never written
    src, dst = open_dataset(data), open_dataset(out)
    assert set(dst.features) == set(src.features) | {"latent_action", "latent_action_is_valid"}
    assert all(dst.features[k] == v for k, v in src.features.items())
    assert dst.episode_lengths == src.episode_lengths
    for k in src.numeric_keys:
        for e in range(3):
            assert np.array_equal(src.column(k, e), dst.column(k, e))
    copied = digest(out)
    assert all(copied[f] == h for f, h in before.items() if f.startswith(("videos/", "meta/episodes/")))
    lam = checkpoint.load_model(run / "checkpoint")
    windows = WindowDataset(src, {"o": IMG}, frame_gap=2, image_size=32)
    for e, t in [(0, 0), (1, 5), (2, 9)]:
        item = windows[sum(n - 2 for n in src.episode_lengths[:e]) + t]
        with torch.no_grad():
            z = lam.encode(item["o"][None], item["o_next"][None])[0].numpy()
        np.testing.assert_allclose(dst.column("latent_action", e)[t], z, rtol=1e-5, atol=1e-5)
    for e, n in enumerate(src.episode_lengths):
        assert dst.column("latent_action_is_valid", e)[:, 0].tolist() == [True] * (n - 2) + [False, False]
        assert not dst.column("latent_action", e)[-2:].any()
    info = dst.features["latent_action"]
    assert info["shape"] == [8] and "zeros" in info["info"]["description"]
    # the same command again: the finished output is found; another existing folder is refused
    assert label_command(f"--checkpoint {run} --data {data} --out {out}".split()) == 0  # the run folder works too
    assert digest(out) == copied
    (tmp_path / "taken").mkdir()
    with pytest.raises(ConfigError, match="taken: already exists"):
        label_command(f"--checkpoint {run / 'checkpoint'} --data {data} --out {tmp_path / 'taken'}".split())
    with pytest.raises(ConfigError, match="already has a 'latent_action'"):
        label_dataset(run / "checkpoint", out, tmp_path / "again")


def test_vq_labels_carry_codes(free, tmp_path):
    assert train_command(f"--data {free} --out {tmp_path / 'vq'} --train.steps 2 {TINY_VQ}".split()) == 0
    out = label_dataset(tmp_path / "vq" / "checkpoint", free, tmp_path / "o", log=lambda m: None)
    ds = open_dataset(out)
    codes, valid = ds.column("latent_action_code", 0)[:, 0], ds.column("latent_action_is_valid", 0)[:, 0]
    assert codes[-1] == -1 and not valid[-1] and ((codes[:-1] >= 0) & (codes[:-1] < 5)).all()
    lam = checkpoint.load_model(tmp_path / "vq" / "checkpoint")
    np.testing.assert_allclose(ds.column("latent_action", 0)[:-1], lam.codebook[torch.from_numpy(codes[:-1].copy())].detach().numpy(),
                               atol=1e-6)


def test_vq_codebook_update_loss_is_recorded(free, tmp_path):
    """--codebook-update loss reaches the model: its checkpoint rebuilds a gradient-learned codebook."""
    assert train_command(f"--data {free} --out {tmp_path / 'vq'} --train.steps 2 --codebook-update loss {TINY_VQ}".split()) == 0
    lam = checkpoint.load_model(tmp_path / "vq" / "checkpoint")
    assert lam.cfg.codebook_update == "loss" and any(p.requires_grad for p in lam.vq.parameters())


def test_label_v21_copy_keeps_its_layout(data, tmp_path):
    from test_data_lerobot import (  # the hand-written v2.1 folder of the reader's tests
        CAM,
        write_v21,
    )

    write_v21(tmp_path / "v21")
    assert train_command(f"--data {tmp_path / 'v21'} --out {tmp_path / 'r'} --train.steps 2 --frame-gap 1 {TINY}".split()) == 0
    out = label_dataset(tmp_path / "r" / "checkpoint", tmp_path / "v21", tmp_path / "o", log=lambda m: None)
    ds = open_dataset(out)
    assert ds.version == "v2.1" and (out / "videos/chunk-000" / CAM / "episode_000001.mp4").is_file()
    assert ds.column("latent_action_is_valid", 1)[:, 0].tolist() == [True] * 3 + [False]
    (tmp_path / "v21/videos/chunk-000" / CAM / "episode_000001.mp4").unlink()
    with pytest.raises(ConfigError, match="episode_000001.mp4: missing"):
        train_command(f"--data {tmp_path / 'v21'} --out {tmp_path / 'r2'} --train.steps 2 --frame-gap 1 {TINY}".split())


# ------------------------------------------------------------------------------------------------ bad input

@pytest.mark.parametrize("extra, match", [
    ("--camera front", r"'front' is not a camera .* \(cameras: observation.image\)"),
    ("--objective lam+xexo:1", "needs paired views, but .* has no 'observation.image_alt'"),
    ("--objective lam+robust-action:1", "needs action labels, but .* has no 'action'"),
    ("--model vq --encoder ema", "--encoder applies to --model lapo only"),
    ("--model vq --encoder efficientnet-lite0", "--encoder applies to --model lapo only"),
    ("--codebook-update loss", "--codebook-update applies to --model vq only"),
    ("--model vq --codebook-update kmeans", "--codebook-update = 'kmeans' must be one of"),
    ("--encoder efficientnet-lite0:pooled", "gives one feature vector per frame; .* spatial feature map"),
    ("--encoder hf:/nonexistent/dino:cls", "gives one feature vector per frame"),
    ("--encoder hf:/nonexistent/dino", "encoder hf:/nonexistent/dino: .* not a folder holding config.json"),
    ("--encoder resnet", "'resnet' is not an encoder spec"),
    ("--encoder ema --proj-channels 8", "--proj-channels applies only with a frozen --encoder"),
    ("--train.steps 0", "--train.steps = 0 must be a positive integer"),
    ("--label-fraction 0.5", "--label-fraction = 0.5 applies only with robust-action"),
    ("--objective lam+robust-q:1", "robust-q needs the controllable change q"),
    ("--image-size 33 --model vq", "the vq LAM needs an even size"),
    ("--d-z 0", "--d-z = 0 must be a positive integer"),
    ("--train.precision 16", "--train.precision = '16' must be one of"),
    ("--train.steps 2 --train.steps 3", "given twice"),
])
def test_train_refuses_bad_input_in_one_line(free, tmp_path, extra, match):
    with pytest.raises(ConfigError, match=match) as e:
        train_command(f"--data {free} --out {tmp_path / 'r'} --train.steps 2 {extra}".split()
                      if "--train.steps" not in extra else f"--data {free} --out {tmp_path / 'r'} {extra}".split())
    assert "\n" not in str(e.value) and not (tmp_path / "r").exists()


def test_missing_video_file_is_named(data, tmp_path):
    root = free_copy(data, tmp_path / "split", per_file=True)
    files = sorted(root.glob("videos/**/*.mp4"))
    assert len(files) == 3  # one mp4 per episode
    for f in files[1:]:
        f.unlink()
    with pytest.raises(ConfigError, match=f"{files[1]}: "):
        train_command(tiny(root, tmp_path / "r", "--train.steps 2"))


def test_label_refuses_incompatible_checkpoints(run, data, tmp_path):
    small = free_copy(data, tmp_path / "small", size=16)
    with pytest.raises(ConfigError, match=r"trained on 32x32x3 \(HxWxC\) frames .* has 16x16x3 frames"):
        label_dataset(run / "checkpoint", small, tmp_path / "o")
    with pytest.raises(ConfigError, match="missing config.json"):
        label_dataset(data, data, tmp_path / "o")
    with pytest.raises(ConfigError, match="'front' is not a camera"):
        label_dataset(run / "checkpoint", data, tmp_path / "o", camera="front")
    with pytest.raises(ConfigError, match="lies inside --data"):
        label_dataset(run / "checkpoint", data, Path(data) / "labels")
    assert not (tmp_path / "o").exists() and not (Path(data) / "labels").exists()


def test_api_config_round_trip(free, tmp_path):
    cfg = TrainOwnConfig(data=str(free), out=str(tmp_path / "r"), image_size=32, idm_channels=(4,), fdm_channels=(4, 4),
                         encoder="ema", train=TrainConfig(steps=2, batch_size=4, precision="32"))
    ckpt = train_own(cfg, log=lambda m: None)
    lam = checkpoint.load_model(ckpt)
    assert lam.cfg.encoder == "ema" and json.loads((tmp_path / "r" / "train.json").read_text())["encoder"] == "ema"
    # its f_EMA reused as a frozen encoder (ema:CKPT): only the new LAM's projection, IDM and FDM are saved
    frozen = train_own(dataclasses.replace(cfg, out=str(tmp_path / "f"), encoder=f"ema:{ckpt}", proj_channels=2),
                       log=lambda m: None)
    lam2 = checkpoint.load_model(frozen)
    assert lam2.cfg.encoder == "frozen" and lam2.cfg.encoder_spec == f"ema:{ckpt}" and lam2.obs_shape == (16, 8, 8)
    assert not any(k.startswith(("f.", "f_ema.")) for k in load_file(frozen / "model.safetensors"))
    shutil.rmtree(tmp_path / "r")


def test_frozen_encoder_train_then_label(free, tmp_path):
    """`--encoder efficientnet-lite0`: the LAM trains on frozen ImageNet features; label rebuilds the encoder."""
    args = "--image-size 32 --frame-gap 1 --idm-channels 8 8 --fdm-channels 8 8 --train.precision 32 --train.steps 2 --train.batch-size 2"
    assert train_command(f"--data {free} --out {tmp_path / 'r'} {args} --encoder efficientnet-lite0 "
                         "--proj-channels 4".split()) == 0
    ckpt = tmp_path / "r" / "checkpoint"
    weights = load_file(ckpt / "model.safetensors")
    assert all(k.split(".")[0] in ("proj", "idm_net", "fdm_net") for k in weights)  # no encoder weights saved
    assert (ckpt / "model.safetensors").stat().st_size < 2_000_000  # EfficientNet-Lite0 alone is ~19 MB
    resolved = json.loads((tmp_path / "r" / "train.json").read_text())
    assert resolved["encoder"] == "efficientnet-lite0" and resolved["model_config"]["encoder"] == "frozen"
    assert train_command(f"--data {free} --out {tmp_path / 'r'} {args} --encoder efficientnet-lite0 "
                         "--proj-channels 4".split()) == 0  # finished: the same spec (encoder hash included)
    lam = checkpoint.load_model(ckpt)
    assert lam.cfg.encoder_spec == "efficientnet-lite0" and lam.obs_shape == (1280, 7, 7)
    assert lam.cfg.proj_channels == 4 and lam.proj.out_channels == 4
    out = label_dataset(tmp_path / "r", free, tmp_path / "o", batch_size=7, log=lambda m: None)
    src, dst = open_dataset(free), open_dataset(out)
    windows = WindowDataset(src, {"o": IMG}, frame_gap=1, image_size=32)
    for e, t in [(0, 0), (2, 10)]:
        item = windows[sum(n - 1 for n in src.episode_lengths[:e]) + t]
        with torch.no_grad():
            z = lam.encode(item["o"][None], item["o_next"][None])[0].numpy()
        np.testing.assert_allclose(dst.column("latent_action", e)[t], z, rtol=1e-4, atol=1e-4)
    assert dst.column("latent_action_is_valid", 0)[:, 0].tolist() == [True] * 11 + [False]


def test_frozen_features_are_cached_once_and_train_like_the_encoder(free, tmp_path):
    """A frozen encoder's f(I) is computed once per frame into OUT/features and training reads it: the
    same spec, and within float16's rounding the same model, as running f at every update."""
    from exolam.data.features import CachedFeatures

    args = (f"--data {free} --image-size 32 --frame-gap 1 --idm-channels 8 8 --fdm-channels 8 8 --train.precision 32 "
            "--train.steps 3 --train.batch-size 4 --train.lr 3e-4 --encoder efficientnet-lite0 --proj-channels 4").split()
    assert train_command([*args, "--out", str(tmp_path / "cached")]) == 0
    assert train_command([*args, "--out", str(tmp_path / "run-f"), "--no-cache-features"]) == 0
    cache = CachedFeatures(tmp_path / "cached" / "features" / IMG)
    assert cache.feature_shape == (1280, 7, 7) and cache.lengths == open_dataset(free).episode_lengths
    assert not (tmp_path / "run-f" / "features").exists()
    a, b = (checkpoint.read_config(tmp_path / r / "checkpoint") for r in ("cached", "run-f"))
    assert a["spec"] == b["spec"] and a["data"]["features"] == {IMG: str(tmp_path / "cached" / "features" / IMG)}
    assert a["loss_train"] == pytest.approx(b["loss_train"], rel=1e-2)  # float16 features: ~1e-3 relative
    wa, wb = (load_file(tmp_path / r / "checkpoint" / "model.safetensors") for r in ("cached", "run-f"))
    for k in wa:  # 3 Adam updates of lr 3e-4 move a weight by <= 9e-4; rounding may flip a tiny step's sign
        np.testing.assert_allclose(wa[k].numpy(), wb[k].numpy(), atol=2e-3, err_msg=k)


def test_pixels_train_on_cached_frames_exactly_as_on_decoded_ones(free, tmp_path):
    """The frame cache (float32 frames resized once) is what decoding at every update gives: same spec,
    bit-identical weights (CPU fp32)."""
    args = f"--data {free} --train.steps 3 {TINY} --frame-gap 2".split()
    assert train_command([*args, "--out", str(tmp_path / "cached")]) == 0
    assert train_command([*args, "--out", str(tmp_path / "decoded"), "--no-cache-features"]) == 0
    assert (tmp_path / "cached" / "features" / IMG / "features.json").is_file()
    assert not (tmp_path / "decoded" / "features").exists()
    a, b = (checkpoint.read_config(tmp_path / r / "checkpoint") for r in ("cached", "decoded"))
    assert a["spec"] == b["spec"]
    wa, wb = (load_file(tmp_path / r / "checkpoint" / "model.safetensors") for r in ("cached", "decoded"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_guards_find_an_untrained_lam_degenerate_and_can_stop(free, tmp_path, capsys):
    """Known answer: after 4 updates a LAM has learned no latent action, so the guard calls it degenerate,
    says diagnose's advice at the end, and --stop-if-degenerate ends the run with exit code 3 (its
    resumable checkpoint kept)."""
    from exolam.cli import main

    args = ["train", "--data", str(free), "--image-size", "32", "--idm-channels", "8", "8", "--fdm-channels", "8", "8",
            "--train.precision", "32", "--train.batch-size", "8", "--train.steps", "8", "--train.save-every", "2",
            "--guard-every", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    assert out.count("[guard] update") == 4 and "the trained LAM is degenerate" in out and "Train longer" in out
    assert checkpoint.read_config(tmp_path / "a" / "checkpoint")["guard"]["degenerate"] is True
    assert main([*args[:-1], "4", "--out", str(tmp_path / "b"), "--stop-if-degenerate"]) == 3  # guards at 4, 8
    err = capsys.readouterr().err
    assert err.startswith("exolam: stopped: update 4: the LAM is degenerate") and err.count("\n") == 1
    assert (tmp_path / "b" / "checkpoint").exists()  # the last periodic checkpoint: resumable


def test_a_finished_run_extends_to_more_updates_as_if_trained_that_long(data, run, tmp_path, capsys):
    """--train.steps raised on a finished run continues it (the update count is not part of a run's identity:
    a longer run's minibatch stream begins with the shorter one's), bit-identical on CPU fp32 to a run
    trained that long at once; fewer updates than it has is refused."""
    longer = tmp_path / "longer"
    shutil.copytree(run, longer)
    flags = "--train.save-every 2 --frame-gap 2"
    assert train_command(tiny(data, longer, f"--train.steps 8 {flags}")) == 0
    assert train_command(tiny(data, tmp_path / "fresh", f"--train.steps 8 {flags}")) == 0
    a, b = (load_file(d / "checkpoint" / "model.safetensors") for d in (longer, tmp_path / "fresh"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    meta = checkpoint.read_config(longer / "checkpoint")
    assert meta["step"] == 8 and meta["resumed_from"] == 4
    with pytest.raises(ConfigError, match="trained for 8 updates, more than the 6 asked"):
        train_command(tiny(data, longer, f"--train.steps 6 {flags}"))


def test_label_as_action_gives_a_policy_its_action_feature(run, data, tmp_path):
    """--as-action: `action` holds z (the last frame of each episode holding its last valid z: no jump to
    zero), the recorded action moves to `action.true`, and features and stats say so."""
    out = tmp_path / "as-action"
    assert label_command(f"--checkpoint {run} --data {data} --out {out} --as-action".split()) == 0
    src, dst = open_dataset(data), open_dataset(out)
    assert dst.features["action"]["shape"] == [8] and dst.features["action.true"] == src.features["action"]
    stats = json.loads((out / "meta" / "stats.json").read_text())
    assert {"action", "action.true"} <= set(stats) and len(stats["action"]["mean"]) == 8
    for e, n in enumerate(src.episode_lengths):
        z, valid, act = (dst.column(k, e) for k in ("latent_action", "latent_action_is_valid", "action"))
        assert np.array_equal(dst.column("action.true", e), src.column("action", e))
        k = int((~valid[:, 0]).sum())
        assert k == 2 and np.array_equal(act[:n - k], z[:n - k])  # frame gap 2: two frames without o_t+k
        assert all(np.array_equal(act[t], z[n - k - 1]) for t in range(n - k, n))
    with pytest.raises(ConfigError, match="already has a 'latent_action' feature"):  # a labelled copy
        label_command(f"--checkpoint {run} --data {out} --out {tmp_path / 'again'} --as-action".split())
