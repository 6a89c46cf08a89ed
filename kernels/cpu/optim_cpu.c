// optim_cpu.c: the optimizer's pass on the CPU (see optim_cpu.h).
#include "kernels/cpu/optim_cpu.h"
#include <math.h>
#include <omp.h>
#include "autograd/graph.h"    // defines: REDUCE_CHUNK
#include "kernels/cpu/vec.h"   // defines: f32x8, v8_*, VEC_CLONES

// Below this many floats the update runs on one thread.
#define ADAMW_PARALLEL_MIN 16384

void grad_sumsq_partials_cpu(const float *x, size_t n, double *partial) {
    size_t chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    #pragma omp parallel for
    for (size_t c = 0; c < chunks; c++) {
        size_t a = c * REDUCE_CHUNK, b = a + REDUCE_CHUNK < n ? a + REDUCE_CHUNK : n;
        double s = 0;
        for (size_t i = a; i < b; i++) s += (double)x[i] * x[i];
        partial[c] = s;
    }
}

// The scalars every element's update uses, formed once per step.
typedef struct AdamWRule {
    float beta1, beta2, eps, lr, scale, bc1, bc2;
} AdamWRule;

// AdamW on one run of n floats with one decay, the CUDA kernel's
// adamw_rule lane by lane (the same operations in the same order; the
// tail is a zero-padded vector, so an element's bits do not depend on
// where it falls).
VEC_CLONES static void adamw_run(float *p, const float *gr, float *m, float *v, ptrdiff_t n, const AdamWRule *r,
                                 float decay) {
    f32x8 b1 = v8_set1(r->beta1), b2 = v8_set1(r->beta2), c1 = v8_set1(1.0f - r->beta1), c2 = v8_set1(1.0f - r->beta2);
    f32x8 eps = v8_set1(r->eps), lr = v8_set1(r->lr), scale = v8_set1(r->scale), wd = v8_set1(decay);
    f32x8 bc1 = v8_set1(r->bc1), bc2 = v8_set1(r->bc2);
    for (ptrdiff_t i = 0; i < n; i += 8) {
        ptrdiff_t k = n - i < 8 ? n - i : 8;
        f32x8 g = v8_load_k(gr + i, k) * scale, pv = v8_load_k(p + i, k);
        f32x8 mv = b1 * v8_load_k(m + i, k) + c1 * g;
        f32x8 vv = b2 * v8_load_k(v + i, k) + c2 * g * g;
        pv -= lr * ((mv / bc1) / (v8_sqrt(vv / bc2) + eps) + wd * pv);
        v8_store_k(p + i, pv, k);
        v8_store_k(m + i, mv, k);
        v8_store_k(v + i, vv, k);
    }
}

void adamw_flat_cpu(float *p, const float *g, float *m, float *v, size_t n, const AdamWSpan *spans, int n_spans,
                    const double *partial, size_t chunks, float beta1, float beta2, float eps, float weight_decay,
                    AdamWStep *step) {
    double sumsq = 0;
    for (size_t c = 0; c < chunks; c++) sumsq += partial[c];   // in order, as every CUDA block does
    float max_norm = step->max_norm, grad_div = step->grad_div;
    double norm = sqrt(sumsq) / grad_div;
    int apply = step->loss_finite && isfinite(norm);
    float clip = max_norm > 0 && norm > max_norm ? (float)(max_norm / (norm + 1e-6)) : 1.0f;
    step->norm = apply ? norm : NAN;
    step->applied = apply;
    if (!apply) return;   // a skipped step touches no weight and no moment
    AdamWRule rule = { beta1, beta2, eps, step->lr, clip / grad_div, step->bc1, step->bc2 };
    // One region: each thread takes a contiguous, 16-float-aligned share of
    // [0, n) and walks the spans that cross it.
    #pragma omp parallel if (n >= ADAMW_PARALLEL_MIN)
    {
        size_t nt = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
        size_t per = ((n + nt - 1) / nt + 15) & ~(size_t)15;
        size_t lo = t * per < n ? t * per : n, hi = lo + per < n ? lo + per : n;
        for (int s = 0; s < n_spans && lo < hi; s++) {
            if (spans[s].hi <= lo || spans[s].lo >= hi) continue;
            size_t a = spans[s].lo > lo ? spans[s].lo : lo, b = spans[s].hi < hi ? spans[s].hi : hi;
            adamw_run(p + a, g + a, m + a, v + a, (ptrdiff_t)(b - a), &rule, spans[s].decay ? weight_decay : 0.0f);
        }
    }
}

void step_losses_cpu(StepLosses l, AdamWStep *step) {
    for (int k = 0; k < STEP_LOSSES; k++) {
        if (!l.x[k]) continue;
        float x = *l.x[k];
        step->losses[k] += x;
        if (k == 0 && !isfinite(x)) step->loss_finite = 0;
    }
}
