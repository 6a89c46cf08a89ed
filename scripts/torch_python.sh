#!/usr/bin/env bash
# Print the path of a Python interpreter that imports torch, for the PyTorch
# peer of make bench (scripts/bench_torch.py); install one when none is
# there. Never run by make test or CI. Messages go to stderr; exit 1 when no
# torch could be had.
#
# In order: $TORCH_PYTHON; the virtual environment build/torch-venv; PyPI's
# torch installed into it (torch 2.x, which has torch.compile; pip pulls its
# CUDA runtime wheels too, a few GB, once); any python3 that already has
# torch; Debian's python3-torch (1.13: eager only, no torch.compile).
# BENCH_TORCH=debian skips PyPI.
set -uo pipefail
VENV=${TORCH_VENV:-build/torch-venv}

has_torch() { [ -x "$1" ] && "$1" -c 'import torch' >/dev/null 2>&1; }

if [ -n "${TORCH_PYTHON:-}" ]; then
  has_torch "$TORCH_PYTHON" && { echo "$TORCH_PYTHON"; exit 0; }
  echo "torch_python: TORCH_PYTHON=$TORCH_PYTHON does not import torch" >&2
  exit 1
fi
has_torch "$VENV/bin/python" && { echo "$VENV/bin/python"; exit 0; }

if [ "${BENCH_TORCH:-pypi}" != debian ] && command -v python3 >/dev/null; then
  echo "torch_python: installing torch from PyPI into $VENV (once; a few GB with its CUDA wheels)" >&2
  if python3 -m venv "$VENV" >&2 && "$VENV/bin/pip" install -q torch numpy >&2 && has_torch "$VENV/bin/python"; then
    echo "$VENV/bin/python"
    exit 0
  fi
  echo "torch_python: the PyPI install failed; trying Debian's python3-torch" >&2
  rm -rf "$VENV"
fi

for py in /usr/bin/python3 python3; do
  has_torch "$(command -v "$py")" && { command -v "$py"; exit 0; }
done
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  echo "torch_python: installing Debian's python3-torch" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-torch >/dev/null 2>&1; }
  has_torch /usr/bin/python3 && { echo /usr/bin/python3; exit 0; }
fi
echo "torch_python: no torch: neither PyPI nor Debian's python3-torch could be installed" >&2
exit 1
