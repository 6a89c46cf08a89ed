// drivelog.c: opening shards and sets, and every structural rule of drive-log
// v1 (see drivelog.h; the per-sample rules are in sample.c).
#include "data/drivelog.h"
#include <errno.h>
#include <glob.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "data/chunkread.h"     // defines: dl_hdf5_error_text, dl_mem_type
#include "data/wall.h"          // defines: dl_wall_at (where the checking child is)
#include "data/zstd_filter.h"   // defines: dl_zstd_register, DL_ZSTD_FILTER_ID

// Recursive: opening a shard holds it and calls helpers that take it again.
static pthread_mutex_t hdf5_lock = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;
// Shard identities for the readers' chunk caches: a DlShard struct is often
// reused (a stack variable reopened on the next file), so its address is not one.
static atomic_uint_fast64_t next_serial = 1;
// While a shard opens behind the wall (under the HDF5 lock): the strings its
// child read, which this process takes instead of reading them itself.
static const DlWallValues *trusted;

void dl_hdf5_lock(void) {
    pthread_mutex_lock(&hdf5_lock);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);   // per thread in a thread-safe HDF5; errors come back as lines
}
void dl_hdf5_unlock(void) { pthread_mutex_unlock(&hdf5_lock); }
void dl_hdf5_lock_after_fork(void) {
    pthread_mutex_t fresh = PTHREAD_RECURSIVE_MUTEX_INITIALIZER_NP;   // the owner recorded is the parent's thread
    hdf5_lock = fresh;
}

int dl_parse_on_bad_sample(const char *s) {
    if (!strcmp(s, "error")) return DL_ON_BAD_ERROR;
    if (!strcmp(s, "skip")) return DL_ON_BAD_SKIP;
    return -1;
}

const char *dl_kind_name(DlKind kind) {
    static const char *names[] = { "other", "uint8", "int8", "int32", "int64", "float16", "float32", "string",
                                   "int16", "uint16", "uint32", "uint64", "float64" };
    return names[kind];
}

// ---- glob --------------------------------------------------------------------

void dl_free_paths(char **paths, int n_paths) {
    for (int i = 0; i < n_paths; i++) free(paths[i]);
    free(paths);
}

int dl_glob(char *const *patterns, int n_patterns, char ***paths, int *n_paths, char *err, size_t errlen) {
    char **out = NULL;
    int n = 0, cap = 0;
    for (int p = 0; p < n_patterns; p++) {
        glob_t g;
        int rc = glob(patterns[p], 0, NULL, &g);
        if (rc != 0 || g.gl_pathc == 0) {
            if (rc == 0) globfree(&g);
            snprintf(err, errlen, "%s: no file matches this pattern; check the path", patterns[p]);
            dl_free_paths(out, n);
            return -1;
        }
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int dup = 0;
            for (int j = 0; j < n && !dup; j++) dup = !strcmp(out[j], g.gl_pathv[i]);
            if (dup) continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 16;
                char **bigger = realloc(out, sizeof(char *) * (size_t)cap);
                if (!bigger) { globfree(&g); dl_free_paths(out, n); snprintf(err, errlen, "out of memory"); return -1; }
                out = bigger;
            }
            out[n++] = strdup(g.gl_pathv[i]);
        }
        globfree(&g);
    }
    *paths = out;
    *n_paths = n;
    return 0;
}

// ---- types and attributes ----------------------------------------------------

static DlKind type_kind(hid_t t) {
    size_t size = H5Tget_size(t);
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: {
        int sign = H5Tget_sign(t) == H5T_SGN_2;
        if (size == 1) return sign ? DL_I8 : DL_U8;
        if (size == 2) return sign ? DL_I16 : DL_U16;
        if (size == 4) return sign ? DL_I32 : DL_U32;
        if (size == 8) return sign ? DL_I64 : DL_U64;
        return DL_KIND_OTHER;
    }
    case H5T_FLOAT: return size == 2 ? DL_F16 : size == 4 ? DL_F32 : size == 8 ? DL_F64 : DL_KIND_OTHER;
    case H5T_STRING: return DL_STR;
    default: return DL_KIND_OTHER;
    }
}

void dl_type_name(hid_t t, char *buf, size_t len) {
    size_t bits = H5Tget_size(t) * 8;
    const char *order = H5Tget_order(t) == H5T_ORDER_BE && bits > 8 ? "big-endian " : "";
    switch (H5Tget_class(t)) {
    case H5T_INTEGER: snprintf(buf, len, "%s%sint%zu", order, H5Tget_sign(t) == H5T_SGN_2 ? "" : "u", bits); break;
    case H5T_FLOAT: snprintf(buf, len, "%sfloat%zu", order, bits); break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    case H5T_ENUM: snprintf(buf, len, "enum"); break;
    case H5T_VLEN: snprintf(buf, len, "variable-length sequence"); break;
    case H5T_ARRAY: snprintf(buf, len, "array"); break;
    default: snprintf(buf, len, "an unsupported type"); break;
    }
}

// Is `t` an IEEE binary16, binary32 or binary64 float as stored by numpy/h5py?
static int ieee_float(hid_t t) {
    size_t spos, epos, esize, mpos, msize;
    if (H5Tget_fields(t, &spos, &epos, &esize, &mpos, &msize) < 0) return 0;
    size_t bias = H5Tget_ebias(t);
    if (H5Tget_size(t) == 2) return spos == 15 && epos == 10 && esize == 5 && mpos == 0 && msize == 10 && bias == 15;
    if (H5Tget_size(t) == 8) return spos == 63 && epos == 52 && esize == 11 && mpos == 0 && msize == 52 && bias == 1023;
    return spos == 31 && epos == 23 && esize == 8 && mpos == 0 && msize == 23 && bias == 127;
}

