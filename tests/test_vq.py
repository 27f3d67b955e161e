"""The practical VQ LAM (Sec. 5, App. C Table 2): shapes, quantization, learning, bf16, channels_last."""

import dataclasses

import pytest
import torch

from exolam.errors import ConfigError
from exolam.models.base import IDMOutput
from exolam.models.vq import VQLAM, VQLAMConfig
from exolam.runs.files import from_jsonable, to_jsonable

torch.set_num_threads(1)

SMALL = VQLAMConfig(idm_channels=(16, 16), idm_hidden=32, d_z=8, codebook_size=5, fdm_channels=(8, 8, 8, 8))


def _batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 1, 4, 4, generator=g)
    o_next = torch.rand(n, 1, 4, 4, generator=g)
    return o, o_next


def _recon_loss(lam, o, o_next):
    pred, out = lam(o, o_next)
    return (pred.float() - o_next).pow(2).flatten(1).sum(1).mean(), out.loss


def test_shapes_at_paper_size():
    torch.manual_seed(0)
    lam = VQLAM()
    o, o_next = _batch(8)
    out = lam.idm(o, o_next)
    assert isinstance(out, IDMOutput)
    assert out.z.shape == (8, 32) and out.z_pre.shape == (8, 32)
    assert out.codes.shape == (8,) and out.codes.dtype == torch.int64
    assert out.loss.shape == () and torch.isfinite(out.loss)
    assert lam.fdm(o, out.z).shape == o.shape
    assert lam.decode(o, lam.encode(o, o_next)).shape == o.shape
    assert lam.codebook.shape == (5, 32)


def test_codes_in_range_and_z_is_a_codebook_row():
    torch.manual_seed(0)
    lam = VQLAM(SMALL).eval()
    o, o_next = _batch(64)
    out = lam.idm(o, o_next)
    assert ((out.codes >= 0) & (out.codes < SMALL.codebook_size)).all()
    assert torch.allclose(out.z, lam.codebook[out.codes])
    # the code is the nearest codebook row to z_pre
    nearest = torch.cdist(out.z_pre, lam.codebook).argmin(1)
    assert torch.equal(nearest, out.codes)
    # eval loss is beta * commitment, not the library's silent zero
    expected = SMALL.commitment * (out.z_pre - out.z).pow(2).mean()
    assert out.loss.item() == pytest.approx(expected.item(), rel=1e-5) and out.loss.item() > 0


def test_training_quantized_z_passes_gradient_to_idm():
    torch.manual_seed(0)
    lam = VQLAM(SMALL).train()
    o, o_next = _batch(16)
    recon, vq_loss = _recon_loss(lam, o, o_next)
    recon.backward()
    assert lam.idm_net.mlp[-1].weight.grad is not None and lam.idm_net.mlp[-1].weight.grad.abs().sum() > 0


def test_no_grad_never_moves_the_codebook():
    torch.manual_seed(0)
    lam = VQLAM(SMALL).train()
    o, o_next = _batch(32)
    before = lam.codebook.clone()
    with torch.no_grad():
        lam.idm(o, o_next)
    assert torch.equal(before, lam.codebook)
    lam.idm(o, o_next)  # training with autograd on: the EMA update runs
    assert not torch.equal(before, lam.codebook)


def test_adam_steps_lower_recon_loss():
    torch.manual_seed(0)
    lam = VQLAM(SMALL).train()
    o, o_next = _batch(16)
    opt = torch.optim.Adam(lam.parameters(), lr=3e-3)
    with torch.no_grad():
        start, _ = _recon_loss(lam, o, o_next)
    for _ in range(40):
        recon, vq_loss = _recon_loss(lam, o, o_next)
        opt.zero_grad()
        (recon + vq_loss).backward()
        opt.step()
    with torch.no_grad():
        end, _ = _recon_loss(lam, o, o_next)
    assert end < 0.5 * start


def test_bf16_autocast_and_channels_last():
    torch.manual_seed(0)
    lam = VQLAM(SMALL).train().to(memory_format=torch.channels_last)
    o, o_next = (x.contiguous(memory_format=torch.channels_last) for x in _batch(16))
    opt = torch.optim.Adam(lam.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            recon, vq_loss = _recon_loss(lam, o, o_next)
        assert torch.isfinite(recon) and torch.isfinite(vq_loss)
        opt.zero_grad()
        (recon + vq_loss).backward()
        opt.step()
        losses.append(recon.item())
    assert losses[-1] < losses[0]
    with torch.autocast("cpu", dtype=torch.bfloat16), torch.no_grad():
        out = lam.eval().idm(o, o_next)
        pred = lam.fdm(o, out.z)
    assert pred.shape == o.shape and ((out.codes >= 0) & (out.codes < 5)).all()


@pytest.mark.parametrize(
    "field, value",
    [("d_z", 0), ("codebook_size", -1), ("commitment", -0.5), ("image_size", 5), ("fdm_channels", (32, 32)),
     ("idm_channels", ()), ("ema_decay", 1.0), ("codebook_update", "kmeans")],
)
def test_bad_config_raises(field, value):
    with pytest.raises(ConfigError, match=field):
        VQLAM(VQLAMConfig(**{field: value}))


def test_codebook_loss_is_the_vq_vae_term():
    """codebook_update='loss': grad wrt e_k of ||sg(z_e) - e_k||^2 (weight 1), wrt z_e of beta ||z_e - sg(e_k)||^2."""
    torch.manual_seed(0)
    lam = VQLAM(dataclasses.replace(SMALL, codebook_update="loss")).train()
    o, o_next = _batch(32)
    out = lam.idm(o, o_next)
    out.z_pre.retain_grad()
    out.loss.backward()
    e = lam.codebook.detach()
    e_k, z_e = e[out.codes], out.z_pre.detach()
    n = z_e.numel()
    want_e = torch.zeros_like(e).index_add_(0, out.codes, 2 * (e_k - z_e) / n)
    grads = [p.grad for n_, p in lam.vq.named_parameters() if p.grad is not None]
    assert len(grads) == 1
    torch.testing.assert_close(grads[0].reshape(e.shape), want_e)
    torch.testing.assert_close(out.z_pre.grad, SMALL.commitment * 2 * (z_e - e_k) / n)


def test_codebook_ema_and_loss_learn():
    """Both codebook updates move the codebook during training; the EMA one never by gradient."""
    for update in ("ema", "loss"):
        torch.manual_seed(0)
        lam = VQLAM(dataclasses.replace(SMALL, codebook_update=update)).train()
        before = lam.codebook.detach().clone()
        opt = torch.optim.Adam(lam.parameters(), lr=1e-2)
        o, o_next = _batch(32)
        for _ in range(5):
            recon, vq_loss = _recon_loss(lam, o, o_next)
            opt.zero_grad()
            (recon + vq_loss).backward()
            opt.step()
        assert not torch.allclose(lam.codebook, before)
        assert any(p.requires_grad for p in lam.vq.parameters()) == (update == "loss")


def test_late_field_leaves_old_specs_unchanged():
    """codebook_update at its default is not written, so checkpoints from before it still resume."""
    assert "codebook_update" not in to_jsonable(VQLAMConfig())
    assert to_jsonable(VQLAMConfig(codebook_update="loss"))["codebook_update"] == "loss"
    assert from_jsonable(VQLAMConfig, to_jsonable(VQLAMConfig())) == VQLAMConfig()
    with pytest.raises(ConfigError, match="ema_decay"):
        VQLAM(VQLAMConfig(codebook_update="loss", ema_decay=0.99))
