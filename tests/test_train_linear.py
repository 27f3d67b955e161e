import pytest
import torch

from exolam.data.sampling import TensorSource, batch_indices
from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp
from exolam.errors import ConfigError
from exolam.models.linear import LinearParams
from exolam.objectives import Objective
from exolam.objectives import term_weights
from exolam.train import engine
from exolam.train.linear import (Diverged, LinearTrainConfig, _Stacked, feature_blocks, linear_grads,
                                 train_linear_ensemble)

CFG = LinearEnvConfig(d_s=4, d_o=24, n_xi=3, p_switch=0.5, n_traj=100, n_test_traj=10, traj_len=4)
SPECS = ["lam", "lam+xexo:0.5", "lam+robust-action:2", "lam+robust-q:0.3"]
WEIGHTS = torch.tensor([term_weights(s) for s in SPECS])


def _objective(spec, p: LinearParams, m):
    obj = Objective(spec, p.B.shape[-1], {"action": CFG.d_s, "q": CFG.d_o})
    with torch.no_grad():
        for name, W in (("action", p.W_a), ("q", p.W_q)):
            if name in obj.heads:
                obj.heads[name].weight.copy_(W[m])
    return obj


def test_closed_form_gradients_match_autograd():
    envs = [make_linear_exbmdp(CFG, seed=s) for s in range(4)]
    p = LinearParams.init([0, 1, 2, 3], CFG.d_o, 3, CFG.d_s)
    idx = torch.randint(400, (4, 16), generator=torch.Generator().manual_seed(0))
    data = _Stacked.from_envs(envs)
    at = feature_blocks({"lam", "xexo", "robust-action", "robust-q"}, CFG.n_xi * CFG.d_s, CFG.d_s)
    X = data.features(idx, tuple(at))
    parts, grads = linear_grads(p, data.H_cat, X, at, WEIGHTS)
    for m, spec in enumerate(SPECS):
        lam, obj = p.select(m), _objective(spec, p, m)
        batch = envs[m].transitions(idx=idx[m])
        views = {"o": batch.o, "o'": batch.o_next, "o~": batch.o_alt, "o~'": batch.o_next_alt, "q": batch.q}
        assert all(torch.allclose(X[m, :, at[v]] @ data.H_cat[m], x, atol=1e-5) for v, x in views.items())
        assert torch.equal(X[m, :, at["a"]], batch.a)
        loss, _ = obj(lam, batch)
        loss.backward()
        assert torch.allclose((parts[m] * WEIGHTS[m]).sum(), loss.detach(), rtol=1e-5)
        assert torch.allclose(grads[0][m], lam.A.grad, atol=1e-4, rtol=1e-4)
        assert torch.allclose(grads[1][m], lam.B.grad, atol=1e-4, rtol=1e-4)
        assert torch.allclose(grads[2][m], torch.cat([lam.C.grad, lam.D.grad], 1), atol=1e-4, rtol=1e-4)
        for j, name in ((3, "action"), (4, "q")):
            if name in obj.heads:
                assert torch.allclose(grads[j][m], obj.heads[name].weight.grad, atol=1e-4, rtol=1e-4)
            else:
                assert not grads[j][m].any()


def test_ensemble_equals_one_by_one():
    """Each model of an ensemble follows the run the engine trains alone with the same seed."""
    train = LinearTrainConfig(d_z=3, steps=150, batch_size=32, lr=1e-3)
    envs = [make_linear_exbmdp(CFG, seed=s % 2) for s in range(4)]
    seeds = [0, 1, 0, 1]
    params, _ = train_linear_ensemble(envs, SPECS, seeds, train)
    for m, spec in enumerate(SPECS):
        p0 = LinearParams.init([seeds[m]], CFG.d_o, 3, CFG.d_s)
        lam, obj = p0.select(0), _objective(spec, p0, 0)
        data = envs[m].transitions("train")
        cfg = engine.TrainConfig(steps=train.steps, batch_size=train.batch_size, lr=train.lr, grad_clip=1e30,
                                 precision="32")  # the engine's autograd loop is the reference (no clipping)
        engine.fit(engine.make_fabric(cfg), lam, obj, TensorSource(data, seeds[m], cfg.steps, cfg.batch_size), cfg,
                   spec={})
        ens = params.select(m)
        for name in "ABCD":
            assert torch.allclose(getattr(ens, name), getattr(lam, name), atol=2e-4), (spec, name)


def test_training_is_deterministic_and_lowers_the_loss():
    envs = [make_linear_exbmdp(CFG, seed=0)]
    train = LinearTrainConfig(d_z=3, steps=300, batch_size=32, lr=3e-3)
    p1, parts1 = train_linear_ensemble(envs, ["lam"], [7], train)
    p2, parts2 = train_linear_ensemble(envs, ["lam"], [7], train)
    assert all(torch.equal(a, b) for a, b in zip(p1.tensors(), p2.tensors()))
    first = LinearParams.init([7], CFG.d_o, 3, CFG.d_s)
    b = envs[0].transitions("train")
    with torch.no_grad():
        before = Objective("lam", 3)(first.select(0), b)[0]
        after = Objective("lam", 3)(p1.select(0), b)[0]
    assert after < 0.5 * before


def test_batch_stream_depends_on_seed_only():
    a = torch.stack(list(batch_indices(3, 100, 5, 8)))
    b = torch.stack(list(batch_indices(3, 100, 5, 8, start=2)))
    c = torch.stack(list(batch_indices(4, 100, 5, 8)))
    assert torch.equal(a, torch.stack(list(batch_indices(3, 100, 5, 8)))) and not torch.equal(a, c)
    assert a.shape == (5, 8) and torch.equal(b, a[2:])  # a resumed stream continues the same rows


def test_flat_adam_is_torch_adam_element_for_element():
    from exolam.train.linear import FlatAdam

    g = torch.Generator().manual_seed(0)
    ts = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    ref = [t.clone().requires_grad_() for t in ts]
    opt_ref = torch.optim.Adam(ref, lr=1e-2, foreach=True)
    flat = FlatAdam(ts, lr=1e-2)
    for _ in range(25):
        grads = [torch.randn(t.shape, generator=g) for t in ts]
        for r, gr, fg in zip(ref, grads, flat.grads):
            r.grad = gr.clone()
            fg.copy_(gr)
        opt_ref.step()
        with torch.no_grad():
            flat.step()
    assert all(torch.equal(r.detach(), f) for r, f in zip(ref, flat.params))


def test_divergence_ends_with_one_error_naming_the_learning_rate():
    envs = [make_linear_exbmdp(CFG, seed=0)]
    for lr in (1e12, 50.0):
        with pytest.raises(Diverged, match="train.lr") as e:
            train_linear_ensemble(envs, ["lam"], [0], LinearTrainConfig(d_z=3, steps=200, batch_size=16, lr=lr))
        assert e.value.model == 0


def test_robust_flow_is_refused_by_the_linear_ensemble():
    env = make_linear_exbmdp(CFG, seed=0)
    with pytest.raises(ConfigError, match="robust-flow: the linear ensembles have no image frames"):
        train_linear_ensemble([env], ["lam+robust-flow:1"], [0], LinearTrainConfig(d_z=3, steps=5, batch_size=8))
