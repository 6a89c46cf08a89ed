// graph.c: recording the tape, planning its arenas, replaying it.
#include "autograd/graph.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/ops.h"       // defines: op_table, OP_*
#include "autograd/profile.h"   // defines: prof_enabled, prof_now, prof_add
#include "autograd/rng.h"       // defines: Rng, rng_normal, rng_uniform
#include "kernels/backend.h"    // defines: backend_alloc, backend_host_alloc, backend_upload, backend_to_host

#define ALIGN_BYTES 64

static void *xrealloc(void *p, size_t bytes) {
    void *q = realloc(p, bytes);
    if (!q) { fprintf(stderr, "distil: error: out of host memory (%zu bytes) while recording the graph\n", bytes); exit(2); }
    return q;
}

static size_t align_up(size_t x) { return (x + ALIGN_BYTES - 1) / ALIGN_BYTES * ALIGN_BYTES; }

Graph *graph_new(Device device) {
    Graph *g = calloc(1, sizeof *g);
    if (!g) { fprintf(stderr, "distil: error: out of host memory\n"); exit(2); }
    g->device = device;
    g->products = DT_F32;
    g->profile = prof_enabled();
    return g;
}

void graph_set_products(Graph *g, DType dt) { g->products = dt; }

void graph_free(Graph *g) {
    if (!g) return;
    for (int i = 0; i < g->n_nodes; i++) free(g->nodes[i]);
    free(g->nodes);
    free(g->params);
    free(g->flat_order);
    if (!g->param_owner) {
        backend_free(g->device, g->param_mem);
        backend_free(g->device, g->grad_mem);
        free(g->decay_spans);
    }
    backend_free(g->device, g->act_mem);
    backend_host_free(g->input_host_mem, g->input_host_pinned);
    free(g->remat);
    backend_free(g->device, g->reduce_dev);
    backend_free(g->device, g->seed_one);
    free(g->reduce_host);
    free(g);
}

static Tensor *append(Graph *g, int op) {
    if (g->planned) { fprintf(stderr, "distil: error: graph already planned; record every op before graph_plan()\n"); exit(2); }
    if (g->n_nodes == g->cap_nodes) {
        g->cap_nodes = g->cap_nodes ? 2 * g->cap_nodes : 256;
        g->nodes = xrealloc(g->nodes, g->cap_nodes * sizeof *g->nodes);
    }
    Tensor *t = calloc(1, sizeof *t);
    if (!t) { fprintf(stderr, "distil: error: out of host memory\n"); exit(2); }
    t->id = g->n_nodes;
    t->op = op;
    t->device = g->device;
    t->grad_ready_after = -1;
    g->nodes[g->n_nodes++] = t;
    return t;
}

static void set_leaf_shape(Tensor *t, const char *name, int ndim, const int *shape) {
    if (ndim < 1 || ndim > TENSOR_MAX_DIMS) { fprintf(stderr, "distil: error: tensor %s: %d dims (1..4 allowed)\n", name, ndim); exit(2); }
    t->ndim = ndim;
    for (int i = 0; i < TENSOR_MAX_DIMS; i++) t->shape[i] = i < ndim ? shape[i] : 1;
    t->numel = shape_numel(ndim, shape);
    snprintf(t->name, sizeof t->name, "%s", name);
}

Tensor *graph_input(Graph *g, const char *name, DType dt, int ndim, const int *shape) {
    Tensor *t = append(g, OP_INPUT);
    set_leaf_shape(t, name, ndim, shape);
    t->dtype = dt;
    return t;
}

Tensor *graph_param(Graph *g, const char *name, int ndim, const int *shape, InitKind init, float init_scale, int decay) {
    Tensor *t = append(g, OP_PARAM);
    set_leaf_shape(t, name, ndim, shape);
    t->dtype = DT_F32;
    t->requires_grad = 1;
    t->init = init;
    t->init_scale = init_scale;
    t->decay = decay;
    if (g->n_params == g->cap_params) {
        g->cap_params = g->cap_params ? 2 * g->cap_params : 64;
        g->params = xrealloc(g->params, g->cap_params * sizeof *g->params);
    }
    g->params[g->n_params++] = t;
    return t;
}

