// sample.c: reading one sample and checking the per-sample rules of drive-log
// v1 (finite floats, non-negative weights, commands 0..3, offsets in order,
// token ids in [0, V), top-k log-probs <= 0 with probabilities summing to <= 1).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "data/drivelog.h"
#include "data/chunkread.h"     // defines: dl_read_rows, dl_reader_scratch, dl_reader_trace_room

// The contract's rounding slack for log-probs and probability mass.
#define LOGPROB_SLACK 1e-3

static int bad(char *err, size_t errlen, const DlShard *sh, int slot, int64_t n, const char *what) {
    snprintf(err, errlen, "%s: %s: %s at sample %lld", sh->path, sh->ds[slot].path, what, (long long)n);
    return DL_BAD_SAMPLE;
}

static int check_finite(const float *x, size_t count, const DlShard *sh, int slot, int64_t n, char *err, size_t errlen) {
    for (size_t i = 0; i < count; i++) {
        if (isfinite(x[i])) continue;
        char what[96];
        snprintf(what, sizeof what, "%s (element %zu)", isnan(x[i]) ? "NaN" : x[i] > 0 ? "+Inf" : "-Inf", i);
        return bad(err, errlen, sh, slot, n, what);
    }
    return DL_OK;
}

// Read a float field of sample n into dst (or scratch when dst is NULL) and
// check it is finite. count = floats per sample.
static int read_floats(const DlShard *sh, DlReader *rd, int slot, int64_t n, float *dst, size_t count,
                       float **out, char *err, size_t errlen) {
    float *buf = dst ? dst : dl_reader_scratch(rd, count * sizeof(float));
    if (!buf) { snprintf(err, errlen, "%s: out of memory reading sample %lld", sh->path, (long long)n); return DL_BAD_SAMPLE; }
    if (dl_read_rows(rd, sh, slot, n, n + 1, buf, n, err, errlen)) return DL_BAD_SAMPLE;
    if (out) *out = buf;
    return check_finite(buf, count, sh, slot, n, err, errlen);
}

static int read_weights(const DlShard *sh, DlReader *rd, int64_t n, float *dst, char *err, size_t errlen) {
    size_t K = (size_t)sh->K;
    float *w = NULL;
    if (sh->ds[DL_WEIGHT].id >= 0) {
        if (read_floats(sh, rd, DL_WEIGHT, n, dst, K, &w, err, errlen)) return DL_BAD_SAMPLE;
        double sum = 0;
        for (size_t i = 0; i < K; i++) {
            if (w[i] < 0) {
                char what[96];
                snprintf(what, sizeof what, "negative weight %g (sample %zu of K)", w[i], i);
                return bad(err, errlen, sh, DL_WEIGHT, n, what);
            }
            sum += w[i];
        }
        if (sum > 0) {
            for (size_t i = 0; i < K; i++) w[i] = (float)(w[i] / sum);
            return DL_OK;
        }
    }
    if (dst)   // absent, or all zero: every sample of the teacher counts the same
        for (size_t i = 0; i < K; i++) dst[i] = 1.0f / (float)K;
    return DL_OK;
}

