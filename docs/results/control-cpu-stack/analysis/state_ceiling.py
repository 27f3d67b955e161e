"""What a single frame can show, measured with state BC at the CPU preset's BC recipe (the decoder MLP
256 x 256, Adam 3e-4, batch 64, 2,000 updates, every training episode = 45; input standardized by the
training episodes' mean / std, as `bc-state` now does), 3 seeds, 5 evaluation episodes each:

    full         the 17-dim state (8 positions + 9 velocities): `bc-state`
    positions    the 8 positions only: all one frame can show
    pos+diff     the positions and their change since the previous step (s_t - s_{t-1} of the
                 positions, 0 at an episode's first step): what 2 stacked frames can show

`--recipe STEPS,BATCH,LR` trains another recipe. Prints one JSON line per (input, seed).

    PYTHONPATH=src OMP_NUM_THREADS=1 MUJOCO_GL=egl python docs/results/control-cpu-stack/analysis/state_ceiling.py \\
        --data /work/runs-cpu/control/data/dataset
"""
import argparse
import json

import numpy as np
import torch

from exolam.data.lerobot import open_dataset
from exolam.envs.control import ControlConfig
from exolam.envs.control_eval import evaluate_policy
from exolam.models.policy import ActionDecoder, DecoderConfig

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
p.add_argument("--inputs", nargs="+", default=["full", "positions", "pos+diff"])
p.add_argument("--recipe", default="2000,64,3e-4")
args = p.parse_args()
steps, batch, lr = (t(x) for t, x in zip((int, int, float), args.recipe.split(",")))
torch.set_num_threads(1)
ds = open_dataset(args.data)
S = [torch.from_numpy(ds.column("observation.state", e)) for e in range(45)]
A = torch.from_numpy(np.concatenate([ds.column("action", e) for e in range(45)]))


def features(s: torch.Tensor, prev: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "full":
        return s
    if kind == "positions":
        return s[:, :8]
    return torch.cat([s[:, :8], s[:, :8] - prev[:, :8]], 1)


for kind in args.inputs:
    X = torch.cat([features(s, torch.cat([s[:1], s[:-1]]), kind) for s in S])
    for seed in args.seeds:
        torch.manual_seed(seed)
        net = ActionDecoder(DecoderConfig(d_z=X.shape[1], d_a=6, standardize=True)).standardize_by(X)
        opt = torch.optim.Adam(net.parameters(), lr)
        g = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            i = torch.randint(0, len(X), (batch,), generator=g)
            loss = ((net(X[i]) - A[i]) ** 2).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        prev = {}

        def act(s: torch.Tensor) -> np.ndarray:  # every episode runs 1000 steps, so the batch keeps its order
            p_ = prev.get("s", s)
            prev["s"] = s
            with torch.no_grad():
                return net(features(s, p_, kind)).clamp(-1, 1).numpy()

        r = evaluate_policy(ControlConfig(image_size=32), act, 5, seed, 1000, observe="state")
        print(json.dumps({"input": kind, "seed": seed, "recipe": args.recipe, "loss": round(float(loss), 4),
                          "return": round(float(np.mean(r)), 1), "returns": [round(x) for x in r]}), flush=True)
