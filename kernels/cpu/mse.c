// mse.c: masked, weighted mean of (pred - target)^2 -> [1].
//   loss = sum_i w_i d_i^2 / sum_i w_i, 0 when sum_i w_i == 0,
// w_i the mask value broadcast over pred's trailing dims (mask [M], a prefix
// of pred's shape, so element i has weight mask[i / (numel / M)]), or 1
// without a mask. Elements of weight 0 are skipped, so a masked-out NaN
// target cannot poison the loss. Gradients go to pred (+) and target (-),
// never to the mask.
#include "kernels/cpu/cpu_ops.h"
#include "kernels/cpu/regression.h"   // defines: RegressionWeights, regression_weight*

void mse_forward_cpu(Tensor *out) {
    const Tensor *pred_t = out->src[0];
    const float *pred = pred_t->data, *target = out->src[1]->data;   // (numel)
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
        double d = (double)pred[i] - (double)target[i];
        s += wi * d * d;
    }
    y[0] = (float)(s / total_w);
}

void mse_backward_cpu(Tensor *out) {
    Tensor *pred_t = out->src[0], *target_t = out->src[1];
    // Masked elements add nothing: zero first when assigning.
    float *dpred = cpu_grad_begin(out, 0), *dtarget = cpu_grad_begin(out, 1);   // (numel) or NULL
    cpu_grad_none(out, 2);                      // the mask takes no gradient
    if (!dpred && !dtarget) return;
    const float *pred = pred_t->data, *target = target_t->data;      // (numel)
    RegressionWeights w = regression_weights(out);
    double total_w = regression_weight_total(w, pred_t->numel);
    if (total_w == 0) return;                   // the loss is the constant 0
    // d loss / d pred_i = 2 w_i d_i / sum w
    float g = (float)(2.0 * ((const float *)out->grad)[0] / total_w);
    ptrdiff_t n = (ptrdiff_t)pred_t->numel;
    #pragma omp parallel for if (n >= REGRESSION_PAR_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        float wi = regression_weight(w, (size_t)i);
        if (wi == 0.0f) continue;
        float gi = g * wi * (pred[i] - target[i]);
        if (dpred) dpred[i] += gi;
        if (dtarget) dtarget[i] -= gi;
    }
}
