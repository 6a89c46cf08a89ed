#!/usr/bin/env bash
# The CUDA kernels' logic on a machine without a GPU: kernels/cuda/*.cu built
# against the CPU simulator of the CUDA runtime and cuBLAS (kernels/cuda/sim),
# running tests/test_gpu_parity's and tests/test_gpu_train's CUDA side under
# ASan and UBSan. It checks indexing, reductions, gradient accumulation,
# cuBLAS argument order and the trainer's host<->device wiring; it says
# nothing about real-GPU behaviour or speed (those tests on a GPU are the
# ones that count). Its last line adds up both programs' TESTS lines.
set -euo pipefail
exec bash kernels/cuda/sim/run.sh