// The whole trace of sample n, checked; its first max_tokens positions are
// copied into dst.
static int read_trace(const DlShard *sh, DlReader *rd, int64_t n, const DlSampleDst *dst, DlSampleInfo *info,
                      char *err, size_t errlen) {
    int64_t lo = sh->offsets[n], hi = sh->offsets[n + 1];
    char what[160];
    if (lo < 0 || lo > sh->M || hi > sh->M) {
        snprintf(what, sizeof what, "offsets [%lld, %lld) outside the %lld tokens", (long long)lo, (long long)hi, (long long)sh->M);
        return bad(err, errlen, sh, DL_OFFSETS, n, what);
    }
    if (hi < lo) return bad(err, errlen, sh, DL_OFFSETS, n, "not non-decreasing");
    size_t len = (size_t)(hi - lo), k = (size_t)sh->k;
    int32_t *tokens, *ids;
    float *lps;
    if (dl_reader_trace_room(rd, len, len * k, &tokens, &ids, &lps)) {
        snprintf(err, errlen, "%s: out of memory for a %zu-token trace at sample %lld", sh->path, len, (long long)n);
        return DL_BAD_SAMPLE;
    }
    if (dl_read_rows(rd, sh, DL_TOKENS, lo, hi, tokens, n, err, errlen) ||
        dl_read_rows(rd, sh, DL_TOPK_IDS, lo, hi, ids, n, err, errlen) ||
        dl_read_rows(rd, sh, DL_TOPK_LOGPROBS, lo, hi, lps, n, err, errlen))
        return DL_BAD_SAMPLE;
    for (size_t t = 0; t < len; t++) {
        if (tokens[t] < 0 || tokens[t] >= sh->V) {
            snprintf(what, sizeof what, "token id %d not in [0, V = %lld) (trace position %zu)", tokens[t], (long long)sh->V, t);
            return bad(err, errlen, sh, DL_TOKENS, n, what);
        }
        double mass = 0;
        for (size_t j = 0; j < k; j++) {
            int32_t id = ids[t * k + j];
            float lp = lps[t * k + j];
            if (id < 0 || id >= sh->V) {
                snprintf(what, sizeof what, "id %d not in [0, V = %lld) (trace position %zu, top-k %zu)", id, (long long)sh->V, t, j);
                return bad(err, errlen, sh, DL_TOPK_IDS, n, what);
            }
            if (!isfinite(lp)) {
                snprintf(what, sizeof what, "log-prob %s (trace position %zu, top-k %zu)", isnan(lp) ? "NaN" : lp > 0 ? "+Inf" : "-Inf", t, j);
                return bad(err, errlen, sh, DL_TOPK_LOGPROBS, n, what);
            }
            if (lp > LOGPROB_SLACK) {
                snprintf(what, sizeof what, "log-prob %g > 0 (trace position %zu, top-k %zu)", lp, t, j);
                return bad(err, errlen, sh, DL_TOPK_LOGPROBS, n, what);
            }
            mass += exp((double)lp);
        }
        if (mass > 1.0 + LOGPROB_SLACK) {
            snprintf(what, sizeof what, "top-k probabilities sum to %.4f > 1 (trace position %zu)", mass, t);
            return bad(err, errlen, sh, DL_TOPK_LOGPROBS, n, what);
        }
    }
    info->trace_len = (int64_t)len;
    size_t keep = len < (size_t)(dst->max_tokens > 0 ? dst->max_tokens : 0) ? len : (size_t)(dst->max_tokens > 0 ? dst->max_tokens : 0);
    info->n_tokens = (int)keep;
    if (dst->tokens) memcpy(dst->tokens, tokens, keep * sizeof(int32_t));
    if (dst->topk_ids) memcpy(dst->topk_ids, ids, keep * k * sizeof(int32_t));
    if (dst->topk_logprobs) memcpy(dst->topk_logprobs, lps, keep * k * sizeof(float));
    return DL_OK;
}

int dl_read_sample(const DlShard *sh, DlReader *rd, int64_t n, const DlSampleDst *dst, DlSampleInfo *info,
                   char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    info->temperature = sh->temperature;
    if (n < 0 || n >= sh->n) {
        snprintf(err, errlen, "%s: sample %lld outside [0, %lld)", sh->path, (long long)n, (long long)sh->n);
        return DL_BAD_SAMPLE;
    }
    if (dl_read_rows(rd, sh, DL_CLIP_ID, n, n + 1, &info->clip_id, n, err, errlen) ||
        dl_read_rows(rd, sh, DL_T0_US, n, n + 1, &info->t0_us, n, err, errlen))
        return DL_BAD_SAMPLE;
    if (dst->frames) {
        uint8_t *frames = dst->frames;   // cameras one after another, each (F, H, W, 3)
        for (int c = 0; c < sh->n_cameras; c++) {
            if (dl_read_rows(rd, sh, DL_CAMERA0 + c, n, n + 1, frames, n, err, errlen)) return DL_BAD_SAMPLE;
            frames += (size_t)sh->frames[c] * (size_t)sh->height[c] * (size_t)sh->width[c] * 3;
        }
    }
    if (read_floats(sh, rd, DL_HISTORY, n, dst->history, (size_t)sh->Th * 4, NULL, err, errlen)) return DL_BAD_SAMPLE;
    size_t future_count = (size_t)sh->T * 3;
    if (sh->ds[DL_FUTURE].id >= 0) {
        if (read_floats(sh, rd, DL_FUTURE, n, dst->future, future_count, NULL, err, errlen)) return DL_BAD_SAMPLE;
        info->has_future = 1;
    } else if (dst->future) {
        memset(dst->future, 0, future_count * sizeof(float));
    }
    if (sh->ds[DL_COMMAND].id >= 0) {
        int8_t command;
        if (dl_read_rows(rd, sh, DL_COMMAND, n, n + 1, &command, n, err, errlen)) return DL_BAD_SAMPLE;
        if (command < 0 || command > 3) {
            char what[64];
            snprintf(what, sizeof what, "command %d not in 0..3", command);
            return bad(err, errlen, sh, DL_COMMAND, n, what);
        }
        info->command = command;
        info->has_command = 1;
    }
    if (read_floats(sh, rd, DL_TRAJECTORY, n, dst->trajectory, (size_t)sh->K * future_count, NULL, err, errlen))
        return DL_BAD_SAMPLE;
    if (read_weights(sh, rd, n, dst->weight, err, errlen)) return DL_BAD_SAMPLE;
    if (sh->D > 0) {
        if (read_floats(sh, rd, DL_EMBEDDING, n, dst->embedding, (size_t)sh->D, NULL, err, errlen)) return DL_BAD_SAMPLE;
        info->has_embedding = 1;
    }
    return read_trace(sh, rd, n, dst, info, err, errlen);
}

