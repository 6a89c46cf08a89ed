// plan.c: the activation arena's layout by liveness (see plan.h).
#include "autograd/plan.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/ops.h"   // defines: op_table, OP_*, BWD_SKIPS_OUT

#define PLAN_ALIGN 64

static size_t align_up(size_t x) { return (x + PLAN_ALIGN - 1) / PLAN_ALIGN * PLAN_ALIGN; }

enum { BUF_ACT = 0, BUF_GRAD = 1 };

typedef struct {
    size_t bytes;
    int start, end;      // schedule times, both inclusive
    int kind;            // BUF_ACT or BUF_GRAD
    int node;
    size_t *off;         // where its offset goes
} Buf;

// Per node: who reads its output when.
typedef struct {
    int fwd_last;        // the last forward that reads it (its own forward at least)
    int bwd_first, bwd_last;   // the first and last backward times that read it; -1 if none
    int grad_writer;     // the latest consumer whose backward may write its gradient; -1 if none
    int consumed, viewed, keep, remat;
    int data_end;        // end of its (first) data interval
} Use;

static const Tensor *root(const Tensor *t) {
    while (t->view) t = t->src[0];
    return t;
}

static int has_kernel(const Tensor *t) { return t->op != OP_INPUT && t->op != OP_PARAM && !t->view; }

static int bwd_reads(const Tensor *u, unsigned bit) { return !(op_table[u->op].bwd_skips & bit); }

static void read_at(Use *use, int t) {
    if (use->bwd_first < 0 || t < use->bwd_first) use->bwd_first = t;
    if (t > use->bwd_last) use->bwd_last = t;
}

// Who reads what when, over the whole schedule (forward, then the backward
// of every node that takes a gradient).
static void find_uses(Tensor *const *nodes, int n, Use *use) {
    for (int i = 0; i < n; i++) {
        const Tensor *t = nodes[i];
        use[i] = (Use){ .fwd_last = i, .bwd_first = -1, .bwd_last = -1, .grad_writer = -1, .keep = t->keep };
    }
    for (int u = 0; u < n; u++) {
        const Tensor *t = nodes[u];
        if (t->view) { use[root(t)->id].viewed = 1; continue; }
        if (!has_kernel(t)) continue;
        int back = 2 * n - 1 - u;   // this node's backward
        for (int s = 0; s < t->nsrc; s++) {
            Use *r = &use[root(t->src[s])->id];
            r->consumed = 1;
            if (u > r->fwd_last) r->fwd_last = u;
            if (!t->requires_grad) continue;
            if (u > r->grad_writer) r->grad_writer = u;
            if (bwd_reads(t, 1u << s)) read_at(r, back);
        }
        if (t->requires_grad && bwd_reads(t, BWD_SKIPS_OUT)) read_at(&use[u], back);
    }
    for (int i = 0; i < n; i++)
        if (has_kernel(nodes[i]) && !use[i].consumed) use[i].keep = 1;   // a sink: the host reads it
}

// Whether node i's output can be dropped after its last forward reader and
// recomputed before its first backward reader: a cheap op, read again in
// backward, not read by the host or through a view, and every source it
// recomputes from still live then (a parameter, an input, or a node whose
// own interval reaches that far; never another rematerialised one).
static int can_remat(Tensor *const *nodes, const Use *use, int i) {
    const Tensor *t = nodes[i];
    const Use *u = &use[i];
    if (!op_table[t->op].remat || u->keep || u->viewed || u->bwd_first < 0 || u->fwd_last >= u->bwd_first) return 0;
    for (int s = 0; s < t->nsrc; s++) {
        const Tensor *r = root(t->src[s]);
        if (r->op == OP_PARAM || r->op == OP_INPUT) continue;
        if (use[r->id].remat || use[r->id].data_end < u->bwd_first) return 0;
    }
    return 1;
}

static int by_size_desc(const void *a, const void *b) {
    const Buf *x = a, *y = b;
    if (x->bytes != y->bytes) return x->bytes < y->bytes ? 1 : -1;
    if (x->start != y->start) return x->start - y->start;
    if (x->node != y->node) return x->node - y->node;
    return x->kind - y->kind;
}

static int by_offset(const void *a, const void *b) {
    const Buf *x = *(Buf *const *)a, *y = *(Buf *const *)b;
    return *x->off < *y->off ? -1 : *x->off > *y->off;
}

// Offsets, largest buffer first, each at the lowest offset free of every
// placed buffer whose interval meets its own. Returns the arena's size.
static size_t place(Buf *bufs, int nb, Buf **scratch) {
    qsort(bufs, nb, sizeof *bufs, by_size_desc);
    size_t arena = 0;
    for (int b = 0; b < nb; b++) {
        int m = 0;
        for (int p = 0; p < b; p++)
            if (bufs[p].start <= bufs[b].end && bufs[b].start <= bufs[p].end) scratch[m++] = &bufs[p];
        qsort(scratch, m, sizeof *scratch, by_offset);
        size_t at = 0;
        for (int p = 0; p < m; p++) {
            if (*scratch[p]->off >= at + bufs[b].bytes) break;   // the gap before it fits
            size_t end = *scratch[p]->off + scratch[p]->bytes;
            if (end > at) at = end;
        }
        *bufs[b].off = at;
        if (at + bufs[b].bytes > arena) arena = at + bufs[b].bytes;
    }
    return arena;
}

