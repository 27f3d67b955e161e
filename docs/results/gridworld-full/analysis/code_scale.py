"""Run from the repository root (the checkpoints it reads are gitignored, so only those trained on
this machine are here):
    python docs/results/gridworld-full/analysis/code_scale.py

Is a lower consistency loss (Fig. 5b: E||z - z~||^2 after VQ) fewer code flips, or codes that lie
closer together? The loss is flip rate x the mean squared distance between the two codes of a flipped
pair, so a LAM whose codebook shrinks scores lower with the same flips. For every finished checkpoint
at sigma > 0 here this recomputes, on its held-out split (the same data as its results.csv row):

    consistency   E||z - z~||^2 post-VQ (= the row's consistency_post)
    flip          P[code(o, o') != code(o~, o~')] (= code_flip_rate)
    flip dist     consistency / flip: squared distance between the codes of a flipped pair
    relative      E||z - z~||^2 / E||z - E z||^2 (metrics.encoder.target_robustness): scale-free;
                  0 = the same code under both views, its chance level = independent codes

Each checkpoint's row is kept in code_scale.csv beside this file: a rerun on another machine (the
sweep resumed there) recomputes the rows of the checkpoints it holds and keeps the others as
recorded (the rows of the first machine were read back from its code_scale.txt, so they carry its
3 or 2 decimals). The table, with mean +- std over seeds, goes to code_scale.txt.
"""
import csv
import io
import statistics
from collections import defaultdict
from pathlib import Path

import torch

from exolam.envs.gridworld import GridWorldConfig, make_dataset
from exolam.fileio import atomic_write, from_jsonable
from exolam.metrics.encoder import target_robustness
from exolam.train import checkpoint

torch.set_num_threads(1)
HERE = Path(__file__).resolve().parent
COLS = ["sigma", "objective", "seed", "consistency", "flip", "flip_dist", "relative", "chance"]
table = HERE / "code_scale.csv"
recorded = {}
if table.exists():
    for r in csv.DictReader(open(table)):
        recorded[(float(r["sigma"]), r["objective"], int(r["seed"]))] = [float(r[c]) for c in COLS[3:]]
for folder in sorted((HERE.parent / "gridworld" / "checkpoints").glob("sigma=*")):
    meta = checkpoint.read_config(folder)
    if meta.get("step") != meta.get("steps") or meta["spec"]["env"]["sigma"] == 0:
        continue
    spec = meta["spec"]
    _, test = make_dataset(from_jsonable(GridWorldConfig, spec["env"]))
    lam = checkpoint.load_model(folder).float().eval()
    with torch.no_grad():
        a, b = lam.idm(test.o, test.o_next), lam.idm(test.o_alt, test.o_next_alt)
    cons = float((a.z - b.z).pow(2).sum(1).mean())
    flip = float((a.codes != b.codes).double().mean())
    rob = target_robustness(a.z, b.z)
    recorded[(spec["env"]["sigma"], spec["objective"], spec["seed"])] = [
        cons, flip, cons / flip if flip else float("nan"), rob["relative"], rob["independent"]]
buf = io.StringIO()
csv.writer(buf, lineterminator="\n").writerows([COLS, *([*key, *vals] for key, vals in sorted(recorded.items()))])
atomic_write(table, buf.getvalue())
rows = defaultdict(list)
for (sigma, obj, seed), vals in recorded.items():
    rows[(sigma, obj)].append((seed, *vals))

lines = ["sigma  objective            seed  consistency  flip   flip dist  relative  chance",
         "-----  -------------------  ----  -----------  -----  ---------  --------  ------"]
for (sigma, obj), rs in sorted(rows.items()):
    for seed, cons, flip, dist, rel, chance in sorted(rs):
        lines.append(f"{sigma:<5g}  {obj:<19}  {seed:<4}  {cons:<11.3f}  {flip:<5.3f}  {dist:<9.2f}  {rel:<8.3f}  "
                     f"{chance:.3f}")
    if len(rs) > 1:
        m = lambda i: f"{statistics.mean(r[i] for r in rs):.3f} +- {statistics.stdev(r[i] for r in rs):.3f}"  # noqa: E731
        lines.append(f"{'':5}  {'mean +- std':<19}  {len(rs):<4}  consistency {m(1)}, flip {m(2)}, relative {m(4)}")
text = "\n".join(lines)
print(text)
(HERE / "code_scale.txt").write_text(text + "\n")
