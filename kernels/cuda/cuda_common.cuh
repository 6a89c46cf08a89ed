// cuda_common.cuh: error checks shared by every CUDA file.
#pragma once
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>

// Checks a runtime call; on failure names the call, file and line, exits 1.
#define CUDA_CHECK(call) do { \
    cudaError_t err_ = (call); \
    if (err_ != cudaSuccess) { \
        fprintf(stderr, "distil: error: CUDA: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, cudaGetErrorString(err_)); \
        exit(1); \
    } } while (0)

// After every kernel launch: the launch's own error (bad configuration).
#define CUDA_CHECK_LAUNCH() CUDA_CHECK(cudaGetLastError())
