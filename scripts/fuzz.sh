#!/usr/bin/env bash
# make fuzz: the seeds, written by distil itself; the regression files of
# tests/fuzz/ replayed through the libFuzzer builds; then, with
# FUZZ_SECONDS > 0, each harness run that long, one after another, with its
# executions, coverage and findings reported (docs/robustness.md).
#
#   FUZZ_SECONDS=N       seconds per harness (0: seeds and replay only)
#   FUZZ_HARNESSES="..." which harnesses (default: all of fuzz/fuzz_*.c)
#   FUZZ_FLAGS="..."     more libFuzzer flags (-fork=1 -ignore_crashes=1, ...)
#   FUZZ_NICE=N          run the harnesses under nice -n N (shared machines)
#   FUZZ_JOBS=N          run N harnesses at a time (default 1)
#
# The corpus each run grows is kept in build/fuzz/corpus/HARNESS, what it
# finds in build/fuzz/findings/HARNESS/ (crash-*, timeout-*, oom-*, leak-*).
# Leaks of memory that libhdf5 allocated are not findings (fuzz/lsan.supp:
# it loses some on its error paths, which distil cannot free).
# Exits 1 when a harness found something (or a regression file fails).
set -uo pipefail
cd "$(dirname "$0")/.."
DISTIL=${DISTIL:-build/cpu/distil}
FUZZ=build/fuzz
SECONDS_EACH=${FUZZ_SECONDS:-0}
HARNESSES=${FUZZ_HARNESSES:-$(ls fuzz/fuzz_*.c | sed -E 's|fuzz/fuzz_(.*)\.c|\1|' | tr '\n' ' ')}
NICE=${FUZZ_NICE:-0}
JOBS=${FUZZ_JOBS:-1}
# The harnesses' files (and a crashed one's leftovers) stay under build/.
export TMPDIR=$PWD/build/fuzz/tmp LSAN_OPTIONS=suppressions=$PWD/fuzz/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}
SEEDS=$FUZZ/seeds
status=0

say() { echo "fuzz: $*"; }
die() { echo "fuzz: error: $*" >&2; exit 1; }