// Read a string from an attribute or a one-element selection of a dataset,
// fixed or variable length, into a malloc'ed NUL-terminated copy.
static char *read_string_value(hid_t obj, int is_attr, hid_t ftype, hid_t fspace_sel) {
    hid_t mtype = H5Tcopy(H5T_C_S1);
    char *result = NULL;
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    if (H5Tis_variable_str(ftype) > 0) {
        char *value = NULL;
        H5Tset_size(mtype, H5T_VARIABLE);
        hid_t mspace = H5Screate(H5S_SCALAR);
        herr_t rc = is_attr ? H5Aread(obj, mtype, &value) : H5Dread(obj, mtype, mspace, fspace_sel, H5P_DEFAULT, &value);
        if (rc >= 0) {
            result = strdup(value ? value : "");
            if (value) H5free_memory(value);
        }
        H5Sclose(mspace);
    } else {
        size_t size = H5Tget_size(ftype);
        H5Tset_size(mtype, size + 1);
        H5Tset_strpad(mtype, H5T_STR_NULLTERM);
        char *buf = calloc(1, size + 1);
        hid_t mspace = H5Screate(H5S_SCALAR);
        herr_t rc = !buf ? -1 : is_attr ? H5Aread(obj, mtype, buf) : H5Dread(obj, mtype, mspace, fspace_sel, H5P_DEFAULT, buf);
        if (rc >= 0) result = buf;
        else free(buf);
        H5Sclose(mspace);
    }
    H5Tclose(mtype);
    return result;
}

typedef enum { ATTR_INT, ATTR_FLOAT, ATTR_STRING } AttrType;

// Read attribute `name` of obj. Returns 1 when present and read, 0 when
// absent, -1 (err set) when present but of the wrong kind.
static int read_attr(hid_t obj, const char *where, const char *name, AttrType want, int64_t *i, double *f,
                     char **s, const char *path, char *err, size_t errlen) {
    if (H5Aexists(obj, name) <= 0) return 0;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) { snprintf(err, errlen, "%s: %sattribute %s: unreadable", path, where, name); return -1; }
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cls = H5Tget_class(t);
    hssize_t npoints = H5Sget_simple_extent_npoints(sp);
    int rc = 1;
    char tname[64];
    dl_type_name(t, tname, sizeof tname);
    if (npoints != 1) {
        snprintf(err, errlen, "%s: %sattribute %s: holds %lld values, expected one", path, where, name, (long long)npoints);
        rc = -1;
    } else if (want == ATTR_INT && cls != H5T_INTEGER) {
        snprintf(err, errlen, "%s: %sattribute %s: type %s, expected an integer", path, where, name, tname);
        rc = -1;
    } else if (want == ATTR_FLOAT && cls != H5T_FLOAT && cls != H5T_INTEGER) {
        snprintf(err, errlen, "%s: %sattribute %s: type %s, expected a float", path, where, name, tname);
        rc = -1;
    } else if (want == ATTR_STRING && cls != H5T_STRING) {
        snprintf(err, errlen, "%s: %sattribute %s: type %s, expected a string", path, where, name, tname);
        rc = -1;
    } else if (want == ATTR_INT) {
        if (H5Aread(a, H5T_NATIVE_INT64, i) < 0) rc = -1;
    } else if (want == ATTR_FLOAT) {
        if (H5Aread(a, H5T_NATIVE_DOUBLE, f) < 0) rc = -1;
    } else if (H5Tis_variable_str(t) <= 0) {
        *s = read_string_value(a, 1, t, -1);   // stored in the attribute itself
        if (!*s) rc = -1;
    } else {
        // Stored in the global heap: behind the wall the child's copy, in
        // the child read here and handed over.
        char key[160];
        snprintf(key, sizeof key, "%sattribute %s", where, name);
        const char *value = trusted ? dl_wall_value(trusted, key, NULL) : NULL;
        *s = trusted ? (value ? strdup(value) : NULL) : read_string_value(a, 1, t, -1);
        if (*s && !trusted) dl_wall_put(key, *s, strlen(*s));
        if (!*s) rc = -1;
    }
    if (rc < 0 && !err[0]) snprintf(err, errlen, "%s: %sattribute %s: unreadable", path, where, name);
    H5Sclose(sp);
    H5Tclose(t);
    H5Aclose(a);
    return rc;
}

// ---- datasets ----------------------------------------------------------------

// What each dataset slot must be. A shape entry is a dimension name the
// checks below resolve ("N", "Th", ...) or a literal size ("3").
typedef struct SlotRule {
    const char *path;
    int required;
    DlKind kind, alt_kind;      // alt_kind: float16 where the contract allows it
    int rank;
    const char *shape;          // for messages: "[N, Th, 4]"
} SlotRule;

static const SlotRule slot_rules[DL_CAMERA0] = {
    [DL_CLIP_ID]       = { "/clip_id", 1, DL_I64, 0, 1, "[N]" },
    [DL_T0_US]         = { "/t0_us", 1, DL_I64, 0, 1, "[N]" },
    [DL_HISTORY]       = { "/ego/history", 1, DL_F32, 0, 3, "[N, Th, 4]" },
    [DL_FUTURE]        = { "/ego/future", 0, DL_F32, 0, 3, "[N, T, 3]" },
    [DL_COMMAND]       = { "/ego/command", 0, DL_I8, 0, 1, "[N]" },
    [DL_TRAJECTORY]    = { "/teacher/trajectory", 1, DL_F32, 0, 4, "[N, K, T, 3]" },
    [DL_WEIGHT]        = { "/teacher/weight", 0, DL_F32, 0, 2, "[N, K]" },
    [DL_OFFSETS]       = { "/teacher/trace/offsets", 1, DL_I64, 0, 1, "[N + 1]" },
    [DL_TOKENS]        = { "/teacher/trace/tokens", 1, DL_I32, 0, 1, "[M]" },
    [DL_TOPK_IDS]      = { "/teacher/trace/topk_ids", 1, DL_I32, 0, 2, "[M, k]" },
    [DL_TOPK_LOGPROBS] = { "/teacher/trace/topk_logprobs", 1, DL_F32, DL_F16, 2, "[M, k]" },
    [DL_TEXT]          = { "/teacher/trace/text", 0, DL_STR, 0, 1, "[N]" },
    [DL_EMBEDDING]     = { "/teacher/embedding", 0, DL_F32, DL_F16, 2, "[N, D]" },
    [DL_VOCAB]         = { "/vocab", 1, DL_STR, 0, 1, "[V]" },
};
static const SlotRule camera_rule = { NULL, 1, DL_U8, 0, 5, "[N, F, H, W, 3]" };

static int is_integer_kind(DlKind k) {
    return k == DL_U8 || k == DL_I8 || k == DL_I16 || k == DL_U16 || k == DL_I32 || k == DL_U32 || k == DL_I64 || k == DL_U64;
}

