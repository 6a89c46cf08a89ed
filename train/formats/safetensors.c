// safetensors.c: writer, validating reader and Graph helpers (safetensors.h).
#include "train/formats/safetensors.h"
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/formats/fsutil.h"   // defines: fs_fsync_parent

// Tensor bytes go to and from the file with memcpy/fwrite: the format is
// little-endian, and so is every machine distil targets.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

// The reference refuses headers over 100 MB; so do we.
#define ST_MAX_HEADER 100000000u

// ---- dtypes ---------------------------------------------------------------------

// rank: position in the reference's Dtype enum (ordered by width), which
// its writer sorts by, widest first, before the name.
static const struct { const char *name; size_t size; int rank; } dtypes[ST_DTYPE_COUNT] = {
    [ST_F32] = { "F32", 4, 12 },  [ST_F16] = { "F16", 2, 8 },   [ST_BF16] = { "BF16", 2, 9 },
    [ST_F64] = { "F64", 8, 14 },  [ST_I64] = { "I64", 8, 15 },  [ST_I32] = { "I32", 4, 10 },
    [ST_I16] = { "I16", 2, 6 },   [ST_I8] = { "I8", 1, 2 },     [ST_U64] = { "U64", 8, 16 },
    [ST_U32] = { "U32", 4, 11 },  [ST_U16] = { "U16", 2, 7 },   [ST_U8] = { "U8", 1, 1 },
    [ST_BOOL] = { "BOOL", 1, 0 }, [ST_F8_E5M2] = { "F8_E5M2", 1, 3 }, [ST_F8_E4M3] = { "F8_E4M3", 1, 4 },
    [ST_F8_E8M0] = { "F8_E8M0", 1, 5 }, [ST_C64] = { "C64", 8, 13 },
};

const char *st_dtype_name(StDtype dt) { return (unsigned)dt < ST_DTYPE_COUNT ? dtypes[dt].name : "?"; }
size_t st_dtype_size(StDtype dt) { return (unsigned)dt < ST_DTYPE_COUNT ? dtypes[dt].size : 0; }

int st_dtype_parse(const char *name) {
    for (int i = 0; i < ST_DTYPE_COUNT; i++)
        if (strcmp(dtypes[i].name, name) == 0) return i;
    return -1;
}

// ---- half precision --------------------------------------------------------------

static uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

uint16_t st_f32_to_f16(float f) {
    uint32_t x = f32_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    uint32_t a = x & 0x7fffffffu;
    if (a > 0x7f800000u) return sign | 0x7e00;            // NaN: a quiet NaN
    if (a >= 0x477ff000u) return sign | 0x7c00;           // >= 65520 rounds past 65504: infinity
    if (a >= 0x38800000u) {                               // >= 2^-14: a normal half
        uint32_t r = a - 0x38000000u;                     // rebias the exponent, 127 -> 15
        r += 0xfffu + ((r >> 13) & 1u);                   // round the 13 dropped bits to nearest even
        return sign | (uint16_t)(r >> 13);
    }
    if (a <= 0x33000000u) return sign;                    // <= 2^-25: half-way to the smallest subnormal or below, to (even) zero
    // A subnormal half counts units of 2^-24. The float is m * 2^(e-150)
    // with a 24-bit m, i.e. m * 2^(e-126) units: shift right by 126 - e.
    uint32_t e = a >> 23, m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126 - e;                             // 14..24
    uint32_t q = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
    if (rem > half || (rem == half && (q & 1u))) q++;     // 0x400 is the smallest normal: still right
    return sign | (uint16_t)q;
}

float st_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
    if (e == 0x1f) return bits_f32(sign | 0x7f800000u | (m << 13));
    if (e) return bits_f32(sign | ((e + 112) << 23) | (m << 13));
    float v = (float)m * 0x1p-24f;                        // subnormal (or zero): exact in fp32
    return bits_f32(sign | f32_bits(v));
}

// ---- shared helpers ---------------------------------------------------------------

static char *fmt_shape(int ndim, const int64_t *shape, char *buf, size_t len) {
    size_t at = 0;
    at += (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, i ? ",%lld" : "%lld", (long long)shape[i]);
    if (at < len) snprintf(buf + at, len - at, "]");
    return buf;
}

