// cuda_sim.h: just enough of the CUDA runtime, CUDA Graphs, cuBLAS, cuBLASLt
// and cuda_bf16 to run kernels/cuda/*.cu on the CPU, for checking the
// kernels' logic and the backend's stream ordering on a machine without a
// GPU (kernels/cuda/sim/run.sh). Not a performance model and not part of
// any build of distil.
//
// Each block runs as blockDim real threads (so __syncthreads, warp
// shuffles, shared memory and races behave as on a GPU, and
// ThreadSanitizer can see the races); the blocks of one grid run one after
// another. `__shared__` declarations are rewritten by run.sh into storage of
// the running block (sim::block_shared), so grids of different streams may
// run at the same time.
//
// Streams (CUDA_SIM_MODE, default async):
//   async  each stream is its own host thread that runs its queue in order,
//          sleeping a random while before some items, so work on different
//          streams interleaves differently on every run. Events really
//          order them: cudaStreamWaitEvent holds the waiting stream until
//          the recorded work has run. A missing event shows as a wrong
//          result (or as a race under ThreadSanitizer).
//   sync   every launch and copy runs at once on the calling thread.
// CUDA_SIM_SEED fixes the delays' random stream; CUDA_SIM_MAX_DELAY_US
// bounds a delay (default 300). CUDA_SIM_DROP_WAIT=FILE:TEXT is fault
// injection: every cudaStreamWaitEvent in source file FILE (its base name)
// whose argument text contains TEXT is skipped, which is how a test plants
// a missing event.
//
// Stricter than CUDA where the project's rules are: the legacy default
// stream (stream 0, cudaMemcpy, cudaMemset) is refused, and so are streams
// created without cudaStreamNonBlocking, because every launch and copy must
// name a non-blocking stream and be ordered by events alone. Launch
// configurations, shuffles, pointer kinds of copies, calls made illegal by
// an active stream capture, and cuBLAS arguments are checked the way the
// real ones are: a bad one is a sticky error that CUDA_CHECK_LAUNCH /
// CUDA_CHECK / CUBLAS_CHECK report.
//
// CUDA Graphs: stream capture records each captured launch, copy and
// cuBLAS call with its arguments as they were at capture; a graph launch
// runs the recorded work on the launching stream, in capture order (a
// valid order of the captured dependencies).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <tuple>
#include <type_traits>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__
#define __launch_bounds__(...)
#define __restrict__ __restrict
// run.sh rewrites every `__shared__ T name[...];` into sim::block_shared;
// one it missed fails to compile here rather than silently sharing storage
// between concurrent blocks.
#define __shared__ __shared___not_rewritten_by_cuda_sim_run_sh

struct dim3 {
    unsigned int x, y, z;
    constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 { unsigned int x, y, z; };
extern thread_local uint3 threadIdx, blockIdx;
extern thread_local dim3 blockDim, gridDim;
constexpr int warpSize = 32;

// ---- vector types (the 128-bit loads and stores) -----------------------------------
struct alignas(8) float2 { float x, y; };
struct alignas(16) float4 { float x, y, z, w; };
struct alignas(16) int4 { int x, y, z, w; };
struct alignas(16) uint4 { unsigned int x, y, z, w; };
inline float2 make_float2(float x, float y) { return float2{ x, y }; }
inline float4 make_float4(float x, float y, float z, float w) { return float4{ x, y, z, w }; }

// ---- runtime -------------------------------------------------------------------
typedef enum {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorIllegalState = 401,
    cudaErrorNotReady = 600,
    cudaErrorLaunchFailure = 719,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureUnmatched = 903,
    cudaErrorStreamCaptureUnjoined = 904,
    cudaErrorStreamCaptureIsolation = 905,
    cudaErrorStreamCaptureImplicit = 906,
} cudaError_t;
typedef struct SimStream *cudaStream_t;
enum cudaMemcpyKind { cudaMemcpyHostToHost, cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost, cudaMemcpyDeviceToDevice, cudaMemcpyDefault };
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01

cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorString(cudaError_t e);
enum cudaDeviceAttr { cudaDevAttrMaxThreadsPerBlock = 1, cudaDevAttrMultiProcessorCount = 16,
                      cudaDevAttrMaxSharedMemoryPerBlockOptin = 97 };
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);

