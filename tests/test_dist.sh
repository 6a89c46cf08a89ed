#!/usr/bin/env bash
# test_dist.sh: `mpirun -np R distil train` end to end on CPU ranks: rank 0
# alone prints and writes the run directory, a batch that does not split
# over the ranks is refused, a rank killed with SIGKILL or stalled (SIGSTOP)
# ends the whole job with a message
# naming the rank, a run at R = 2 resumes bit-exactly (ZeRO-0 and ZeRO-1),
# and SIGTERM to one rank at a random step stops both after the same step
# with its checkpoint and exit 143, the resumed run ending bit-exactly.
# The numerics (R = 1, 2, 4, ZeRO, buckets, bf16) are tests/test_dist.c's.
set -u
DISTIL=${DISTIL:-build/cpu/distil}
passed=0; failed=0; skipped=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip $1: $2"; skipped=$((skipped + 1)); }
finish() { echo "TESTS $passed passed, $failed failed, $skipped skipped"; exit 0; }

if ! command -v mpirun >/dev/null 2>&1; then
  skip all "mpirun not found (apt-get install openmpi-bin)"
  finish
fi
DISTIL=$(realpath "$DISTIL")
SRC=$(pwd)
PYTHON=${PYTHON:-/usr/bin/python3}
tmp=$(mktemp -d /tmp/distil_test_dist_sh.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
# One OpenMP thread per rank: two cores shared by up to four ranks.
export OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Under SAN=1: Open MPI's dlopen'ed components leak at exit (not distil's memory).
export ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}
MPIRUN="mpirun --allow-run-as-root --oversubscribe"

"$DISTIL" logs synth --preset demo --shards 2 --samples-per-shard 64 --seed 5 --out logs \
  --eval-shards 1 --eval-samples-per-shard 16 >/dev/null || { fail setup "logs synth"; finish; }
# tests/tiny.yaml at micro-batch 2 x 2 ranks, 8 steps at a constant rate.
"$PYTHON" "$SRC/tests/harness.py" tiny-recipe tiny.yaml logs train.steps=8 train.micro_batch=2 \
  train.min_lr=3.0e-3 train.log_every=2 train.eval_every=4 train.checkpoint_every=4 dist.timeout_s=4 ||
  { fail setup "tiny recipe"; finish; }

# ---- rank 0 alone prints and writes ------------------------------------------------
$MPIRUN -np 2 "$DISTIL" train tiny.yaml --out run2 >out2.txt 2>err2.txt
rc=$?
headers=$(grep -c '^distil train:' out2.txt)
steps=$(grep -c '"loss"' run2/metrics.jsonl 2>/dev/null)
if [ $rc -eq 0 ] && [ "$headers" = 1 ] && [ "$steps" = 8 ] && [ -f run2/eval.json ] && [ ! -s err2.txt ] &&
   grep -q 'micro-batch 2 x 2 accumulation' out2.txt && [ "$(grep -c '^eval on' out2.txt)" = 1 ]; then
  ok rank0_prints_and_writes
else
  fail rank0_prints_and_writes "rc $rc, $headers header lines, $steps step lines; stderr: $(head -c 300 err2.txt)"
fi

# ---- a global batch that does not split over the ranks -------------------------------
$MPIRUN -np 2 "$DISTIL" train tiny.yaml --out bad --set train.batch_size=6 >/dev/null 2>err.txt
rc=$?
if [ $rc -ne 0 ] && grep -q 'train.batch_size 6 is not a multiple of train.micro_batch (2) x the world size (2 ranks)' err.txt; then
  ok batch_split_refused
else
  fail batch_split_refused "rc $rc; $(grep -m1 error err.txt)"
fi

# ---- a mistake every rank makes is printed once ---------------------------------------
$MPIRUN -np 2 "$DISTIL" train tiny.yaml --out once --set train.warmup_steps=9 >/dev/null 2>err.txt
rc=$?
errors=$(grep -c '^distil: error:' err.txt)
if [ $rc -ne 0 ] && [ "$errors" = 1 ] && grep -q -- '--set train.warmup_steps: 9 is more than train.steps 8' err.txt; then
  ok recipe_error_printed_once
else
  fail recipe_error_printed_once "rc $rc, $errors error lines: $(grep '^distil: error:' err.txt | head -3)"
fi

# ---- failures end the job -------------------------------------------------------------
# The pid of rank $1 among mpirun $2's children.
rank_pid() {
  local p
  for p in $(pgrep -P "$2"); do
    tr '\0' '\n' </proc/$p/environ 2>/dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1" && { echo "$p"; return; }
  done
}

# Start a long run, wait until it trains, send signal $2 to rank $1, and
# print how many seconds the job took to end after it, or "hung" when it
# has not ended after 120 s (a guard against a hang, not a speed limit:
# how long the job takes is the watchdog's business, checked by what it
# prints).
signal_rank() {
  local rank=$1 sig=$2 log=$3
  rm -rf long
  $MPIRUN -np 2 "$DISTIL" train tiny.yaml --out long --set train.steps=1000000 --set train.eval_every=0 \
    --set train.checkpoint_every=0 --set train.log_every=100000 >"$log" 2>&1 &
  local mpid=$! i victim=""
  for i in $(seq 100); do
    [ -s long/metrics.jsonl ] && victim=$(rank_pid "$rank" $mpid) && [ -n "$victim" ] && break
    sleep 0.1
  done
  [ -z "$victim" ] && { kill $mpid; wait $mpid; echo "norank"; return; }
  local t0=$SECONDS
  kill "-$sig" "$victim"
  for i in $(seq 1200); do   # 120 s
    kill -0 $mpid 2>/dev/null || { wait $mpid; echo $((SECONDS - t0)); return; }
    sleep 0.1
  done
  kill -9 $mpid; kill -9 "$victim"; wait $mpid
  echo hung
}

# SIGKILL: mpirun notices the rank's death and ends the others at once.
t=$(signal_rank 1 KILL kill.log)
if [ "$t" != hung ] && [ "$t" != norank ] && grep -q 'rank 1' kill.log; then
  ok killed_rank_ends_job
  echo "  rank 1 killed: the job ended after ${t} s (dist.timeout_s 4)"
else
  fail killed_rank_ends_job "ended after: $t; $(tail -n 3 kill.log)"
fi

# SIGSTOP on rank 1: rank 0's watchdog fires after timeout_s (not before:
# the stall it reports is at least 4 s) and names it.
t=$(signal_rank 1 STOP stall1.log)
stalled=$(grep -m1 -oE 'stalled for [0-9]+ s' stall1.log | grep -oE '[0-9]+')
if [ "$t" != hung ] && [ "$t" != norank ] && [ "${stalled:-0}" -ge 4 ] &&
   grep -Eq 'distil: error: rank 0: collective .* stalled for [0-9]+ s \(rank 1 unresponsive\?\); ending the job' stall1.log; then
  ok stalled_rank_named
  echo "  rank 1 stopped: $(grep -m1 'stalled' stall1.log) after ${t} s"
else
  fail stalled_rank_named "ended after: $t; $(grep -m1 error stall1.log)"
fi

# SIGSTOP on rank 0: rank 1 fires a grace period (3 s) later and names rank 0.
t=$(signal_rank 0 STOP stall0.log)
stalled=$(grep -m1 -oE 'stalled for [0-9]+ s' stall0.log | grep -oE '[0-9]+')
if [ "$t" != hung ] && [ "$t" != norank ] && [ "${stalled:-0}" -ge 4 ] &&
   grep -Eq 'distil: error: rank 1: collective .* stalled for [0-9]+ s \(rank 0 unresponsive\?\); ending the job' stall0.log; then
  ok stalled_root_named
  echo "  rank 0 stopped: $(grep -m1 'stalled' stall0.log) after ${t} s"
else
  fail stalled_root_named "ended after: $t; $(grep -m1 error stall0.log)"
fi

# ---- resume at R = 2 -------------------------------------------------------------------
# 8 steps straight against 4, a stop, --resume and 4 more: the same metrics
# (but the clock's samples_per_s) and the same final weights, bit for bit.
for zero in 0 1; do
  set_z="--set dist.zero=$zero"
  $MPIRUN -np 2 "$DISTIL" train tiny.yaml --out straight$zero $set_z >/dev/null 2>&1
  $MPIRUN -np 2 "$DISTIL" train tiny.yaml --out resumed$zero --max-steps 4 $set_z >/dev/null 2>&1
  $MPIRUN -np 2 "$DISTIL" train tiny.yaml --out resumed$zero --resume $set_z >resume$zero.txt 2>&1
  rc=$?
  strip() { sed 's/"samples_per_s": [0-9.e+-]*//' "$1"; }
  shards=$(ls resumed$zero/checkpoints/step_0000004/ 2>/dev/null | grep -c '^zero1-rank-')
  if [ $rc -eq 0 ] && grep -q 'resuming from .*step_0000004 at step 4' resume$zero.txt &&
     [ "$(strip straight$zero/metrics.jsonl)" = "$(strip resumed$zero/metrics.jsonl)" ] &&
     cmp -s straight$zero/checkpoints/step_0000008/model.safetensors resumed$zero/checkpoints/step_0000008/model.safetensors &&
     [ "$shards" = $((zero * 2)) ]; then
    ok resume_at_2_ranks_zero$zero
  else
    fail resume_at_2_ranks_zero$zero "rc $rc, $shards shard files; $(grep -m1 error resume$zero.txt)"
  fi
done

# ---- SIGTERM at a random step, at R = 2 ---------------------------------------------
# Rank 1 alone gets it: the step's all-reduce tells rank 0, both stop after
# the same step, rank 0 writes its checkpoint, the job exits 143; --resume
# then ends as a run of the same 24 steps never stopped did. The signal
# comes after 1 to 8 steps: well before the end, however loaded the machine.
sig_sets="--set train.steps=24 --set train.eval_every=8 --set train.checkpoint_every=12"
$MPIRUN -np 2 "$DISTIL" train tiny.yaml --out straight24 $sig_sets >/dev/null 2>&1
# A run that ends before the signal reaches it (the tiny student's steps
# take milliseconds) is tried again with the signal sooner, up to 3 times.
after=$((RANDOM % 8 + 1))
for attempt in 1 2 3; do
  rm -rf sig
  $MPIRUN -np 2 "$DISTIL" train tiny.yaml --out sig $sig_sets >sig.out 2>sig.err &
  mpid=$!
  victim=""
  for i in $(seq 12000); do
    steps=$(grep -c '"loss"' sig/metrics.jsonl 2>/dev/null)
    [ "${steps:-0}" -ge $after ] && victim=$(rank_pid 1 $mpid) && [ -n "$victim" ] && break
    kill -0 $mpid 2>/dev/null || break
    sleep 0.01
  done
  [ -n "$victim" ] && kill -TERM "$victim"
  wait $mpid
  rc=$?
  [ $rc -ne 0 ] && break
  after=$(( (after + 1) / 2 ))
done
stop=$(grep -oE 'stopped by SIGTERM after step [0-9]+ of 24' sig.err | grep -oE 'step [0-9]+' | grep -oE '[0-9]+')
$MPIRUN -np 2 "$DISTIL" train tiny.yaml --out sig --resume $sig_sets >sigresume.txt 2>&1
rc2=$?
if [ -n "$victim" ] && [ $rc -eq 143 ] && [ -n "$stop" ] && [ "$stop" -ge "$after" ] &&
   [ "$(readlink sig/checkpoints/latest)" = step_0000024 ] && [ -d "sig/checkpoints/step_$(printf %07d "$stop")" ] &&
   [ $rc2 -eq 0 ] && grep -q "resuming from .*step_$(printf %07d "$stop") at step $stop" sigresume.txt &&
   [ "$(strip straight24/metrics.jsonl)" = "$(strip sig/metrics.jsonl)" ] &&
   cmp -s straight24/checkpoints/step_0000024/model.safetensors sig/checkpoints/step_0000024/model.safetensors &&
   cmp -s straight24/eval.json sig/eval.json; then
  ok sigterm_at_2_ranks_resumes_exactly
  echo "  SIGTERM to rank 1 after $after steps: $(grep -m1 'stopped by' sig.err | sed "s|$tmp|\$TMP|g")"
else
  fail sigterm_at_2_ranks_resumes_exactly "attempt $attempt: victim '$victim', rc $rc, stopped after '$stop' (signal after $after), resume rc $rc2; $(grep -m1 -E 'error|stopped' sig.err)"
fi

# A ZeRO-1 checkpoint is refused at another world size, naming both.
$MPIRUN -np 4 "$DISTIL" train tiny.yaml --out resumed1 --resume --set dist.zero=1 >/dev/null 2>err.txt
if [ $? -ne 0 ] && grep -q 'written by 2 processes and this run has 4' err.txt; then
  ok resume_other_world_size_refused
else
  fail resume_other_world_size_refused "$(grep -m1 error err.txt)"
fi

finish
