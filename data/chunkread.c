// chunkread.c: rows of a shard dataset, raw chunks decoded outside the HDF5
// lock (see chunkread.h for the design).
#include "data/chunkread.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>               // defines: uncompress (deflate chunks)
#include <zstd.h>               // defines: ZSTD_decompressDCtx (zstd chunks)
#include "data/zstd_filter.h"   // defines: DL_ZSTD_FILTER_ID

// The last decoded chunk of each dataset slot: neighbouring rows (validate,
// stats, traces that share a chunk) then decode each chunk once.
typedef struct ChunkCache {
    uint64_t serial;            // the shard's (DlShard.serial), 0 when empty
    hsize_t offset[DL_MAX_RANK];
    int valid;
    void *buf;
    size_t cap;
} ChunkCache;

struct DlReader {
    ZSTD_DCtx *zstd;
    void *raw; size_t raw_cap;          // one chunk as stored
    void *stage; size_t stage_cap;      // between two filters of the pipeline
    void *scratch; size_t scratch_cap;  // a field read only to check its rules
    void *wide; size_t wide_cap;        // a field stored wider than its type, before narrowing
    ChunkCache cache[DL_N_SLOTS];
    int32_t *tokens, *topk_ids;         // (M_n), (M_n, k): one sample's whole trace
    float *topk_logprobs;               // (M_n, k)
    size_t tokens_cap, topk_cap;        // elements
};

DlReader *dl_reader_new(void) {
    DlReader *rd = calloc(1, sizeof *rd);
    if (!rd) return NULL;
    rd->zstd = ZSTD_createDCtx();
    if (!rd->zstd) { free(rd); return NULL; }
    return rd;
}

void dl_reader_free(DlReader *rd) {
    if (!rd) return;
    ZSTD_freeDCtx(rd->zstd);
    free(rd->raw);
    free(rd->stage);
    free(rd->scratch);
    free(rd->wide);
    for (int i = 0; i < DL_N_SLOTS; i++) free(rd->cache[i].buf);
    free(rd->tokens);
    free(rd->topk_ids);
    free(rd->topk_logprobs);
    free(rd);
}

// A damaged file can claim any size; nothing one sample needs comes near this,
// and asking malloc for more would abort under the sanitizers.
#define MAX_BUFFER_BYTES (1ull << 34)

static int grow(void **buf, size_t *cap, size_t need) {
    if (need <= *cap) return 0;
    if (need > MAX_BUFFER_BYTES) return -1;
    size_t want = need < 4096 ? 4096 : need + need / 4;
    void *p = realloc(*buf, want);
    if (!p) return -1;
    *buf = p;
    *cap = want;
    return 0;
}

void *dl_reader_scratch(DlReader *rd, size_t bytes) {
    return grow(&rd->scratch, &rd->scratch_cap, bytes ? bytes : 1) ? NULL : rd->scratch;
}

int dl_reader_trace_room(DlReader *rd, size_t n_tokens, size_t n_topk,
                         int32_t **tokens, int32_t **topk_ids, float **topk_logprobs) {
    if (n_tokens > MAX_BUFFER_BYTES / 4 || n_topk > MAX_BUFFER_BYTES / 4) return -1;
    size_t tok_bytes = rd->tokens_cap * sizeof(int32_t), topk_bytes = rd->topk_cap * sizeof(int32_t);
    size_t lp_bytes = rd->topk_cap * sizeof(float);
    if (grow((void **)&rd->tokens, &tok_bytes, (n_tokens ? n_tokens : 1) * sizeof(int32_t))) return -1;
    if (grow((void **)&rd->topk_ids, &topk_bytes, (n_topk ? n_topk : 1) * sizeof(int32_t))) return -1;
    if (grow((void **)&rd->topk_logprobs, &lp_bytes, (n_topk ? n_topk : 1) * sizeof(float))) return -1;
    rd->tokens_cap = tok_bytes / sizeof(int32_t);
    rd->topk_cap = topk_bytes < lp_bytes ? topk_bytes / sizeof(int32_t) : lp_bytes / sizeof(float);
    *tokens = rd->tokens;
    *topk_ids = rd->topk_ids;
    *topk_logprobs = rd->topk_logprobs;
    return 0;
}

