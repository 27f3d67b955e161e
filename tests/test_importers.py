"""`exolam import`: mp4 / npz / hdf5 (robomimic, laom) / lerobot-v21 -> LeRobot v3.0 (data/importers*.py)."""

import hashlib
import json
from pathlib import Path

import av
import numpy as np
import pytest
from codec_noise import assert_decoded_close, assert_same_episodes, record_writes
from test_data_lerobot import smooth, write_v21

from exolam.cli.own import import_command
from exolam.data import importers, importers_base, importers_sources
from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.errors import ConfigError

CAM = "observation.image"


def digest(root: Path) -> dict:
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def run(argv):
    """import_command as `exolam` runs it: (exit code, the one error line or '')."""
    try:
        return import_command([str(a) for a in argv]), ""
    except ConfigError as e:
        return 2, str(e)


def imported(kind, src, out, *flags):
    before = digest(src)
    code, err = run([kind, src, "--out", out, "--codec", "h264", *flags])
    assert (code, err) == (0, "")
    assert digest(src) == before, "sources are never written"
    assert not out.with_name(f".{out.name}.import-staging").exists()
    assert json.loads((out / "meta" / "exolam_import.json").read_text())["kind"] == kind
    return open_dataset(out)


def close(a, b, tol=15):  # mean |error| of h264 yuv420p at 16 x 16 is ~10-12, a flip gives ~70
    return a.shape == b.shape and np.abs(a.astype(float) - b).mean() < tol


def write_video(path: Path, frames, fps=10, codec="libx264"):
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        for img in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        c.mux(s.encode())


# ---------------------------------------------------------------------------------------------- mp4

@pytest.fixture
def videos(tmp_path):
    src = tmp_path / "videos"
    src.mkdir()
    clips = {"a.mp4": smooth(6, 32, 32, 0), "b.avi": smooth(4, 32, 32, 1)}
    write_video(src / "a.mp4", clips["a.mp4"])
    write_video(src / "b.avi", clips["b.avi"], codec="mpeg4")
    (src / "notes.txt").write_text("not a video")
    return src, clips


def test_mp4_round_trip(videos, tmp_path):
    src, clips = videos
    ds = imported("mp4", src, tmp_path / "out", "--task", "wave")
    assert (ds.fps, ds.episode_lengths, ds.video_keys) == (10, [6, 4], [CAM])
    assert "action" not in ds.features and ds.episode_tasks == [["wave"], ["wave"]]
    for e, frames in enumerate(clips.values()):
        assert close(ds.frames(CAM, e), frames)


def test_mp4_resample_resize(videos, tmp_path):
    src, clips = videos
    ds = imported("mp4", src, tmp_path / "out", "--fps", 5, "--image-size", 16, "--camera", "observation.images.top")
    assert (ds.fps, ds.episode_lengths, ds.video_shapes) == (5, [3, 2], {"observation.images.top": (16, 16, 3)})
    small = importers_base.prepare_frames(clips["a.mp4"], "hwc", importers_base.ImportOptions(image_size=16))
    got = ds.frames("observation.images.top", 0).astype(float)
    assert [int(np.argmin([np.abs(g - s).mean() for s in small])) for g in got] == [0, 2, 4]  # frame k at k / 5 s
    assert close(got, small[::2], 16)  # two yuv420p round trips at 16 x 16


# ---------------------------------------------------------------------------------------------- npz

def lapo_chunks(src: Path, chw=False, boundary="done", cut=5):
    """Two LAPO-style chunks (np.savez = stored, then savez_compressed) split at row `cut`; episodes of
    lengths 3, 5, 4, 2 (cut 5: the second crosses into the next chunk; cut 3: a boundary at the cut)."""
    src.mkdir()
    lengths, n = [3, 5, 4, 2], 14
    obs = smooth(n, 16, 16, 3)
    done = np.zeros(n, bool)
    done[np.cumsum(lengths) - 1] = True
    arrays = {"obs": obs.transpose(0, 3, 1, 2) if chw else obs, "ta": np.arange(n) % 15,
              "rewards": np.linspace(0, 1, n, dtype=np.float32), "values": np.zeros(n)}
    if boundary == "done":
        arrays["done"] = done
    elif boundary == "ep_start":
        arrays["ep_start"] = np.r_[True, done[:-1]]
    for name, rows, save in (("0.npz", slice(0, cut), np.savez), ("1.npz", slice(cut, n), np.savez_compressed)):
        save(src / name, **{k: v[rows] for k, v in arrays.items()})
    return lengths, obs, arrays


