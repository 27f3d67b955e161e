import pytest
import torch

from exolam.envs.linear import LinearEnvConfig, make_linear_exbmdp, transition_matrix
from exolam.errors import ConfigError

SMALL = dict(d_o=32, n_traj=60, n_test_traj=20, traj_len=6)


def test_no_exogenous_noise_when_p_switch_is_zero():
    env = make_linear_exbmdp(LinearEnvConfig(p_switch=0.0, **SMALL), seed=0)
    b = env.transitions("train")
    assert torch.equal(b.xi, b.xi_next)
    eps = b.o_next - b.o - b.q  # Eq. (7): o' = o + q + eps
    assert eps.abs().max() < 1e-4


def test_q_is_H_xi_times_a_and_eps_is_exogenous():
    env = make_linear_exbmdp(LinearEnvConfig(p_switch=0.7, **SMALL), seed=1)
    b = env.transitions("test")
    H = env.H
    q = torch.einsum("bos,bs->bo", H[b.xi], b.a)
    assert torch.allclose(b.q, q, atol=1e-5)
    eps = torch.einsum("bos,bs->bo", H[b.xi_next] - H[b.xi], b.s_next)  # Eq. (11)
    assert torch.allclose(b.o_next - b.o - b.q, eps, atol=1e-4)
    assert (b.xi != b.xi_next).any()


def test_paired_views_share_state_under_another_xi():
    env = make_linear_exbmdp(LinearEnvConfig(p_switch=0.5, **SMALL), seed=2)
    b = env.transitions("train")
    assert (env.xi_alt != env.xi).all()  # Def. 4.5: xi~ != xi
    assert torch.allclose(b.o_alt, torch.einsum("bos,bs->bo", env.H[env.xi_alt[: len(b)]], b.s), atol=1e-5)
    assert torch.allclose(b.o_next_alt, torch.einsum("bos,bs->bo", env.H[env.xi_next_alt[: len(b)]], b.s_next), atol=1e-5)


def test_switch_rate_matches_p_switch_and_trajectories_chain():
    cfg = LinearEnvConfig(p_switch=0.3, d_o=16, n_traj=3000, n_test_traj=10, traj_len=5)
    env = make_linear_exbmdp(cfg, seed=3)
    rate = (env.xi != env.xi_next).float().mean()
    assert abs(rate - 0.3) < 0.02
    s = env.s.view(-1, 5, cfg.d_s)
    assert torch.allclose(s[:, 1:], (s + env.a.view(-1, 5, cfg.d_s))[:, :-1], atol=1e-5)  # s_{t+1} = s_t + a_t


def test_transition_matrix_rows_are_distributions():
    T = transition_matrix(4, 0.6)
    assert torch.allclose(T.sum(1), torch.ones(4, dtype=T.dtype))
    assert T[0, 0] == pytest.approx(0.4) and T[0, 1] == pytest.approx(0.2)


def test_same_seed_same_data_and_alpha_changes_only_R():
    a = make_linear_exbmdp(LinearEnvConfig(**SMALL), seed=5)
    b = make_linear_exbmdp(LinearEnvConfig(**SMALL), seed=5)
    assert torch.equal(a.s, b.s) and torch.equal(a.H, b.H) and torch.equal(a.xi_next_alt, b.xi_next_alt)
    c = make_linear_exbmdp(LinearEnvConfig(alpha=0.0, **SMALL), seed=5)
    assert torch.allclose(c.H[0], c.H[1])  # alpha = 0: the emission ignores xi
    assert torch.equal(c.s, a.s)


@pytest.mark.parametrize("field,value", [("p_switch", 1.5), ("p_switch", -0.1), ("alpha", -1.0),
                                         ("p_switch", float("nan")), ("d_o", 0), ("n_traj", -3)])
def test_bad_config_names_the_field(field, value):
    with pytest.raises(ConfigError, match=field):
        LinearEnvConfig(**{field: value}).validate()


def test_one_exogenous_state_cannot_switch():
    with pytest.raises(ConfigError, match="n_xi"):
        LinearEnvConfig(n_xi=1, p_switch=0.5).validate()


def test_two_states_alternating_deterministically_leak_nothing():
    """Design note: at n_xi = 2 and p_switch = 1, xi' is a function of xi, so Var_xi'(z) = 0."""
    from exolam.metrics.latent import leakage_var

    env = make_linear_exbmdp(LinearEnvConfig(n_xi=2, p_switch=1.0, **SMALL), seed=0)
    o, o_next, w = env.views_over_xi_next("test")
    assert leakage_var(lambda a, b: b[:, :4], o, o_next, w) < 1e-12


def test_exogenous_energy_obeys_remark_4_3_on_the_generator():
    from exolam.metrics.latent import exo_energy

    env = make_linear_exbmdp(LinearEnvConfig(p_switch=0.4, n_xi=3, **SMALL), seed=4)
    b = env.transitions("train")
    same = env.render(b.s_next, b.xi)  # h(s', xi)
    per_xi = torch.stack([env.render(b.s_next, torch.full_like(b.xi, k)) for k in range(3)])
    delta_h = (per_xi[:, None] - per_xi[None]).pow(2).sum(-1).amax((0, 1))  # Eq. (13)
    out = exo_energy(same, b.o_next, b.xi != b.xi_next, delta_h)
    eps2 = (b.o_next - b.o - b.q).pow(2).sum(-1).mean()
    assert abs(out["energy"] - float(eps2)) / float(eps2) < 1e-4  # Eq. (11): eps = h(s',xi') - h(s',xi)
    assert abs(out["switch_freq"] - 0.4) < 0.05 and out["energy"] <= out["bound"]  # Eq. (12), (14)
