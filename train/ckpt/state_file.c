// state_file.c: state.bin, the training state of a checkpoint (see
// checkpoint.h; docs/checkpoints.md gives the layout).
//
// A 48-byte header (magic, version, sizes, the CRC-32 of the payload and of
// the header itself), then one zstd frame of the payload with zstd's content
// checksum on. Every field is little-endian whatever the host. The reader
// checks the file size against the header before it decompresses, and every
// length inside the payload against what is left, so a truncated, flipped
// or foreign file is an error line, never a crash or a huge allocation.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>              // defines: crc32
#include <zstd.h>              // defines: ZSTD_compress2, ZSTD_decompress
#include <omp.h>               // defines: omp_get_max_threads
#include "kernels/backend.h"   // defines: backend_to_host
#include "train/ckpt/checkpoint.h"

#define ZSTD_LEVEL 3           // the moments are noise-like floats: higher levels gain little and cost seconds
#define MAX_PAYLOAD (64ull << 30)
#define MAX_NAME 4096

// ---- writing: a growable byte buffer -------------------------------------------

typedef struct Bytes {
    uint8_t *p;
    size_t n, cap;
    int oom;
} Bytes;

// Room for n more bytes; 0, or -1 (and b->oom) when memory runs out.
static int reserve(Bytes *b, size_t n) {
    if (b->oom) return -1;
    if (b->n + n <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->n + n) cap *= 2;
    uint8_t *p = realloc(b->p, cap);
    if (!p) { b->oom = 1; return -1; }
    b->p = p;
    b->cap = cap;
    return 0;
}

static void put(Bytes *b, const void *src, size_t n) {
    if (reserve(b, n)) return;
    memcpy(b->p + b->n, src, n);
    b->n += n;
}

static void put_u64(Bytes *b, uint64_t x) {
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(x >> (8 * i));
    put(b, le, 8);
}

static void put_u32(Bytes *b, uint32_t x) {
    uint8_t le[4];
    for (int i = 0; i < 4; i++) le[i] = (uint8_t)(x >> (8 * i));
    put(b, le, 4);
}

static void put_f32(Bytes *b, float x) {
    uint32_t u;
    memcpy(&u, &x, 4);
    put_u32(b, u);
}

// n floats (the moments: most of the payload), reserved once.
static void put_f32s(Bytes *b, const float *x, size_t n) {
    if (reserve(b, 4 * n)) return;
    uint8_t *dst = b->p + b->n;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        for (int k = 0; k < 4; k++) dst[4 * i + k] = (uint8_t)(u >> (8 * k));
    }
    b->n += 4 * n;
}

// A moment buffer of the optimizer, from the device it lives on.
static void put_moment(Bytes *b, const AdamW *opt, const float *moment) {
    if (opt->device == DEV_CPU) { put_f32s(b, moment, opt->n); return; }
    float *host = malloc(opt->n ? opt->n * sizeof *host : 1);
    if (!host) { b->oom = 1; return; }
    backend_to_host(opt->device, host, moment, opt->n * sizeof *host);
    put_f32s(b, host, opt->n);
    free(host);
}

static void put_le64_at(uint8_t *dst, uint64_t x) {
    for (int i = 0; i < 8; i++) dst[i] = (uint8_t)(x >> (8 * i));
}

