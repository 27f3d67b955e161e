"""`make bench`: every speed benchmark, one after the other (each prints its own side-by-side table)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
scripts = ["linear_speed.py", "gridworld_speed.py", "engine_ddp_speed.py", "loader_speed.py", "control_speed.py",
           "control_train_speed.py", "own_video_speed.py", "own_train_speed.py"]
for script in scripts:
    if not (here / script).exists():  # loader_speed.py is optional
        continue
    print(f"\n=== {script} ===", flush=True)
    subprocess.run([sys.executable, str(here / script)], check=True)
