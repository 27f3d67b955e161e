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
y = optical_flow(w.o, w.o_next).flatten(1)  # as WindowDataset(flow=True) computes the target
y_alt = optical_flow(w.o_alt, w.o_next_alt).flatten(1)  # the same physics under the paired xi
var = ((y - y.mean(0)) ** 2).sum(1).mean()
print("flow eta_rel", float(((y - y_alt) ** 2).sum(1).mean() / var))
# how much of the flow do the action and state explain? linear R^2 of y on (a, s)
X = torch.cat([w.a.float(), w.s.float(), torch.ones(len(y), 1)], 1)
resid = X @ torch.linalg.lstsq(X, y).solution - y
print("flow explained by (a, s) linearly: R2", float(1 - (resid ** 2).sum(1).mean() / var))
