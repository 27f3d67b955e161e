import torch

from exolam.metrics.latent import consistency_var, exo_energy, leakage_var, probe_nmse, weighted_variance_ratio


def test_probe_nmse_known_answers():
    g = torch.Generator().manual_seed(0)
    a_tr, a_te = torch.randn(2000, 8, generator=g), torch.randn(1000, 8, generator=g)
    assert probe_nmse(a_tr, a_tr, a_te, a_te) < 1e-10  # z = a
    M = torch.randn(8, 8, generator=g)
    assert probe_nmse(a_tr @ M + 3, a_tr, a_te @ M + 3, a_te) < 1e-10  # invertible affine map of a
    z_tr, z_te = torch.randn(2000, 8, generator=g), torch.randn(1000, 8, generator=g)
    assert abs(probe_nmse(z_tr, a_tr, z_te, a_te) - 1.0) < 0.03  # independent z
    half = probe_nmse(a_tr[:, :4], a_tr, a_te[:, :4], a_te)  # z holds half the action dims
    assert abs(half - 0.5) < 0.03


def test_weighted_variance_ratio_known_values():
    z = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]])  # two views of one sample
    w = torch.tensor([[0.5], [0.5]])
    # Var = 0.5*1 + 0.5*1 = 1; E||z||^2 = 0.5*1 + 0.5*9 = 5
    assert abs(weighted_variance_ratio(z, w) - 0.2) < 1e-12
    assert weighted_variance_ratio(z, torch.tensor([[1.0], [0.0]])) == 0.0


def test_leakage_zero_for_encoder_blind_to_future_xi_and_positive_otherwise():
    g = torch.Generator().manual_seed(1)
    o = torch.randn(50, 6, generator=g)
    o_next = torch.randn(3, 50, 6, generator=g)
    w = torch.full((3, 50), 1 / 3)
    assert leakage_var(lambda a, b: a[:, :2], o, o_next, w) < 1e-12
    assert leakage_var(lambda a, b: b[:, :2], o, o_next, w) > 0.3
    assert consistency_var(lambda a, b: b[:, :2] * 0 + 1, o_next, o_next, w) < 1e-12


def test_exo_energy_splits_into_frequency_times_sensitivity():
    same = torch.zeros(4, 2)
    other = torch.tensor([[1.0, 1.0], [0, 0], [2.0, 0], [0, 0]])
    switched = torch.tensor([True, False, True, False])
    out = exo_energy(same, other, switched, delta_h=torch.full((4,), 4.0))
    assert out["switch_freq"] == 0.5 and out["sensitivity"] == 3.0
    assert abs(out["energy"] - out["switch_freq"] * out["sensitivity"]) < 1e-12  # Eq. (12)
    assert out["energy"] <= out["bound"]  # Eq. (14)
