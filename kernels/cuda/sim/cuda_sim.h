// cuda_sim.h: just enough of the CUDA runtime, cuBLAS and cuda_bf16 to run
// kernels/cuda/*.cu on the CPU, for checking the kernels' logic on a machine
// without a GPU (kernels/cuda/sim/run.sh). Not a performance model and not
// part of any build of distil.
//
// Each block runs as blockDim real threads (so __syncthreads, shared memory
// and races behave as on a GPU, and ThreadSanitizer can see the races);
// blocks run one after another, so a function-local `static` stands in for
// __shared__. Launches are synchronous. Launch configurations, shuffles and
// cuBLAS arguments are checked the way the real ones are: a bad one is a
// sticky error that CUDA_CHECK_LAUNCH / CUBLAS_CHECK report.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned int x, y, z; };
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;

// ---- runtime -------------------------------------------------------------------
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorLaunchFailure = 719,
} cudaError_t;
typedef struct SimStream *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetLastError(void);
const char *cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = 0);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);
// Page-locked host memory: plain host memory here.
#define cudaHostAllocDefault 0x00
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *p);
// Events: launches and copies are synchronous here, so recording, waiting
// and synchronising only check that the event exists.
typedef struct SimEvent *cudaEvent_t;
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);

// ---- device intrinsics -------------------------------------------------------------
void __syncthreads(void);
float __shfl_xor_sync(unsigned int mask, float v, int lane_mask);
inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, sizeof u); return u; }
inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, sizeof f); return f; }
using std::max;
using std::min;

namespace sim {

// The block's dynamic shared memory (the launch's third argument), poisoned
// with 0xff bytes (NaN floats) so a read before a write shows.
void *dynamic_smem(void);
void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);

struct Launch {
    dim3 grid, block;
    size_t smem;
    Launch(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s) { (void)st; }
    template <class... P, class... A> void run(void (*kernel)(P...), A &&...args) {
        run_grid(grid, block, smem, [&] { kernel(args...); });
    }
};

}  // namespace sim

// ---- cuBLAS --------------------------------------------------------------------------
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct SimCublas *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
const char *cublasGetStatusString(cublasStatus_t s);
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc);
cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long strideA,
                                         const float *B, int ldb, long long strideB, const float *beta,
                                         float *C, int ldc, long long strideC, int batch);

// ---- cuda_bf16 -------------------------------------------------------------------------
struct __nv_bfloat16_raw { unsigned short x; };
struct __nv_bfloat16 {
    unsigned short x;
    __nv_bfloat16() = default;
    __nv_bfloat16(__nv_bfloat16_raw r) : x(r.x) {}
};
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned int)h.x << 16); }
