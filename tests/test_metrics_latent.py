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


def test_probe_nmse_given_o_known_answers_and_gauge_invariance():
    from exolam.metrics.latent import probe_nmse_given_o

    g = torch.Generator().manual_seed(2)
    n_tr, n_te = 4000, 2000
    o_tr, o_te = torch.randn(n_tr, 6, generator=g), torch.randn(n_te, 6, generator=g)
    a_tr, a_te = torch.randn(n_tr, 3, generator=g), torch.randn(n_te, 3, generator=g)
    # z = a: z supplies everything o lacks -> 0; z independent of a -> 1
    assert probe_nmse_given_o(a_tr, o_tr, a_tr, a_te, o_te, a_te) < 1e-10
    noise_tr, noise_te = torch.randn(n_tr, 3, generator=g), torch.randn(n_te, 3, generator=g)
    assert abs(probe_nmse_given_o(noise_tr, o_tr, a_tr, noise_te, o_te, a_te) - 1.0) < 0.01
    # z = a + F o: probe_nmse on z alone is fooled by the gauge, the companion is not
    F = torch.randn(3, 6, generator=g) * 3
    z_tr, z_te = a_tr + o_tr @ F.T, a_te + o_te @ F.T
    assert probe_nmse(z_tr, a_tr, z_te, a_te) > 0.5
    assert probe_nmse_given_o(z_tr, o_tr, a_tr, z_te, o_te, a_te) < 1e-10
    # half the action dims in z -> 0.5; unchanged under z -> z + F o
    half = probe_nmse_given_o(a_tr[:, :1], o_tr, a_tr, a_te[:, :1], o_te, a_te)
    moved = probe_nmse_given_o(a_tr[:, :1] + o_tr @ F[:1].T, o_tr, a_tr, a_te[:, :1] + o_te @ F[:1].T, o_te, a_te)
    assert abs(half - 2 / 3) < 0.03 and abs(half - moved) < 1e-9
    # where a depends on o, the denominator is what o leaves unexplained: z = that residual -> 0
    a2_tr, a2_te = o_tr[:, :3] + a_tr, o_te[:, :3] + a_te
    assert probe_nmse_given_o(a_tr, o_tr, a2_tr, a_te, o_te, a2_te) < 1e-10


def test_innovation_encoder_makes_variance_metrics_gauge_free():
    from exolam.metrics.latent import innovation_encoder

    g = torch.Generator().manual_seed(3)
    o_tr = torch.randn(500, 5, generator=g)
    o = torch.randn(40, 5, generator=g)
    o_next = torch.randn(3, 40, 5, generator=g)
    w = torch.full((3, 40), 1 / 3)
    F = torch.randn(2, 5, generator=g)
    enc = lambda a, b: b[:, :2] + 0.3 * a[:, 2:4]  # noqa: E731
    enc_g = lambda a, b: enc(a, b) + a @ F.T  # noqa: E731  same LAM, another gauge
    z_tr = enc(o_tr, torch.randn(500, 5, generator=g))
    r1 = innovation_encoder(enc, o_tr, z_tr)
    r2 = innovation_encoder(enc_g, o_tr, z_tr + o_tr @ F.T)
    assert abs(leakage_var(enc, o, o_next, w) - leakage_var(enc_g, o, o_next, w)) > 0.01  # the gauge moves it
    assert abs(leakage_var(r1, o, o_next, w) - leakage_var(r2, o, o_next, w)) < 1e-6
    views = torch.randn(3, 40, 5, generator=g)
    assert abs(consistency_var(r1, views, o_next, w) - consistency_var(r2, views, o_next, w)) < 1e-6


def test_probe_ignores_a_feature_never_seen_in_the_train_split():
    import torch

    from exolam.metrics.latent import probe_nmse

    g = torch.Generator().manual_seed(0)
    z_tr = torch.randn(200, 3, generator=g, dtype=torch.float64)
    z_tr[:, 2] = 0.0  # a code / grid cell the train split never shows
    a_tr = z_tr[:, :1] * 2
    z_te = torch.randn(50, 3, generator=g, dtype=torch.float64)
    nmse = probe_nmse(z_tr, a_tr, z_te, z_te[:, :1] * 2)
    assert 0 <= nmse < 1e-12
