"""Run from the repository root (any number of finished rows): python docs/results/gridworld-full/analysis/xexo_leak.py

Does L_X-exo remove the noise bit from z, or only from the loss? The per-pixel argument of the
README (Sec. 5, "At the paper's 16k updates"): if X-exo's z carried the same share r of the
exogenous noise as vanilla's (r = 1 - vanilla's normalized exo-region MSE), the FDM would shrink
its use by lambda / (1 + lambda) and the normalized exo MSE would read

    unchanged leak:  1 - r (1 - lambda^2 / (1 + lambda)^2)        (0.25 r below 1 at lambda = 1)
    leak removed:    1

So X-exo rows near the first line (and with vanilla's code-flip rate) keep the leak in z; rows near 1
(and a low flip rate) remove it. Prints one line per sigma > 0 and X-exo seed, and writes the
same next to this file as xexo_leak.txt.
"""
import csv
import statistics
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
rows = list(csv.DictReader(open(HERE.parent / "gridworld" / "results.csv")))
by = defaultdict(list)
for r in rows:
    by[(float(r["sigma"]), r["objective"])].append(r)

lines = ["sigma  vanilla exo (n)  r     X-exo lambda  predicted if leak kept  seed  exo MSE  flip   consistency",
         "-----  ---------------  ----  ------------  ----------------------  ----  -------  -----  -----------"]
for sigma in sorted({s for s, _ in by if s > 0}):
    van = [float(r["exo_mse_norm"]) for r in by[(sigma, "lam")]]
    if not van:
        continue
    r_leak = 1 - statistics.mean(van)
    for obj in sorted(o for s, o in by if s == sigma and o.startswith("lam+xexo:")):
        lam = float(obj.split(":")[1])
        pred = 1 - r_leak * (1 - lam ** 2 / (1 + lam) ** 2)
        for x in sorted(by[(sigma, obj)], key=lambda x: int(x["seed"])):
            lines.append(f"{sigma:<5g}  {statistics.mean(van):.3f} ({len(van)})      {r_leak:.2f}  {lam:<12g}  "
                         f"{pred:<22.3f}  {x['seed']:<4}  {float(x['exo_mse_norm']):<7.3f}  "
                         f"{float(x['code_flip_rate']):<5.3f}  {float(x['consistency_post']):.3f}")
flips = [float(r["code_flip_rate"]) for (s, o), rs in by.items() if s > 0 and o == "lam" for r in rs]
lines.append(f"\nvanilla code-flip rate over sigma > 0: {min(flips):.3f}..{max(flips):.3f} ({len(flips)} rows); "
             f"{len(rows)} rows of results.csv read")
text = "\n".join(lines)
print(text)
(HERE / "xexo_leak.txt").write_text(text + "\n")
