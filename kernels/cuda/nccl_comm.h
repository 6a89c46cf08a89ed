// nccl_comm.h: NCCL under the gradient all-reduce on GPUs
// (kernels/cuda/nccl_comm.cu): the communicator, bootstrapped from a unique
// id that rank 0 makes and broadcasts over MPI, and the collectives
// train/dist/grad_sync.c queues on the CUDA context's communication stream.
//
// Every call below queues work on cuda_comm_stream() and returns at once;
// nccl_query says when it has all finished. nccl_after_compute orders the
// stream after what the compute stream holds so far (the gradients backward
// has just produced), with an event rather than a device-wide sync.
#pragma once
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif

#define NCCL_ID_BYTES 128   // NCCL_UNIQUE_ID_BYTES, checked in the .cu

typedef struct NcclComm NcclComm;

// cudaSetDevice for this process (the GPU of its local rank); before any
// CUDA context exists.
void nccl_bind_device(int device);
// Rank 0: a fresh unique id to broadcast. 0, or -1 with err set.
int nccl_make_id(void *id, char *err, size_t errlen);
// Joins the communicator of `world` ranks; blocks until every rank has.
// NULL with err set.
NcclComm *nccl_comm_new(const void *id, int rank, int world, char *err, size_t errlen);
void nccl_comm_free(NcclComm *c);
// Abort in-flight operations (a peer failed); the communicator is unusable after.
void nccl_comm_abort(NcclComm *c);

// The communication stream waits for the compute stream's work so far.
void nccl_after_compute(NcclComm *c);
// bf16 wire conversions (round to nearest even, as autograd/tensor.h's f32_to_bf16).
void nccl_to_bf16(NcclComm *c, uint16_t *dst, const float *src, size_t n);
void nccl_from_bf16(NcclComm *c, float *dst, const uint16_t *src, size_t n);
// In-place sums over the ranks of n elements (fp32, or bf16 when bf16 = 1).
void nccl_allreduce(NcclComm *c, void *buf, size_t n, int bf16);
// In-place sum into rank `root` only: one rank's piece of an uneven
// reduce-scatter (NCCL's own ReduceScatter needs equal pieces). Group the
// pieces of one bucket between nccl_group_begin and nccl_group_end.
void nccl_reduce(NcclComm *c, void *buf, size_t n, int bf16, int root);
// Rank `root`'s n floats to every rank, in place: one piece of an uneven all-gather.
void nccl_broadcast(NcclComm *c, float *buf, size_t n, int root);
void nccl_group_begin(void);
void nccl_group_end(void);
// 1: everything queued has finished; 0: still running; -1: NCCL reported an
// asynchronous error (a peer failed), described in err.
int nccl_query(NcclComm *c, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
