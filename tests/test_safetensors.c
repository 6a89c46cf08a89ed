// test_safetensors.c: the safetensors writer and reader. Round trips (fp32
// bit-exact, fp16/bf16 within their rounding, checked against an
// independent nearest-even reference), the layout the reference writes, a
// corpus of corrupt files that must each be one clear error and never a
// crash (the header JSON's own rules among them: duplicate keys and \u0000
// refused, parse errors at a line and column), atomic writes (including a
// writer killed with SIGKILL mid-write), and loading a Graph's parameters
// strictly and partially.
//
// With arguments it is the C side of tests/test_safetensors.py:
//   test_safetensors --write DIR   write distil_{f32,f16,bf16}.safetensors into DIR
//   test_safetensors --dump PATH   print PATH's tensors and metadata as JSON
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "autograd/graph.h"
#include "autograd/rng.h"
#include "train/formats/json_io.h"
#include "train/formats/safetensors.h"
#include "tests/test.h"

static Rng rng;
static char tmp_dir[64];

static const char *tmp_path(const char *name) {
    static char path[8][256];
    static int next;
    char *p = path[next++ % 8];
    snprintf(p, 256, "%s/%s", tmp_dir, name);
    return p;
}

static uint8_t *read_bytes(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

// Unlinked first: ext4 flushes a file truncated and rewritten in place on
// close (auto_da_alloc), which made thousands of rewrites slow.
static void write_bytes(const char *path, const void *buf, size_t len) {
    unlink(path);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(buf, 1, len, f);
    fclose(f);
}

// A file from a header text and data_len bytes of data, for the corpus.
static void write_crafted(const char *path, const char *header, size_t data_len) {
    size_t n = strlen(header);
    uint8_t *buf = calloc(8 + n + data_len + 1, 1);
    for (int i = 0; i < 8; i++) buf[i] = (uint8_t)((uint64_t)n >> (8 * i));
    memcpy(buf + 8, header, n);
    write_bytes(path, buf, 8 + n + data_len);
    free(buf);
}

static int count_temp_files(void) {
    DIR *d = opendir(tmp_dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

// ---- the fixture tensors ------------------------------------------------------

typedef struct Fixture {
    StTensor t[6];
    float *data[6];
    int n;
} Fixture;

static void fixture_free(Fixture *fx) {
    for (int i = 0; i < fx->n; i++) free(fx->data[i]);
}

// Unsorted names, a scalar, an empty tensor, 4 dims, values over many
// magnitudes (the fp16 subnormal and overflow ranges included).
static Fixture fixture(void) {
    static const struct { const char *name; int ndim; int64_t shape[4]; } spec[] = {
        { "blocks.0.mlp.fc.weight", 2, { 8, 5 } }, { "a.bias", 1, { 7 } }, { "scalar", 0, { 0 } },
        { "empty", 2, { 0, 3 } }, { "z.big", 4, { 2, 3, 4, 5 } }, { "blocks.0.ln.weight", 1, { 3 } },
    };
    Fixture fx = { .n = 6 };
    for (int i = 0; i < fx.n; i++) {
        StTensor *t = &fx.t[i];
        t->name = spec[i].name;
        t->ndim = spec[i].ndim;
        size_t n = 1;
        for (int d = 0; d < t->ndim; d++) { t->shape[d] = spec[i].shape[d]; n *= (size_t)spec[i].shape[d]; }
        fx.data[i] = malloc((n ? n : 1) * sizeof(float));
        for (size_t j = 0; j < n; j++) fx.data[i][j] = rng_normal(&rng) * ldexpf(1.0f, (int)rng_below(&rng, 60) - 30);
        t->data = fx.data[i];
    }
    return fx;
}

static size_t numel_of(const StTensor *t) {
    size_t n = 1;
    for (int d = 0; d < t->ndim; d++) n *= (size_t)t->shape[d];
    return n;
}

// ---- half precision -------------------------------------------------------------

// The nearest half to |x| by search over the ordered positive halves, ties
// to the even one: an independent reference for st_f32_to_f16.
static uint16_t f16_reference(float x) {
    uint16_t sign = signbit(x) ? 0x8000 : 0;
    double a = fabs((double)x);
    if (isnan(x)) return sign | 0x7e00;
    if (a >= 65520.0) return sign | 0x7c00;
    int lo = 0, hi = 0x7bff;                 // largest h with value(h) <= a
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((double)st_f16_to_f32((uint16_t)mid) <= a) lo = mid;
        else hi = mid - 1;
    }
    if (lo == 0x7bff) return sign | 0x7bff;
    double below = st_f16_to_f32((uint16_t)lo), above = st_f16_to_f32((uint16_t)(lo + 1));
    int up = a - below > above - a || (a - below == above - a && (lo & 1));
    return sign | (uint16_t)(lo + up);
}

static void test_f16_conversion(void) {
    // Every half survives half -> float -> half (NaNs stay NaNs of their sign).
    int bad = 0;
    for (uint32_t h = 0; h < 0x10000 && bad < 3; h++) {
        float f = st_f16_to_f32((uint16_t)h);
        uint16_t back = st_f32_to_f16(f);
        int is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        int ok = is_nan ? (isnan(f) && (back & 0x7c00) == 0x7c00 && (back & 0x3ff) && (back & 0x8000) == (h & 0x8000)) : back == h;
        if (!ok) { bad++; CHECK(0, "half 0x%04x -> %a -> 0x%04x", h, (double)f, back); }
    }
    static const struct { float x; uint16_t h; } cases[] = {
        { 0.0f, 0x0000 }, { -0.0f, 0x8000 }, { 1.0f, 0x3c00 }, { -2.0f, 0xc000 }, { 65504.0f, 0x7bff },
        { 65519.996f, 0x7bff }, { 65520.0f, 0x7c00 }, { 1e6f, 0x7c00 }, { -INFINITY, 0xfc00 },
        { 0x1p-24f, 0x0001 }, { 0x1p-25f, 0x0000 }, { 0x1.000002p-25f, 0x0001 }, { 0x3p-25f, 0x0002 },
        { 0x5p-25f, 0x0002 }, { 0x1p-14f, 0x0400 }, { 0x1.ff8p-15f, 0x03ff }, { 0x1.ffcp-15f, 0x0400 },
        { 0x1.ffap-15f, 0x03ff }, { 0x1.ff7p-15f, 0x03ff },
        { 1.0f + 0x1p-11f, 0x3c00 }, { 1.0f + 0x3p-11f, 0x3c02 }, { 1e-10f, 0x0000 },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint16_t h = st_f32_to_f16(cases[i].x);
        CHECK(h == cases[i].h, "%a -> 0x%04x, want 0x%04x", (double)cases[i].x, h, cases[i].h);
    }
    CHECK(st_f32_to_f16(NAN) == 0x7e00 || (st_f32_to_f16(NAN) & 0x7e00) == 0x7e00, "NaN");
    // Random floats over the whole half range and beyond, against the reference.
    bad = 0;
    for (int it = 0; it < 200000 && bad < 3; it++) {
        uint32_t u = (uint32_t)rng_u64(&rng);
        u = (u & 0x807fffffu) | ((96u + (uint32_t)rng_below(&rng, 50)) << 23);   // exponents 2^-31 .. 2^18
        float x;
        memcpy(&x, &u, 4);
        uint16_t got = st_f32_to_f16(x), want = f16_reference(x);
        if (got != want) { bad++; CHECK(0, "%a -> 0x%04x, reference 0x%04x", (double)x, got, want); }
    }
}

// ---- round trips ------------------------------------------------------------------

static const StMeta test_meta[] = {
    { "format", "pt" }, { "step", "12" }, { "note", "caf\xc3\xa9 \"quoted\" \\ back\nslash" },
};

// Header layout as the reference writes it: N a multiple of 8, '{' first,
// metadata first, then the tensors in name order (one dtype).
static void check_layout(const char *path, int n_tensors) {
    size_t len;
    uint8_t *b = read_bytes(path, &len);
    REQUIRE(b && len >= 8, "read %s", path);
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
    CHECK(n % 8 == 0 && n <= len - 8 && b[8] == '{', "header length %llu", (unsigned long long)n);
    char err[256];
    json_t *h = jsonio_parse((const char *)b + 8, (size_t)n, err, sizeof err);
    CHECK(h && json_object_size(h) == (size_t)n_tensors + 1, "header: %s", h ? "tensor count" : err);
    const char *key, *prev = NULL;
    json_t *entry;
    json_object_foreach(h, key, entry) {   // in the file's order
        if (!prev) CHECK(!strcmp(key, "__metadata__"), "first key %s", key);
        else if (strcmp(prev, "__metadata__")) CHECK(strcmp(prev, key) < 0, "not sorted: %s before %s", prev, key);
        prev = key;
    }
    json_decref(h);
    free(b);
}

// Write the fixture as dtype, read it back, and compare each value with
// what the conversion must give; rel_tol bounds the rounding error.
static void round_trip(StDtype dtype, double rel_tol) {
    Fixture fx = fixture();
    char err[512];
    const char *path = tmp_path("round.safetensors");
    REQUIRE(st_write(path, fx.t, fx.n, test_meta, 3, dtype, err, sizeof err) == 0, "write: %s", err);
    check_layout(path, fx.n);
    StFile *f = st_open(path, err, sizeof err);
    REQUIRE(f, "open: %s", err);
    CHECK(f->n_tensors == fx.n && f->n_meta == 3, "%d tensors, %d meta", f->n_tensors, f->n_meta);
    for (int m = 0; m < 3; m++)
        CHECK(st_meta(f, test_meta[m].key) && !strcmp(st_meta(f, test_meta[m].key), test_meta[m].value), "meta %s", test_meta[m].key);
    CHECK(st_meta(f, "absent") == NULL && st_find(f, "absent") == -1, "absent");
    for (int i = 0; i < fx.n; i++) {
        const StTensor *t = &fx.t[i];
        int k = st_find(f, t->name);
        if (k < 0) { CHECK(0, "%s not found", t->name); continue; }
        const StInfo *info = &f->tensors[k];
        CHECK(info->dtype == dtype && info->ndim == t->ndim && !memcmp(info->shape, t->shape, t->ndim * sizeof(int64_t)),
              "%s: dtype/shape", t->name);
        size_t n = numel_of(t);
        float *back = malloc((n ? n : 1) * sizeof(float));
        if (st_read_f32(f, t->name, back, n, err, sizeof err)) { CHECK(0, "%s", err); free(back); continue; }
        int bad = 0;
        for (size_t j = 0; j < n && bad < 3; j++) {
            float x = t->data[j], want = dtype == ST_F32 ? x
                                       : dtype == ST_F16 ? st_f16_to_f32(st_f32_to_f16(x)) : bf16_to_f32(f32_to_bf16(x));
            if (memcmp(&back[j], &want, 4)) { bad++; CHECK(0, "%s[%zu]: %a, want %a", t->name, j, (double)back[j], (double)want); }
            // Within the format's normal range the error is half an ulp.
            int normal = dtype != ST_F16 || (fabsf(x) >= 0x1p-14f && fabsf(x) < 65504.0f);
            if (normal && fabs((double)back[j] - x) > rel_tol * fabs((double)x)) {
                bad++;
                CHECK(0, "%s[%zu]: %g read back as %g", t->name, j, (double)x, (double)back[j]);
            }
        }
        free(back);
    }
    float one;
    CHECK(st_read_f32(f, "a.bias", &one, 1, err, sizeof err) == -1 && strstr(err, "has 7 elements, 1 were asked for"), "%s", err);
    CHECK(st_read_f32(f, "nope", &one, 1, err, sizeof err) == -1 && strstr(err, "no tensor named \"nope\""), "%s", err);
    CHECK(st_read_f32_at(f, 99, &one, 1, err, sizeof err) == -1, "index out of range");
    st_close(f);
    fixture_free(&fx);
}

// fp32 is bit-exact; fp16 and bf16 round to nearest, so the relative error
// is at most half an ulp: 2^-11 and 2^-8.
static void test_round_trip_f32(void) { round_trip(ST_F32, 0.0); }
static void test_round_trip_f16(void) { round_trip(ST_F16, 0x1p-11); }
static void test_round_trip_bf16(void) { round_trip(ST_BF16, 0x1p-8); }

// A raw integer table beside float tensors: written as is, sorted after the
// wider F32 as the reference sorts, and refused by the float reader.
static void test_raw_tensor(void) {
    int32_t ids[6] = { -1, 0, 7, 2147483647, -2147483647 - 1, 42 };
    float w[4] = { 1, 2, 3, 4 };
    StTensor ts[2] = {
        { .name = "a.vocab_map", .ndim = 1, .shape = { 6 }, .raw = ids, .raw_dtype = ST_I32 },
        { .name = "b.weight", .ndim = 2, .shape = { 2, 2 }, .data = w },
    };
    char err[512];
    const char *path = tmp_path("raw.safetensors");
    REQUIRE(st_write(path, ts, 2, NULL, 0, ST_F32, err, sizeof err) == 0, "write: %s", err);
    size_t len;
    uint8_t *b = read_bytes(path, &len);
    const char *want = "{\"b.weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]},"
                       "\"a.vocab_map\":{\"dtype\":\"I32\",\"shape\":[6],\"data_offsets\":[16,40]}}";
    CHECK(b && len > 8 + strlen(want) && !memcmp(b + 8, want, strlen(want)), "header: %.*s", b ? (int)(len - 8) : 0, b ? (char *)b + 8 : "");
    free(b);
    StFile *f = st_open(path, err, sizeof err);
    REQUIRE(f, "open: %s", err);
    int k = st_find(f, "a.vocab_map");
    REQUIRE(k >= 0, "vocab map missing");
    CHECK(f->tensors[k].dtype == ST_I32 && f->tensors[k].nbytes == sizeof ids && !memcmp(f->tensors[k].data, ids, sizeof ids), "raw data");
    float dst[6];
    CHECK(st_read_f32_at(f, k, dst, 6, err, sizeof err) == -1 && strstr(err, "is I32, not a float tensor"), "%s", err);
    st_close(f);
}

static void test_write_errors(void) {
    float x[2] = { 1, 2 };
    char err[512];
    const char *path = tmp_path("bad_write.safetensors");
    StTensor dup[2] = { { .name = "w", .ndim = 1, .shape = { 2 }, .data = x }, { .name = "w", .ndim = 1, .shape = { 2 }, .data = x } };
    CHECK(st_write(path, dup, 2, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "tensor name w given twice"), "%s", err);
    StTensor dup_dtype[2] = { { .name = "w", .ndim = 1, .shape = { 2 }, .data = x },
                              { .name = "w", .ndim = 1, .shape = { 2 }, .raw = x, .raw_dtype = ST_I32 } };
    CHECK(st_write(path, dup_dtype, 2, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "given twice"), "%s", err);
    StTensor reserved = { .name = "__metadata__", .ndim = 1, .shape = { 2 }, .data = x };
    CHECK(st_write(path, &reserved, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "reserved"), "%s", err);
    StTensor unnamed = { .name = "", .ndim = 1, .shape = { 2 }, .data = x };
    CHECK(st_write(path, &unnamed, 1, NULL, 0, ST_F32, err, sizeof err) == -1, "empty name");
    StTensor negative = { .name = "w", .ndim = 1, .shape = { -2 }, .data = x };
    CHECK(st_write(path, &negative, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "negative dim"), "%s", err);
    StTensor deep = { .name = "w", .ndim = 9, .data = x };
    CHECK(st_write(path, &deep, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "9 dims"), "%s", err);
    StTensor nodata = { .name = "w", .ndim = 1, .shape = { 2 } };
    CHECK(st_write(path, &nodata, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "no data"), "%s", err);
    StTensor ok = { .name = "w", .ndim = 1, .shape = { 2 }, .data = x };
    CHECK(st_write(path, &ok, 1, NULL, 0, ST_I32, err, sizeof err) == -1 && strstr(err, "as I32"), "%s", err);
    StMeta dup_meta[2] = { { "k", "1" }, { "k", "2" } };
    CHECK(st_write(path, &ok, 1, dup_meta, 2, ST_F32, err, sizeof err) == -1 && strstr(err, "metadata key k given twice"), "%s", err);
    // JSON strings are UTF-8: a name or value that is not is named, not written.
    StTensor latin1 = { .name = "caf\xe9", .ndim = 1, .shape = { 2 }, .data = x };
    CHECK(st_write(path, &latin1, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "not valid UTF-8"), "%s", err);
    StMeta latin1_meta = { "note", "caf\xe9" };
    CHECK(st_write(path, &ok, 1, &latin1_meta, 1, ST_F32, err, sizeof err) == -1 && strstr(err, "metadata \"note\""), "%s", err);
    CHECK(access(path, F_OK) != 0, "a refused write left a file");
    const char *nodir = tmp_path("no/such/dir/x.safetensors");
    CHECK(st_write(nodir, &ok, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "cannot create") && strstr(err, nodir), "%s", err);
    // Over a directory: the rename fails and the temp file is removed.
    const char *over_dir = tmp_path("a_directory");
    mkdir(over_dir, 0755);
    CHECK(st_write(over_dir, &ok, 1, NULL, 0, ST_F32, err, sizeof err) == -1 && strstr(err, "cannot rename"), "%s", err);
    rmdir(over_dir);
    CHECK(count_temp_files() == 0, "temp files left behind");
}

// ---- the corrupt corpus ----------------------------------------------------------

// st_open must fail with a message that names the file and contains `what`.
static void expect_corrupt(const char *path, const char *what, const char *label) {
    char err[512] = "";
    StFile *f = st_open(path, err, sizeof err);
    CHECK(!f, "%s: opened", label);
    st_close(f);
    CHECK(strncmp(err, path, strlen(path)) == 0 && strstr(err, what) && !strchr(err, '\n'), "%s: \"%s\", want \"%s\"", label, err, what);
}

static void test_corrupt_crafted(void) {
    static const struct { const char *header; size_t data; const char *what; } cases[] = {
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}", 4, "header JSON (which starts at file byte 8): line 1, column 53" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}} x", 4, "line 1, column 56: end of file expected" },
        { "{\"a\":{\"dtype\":\"F33\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "unknown or unsupported dtype \"F33\"" },
        { "{\"a\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 1, "unknown or unsupported dtype \"F4\"" },
        { "{\"a\":{\"dtype\":7,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\"dtype\": expected a string, found an integer" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4, "shape [2] of F32 is 8 bytes, but data_offsets [0,4] span 4" },
        { "{\"a\":{\"dtype\":\"F16\",\"shape\":[3,2],\"data_offsets\":[0,24]}}", 24, "shape [3,2] of F16 is 12 bytes" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
          12, "overlaps" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
          8, "overlaps" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[100],\"data_offsets\":[0,400]}}", 8, "run past the end of the data section (8 bytes)" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
          12, "bytes 4..8 of the data section belong to no tensor" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 8, "has 8 bytes but the tensors cover 4" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,4]}}", 8, "not 0 <= begin <= end" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 8, "not 0 <= begin <= end" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0.0,4]}}", 4, "data_offsets[0]" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4,8]}}", 8, "not an array of 2" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551620]}}", 4, "too big integer" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "negative dim" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[\"1\"],\"data_offsets\":[0,4]}}", 4, "a shape entry" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":1,\"data_offsets\":[0,4]}}", 4, "\"shape\" missing or not an array" },
        { "{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4, "\"shape\" missing" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],\"data_offsets\":[0,4]}}", 4, "overflows 64 bits" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "9 dims" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4],\"extra\":1}}", 4, "unknown field \"extra\"" },
        { "{\"a\":3}", 0, "header entry is an integer, not an object" },
        // A tensor named twice is corrupt, not "last one wins"; the line and
        // column are where the header text says so.
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
          4, "duplicate object key" },
        { "{\n \"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},\n \"a\": 1}", 4,
          "line 3, column 4: duplicate object key near '\"a\"'" },
        // \u0000 would cut a name or value short as a C string.
        { "{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, "line 1, column 31: \\u0000 (NUL) in a string is not allowed" },
        { "{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "\\u0000" },
        { "{\"__metadata__\":{\"k\":1}}", 0, "metadata values must be strings" },
        { "{\"__metadata__\":[]}", 0, "__metadata__ is an array" },
        { "[1,2]", 0, "does not start with '{'" },
        { " {}", 0, "does not start with '{'" },
        { "", 0, "does not start with '{'" },
        { "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}\xff   ", 4, "header JSON" },
        { "{\"\xc3\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "header JSON" },   // not UTF-8
    };
    const char *path = tmp_path("crafted.safetensors");
    char label[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_crafted(path, cases[i].header, cases[i].data);
        snprintf(label, sizeof label, "case %zu", i);
        expect_corrupt(path, cases[i].what, label);
    }
    // The smallest valid files: no tensors; one empty tensor.
    char err[512];
    write_crafted(path, "{}", 0);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f && f->n_tensors == 0, "{}: %s", f ? "" : err);
    st_close(f);
    write_crafted(path, "{\"e\":{\"dtype\":\"BOOL\",\"shape\":[0],\"data_offsets\":[0,0]},\"__metadata__\":{}}", 0);
    f = st_open(path, err, sizeof err);
    CHECK(f && f->n_tensors == 1 && f->tensors[0].numel == 0, "empty tensor: %s", f ? "" : err);
    st_close(f);
    CHECK(!st_open(tmp_path("does_not_exist"), err, sizeof err) && strstr(err, "cannot open"), "%s", err);
    CHECK(!st_open(tmp_dir, err, sizeof err) && strstr(err, "not a regular file"), "%s", err);
}

