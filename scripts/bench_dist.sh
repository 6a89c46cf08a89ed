#!/usr/bin/env bash
# make bench-dist: data-parallel training on CPU ranks over MPI at R = 1 and
# R = 2 on the same global batch (tests/bench_dist.c), and the all-reduce
# alone beside MPI's (NCCL's on a GPU build with GPUs). docs/distributed.md
# reports the figures.
set -euo pipefail
BUILD=${BUILD:?set by make}
command -v mpirun >/dev/null || { echo "bench-dist: mpirun not found (apt-get install openmpi-bin)"; exit 1; }
tmp=$(mktemp -d /tmp/distil_bench_dist.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$BUILD/distil" logs synth --preset demo --shards 2 --samples-per-shard 128 --seed 9 --out "$tmp" >/dev/null
# One OpenMP thread per rank, so R = 2 uses two cores where R = 1 uses one:
# the comparison is of ranks, not of threads.
export OMP_NUM_THREADS=1
out="$tmp/out.txt"
for R in 1 2; do
  echo "== $R rank(s)"
  mpirun --allow-run-as-root --oversubscribe -np $R "$BUILD/tests/bench_dist" "$tmp" | tee -a "$out"
done
# The step-time ratio on the same global batch (16 samples per step).
awk '/^bench_dist steps/ && / overlap=1 progress=hook bucket_mb=25 / {
       for (i = 1; i <= NF; i++) if ($i ~ /^(ranks|step_ms)=/) { split($i, kv, "="); v[kv[1]] = kv[2] }
       t[v["ranks"]] = v["step_ms"] }
     END { if (t[1] && t[2]) printf "== step time R=1 %.1f ms, R=2 %.1f ms: speed-up %.2fx on 2 ranks\n", t[1], t[2], t[1] / t[2] }' "$out"
