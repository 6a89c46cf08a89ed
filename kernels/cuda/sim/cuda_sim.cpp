// cuda_sim.cpp: the simulator's runtime (see cuda_sim.h).
#include "kernels/cuda/sim/cuda_sim.h"
#include <barrier>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <vector>

thread_local uint3 threadIdx, blockIdx;
thread_local dim3 blockDim, gridDim;

namespace {

cudaError_t last_error = cudaSuccess;   // sticky until cudaGetLastError, as the real one

cudaError_t fail(cudaError_t e, const char *what) {
    fprintf(stderr, "cuda_sim: %s\n", what);
    last_error = e;
    return e;
}

// The running block's shared state; every thread of the block points at it.
struct Block {
    std::barrier<> *barrier;
    std::vector<float> shfl;          // one slot per thread
    std::vector<unsigned char> smem;  // dynamic shared memory
    unsigned int nthreads;
};
thread_local Block *block_state;

unsigned int linear_tid() { return threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z); }

}  // namespace

void __syncthreads(void) { block_state->barrier->arrive_and_wait(); }

// Every thread of the block must call it (as in block_sum): a shuffle is a
// write, a barrier, a read of the partner lane, and a barrier.
float __shfl_xor_sync(unsigned int mask, float v, int lane_mask) {
    Block *b = block_state;
    if (mask != 0xffffffffu || b->nthreads % 32 != 0 || lane_mask < 0 || lane_mask > 31) {
        fprintf(stderr, "cuda_sim: __shfl_xor_sync with mask %#x, lane mask %d in a block of %u threads\n",
                mask, lane_mask, b->nthreads);
        abort();
    }
    unsigned int t = linear_tid();
    b->shfl[t] = v;
    b->barrier->arrive_and_wait();
    float r = b->shfl[(t & ~31u) | ((t & 31u) ^ (unsigned int)lane_mask)];
    b->barrier->arrive_and_wait();
    return r;
}

namespace sim {

void *dynamic_smem(void) { return block_state->smem.data(); }

namespace {

// Worker threads reused from block to block (creating 256 threads per block
// would dominate the run time). Block after block: the launcher publishes a
// job and a generation; workers [0, active) run it, and the launcher waits
// until all of them are done.
struct Pool {
    std::vector<std::thread> workers;
    std::mutex mu;
    std::condition_variable start, done_cv;
    unsigned long long generation = 0;
    unsigned int active = 0, done = 0;
    const std::function<void(unsigned int)> *job = nullptr;

    void worker(unsigned int id) {
        unsigned long long seen = 0;
        for (;;) {
            const std::function<void(unsigned int)> *j;
            {
                std::unique_lock<std::mutex> lock(mu);
                start.wait(lock, [&] { return generation != seen; });
                seen = generation;
                if (id >= active) continue;
                j = job;
            }
            (*j)(id);
            std::lock_guard<std::mutex> lock(mu);
            if (++done == active) done_cv.notify_one();
        }
    }

    void run(unsigned int threads, const std::function<void(unsigned int)> &fn) {
        while (workers.size() < threads) {
            workers.emplace_back(&Pool::worker, this, (unsigned int)workers.size());
            workers.back().detach();   // they live until the process exits
        }
        std::unique_lock<std::mutex> lock(mu);
        job = &fn;
        active = threads;
        done = 0;
        generation++;
        start.notify_all();
        done_cv.wait(lock, [&] { return done == active; });
    }
};

// Never destroyed: its workers wait on its condition variables until exit.
Pool &pool = *new Pool;

}  // namespace

void run_grid(dim3 grid, dim3 block, size_t smem, const std::function<void()> &body) {
    unsigned long long threads = (unsigned long long)block.x * block.y * block.z;
    if (threads == 0 || threads > 1024 || block.x > 1024 || block.y > 1024 || block.z > 64) {
        fail(cudaErrorInvalidConfiguration, "launch: bad block shape");
        return;
    }
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
        fail(cudaErrorInvalidConfiguration, "launch: bad grid shape");
        return;
    }
    if (smem > 48 * 1024) {   // above the default limit without cudaFuncSetAttribute
        fail(cudaErrorInvalidValue, "launch: more than 48 KiB of dynamic shared memory");
        return;
    }
    for (unsigned int bz = 0; bz < grid.z; bz++)
        for (unsigned int by = 0; by < grid.y; by++)
            for (unsigned int bx = 0; bx < grid.x; bx++) {
                std::barrier<> barrier((std::ptrdiff_t)threads);
                Block b;
                b.barrier = &barrier;
                b.shfl.assign(threads, 0.0f);
                b.smem.assign(smem ? smem : 1, 0xff);
                b.nthreads = (unsigned int)threads;
                std::function<void(unsigned int)> fn = [&](unsigned int t) {
                    block_state = &b;
                    blockDim = block;
                    gridDim = grid;
                    blockIdx = uint3{ bx, by, bz };
                    threadIdx = uint3{ t % block.x, (t / block.x) % block.y, t / (block.x * block.y) };
                    body();
                    barrier.arrive_and_drop();   // an exited thread no longer holds __syncthreads up
                };
                pool.run((unsigned int)threads, fn);
            }
}

}  // namespace sim