static void put_le32_at(uint8_t *dst, uint32_t x) {
    for (int i = 0; i < 4; i++) dst[i] = (uint8_t)(x >> (8 * i));
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {   // zlib takes uInt lengths
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

// The payload, in the order docs/checkpoints.md lists it.
static void encode_payload(Bytes *b, const TrainState *ts, long step, const CkptFileSum *files) {
    LoaderPosition pos = loader_tell(ts->data.train);
    put_u64(b, (uint64_t)step);
    put_u64(b, (uint64_t)ts->optim.adamw.step);
    put_u64(b, (uint64_t)ts->optim.bad_in_a_row);
    put_u64(b, (uint64_t)ts->optim.bad_total);
    put_u64(b, (uint64_t)pos.epoch);
    put_u64(b, (uint64_t)pos.step);
    put_u32(b, (uint32_t)ts->r->train.micro_batch);
    put_u32(b, (uint32_t)dist_world()->world);   // ranks: the loader position counts each one's batches
    put_u32(b, (uint32_t)omp_get_max_threads());
    put_u64(b, (uint64_t)ts->r->seed);
    for (int i = 0; i < 4; i++) put_u64(b, ts->rng.s[i]);
    put_u32(b, (uint32_t)ts->rng.has_spare);
    put_f32(b, ts->rng.spare);
    put_u32(b, (uint32_t)ts->data.vocab.mode);
    put_u32(b, (uint32_t)ts->data.vocab.teacher_size);
    put_u32(b, (uint32_t)ts->data.vocab.size);
    for (int i = 0; i < ts->data.vocab.size; i++) put_u32(b, (uint32_t)ts->data.vocab.to_teacher[i]);
    for (int i = 0; i < CKPT_N_FILES; i++) {
        put_u64(b, files[i].bytes);
        put_u32(b, files[i].crc32);
    }
    const Graph *g = ts->model.g;
    put_u32(b, (uint32_t)g->n_grad_params);
    for (int i = 0; i < g->n_grad_params; i++) {
        const Tensor *t = g->flat_order[i];
        size_t len = strlen(t->name);
        put_u32(b, (uint32_t)len);
        put(b, t->name, len);
        put_u64(b, (uint64_t)(t->grad - g->grad_mem));
        put_u64(b, (uint64_t)t->numel);
    }
    put_u64(b, (uint64_t)g->grad_numel);
    // The moments live on the graph's device.
    if (ts->optim.adamw.lo == 0 && ts->optim.adamw.n == g->grad_numel) {
        put_moment(b, &ts->optim.adamw, ts->optim.adamw.m);
        put_moment(b, &ts->optim.adamw, ts->optim.adamw.v);
    } else {   // ZeRO-1: zeros here; each rank's shard is in its own file (train/dist/zero_ckpt.c)
        float *zero = calloc(g->grad_numel ? g->grad_numel : 1, sizeof(float));
        put_f32s(b, zero, g->grad_numel);
        put_f32s(b, zero, g->grad_numel);
        free(zero);
    }
}

static int write_all(const char *path, const uint8_t *a, size_t na, const uint8_t *c, size_t nc, char *err, size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) { snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno)); return -1; }
    errno = 0;
    int bad = fwrite(a, 1, na, f) != na || fwrite(c, 1, nc, f) != nc || fflush(f) || fsync(fileno(f));
    int e = errno ? errno : EIO;
    if (fclose(f) && !bad) { bad = 1; e = errno ? errno : EIO; }
    if (bad) { snprintf(err, errlen, "%s: writing failed: %s (disk full?)", path, strerror(e)); return -1; }
    return 0;
}

int ckpt_state_write(const char *path, const TrainState *ts, long step, const CkptFileSum *files, char *err, size_t errlen) {
    Bytes payload = { 0 };
    encode_payload(&payload, ts, step, files);
    if (payload.oom) { free(payload.p); snprintf(err, errlen, "%s: out of memory encoding the state", path); return -1; }
    size_t bound = ZSTD_compressBound(payload.n);
    uint8_t *frame = malloc(bound ? bound : 1);
    ZSTD_CCtx *cctx = ZSTD_createCCtx();
    int rc = -1;
    if (!frame || !cctx) { snprintf(err, errlen, "%s: out of memory compressing the state", path); goto done; }
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, ZSTD_LEVEL);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
    size_t nc = ZSTD_compress2(cctx, frame, bound, payload.p, payload.n);
    if (ZSTD_isError(nc)) { snprintf(err, errlen, "%s: zstd: %s", path, ZSTD_getErrorName(nc)); goto done; }
    uint8_t header[CKPT_STATE_HEADER_BYTES] = { 0 };
    memcpy(header, CKPT_STATE_MAGIC, 9);
    put_le32_at(header + 12, CKPT_FORMAT_VERSION);
    put_le64_at(header + 16, payload.n);
    put_le64_at(header + 24, nc);
    put_le32_at(header + 32, crc32_of(payload.p, payload.n));
    put_le32_at(header + 44, crc32_of(header, 44));
    rc = write_all(path, header, sizeof header, frame, nc, err, errlen);
done:
    ZSTD_freeCCtx(cctx);
    free(frame);
    free(payload.p);
    return rc;
}

// ---- reading: a bounded cursor ---------------------------------------------------

typedef struct Cursor {
    const uint8_t *p;
    size_t n, at;
    const char *path;
    char *err;
    size_t errlen;
    int bad;
} Cursor;

// Claim n bytes of the payload, or fail naming what was being read.
static const uint8_t *take(Cursor *c, size_t n, const char *what) {
    if (c->bad) return NULL;
    if (n > c->n - c->at) {
        snprintf(c->err, c->errlen, "%s: the state ends inside %s (payload byte %zu of %zu): a corrupt or foreign file",
                 c->path, what, c->at, c->n);
        c->bad = 1;
        return NULL;
    }
    const uint8_t *p = c->p + c->at;
    c->at += n;
    return p;
}

static uint64_t le64(const uint8_t *p) {
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--) x = x << 8 | p[i];
    return x;
}

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

static uint64_t get_u64(Cursor *c, const char *what) {
    const uint8_t *p = take(c, 8, what);
    return p ? le64(p) : 0;
}

static uint32_t get_u32(Cursor *c, const char *what) {
    const uint8_t *p = take(c, 4, what);
    return p ? le32(p) : 0;
}

