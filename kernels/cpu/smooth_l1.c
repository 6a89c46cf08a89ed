// smooth_l1.c: masked, weighted mean of smooth_l1(pred - target) -> [1].
//   l(d) = 0.5 d^2 / beta if |d| < beta, else |d| - 0.5 beta   (fattr[0] = beta)
//   loss = sum_i w_i l(d_i) / sum_i w_i, 0 when sum_i w_i == 0,
// w_i the mask value broadcast over pred's trailing dims (mask [M], a prefix
// of pred's shape, so element i has weight mask[i / (numel / M)]), or 1
// without a mask. Elements of weight 0 are skipped, so a masked-out NaN
// target cannot poison the loss. Gradients go to pred (+) and target (-),
// never to the mask. beta = 0 gives the L1 loss (|d| < 0 never holds).
#include <math.h>
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/regression.h"   // defines: RegressionWeights, regression_weight*

void smooth_l1_forward_cpu(Tensor *out) {
    const Tensor *pred_t = out->src[0];
    const float *pred = pred_t->data, *target = out->src[1]->data;   // (numel)
    float beta = out->fattr[0];
    RegressionWeights w = regression_weights(out);
    double total_w = regression_weight_total(w, pred_t->numel);
    float *y = out->data;                                            // (1)
    if (total_w == 0) { y[0] = 0.0f; return; }
    // Serial and in double: regression targets are small (waypoints,
    // speeds), and an ordered sum gives the same loss on any thread count.
    double s = 0;
    for (size_t i = 0; i < pred_t->numel; i++) {
        float wi = regression_weight(w, i);
        if (wi == 0.0f) continue;
        double d = (double)pred[i] - (double)target[i], ad = fabs(d);
        s += wi * (ad < beta ? 0.5 * d * d / beta : ad - 0.5 * beta);
    }
    y[0] = (float)(s / total_w);
}

void smooth_l1_backward_cpu(Tensor *out) {
    Tensor *pred_t = out->src[0], *target_t = out->src[1];
    // Masked elements add nothing: zero first when assigning.
    float *dpred = cpu_grad_begin(out, 0), *dtarget = cpu_grad_begin(out, 1);   // (numel) or NULL
    cpu_grad_none(out, 2);                      // the mask takes no gradient
    if (!dpred && !dtarget) return;
    const float *pred = pred_t->data, *target = target_t->data;      // (numel)
    float beta = out->fattr[0];
    RegressionWeights w = regression_weights(out);
    double total_w = regression_weight_total(w, pred_t->numel);
    if (total_w == 0) return;                   // the loss is the constant 0
    float g = (float)(((const float *)out->grad)[0] / total_w);
    ptrdiff_t n = (ptrdiff_t)pred_t->numel;
    #pragma omp parallel for if (n >= REGRESSION_PAR_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        float wi = regression_weight(w, (size_t)i);
        if (wi == 0.0f) continue;
        float d = pred[i] - target[i];
        // l'(d) = d / beta inside the quadratic zone, sign(d) outside it.
        float dl = fabsf(d) < beta ? d / beta : (d > 0 ? 1.0f : d < 0 ? -1.0f : 0.0f);
        float gi = g * wi * dl;
        if (dpred) dpred[i] += gi;
        if (dtarget) dtarget[i] -= gi;
    }
}