// A valid file cut at every length, header lengths past the end, and
// random byte flips: errors or (for harmless flips) a valid file, never a crash.
static void test_corrupt_truncated_and_fuzzed(void) {
    Fixture fx = fixture();
    char err[512];
    const char *good = tmp_path("good.safetensors"), *bad = tmp_path("bad.safetensors");
    REQUIRE(st_write(good, fx.t, fx.n, test_meta, 3, ST_F16, err, sizeof err) == 0, "write: %s", err);
    fixture_free(&fx);
    size_t len;
    uint8_t *b = read_bytes(good, &len);
    REQUIRE(b, "read back");
    uint64_t n = 0;
    for (int i = 0; i < 8; i++) n |= (uint64_t)b[i] << (8 * i);
    for (size_t k = 0; k < len; k++) {
        write_bytes(bad, b, k);
        const char *what = k < 8 ? "too short" : k < 8 + n ? "runs past the end of the file" : "past the end of the data section";
        char label[48];
        snprintf(label, sizeof label, "cut at %zu of %zu", k, len);
        expect_corrupt(bad, what, label);
        if (test_cur_failed) break;
    }
    static const uint64_t lengths[] = { 0, 1, 7, UINT64_MAX, (uint64_t)1 << 63, 200000000 };
    uint8_t *m = malloc(len);
    for (size_t i = 0; i < sizeof lengths / sizeof lengths[0]; i++) {
        memcpy(m, b, len);
        for (int j = 0; j < 8; j++) m[j] = (uint8_t)(lengths[i] >> (8 * j));
        write_bytes(bad, m, len);
        char label[48];
        snprintf(label, sizeof label, "header length %llu", (unsigned long long)lengths[i]);
        expect_corrupt(bad, lengths[i] > len - 8 ? "runs past the end of the file" : lengths[i] < 2 ? "does not start" : "header JSON", label);
    }
    memcpy(m, b, len);
    for (int j = 0; j < 8; j++) m[j] = (uint8_t)((n + 8) >> (8 * j));   // a longer header swallows data bytes
    memset(m + 8 + n, 'x', 8);
    write_bytes(bad, m, len);
    expect_corrupt(bad, "header JSON", "header 8 bytes longer");
    int opened = 0;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, b, len);
        int flips = 1 + (int)rng_below(&rng, 3);
        for (int f = 0; f < flips; f++) {
            // Mostly in the header, where the parser is exercised.
            size_t at = rng_below(&rng, 4) ? rng_below(&rng, 8 + n) : rng_below(&rng, len);
            m[at] = (uint8_t)rng_below(&rng, 256);
        }
        write_bytes(bad, m, len);
        err[0] = '\0';
        StFile *f = st_open(bad, err, sizeof err);
        if (!f) {
            if (strncmp(err, bad, strlen(bad)) != 0) { CHECK(0, "iteration %d: \"%s\"", it, err); break; }
            continue;
        }
        opened++;
        for (int i = 0; i < f->n_tensors; i++) {   // whatever opened must read within bounds
            float *dst = malloc((f->tensors[i].numel ? f->tensors[i].numel : 1) * sizeof(float));
            st_read_f32_at(f, i, dst, f->tensors[i].numel, err, sizeof err);
            free(dst);
        }
        st_close(f);
    }
    CHECK(opened > 0, "no mutation was harmless (data-byte flips should be)");
    free(m);
    free(b);
}