Tensor *graph_find_param(Graph *g, const char *name) {
    for (int i = 0; i < g->n_params; i++)
        if (strcmp(g->params[i]->name, name) == 0) return g->params[i];
    return NULL;
}

void graph_freeze(Tensor *param) { param->requires_grad = 0; }

void graph_keep(Tensor *t) { t->keep = 1; }

Tensor *graph_node(Graph *g, int op, Tensor **src, int nsrc) {
    Tensor *t = append(g, op);
    t->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++) {
        t->src[i] = src[i];
        if (src[i]->requires_grad) t->requires_grad = 1;
    }
    snprintf(t->name, sizeof t->name, "%s_%d", op_name(op), t->id);
    return t;
}

int graph_share_params(Graph *g, Graph *owner) {
    if (g->n_params != owner->n_params) {
        fprintf(stderr, "distil: error: graph has %d parameters, the graph to share with has %d\n", g->n_params, owner->n_params);
        return -1;
    }
    for (int i = 0; i < g->n_params; i++) {
        Tensor *a = g->params[i], *b = owner->params[i];
        if (strcmp(a->name, b->name) != 0 || !tensor_same_shape(a, b)) {
            fprintf(stderr, "distil: error: parameter %d is %s here and %s in the graph to share with\n", i, a->name, b->name);
            return -1;
        }
    }
    g->param_owner = owner;
    return 0;
}

// The tape index whose backward completes each parameter's gradient: the
// earliest consumer, since backward walks the tape in reverse.
static void find_grad_ready(Graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        for (int s = 0; s < t->nsrc; s++) {
            Tensor *p = t->src[s];
            while (p->view) p = p->src[0];       // a reshaped parameter is still the parameter
            if (p->op == OP_PARAM && p->grad_ready_after < 0) p->grad_ready_after = i;
        }
    }
}

static int by_ready_desc(const void *a, const void *b) {
    const Tensor *x = *(Tensor *const *)a, *y = *(Tensor *const *)b;
    if (x->grad_ready_after != y->grad_ready_after) return y->grad_ready_after - x->grad_ready_after;
    return x->id - y->id;
}

// Runs of equal decay flags over the trainable prefix, in layout order.
static void plan_decay_spans(Graph *g) {
    g->decay_spans = xrealloc(g->decay_spans, (g->n_grad_params ? g->n_grad_params : 1) * sizeof *g->decay_spans);
    g->n_decay_spans = 0;
    for (int i = 0; i < g->n_grad_params; i++) {
        const Tensor *t = g->flat_order[i];
        size_t lo = (size_t)(t->grad - g->grad_mem), hi = lo + t->numel;
        DecaySpan *last = g->n_decay_spans ? &g->decay_spans[g->n_decay_spans - 1] : NULL;
        if (last && last->decay == t->decay) last->hi = hi;
        else g->decay_spans[g->n_decay_spans++] = (DecaySpan){ lo, hi, t->decay };
    }
}

