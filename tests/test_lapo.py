"""The LAPO-style LAM of App. D: shapes, protocol, checkpoint round trip, training, EMA encoder, config."""

import dataclasses

import pytest
import torch

import exolam
from exolam.data.sampling import TensorSource
from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.models import checkpoint
from exolam.models.base import IDMOutput
from exolam.models.lapo import LapoLAM, LapoLAMConfig, ema_hook
from exolam.objectives import Objective, sq_err
from exolam.train import engine

torch.set_num_threads(1)

TINY = LapoLAMConfig(image_size=16, idm_channels=(8, 16), fdm_channels=(8, 16), enc_channels=(8,), feat_channels=4)
TINY_EMA = dataclasses.replace(TINY, encoder="ema")


def _squares(n=64, frame=16, side=4, seed=0):
    """A bright square on black that moves by an action in {-2..2}^2 pixels: (o, o', a)."""
    g = torch.Generator().manual_seed(seed)
    pos = torch.randint(2, frame - side - 2, (n, 2), generator=g)
    a = torch.randint(-2, 3, (n, 2), generator=g)
    color = 0.5 + 0.5 * torch.rand(n, 3, generator=g)

    def draw(p):
        img = torch.zeros(n, 3, frame, frame)
        for i in range(n):
            y, x = p[i].tolist()
            img[i, :, y:y + side, x:x + side] = color[i, :, None, None]
        return img

    return draw(pos), draw(pos + a), a.float()


def test_shapes_at_64px_default_sizes():
    torch.manual_seed(0)
    o, o_next = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    lam = LapoLAM()
    out = lam.idm(o, o_next)
    assert out.z.shape == (2, 8) and lam.d_z == 8
    pred = lam.fdm(o, out.z)
    assert pred.shape == o.shape and pred.min() >= 0 and pred.max() <= 1  # pixels: [0, 1] like o
    ema = LapoLAM(LapoLAMConfig(encoder="ema"))
    assert ema.cfg.obs_shape == (16, 16, 16)
    feat = ema.fdm(o, ema.encode(o, o_next))
    assert feat.shape == (2, 16, 16, 16) and feat.abs().max() <= 1  # features: [-1, 1]
    assert ema.fdm_target(o_next).shape == feat.shape


@pytest.mark.parametrize("cfg", [TINY, TINY_EMA], ids=["pixels", "ema"])
def test_protocol(cfg):
    torch.manual_seed(0)
    lam = LapoLAM(cfg).eval()
    o, o_next, _ = _squares(8)
    out = lam.idm(o, o_next)
    assert isinstance(out, IDMOutput) and out.codes is None and out.z_pre is out.z
    assert out.loss.shape == () and out.loss.item() == 0.0
    assert torch.equal(lam.encode(o, o_next), out.z)
    assert torch.equal(lam.decode(o, out.z), lam.fdm(o, out.z))
    pred, out2 = lam(o, o_next)
    assert torch.equal(pred, lam.fdm(o, out.z)) and torch.equal(out2.z, out.z)
    if cfg.encoder == "pixels":
        assert torch.equal(lam.fdm_target(o_next), o_next)


@pytest.mark.parametrize("cfg", [TINY, TINY_EMA], ids=["pixels", "ema"])
def test_checkpoint_round_trip(tmp_path, cfg):
    torch.manual_seed(0)
    lam = LapoLAM(cfg).eval()
    if cfg.encoder == "ema":  # make f_EMA differ from f so both must be saved
        with torch.no_grad():
            for p in lam.f.parameters():
                p.add_(0.1)
    checkpoint.write(tmp_path / "ck", {}, lam)
    back = exolam.load(tmp_path / "ck")
    assert isinstance(back, LapoLAM) and back.cfg == cfg
    o, o_next, _ = _squares(4)
    with torch.no_grad():
        assert torch.equal(back.encode(o, o_next), lam.encode(o, o_next))
        z = lam.encode(o, o_next)
        assert torch.equal(back.decode(o, z), lam.decode(o, z))
        assert torch.equal(back.fdm_target(o_next), lam.fdm_target(o_next))