// ---- atomic writes ------------------------------------------------------------------

#define KILL_N (1 << 19)   // 2 MiB of fp32 per version: a write takes a while

static void fill_version(float *x, int version) {
    for (int i = 0; i < KILL_N; i++) x[i] = (float)(version * 1000000 + i % 1000);
}

static void test_atomic_write(void) {
    char err[512];
    const char *path = tmp_path("atomic.safetensors");
    float *v[2] = { malloc(KILL_N * sizeof(float)), malloc(KILL_N * sizeof(float)) };
    fill_version(v[0], 0);
    fill_version(v[1], 1);
    StTensor t[2] = { { .name = "w", .ndim = 1, .shape = { KILL_N }, .data = v[0] },
                      { .name = "w", .ndim = 1, .shape = { KILL_N }, .data = v[1] } };
    StMeta meta[2][1] = { { { "version", "0" } }, { { "version", "1" } } };
    REQUIRE(st_write(path, &t[0], 1, meta[0], 1, ST_F32, err, sizeof err) == 0, "%s", err);
    REQUIRE(st_write(path, &t[1], 1, meta[1], 1, ST_F32, err, sizeof err) == 0, "%s", err);
    StFile *f = st_open(path, err, sizeof err);
    CHECK(f && !strcmp(st_meta(f, "version"), "1"), "overwrite: %s", f ? "" : err);
    st_close(f);
    CHECK(count_temp_files() == 0, "a temp file was left behind");

    // A writer killed at a random instant leaves one whole version or the other.
    for (int round = 0; round < 6; round++) {
        pid_t pid = fork();
        REQUIRE(pid >= 0, "fork");
        if (pid == 0) {
            for (int k = 0;; k ^= 1)
                if (st_write(path, &t[k], 1, meta[k], 1, ST_F32, err, sizeof err)) _exit(3);
        }
        usleep((useconds_t)(1000 + rng_below(&rng, 40000)));
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        CHECK(WIFSIGNALED(status), "the writer exited by itself (status %d)", status);
        f = st_open(path, err, sizeof err);
        CHECK(f, "after SIGKILL: %s", err);
        if (f) {
            const char *version = st_meta(f, "version");
            int k = version && !strcmp(version, "1");
            float *back = malloc(KILL_N * sizeof(float));
            CHECK(st_read_f32(f, "w", back, KILL_N, err, sizeof err) == 0 && !memcmp(back, v[k], KILL_N * sizeof(float)),
                  "after SIGKILL: contents are not version %d", k);
            free(back);
            st_close(f);
        }
        char tmp[300];
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)pid);
        unlink(tmp);   // a killed writer's temp file is all it can leave
    }
    CHECK(count_temp_files() == 0, "stray temp files");
    free(v[0]);
    free(v[1]);
}