// Product of the dims times elem_size, or -1 on overflow past limit.
static int shape_bytes(int ndim, const int64_t *shape, size_t elem_size, uint64_t limit, uint64_t *numel, uint64_t *bytes) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) if (shape[i] == 0) n = 0;
    for (int i = 0; i < ndim && n; i++) {
        if ((uint64_t)shape[i] > limit / n) return -1;
        n *= (uint64_t)shape[i];
    }
    if (elem_size && n > limit / elem_size) return -1;
    *numel = n;
    *bytes = n * elem_size;
    return 0;
}

// ---- writing ------------------------------------------------------------------------

typedef struct WriteOrder { const StTensor *t; StDtype dtype; } WriteOrder;

static int by_rank_then_name(const void *a, const void *b) {
    const WriteOrder *x = a, *y = b;
    if (dtypes[x->dtype].rank != dtypes[y->dtype].rank)
        return dtypes[y->dtype].rank - dtypes[x->dtype].rank;
    return strcmp(x->t->name, y->t->name);
}

static int by_meta_key(const void *a, const void *b) {
    return strcmp(((const StMeta *)a)->key, ((const StMeta *)b)->key);
}

static int check_inputs(const StTensor *tensors, int n, const StMeta *meta, int n_meta, StDtype out_dtype,
                        char *err, size_t errlen) {
    if (out_dtype != ST_F32 && out_dtype != ST_F16 && out_dtype != ST_BF16) {
        snprintf(err, errlen, "safetensors: cannot write float tensors as %s (F32, F16 or BF16)", st_dtype_name(out_dtype));
        return -1;
    }
    if (n < 0 || n_meta < 0) { snprintf(err, errlen, "safetensors: negative tensor or metadata count"); return -1; }
    for (int i = 0; i < n; i++) {
        const StTensor *t = &tensors[i];
        if (!t->name || !t->name[0] || !strcmp(t->name, "__metadata__")) {
            snprintf(err, errlen, "safetensors: tensor %d has no name or the reserved name __metadata__", i);
            return -1;
        }
        if (t->ndim < 0 || t->ndim > ST_MAX_DIMS) {
            snprintf(err, errlen, "safetensors: tensor %s: %d dims (0..%d allowed)", t->name, t->ndim, ST_MAX_DIMS);
            return -1;
        }
        for (int d = 0; d < t->ndim; d++)
            if (t->shape[d] < 0) { snprintf(err, errlen, "safetensors: tensor %s: negative dim %d", t->name, d); return -1; }
        if (t->raw && (unsigned)t->raw_dtype >= ST_DTYPE_COUNT) {
            snprintf(err, errlen, "safetensors: tensor %s: unknown raw dtype %d", t->name, (int)t->raw_dtype);
            return -1;
        }
        uint64_t numel = 0, bytes = 0;
        if (shape_bytes(t->ndim, t->shape, 8, (uint64_t)1 << 62, &numel, &bytes)) {
            snprintf(err, errlen, "safetensors: tensor %s: shape too large", t->name);
            return -1;
        }
        if (numel && !t->raw && !t->data) { snprintf(err, errlen, "safetensors: tensor %s has no data", t->name); return -1; }
    }
    for (int i = 0; i < n_meta; i++)
        if (!meta[i].key || !meta[i].value) { snprintf(err, errlen, "safetensors: metadata entry %d has no key or value", i); return -1; }
    return 0;
}