// The type a field stored as `kind` is read as, by the rule: its own type,
// float16 where allowed, any integer type for an integer field (each value
// checked to fit when read), float64 for a float32 one; DL_KIND_OTHER when
// the rule refuses it.
static DlKind field_kind(DlKind kind, const SlotRule *rule) {
    if (kind == rule->kind) return kind;
    if (rule->alt_kind && kind == rule->alt_kind) return kind;
    if (is_integer_kind(rule->kind) && is_integer_kind(kind)) return rule->kind;
    if (rule->kind == DL_F32 && kind == DL_F64) return DL_F32;
    return DL_KIND_OTHER;
}

// Does every group on the way to `path` exist, and the link itself?
static int link_exists(hid_t file, const char *path) {
    char prefix[128];
    for (const char *p = strchr(path + 1, '/'); ; p = strchr(p + 1, '/')) {
        size_t len = p ? (size_t)(p - path) : strlen(path);
        if (len >= sizeof prefix) return 0;
        memcpy(prefix, path, len);
        prefix[len] = 0;
        if (H5Lexists(file, prefix, H5P_DEFAULT) <= 0) return 0;
        if (!p) return 1;
    }
}

static int filter_readable(int id) {
    return id == H5Z_FILTER_DEFLATE || id == H5Z_FILTER_SHUFFLE || id == DL_ZSTD_FILTER_ID;
}

void dl_filter_name(int id, char *buf, size_t len) {
    switch (id) {
    case H5Z_FILTER_DEFLATE: snprintf(buf, len, "deflate"); break;
    case H5Z_FILTER_SHUFFLE: snprintf(buf, len, "shuffle"); break;
    case H5Z_FILTER_FLETCHER32: snprintf(buf, len, "fletcher32"); break;
    case H5Z_FILTER_SZIP: snprintf(buf, len, "szip"); break;
    case H5Z_FILTER_NBIT: snprintf(buf, len, "nbit"); break;
    case H5Z_FILTER_SCALEOFFSET: snprintf(buf, len, "scaleoffset"); break;
    case DL_ZSTD_FILTER_ID: snprintf(buf, len, "zstd"); break;
    case 32001: snprintf(buf, len, "blosc"); break;
    case 32004: snprintf(buf, len, "lz4"); break;
    case 32008: snprintf(buf, len, "bitshuffle"); break;
    default: snprintf(buf, len, "filter %d", id); break;
    }
}

// Layout and filters of an open dataset; decides whether its chunks can be
// read raw. Returns 0, or -1 when it needs a filter this process lacks.
static int read_layout(DlDataset *d, hid_t type, const char *path, char *err, size_t errlen) {
    hid_t dcpl = H5Dget_create_plist(d->id);
    if (dcpl < 0) { snprintf(err, errlen, "%s: %s: cannot read its storage layout", path, d->path); return -1; }
    int rc = 0;
    d->chunked = H5Pget_layout(dcpl) == H5D_CHUNKED;
    if (d->chunked && H5Pget_chunk(dcpl, d->rank, d->chunk) != d->rank) d->chunked = 0;
    int nf = H5Pget_nfilters(dcpl);
    d->n_filters = 0;
    int all_readable = 1;
    for (int i = 0; i < nf && i < DL_MAX_FILTERS; i++) {
        DlFilter *f = &d->filters[d->n_filters++];
        char name[64];
        unsigned config;
        f->n_cd = sizeof f->cd / sizeof f->cd[0];
        f->id = H5Pget_filter2(dcpl, (unsigned)i, &f->flags, &f->n_cd, f->cd, sizeof name, name, &config);
        if (f->n_cd > sizeof f->cd / sizeof f->cd[0]) f->n_cd = sizeof f->cd / sizeof f->cd[0];
        if (filter_readable(f->id)) continue;
        all_readable = 0;
        if (H5Zfilter_avail(f->id) <= 0) {
            char fname[32];
            dl_filter_name(f->id, fname, sizeof fname);
            snprintf(err, errlen, "%s: %s: compressed with HDF5 %s (id %d), which distil cannot read; rewrite the shard with zstd, deflate or no compression",
                     path, d->path, fname, f->id);
            rc = -1;
        }
    }
    if (nf > DL_MAX_FILTERS) all_readable = 0;
    int little = H5Tget_order(type) == H5T_ORDER_LE || H5Tget_size(type) == 1;
    int numeric = d->kind != DL_STR && d->kind != DL_KIND_OTHER;
    int ieee = d->kind == DL_F16 || d->kind == DL_F32 ? ieee_float(type) : 1;
    d->raw_ok = d->chunked && all_readable && little && numeric && ieee;
    if (d->chunked) {
        size_t bytes = d->type_size;
        for (int i = 0; i < d->rank; i++) bytes *= d->chunk[i];
        d->chunk_bytes = bytes;
    }
    H5Pclose(dcpl);
    return rc;
}