// ---- graph parameters -------------------------------------------------------------

typedef struct ParamSpec { const char *name; int ndim; int shape[2]; } ParamSpec;

static const ParamSpec base_params[] = {
    { "blocks.0.attn.qkv.weight", 2, { 12, 4 } }, { "blocks.0.attn.qkv.bias", 1, { 12 } },
    { "head.weight", 2, { 3, 4 } }, { "tok_emb.weight", 2, { 10, 4 } },
};

// A planned CPU tape with the given parameters, zeroed or random.
static Graph *param_graph(const ParamSpec *spec, int n, int random) {
    Graph *g = graph_new(DEV_CPU);
    for (int i = 0; i < n; i++) graph_param(g, spec[i].name, spec[i].ndim, spec[i].shape, random ? INIT_NORMAL : INIT_ZEROS, 1.0f, 1);
    if (graph_plan(g)) { graph_free(g); return NULL; }
    graph_init_params(g, &rng);
    return g;
}

static int params_equal(Graph *a, Graph *b, const char *name) {
    Tensor *x = graph_find_param(a, name), *y = graph_find_param(b, name);
    return x && y && x->numel == y->numel && !memcmp(x->data, y->data, x->numel * sizeof(float));
}

static int param_all_zero(Graph *g, const char *name) {
    Tensor *t = graph_find_param(g, name);
    for (size_t i = 0; t && i < t->numel; i++)
        if (((float *)t->data)[i] != 0.0f) return 0;
    return t != NULL;
}