size_t dl_mem_size(DlKind kind) {
    switch (kind) {
    case DL_U8: case DL_I8: return 1;
    case DL_I16: case DL_U16: return 2;
    case DL_I32: case DL_U32: case DL_F16: case DL_F32: return 4;
    case DL_I64: case DL_U64: case DL_F64: return 8;
    default: return 0;
    }
}

hid_t dl_mem_type(DlKind kind) {
    switch (kind) {
    case DL_U8: return H5T_NATIVE_UINT8;
    case DL_I8: return H5T_NATIVE_INT8;
    case DL_I32: return H5T_NATIVE_INT32;
    case DL_I64: return H5T_NATIVE_INT64;
    case DL_I16: return H5T_NATIVE_INT16;
    case DL_U16: return H5T_NATIVE_UINT16;
    case DL_U32: return H5T_NATIVE_UINT32;
    case DL_U64: return H5T_NATIVE_UINT64;
    case DL_F16: case DL_F32: return H5T_NATIVE_FLOAT;
    case DL_F64: return H5T_NATIVE_DOUBLE;
    default: return -1;
    }
}

float dl_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1fu, mant = h & 0x3ffu, bits;
    if (exp == 0 && mant == 0) {
        bits = sign;
    } else if (exp == 0) {              // subnormal: shift the mantissa up to a leading 1
        exp = 113;
        while (!(mant & 0x400u)) { mant <<= 1; exp--; }
        bits = sign | (exp << 23) | ((mant & 0x3ffu) << 13);
    } else if (exp == 31) {             // Inf, NaN
        bits = sign | 0x7f800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static herr_t innermost_error(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf((char *)data, 160, "%s", e->desc);
    return 0;
}

void dl_hdf5_error_text(char *buf, size_t len) {
    char text[160] = "unknown HDF5 error";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, innermost_error, text);
    snprintf(buf, len, "%s", text);
}

// ---- the slow, general path: H5Dread under the lock --------------------------

static int read_rows_hdf5(const DlShard *sh, const DlDataset *d, int64_t a, int64_t b, void *dst,
                          int64_t sample, char *err, size_t errlen) {
    hsize_t start[DL_MAX_RANK] = {0}, count[DL_MAX_RANK];
    for (int i = 0; i < d->rank; i++) count[i] = d->dims[i];
    start[0] = (hsize_t)a;
    count[0] = (hsize_t)(b - a);
    dl_hdf5_lock();
    hid_t fspace = H5Dget_space(d->id);
    hid_t mspace = H5Screate_simple(d->rank, count, NULL);
    herr_t rc = -1;
    if (fspace >= 0 && mspace >= 0 && H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL) >= 0)
        rc = H5Dread(d->id, dl_mem_type(d->kind), mspace, fspace, H5P_DEFAULT, dst);
    char why[160] = "";
    if (rc < 0) dl_hdf5_error_text(why, sizeof why);
    if (mspace >= 0) H5Sclose(mspace);
    if (fspace >= 0) H5Sclose(fspace);
    dl_hdf5_unlock();
    if (rc >= 0) return 0;
    snprintf(err, errlen, "%s: %s: cannot read at sample %lld (HDF5: %s); the file is damaged or needs a filter this build lacks",
             sh->path, d->path, (long long)sample, why);
    return -1;
}

// ---- the raw chunk path ------------------------------------------------------

// HDF5's shuffle stores byte j of element i at j * n + i; put it back.
static void unshuffle(uint8_t *dst, const uint8_t *src, size_t nbytes, size_t elem) {
    if (elem <= 1) { memcpy(dst, src, nbytes); return; }
    size_t n = nbytes / elem;
    for (size_t j = 0; j < elem; j++) {
        const uint8_t *plane = src + j * n;
        for (size_t i = 0; i < n; i++) dst[i * elem + j] = plane[i];
    }
    memcpy(dst + n * elem, src + n * elem, nbytes - n * elem);   // the tail is stored as is
}

