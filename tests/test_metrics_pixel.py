"""Pixel-LAM metrics (Sec. 4.2 xi'-swap, Fig. 5b) on toy LAMs whose answers are known."""

import math

import pytest
import torch
from torch import nn

from exolam.envs import gridworld as gw
from exolam.metrics import pixel
from exolam.models.base import IDMOutput
from exolam.models.vq import VQLAM, VQLAMConfig

torch.set_num_threads(1)

SIGMA = 0.5


@pytest.fixture(scope="module")
def batch():
    _, test = gw.make_dataset(gw.GridWorldConfig(sigma=SIGMA, n_train=16, n_test=2048, seed=1))
    return test


class ToyLAM:
    """encode/decode from plain functions (no nn.Module): the swap test needs nothing else."""

    def __init__(self, encode, decode):
        self._encode, self._decode = encode, decode

    def encode(self, o, o_next):
        return self._encode(o, o_next)

    def decode(self, o, z):
        return self._decode(o, z)

    def idm(self, o, o_next):
        z = self.encode(o, o_next)
        return IDMOutput(z=z, z_pre=z, codes=None, loss=z.new_zeros(()))

    def fdm(self, o, z):
        return self.decode(o, z)


class CellCodeLAM(nn.Module):
    """A discrete LAM whose code is the agent's next cell: it ignores the exogenous row entirely."""

    def __init__(self, use_exo=False):
        super().__init__()
        self.use_exo = use_exo

    def idm(self, o, o_next):
        codes = gw.agent_cell(o_next)
        z = nn.functional.one_hot(codes, 12).float()
        if self.use_exo:  # leak the first pixel of xi' into z_pre and into the code
            xi0 = o_next[:, 0, 3, 0]
            z = torch.cat([z, 0.1 * xi0[:, None]], dim=1)
            codes = codes + 12 * (xi0 > 0).long()
        return IDMOutput(z=z, z_pre=z, codes=codes, loss=z.new_zeros(()))


def _ignores_next(o, o_next):
    return o.flatten(1)


def test_swap_is_symmetric_when_z_ignores_o_next(batch):
    lam = ToyLAM(_ignores_next, lambda o, z: 0.5 * z.view_as(o))
    r = pixel.swap_psnr(lam, batch)
    assert r["swap_vs_o_next"] == r["recon"]
    assert r["gap_swap"] == 0.0
    # scored against o~' the swap does no better than chance agreement: xi' was never copied
    assert r["gap_swap_alt"] == pytest.approx(r["aug_recon"] - r["swap_vs_o_next_alt"])
    assert r["gap_aug"] == pytest.approx(r["recon"] - r["aug_recon"])
    assert abs(r["gap_aug"]) < 0.5  # same distribution under both views


def test_swap_exposes_a_z_that_copies_o_next(batch):
    lam = ToyLAM(lambda o, o_next: o_next.flatten(1), lambda o, z: z.view_as(o) + 0.01)
    r = pixel.swap_psnr(lam, batch)
    assert r["recon"] == pytest.approx(40.0) and r["aug_recon"] == pytest.approx(40.0)
    assert r["swap_vs_o_next_alt"] == pytest.approx(40.0)  # the swap reproduces o~', not o'
    assert r["gap_swap"] > 20.0 and r["gap_swap_alt"] == pytest.approx(0.0, abs=1e-9)
    exact = pixel.swap_psnr(ToyLAM(lambda o, o_next: o_next.flatten(1), lambda o, z: z.view_as(o)), batch)
    assert exact["recon"] == math.inf and exact["swap_vs_o_next_alt"] == math.inf
    assert exact["gap_swap"] == math.inf and exact["gap_swap_alt"] == 0.0


def test_psnr_value():
    pred, target = torch.zeros(2, 1, 4, 4), torch.full((2, 1, 4, 4), 0.1)
    assert pixel.psnr(pred, target) == pytest.approx(20.0, abs=1e-5)
    assert pixel.psnr(pred, target, max_val=10.0) == pytest.approx(40.0, abs=1e-5)


