#!/usr/bin/env bash
# gpu_carry.sh (make gpu-carry): what scripts/gpu_check.sh needs on a GPU
# machine that has the CUDA 13 runtime, cuBLAS, NCCL and PyTorch but no
# compiler, no Debian dev packages and no network: distil and the GPU test
# programs built here with nvcc, and the shared libraries ldd lists for them
# (MPI, OpenBLAS, HDF5, yaml, zstd, jansson...), in one archive,
# .carry/gpu-check.tar.xz (git-ignored; ~15 MB). Copy the repository with
# .carry/ to the GPU machine and run scripts/gpu_check.sh there (or make
# gpu-check): it unpacks the archive and runs the programs with the carried
# libraries first on their library path.
#
# Left out of the archive: the C library family (libc, libm, libpthread,
# libdl, librt, the loader: the GPU machine's own, which must be as new as
# this machine's, glibc 2.36 for Debian 12; gpu_check.sh's preflight says
# when it is not) and the CUDA libraries (libcublas, libcublasLt, libnccl,
# libcuda: the GPU machine's, which must be CUDA 13 like the nvcc here).
# The runtime itself (cudart) is linked in statically.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
  { echo "gpu-carry: nvcc not found: the carry is built on a machine with the CUDA toolkit" >&2; exit 1; }
PROGS="distil tests/test_gpu_parity tests/test_gpu_train tests/test_grad_distill tests/bench_dist tests/bench_block"
echo "gpu-carry: building the CUDA backend (make CUDA=1)"
make --no-print-directory CUDA=1 all >/dev/null
stage=.carry/stage
rm -rf "$stage"
mkdir -p "$stage/tests" "$stage/lib"
for p in $PROGS; do
  cp "build/cuda/$p" "$stage/$p"
  strip --strip-debug "$stage/$p"   # the build ID stays: the self-test's cache keys on it
done
# Every library the programs load, resolved here, except the C library
# family and the CUDA libraries (above).
(cd "$stage" && ldd $PROGS) | awk '/=> \// { print $3 }' | sort -u |
  grep -vE '/(libc|libm|libpthread|libdl|librt|libcuda|libcublas|libcublasLt|libnccl)\.so|/ld-linux' |
  while read -r lib; do cp -L "$lib" "$stage/lib/"; done
{
  echo "commit $(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(. /etc/os-release && echo "$PRETTY_NAME"), glibc $(ldd --version | head -n 1 | awk '{print $NF}')"
  echo "nvcc $( (command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version) | grep -o 'release [0-9.]*')"
  echo "distil build ID $(readelf -n "$stage/distil" | awk '/Build ID/ { print $3 }')"
} >"$stage/BUILD_INFO"
rm -f .carry/gpu-check.tar.xz
tar -C "$stage" -cJf .carry/gpu-check.tar.xz .
rm -rf "$stage"
echo "gpu-carry: .carry/gpu-check.tar.xz ($(du -h .carry/gpu-check.tar.xz | cut -f1)): $(echo $PROGS | wc -w) programs and" \
     "$(tar -tJf .carry/gpu-check.tar.xz | grep -c '^./lib/.')" "libraries; on the GPU machine: scripts/gpu_check.sh"