// The flat layout: one order for parameters, gradients and moments. The
// trainable parameters come first, in the order backward completes their
// gradients, so that an all-reduce can cut the gradient buffer into buckets
// that fill up front to back; the frozen ones follow. No padding, so the
// parameters' [0, grad_numel) lines up float for float with the gradients.
static int plan_params(Graph *g) {
    if (g->param_owner) {
        Graph *o = g->param_owner;
        if (!o->planned) { fprintf(stderr, "distil: error: plan the parameter owner graph first\n"); return -1; }
        for (int i = 0; i < g->n_params; i++) {
            g->params[i]->data = o->params[i]->data;
            g->params[i]->grad = o->params[i]->grad;
            g->params[i]->requires_grad = o->params[i]->requires_grad;
        }
        g->param_mem = o->param_mem; g->param_numel = o->param_numel;
        g->grad_mem = o->grad_mem; g->grad_numel = o->grad_numel;
        g->decay_spans = o->decay_spans; g->n_decay_spans = o->n_decay_spans;
        return 0;
    }
    g->flat_order = xrealloc(g->flat_order, (g->n_params ? g->n_params : 1) * sizeof *g->flat_order);
    g->n_grad_params = 0;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i]->requires_grad) g->flat_order[g->n_grad_params++] = g->params[i];
    qsort(g->flat_order, g->n_grad_params, sizeof *g->flat_order, by_ready_desc);
    int n_flat = g->n_grad_params;
    for (int i = 0; i < g->n_params; i++)
        if (!g->params[i]->requires_grad) g->flat_order[n_flat++] = g->params[i];
    size_t numel = 0, grad_numel = 0;
    for (int i = 0; i < g->n_params; i++) {
        numel += g->flat_order[i]->numel;
        if (i < g->n_grad_params) grad_numel = numel;
    }
    g->param_numel = numel;
    g->grad_numel = grad_numel;
    g->param_mem = backend_alloc(g->device, (numel ? numel : 1) * sizeof(float));
    g->grad_mem = backend_alloc(g->device, (grad_numel ? grad_numel : 1) * sizeof(float));
    if (!g->param_mem || !g->grad_mem) {
        fprintf(stderr, "distil: error: cannot allocate %zu bytes of parameters and gradients\n", (numel + grad_numel) * sizeof(float));
        return -1;
    }
    size_t at = 0;
    for (int i = 0; i < g->n_params; i++) {
        Tensor *t = g->flat_order[i];
        t->data = g->param_mem + at;
        if (i < g->n_grad_params) t->grad = g->grad_mem + at;
        at += t->numel;
    }
    plan_decay_spans(g);
    return 0;
}

// Where the host writes the inputs: in place on the CPU; on a device, a
// host mirror of the arena's input prefix, allocated here once.
static int plan_input_host(Graph *g) {
    if (g->device != DEV_CPU) {
        g->input_host_mem = backend_host_alloc(g->device, g->input_bytes, &g->input_host_pinned);
        if (!g->input_host_mem) { fprintf(stderr, "distil: error: cannot allocate %zu bytes of host input staging\n", g->input_bytes); return -1; }
    }
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        if (t->op != OP_INPUT) continue;
        t->host = g->input_host_mem ? (char *)g->input_host_mem + ((char *)t->data - (char *)g->act_mem) : t->data;
    }
    return 0;
}

void graph_upload_inputs(Graph *g) {
    if (g->device == DEV_CPU) return;
    backend_upload(g->device, g->act_mem, g->input_host_mem, g->input_bytes);
}

void graph_upload_inputs_queued(Graph *g) {
    if (g->device == DEV_CPU) return;
    backend_upload_queued(g->device, g->act_mem, g->input_host_mem, g->input_bytes);
}

GraphMemory graph_memory(const Graph *g) {
    GraphMemory m = { 0 };
    for (int i = 0; i < g->n_params; i++) {
        const Tensor *p = g->params[i];
        m.params += p->numel * sizeof(float);   // one flat buffer, no padding
        if (p->requires_grad) m.grads += p->numel * sizeof(float);
    }
    for (int i = 0; i < g->n_nodes; i++)   // the inputs' prefix, as graph_plan lays it
        if (g->nodes[i]->op == OP_INPUT) m.inputs += align_up(g->nodes[i]->numel * dtype_size(g->nodes[i]->dtype));
    PlanSlot *slots = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *slots);
    PlanStats st;
    // The dtypes graph_plan would choose (the planner sizes bf16 outputs at 2 bytes).
    if (!slots || plan_bf16_outputs(g->nodes, g->n_nodes) < 0 || plan_arena(g->nodes, g->n_nodes, slots, &st)) {
        free(slots);
        m.ok = 0;
        return m;
    }
    free(slots);
    m.ok = 1;
    m.act_peak = st.act_peak;
    m.grad_peak = st.grad_peak;
    m.arena = m.inputs + st.arena_bytes;
    m.unshared = m.inputs + st.act_unshared + st.grad_unshared;
    m.n_remat = st.n_remat;
    return m;
}

