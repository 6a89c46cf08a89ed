// student.c: a few training steps of a tiny student, the whole trainer's
// arithmetic on one device (see selftest.h).
//
// The student is the real one (student_build, objective_build: patchify,
// embeddings, attention blocks with the recipe's default mask (causal) and
// the fused bias_gelu and bias_residual, the LM, trajectory and feature
// heads, the distillation KL, cross-entropy, the best-of-K trajectory loss
// and the cosine loss, each loss times its share of the batch), small
// enough to run in milliseconds. Its inputs are one
// random but valid batch, written where the trainer writes them
// (graph_input_host, graph_upload_inputs), so a device run also checks the
// staging of inputs. Each step is the trainer's (train_step, one
// micro-batch): the step's scalars, forward, the loss figures summed and
// checked on the device, backward, the norm's partial sums, then one pass
// of norm, clipping and AdamW, and the one read back of losses and norm.
// On a GPU the steps after the first replay a CUDA Graph of that work, as
// distil train's do.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "autograd/optim.h"          // defines: AdamW, adamw_*, grad_sumsq_partials
#include "autograd/rng.h"            // defines: Rng, rng_*
#include "kernels/backend.h"         // defines: backend_to_host, backend_capture_*
#include "train/core/objective.h"    // defines: Setup, Objective, objective_build
#include "train/selftest/selftest.h"

#define STUDENT_SEED 20240611u
#define STUDENT_B 2
// A learning rate at which three Adam steps on one batch lower its loss
// step by step (8.19, 7.96, 7.76 on the CPU). Adam's first steps move
// every weight by about lr whatever its gradient, and the trajectory head's
// outputs are scaled by 20 m (TRAJ_SCALE_X): at 1e-3 the second step
// overshoots. Small steps also keep the devices' rounding differences far
// below the step tolerances.
#define STUDENT_LR 3e-4f

// Everything a recipe and the shards would fix, chosen small (a device
// that runs it slowly, the CUDA simulator, still gets through in seconds):
// 16x16 frames in 8-pixel patches over 2 frames (8 image tokens), 4 trace
// tokens, a vocabulary of 24, 3 teacher plans of 6 waypoints, 8-wide
// teacher features, one block of width 16.
static void tiny_setup(Recipe *r, Setup *s) {
    recipe_defaults(r);
    r->distill.w_feature = 0.5;
    r->distill.traj_target = TRAJ_TARGET_TEACHER_BEST;
    memset(s, 0, sizeof *s);
    s->K = 3;
    s->k = 4;
    s->D = 8;
    s->t_logged = 1.0f;
    ModelConfig *mc = &s->mc;
    mc->dim = 16;
    mc->layers = 1;
    mc->heads = 2;
    mc->mlp_ratio = 2;
    mc->patch = 8;
    mc->n_cams = 1;
    mc->frames = 2;
    mc->img_h = 16;
    mc->img_w = 16;
    mc->hist = 4;
    mc->horizon = 6;
    mc->hz = 10.0f;
    mc->traj_repr = TRAJ_XYYAW;
    mc->attention = r->model.attention == ATTENTION_CAUSAL ? ATTN_CAUSAL : ATTN_PREFIX;   // the recipe's default
    mc->vocab = 24;
    mc->max_trace = 4;
    mc->feat_dim = s->D;
    for (int c = 0; c < 3; c++) {
        mc->img_mean[c] = (float)r->model.image_mean[c];
        mc->img_std[c] = (float)r->model.image_std[c];
    }
}