static void test_graph_params(void) {
    char err[512];
    const char *path = tmp_path("params.safetensors");
    Graph *src = param_graph(base_params, 4, 1);
    REQUIRE(src, "plan");
    StMeta meta[] = { { "step", "7" } };
    REQUIRE(st_save_graph_params(path, src, meta, 1, ST_F32, err, sizeof err) == 0, "save: %s", err);

    // Strict into the same model: everything, bit-exact.
    Graph *dst = param_graph(base_params, 4, 0);
    StLoadReport rep;
    CHECK(st_load_graph_params(path, dst, NULL, 0, 1, &rep, err, sizeof err) == 0, "strict: %s", err);
    CHECK(rep.loaded == 4 && rep.missing == 0 && rep.unexpected == 0 && rep.skipped == 0, "report %d %d %d %d",
          rep.loaded, rep.missing, rep.unexpected, rep.skipped);
    for (int i = 0; i < 4; i++) CHECK(params_equal(src, dst, base_params[i].name), "%s differs", base_params[i].name);
    graph_free(dst);

    // A shape mismatch names the tensor and both shapes, and changes nothing.
    ParamSpec other[4];
    memcpy(other, base_params, sizeof other);
    other[0].shape[0] = 6; other[0].shape[1] = 2;
    dst = param_graph(other, 4, 0);
    char want[400];
    snprintf(want, sizeof want, "%s: blocks.0.attn.qkv.weight: shape [12,4] in the file, [6,2] in the model", path);
    CHECK(st_load_graph_params(path, dst, NULL, 0, 0, NULL, err, sizeof err) == -1 && !strcmp(err, want), "\"%s\"", err);
    CHECK(param_all_zero(dst, "head.weight") && param_all_zero(dst, "blocks.0.attn.qkv.bias"), "a failed load wrote parameters");
    graph_free(dst);

    // A model with one more parameter: strict refuses, non-strict loads the rest.
    ParamSpec more[5];
    memcpy(more, base_params, sizeof base_params);
    more[4] = (ParamSpec){ "extra.weight", 1, { 5 } };
    dst = param_graph(more, 5, 0);
    CHECK(st_load_graph_params(path, dst, NULL, 0, 1, &rep, err, sizeof err) == -1 &&
          strstr(err, "model parameter extra.weight is not in the file (1 missing"), "%s", err);
    CHECK(param_all_zero(dst, "head.weight"), "a refused strict load wrote parameters");
    CHECK(st_load_graph_params(path, dst, NULL, 0, 0, &rep, err, sizeof err) == 0, "non-strict: %s", err);
    CHECK(rep.loaded == 4 && rep.missing == 1 && rep.unexpected == 0, "report %d %d %d", rep.loaded, rep.missing, rep.unexpected);
    CHECK(params_equal(src, dst, "head.weight") && param_all_zero(dst, "extra.weight"), "non-strict values");
    graph_free(dst);

    // A model without head.weight: the file's head.weight is unexpected.
    ParamSpec fewer[3] = { base_params[0], base_params[1], base_params[3] };
    dst = param_graph(fewer, 3, 0);
    CHECK(st_load_graph_params(path, dst, NULL, 0, 1, &rep, err, sizeof err) == -1 &&
          strstr(err, "tensor \"head.weight\" in the file is no parameter of the model"), "%s", err);
    CHECK(st_load_graph_params(path, dst, NULL, 0, 0, &rep, err, sizeof err) == 0 && rep.loaded == 3 && rep.unexpected == 1,
          "non-strict: %s, loaded %d unexpected %d", err, rep.loaded, rep.unexpected);
    graph_free(dst);

    // Patterns: only the blocks; the rest is skipped on both sides, even strictly.
    const char *only[] = { "blocks.*" };
    dst = param_graph(more, 5, 0);
    CHECK(st_load_graph_params(path, dst, only, 1, 1, &rep, err, sizeof err) == 0, "patterns: %s", err);
    CHECK(rep.loaded == 2 && rep.missing == 0 && rep.unexpected == 0 && rep.skipped == 3 + 2, "report %d %d %d %d",
          rep.loaded, rep.missing, rep.unexpected, rep.skipped);
    CHECK(params_equal(src, dst, "blocks.0.attn.qkv.weight") && param_all_zero(dst, "head.weight"), "pattern values");
    graph_free(dst);

    // bf16 on disk: the parameters come back bf16-rounded.
    REQUIRE(st_save_graph_params(path, src, NULL, 0, ST_BF16, err, sizeof err) == 0, "save bf16: %s", err);
    dst = param_graph(base_params, 4, 0);
    CHECK(st_load_graph_params(path, dst, NULL, 0, 1, NULL, err, sizeof err) == 0, "bf16 load: %s", err);
    Tensor *a = graph_find_param(src, "tok_emb.weight"), *b = graph_find_param(dst, "tok_emb.weight");
    for (size_t i = 0; i < a->numel; i++) {
        float want_v = bf16_to_f32(f32_to_bf16(((float *)a->data)[i]));
        if (((float *)b->data)[i] != want_v) { CHECK(0, "bf16 value %zu", i); break; }
    }
    graph_free(dst);
    CHECK(st_load_graph_params(tmp_path("missing.safetensors"), src, NULL, 0, 1, NULL, err, sizeof err) == -1 &&
          strstr(err, "cannot open"), "%s", err);
    graph_free(src);
}