// Backward order: the node whose backward comes first (the highest index) first.
static int by_remat_order(const void *a, const void *b) {
    const struct GraphRemat *x = a, *y = b;
    if (x->before != y->before) return y->before - x->before;
    return x->t->id - y->t->id;
}

int graph_plan(Graph *g) {
    if (g->planned) return 0;
    find_grad_ready(g);
    if (plan_params(g)) return -1;
    // Inputs first, each its own slot, so they form one prefix of the arena
    // that a device uploads from its host mirror with one copy; then the
    // planned arena (plan.h).
    size_t off = 0;
    for (int i = 0; i < g->n_nodes; i++)
        if (g->nodes[i]->op == OP_INPUT) off += align_up(g->nodes[i]->numel * dtype_size(g->nodes[i]->dtype));
    g->input_bytes = off;
    PlanSlot *slots = malloc((g->n_nodes ? g->n_nodes : 1) * sizeof *slots);
    // Which outputs train.precision bf16 stores as bf16 (plan.h), before
    // the layout that sizes them.
    if (!slots || plan_bf16_outputs(g->nodes, g->n_nodes) < 0 || plan_arena(g->nodes, g->n_nodes, slots, &g->plan)) {
        free(slots);
        fprintf(stderr, "distil: error: out of host memory planning the graph\n");
        return -1;
    }
    g->act_bytes = g->input_bytes + g->plan.arena_bytes;
    g->act_mem = backend_alloc(g->device, g->act_bytes ? g->act_bytes : 1);
    g->remat = calloc(g->plan.n_remat ? g->plan.n_remat : 1, sizeof *g->remat);
    if (!g->act_mem || !g->remat) {
        free(slots);
        fprintf(stderr, "distil: error: cannot allocate %zu bytes of activations\n", g->act_bytes);
        return -1;
    }
    off = 0;
    char *arena = (char *)g->act_mem + g->input_bytes;
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        const PlanSlot *s = &slots[i];
        if (t->op == OP_PARAM) continue;
        if (t->op == OP_INPUT) {
            t->data = (char *)g->act_mem + off;
            off += align_up(t->numel * dtype_size(t->dtype));
            continue;
        }
        if (t->view) {
            t->data = t->src[0]->data;
            t->grad = t->src[0]->grad;
            t->requires_grad = t->src[0]->requires_grad;
            continue;
        }
        t->data = arena + s->data;
        t->saved = s->saved != PLAN_NONE ? (float *)(arena + s->saved) : NULL;
        t->grad = s->grad != PLAN_NONE ? (float *)(arena + s->grad) : NULL;
        if (s->remat != PLAN_NONE) g->remat[g->n_remat++] = (struct GraphRemat){ t, t->data, arena + s->remat, s->remat_before };
    }
    free(slots);
    qsort(g->remat, g->n_remat, sizeof *g->remat, by_remat_order);
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        if (t->op == OP_INPUT || t->op == OP_PARAM || t->view) continue;
        if (!op_table[t->op].forward[g->device]) {
            fprintf(stderr, "distil: error: op %s has no %s kernel\n", op_name(t->op), g->device == DEV_CUDA ? "CUDA" : "CPU");
            return -1;
        }
    }
    if (plan_input_host(g)) return -1;
    g->reduce_len = (g->grad_numel + REDUCE_CHUNK - 1) / REDUCE_CHUNK + 1;
    g->reduce_dev = backend_alloc(g->device, g->reduce_len * sizeof(double));
    g->reduce_host = calloc(g->reduce_len, sizeof(double));
    g->seed_one = backend_alloc(g->device, sizeof(float));
    if (!g->reduce_dev || !g->reduce_host || !g->seed_one) { fprintf(stderr, "distil: error: out of memory planning the graph\n"); return -1; }
    float one = 1.0f;
    backend_from_host(g->device, g->seed_one, &one, sizeof one);
    g->planned = 1;
    return 0;
}

