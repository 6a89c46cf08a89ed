// cosine_loss.c: feature loss, the mean over counted rows of 1 - cos(a_b, b_b)
// (op_cosine_loss in autograd/ops.h). a, b [B, D]; mask [B] or none.
//   cos = a.b / den, den = max(|a| |b|, 1e-8)
// Gradient: with den = |a| |b| (unclamped),
//   d cos / d a = b / (|a| |b|) - a.b a / (|a|^3 |b|) = b / den - cos a / |a|^2,
// and while the clamp holds (den = 1e-8, a constant) d cos / d a = b / den;
// symmetrically for b. dL/da = -d(out) / count * d cos / d a.
//
// saved (B + 1): 1 - cos per row (0 for rows not counted), then the count.
// Rows with mask 0 are skipped entirely. Everything is summed in double:
// for nearly parallel a and b, 1 - cos and the two terms of the gradient
// cancel, and fp32 partial results would leave ~1e-7 / |a| of noise.
#include <math.h>
#include "kernels/cpu/cpu_ops.h"

// Below this many elements a parallel region costs more than it saves.
#define COSINE_PAR_MIN 16384
#define COSINE_EPS 1e-8

static int cosine_counted(const Tensor *out, int r) {
    const Tensor *mask = out->nsrc > 2 ? out->src[2] : NULL;
    return !mask || ((const float *)mask->data)[r] != 0.0f;
}

// Row r's a.b, |a|^2 and |b|^2 in double.
static void cosine_row_sums(const float *ar, const float *br, int D, double *ab, double *aa, double *bb) {
    double sab = 0, saa = 0, sbb = 0;
    for (int i = 0; i < D; i++) {
        sab += (double)ar[i] * br[i];
        saa += (double)ar[i] * ar[i];
        sbb += (double)br[i] * br[i];
    }
    *ab = sab; *aa = saa; *bb = sbb;
}

void cosine_loss_forward_cpu(Tensor *out) {
    const Tensor *ta = out->src[0], *tb = out->src[1];
    int B = ta->shape[0], D = ta->shape[1];
    const float *a = ta->data, *b = tb->data;            // (B, D), (B, D)
    float *row_loss = out->saved;                        // (B), then the count at [B]
    #pragma omp parallel for schedule(static) if (ta->numel >= COSINE_PAR_MIN)
    for (int r = 0; r < B; r++) {
        row_loss[r] = 0.0f;
        if (!cosine_counted(out, r)) continue;
        double ab, aa, bb;
        cosine_row_sums(a + (size_t)r * D, b + (size_t)r * D, D, &ab, &aa, &bb);
        row_loss[r] = (float)(1.0 - ab / fmax(sqrt(aa) * sqrt(bb), COSINE_EPS));
    }
    double total = 0;
    int count = 0;
    for (int r = 0; r < B; r++) {
        if (!cosine_counted(out, r)) continue;
        total += row_loss[r];
        count++;
    }
    row_loss[B] = (float)count;
    ((float *)out->data)[0] = count ? (float)(total / count) : 0.0f;
}

void cosine_loss_backward_cpu(Tensor *out) {
    Tensor *ta = out->src[0], *tb = out->src[1];
    // Uncounted rows add nothing: zero first when assigning.
    float *da = cpu_grad_begin(out, 0), *db = cpu_grad_begin(out, 1);   // (B, D) or NULL
    cpu_grad_none(out, 2);                               // the mask takes no gradient
    if (!da && !db) return;
    int B = ta->shape[0], D = ta->shape[1];
    const float *a = ta->data, *b = tb->data;            // (B, D), (B, D)
    float count = ((const float *)out->saved)[B];
    if (count == 0.0f) return;                           // the loss is the constant 0
    double g = -((const float *)out->grad)[0] / count;   // d loss / d cos per counted row
    #pragma omp parallel for schedule(static) if (ta->numel >= COSINE_PAR_MIN)
    for (int r = 0; r < B; r++) {
        if (!cosine_counted(out, r)) continue;
        const float *ar = a + (size_t)r * D, *br = b + (size_t)r * D;
        double ab, aa, bb;                               // again, rather than saved in fp32
        cosine_row_sums(ar, br, D, &ab, &aa, &bb);
        double prod = sqrt(aa) * sqrt(bb), den = fmax(prod, COSINE_EPS), cos = ab / den;
        // d cos / d a = b / den - [not clamped] cos / |a|^2 a, and the same with a, b swapped.
        int clamped = !(prod > COSINE_EPS);
        double ka = clamped ? 0.0 : cos / aa, kb = clamped ? 0.0 : cos / bb;
        for (int i = 0; i < D; i++) {
            size_t at = (size_t)r * D + i;
            if (da) da[at] += (float)(g * (br[i] / den - ka * ar[i]));
            if (db) db[at] += (float)(g * (ar[i] / den - kb * br[i]));
        }
    }
}