@pytest.mark.parametrize("chw,boundary,cut", [(False, "done", 5), (True, "ep_start", 5), (False, "done", 3),
                                              (False, "ep_start", 3)])
def test_npz_round_trip(tmp_path, chw, boundary, cut):
    lengths, obs, arrays = lapo_chunks(tmp_path / "chunks", chw, boundary, cut)
    ds = imported("npz", tmp_path / "chunks", tmp_path / "out", "--fps", 15)
    assert ds.episode_lengths == lengths and ds.fps == 15
    starts = np.r_[0, np.cumsum(lengths)]
    for e, (a, b) in enumerate(zip(starts, starts[1:])):
        assert np.array_equal(ds.column("action", e)[:, 0], arrays["ta"][a:b])
        assert np.array_equal(ds.column("next.reward", e)[:, 0], arrays["rewards"][a:b])
        assert close(ds.frames(CAM, e), obs[a:b])
    assert ("next.done" in ds.features) == (boundary == "done")


def test_npz_one_episode_per_file(tmp_path):
    lapo_chunks(tmp_path / "chunks", boundary=None)
    assert imported("npz", tmp_path / "chunks", tmp_path / "out", "--fps", 15).episode_lengths == [5, 9]


# --------------------------------------------------------------------------------------------- hdf5

def robomimic_file(path: Path, lengths=(4, 3, 5), libero=True):
    h5py = pytest.importorskip("h5py")
    demos = {}
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        env = {"env_name": "Lift", "env_kwargs": {"control_freq": 20, "robots": ["Panda"]}}
        data.attrs["env_args"] = json.dumps(env)
        if libero:
            data.attrs["problem_info"] = json.dumps({"language_instruction": "open the microwave"})
        for i, n in zip((0, 1, 10), lengths):
            g, d = data.create_group(f"demo_{i}"), {}
            d["obs/agentview_rgb"] = smooth(n, 16, 16, i)
            d["obs/eye_in_hand_rgb"] = smooth(n, 16, 16, 50 + i).transpose(0, 3, 1, 2)
            d["obs/ee_states"] = np.random.default_rng(i).normal(size=(n, 6))
            d["actions"] = np.random.default_rng(i + 1).normal(size=(n, 7)).astype(np.float32)
            d["states"], d["rewards"], d["dones"] = np.ones((n, 9)), np.zeros(n), np.r_[np.zeros(n - 1), 1].astype(bool)
            for k, v in d.items():
                g.create_dataset(k, data=v)
            demos[i] = d
    return list(demos.values())


def test_hdf5_robomimic_round_trip_and_flip(tmp_path):
    demos = robomimic_file(tmp_path / "libero.hdf5")
    ds = imported("hdf5", tmp_path / "libero.hdf5", tmp_path / "out", "--layout", "robomimic", "--flip-vertical")
    assert (ds.fps, ds.episode_lengths, ds.info["robot_type"]) == (20, [4, 3, 5], "Panda")
    assert ds.episode_tasks[0] == ["open the microwave"]
    assert set(ds.features) >= {"observation.images.agentview_rgb", "observation.images.eye_in_hand_rgb",
                                "observation.ee_states", "action", "sim_state", "next.reward", "next.done"}
    assert ds.features["sim_state"]["dtype"] == "float64"
    for e, d in enumerate(demos):  # demo_0, demo_1, demo_10: numeric order
        assert np.array_equal(ds.column("action", e), d["actions"])
        assert np.array_equal(ds.column("observation.ee_states", e), d["obs/ee_states"].astype(np.float32))
        assert close(ds.frames("observation.images.agentview_rgb", e), d["obs/agentview_rgb"][:, ::-1])
        assert not close(ds.frames("observation.images.agentview_rgb", e), d["obs/agentview_rgb"])
        wrist = d["obs/eye_in_hand_rgb"].transpose(0, 2, 3, 1)  # stored channels first
        assert close(ds.frames("observation.images.eye_in_hand_rgb", e), wrist[:, ::-1])


def test_hdf5_robomimic_camera_keys(tmp_path):
    robomimic_file(tmp_path / "a.hdf5", libero=False)
    ds = imported("hdf5", tmp_path / "a.hdf5", tmp_path / "out", "--layout", "robomimic", "--camera-keys",
                  "agentview_rgb", "--fps", 10, "--flip-horizontal")
    assert ds.video_keys == ["observation.images.agentview_rgb"] and ds.episode_tasks[0] == ["Lift"]
    assert "observation.eye_in_hand_rgb" not in ds.features and ds.fps == 10


