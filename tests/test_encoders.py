"""Encoders f(I) (Sec. 4.3), feature caches and `exolam diagnose encoder` (Remark 4.3, Eq. 12-14)."""

import dataclasses
import json
import os
import time

import numpy as np
import pytest
import torch

from exolam.data.features import CachedFeatures, cache_features, encode_episode
from exolam.data.lerobot import open_dataset
from exolam.errors import ConfigError
from exolam.models import checkpoint
from exolam.models.encoders import Encoder, load_encoder
from exolam.models.lapo import LapoLAM, LapoLAMConfig
from exolam.cli.diagnose import encoder_command
from exolam.workflows.diagnose_encoder import diagnose_encoder

TINY_EMA = LapoLAMConfig(image_size=16, idm_channels=(8, 16), fdm_channels=(8, 16), enc_channels=(8,), feat_channels=4,
                         encoder="ema")
CAM = "observation.image"


def _imgs(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _check_protocol(enc: Encoder, size=32):
    x = _imgs(3, size)
    y = enc(x)
    assert y.shape == (3, *enc.out_shape_for(size)) and torch.isfinite(y).all()
    assert enc.frozen and not y.requires_grad
    assert all(not p.requires_grad for p in enc.parameters())
    enc.train()  # a parent's .train() must not unfreeze BN statistics or dropout
    assert not enc.training and torch.equal(enc(x), y)
    assert load_encoder(enc) is enc
    return x, y


@pytest.fixture(scope="module")
def effnet():
    return load_encoder("efficientnet-lite0")


@pytest.fixture(scope="module")
def paired(tmp_path_factory):
    from exolam.envs.control import ControlConfig
    from exolam.envs.control_collect import collect

    out = tmp_path_factory.mktemp("paired")
    return collect(ControlConfig(image_size=32), lambda s, g: g.uniform(-1, 1, 6), out, 2, 10, 0)


def test_pixels():
    enc = load_encoder("pixels")
    x, y = _check_protocol(enc, 16)
    assert enc.name == "pixels" and enc.out_shape_for(16) == (3, 16, 16)
    assert torch.equal(y, 2 * x - 1)  # lapo.py `embed` for encoder "pixels"


def test_efficientnet_is_pretrained(effnet):
    from efficientnet_lite_pytorch import EfficientNet

    x, y = _check_protocol(effnet)
    assert effnet.out_shape_for(32) == (1280, 7, 7)  # resized to 224, stride 32
    assert torch.equal(effnet(x), y)  # deterministic
    torch.manual_seed(0)
    rand = EfficientNet.from_name("efficientnet-lite0", image_size=None).eval()
    with torch.no_grad():
        y_rand = rand.extract_features((torch.nn.functional.interpolate(x, 224, mode="bilinear") * 255 - 127) / 128)
    assert not torch.allclose(y, y_rand, atol=1e-2)
    bn = effnet.net._bn0  # ImageNet statistics, not the defaults (0, 1) of a fresh model
    assert bn.running_mean.abs().max() > 0.1 and (bn.running_var - 1).abs().max() > 0.1
    pooled = load_encoder("efficientnet-lite0:pooled")
    assert pooled.out_shape_for(32) == (1280,) and pooled.name == "efficientnet-lite0:pooled"
    torch.testing.assert_close(pooled(x), y.mean((2, 3)))


def _tiny_dinov2(path, registers=2):
    from transformers import Dinov2WithRegistersConfig, Dinov2WithRegistersModel

    torch.manual_seed(0)
    cfg = Dinov2WithRegistersConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8, num_register_tokens=registers)
    model = Dinov2WithRegistersModel(cfg).eval()
    model.save_pretrained(path)
    return model


def test_hf_dinov2_offline(tmp_path):
    model = _tiny_dinov2(tmp_path / "dino")
    enc = load_encoder(f"hf:{tmp_path / 'dino'}")
    assert os.environ["HF_HUB_OFFLINE"] == "1" and enc.name == f"hf:{tmp_path / 'dino'}"
    x, y = _check_protocol(enc, 24)  # resized to config.image_size 32 -> a 4 x 4 patch map
    assert enc.out_shape_for(24) == (16, 4, 4)
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    xr = torch.nn.functional.interpolate(x, 32, mode="bilinear", antialias=True)
    with torch.no_grad():
        tokens = model(pixel_values=(xr - mean[:, None, None]) / std[:, None, None]).last_hidden_state
    assert tokens.shape[1] == 1 + 2 + 16  # CLS + registers + patches: the first 3 are dropped
    torch.testing.assert_close(y, tokens[:, 3:].transpose(1, 2).reshape(3, 16, 4, 4))
    cls = load_encoder(f"hf:{tmp_path / 'dino'}:cls")
    torch.testing.assert_close(cls(x), tokens[:, 0])


