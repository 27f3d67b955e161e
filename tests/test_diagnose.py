"""`exolam diagnose` (workflows/diagnose.py): verdicts on grid-world LAMs with known answers (Sec. 5), the
adapter, the FDM-ignores-z / z-ignores-o' flags on constructed LAMs, the report, and bad inputs."""

import json

import pytest
import torch

pytest.importorskip("pyarrow")
pytest.importorskip("matplotlib")

from exolam.cli.diagnose import model_command  # noqa: E402
from exolam.data.sampling import TensorSource  # noqa: E402
from exolam.envs.gridworld import GridWorldConfig, export_lerobot, make_dataset  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402
from exolam.models import checkpoint  # noqa: E402
from exolam.models.vq import VQLAM, VQLAMConfig  # noqa: E402
from exolam.objectives import Objective  # noqa: E402
from exolam.workflows.adapter import LAMAdapter  # noqa: E402
from exolam.workflows.diagnose import diagnose  # noqa: E402
from exolam.train import engine  # noqa: E402

torch.set_num_threads(1)
MODEL = VQLAMConfig(idm_channels=(8,), idm_hidden=16, d_z=8, fdm_channels=(8, 8, 8, 8))
STEPS, BATCH, N_TRAIN, N_TEST = 200, 32, 512, 256  # the smallest setting measured to separate the two, 3 seeds


def _quiet(*_):
    pass


def _train(tmp, name: str, sigma: float, objective: str) -> tuple:
    """A grid-world VQ LAM trained through the engine (checkpoint folder) and its held-out split exported."""
    train, test = make_dataset(GridWorldConfig(n_train=N_TRAIN, n_test=N_TEST, sigma=sigma, label_fraction=1.0))
    cfg = engine.TrainConfig(steps=STEPS, batch_size=BATCH, precision="32", lr=1e-3, log_every=0)
    torch.manual_seed(0)
    model, obj = VQLAM(MODEL), Objective(objective, MODEL.d_z, {"action": 4})
    engine.fit(engine.make_fabric(cfg), model, obj, TensorSource(train, 0, STEPS, BATCH), cfg, spec={"name": name},
               ckpt=tmp / f"{name}-ckpt")
    return tmp / f"{name}-ckpt", export_lerobot(test, tmp / f"{name}-data")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("diag")
    return {"vanilla": _train(tmp, "vanilla", 1.0, "lam"), "robust": _train(tmp, "robust", 0.0, "lam+robust-action:1")}


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    """A small sigma = 1 grid world exported to LeRobot (64 two-frame episodes with paired views)."""
    _, test = make_dataset(GridWorldConfig(n_train=8, n_test=64, sigma=1.0, label_fraction=1.0, seed=3))
    return export_lerobot(test, tmp_path_factory.mktemp("noisy") / "grid")


def test_vanilla_leaks_robust_does_not(trained, tmp_path, capsys):
    """L_LAM at sigma = 1 encodes xi' (Prop. 4.2, Fig. 5b); L_LAM + robust-action at sigma = 0 does not."""
    res = {}
    for name, (ckpt, data) in trained.items():
        out = tmp_path / name
        assert model_command(["--checkpoint", str(ckpt), "--data", str(data), "--out", str(out)]) == 0
        res[name] = json.loads((out / "diagnose.json").read_text())
        report = (out / "report.md").read_text()
        assert "## Verdict" in report and res[name]["verdict"]["answer"] in report
        for fig in ("saliency.png", "latent.png", "swap.png"):
            assert (out / fig).stat().st_size > 1000 and f"]({fig})" in report
        assert not list(tmp_path.glob(".*tmp*"))
        print(name, res[name]["verdict"]["text"], res[name]["paired"], res[name]["probe"])
    v, r = res["vanilla"], res["robust"]
    assert v["verdict"]["answer"] == "yes" and r["verdict"]["answer"] == "no"
    assert v["paired"]["consistency_relative"] >= 0.5 > 0.1 >= r["paired"]["consistency_relative"]
    assert v["paired"]["code_flip_rate"] > 0.2 and r["paired"]["code_flip_rate"] == 0
    assert v["paired"]["swap_gap_swap"] > r["paired"]["swap_gap_swap"]
    assert r["paired"]["identical_views"] == 1.0 and v["paired"]["identical_views"] < 0.2
    for x in (v, r):  # every section is measured on this data
        assert all(x[s]["measured"] for s in ("probe", "paired", "latent", "fdm_uses_z", "z_uses_next", "saliency"))
        assert x["latent"]["kind"] == "vq" and x["latent"]["K"] == 5
        assert 0 <= x["probe"]["probe_nmse"] and x["probe"]["n_test"] > 0
    # the vanilla LAM's z looks at the exogenous row of o' more than its area (1/4) would give
    assert v["saliency"]["exo_share_o_next"] > v["saliency"]["exo_area_o_next"]
    assert v["saliency"]["exo_area_o_next"] == 0.25 and "info.exogenous_region" in v["saliency"]["exo_region"]
    assert "robust" in capsys.readouterr().out


