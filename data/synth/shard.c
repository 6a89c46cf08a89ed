// shard.c: the HDF5 side of the generator (see data/synth/shard.h).
#include "data/synth/shard.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hdf5.h>
#include <zstd.h>
#include "data/synth/trace.h"    // defines: synth_vocab_*, SYNTH_TOKEN_BOS/EOS, SYNTH_TEMPERATURE
#include "data/zstd_filter.h"    // defines: dl_zstd_register, DL_ZSTD_FILTER_ID

// Rows per chunk of the 1-D datasets and the trace datasets: a reader that
// wants one sample's trace (about 10 rows) decodes one such chunk (8 KB of
// top-k log-probs), not the whole shard's.
#define ROWS_PER_CHUNK 256

struct SynthShard {
    char *path;
    hid_t file;
    int n, level, n_datasets;
    const SynthPreset *preset;
    hid_t dset[SYNTH_DS_MAX];            // the per-sample datasets
    size_t sample_bytes[SYNTH_DS_MAX];
    int rank[SYNTH_DS_MAX];
    // Compressed chunks of the current batch, one slot per (dataset, sample).
    unsigned char *scratch;
    size_t scratch_cap;
};

static void set_err(char *err, size_t errlen, const char *path, const char *what) {
    snprintf(err, errlen, "%s: %s", path, what);
}

// Dataset creation properties: no timestamps (reproducible bytes), chunked
// when chunk != NULL (zstd at `level`, or no filter at level 0), contiguous otherwise.
static hid_t make_dcpl(int rank, const hsize_t *chunk, int level) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (dcpl < 0) return -1;
    H5Pset_obj_track_times(dcpl, 0);
    if (chunk) {
        unsigned cd = (unsigned)level;
        if (H5Pset_chunk(dcpl, rank, chunk) < 0 ||
            (level > 0 && H5Pset_filter(dcpl, DL_ZSTD_FILTER_ID, H5Z_FLAG_OPTIONAL, 1, &cd) < 0) ||
            H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER) < 0) { H5Pclose(dcpl); return -1; }
    }
    return dcpl;
}

static hid_t make_dataset(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                          const hsize_t *chunk, int level) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = make_dcpl(rank, chunk, level);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    hid_t d = -1;
    if (space >= 0 && dcpl >= 0 && lcpl >= 0) {
        H5Pset_create_intermediate_group(lcpl, 1);
        d = H5Dcreate2(file, name, type, space, lcpl, dcpl, H5P_DEFAULT);
    }
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    if (space >= 0) H5Sclose(space);
    return d;
}

static hid_t utf8_string_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int attr_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, const void *value) {
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT);
    int ok = a >= 0 && H5Awrite(a, mem_type, value) >= 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(space);
    return ok ? 0 : -1;
}

static int attr_string(hid_t loc, const char *name, const char *value) {
    hid_t t = utf8_string_type();
    int rc = attr_write(loc, name, t, t, &value);
    H5Tclose(t);
    return rc;
}

static int attr_int(hid_t loc, const char *name, int64_t value) {
    return attr_write(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &value);
}

static int attr_float(hid_t loc, const char *name, double value) {
    return attr_write(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &value);
}

// Groups without timestamps, made before anything lands in them.
static int make_groups(hid_t file) {
    static const char *const groups[] = { "/camera", "/ego", "/teacher", "/teacher/trace" };
    hid_t gcpl = H5Pcreate(H5P_GROUP_CREATE);
    H5Pset_obj_track_times(gcpl, 0);
    int rc = 0;
    for (size_t i = 0; i < sizeof groups / sizeof groups[0] && rc == 0; i++) {
        hid_t g = H5Gcreate2(file, groups[i], H5P_DEFAULT, gcpl, H5P_DEFAULT);
        if (g < 0) rc = -1; else H5Gclose(g);
    }
    H5Pclose(gcpl);
    return rc;
}

static int write_root_attrs(hid_t file, const SynthPreset *p, const char *fleet) {
    if (attr_int(file, "drivelog_version", 1) < 0) return -1;
    if (attr_string(file, "fleet", fleet) < 0) return -1;
    if (attr_string(file, "teacher", "distil synth rule-based teacher v1") < 0) return -1;
    if (attr_float(file, "hz", p->hz) < 0) return -1;
    return attr_string(file, "cameras", p->cameras_attr);
}

