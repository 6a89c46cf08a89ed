// context.cuh: the process's one CUDA context: its streams and its cuBLAS
// handle (kernels/cuda/context.cu).
//
// Nothing here is created at startup: a binary without a GPU only ever calls
// cudaGetDeviceCount (backend_cuda_device_count). The context is built on the
// first call of any function below, which happens when a CUDA tape is
// planned, and lives until the process exits.
#pragma once
#include <cstddef>
#include <cuda_runtime.h>
#include <cublasLt.h>
#include <cublas_v2.h>

// The three streams are non-blocking and nothing uses the legacy default
// stream: every launch and copy names one of them, and work on one stream
// that depends on another's waits on an event (cudaStreamWaitEvent).
//
// Every kernel and cuBLAS call of the training step is queued here, in tape
// order, so one op's output is ready for the next without events.
cudaStream_t cuda_compute_stream(void);
// Host<->device transfers (the data loader's batches, reads of results,
// weights loaded from the host), ordered against the compute stream by events.
cudaStream_t cuda_copy_stream(void);
// Gradient all-reduce buckets, overlapping the rest of backward.
cudaStream_t cuda_comm_stream(void);
// The cuBLAS handle, bound to the compute stream, in the math mode that
// cuda_set_allow_tf32 last chose (plain fp32 unless TF32 was allowed).
cublasHandle_t cuda_cublas(void);
// The cuBLASLt handle and the workspace its products may use (the bf16
// matrix products, gemm.cu), allocated once with the context.
struct CudaLt {
    cublasLtHandle_t handle;
    void *workspace;
    size_t workspace_bytes;
};
CudaLt cuda_cublaslt(void);
// Scratch device memory of at least `bytes` for kernels queued on the
// compute stream (partial sums of a multi-block reduction...). Its contents
// do not outlive the op that asked for it. It only grows, syncing the
// compute stream first, so after the first step no call allocates. For the
// compute stream's thread only.
void *cuda_workspace(size_t bytes);
// How many times the workspace has been (re)allocated: a CUDA Graph captured
// before a growth still points at the freed buffer (capture.cu checks).
unsigned long cuda_workspace_generation(void);

extern "C" {
// TF32 tensor-core matrix products (10-bit mantissa inputs, ~1e-3 relative
// error) for matmul and linear. Off by default, so CUDA matches the CPU to
// fp32 rounding; a recipe turns it on for speed. Callable before or after
// the context exists.
void cuda_set_allow_tf32(int allow);
int cuda_allow_tf32(void);
}