// One batch, the same on every device: pixels, an ego history, commands,
// traces with padding at the end of sample 1, the teacher's top-k as
// log-probabilities of distinct ids (some outside the vocabulary), plans,
// their weights and features.
static void write_batch(const Setup *s, Student *st, Objective *obj) {
    const ModelConfig *mc = &s->mc;
    const int B = st->B, L = mc->max_trace, k = s->k, T = mc->horizon, K = s->K;
    Rng rng;
    rng_seed(&rng, STUDENT_SEED + 1);
    uint8_t *cams = graph_input_host(st->cameras);
    for (size_t i = 0; i < st->cameras->numel; i++) cams[i] = (uint8_t)rng_below(&rng, 256);
    float *ego = graph_input_host(st->ego);
    for (size_t i = 0; i < st->ego->numel; i++) ego[i] = 0.5f * rng_normal(&rng);
    int32_t *command = graph_input_host(st->command);
    for (int b = 0; b < B; b++) command[b] = (int32_t)rng_below(&rng, 4);
    int32_t *trace = graph_input_host(st->trace), *ce = graph_input_host(obj->ce_targets);
    int32_t *ids = graph_input_host(obj->topk_ids);
    float *key_mask = graph_input_host(st->key_mask), *kl_mask = graph_input_host(obj->kl_mask);
    float *lp = graph_input_host(obj->topk_logprobs);
    for (int b = 0; b < B; b++) {
        for (int j = 0; j < st->seq_len; j++) key_mask[b * st->seq_len + j] = 1.0f;
        for (int t = 0; t < L; t++) {
            int real = !(b == 1 && t >= L - 2);
            int at = b * L + t;
            int32_t tok = (int32_t)rng_below(&rng, (uint64_t)mc->vocab);
            trace[at] = real ? tok : 0;
            ce[at] = real ? tok : -1;
            kl_mask[at] = (float)real;
            key_mask[b * st->seq_len + st->n_img_tokens + 2 + t] = (float)real;
            // Distinct ids: a random start and stride through the vocabulary.
            int start = (int)rng_below(&rng, (uint64_t)mc->vocab);
            double mass = 0.9 / k;
            for (int j = 0; j < k; j++) {
                int id = (start + 7 * j) % mc->vocab;
                ids[at * k + j] = !real ? -1 : (j == k - 1 && t % 3 == 0) ? -1 : id;
                lp[at * k + j] = real ? (float)log(mass * (1.5 - 0.3 * j)) : 0.0f;
            }
        }
    }
    float *tgt = graph_input_host(obj->traj_targets), *w = graph_input_host(obj->traj_weights);
    for (size_t i = 0; i < obj->traj_targets->numel; i++) tgt[i] = 0.3f * rng_normal(&rng);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < K; c++) w[b * K + c] = c == 1 && b == 0 ? 0.0f : 0.2f + 0.3f * (float)c;
    (void)T;
    float *feat = graph_input_host(obj->feat_target), *feat_mask = graph_input_host(obj->feat_mask);
    for (size_t i = 0; i < obj->feat_target->numel; i++) feat[i] = rng_normal(&rng);
    for (int b = 0; b < B; b++) feat_mask[b] = 1.0f;
    // The batch is the whole global batch: each loss's share of it is 1.
    LossCounts one = { 1, 1, 1, 1 };
    objective_set_shares(obj, &one, &one);
}

static float *params_host(const Graph *g) {
    float *p = malloc((g->param_numel ? g->param_numel : 1) * sizeof *p);
    if (p) backend_to_host(g->device, p, g->param_mem, g->param_numel * sizeof *p);
    return p;
}

// One step's device work, queued in order and nothing else: what a capture
// records (train/core/step.c's queue_step). The inputs' upload has no host
// wait, so a captured copy can hold it.
static void queue_step(Graph *g, AdamW *opt, const Objective *obj, StepLosses losses) {
    graph_zero_grad(g);
    graph_upload_inputs_queued(g);
    graph_forward(g);
    adamw_add_losses(opt, losses);
    graph_backward(g, obj->total);
    adamw_update(opt, g, g->reduce_dev, grad_sumsq_partials(g, 0, g->grad_numel));
}