// Undo the filter pipeline (last filter first, skipping those the chunk's
// mask says were not applied) from src into out, which holds out_len bytes.
static int decode_chunk(DlReader *rd, const DlDataset *d, uint32_t mask, const void *src, size_t n,
                        void *out, size_t out_len, char *why, size_t whylen) {
    int active[DL_MAX_FILTERS], n_active = 0;
    for (int i = d->n_filters - 1; i >= 0; i--)
        if (!(mask & (1u << i))) active[n_active++] = i;
    if (n_active == 0) {
        if (n != out_len) { snprintf(why, whylen, "stored %zu bytes, expected %zu", n, out_len); return -1; }
        memcpy(out, src, n);
        return 0;
    }
    const void *cur = src;
    size_t cur_len = n;
    for (int s = 0; s < n_active; s++) {
        const DlFilter *f = &d->filters[active[s]];
        int last = s == n_active - 1;
        size_t cap = last ? out_len : (f->id == H5Z_FILTER_SHUFFLE ? cur_len : out_len);
        void *dst = out;
        if (!last) {
            // The stage buffer may hold cur; decode into raw's spare room instead then.
            if (cur == rd->stage) {
                if (grow(&rd->raw, &rd->raw_cap, cap)) { snprintf(why, whylen, "out of memory"); return -1; }
                dst = rd->raw;
            } else {
                if (grow(&rd->stage, &rd->stage_cap, cap)) { snprintf(why, whylen, "out of memory"); return -1; }
                dst = rd->stage;
            }
        }
        if (f->id == DL_ZSTD_FILTER_ID) {
            size_t got = ZSTD_decompressDCtx(rd->zstd, dst, cap, cur, cur_len);
            if (ZSTD_isError(got)) { snprintf(why, whylen, "zstd: %s", ZSTD_getErrorName(got)); return -1; }
            if (got != cap) { snprintf(why, whylen, "zstd gave %zu bytes, expected %zu", got, cap); return -1; }
        } else if (f->id == H5Z_FILTER_DEFLATE) {
            uLongf got = (uLongf)cap;
            int zrc = uncompress(dst, &got, cur, (uLong)cur_len);
            if (zrc != Z_OK) { snprintf(why, whylen, "deflate: zlib error %d", zrc); return -1; }
            if (got != cap) { snprintf(why, whylen, "deflate gave %lu bytes, expected %zu", (unsigned long)got, cap); return -1; }
        } else {   // shuffle; raw_ok admits nothing else
            if (cur_len > cap) { snprintf(why, whylen, "shuffled %zu bytes, expected %zu", cur_len, cap); return -1; }
            size_t elem = f->n_cd >= 1 && f->cd[0] ? f->cd[0] : d->type_size;
            unshuffle(dst, cur, cur_len, elem);
            if (last && cur_len != cap) { snprintf(why, whylen, "chunk holds %zu bytes, expected %zu", cur_len, cap); return -1; }
        }
        cur = dst;
        cur_len = cap;
    }
    return 0;
}

// Fetch chunk `offset` raw under the lock. Returns its stored size, 0 when the
// chunk was never written (the caller falls back to H5Dread), -1 on failure.
static int64_t fetch_raw(DlReader *rd, const DlDataset *d, const hsize_t *offset, uint32_t *mask,
                         char *why, size_t whylen) {
    dl_hdf5_lock();
    hsize_t nbytes = 0;
    int64_t result = -1;
    if (H5Dget_chunk_storage_size(d->id, offset, &nbytes) < 0 || nbytes == 0) {
        result = 0;
    } else if (grow(&rd->raw, &rd->raw_cap, nbytes)) {
        snprintf(why, whylen, "out of memory for a %llu-byte chunk", (unsigned long long)nbytes);
    } else if (H5Dread_chunk(d->id, H5P_DEFAULT, offset, mask, rd->raw) < 0) {
        char text[160];
        dl_hdf5_error_text(text, sizeof text);
        snprintf(why, whylen, "HDF5: %s", text);
    } else {
        result = (int64_t)nbytes;
    }
    dl_hdf5_unlock();
    return result;
}

