"""Which temporal context App. D's policies need: pixel BC on every training episode (`bc-all`) with the
last N frames, N = 1..4, beside BC on the proprio state (`bc-state`), on the CPU preset's data and budget
(`--preset cpu`: 50 x 1000 steps at 32 px, stored losslessly; policy 16-32-64 conv, 2,000 updates,
batch 64; 5 evaluation episodes), one seed. Resumable (each row's checkpoint is kept under OUT).

    PYTHONPATH=src OMP_NUM_THREADS=1 MUJOCO_GL=egl python docs/results/control-cpu-stack/analysis/frame_stack.py \
        --data /work/runs-cpu/control/data/dataset --out /work/runs-cpu/frame-stack
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from exolam.data.lerobot import open_dataset
from exolam.experiments import control
from exolam.experiments.control_jobs import run_bc

p = argparse.ArgumentParser()
p.add_argument("--data", required=True)
p.add_argument("--out", required=True)
p.add_argument("--stacks", type=int, nargs="+", default=[1, 2, 3, 4])
p.add_argument("--seed", type=int, default=0)
p.add_argument("--methods", nargs="+", default=["bc-all"], help="pixel rows to run at each stack (bc-all, bc)")
p.add_argument("--bc-train", default="", help="the BC recipe instead of the preset's: STEPS,BATCH,LR (e.g. 2000,64,1e-3)")
p.add_argument("--no-state", action="store_true", help="skip the bc-state row (run it in one process only)")
args = p.parse_args()
cfg = dataclasses.replace(control.cpu_config(), codec="h264-lossless")
n = len(open_dataset(args.data).episode_lengths)
base = {t.method: t for t in control.tasks(cfg, args.data, n) if t.seed == args.seed}
rows = ([] if args.no_state else [("bc-state", 1)]) + [(m, s) for m in args.methods for s in args.stacks]
out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
for method, stack in rows:
    t0 = time.time()
    task = dataclasses.replace(base[method], frame_stack=stack)
    if args.bc_train:
        steps, batch, lr = args.bc_train.split(",")
        task = dataclasses.replace(task, bc_train=dataclasses.replace(task.bc_train, steps=int(steps),
                                                                      batch_size=int(batch), lr=float(lr)))
    row = run_bc(task, out / f"stack{stack}")
    print(json.dumps({"method": method, "frame_stack": stack, "seed": args.seed, "bc_train": args.bc_train, **row,
                      "seconds": round(time.time() - t0)}), flush=True)