int student_run(Device dev, StudentRun *run, char *err, size_t errlen) {
    memset(run, 0, sizeof *run);
    Recipe r;
    Setup s;
    tiny_setup(&r, &s);
    Graph *g = graph_new(dev);
    Student st;
    Objective obj;
    objective_build(g, &st, &obj, &s, &r, STUDENT_B);
    int rc = -1;
    AdamW opt;
    memset(&opt, 0, sizeof opt);
    if (graph_plan(g)) { snprintf(err, errlen, "the tiny student's tape could not be planned"); goto done; }
    student_fill_constants(&st);
    Rng rng;
    rng_seed(&rng, STUDENT_SEED);
    graph_init_params(g, &rng);
    AdamWConfig oc = { (float)r.train.beta1, (float)r.train.beta2, (float)r.train.eps, (float)r.train.weight_decay };
    if (adamw_init(&opt, g, oc)) { snprintf(err, errlen, "out of memory for the optimizer state"); goto done; }
    write_batch(&s, &st, &obj);
    run->n = g->param_numel;
    run->w0 = params_host(g);
    // The loss figures where the tape holds them, in StepLosses' order.
    const Tensor *figures[STEP_LOSSES] = { obj.total, obj.kl, obj.ce, obj.traj, obj.feature };
    StepLosses losses;
    for (int k = 0; k < STEP_LOSSES; k++) losses.x[k] = figures[k] ? figures[k]->data : NULL;
    // A captured copy reads the page-locked input mirror: without one, eager steps.
    int capturable = dev == DEV_CUDA && g->input_host_pinned;
    BackendCapture *captured = NULL;
    for (int step = 0; step < SELFTEST_STEPS; step++) {
        adamw_begin(&opt, STUDENT_LR, (float)r.train.grad_clip);   // the step's scalars, read by the graph too
        if (captured && !backend_capture_current(captured)) {     // an op regrew its workspace since
            backend_capture_free(captured);
            captured = NULL;
        }
        // Captured once the first (eager) step has grown every workspace.
        if (capturable && step > 0 && !captured) {
            backend_capture_begin(dev);
            queue_step(g, &opt, &obj, losses);
            captured = backend_capture_end(dev);   // NULL: refused, the reason on stderr
            capturable = captured != NULL;
        }
        if (captured) {
            backend_capture_launch(captured);
            run->replayed++;
        } else {
            queue_step(g, &opt, &obj, losses);
        }
        AdamWStep out;
        adamw_end(&opt, &out);
        run->loss[step] = out.losses[0];
        // A skipped step (a non-finite loss or norm) reads as a NaN norm.
        run->grad_norm[step] = out.applied ? out.norm : NAN;
    }
    if (captured) backend_capture_free(captured);
    run->w1 = params_host(g);
    if (!run->w0 || !run->w1) { snprintf(err, errlen, "out of memory"); goto done; }
    rc = 0;
done:
    if (opt.m) adamw_free(&opt);
    graph_free(g);
    recipe_free(&r);
    if (rc) student_run_free(run);
    return rc;
}

void student_run_free(StudentRun *run) {
    free(run->w0);
    free(run->w1);
    memset(run, 0, sizeof *run);
}

// ---- judging -----------------------------------------------------------------------

static void record(OpSuiteResult *res, const char *op, const char *what, double got, double want, double error,
                   double tol, const char *against, const char *rule, int verbose, Device dev) {
    OpCheck k;
    memset(&k, 0, sizeof k);
    snprintf(k.op, sizeof k.op, "%s", op);
    snprintf(k.what, sizeof k.what, "%s", what);
    k.against = against;
    k.rule = rule;
    k.got = got;
    k.want = want;
    k.error = error;
    k.tolerance = tol;
    k.excess = error == 0 ? 0 : tol > 0 ? error / tol : INFINITY;
    opsuite_record(res, &k);
    if (verbose) {
        char line[400];
        printf("  %s %-4s %s\n", dev == DEV_CPU ? "cpu " : "cuda", k.excess <= 1.0 ? "ok" : "FAIL",
               opsuite_describe(&k, line, sizeof line));
        fflush(stdout);
    }
}

