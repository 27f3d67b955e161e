"""The grid world of Sec. 5: tour, policy, exogenous row, paired views, labels, determinism."""

import pytest
import torch

from exolam.envs import gridworld as gw
from exolam.errors import ConfigError

torch.set_num_threads(1)


def _data(sigma=0.5, n_train=2048, n_test=256, seed=0, label_fraction=0.01):
    cfg = gw.GridWorldConfig(sigma=sigma, n_train=n_train, n_test=n_test, seed=seed, label_fraction=label_fraction)
    return gw.make_dataset(cfg)


def test_tour_is_closed_hamiltonian_cycle_of_legal_moves():
    cells = gw.tour()
    assert len(cells) == 12 and len(set(cells)) == 12
    assert set(cells) == {(r, c) for r in range(3) for c in range(4)}
    for i, (r, c) in enumerate(cells):
        r2, c2 = cells[(i + 1) % 12]
        assert abs(r2 - r) + abs(c2 - c) == 1, f"step {i} is not a unit move"


def test_transitions_follow_the_tour_and_actions():
    train, _ = _data()
    order = [gw.cell_index(r, c) for r, c in gw.tour()]
    successor = {order[i]: order[(i + 1) % 12] for i in range(12)}
    assert all(successor[s] == s2 for s, s2 in zip(train.s.tolist(), train.s_next.tolist()))
    assert set(train.s.tolist()) == set(range(12))
    dr = torch.div(train.s_next, 4, rounding_mode="floor") - torch.div(train.s, 4, rounding_mode="floor")
    dc = train.s_next % 4 - train.s % 4
    deltas = torch.tensor(gw.ACTION_DELTAS)[train.a]
    assert torch.equal(deltas[:, 0], dr) and torch.equal(deltas[:, 1], dc)


def test_action_is_a_function_of_the_observation():
    train, test = _data()
    for split in (train, test):
        assert torch.equal(gw.policy_action(split.o), split.a)
    # equal observations imply equal actions
    flat = train.o.flatten(1)
    _, inverse = torch.unique(flat, dim=0, return_inverse=True)
    for k in inverse.unique():
        assert train.a[inverse == k].unique().numel() == 1


def test_frames_render_state_and_exogenous_row():
    train, _ = _data(sigma=0.5)
    top = train.o[:, 0, :3, :].reshape(-1, 12)
    assert torch.equal(top.sum(1), torch.ones(len(train)))
    assert torch.equal(top.argmax(1), train.s)
    assert torch.equal(train.o[:, 0, 3, :], train.xi)
    assert torch.equal(train.o_next[:, 0, 3, :], train.xi_next)
    assert train.o.dtype == torch.float32 and train.o.shape[1:] == (1, 4, 4)
    assert train.a.dtype == torch.int64 and train.s.dtype == torch.int64


def test_sigma_zero_gives_identical_paired_views():
    train, _ = _data(sigma=0.0)
    assert torch.equal(train.o, train.o_alt)
    assert torch.equal(train.o_next, train.o_next_alt)
    assert not train.o[:, 0, 3].any()


def test_exogenous_row_is_bernoulli_times_sigma():
    sigma = 0.6
    train, _ = _data(sigma=sigma, n_train=8192)
    for row in (train.xi, train.xi_next, train.o_alt[:, 0, 3], train.o_next_alt[:, 0, 3]):
        vals = row.unique().tolist()
        assert len(vals) == 2 and vals[0] == 0.0 and vals[1] == pytest.approx(sigma)
        assert abs(row.mean().item() - sigma / 2) < 0.01
    # fresh each frame: xi and xi' (and the two views) are uncorrelated
    corr = torch.corrcoef(torch.stack([train.xi[:, 0], train.xi_next[:, 0], train.o_alt[:, 0, 3, 0]]))
    assert corr[0, 1].abs() < 0.05 and corr[0, 2].abs() < 0.05
    assert gw.noise_floor(sigma) == pytest.approx(train.xi.var().item(), rel=0.03)


def test_paired_view_shares_the_state():
    train, _ = _data(sigma=0.5)
    assert torch.equal(train.o_alt[:, :, :3], train.o[:, :, :3])
    assert torch.equal(train.o_next_alt[:, :, :3], train.o_next[:, :, :3])
    assert not torch.equal(train.o_alt, train.o)  # the bottom rows were redrawn
    # q = h(s', xi) - h(s, xi): zero on the exogenous row, the move on the control region
    assert not train.q[:, 0, 3].any()
    assert torch.equal(train.q[:, :, :3], train.o_next[:, :, :3] - train.o[:, :, :3])


@pytest.mark.parametrize("n, frac, expected", [(2048, 0.01, 20), (256, 0.01, 3), (50, 0.01, 1), (100, 0.0, 0), (64, 1.0, 64)])
def test_label_mask_marks_round_fraction(n, frac, expected):
    train, test = _data(n_train=n, n_test=n, label_fraction=frac)
    assert train.label_mask.dtype == torch.bool
    assert int(train.label_mask.sum()) == expected == int(test.label_mask.sum())


def test_same_seed_same_data_other_seed_other_data():
    a_train, a_test = _data(seed=3)
    b_train, b_test = _data(seed=3)
    for x, y in ((a_train, b_train), (a_test, b_test)):
        for name, v in x.fields().items():
            assert torch.equal(v, getattr(y, name)), name
    c_train, _ = _data(seed=4)
    assert not torch.equal(a_train.o, c_train.o)
    # the test split does not depend on n_train
    _, d_test = _data(seed=3, n_train=512)
    assert torch.equal(a_test.o, d_test.o)


@pytest.mark.parametrize(
    "field, value",
    [("sigma", -0.1), ("sigma", 1.5), ("sigma", float("nan")), ("n_train", 0), ("n_test", 2.5),
     ("label_fraction", 1.2), ("seed", -1)],
)
def test_bad_config_raises_config_error_naming_the_field(field, value):
    cfg = gw.GridWorldConfig(**{field: value})
    with pytest.raises(ConfigError, match=field):
        gw.make_dataset(cfg)


def test_regions_and_helpers():
    assert gw.EXO_REGION.dtype == torch.bool and gw.EXO_REGION.shape == (4, 4)
    assert gw.EXO_REGION[3].all() and not gw.EXO_REGION[:3].any()
    assert torch.equal(gw.CONTROL_REGION, ~gw.EXO_REGION)
    assert gw.noise_floor(0.0) == 0.0 and gw.noise_floor(0.5) == pytest.approx(0.0625)
    with pytest.raises(ConfigError):
        gw.policy_action(torch.zeros(3, 4, 4))