def test_adapter_hand_written_lams(noisy, tmp_path):
    """z = o' - o carries the whole exogenous row (yes); z = the change of the control rows only (no)."""
    leak = LAMAdapter(lambda o, o1: (o1 - o).flatten(1), lambda o, z: o + z.view_as(o), name="difference",
                      frame_shape=(1, 4, 4))
    clean = LAMAdapter(lambda o, o1: (o1 - o)[:, :, :3].flatten(1),
                       lambda o, z: torch.cat([o[:, :, :3] + z.view(-1, 1, 3, 4), o[:, :, 3:]], 2), name="control")
    a = diagnose(leak, noisy, tmp_path / "leak", log=_quiet)
    b = diagnose(clean, noisy, tmp_path / "clean", log=_quiet)
    assert a["verdict"]["answer"] == "yes" and b["verdict"]["answer"] == "no"
    assert b["paired"]["consistency_relative"] == 0 and a["paired"]["consistency_relative"] > 0.5
    assert a["paired"]["swap_recon"] == float("inf") and a["paired"]["swap_gap_swap"] > 3  # exact FDM, then a copy
    assert a["latent"]["kind"] == "continuous" and a["latent"]["participation_ratio"] > 1
    assert a["probe"]["measured"] and 0 <= a["probe"]["probe_nmse_o_only"] < 1  # the tour policy is a function of o
    assert (tmp_path / "leak" / "report.md").exists() and a["lam"] == "difference"


def test_flags_on_constructed_lams(noisy, tmp_path):
    """An FDM that ignores z is flagged, one that uses it is not; likewise a z that ignores o'."""
    no_fdm = LAMAdapter(lambda o, o1: (o1 - o).flatten(1), lambda o, z: o, name="fdm-ignores-z")
    no_next = LAMAdapter(lambda o, o1: o.flatten(1), lambda o, z: z.view_as(o), name="z-ignores-next")
    good = LAMAdapter(lambda o, o1: (o1 - o).flatten(1), lambda o, z: o + z.view_as(o), name="uses-both")
    r = {lam.name: diagnose(lam, noisy, tmp_path / lam.name, log=_quiet) for lam in (no_fdm, no_next, good)}
    assert r["fdm-ignores-z"]["fdm_uses_z"]["flag"] and r["fdm-ignores-z"]["fdm_uses_z"]["ratio"] == pytest.approx(1.0)
    assert not r["uses-both"]["fdm_uses_z"]["flag"] and r["uses-both"]["fdm_uses_z"]["ratio"] > 10
    assert r["z-ignores-next"]["z_uses_next"]["flag"] and r["z-ignores-next"]["z_uses_next"]["relative_change"] == 0
    assert not r["uses-both"]["z_uses_next"]["flag"]
    assert r["z-ignores-next"]["saliency"]["share_on_o_next"] == 0
    assert "FLAG: the FDM ignores z" in (tmp_path / "fdm-ignores-z" / "report.md").read_text()


def test_a_lam_that_uses_no_latent_is_degenerate_not_leaky():
    from exolam.workflows.diagnose import verdict

    paired = {"measured": True, "consistency_relative": 1.5, "swap_gap_swap": 0.0, "swap_gap_aug": 0.0,
              "identical_views": 0.0}
    assert verdict(paired)["answer"] == "yes"
    v = verdict(paired, {"measured": True, "flag": True}, {"measured": True, "flag": False})
    assert v["answer"] == "degenerate" and "the FDM ignores z" in v["text"]
    assert verdict(paired, {"flag": False}, {"flag": True})["answer"] == "degenerate"


def test_without_paired_views_or_actions_says_so(tmp_path):
    """Action-free data without paired views: the verdict is undecided and the report says why."""
    import numpy as np

    from exolam.data.lerobot_write import write_dataset

    g = torch.Generator().manual_seed(0)
    frames = torch.rand(3, 6, 1, 4, 4, generator=g).numpy().astype(np.float32)
    feat = {"observation.grid": {"dtype": "float32", "shape": [1, 4, 4], "names": ["channel", "height", "width"]}}
    root = write_dataset(tmp_path / "plain", ({"observation.grid": f, "task": "t"} for f in frames), feat, 10)
    lam = LAMAdapter(lambda o, o1: (o1 - o).flatten(1), lambda o, z: o + z.view_as(o))
    res = diagnose(lam, root, tmp_path / "r", frame_gap=2, log=_quiet)
    assert res["verdict"]["answer"] == "undecided" and "exolam diagnose encoder" in res["verdict"]["text"]
    assert not res["probe"]["measured"] and not res["paired"]["measured"] and res["z_uses_next"]["measured"]
    assert res["z_uses_next"]["offsets_m"] == [0, 4] and "by episode" in res["split"]
    text = (tmp_path / "r" / "report.md").read_text()
    assert "Not measured:* the data has no 'action'" in text and "no paired view" in text


def _one_line_error(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as e:
        fn(*args, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_bad_inputs_one_line_nothing_written(noisy, tmp_path):
    out = tmp_path / "r"
    msg = _one_line_error(model_command, ["--checkpoint", str(tmp_path / "nope"), "--data", str(noisy),
                                             "--out", str(out)])
    assert "nope" in msg and not out.exists()
    lam = LAMAdapter(lambda o, o1: o1.flatten(1), lambda o, z: z.view_as(o), frame_shape=(1, 4, 4))
    msg = _one_line_error(diagnose, lam, noisy, out, camera="observation.wrist")
    assert "observation.wrist" in msg and "observation.grid" in msg and not out.exists()
    big = VQLAM(VQLAMConfig(image_size=6, idm_channels=(4,), idm_hidden=8, d_z=4, fdm_channels=(4, 4, 4, 4)))
    checkpoint.write(tmp_path / "big", {"step": 0}, big)
    msg = _one_line_error(model_command, ["--checkpoint", str(tmp_path / "big"), "--data", str(noisy),
                                             "--out", str(out)])
    assert "(1, 4, 4)" in msg and "(1, 6, 6)" in msg and not out.exists()
    msg = _one_line_error(model_command, ["--data", str(noisy), "--out", str(out)])
    assert "--checkpoint" in msg
    out.mkdir()
    (out / "report.md").write_text("old")
    msg = _one_line_error(diagnose, lam, noisy, out)
    assert "not empty" in msg and (out / "report.md").read_text() == "old"
    assert not list(tmp_path.glob(".*tmp*"))
