// tensor.c: dtype facts and shape helpers.
#include "autograd/tensor.h"
#include <stdio.h>

size_t dtype_size(DType dt) {
    switch (dt) {
    case DT_F32: return 4;
    case DT_BF16: return 2;
    case DT_I32: return 4;
    case DT_U8: return 1;
    default: return 0;
    }
}

const char *dtype_name(DType dt) {
    static const char *names[DT_COUNT] = { "f32", "bf16", "i32", "u8" };
    return (dt >= 0 && dt < DT_COUNT) ? names[dt] : "?";
}

size_t shape_numel(int ndim, const int *shape) {
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= (size_t)shape[i];
    return n;
}

int tensor_same_shape(const Tensor *a, const Tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *tensor_describe(const Tensor *t, char *buf, size_t len) {
    int n = snprintf(buf, len, "%s[", dtype_name(t->dtype));
    for (int i = 0; i < t->ndim && n > 0 && (size_t)n < len; i++)
        n += snprintf(buf + n, len - n, i ? ",%d" : "%d", t->shape[i]);
    if (n > 0 && (size_t)n < len) snprintf(buf + n, len - n, "]");
    return buf;
}
