#!/usr/bin/env bash
# Run every benchmark program ($BUILD/tests/bench_*). Each prints its own
# figures next to a peer measured in the same run (a ratio, never a bare time).
set -euo pipefail
BUILD=${BUILD:?set by make}
for b in "$BUILD"/tests/bench_*; do
  case "$b" in *.o|*.d) continue ;; esac
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b"
done