// One per-sample dataset: shape (n, tail...), chunk (1, tail...).
static int add_sample_dataset(SynthShard *sh, int d, const char *name, hid_t type, size_t elem,
                              int tail_rank, const hsize_t *tail) {
    hsize_t dims[6] = { (hsize_t)sh->n }, chunk[6] = { 1 };
    size_t bytes = elem;
    for (int i = 0; i < tail_rank; i++) { dims[i + 1] = chunk[i + 1] = tail[i]; bytes *= tail[i]; }
    sh->dset[d] = make_dataset(sh->file, name, type, tail_rank + 1, dims, chunk, sh->level);
    sh->sample_bytes[d] = bytes;
    sh->rank[d] = tail_rank + 1;
    return sh->dset[d] < 0 ? -1 : 0;
}

static int create_sample_datasets(SynthShard *sh) {
    const SynthPreset *p = sh->preset;
    hsize_t hist[2] = { (hsize_t)p->history, 4 }, fut[2] = { (hsize_t)p->horizon, 3 };
    hsize_t traj[3] = { (hsize_t)p->samples_k, (hsize_t)p->horizon, 3 };
    hsize_t weight[1] = { (hsize_t)p->samples_k }, emb[1] = { (hsize_t)p->embed_dim };
    hsize_t cam[4] = { (hsize_t)p->frames, (hsize_t)p->height, (hsize_t)p->width, 3 };
    if (add_sample_dataset(sh, SYNTH_DS_HISTORY, "/ego/history", H5T_IEEE_F32LE, 4, 2, hist) < 0) return -1;
    if (add_sample_dataset(sh, SYNTH_DS_FUTURE, "/ego/future", H5T_IEEE_F32LE, 4, 2, fut) < 0) return -1;
    if (add_sample_dataset(sh, SYNTH_DS_TRAJECTORY, "/teacher/trajectory", H5T_IEEE_F32LE, 4, 3, traj) < 0) return -1;
    if (add_sample_dataset(sh, SYNTH_DS_WEIGHT, "/teacher/weight", H5T_IEEE_F32LE, 4, 1, weight) < 0) return -1;
    if (add_sample_dataset(sh, SYNTH_DS_EMBEDDING, "/teacher/embedding", H5T_IEEE_F32LE, 4, 1, emb) < 0) return -1;
    for (int c = 0; c < p->n_cameras; c++) {
        char name[64];
        snprintf(name, sizeof name, "/camera/%s", p->camera_names[c]);
        if (add_sample_dataset(sh, SYNTH_DS_CAMERA0 + c, name, H5T_STD_U8LE, 1, 4, cam) < 0) return -1;
    }
    sh->n_datasets = synth_sample_datasets(p);
    return 0;
}

static void shard_free(SynthShard *sh) {
    for (int d = 0; d < SYNTH_DS_MAX; d++) if (sh->dset[d] >= 0) H5Dclose(sh->dset[d]);
    if (sh->file >= 0) H5Fclose(sh->file);
    free(sh->scratch);
    free(sh->path);
    free(sh);
}

SynthShard *synth_shard_create(const char *path, const SynthPreset *p, int n, const char *fleet,
                               int level, char *err, size_t errlen) {
    if (dl_zstd_register() < 0) { set_err(err, errlen, path, "cannot register the zstd filter"); return NULL; }
    SynthShard *sh = calloc(1, sizeof *sh);
    if (!sh) { set_err(err, errlen, path, "out of memory"); return NULL; }
    sh->path = strdup(path);
    sh->file = -1;
    for (int d = 0; d < SYNTH_DS_MAX; d++) sh->dset[d] = -1;
    sh->n = n;
    sh->level = level;
    sh->preset = p;
    // The 1.10 file format gives chunked datasets a fixed-array chunk index:
    // one lookup per chunk instead of a B-tree walk.
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_libver_bounds(fapl, H5F_LIBVER_V110, H5F_LIBVER_LATEST);
    // The root group is made with the file; without this it records the time.
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    sh->file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    H5Pclose(fcpl);
    H5Pclose(fapl);
    if (!sh->path || sh->file < 0) {
        set_err(err, errlen, path, "cannot create the file; check that the folder is writable");
        shard_free(sh);
        return NULL;
    }
    if (make_groups(sh->file) < 0 || write_root_attrs(sh->file, p, fleet) < 0 || create_sample_datasets(sh) < 0) {
        set_err(err, errlen, path, "cannot create the shard's groups, attributes or datasets");
        synth_shard_abort(sh);
        return NULL;
    }
    return sh;
}

int synth_sample_datasets(const SynthPreset *p) { return SYNTH_DS_CAMERA0 + p->n_cameras; }

