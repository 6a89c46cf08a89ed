// train_log.c: metrics.jsonl, TensorBoard and the console of a training run
// (see train_log.h).
#include "train/cmd/train_log.h"
#include <errno.h>
#include <math.h>
#include <string.h>
#include "train/formats/json_io.h"   // defines: json_pack, jsonio_dump, jsonio_real

int train_log_open(TrainLog *l, const char *run_dir, int root, int resume, const Recipe *r, long start, long last) {
    memset(l, 0, sizeof *l);
    l->r = r;
    l->start = start;
    l->last = last;
    char path[1200], err[1400];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    // A resumed run appends to what metrics_rewind kept.
    if (!(l->metrics = fopen(root ? path : "/dev/null", resume ? "a" : "w"))) {
        fprintf(stderr, "distil: error: %s: %s\n", path, strerror(errno));
        return 2;
    }
    snprintf(path, sizeof path, "%s/tensorboard", run_dir);
    if (root && tb_open(&l->tb, path, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s; check the run directory's permissions and free space\n", err);
        return 2;
    }
    // A resumed run's steps after `start` replace those the old files hold.
    if (root && resume) tb_restart(&l->tb, start + 1);
    progress_start(&l->console, "train", last);
    l->console.tty = root && l->console.tty;
    l->t_window = progress_now();
    return 0;
}

// One line of metrics.jsonl: line (consumed) and a newline. Its reals are
// doubles or fp32 values, each written so that it reads back exactly.
static void write_metrics_line(FILE *f, json_t *line) {
    jsonio_dump(line, f, JSONIO_F64);
    json_decref(line);
}

// The loss components the recipe trains (weight above 0), for the console
// and TensorBoard: metrics.jsonl has them all.
typedef struct Component { const char *name; double value; } Component;

static int components(const TrainLog *l, const StepStats *ss, Component *out) {
    const RecipeDistill *d = &l->r->distill;
    int n = 0;
    if (d->w_token_kl > 0) out[n++] = (Component){ "token_kl", ss->kl };
    if (d->w_ce > 0) out[n++] = (Component){ "ce", ss->ce };
    if (d->w_traj > 0) out[n++] = (Component){ "traj", ss->traj };
    if (d->w_feature > 0) out[n++] = (Component){ "feature", ss->feature };
    return n;
}

static void console_step(TrainLog *l, long step, const StepStats *ss, double sps) {
    Component c[4];
    int n = components(l, ss, c);
    char line[512], eta[32];
    double spent = progress_now() - l->console.t0;
    progress_duration(step > l->start ? spent / (step - l->start) * (l->last - step) : 0, eta, sizeof eta);
    size_t at = (size_t)snprintf(line, sizeof line, "step %ld/%ld  loss %.4f (", step, l->last, ss->loss);
    for (int i = 0; i < n && at < sizeof line; i++)
        at += (size_t)snprintf(line + at, sizeof line - at, "%s%s %.4f", i ? ", " : "", c[i].name, c[i].value);
    if (at < sizeof line)
        snprintf(line + at, sizeof line - at, ")  lr %.2e  grad_norm %.3g  %.0f samples/s  ETA %s", ss->lr, ss->grad_norm, sps, eta);
    progress_line(&l->console, line);
}

void train_log_step(TrainLog *l, long step, const StepStats *ss, int skipped) {
    l->samples_window += ss->samples;
    if (skipped) {
        write_metrics_line(l->metrics, json_pack("{s:I, s:i, s:s}", "step", (json_int_t)step, "skipped", 1,
                                                 "reason", "non-finite loss or gradient"));
        return;
    }
    double now = progress_now(), sps = l->samples_window / fmax(now - l->t_window, 1e-9);
    double norm = isfinite(ss->grad_norm) ? ss->grad_norm : -1.0;
    write_metrics_line(l->metrics, json_pack("{s:I, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i}", "step", (json_int_t)step,
                                             "loss", jsonio_real(ss->loss), "token_kl", jsonio_real(ss->kl),
                                             "ce", jsonio_real(ss->ce), "traj", jsonio_real(ss->traj),
                                             "feature", jsonio_real(ss->feature), "lr", jsonio_real(ss->lr),
                                             "grad_norm", jsonio_real(norm), "samples_per_s", jsonio_real(sps), "skipped", 0));
    if (l->tb.f) {
        Component c[4];
        int n = components(l, ss, c);
        char tag[64];
        tb_scalar(&l->tb, "train/loss", step, ss->loss);
        for (int i = 0; i < n; i++) {
            snprintf(tag, sizeof tag, "train/%s", c[i].name);
            tb_scalar(&l->tb, tag, step, c[i].value);
        }
        tb_scalar(&l->tb, "train/lr", step, ss->lr);
        tb_scalar(&l->tb, "train/grad_norm", step, norm);
        tb_scalar(&l->tb, "train/samples_per_s", step, sps);
        tb_flush(&l->tb);
    }
    if (step % l->r->train.log_every == 0 || step == l->last) {
        console_step(l, step, ss, sps);
        l->t_window = now;
        l->samples_window = 0;
    }
}

// Every number of eval.json's object as a scalar "eval/<path>" (null, a
// metric without samples, left out).
static void tb_json(TbWriter *tb, const char *prefix, const json_t *v, long step) {
    if (json_is_object(v)) {
        const char *key;
        const json_t *member;
        char tag[256];
        json_object_foreach((json_t *)v, key, member) {
            snprintf(tag, sizeof tag, "%s/%s", prefix, key);
            tb_json(tb, tag, member, step);
        }
    } else if (json_is_number(v)) {
        tb_scalar(tb, prefix, step, json_number_value(v));
    }
}

void train_log_eval(TrainLog *l, long step, const EvalResult *er, int tb, int line) {
    json_t *eval = eval_object(er);
    if (tb && l->tb.f) {
        tb_json(&l->tb, "eval", eval, step);
        tb_flush(&l->tb);
    }
    write_metrics_line(l->metrics, json_pack("{s:I, s:o}", "step", (json_int_t)step, "eval", eval));
    fflush(l->metrics);
    if (!line) return;
    train_log_break(l);
    printf("eval at step %ld: ade_teacher %.3f m (constant velocity %.3f, ego-only %.3f), token_acc %.3f\n", step,
           traj_metric(&er->student, "ade_teacher"), traj_metric(&er->constant_velocity, "ade_teacher"),
           traj_metric(&er->ego_only, "ade_teacher"), er->trace.positions ? er->trace.correct / er->trace.positions : 0);
    fflush(stdout);
}

void train_log_break(TrainLog *l) { progress_break(&l->console); }

void train_log_close(TrainLog *l) {
    train_log_break(l);
    if (l->metrics) fclose(l->metrics);
    tb_close(&l->tb);
    l->metrics = NULL;
}
