// embedding.cu: rows of a table looked up by id, the twin of
// kernels/cpu/embedding.c. ids i32 (N), table (V, D) -> (N, D). An id
// outside [0, V) gives a zero row and no gradient.
//
// Forward: a row gather, flat over the N * D outputs in 128-bit packs when
// D is a multiple of 4 (a pack never straddles two rows), the row by a
// multiply-high (DivMod32), not a division.
//
// Backward scatter-adds dy rows into the table without atomics: thread
// (column pack d, vocab slice s) walks every id in order and adds the rows
// whose id falls in its slice. Each table float has exactly one owner
// thread and receives its contributions in id order, the CPU's order, so
// the result is deterministic (bitwise the CPU's, up to FMA contraction: it
// is a plain sum). The slices only add parallelism: every thread reads all
// N ids (a warp reads the same id, one broadcast load), but only its own dy
// columns, 4 at a time when D allows.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH
#include "kernels/cuda/vec.cuh"           // defines: Vec, DivMod32, cuda_grid_for_items

// Vocabulary slices of the backward grid: enough blocks to fill a GPU when
// D is small, few enough that re-reading the ids stays cheap.
#define EMBED_SLICES 64
#define EMBED_COLS 128   // threads per backward block, one column pack each

namespace {

// y (N, D) = table[ids] (zero rows for ids outside [0, V)), W floats per access.
template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) embedding_forward_kernel(float *y, const int *ids, const float *table,
                                                                       uint32_t vecs, DivMod32 row_vecs, int V) {
    using Vf = Vec<float, W>;
    for (uint32_t p = blockIdx.x * blockDim.x + threadIdx.x; p < vecs; p += gridDim.x * blockDim.x) {
        uint32_t n = row_vecs.div(p), c = p - n * row_vecs.d;
        int id = ids[n];
        Vf v = {};
        if (id >= 0 && id < V) v = load_vec<Vf>(table, (size_t)id * row_vecs.d + c);
        store_vec<Vf>(y, p, v);
    }
}

// Block (column tile, slice): slice s owns ids [s * per_slice, (s+1) * per_slice).
template <int W>
__global__ void __launch_bounds__(EMBED_COLS) embedding_backward_kernel(float *dtable, const int *ids, const float *dy,
                                                                        size_t N, int V, int D, int per_slice) {
    using Vf = Vec<float, W>;
    int c = blockIdx.x * EMBED_COLS + threadIdx.x;   // column pack
    if (c >= D / W) return;
    int lo = blockIdx.y * per_slice, hi = min(lo + per_slice, V);
    size_t row_vecs = (size_t)(D / W);
    for (size_t n = 0; n < N; n++) {
        int id = ids[n];
        if (id < lo || id >= hi) continue;   // another slice's row, or outside [0, V)
        Vf t = load_vec<Vf>(dtable, (size_t)id * row_vecs + c), g = load_vec<Vf>(dy, n * row_vecs + c);
        for (int j = 0; j < W; j++) t[j] += g[j];
        store_vec<Vf>(dtable, (size_t)id * row_vecs + c, t);
    }
}

}  // namespace

extern "C" void embedding_forward_cuda(Tensor *out) {
    const Tensor *ids = out->src[0], *table = out->src[1];
    int V = table->shape[0], D = table->shape[1];
    cuda_check_index32(out->numel, "embedding");
    float *y = (float *)out->data;                    // (N, D)
    const int *id = (const int *)ids->data;           // (N)
    const float *tab = (const float *)table->data;    // (V, D)
    cudaStream_t s = cuda_compute_stream();
    if (D % 4 == 0 && cuda_aligned16(y) && cuda_aligned16(tab)) {
        uint32_t vecs = (uint32_t)(out->numel / 4);
        embedding_forward_kernel<4><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(y, id, tab, vecs, divmod32((uint32_t)D / 4), V);
    } else {
        uint32_t vecs = (uint32_t)out->numel;
        embedding_forward_kernel<1><<<cuda_grid_for_items(vecs), CUDA_BLOCK, 0, s>>>(y, id, tab, vecs, divmod32((uint32_t)D), V);
    }
    CUDA_CHECK_LAUNCH();
}

extern "C" void embedding_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    const Tensor *ids = out->src[0];
    Tensor *table = out->src[1];
    if (!table->grad) return;   // ids are integers: no grad
    int V = table->shape[0], D = table->shape[1];
    int slices = V < EMBED_SLICES ? V : EMBED_SLICES;
    int per_slice = (V + slices - 1) / slices;
    int w = D % 4 == 0 && cuda_aligned16(table->grad) && cuda_aligned16(out->grad) ? 4 : 1;
    dim3 grid((unsigned int)((D / w + EMBED_COLS - 1) / EMBED_COLS), (unsigned int)slices);
    const int *id = (const int *)ids->data;   // (N)
    cudaStream_t s = cuda_compute_stream();
    if (w == 4) embedding_backward_kernel<4><<<grid, EMBED_COLS, 0, s>>>(table->grad, id, out->grad, ids->numel, V, D, per_slice);
    else embedding_backward_kernel<1><<<grid, EMBED_COLS, 0, s>>>(table->grad, id, out->grad, ids->numel, V, D, per_slice);
    CUDA_CHECK_LAUNCH();
}