static int by_str(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

// Names and keys must be unique: checked on sorted copies.
static int check_unique(const StTensor *tensors, int n, const StMeta *sorted_meta, int n_meta, char *err, size_t errlen) {
    const char **names = malloc((size_t)(n ? n : 1) * sizeof *names);
    if (!names) { snprintf(err, errlen, "safetensors: out of memory"); return -1; }
    for (int i = 0; i < n; i++) names[i] = tensors[i].name;
    qsort(names, (size_t)n, sizeof *names, by_str);
    int rc = 0;
    for (int i = 1; i < n && !rc; i++)
        if (!strcmp(names[i - 1], names[i])) {
            snprintf(err, errlen, "safetensors: tensor name %s given twice", names[i]);
            rc = -1;
        }
    free(names);
    for (int i = 1; i < n_meta && !rc; i++)
        if (!strcmp(sorted_meta[i - 1].key, sorted_meta[i].key)) {
            snprintf(err, errlen, "safetensors: metadata key %s given twice", sorted_meta[i].key);
            rc = -1;
        }
    return rc;
}

// One tensor's entry: {"dtype": ..., "shape": [...], "data_offsets": [begin, end]}.
static json_t *tensor_entry(const StTensor *t, StDtype dtype, uint64_t begin, uint64_t end) {
    json_t *shape = json_array();
    for (int d = 0; shape && d < t->ndim; d++)
        if (json_array_append_new(shape, json_integer(t->shape[d]))) { json_decref(shape); shape = NULL; }
    return json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(dtype), "shape", shape, "data_offsets",
                     (json_int_t)begin, (json_int_t)end);
}

static int out_of_memory(const char *path, char *err, size_t errlen) {
    snprintf(err, errlen, "%s: out of memory building the header", path);
    return -1;
}

// The header JSON, padded with spaces to a multiple of 8, into *out.
// jansson refuses strings that are not UTF-8: such a name or value is named.
static int build_header(const char *path, const WriteOrder *order, int n, const StMeta *meta, int n_meta, char **out,
                        size_t *out_len, char *err, size_t errlen) {
    json_t *h = json_object(), *m = n_meta ? json_object() : NULL;
    int rc = 0;
    if (!h || (n_meta && (!m || json_object_set(h, "__metadata__", m)))) rc = out_of_memory(path, err, errlen);
    for (int i = 0; i < n_meta && !rc; i++) {
        json_t *value = json_string(meta[i].value);
        if (!value || json_object_set_new(m, meta[i].key, value)) {
            snprintf(err, errlen, "%s: metadata \"%.100s\": the key or its value is not valid UTF-8", path, meta[i].key);
            rc = -1;
        }
    }
    uint64_t offset = 0;
    for (int i = 0; i < n && !rc; i++) {
        const StTensor *t = order[i].t;
        uint64_t numel = 0, bytes = 0;
        shape_bytes(t->ndim, t->shape, st_dtype_size(order[i].dtype), UINT64_MAX, &numel, &bytes);
        json_t *entry = tensor_entry(t, order[i].dtype, offset, offset + bytes);
        if (!entry) rc = out_of_memory(path, err, errlen);
        else if (json_object_set_new(h, t->name, entry)) {
            snprintf(err, errlen, "%s: tensor name \"%.100s\" is not valid UTF-8", path, t->name);
            rc = -1;
        }
        offset += bytes;
    }
    char *text = rc ? NULL : json_dumps(h, JSON_COMPACT);
    json_decref(m);
    json_decref(h);
    if (rc) return -1;
    // Pad so that the data section starts 8-byte aligned, as the reference does.
    size_t len = text ? strlen(text) : 0, padded = (len + 7) / 8 * 8;
    char *buf = text ? realloc(text, padded + 1) : NULL;
    if (!buf) { free(text); return out_of_memory(path, err, errlen); }
    memset(buf + len, ' ', padded - len);
    buf[padded] = 0;
    *out = buf;
    *out_len = padded;
    return 0;
}

// One tensor's bytes: raw as they are, fp32 directly, or converted in
// chunks so that no copy of a whole tensor is made.
static int write_tensor_data(FILE *fp, const StTensor *t, StDtype dtype) {
    uint64_t numel = 0, bytes = 0;
    shape_bytes(t->ndim, t->shape, st_dtype_size(dtype), UINT64_MAX, &numel, &bytes);
    if (!numel) return 0;
    if (t->raw) return fwrite(t->raw, 1, bytes, fp) == bytes ? 0 : -1;
    if (dtype == ST_F32) return fwrite(t->data, sizeof(float), numel, fp) == numel ? 0 : -1;
    uint16_t chunk[4096];
    for (uint64_t i = 0; i < numel;) {
        size_t k = numel - i < 4096 ? (size_t)(numel - i) : 4096;
        for (size_t j = 0; j < k; j++)
            chunk[j] = dtype == ST_F16 ? st_f32_to_f16(t->data[i + j]) : f32_to_bf16(t->data[i + j]);
        if (fwrite(chunk, sizeof(uint16_t), k, fp) != k) return -1;
        i += k;
    }
    return 0;
}

