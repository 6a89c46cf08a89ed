#!/usr/bin/env bash
# Run every test program ($BUILD/tests/test_*) and test script (tests/test_*.sh,
# tests/test_*.py), add up their "TESTS p passed, f failed, s skipped" lines and
# end with "N passed, N failed[, N skipped]". A program that dies without
# its TESTS line counts as one failure.
#   run.sh [all]   everything
#   run.sh c       the C test programs only (the sanitizer pass)
#   run.sh gpu     the GPU suite only
set -u
BUILD=${BUILD:?set by make}
PYTHON=${PYTHON:-/usr/bin/python3}
export DISTIL="$BUILD/distil" DISTIL_BUILD="$BUILD" PYTHON
# The Python packages scripts/deps.sh --test installs (onnx, onnxruntime, safetensors).
export PYTHONPATH="$(pwd)/build/pydeps${PYTHONPATH:+:$PYTHONPATH}"
mode=${1:-all}
passed=0; failed=0; skipped=0
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT

run_one() {  # name, command...
  local name=$1; shift
  local out="$log/$(basename "$name").out"
  local start=$SECONDS
  "$@" >"$out" 2>&1
  local rc=$?
  local line
  line=$(grep -E '^TESTS [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$out" | tail -n 1)
  if [ -z "$line" ]; then
    echo "FAIL $name: exited $rc without a TESTS line; its output:"
    tail -n 30 "$out" | sed 's/^/    /'
    failed=$((failed + 1))
    return
  fi
  read -r _ p _ f _ s _ <<<"$line"
  passed=$((passed + p)); failed=$((failed + f)); skipped=$((skipped + s))
  printf '%-40s %3d passed, %d failed, %d skipped (%ds)\n' "$name" "$p" "$f" "$s" $((SECONDS - start))
  if [ "$f" -ne 0 ] || [ "$rc" -ne 0 ]; then
    grep -vE '^ok ' "$out" | sed 's/^/    /'
    [ "$f" -eq 0 ] && { echo "    (exit status $rc)"; failed=$((failed + 1)); }
  fi
  grep -E '^skip ' "$out" | sed 's/^/    /'
}

if [ "$mode" = gpu ]; then
  for src in tests/test_gpu*.c; do
    t="$BUILD/tests/$(basename "$src" .c)"
    if [ -x "$t" ]; then run_one "$(basename "$t")" "$t"
    else echo "FAIL $(basename "$t"): not built ($t)"; failed=$((failed + 1)); fi
  done
else
  # The programs of today's tests/test_*.c: a build folder may still hold
  # the binary of a test that was since removed.
  for src in tests/test_*.c; do
    t="$BUILD/tests/$(basename "$src" .c)"
    if [ -x "$t" ]; then run_one "$(basename "$t")" "$t"
    else echo "FAIL $(basename "$t"): not built ($t)"; failed=$((failed + 1)); fi
  done
  if [ "$mode" = all ]; then
    for t in tests/test_*.sh; do [ -f "$t" ] && run_one "$(basename "$t")" bash "$t"; done
    for t in tests/test_*.py; do [ -f "$t" ] && run_one "$(basename "$t")" "$PYTHON" "$t"; done
  fi
fi

if [ "$skipped" -gt 0 ]; then
  echo "$passed passed, $failed failed, $skipped skipped"
else
  echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
