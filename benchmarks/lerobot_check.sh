#!/bin/sh
# Check exolam datasets with the real `lerobot` and with `lerobot-doctor`, in their own virtual environment
# (LEROBOT_VENV, default .venv-lerobot: they pull a CUDA torch, so this is not part of `make test`).
#   sh benchmarks/lerobot_check.sh runs/byo/labelled-as-action [more dataset folders]
set -e
V=${LEROBOT_VENV:-.venv-lerobot}
if [ ! -x "$V/bin/lerobot-doctor" ]; then
    python3 -m venv "$V"
    "$V/bin/pip" install -q "lerobot==0.4.4" "lerobot-doctor==0.2.0"
fi
for d in "$@"; do
    echo "=== $d: lerobot $("$V/bin/python" -c 'import lerobot; print(lerobot.__version__)') LeRobotDataset"
    "$V/bin/python" "$(dirname "$0")/lerobot_check.py" "$d" || status=1
    echo "=== $d: lerobot-doctor check"
    "$V/bin/lerobot-doctor" check "$d" || status=1
    echo "=== $d: lerobot-doctor gate --policy act"
    "$V/bin/lerobot-doctor" gate "$d" --policy act || status=1
done
exit ${status:-0}