void graph_init_params(Graph *g, Rng *rng) {
    size_t max = 0;
    for (int i = 0; i < g->n_params; i++)
        if (g->params[i]->numel > max) max = g->params[i]->numel;
    float *host = malloc((max ? max : 1) * sizeof(float));
    if (!host) { fprintf(stderr, "distil: error: out of host memory\n"); exit(2); }
    for (int i = 0; i < g->n_params; i++) {
        Tensor *p = g->params[i];
        for (size_t j = 0; j < p->numel; j++) {
            switch (p->init) {
            case INIT_ZEROS: host[j] = 0.0f; break;
            case INIT_ONES: host[j] = 1.0f; break;
            case INIT_NORMAL: host[j] = p->init_scale * rng_normal(rng); break;
            case INIT_UNIFORM: host[j] = p->init_scale * (2.0f * rng_uniform(rng) - 1.0f); break;
            }
        }
        tensor_from_host_f32(p, host);
    }
    free(host);
}

void graph_forward(Graph *g) {
    // Rematerialised nodes write their forward buffer again (backward left
    // them pointing at the second one).
    for (int r = 0; r < g->n_remat; r++) g->remat[r].t->data = g->remat[r].fwd;
    for (int i = 0; i < g->n_nodes; i++) {
        Tensor *t = g->nodes[i];
        if (t->op == OP_INPUT || t->op == OP_PARAM || t->view) continue;
        double t0 = g->profile ? prof_now(g->device) : 0;
        op_table[t->op].forward[g->device](t);
        if (g->profile) prof_add(t->op, PROF_FORWARD, prof_now(g->device) - t0);
    }
}

void graph_zero_grad(Graph *g) {
    backend_zero(g->device, g->grad_mem, g->grad_numel * sizeof(float));
}

static void backward_from_seed(Graph *g, Tensor *loss);

void graph_backward(Graph *g, Tensor *loss) {
    if (loss->numel != 1) { fprintf(stderr, "distil: error: backward from a tensor of %zu elements (a scalar loss is needed)\n", loss->numel); exit(2); }
    if (!loss->requires_grad) return;
    // The seed from device memory, by a copy in device order: no wait for
    // the host, so a captured step can hold it.
    backend_copy(g->device, loss->grad, g->seed_one, sizeof(float));
    backward_from_seed(g, loss);
}

// The tensor whose gradient buffer t's is (a view's is its source's).
static Tensor *grad_owner(Tensor *t) {
    while (t->view) t = t->src[0];
    return t;
}

// Before t's backward: bit s of t->grad_assign for each source whose
// gradient nothing has written yet in this backward (the kernel assigns
// it), and those gradients marked written. A source listed twice (x + x)
// is assigned by its first listing and added to by the second.
static void set_grad_assign(Graph *g, Tensor *t) {
    t->grad_assign = 0;
    for (int s = 0; s < t->nsrc; s++) {
        Tensor *o = grad_owner(t->src[s]);
        if (!o->grad) continue;
        if (!o->grad_written) {
            t->grad_assign |= 1u << s;
            if (g->poison_grads) backend_memset(g->device, o->grad, 0xff, o->numel * sizeof(float));
        }
        o->grad_written = 1;
    }
}

void graph_backward_seeded(Graph *g, Tensor *loss, const float *seed) {
    if (!loss->requires_grad) return;
    backend_from_host(g->device, loss->grad, seed, loss->numel * sizeof(float));
    backward_from_seed(g, loss);
}

