"""The own-data commands' failure paths (runs/outdir.py): every case ends in one stderr line, exit code 2, and
nothing left behind; a killed command's temporaries are swept by the next run; two processes never write
one --out; a full disk is a refusal like any other. Tiny generated fixtures only."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from test_data_lerobot import smooth

import exolam
from exolam.cli import main
from exolam.data.lerobot import open_dataset
from exolam.data.lerobot_write import write_dataset
from exolam.runs.outdir import claim, lock_path, remove_stale

IMG, TOP = "observation.image", "observation.images.top"
TINY = ("--image-size 32 --train.batch-size 4 --idm-channels 8 8 --fdm-channels 8 8 --train.precision 32 --train.steps 2 "
        "--train.save-every 1").split()


def tiny(**over) -> list[str]:
    """TINY with some flags replaced (tiny(train_steps=6) -> ... --train.steps 6 ...)."""
    flags = dict(zip(TINY[::2], TINY[1::2])) | {"--" + k.replace("train_", "train.", 1).replace("_", "-"): str(v)
                                                 for k, v in over.items()}
    return [x for kv in flags.items() for x in kv]


def frames_dataset(root: Path, camera: str = IMG, size: int = 32, lengths=(10, 10, 10), action: bool = True) -> Path:
    """A tiny LeRobot v3.0 dataset: smooth moving frames of one camera (+ a float action)."""
    eps, feats = [], {camera: {"dtype": "video", "shape": [size, size, 3]}}
    for i, n in enumerate(lengths):
        ep = {camera: smooth(n, size, size, i)}
        if action:
            ep["action"] = np.random.default_rng(i).normal(size=(n, 2)).astype(np.float32)
        eps.append(ep)
    if action:
        feats["action"] = {"dtype": "float32", "shape": [2]}
    return write_dataset(root, eps, feats, 10, codec="h264")


def tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def refused(argv, want: str, capsys) -> str:
    """`exolam ARGV` is refused: exit code 2, one stderr line holding `want`."""
    capsys.readouterr()
    assert main([str(a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert want in err and err.count("\n") == 1, err
    return err


def dead_pid() -> int:
    """The PID of a process that has exited (a killed writer's)."""
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return frames_dataset(tmp_path_factory.mktemp("data") / "d")


@pytest.fixture(scope="module")
def chunks(tmp_path_factory):
    """LAPO-style npz chunks: a source `exolam import npz` takes."""
    from test_importers import lapo_chunks

    src = tmp_path_factory.mktemp("chunks") / "c"
    lapo_chunks(src)  # + an episode of 200 frames of noise: 150 kB no compression shrinks (the full-disk case)
    n = 200
    np.savez(src / "2.npz", obs=np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3), np.uint8),
             ta=np.zeros(n, int), rewards=np.zeros(n, np.float32), values=np.zeros(n), done=np.arange(n) == n - 1)
    return src