// ---- helper modes for tests/test_safetensors.py ---------------------------------------

// Values both sides compute exactly: IEEE double arithmetic rounded once to
// float, so numpy gets the same bits.
static void formula_values(float *x, size_t n, int k) {
    for (size_t i = 0; i < n; i++) {
        long long q = (long long)((i * 7919 + (size_t)k * 104729) % 1000) - 500;
        x[i] = (float)((double)q / 37.0 * ldexp(1.0, (int)(i % 9) - 4));
    }
}

static const float special_values[] = {
    0.0f, -0.0f, 1.5f, -2.75f, 0.1f, 65504.0f, 65520.0f, 1048576.0f, 0x1p-26f, 0x1p-24f, 0x3p-25f, 0x1.ff8p-15f, 3.0e-5f,
};

static int write_mode(const char *dir) {
    float w[7 * 5], bias[5], scalar[1];
    formula_values(w, 35, 0);
    formula_values(bias, 5, 1);
    formula_values(scalar, 1, 2);
    StTensor ts[] = {
        { .name = "model.w", .ndim = 2, .shape = { 7, 5 }, .data = w },
        { .name = "model.b", .ndim = 1, .shape = { 5 }, .data = bias },
        { .name = "a.scalar", .ndim = 0, .data = scalar },
        { .name = "z.empty", .ndim = 2, .shape = { 0, 4 }, .data = w },
        { .name = "special", .ndim = 1, .shape = { sizeof special_values / sizeof special_values[0] }, .data = special_values },
    };
    StMeta meta[] = { { "format", "pt" } };
    static const struct { const char *file; StDtype dtype; } outs[] = {
        { "distil_f32.safetensors", ST_F32 }, { "distil_f16.safetensors", ST_F16 }, { "distil_bf16.safetensors", ST_BF16 },
    };
    char path[4096], err[512];
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, outs[i].file);
        if (st_write(path, ts, 5, meta, 1, outs[i].dtype, err, sizeof err)) {
            fprintf(stderr, "distil: error: %s\n", err);
            return 2;
        }
    }
    return 0;
}

