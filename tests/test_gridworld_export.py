"""The grid world exported to the LeRobot v3 layout trains to the same weights as the in-memory data."""

import pytest
import torch

pytest.importorskip("pyarrow")
pytest.importorskip("av")

from exolam.data.lerobot import open_dataset  # noqa: E402
from exolam.data.sampling import TensorSource  # noqa: E402
from exolam.data.windows import WindowDataset, WindowSource  # noqa: E402
from exolam.envs.gridworld import LEROBOT_FIELDS, GridWorldConfig, export_lerobot, make_dataset  # noqa: E402
from exolam.models.vq import VQLAM, VQLAMConfig  # noqa: E402
from exolam.objectives import Objective  # noqa: E402
from exolam.train import engine  # noqa: E402

torch.set_num_threads(1)
MODEL = VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8))


def _train(source, objective):
    cfg = engine.TrainConfig(steps=8, batch_size=16, precision="32")
    torch.manual_seed(0)
    model, obj = VQLAM(MODEL), Objective(objective, MODEL.d_z, {"action": 4})
    engine.fit(engine.make_fabric(cfg), model, obj, source, cfg, spec={})
    return model.state_dict()


@pytest.mark.parametrize("objective", ["lam+xexo:1", "lam+robust-action:1"])
def test_export_round_trip_trains_identically(tmp_path, objective):
    data, _ = make_dataset(GridWorldConfig(n_train=48, n_test=8, sigma=1.0, label_fraction=0.25))
    root = export_lerobot(data, tmp_path / "grid")
    ds = open_dataset(root)
    assert ds.version == "v3.0" and ds.episode_lengths == [2] * 48
    windows = WindowDataset(ds, LEROBOT_FIELDS)
    assert len(windows) == 48
    mem = _train(TensorSource(data, 3, 8, 16), objective)
    disk = _train(WindowSource(windows, 3, 8, 16), objective)
    assert all(torch.equal(mem[k], disk[k]) for k in mem)