static void shape_text(const DlDataset *d, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < d->rank && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, "%s%llu", i ? ", " : "", (unsigned long long)d->dims[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

// Open the dataset of `slot` if the shard has it and check its dtype and rank.
// Returns 1 (open), 0 (absent and optional), -1 (err set).
static int open_dataset(DlShard *sh, int slot, const SlotRule *rule, const char *dpath, char *err, size_t errlen) {
    DlDataset *d = &sh->ds[slot];
    snprintf(d->path, sizeof d->path, "%s", dpath);
    if (!link_exists(sh->file, dpath)) {
        if (!rule->required) return 0;
        snprintf(err, errlen, "%s: %s: missing; every drive-log v1 shard needs it", sh->path, dpath);
        return -1;
    }
    hid_t obj = H5Oopen(sh->file, dpath, H5P_DEFAULT);   // H5Oopen + H5Iget_type: the same calls in HDF5 1.10 and 1.14
    H5I_type_t obj_type = obj >= 0 ? H5Iget_type(obj) : H5I_BADID;
    if (obj >= 0) H5Oclose(obj);
    if (obj_type != H5I_DATASET) {
        snprintf(err, errlen, "%s: %s: not a dataset; expected %s %s", sh->path, dpath, dl_kind_name(rule->kind), rule->shape);
        return -1;
    }
    d->id = H5Dopen2(sh->file, dpath, H5P_DEFAULT);
    if (d->id < 0) {
        char why[160];
        dl_hdf5_error_text(why, sizeof why);
        snprintf(err, errlen, "%s: %s: cannot open (HDF5: %s); the file is damaged", sh->path, dpath, why);
        return -1;
    }
    hid_t type = H5Dget_type(d->id), space = H5Dget_space(d->id);
    int rc = 1;
    d->kind = type_kind(type);
    d->field = field_kind(d->kind, rule);
    d->type_size = H5Tget_size(type);
    d->rank = H5Sget_simple_extent_ndims(space);
    char tname[64];
    dl_type_name(type, tname, sizeof tname);
    if (d->field == DL_KIND_OTHER) {
        const char *wider = is_integer_kind(rule->kind) ? " (or any integer type whose values fit)"
                          : rule->kind == DL_F32 ? " (or float64)" : "";
        snprintf(err, errlen, "%s: %s: dtype %s, expected %s%s%s%s", sh->path, dpath, tname,
                 rule->alt_kind ? dl_kind_name(rule->alt_kind) : "", rule->alt_kind ? " or " : "", dl_kind_name(rule->kind), wider);
        rc = -1;
    } else if (d->rank != rule->rank) {
        snprintf(err, errlen, "%s: %s: rank %d, expected %d (%s)", sh->path, dpath, d->rank, rule->rank, rule->shape);
        rc = -1;
    } else {
        H5Sget_simple_extent_dims(space, d->dims, NULL);
        if (read_layout(d, type, sh->path, err, errlen) < 0) rc = -1;
    }
    H5Tclose(type);
    H5Sclose(space);
    return rc;
}

// Check dimension `dim` of a dataset against an expected size.
static int check_dim(const DlShard *sh, const DlDataset *d, int dim, hsize_t want, const char *what,
                     const char *shape, char *err, size_t errlen) {
    if (d->dims[dim] == want) return 0;
    char got[96];
    shape_text(d, got, sizeof got);
    snprintf(err, errlen, "%s: %s: shape %s, expected %s with %s = %llu", sh->path, d->path, got, shape, what,
             (unsigned long long)want);
    return -1;
}

// Check a dimension that defines a size (Th, K, F, ...): at least 1 and an int.
static int check_size(const DlShard *sh, const DlDataset *d, int dim, const char *what, int *out,
                      char *err, size_t errlen) {
    if (d->dims[dim] < 1 || d->dims[dim] > (1u << 24)) {
        snprintf(err, errlen, "%s: %s: %s = %llu, expected 1 .. %u", sh->path, d->path, what,
                 (unsigned long long)d->dims[dim], 1u << 24);
        return -1;
    }
    *out = (int)d->dims[dim];
    return 0;
}

static int parse_cameras(DlShard *sh, char *err, size_t errlen) {
    const char *p = sh->cameras;
    sh->n_cameras = 0;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        while (len && (*p == ' ' || *p == '\t')) { p++; len--; }
        while (len && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
        if (len == 0 || len > 60 || memchr(p, '/', len)) {
            snprintf(err, errlen, "%s: attribute cameras: '%s' is not a comma-separated list of camera names", sh->path, sh->cameras);
            return -1;
        }
        if (sh->n_cameras == DL_MAX_CAMERAS) {
            snprintf(err, errlen, "%s: attribute cameras: more than %d cameras", sh->path, DL_MAX_CAMERAS);
            return -1;
        }
        char *name = strndup(p, len);
        for (int i = 0; i < sh->n_cameras; i++)
            if (!strcmp(sh->camera_names[i], name)) {
                snprintf(err, errlen, "%s: attribute cameras: '%s' is named twice", sh->path, name);
                free(name);
                return -1;
            }
        sh->camera_names[sh->n_cameras++] = name;
        if (!end) return 0;
        p = end + 1;
    }
}

// ---- structural problems ------------------------------------------------------

// A structural problem was found (its line is in err). With a listener
// (dl_shard_check) it is handed over and the checks go on with what does
// not depend on it; without one the first problem ends the open. Returns 1
// to stop, 0 to go on.
static int found(DlShard *sh, const char *err) {
    sh->n_problems++;
    if (!sh->on_problem) return 1;
    sh->on_problem(err, sh->problem_ctx);
    return 0;
}

static int read_root_attributes(DlShard *sh, char *err, size_t errlen) {
    static const char *need[] = { "drivelog_version", "fleet", "teacher", "hz", "cameras" };
    int64_t i64 = 0;
    double f = 0;
    char *s = NULL;
    int got[5];
    got[0] = read_attr(sh->file, "", "drivelog_version", ATTR_INT, &sh->version, &f, &s, sh->path, err, errlen);
    if (got[0] < 0 && found(sh, err)) return -1;
    got[1] = read_attr(sh->file, "", "fleet", ATTR_STRING, &i64, &f, &sh->fleet, sh->path, err, errlen);
    if (got[1] < 0 && found(sh, err)) return -1;
    got[2] = read_attr(sh->file, "", "teacher", ATTR_STRING, &i64, &f, &sh->teacher, sh->path, err, errlen);
    if (got[2] < 0 && found(sh, err)) return -1;
    got[3] = read_attr(sh->file, "", "hz", ATTR_FLOAT, &i64, &sh->hz, &s, sh->path, err, errlen);
    if (got[3] < 0 && found(sh, err)) return -1;
    got[4] = read_attr(sh->file, "", "cameras", ATTR_STRING, &i64, &f, &sh->cameras, sh->path, err, errlen);
    if (got[4] < 0 && found(sh, err)) return -1;
    for (int i = 0; i < 5; i++)
        if (got[i] == 0) {
            snprintf(err, errlen, "%s: root attribute %s: missing; every drive-log v1 shard needs it", sh->path, need[i]);
            if (found(sh, err)) return -1;
        }
    if (got[0] > 0 && sh->version != DL_VERSION) {
        snprintf(err, errlen, "%s: root attribute drivelog_version: %lld, but this reader reads version %d",
                 sh->path, (long long)sh->version, DL_VERSION);
        if (found(sh, err)) return -1;
    }
    if (got[3] > 0 && (!isfinite(sh->hz) || sh->hz <= 0)) {
        snprintf(err, errlen, "%s: root attribute hz: %g, expected a positive rate in steps per second", sh->path, sh->hz);
        if (found(sh, err)) return -1;
    }
    if (got[4] > 0 && parse_cameras(sh, err, errlen) && found(sh, err)) return -1;
    return 0;
}

// Open every dataset and check dtypes, ranks, N and the shapes they share;
// a check that needs a dataset with a problem of its own is left out.
static int check_datasets(DlShard *sh, char *err, size_t errlen) {
    for (int s = 0; s < DL_N_SLOTS; s++) sh->ds[s].id = -1;
    int present[DL_N_SLOTS] = {0};   // open, with the right dtype and rank
    int missing = 0;                 // required datasets absent or unusable
    for (int s = 0; s < DL_CAMERA0; s++) {
        dl_wall_at(slot_rules[s].path);
        int rc = open_dataset(sh, s, &slot_rules[s], slot_rules[s].path, err, errlen);
        if (rc < 0) {
            if (found(sh, err)) return -1;
            missing += slot_rules[s].required;
            continue;
        }
        present[s] = rc;
    }
    for (int c = 0; c < sh->n_cameras; c++) {
        char path[96];
        snprintf(path, sizeof path, "/camera/%s", sh->camera_names[c]);
        dl_wall_at(path);
        if (open_dataset(sh, DL_CAMERA0 + c, &camera_rule, path, err, errlen) < 0) {
            if (found(sh, err)) return -1;
            missing++;
            continue;
        }
        present[DL_CAMERA0 + c] = 1;
    }
    DlDataset *ds = sh->ds;
    // Sizes no real shard reaches: a damaged header must not turn into a huge allocation.
    for (int s = 0; s < DL_N_SLOTS; s++) {
        if (!present[s]) continue;
        double row = (double)ds[s].type_size;
        for (int i = 1; i < ds[s].rank; i++) row *= (double)ds[s].dims[i];
        if (ds[s].dims[0] > (1ull << 36) || row > (double)(1ull << 31)) {
            char shape[96];
            shape_text(&ds[s], shape, sizeof shape);
            snprintf(err, errlen, "%s: %s: shape %s is beyond what distil reads (2^36 rows, 2 GiB a row); the file is damaged",
                     sh->path, ds[s].path, shape);
            if (found(sh, err)) return -1;
            present[s] = 0;
            missing += s < DL_CAMERA0 ? slot_rules[s].required : 1;
        }
    }
    // N first, so a short dataset reads as "mismatched N" rather than a shape.
    if (present[DL_CLIP_ID]) {
        hsize_t N = ds[DL_CLIP_ID].dims[0];
        sh->n = (int64_t)N;
        for (int s = 0; s < DL_N_SLOTS; s++) {
            if (!present[s] || s == DL_CLIP_ID || s == DL_VOCAB || s == DL_TOKENS || s == DL_TOPK_IDS || s == DL_TOPK_LOGPROBS) continue;
            hsize_t want = s == DL_OFFSETS ? N + 1 : N;
            if (ds[s].dims[0] == want) continue;
            snprintf(err, errlen, "%s: %s: %llu %s, but /clip_id has %llu samples; every per-sample dataset needs the same N",
                     sh->path, ds[s].path, (unsigned long long)ds[s].dims[0], s == DL_OFFSETS ? "offsets (N + 1)" : "samples",
                     (unsigned long long)N);
            if (found(sh, err)) return -1;
            present[s] = 0;
            missing++;
        }
    }
    // Each shape check on its own; a failed one leaves out what depends on it.
#define CHECK_SHAPE(call) do { if (call) { if (found(sh, err)) return -1; ok = 0; } } while (0)
    int ok;
    for (int c = 0; c < sh->n_cameras; c++) {
        DlDataset *d = &ds[DL_CAMERA0 + c];
        if (!present[DL_CAMERA0 + c]) continue;
        ok = 1;
        CHECK_SHAPE(check_size(sh, d, 1, "F", &sh->frames[c], err, errlen));
        CHECK_SHAPE(check_size(sh, d, 2, "H", &sh->height[c], err, errlen));
        CHECK_SHAPE(check_size(sh, d, 3, "W", &sh->width[c], err, errlen));
        CHECK_SHAPE(check_dim(sh, d, 4, 3, "RGB", camera_rule.shape, err, errlen));
        missing += !ok;
    }
    if (present[DL_HISTORY]) {
        ok = 1;
        CHECK_SHAPE(check_size(sh, &ds[DL_HISTORY], 1, "Th", &sh->Th, err, errlen));
        CHECK_SHAPE(check_dim(sh, &ds[DL_HISTORY], 2, 4, "(x, y, yaw, speed)", slot_rules[DL_HISTORY].shape, err, errlen));
        missing += !ok;
    }
    int have_K = 0, have_T = 0;
    if (present[DL_TRAJECTORY]) {
        DlDataset *traj = &ds[DL_TRAJECTORY];
        ok = 1;
        CHECK_SHAPE(check_size(sh, traj, 1, "K", &sh->K, err, errlen));
        have_K = ok;
        CHECK_SHAPE(check_size(sh, traj, 2, "T", &sh->T, err, errlen));
        have_T = ok;
        CHECK_SHAPE(check_dim(sh, traj, 3, 3, "(x, y, yaw)", slot_rules[DL_TRAJECTORY].shape, err, errlen));
        missing += !ok;
    }
    if (present[DL_FUTURE]) {
        ok = 1;
        if (have_T)
            CHECK_SHAPE(check_dim(sh, &ds[DL_FUTURE], 1, (hsize_t)sh->T, "T of /teacher/trajectory", slot_rules[DL_FUTURE].shape, err, errlen));
        CHECK_SHAPE(check_dim(sh, &ds[DL_FUTURE], 2, 3, "(x, y, yaw)", slot_rules[DL_FUTURE].shape, err, errlen));
        missing += !ok;
    }
    if (present[DL_WEIGHT] && have_K) {
        ok = 1;
        CHECK_SHAPE(check_dim(sh, &ds[DL_WEIGHT], 1, (hsize_t)sh->K, "K of /teacher/trajectory", slot_rules[DL_WEIGHT].shape, err, errlen));
        missing += !ok;
    }
    if (present[DL_TOKENS] && present[DL_TOPK_IDS] && present[DL_TOPK_LOGPROBS]) {
        sh->M = (int64_t)ds[DL_TOKENS].dims[0];
        ok = 1;
        CHECK_SHAPE(check_dim(sh, &ds[DL_TOPK_IDS], 0, (hsize_t)sh->M, "M of /teacher/trace/tokens", slot_rules[DL_TOPK_IDS].shape, err, errlen));
        int have_k = 1;
        if (check_size(sh, &ds[DL_TOPK_IDS], 1, "k", &sh->k, err, errlen)) { if (found(sh, err)) return -1; ok = have_k = 0; }
        CHECK_SHAPE(check_dim(sh, &ds[DL_TOPK_LOGPROBS], 0, (hsize_t)sh->M, "M of /teacher/trace/tokens", slot_rules[DL_TOPK_LOGPROBS].shape, err, errlen));
        if (have_k)
            CHECK_SHAPE(check_dim(sh, &ds[DL_TOPK_LOGPROBS], 1, (hsize_t)sh->k, "k of /teacher/trace/topk_ids", slot_rules[DL_TOPK_LOGPROBS].shape, err, errlen));
        missing += !ok;
    } else {
        missing++;
    }
    sh->D = 0;
    if (present[DL_EMBEDDING]) {
        ok = 1;
        CHECK_SHAPE(check_size(sh, &ds[DL_EMBEDDING], 1, "D", &sh->D, err, errlen));
        missing += !ok;
    }
#undef CHECK_SHAPE
    if (present[DL_VOCAB]) {
        sh->V = (int64_t)ds[DL_VOCAB].dims[0];
        if (sh->V < 1 || sh->V > INT32_MAX) {
            if (sh->V < 1) snprintf(err, errlen, "%s: /vocab: empty; it needs every teacher token piece", sh->path);
            else snprintf(err, errlen, "%s: /vocab: %lld pieces, more than int32 token ids can name", sh->path, (long long)sh->V);
            if (found(sh, err)) return -1;
            missing++;
        }
    }
    // The offsets and vocab are loaded only from a shard whose datasets are sound.
    return missing || sh->n_problems ? -1 : 0;
}

// The whole /teacher/trace/offsets; offsets[0] = 0 and offsets[N] = M hold
// for the shard (the per-sample order is checked when a sample is read).
static int load_offsets(DlShard *sh, char *err, size_t errlen) {
    DlDataset *d = &sh->ds[DL_OFFSETS];
    sh->offsets = malloc(sizeof(int64_t) * (size_t)(sh->n + 1));
    if (!sh->offsets) { snprintf(err, errlen, "%s: out of memory for %lld offsets", sh->path, (long long)sh->n + 1); return -1; }
    if (H5Dread(d->id, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, sh->offsets) < 0) {
        char why[160];
        dl_hdf5_error_text(why, sizeof why);
        snprintf(err, errlen, "%s: %s: unreadable (HDF5: %s); the file is damaged", sh->path, d->path, why);
        return -1;
    }
    if (sh->offsets[0] != 0) {
        snprintf(err, errlen, "%s: %s: offsets[0] = %lld, expected 0", sh->path, d->path, (long long)sh->offsets[0]);
        return -1;
    }
    if (sh->offsets[sh->n] != sh->M) {
        snprintf(err, errlen, "%s: %s: offsets[N] = %lld, but /teacher/trace/tokens holds M = %lld tokens", sh->path, d->path,
                 (long long)sh->offsets[sh->n], (long long)sh->M);
        return -1;
    }
    return 0;
}

// The vocabulary's pieces, one after another, each with its NUL: how the
// wall's child hands a variable-length /vocab to its parent.
static void vocab_to_wall(const DlShard *sh) {
    if (!dl_wall_in_child()) return;
    size_t bytes = 0;
    for (int64_t i = 0; i < sh->V; i++) bytes += strlen(sh->vocab[i]) + 1;
    char *all = malloc(bytes ? bytes : 1), *at = all;
    if (!all) return;   // the parent then misses it and refuses the shard
    for (int64_t i = 0; i < sh->V; i++) at = stpcpy(at, sh->vocab[i]) + 1;
    dl_wall_put("/vocab", all, bytes);
    free(all);
}

static int vocab_from_wall(DlShard *sh) {
    size_t bytes = 0;
    const char *all = dl_wall_value(trusted, "/vocab", &bytes), *end = all + bytes;
    for (int64_t i = 0; all && i < sh->V; i++) {
        size_t len = strnlen(all, (size_t)(end - all));
        if (all + len >= end || !(sh->vocab[i] = strdup(all))) return -1;
        all += len + 1;
    }
    return all && all == end ? 0 : -1;
}

static int load_vocab(DlShard *sh, char *err, size_t errlen) {
    DlDataset *d = &sh->ds[DL_VOCAB];
    size_t V = (size_t)sh->V;
    hid_t ftype = H5Dget_type(d->id), mtype = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    int rc = -1;
    char why[160] = "out of memory";   // taken when the read fails: the closes below clear HDF5's error stack
    sh->vocab = calloc(V, sizeof(char *));
    if (!sh->vocab) goto done;
    if (H5Tis_variable_str(ftype) > 0 && trusted) {
        rc = vocab_from_wall(sh);
        if (rc) snprintf(why, sizeof why, "its check read it differently");
    } else if (H5Tis_variable_str(ftype) > 0) {
        H5Tset_size(mtype, H5T_VARIABLE);
        char **raw = calloc(V, sizeof(char *));
        if (raw && H5Dread(d->id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) dl_hdf5_error_text(why, sizeof why);
        else if (raw) {
            rc = 0;
            for (size_t i = 0; i < V; i++) {
                sh->vocab[i] = strdup(raw[i] ? raw[i] : "");
                if (raw[i]) H5free_memory(raw[i]);
                if (!sh->vocab[i]) rc = -1;
            }
            if (rc == 0) vocab_to_wall(sh);
        }
        free(raw);
    } else {
        size_t size = H5Tget_size(ftype);
        H5T_str_t pad = H5Tget_strpad(ftype);
        if ((double)V * (double)size > (double)(1ull << 34)) goto done;
        H5Tset_size(mtype, size);
        H5Tset_strpad(mtype, pad);
        char *raw = malloc(V * size + 1);
        if (raw && H5Dread(d->id, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, raw) < 0) dl_hdf5_error_text(why, sizeof why);
        else if (raw) {
            rc = 0;
            for (size_t i = 0; i < V; i++) {
                const char *p = raw + i * size;
                size_t len = strnlen(p, size);
                if (pad == H5T_STR_SPACEPAD) while (len && p[len - 1] == ' ') len--;
                sh->vocab[i] = strndup(p, len);
                if (!sh->vocab[i]) rc = -1;
            }
        }
        free(raw);
    }
done:
    H5Tclose(mtype);
    H5Tclose(ftype);
    if (rc < 0) {
        snprintf(err, errlen, "%s: /vocab: unreadable (HDF5: %s); the file is damaged: copy or export it again", sh->path, why);
        return -1;
    }
    sh->bos = sh->eos = -1;
    double f;
    char *s = NULL;
    if (read_attr(d->id, "/vocab ", "bos", ATTR_INT, &sh->bos, &f, &s, sh->path, err, errlen) < 0) return -1;
    if (read_attr(d->id, "/vocab ", "eos", ATTR_INT, &sh->eos, &f, &s, sh->path, err, errlen) < 0) return -1;
    return 0;
}

static int read_temperature(DlShard *sh, char *err, size_t errlen) {
    double t = 1.0;
    int64_t i;
    char *s = NULL;
    if (read_attr(sh->ds[DL_TOPK_LOGPROBS].id, "/teacher/trace/topk_logprobs ", "temperature", ATTR_FLOAT, &i, &t, &s,
                  sh->path, err, errlen) < 0)
        return -1;
    if (!isfinite(t) || t <= 0) {
        snprintf(err, errlen, "%s: /teacher/trace/topk_logprobs attribute temperature: %g, expected a positive number", sh->path, t);
        return -1;
    }
    sh->temperature = (float)t;
    return 0;
}

static int open_locked(DlShard *sh, const char *path, char *err, size_t errlen) {
    sh->path = strdup(path);
    if (!sh->path) { snprintf(err, errlen, "%s: out of memory", path); found(sh, err); return -1; }
    if (access(path, R_OK) != 0) {
        snprintf(err, errlen, "%s: cannot open (%s)", path, strerror(errno));
        found(sh, err);
        return -1;
    }
    dl_wall_at("the superblock");
    sh->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (sh->file < 0) {
        char why[160];
        dl_hdf5_error_text(why, sizeof why);
        snprintf(err, errlen, "%s: not a readable HDF5 file (HDF5: %s); the file is truncated or damaged, copy or export it again",
                 path, why);
        found(sh, err);
        return -1;
    }
    dl_wall_at("the root attributes");
    if (read_root_attributes(sh, err, errlen)) return -1;
    // The offsets, the vocabulary and the temperature are read from sound datasets only.
    if (check_datasets(sh, err, errlen)) return -1;
    dl_wall_at(sh->ds[DL_OFFSETS].path);
    if (load_offsets(sh, err, errlen) && found(sh, err)) return -1;
    dl_wall_at(sh->ds[DL_VOCAB].path);
    if (load_vocab(sh, err, errlen) && found(sh, err)) return -1;
    dl_wall_at(sh->ds[DL_TOPK_LOGPROBS].path);
    if (read_temperature(sh, err, errlen) && found(sh, err)) return -1;
    return sh->n_problems ? -1 : 0;
}

// Each problem the wall's child hands over (dl_shard_check), counted as one of sh's.
static void problem_heard(const char *line, void *sh) { found(sh, line); }

// walled: the metadata is read in a child process first (data/wall.h).
// sh's listener (dl_shard_check) is set by the caller and kept: behind the
// wall the child lists the problems, the crash or hang that may end it too.
static int shard_open(DlShard *sh, const char *path, int walled, char *err, size_t errlen) {
    sh->serial = atomic_fetch_add(&next_serial, 1);
    sh->file = -1;
    for (int s = 0; s < DL_N_SLOTS; s++) sh->ds[s].id = -1;
    err[0] = 0;
    if (dl_zstd_register() < 0) {
        snprintf(err, errlen, "%s: cannot register the zstd filter with HDF5", path);
        found(sh, err);
        return -1;
    }
    DlWallValues strings;
    if (walled && dl_shard_vet(path, &strings, sh->on_problem ? problem_heard : NULL, sh, err, errlen)) {
        sh->path = strdup(path);
        if (!sh->on_problem) found(sh, err);   // with a listener, every line went through it
        return -1;
    }
    sh->walled = walled;
    dl_hdf5_lock();
    trusted = walled ? &strings : NULL;
    int rc = open_locked(sh, path, err, errlen);
    trusted = NULL;
    dl_hdf5_unlock();
    if (walled) dl_wall_free(&strings);
    if (rc < 0) {
        char *keep = sh->path;   // close frees everything but the name, for the caller's messages
        sh->path = NULL;
        dl_shard_close(sh);
        sh->path = keep;
    }
    return rc;
}

int dl_shard_open(DlShard *sh, const char *path, char *err, size_t errlen) {
    memset(sh, 0, sizeof *sh);
    return shard_open(sh, path, 1, err, errlen);
}

int dl_shard_open_here(DlShard *sh, const char *path, char *err, size_t errlen) {
    memset(sh, 0, sizeof *sh);
    return shard_open(sh, path, 0, err, errlen);
}

static int shard_check(DlShard *sh, const char *path, int walled, void (*problem)(const char *line, void *ctx), void *ctx) {
    char err[DL_ERR_LEN];
    memset(sh, 0, sizeof *sh);
    sh->on_problem = problem;
    sh->problem_ctx = ctx;
    int rc = shard_open(sh, path, walled, err, sizeof err);
    sh->on_problem = NULL;
    return rc < 0 ? (sh->n_problems ? sh->n_problems : 1) : 0;
}

int dl_shard_check(DlShard *sh, const char *path, void (*problem)(const char *line, void *ctx), void *ctx) {
    return shard_check(sh, path, 1, problem, ctx);
}

int dl_shard_check_here(DlShard *sh, const char *path, void (*problem)(const char *line, void *ctx), void *ctx) {
    return shard_check(sh, path, 0, problem, ctx);
}

void dl_shard_drop_vocab(DlShard *sh) {
    if (!sh->vocab) return;
    for (int64_t i = 0; i < sh->V; i++) free(sh->vocab[i]);
    free(sh->vocab);
    sh->vocab = NULL;
}

void dl_shard_close(DlShard *sh) {
    dl_hdf5_lock();
    for (int s = 0; s < DL_N_SLOTS; s++)
        if (sh->ds[s].id >= 0) { H5Dclose(sh->ds[s].id); sh->ds[s].id = -1; }
    if (sh->file >= 0) { H5Fclose(sh->file); sh->file = -1; }
    dl_hdf5_unlock();
    dl_shard_drop_vocab(sh);
    for (int c = 0; c < sh->n_cameras; c++) free(sh->camera_names[c]);
    sh->n_cameras = 0;
    free(sh->offsets);
    free(sh->fleet);
    free(sh->teacher);
    free(sh->cameras);
    free(sh->path);
    sh->offsets = NULL;
    sh->fleet = sh->teacher = sh->cameras = sh->path = NULL;
}

// ---- agreement between shards -------------------------------------------------

static int differ(const DlShard *a, const DlShard *b, const char *what, long long va, long long vb, char *err, size_t errlen) {
    if (va == vb) return 0;
    snprintf(err, errlen, "%s: %s %lld differs from %s's %lld; all shards of one dataset must agree", b->path, what, vb, a->path, va);
    return -1;
}

int dl_shard_agree(const DlShard *a, const DlShard *b, char *err, size_t errlen) {
    if (fabs(a->hz - b->hz) > 1e-9 * fabs(a->hz)) {
        snprintf(err, errlen, "%s: hz %g differs from %s's %g; all shards of one dataset must agree", b->path, b->hz, a->path, a->hz);
        return -1;
    }
    int same_cameras = a->n_cameras == b->n_cameras;
    for (int c = 0; c < a->n_cameras && same_cameras; c++) same_cameras = !strcmp(a->camera_names[c], b->camera_names[c]);
    if (!same_cameras) {
        snprintf(err, errlen, "%s: cameras '%s' differ from %s's '%s'; all shards of one dataset must agree", b->path, b->cameras,
                 a->path, a->cameras);
        return -1;
    }
    for (int c = 0; c < a->n_cameras; c++) {
        char what[96];
        snprintf(what, sizeof what, "/camera/%s frames F", a->camera_names[c]);
        if (differ(a, b, what, a->frames[c], b->frames[c], err, errlen)) return -1;
        snprintf(what, sizeof what, "/camera/%s height H", a->camera_names[c]);
        if (differ(a, b, what, a->height[c], b->height[c], err, errlen)) return -1;
        snprintf(what, sizeof what, "/camera/%s width W", a->camera_names[c]);
        if (differ(a, b, what, a->width[c], b->width[c], err, errlen)) return -1;
    }
    if (differ(a, b, "/ego/history steps Th", a->Th, b->Th, err, errlen) ||
        differ(a, b, "/teacher/trajectory samples K", a->K, b->K, err, errlen) ||
        differ(a, b, "/teacher/trajectory steps T", a->T, b->T, err, errlen) ||
        differ(a, b, "/teacher/trace/topk_ids width k", a->k, b->k, err, errlen))
        return -1;
    if (a->D && b->D && differ(a, b, "/teacher/embedding width D", a->D, b->D, err, errlen)) return -1;
    if (differ(a, b, "/vocab size V", a->V, b->V, err, errlen)) return -1;
    if (!a->vocab || !b->vocab) return 0;
    for (int64_t i = 0; i < a->V; i++)
        if (strcmp(a->vocab[i], b->vocab[i])) {
            snprintf(err, errlen, "%s: /vocab piece %lld '%.40s' differs from %s's '%.40s'; all shards of one dataset must share the vocab",
                     b->path, (long long)i, b->vocab[i], a->path, a->vocab[i]);
            return -1;
        }
    return 0;
}

// ---- sets ----------------------------------------------------------------------

DlSet *dl_set_open(char *const *patterns, int n_patterns, char *err, size_t errlen) {
    return dl_set_open_on_bad(patterns, n_patterns, DL_ON_BAD_ERROR, err, errlen);
}

// Keep a skipped shard's line in the set.
static int note_unusable(DlSet *set, const char *line) {
    char **more = realloc(set->unusable, sizeof(char *) * (size_t)(set->n_unusable + 1));
    if (!more) return -1;
    set->unusable = more;
    if (!(set->unusable[set->n_unusable] = strdup(line))) return -1;
    set->n_unusable++;
    return 0;
}

DlSet *dl_set_open_on_bad(char *const *patterns, int n_patterns, int on_bad, char *err, size_t errlen) {
    char **paths = NULL;
    int n = 0;
    if (dl_glob(patterns, n_patterns, &paths, &n, err, errlen)) return NULL;
    DlSet *set = calloc(1, sizeof *set);
    if (set) {
        set->shards = calloc((size_t)n, sizeof(DlShard));
        set->first = calloc((size_t)n + 1, sizeof(int64_t));
    }
    if (!set || !set->shards || !set->first) {
        snprintf(err, errlen, "out of memory opening %d shards", n);
        dl_free_paths(paths, n);
        dl_set_close(set);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        DlShard *sh = &set->shards[set->n_shards];
        int rc = dl_shard_open(sh, paths[i], err, errlen);
        if (rc == 0 && set->n_shards > 0) {
            rc = dl_shard_agree(&set->shards[0], sh, err, errlen);
            dl_shard_drop_vocab(sh);
        }
        if (rc) {
            dl_shard_close(sh);
            if (on_bad == DL_ON_BAD_SKIP && note_unusable(set, err) == 0) continue;
            dl_free_paths(paths, n);
            dl_set_close(set);
            return NULL;
        }
        set->first[set->n_shards + 1] = set->first[set->n_shards] + sh->n;
        set->n_shards++;
    }
    dl_free_paths(paths, n);
    if (set->n_shards == 0) {
        snprintf(err, errlen, "no usable shard among the %d the patterns match; the first: %.*s", n, DL_ERR_LEN / 2,
                 set->unusable[0]);
        dl_set_close(set);
        return NULL;
    }
    set->n_samples = set->first[set->n_shards];
    return set;
}

void dl_set_close(DlSet *set) {
    if (!set) return;
    for (int i = 0; i < set->n_shards; i++) dl_shard_close(&set->shards[i]);
    for (int i = 0; i < set->n_unusable; i++) free(set->unusable[i]);
    free(set->unusable);
    free(set->shards);
    free(set->first);
    free(set);
}

void dl_set_locate(const DlSet *set, int64_t g, int *shard, int64_t *index) {
    int lo = 0, hi = set->n_shards - 1;   // the last shard whose first sample is <= g
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (set->first[mid] <= g) lo = mid;
        else hi = mid - 1;
    }
    *shard = lo;
    *index = g - set->first[lo];
}