// The device's description (kernels/cuda/device_info.cu): one simulated
// device, "CUDA simulator", with a fixed UUID, compute capability 9.0 and
// driver and runtime 13.0.
typedef struct { char bytes[16]; } cudaUUID_t;
struct cudaDeviceProp {
    char name[256];
    cudaUUID_t uuid;
    size_t totalGlobalMem;
    int major, minor;
};
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> cudaError_t cudaMalloc(T **p, size_t bytes) { return cudaMalloc((void **)p, bytes); }
cudaError_t cudaFree(void *p);
// Page-locked host memory: plain host memory here, remembered, so that
// copies to and from it are asynchronous and copies of pageable memory are not.
#define cudaHostAllocDefault 0x00
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void *p);
// The synchronous copies and memset run on the legacy default stream,
// which this project does not use: refused.
cudaError_t cudaMemset(void *p, int v, size_t bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind k);
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t s = 0);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind k, cudaStream_t s = 0);

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags);
cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaDeviceSynchronize(void);

typedef struct SimEvent *cudaEvent_t;
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
// The call site and argument text go along, for CUDA_SIM_DROP_WAIT.
namespace sim {
cudaError_t stream_wait_event(const char *file, int line, const char *args, cudaStream_t s, cudaEvent_t e,
                              unsigned int flags = 0);
}
#define cudaStreamWaitEvent(...) sim::stream_wait_event(__FILE__, __LINE__, #__VA_ARGS__, __VA_ARGS__)

// Stream capture and CUDA Graphs.
typedef enum { cudaStreamCaptureModeGlobal = 0, cudaStreamCaptureModeThreadLocal = 1, cudaStreamCaptureModeRelaxed = 2 } cudaStreamCaptureMode;
typedef enum { cudaStreamCaptureStatusNone = 0, cudaStreamCaptureStatusActive = 1, cudaStreamCaptureStatusInvalidated = 2 } cudaStreamCaptureStatus;
typedef struct SimGraph *cudaGraph_t;
typedef struct SimGraphExec *cudaGraphExec_t;
typedef struct SimGraphNode *cudaGraphNode_t;
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphGetNodes(cudaGraph_t graph, cudaGraphNode_t *nodes, size_t *count);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// Kernel attributes: only the dynamic shared memory limit.
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
namespace sim {
void set_max_dynamic_smem(const void *kernel, int bytes);
}
template <class F> cudaError_t cudaFuncSetAttribute(F *kernel, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) sim::set_max_dynamic_smem((const void *)kernel, value);
    return cudaSuccess;
}

// ---- device intrinsics ----------------------------------------------------------------
void __syncthreads(void);
void __syncwarp(unsigned int mask = 0xffffffffu);
inline void __threadfence(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, sizeof u); return u; }
inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, sizeof f); return f; }
inline int __float_as_int(float f) { int u; memcpy(&u, &f, sizeof u); return u; }
inline float __int_as_float(int u) { float f; memcpy(&f, &u, sizeof f); return f; }
inline unsigned int __umulhi(unsigned int a, unsigned int b) { return (unsigned int)(((uint64_t)a * b) >> 32); }
// The fast-math intrinsics: the exact functions here (a GPU's differ by a few ulp).
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <class T> inline T __ldg(const T *p) { return *p; }
template <class T> inline T __ldcs(const T *p) { return *p; }
template <class T> inline void __stcs(T *p, T v) { *p = v; }
using std::max;
using std::min;
using std::isfinite;   // device code has them unqualified
using std::isnan;
using std::isinf;

