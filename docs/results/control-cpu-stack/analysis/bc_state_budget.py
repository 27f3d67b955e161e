"""bc-state (the preset's pi_BC(a|s): the decoder's MLP on the raw 17-dim proprio state, every training
episode) at longer budgets, seed 0, on the CPU preset's data (50 x 1000, 45 training episodes).

    PYTHONPATH=src OMP_NUM_THREADS=1 MUJOCO_GL=egl python docs/results/control-cpu-stack/analysis/bc_state_budget.py 6000 20000
"""
import dataclasses, json, sys, time
from pathlib import Path
from exolam.data.lerobot import open_dataset
from exolam.experiments import control
from exolam.experiments.control_jobs import run_bc
data = "/work/runs-cpu/control/data/dataset"
cfg = control.cpu_config()
n = len(open_dataset(data).episode_lengths)
base = {t.method: t for t in control.tasks(cfg, data, n) if t.seed == 0}
for steps in (int(a) for a in sys.argv[1:]):
    t0 = time.time()
    task = dataclasses.replace(base["bc-state"], bc_train=dataclasses.replace(base["bc-state"].bc_train, steps=steps))
    row = run_bc(task, Path(f"/work/runs-cpu/bcstate{steps}"))
    print(json.dumps({"steps": steps, **row, "seconds": round(time.time() - t0)}), flush=True)
