"""LeRobot v3.0 writer/reader and v2.1 reader (data/lerobot*.py, video.py); windows: test_windows.py."""

import hashlib
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from exolam.data import video
from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.data.windows import WindowDataset, WindowSource
from exolam.errors import ConfigError

FPS = 10
CAM = "observation.images.cam"
LENGTHS = (8, 6, 7)


def smooth(n, h, w, seed):
    """Smooth moving colour waves (uint8 [n, h, w, 3]): what a lossy codec keeps well."""
    r = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    fx, fy = r.uniform(0.3, 0.8, 2)
    waves = [127 + 100 * np.sin(2 * np.pi * (fx * x + fy * y + 0.1 * t + c / 3)) for t in range(n) for c in range(3)]
    return np.clip(np.reshape(waves, (n, 3, h, w)).transpose(0, 2, 3, 1), 0, 255).astype(np.uint8)


def make_episodes(lengths=LENGTHS, size=32, actions=True, channels=3):
    eps = []
    for e, n in enumerate(lengths):
        frames = smooth(n, size, size, e)
        ep = {CAM: frames if channels == 3 else frames[..., :1].copy(),
              "observation.state": (np.arange(n * 16, dtype=np.float32).reshape(n, 1, 4, 4) + 1000 * e) / 7,
              "task": f"task {e % 2}"}
        if actions:
            ep["action"] = np.stack([np.arange(n), -np.arange(n) - e], 1).astype(np.float32)
        eps.append(ep)
    return eps


def features(size=32, actions=True, channels=3):
    f = {CAM: {"dtype": "video", "shape": [size, size, channels]},
         "observation.state": {"dtype": "float32", "shape": [1, 4, 4]}}
    if actions:
        f["action"] = {"dtype": "float32", "shape": [2], "names": ["dx", "dy"]}
    return f