namespace sim {
// One lane's value handed to another through the warp's slots: a write, a
// barrier of the warp, a read, a barrier. Every lane of the warp must call
// it, with the full mask (which is checked).
uint64_t warp_exchange(unsigned int mask, uint64_t bits, int src_lane, const char *what);
int lane_id(void);
template <class T> T shuffle_from(unsigned int mask, T v, int src_lane, const char *what) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of a value over 8 bytes");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = warp_exchange(mask, bits, src_lane, what);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}
}  // namespace sim

template <class T> T __shfl_xor_sync(unsigned int mask, T v, int lane_mask, int width = 32) {
    (void)width;
    return sim::shuffle_from(mask, v, sim::lane_id() ^ lane_mask, "__shfl_xor_sync");
}
template <class T> T __shfl_down_sync(unsigned int mask, T v, unsigned int delta, int width = 32) {
    (void)width;
    int src = sim::lane_id() + (int)delta;
    return sim::shuffle_from(mask, v, src < 32 ? src : sim::lane_id(), "__shfl_down_sync");
}
template <class T> T __shfl_sync(unsigned int mask, T v, int src_lane, int width = 32) {
    (void)width;
    return sim::shuffle_from(mask, v, src_lane & 31, "__shfl_sync");
}

namespace sim {

// A 128-bit access must be 16-byte aligned (vec.cuh): checked here, as the
// GPU would fault ("misaligned address").
void check_aligned(const void *p, size_t bytes, const char *file, int line);
#define CUDA_SIM_CHECK_ALIGNED(p, bytes) sim::check_aligned((const void *)(p), (bytes), __FILE__, __LINE__)

// The block's dynamic shared memory (the launch's third argument), poisoned
// with 0xff bytes (NaN floats) so a read before a write shows.
void *dynamic_smem(void);
// The running block's copy of one `__shared__` variable, told apart by the
// address of a tag that run.sh declares beside it; poisoned like dynamic_smem.
void *block_shared_bytes(const void *tag, size_t bytes);
template <class T> T *block_shared(const void *tag) { return (T *)block_shared_bytes(tag, sizeof(T)); }

// Checks a launch (the sticky error on failure); false when it must not run.
bool check_launch(dim3 grid, dim3 block, size_t smem, cudaStream_t s, const void *kernel);
void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body);
// Runs fn on stream s: at once (sync mode), queued (async), or recorded
// into the graph s is capturing.
void enqueue(cudaStream_t s, std::function<void()> fn, const char *what);

// kernel<<<grid, block, smem, stream>>>(args) is rewritten by run.sh into
// sim::Launch(grid, block, smem, stream).run(kernel, args): the arguments
// are converted to the kernel's parameter types and copied at the launch,
// as CUDA does.
struct Launch {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    Launch(dim3 g, dim3 b, size_t s = 0, cudaStream_t st = 0) : grid(g), block(b), smem(s), stream(st) {}
    template <class... P, class... A> void run(void (*kernel)(P...), A &&...args) {
        if (!check_launch(grid, block, smem, stream, (const void *)kernel)) return;
        std::tuple<std::decay_t<P>...> params(std::forward<A>(args)...);
        dim3 g = grid, b = block;
        size_t sm = smem;
        enqueue(stream, [=] { run_grid(g, b, sm, [&] { std::apply(kernel, params); }); }, "kernel launch");
    }
};

}  // namespace sim

// ---- cuBLAS --------------------------------------------------------------------------
typedef enum {
    CUBLAS_STATUS_SUCCESS = 0,
    CUBLAS_STATUS_NOT_INITIALIZED = 1,
    CUBLAS_STATUS_INVALID_VALUE = 7,
    CUBLAS_STATUS_NOT_SUPPORTED = 15,
} cublasStatus_t;
typedef enum { CUBLAS_OP_N = 0, CUBLAS_OP_T = 1, CUBLAS_OP_C = 2 } cublasOperation_t;
typedef enum { CUBLAS_DEFAULT_MATH = 0, CUBLAS_PEDANTIC_MATH = 2, CUBLAS_TF32_TENSOR_OP_MATH = 3 } cublasMath_t;
typedef struct SimCublas *cublasHandle_t;

