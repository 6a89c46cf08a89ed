#!/usr/bin/env bash
# The CUDA kernels' logic on a machine without a GPU: kernels/cuda/*.cu built
# against the CPU simulator of the CUDA runtime and cuBLAS (kernels/cuda/sim),
# running tests/test_gpu_parity's CUDA side under ASan and UBSan. It checks
# indexing, reductions, gradient accumulation and cuBLAS argument order; it
# says nothing about real-GPU behaviour or speed (tests/test_gpu_parity on a
# GPU is the test that counts). Its last line is test_gpu_parity's TESTS line.
set -euo pipefail
exec bash kernels/cuda/sim/run.sh
