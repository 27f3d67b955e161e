"""Frame windows (o_t, o_{t+k}) of a LeRobot dataset and their batch source (data/windows.py)."""

import numpy as np
import pytest
import torch
from test_data_lerobot import CAM, FPS, LENGTHS, write_base

from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.data.sampling import TensorSource
from exolam.data.transitions import Transitions
from exolam.data.windows import WindowDataset, WindowSource, collate
from exolam.errors import ConfigError


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_base(tmp_path_factory.mktemp("base") / "ds")


def numeric_dataset(tmp_path, lengths=(5, 3, 1, 6)):
    """Frames as a float feature (value = 100 * episode + t), integer actions and a label mask."""
    eps = [{"observation.state": (100 * e + np.arange(n, dtype=np.float32)).reshape(n, 1, 1, 1) * np.ones((1, 1, 4, 4),
                                                                                                        np.float32),
            "action": (np.arange(n) + e) % 4, "label": np.arange(n) % 3 == 0} for e, n in enumerate(lengths)]
    feats = {"observation.state": {"dtype": "float32", "shape": [1, 4, 4]}, "action": {"dtype": "int64", "shape": [1]},
             "label": {"dtype": "bool", "shape": [1]}}
    return write_dataset(tmp_path / "num", eps, feats, FPS), eps


@pytest.mark.parametrize("gap", [1, 2])
def test_windows_never_cross_episodes(tmp_path, gap):
    root, eps = numeric_dataset(tmp_path)
    win = WindowDataset(root, {"o": "observation.state", "a": "action"}, frame_gap=gap)
    expected = [(e, t) for e, ep in enumerate(eps) for t in range(len(ep["action"]) - gap)]
    assert len(win) == len(expected)
    for i, (e, t) in enumerate(expected):
        assert win.window(i) == (e, t)
        item = win[i]
        assert item["o"][0, 0, 0] == 100 * e + t and item["o_next"][0, 0, 0] == 100 * e + t + gap
        assert item["a"].dtype == torch.int64 and item["a"].shape == () and item["a"] == (t + e) % 4
    assert WindowDataset(root, {"o": "observation.state"}, frame_gap=gap, episodes=[3]).window(0) == (3, 0)


@pytest.mark.parametrize("gap,stack", [(1, 3), (2, 2), (1, 1)])
def test_frame_stacks_hold_the_last_frames_of_their_own_episode(tmp_path, gap, stack):
    """o_t = (I_{t-N+1}, ..., I_t) channel-stacked, padded with the episode's first frame, never a frame
    of the episode before (values 100 e + t make every frame's origin readable)."""
    root, eps = numeric_dataset(tmp_path)
    win = WindowDataset(root, {"o": "observation.state", "o_alt": "observation.state"}, frame_gap=gap,
                        frame_stack=stack)
    for i in range(len(win)):
        e, t = win.window(i)
        item = win[i]
        want = [100 * e + max(u - j, 0) for u in (t, t + gap) for j in range(stack - 1, -1, -1)]
        got = [float(v) for v in torch.cat([item["o"], item["o_next"]])[:, 0, 0]]
        assert got == want, (e, t, got)
        assert item["o"].shape == (stack, 4, 4) and torch.equal(item["o_alt"], item["o"])
    assert ("frame_stack" in WindowSource(win, 0, 1, 1).spec()) == (stack > 1)  # specs without a stack unchanged


def test_video_windows_are_frames_in_unit_range(base):
    ds = open_dataset(base)
    win = WindowDataset(ds, {"o": CAM, "o_alt": CAM, "s": "observation.state"}, frame_gap=3)
    assert len(win) == sum(n - 3 for n in LENGTHS)
    e, t = win.window(7)
    item = win[7]
    assert item["o"].shape == (3, 32, 32) and item["o"].dtype == torch.float32
    assert torch.equal(item["o_next"], torch.from_numpy(ds.frames(CAM, e, t + 3, t + 4)[0]).permute(2, 0, 1) / 255)
    assert torch.equal(item["s_next"], torch.from_numpy(np.array(ds.column("observation.state", e)[t + 3])))
    small = WindowDataset(ds, {"o": CAM}, image_size=16)[0]["o"]
    assert small.shape == (3, 16, 16) and 0 <= small.min() and small.max() <= 1


@pytest.mark.parametrize("workers", [0, 1])
def test_window_source_equals_tensor_source(tmp_path, workers):
    root, eps = numeric_dataset(tmp_path)
    state = [torch.from_numpy(ep["observation.state"]) for ep in eps]
    pairs = [(e, t) for e, ep in enumerate(eps) for t in range(len(ep["action"]) - 1)]
    data = Transitions(o=torch.stack([state[e][t] for e, t in pairs]),
                       o_next=torch.stack([state[e][t + 1] for e, t in pairs]),
                       a=torch.tensor([int(eps[e]["action"][t]) for e, t in pairs]),
                       label_mask=torch.tensor([bool(eps[e]["label"][t]) for e, t in pairs]))
    win = WindowDataset(root, {"o": "observation.state", "a": "action", "label_mask": "label"})
    src = WindowSource(win, seed=3, steps=6, batch_size=5, num_workers=workers)
    ref = TensorSource(data, seed=3, steps=6, batch_size=5)
    for start in (0, 4):
        got, want = list(src.batches(start)), list(ref.batches(start))
        assert len(got) == len(want) == 6 - start
        for g, w in zip(got, want):
            assert g.fields().keys() == w.fields().keys()
            assert all(torch.equal(g.fields()[k], w.fields()[k]) for k in w.fields())
    assert src.spec()["n"] == len(data) and src.spec()["kind"] == "lerobot-windows"


def test_window_dataset_refuses_bad_fields(base):
    with pytest.raises(ConfigError, match="include 'o'"):
        WindowDataset(base, {"a": "action"})
    with pytest.raises(ConfigError, match="'o_next' is not one of"):
        WindowDataset(base, {"o": CAM, "o_next": CAM})
    with pytest.raises(ConfigError, match="'nope' is not a feature"):
        WindowDataset(base, {"o": "nope"})


def test_windows_labelled_episodes_and_flow(base, monkeypatch):
    win = WindowDataset(base, {"o": CAM}, labelled_episodes=[1])
    masks = {win.window(i)[0]: bool(win[i]["label_mask"]) for i in range(len(win))}
    assert masks == {0: False, 1: True, 2: False}
    batch = collate([win[i] for i in range(4)])
    assert batch.label_mask.dtype == torch.bool and batch.label_mask.shape == (4,)
    pytest.importorskip("cv2")
    import exolam.data.flow
    from exolam.data.flow import optical_flow

    win = WindowDataset(base, {"o": CAM}, flow=True)
    item = win[3]
    assert item["flow"].shape == (2, 8, 8)
    assert torch.equal(item["flow"], optical_flow(item["o"][None], item["o_next"][None])[0])
    # computed once per window: a second read (the next epoch) looks it up, with the same values
    calls = []
    monkeypatch.setattr(exolam.data.flow, "optical_flow", lambda *a: calls.append(a) or optical_flow(*a))
    assert torch.equal(win[3]["flow"], item["flow"]) and calls == []
    assert torch.equal(win[4]["flow"], optical_flow(win[4]["o"], win[4]["o_next"])) and len(calls) == 1
    with pytest.raises(ConfigError, match="out of range"):
        WindowDataset(base, {"o": CAM}, labelled_episodes=[3])
    with pytest.raises(ConfigError, match="not both"):
        WindowDataset(base, {"o": CAM, "label_mask": "action"}, labelled_episodes=[0])
