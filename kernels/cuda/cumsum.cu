// cumsum.cu: inclusive cumulative sum along one axis, the twin of
// kernels/cpu/cumsum.c. Around the axis x is (outer, n, inner); each
// (outer, inner) line is one sequential scan by one thread, carried in
// double as on the CPU (so long lines do not drift, and the two agree to
// the final rounding). Backward is the reverse scan: dx[j] += sum_{i >= j} dy[i].
// Adjacent threads take adjacent inner positions, so loads are coalesced
// whenever inner > 1; a line's (outer, inner) position is a multiply-high
// (DivMod32), not a division.
#include "kernels/cuda/cuda_ops.h"
#include "kernels/cuda/grad.cuh"          // defines: cuda_grads_begin, cuda_grad_beta
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, CUDA_GRID_STRIDE
#include "kernels/cuda/vec.cuh"           // defines: DivMod32, divmod32, cuda_grid_for_items

namespace {

__global__ void __launch_bounds__(CUDA_BLOCK) cumsum_forward_kernel(float *y, const float *x, size_t lines, size_t n, DivMod32 inner) {
    CUDA_GRID_STRIDE(line, lines) {
        size_t o = inner.div((uint32_t)line), k = line - o * inner.d;
        double run = 0;
        for (size_t j = 0; j < n; j++) {
            size_t at = (o * n + j) * inner.d + k;
            run += x[at];
            y[at] = (float)run;
        }
    }
}

__global__ void __launch_bounds__(CUDA_BLOCK) cumsum_backward_kernel(float *dx, const float *dy, size_t lines, size_t n, DivMod32 inner) {
    CUDA_GRID_STRIDE(line, lines) {
        size_t o = inner.div((uint32_t)line), k = line - o * inner.d;
        double run = 0;
        for (size_t j = n; j-- > 0;) {
            size_t at = (o * n + j) * inner.d + k;
            run += dy[at];
            dx[at] += (float)run;
        }
    }
}

// x viewed as (outer, n, inner) around the scanned axis.
void cumsum_split(const Tensor *x, int axis, size_t *outer, size_t *n, size_t *inner) {
    size_t o = 1, in = 1;
    for (int d = 0; d < axis; d++) o *= (size_t)x->shape[d];
    for (int d = axis + 1; d < x->ndim; d++) in *= (size_t)x->shape[d];
    *outer = o;
    *n = (size_t)x->shape[axis];
    *inner = in;
}

}  // namespace

extern "C" void cumsum_forward_cuda(Tensor *out) {
    size_t outer, n, inner;
    cumsum_split(out->src[0], out->iattr[0], &outer, &n, &inner);
    size_t lines = outer * inner;
    cuda_check_index32(lines * n, "cumsum");
    cumsum_forward_kernel<<<cuda_grid_for_items(lines), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        (float *)out->data, (const float *)out->src[0]->data, lines, n, divmod32((uint32_t)inner));   // (outer, n, inner) both
    CUDA_CHECK_LAUNCH();
}

extern "C" void cumsum_backward_cuda(Tensor *out) {
    cuda_grads_begin(out, 0u);   // the assign/accumulate contract (grad.cuh)
    Tensor *x = out->src[0];
    if (!x->grad) return;
    size_t outer, n, inner;
    cumsum_split(x, out->iattr[0], &outer, &n, &inner);
    size_t lines = outer * inner;
    cuda_check_index32(lines * n, "cumsum");
    cumsum_backward_kernel<<<cuda_grid_for_items(lines), CUDA_BLOCK, 0, cuda_compute_stream()>>>(
        x->grad, out->grad, lines, n, divmod32((uint32_t)inner));
    CUDA_CHECK_LAUNCH();
}