// A tensor's values: reals for the float dtypes (exact when dumped with
// JSONIO_F64), integers otherwise. NULL for a U64 value past int64, which
// jansson's integers cannot hold.
static json_t *values_json(const StInfo *t) {
    json_t *a = json_array();
    for (size_t i = 0; a && i < t->numel; i++) {
        const uint8_t *p = t->data + i * st_dtype_size(t->dtype);
        union { float f; double d; int64_t i64; uint64_t u64; int32_t i32; uint32_t u32; int16_t i16; uint16_t u16; } v;
        memcpy(&v, p, st_dtype_size(t->dtype));
        json_t *x;
        switch (t->dtype) {
        case ST_F32: x = jsonio_real(v.f); break;
        case ST_F16: x = jsonio_real(st_f16_to_f32(v.u16)); break;
        case ST_BF16: x = jsonio_real(bf16_to_f32(v.u16)); break;
        case ST_F64: x = jsonio_real(v.d); break;
        case ST_I64: x = json_integer(v.i64); break;
        case ST_I32: x = json_integer(v.i32); break;
        case ST_I16: x = json_integer(v.i16); break;
        case ST_I8: x = json_integer((int8_t)p[0]); break;
        case ST_U64: x = v.u64 <= INT64_MAX ? json_integer((json_int_t)v.u64) : NULL; break;
        case ST_U32: x = json_integer(v.u32); break;
        case ST_U16: x = json_integer(v.u16); break;
        case ST_U8: case ST_BOOL: x = json_integer(p[0]); break;
        default: x = json_null();
        }
        if (json_array_append_new(a, x)) { json_decref(a); a = NULL; }
    }
    return a;
}

