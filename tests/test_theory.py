import torch

from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp
from exolam.metrics.latent import leakage_var
from exolam.objectives import Objective
from exolam.theory import cca, check_prop_4_8, lam_leakage_bound, lam_optimum, xexo_optimum
from exolam.train.linear import LinearTrainConfig, train_linear_ensemble

SMALL = LinearEnvConfig(d_s=4, d_o=16, n_xi=3, p_switch=0.5, n_traj=400, n_test_traj=50, traj_len=5)


def _loss(lam, batch, spec="lam"):
    with torch.no_grad():
        return float(Objective(spec, lam.d_z)(lam.float(), batch)[0])


def test_closed_form_equals_trained_optimum_on_a_small_problem():
    env = make_linear_exbmdp(SMALL, seed=0)
    tr = env.transitions("train")
    lam_cf, loss_cf = lam_optimum(tr.o, tr.o_next, d_z=2)
    assert abs(_loss(lam_cf, tr) - loss_cf) / loss_cf < 1e-4  # reported loss is the model's loss
    params, _ = train_linear_ensemble([env], ["lam"], [0], LinearTrainConfig(d_z=2, steps=4000, batch_size=256, lr=3e-3))
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
    params, _ = train_linear_ensemble([env], ["lam+xexo:2"], [0], LinearTrainConfig(d_z=2, steps=3000, batch_size=256, lr=3e-3))
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


def _loss64(lam, batch, spec):
    b = batch.replace(**{k: v.double() for k, v in batch.fields().items() if v.is_floating_point()})
    with torch.no_grad():
        return float(Objective(spec, lam.d_z)(lam.double(), b)[0])


def test_canonical_gauge_keeps_the_loss_and_is_orthogonal_to_the_free_directions():
    from exolam.theory import free_directions

    env = make_linear_exbmdp(SMALL, seed=4)
    tr = env.transitions("train")
    raw, loss_raw = xexo_optimum(tr.o, tr.o_next, tr.o_alt, tr.o_next_alt, d_z=2, lam_xexo=1.0, canonical=False)
    can, loss_can = xexo_optimum(tr.o, tr.o_next, tr.o_alt, tr.o_next_alt, d_z=2, lam_xexo=1.0)
    assert loss_raw == loss_can
    l_raw, l_can = _loss64(raw, tr, "lam+xexo:1"), _loss64(can, tr, "lam+xexo:1")
    assert abs(l_raw - l_can) <= 1e-9 * l_raw and abs(l_can - loss_can) <= 1e-9 * l_can
    N = free_directions(tr.o, tr.o_alt)
    # on this generator the view-invariant part of o is s (P o = s): N^T o determines s linearly
    v = tr.o.double() @ N
    fit = torch.linalg.lstsq(v, tr.s.double()).solution
    assert (v @ fit - tr.s.double()).abs().max() < 1e-5 and N.shape[1] == SMALL.d_o - (SMALL.n_xi - 1) * SMALL.d_s
    o64, on64 = tr.o.double(), tr.o_next.double()
    with torch.no_grad():
        z_can, z_raw = can.encode(o64, on64), raw.encode(o64, on64)
    scale = z_can.pow(2).mean().sqrt() * v.pow(2).mean().sqrt()
    assert (z_can.T @ v / len(v)).abs().max() < 1e-7 * scale  # canonical z is orthogonal to them
    assert (z_raw.T @ v / len(v)).abs().max() > 1e-3 * scale  # the raw solution is not
    # L_LAM's optimum is already canonical: z uncorrelated with all of o
    van, _ = lam_optimum(tr.o, tr.o_next, d_z=2)
    with torch.no_grad():
        z = van.encode(o64, on64)
    assert (z.T @ o64 / len(o64)).abs().max() < 1e-7 * z.pow(2).mean().sqrt() * o64.pow(2).mean().sqrt()


def test_xexo_canonical_optimum_beats_lam_optimum_on_both_probes():
    """Issue 6: at the global optimum X-exo's z carries the action better than L_LAM's (p_switch > 0)."""
    from exolam.metrics.latent import probe_nmse, probe_nmse_given_o

    env = make_linear_exbmdp(SMALL, seed=5)
    tr, te = env.transitions("train"), env.transitions("test")
    got = {}
    for name, (m, _) in {"lam": lam_optimum(tr.o, tr.o_next, d_z=4),
                         "xexo": xexo_optimum(tr.o, tr.o_next, tr.o_alt, tr.o_next_alt, d_z=4, lam_xexo=1.0)}.items():
        with torch.no_grad():
            z_tr, z_te = m.encode(tr.o.double(), tr.o_next.double()), m.encode(te.o.double(), te.o_next.double())
        got[name] = (probe_nmse(z_tr, tr.a, z_te, te.a), probe_nmse_given_o(z_tr, tr.o, tr.a, z_te, te.o, te.a))
    assert got["xexo"][0] < got["lam"][0] - 0.1 and got["xexo"][1] < got["lam"][1] - 0.1, got
