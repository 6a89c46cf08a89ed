// drivelog_write.c: shards with known contents (see drivelog_write.h), written
// with the HDF5 C API.
#include "data/drivelog_write.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <hdf5.h>
#include "data/drivelog.h"      // defines: DL_HISTORY, ... (value fields), dl_hdf5_lock
#include "data/zstd_filter.h"   // defines: dl_zstd_register, DL_ZSTD_FILTER_ID

DlWriteSpec dlw_defaults(void) {
    DlWriteSpec s = { 0 };
    s.n = 12;
    s.cams = 2; s.F = 2; s.H = 8; s.W = 12;
    s.Th = 4; s.T = 6; s.K = 3; s.k = 4; s.D = 5; s.V = 50;
    s.trace_min = 0; s.trace_max = 9;
    s.chunk_samples = 1;
    s.compress = DLW_ZSTD;
    s.zstd_level = 3;
    s.with_future = s.with_command = s.with_weight = s.with_text = 1;
    s.hz = 10.0;
    s.temperature = 0.7f;
    return s;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33; x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33; x *= 0xc4ceb9fe1a85ec53ull;
    return x ^ (x >> 33);
}

int64_t dlw_trace_len(const DlWriteSpec *s, int64_t n) {
    int64_t span = s->trace_max - s->trace_min + 1;
    return s->trace_min + (int64_t)(mix((uint64_t)n * 131 + (uint64_t)s->shard_id) % (uint64_t)span);
}

int64_t dlw_trace_offset(const DlWriteSpec *s, int64_t n) {
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++) off += dlw_trace_len(s, i);
    return off;
}

// A smooth image with noise on a quarter of the pixels: zstd level 3 packs it
// about 1.8x at 224x400, about what it does with camera frames.
uint8_t dlw_pixel(const DlWriteSpec *s, int64_t n, int cam, int f, int y, int x, int ch) {
    uint64_t key = ((((uint64_t)n * 16 + (uint64_t)cam) * 8 + (uint64_t)f) * 4096 + (uint64_t)y) * 4096 + (uint64_t)x;
    uint64_t h = mix(key * 3 + (uint64_t)ch);
    int noise = (h >> 8) % 4 == 0 ? (int)(h & 7) : 0;
    return (uint8_t)(x / 4 + (y / 4) * 2 + ch * 60 + (int)n * 13 + cam * 40 + f * 5 + s->shard_id * 7 + noise);
}

// Quarter steps in [-12, 12]: exact in float16 as in float32.
float dlw_value(const DlWriteSpec *s, int field, int64_t n, int64_t i) {
    int64_t v = ((int64_t)s->shard_id * 7 + field * 5 + n * 3 + i) % 97;
    return (float)(v - 48) * 0.25f;
}

float dlw_weight(const DlWriteSpec *s, int64_t n, int j) { return (float)((n + j + s->shard_id) % 4 + 1); }
int32_t dlw_token(const DlWriteSpec *s, int64_t n, int64_t t) { return (int32_t)((n * 7 + t * 3 + s->shard_id) % s->V); }
int32_t dlw_topk_id(const DlWriteSpec *s, int64_t n, int64_t t, int j) { return (dlw_token(s, n, t) + j) % s->V; }
float dlw_topk_logprob(int j) { return -(float)(j + 1); }   // probabilities sum to < 0.59 for any k

// ---- HDF5 helpers --------------------------------------------------------------

static hid_t string_type(int fixed, size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, fixed ? (len ? len : 1) : H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    if (fixed) H5Tset_strpad(t, H5T_STR_NULLPAD);
    return t;
}

