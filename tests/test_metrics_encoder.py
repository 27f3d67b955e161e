"""Encoder xi-sensitivity (Eq. 13) and z consistency (App. D) on toy encoders whose answers are known."""

import math

import pytest
import torch

from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.metrics import encoder as enc
from exolam.models.lapo import LapoLAM, LapoLAMConfig

torch.set_num_threads(1)

B, SHAPE = 512, (3, 8, 8)


def pixels(x):
    """The identity-like h of the pixel LAM: 2 I - 1."""
    return 2 * x - 1


def frames(seed: int, n: int = B) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


class FakeLAM:
    """encode(o, o') reads channel 0 (the endogenous part) or channel 1 (the exogenous part) only."""

    def __init__(self, channel: int):
        self.channel = channel

    def encode(self, o, o_next):
        return torch.cat([o[:, self.channel].flatten(1)[:, :4], o_next[:, self.channel].flatten(1)[:, :4]], 1)


def paired_batch(seed: int, same_xi: bool) -> Transitions:
    """Channel 0 = s (shared by both views), channels 1-2 = xi (independent in o_alt unless same_xi)."""
    o, o_next = frames(seed), frames(seed + 1)
    o_alt, o_next_alt = frames(seed + 2), frames(seed + 3)
    if same_xi:
        o_alt, o_next_alt = o.clone(), o_next.clone()
    o_alt[:, 0], o_next_alt[:, 0] = o[:, 0], o_next[:, 0]
    return Transitions(o=o, o_next=o_next, o_alt=o_alt, o_next_alt=o_next_alt)


def test_derangement_is_a_fixed_permutation_without_fixed_points():
    for n in (2, 3, 10, 257):
        pi = enc.derangement(n)
        assert sorted(pi.tolist()) == list(range(n))
        assert (pi != torch.arange(n)).all()
        assert torch.equal(pi, enc.derangement(n))
    assert not torch.equal(enc.derangement(100), torch.arange(100).roll(-1))  # not neighbours in time


def test_same_render_has_zero_sensitivity():
    o = frames(0)
    r = enc.xi_sensitivity(pixels, o, o.clone())
    assert r["mean"] == 0 and r["max"] == 0 and r["relative"] == 0
    assert r["between"] > 0


def test_independent_render_is_as_far_as_another_frame():
    # o_alt independent of o with the same law: E d = 2 tr Cov h = E||h(o_i) - h(o_j)||^2, relative ~ 1
    r = enc.xi_sensitivity(pixels, frames(0), frames(1))
    assert r["relative"] == pytest.approx(1.0, abs=0.05)
    assert r["mean"] == pytest.approx(4 * 2 * math.prod(SHAPE) / 12, rel=0.05)  # Var(2U - 1) = 1/3 per dim
    assert r["max"] >= r["mean"]


@pytest.mark.parametrize("c", [0.1, 3.0])
def test_scaling_h_keeps_relative_and_scales_mean_by_c_squared(c):
    o = frames(0)
    o_alt = (o + 0.1 * frames(1)).clamp(0, 1)
    base = enc.xi_sensitivity(pixels, o, o_alt)
    scaled = enc.xi_sensitivity(lambda x: c * pixels(x), o, o_alt)
    assert scaled["relative"] == pytest.approx(base["relative"], rel=1e-6)
    assert scaled["mean"] == pytest.approx(c**2 * base["mean"], rel=1e-6)
    assert scaled["max"] == pytest.approx(c**2 * base["max"], rel=1e-6)
    assert 0 < base["relative"] < 0.2


def test_chunking_does_not_change_the_result():
    o, o_alt = frames(0, 50), frames(1, 50)
    a, b = enc.xi_sensitivity(pixels, o, o_alt), enc.xi_sensitivity(pixels, o, o_alt, chunk=7)
    assert a == pytest.approx(b, rel=1e-12)


def test_lapo_embed_both_encoders_and_train_flag_restored():
    o, o_alt = frames(0, 16), frames(1, 16)
    for mode in ("pixels", "ema"):
        lam = LapoLAM(LapoLAMConfig(image_size=8, idm_channels=(8,), fdm_channels=(8, 8), enc_channels=(8,),
                                    feat_channels=4, encoder=mode)).train()
        r = enc.xi_sensitivity(lam.embed, o, o_alt)
        assert all(math.isfinite(v) for v in r.values()) and r["relative"] > 0
        assert lam.training and all(m.training for m in lam.modules())
        if mode == "pixels":
            assert r == pytest.approx(enc.xi_sensitivity(pixels, o, o_alt), rel=1e-6)
        assert enc.xi_sensitivity(lam.embed, o, o.clone())["relative"] == 0
        zc = enc.z_consistency(lam, Transitions(o=o, o_next=o_alt, o_alt=o.clone(), o_next_alt=o_alt.clone()))
        assert zc == {"mse": 0.0, "relative": 0.0}


def test_one_sample_has_no_scale():
    o = frames(0, 1)
    r = enc.xi_sensitivity(pixels, o, frames(1, 1))
    assert r["mean"] > 0 and math.isnan(r["between"]) and math.isnan(r["relative"])


def test_z_consistency_zero_when_lam_ignores_xi():
    r = enc.z_consistency(FakeLAM(channel=0), paired_batch(0, same_xi=False))
    assert r == {"mse": 0.0, "relative": 0.0}


def test_z_consistency_two_when_z_alt_independent():
    r = enc.z_consistency(FakeLAM(channel=1), paired_batch(0, same_xi=False))
    assert r["relative"] == pytest.approx(2.0, abs=0.1)
    assert r["mse"] == pytest.approx(2 * 8 / 12, rel=0.1)  # 8 dims of U[0, 1] differences
    same = enc.z_consistency(FakeLAM(channel=1), paired_batch(0, same_xi=True))
    assert same["mse"] == 0


def _one_line_error(fn, *args):
    with pytest.raises(ConfigError) as e:
        fn(*args)
    assert "\n" not in str(e.value) and str(e.value)
    return str(e.value)


def test_bad_input_raises_one_line():
    o = frames(0, 4)
    assert "shape" in _one_line_error(enc.xi_sensitivity, pixels, o, o[:, :, :4])
    assert "shape" in _one_line_error(enc.xi_sensitivity, pixels, o, o[:3])
    assert "empty" in _one_line_error(enc.xi_sensitivity, pixels, o[:0], o[:0])
    _one_line_error(enc.xi_sensitivity, lambda x: x[:1], o, o)  # h must keep the batch dim
    _one_line_error(enc.xi_sensitivity, lambda x: x * math.nan, o, o)
    _one_line_error(enc.xi_sensitivity, pixels, o, o, 0)
    lam = FakeLAM(0)
    assert "o_alt" in _one_line_error(enc.z_consistency, lam, Transitions(o=o, o_next=o))
    bad = Transitions(o=o, o_next=o, o_alt=o[:, :, :4], o_next_alt=o[:, :, :4])
    assert "shape" in _one_line_error(enc.z_consistency, lam, bad)
    empty = Transitions(o=o[:0], o_next=o[:0], o_alt=o[:0], o_next_alt=o[:0])
    assert "empty" in _one_line_error(enc.z_consistency, lam, empty)
