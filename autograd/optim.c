// optim.c: AdamW, clipping and the schedule (see optim.h).
#include "autograd/optim.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "kernels/backend.h"   // defines: backend_alloc, backend_free
#ifdef DISTIL_CUDA
#include "kernels/cuda/optim_cuda.h"   // defines: adamw_update_cuda, grad_sumsq_partials_cuda
#endif

int adamw_init_range(AdamW *opt, const Graph *g, AdamWConfig cfg, size_t lo, size_t hi) {
    opt->cfg = cfg;
    opt->lo = lo;
    opt->n = hi - lo;
    opt->step = 0;
    opt->device = g->device;
    opt->m = backend_alloc(g->device, (opt->n ? opt->n : 1) * sizeof(float));
    opt->v = backend_alloc(g->device, (opt->n ? opt->n : 1) * sizeof(float));
    if (!opt->m || !opt->v) {
        fprintf(stderr, "distil: error: cannot allocate %zu bytes of optimizer state\n", 2 * opt->n * sizeof(float));
        return -1;
    }
    return 0;
}

int adamw_init(AdamW *opt, const Graph *g, AdamWConfig cfg) {
    return adamw_init_range(opt, g, cfg, 0, g->grad_numel);
}

void adamw_free(AdamW *opt) {
    backend_free(opt->device, opt->m);
    backend_free(opt->device, opt->v);
    opt->m = opt->v = NULL;
}

// The AdamW rule on one contiguous run: params p, grads gr, moments m, v.
static void adamw_run_cpu(float *p, const float *gr, float *m, float *v, size_t n, const AdamWConfig *c,
                          float lr, float grad_scale, float decay, float bc1, float bc2) {
    #pragma omp parallel for if (n > 16384)
    for (size_t i = 0; i < n; i++) {
        float grad = gr[i] * grad_scale;
        m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * grad;
        v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * grad * grad;
        float mhat = m[i] / bc1, vhat = v[i] / bc2;
        p[i] -= lr * (mhat / (sqrtf(vhat) + c->eps) + decay * p[i]);
    }
}

void adamw_step(AdamW *opt, Graph *g, float lr, float grad_scale) {
    opt->step++;
    float bc1 = 1.0f - powf(opt->cfg.beta1, (float)opt->step);
    float bc2 = 1.0f - powf(opt->cfg.beta2, (float)opt->step);
    size_t lo = opt->lo, hi = opt->lo + opt->n;
    // One contiguous pass over [lo, hi), cut only where the decay flag changes.
    for (int i = 0; i < g->n_decay_spans; i++) {
        const DecaySpan *s = &g->decay_spans[i];
        if (s->hi <= lo || s->lo >= hi) continue;
        size_t a = s->lo > lo ? s->lo : lo, b = s->hi < hi ? s->hi : hi;
        float decay = s->decay ? opt->cfg.weight_decay : 0.0f;
#ifdef DISTIL_CUDA
        if (opt->device == DEV_CUDA) {
            adamw_update_cuda(g->param_mem + a, g->grad_mem + a, opt->m + (a - lo), opt->v + (a - lo), b - a,
                              opt->cfg.beta1, opt->cfg.beta2, opt->cfg.eps, lr, grad_scale, decay, bc1, bc2);
            continue;
        }
#endif
        adamw_run_cpu(g->param_mem + a, g->grad_mem + a, opt->m + (a - lo), opt->v + (a - lo), b - a, &opt->cfg, lr,
                      grad_scale, decay, bc1, bc2);
    }
}

double grad_sumsq_range(const Graph *g, size_t lo, size_t hi) {
    // One partial sum per REDUCE_CHUNK floats, added in order: the result
    // does not depend on the thread count or the scheduling.
    size_t n = hi > lo ? hi - lo : 0, chunks = (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
    const float *x = g->grad_mem + lo;
#ifdef DISTIL_CUDA
    if (g->device == DEV_CUDA) {
        grad_sumsq_partials_cuda(x, n, g->reduce_dev);
        backend_to_host(DEV_CUDA, g->reduce_host, g->reduce_dev, chunks * sizeof(double));
    } else
#endif
    {
        #pragma omp parallel for
        for (size_t c = 0; c < chunks; c++) {
            size_t a = c * REDUCE_CHUNK, b = a + REDUCE_CHUNK < n ? a + REDUCE_CHUNK : n;
            double s = 0;
            for (size_t i = a; i < b; i++) s += (double)x[i] * x[i];
            g->reduce_host[c] = s;
        }
    }
    double total = 0;
    for (size_t c = 0; c < chunks; c++) total += g->reduce_host[c];
    return total;
}

double grad_global_norm(const Graph *g) {
    return sqrt(grad_sumsq_range(g, 0, g->grad_numel));
}

float grad_clip_scale(double norm, float max_norm) {
    if (max_norm <= 0 || !(norm > max_norm)) return 1.0f;
    return (float)(max_norm / (norm + 1e-6));
}

float lr_schedule(long step, long warmup, long total, float lr_max, float lr_min) {
    if (warmup > 0 && step < warmup) return lr_max * (float)(step + 1) / (float)warmup;
    if (step >= total) return lr_min;
    double progress = (double)(step - warmup) / (double)(total - warmup > 0 ? total - warmup : 1);
    return lr_min + (lr_max - lr_min) * 0.5f * (float)(1.0 + cos(M_PI * progress));
}
