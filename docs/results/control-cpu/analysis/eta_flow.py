"""Run from the repository root after `exolam reproduce control --preset cpu --out docs/results/control-cpu`.

How xi-robust is the Flow-pred target? eta_rel = E||y(o,o') - y(o~,o~')||^2 / E||y - E y||^2 on paired renders
(0: the target ignores xi, as an action does; 2: independent of the physics)."""
import torch
from exolam.data.flow import optical_flow
from exolam.experiments import control
from exolam.experiments.control_jobs import _windows

cfg = control.cpu_config()
[task] = [t for t in control.tasks(cfg, "docs/results/control-cpu/control/data/dataset", cfg.episodes)
          if t.method == "lam" and t.seed == 0]
w = _windows(task, range(task.n_train, task.n_episodes), 1024, 0)
o, o2, a, a2 = w.o, w.o_next, w.o_alt, w.o_next_alt
y = optical_flow(o, o2).flatten(1)  # as WindowDataset(flow=True) computes the target
yt = optical_flow(a, a2).flatten(1)
var = ((y - y.mean(0)) ** 2).sum(1).mean()
print("flow eta_rel", float(((y - yt) ** 2).sum(1).mean() / var))
act = w.a.float()
# how much of the flow does the action explain? linear R^2 of y on (a, s)
X = torch.cat([act, w.s.float(), torch.ones(len(act), 1)], 1)
coef = torch.linalg.lstsq(X, y).solution
print("flow explained by (a, s) linearly: R2", float(1 - ((X @ coef - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum()))