def laom_file(path: Path, lengths=(5, 3)):
    h5py = pytest.importorskip("h5py")
    trajs = []
    with h5py.File(path, "w", track_order=True) as f:
        f.attrs.update(domain_name="cheetah", task_name="run", img_hw=16)
        for i, n in enumerate(lengths):
            g = f.create_group(str(i))
            r = np.random.default_rng(i)
            t = {"obs": smooth(n, 16, 16, i), "actions": r.uniform(-1, 1, (n, 6)).astype(np.float32),
                 "states": r.normal(size=(n, 17)).astype(np.float32)}
            for k, v in t.items():
                g.create_dataset(k, data=v)
            g.attrs["traj_return"] = 1.0
            trajs.append(t)
    return trajs


def test_hdf5_laom_round_trip(tmp_path):
    trajs = laom_file(tmp_path / "laom.hdf5")
    ds = imported("hdf5", tmp_path / "laom.hdf5", tmp_path / "out", "--layout", "laom", "--fps", 100)
    assert (ds.fps, ds.episode_lengths, ds.episode_tasks[0], ds.info["robot_type"]) == (100, [5, 3], ["cheetah-run"],
                                                                                       "dm_control/cheetah")
    for e, t in enumerate(trajs):
        assert np.array_equal(ds.column("action", e), t["actions"])
        assert np.array_equal(ds.column("observation.state", e), t["states"])
        assert close(ds.frames(CAM, e), t["obs"])


# -------------------------------------------------------------------------------------- lerobot-v21

def test_lerobot_v21(tmp_path):
    eps = write_v21(tmp_path / "v21")
    before = digest(tmp_path / "v21")
    assert run(["lerobot-v21", tmp_path / "v21", "--out", tmp_path / "out"]) == (0, "")  # default codec av1
    assert digest(tmp_path / "v21") == before
    ds = open_dataset(tmp_path / "out")
    assert (ds.version, ds.fps, ds.episode_lengths, ds.episode_tasks) == ("v3.0", 10, [5, 4], [["push"], ["push"]])
    assert ds.features["observation.images.cam"]["info"]["video.codec"] == "av1"
    for e, src in enumerate(eps):
        assert np.array_equal(ds.column("action", e), src["action"])
        assert close(ds.frames("observation.images.cam", e), src["observation.images.cam"], 12)


# ------------------------------------------------------------------------------------------- resume

def test_resume_after_interruption(tmp_path, monkeypatch):
    lapo_chunks(tmp_path / "chunks")
    argv = ["npz", tmp_path / "chunks", "--fps", 15, "--codec", "h264"]
    handed = record_writes(monkeypatch, importers)  # the episodes each write_dataset call is handed
    assert run(argv + ["--out", tmp_path / "whole"]) == (0, "")
    real, staging = importers_sources.NpzSource.episode, tmp_path / ".out.import-staging"

    def dies_at_2(self, i):
        if i == 2:
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(importers_sources.NpzSource, "episode", dies_at_2)
    with pytest.raises(KeyboardInterrupt):
        run(argv + ["--out", tmp_path / "out"])
    assert not (tmp_path / "out").exists() and sorted(p.name for p in staging.iterdir()) == [
        "episode_000000.npz", "episode_000001.npz", "spec.json"]
    with pytest.raises(KeyboardInterrupt):  # a staging folder of another spec (here --fps) is rebuilt, not refused
        run(argv[:3] + ["16", "--codec", "h264", "--out", tmp_path / "out"])
    assert json.loads((staging / "spec.json").read_text())["options"]["fps"] == 16
    with pytest.raises(KeyboardInterrupt):
        run(argv + ["--out", tmp_path / "out"])
    assert json.loads((staging / "spec.json").read_text())["options"]["fps"] == 15
    assert len(list(staging.glob("episode_*.npz"))) == 2
    monkeypatch.setattr(importers_sources.NpzSource, "episode", real)
    real_write = importers.write_dataset

    def write_dies(root, episodes, *a, **k):
        next(iter(episodes))
        raise KeyboardInterrupt

    monkeypatch.setattr(importers, "write_dataset", write_dies)
    with pytest.raises(KeyboardInterrupt):
        run(argv + ["--out", tmp_path / "out"])
    assert not (tmp_path / "out").exists() and len(list(staging.glob("episode_*.npz"))) == 4
    monkeypatch.setattr(importers, "write_dataset", real_write)
    assert run(argv + ["--out", tmp_path / "out"]) == (0, "")
    assert not staging.exists() and len(handed) == 2
    assert_same_episodes(handed[0], handed[1])  # exact: the frames and columns before encoding
    whole, out = open_dataset(tmp_path / "whole"), open_dataset(tmp_path / "out")
    assert out.episode_lengths == whole.episode_lengths == [3, 5, 4, 2]
    for e in range(4):  # exact: parquet columns, written by our code
        for k in whole.numeric_keys:
            assert np.array_equal(out.column(k, e), whole.column(k, e)), (k, e)
    assert_decoded_close(whole, out, CAM, 4)  # tolerance: two h264 encodings (codec_noise.py)
    assert run(argv + ["--out", tmp_path / "out"]) == (0, "")  # finished: returns at once
    code, err = run(argv + ["--out", tmp_path / "out", "--task", "other"])
    assert code == 2 and "exolam_import.json" in err and "options.task=None (asked 'other')" in err