static float get_f32(Cursor *c, const char *what) {
    uint32_t u = get_u32(c, what);
    float x;
    memcpy(&x, &u, 4);
    return x;
}

// A count that must fit what is left of the payload at `each` bytes apiece.
static uint64_t get_count(Cursor *c, int wide, size_t each, const char *what) {
    uint64_t k = wide ? get_u64(c, what) : get_u32(c, what);
    if (!c->bad && each && k > (c->n - c->at) / each) {
        snprintf(c->err, c->errlen, "%s: %s is %llu, more than the state holds: a corrupt or foreign file", c->path,
                 what, (unsigned long long)k);
        c->bad = 1;
    }
    return c->bad ? 0 : k;
}

static float *get_f32s(Cursor *c, size_t n, const char *what) {
    const uint8_t *p = take(c, n * 4, what);
    if (!p) return NULL;
    float *x = malloc((n ? n : 1) * sizeof *x);
    if (!x) { snprintf(c->err, c->errlen, "%s: out of memory reading %s", c->path, what); c->bad = 1; return NULL; }
    for (size_t i = 0; i < n; i++) {
        uint32_t u = le32(p + 4 * i);
        memcpy(&x[i], &u, 4);
    }
    return x;
}

static const char *const file_names[CKPT_N_FILES] = { "model.safetensors", "vocab.json" };

static int decode_payload(Cursor *c, CkptState *s) {
    s->step = (int64_t)get_u64(c, "the step");
    s->adam_step = (int64_t)get_u64(c, "the AdamW step");
    s->bad_in_a_row = (int64_t)get_u64(c, "the bad-step counters");
    s->bad_total = (int64_t)get_u64(c, "the bad-step counters");
    s->loader.epoch = (int64_t)get_u64(c, "the loader position");
    s->loader.step = (int64_t)get_u64(c, "the loader position");
    s->micro_batch = (int32_t)get_u32(c, "the micro-batch");
    s->world = (int32_t)get_u32(c, "the world size");
    s->threads = (int32_t)get_u32(c, "the thread count");
    s->seed = get_u64(c, "the seed");
    for (int i = 0; i < 4; i++) s->rng.s[i] = get_u64(c, "the RNG state");
    s->rng.has_spare = (int)get_u32(c, "the RNG state");
    s->rng.spare = get_f32(c, "the RNG state");
    s->vocab_mode = (int32_t)get_u32(c, "the vocabulary");
    s->vocab_teacher_size = (int32_t)get_u32(c, "the vocabulary");
    s->vocab_size = (int32_t)get_count(c, 0, 4, "the vocabulary size");
    if (c->bad) return -1;
    s->to_teacher = malloc((size_t)(s->vocab_size ? s->vocab_size : 1) * sizeof *s->to_teacher);
    if (!s->to_teacher) { snprintf(c->err, c->errlen, "%s: out of memory", c->path); return -1; }
    for (int i = 0; i < s->vocab_size; i++) s->to_teacher[i] = (int32_t)get_u32(c, "the vocabulary map");
    for (int i = 0; i < CKPT_N_FILES; i++) {
        s->files[i].name = file_names[i];
        s->files[i].bytes = get_u64(c, "the file checksums");
        s->files[i].crc32 = get_u32(c, "the file checksums");
    }
    s->n_params = (int32_t)get_count(c, 0, 20, "the parameter count");
    if (c->bad) return -1;
    s->params = calloc((size_t)(s->n_params ? s->n_params : 1), sizeof *s->params);
    if (!s->params) { snprintf(c->err, c->errlen, "%s: out of memory", c->path); return -1; }
    for (int i = 0; i < s->n_params && !c->bad; i++) {
        uint32_t len = get_u32(c, "a parameter name");
        if (len == 0 || len > MAX_NAME) {
            if (!c->bad) snprintf(c->err, c->errlen, "%s: parameter %d has a name of %u bytes: a corrupt file", c->path, i, len);
            c->bad = 1;
            break;
        }
        const uint8_t *name = take(c, len, "a parameter name");
        if (!name) break;
        if (!(s->params[i].name = strndup((const char *)name, len))) { snprintf(c->err, c->errlen, "%s: out of memory", c->path); return -1; }
        s->params[i].offset = get_u64(c, "a parameter offset");
        s->params[i].numel = get_u64(c, "a parameter size");
    }
    s->grad_numel = get_count(c, 1, 8, "the optimizer state size");
    if (c->bad) return -1;
    if (!(s->m = get_f32s(c, s->grad_numel, "AdamW's first moment"))) return -1;
    if (!(s->v = get_f32s(c, s->grad_numel, "AdamW's second moment"))) return -1;
    if (c->at != c->n) {
        snprintf(c->err, c->errlen, "%s: %zu bytes left over after the state: a corrupt or foreign file", c->path, c->n - c->at);
        return -1;
    }
    return 0;
}