// Copy the part of a decoded chunk (at `offset`, shape d->chunk) that lies in
// rows [a, b) into dst (b - a, dims[1], ...), converting float16 to float32.
static void place_chunk(const DlDataset *d, const hsize_t *offset, const uint8_t *chunk,
                        int64_t a, int64_t b, uint8_t *dst) {
    int r = d->rank;
    size_t in = d->type_size, out = dl_mem_size(d->kind);
    hsize_t lo[DL_MAX_RANK], hi[DL_MAX_RANK];
    for (int i = 0; i < r; i++) {
        lo[i] = offset[i];
        hi[i] = offset[i] + d->chunk[i] < d->dims[i] ? offset[i] + d->chunk[i] : d->dims[i];
    }
    if (lo[0] < (hsize_t)a) lo[0] = (hsize_t)a;
    if (hi[0] > (hsize_t)b) hi[0] = (hsize_t)b;
    // Element strides of the chunk and of dst, per dimension.
    size_t cs[DL_MAX_RANK], ds[DL_MAX_RANK];
    cs[r - 1] = ds[r - 1] = 1;
    for (int i = r - 2; i >= 0; i--) {
        cs[i] = cs[i + 1] * d->chunk[i + 1];
        ds[i] = ds[i + 1] * d->dims[i + 1];
    }
    size_t run = hi[r - 1] - lo[r - 1];
    hsize_t idx[DL_MAX_RANK];
    for (int i = 0; i < r; i++) idx[i] = lo[i];
    for (;;) {
        size_t c = 0, o = 0;
        for (int i = 0; i < r; i++) {
            c += (idx[i] - offset[i]) * cs[i];
            o += (idx[i] - (i == 0 ? (hsize_t)a : 0)) * ds[i];
        }
        if (d->kind == DL_F16) {
            const uint8_t *src = chunk + c * in;
            float *f = (float *)(void *)(dst + o * out);
            for (size_t j = 0; j < run; j++) f[j] = dl_half_to_float((uint16_t)(src[2 * j] | src[2 * j + 1] << 8));
        } else {
            memcpy(dst + o * out, chunk + c * in, run * in);
        }
        int i = r - 2;   // odometer over every dimension but the last
        while (i >= 0 && ++idx[i] >= hi[i]) { idx[i] = lo[i]; i--; }
        if (i < 0) break;
    }
}

// One chunk: decoded straight into dst when it is exactly whole rows of the
// selection and needs no conversion; otherwise decoded into the slot's cache
// (or found there) and copied. Returns 0, 1 (never written: use H5Dread), -1.
static int read_one_chunk(DlReader *rd, const DlShard *sh, int slot, const hsize_t *offset,
                          int64_t a, int64_t b, uint8_t *dst, char *why, size_t whylen) {
    const DlDataset *d = &sh->ds[slot];
    int whole_rows = d->kind != DL_F16 && offset[0] >= (hsize_t)a && offset[0] + d->chunk[0] <= (hsize_t)b;
    for (int i = 1; i < d->rank && whole_rows; i++) whole_rows = offset[i] == 0 && d->chunk[i] == d->dims[i];
    ChunkCache *cc = &rd->cache[slot];
    int cached = cc->valid && cc->serial == sh->serial && !memcmp(cc->offset, offset, sizeof(hsize_t) * (size_t)d->rank);
    if (!cached || whole_rows) {
        uint32_t mask = 0;
        int64_t stored = fetch_raw(rd, d, offset, &mask, why, whylen);
        if (stored <= 0) return stored == 0 ? 1 : -1;
        if (whole_rows) {
            size_t row_bytes = d->chunk_bytes / d->chunk[0];
            return decode_chunk(rd, d, mask, rd->raw, (size_t)stored, dst + (offset[0] - (hsize_t)a) * row_bytes,
                                d->chunk_bytes, why, whylen);
        }
        cc->valid = 0;
        if (grow(&cc->buf, &cc->cap, d->chunk_bytes)) { snprintf(why, whylen, "out of memory"); return -1; }
        if (decode_chunk(rd, d, mask, rd->raw, (size_t)stored, cc->buf, d->chunk_bytes, why, whylen)) return -1;
        cc->serial = sh->serial;
        memcpy(cc->offset, offset, sizeof(hsize_t) * (size_t)d->rank);
        cc->valid = 1;
    }
    place_chunk(d, offset, cc->buf, a, b, dst);
    return 0;
}

// Rows [a, b) as stored (at the stored type's width).
static int read_rows_stored(DlReader *rd, const DlShard *sh, int slot, int64_t a, int64_t b, void *dst,
                            int64_t sample, char *err, size_t errlen) {
    const DlDataset *d = &sh->ds[slot];
    if (b <= a) return 0;
    if (!d->raw_ok) return read_rows_hdf5(sh, d, a, b, dst, sample, err, errlen);
    int r = d->rank;
    hsize_t offset[DL_MAX_RANK] = {0};
    for (hsize_t row = (hsize_t)a / d->chunk[0] * d->chunk[0]; row < (hsize_t)b; row += d->chunk[0]) {
        for (int i = 1; i < r; i++) offset[i] = 0;
        offset[0] = row;
        for (;;) {
            char why[200] = "";
            int rc = read_one_chunk(rd, sh, slot, offset, a, b, dst, why, sizeof why);
            if (rc == 1) return read_rows_hdf5(sh, d, a, b, dst, sample, err, errlen);
            if (rc < 0) {
                snprintf(err, errlen, "%s: %s: chunk at row %llu does not decode at sample %lld (%s); the file is damaged, rewrite it",
                         sh->path, d->path, (unsigned long long)row, (long long)sample, why);
                return -1;
            }
            int i = r - 1;   // next chunk along the inner dimensions
            while (i >= 1 && (offset[i] += d->chunk[i]) >= d->dims[i]) { offset[i] = 0; i--; }
            if (i < 1) break;
        }
    }
    return 0;
}

