// vocab.c: building the student vocabulary (see vocab.h).
#include "train/model/vocab.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/formats/json_io.h"   // defines: json_pack, jsonio_load, jsonio_get_*

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
    if (first->vocab) vocab_teacher_hash(first->vocab, first->V, v->teacher_hash);
    return 0;
}

void vocab_teacher_hash(char *const *pieces, int64_t V, char out[17]) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int64_t i = 0; i < V; i++)
        for (const unsigned char *p = (const unsigned char *)pieces[i];; p++) {   // each piece with its NUL
            h = (h ^ *p) * 0x100000001b3ull;
            if (!*p) break;
        }
    snprintf(out, 17, "%016llx", (unsigned long long)h);
}

int vocab_check_teacher(const Vocab *v, const char *where, const DlShard *sh, char *err, size_t errlen) {
    if (!sh->vocab) return 0;
    if (v->teacher_size != sh->V) {
        snprintf(err, errlen, "%s: /vocab: a teacher vocabulary of %lld pieces, %s maps %d; use shards of the same teacher",
                 sh->path, (long long)sh->V, where, v->teacher_size);
        return -1;
    }
    char differs[256] = "";
    for (int s = 0; s < v->size && !differs[0]; s++) {
        int32_t t = v->to_teacher[s];
        if (t >= 0 && strcmp(v->pieces[s], sh->vocab[t]))
            snprintf(differs, sizeof differs, "; teacher id %d is '%.60s' there and '%.60s' in %s", t, sh->vocab[t], v->pieces[s],
                     where);
    }
    char hash[17];
    vocab_teacher_hash(sh->vocab, sh->V, hash);
    if (!differs[0] && (!v->teacher_hash[0] || !strcmp(hash, v->teacher_hash))) return 0;
    snprintf(err, errlen, "%s: /vocab: not the teacher vocabulary the student was trained on (hash %s, %s has %s)%s; "
             "use shards of the same teacher", sh->path, hash, where, v->teacher_hash[0] ? v->teacher_hash : "none", differs);
    return -1;
}

void vocab_free(Vocab *v) {
    if (v->pieces)
        for (int i = 0; i < v->size; i++) free(v->pieces[i]);
    free(v->pieces);
    free(v->to_student);
    free(v->to_teacher);
    memset(v, 0, sizeof *v);
}

int vocab_write_json(const Vocab *v, const char *path, char *err, size_t errlen) {
    json_t *pieces = json_array(), *ids = json_array();
    for (int i = 0; pieces && ids && i < v->size; i++) {
        json_t *piece = json_string(v->pieces[i]);
        if (!piece) {   // jansson writes UTF-8 only
            snprintf(err, errlen, "%s: piece %d (teacher id %d) is not valid UTF-8; vocab.json cannot hold it", path, i,
                     v->to_teacher[i]);
            json_decref(pieces);
            json_decref(ids);
            return -1;
        }
        if (json_array_append_new(pieces, piece) || json_array_append_new(ids, json_integer(v->to_teacher[i]))) {
            json_decref(pieces);
            pieces = NULL;
        }
    }
    // json_pack takes pieces and ids (NULL ones fail it: out of memory).
    json_t *doc = json_pack("{s:s, s:i, s:s, s:i, s:i, s:i, s:o, s:o}", "mode",
                            v->mode == VOCAB_MODE_TEACHER ? "teacher" : "from_logs", "teacher_size", v->teacher_size,
                            "teacher_vocab_hash", v->teacher_hash, "size", v->size, "unk", v->unk, "majority", v->majority,
                            "pieces", pieces, "teacher_ids", ids);
    int rc = jsonio_write_file(path, doc, 0);   // strings and integers only
    if (rc) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    json_decref(doc);
    return rc;
}

// ---- reading vocab.json --------------------------------------------------------

#define VOCAB_JSON_MAX_BYTES (256u << 20)   // a 1M-piece vocabulary is ~20 MB; more is not a vocab.json

static int get_count(const json_t *o, const char *key, int lo, int *out, char *err, size_t errlen) {
    int64_t x;
    if (jsonio_get_int64(o, key, &x, err, errlen)) return -1;
    if (x < lo || x > (1 << 28)) { snprintf(err, errlen, "\"%s\" = %lld is out of range", key, (long long)x); return -1; }
    *out = (int)x;
    return 0;
}

// Fill v from the parsed object; every id is checked before it indexes anything.
static int vocab_from_json(Vocab *v, const json_t *o, char *err, size_t errlen) {
    const char *mode;
    if (jsonio_get_string(o, "mode", &mode, err, errlen)) return -1;
    if (!strcmp(mode, "teacher")) v->mode = VOCAB_MODE_TEACHER;
    else if (!strcmp(mode, "from_logs")) v->mode = VOCAB_MODE_FROM_LOGS;
    else { snprintf(err, errlen, "\"mode\" is \"%s\", expected teacher or from_logs", mode); return -1; }
    int unk;
    if (get_count(o, "teacher_size", 1, &v->teacher_size, err, errlen) || get_count(o, "size", 2, &v->size, err, errlen) ||
        get_count(o, "unk", -1, &unk, err, errlen))
        return -1;
    v->unk = unk;
    v->majority = -1;
    if (json_object_get(o, "majority") && get_count(o, "majority", 0, &v->majority, err, errlen)) return -1;
    const char *hash = "";
    if (json_object_get(o, "teacher_vocab_hash") && jsonio_get_string(o, "teacher_vocab_hash", &hash, err, errlen)) return -1;
    if (hash[0] && (strlen(hash) != 16 || strspn(hash, "0123456789abcdef") != 16)) {
        snprintf(err, errlen, "\"teacher_vocab_hash\": expected 16 hex digits, found \"%.40s\"", hash);
        return -1;
    }
    snprintf(v->teacher_hash, sizeof v->teacher_hash, "%s", hash);
    const json_t *pieces = json_object_get(o, "pieces"), *ids = json_object_get(o, "teacher_ids");
    if (!json_is_array(pieces) || json_array_size(pieces) != (size_t)v->size || !json_is_array(ids) ||
        json_array_size(ids) != (size_t)v->size) {
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
        char what[2][40];
        snprintf(what[0], sizeof what[0], "pieces[%d]", s);
        snprintf(what[1], sizeof what[1], "teacher_ids[%d]", s);
        if (jsonio_string(json_array_get(pieces, s), what[0], &piece, err, errlen) ||
            jsonio_int64(json_array_get(ids, s), what[1], &t, err, errlen))
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
    json_t *o = jsonio_load(path, VOCAB_JSON_MAX_BYTES, err, errlen);
    if (!o) return -1;
    int rc = json_is_object(o) ? vocab_from_json(v, o, err, errlen) : -1;
    if (!json_is_object(o)) snprintf(err, errlen, "expected a JSON object, found %s", jsonio_type(o));
    json_decref(o);
    if (rc) vocab_free(v);
    return rc;
}