static int write_file(FILE *fp, const char *header, size_t header_len, const WriteOrder *order, int n) {
    uint8_t len_le[8];
    for (int i = 0; i < 8; i++) len_le[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
    if (fwrite(len_le, 1, 8, fp) != 8 || fwrite(header, 1, header_len, fp) != header_len) return -1;
    for (int i = 0; i < n; i++)
        if (write_tensor_data(fp, order[i].t, order[i].dtype)) return -1;
    if (fflush(fp) || fsync(fileno(fp))) return -1;
    return 0;
}


int st_write(const char *path, const StTensor *tensors, int n, const StMeta *meta, int n_meta,
             StDtype out_dtype, char *err, size_t errlen) {
    if (check_inputs(tensors, n, meta, n_meta, out_dtype, err, errlen)) return -1;
    int rc = -1;
    char *header = NULL, *tmp = NULL;
    WriteOrder *order = malloc((size_t)(n ? n : 1) * sizeof *order);
    StMeta *sorted_meta = malloc((size_t)(n_meta ? n_meta : 1) * sizeof *sorted_meta);
    size_t header_len = 0;
    if (!order || !sorted_meta) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    for (int i = 0; i < n; i++) order[i] = (WriteOrder){ &tensors[i], tensors[i].raw ? tensors[i].raw_dtype : out_dtype };
    qsort(order, (size_t)n, sizeof *order, by_rank_then_name);
    if (n_meta) memcpy(sorted_meta, meta, (size_t)n_meta * sizeof *meta);
    qsort(sorted_meta, (size_t)n_meta, sizeof *sorted_meta, by_meta_key);
    if (check_unique(tensors, n, sorted_meta, n_meta, err, errlen)) goto done;
    if (build_header(path, order, n, sorted_meta, n_meta, &header, &header_len, err, errlen)) goto done;
    size_t tmp_len = strlen(path) + 32;
    tmp = malloc(tmp_len);
    if (!tmp) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    snprintf(tmp, tmp_len, "%s.tmp.%ld", path, (long)getpid());
    FILE *fp = fopen(tmp, "wb");
    if (!fp) { snprintf(err, errlen, "%s: cannot create %s: %s", path, tmp, strerror(errno)); goto done; }
    errno = 0;
    int werr = write_file(fp, header, header_len, order, n) ? (errno ? errno : EIO) : 0;
    if (fclose(fp) && !werr) werr = errno ? errno : EIO;
    if (werr) {
        snprintf(err, errlen, "%s: writing %s failed: %s (disk full?)", path, tmp, strerror(werr));
        unlink(tmp);
        goto done;
    }
    if (rename(tmp, path)) {
        snprintf(err, errlen, "%s: cannot rename %s over it: %s", path, tmp, strerror(errno));
        unlink(tmp);
        goto done;
    }
    if (fs_fsync_parent(path)) {
        snprintf(err, errlen, "%s: written, but syncing its directory failed: %s", path, strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(order);
    free(sorted_meta);
    free(header);
    free(tmp);
    return rc;
}

// ---- reading ------------------------------------------------------------------------

static int read_whole_file(const char *path, uint8_t **bytes, size_t *size, char *err, size_t errlen) {
    FILE *fp = fopen(path, "rb");
    if (!fp) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return -1; }
    struct stat st;
    if (fstat(fileno(fp), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(fp);
        return -1;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) {
        snprintf(err, errlen, "%s: out of memory reading %zu bytes", path, n);
        fclose(fp);
        return -1;
    }
    size_t got = fread(buf, 1, n, fp);
    fclose(fp);
    if (got != n) {
        snprintf(err, errlen, "%s: read %zu of its %zu bytes (changed while reading, or an I/O error)", path, got, n);
        free(buf);
        return -1;
    }
    *bytes = buf;
    *size = n;
    return 0;
}

// One header entry "name": {"dtype", "shape", "data_offsets"} into *t.
static int parse_tensor_entry(const StFile *f, const char *name, const json_t *v, size_t data_len, StInfo *t,
                              char *err, size_t errlen) {
    char msg[512], shape_s[192];
    const char *dtype_s, *k;
    const json_t *shape, *offs, *member;
    int64_t begin, end;
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: tensor \"%.100s\": header entry is %s, not an object", f->path, name, jsonio_type(v));
        return -1;
    }
    json_object_foreach((json_t *)v, k, member) {
        if (strcmp(k, "dtype") && strcmp(k, "shape") && strcmp(k, "data_offsets")) {
            snprintf(err, errlen, "%s: tensor \"%.100s\": unknown field \"%.64s\" (dtype, shape, data_offsets expected)", f->path, name, k);
            return -1;
        }
    }
    if (jsonio_get_string(v, "dtype", &dtype_s, msg, sizeof msg)) goto bad;
    int dt = st_dtype_parse(dtype_s);
    if (dt < 0) {
        snprintf(err, errlen, "%s: tensor \"%.100s\": unknown or unsupported dtype \"%.32s\"", f->path, name, dtype_s);
        return -1;
    }
    shape = json_object_get(v, "shape");
    offs = json_object_get(v, "data_offsets");
    if (!json_is_array(shape)) { snprintf(msg, sizeof msg, "\"shape\" missing or not an array"); goto bad; }
    if (!json_is_array(offs) || json_array_size(offs) != 2) { snprintf(msg, sizeof msg, "\"data_offsets\" missing or not an array of 2"); goto bad; }
    if (json_array_size(shape) > ST_MAX_DIMS) { snprintf(msg, sizeof msg, "%zu dims (at most %d supported)", json_array_size(shape), ST_MAX_DIMS); goto bad; }
    t->name = name;
    t->dtype = (StDtype)dt;
    t->ndim = (int)json_array_size(shape);
    for (int d = 0; d < t->ndim; d++) {
        if (jsonio_int64(json_array_get(shape, d), "a shape entry", &t->shape[d], msg, sizeof msg)) goto bad;
        if (t->shape[d] < 0) { snprintf(msg, sizeof msg, "negative dim in shape"); goto bad; }
    }
    if (jsonio_int64(json_array_get(offs, 0), "data_offsets[0]", &begin, msg, sizeof msg) ||
        jsonio_int64(json_array_get(offs, 1), "data_offsets[1]", &end, msg, sizeof msg)) goto bad;
    if (begin < 0 || end < begin) { snprintf(msg, sizeof msg, "data_offsets [%lld,%lld] are not 0 <= begin <= end", (long long)begin, (long long)end); goto bad; }
    if ((uint64_t)end > data_len) {
        snprintf(msg, sizeof msg, "data_offsets [%lld,%lld] run past the end of the data section (%zu bytes): the file is truncated or corrupt",
                 (long long)begin, (long long)end, data_len);
        goto bad;
    }
    uint64_t numel = 0, bytes = 0;
    size_t span = (size_t)(end - begin);
    fmt_shape(t->ndim, t->shape, shape_s, sizeof shape_s);
    if (shape_bytes(t->ndim, t->shape, st_dtype_size(t->dtype), UINT64_MAX, &numel, &bytes)) {
        snprintf(msg, sizeof msg, "shape %s of %s overflows 64 bits", shape_s, st_dtype_name(t->dtype));
        goto bad;
    }
    if (bytes != span) {
        snprintf(msg, sizeof msg, "shape %s of %s is %llu bytes, but data_offsets [%lld,%lld] span %zu", shape_s,
                 st_dtype_name(t->dtype), (unsigned long long)bytes, (long long)begin, (long long)end, span);
        goto bad;
    }
    t->numel = (size_t)numel;
    t->nbytes = span;
    t->data = f->bytes + f->data_start + begin;
    return 0;
bad:
    snprintf(err, errlen, "%s: tensor \"%.100s\": %s", f->path, name, msg);
    return -1;
}

static int parse_metadata(StFile *f, const json_t *v, char *err, size_t errlen) {
    if (!json_is_object(v)) {
        snprintf(err, errlen, "%s: __metadata__ is %s, not an object of strings", f->path, jsonio_type(v));
        return -1;
    }
    size_t n = json_object_size(v);
    f->meta = malloc((n ? n : 1) * sizeof *f->meta);
    if (!f->meta) { snprintf(err, errlen, "%s: out of memory", f->path); return -1; }
    const char *key;
    const json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        if (!json_is_string(value)) {
            snprintf(err, errlen, "%s: __metadata__ \"%.100s\" is %s; metadata values must be strings", f->path, key,
                     jsonio_type(value));
            return -1;
        }
        f->meta[f->n_meta++] = (StMeta){ key, json_string_value(value) };
    }
    qsort(f->meta, (size_t)f->n_meta, sizeof *f->meta, by_meta_key);
    return 0;
}

