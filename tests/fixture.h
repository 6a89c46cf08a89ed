// fixture.h: the reader of the PyTorch fixtures (tests/fixtures/ops.bin
// from scripts/gen_op_fixtures.py, tests/fixtures/losses.bin from
// scripts/gen_loss_fixtures.py, one format), shared by the tests that
// replay them. Every read is bounds-checked: a damaged file is reported,
// never read past.
//
// The format, all little-endian (the reader assumes a little-endian host):
//   magic "DSTLOPS1", u32 case count, then per case:
//     str case name, str op name (op_name())      str = u16 length + bytes
//     u8 n + i32[n] iattr, u8 n + f32[n] fattr     as the constructor stores them
//     u8 tensor count, then per tensor:
//       str name; u8 role ('i' input without gradient, 'p' input with
//       gradient, in constructor order; 'o' expected output; 'u' d(out);
//       'g' expected gradient of the 'p' of the same name); u8 dtype (DType);
//       u8 ndim; u32 shape[ndim]; numel * dtype_size bytes, row-major.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/tensor.h"   // defines: DType, shape_numel, dtype_size

#define FX_MAX_TENSORS 16
#define FX_MAX_ATTR 8

typedef struct {
    char name[TENSOR_NAME_LEN];
    char role;                 // 'i', 'p', 'o', 'u' or 'g'
    DType dtype;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    size_t numel;
    const uint8_t *data;       // into the file image; possibly unaligned
} FxTensor;

typedef struct {
    char name[64], op[32];
    int iattr[FX_MAX_ATTR], n_iattr;
    float fattr[FX_MAX_ATTR];
    int n_fattr;
    FxTensor t[FX_MAX_TENSORS];
    int n_tensors;
} FxCase;

typedef struct {
    uint8_t *bytes;            // the whole file
    size_t len;
    FxCase *cases;
    int n_cases;
} Fixture;

typedef struct {
    const uint8_t *p;
    size_t len, at;
    int bad;                   // set once a read runs past the end
} Reader;

static inline const uint8_t *rd_bytes(Reader *r, size_t n) {
    if (r->bad || n > r->len - r->at) { r->bad = 1; return NULL; }
    const uint8_t *q = r->p + r->at;
    r->at += n;
    return q;
}

static inline uint32_t rd_uint(Reader *r, int nbytes) {
    const uint8_t *q = rd_bytes(r, (size_t)nbytes);
    uint32_t v = 0;
    for (int i = nbytes - 1; q && i >= 0; i--) v = v << 8 | q[i];
    return v;
}

static inline void rd_str(Reader *r, char *dst, size_t cap) {
    size_t n = rd_uint(r, 2);
    const uint8_t *q = rd_bytes(r, n);
    if (!q || n >= cap) { r->bad = 1; dst[0] = 0; return; }
    memcpy(dst, q, n);
    dst[n] = 0;
}

static inline float rd_f32(Reader *r) {
    uint32_t u = rd_uint(r, 4);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline int rd_tensor(Reader *r, FxTensor *t) {
    rd_str(r, t->name, sizeof t->name);
    t->role = (char)rd_uint(r, 1);
    t->dtype = (DType)rd_uint(r, 1);
    t->ndim = (int)rd_uint(r, 1);
    if (r->bad || t->dtype >= DT_COUNT || t->ndim < 1 || t->ndim > TENSOR_MAX_DIMS || !strchr("ipoug", t->role) || !t->role) return -1;
    for (int d = 0; d < t->ndim; d++) t->shape[d] = (int)rd_uint(r, 4);
    t->numel = shape_numel(t->ndim, t->shape);
    t->data = rd_bytes(r, t->numel * dtype_size(t->dtype));
    return r->bad ? -1 : 0;
}

static inline int rd_case(Reader *r, FxCase *c) {
    rd_str(r, c->name, sizeof c->name);
    rd_str(r, c->op, sizeof c->op);
    c->n_iattr = (int)rd_uint(r, 1);
    if (c->n_iattr > FX_MAX_ATTR) return -1;
    for (int i = 0; i < c->n_iattr; i++) c->iattr[i] = (int32_t)rd_uint(r, 4);
    c->n_fattr = (int)rd_uint(r, 1);
    if (c->n_fattr > FX_MAX_ATTR) return -1;
    for (int i = 0; i < c->n_fattr; i++) c->fattr[i] = rd_f32(r);
    c->n_tensors = (int)rd_uint(r, 1);
    if (r->bad || c->n_tensors > FX_MAX_TENSORS) return -1;
    for (int i = 0; i < c->n_tensors; i++)
        if (rd_tensor(r, &c->t[i])) return -1;
    return 0;
}

static inline void fixture_free(Fixture *fx) {
    if (!fx) return;
    free(fx->bytes);
    free(fx->cases);
    free(fx);
}

// Returns NULL after printing what is wrong with the file and where;
// `generator` is the script that regenerates it, for that message.
static inline Fixture *fixture_load(const char *path, const char *generator) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fixture: error: cannot open %s (run from the repo root)\n", path); return NULL; }
    Fixture *fx = calloc(1, sizeof *fx);
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    fx->len = len > 0 ? (size_t)len : 0;
    fx->bytes = malloc(fx->len ? fx->len : 1);
    size_t got = fread(fx->bytes, 1, fx->len, f);
    fclose(f);
    Reader r = { fx->bytes, fx->len, 0, 0 };
    const uint8_t *magic = rd_bytes(&r, 8);
    if (got != fx->len || !magic || memcmp(magic, "DSTLOPS1", 8)) {
        fprintf(stderr, "fixture: error: %s: not a fixture (bad magic or short read); regenerate with %s\n", path, generator);
        fixture_free(fx);
        return NULL;
    }
    fx->n_cases = (int)rd_uint(&r, 4);
    fx->cases = calloc(fx->n_cases ? fx->n_cases : 1, sizeof *fx->cases);
    for (int i = 0; i < fx->n_cases; i++) {
        if (rd_case(&r, &fx->cases[i])) {
            fprintf(stderr, "fixture: error: %s: case %d is malformed near byte %zu; regenerate with %s\n", path, i, r.at, generator);
            fixture_free(fx);
            return NULL;
        }
    }
    if (r.at != fx->len) {
        fprintf(stderr, "fixture: error: %s: %zu trailing bytes after %d cases\n", path, fx->len - r.at, fx->n_cases);
        fixture_free(fx);
        return NULL;
    }
    return fx;
}

static inline const FxTensor *fx_find(const FxCase *c, char role, const char *name) {
    for (int i = 0; i < c->n_tensors; i++)
        if (c->t[i].role == role && (!name || strcmp(c->t[i].name, name) == 0)) return &c->t[i];
    return NULL;
}

// A float fixture tensor as an aligned host array (the caller frees).
static inline float *fx_floats(const FxTensor *t) {
    float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
    memcpy(v, t->data, t->numel * sizeof *v);
    return v;
}

