"""Does the real `lerobot` read an `exolam label --as-action` copy the way a policy trains on it? Run with the
Python of a virtual environment holding `lerobot` (not ours: it pulls a CUDA torch), as
`benchmarks/lerobot_check.sh` does; prints one line per check and exits 1 if one fails.

    .venv-lerobot/bin/python benchmarks/lerobot_check.py runs/byo/labelled-as-action

Checks, on `LeRobotDataset(repo_id, root=DIR, video_backend="pyav")` (lerobot's own reader):

    features     `action` is float32 [d_z] and equals `latent_action` on every valid frame; the last k
                 frames of each episode hold the episode's last valid z (no jump); `action.true` (if the
                 source had an action) is the recorded one
    frames       the first and last frame of every episode decode (the camera's shape)
    chunks       an ACT-style action chunk (delta_timestamps: the next 10 steps) at each episode's last
                 frame: lerobot pads past the end with the last frame's action and marks it
                 `action_is_pad`, so a chunk never reads another episode
    loader       one batch of 8 through a torch DataLoader
"""

import sys

import numpy as np
import torch
from lerobot.datasets.lerobot_dataset import LeRobotDataset

root = sys.argv[1]
ok = True


def check(name: str, cond: bool, detail: str = "") -> None:
    global ok
    ok &= bool(cond)
    print(f"[{'ok' if cond else 'FAIL'}] {name}{': ' + detail if detail else ''}", flush=True)


ds = LeRobotDataset("local/exolam-as-action", root=root, video_backend="pyav")
meta = ds.meta
check("loads", True, f"{ds.num_episodes} episodes, {ds.num_frames} frames, fps {ds.fps}")
act = meta.features["action"]
d_z = meta.features["latent_action"]["shape"][0]
check("action feature", act["dtype"] == "float32" and list(act["shape"]) == [d_z], f"{act['dtype']} {act['shape']}")
cams = list(meta.video_keys)
hf = ds.hf_dataset.with_format("numpy")
a, z = np.stack(hf["action"]), np.stack(hf["latent_action"])
valid = np.asarray(hf["latent_action_is_valid"]).reshape(-1).astype(bool)
ep = np.asarray(hf["episode_index"]).reshape(-1)
check("action = latent_action on valid frames", np.array_equal(a[valid], z[valid]), f"{valid.sum()} of {len(valid)} valid")
held = True
for e in np.unique(ep):
    rows = np.flatnonzero(ep == e)
    v = rows[valid[rows]]
    tail = rows[~valid[rows]]
    if len(v) and len(tail):
        held &= bool(np.all(a[tail] == a[v[-1]]))
check("the last k frames hold the last valid z", held)
if "action.true" in meta.features:
    check("action.true kept", np.stack(hf["action.true"]).shape[0] == len(a), str(meta.features["action.true"]["shape"]))
shapes = set()
for e in range(ds.num_episodes):
    lo, hi = int(meta.episodes["dataset_from_index"][e]), int(meta.episodes["dataset_to_index"][e]) - 1
    for i in (lo, hi):
        shapes |= {tuple(ds[i][c].shape) for c in cams}
check("first and last frame of every episode decode", len(shapes) >= 1 and all(len(s) == 3 for s in shapes),
      f"shapes {sorted(shapes)}")
fps = ds.fps
chunked = LeRobotDataset("local/exolam-as-action", root=root, video_backend="pyav",
                         delta_timestamps={"action": [t / fps for t in range(10)]})
pads = []
for e in range(ds.num_episodes):
    hi = int(meta.episodes["dataset_to_index"][e]) - 1
    item = chunked[hi]
    pad = item["action_is_pad"]
    pads.append(bool(pad[0] == 0 and pad[1:].all() and torch.equal(item["action"][0], item["action"][-1])))
check("action chunks at episode ends are padded, not read across", all(pads), f"{sum(pads)} of {len(pads)} episodes")
batch = next(iter(torch.utils.data.DataLoader(chunked, batch_size=8, shuffle=True)))
check("DataLoader batch", tuple(batch["action"].shape) == (8, 10, d_z), str(tuple(batch["action"].shape)))
sys.exit(0 if ok else 1)
