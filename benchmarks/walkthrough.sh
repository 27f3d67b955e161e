#!/bin/sh
# The README's own-data walkthrough as pasted (after `make setup`), timed per step: `sh benchmarks/walkthrough.sh [DIR]`
# (DIR default runs/walkthrough-timing, removed first). Prints "seconds  command" per step; each step's output in DIR/logs/N.log.
set -e
. .venv/bin/activate
R=${1:-runs/walkthrough-timing}
rm -rf "$R"
n=0
step() { n=$((n + 1)); t0=$(date +%s); "$@" > "$R/logs/$n.log" 2>&1; printf '%6d s  %s\n' $(($(date +%s) - t0)) "$*"; }
mkdir -p "$R/logs"
step exolam control videos --episodes 12 --steps 200 --out "$R/videos"
step exolam import mp4 "$R/videos" --out "$R/dataset"
step exolam train --data "$R/dataset" --out "$R/lam"
step exolam label --checkpoint "$R/lam" --data "$R/dataset" --out "$R/labelled"
step exolam label --checkpoint "$R/lam" --data "$R/dataset" --out "$R/labelled-as-action" --as-action
step exolam diagnose --checkpoint "$R/lam" --data "$R/dataset" --out "$R/report"
step exolam control collect --episodes 12 --steps 200 --out "$R/paired"
step exolam train --data "$R/paired/dataset" --out "$R/lam-paired"
step exolam diagnose --checkpoint "$R/lam-paired" --data "$R/paired/dataset" --out "$R/report-paired"
step exolam train --data "$R/paired/dataset" --out "$R/lam-xexo" --objective lam+xexo:1
step exolam diagnose --checkpoint "$R/lam-xexo" --data "$R/paired/dataset" --out "$R/report-xexo"
