#!/usr/bin/env bash
# Full-fidelity runs on a lent GPU machine (the `device` tool): the linear suite at the paper's
# settings (App. B: 4 seeds, 20k steps, batch 128) with --device cuda, then the report.
# Needs the wheels of exolam's pure-Python dependencies in .whl/ (see README, "GPU").
# Usage (on the device, in the repo root):  bash benchmarks/device_run.sh OUTDIR [extra experiments...]
set -uo pipefail
out=${1:?output folder}; shift
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 MPLBACKEND=Agg
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
for exp in leakage sensitivity auxiliary "$@"; do
  extra=()
  case $exp in leakage|sensitivity|auxiliary) extra=(--group 400) ;; esac
  start=$(date +%s)
  python3 -m exolam.cli reproduce "$exp" --device cuda --out "$out" "${extra[@]}" | grep -v "cells done"
  echo "[$exp] wall $(( $(date +%s) - start )) s"
done
python3 -m exolam.cli report --out "$out"