// Backward from loss, whose gradient (the seed) is already in place.
static void backward_from_seed(Graph *g, Tensor *loss) {
    // No gradient buffer is zeroed: the first writer of an activation
    // gradient assigns it, and a node whose gradient nothing wrote (no path
    // to the seed) is skipped, its contribution being zero. Parameter
    // gradients accumulate (graph_zero_grad clears them once per step).
    for (int i = 0; i < g->n_nodes; i++) g->nodes[i]->grad_written = g->nodes[i]->op == OP_PARAM;
    grad_owner(loss)->grad_written = 1;
    // Parameters whose grad completes at tape index i, walked with `next`;
    // the outputs recomputed before node i's backward, with `r` (those past
    // the seed have no reader that runs).
    int next = 0, r = 0;
    while (r < g->n_remat && g->remat[r].before > loss->id) r++;
    for (int i = loss->id; i >= 0; i--) {
        Tensor *t = g->nodes[i];
        for (; r < g->n_remat && g->remat[r].before == i; r++) {
            g->remat[r].t->data = g->remat[r].bwd;
            double t0 = g->profile ? prof_now(g->device) : 0;
            op_table[g->remat[r].t->op].forward[g->device](g->remat[r].t);
            if (g->profile) prof_add(g->remat[r].t->op, PROF_RECOMPUTE, prof_now(g->device) - t0);
        }
        if (t->op != OP_INPUT && t->op != OP_PARAM && !t->view && t->requires_grad && t->grad_written) {
            set_grad_assign(g, t);
            double t0 = g->profile ? prof_now(g->device) : 0;
            op_table[t->op].backward[g->device](t);
            if (g->profile) prof_add(t->op, PROF_BACKWARD, prof_now(g->device) - t0);
        }
        if (!g->grad_ready || g->param_owner) continue;
        while (next < g->n_grad_params && g->flat_order[next]->grad_ready_after == i)
            g->grad_ready(g->grad_ready_ctx, g->flat_order[next++]);
    }
    if (g->grad_ready && !g->param_owner)   // parameters unused by this loss
        while (next < g->n_grad_params) g->grad_ready(g->grad_ready_ctx, g->flat_order[next++]);
}

size_t graph_param_numel(const Graph *g) {
    size_t n = 0;
    for (int i = 0; i < g->n_params; i++) n += g->params[i]->numel;
    return n;
}

void graph_print(const Graph *g) {
    char desc[96];
    for (int i = 0; i < g->n_nodes; i++) {
        const Tensor *t = g->nodes[i];
        printf("%4d %-14s %-24s %s%s\n", i, op_name(t->op), t->name, tensor_describe(t, desc, sizeof desc),
               t->requires_grad ? " grad" : "");
    }
}

void tensor_to_host_f32(const Tensor *t, float *dst) {
    if (t->dtype == DT_F32) { backend_to_host(t->device, dst, t->data, t->numel * sizeof(float)); return; }
    if (t->dtype == DT_BF16) {
        uint16_t *tmp = malloc(t->numel * sizeof(uint16_t));
        if (!tmp) { fprintf(stderr, "distil: error: out of host memory\n"); exit(2); }
        backend_to_host(t->device, tmp, t->data, t->numel * sizeof(uint16_t));
        for (size_t i = 0; i < t->numel; i++) dst[i] = bf16_to_f32(tmp[i]);
        free(tmp);
        return;
    }
    fprintf(stderr, "distil: error: tensor %s is %s, not a float tensor\n", t->name, dtype_name(t->dtype));
    exit(2);
}

void tensor_from_host_f32(Tensor *t, const float *src) {
    if (t->dtype == DT_F32) { backend_from_host(t->device, t->data, src, t->numel * sizeof(float)); return; }
    if (t->dtype == DT_BF16) {
        uint16_t *tmp = malloc(t->numel * sizeof(uint16_t));
        if (!tmp) { fprintf(stderr, "distil: error: out of host memory\n"); exit(2); }
        for (size_t i = 0; i < t->numel; i++) tmp[i] = f32_to_bf16(src[i]);
        backend_from_host(t->device, t->data, tmp, t->numel * sizeof(uint16_t));
        free(tmp);
        return;
    }
    fprintf(stderr, "distil: error: tensor %s is %s, not a float tensor\n", t->name, dtype_name(t->dtype));
    exit(2);
}

void tensor_grad_to_host(const Tensor *t, float *dst) {
    if (!t->grad) { for (size_t i = 0; i < t->numel; i++) dst[i] = 0.0f; return; }
    backend_to_host(t->device, dst, t->grad, t->numel * sizeof(float));
}