# ----------------------------------------------------------------------------------------- malformed

def bad_inputs(tmp_path: Path) -> dict:
    """name -> (argv after KIND SRC (with KIND, SRC first), expected text in the message)."""
    t = tmp_path
    (t / "empty").mkdir()
    (t / "broken").mkdir()
    (t / "broken" / "x.mp4").write_bytes(b"\x00\x01garbage" * 50)
    (t / "cut").mkdir()
    write_video(t / "cut" / "c.mp4", smooth(30, 16, 16, 1))
    (t / "cut" / "c.mp4").write_bytes((t / "cut" / "c.mp4").read_bytes()[:1000])
    lapo_chunks(t / "nokey")
    np.savez(t / "nokey" / "1.npz", obs=np.zeros((4, 16, 16, 3), np.uint8), done=np.zeros(4, bool))
    lapo_chunks(t / "lengths")
    np.savez(t / "lengths" / "1.npz", obs=np.zeros((4, 16, 16, 3), np.uint8), ta=np.zeros(3, int),
             rewards=np.zeros(4), done=np.zeros(4, bool))
    (t / "noobs").mkdir()
    np.savez(t / "noobs" / "0.npz", pixels=np.zeros((4, 16, 16, 3), np.uint8))
    lapo_chunks(t / "good")
    write_dataset(t / "v3", [{"a": np.zeros((2, 1), np.float32)}], {"a": {"dtype": "float32", "shape": [1]}}, 10)
    (t / "taken").mkdir()
    return {
        "kind": (["tfrecord", t / "empty"], "unknown kind 'tfrecord'"),
        "flag": (["mp4", t / "empty", "--frames", "3"], "unknown option '--frames'"),
        "value": (["mp4", t / "empty", "--fps"], "--fps needs a value"),
        "int": (["mp4", t / "empty", "--fps", "x"], "--fps = 'x' must be an integer"),
        "other kind": (["mp4", t / "empty", "--layout", "laom"], "--layout does not apply to mp4"),
        "no out": (["mp4", t / "empty"], "--out is required"),
        "no src": (["mp4", "--out", t / "o"], "SRC is missing"),
        "odd size": (["mp4", t / "empty", "--image-size", "15"], "image_size = 15 must be even"),
        "missing src": (["mp4", t / "nowhere"], "nowhere: missing"),
        "empty": (["mp4", t / "empty"], "empty: holds no video file"),
        "undecodable": (["mp4", t / "broken"], "x.mp4: cannot be opened as a video"),
        "cut mp4": (["mp4", t / "cut"], "c.mp4: cannot be opened as a video"),
        "npz key": (["npz", t / "nokey", "--fps", "5"], "1.npz: key 'ta' is missing"),
        "npz lengths": (["npz", t / "lengths", "--fps", "5"], "1.npz: 'ta' has (3,) rows, 'obs' 4 (inconsistent"),
        "npz obs": (["npz", t / "noobs", "--fps", "5"], "0.npz: no observation array"),
        "npz fps": (["npz", t / "nokey"], "--fps is needed"),
        "v3 given": (["lerobot-v21", t / "v3"], "codebase_version 'v3.0' is not v2.0 or v2.1"),
        "v21 fps": (["lerobot-v21", t / "v3", "--fps", "5"], "--fps does not apply to lerobot-v21"),
        "out taken": (["npz", t / "good", "--fps", "5", "--out", t / "taken"],
                      "taken: already exists and is not an import of ours"),
        "out in src": (["npz", t / "nokey", "--fps", "5", "--out", t / "nokey" / "ds"], "lies inside SRC"),
    }