@pytest.fixture(scope="module")
def run(data, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "r"
    assert main(["train", "--data", str(data), "--out", str(out), *TINY]) == 0
    return out


# ------------------------------------------------------------------ refused before anything is created

def test_train_refusals_leave_nothing(data, tmp_path, capsys):
    short = frames_dataset(tmp_path / "short", lengths=(1,))
    cases = [
        (data, tiny(image_size=100000), "needs at least"),  # the model alone cannot fit in memory
        (data, tiny(frame_gap=100), "no episode is longer than frame_gap = 100"),
        (short, tiny(), "no episode is longer than frame_gap = 1"),
        (data, tiny(train_lr=1e30, train_steps=6), "lower --train.lr"),  # diverged: names the flag exolam train knows
    ]
    for d, flags, want in cases:
        before = tree(tmp_path)
        refused(["train", "--data", d, "--out", tmp_path / "o" / "r", *flags], want, capsys)
        assert tree(tmp_path) == before, flags


@pytest.mark.parametrize("where", ["equal", "inside"])
def test_out_in_an_input_is_refused_by_every_command(data, run, tmp_path, capsys, where):
    work = tmp_path / "w"
    shutil.copytree(data, work / "d")
    shutil.copytree(run, work / "r")
    d, r = work / "d", work / "r"
    pick = (lambda p: p) if where == "equal" else (lambda p: p / "sub")
    before = tree(work)
    refused(["train", "--data", d, "--out", pick(d), *TINY], "--data", capsys)
    refused(["label", "--checkpoint", r, "--data", d, "--out", pick(d)], "--data", capsys)
    refused(["label", "--checkpoint", r, "--data", d, "--out", pick(r / "checkpoint")], "--checkpoint", capsys)
    refused(["diagnose", "--checkpoint", r, "--data", d, "--out", d / "sub"], "--data", capsys)
    refused(["diagnose", "--checkpoint", r, "--data", d, "--out", r / "checkpoint" / "sub"], "--checkpoint", capsys)
    refused(["import", "lerobot-v21", d, "--out", pick(d)], "SRC", capsys)
    assert tree(work) == before


def test_checkpoint_camera_and_size_checked_alike_by_label_and_diagnose(data, run, tmp_path, capsys):
    other = frames_dataset(tmp_path / "top", camera=TOP)
    small = frames_dataset(tmp_path / "small", size=16)
    for cmd in ("label", "diagnose"):
        base = [cmd, "--checkpoint", run, "--out", tmp_path / f"{cmd}-out"]
        refused(base + ["--data", other], f"trained on camera '{IMG}', which", capsys)  # never another camera silently
        refused(base + ["--data", small], "trained on 32x32x3 (HxWxC) frames", capsys)  # diagnose no longer resizes
        assert not (tmp_path / f"{cmd}-out").exists()
        assert main([str(a) for a in base] + ["--data", str(other), "--camera", TOP]) == 0  # another camera, on purpose
    assert json.loads((tmp_path / "label-out" / "meta" / "exolam_label.json").read_text())["camera"] == TOP


def test_load_accepts_what_label_and_diagnose_accept(run):
    assert type(exolam.load(run)) is type(exolam.load(run / "checkpoint"))


# ------------------------------------------------------------------ import: nothing left, staging rebuilt

def test_import_refusals_leave_nothing(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "noobs.hdf5", "w") as f:  # laom trajectories without `obs`
        for i in range(2):
            f.create_group(str(i)).create_dataset("actions", data=np.zeros((3, 2), np.float32))
    (tmp_path / "floats").mkdir()
    np.savez(tmp_path / "floats" / "0.npz", obs=np.zeros((4, 16, 16, 3), np.float32), ta=np.zeros(4, int),
             done=np.array([0, 0, 0, 1], bool))
    before = tree(tmp_path)
    refused(["import", "hdf5", tmp_path / "noobs.hdf5", "--layout", "laom", "--fps", "10", "--out", tmp_path / "a"],
            "'obs' is missing", capsys)
    refused(["import", "npz", tmp_path / "floats", "--fps", "10", "--out", tmp_path / "b"], "must be uint8", capsys)
    assert tree(tmp_path) == before  # no .b.import-staging/spec.json


def test_import_of_a_truncated_video_then_fixed(tmp_path, capsys):
    from test_importers import write_video

    src = tmp_path / "videos"
    src.mkdir()
    write_video(src / "a.mp4", smooth(6, 16, 16, 0))
    write_video(src / "b.mp4", smooth(30, 16, 16, 1))
    good = (src / "b.mp4").read_bytes()
    (src / "b.mp4").write_bytes(good[:1000])
    argv = ["import", "mp4", src, "--out", tmp_path / "out", "--codec", "h264"]
    before = tree(tmp_path)
    refused(argv, "b.mp4", capsys)
    assert tree(tmp_path) == before  # staging of episode 0 removed with the refusal
    (src / "b.mp4").write_bytes(good)  # the user replaces the bad file, reruns the same command
    assert main([str(a) for a in argv]) == 0
    assert open_dataset(tmp_path / "out").episode_lengths == [6, 30] and not (tmp_path / ".out.import-staging").exists()


# ------------------------------------------------------------------ killed processes: stale temporaries

def test_stale_temporaries_of_dead_processes_are_swept(data, run, chunks, tmp_path):
    pid, alive = dead_pid(), os.getppid()
    stale = [tmp_path / f".lab.tmp{pid}", tmp_path / f".rep.tmp{pid}", tmp_path / f".imp.tmp{pid}"]
    for d in stale:
        (d / "meta").mkdir(parents=True)
        (d / "meta" / "x").write_bytes(b"0" * 4096)
    live = tmp_path / f".lab.tmp{alive}"  # a writer still running is never touched
    live.mkdir()
    r = tmp_path / "r"
    shutil.copytree(run, r)
    (r / f".train.json.tmp{pid}").write_text("{")
    (r / f".checkpoint.tmp{pid}").mkdir()
    assert main(["label", "--checkpoint", str(r), "--data", str(data), "--out", str(tmp_path / "lab")]) == 0
    assert main(["diagnose", "--checkpoint", str(r), "--data", str(data), "--out", str(tmp_path / "rep"),
                 "--max-windows", "16"]) == 0
    assert main(["import", "npz", str(chunks), "--fps", "10", "--out", str(tmp_path / "imp")]) == 0
    assert main(["train", "--data", str(data), "--out", str(r), *TINY]) == 0  # finished: returns, swept
    assert not any(p.exists() for p in stale) and live.exists()
    assert not (r / f".train.json.tmp{pid}").exists() and not (r / f".checkpoint.tmp{pid}").exists()


STALL = textwrap.dedent("""
    import importlib, sys, time
    module, name = sys.argv[1].rsplit(".", 1)
    m = importlib.import_module(module)
    real = getattr(m, name)
    def stall(*a, **k):
        out = real(*a, **k)
        print("stalled", flush=True)
        time.sleep(120)
        return out
    setattr(m, name, stall)
    from exolam.cli import main
    main(sys.argv[2:])
""")


def test_label_killed_mid_write_then_rerun(data, run, tmp_path):
    """kill -9 of a real `exolam label` with its copy built under the temporary name: the rerun sweeps that
    folder and writes exactly what an uninterrupted run writes."""
    from test_own_train_label import digest

    argv = ["label", "--checkpoint", str(run), "--data", str(data)]
    p = subprocess.Popen([sys.executable, "-c", STALL, "exolam.workflows.label._write_copy", *argv, "--out",
                          str(tmp_path / "lab")], stdout=subprocess.PIPE, text=True)
    while (line := p.stdout.readline()) and line.strip() != "stalled":
        pass
    assert line.strip() == "stalled"
    p.kill()
    p.wait()
    assert (tmp_path / f".lab.tmp{p.pid}").is_dir() and not (tmp_path / "lab").exists()
    assert main(argv + ["--out", str(tmp_path / "lab")]) == 0
    assert main(argv + ["--out", str(tmp_path / "ref")]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab", "ref"]
    assert digest(tmp_path / "lab") == digest(tmp_path / "ref")


def test_checkpoint_left_aside_by_a_kill_between_renames(data, run, tmp_path):
    r = tmp_path / "r"
    shutil.copytree(run, r)
    os.replace(r / "checkpoint", r / ".checkpoint.old")  # killed after moving the old copy aside
    assert type(exolam.load(r)).__name__ == "LapoLAM"
    assert main(["label", "--checkpoint", str(r), "--data", str(data), "--out", str(tmp_path / "lab")]) == 0


def test_remove_stale_keeps_other_names_and_live_writers(tmp_path):
    pid = dead_pid()
    kept = [f".b.tmp{pid}", f".ab.tmp{pid}", f".a.tmp{os.getpid()}", f"a.tmp{pid}", ".a.tmpx"]
    for name in [f".a.tmp{pid}", *kept]:
        (tmp_path / name).write_text("x")
    assert [p.name for p in remove_stale(tmp_path, "a")] == [f".a.tmp{pid}"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept)
    assert sorted(p.name for p in remove_stale(tmp_path)) == sorted([f".b.tmp{pid}", f".ab.tmp{pid}"])


# ------------------------------------------------------------------ races: one writer per --out

HOLD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from exolam.runs.outdir import Lock
    Path(sys.argv[1]).parent.mkdir(parents=True, exist_ok=True)
    with Lock(sys.argv[1]):
        print("held", flush=True)
        time.sleep(120)
""")


def hold(target: Path) -> subprocess.Popen:
    """A second process holding the lock of `target` (as a running command would)."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(target)], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.fixture
def holder(tmp_path):
    out = tmp_path / "out"
    p = hold(out)
    yield out, p
    p.kill()
    p.wait()


def test_a_second_reproduce_of_one_experiment_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    p = hold(runs / "leakage")
    try:
        tiny_run = ["reproduce", "leakage", "--out", runs, "--env.n-traj", "40", "--env.n-test-traj", "10",
                    "--train.steps", "40", "--eval-samples", "50", "--seeds", "1"]
        refused(tiny_run, f"PID {p.pid}", capsys)
        assert sorted(x.name for x in runs.iterdir()) == [".leakage.lock"]  # no config.json written
        assert main([str(a) for a in tiny_run + ["--shard", "1/2"]]) == 0  # a shard holds its own lock
    finally:
        p.kill()
        p.wait()


def test_a_second_process_on_one_out_is_refused(data, run, chunks, holder, tmp_path, capsys):
    out, p = holder
    pid = f"PID {p.pid}"
    refused(["train", "--data", data, "--out", out, *TINY], pid, capsys)
    refused(["import", "npz", chunks, "--fps", "10", "--out", out], pid, capsys)
    refused(["label", "--checkpoint", run, "--data", data, "--out", out], pid, capsys)
    refused(["diagnose", "--checkpoint", run, "--data", data, "--out", out], pid, capsys)
    assert not out.exists() and lock_path(out).exists()
    p.kill()
    p.wait()  # killed holder: the kernel drops its lock, the next run proceeds
    with claim(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists() and not out.exists()


def test_claim_rolls_back_only_what_it_created(tmp_path):
    out = tmp_path / "a" / "b" / "out"
    with pytest.raises(RuntimeError), claim(out):
        out.mkdir()
        (out / "x").write_text("x")
        raise RuntimeError
    assert not (tmp_path / "a").exists()  # out and the parents it created, gone
    out.mkdir(parents=True)
    (out / "old").write_text("kept")
    with pytest.raises(RuntimeError), claim(out, resumable=lambda: True):
        (out / "new").write_text("kept: resumable")
        raise RuntimeError
    assert sorted(p.name for p in out.iterdir()) == ["new", "old"]
    from exolam.errors import ConfigError

    with pytest.raises(ConfigError), claim(out, resumable=lambda: True):
        (out / "newer").write_text("removed: a refusal is never resumed")
        raise ConfigError("bad")
    assert sorted(p.name for p in out.iterdir()) == ["new", "old"]


# ------------------------------------------------------------------ a full disk

@pytest.fixture
def small_disk(tmp_path):
    """A 1 MiB tmpfs mounted at tmp_path/disk (root only; skipped where it cannot be mounted)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)],
                                                       capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root): the full-disk case is not exercised")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def fill(disk: Path, leave: int) -> None:
    st = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))


@pytest.mark.parametrize("leave", [24 << 10, 4 << 10])
def test_full_disk_is_a_clean_refusal(data, run, chunks, small_disk, capsys, leave):
    fill(small_disk, leave)
    before = tree(small_disk)
    refused(["train", "--data", data, "--out", small_disk / "r", *TINY], "No space left on device", capsys)
    refused(["import", "npz", chunks, "--fps", "10", "--out", small_disk / "imp"], "No space left", capsys)
    refused(["label", "--checkpoint", run, "--data", data, "--out", small_disk / "lab"], "No space left", capsys)
    refused(["diagnose", "--checkpoint", run, "--data", data, "--out", small_disk / "rep", "--max-windows", "16"],
            "No space left", capsys)
    assert tree(small_disk) == before
