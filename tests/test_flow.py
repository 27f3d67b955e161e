"""Optical flow targets (data.flow) and the `robust-flow` term of Eq. (19) (App. D "Flow-pred")."""

import pytest
import torch

cv2 = pytest.importorskip("cv2")

from exolam.data.flow import DEFAULT_SIZE, flow_dim, optical_flow  # noqa: E402
from exolam.data.transitions import Transitions  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402
from exolam.models.linear import LinearLAM  # noqa: E402
from exolam.objectives import TERMS, Objective, format_objective, parse_objective, term_weights  # noqa: E402

torch.set_num_threads(1)


def _scene(seed: int, size: int, pad: int = 8) -> torch.Tensor:
    """A smooth RGB texture [3, size + 2 pad, size + 2 pad] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, (size + 2 * pad) // 2, (size + 2 * pad) // 2, generator=g)
    x = torch.nn.functional.interpolate(x, size=(size + 2 * pad,) * 2, mode="bicubic", align_corners=False)[0]
    x = torch.nn.functional.avg_pool2d(x[None], 3, 1, 1, count_include_pad=False)[0]
    return ((x - x.min()) / (x.max() - x.min())).clamp(0, 1)


def _pair(seed: int, dx: int, dy: int, size: int = 64, pad: int = 8):
    """(o, o') where the content of o moves by (dx, dy) pixels (right, down) in o'."""
    big = _scene(seed, size, pad)
    o = big[:, pad : pad + size, pad : pad + size]
    o_next = big[:, pad - dy : pad - dy + size, pad - dx : pad - dx + size]
    return o, o_next


SHIFTS = [(2, 1), (-3, 0), (0, 2), (1, -2)]


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_a_shifted_texture_gives_its_shift(method):
    o, o_next = map(torch.stack, zip(*[_pair(i, dx, dy) for i, (dx, dy) in enumerate(SHIFTS)]))
    full = optical_flow(o, o_next, size=None, method=method)
    assert full.shape == (len(SHIFTS), 2, 64, 64) and full.dtype == torch.float32
    inner = full[..., 8:-8, 8:-8].mean((-1, -2))
    assert torch.allclose(inner, torch.tensor(SHIFTS, dtype=torch.float32), atol=0.15), inner
    pooled = optical_flow(o, o_next, method=method)  # default 8 x 8, area-averaged
    assert pooled.shape == (len(SHIFTS), 2, *DEFAULT_SIZE)
    assert torch.allclose(pooled.mean((-1, -2)), full.mean((-1, -2)), atol=1e-4)


def test_a_static_pair_gives_zero_flow():
    o, _ = _pair(0, 0, 0)
    assert optical_flow(o[None], o[None].clone(), size=None).abs().max() < 0.05


def test_a_colour_change_without_motion_is_small_next_to_a_shift():
    o, o_next = _pair(3, 2, 0)
    recoloured = (o[[2, 0, 1]] * 0.8 + 0.1).clamp(0, 1)  # channels permuted, contrast and brightness changed
    colour = optical_flow(o[None], recoloured[None], size=None)[0].norm(dim=0).mean()
    motion = optical_flow(o[None], o_next[None], size=None)[0].norm(dim=0).mean()
    assert motion > 1.8 and colour < 0.2 * motion, (colour, motion)


def test_flow_is_deterministic_keeps_leading_dims_and_gray_frames():
    o, o_next = map(torch.stack, zip(*[_pair(i, 1, 1, size=32) for i in range(4)]))
    a = optical_flow(o.view(2, 2, 3, 32, 32), o_next.view(2, 2, 3, 32, 32), size=4)
    assert a.shape == (2, 2, 2, 4, 4) and torch.equal(a, optical_flow(o, o_next, size=4).view(2, 2, 2, 4, 4))
    gray = optical_flow(o[:, :1], o_next[:, :1], size=(4, 2))
    assert gray.shape == (4, 2, 4, 2)
    assert flow_dim() == 2 * DEFAULT_SIZE[0] * DEFAULT_SIZE[1] and flow_dim(4) == 32
    assert flow_dim((4, 2)) == 16 and flow_dim(None, frame_hw=(32, 16)) == 1024


def test_flow_refuses_what_it_cannot_compute():
    o = torch.rand(2, 3, 8, 8)
    with pytest.raises(ConfigError, match="needs frames >= 12 px"):
        optical_flow(o, o)
    assert optical_flow(o, o, size=2, method="farneback").shape == (2, 2, 2, 2)
    with pytest.raises(ConfigError, match="C = 2"):
        optical_flow(torch.rand(1, 2, 16, 16), torch.rand(1, 2, 16, 16))
    with pytest.raises(ConfigError, match="one shape"):
        optical_flow(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 12))
    with pytest.raises(ConfigError, match="not one of"):
        optical_flow(o, o, method="lk")


def _flow_batch(n=32, size=16):
    pairs = [_pair(i, (i % 5) - 2, (i // 5 % 5) - 2, size=size, pad=4) for i in range(n)]
    o, o_next = (torch.stack(x)[:, :1] for x in zip(*pairs))  # gray frames
    flow = optical_flow(o, o_next, size=4)
    return Transitions(o=o.flatten(1), o_next=o_next.flatten(1), flow=flow)


def test_robust_flow_trains_its_head():
    torch.manual_seed(0)
    batch = _flow_batch()
    lam = LinearLAM(batch.o.shape[1], d_z=4)
    obj = Objective("lam+robust-flow:1", lam.d_z, {"flow": flow_dim(4)})
    assert obj.heads["flow"].weight.shape == (flow_dim(4), 4)
    opt = torch.optim.Adam(list(lam.parameters()) + list(obj.parameters()), lr=1e-2)
    first = None
    for _ in range(100):
        total, parts = obj(lam, batch)
        first = first if first is not None else parts["robust-flow"].item()
        opt.zero_grad()
        total.backward()
        opt.step()
    assert obj(lam, batch)[1]["robust-flow"].item() < 0.3 * first  # 68.8 -> 7.5


def test_robust_flow_refuses_a_batch_without_flow():
    batch = _flow_batch(4).replace(flow=None)
    obj = Objective("lam+robust-flow:1", 4, {"flow": flow_dim(4)})
    with pytest.raises(ConfigError, match="objective robust-flow needs optical-flow targets `flow` in the data"):
        obj(LinearLAM(batch.o.shape[1], 4), batch)
    with pytest.raises(ConfigError, match="no 'flow' target"):
        Objective("lam+robust-flow:1", 4, {"action": 3})


def test_robust_flow_parses_and_formats():
    terms = parse_objective("lam+robust-flow:0.5")
    assert terms[1].name == "robust-flow" and terms[1].target == "flow" and terms[1].weight == 0.5
    assert format_objective(terms) == "lam+robust-flow:0.5"
    assert parse_objective(format_objective(terms)) == terms
    assert term_weights("lam+robust-flow:2")[TERMS.index("robust-flow")] == 2.0
    with pytest.raises(ConfigError, match="unknown term 'robust-optflow'"):
        parse_objective("lam+robust-optflow:1")