size_t synth_sample_bytes(const SynthPreset *p, int d) {
    switch (d) {
    case SYNTH_DS_HISTORY:    return (size_t)p->history * 4 * sizeof(float);
    case SYNTH_DS_FUTURE:     return (size_t)p->horizon * 3 * sizeof(float);
    case SYNTH_DS_TRAJECTORY: return (size_t)p->samples_k * p->horizon * 3 * sizeof(float);
    case SYNTH_DS_WEIGHT:     return (size_t)p->samples_k * sizeof(float);
    case SYNTH_DS_EMBEDDING:  return (size_t)p->embed_dim * sizeof(float);
    }
    return d < synth_sample_datasets(p) ? (size_t)p->frames * p->height * p->width * 3 : 0;
}

// Level 0: the chunks go in as they are.
static int write_plain_samples(SynthShard *sh, int first, int count, const void *const *src,
                               char *err, size_t errlen) {
    for (int d = 0; d < sh->n_datasets; d++)
        for (int i = 0; i < count; i++) {
            hsize_t offset[6] = { (hsize_t)(first + i) };
            const unsigned char *chunk = (const unsigned char *)src[d] + (size_t)i * sh->sample_bytes[d];
            if (H5Dwrite_chunk(sh->dset[d], H5P_DEFAULT, 0, offset, sh->sample_bytes[d], chunk) < 0) {
                set_err(err, errlen, sh->path, "cannot write a chunk; is the disk full?");
                return -1;
            }
        }
    return 0;
}

int synth_shard_write_samples(SynthShard *sh, int first, int count, const void *const *src,
                              char *err, size_t errlen) {
    if (sh->level == 0) return write_plain_samples(sh, first, count, src, err, errlen);
    // One scratch slot per (dataset, sample), each big enough for zstd's worst case.
    size_t slot_off[SYNTH_DS_MAX + 1], need = 0;
    for (int d = 0; d < sh->n_datasets; d++) {
        slot_off[d] = need;
        need += (size_t)count * ZSTD_compressBound(sh->sample_bytes[d]);
    }
    if (need > sh->scratch_cap) {
        unsigned char *bigger = realloc(sh->scratch, need);
        if (!bigger) { set_err(err, errlen, sh->path, "out of memory for the compressed chunks"); return -1; }
        sh->scratch = bigger;
        sh->scratch_cap = need;
    }
    int n_jobs = sh->n_datasets * count;
    size_t *packed = malloc((size_t)n_jobs * sizeof *packed);   // (n_datasets, count) compressed sizes
    if (!packed) { set_err(err, errlen, sh->path, "out of memory"); return -1; }
    int failed = 0;
    #pragma omp parallel reduction(|:failed)
    {
        ZSTD_CCtx *cctx = ZSTD_createCCtx();
        if (!cctx) failed = 1;
        #pragma omp for schedule(dynamic, 1)
        for (int j = 0; j < n_jobs; j++) {
            if (!cctx) continue;
            int d = j / count, i = j % count;
            size_t bytes = sh->sample_bytes[d], bound = ZSTD_compressBound(bytes);
            const unsigned char *in = (const unsigned char *)src[d] + (size_t)i * bytes;
            unsigned char *out = sh->scratch + slot_off[d] + (size_t)i * bound;
            packed[j] = ZSTD_compressCCtx(cctx, out, bound, in, bytes, sh->level);
            if (ZSTD_isError(packed[j])) failed = 1;
        }
        ZSTD_freeCCtx(cctx);
    }
    if (failed) { free(packed); set_err(err, errlen, sh->path, "zstd compression failed"); return -1; }
    // HDF5 takes the chunks one by one on this thread. A chunk zstd cannot
    // shrink (a few floats of noise) is stored as it is, with bit 0 of its
    // filter mask set: HDF5's own way of saying an optional filter was skipped.
    for (int j = 0; j < n_jobs; j++) {
        int d = j / count, i = j % count;
        hsize_t offset[6] = { (hsize_t)(first + i) };   // the other coordinates are 0
        const void *chunk = sh->scratch + slot_off[d] + (size_t)i * ZSTD_compressBound(sh->sample_bytes[d]);
        size_t size = packed[j];
        uint32_t mask = 0;
        if (size >= sh->sample_bytes[d]) {
            chunk = (const unsigned char *)src[d] + (size_t)i * sh->sample_bytes[d];
            size = sh->sample_bytes[d];
            mask = 1;
        }
        if (H5Dwrite_chunk(sh->dset[d], H5P_DEFAULT, mask, offset, size, chunk) < 0) {
            free(packed);
            set_err(err, errlen, sh->path, "cannot write a chunk; is the disk full?");
            return -1;
        }
    }
    free(packed);
    return 0;
}

