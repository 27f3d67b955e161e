"""`exolam diagnose target` (workflows/diagnose_target.py) and `metrics.encoder.target_robustness` (Def. 4.7):
known answers (an action label is 0-robust; a copy is 0, an independent draw ~2), the grid world
with and without exogenous noise, the report, and bad inputs."""

import json

import pytest
import torch

pytest.importorskip("pyarrow")

from exolam.cli import main  # noqa: E402
from exolam.envs.gridworld import GridWorldConfig, export_lerobot, make_dataset  # noqa: E402
from exolam.errors import ConfigError  # noqa: E402
from exolam.metrics.encoder import target_robustness  # noqa: E402
from exolam.cli.diagnose import target_command  # noqa: E402
from exolam.workflows.diagnose_target import diagnose_target  # noqa: E402


def _grid(tmp_path_factory, sigma: float, label_fraction: float = 1.0):
    _, test = make_dataset(GridWorldConfig(n_train=8, n_test=96, sigma=sigma, label_fraction=label_fraction, seed=3))
    return export_lerobot(test, tmp_path_factory.mktemp(f"grid{sigma}") / "grid")


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    return _grid(tmp_path_factory, 0.0)


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    return _grid(tmp_path_factory, 1.0)


def test_robustness_known_answers():
    g = torch.Generator().manual_seed(0)
    y = torch.randn(20000, 6, generator=g)
    same = target_robustness(y, y.clone())
    assert same["mean"] == 0 and same["max"] == 0 and same["relative"] == 0
    indep = target_robustness(y, torch.randn(20000, 6, generator=g))
    assert indep["relative"] == pytest.approx(2.0, abs=0.05) and indep["max"] >= indep["mean"]
    assert indep["independent"] == pytest.approx(2.0, abs=0.05) and same["independent"] == pytest.approx(2.0)
    # a paired view that spreads y~ twice as wide (variance 4) and shifts it by 1 per dim: an independent
    # y~ then reads (6 + 24 + 6) / 6 = 6, not 2, and the chance level says so
    wide = target_robustness(y, 2 * torch.randn(20000, 6, generator=g) + 1)
    assert wide["relative"] == pytest.approx(6.0, rel=0.03) and wide["independent"] == pytest.approx(wide["relative"], rel=0.03)
    near = y + 0.1 * torch.randn(20000, 6, generator=g)
    r = target_robustness(y, near)
    scaled = target_robustness(3 * y, 3 * near)
    assert scaled["relative"] == pytest.approx(r["relative"]) and scaled["mean"] == pytest.approx(9 * r["mean"])
    assert r["relative"] == pytest.approx(0.01, rel=0.05)  # E||0.1 eps||^2 / E||y - E y||^2 = 0.06 / 6
    assert target_robustness(torch.ones(5, 2), torch.ones(5, 2))["relative"] != 0  # constant: no scale (NaN)
    with pytest.raises(ConfigError):
        target_robustness(y, y[:, :3])


def test_no_exogenous_noise_every_target_is_robust(clean, tmp_path):
    res = diagnose_target(["next-frame", "frame-diff", "action"], clean, tmp_path / "r")
    rows = {r["target"]: r for r in res["targets"]}
    for name in ("next-frame", "frame-diff", "action"):
        assert rows[name]["eta"]["mean"] == 0 and rows[name]["eta"]["max"] == 0
    assert rows["action"]["dim"] == 4  # the discrete move, one-hot
    assert rows["action"]["nmse_from_a"] < 1e-9 and rows["action"]["nmse_given_s"] is None  # no state stored
    assert res["data"]["windows"] == 96 and res["data"]["camera"] == "observation.grid"


def test_noisy_frames_are_not_robust_and_the_action_is(noisy, tmp_path, capsys):
    """sigma = 1: the bottom row of o' follows xi', so pixel targets move with it; the action does not."""
    out = tmp_path / "r"
    assert target_command(["--target", "next-frame", "action", "frame-diff", "--data", str(noisy),
                                    "--out", str(out), "--max-windows", "64"]) == 0
    printed = capsys.readouterr().out
    assert printed.splitlines()[0].startswith("1. action: relative eta 0,") and "target.md" in printed
    res = json.loads((out / "target.json").read_text())
    rows = {r["target"]: r for r in res["targets"]}
    assert res["ranking"][0] == "action" and res["data"]["windows"] == 64
    assert rows["action"]["eta"]["relative"] == 0
    for name in ("next-frame", "frame-diff"):
        assert 0.1 < rows[name]["eta"]["relative"] < 2.5 and rows[name]["eta"]["max"] >= rows[name]["eta"]["mean"]
        assert rows[name]["nmse_from_a"] is not None
    md = (out / "target.md").read_text()
    assert "Prop. 4.8" in md and "| 1 | `action` | 4 | 64; 32+32 | 0 |" in md
    again = diagnose_target(["next-frame", "action", "frame-diff"], noisy, tmp_path / "again", max_windows=64)
    assert [r["eta"] for r in again["targets"]] == [rows[t]["eta"] for t in ("next-frame", "action", "frame-diff")]


def test_only_labelled_windows_carry_the_action(tmp_path_factory, tmp_path):
    """label fraction 0.5: the action target and the probes use the labelled windows, pixel targets all."""
    data = _grid(tmp_path_factory, 1.0, label_fraction=0.5)
    res = diagnose_target(["action", "next-frame"], data, tmp_path / "r")
    action, frame = res["targets"]
    n_lab = sum(action["probe_windows"])
    assert frame["windows"] == 96 and 20 < action["windows"] == n_lab < 76
    assert frame["probe_windows"] == action["probe_windows"] and action["eta"]["mean"] == 0


def _one_line(e, *words):
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg


def test_bad_input(noisy, tmp_path, capsys):
    with pytest.raises(ConfigError) as e:  # 4 x 4 frames: DIS needs 12 px, refused before anything is read
        diagnose_target("flow", noisy, tmp_path / "f")
    _one_line(e, "--target flow", "12 px", "--image-size")
    with pytest.raises(ConfigError) as e:
        diagnose_target(["optical"], noisy, tmp_path / "u")
    _one_line(e, "'optical'", "flow")
    with pytest.raises(ConfigError) as e:
        diagnose_target(["action", "action"], noisy, tmp_path / "u")
    _one_line(e, "once")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("keep")
    with pytest.raises(ConfigError) as e:
        diagnose_target("action", noisy, tmp_path / "busy")
    _one_line(e, "not empty")
    with pytest.raises(ConfigError) as e:
        diagnose_target("action", noisy, tmp_path / "c", camera="observation.grid_alt_x")
    _one_line(e, "observation.grid_alt_x")
    assert not any(p.name != "busy" for p in tmp_path.iterdir())  # nothing half-written
    assert main(["diagnose", "target", "--data", str(noisy), "--out", str(tmp_path / "n")]) == 2
    assert "--target is required" in capsys.readouterr().err
    assert main(["diagnose", "target", "--target", "action", "--target", "flow", "--data", str(noisy),
                 "--out", str(tmp_path / "n")]) == 2
    assert "given twice" in capsys.readouterr().err