cublasStatus_t cublasCreate(cublasHandle_t *h);
cublasStatus_t cublasDestroy(cublasHandle_t h);
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s);
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m);
cublasStatus_t cublasGetMathMode(cublasHandle_t h, cublasMath_t *m);
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *workspace, size_t bytes);
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
    operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{ x }; }
};
struct alignas(4) __nv_bfloat162 { __nv_bfloat16 x, y; };
inline float __bfloat162float(__nv_bfloat16 h) { return __uint_as_float((unsigned int)h.x << 16); }
// Round to nearest even; a NaN becomes the canonical quiet NaN, as CUDA's.
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    unsigned int u = __float_as_uint(f);
    __nv_bfloat16_raw r;
    r.x = (u & 0x7fffffffu) > 0x7f800000u ? (unsigned short)0x7fff : (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    return __nv_bfloat16(r);
}
inline __nv_bfloat16 __float2bfloat16(float f) { return __float2bfloat16_rn(f); }

// ---- cuBLASLt (the bf16 matrix products) ----------------------------------------------
typedef enum { CUDA_R_32F = 0, CUDA_R_16BF = 14 } cudaDataType_t;
typedef cudaDataType_t cudaDataType;
typedef enum { CUBLAS_COMPUTE_32F = 68, CUBLAS_COMPUTE_32F_FAST_TF32 = 77 } cublasComputeType_t;
typedef struct SimLt *cublasLtHandle_t;
typedef struct SimLtDesc *cublasLtMatmulDesc_t;
typedef struct SimLtLayout *cublasLtMatrixLayout_t;
typedef struct SimLtPref *cublasLtMatmulPreference_t;
typedef struct { int algo_id; } cublasLtMatmulAlgo_t;
typedef struct {
    cublasLtMatmulAlgo_t algo;
    size_t workspaceSize;
    cublasStatus_t state;
    float wavesCount;
    int reserved[4];
} cublasLtMatmulHeuristicResult_t;
typedef enum { CUBLASLT_MATMUL_DESC_TRANSA = 3, CUBLASLT_MATMUL_DESC_TRANSB = 4, CUBLASLT_MATMUL_DESC_EPILOGUE = 7,
               CUBLASLT_MATMUL_DESC_BIAS_POINTER = 8 } cublasLtMatmulDescAttributes_t;
typedef enum { CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT = 5, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET = 6 } cublasLtMatrixLayoutAttribute_t;
typedef enum { CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES = 1 } cublasLtMatmulPreferenceAttributes_t;
typedef enum { CUBLASLT_EPILOGUE_DEFAULT = 1, CUBLASLT_EPILOGUE_BIAS = 4 } cublasLtEpilogue_t;

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h);
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h);
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute, cudaDataType_t scale);
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d);
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a, const void *buf, size_t bytes);
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType_t type, uint64_t rows, uint64_t cols, int64_t ld);
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l);
cublasStatus_t cublasLtMatrixLayoutSetAttribute(cublasLtMatrixLayout_t l, cublasLtMatrixLayoutAttribute_t a, const void *buf, size_t bytes);
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p);
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p);
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p, cublasLtMatmulPreferenceAttributes_t a, const void *buf, size_t bytes);
cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t a,
                                              cublasLtMatrixLayout_t b, cublasLtMatrixLayout_t c, cublasLtMatrixLayout_t dd,
                                              cublasLtMatmulPreference_t p, int requested,
                                              cublasLtMatmulHeuristicResult_t *results, int *returned);
cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t la, const void *B, cublasLtMatrixLayout_t lb, const void *beta,
                              const void *C, cublasLtMatrixLayout_t lc, void *D, cublasLtMatrixLayout_t ld,
                              const cublasLtMatmulAlgo_t *algo, void *workspace, size_t workspace_bytes, cudaStream_t s);