static int dump_mode(const char *path) {
    char err[512];
    StFile *f = st_open(path, err, sizeof err);
    if (!f) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    json_t *meta = json_object(), *tensors = json_object();
    for (int i = 0; i < f->n_meta; i++) json_object_set_new(meta, f->meta[i].key, json_string(f->meta[i].value));
    int rc = 0;
    for (int i = 0; i < f->n_tensors && !rc; i++) {
        const StInfo *t = &f->tensors[i];
        json_t *shape = json_array(), *values = values_json(t);
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *entry = json_pack("{s:s, s:o, s:o}", "dtype", st_dtype_name(t->dtype), "shape", shape, "values", values);
        if (entry && (t->dtype == ST_F32 || t->dtype == ST_F16 || t->dtype == ST_BF16 || t->dtype == ST_F64)) {
            // The float reader too, so that it is what the script checks.
            float *x = malloc((t->numel ? t->numel : 1) * sizeof(float));
            int bad = !x || st_read_f32_at(f, i, x, t->numel, err, sizeof err);
            json_object_set_new(entry, "as_f32", bad ? json_null() : jsonio_f32_array(x, (int)t->numel));
            free(x);
        }
        if (!entry || json_object_set_new(tensors, t->name, entry)) {
            fprintf(stderr, "distil: error: %s: tensor %s does not fit JSON (a U64 past int64?)\n", path, t->name);
            rc = 2;
        }
    }
    json_t *doc = json_pack("{s:o, s:o}", "metadata", meta, "tensors", tensors);
    if (!rc && jsonio_dump(doc, stdout, JSON_COMPACT | JSONIO_F64)) rc = 2;
    json_decref(doc);
    st_close(f);
    return rc;
}

static void remove_tmp_dir(void) {
    DIR *d = opendir(tmp_dir);
    struct dirent *e;
    char path[512];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmp_dir, e->d_name);
        if (unlink(path)) rmdir(path);
    }
    if (d) closedir(d);
    rmdir(tmp_dir);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--write")) return write_mode(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "--dump")) return dump_mode(argv[2]);
    if (argc != 1) {
        fprintf(stderr, "usage: %s [--write DIR | --dump FILE]\n", argv[0]);
        return 2;
    }
    rng_seed(&rng, test_seed("test_safetensors"));
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/distil_st_XXXXXX");
    if (!mkdtemp(tmp_dir)) { perror("mkdtemp"); return 1; }
    RUN(test_f16_conversion);
    RUN(test_round_trip_f32);
    RUN(test_round_trip_f16);
    RUN(test_round_trip_bf16);
    RUN(test_raw_tensor);
    RUN(test_write_errors);
    RUN(test_corrupt_crafted);
    RUN(test_corrupt_truncated_and_fuzzed);
    RUN(test_atomic_write);
    RUN(test_graph_params);
    remove_tmp_dir();
    return test_summary();
}
