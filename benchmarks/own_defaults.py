"""Do `exolam train`'s defaults learn a latent action? `exolam train --data D --out O`, no other flag, then
`exolam diagnose`, on four datasets, one after the other on this machine (issue 23):

    walkthrough   the README walkthrough's action-free videos: `exolam control videos --episodes 12
                  --steps 200` imported with `exolam import mp4` (64 px cheetah, 100 fps, AV1)
    paired        the walkthrough's paired cheetah data: `exolam control collect --episodes 12 --steps 200`
                  (h264, with the paired view `observation.image_alt`)
    grid          the grid world's export (envs/gridworld.py `export_lerobot`, sigma 0.4, 4,096 transitions:
                  2-frame episodes of 1 x 4 x 4 float frames)
    open50        a real bimanual teleoperation dataset, LeRobot v3.0, 640 x 480 h264, 30 fps, 10 episodes,
                  4,083 frames (`--open50 PATH`; skipped when absent: it is not ours to ship)

Per dataset one JSON line in --out/rows.jsonl: the defaults train chose (its start line), the wall time
of train (frame cache included) and of diagnose, the last guard, and diagnose's verdict with its FDM
permuted-z ratio and z's change when o' is replaced. Resumable: a dataset with a row is skipped, and
the datasets and runs under --out are reused.

    python benchmarks/own_defaults.py --out /tmp/own-defaults --open50 ../shared/data/open50-10ep
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

p = argparse.ArgumentParser()
p.add_argument("--out", default="runs/bench-own-defaults")
p.add_argument("--open50", default="")
p.add_argument("--only", nargs="*", default=None, help="dataset names to run")
args = p.parse_args()
out = Path(args.out).absolute()
out.mkdir(parents=True, exist_ok=True)
exolam = [sys.executable, "-m", "exolam.cli"]
env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}


def sh(cmd: list[str], log: Path) -> float:
    t0 = time.perf_counter()
    with open(log, "w") as f:
        subprocess.run(cmd, check=True, stdout=f, stderr=subprocess.STDOUT, env=env)
    return time.perf_counter() - t0


def make(name: str) -> Path | None:
    if name == "walkthrough":
        if not (out / "byo").exists():
            sh(exolam + ["control", "videos", "--episodes", "12", "--steps", "200", "--out", str(out / "videos")],
               out / "videos.log")
            sh(exolam + ["import", "mp4", str(out / "videos"), "--out", str(out / "byo")], out / "import.log")
        return out / "byo"
    if name == "paired":
        if not (out / "paired" / "dataset").exists():
            sh(exolam + ["control", "collect", "--episodes", "12", "--steps", "200", "--out", str(out / "paired")],
               out / "collect.log")
        return out / "paired" / "dataset"
    if name == "grid":
        if not (out / "grid").exists():
            from exolam.envs.gridworld import GridWorldConfig, export_lerobot, make_dataset

            export_lerobot(make_dataset(GridWorldConfig(sigma=0.4, n_train=4096, n_test=512))[0], out / "grid")
        return out / "grid"
    return Path(args.open50) if args.open50 and Path(args.open50).exists() else None


rows = out / "rows.jsonl"
done = {json.loads(line)["dataset"] for line in rows.read_text().splitlines()} if rows.exists() else set()
for name in args.only or ["walkthrough", "paired", "grid", "open50"]:
    if name in done:
        continue
    data = make(name)
    if data is None:
        print(f"{name}: skipped (no --open50 folder)")
        continue
    run, report = out / f"lam-{name}", out / f"report-{name}"
    train_s = sh(exolam + ["train", "--data", str(data), "--out", str(run)], out / f"train-{name}.log")
    diag_s = None if (report / "diagnose.json").exists() else \
        sh(exolam + ["diagnose", "--checkpoint", str(run), "--data", str(data), "--out", str(report)],
           out / f"diagnose-{name}.log")
    log = (out / f"train-{name}.log").read_text().replace("\r", "\n").splitlines()
    start = [line for line in log if line.startswith("[train] ") and ("LAM" in line or "chosen" in line)]
    guard = json.loads((run / "checkpoint" / "config.json").read_text()).get("guard")
    d = json.loads((report / "diagnose.json").read_text())
    row = {"dataset": name, "data": str(data), "start": start, "train_s": round(train_s), "diagnose_s": diag_s and round(diag_s),
           "guard": guard, "verdict": d.get("verdict", {}).get("answer"),
           "fdm_ratio": d["fdm_uses_z"].get("ratio"), "z_change_when_next_replaced": d["z_uses_next"].get("relative_change"),
           "probe_nmse": d["probe"].get("probe_nmse"), "consistency_r": d["paired"].get("consistency_relative"),
           "threads": os.environ.get("OMP_NUM_THREADS", "all cores")}
    with open(rows, "a") as f:
        f.write(json.dumps(row) + "\n")
    print(json.dumps(row), flush=True)
