// regression.h: the masked weights shared by the regression losses
// (smooth_l1.c, mse.c): w_i is the mask value broadcast over pred's
// trailing dims (mask [M], a prefix of pred's shape, so element i has
// weight mask[i / (numel / M)]), or 1 without a mask.
#pragma once
#include "autograd/tensor.h"   // defines: Tensor

// Below this many elements a parallel region costs more than it saves.
#define REGRESSION_PAR_MIN 16384

typedef struct {
    const float *mask;      // (M) or NULL
    size_t inner;           // elements per mask value
} RegressionWeights;

static inline RegressionWeights regression_weights(const Tensor *out) {
    const Tensor *mask = out->nsrc > 2 ? out->src[2] : NULL;
    RegressionWeights w = { NULL, 1 };
    if (!mask) return w;
    w.mask = mask->data;
    w.inner = out->src[0]->numel / mask->numel;
    return w;
}

static inline float regression_weight(RegressionWeights w, size_t i) { return w.mask ? w.mask[i / w.inner] : 1.0f; }

// sum_i w_i over pred's numel elements, in double.
static inline double regression_weight_total(RegressionWeights w, size_t numel) {
    if (!w.mask) return (double)numel;
    double s = 0;
    for (size_t j = 0; j < numel / w.inner; j++) s += w.mask[j];
    return s * (double)w.inner;
}