# ---- seeds ------------------------------------------------------------------
# A tiny fleet, a tiny student trained two steps on it, its checkpoint and
# two exports; the recipes of the repository and their resolved forms.
make_seeds() {
  local work=$FUZZ/work
  rm -rf "$SEEDS" "$work"
  mkdir -p "$work" "$SEEDS"/{recipe,drivelog_file,drivelog_datasets,checkpoint,bundle,safetensors}
  "$DISTIL" logs synth --out "$work/fleet" --shards 1 --samples-per-shard 2 --seed 1 --eval-shards 1 \
    --eval-samples-per-shard 2 >/dev/null || die "distil logs synth failed"
  "$DISTIL" logs synth --out "$work/plain" --shards 1 --samples-per-shard 1 --seed 2 --eval-shards 1 \
    --eval-samples-per-shard 1 --zstd-level 0 >/dev/null || die "distil logs synth failed"
  cp "$work/fleet/train/shard-00000.h5" "$SEEDS/seed_shard.h5"
  cp "$work/fleet/train/shard-00000.h5" "$SEEDS/drivelog_file/zstd.h5"
  cp "$work/plain/train/shard-00000.h5" "$SEEDS/drivelog_file/uncompressed.h5"
  DISTIL_FUZZ_SHARD=$SEEDS/seed_shard.h5 DISTIL_FUZZ_EXTRACT=1 $FUZZ/fuzz_drivelog_datasets \
    >"$SEEDS/drivelog_datasets/seed" 2>/dev/null || die "extracting the datasets' bytes failed"

  for f in recipes/*.yaml tests/tiny.yaml tests/recipes_bad/*.yaml; do
    cp "$f" "$SEEDS/recipe/$(basename "$(dirname "$f")")-$(basename "$f")"
  done
  for f in recipes/*.yaml tests/tiny.yaml; do
    "$DISTIL" recipe check "$f" >"$SEEDS/recipe/resolved-$(basename "$f")" 2>/dev/null || true
  done

  local recipe=$work/seed.yaml run=$work/run
  /usr/bin/python3 tests/harness.py tiny-recipe "$recipe" "$work/fleet" 'data.eval=[]' 'data.cameras=["front"]' model.dim=16 model.heads=2 \
    model.mlp_ratio=1 train.steps=2 train.micro_batch=2 train.batch_size=2 train.checkpoint_every=0 train.eval_every=0 \
    || die "writing the seed recipe failed"
  OMP_NUM_THREADS=1 "$DISTIL" train "$recipe" --out "$run" >/dev/null || die "training the seed student failed"
  local ckpt=$run/checkpoints/latest
  "$DISTIL" export "$ckpt" --out "$work/export32" >/dev/null || die "distil export failed"
  "$DISTIL" export "$ckpt" --out "$work/export16" --dtype fp16 >/dev/null || die "distil export failed"
  DISTIL_FUZZ_PACK="$ckpt/state.bin $ckpt/model.safetensors $ckpt/vocab.json" $FUZZ/fuzz_checkpoint \
    >"$SEEDS/checkpoint/checkpoint" 2>/dev/null || die "packing the checkpoint failed"
  for e in export32 export16; do
    DISTIL_FUZZ_PACK="$work/$e/config.json $work/$e/model.safetensors $work/$e/vocab.json" $FUZZ/fuzz_bundle \
      >"$SEEDS/bundle/$e" 2>/dev/null || die "packing the export failed"
    cp "$work/$e/model.safetensors" "$SEEDS/safetensors/$e.safetensors"
  done
  cp "$ckpt/model.safetensors" "$SEEDS/safetensors/checkpoint.safetensors"
  say "seeds in $SEEDS: $(for h in $HARNESSES; do echo -n "$h $(ls "$SEEDS/$h" | wc -l), "; done | sed 's/, $//')"
}

# What each harness needs in its environment and on its command line.
harness_env() {  # harness -> env assignments
  case $1 in
    drivelog_file) echo "DISTIL_FUZZ_SHARD=$SEEDS/seed_shard.h5 DISTIL_SHARD_CHECK_CPU_S=${DISTIL_SHARD_CHECK_CPU_S:-2}" ;;
    drivelog_datasets) echo "DISTIL_FUZZ_SHARD=${2:-$SEEDS/seed_shard.h5}" ;;
  esac
}
harness_flags() {  # harness -> libFuzzer flags
  # A minute: on a loaded machine a write of the input file alone has
  # stalled for ten seconds (a "timeout" that replays in a millisecond).
  local timeout=60
  # A looping shard costs the wall's child its CPU limit first, which on a
  # loaded machine can take many times as long on the clock.
  [ "$1" = drivelog_file ] && [ "${DISTIL_FUZZ_IN_PROCESS:-0}" = 0 ] && timeout=300
  echo "-timeout=$timeout -rss_limit_mb=3072 -malloc_limit_mb=3072"
}

# ---- the regression files ---------------------------------------------------
replay() {
  for h in $HARNESSES; do
    local dir=tests/fuzz/$h
    [ -d "$dir" ] && [ -n "$(ls "$dir")" ] || continue
    if env $(harness_env "$h" tests/fuzz/seed_shard.h5) "$FUZZ/fuzz_$h" $(harness_flags "$h") "$dir"/* \
        >"$FUZZ/logs/replay-$h.log" 2>&1; then
      say "replay $h: $(ls "$dir" | wc -l) regression files pass"
    else
      echo "fuzz: replay $h FAILED; its log:" >&2
      tail -n 40 "$FUZZ/logs/replay-$h.log" >&2
      status=1
    fi
  done
}

# ---- the runs -----------------------------------------------------------------
# What libFuzzer wrote for a harness: crash-*, timeout-*, oom-*, leak-* (not
# slow-unit-*, inputs that took over 10 s: information, not findings).
findings() { ls "$FUZZ/findings/$1" | grep -cE '^(crash|timeout|oom|leak)-'; }

run_one() {
  local h=$1 log=$FUZZ/logs/run-$h.log
  mkdir -p "$FUZZ/corpus/$h" "$FUZZ/findings/$h"
  local before
  before=$(findings "$h")
  local t0=$SECONDS
  env $(harness_env "$h") nice -n "$NICE" "$FUZZ/fuzz_$h" $(harness_flags "$h") -max_total_time="$SECONDS_EACH" \
    -close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$FUZZ/findings/$h/" ${FUZZ_FLAGS:-} \
    "$FUZZ/corpus/$h" "$SEEDS/$h" >"$log" 2>&1
  local rc=$?
  local execs cov ft corpus found
  # -fork=N: the last "#N: cov: ..." line counts the executions of every job.
  execs=$(grep -oE '^#[0-9]+:' "$log" | tail -n 1 | tr -d '#:')
  [ -n "$execs" ] || execs=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -oE '[0-9]+$' | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+')
  ft=$(grep -oE 'ft: [0-9]+' "$log" | tail -n 1 | grep -oE '[0-9]+')
  corpus=$(ls "$FUZZ/corpus/$h" | wc -l)
  found=$(( $(findings "$h") - before ))
  printf 'fuzz: %-18s %6d s  %10s execs  cov %6s  ft %6s  corpus %5d  findings %d\n' "$h" $((SECONDS - t0)) \
    "${execs:-?}" "${cov:-?}" "${ft:-?}" "$corpus" "$found"
  if [ "$found" -gt 0 ] || { [ $rc -ne 0 ] && [ -z "${FUZZ_FLAGS:-}" ]; }; then
    echo "fuzz: $h: findings in $FUZZ/findings/$h (exit $rc); the end of its log:" >&2
    grep -E 'ERROR|SUMMARY|==[0-9]+==|#[0-9]+ +0x' "$log" | head -n 30 >&2
    return 1
  fi
}

for h in $HARNESSES; do [ -x "$FUZZ/fuzz_$h" ] || die "$FUZZ/fuzz_$h is not built (make fuzz builds it)"; done
[ -x "$DISTIL" ] || die "$DISTIL is not built"
rm -rf "$TMPDIR"
mkdir -p "$FUZZ/logs" "$TMPDIR"
make_seeds
replay
if [ "$SECONDS_EACH" -gt 0 ]; then
  pids=()
  for h in $HARNESSES; do
    while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
    run_one "$h" &
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || status=1; done
fi
rm -rf "$TMPDIR"
exit $status
