// vocab.c: building the student vocabulary (see vocab.h).
#include "train/vocab.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    fprintf(f, "{\"mode\": \"%s\", \"teacher_size\": %d, \"size\": %d, \"unk\": %d,\n \"pieces\": [",
            v->mode == VOCAB_MODE_TEACHER ? "teacher" : "from_logs", v->teacher_size, v->size, v->unk);
    for (int i = 0; i < v->size; i++) {
        if (i) fputs(", ", f);
        json_string(f, v->pieces[i]);
    }
    fputs("],\n \"teacher_ids\": [", f);
    for (int i = 0; i < v->size; i++) fprintf(f, i ? ", %d" : "%d", v->to_teacher[i]);
    fputs("]}\n", f);
    return fclose(f) == 0 ? 0 : -1;
}