def tree_digest(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def write_base(root: Path) -> Path:
    """One small h264 v3 dataset with actions (3 episodes of LENGTHS frames)."""
    write_dataset(root, make_episodes(), features(), FPS, codec="h264")
    return root


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """`write_base`, which tests copy before damaging."""
    return write_base(tmp_path_factory.mktemp("base") / "ds")


@pytest.fixture
def copy(base, tmp_path):
    return Path(shutil.copytree(base, tmp_path / "ds"))


# ------------------------------------------------------------------------------------ v3 round trip

@pytest.mark.parametrize("codec", ["h264", "av1"])
@pytest.mark.parametrize("actions", [True, False])
def test_v3_round_trip(tmp_path, codec, actions):
    eps = make_episodes(actions=actions)
    root = write_dataset(tmp_path / "ds", eps, features(actions=actions), FPS, codec=codec, robot_type="sim")
    ds = open_dataset(root)
    assert (ds.version, ds.fps, ds.episode_lengths, ds.num_frames) == ("v3.0", FPS, list(LENGTHS), sum(LENGTHS))
    assert ds.video_keys == [CAM] and ("action" in ds.features) == actions
    assert ds.episode_tasks == [["task 0"], ["task 1"], ["task 0"]]
    for e, src in enumerate(eps):
        frames = ds.frames(CAM, e)
        assert frames.shape == src[CAM].shape and frames.dtype == np.uint8
        assert np.abs(frames.astype(float) - src[CAM]).mean() < 8, "lossy, but close"
        state = ds.column("observation.state", e)
        assert state.dtype == np.float32 and np.array_equal(state, src["observation.state"])
        if actions:
            assert np.array_equal(ds.column("action", e), src["action"])
        picked = ds.frames_at(CAM, e, [5, 0, 3, 3, 1])  # random access (seeks) = sequential decoding
        assert all(np.array_equal(picked[j], frames[t]) for j, t in enumerate([5, 0, 3, 3, 1]))
    ds.validate(deep=True)
    info = json.loads((root / "meta" / "info.json").read_text())
    assert info["features"][CAM]["info"]["video.codec"] == codec
    with av.open(str(root / "videos" / CAM / "chunk-000" / "file-000.mp4")) as c:  # one file, all episodes
        assert c.streams.video[0].codec.canonical_name == codec and c.streams.video[0].frames == sum(LENGTHS)


def test_lossless_codec_round_trips_frames_exactly(tmp_path):
    """h264-lossless (libx264rgb, qp 0): every decoded frame equals what was written, bit for bit, in
    order and at random access; info.json records the stream as LeRobot reads it (h264, gbrp)."""
    rng = np.random.default_rng(0)
    eps = [{CAM: rng.integers(0, 256, (n, 16, 16, 3), dtype=np.uint8)} for n in LENGTHS]  # noise: no smooth help
    root = write_dataset(tmp_path / "ds", eps, {CAM: {"dtype": "video", "shape": [16, 16, 3]}}, FPS,
                         codec="h264-lossless")
    ds = open_dataset(root)
    for e, src in enumerate(eps):
        assert np.array_equal(ds.frames(CAM, e), src[CAM])
        assert np.array_equal(ds.frames_at(CAM, e, [4, 0, 2]), src[CAM][[4, 0, 2]])
    info = json.loads((root / "meta" / "info.json").read_text())["features"][CAM]["info"]
    assert (info["video.codec"], info["video.pix_fmt"]) == ("h264", "gbrp")
    with pytest.raises(ConfigError, match="stores RGB frames"):
        write_dataset(tmp_path / "gray", [{CAM: eps[0][CAM][..., :1]}], {CAM: {"dtype": "video", "shape": [16, 16, 1]}},
                      FPS, codec="h264-lossless")


def test_v3_layout_matches_lerobot(base):
    info = json.loads((base / "meta" / "info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["splits"] == {"train": "0:3"}
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (3, sum(LENGTHS), 2)
    assert (info["chunks_size"], info["data_files_size_in_mb"], info["video_files_size_in_mb"]) == (1000, 100, 200)
    assert info["data_path"] == "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
    assert info["video_path"] == "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
    cam = info["features"][CAM]
    assert cam["shape"] == [32, 32, 3] and cam["names"] == ["height", "width", "channels"]
    assert {"video.codec", "video.pix_fmt", "video.fps", "video.height", "video.width"} <= set(cam["info"])
    assert info["features"]["timestamp"] == {"dtype": "float32", "shape": [1], "names": None, "fps": FPS}
    eps = pq.read_table(base / "meta" / "episodes" / "chunk-000" / "file-000.parquet").to_pydict()
    assert eps["length"] == list(LENGTHS) and eps["dataset_to_index"] == list(np.cumsum(LENGTHS))
    assert eps[f"videos/{CAM}/from_timestamp"] == [0.0, 0.8, 1.4] and eps[f"videos/{CAM}/to_timestamp"][-1] == 2.1
    data = pq.read_table(base / "data" / "chunk-000" / "file-000.parquet")
    assert {"observation.state", "action", "timestamp", "frame_index", "episode_index", "index",
            "task_index"} == set(data.column_names)
    assert data.column("index").to_pylist() == list(range(sum(LENGTHS)))
    tasks = pq.read_table(base / "meta" / "tasks.parquet")
    assert tasks.to_pydict() == {"task_index": [0, 1], "task": ["task 0", "task 1"]}
    assert json.loads(tasks.schema.metadata[b"pandas"])["index_columns"] == ["task"]
    stats = json.loads((base / "meta" / "stats.json").read_text())
    assert np.shape(stats[CAM]["mean"]) == (3, 1, 1) and np.shape(stats["observation.state"]["std"]) == (1, 4, 4)
    assert stats["action"]["max"] == [7.0, 0.0] and stats["action"]["count"] == [sum(LENGTHS)]


def test_many_files_and_chunks_and_gray(tmp_path):
    """Tiny size limits: one file per episode, two files per chunk; a one-channel video round-trips."""
    eps = make_episodes(channels=1, size=16)
    root = write_dataset(tmp_path / "ds", eps, features(channels=1, size=16), FPS, codec="h264", chunks_size=2,
                         data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    assert (root / "data" / "chunk-001" / "file-000.parquet").is_file()
    assert (root / "videos" / CAM / "chunk-001" / "file-000.mp4").is_file()
    ds = open_dataset(root)
    for e, src in enumerate(eps):
        frames = ds.frames(CAM, e)
        assert frames.shape == src[CAM].shape and np.abs(frames.astype(float) - src[CAM]).mean() < 8
        assert np.array_equal(ds.column("action", e), src["action"])


# ------------------------------------------------------------------------------------------ v2.1

def write_v21(root: Path, lengths=(5, 4), h264_frames=None):
    """A tiny LeRobot v2.1 folder written by hand (the LEGACY_* templates of lerobot's utils.py)."""
    (root / "meta").mkdir(parents=True)
    info = {"codebase_version": "v2.1", "robot_type": None, "total_episodes": len(lengths),
            "total_frames": sum(lengths), "total_tasks": 1, "total_videos": len(lengths), "total_chunks": 1,
            "chunks_size": 1000, "fps": FPS, "splits": {"train": f"0:{len(lengths)}"},
            "data_path": "data/chunk-{episode_chunk:03d}/episode_{episode_index:06d}.parquet",
            "video_path": "videos/chunk-{episode_chunk:03d}/{video_key}/episode_{episode_index:06d}.mp4",
            "features": {CAM: {"dtype": "video", "shape": [32, 32, 3], "names": ["height", "width", "channel"],
                               "info": {"video.fps": FPS, "video.codec": "h264", "video.pix_fmt": "yuv420p"}},
                         "action": {"dtype": "float32", "shape": [2], "names": None},
                         **{k: {"dtype": d, "shape": [1], "names": None} for k, d in (
                             ("timestamp", "float32"), ("frame_index", "int64"), ("episode_index", "int64"),
                             ("index", "int64"), ("task_index", "int64"))}}}
    (root / "meta" / "info.json").write_text(json.dumps(info))
    (root / "meta" / "episodes.jsonl").write_text("".join(
        json.dumps({"episode_index": e, "tasks": ["push"], "length": n}) + "\n" for e, n in enumerate(lengths)))
    (root / "meta" / "tasks.jsonl").write_text(json.dumps({"task_index": 0, "task": "push"}) + "\n")
    eps, start = [], 0
    for e, n in enumerate(lengths):
        action = np.stack([np.arange(n), np.full(n, e)], 1).astype(np.float32)
        frames = smooth(n, 32, 32, 10 + e)
        data = root / "data" / "chunk-000" / f"episode_{e:06d}.parquet"
        data.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"action": pa.array(list(action), pa.list_(pa.float32())),
                                 "timestamp": pa.array(np.arange(n) / FPS, pa.float32()), "frame_index": np.arange(n),
                                 "episode_index": np.full(n, e), "index": start + np.arange(n),
                                 "task_index": np.zeros(n, np.int64)}), data)
        mp4 = root / "videos" / "chunk-000" / CAM / f"episode_{e:06d}.mp4"
        mp4.parent.mkdir(parents=True, exist_ok=True)
        with av.open(str(mp4), "w") as c:
            s = c.add_stream("libx264", rate=FPS)
            s.width, s.height, s.pix_fmt, s.options = 32, 32, "yuv420p", {"g": "2"}
            for img in frames[:h264_frames]:
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        eps.append({"action": action, CAM: frames})
        start += n
    return eps


def test_v21_read(tmp_path):
    eps = write_v21(tmp_path / "v21")
    ds = open_dataset(tmp_path / "v21")
    assert (ds.version, ds.episode_lengths, ds.episode_tasks) == ("v2.1", [5, 4], [["push"], ["push"]])
    for e, src in enumerate(eps):
        assert np.array_equal(ds.column("action", e), src["action"])
        assert np.abs(ds.frames(CAM, e).astype(float) - src[CAM]).mean() < 8
    ds.validate(deep=True)
    win = WindowDataset(ds, {"o": CAM, "a": "action"})
    assert len(win) == 4 + 3 and win[4]["a"].tolist() == [0.0, 1.0]


# ------------------------------------------------------------------------------- reader is read-only

def test_reader_leaves_source_byte_identical(base, tmp_path):
    before = tree_digest(base)
    ds = open_dataset(base)
    ds.validate(deep=True)
    src = WindowSource(WindowDataset(ds, {"o": CAM, "a": "action"}, image_size=16), seed=0, steps=3, batch_size=4,
                       num_workers=1)  # forked after this process decoded: must not touch its FFmpeg state
    assert [b.o.shape for b in src.batches()] == [(4, 3, 16, 16)] * 3
    assert tree_digest(base) == before


# -------------------------------------------------------------------------------- writer atomicity

def test_writer_is_atomic(tmp_path):
    def episodes():
        yield make_episodes()[0]
        bad = make_episodes()[1]
        bad["observation.state"] = bad["observation.state"][:, :, :3]  # wrong shape mid-write
        yield bad

    with pytest.raises(ConfigError, match=r"episode 1: 'observation.state' has shape \(6, 1, 3, 4\)"):
        write_dataset(tmp_path / "ds", episodes(), features(), FPS, codec="h264")
    assert list(tmp_path.iterdir()) == []  # neither the root nor the temporary folder
    root = write_dataset(tmp_path / "ds", make_episodes()[:1], features(), FPS, codec="h264")
    with pytest.raises(ConfigError, match="already exists"):
        write_dataset(root, make_episodes()[:1], features(), FPS)
    write_dataset(root, make_episodes()[:2], features(), FPS, codec="h264", overwrite=True)
    assert open_dataset(root).episode_lengths == [8, 6] and [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_writer_refuses_nan(tmp_path):
    ep = make_episodes()[0]
    ep["action"][4, 1] = np.inf
    with pytest.raises(ConfigError, match="episode 0 frame 4: 'action' holds NaN or inf"):
        write_dataset(tmp_path / "ds", [ep], features(), FPS, codec="h264")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("feats, match", [
    ({CAM: {"dtype": "video", "shape": [15, 16, 3]}}, "even H and W"),
    ({"x": {"dtype": "float16", "shape": [2]}}, "dtype = 'float16'"),
    ({"a/b": {"dtype": "float32", "shape": [2]}}, "without '/'"),
])
def test_writer_refuses_bad_features(tmp_path, feats, match):
    with pytest.raises(ConfigError, match=match):
        write_dataset(tmp_path / "ds", [], feats, FPS)
    assert not (tmp_path / "ds").exists()


# ------------------------------------------------------------------------------------- bad input

def rewrite_parquet(path: Path, change) -> None:
    cols = pq.read_table(path).to_pydict()
    change(cols)
    pq.write_table(pa.table(cols), path)


def edit_info(root: Path, change) -> None:
    info = json.loads((root / "meta" / "info.json").read_text())
    change(info)
    (root / "meta" / "info.json").write_text(json.dumps(info))


def cut_action(cols):
    keep = [i for i in range(len(cols["index"])) if not (cols["episode_index"][i] == 1 and cols["frame_index"][i] == 5)]
    for k in cols:
        cols[k] = [cols[k][i] for i in keep]


def nan_action(cols):
    cols["action"][LENGTHS[0] + 3] = [float("nan"), 0.0]


def set_to_timestamp(cols):
    cols[f"videos/{CAM}/to_timestamp"][1] += 0.3


DATA = "data/chunk-000/file-000.parquet"
MP4 = f"videos/{CAM}/chunk-000/file-000.mp4"
EPISODES = "meta/episodes/chunk-000/file-000.parquet"
BAD = {  # name: (damage, file named, episode named or None, when: "open" or "read")
    "info missing": (lambda r: (r / "meta/info.json").unlink(), "meta/info.json", None, "open"),
    "info not json": (lambda r: (r / "meta/info.json").write_text("{\"fps\": 10,"), "meta/info.json", None, "open"),
    "info key missing": (lambda r: edit_info(r, lambda i: i.pop("fps")), "meta/info.json", None, "open"),
    "unknown version": (lambda r: edit_info(r, lambda i: i.update(codebase_version="v9.9")), "meta/info.json", None,
                        "open"),
    "unknown codec": (lambda r: edit_info(r, lambda i: i["features"][CAM]["info"].update({"video.codec": "nocodec"})),
                      "meta/info.json", None, "open"),
    "column missing": (lambda r: edit_info(r, lambda i: i["features"].update(
        {"observation.velocity": {"dtype": "float32", "shape": [3]}})), DATA, 0, "open"),
    "video missing": (lambda r: (r / MP4).unlink(), MP4, 0, "open"),
    "video truncated": (lambda r: (r / MP4).write_bytes((r / MP4).read_bytes()[: (r / MP4).stat().st_size // 2]),
                        MP4, 0, "open"),
    "timestamps disagree": (lambda r: rewrite_parquet(r / EPISODES, set_to_timestamp), EPISODES, 1, "open"),
    "rows disagree": (lambda r: rewrite_parquet(r / DATA, cut_action), DATA, 1, "read"),
    "nan action": (lambda r: rewrite_parquet(r / DATA, nan_action), DATA, 1, "read"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_names_file_and_episode(copy, name):
    damage, file, episode, when = BAD[name]
    damage(copy)
    with pytest.raises(ConfigError) as err:
        ds = open_dataset(copy)
        assert when == "read", "should have been refused at open"
        ds.column("action", 1)
    msg = str(err.value)
    assert "\n" not in msg and str(copy / file) in msg and err.value.__cause__ is None
    if episode is not None:
        assert f"episode {episode}" in msg
    if name == "nan action":
        assert "frame 3" in msg


def test_undecodable_stream_codec(copy, monkeypatch):
    edit_info(copy, lambda i: i["features"][CAM]["info"].pop("video.codec"))
    monkeypatch.setattr(video, "decodable", lambda codec: codec != "h264")
    with pytest.raises(ConfigError, match=r"file-000\.mp4: its video codec 'h264' cannot be decoded.*episode 0"):
        open_dataset(copy)


def test_v21_video_shorter_than_episode(tmp_path):
    write_v21(tmp_path / "v21", h264_frames=3)  # each mp4 holds 3 frames, the episodes 5 and 4
    ds = open_dataset(tmp_path / "v21")  # per-episode files are checked when first read
    with pytest.raises(ConfigError, match=r"episode_000001\.mp4: holds 3 frames, episode 1 needs frames 0\.\.3"):
        ds.frames(CAM, 1, 0, 1)


def test_to_timestamp_of_the_last_frame_is_read_with_a_note(copy, capsys):
    """Some writers record a video's to_timestamp as the time of the episode's last frame, one frame short
    (../shared/data/open50-10ep, which LeRobot's own reader loads whole): unambiguous, since frames are read
    from from_timestamp, so it is read (every frame, the last included) and said once; a gap of two frames
    is not a convention and stays refused."""
    before = [open_dataset(copy).frames(CAM, e) for e in range(len(LENGTHS))]

    def last_frame_time(cols):
        cols[f"videos/{CAM}/to_timestamp"] = [t - 1 / FPS for t in cols[f"videos/{CAM}/to_timestamp"]]

    rewrite_parquet(copy / EPISODES, last_frame_time)
    capsys.readouterr()
    ds = open_dataset(copy)
    assert ds.episode_lengths == list(LENGTHS)
    assert all(np.array_equal(ds.frames(CAM, e), before[e]) for e in range(len(LENGTHS)))
    open_dataset(copy)
    err = capsys.readouterr().err
    assert err.count("exolam: note:") == 1 and "time of their last frame" in err and "3 of 3 episodes" in err
    rewrite_parquet(copy / EPISODES, last_frame_time)  # now two frames short
    with pytest.raises(ConfigError, match="spans"):
        open_dataset(copy)
