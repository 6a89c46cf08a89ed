// embedding.cu: rows of a table looked up by id, the twin of
// kernels/cpu/embedding.c. ids i32 (N), table (V, D) -> (N, D). An id
// outside [0, V) gives a zero row and no gradient.
//
// Backward scatter-adds dy rows into the table without atomics: thread
// (column d, vocab slice s) walks every id in order and adds the rows whose
// id falls in its slice. Each table float has exactly one owner thread and
// receives its contributions in id order, the CPU's order, so the result is
// deterministic (bitwise the CPU's, up to FMA contraction: it is a plain
// sum). The slices only add parallelism: every thread reads all N ids (a
// warp reads the same id, one broadcast load), but only its own dy columns.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE

// Vocabulary slices of the backward grid: enough blocks to fill a GPU when
// D is small, few enough that re-reading the ids stays cheap.
#define EMBED_SLICES 64
#define EMBED_COLS 128   // threads per block, one table column each

namespace {

__global__ void embedding_forward_kernel(float *y, const int *ids, const float *table, size_t total, int V, int D) {
    CUDA_GRID_STRIDE(i, total) {
        size_t n = i / D, d = i % D;
        int id = ids[n];
        y[i] = (id >= 0 && id < V) ? table[(size_t)id * D + d] : 0.0f;
    }
}

// Block (column tile, slice): slice s owns ids [s * per_slice, (s+1) * per_slice).
__global__ void embedding_backward_kernel(float *dtable, const int *ids, const float *dy, size_t N, int V, int D,
                                          int per_slice) {
    int d = blockIdx.x * EMBED_COLS + threadIdx.x;
    if (d >= D) return;
    int lo = blockIdx.y * per_slice, hi = min(lo + per_slice, V);
    for (size_t n = 0; n < N; n++) {
        int id = ids[n];
        if (id < lo || id >= hi) continue;   // another slice's row, or outside [0, V)
        dtable[(size_t)id * D + d] += dy[n * D + d];
    }
}

}  // namespace

extern "C" void embedding_forward_cuda(Tensor *out) {
    const Tensor *ids = out->src[0], *table = out->src[1];
    int V = table->shape[0], D = table->shape[1];
    embedding_forward_kernel<<<cuda_grid_for(out->numel), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data,            // (N, D)
        (const int *)ids->data,        // (N)
        (const float *)table->data,    // (V, D)
        out->numel, V, D);
    CUDA_CHECK_LAUNCH();
}

extern "C" void embedding_backward_cuda(Tensor *out) {
    const Tensor *ids = out->src[0];
    Tensor *table = out->src[1];
    if (!table->grad) return;   // ids are integers: no grad
    int V = table->shape[0], D = table->shape[1];
    int slices = V < EMBED_SLICES ? V : EMBED_SLICES;
    int per_slice = (V + slices - 1) / slices;
    dim3 grid((unsigned int)((D + EMBED_COLS - 1) / EMBED_COLS), (unsigned int)slices);
    embedding_backward_kernel<<<grid, EMBED_COLS, 0, cuda_compute_stream()>>>(
        table->grad,                   // (V, D)
        (const int *)ids->data,        // (N)
        out->grad,                     // (N, D)
        ids->numel, V, D, per_slice);
    CUDA_CHECK_LAUNCH();
}