def _l_lam(lam, o, o_next):
    with torch.no_grad():
        lam.eval()
        out = sq_err(lam.fdm(o, lam.encode(o, o_next)), lam.fdm_target(o_next)).item()
        lam.train()
        return out


@pytest.mark.parametrize("cfg", [TINY, TINY_EMA], ids=["pixels", "ema"])
def test_engine_steps_lower_l_lam(cfg):
    torch.manual_seed(0)
    o, o_next, a = _squares(64)
    lam = LapoLAM(cfg)
    before = _l_lam(lam, o, o_next)
    f_ema0 = [p.clone() for p in lam.f_ema.parameters()] if cfg.encoder == "ema" else []
    tc = engine.TrainConfig(steps=30, batch_size=32, lr=3e-3, precision="32", log_every=0)
    source = TensorSource(Transitions(o=o, o_next=o_next, a=a), 0, tc.steps, tc.batch_size)
    objective = Objective("lam", cfg.d_z)  # compares with lam.fdm_target(o'): o' or f_EMA(I')
    engine.fit(engine.make_fabric(tc), lam, objective, source, tc, spec={}, hooks=[ema_hook])
    after = _l_lam(lam, o, o_next)
    assert after < 0.5 * before
    if cfg.encoder == "ema":  # the hook moved the target (it gets no gradient, so only the hook can)
        assert all(p.grad is None for p in lam.f_ema.parameters())
        assert any(not torch.equal(p, q) for p, q in zip(lam.f_ema.parameters(), f_ema0))


def test_ema_target_gets_no_gradient_and_online_encoder_does():
    torch.manual_seed(0)
    lam = LapoLAM(TINY_EMA).train()
    o, o_next, _ = _squares(8)
    out = lam.idm(o, o_next)
    sq_err(lam.fdm(o, out.z), lam.fdm_target(o_next)).backward()
    assert all(not p.requires_grad and p.grad is None for p in lam.f_ema.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in lam.f.parameters())
    assert not lam.fdm_target(o_next).requires_grad


def test_ema_hook_known_answer():
    torch.manual_seed(0)
    cfg = dataclasses.replace(TINY_EMA, ema_decay=0.9)
    lam = LapoLAM(cfg)
    with torch.no_grad():
        for i, (t, s) in enumerate(zip(lam.f_ema.parameters(), lam.f.parameters())):
            t.fill_(1.0 + i)
            s.fill_(3.0 - i)
    ema_hook(1, lam)
    for i, t in enumerate(lam.f_ema.parameters()):
        expected = 0.9 * (1.0 + i) + 0.1 * (3.0 - i)
        assert torch.allclose(t, torch.full_like(t, expected), atol=1e-6)
    ema_hook(2, lam)  # twice: theta_t - theta_f shrinks by 0.9 each time
    for i, t in enumerate(lam.f_ema.parameters()):
        expected = (3.0 - i) + 0.81 * ((1.0 + i) - (3.0 - i))
        assert torch.allclose(t, torch.full_like(t, expected), atol=1e-6)
    # decay 1 freezes the target; the pixel model ignores the hook
    frozen = LapoLAM(dataclasses.replace(TINY_EMA, ema_decay=1.0))
    before = [p.clone() for p in frozen.f_ema.parameters()]
    with torch.no_grad():
        for p in frozen.f.parameters():
            p.add_(1.0)
    ema_hook(1, frozen)
    assert all(torch.equal(p, q) for p, q in zip(frozen.f_ema.parameters(), before))
    ema_hook(1, LapoLAM(TINY))


