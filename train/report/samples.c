// samples.c: the latest checkpoint on a few eval samples, for the
// report's grid (see report.h): its trajectory given the teacher's trace,
// its own greedy trace, and the trajectory that trace leads to.
#include <stdlib.h>
#include <string.h>
#include "train/core/metrics.h"    // defines: teacher_mean_traj
#include "train/core/progress.h"   // defines: Progress
#include "train/report/report.h"

static char *xstrdup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

// Pieces joined into text. Subword vocabularies mark a word's first piece
// (SentencePiece's U+2581, GPT-2's U+0120): a space goes before those only.
// Without any mark the pieces are taken as words, joined by spaces.
// A leading begin marker and a trailing end marker are left out; any other
// (a student repeating <bos>, say) is shown as it is.
static int word_mark(const char *p) { return !strncmp(p, "\xe2\x96\x81", 3) ? 3 : !strncmp(p, "\xc4\xa0", 2) ? 2 : 0; }

static char *join_pieces(char *const *pieces, int n_pieces, const int32_t *ids, int n, int bos, int eos) {
    int first = n > 0 && ids[0] == bos ? 1 : 0;
    if (n > first && ids[n - 1] == eos) n--;
    size_t cap = 1;
    int subword = 0;
    for (int i = 0; i < n; i++)
        if (ids[i] >= 0 && ids[i] < n_pieces) {
            cap += strlen(pieces[ids[i]]) + 1;
            subword |= word_mark(pieces[ids[i]]) > 0;
        }
    char *out = malloc(cap), *o = out;
    if (!out) return NULL;
    for (int i = first; i < n; i++) {
        if (ids[i] < 0 || ids[i] >= n_pieces) continue;
        const char *p = pieces[ids[i]];
        int mark = word_mark(p);
        if (o > out && (!subword || mark)) *o++ = ' ';
        p += subword ? mark : 0;
        size_t len = strlen(p);
        memcpy(o, p, len);
        o += len;
    }
    *o = 0;
    return out;
}

static int32_t student_id(const Vocab *v, int64_t teacher_id) {
    return teacher_id >= 0 && teacher_id < v->teacher_size ? v->to_student[teacher_id] : -1;
}

// Write generated tokens (len[i] of them) and the matching key mask.
static void set_trace(Student *st, const int32_t *gen, const int *len, int L) {
    for (int i = 0; i < st->B; i++) {
        int32_t *trace = (int32_t *)st->trace->data + (size_t)i * L;
        float *mask = (float *)st->key_mask->data + (size_t)i * st->seq_len + st->n_img_tokens + 2;
        for (int t = 0; t < L; t++) {
            trace[t] = t < len[i] ? gen[(size_t)i * L + t] : 0;
            mask[t] = t < len[i] ? 1.0f : 0.0f;
        }
    }
}

// Greedy decoding, all samples at once: position t's logits see only the
// trace tokens before t (both masks keep the trace causal), so one forward
// per position suffices. A sample's trace ends at the end marker; without
// one (eos < 0: the shards name none, or the student vocabulary lacks it)
// it ends after as many tokens as the teacher's trace (teacher_len), rather
// than running to L repeating whatever it ended on.
static void greedy_trace(Inference *m, const uint8_t *valid, const int32_t *teacher_len, int eos, int32_t *gen, int *len,
                         Progress *progress) {
    const int B = m->st.B, L = m->s.mc.max_trace, V = m->s.mc.vocab;
    int *done = calloc((size_t)B, sizeof *done);
    if (!done) return;
    for (int i = 0; i < B; i++) { len[i] = 0; done[i] = !valid[i] || (eos < 0 && teacher_len[i] <= 0); }
    for (int t = 0; t < L; t++) {
        progress_update(progress, t, "trace positions");
        int active = 0;
        for (int i = 0; i < B; i++) active += !done[i];
        if (!active) break;
        set_trace(&m->st, gen, len, L);
        graph_forward(m->g);
        const float *logits = m->st.lm_logits->data;   // (B, L, V)
        for (int i = 0; i < B; i++) {
            if (done[i]) continue;
            const float *row = logits + ((size_t)i * L + t) * V;
            int best = 0;
            for (int v = 1; v < V; v++) if (row[v] > row[best]) best = v;
            gen[(size_t)i * L + t] = best;
            len[i] = t + 1;
            if (best == eos || (eos < 0 && len[i] >= teacher_len[i])) done[i] = 1;
        }
    }
    free(done);
}

