// vocab.c: building the student vocabulary (see vocab.h).
#include "train/model/vocab.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/formats/json.h"   // defines: json_parse, json_get_*

#define SCAN_MAX_TOKENS 65536   // room for the longest trace scanned

static char *xstrdup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

// Mark every teacher id used by the training traces and top-k lists, and
// count how often each appears as a trace token.
static int scan_used_ids(const DlSet *set, uint8_t *used, int64_t *count, char *err, size_t errlen) {
    const DlShard *first = &set->shards[0];
    int k = first->k;
    int32_t *tokens = malloc(SCAN_MAX_TOKENS * sizeof *tokens);
    int32_t *topk = malloc((size_t)SCAN_MAX_TOKENS * k * sizeof *topk);
    DlReader *rd = dl_reader_new();
    int rc = 0;
    if (!tokens || !topk || !rd) { snprintf(err, errlen, "out of memory scanning the vocabulary"); rc = -1; goto done; }
    for (int s = 0; s < set->n_shards && rc == 0; s++) {
        const DlShard *sh = &set->shards[s];
        for (int64_t n = 0; n < sh->n; n++) {
            DlSampleDst dst = { .tokens = tokens, .topk_ids = topk, .max_tokens = SCAN_MAX_TOKENS };
            DlSampleInfo info;
            // A bad sample is reported (or skipped) by the loader later; its
            // ids are simply not counted here.
            if (dl_read_sample(sh, rd, n, &dst, &info, err, errlen) != DL_OK) continue;
            for (int i = 0; i < info.n_tokens; i++) {
                if (tokens[i] >= 0 && tokens[i] < sh->V) { used[tokens[i]] = 1; count[tokens[i]]++; }
                for (int j = 0; j < k; j++) {
                    int32_t id = topk[(size_t)i * k + j];
                    if (id >= 0 && id < sh->V) used[id] = 1;
                }
            }
        }
    }
    err[0] = 0;
done:
    free(tokens);
    free(topk);
    if (rd) dl_reader_free(rd);
    return rc;
}

int vocab_build(Vocab *v, const DlSet *train, VocabMode mode, char *err, size_t errlen) {
    memset(v, 0, sizeof *v);
    const DlShard *first = &train->shards[0];
    int V = (int)first->V;
    v->mode = mode;
    v->teacher_size = V;
    v->to_student = malloc(V * sizeof *v->to_student);
    uint8_t *used = calloc(V, 1);
    int64_t *count = calloc(V, sizeof *count);
    if (!v->to_student || !used || !count) {
        free(used); free(count);
        snprintf(err, errlen, "out of memory building the vocabulary");
        return -1;
    }
    if (scan_used_ids(train, used, count, err, errlen)) { free(used); free(count); return -1; }
    if (mode == VOCAB_MODE_TEACHER) memset(used, 1, V);
    int majority_teacher = 0;
    for (int i = 1; i < V; i++)
        if (count[i] > count[majority_teacher]) majority_teacher = i;
    free(count);
    int size = mode == VOCAB_MODE_FROM_LOGS ? 1 : 0;   // <unk> first
    for (int i = 0; i < V; i++) size += used[i];
    v->size = size;
    v->to_teacher = malloc(size * sizeof *v->to_teacher);
    v->pieces = calloc(size, sizeof *v->pieces);
    if (!v->to_teacher || !v->pieces) { free(used); snprintf(err, errlen, "out of memory building the vocabulary"); return -1; }
    int next = 0;
    v->unk = -1;
    if (mode == VOCAB_MODE_FROM_LOGS) {
        v->unk = next;
        v->to_teacher[next] = -1;
        v->pieces[next++] = xstrdup("<unk>");
    }
    for (int i = 0; i < V; i++) {
        v->to_student[i] = used[i] ? next : -1;
        if (!used[i]) continue;
        v->to_teacher[next] = i;
        v->pieces[next++] = xstrdup(first->vocab && first->vocab[i] ? first->vocab[i] : "");
    }
    free(used);
    v->majority = v->to_student[majority_teacher] >= 0 ? v->to_student[majority_teacher] : 0;
    return 0;
}

void vocab_free(Vocab *v) {
    if (v->pieces)
        for (int i = 0; i < v->size; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->to_student);
    free(v->to_teacher);
    memset(v, 0, sizeof *v);
}

