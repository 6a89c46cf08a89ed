#!/usr/bin/env bash
# The CUDA kernels' logic on a machine without a GPU: kernels/cuda/*.cu built
# against the CPU simulator of the CUDA runtime and cuBLAS (kernels/cuda/sim),
# running tests/test_gpu_parity's and tests/test_gpu_train's CUDA side under
# ASan and UBSan, with asynchronous streams: each stream its own thread with
# random delays, ordered only by the events the backend records. It checks
# indexing, reductions, gradient accumulation, cuBLAS argument order, the
# trainer's host<->device wiring and the stream ordering; it says nothing
# about real-GPU behaviour or speed (those tests on a GPU are the ones that
# count).
#
# Then a planted missing event: the same parity test with one
# cudaStreamWaitEvent dropped (the copy stream's wait for the compute work
# before a download) must fail, which shows that the asynchronous mode
# catches a missing event rather than passing by luck of scheduling.
# Its last line adds up everything.
set -uo pipefail
cd "$(dirname "$0")/.."
log=$(mktemp)
trap 'rm -f "$log"' EXIT
CUDA_SIM_MODE=async bash kernels/cuda/sim/run.sh 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
read -r _ passed _ failed _ skipped _ < <(grep -E '^TESTS [0-9]+ passed' "$log" | tail -n 1 || echo "TESTS 0 passed, 1 failed, 0 skipped")

# The planted fault: without that wait, a download reads the result before
# the kernels that write it have run.
OUT=build/cuda-sim-address-undefined
echo "cuda_sim: planted missing event: $OUT/test_gpu_parity without the download's wait"
CUDA_SIM_MODE=async CUDA_SIM_DROP_WAIT=backend_cuda.cu:download.compute_done DISTIL_TEST_ONLY=test_transformer_step \
  "$OUT/test_gpu_parity" >"$log" 2>&1
if grep -q 'fault injection: dropping' "$log" && grep -qE '^TESTS 0 passed, 1 failed' "$log"; then
  echo "ok   planted_missing_event (the parity test failed without the event, as it must)"
  passed=$((passed + 1))
else
  echo "FAIL planted_missing_event: the parity test did not fail with the download's event wait dropped:"
  sed 's/^/    /' "$log" | tail -n 20
  failed=$((failed + 1)); status=1
fi
echo "TESTS $passed passed, $failed failed, $skipped skipped"
exit $status