static uint8_t *read_file(const char *path, size_t *size, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        fclose(f);
        return NULL;
    }
    size_t n = (size_t)st.st_size;
    uint8_t *p = malloc(n ? n : 1);
    if (!p) { snprintf(err, errlen, "%s: out of memory reading %zu bytes", path, n); fclose(f); return NULL; }
    size_t got = fread(p, 1, n, f);
    fclose(f);
    if (got != n) { snprintf(err, errlen, "%s: read %zu of its %zu bytes", path, got, n); free(p); return NULL; }
    *size = n;
    return p;
}

static int check_header(const char *path, const uint8_t *h, size_t size, char *err, size_t errlen) {
    if (size < CKPT_STATE_HEADER_BYTES) {
        snprintf(err, errlen, "%s: %zu bytes, shorter than the %d-byte header: truncated", path, size, CKPT_STATE_HEADER_BYTES);
        return -1;
    }
    if (memcmp(h, CKPT_STATE_MAGIC, 9)) {
        snprintf(err, errlen, "%s: does not start with \"%s\": not a distil training state", path, CKPT_STATE_MAGIC);
        return -1;
    }
    // The version before the header checksum: another version may lay the
    // rest of its header out differently.
    uint32_t version = le32(h + 12);
    if (version != CKPT_FORMAT_VERSION) {
        snprintf(err, errlen, "%s: format version %u; this distil reads version %d", path, version, CKPT_FORMAT_VERSION);
        return -1;
    }
    if (le32(h + 44) != crc32_of(h, 44)) {
        snprintf(err, errlen, "%s: header checksum mismatch: corrupt", path);
        return -1;
    }
    uint64_t payload = le64(h + 16), compressed = le64(h + 24);
    if (payload > MAX_PAYLOAD || compressed > MAX_PAYLOAD) {
        snprintf(err, errlen, "%s: the header claims a %llu-byte state: corrupt", path, (unsigned long long)payload);
        return -1;
    }
    if (size != CKPT_STATE_HEADER_BYTES + compressed) {
        snprintf(err, errlen, "%s: %zu bytes, the header says %llu: %s", path, size,
                 (unsigned long long)(CKPT_STATE_HEADER_BYTES + compressed), size < CKPT_STATE_HEADER_BYTES + compressed ? "truncated" : "trailing bytes");
        return -1;
    }
    return 0;
}

int ckpt_state_read(const char *path, CkptState *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    size_t size = 0;
    uint8_t *file = read_file(path, &size, err, errlen);
    if (!file) return -1;
    uint8_t *payload = NULL;
    int rc = -1;
    if (check_header(path, file, size, err, errlen)) goto done;
    size_t n = (size_t)le64(file + 16), nc = (size_t)le64(file + 24);
    const uint8_t *frame = file + CKPT_STATE_HEADER_BYTES;
    unsigned long long content = ZSTD_getFrameContentSize(frame, nc);
    if (content != n) {
        snprintf(err, errlen, "%s: the zstd frame %s: corrupt", path,
                 content == ZSTD_CONTENTSIZE_ERROR ? "is not valid" : "disagrees with the header on the state's size");
        goto done;
    }
    if (!(payload = malloc(n ? n : 1))) { snprintf(err, errlen, "%s: out of memory (%zu bytes)", path, n); goto done; }
    // ZSTD_decompress checks the frame's content checksum (XXH64, low 32 bits).
    size_t got = ZSTD_decompress(payload, n, frame, nc);
    if (ZSTD_isError(got) || got != n) {
        snprintf(err, errlen, "%s: zstd: %s: corrupt", path, ZSTD_isError(got) ? ZSTD_getErrorName(got) : "short frame");
        goto done;
    }
    if (crc32_of(payload, n) != le32(file + 32)) {
        snprintf(err, errlen, "%s: payload checksum mismatch: corrupt", path);
        goto done;
    }
    Cursor c = { payload, n, 0, path, err, errlen, 0 };
    rc = decode_payload(&c, s);
done:
    free(payload);
    free(file);
    if (rc) ckpt_state_free(s);
    return rc;
}

void ckpt_state_free(CkptState *s) {
    free(s->to_teacher);
    if (s->params)
        for (int i = 0; i < s->n_params; i++) free(s->params[i].name);
    free(s->params);
    free(s->m);
    free(s->v);
    memset(s, 0, sizeof *s);
}

int ckpt_file_sum(const char *path, const char *name, CkptFileSum *out, char *err, size_t errlen) {
    size_t size = 0;
    uint8_t *p = read_file(path, &size, err, errlen);
    if (!p) return -1;
    *out = (CkptFileSum){ name, size, crc32_of(p, size) };
    free(p);
    return 0;
}