static int by_offset(const void *a, const void *b) {
    const StInfo *x = a, *y = b;
    if (x->data != y->data) return x->data < y->data ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const StInfo *)a)->name, ((const StInfo *)b)->name);
}

// The tensors must tile the data section: no overlap, no gap, nothing left over.
static int check_coverage(StFile *f, size_t data_len, char *err, size_t errlen) {
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_offset);
    const uint8_t *data = f->bytes + f->data_start;
    size_t expected = 0;
    for (int i = 0; i < f->n_tensors; i++) {
        const StInfo *t = &f->tensors[i];
        size_t begin = (size_t)(t->data - data);
        if (begin < expected) {
            snprintf(err, errlen, "%s: tensor \"%.100s\" (bytes %zu..%zu) overlaps \"%.100s\"", f->path, t->name,
                     begin, begin + t->nbytes, f->tensors[i - 1].name);
            return -1;
        }
        if (begin > expected) {
            snprintf(err, errlen, "%s: bytes %zu..%zu of the data section belong to no tensor (before \"%.100s\")",
                     f->path, expected, begin, t->name);
            return -1;
        }
        expected = begin + t->nbytes;
    }
    if (expected != data_len) {
        snprintf(err, errlen, "%s: the data section has %zu bytes but the tensors cover %zu: trailing bytes, or a corrupt header",
                 f->path, data_len, expected);
        return -1;
    }
    return 0;
}