def bad_hdf5_inputs(tmp_path: Path) -> dict:
    t = tmp_path
    h5py = pytest.importorskip("h5py")
    robomimic_file(t / "r.hdf5")
    laom_file(t / "l.hdf5")
    with h5py.File(t / "r_missing.hdf5", "w") as f:
        f.create_dataset("data/demo_0/obs/agentview_rgb", data=np.zeros((3, 16, 16, 3), np.uint8))
        f.create_dataset("data/demo_0/actions", data=np.zeros((3, 2)))
        f.create_dataset("data/demo_1/obs/agentview_rgb", data=np.zeros((3, 16, 16, 3), np.uint8))
        f.create_dataset("data/demo_2/obs/agentview_rgb", data=np.zeros((3, 16, 16, 3), np.uint8))
    with h5py.File(t / "r_lengths.hdf5", "w") as f:
        f.create_dataset("data/demo_0/obs/agentview_rgb", data=np.zeros((3, 16, 16, 3), np.uint8))
        f.create_dataset("data/demo_0/actions", data=np.zeros((4, 2)))
    (t / "junk.hdf5").write_bytes(b"not hdf5")
    return {
        "layout": (["hdf5", t / "r.hdf5"], "hdf5 needs --layout, one of robomimic, laom"),
        "robomimic on laom": (["hdf5", t / "l.hdf5", "--layout", "robomimic"], "l.hdf5: group 'data' is missing"),
        "laom on robomimic": (["hdf5", t / "r.hdf5", "--layout", "laom", "--fps", "5"], "r.hdf5: holds a 'data' group"),
        "laom fps": (["hdf5", t / "l.hdf5", "--layout", "laom"], "--fps is needed"),
        "camera key": (["hdf5", t / "r.hdf5", "--layout", "robomimic", "--camera-keys", "wrist"],
                       "(data/demo_0): obs key 'wrist' (--camera-keys) is missing"),
        "demo key": (["hdf5", t / "r_missing.hdf5", "--layout", "robomimic", "--fps", "5"],
                     "r_missing.hdf5 (data/demo_1): 'actions' is missing"),
        "demo lengths": (["hdf5", t / "r_lengths.hdf5", "--layout", "robomimic", "--fps", "5"],
                         "(data/demo_0): 'actions' has (4,) steps, the others 3"),
        "not hdf5": (["hdf5", t / "junk.hdf5", "--layout", "laom", "--fps", "5"],
                     "junk.hdf5: cannot be opened as HDF5"),
    }


@pytest.mark.parametrize("make", [bad_inputs, bad_hdf5_inputs])
def test_malformed_inputs_one_line(tmp_path, make):
    cases = make(tmp_path)
    before = digest(tmp_path)
    for name, (argv, want) in cases.items():
        out = ["--out", tmp_path / "o"] if "--out" not in argv and name not in ("no out", "no src") else []
        code, err = run(argv + out)
        assert code == 2 and want in err and "\n" not in err, (name, err)
        assert not (tmp_path / "o").exists() and not (tmp_path / ".o.import-staging").exists(), name
    assert digest(tmp_path) == before


def test_bad_episode_found_while_staging(tmp_path):
    """Bad values show only when an episode is read: the message names file, demo and key; nothing of
    the refused import stays (no OUT, no staging); the fixed source then imports."""
    h5py = pytest.importorskip("h5py")

    robomimic_file(tmp_path / "r.hdf5")
    with h5py.File(tmp_path / "r.hdf5", "r+") as f:
        f["data/demo_1/actions"][2, 0] = np.nan
    argv = ["hdf5", tmp_path / "r.hdf5", "--layout", "robomimic", "--out", tmp_path / "o", "--codec", "h264"]
    code, err = run(argv)
    assert code == 2 and "r.hdf5 (data/demo_1): 'action' holds NaN or inf (step 2)" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.hdf5"]
    with h5py.File(tmp_path / "r.hdf5", "r+") as f:
        f["data/demo_1/actions"][2, 0] = 0.0
    assert run(argv) == (0, "") and open_dataset(tmp_path / "o").episode_lengths


def test_help():
    assert run(["--help"]) == (0, "") and run(["npz", "--help"]) == (0, "")