// ---- fields stored wider than their type ----------------------------------------

static int fits(DlKind field, int64_t v) {
    switch (field) {
    case DL_U8: return v >= 0 && v <= UINT8_MAX;
    case DL_I8: return v >= INT8_MIN && v <= INT8_MAX;
    case DL_I32: return v >= INT32_MIN && v <= INT32_MAX;
    default: return 1;   // DL_I64
    }
}

// count values of stored kind `kind` (src) into the field's type (dst); a
// value that does not fit is a bad sample.
static int narrow(const DlShard *sh, const DlDataset *d, const uint8_t *src, void *dst, size_t count, int64_t sample,
                  char *err, size_t errlen) {
    for (size_t i = 0; i < count; i++) {
        if (d->field == DL_F32) {   // from float64
            double x;
            memcpy(&x, src + i * 8, 8);
            float f = (float)x;
            if (isfinite(x) && !isfinite(f)) {
                snprintf(err, errlen, "%s: %s: value %g (element %zu) does not fit float32 at sample %lld", sh->path,
                         d->path, x, i, (long long)sample);
                return -1;
            }
            ((float *)dst)[i] = f;
            continue;
        }
        int64_t v;
        int over = 0;
        switch (d->kind) {
        case DL_U8: v = src[i]; break;
        case DL_I8: v = (int8_t)src[i]; break;
        case DL_I16: { int16_t x; memcpy(&x, src + i * 2, 2); v = x; break; }
        case DL_U16: { uint16_t x; memcpy(&x, src + i * 2, 2); v = x; break; }
        case DL_I32: { int32_t x; memcpy(&x, src + i * 4, 4); v = x; break; }
        case DL_U32: { uint32_t x; memcpy(&x, src + i * 4, 4); v = x; break; }
        case DL_U64: { uint64_t x; memcpy(&x, src + i * 8, 8); over = x > INT64_MAX; v = (int64_t)x; break; }
        default: { memcpy(&v, src + i * 8, 8); break; }   // DL_I64
        }
        if (over || !fits(d->field, v)) {
            char value[32];
            if (over) snprintf(value, sizeof value, "%llu", (unsigned long long)(uint64_t)v);
            else snprintf(value, sizeof value, "%lld", (long long)v);
            snprintf(err, errlen, "%s: %s: value %s (element %zu) does not fit %s at sample %lld", sh->path, d->path,
                     value, i, dl_kind_name(d->field), (long long)sample);
            return -1;
        }
        switch (d->field) {
        case DL_U8: ((uint8_t *)dst)[i] = (uint8_t)v; break;
        case DL_I8: ((int8_t *)dst)[i] = (int8_t)v; break;
        case DL_I32: ((int32_t *)dst)[i] = (int32_t)v; break;
        default: ((int64_t *)dst)[i] = v; break;
        }
    }
    return 0;
}

int dl_read_rows(DlReader *rd, const DlShard *sh, int slot, int64_t a, int64_t b, void *dst,
                 int64_t sample, char *err, size_t errlen) {
    const DlDataset *d = &sh->ds[slot];
    if (d->field == d->kind || b <= a) return read_rows_stored(rd, sh, slot, a, b, dst, sample, err, errlen);
    size_t count = (size_t)(b - a);
    for (int i = 1; i < d->rank; i++) count *= d->dims[i];
    if (grow(&rd->wide, &rd->wide_cap, count * dl_mem_size(d->kind))) {
        snprintf(err, errlen, "%s: %s: out of memory at sample %lld", sh->path, d->path, (long long)sample);
        return -1;
    }
    if (read_rows_stored(rd, sh, slot, a, b, rd->wide, sample, err, errlen)) return -1;
    return narrow(sh, d, rd->wide, dst, count, sample, err, errlen);
}