// The most bytes of `kind` live at any one time.
static size_t peak(const Buf *bufs, int nb, int kind, int times) {
    size_t best = 0;
    for (int t = 0; t <= times; t++) {
        size_t live = 0;
        for (int b = 0; b < nb; b++)
            if (bufs[b].kind == kind && bufs[b].start <= t && t <= bufs[b].end) live += bufs[b].bytes;
        if (live > best) best = live;
    }
    return best;
}

static void add_buf(Buf *bufs, int *nb, size_t bytes, int start, int end, int kind, int node, size_t *off) {
    if (!bytes) return;
    bufs[(*nb)++] = (Buf){ align_up(bytes), start, end, kind, node, off };
}

int plan_bf16_outputs(Tensor *const *nodes, int n) {
    enum { TAKES_BF16 = 1, READ = 2 };   // per node: every reader takes bf16; someone reads it
    unsigned char *how = malloc(n ? n : 1);
    if (!how) return -1;
    for (int i = 0; i < n; i++) how[i] = op_table[nodes[i]->op].bf16_out && !nodes[i]->keep ? TAKES_BF16 : 0;
    for (int u = 0; u < n; u++) {
        const Tensor *t = nodes[u];
        unsigned takes = !t->view && t->iattr[OP_IATTR_BF16] ? op_table[t->op].bf16_in : 0;
        for (int s = 0; s < t->nsrc; s++) {
            unsigned char *h = &how[t->src[s]->id];
            *h |= READ;
            if (!(takes & BF16_SRC(s))) *h &= (unsigned char)~TAKES_BF16;
        }
    }
    int marked = 0;
    for (int i = 0; i < n; i++) {
        Tensor *t = nodes[i];
        if (!op_table[t->op].bf16_out) continue;
        // A sink (no reader) is read by the host: fp32.
        t->dtype = how[i] == (TAKES_BF16 | READ) ? DT_BF16 : DT_F32;
        marked += t->dtype == DT_BF16;
    }
    free(how);
    return marked;
}

int plan_arena(Tensor *const *nodes, int n, PlanSlot *slots, PlanStats *st) {
    int end_of_step = 2 * n;
    Use *use = calloc(n ? n : 1, sizeof *use);
    Buf *bufs = calloc(4 * (size_t)(n ? n : 1), sizeof *bufs);
    Buf **scratch = calloc(4 * (size_t)(n ? n : 1), sizeof *scratch);
    if (!use || !bufs || !scratch) { free(use); free(bufs); free(scratch); return -1; }
    memset(st, 0, sizeof *st);
    find_uses(nodes, n, use);
    int nb = 0;
    for (int i = 0; i < n; i++) {
        const Tensor *t = nodes[i];
        PlanSlot *s = &slots[i];
        *s = (PlanSlot){ PLAN_NONE, PLAN_NONE, PLAN_NONE, PLAN_NONE, -1 };
        if (!has_kernel(t)) continue;
        Use *u = &use[i];
        int back = 2 * n - 1 - i;
        u->data_end = u->keep ? end_of_step : (u->bwd_last > u->fwd_last ? u->bwd_last : u->fwd_last);
        size_t data_bytes = t->numel * dtype_size(t->dtype);
        if ((u->remat = can_remat(nodes, use, i))) {
            u->data_end = u->fwd_last;
            s->remat_before = 2 * n - 1 - u->bwd_first;
            add_buf(bufs, &nb, data_bytes, u->bwd_first, u->bwd_last, BUF_ACT, i, &s->remat);
            st->n_remat++;
        }
        add_buf(bufs, &nb, data_bytes, i, u->data_end, BUF_ACT, i, &s->data);
        add_buf(bufs, &nb, t->saved_numel * sizeof(float), i, t->requires_grad ? back : i, BUF_ACT, i, &s->saved);
        if (t->requires_grad)   // from its first writer (or the seed, for a sink) to its own backward
            add_buf(bufs, &nb, t->numel * sizeof(float), u->grad_writer >= 0 ? 2 * n - 1 - u->grad_writer : n, back,
                    BUF_GRAD, i, &s->grad);
        st->act_unshared += align_up(data_bytes) + align_up(t->saved_numel * sizeof(float));
        if (t->requires_grad) st->grad_unshared += align_up(t->numel * sizeof(float));
    }
    st->act_peak = peak(bufs, nb, BUF_ACT, end_of_step);
    st->grad_peak = peak(bufs, nb, BUF_GRAD, end_of_step);
    st->arena_bytes = place(bufs, nb, scratch);
    free(use); free(bufs); free(scratch);
    return 0;
}