static int parse_header(StFile *f, char *err, size_t errlen) {
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)f->bytes[i] << (8 * i);
    if (n > f->size - 8) {
        snprintf(err, errlen, "%s: header length %llu runs past the end of the file (%zu bytes): truncated, or not a safetensors file",
                 f->path, (unsigned long long)n, f->size);
        return -1;
    }
    if (n > ST_MAX_HEADER) {
        snprintf(err, errlen, "%s: header length %llu is over the %u-byte limit", f->path, (unsigned long long)n, ST_MAX_HEADER);
        return -1;
    }
    if (n < 2 || f->bytes[8] != '{') {
        snprintf(err, errlen, "%s: the header does not start with '{': not a safetensors file", f->path);
        return -1;
    }
    f->data_start = 8 + (size_t)n;
    char jerr[256];
    f->header = jsonio_parse((const char *)f->bytes + 8, (size_t)n, jerr, sizeof jerr);
    if (!f->header) { snprintf(err, errlen, "%s: header JSON (which starts at file byte 8): %s", f->path, jerr); return -1; }
    if (!json_is_object(f->header)) {
        snprintf(err, errlen, "%s: the header is %s, not an object", f->path, jsonio_type(f->header));
        return -1;
    }
    return 0;
}

StFile *st_open(const char *path, char *err, size_t errlen) {
    StFile *f = calloc(1, sizeof *f);
    if (!f || !(f->path = strdup(path))) { snprintf(err, errlen, "%s: out of memory", path); free(f); return NULL; }
    if (read_whole_file(path, &f->bytes, &f->size, err, errlen)) goto bad;
    if (f->size < 8) {
        snprintf(err, errlen, "%s: %zu bytes, too short for a safetensors file (8-byte header length, then the header): truncated?", path, f->size);
        goto bad;
    }
    if (parse_header(f, err, errlen)) goto bad;
    size_t data_len = f->size - f->data_start, n = json_object_size(f->header);
    f->tensors = calloc(n ? n : 1, sizeof *f->tensors);
    if (!f->tensors) { snprintf(err, errlen, "%s: out of memory", path); goto bad; }
    const char *key;
    const json_t *entry;
    json_object_foreach(f->header, key, entry) {
        if (!strcmp(key, "__metadata__")) {
            if (parse_metadata(f, entry, err, errlen)) goto bad;
            continue;
        }
        if (parse_tensor_entry(f, key, entry, data_len, &f->tensors[f->n_tensors], err, errlen)) goto bad;
        f->n_tensors++;
    }
    if (check_coverage(f, data_len, err, errlen)) goto bad;
    qsort(f->tensors, (size_t)f->n_tensors, sizeof *f->tensors, by_name);
    return f;
bad:
    st_close(f);
    return NULL;
}

