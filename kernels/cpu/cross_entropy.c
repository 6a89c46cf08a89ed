// cross_entropy.c: mean over counted rows of -log softmax(logits)[target].
// logits [..., V] are R rows of V; targets i32 (R). A row counts when its
// target is not ignore_index (iattr[0], which may lie inside [0, V)) and is
// in [0, V): a target outside [0, V) is treated as ignored rather than read
// out of bounds (the data layer rejects such targets earlier). With no
// counted row the loss is 0 and no gradient flows.
//
// saved (R + 1): logsumexp of each counted row (0 for the others), then the
// number of counted rows, so backward needs no second pass over the logits
// for the normaliser.
#include <math.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many logits a parallel region costs more than it saves.
#define CE_PAR_MIN 16384
// Fixed row blocks of the loss sum (see the forward).
#define CE_BLOCKS 256

static int ce_counted(int target, int V, int ignore_index) {
    return target != ignore_index && target >= 0 && target < V;
}

// log sum_v exp(row[v]) in double, max-subtracted so no exp overflows.
static double ce_logsumexp(const float *row, ptrdiff_t V) {
    float mx = row[0];
    for (ptrdiff_t v = 1; v < V; v++) mx = row[v] > mx ? row[v] : mx;
    double s = 0;
    for (ptrdiff_t v = 0; v < V; v++) s += expf(row[v] - mx);
    return (double)mx + log(s);
}

void cross_entropy_forward_cpu(Tensor *out) {
    const Tensor *logits_t = out->src[0], *targets_t = out->src[1];
    ptrdiff_t V = logits_t->shape[logits_t->ndim - 1], R = (ptrdiff_t)(logits_t->numel / (size_t)V);
    const float *logits = logits_t->data;       // (R, V)
    const int *targets = targets_t->data;       // (R)
    int ignore = out->iattr[0];
    float *lse = out->saved;                    // (R), then the count at [R]
    // Rows go in CE_BLOCKS fixed blocks whatever the thread count, and the
    // block sums are added in order, so the loss is the same on any number
    // of threads; each row's term stays in double until the final division.
    double part[CE_BLOCKS];
    ptrdiff_t part_count[CE_BLOCKS], per = (R + CE_BLOCKS - 1) / CE_BLOCKS;
    #pragma omp parallel for if (logits_t->numel >= CE_PAR_MIN)
    for (int b = 0; b < CE_BLOCKS; b++) {
        double total = 0;
        ptrdiff_t count = 0, hi = (b + 1) * per < R ? (b + 1) * per : R;
        for (ptrdiff_t r = b * per; r < hi; r++) {
            int t = targets[r];
            if (!ce_counted(t, (int)V, ignore)) { lse[r] = 0.0f; continue; }
            double row_lse = ce_logsumexp(logits + r * V, V);
            lse[r] = (float)row_lse;
            total += row_lse - (double)logits[r * V + t];
            count++;
        }
        part[b] = total;
        part_count[b] = count;
    }
    double total = 0;
    ptrdiff_t count = 0;
    for (int b = 0; b < CE_BLOCKS; b++) { total += part[b]; count += part_count[b]; }
    lse[R] = (float)count;                      // exact below 2^24 rows
    ((float *)out->data)[0] = count ? (float)(total / (double)count) : 0.0f;
}

void cross_entropy_backward_cpu(Tensor *out) {
    Tensor *logits_t = out->src[0];
    const Tensor *targets_t = out->src[1];
    if (!cpu_grad_begin(out, 0)) return;   // ignored targets add nothing: zero first when assigning
    ptrdiff_t V = logits_t->shape[logits_t->ndim - 1], R = (ptrdiff_t)(logits_t->numel / (size_t)V);
    const float *lse = out->saved;              // (R), then the count at [R]
    if (lse[R] == 0.0f) return;                 // every target ignored: the loss is the constant 0
    const float *logits = logits_t->data;       // (R, V)
    const int *targets = targets_t->data;       // (R)
    int ignore = out->iattr[0];
    float *dlogits = logits_t->grad;            // (R, V)
    // d loss / d logit[r, v] = (softmax[r, v] - [v == target]) / count
    float g = ((const float *)out->grad)[0] / lse[R];
    #pragma omp parallel for if (logits_t->numel >= CE_PAR_MIN)
    for (ptrdiff_t r = 0; r < R; r++) {
        int t = targets[r];
        if (!ce_counted(t, (int)V, ignore)) continue;
        const float *row = logits + r * V;
        float *drow = dlogits + r * V;
        for (ptrdiff_t v = 0; v < V; v++) drow[v] += g * expf(row[v] - lse[r]);
        drow[t] -= g;
    }
}
