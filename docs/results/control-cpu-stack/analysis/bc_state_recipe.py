"""State BC recipe search: which input scaling, batch and lr let the decoder-sized MLP (256 x 256) on the
17-dim state reach the expert (Adam, 45 training episodes of the CPU preset's data, seed 0, 5 evaluation
episodes at 2k / 5k / ... updates). Rows: bc_state_recipe.jsonl.

    PYTHONPATH=src OMP_NUM_THREADS=1 MUJOCO_GL=egl python docs/results/control-cpu-stack/analysis/bc_state_recipe.py \
        norm|raw BATCH LR UPDATES      (reads /work/runs-cpu/control/data/dataset)
"""
import numpy as np, torch, sys, json, time
from exolam.data.lerobot import open_dataset
from exolam.envs.control import ControlConfig
from exolam.envs.control_eval import evaluate_policy
torch.manual_seed(0); torch.set_num_threads(1)
norm, bs, lr, total = sys.argv[1] == "norm", int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
ds = open_dataset("/work/runs-cpu/control/data/dataset")
S = np.concatenate([ds.column("observation.state", e) for e in range(45)]); A = np.concatenate([ds.column("action", e) for e in range(45)])
mu, sd = (S.mean(0), S.std(0) + 1e-6) if norm else (np.zeros(17), np.ones(17))
S, A = torch.tensor((S - mu) / sd, dtype=torch.float32), torch.tensor(A)
net = torch.nn.Sequential(torch.nn.Linear(17, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 6))
opt = torch.optim.Adam(net.parameters(), lr)
g = torch.Generator().manual_seed(0)
mu_t, sd_t = torch.tensor(mu, dtype=torch.float32), torch.tensor(sd, dtype=torch.float32)
t0 = time.time()
for k in range(1, total + 1):
    i = torch.randint(0, len(S), (bs,), generator=g)
    loss = ((net(S[i]) - A[i]) ** 2).sum(1).mean(); opt.zero_grad(); loss.backward(); opt.step()
    if k in (2000, 5000, 10000, 20000, 50000, 100000):
        with torch.no_grad():
            act = lambda s: net((s - mu_t) / sd_t).clamp(-1, 1).numpy()
            r = evaluate_policy(ControlConfig(image_size=32), act, 5, 0, 1000, observe="state")
        print(json.dumps({"norm": norm, "batch": bs, "lr": lr, "updates": k, "loss": round(float(loss), 4),
                          "return": round(float(np.mean(r)), 1), "returns": [round(x) for x in r], "s": round(time.time() - t0)}), flush=True)