static void json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20) fprintf(f, "\\u%04x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

int vocab_write_json(const Vocab *v, const char *path) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f, "{\"mode\": \"%s\", \"teacher_size\": %d, \"size\": %d, \"unk\": %d, \"majority\": %d,\n \"pieces\": [",
            v->mode == VOCAB_MODE_TEACHER ? "teacher" : "from_logs", v->teacher_size, v->size, v->unk, v->majority);
    for (int i = 0; i < v->size; i++) {
        if (i) fputs(", ", f);
        json_string(f, v->pieces[i]);
    }
    fputs("],\n \"teacher_ids\": [", f);
    for (int i = 0; i < v->size; i++) fprintf(f, i ? ", %d" : "%d", v->to_teacher[i]);
    fputs("]}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}

// ---- reading vocab.json --------------------------------------------------------

#define VOCAB_JSON_MAX_BYTES (256u << 20)   // a 1M-piece vocabulary is ~20 MB; more is not a vocab.json

static char *read_text_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); return NULL; }
    char *buf = NULL;
    size_t n = 0, cap = 0, got;
    do {
        if (n + 65536 > cap) {
            cap = cap ? 2 * cap : 1 << 16;
            char *nb = cap <= VOCAB_JSON_MAX_BYTES ? realloc(buf, cap + 1) : NULL;
            if (!nb) { free(buf); fclose(f); snprintf(err, errlen, "larger than %u bytes", VOCAB_JSON_MAX_BYTES); return NULL; }
            buf = nb;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
    } while (got > 0);
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); snprintf(err, errlen, "read error"); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

static int get_count(const Json *o, const char *key, int lo, int *out, char *err, size_t errlen) {
    int64_t x;
    if (json_get_int64(o, key, &x, err, errlen)) return -1;
    if (x < lo || x > (1 << 28)) { snprintf(err, errlen, "\"%s\" = %lld is out of range", key, (long long)x); return -1; }
    *out = (int)x;
    return 0;
}

// Fill v from the parsed object; every id is checked before it indexes anything.
static int vocab_from_json(Vocab *v, const Json *o, char *err, size_t errlen) {
    const char *mode;
    if (json_get_string(o, "mode", &mode, err, errlen)) return -1;
    if (!strcmp(mode, "teacher")) v->mode = VOCAB_MODE_TEACHER;
    else if (!strcmp(mode, "from_logs")) v->mode = VOCAB_MODE_FROM_LOGS;
    else { snprintf(err, errlen, "\"mode\" is \"%s\", expected teacher or from_logs", mode); return -1; }
    int unk;
    if (get_count(o, "teacher_size", 1, &v->teacher_size, err, errlen) || get_count(o, "size", 2, &v->size, err, errlen) ||
        get_count(o, "unk", -1, &unk, err, errlen))
        return -1;
    v->unk = unk;
    v->majority = -1;
    if (json_get(o, "majority") && get_count(o, "majority", 0, &v->majority, err, errlen)) return -1;
    const Json *pieces = json_get(o, "pieces"), *ids = json_get(o, "teacher_ids");
    if (!pieces || pieces->type != JSON_ARRAY || pieces->n != v->size || !ids || ids->type != JSON_ARRAY || ids->n != v->size) {
        snprintf(err, errlen, "\"pieces\" and \"teacher_ids\" must be arrays of \"size\" = %d entries", v->size);
        return -1;
    }
    if (v->unk >= v->size || v->majority >= v->size) { snprintf(err, errlen, "\"unk\" or \"majority\" is not a student id"); return -1; }
    v->to_student = malloc((size_t)v->teacher_size * sizeof *v->to_student);
    v->to_teacher = malloc((size_t)v->size * sizeof *v->to_teacher);
    v->pieces = calloc((size_t)v->size, sizeof *v->pieces);
    if (!v->to_student || !v->to_teacher || !v->pieces) { snprintf(err, errlen, "out of memory"); return -1; }
    for (int t = 0; t < v->teacher_size; t++) v->to_student[t] = -1;
    for (int s = 0; s < v->size; s++) {
        const char *piece;
        int64_t t;
        if (json_as_string(json_index(pieces, s), "pieces[i]", &piece, err, errlen) ||
            json_as_int64(json_index(ids, s), "teacher_ids[i]", &t, err, errlen))
            return -1;
        if (!(v->pieces[s] = xstrdup(piece))) { snprintf(err, errlen, "out of memory"); return -1; }
        // <unk> alone maps to no teacher id; every other student id to a
        // distinct one, so the map back is a function.
        if (t < -1 || t >= v->teacher_size || (t == -1) != (s == v->unk) || (t >= 0 && v->to_student[t] >= 0)) {
            snprintf(err, errlen, "teacher_ids[%d] = %lld: not a distinct teacher id below teacher_size %d", s, (long long)t,
                     v->teacher_size);
            return -1;
        }
        v->to_teacher[s] = (int32_t)t;
        if (t >= 0) v->to_student[t] = s;
    }
    return 0;
}

int vocab_read_json(Vocab *v, const char *path, char *err, size_t errlen) {
    memset(v, 0, sizeof *v);
    size_t len;
    char *text = read_text_file(path, &len, err, errlen);
    if (!text) return -1;
    Json *o = json_parse(text, len, err, errlen);
    free(text);
    if (!o) return -1;
    int rc = o->type == JSON_OBJECT ? vocab_from_json(v, o, err, errlen) : -1;
    if (o->type != JSON_OBJECT) snprintf(err, errlen, "expected a JSON object, found %s", json_type_name(o->type));
    json_free(o);
    if (rc) vocab_free(v);
    return rc;
}
