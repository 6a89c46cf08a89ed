// fixture.c: the fixture reader (see fixture.h).
#include "train/selftest/fixture.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const uint8_t *p;
    size_t len, at;
    int bad;                   // set once a read runs past the end
} Reader;

static const uint8_t *rd_bytes(Reader *r, size_t n) {
    if (r->bad || n > r->len - r->at) { r->bad = 1; return NULL; }
    const uint8_t *q = r->p + r->at;
    r->at += n;
    return q;
}

static uint32_t rd_uint(Reader *r, int nbytes) {
    const uint8_t *q = rd_bytes(r, (size_t)nbytes);
    uint32_t v = 0;
    for (int i = nbytes - 1; q && i >= 0; i--) v = v << 8 | q[i];
    return v;
}

static void rd_str(Reader *r, char *dst, size_t cap) {
    size_t n = rd_uint(r, 2);
    const uint8_t *q = rd_bytes(r, n);
    if (!q || n >= cap) { r->bad = 1; dst[0] = 0; return; }
    memcpy(dst, q, n);
    dst[n] = 0;
}

static float rd_f32(Reader *r) {
    uint32_t u = rd_uint(r, 4);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static int rd_tensor(Reader *r, FxTensor *t) {
    rd_str(r, t->name, sizeof t->name);
    t->role = (char)rd_uint(r, 1);
    t->dtype = (DType)rd_uint(r, 1);
    t->ndim = (int)rd_uint(r, 1);
    if (r->bad || t->dtype >= DT_COUNT || t->ndim < 1 || t->ndim > TENSOR_MAX_DIMS || !t->role || !strchr("ipoug", t->role))
        return -1;
    for (int d = 0; d < t->ndim; d++) t->shape[d] = (int)rd_uint(r, 4);
    t->numel = shape_numel(t->ndim, t->shape);
    t->data = rd_bytes(r, t->numel * dtype_size(t->dtype));
    return r->bad ? -1 : 0;
}

static int rd_case(Reader *r, FxCase *c) {
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

Fixture *fixture_parse(const uint8_t *bytes, size_t len, const char *name, char *err, size_t errlen) {
    Reader r = { bytes, len, 0, 0 };
    const uint8_t *magic = rd_bytes(&r, 8);
    if (!magic || memcmp(magic, "DSTLOPS1", 8)) { snprintf(err, errlen, "%s: not a fixture (bad magic)", name); return NULL; }
    Fixture *fx = calloc(1, sizeof *fx);
    if (!fx) { snprintf(err, errlen, "%s: out of memory", name); return NULL; }
    fx->bytes = bytes;
    fx->len = len;
    fx->n_cases = (int)rd_uint(&r, 4);
    fx->cases = calloc(fx->n_cases ? (size_t)fx->n_cases : 1, sizeof *fx->cases);
    if (!fx->cases) { snprintf(err, errlen, "%s: out of memory for %d cases", name, fx->n_cases); fixture_free(fx); return NULL; }
    for (int i = 0; i < fx->n_cases; i++)
        if (rd_case(&r, &fx->cases[i])) {
            snprintf(err, errlen, "%s: case %d is malformed near byte %zu", name, i, r.at);
            fixture_free(fx);
            return NULL;
        }
    if (r.at != len) {
        snprintf(err, errlen, "%s: %zu trailing bytes after %d cases", name, len - r.at, fx->n_cases);
        fixture_free(fx);
        return NULL;
    }
    return fx;
}

Fixture *fixture_load(const char *path, const char *generator) {
    FILE *f = fopen(path, "rb");
    if (!f) { fprintf(stderr, "fixture: error: cannot open %s (run from the repo root)\n", path); return NULL; }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    size_t n = len > 0 ? (size_t)len : 0;
    uint8_t *bytes = malloc(n ? n : 1);
    size_t got = bytes ? fread(bytes, 1, n, f) : 0;
    fclose(f);
    char err[512];
    Fixture *fx = got == n ? fixture_parse(bytes, n, path, err, sizeof err) : NULL;
    if (!fx) {
        if (got != n) snprintf(err, sizeof err, "%s: short read", path);
        fprintf(stderr, "fixture: error: %s; regenerate it with %s\n", err, generator);
        free(bytes);
        return NULL;
    }
    fx->owned = 1;
    return fx;
}

void fixture_free(Fixture *fx) {
    if (!fx) return;
    if (fx->owned) free((void *)fx->bytes);
    free(fx->cases);
    free(fx);
}

const FxTensor *fx_find(const FxCase *c, char role, const char *name) {
    for (int i = 0; i < c->n_tensors; i++)
        if (c->t[i].role == role && (!name || strcmp(c->t[i].name, name) == 0)) return &c->t[i];
    return NULL;
}

int fx_count(const FxCase *c, const char *roles) {
    int n = 0;
    for (int i = 0; i < c->n_tensors; i++) n += strchr(roles, c->t[i].role) != NULL;
    return n;
}

float *fx_floats(const FxTensor *t) {
    float *v = malloc((t->numel ? t->numel : 1) * sizeof *v);
    if (v) memcpy(v, t->data, t->numel * sizeof *v);
    return v;
}
