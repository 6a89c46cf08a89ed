// optim_cuda.cu: AdamW, the gradient norm and the clip on the GPU (see
// optim_cuda.h). The sum of squares is one launch of REDUCE_CHUNK blocks
// (double, fixed trees); the update of the whole flat range is one more,
// which reads the partial sums and the step's scalars from device memory,
// so that nothing of the step needs the host.
#include "kernels/cuda/optim_cuda.h"
#include <cmath>
#include "autograd/graph.h"               // defines: REDUCE_CHUNK
#include "kernels/cuda/context.cuh"       // defines: cuda_compute_stream
#include "kernels/cuda/cuda_common.cuh"   // defines: CUDA_CHECK_LAUNCH, block_sum_f64
#include "kernels/cuda/vec.cuh"           // defines: Vec, load_vec, store_vec, cuda_grid_for_items

namespace {

__device__ __forceinline__ void adamw_rule(float &p, float g, float &m, float &v, float beta1, float beta2, float eps,
                                           float lr, float decay, float bc1, float bc2) {
    m = beta1 * m + (1.0f - beta1) * g;
    v = beta2 * v + (1.0f - beta2) * g * g;
    p -= lr * ((m / bc1) / (sqrtf(v / bc2) + eps) + decay * p);
}

// The span holding flat index i (spans sorted, covering [0, n)).
__device__ __forceinline__ int span_of(const AdamWSpan *spans, int n_spans, size_t i) {
    int lo = 0, hi = n_spans - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) >> 1;
        if (spans[mid].lo <= i) lo = mid; else hi = mid - 1;
    }
    return lo;
}

template <int W>
__global__ void __launch_bounds__(CUDA_BLOCK) adamw_flat_kernel(float *p, const float *grad, float *m, float *v, size_t n,
                                                                const AdamWSpan *spans, int n_spans,
                                                                const double *partial, size_t chunks, float beta1,
                                                                float beta2, float eps, float weight_decay, AdamWStep *step) {
    using Vf = Vec<float, W>;
    __shared__ float s_scale, s_lr, s_bc1, s_bc2;
    __shared__ int s_apply;
    if (threadIdx.x == 0) {
        double sumsq = 0;
        for (size_t c = 0; c < chunks; c++) sumsq += partial[c];   // in order: every block the same bits
        // Field by field: block 0 writes the verdict below while the
        // others read the scalars.
        float max_norm = step->max_norm, grad_div = step->grad_div;
        double norm = sqrt(sumsq) / grad_div;
        int apply = step->loss_finite && isfinite(norm);
        float clip = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
        s_scale = clip / grad_div;
        s_lr = step->lr;
        s_bc1 = step->bc1;
        s_bc2 = step->bc2;
        s_apply = apply;
        if (blockIdx.x == 0) {
            step->norm = apply ? norm : NAN;
            step->applied = apply;
        }
    }
    __syncthreads();
    if (!s_apply) return;   // uniform over the grid: a skipped step touches no weight and no moment
    float scale = s_scale, lr = s_lr, bc1 = s_bc1, bc2 = s_bc2;
    CUDA_GRID_STRIDE(q, n / W) {
        size_t i = q * W;
        int s = span_of(spans, n_spans, i);
        Vf pv = load_vec<Vf>(p, q), gv = load_vec_cs<Vf>(grad, q), mv = load_vec<Vf>(m, q), vv = load_vec<Vf>(v, q);
        for (int j = 0; j < W; j++) {
            while (i + j >= spans[s].hi) s++;   // a span may end inside a vector
            float decay = spans[s].decay ? weight_decay : 0.0f;
            adamw_rule(pv[j], gv[j] * scale, mv[j], vv[j], beta1, beta2, eps, lr, decay, bc1, bc2);
        }
        store_vec<Vf>(p, q, pv);
        store_vec<Vf>(m, q, mv);
        store_vec<Vf>(v, q, vv);
    }
}

// One block per REDUCE_CHUNK floats, each thread a strided share in
// double, combined in a fixed tree; the host or adamw_flat_kernel adds the
// chunk sums in order, so the result does not depend on scheduling.
__global__ void __launch_bounds__(CUDA_BLOCK) sumsq_kernel(const float *x, size_t n, double *partial) {
    size_t base = (size_t)blockIdx.x * REDUCE_CHUNK, end = base + REDUCE_CHUNK < n ? base + REDUCE_CHUNK : n;
    double s = 0;
    for (size_t i = base + threadIdx.x; i < end; i += blockDim.x) s += (double)x[i] * x[i];
    s = block_sum_f64(s);
    if (threadIdx.x == 0) partial[blockIdx.x] = s;
}

// One thread per loss figure: losses[k] += x[k] in double (the host's old
// accumulation, so the figures keep their bits), and the total's
// finiteness into the step's flag.
__global__ void step_losses_kernel(StepLosses l, AdamWStep *step) {
    int k = threadIdx.x;
    if (k >= STEP_LOSSES || !l.x[k]) return;
    float x = *l.x[k];
    step->losses[k] += x;
    if (k == 0 && !isfinite(x)) step->loss_finite = 0;
}

bool aligned4(const void *a, const void *b, const void *c, const void *d) {
    return cuda_aligned16(a) && cuda_aligned16(b) && cuda_aligned16(c) && cuda_aligned16(d);
}

}  // namespace

extern "C" void adamw_flat_cuda(float *p, const float *g, float *m, float *v, size_t n, const AdamWSpan *spans, int n_spans,
                                const double *partial, size_t chunks, float beta1, float beta2, float eps,
                                float weight_decay, AdamWStep *step) {
    cudaStream_t s = cuda_compute_stream();
    // n == 0 still launches: the step's norm and flag are written either way.
    if (n % 4 == 0 && aligned4(p, g, m, v))
        adamw_flat_kernel<4><<<cuda_grid_for_items(n / 4 ? n / 4 : 1), CUDA_BLOCK, 0, s>>>(
            p, g, m, v, n, spans, n_spans, partial, chunks, beta1, beta2, eps, weight_decay, step);
    else
        adamw_flat_kernel<1><<<cuda_grid_for_items(n ? n : 1), CUDA_BLOCK, 0, s>>>(
            p, g, m, v, n, spans, n_spans, partial, chunks, beta1, beta2, eps, weight_decay, step);
    CUDA_CHECK_LAUNCH();
}

extern "C" void step_losses_cuda(StepLosses l, AdamWStep *step) {
    step_losses_kernel<<<1, 32, 0, cuda_compute_stream()>>>(l, step);
    CUDA_CHECK_LAUNCH();
}

extern "C" void grad_sumsq_partials_cuda(const float *grad, size_t n, double *partial) {
    if (n == 0) return;
    unsigned blocks = (unsigned)((n + REDUCE_CHUNK - 1) / REDUCE_CHUNK);
    sumsq_kernel<<<blocks, CUDA_BLOCK, 0, cuda_compute_stream()>>>(grad, n, partial);
    CUDA_CHECK_LAUNCH();
}
