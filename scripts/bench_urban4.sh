#!/usr/bin/env bash
# bench_urban4.sh (make bench): the urban4-class student of recipes/urban4.yaml
# (2,931 tokens a sample, d512, 12 layers) training on the CPU at
# micro-batch 1 in fp32, on a few urban4 preset shards: seconds per sample
# and the peak resident memory (/usr/bin/time -v), with each attention mask,
# beside what `distil recipe check --memory` plans and the 3 GB the CPU
# configuration must stay under.
set -euo pipefail
BUILD=${BUILD:?set by make}
STEPS=${URBAN4_STEPS:-4}
[ -x /usr/bin/time ] || { echo "bench_urban4: /usr/bin/time not found (apt-get install time)"; exit 1; }
tmp=$(mktemp -d /tmp/distil_bench_urban4.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$BUILD/distil" logs synth --preset urban4 --shards 1 --samples-per-shard 8 --eval-shards 0 --seed 3 --out "$tmp/logs" >/dev/null
sets=(--set "data.train=[\"$tmp/logs/train/*.h5\"]" --set "data.eval=[]" --set train.device=cpu --set train.precision=fp32
      --set train.micro_batch=1 --set train.batch_size=1 --set train.steps=$STEPS --set train.warmup_steps=0
      --set train.eval_every=0 --set train.checkpoint_every=0 --set train.log_every=1)
echo "bench_urban4: recipes/urban4.yaml on the CPU, fp32, micro-batch 1, $STEPS steps, $(nproc) cores, OMP_NUM_THREADS=${OMP_NUM_THREADS:-all}"
planned=$("$BUILD/distil" recipe check recipes/urban4.yaml "${sets[@]}" --memory | awk '/^#   total/ { print $3 }')
awk -v p="$planned" 'BEGIN { printf "  planned by recipe check --memory: %.2f GB\n", p / 1e9 }'
for mask in prefix causal; do
  run="$tmp/run-$mask"
  /usr/bin/time -v "$BUILD/distil" train recipes/urban4.yaml "${sets[@]}" --set model.attention=$mask --out "$run" \
    >"$tmp/out-$mask.txt" 2>"$tmp/time-$mask.txt" || { echo "bench_urban4: training failed:"; tail -5 "$tmp/out-$mask.txt" "$tmp/time-$mask.txt"; exit 1; }
  rss_kib=$(awk -F: '/Maximum resident set size/ { gsub(/ /, "", $2); print $2 }' "$tmp/time-$mask.txt")
  # Seconds per sample: the training loop's own time (no start-up, no final
  # checkpoint) over its steps, one sample each.
  s_per_sample=$(awk '/^trained [0-9]+ steps in/ { print $5 / $2 }' "$tmp/out-$mask.txt")
  awk -v m="$mask" -v s="$s_per_sample" -v kib="$rss_kib" -v p="$planned" 'BEGIN {
    rss = kib * 1024
    printf "  attention %-6s  %6.2f s/sample  peak RSS %5.2f GB (%.2f of the 3 GB budget, %.2f of the plan)\n", m, s, rss / 1e9, rss / 3e9, rss / p }'
done
