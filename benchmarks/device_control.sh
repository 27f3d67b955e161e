#!/usr/bin/env bash
# App. D at the paper's scale on a lent GPU machine (the `device` tool, 16 cores): measure, size, collect,
# train and evaluate the five LAM variants + BC baselines for one seed in ~10 minutes
# (benchmarks/control_gpu_plan.py; the plan and its measured rates land in OUTDIR/plan.json).
# Needs the wheels of exolam's pure-Python dependencies and of dm_control / mujoco / opencv in .whl/
# (see README, "GPU"). Usage (on the device, in the repo root):  bash benchmarks/device_control.sh OUTDIR [--dry]
set -uo pipefail
out=${1:?output folder}; shift
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg MUJOCO_GL=egl OMP_NUM_THREADS=1
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
start=$(date +%s)
python3 benchmarks/control_gpu_plan.py --out "$out" --device cuda --jobs "$(nproc)" "$@"
echo "[control-gpu] wall $(( $(date +%s) - start )) s"
