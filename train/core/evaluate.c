// evaluate.c: the eval pass (see evaluate.h), and train_evaluate: the same
// split across the ranks with its sums reduced (see state.h).
#include "train/core/evaluate.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "train/core/state.h"       // defines: TrainState
#include "train/dist/dist.h"        // defines: dist_world, dist_allreduce_sum

int fit_ego_only(EgoOnly *e, const Recipe *r, const Setup *s, long max_samples) {
    const int T = s->mc.horizon, Th = s->mc.hist;
    if (ego_only_init(e, Th, T)) { fprintf(stderr, "distil: error: out of memory\n"); return 2; }
    LoaderOptions opt = loader_defaults();
    opt.batch_size = 64;
    opt.max_trace_tokens = 1;
    opt.seed = (uint64_t)r->seed + 1;
    opt.workers = r->data.loader_threads;
    opt.on_bad_sample = DL_ON_BAD_SKIP;    // the training run reports bad samples itself
    opt.keep_tail = 1;                     // a set under one batch still fits (the padding is invalid, skipped)
    char err[1024];
    Loader *ld = loader_open(r->data.train.items, r->data.train.n, &opt, err, sizeof err);
    if (!ld) { fprintf(stderr, "distil: error: %s\n", err); return 2; }
    long batches = loader_batches_per_epoch(ld), want = (max_samples + opt.batch_size - 1) / opt.batch_size;
    if (want < batches) batches = want;
    float *target = malloc((size_t)T * 3 * sizeof *target);
    for (long i = 0; i < batches; i++) {
        const Batch *b = loader_next(ld);
        if (!b) { fprintf(stderr, "distil: error: %s\n", loader_error(ld)); loader_close(ld); free(target); return 2; }
        for (int j = 0; j < b->B; j++) {
            if (!b->valid[j]) continue;
            // The teacher's mean plan over the first T steps.
            teacher_mean_strided(b->trajectory + (size_t)j * b->K * b->T * 3, (size_t)b->T * 3,
                                 b->weight + (size_t)j * b->K, b->K, T * 3, target);
            ego_only_add(e, b->history + (size_t)j * b->Th * 4, b->command[j], target);
        }
    }
    free(target);
    loader_close(ld);
    // A light ridge (1e-3 of the mean feature energy) only guards against
    // collinear history features; the fit is otherwise least squares.
    if (ego_only_fit(e, 1e-3)) { fprintf(stderr, "distil: error: the ego-only baseline could not be fitted\n"); return 2; }
    return 0;
}

