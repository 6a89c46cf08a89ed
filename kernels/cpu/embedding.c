// embedding.c: rows of a table looked up by id. ids i32 [...], table [V, D]
// -> [..., D]. An id outside [0, V) gives a zero row and no gradient (the
// data layer rejects such ids first; this only keeps a bad one from reading
// or writing out of bounds).
//
// Backward scatter-adds dy rows into the table. Two ids may be equal, so
// rows cannot be split between threads; instead each thread owns a slice of
// the D columns and walks every id in order. No two threads write the same
// float, and each float sums its contributions in id order, so the result
// does not depend on the thread count.
#include <omp.h>
#include <string.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many output floats a parallel region costs more than it saves.
#define EMBED_PAR_MIN 16384

void embedding_forward_cpu(Tensor *out) {
    const Tensor *ids_t = out->src[0], *table_t = out->src[1];
    const int *ids = ids_t->data;               // (N)
    const float *table = table_t->data;         // (V, D)
    float *y = out->data;                       // (N, D)
    ptrdiff_t N = (ptrdiff_t)ids_t->numel, V = table_t->shape[0], D = table_t->shape[1];
    #pragma omp parallel for if (out->numel >= EMBED_PAR_MIN)
    for (ptrdiff_t i = 0; i < N; i++) {
        ptrdiff_t id = ids[i];
        float *yr = y + i * D;
        if (id < 0 || id >= V) { memset(yr, 0, (size_t)D * sizeof *yr); continue; }
        memcpy(yr, table + id * D, (size_t)D * sizeof *yr);
    }
}

void embedding_backward_cpu(Tensor *out) {
    const Tensor *ids_t = out->src[0];
    Tensor *table_t = out->src[1];
    if (!cpu_grad_begin(out, 1)) return;        // ids are integers: no grad; a scatter: zero first when assigning
    const int *ids = ids_t->data;               // (N)
    const float *dy = out->grad;                // (N, D)
    float *dtable = table_t->grad;              // (V, D)
    ptrdiff_t N = (ptrdiff_t)ids_t->numel, V = table_t->shape[0], D = table_t->shape[1];
    #pragma omp parallel if (out->numel >= EMBED_PAR_MIN)
    {
        ptrdiff_t nt = omp_get_num_threads(), t = omp_get_thread_num();
        ptrdiff_t d0 = D * t / nt, d1 = D * (t + 1) / nt;   // this thread's columns
        for (ptrdiff_t i = 0; i < N && d0 < d1; i++) {
            ptrdiff_t id = ids[i];
            if (id < 0 || id >= V) continue;
            const float *dyr = dy + i * D;
            float *dtr = dtable + id * D;
            for (ptrdiff_t d = d0; d < d1; d++) dtr[d] += dyr[d];
        }
    }
}