static int alloc_sample(ReportSample *s, const ReportSamples *rs) {
    size_t tr = (size_t)rs->T * 3;
    s->frames = malloc((size_t)rs->n_cams * rs->H * rs->W * 3);
    s->history = malloc((size_t)rs->Th * 4 * sizeof(float));
    s->teacher = malloc((size_t)rs->K * tr * sizeof(float));
    s->weights = malloc((size_t)rs->K * sizeof(float));
    s->teacher_mean = malloc(tr * sizeof(float));
    s->future = malloc(tr * sizeof(float));
    s->student = malloc(tr * sizeof(float));
    s->student_forced = malloc(tr * sizeof(float));
    return s->frames && s->history && s->teacher && s->weights && s->teacher_mean && s->future && s->student &&
           s->student_forced ? 0 : -1;
}

// Copy sample i of the batch (the loader's arrays and the two predictions).
static int keep_sample(ReportSamples *rs, const Batch *bt, int i, const Inference *m, const DlSet *set,
                       const float *forced, const float *own, const Bundle *b, const int32_t *gen, int gen_len, int bos, int eos) {
    ReportSample *s = &rs->s[rs->n];
    memset(s, 0, sizeof *s);
    if (alloc_sample(s, rs)) return -1;
    rs->n++;
    const int T = rs->T, K = rs->K;
    size_t tr = (size_t)T * 3, frame = (size_t)rs->H * rs->W * 3;
    s->shard = bt->shard[i];
    s->index = bt->index[i];
    s->clip_id = bt->clip_id[i];
    s->t0_us = bt->t0_us[i];
    s->command = bt->command[i];
    memcpy(s->history, bt->history + (size_t)i * bt->Th * 4, (size_t)rs->Th * 4 * sizeof(float));
    s->speed = s->history[(rs->Th - 1) * 4 + 3];
    for (int c = 0; c < rs->n_cams; c++)
        memcpy(s->frames + c * frame, bt->frames + (((size_t)i * bt->cams + m->s.cam_index[c]) * bt->F + bt->F - 1) * frame, frame);
    for (int k = 0; k < K; k++) memcpy(s->teacher + k * tr, bt->trajectory + ((size_t)i * bt->K + k) * bt->T * 3, tr * sizeof(float));
    memcpy(s->weights, bt->weight + (size_t)i * bt->K, (size_t)K * sizeof(float));
    teacher_mean_traj(s->teacher, s->weights, K, T, s->teacher_mean);
    s->has_future = bt->has_future[i];
    memcpy(s->future, bt->future + (size_t)i * bt->T * 3, tr * sizeof(float));
    memcpy(s->student_forced, forced + (size_t)i * tr, tr * sizeof(float));
    memcpy(s->student, own + (size_t)i * tr, tr * sizeof(float));
    s->student_trace = join_pieces(b->vocab.pieces, b->vocab.size, gen, gen_len, bos, eos);
    // The teacher's trace: its logged text, else its tokens.
    const DlShard *sh = &set->shards[s->shard];
    char text[4096], err[DL_ERR_LEN];
    if (dl_read_text(sh, s->index, text, sizeof text, err, sizeof err) == 0 && text[0]) s->teacher_trace = xstrdup(text);
    else {
        int L = bt->L, n = 0;
        int32_t ids[4096];
        for (int t = 0; t < L && n < 4096; t++)
            if (bt->trace_mask[(size_t)i * L + t]) ids[n++] = bt->trace_tokens[(size_t)i * L + t];
        const DlShard *first = &set->shards[0];
        s->teacher_trace = first->vocab ? join_pieces(first->vocab, (int)first->V, ids, n, (int)first->bos, (int)first->eos)
                                        : xstrdup("(no trace text in the shard)");
    }
    return 0;
}