def test_ema_checkpoint(tmp_path):
    torch.manual_seed(0)
    lam = LapoLAM(TINY_EMA).eval()
    with torch.no_grad():
        for p in lam.f.parameters():
            p.add_(0.1)  # f and f_EMA differ: the encoder must be f_EMA
    checkpoint.write(tmp_path / "ck", {}, lam)
    enc = load_encoder(f"ema:{tmp_path / 'ck'}")
    x, y = _check_protocol(enc, 16)
    assert enc.out_shape_for(16) == TINY_EMA.obs_shape and enc.name == f"ema:{tmp_path / 'ck'}"
    with torch.no_grad():
        assert torch.equal(y, lam.f_ema(x)) and not torch.allclose(y, lam.f(x))
        assert torch.equal(enc(_imgs(3, 32)), lam.f_ema(torch.nn.functional.interpolate(
            _imgs(3, 32), 16, mode="bilinear", antialias=True)))  # resized to the LAM's frame


def _one_line(excinfo, *needles):
    msg = str(excinfo.value)
    assert "\n" not in msg, msg
    for n in needles:
        assert str(n) in msg, msg


def test_missing_paths_and_bad_specs(tmp_path):
    missing = tmp_path / "nope"
    for spec in (f"ema:{missing}", f"hf:{missing}", f"timm:vit_small_patch14_dinov2:{missing}"):
        with pytest.raises(ConfigError) as e:
            load_encoder(spec)
        _one_line(e, missing)
    for spec in ("", "resnet", "efficientnet-lite0:bogus", "timm:arch", "hf:"):
        with pytest.raises(ConfigError) as e:
            load_encoder(spec)
        _one_line(e, "pixels")


def test_wrong_architecture(tmp_path):
    checkpoint.write(tmp_path / "pix", {}, LapoLAM(dataclasses.replace(TINY_EMA, encoder="pixels")))
    with pytest.raises(ConfigError) as e:
        load_encoder(f"ema:{tmp_path / 'pix'}")
    _one_line(e, tmp_path / "pix", "'ema'")
    _tiny_dinov2(tmp_path / "dino")
    cfg = json.loads((tmp_path / "dino" / "config.json").read_text())
    (tmp_path / "dino" / "config.json").write_text(json.dumps({**cfg, "hidden_size": 24}))
    with pytest.raises(ConfigError) as e:
        load_encoder(f"hf:{tmp_path / 'dino'}")
    _one_line(e, tmp_path / "dino")
    from safetensors.torch import save_file

    save_file({"foo": torch.zeros(3)}, tmp_path / "dino" / "model.safetensors")
    (tmp_path / "dino" / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ConfigError) as e:
        load_encoder(f"hf:{tmp_path / 'dino'}")
    _one_line(e, tmp_path / "dino", "do not fit")


def test_timm_absent_message(tmp_path, monkeypatch):
    import builtins

    real = builtins.__import__

    def no_timm(name, *a, **k):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    (tmp_path / "w.safetensors").write_bytes(b"x")
    with pytest.raises(ConfigError) as e:
        load_encoder(f"timm:vit_small_patch14_dinov2:{tmp_path / 'w.safetensors'}")
    _one_line(e, "install timm")


class Counting(Encoder):
    """pixels, counting frames (resume must not recompute finished episodes)."""

    def __init__(self, name="counting"):
        super().__init__(name, frozen=True, fingerprint="v1")
        self.seen = 0

    def encode(self, images):
        self.seen += len(images)
        return 2 * images - 1