@pytest.mark.parametrize(
    "field, value",
    [("d_z", 0), ("image_size", -4), ("in_channels", 1.5), ("idm_channels", ()), ("fdm_channels", (8,)),
     ("fdm_channels", (8, 0)), ("enc_channels", ()), ("feat_channels", 0), ("encoder", "dino"),
     ("ema_decay", 1.5), ("ema_decay", -0.1), ("ema_decay", float("nan"))],
)
def test_bad_config_raises(field, value):
    with pytest.raises(ConfigError, match=rf"model\.{field}"):
        LapoLAM(dataclasses.replace(TINY, **{field: value}))


# ------------------------------------------------------------------------------------------------ frozen encoder

TINY_FROZEN = dataclasses.replace(TINY, encoder="frozen", encoder_spec="efficientnet-lite0", proj_channels=4)


def _tiny_dino(path, seed=0):
    """A 1-layer DINOv2 (hidden 16, patch 8 at 32 px -> a [16, 4, 4] patch map), saved as save_pretrained does."""
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(seed)
    cfg = transformers.Dinov2Config(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                    image_size=32, patch_size=8)
    transformers.Dinov2Model(cfg).eval().save_pretrained(path)
    return path


def test_frozen_efficientnet_shapes_gradients_and_state_dict():
    from exolam.models.encoders import load_encoder

    torch.manual_seed(0)
    lam = LapoLAM(TINY_FROZEN).train()
    enc = lam.frozen_encoder
    assert lam.obs_shape == (1280, 7, 7) and enc.name == "efficientnet-lite0" and lam.cfg.encoder_fingerprint
    o, o_next, _ = _squares(2)
    out = lam.idm(o, o_next)
    pred, target = lam.fdm(o, out.z), lam.fdm_target(o_next)
    assert out.z.shape == (2, 8) and pred.shape == target.shape == (2, 1280, 7, 7)
    assert lam.fdm_target(o_next) is target  # memoized: f runs once per input tensor
    with torch.no_grad():
        assert torch.equal(target, load_encoder("efficientnet-lite0")(o_next))  # the target is f(I') itself
        with torch.autocast("cpu", torch.bfloat16):  # bf16-mixed training: f still runs in fp32 (as cached)
            assert torch.equal(lam.features(o_next.clone(), memo=False), target)
    sq_err(pred, target).backward()
    assert not target.requires_grad and not enc.training
    assert all(not p.requires_grad and p.grad is None for p in enc.parameters())
    assert lam.proj.weight.grad.abs().sum() > 0 and lam.idm_net.head.weight.grad.abs().sum() > 0
    keys = set(lam.state_dict())
    assert all(k.split(".")[0] in ("proj", "idm_net", "fdm_net") for k in keys), keys
    assert enc not in set(lam.modules()) and sum(p.numel() for p in lam.parameters()) < 30_000
    with torch.no_grad():
        torch.testing.assert_close(lam.idm_on_features(lam.features(o), target).z, out.z)
    with pytest.raises(ConfigError, match="only for encoder 'frozen'"):
        LapoLAM(TINY).features(o)


def test_frozen_checkpoint_round_trip_rebuilds_the_encoder(tmp_path, monkeypatch):
    _tiny_dino(tmp_path / "dino")
    monkeypatch.chdir(tmp_path)  # a relative spec is stored absolute
    cfg = dataclasses.replace(TINY_FROZEN, encoder_spec="hf:dino", image_size=24)
    torch.manual_seed(0)
    lam = LapoLAM(cfg).eval()
    assert lam.cfg.encoder_spec == f"hf:{tmp_path / 'dino'}" and lam.obs_shape == (16, 4, 4)
    checkpoint.write(tmp_path / "ck", {}, lam)
    monkeypatch.chdir("/")
    back = exolam.load(tmp_path / "ck")
    assert back.cfg == lam.cfg and back.frozen_encoder is not lam.frozen_encoder
    o, o_next, _ = _squares(4, frame=24)
    with torch.no_grad():
        z = lam.encode(o, o_next)
        assert torch.equal(back.encode(o, o_next), z)
        assert torch.equal(back.decode(o, z), lam.decode(o, z))
        assert torch.equal(back.fdm_target(o_next), lam.fdm_target(o_next))
    # other weights at the same path are refused; a weights path that is gone gives the encoder's own line
    _tiny_dino(tmp_path / "dino", seed=1)
    with pytest.raises(ConfigError, match="weights changed since this LAM was trained"):
        exolam.load(tmp_path / "ck")
    (tmp_path / "dino").rename(tmp_path / "moved")
    with pytest.raises(ConfigError, match=f"encoder hf:{tmp_path / 'dino'}: .* not a folder holding config.json") as e:
        exolam.load(tmp_path / "ck")
    assert "\n" not in str(e.value)


