// context.cu: the CUDA context (see context.cuh): three streams, one cuBLAS
// handle and a scratch workspace, created together on first use.
#include "kernels/cuda/context.cuh"
#include <atomic>
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK, CUBLAS_CHECK

namespace {

struct CudaContext {
    cudaStream_t compute, copy, comm;
    cublasHandle_t cublas;
    CudaLt lt;
    int tf32_applied;       // the math mode the handle is in (1: TF32 allowed)
    void *workspace;        // see cuda_workspace
    size_t workspace_bytes;
    unsigned long workspace_generation;
};

// The workspace's first size: enough for every op's partial sums at any
// shape this trainer uses, so it normally never grows.
constexpr size_t WORKSPACE_MIN_BYTES = 1 << 20;
// cuBLASLt's own workspace: what NVIDIA recommends for Hopper (32 MiB).
constexpr size_t LT_WORKSPACE_BYTES = 32u << 20;

// What cuda_set_allow_tf32 asked for; read at each cuda_cublas() call so the
// flag may be set before the context exists.
std::atomic<int> allow_tf32{0};

CudaContext make_context() {
    CudaContext c;
    // Non-blocking: no implicit ordering against the legacy default stream
    // (which nothing here uses) or against each other; every dependency
    // between these streams is an event.
    CUDA_CHECK(cudaStreamCreateWithFlags(&c.compute, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&c.copy, cudaStreamNonBlocking));
    CUDA_CHECK(cudaStreamCreateWithFlags(&c.comm, cudaStreamNonBlocking));
    CUBLAS_CHECK(cublasCreate(&c.cublas));
    CUBLAS_CHECK(cublasSetStream(c.cublas, c.compute));
    // CUBLAS_DEFAULT_MATH: plain fp32 FMAs; TF32 only once cuda_set_allow_tf32(1).
    CUBLAS_CHECK(cublasSetMathMode(c.cublas, CUBLAS_DEFAULT_MATH));
    c.tf32_applied = 0;
    CUBLAS_CHECK(cublasLtCreate(&c.lt.handle));
    CUDA_CHECK(cudaMalloc(&c.lt.workspace, LT_WORKSPACE_BYTES));
    c.lt.workspace_bytes = LT_WORKSPACE_BYTES;
    // cuBLAS gets the same workspace (its calls and cuBLASLt's run one after
    // the other on the compute stream), so it never allocates one itself,
    // which a CUDA Graph capture would not allow.
    CUBLAS_CHECK(cublasSetWorkspace(c.cublas, c.lt.workspace, LT_WORKSPACE_BYTES));
    c.workspace = nullptr;
    c.workspace_bytes = 0;
    c.workspace_generation = 0;
    return c;
}

// Created once, thread-safely (a C++11 function-local static), on first use.
CudaContext &context() {
    static CudaContext c = make_context();
    return c;
}

}  // namespace

cudaStream_t cuda_compute_stream(void) { return context().compute; }
cudaStream_t cuda_copy_stream(void) { return context().copy; }
cudaStream_t cuda_comm_stream(void) { return context().comm; }

cublasHandle_t cuda_cublas(void) {
    CudaContext &c = context();
    int want = allow_tf32.load();
    if (want != c.tf32_applied) {
        CUBLAS_CHECK(cublasSetMathMode(c.cublas, want ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
        c.tf32_applied = want;
    }
    return c.cublas;
}

CudaLt cuda_cublaslt(void) { return context().lt; }

void *cuda_workspace(size_t bytes) {
    CudaContext &c = context();
    if (bytes <= c.workspace_bytes) return c.workspace;
    // Kernels queued earlier may still read the old buffer.
    CUDA_CHECK(cudaStreamSynchronize(c.compute));
    if (c.workspace) CUDA_CHECK(cudaFree(c.workspace));
    size_t grown = bytes > WORKSPACE_MIN_BYTES ? bytes : WORKSPACE_MIN_BYTES;
    CUDA_CHECK(cudaMalloc(&c.workspace, grown));
    c.workspace_bytes = grown;
    c.workspace_generation++;
    return c.workspace;
}

unsigned long cuda_workspace_generation(void) { return context().workspace_generation; }

extern "C" void cuda_set_allow_tf32(int allow) { allow_tf32.store(allow ? 1 : 0); }
extern "C" int cuda_allow_tf32(void) { return allow_tf32.load(); }
