// backend_cuda.cu: device memory for the CUDA backend (see kernels/backend.h).
// Every runtime call is checked; a failure names the call and exits with 1.
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK

extern "C" int cuda_device_count(const char **why) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) {
        cudaGetLastError();   // clear it: having no GPU is not an error here
        if (why) *why = cudaGetErrorString(e);
        return 0;
    }
    if (n == 0 && why) *why = "no CUDA device found";
    return n;
}

extern "C" void *cuda_alloc(size_t bytes) {
    void *p = nullptr;
    if (cudaMalloc(&p, bytes) != cudaSuccess) { cudaGetLastError(); return nullptr; }
    CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
}

extern "C" void cuda_free(void *p) { CUDA_CHECK(cudaFree(p)); }
extern "C" void cuda_zero(void *p, size_t bytes) { CUDA_CHECK(cudaMemset(p, 0, bytes)); }
extern "C" void cuda_to_host(void *dst, const void *src, size_t bytes) { CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost)); }
extern "C" void cuda_from_host(void *dst, const void *src, size_t bytes) { CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice)); }
extern "C" void cuda_sync(void) { CUDA_CHECK(cudaDeviceSynchronize()); }
