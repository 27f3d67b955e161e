"""`make bench`: every speed benchmark, one after the other (each prints its own side-by-side table)."""

import subprocess
import sys
from pathlib import Path

here = Path(__file__).parent
for script in ("linear_speed.py", "gridworld_speed.py"):
    print(f"\n=== {script} ===", flush=True)
    subprocess.run([sys.executable, str(here / script)], check=True)
