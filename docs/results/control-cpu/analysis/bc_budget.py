"""Run from the repository root after the CPU preset: `python bc_budget.py STEPS`.

Budget check: does BC on all labels keep improving past the CPU preset's 2,000 updates?"""
import dataclasses
import json
import sys
import time

from pathlib import Path
from exolam.experiments import control
from exolam.experiments.control_jobs import run_bc

steps = int(sys.argv[1])
cfg = control.cpu_config()
data = "docs/results/control-cpu/control/data/dataset"
[task] = [t for t in control.tasks(cfg, data, cfg.episodes) if t.method == "bc-all" and t.seed == 0]
task = dataclasses.replace(task, bc_train=dataclasses.replace(task.bc_train, steps=steps))
t0 = time.time()
row = run_bc(task, Path(f"runs/bc-budget/ckpt-{steps}"))
print(json.dumps({"steps": steps, "return": row.get("return"), "wall_s": round(time.time() - t0)}), flush=True)