void st_close(StFile *f) {
    if (!f) return;
    json_decref(f->header);
    free(f->tensors);
    free(f->meta);
    free(f->bytes);
    free(f->path);
    free(f);
}

int st_find(const StFile *f, const char *name) {
    int lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(f->tensors[mid].name, name);
        if (!c) return mid;
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return -1;
}

const char *st_meta(const StFile *f, const char *key) {
    for (int i = 0; i < f->n_meta; i++)
        if (!strcmp(f->meta[i].key, key)) return f->meta[i].value;
    return NULL;
}

int st_read_f32_at(const StFile *f, int index, float *dst, size_t n, char *err, size_t errlen) {
    if (index < 0 || index >= f->n_tensors) {
        snprintf(err, errlen, "%s: no tensor %d (the file has %d)", f->path, index, f->n_tensors);
        return -1;
    }
    const StInfo *t = &f->tensors[index];
    if (n != t->numel) {
        snprintf(err, errlen, "%s: tensor \"%s\" has %zu elements, %zu were asked for", f->path, t->name, t->numel, n);
        return -1;
    }
    switch (t->dtype) {
    case ST_F32:
        memcpy(dst, t->data, n * sizeof(float));
        return 0;
    case ST_F16:
    case ST_BF16:
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            memcpy(&h, t->data + 2 * i, 2);
            dst[i] = t->dtype == ST_F16 ? st_f16_to_f32(h) : bf16_to_f32(h);
        }
        return 0;
    case ST_F64:
        for (size_t i = 0; i < n; i++) {
            double d;
            memcpy(&d, t->data + 8 * i, 8);
            dst[i] = (float)d;
        }
        return 0;
    default:
        snprintf(err, errlen, "%s: tensor \"%s\" is %s, not a float tensor (F32, F16, BF16 or F64)", f->path, t->name,
                 st_dtype_name(t->dtype));
        return -1;
    }
}

int st_read_f32(const StFile *f, const char *name, float *dst, size_t n, char *err, size_t errlen) {
    int i = st_find(f, name);
    if (i < 0) { snprintf(err, errlen, "%s: no tensor named \"%s\"", f->path, name); return -1; }
    return st_read_f32_at(f, i, dst, n, err, errlen);
}

// ---- a Graph's parameters ---------------------------------------------------------

int st_save_graph_params(const char *path, const Graph *g, const StMeta *meta, int n_meta, StDtype dtype,
                         char *err, size_t errlen) {
    int n = g->n_params;
    StTensor *ts = calloc((size_t)(n ? n : 1), sizeof *ts);
    if (!ts) { snprintf(err, errlen, "%s: out of memory", path); return -1; }
    int rc = -1;
    for (int i = 0; i < n; i++) {
        const Tensor *p = g->params[i];
        if (!p->data) { snprintf(err, errlen, "%s: parameter %s has no storage (plan the graph first)", path, p->name); goto done; }
        float *host = malloc((p->numel ? p->numel : 1) * sizeof(float));
        if (!host) { snprintf(err, errlen, "%s: out of memory copying %s", path, p->name); goto done; }
        tensor_to_host_f32(p, host);
        ts[i].name = p->name;
        ts[i].ndim = p->ndim;
        for (int d = 0; d < p->ndim; d++) ts[i].shape[d] = p->shape[d];
        ts[i].data = host;
    }
    rc = st_write(path, ts, n, meta, n_meta, dtype, err, errlen);
done:
    for (int i = 0; i < n; i++) free((void *)ts[i].data);
    free(ts);
    return rc;
}

static int selected(const char *name, const char *const *patterns, int n_patterns) {
    if (n_patterns <= 0) return 1;
    for (int i = 0; i < n_patterns; i++)
        if (fnmatch(patterns[i], name, 0) == 0) return 1;
    return 0;
}

