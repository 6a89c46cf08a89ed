// optim.c: AdamW, clipping and the schedule (see optim.h). The passes
// themselves are kernels: kernels/cpu/optim_cpu.c and its CUDA twin.
#include "autograd/optim.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "kernels/backend.h"           // defines: backend_alloc, backend_free, backend_from_host, backend_to_host
#include "kernels/cpu/optim_cpu.h"     // defines: adamw_flat_cpu, grad_sumsq_partials_cpu, step_losses_cpu
#ifdef DISTIL_CUDA
#include "kernels/cuda/optim_cuda.h"   // defines: adamw_flat_cuda, grad_sumsq_partials_cuda, step_losses_cuda
#endif

// The graph's decay spans that meet [lo, hi), clipped and shifted to start
// at 0 (what the pass walks), in host memory; NULL on failure.
static AdamWSpan *range_spans(const Graph *g, size_t lo, size_t hi, int *n) {
    AdamWSpan *sp = malloc(((size_t)g->n_decay_spans + 1) * sizeof *sp);
    if (!sp) return NULL;
    *n = 0;
    for (int i = 0; i < g->n_decay_spans; i++) {
        const DecaySpan *s = &g->decay_spans[i];
        if (s->hi <= lo || s->lo >= hi) continue;
        size_t a = s->lo > lo ? s->lo : lo, b = s->hi < hi ? s->hi : hi;
        sp[(*n)++] = (AdamWSpan){ a - lo, b - lo, s->decay };
    }
    // An empty range still has one span, so the CUDA kernel's span search has one to land on.
    if (*n == 0) sp[(*n)++] = (AdamWSpan){ 0, 0, 0 };
    return sp;
}

int adamw_init_range(AdamW *opt, const Graph *g, AdamWConfig cfg, size_t lo, size_t hi) {
    memset(opt, 0, sizeof *opt);
    opt->cfg = cfg;
    opt->lo = lo;
    opt->n = hi - lo;
    opt->device = g->device;
    opt->m = backend_alloc(g->device, (opt->n ? opt->n : 1) * sizeof(float));
    opt->v = backend_alloc(g->device, (opt->n ? opt->n : 1) * sizeof(float));
    AdamWSpan *spans = range_spans(g, lo, hi, &opt->n_spans);
    opt->spans = spans ? backend_alloc(g->device, (size_t)opt->n_spans * sizeof *spans) : NULL;
    opt->step_dev = backend_alloc(g->device, sizeof(AdamWStep));
    if (!opt->m || !opt->v || !opt->spans || !opt->step_dev) {
        fprintf(stderr, "distil: error: cannot allocate %zu bytes of optimizer state\n", 2 * opt->n * sizeof(float));
        free(spans);
        return -1;
    }
    backend_from_host(g->device, opt->spans, spans, (size_t)opt->n_spans * sizeof *spans);
    free(spans);
    return 0;
}

int adamw_init(AdamW *opt, const Graph *g, AdamWConfig cfg) {
    return adamw_init_range(opt, g, cfg, 0, g->grad_numel);
}

void adamw_free(AdamW *opt) {
    backend_free(opt->device, opt->m);
    backend_free(opt->device, opt->v);
    backend_free(opt->device, opt->spans);
    backend_free(opt->device, opt->step_dev);
    opt->m = opt->v = NULL;
    opt->spans = NULL;
    opt->step_dev = NULL;
}

void adamw_begin(AdamW *opt, float lr, float max_norm) {
    long t = opt->step + 1;   // the update this step would be
    AdamWStep st = { 0 };
    st.lr = lr;
    st.bc1 = 1.0f - powf(opt->cfg.beta1, (float)t);
    st.bc2 = 1.0f - powf(opt->cfg.beta2, (float)t);
    st.max_norm = max_norm;
    st.grad_div = 1.0f;
    st.loss_finite = 1;
    backend_from_host(opt->device, opt->step_dev, &st, sizeof st);
}

void adamw_add_losses(AdamW *opt, StepLosses l) {
#ifdef DISTIL_CUDA
    if (opt->device == DEV_CUDA) { step_losses_cuda(l, opt->step_dev); return; }
#endif
    step_losses_cpu(l, opt->step_dev);
}

size_t grad_sumsq_partials(const Graph *g, size_t lo, size_t hi) {
    size_t n = hi > lo ? hi - lo : 0;
#ifdef DISTIL_CUDA
    if (g->device == DEV_CUDA) grad_sumsq_partials_cuda(g->grad_mem + lo, n, g->reduce_dev);
    else
#endif
        grad_sumsq_partials_cpu(g->grad_mem + lo, n, g->reduce_dev);
    return (n + REDUCE_CHUNK - 1) / REDUCE_CHUNK;
}

void adamw_update(AdamW *opt, Graph *g, const double *partial, size_t chunks) {
    size_t lo = opt->lo;
    const AdamWConfig *c = &opt->cfg;
#ifdef DISTIL_CUDA
    if (opt->device == DEV_CUDA) {
        adamw_flat_cuda(g->param_mem + lo, g->grad_mem + lo, opt->m, opt->v, opt->n, opt->spans, opt->n_spans, partial,
                        chunks, c->beta1, c->beta2, c->eps, c->weight_decay, opt->step_dev);
        return;
    }
#endif
    adamw_flat_cpu(g->param_mem + lo, g->grad_mem + lo, opt->m, opt->v, opt->n, opt->spans, opt->n_spans, partial, chunks,
                   c->beta1, c->beta2, c->eps, c->weight_decay, opt->step_dev);
}

void adamw_update_sumsq(AdamW *opt, Graph *g, double sumsq) {
    backend_from_host(g->device, g->reduce_dev, &sumsq, sizeof sumsq);
    adamw_update(opt, g, g->reduce_dev, 1);
}

void adamw_peek(const AdamW *opt, AdamWStep *out) {
    backend_to_host(opt->device, out, opt->step_dev, sizeof *out);
}

void adamw_end(AdamW *opt, AdamWStep *out) {
    adamw_peek(opt, out);
    if (out->applied) opt->step++;
}

int adamw_step(AdamW *opt, Graph *g, float lr, float max_norm) {
    adamw_begin(opt, lr, max_norm);
    size_t chunks = grad_sumsq_partials(g, opt->lo, opt->lo + opt->n);
    adamw_update(opt, g, g->reduce_dev, chunks);
    AdamWStep out;
    adamw_end(opt, &out);
    return out.applied;
}

double grad_sumsq_range(const Graph *g, size_t lo, size_t hi) {
    // One partial sum per REDUCE_CHUNK floats, added in order: the result
    // does not depend on the thread count or the scheduling.
    size_t chunks = grad_sumsq_partials(g, lo, hi);
    backend_to_host(g->device, g->reduce_host, g->reduce_dev, chunks * sizeof(double));
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