// A whole 1-D or 2-D dataset through the zstd filter, ROWS_PER_CHUNK rows a chunk.
static int write_rows(hid_t file, const char *name, hid_t file_type, hid_t mem_type, int rank,
                      hsize_t rows, hsize_t cols, const void *data, int level) {
    hsize_t dims[2] = { rows, cols }, chunk[2] = { rows < ROWS_PER_CHUNK ? rows : ROWS_PER_CHUNK, cols };
    if (chunk[0] == 0) chunk[0] = 1;
    hid_t d = make_dataset(file, name, file_type, rank, dims, chunk, level);
    if (d < 0) return -1;
    int rc = rows == 0 || H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0 ? 0 : -1;
    H5Dclose(d);
    return rc;
}

static int write_strings(hid_t file, const char *name, hsize_t n, const char *const *strings) {
    hid_t t = utf8_string_type();
    hid_t d = make_dataset(file, name, t, 1, &n, NULL, 0);
    int rc = d >= 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, strings) >= 0 ? 0 : -1;
    if (d >= 0) H5Dclose(d);
    H5Tclose(t);
    return rc;
}

static int write_vocab(hid_t file, const SynthPreset *p) {
    int v = p->vocab_size;
    const char **pieces = malloc((size_t)v * sizeof *pieces);
    char (*made)[SYNTH_PIECE_CAP] = malloc((size_t)v * sizeof *made);   // the pieces made up on the fly
    int rc = pieces && made ? 0 : -1;
    for (int i = 0; !rc && i < v; i++) pieces[i] = synth_piece(i, made[i]);
    if (!rc) rc = write_strings(file, "/vocab", (hsize_t)v, pieces);
    free(pieces);
    free(made);
    if (rc < 0) return -1;
    hid_t d = H5Dopen2(file, "/vocab", H5P_DEFAULT);
    if (d < 0) return -1;
    rc = attr_int(d, "bos", SYNTH_TOKEN_BOS) < 0 || attr_int(d, "eos", SYNTH_TOKEN_EOS) < 0 ? -1 : 0;
    H5Dclose(d);
    return rc;
}

static int write_tail(SynthShard *sh, const SynthShardTail *t) {
    hid_t f = sh->file;
    hsize_t n = (hsize_t)sh->n, m = (hsize_t)t->offsets[sh->n], k = (hsize_t)sh->preset->topk;
    int lv = sh->level;
    if (write_rows(f, "/clip_id", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, n, 1, t->clip_id, lv) < 0) return -1;
    if (write_rows(f, "/t0_us", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, n, 1, t->t0_us, lv) < 0) return -1;
    if (write_rows(f, "/ego/command", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, n, 1, t->command, lv) < 0) return -1;
    if (write_rows(f, "/teacher/trace/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, n + 1, 1, t->offsets, lv) < 0) return -1;
    if (write_rows(f, "/teacher/trace/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, m, 1, t->tokens, lv) < 0) return -1;
    if (write_rows(f, "/teacher/trace/topk_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, m, k, t->topk_ids, lv) < 0) return -1;
    if (write_rows(f, "/teacher/trace/topk_logprobs", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, m, k, t->topk_logprobs, lv) < 0) return -1;
    hid_t lp = H5Dopen2(f, "/teacher/trace/topk_logprobs", H5P_DEFAULT);
    if (lp < 0) return -1;
    int rc = attr_float(lp, "temperature", SYNTH_TEMPERATURE);
    H5Dclose(lp);
    if (rc < 0) return -1;
    if (write_strings(f, "/teacher/trace/text", n, t->text) < 0) return -1;
    return write_vocab(f, sh->preset);
}

int synth_shard_finish(SynthShard *sh, const SynthShardTail *tail, char *err, size_t errlen) {
    if (write_tail(sh, tail) < 0) {
        set_err(err, errlen, sh->path, "cannot write the ids, traces or vocab; is the disk full?");
        synth_shard_abort(sh);
        return -1;
    }
    for (int d = 0; d < SYNTH_DS_MAX; d++) if (sh->dset[d] >= 0) { H5Dclose(sh->dset[d]); sh->dset[d] = -1; }
    herr_t closed = H5Fclose(sh->file);
    sh->file = -1;
    if (closed < 0) {
        set_err(err, errlen, sh->path, "cannot close the file; is the disk full?");
        synth_shard_abort(sh);
        return -1;
    }
    shard_free(sh);
    return 0;
}

void synth_shard_abort(SynthShard *sh) {
    if (!sh) return;
    char *path = sh->path ? strdup(sh->path) : NULL;
    shard_free(sh);
    if (path) { remove(path); free(path); }
}
