"""The default LAM on open50-10ep probed against its recorded actions: open50 names its action `actions` and its
proprio state `state` (LeRobot's convention is `action` / `observation.state`, which `exolam diagnose` reads), so
this runs `workflows.diagnose.diagnose` with those two keys swapped in. Held-out episodes, as diagnose splits them.

    PYTHONPATH=src python docs/results/own-defaults/open50_probe.py /work/runs-own/bench/lam-open50 \\
        ../shared/data/open50-10ep OUT
"""
import json
import sys

import exolam
from exolam.workflows import diagnose as d

d.ACTION, d.STATE = "actions", "state"
ckpt, data, out = sys.argv[1:4]
model = exolam.load(ckpt)
spec_input = json.load(open(f"{ckpt}/checkpoint/config.json"))["spec"]["input"]
r = d.diagnose(model, data, out, frame_gap=spec_input["frame_gap"], image_size=spec_input["image_size"])
print(json.dumps({k: r["probe"].get(k) for k in ("probe_nmse", "probe_nmse_o_only", "probe_nmse_given_o", "n_train",
                                                   "n_test")}))