static double rel_diff(double a, double b) {
    if (a == b) return 0;
    if (!isfinite(a) || !isfinite(b)) return INFINITY;
    return fabs(a - b) / fmax(fmax(fabs(a), fabs(b)), 1e-30);
}

void student_check(Device dev, const StudentRun *run, const StudentRun *cpu, int verbose, OpSuiteResult *res) {
    char op[32];
    if (!cpu) {
        // On its own: every figure finite, and three steps on the one batch
        // lower its loss (a wrong gradient or update would not, reliably).
        for (int s = 0; s < SELFTEST_STEPS; s++) {
            snprintf(op, sizeof op, "training step %d", s);
            int finite = isfinite(run->loss[s]) && isfinite(run->grad_norm[s]) && run->grad_norm[s] > 0;
            record(res, op, "loss", run->loss[s], 0, finite ? 0 : INFINITY, 0, NULL,
                   "it and the gradient norm must be finite and the norm positive", verbose, dev);
        }
        int s = SELFTEST_STEPS - 1;
        snprintf(op, sizeof op, "training step %d", s);
        record(res, op, "loss", run->loss[s], run->loss[0], run->loss[s] < run->loss[0] ? 0 : INFINITY, 0, "step 0",
               "it must be lower: the steps train on that batch", verbose, dev);
        return;
    }
    for (int s = 0; s < SELFTEST_STEPS; s++) {
        snprintf(op, sizeof op, "training step %d", s);
        record(res, op, "loss", run->loss[s], cpu->loss[s], rel_diff(run->loss[s], cpu->loss[s]), TOL_STEP_LOSS_RTOL,
               "the CPU", NULL, verbose, dev);
        record(res, op, "gradient norm", run->grad_norm[s], cpu->grad_norm[s], rel_diff(run->grad_norm[s], cpu->grad_norm[s]),
               TOL_STEP_NORM_RTOL, "the CPU", NULL, verbose, dev);
    }
    // The same initialisation (drawn on the host) on both, and updates of the
    // same size and direction (tolerance.h, TOL_STEP_UPDATE_RTOL).
    int same_init = run->n == cpu->n && memcmp(run->w0, cpu->w0, run->n * sizeof(float)) == 0;
    record(res, "training step 0", "initial weights", 0, 0, same_init ? 0 : INFINITY, 0, NULL,
           "they must be the CPU's, bit for bit", verbose, dev);
    if (!same_init) return;
    double diff = 0, norm = 0;
    for (size_t i = 0; i < run->n; i++) {
        double dc = (double)cpu->w1[i] - cpu->w0[i], dd = (double)run->w1[i] - run->w0[i];
        diff += (dd - dc) * (dd - dc);
        norm += dc * dc;
    }
    double rel = norm > 0 ? sqrt(diff) / sqrt(norm) : INFINITY;
    snprintf(op, sizeof op, "training step %d", SELFTEST_STEPS - 1);
    record(res, op, "||dW - dW_cpu|| / ||dW_cpu||", rel, 0, isfinite(rel) ? rel : INFINITY, TOL_STEP_UPDATE_RTOL, NULL, NULL,
           verbose, dev);
}

void student_check_repeat(Device dev, const StudentRun *a, const StudentRun *b, int verbose, OpSuiteResult *res) {
    int same = a->n == b->n && memcmp(a->loss, b->loss, sizeof a->loss) == 0 &&
               memcmp(a->grad_norm, b->grad_norm, sizeof a->grad_norm) == 0 &&
               memcmp(a->w1, b->w1, a->n * sizeof(float)) == 0;
    record(res, "training steps run twice", "loss", b->loss[SELFTEST_STEPS - 1], a->loss[SELFTEST_STEPS - 1],
           same ? 0 : INFINITY, 0, "the first run", "every loss, norm and weight must repeat bit for bit", verbose, dev);
}