def test_frozen_engine_steps_lower_l_lam(tmp_path):
    _tiny_dino(tmp_path / "dino")
    cfg = dataclasses.replace(TINY_FROZEN, encoder_spec=f"hf:{tmp_path / 'dino'}")
    torch.manual_seed(0)
    o, o_next, a = _squares(64)
    lam = LapoLAM(cfg)
    before = _l_lam(lam, o, o_next)
    tc = engine.TrainConfig(steps=30, batch_size=32, lr=3e-3, precision="32", log_every=0)
    source = TensorSource(Transitions(o=o, o_next=o_next, a=a), 0, tc.steps, tc.batch_size)
    engine.fit(engine.make_fabric(tc), lam, Objective("lam", cfg.d_z), source, tc, spec={})
    assert _l_lam(lam, o, o_next) < 0.5 * before


@pytest.mark.parametrize("field, value, match", [
    ("encoder", "frozen", r"model\.encoder_spec = ''"),  # frozen needs a spec
    ("encoder_spec", "efficientnet-lite0", r"model\.encoder_spec .* only there"),  # a spec needs frozen
    ("proj_channels", 0, r"model\.proj_channels"),
])
def test_bad_frozen_config_raises(field, value, match):
    base = TINY if field != "proj_channels" else TINY_FROZEN
    with pytest.raises(ConfigError, match=match):
        LapoLAM(dataclasses.replace(base, **{field: value}))


def test_frozen_refuses_vector_encoders(tmp_path):
    _tiny_dino(tmp_path / "dino")
    for spec in ("efficientnet-lite0:pooled", f"hf:{tmp_path / 'dino'}:cls"):
        with pytest.raises(ConfigError, match=r"gives a feature vector \[(1280|16)\] per frame; .* spatial map") as e:
            LapoLAM(dataclasses.replace(TINY_FROZEN, encoder_spec=spec))
        assert "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="fails on 1-channel 16x16 frames"):
        LapoLAM(dataclasses.replace(TINY_FROZEN, in_channels=1))


@pytest.mark.parametrize("size", [(1, 1), (1, 3), (2, 2), (3, 5), (7, 7)])
def test_down_conv_is_the_stride_2_conv(size):
    """DownConv gives what a 3x3 stride-2 pad-1 conv gives at every size (stride 1 on a 1-pixel side is
    the same function), with the same parameters."""
    from exolam.models.lapo import DownConv

    torch.manual_seed(0)
    down, ref = DownConv(4, 5), torch.nn.Conv2d(4, 5, 3, stride=2, padding=1)
    ref.load_state_dict(down.state_dict())
    x = torch.randn(2, 4, *size)
    assert torch.equal(down(x), ref(x))


def test_bf16_gradients_on_a_1_pixel_map_are_finite():
    """The IDM on a frozen encoder's 7 x 7 map convolves a 1 x 1 map; torch's CPU bf16 kernel for that
    at stride 2 gave NaN weight gradients at random (3 of 8 processes), DownConv does not use it."""
    from exolam.models.lapo import DownConv

    torch.manual_seed(0)
    conv, x = DownConv(128, 128), torch.randn(8, 128, 1, 1)
    for _ in range(50):
        conv.zero_grad()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = conv(x)
        y.float().sum().backward()
        assert torch.isfinite(conv.weight.grad).all()
