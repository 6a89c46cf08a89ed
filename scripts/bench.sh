#!/usr/bin/env bash
# Run every benchmark program ($BUILD/tests/bench_*), then distil train
# against its PyTorch peer (scripts/bench_student.py). Each prints its own
# figures next to a peer measured in the same run (a ratio, never a bare
# time). BENCH_QUICK=1: a few steps of the student bench, to check it runs.
set -euo pipefail
BUILD=${BUILD:?set by make}
PYTHON=${PYTHON:-/usr/bin/python3}
export PYTHON
# PyTorch, the peer some benchmarks compare against in the same run
# (bench_attention through scripts/bench_attention_torch.py): Debian's
# python3-torch, installed here when missing and run as root. make test and
# CI never need it; without it those benchmarks say so and skip the peer.
if ! "$PYTHON" -c "import torch" 2>/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "bench: installing python3-torch for the PyTorch peers"
    apt-get install -y -q python3-torch >/dev/null 2>&1 || echo "bench: could not install python3-torch; no PyTorch peers"
  else
    echo "bench: $PYTHON cannot import torch (as root this script would apt-get install python3-torch); no PyTorch peers"
  fi
fi
for b in "$BUILD"/tests/bench_*; do
  case "$b" in *.o|*.d) continue ;; esac
  [ -x "$b" ] || continue
  echo "== $(basename "$b")"
  "$b"
done
echo "== bench_urban4"
bash scripts/bench_urban4.sh

echo "== bench_student (distil train against PyTorch)"
torch_py=$(bash scripts/torch_python.sh) || torch_py=""
"$PYTHON" scripts/bench_student.py --distil "$BUILD/distil" --sgemm "$BUILD/tests/bench_block --sgemm" \
  --torch-python "$torch_py" --work "$BUILD/bench-student" ${BENCH_QUICK:+--quick}
