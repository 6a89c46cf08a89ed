#!/usr/bin/env bash
# The main job on built-in data: synthesise the demo fleet (once), train
# recipes/demo.yaml on the CPU, print the final eval table.
set -euo pipefail
BUILD=${BUILD:?set by make}
DISTIL="$BUILD/distil"
if ! ls demo_logs/train/*.h5 >/dev/null 2>&1 || ! ls demo_logs/eval/*.h5 >/dev/null 2>&1; then
  echo "== synthesising the demo fleet into demo_logs/"
  "$DISTIL" logs synth --out demo_logs --preset demo --shards 8 --samples-per-shard 512 --seed 1
fi
echo "== training recipes/demo.yaml (CPU); run directory runs/demo"
start=$SECONDS
"$DISTIL" train recipes/demo.yaml --out runs/demo
echo "== demo done in $((SECONDS - start)) s; eval.json: runs/demo/eval.json"
