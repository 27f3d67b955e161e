"""The same MLP on the state standardized by the training episodes' mean / std (the preset feeds it raw),
trained here outside the engine (Adam 3e-4, batch 64, seed 0), 5 evaluation episodes.

    PYTHONPATH=src OMP_NUM_THREADS=1 MUJOCO_GL=egl python docs/results/control-cpu-stack/analysis/bc_state_normalized.py 6000
"""
import numpy as np, torch, sys
from exolam.data.lerobot import open_dataset
from exolam.envs.control import ControlConfig
from exolam.envs.control_eval import evaluate_policy
torch.manual_seed(0); torch.set_num_threads(1)
ds = open_dataset(sys.argv[-1] if sys.argv[-1].endswith("dataset") else "/work/runs-cpu/control/data/dataset")
S = np.concatenate([ds.column("observation.state", e) for e in range(45)]); A = np.concatenate([ds.column("action", e) for e in range(45)])
mu, sd = S.mean(0), S.std(0) + 1e-6
S, A = torch.tensor((S - mu) / sd, dtype=torch.float32), torch.tensor(A)
print("actions |a|>0.99:", float((A.abs() > 0.99).float().mean()))
net = torch.nn.Sequential(torch.nn.Linear(17, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 6))
opt = torch.optim.Adam(net.parameters(), 3e-4)
g = torch.Generator().manual_seed(0)
steps = int(sys.argv[1])
for k in range(steps):
    i = torch.randint(0, len(S), (64,), generator=g)
    loss = ((net(S[i]) - A[i]) ** 2).sum(1).mean(); opt.zero_grad(); loss.backward(); opt.step()
print("loss", float(loss))
mu_t, sd_t = torch.tensor(mu), torch.tensor(sd)
act = lambda s: net((s - mu_t) / sd_t).clamp(-1, 1).detach().numpy()
r = evaluate_policy(ControlConfig(image_size=32), act, 5, 0, 1000, observe="state")
print("normalized-state BC", steps, "return", np.mean(r), r)
