// mse.c: masked, weighted mean of (pred - target)^2 -> [1].
//   loss = sum_i w_i d_i^2 / sum_i w_i, 0 when sum_i w_i == 0,
// w_i the mask value broadcast over pred's trailing dims (mask [M], a prefix
// of pred's shape, so element i has weight mask[i / (numel / M)]), or 1
// without a mask. Elements of weight 0 are skipped, so a masked-out NaN
// target cannot poison the loss. Gradients go to pred (+) and target (-),
// never to the mask.
#include "kernels/cpu/cpu_ops.h"

// Below this many elements a parallel region costs more than it saves.
#define MSE_PAR_MIN 16384

typedef struct {
    const float *mask;      // (M) or NULL
    size_t inner;           // elements per mask value
} MseWeights;

static MseWeights mse_weights(const Tensor *out) {
    const Tensor *mask = out->nsrc > 2 ? out->src[2] : NULL;
    MseWeights w = { NULL, 1 };
    if (!mask) return w;
    w.mask = mask->data;
    w.inner = out->src[0]->numel / mask->numel;
    return w;
}

static float mse_weight(MseWeights w, size_t i) { return w.mask ? w.mask[i / w.inner] : 1.0f; }

// sum_i w_i over pred's numel elements, in double.
static double mse_weight_total(MseWeights w, size_t numel) {
    if (!w.mask) return (double)numel;
    double s = 0;
    for (size_t j = 0; j < numel / w.inner; j++) s += w.mask[j];
    return s * (double)w.inner;
}

void mse_forward_cpu(Tensor *out) {
    const Tensor *pred_t = out->src[0];
    const float *pred = pred_t->data, *target = out->src[1]->data;   // (numel)
    MseWeights w = mse_weights(out);
    double total_w = mse_weight_total(w, pred_t->numel);
    float *y = out->data;                                            // (1)
    if (total_w == 0) { y[0] = 0.0f; return; }
    // Serial and in double: regression targets are small (waypoints,
    // speeds), and an ordered sum gives the same loss on any thread count.
    double s = 0;
    for (size_t i = 0; i < pred_t->numel; i++) {
        float wi = mse_weight(w, i);
        if (wi == 0.0f) continue;
        double d = (double)pred[i] - (double)target[i];
        s += wi * d * d;
    }
    y[0] = (float)(s / total_w);
}

void mse_backward_cpu(Tensor *out) {
    Tensor *pred_t = out->src[0], *target_t = out->src[1];
    float *dpred = pred_t->grad, *dtarget = target_t->grad;          // (numel) or NULL
    if (!dpred && !dtarget) return;
    const float *pred = pred_t->data, *target = target_t->data;      // (numel)
    MseWeights w = mse_weights(out);
    double total_w = mse_weight_total(w, pred_t->numel);
    if (total_w == 0) return;                   // the loss is the constant 0
    // d loss / d pred_i = 2 w_i d_i / sum w
    float g = (float)(2.0 * ((const float *)out->grad)[0] / total_w);
    ptrdiff_t n = (ptrdiff_t)pred_t->numel;
    #pragma omp parallel for if (n >= MSE_PAR_MIN)
    for (ptrdiff_t i = 0; i < n; i++) {
        float wi = mse_weight(w, (size_t)i);
        if (wi == 0.0f) continue;
        float gi = g * wi * (pred[i] - target[i]);
        if (dpred) dpred[i] += gi;
        if (dtarget) dtarget[i] -= gi;
    }
}