def test_codebook_usage_known_assignments():
    uniform4 = torch.tensor([0, 1, 2, 3] * 25)
    u = pixel.codebook_usage(uniform4, 5)
    assert u["perplexity"] == pytest.approx(4.0) and u["used"] == 4 and u["fraction"] == pytest.approx(0.8)
    c = pixel.codebook_usage(torch.full((50,), 2), 5)
    assert c["perplexity"] == pytest.approx(1.0) and c["used"] == 1
    skewed = pixel.codebook_usage(torch.tensor([0] * 3 + [1]), 5)
    p = torch.tensor([0.75, 0.25])
    assert skewed["perplexity"] == pytest.approx(math.exp(-(p * p.log()).sum().item()))
    with pytest.raises(ValueError):
        pixel.codebook_usage(torch.tensor([0, 5]), 5)


def test_consistency_loss_zero_when_z_ignores_the_exogenous_row(batch):
    r = pixel.consistency_loss(CellCodeLAM(), batch)
    assert r == {"post": 0.0, "pre": 0.0, "flip_rate": 0.0}
    leaky = pixel.consistency_loss(CellCodeLAM(use_exo=True), batch)
    # z carries 0.1 * xi'_0: the views disagree on xi'_0 half the time -> E||z - z~||^2 = 0.5 * (0.1 * sigma)^2
    assert leaky["post"] == leaky["pre"] == pytest.approx(0.5 * (0.1 * SIGMA) ** 2, rel=0.1)
    assert leaky["flip_rate"] == pytest.approx(0.5, abs=0.05)
    cont = pixel.consistency_loss(ToyLAM(lambda o, o_next: o_next.flatten(1), None), batch)
    assert math.isnan(cont["flip_rate"]) and cont["post"] > 0


def test_region_mse_known_values(batch):
    zeros = ToyLAM(_ignores_next, lambda o, z: torch.zeros_like(o))
    # one agent pixel out of 12 in the control region, E[xi'^2] = sigma^2 / 2 in the exogenous one
    assert pixel.region_mse(zeros, batch, gw.CONTROL_REGION) == pytest.approx(1 / 12)
    assert pixel.region_mse(zeros, batch, gw.EXO_REGION) == pytest.approx(SIGMA**2 / 2, rel=0.05)
    # predicting the mean sigma/2 on the exogenous row is exactly the noise floor
    mean_pred = ToyLAM(_ignores_next, lambda o, z: torch.full_like(o, SIGMA / 2))
    r = pixel.exo_region_mse(mean_pred, batch, gw.EXO_REGION, gw.noise_floor(SIGMA))
    assert r["raw"] == pytest.approx(gw.noise_floor(SIGMA)) and r["normalized"] == pytest.approx(1.0)
    copy = ToyLAM(lambda o, o_next: o_next.flatten(1), lambda o, z: z.view_as(o))
    assert pixel.exo_region_mse(copy, batch, gw.EXO_REGION, gw.noise_floor(SIGMA))["normalized"] == 0.0
    assert math.isnan(pixel.exo_region_mse(copy, batch, gw.EXO_REGION, 0.0)["normalized"])


def test_probe_accuracy_one_hot_and_noise():
    g = torch.Generator().manual_seed(0)
    a_train, a_test = torch.randint(0, 4, (2000,), generator=g), torch.randint(0, 4, (2000,), generator=g)
    onehot = lambda a: nn.functional.one_hot(a, 4).float()  # noqa: E731
    assert pixel.probe_accuracy(onehot(a_train), a_train, onehot(a_test), a_test, 4) == 1.0
    z_train, z_test = torch.randn(2000, 8, generator=g), torch.randn(2000, 8, generator=g)
    acc = pixel.probe_accuracy(z_train, a_train, z_test, a_test, 4)
    assert abs(acc - 0.25) < 0.05


def test_metrics_on_vqlam_keep_mode_and_codebook(batch):
    torch.manual_seed(0)
    lam = VQLAM(VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8))).train()
    lam(batch.o[:64], batch.o_next[:64])  # one EMA update so the codebook is data-driven
    before = lam.codebook.clone()
    r = pixel.swap_psnr(lam, batch)
    c = pixel.consistency_loss(lam, batch)
    assert all(math.isfinite(v) for v in r.values()) and 0.0 <= c["flip_rate"] <= 1.0
    assert lam.training and all(m.training for m in lam.modules())
    assert torch.equal(before, lam.codebook)


def test_missing_paired_view_raises(batch):
    from exolam.errors import ConfigError

    bare = batch.replace(o_alt=None, o_next_alt=None)
    with pytest.raises(ConfigError, match="o_alt"):
        pixel.swap_psnr(ToyLAM(_ignores_next, lambda o, z: o), bare)