int evaluate(Graph *g, Student *st, Objective *obj, const Setup *s, const Recipe *r, const Vocab *v,
             const EgoOnly *ego, Loader *ld, long max_batches, EvalResult *out, Progress *progress) {
    memset(out, 0, sizeof *out);
    const int T = s->mc.horizon, L = s->mc.max_trace, V = s->mc.vocab, k = s->k;
    long batches = loader_batches_per_epoch(ld);
    if (max_batches > 0 && max_batches < batches) batches = max_batches;
    // Always the same samples: the eval loader restarts at its first batch.
    loader_seek(ld, (LoaderPosition){ 0, 0 });
    float *pred = malloc((size_t)T * 3 * sizeof *pred), *tmean = malloc((size_t)T * 3 * sizeof *tmean);
    float *teacher = malloc((size_t)s->K * T * 3 * sizeof *teacher);
    // A device tape's outputs are read from host copies, allocated here
    // once; a CPU tape's are read in place.
    float *traj_host = NULL, *logits_host = NULL;
    if (g->device != DEV_CPU) {
        traj_host = malloc(st->traj->numel * sizeof *traj_host);
        logits_host = malloc(st->lm_logits->numel * sizeof *logits_host);
        if (!traj_host || !logits_host) {
            fprintf(stderr, "distil: error: out of memory for the evaluation's output copies\n");
            free(pred); free(tmean); free(teacher); free(traj_host); free(logits_host);
            return 2;
        }
    }
    const int32_t *ce_targets = graph_input_host(obj->ce_targets), *topk_ids = graph_input_host(obj->topk_ids);
    const float *topk_logprobs = graph_input_host(obj->topk_logprobs);
    if (progress) progress_start(progress, "evaluating", batches);
    for (long bi = 0; bi < batches; bi++) {
        if (progress) progress_update(progress, bi, "batches");
        const Batch *b = loader_next(ld);
        if (!b) {
            fprintf(stderr, "distil: error: %s\n", loader_error(ld));
            free(pred); free(tmean); free(teacher); free(traj_host); free(logits_host);
            return 2;
        }
        batch_to_inputs(b, s, r, v, st, obj);
        graph_upload_inputs(g);
        graph_forward(g);
        const float *traj = traj_host ? traj_host : st->traj->data;              // (B, T, 3)
        const float *logits = logits_host ? logits_host : st->lm_logits->data;   // (B, L, V)
        if (traj_host) {
            tensor_to_host_f32(st->traj, traj_host);
            tensor_to_host_f32(st->lm_logits, logits_host);
        }
        for (int i = 0; i < b->B; i++) {
            if (!b->valid[i]) continue;
            out->samples++;
            // The first T steps of the teacher's plans and the logged future.
            for (int c = 0; c < s->K; c++)
                memcpy(teacher + (size_t)c * T * 3, b->trajectory + ((size_t)i * b->K + c) * b->T * 3, (size_t)T * 3 * sizeof(float));
            const float *w = b->weight + (size_t)i * b->K;
            const float *gt = b->has_future[i] ? b->future + (size_t)i * b->T * 3 : NULL;
            const float *hist = b->history + (size_t)i * b->Th * 4;
            traj_metrics_add(&out->student, traj + (size_t)i * T * 3, gt, teacher, w, s->K, T, s->mc.hz);
            teacher_mean_traj(teacher, w, s->K, T, tmean);
            traj_metrics_add(&out->teacher, tmean, gt, teacher, w, s->K, T, s->mc.hz);
            baseline_constant_velocity(hist, b->Th, T, s->mc.hz, pred);
            traj_metrics_add(&out->constant_velocity, pred, gt, teacher, w, s->K, T, s->mc.hz);
            ego_only_predict(ego, hist, b->command[i], pred);
            traj_metrics_add(&out->ego_only, pred, gt, teacher, w, s->K, T, s->mc.hz);
            for (int t = 0; t < L; t++) {
                size_t at = (size_t)i * L + t;
                int target = ce_targets[at];
                if (target < 0) continue;
                trace_metrics_add(&out->trace, logits + at * V, V, target, topk_ids + at * k, topk_logprobs + at * k, k,
                                  s->t_logged, v->majority);
            }
        }
    }
    free(pred); free(tmean); free(teacher); free(traj_host); free(logits_host);
    if (progress) {
        progress_update(progress, batches, "batches");
        progress_break(progress);
    }
    return 0;
}

static double ratio(double a, double b) { return b > 0 ? a / b : NAN; }

json_t *eval_object(const EvalResult *e) {
    const TraceMetrics *t = &e->trace;
    return json_pack("{s:o, s:o, s:{s:o, s:o}, s:{s:o, s:o, s:o, s:I}, s:I}",
                     "student", traj_metrics_object(&e->student, 1),
                     "teacher_consistency", traj_metrics_object(&e->teacher, 0),
                     "baselines", "constant_velocity", traj_metrics_object(&e->constant_velocity, 0),
                     "ego_only", traj_metrics_object(&e->ego_only, 0),
                     "trace", "token_acc", jsonio_real(ratio(t->correct, t->positions)),
                     "kl", jsonio_real(ratio(t->kl_sum, t->positions)),
                     "majority_acc", jsonio_real(ratio(t->majority_correct, t->positions)),
                     "positions", (json_int_t)t->positions,   // a count, summed in double
                     "samples", (json_int_t)e->samples);
}