int report_run_samples(const Bundle *b, char *const *globs, int n_globs, int want, uint64_t seed, ReportSamples *rs) {
    memset(rs, 0, sizeof *rs);
    LoaderOptions lo = loader_defaults();
    lo.batch_size = want;
    lo.max_trace_tokens = b->mc.max_trace;
    lo.seed = seed;             // a fixed, spread-out pick of samples
    lo.workers = 1;
    lo.keep_tail = 1;           // fewer samples than `want`: a padded batch
    lo.on_bad_sample = DL_ON_BAD_SKIP;
    char err[1024];
    Loader *ld = loader_open(globs, n_globs, &lo, err, sizeof err);
    if (!ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    const DlSet *set = loader_set(ld);
    Inference m;
    int rc = inference_open(&m, b, set, want);
    const Batch *bt = rc ? NULL : loader_next(ld);
    if (!rc && !bt) { fprintf(stderr, "distil: error: %s\n", loader_error(ld)); rc = 2; }
    const int L = b->mc.max_trace, T = b->mc.horizon;
    int32_t *gen = calloc((size_t)want * L, sizeof *gen);
    int *len = calloc((size_t)want, sizeof *len);
    float *forced = malloc((size_t)want * T * 3 * sizeof *forced);
    rs->s = calloc((size_t)want, sizeof *rs->s);
    if (!rc && (!gen || !len || !forced || !rs->s)) { fprintf(stderr, "distil: error: out of memory\n"); rc = 2; }
    if (!rc) {
        const DlShard *sh = &set->shards[0];
        rs->n_cams = m.s.mc.n_cams; rs->H = m.s.mc.img_h; rs->W = m.s.mc.img_w;
        rs->Th = m.s.mc.hist; rs->T = T; rs->K = m.s.K;
        for (int c = 0; c < rs->n_cams; c++) rs->cam_names[c] = xstrdup(sh->camera_names[m.s.cam_index[c]]);
        int eos = student_id(&b->vocab, sh->eos), bos = student_id(&b->vocab, sh->bos);
        batch_to_inputs(bt, &m.s, &m.r, &b->vocab, &m.st, &m.obj);
        graph_forward(m.g);
        memcpy(forced, m.st.traj->data, (size_t)want * T * 3 * sizeof *forced);
        // The greedy traces are the slow part: one forward per position.
        Progress progress;
        progress_start(&progress, "report: the students' greedy traces", L);
        greedy_trace(&m, bt->valid, bt->trace_len, eos, gen, len, &progress);
        progress_update(&progress, L, "trace positions");
        progress_break(&progress);
        set_trace(&m.st, gen, len, L);
        graph_forward(m.g);
        const float *own = m.st.traj->data;
        for (int i = 0; i < bt->B && !rc; i++)
            if (bt->valid[i] && keep_sample(rs, bt, i, &m, set, forced, own, b, gen + (size_t)i * L, len[i], bos, eos)) {
                fprintf(stderr, "distil: error: out of memory\n");
                rc = 2;
            }
    }
    free(gen); free(len); free(forced);
    inference_close(&m);
    loader_close(ld);
    return rc;
}

void report_samples_free(ReportSamples *rs) {
    for (int i = 0; i < rs->n; i++) {
        ReportSample *s = &rs->s[i];
        free(s->frames); free(s->history); free(s->teacher); free(s->weights); free(s->teacher_mean);
        free(s->future); free(s->student); free(s->student_forced); free(s->teacher_trace); free(s->student_trace);
    }
    free(rs->s);
    for (int c = 0; c < rs->n_cams; c++) free(rs->cam_names[c]);
    memset(rs, 0, sizeof *rs);
}