// ---- runtime ---------------------------------------------------------------------------
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaGetLastError(void) { cudaError_t e = last_error; last_error = cudaSuccess; return e; }
const char *cudaGetErrorString(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    default: return "unknown error";
    }
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);   // garbage, as fresh device memory is
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaMemset(void *p, int v, size_t bytes) { memset(p, v, bytes); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void *p, int v, size_t bytes, cudaStream_t) { memset(p, v, bytes); return cudaSuccess; }
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind) { memmove(dst, src, bytes); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind, cudaStream_t) {
    memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int) { *s = (cudaStream_t) new char; return cudaSuccess; }
cudaError_t cudaStreamCreate(cudaStream_t *s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned int) {
    *p = malloc(bytes ? bytes : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    memset(*p, 0xff, bytes);   // garbage, as fresh pinned memory may be
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }

struct SimEvent { int recorded; };
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int) { *e = new SimEvent{ 0 }; return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
    if (!e) return fail(cudaErrorInvalidValue, "cudaEventRecord: no event");
    e->recorded = 1;
    return cudaSuccess;
}
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t e, unsigned int) {
    return e ? cudaSuccess : fail(cudaErrorInvalidValue, "cudaStreamWaitEvent: no event");
}
cudaError_t cudaEventSynchronize(cudaEvent_t e) {
    return e ? cudaSuccess : fail(cudaErrorInvalidValue, "cudaEventSynchronize: no event");
}

// ---- cuBLAS: a reference column-major gemm with cuBLAS's argument checks -----------------
struct SimCublas { int math; };

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = new SimCublas{ 0 }; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { delete h; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t) { return h ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED; }
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) { h->math = (int)m; return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS"
         : s == CUBLAS_STATUS_INVALID_VALUE ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_NOT_INITIALIZED";
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                                         const float *alpha, const float *A, int lda, long long strideA,
                                         const float *B, int ldb, long long strideB, const float *beta,
                                         float *C, int ldc, long long strideC, int batch) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    int rows_a = ta == CUBLAS_OP_N ? m : k, rows_b = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || batch < 0 || lda < std::max(1, rows_a) || ldb < std::max(1, rows_b) ||
        ldc < std::max(1, m) || (ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T)) {
        fprintf(stderr, "cuda_sim: cublasSgemm: invalid m=%d n=%d k=%d lda=%d ldb=%d ldc=%d\n", m, n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    for (int bi = 0; bi < batch; bi++) {
        const float *a = A + bi * strideA, *b = B + bi * strideB;
        float *c = C + bi * strideC;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int l = 0; l < k; l++) {
                    float av = ta == CUBLAS_OP_N ? a[i + (size_t)l * lda] : a[l + (size_t)i * lda];
                    float bv = tb == CUBLAS_OP_N ? b[l + (size_t)j * ldb] : b[j + (size_t)l * ldb];
                    s += (double)av * bv;
                }
                float *cij = c + i + (size_t)j * ldc;
                // beta == 0: C is output only (it may hold garbage or NaN), as in cuBLAS.
                *cij = (float)(*alpha * s + (*beta == 0.0f ? 0.0 : (double)*beta * *cij));
            }
    }
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                           const float *alpha, const float *A, int lda, const float *B, int ldb,
                           const float *beta, float *C, int ldc) {
    return cublasSgemmStridedBatched(h, ta, tb, m, n, k, alpha, A, lda, 0, B, ldb, 0, beta, C, ldc, 0, 1);
}