static int write_string_attr(hid_t obj, const char *name, const char *value, int fixed) {
    hid_t t = string_type(fixed, strlen(value)), sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : fixed ? H5Awrite(a, t, value) : H5Awrite(a, t, &value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

static int write_scalar_attr(hid_t obj, const char *name, hid_t type, const void *value) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, type, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, type, value);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

static hid_t half_type(void) {
    hid_t t = H5Tcopy(H5T_IEEE_F32LE);
    H5Tset_fields(t, 15, 10, 5, 0, 10);
    H5Tset_precision(t, 16);
    H5Tset_size(t, 2);
    H5Tset_ebias(t, 15);
    return t;
}

// Create a dataset; rows (dims[0]) per chunk = chunk_rows, 0 or an empty
// dataset: contiguous. inner_chunk overrides the other chunk dims when given.
static hid_t create(hid_t file, const char *path, hid_t type, int rank, const hsize_t *dims, hsize_t chunk_rows,
                    const hsize_t *inner_chunk, const DlWriteSpec *s) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    int empty = 0;
    for (int i = 0; i < rank; i++) empty |= dims[i] == 0;
    if (chunk_rows && !empty) {
        hsize_t chunk[DL_MAX_RANK];
        chunk[0] = chunk_rows < dims[0] ? chunk_rows : dims[0];
        for (int i = 1; i < rank; i++) chunk[i] = inner_chunk ? inner_chunk[i] : dims[i];
        H5Pset_chunk(dcpl, rank, chunk);
        if (s->compress == DLW_ZSTD) {
            unsigned level = (unsigned)s->zstd_level;
            H5Pset_filter(dcpl, DL_ZSTD_FILTER_ID, H5Z_FLAG_OPTIONAL, 1, &level);
        } else if (s->compress == DLW_DEFLATE_SHUFFLE) {
            H5Pset_shuffle(dcpl);
            H5Pset_deflate(dcpl, 4);
        }
    }
    hid_t d = H5Dcreate2(file, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Pclose(lcpl);
    H5Sclose(space);
    return d;
}

static int write_all(hid_t file, const char *path, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                     hsize_t chunk_rows, const DlWriteSpec *s, const void *data) {
    hid_t d = create(file, path, ftype, rank, dims, chunk_rows, NULL, s);
    if (d < 0) return -1;
    herr_t rc = H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    H5Dclose(d);
    return rc < 0 ? -1 : 0;
}

// A float field of `width` values per sample, from dlw_value.
static int write_field(hid_t file, const char *path, hid_t ftype, int field, int rank, const hsize_t *dims,
                       const DlWriteSpec *s) {
    size_t width = 1;
    for (int i = 1; i < rank; i++) width *= dims[i];
    float *v = malloc(sizeof(float) * (size_t)s->n * width + 1);
    if (!v) return -1;
    for (int64_t n = 0; n < s->n; n++)
        for (size_t i = 0; i < width; i++) v[(size_t)n * width + i] = dlw_value(s, field, n, (int64_t)i);
    int rc = write_all(file, path, ftype, H5T_NATIVE_FLOAT, rank, dims, (hsize_t)s->chunk_samples, s, v);
    free(v);
    return rc;
}

// Cameras, one sample at a time (a 4-camera 224x400 shard does not fit in memory whole).
static int write_cameras(hid_t file, const DlWriteSpec *s) {
    size_t frame = (size_t)s->F * (size_t)s->H * (size_t)s->W * 3;
    uint8_t *px = malloc(frame);
    if (!px) return -1;
    int rc = 0;
    for (int c = 0; c < s->cams && !rc; c++) {
        char path[64];
        snprintf(path, sizeof path, "/camera/cam%d", c);
        hsize_t dims[5] = { (hsize_t)s->n, (hsize_t)s->F, (hsize_t)s->H, (hsize_t)s->W, 3 };
        hsize_t inner[5] = { 1, 1, (hsize_t)(s->H > 1 ? (s->H + 1) / 2 : 1), (hsize_t)s->W, 3 };
        hid_t d = create(file, path, H5T_STD_U8LE, 5, dims, (hsize_t)s->chunk_samples, s->split_inner ? inner : NULL, s);
        if (d < 0) { rc = -1; break; }
        hid_t fspace = H5Dget_space(d);
        hsize_t count[5] = { 1, dims[1], dims[2], dims[3], 3 };
        hid_t mspace = H5Screate_simple(5, count, NULL);
        for (int64_t n = 0; n < s->n && !rc; n++) {
            uint8_t *p = px;
            for (int f = 0; f < s->F; f++)
                for (int y = 0; y < s->H; y++)
                    for (int x = 0; x < s->W; x++)
                        for (int ch = 0; ch < 3; ch++) *p++ = dlw_pixel(s, n, c, f, y, x, ch);
            hsize_t start[5] = { (hsize_t)n, 0, 0, 0, 0 };
            H5Sselect_hyperslab(fspace, H5S_SELECT_SET, start, NULL, count, NULL);
            if (H5Dwrite(d, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, px) < 0) rc = -1;
        }
        H5Sclose(mspace);
        H5Sclose(fspace);
        H5Dclose(d);
    }
    free(px);
    return rc;
}

static int write_trace(hid_t file, const DlWriteSpec *s, hid_t lp_type) {
    int64_t N = s->n, M = dlw_trace_offset(s, N), k = s->k;
    int64_t *offsets = malloc(sizeof(int64_t) * (size_t)(N + 1));
    int32_t *tokens = malloc(sizeof(int32_t) * (size_t)(M + 1)), *ids = malloc(sizeof(int32_t) * (size_t)(M * k + 1));
    float *lps = malloc(sizeof(float) * (size_t)(M * k + 1));
    int rc = -1;
    if (!offsets || !tokens || !ids || !lps) goto done;
    offsets[0] = 0;
    for (int64_t n = 0; n < N; n++) {
        int64_t len = dlw_trace_len(s, n), o = offsets[n];
        for (int64_t t = 0; t < len; t++) {
            tokens[o + t] = dlw_token(s, n, t);
            for (int j = 0; j < k; j++) {
                ids[(o + t) * k + j] = dlw_topk_id(s, n, t, j);
                lps[(o + t) * k + j] = dlw_topk_logprob(j);
            }
        }
        offsets[n + 1] = o + len;
    }
    // Trace chunks hold a fixed number of tokens, so a trace may span two.
    hsize_t trace_chunk = s->chunk_samples ? 7 : 0;
    hsize_t d_off = (hsize_t)N + 1, d_tok = (hsize_t)M, d_topk[2] = { (hsize_t)M, (hsize_t)k };
    if (write_all(file, "/teacher/trace/offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &d_off, (hsize_t)s->chunk_samples, s, offsets) ||
        write_all(file, "/teacher/trace/tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &d_tok, trace_chunk, s, tokens) ||
        write_all(file, "/teacher/trace/topk_ids", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, d_topk, trace_chunk, s, ids))
        goto done;
    hid_t d = create(file, "/teacher/trace/topk_logprobs", lp_type, 2, d_topk, trace_chunk, NULL, s);
    if (d < 0) goto done;
    herr_t wrc = H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, lps);
    if (wrc >= 0 && s->temperature > 0) {
        double t = s->temperature;
        wrc = write_scalar_attr(d, "temperature", H5T_IEEE_F64LE, &t);
    }
    H5Dclose(d);
    rc = wrc < 0 ? -1 : 0;
done:
    free(offsets); free(tokens); free(ids); free(lps);
    return rc;
}

// Strings: the vocab and the per-sample text.
static int write_strings(hid_t file, const char *path, char **values, hsize_t count, int fixed) {
    size_t longest = 1;
    for (hsize_t i = 0; i < count; i++) if (strlen(values[i]) > longest) longest = strlen(values[i]);
    hid_t t = string_type(fixed, longest), space = H5Screate_simple(1, &count, NULL);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(file, path, t, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = -1;
    if (d >= 0 && fixed) {
        char *buf = calloc(count ? count : 1, longest);
        for (hsize_t i = 0; buf && i < count; i++) memcpy(buf + i * longest, values[i], strlen(values[i]));
        rc = buf ? H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : -1;
        free(buf);
    } else if (d >= 0) {
        rc = H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, values);
    }
    if (d >= 0) H5Dclose(d);
    H5Pclose(lcpl);
    H5Sclose(space);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

static int write_vocab_and_text(hid_t file, const DlWriteSpec *s) {
    int64_t count = s->V > s->n ? s->V : s->n;
    char **strs = calloc((size_t)count + 1, sizeof(char *));
    int rc = -1;
    if (!strs) return -1;
    for (int64_t i = 0; i < s->V; i++) {
        strs[i] = malloc(32);
        if (!strs[i]) goto done;
        snprintf(strs[i], 32, s->vocab_salt ? "tok%lld~%d" : "tok%lld", (long long)i, s->vocab_salt);
    }
    if (write_strings(file, "/vocab", strs, (hsize_t)s->V, s->fixed_strings)) goto done;
    hid_t vocab = H5Dopen2(file, "/vocab", H5P_DEFAULT);
    int64_t bos = 0, eos = 1 % s->V;
    int arc = write_scalar_attr(vocab, "bos", H5T_STD_I64LE, &bos) | write_scalar_attr(vocab, "eos", H5T_STD_I64LE, &eos);
    H5Dclose(vocab);
    if (arc) goto done;
    if (s->with_text) {
        for (int64_t n = 0; n < s->n; n++) {
            free(strs[n]);
            strs[n] = malloc(48);
            if (!strs[n]) goto done;
            snprintf(strs[n], 48, "sample %lld of shard %d", (long long)n, s->shard_id);
        }
        if (write_strings(file, "/teacher/trace/text", strs, (hsize_t)s->n, s->fixed_strings)) goto done;
    }
    rc = 0;
done:
    for (int64_t i = 0; i < count; i++) free(strs[i]);
    free(strs);
    return rc;
}

static int write_file(hid_t file, const DlWriteSpec *s) {
    int64_t version = DL_VERSION;
    double hz = s->hz > 0 ? s->hz : 10.0;
    char cameras[DL_MAX_CAMERAS * 8] = "";
    for (int c = 0; c < s->cams; c++) snprintf(cameras + strlen(cameras), sizeof cameras - strlen(cameras), "%scam%d", c ? "," : "", c);
    if (write_scalar_attr(file, "drivelog_version", H5T_STD_I64LE, &version) || write_string_attr(file, "fleet", "dlw test fleet", s->fixed_strings) ||
        write_string_attr(file, "teacher", "dlw rule teacher v1", s->fixed_strings) || write_scalar_attr(file, "hz", H5T_IEEE_F64LE, &hz) ||
        write_string_attr(file, "cameras", cameras, s->fixed_strings))
        return -1;
    hsize_t N = (hsize_t)s->n, rows = (hsize_t)s->chunk_samples;
    int64_t *ids = malloc(sizeof(int64_t) * (N + 1));
    int8_t *command = malloc(N + 1);
    if (!ids || !command) { free(ids); free(command); return -1; }
    for (hsize_t n = 0; n < N; n++) { ids[n] = s->shard_id * 1000000ll + (int64_t)n; command[n] = (int8_t)(n % 4); }
    int rc = write_all(file, "/clip_id", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &N, rows, s, ids);
    for (hsize_t n = 0; n < N; n++) ids[n] = (int64_t)n * 100000;
    rc = rc || write_all(file, "/t0_us", H5T_STD_I64LE, H5T_NATIVE_INT64, 1, &N, rows, s, ids);
    if (!rc && s->with_command) rc = write_all(file, "/ego/command", H5T_STD_I8LE, H5T_NATIVE_INT8, 1, &N, rows, s, command);
    free(ids);
    free(command);
    if (rc || write_cameras(file, s)) return -1;
    hsize_t hist[3] = { N, (hsize_t)s->Th, 4 }, fut[3] = { N, (hsize_t)s->T, 3 };
    hsize_t traj[4] = { N, (hsize_t)s->K, (hsize_t)s->T, 3 }, emb[2] = { N, (hsize_t)s->D }, w[2] = { N, (hsize_t)s->K };
    hid_t f16 = half_type();
    rc = write_field(file, "/ego/history", H5T_IEEE_F32LE, DL_HISTORY, 3, hist, s) ||
         (s->with_future && write_field(file, "/ego/future", H5T_IEEE_F32LE, DL_FUTURE, 3, fut, s)) ||
         write_field(file, "/teacher/trajectory", H5T_IEEE_F32LE, DL_TRAJECTORY, 4, traj, s) ||
         (s->D && write_field(file, "/teacher/embedding", s->logprob_f16 ? f16 : H5T_IEEE_F32LE, DL_EMBEDDING, 2, emb, s));
    if (!rc && s->with_weight) {
        float *wv = malloc(sizeof(float) * N * (hsize_t)s->K + 1);
        for (hsize_t n = 0; wv && n < N; n++)
            for (int j = 0; j < s->K; j++) wv[n * (hsize_t)s->K + (hsize_t)j] = dlw_weight(s, (int64_t)n, j);
        rc = !wv || write_all(file, "/teacher/weight", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 2, w, rows, s, wv);
        free(wv);
    }
    rc = rc || write_trace(file, s, s->logprob_f16 ? f16 : H5T_IEEE_F32LE) || write_vocab_and_text(file, s);
    H5Tclose(f16);
    return rc ? -1 : 0;
}

int dlw_write(const char *path, const DlWriteSpec *s, char *err, size_t errlen) {
    if (dl_zstd_register() < 0) { snprintf(err, errlen, "%s: cannot register the zstd filter", path); return -1; }
    dl_hdf5_lock();
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
    if (s->userblock) H5Pset_userblock(fcpl, (hsize_t)s->userblock);
    hid_t file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
    H5Pclose(fcpl);
    int rc = file < 0 ? -1 : write_file(file, s);
    if (file >= 0 && H5Fclose(file) < 0) rc = -1;
    dl_hdf5_unlock();
    if (rc) snprintf(err, errlen, "%s: cannot write the shard", path);
    return rc;
}