static int same_shape(const Tensor *p, const StInfo *t) {
    if (p->ndim != t->ndim) return 0;
    for (int d = 0; d < p->ndim; d++)
        if ((int64_t)p->shape[d] != t->shape[d]) return 0;
    return 1;
}

// Pass 1: match names and shapes, count, and refuse what cannot be loaded.
// match[i] is the file index of model parameter i, or -1.
static int plan_load(const StFile *f, const Graph *g, const char *const *patterns, int n_patterns, int strict,
                     int *match, StLoadReport *rep, char *err, size_t errlen) {
    const char *first_missing = NULL, *first_unexpected = NULL;
    char *used = calloc((size_t)(f->n_tensors ? f->n_tensors : 1), 1);
    if (!used) { snprintf(err, errlen, "%s: out of memory", f->path); return -1; }
    int rc = -1;
    for (int i = 0; i < g->n_params; i++) {
        const Tensor *p = g->params[i];
        match[i] = -1;
        if (!selected(p->name, patterns, n_patterns)) { rep->skipped++; continue; }
        int k = st_find(f, p->name);
        if (k < 0) { rep->missing++; if (!first_missing) first_missing = p->name; continue; }
        const StInfo *t = &f->tensors[k];
        if (!same_shape(p, t)) {
            char fs[192], ms[192];
            int64_t mshape[TENSOR_MAX_DIMS];
            for (int d = 0; d < p->ndim; d++) mshape[d] = p->shape[d];
            snprintf(err, errlen, "%s: %s: shape %s in the file, %s in the model", f->path, p->name,
                     fmt_shape(t->ndim, t->shape, fs, sizeof fs), fmt_shape(p->ndim, mshape, ms, sizeof ms));
            goto done;
        }
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) {
            snprintf(err, errlen, "%s: %s is %s in the file; a parameter needs a float dtype", f->path, p->name, st_dtype_name(t->dtype));
            goto done;
        }
        if (!p->data) { snprintf(err, errlen, "%s: parameter %s has no storage (plan the graph first)", f->path, p->name); goto done; }
        match[i] = k;
        used[k] = 1;
    }
    for (int k = 0; k < f->n_tensors; k++) {
        if (used[k]) continue;
        if (!selected(f->tensors[k].name, patterns, n_patterns)) { rep->skipped++; continue; }
        rep->unexpected++;
        if (!first_unexpected) first_unexpected = f->tensors[k].name;
    }
    if (strict && rep->missing) {
        snprintf(err, errlen, "%s: model parameter %s is not in the file (%d missing; a checkpoint of another model?)",
                 f->path, first_missing, rep->missing);
        goto done;
    }
    if (strict && rep->unexpected) {
        snprintf(err, errlen, "%s: tensor \"%.100s\" in the file is no parameter of the model (%d such; a checkpoint of another model?)",
                 f->path, first_unexpected, rep->unexpected);
        goto done;
    }
    rc = 0;
done:
    free(used);
    return rc;
}

int st_load_graph_params(const char *path, Graph *g, const char *const *only_patterns, int n_patterns,
                         int strict, StLoadReport *report, char *err, size_t errlen) {
    StLoadReport rep = { 0 };
    if (report) *report = rep;
    StFile *f = st_open(path, err, errlen);
    if (!f) return -1;
    int rc = -1;
    float *host = NULL;
    int *match = malloc((size_t)(g->n_params ? g->n_params : 1) * sizeof *match);
    if (!match) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    if (plan_load(f, g, only_patterns, n_patterns, strict, match, &rep, err, errlen)) goto done;
    size_t max = 1;
    for (int i = 0; i < g->n_params; i++)
        if (match[i] >= 0 && g->params[i]->numel > max) max = g->params[i]->numel;
    host = malloc(max * sizeof *host);
    if (!host) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    for (int i = 0; i < g->n_params; i++) {
        if (match[i] < 0) continue;
        Tensor *p = g->params[i];
        if (st_read_f32_at(f, match[i], host, p->numel, err, errlen)) goto done;
        tensor_from_host_f32(p, host);
        rep.loaded++;
    }
    rc = 0;
done:
    if (report) *report = rep;
    free(host);
    free(match);
    st_close(f);
    return rc;
}