def test_cache_round_trip_resume_and_refusal(paired, tmp_path):
    ds = open_dataset(paired)
    out = cache_features(Counting(), paired, CAM, tmp_path / "c32", image_size=16, batch=4, dtype="float32")
    cache = CachedFeatures(out)
    assert len(cache) == 2 and cache.feature_shape == (3, 16, 16) and cache.encoder == "counting"
    for e in range(2):
        direct = encode_episode(load_encoder("pixels"), ds, CAM, e, 16)
        assert cache[e].shape == (10, 3, 16, 16) and isinstance(cache[e], np.memmap)
        np.testing.assert_array_equal(cache[e], direct)
    half = CachedFeatures(cache_features(Counting(), paired, CAM, tmp_path / "c16", image_size=16))
    np.testing.assert_allclose(half[1].astype(np.float32), cache[1], atol=1e-3)
    # resume: episode 1 lost (a killed run), episode 0 untouched
    (out / "episode_000001.npy").unlink()
    stamp = (out / "episode_000000.npy").stat().st_mtime_ns
    enc = Counting()
    cache_features(enc, paired, CAM, out, image_size=16, batch=4, dtype="float32")  # 1 frame: the shape probe
    assert enc.seen == 1 + 10 and (out / "episode_000000.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(CachedFeatures(out)[1], encode_episode(load_encoder("pixels"), ds, CAM, 1, 16))
    for kwargs, what in ((dict(encoder=load_encoder("pixels")), "encoder"), (dict(image_size=8), "image_size"),
                         (dict(dtype="float16"), "dtype")):
        args = {**dict(encoder=Counting(), dataset_root=paired, camera=CAM, out_dir=out, image_size=16,
                       dtype="float32"), **kwargs}
        with pytest.raises(ConfigError) as e:
            cache_features(**args)
        _one_line(e, what, "another out_dir")
    with pytest.raises(ConfigError) as e:
        CachedFeatures(out).check(paired, CAM, 32)
    _one_line(e, "image_size")


def test_cache_throughput(paired, tmp_path, effnet):
    """Cached vs uncached feature reads (printed with -s; never asserted)."""
    ds = open_dataset(paired)
    n = sum(ds.episode_lengths)
    rates = {}
    for enc in (load_encoder("pixels"), effnet):
        t0 = time.perf_counter()
        for e in range(2):
            encode_episode(enc, ds, CAM, e, None)
        t_uncached = time.perf_counter() - t0
        cache = CachedFeatures(cache_features(enc, paired, CAM, tmp_path / enc.name.replace(":", "_")))
        t0 = time.perf_counter()
        for _ in range(20):
            fresh = CachedFeatures(cache.path)
            total = sum(float(np.asarray(fresh[e], dtype=np.float32).sum()) for e in range(2))
        t_cached = (time.perf_counter() - t0) / 20
        rates[enc.name] = (n / t_uncached, n / t_cached)
        assert np.isfinite(total)
    for name, (u, c) in rates.items():
        print(f"\n[throughput] {name}: uncached {u:.0f} frames/s, cached {c:.0f} frames/s ({c / u:.0f}x)")


def test_diagnose_ranks_pixels_above_constant(paired, tmp_path, capsys):
    class Constant(Encoder):
        def __init__(self):
            super().__init__("constant", fingerprint="c")

        def encode(self, images):
            return torch.ones(len(images), 4)

    res = diagnose_encoder(["pixels", Constant()], paired, None, tmp_path / "r", max_frames=12)
    pix, const = res["encoders"]
    assert res["data"]["frames"] == 12 and res["data"]["alt"] == "observation.image_alt"
    assert const["delta_h"]["mean"] == 0 and const["exo_energy"]["energy"] == 0
    assert pix["delta_h"]["mean"] > 0 and 0 < pix["delta_h"]["relative"] < 10
    assert res["ranking"] == ["pixels", "constant"]  # constant: relative n/a (carries nothing), ranked last
    en = pix["exo_energy"]
    assert en["switch_freq"] == 1.0 and en["energy"] == pytest.approx(en["switch_freq"] * en["sensitivity"])
    assert pix["env_switch_freq"] == 1.0  # drift mode: xi moves at every step
    saved = json.loads((tmp_path / "r" / "encoder.json").read_text())
    assert saved["encoders"][0]["delta_h"]["mean"] == pytest.approx(pix["delta_h"]["mean"])
    md = (tmp_path / "r" / "encoder.md").read_text()
    assert "lower relative delta_h = less exogenous energy reaches the LAM (Eq. 14)" in md and "`pixels`" in md
    with pytest.raises(ConfigError) as e:  # never replaced silently
        diagnose_encoder("pixels", paired, None, tmp_path / "r", max_frames=4)
    _one_line(e, "exists")
    rc = encoder_command(["--encoder", "pixels", "--encoder", "efficientnet-lite0:pooled", "--data",
                                   str(paired), "--max-frames", "6", "--image-size", "32", "--out",
                                   str(tmp_path / "cli")])
    assert rc == 0 and "relative delta_h" in capsys.readouterr().out
    assert [r["encoder"] for r in json.loads((tmp_path / "cli" / "encoder.json").read_text())["encoders"]] == [
        "pixels", "efficientnet-lite0:pooled"]


def test_diagnose_needs_paired_views(tmp_path):
    from exolam.envs.control import ControlConfig
    from exolam.envs.control_collect import collect

    data = collect(ControlConfig(image_size=32), lambda s, g: g.uniform(-1, 1, 6), tmp_path / "np", 1, 4, 0,
                   paired=False)
    with pytest.raises(ConfigError) as e:
        diagnose_encoder("pixels", data, None, tmp_path / "r")
    _one_line(e, "paired views", "observation.image_alt")
    assert not (tmp_path / "r").exists()
    base = ["--encoder", "pixels", "--data", str(data)]
    for argv in (base[2:] + ["--out", "x"], base + ["--out", "o", "--bogus", "1"], base + ["--out", "o", "--out", "p"]):
        with pytest.raises(ConfigError):
            encoder_command(argv)


def test_diagnose_target_flow_on_control(paired, tmp_path):
    """cheetah-run under colour and camera drift: flow is measured (32 px), state-conditioned probes exist."""
    from exolam.workflows.diagnose_target import diagnose_target

    res = diagnose_target(["flow", "action"], paired, tmp_path / "t", max_windows=12)
    flow, action = res["targets"]
    assert flow["dim"] == 128 and 0 < flow["eta"]["relative"] < 3  # 2 x 8 x 8, DIS (data/flow.py)
    assert action["eta"]["mean"] == 0 and res["ranking"] == ["action", "flow"]
    assert res["data"]["state"] == "observation.state" and flow["nmse_given_s"] is not None
