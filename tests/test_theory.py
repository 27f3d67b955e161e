import torch

from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp
from exolam.metrics.latent import leakage_var
from exolam.objectives import Objective
from exolam.theory import cca, check_prop_4_8, lam_leakage_bound, lam_optimum, xexo_optimum
from exolam.train import LinearTrainConfig, train_linear_ensemble

SMALL = LinearEnvConfig(d_s=4, d_o=16, n_xi=3, p_switch=0.5, n_traj=400, n_test_traj=50, traj_len=5)


def _loss(lam, batch, spec="lam"):
    with torch.no_grad():
        return float(Objective(spec, lam.d_z)(lam.float(), batch)[0])


def test_closed_form_equals_trained_optimum_on_a_small_problem():
    env = make_linear_exbmdp(SMALL, seed=0)
    tr = env.transitions("train")
    lam_cf, loss_cf = lam_optimum(tr.o, tr.o_next, d_z=2)
    assert abs(_loss(lam_cf, tr) - loss_cf) / loss_cf < 1e-4  # reported loss is the model's loss
    w = torch.tensor([[1.0, 0, 0, 0]])
    params, _ = train_linear_ensemble([env], w, [0], LinearTrainConfig(d_z=2, steps=4000, batch_size=256, lr=3e-3))
    loss_sgd = _loss(params.select(0), tr)
    assert loss_cf <= loss_sgd * (1 + 1e-4)  # nothing beats the global optimum
    assert (loss_sgd - loss_cf) / loss_cf < 0.02  # and SGD reaches it


def test_xexo_closed_form_is_optimal_for_its_objective():
    env = make_linear_exbmdp(SMALL, seed=1)
    tr = env.transitions("train")
    lam_x, loss_x = xexo_optimum(tr.o, tr.o_next, tr.o_alt, tr.o_next_alt, d_z=2, lam_xexo=2.0)
    assert abs(_loss(lam_x, tr, "lam+xexo:2") - loss_x) / loss_x < 1e-4
    lam_v, _ = lam_optimum(tr.o, tr.o_next, d_z=2)
    assert loss_x <= _loss(lam_v, tr, "lam+xexo:2")
    w = torch.tensor([[1.0, 2.0, 0, 0]])
    params, _ = train_linear_ensemble([env], w, [0], LinearTrainConfig(d_z=2, steps=3000, batch_size=256, lr=3e-3))
    assert loss_x <= _loss(params.select(0), tr, "lam+xexo:2") * (1 + 1e-4)


def test_pure_xexo_recovers_cca_directions_under_whitening():
    """Prop. 4.6: with o independent of u and Sigma_uu = Sigma_u~u~ = I, BD spans the top CCA pairs."""
    g = torch.Generator().manual_seed(0)
    n, d, k = 20000, 6, 2
    shared = torch.randn(n, d, generator=g) * torch.tensor([0.95, 0.8, 0.5, 0.3, 0.1, 0.0])
    u = shared + torch.randn(n, d, generator=g) * (1 - torch.tensor([0.95, 0.8, 0.5, 0.3, 0.1, 0.0]) ** 2).sqrt()
    u_alt = shared + torch.randn(n, d, generator=g) * (1 - torch.tensor([0.95, 0.8, 0.5, 0.3, 0.1, 0.0]) ** 2).sqrt()
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g))
    u, u_alt = u @ Q.T, u_alt @ Q.T  # hide the canonical axes behind a rotation
    o = torch.randn(n, d, generator=g)
    o_alt = torch.randn(n, d, generator=g)
    lam, _ = xexo_optimum(o, o + u, o_alt, o_alt + u_alt, d_z=k, lam_xexo=1.0, include_lam=False)
    a_dirs, b_dirs, corr = cca(u, u_alt, k)
    assert corr[0] > corr[1] > 0.5
    P = (lam.B @ lam.D).detach().double()  # rank-k map from u~ to u (Eq. 17)
    def proj(M):  # orthogonal projection on the top-k column space
        U = torch.linalg.svd(M)[0][:, :k]
        return U @ U.T

    assert torch.allclose(proj(P), proj(a_dirs), atol=0.05)  # column space = top-k a_k
    assert torch.allclose(proj(P.T), proj(b_dirs), atol=0.05)  # row space = top-k b_k


def test_prop_4_2_optimal_z_depends_on_future_xi():
    env = make_linear_exbmdp(SMALL, seed=2)
    tr = env.transitions("train")
    lam = lam_optimum(tr.o, tr.o_next, d_z=2)[0].double()
    o, o_next, w = env.views_over_xi_next("test")
    enc = lambda a, b: lam.encode(a.double(), b.double())  # noqa: E731
    assert leakage_var(enc, o, o_next, w) > 0.05
    assert lam_leakage_bound(o, o_next, w, lam.B.detach()) > 0  # Eq. (24) gap
    env0 = make_linear_exbmdp(LinearEnvConfig(**{**SMALL.__dict__, "p_switch": 0.0}), seed=2)
    b0 = env0.transitions("train")
    lam0 = lam_optimum(b0.o, b0.o_next, d_z=2)[0].double()
    o, o_next, w = env0.views_over_xi_next("test")
    assert leakage_var(lambda a, b: lam0.encode(a.double(), b.double()), o, o_next, w) < 1e-20


def test_prop_4_8_bound_holds_for_action_and_q_targets():
    env = make_linear_exbmdp(SMALL, seed=3)
    b = env.transitions("test")
    g = torch.Generator().manual_seed(0)
    for y, y_alt in [(b.a, b.a), (b.q, env.render(b.a, env.xi_alt[env.split("test")]))]:
        C, D = torch.randn(2, 3, SMALL.d_o, generator=g) * 0.1
        W = torch.randn(y.shape[1], 3, generator=g)
        z, z_alt = b.o @ C.T + b.o_next @ D.T, b.o_alt @ C.T + b.o_next_alt @ D.T
        res = check_prop_4_8(z, z_alt, y, y_alt, W)
        assert res["lhs"] <= res["rhs_eq27"] + 1e-6
    assert res["eta"] > 0  # q is only eta-robust