static int read_text_here(const DlShard *sh, int64_t n, char *buf, size_t buflen, char *err, size_t errlen) {
    const DlDataset *d = &sh->ds[DL_TEXT];
    int rc = -1;
    dl_hdf5_lock();
    hid_t ftype = H5Dget_type(d->id), space = H5Dget_space(d->id), mtype = H5Tcopy(H5T_C_S1);
    hsize_t start = (hsize_t)n, count = 1;
    H5Tset_cset(mtype, H5Tget_cset(ftype));
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    if (H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0) {
        if (H5Tis_variable_str(ftype) > 0) {
            char *value = NULL;
            H5Tset_size(mtype, H5T_VARIABLE);
            if (H5Dread(d->id, mtype, mspace, space, H5P_DEFAULT, &value) >= 0) {
                snprintf(buf, buflen, "%s", value ? value : "");
                if (value) H5free_memory(value);
                rc = 0;
            }
        } else {
            size_t size = H5Tget_size(ftype);
            char *tmp = calloc(1, size + 1);
            H5Tset_size(mtype, size + 1);
            H5Tset_strpad(mtype, H5T_STR_NULLTERM);
            if (tmp && H5Dread(d->id, mtype, mspace, space, H5P_DEFAULT, tmp) >= 0) {
                snprintf(buf, buflen, "%s", tmp);
                rc = 0;
            }
            free(tmp);
        }
    }
    if (rc < 0) snprintf(err, errlen, "%s: %s: unreadable at sample %lld", sh->path, d->path, (long long)n);
    H5Sclose(mspace);
    H5Tclose(mtype);
    H5Sclose(space);
    H5Tclose(ftype);
    dl_hdf5_unlock();
    return rc;
}

typedef struct TextJob { const DlShard *sh; int64_t n; size_t buflen; } TextJob;

// Behind a wall (data/wall.h): the text read in the child, handed over.
static int text_child(void *arg, char *err, size_t errlen) {
    const TextJob *job = arg;
    char *text = malloc(job->buflen);
    int rc = text ? read_text_here(job->sh, job->n, text, job->buflen, err, errlen) : -1;
    if (rc == 0) dl_wall_put("text", text, strlen(text));
    free(text);
    return rc;
}

static int variable_length(const DlDataset *d) {
    dl_hdf5_lock();
    hid_t t = H5Dget_type(d->id);
    int variable = H5Tis_variable_str(t) > 0;
    H5Tclose(t);
    dl_hdf5_unlock();
    return variable;
}

int dl_read_text(const DlShard *sh, int64_t n, char *buf, size_t buflen, char *err, size_t errlen) {
    buf[0] = 0;
    const DlDataset *d = &sh->ds[DL_TEXT];
    if (d->id < 0) return 0;
    if (n < 0 || n >= sh->n) { snprintf(err, errlen, "%s: sample %lld outside [0, %lld)", sh->path, (long long)n, (long long)sh->n); return -1; }
    // Variable-length strings live in the global heap: a process that opened
    // the shard behind the wall does not follow those pointers itself.
    if (!sh->walled || dl_wall_in_child() || !variable_length(d)) return read_text_here(sh, n, buf, buflen, err, errlen);
    TextJob job = { sh, n, buflen };
    DlWallValues values;
    if (dl_wall_run(sh->path, text_child, &job, &values, err, errlen)) return -1;
    const char *text = dl_wall_value(&values, "text", NULL);
    if (text) snprintf(buf, buflen, "%s", text);
    else snprintf(err, errlen, "%s: %s: unreadable at sample %lld", sh->path, d->path, (long long)n);
    dl_wall_free(&values);
    return text ? 0 : -1;
}