void eval_print_table(const EvalResult *e, FILE *f) {
    struct { const char *name; const TrajMetrics *m; } rows[] = {
        { "student", &e->student },
        { "baseline: constant velocity", &e->constant_velocity },
        { "baseline: ego history only", &e->ego_only },
        { "teacher mean (consistency)", &e->teacher },
    };
    fprintf(f, "eval on %ld samples (metres)\n", e->samples);
    fprintf(f, "  %-30s %8s %8s %8s %8s %8s %8s %8s\n", "", "ade_tch", "ade_1s", "ade_3s", "fde_tch", "ade_gt", "fde_gt", "minADE");
    for (int i = 0; i < 4; i++) {
        const TrajMetrics *m = rows[i].m;
        fprintf(f, "  %-30s %8.3f %8.3f %8.3f %8.3f %8.3f %8.3f", rows[i].name, traj_metric(m, "ade_teacher"),
                traj_metric(m, "ade_teacher_1s"), traj_metric(m, "ade_teacher_3s"), traj_metric(m, "fde_teacher"),
                traj_metric(m, "ade_gt"), traj_metric(m, "fde_gt"));
        if (i == 0) fprintf(f, " %8.3f", traj_metric(m, "min_ade_teacher"));
        fputc('\n', f);
    }
    fprintf(f, "  trace: token_acc %.3f (majority %.3f), KL to the teacher %.4f nats over %.0f positions\n",
            ratio(e->trace.correct, e->trace.positions), ratio(e->trace.majority_correct, e->trace.positions),
            ratio(e->trace.kl_sum, e->trace.positions), e->trace.positions);
}

// ---- split across the ranks (train_evaluate) ----------------------------

// TrajMetrics and TraceMetrics are sums of doubles (metrics.h), reduced as
// arrays of doubles.
_Static_assert(sizeof(TrajMetrics) % sizeof(double) == 0, "TrajMetrics holds doubles only");
_Static_assert(sizeof(TraceMetrics) % sizeof(double) == 0, "TraceMetrics holds doubles only");
#define TRAJ_SUMS (sizeof(TrajMetrics) / sizeof(double))
#define TRACE_SUMS (sizeof(TraceMetrics) / sizeof(double))

static void reduce_eval(EvalResult *e) {
    TrajMetrics *traj[4] = { &e->student, &e->teacher, &e->constant_velocity, &e->ego_only };
    double v[4 * TRAJ_SUMS + TRACE_SUMS + 1];
    for (int i = 0; i < 4; i++) memcpy(v + i * TRAJ_SUMS, traj[i], sizeof(TrajMetrics));
    memcpy(v + 4 * TRAJ_SUMS, &e->trace, sizeof(TraceMetrics));
    v[4 * TRAJ_SUMS + TRACE_SUMS] = (double)e->samples;
    dist_allreduce_sum(v, (int)(sizeof v / sizeof v[0]), "evaluation metrics");
    for (int i = 0; i < 4; i++) memcpy(traj[i], v + i * TRAJ_SUMS, sizeof(TrajMetrics));
    memcpy(&e->trace, v + 4 * TRAJ_SUMS, sizeof(TraceMetrics));
    e->samples = (long)v[4 * TRAJ_SUMS + TRACE_SUMS];
}

int train_evaluate(TrainState *ts, const EgoOnly *ego, long max_batches, EvalResult *out) {
    const Dist *d = dist_world();
    // The eval loader gives each rank every world-th sample; max_batches
    // counts the micro-batches of the whole evaluation.
    long mine = max_batches > 0 ? (max_batches + d->world - 1) / d->world : 0;
    int rc = evaluate(ts->model.g, &ts->model.st, &ts->model.obj, &ts->data.setup, ts->r, &ts->data.vocab, ego, ts->data.eval, mine, out, NULL);
    if (rc) return rc;   // this rank's exit status ends the job
    if (d->launched) reduce_eval(out);
    return 0;
}
