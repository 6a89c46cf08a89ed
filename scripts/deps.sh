#!/usr/bin/env bash
# Install what distil needs, when missing. As root it runs apt-get;
# otherwise it prints the exact command and fails.
#
#   scripts/deps.sh          the build and `make demo`: Debian packages
#   scripts/deps.sh --test   also what the tests use: headless Chromium (the
#                            report test), and the Python packages the
#                            interop tests import (onnx, onnxruntime,
#                            safetensors, tensorboard's event reader),
#                            pip-installed into build/pydeps
#                            (tests/run.sh puts it on PYTHONPATH). The tests
#                            themselves install nothing.
#   scripts/deps.sh --fuzz   the build's packages plus clang, its libFuzzer and
#                            sanitizer runtimes and omp.h (make fuzz)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  gcc make pkg-config          # the build
  libhdf5-dev                  # drive logs (HDF5 1.10, serial)
  libzstd-dev                  # the in-process zstd filter (HDF5 filter 32015)
  libyaml-dev                  # recipes
  libjansson-dev               # JSON: safetensors headers, config.json, vocab.json, eval.json, metrics.jsonl
  libopenmpi-dev openmpi-bin   # multi-process launch and CPU all-reduce
  libopenblas-dev libopenblas-openmp-dev   # CPU matrix products (the OpenMP build is linked)
  zlib1g-dev                   # deflate chunks, decoded by the loader's workers
  python3 python3-numpy python3-h5py python3-zstandard   # interop tests, fixtures
)
test_packages=(
  chromium                     # tests/test_report.py renders the report headless
  python3-pip                  # installs the Python packages below
)
fuzz_packages=(
  clang libclang-rt-14-dev     # libFuzzer, ASan and UBSan for clang 14 (Debian 12's)
  libomp-14-dev                # omp.h for clang
)
# Pure-Python or manylinux wheels, installed without their dependencies so
# that Debian's numpy (1.24) stays the one imported. onnx 1.16 is the last
# that runs with numpy 1.24 (newer ones need ml_dtypes and numpy 2).
# tensorboard's event reader (tests/test_cli.py) needs only absl-py beside
# protobuf and numpy; its server's dependencies (grpcio, werkzeug, ...) are
# not imported by it, so they are left out.
python_packages=(
  onnxruntime==1.20.1 onnx==1.16.2 protobuf==5.29.3 flatbuffers==24.12.23 packaging sympy==1.13.3 mpmath==1.3.0
  coloredlogs==15.0.1 humanfriendly==10.0 safetensors==0.5.2 tensorboard==2.18.0 absl-py==2.1.0
)
PYDEPS=build/pydeps

with_tests=0
[ "${1:-}" = --test ] && with_tests=1
[ $with_tests = 1 ] && packages+=("${test_packages[@]}")
[ "${1:-}" = --fuzz ] && packages+=("${fuzz_packages[@]}")

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  cmd="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then
    echo "distil: missing packages: ${missing[*]}" >&2
    echo "distil: run: sudo apt-get update && sudo $cmd" >&2
    exit 1
  fi
  echo "distil: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  $cmd >/dev/null
fi

[ $with_tests = 1 ] || exit 0
# The Python packages: reinstalled only when the list changes.
stamp="$PYDEPS/.installed"
want="${python_packages[*]}"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "distil: pip-installing into $PYDEPS: $want"
  rm -rf "$PYDEPS"
  mkdir -p "$PYDEPS"
  PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1 \
    /usr/bin/python3 -m pip install --quiet --no-deps --target "$PYDEPS" "${python_packages[@]}"
  echo "$want" > "$stamp"
fi
