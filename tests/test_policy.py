"""App. D downstream policies (models/policy.py): pi(z|o), pi_Dec(a|z), pi_BC(a|o), their objectives
under the engine (training, checkpoint, resume, exolam.load) and the acting wrappers."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

import exolam
from exolam.data.sampling import TensorSource
from exolam.data.transitions import Transitions
from exolam.errors import ConfigError
from exolam.models.lapo import LapoLAM, LapoLAMConfig
from exolam.models.policy import (ActionDecoder, BCObjective, ConvPolicy, DecoderConfig, DecoderObjective,
                                  LatentPolicyObjective, PolicyConfig, bc_policy, latent_action_policy)
from exolam.objectives import sq_err
from exolam.runs.files import to_jsonable
from exolam.train import engine

torch.set_num_threads(1)
FRAME = 16
POLICY = PolicyConfig(image_size=FRAME, channels=(8, 8), hidden=32, out_dim=8)
BC = PolicyConfig(image_size=FRAME, channels=(8, 8), hidden=32, out_dim=6)
DECODER = DecoderConfig(d_z=8, d_a=6, hidden=32)
LAM = LapoLAMConfig(image_size=FRAME, idm_channels=(8,), fdm_channels=(8, 8), d_z=8)


def _batch(n=12, seed=0, labelled=None) -> Transitions:
    g = torch.Generator().manual_seed(seed)
    o = torch.rand(n, 3, FRAME, FRAME, generator=g)
    o_next = torch.rand(n, 3, FRAME, FRAME, generator=g)
    a = torch.rand(n, 6, generator=g) * 2 - 1
    mask = torch.ones(n, dtype=torch.bool) if labelled is None else labelled
    return Transitions(o=o, o_next=o_next, a=a, label_mask=mask)


def _lam() -> LapoLAM:
    torch.manual_seed(1)
    return LapoLAM(LAM)


def test_shapes_and_relu6_head_bounds():
    torch.manual_seed(0)
    pi, dec = ConvPolicy(POLICY), ActionDecoder(DECODER)
    o = _batch(5).o
    assert pi(o).shape == (5, 8) and dec(pi(o)).shape == (5, 6)
    assert ConvPolicy().cfg == PolicyConfig() and ConvPolicy()(torch.rand(2, 3, 64, 64)).shape == (2, 8)
    with torch.no_grad():  # large weights saturate the ReLU6 hidden layer at both ends
        for p in pi.parameters():
            p.mul_(50)
        h = pi.features(o)
    assert h.shape == (5, 32) and h.min() == 0 and h.max() == 6
    assert pi(o).abs().max() > 6  # the output layer itself is linear (z is unbounded)


@pytest.mark.parametrize("cfg, field", [
    (PolicyConfig(hidden=0), "policy.hidden"), (PolicyConfig(channels=()), "policy.channels"),
    (PolicyConfig(channels=(8, -1)), r"policy.channels\[1\]"), (PolicyConfig(out_dim=1.5), "policy.out_dim"),
    (DecoderConfig(d_a=0), "decoder.d_a"), (DecoderConfig(d_z=True), "decoder.d_z"),
])
def test_config_errors_name_the_field(cfg, field):
    with pytest.raises(ConfigError, match=field):
        cfg.validate()


def test_bc_loss_zero_on_own_outputs_and_masked_rows_ignored():
    torch.manual_seed(0)
    pi_bc, obj = ConvPolicy(BC), BCObjective()
    b = _batch()
    b = b.replace(a=pi_bc(b.o).detach())
    loss, parts = obj(pi_bc, b)
    assert loss.item() == 0.0 and set(parts) == {"bc"}
    mask = torch.arange(12) % 3 == 0
    ref, _ = obj(pi_bc, _batch(labelled=mask))
    a = _batch(labelled=mask).a.clone()
    a[~mask] += 10.0
    moved, _ = obj(pi_bc, _batch(labelled=mask).replace(a=a))
    assert moved.item() == ref.item() > 0


def test_decoder_objective_known_answer_and_mask():
    torch.manual_seed(0)
    lam, dec = _lam(), ActionDecoder(DECODER)
    obj = DecoderObjective(lam)
    mask = torch.tensor([True, False] * 6)
    b = _batch(labelled=mask)
    with torch.no_grad():
        exact = torch.where(mask[:, None], dec(lam.encode(b.o, b.o_next)), b.a + 5.0)  # unlabelled rows wrong
    loss, parts = obj(dec, b.replace(a=exact))
    assert loss.item() == 0.0 and set(parts) == {"decoder"}
    ref, _ = obj(dec, b)
    a = b.a.clone()
    a[~mask] = -a[~mask]
    assert obj(dec, b.replace(a=a))[0].item() == ref.item() > 0


class _Oracle(nn.Module):
    """A 'policy' that knows o': outputs the LAM's own z, so L_pi must be exactly 0."""

    def __init__(self, lam, o_next):
        super().__init__()
        self.lam_ref, self.o_next, self.bias = (lam,), o_next, nn.Parameter(torch.zeros(8))

    def forward(self, o):
        return self.lam_ref[0].encode(o, self.o_next).detach() + self.bias


def test_latent_policy_objective_target_is_the_frozen_idm():
    torch.manual_seed(0)
    lam, pi = _lam(), ConvPolicy(POLICY)
    lam.train()
    obj = LatentPolicyObjective(lam)
    assert not lam.training  # put in eval mode
    b = _batch()
    assert obj(_Oracle(lam, b.o_next), b)[0].item() == 0.0
    loss, parts = obj(pi, b)
    with torch.no_grad():
        assert torch.allclose(loss, sq_err(pi(b.o), lam.encode(b.o, b.o_next))) and set(parts) == {"policy"}
    loss.backward()
    assert all(p.grad is None for p in lam.parameters())
    assert all(p.grad is not None for p in pi.parameters())
    assert list(obj.parameters()) == [] and obj.state_dict() == {} and lam not in list(obj.modules())
    trainee = engine.Trainee(pi, obj)
    trainee.train()
    assert not lam.training and {id(p) for p in trainee.parameters()} == {id(p) for p in pi.parameters()}


def test_acting_wrappers_clip_and_return_float32_numpy():
    torch.manual_seed(0)
    pi, dec, pi_bc = ConvPolicy(POLICY), ActionDecoder(DECODER), ConvPolicy(BC)
    with torch.no_grad():
        for p in dec.net[-1].parameters():
            p.mul_(100)
    o = _batch(4).o
    a = latent_action_policy(pi, dec)(o)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (4, 6)
    assert np.abs(a).max() == 1.0  # clipped
    with torch.no_grad():
        np.testing.assert_array_equal(a, dec(pi(o)).clamp(-1, 1).numpy())
        np.testing.assert_array_equal(bc_policy(pi_bc)(o), pi_bc(o).clamp(-1, 1).numpy())
    assert not (pi.training or dec.training or pi_bc.training)


def _fit(tmp, model, objective, data, steps, save_every=100, hooks=()):
    cfg = engine.TrainConfig(steps=steps, batch_size=16, lr=1e-3, precision="32", save_every=save_every,
                             log_every=0)
    source = TensorSource(data, 0, steps, cfg.batch_size)
    return engine.fit(engine.make_fabric(cfg, "cpu"), model, objective, source, cfg, spec={"test": "policy"},
                      ckpt=tmp / "ckpt", hooks=hooks)


def test_engine_trains_bc_and_exolam_load_rebuilds_it(tmp_path):
    torch.manual_seed(0)
    data = _batch(48, seed=3)
    data = data.replace(a=torch.tanh(4 * (data.o.mean((2, 3)) - 0.5)).repeat(1, 2))  # a function of o
    pi_bc, obj = ConvPolicy(BC), BCObjective()
    with torch.no_grad():
        before = obj(pi_bc, data)[0].item()
    _fit(tmp_path, pi_bc, obj, data, 40)
    with torch.no_grad():
        after = obj(pi_bc, data)[0].item()
    assert after < 0.5 * before
    loaded = exolam.load(tmp_path / "ckpt")
    assert isinstance(loaded, ConvPolicy) and loaded.cfg == BC and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(data.o), pi_bc(data.o))
    meta = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert meta["objective"] == "bc:1" and meta["model"]["class"] == "exolam.models.policy.ConvPolicy"


def test_decoder_checkpoint_resume_matches_uninterrupted(tmp_path):
    data = _batch(40, seed=4, labelled=torch.arange(40) % 4 == 0)
    lam = _lam()
    lam_state = {k: v.clone() for k, v in lam.state_dict().items()}

    def run(out, hooks=()):
        torch.manual_seed(2)
        dec = ActionDecoder(DECODER)
        return dec, _fit(out, dec, DecoderObjective(lam), data, 12, save_every=6, hooks=hooks)

    full, _ = run(tmp_path / "full")

    def crash(step, model):
        if step == 8:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "part", hooks=[crash])
    assert json.loads((tmp_path / "part" / "ckpt" / "config.json").read_text())["step"] == 6
    resumed, result = run(tmp_path / "part")
    assert result.start == 6
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), k
    assert all(torch.equal(v, lam.state_dict()[k]) for k, v in lam_state.items())  # the LAM never moved
    ck = tmp_path / "part" / "ckpt"
    assert set(load_file(ck / "model.safetensors")) == set(full.state_dict())  # no LAM weights saved
    assert load_file(ck / "training_state" / "objective.safetensors") == {}
    loaded = exolam.load(ck)
    assert isinstance(loaded, ActionDecoder) and loaded.cfg == DECODER


def test_latent_policy_through_the_engine(tmp_path):
    torch.manual_seed(0)
    lam, pi = _lam(), ConvPolicy(POLICY)
    _fit(tmp_path, pi, LatentPolicyObjective(lam), _batch(32, seed=5), 4)
    loaded = exolam.load(tmp_path / "ckpt")
    assert isinstance(loaded, ConvPolicy) and loaded.cfg == POLICY
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["objective"] == "policy:1"


def test_standardized_decoder_feeds_the_mlp_the_standardized_input(tmp_path):
    """Known answer: the MLP sees (z - mean) / std with the rows' own mean and std; the buffers are saved
    and `exolam.load` rebuilds them; the flag stays out of a plain decoder's spec (old checkpoints resume)."""
    z = torch.tensor([[1.0, 0.0, 5.0], [3.0, 8.0, 5.0]])  # mean (2, 4, 5), std (1, 4, 0 -> 1e-6)
    dec = ActionDecoder(DecoderConfig(d_z=3, d_a=2, standardize=True)).standardize_by(z)
    assert torch.allclose(dec.mean, torch.tensor([2.0, 4.0, 5.0])) and torch.allclose(dec.std, torch.tensor([1.0, 4.0, 1e-6]))
    seen = []
    dec.net.register_forward_hook(lambda m, inp, out: seen.append(inp[0]))
    dec(z)
    assert torch.allclose(seen[0], torch.tensor([[-1.0, -1.0, 0.0], [1.0, 1.0, 0.0]]))
    assert {"mean", "std"} <= set(dec.state_dict())
    assert "standardize" not in to_jsonable(DecoderConfig()) and to_jsonable(dec.cfg)["standardize"] is True
    with pytest.raises(ConfigError, match="standardize=False"):
        ActionDecoder(DecoderConfig(d_z=3)).standardize_by(z)
