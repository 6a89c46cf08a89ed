// nccl_comm.cu: the NCCL communicator and the collectives the gradient
// all-reduce queues (see nccl_comm.h).
#include "kernels/cuda/nccl_comm.h"
#include <cstdio>
#include <cstring>
#include <nccl.h>
#include "kernels/cuda/context.cuh"       // defines: cuda_comm_stream, cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK, CUDA_CHECK_LAUNCH, cuda_grid_for

static_assert(NCCL_ID_BYTES == NCCL_UNIQUE_ID_BYTES, "NCCL_ID_BYTES must match nccl.h");

// Checks an NCCL call; on failure names it, file and line, exits 1 (the
// launcher then ends the other ranks).
#define NCCL_CHECK(call) do { \
    ncclResult_t r_ = (call); \
    if (r_ != ncclSuccess) { \
        fprintf(stderr, "distil: error: NCCL: %s failed at %s:%d: %s\n", #call, __FILE__, __LINE__, ncclGetErrorString(r_)); \
        exit(1); \
    } } while (0)

struct NcclComm {
    ncclComm_t comm;
    cudaEvent_t computed;   // recorded on the compute stream, waited on by the comm stream
};

extern "C" void nccl_bind_device(int device) { CUDA_CHECK(cudaSetDevice(device)); }

extern "C" int nccl_make_id(void *id, char *err, size_t errlen) {
    ncclUniqueId uid;
    ncclResult_t r = ncclGetUniqueId(&uid);
    if (r != ncclSuccess) { snprintf(err, errlen, "NCCL: cannot make a unique id: %s", ncclGetErrorString(r)); return -1; }
    memcpy(id, &uid, sizeof uid);
    return 0;
}

extern "C" NcclComm *nccl_comm_new(const void *id, int rank, int world, char *err, size_t errlen) {
    ncclUniqueId uid;
    memcpy(&uid, id, sizeof uid);
    NcclComm *c = new NcclComm();
    ncclResult_t r = ncclCommInitRank(&c->comm, world, uid, rank);
    if (r != ncclSuccess) {
        snprintf(err, errlen, "NCCL: rank %d of %d cannot join the communicator: %s; NCCL_DEBUG=INFO says why",
                 rank, world, ncclGetErrorString(r));
        delete c;
        return nullptr;
    }
    CUDA_CHECK(cudaEventCreateWithFlags(&c->computed, cudaEventDisableTiming));
    return c;
}

extern "C" void nccl_comm_free(NcclComm *c) {
    if (!c) return;
    CUDA_CHECK(cudaStreamSynchronize(cuda_comm_stream()));
    NCCL_CHECK(ncclCommDestroy(c->comm));
    CUDA_CHECK(cudaEventDestroy(c->computed));
    delete c;
}

extern "C" void nccl_comm_abort(NcclComm *c) {
    if (c) ncclCommAbort(c->comm);
}

extern "C" void nccl_after_compute(NcclComm *c) {
    CUDA_CHECK(cudaEventRecord(c->computed, cuda_compute_stream()));
    CUDA_CHECK(cudaStreamWaitEvent(cuda_comm_stream(), c->computed, 0));
}

// The same rounding as autograd/tensor.h's f32_to_bf16, so the CPU and the
// GPU put the same bits on the wire.
__device__ static inline uint16_t to_bf16(float f) {
    uint32_t u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

__global__ static void to_bf16_kernel(uint16_t *dst, const float *src, size_t n) {
    CUDA_GRID_STRIDE(i, n) dst[i] = to_bf16(src[i]);
}

__global__ static void from_bf16_kernel(float *dst, const uint16_t *src, size_t n) {
    CUDA_GRID_STRIDE(i, n) dst[i] = __uint_as_float((uint32_t)src[i] << 16);
}

extern "C" void nccl_to_bf16(NcclComm *c, uint16_t *dst, const float *src, size_t n) {
    (void)c;
    if (n == 0) return;
    to_bf16_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_comm_stream()>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void nccl_from_bf16(NcclComm *c, float *dst, const uint16_t *src, size_t n) {
    (void)c;
    if (n == 0) return;
    from_bf16_kernel<<<cuda_grid_for(n), CUDA_BLOCK, 0, cuda_comm_stream()>>>(dst, src, n);
    CUDA_CHECK_LAUNCH();
}

extern "C" void nccl_allreduce(NcclComm *c, void *buf, size_t n, int bf16) {
    NCCL_CHECK(ncclAllReduce(buf, buf, n, bf16 ? ncclBfloat16 : ncclFloat32, ncclSum, c->comm, cuda_comm_stream()));
}

extern "C" void nccl_reduce(NcclComm *c, void *buf, size_t n, int bf16, int root) {
    NCCL_CHECK(ncclReduce(buf, buf, n, bf16 ? ncclBfloat16 : ncclFloat32, ncclSum, root, c->comm, cuda_comm_stream()));
}

extern "C" void nccl_broadcast(NcclComm *c, float *buf, size_t n, int root) {
    NCCL_CHECK(ncclBroadcast(buf, buf, n, ncclFloat32, root, c->comm, cuda_comm_stream()));
}

extern "C" void nccl_group_begin(void) { NCCL_CHECK(ncclGroupStart()); }
extern "C" void nccl_group_end(void) { NCCL_CHECK(ncclGroupEnd()); }

extern "C" int nccl_query(NcclComm *c, char *err, size_t errlen) {
    cudaError_t q = cudaStreamQuery(cuda_comm_stream());
    if (q == cudaSuccess) return 1;
    if (q != cudaErrorNotReady) {
        snprintf(err, errlen, "CUDA: the communication stream failed: %s", cudaGetErrorString(q));
        return -1;
    }
    ncclResult_t async = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(c->comm, &async));
    if (async != ncclSuccess && async != ncclInProgress) {
        snprintf(err, errlen, "NCCL: %s (a peer failed?)", ncclGetErrorString(async));
        return -1;
    }
    return 0;
}
