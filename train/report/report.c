// report.c: the run report, RUN_DIR/report.html (train/cmd/report.c parses
// `distil report`'s arguments): one self-contained
// page (inline SVG and PNG data URIs, no external request): the loss curves
// from metrics.jsonl, the eval metrics over the steps against the
// baselines, the final eval table, and a grid of eval samples run through
// the latest checkpoint (train/report/samples.c), drawn by train/report/svg.c.
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/ckpt/checkpoint.h"  // defines: checkpoint_resolve
#include "train/formats/json_io.h"     // defines: jsonio_parse, jsonio_load
#include "train/formats/png.h"         // defines: png_encode_rgb, base64_encode
#include "train/report/report.h"      // defines: svg_*, report_run_samples

#define PANEL_PX 260
#define FRAME_PX 256           // camera frames are shown this wide (pixels scaled, not smoothed)

static const char *const COLOR_STUDENT_FORCED = "#0b2f6b";   // dark blue, dashed
static const char *const COLOR_STUDENT = "#1f6fd1", *const COLOR_TEACHER = "#f08a00", *const COLOR_DRIVER = "#2e9e44",
                         *const COLOR_CV = "#8e5cc8", *const COLOR_EGO = "#a0522d", *const COLOR_GREY = "#8a8f96";

// ---- metrics.jsonl ------------------------------------------------------------------------

typedef struct Curve { double *x, *y; int n, cap; } Curve;

enum { S_LOSS, S_KL, S_CE, S_TRAJ, S_FEATURE, S_GRAD_NORM, S_LR, N_STEP_CURVES };
static const char *const step_keys[N_STEP_CURVES] = { "loss", "token_kl", "ce", "traj", "feature", "grad_norm", "lr" };
static const char *const step_titles[N_STEP_CURVES] = {
    "total loss (weighted sum)", "token KL to the teacher", "cross-entropy on the teacher's trace",
    "trajectory loss", "feature loss", "gradient norm (before clipping)", "learning rate" };

// The eval curves: a row of eval.json and a key of it.
typedef struct EvalKey { const char *row, *sub, *key; } EvalKey;
enum { E_ADE_T_STUDENT, E_ADE_T_CV, E_ADE_T_EGO, E_ADE_T_TEACHER, E_ADE_GT_STUDENT, E_ADE_GT_CV, E_ADE_GT_EGO, E_ADE_GT_TEACHER,
       E_TOKEN_ACC, E_MAJORITY_ACC, E_KL, N_EVAL_CURVES };
static const EvalKey eval_keys[N_EVAL_CURVES] = {
    { "student", NULL, "ade_teacher" }, { "baselines", "constant_velocity", "ade_teacher" },
    { "baselines", "ego_only", "ade_teacher" }, { "teacher_consistency", NULL, "ade_teacher" },
    { "student", NULL, "ade_gt" }, { "baselines", "constant_velocity", "ade_gt" },
    { "baselines", "ego_only", "ade_gt" }, { "teacher_consistency", NULL, "ade_gt" },
    { "trace", NULL, "token_acc" }, { "trace", NULL, "majority_acc" }, { "trace", NULL, "kl" },
};

typedef struct RunLog {
    Curve step[N_STEP_CURVES], eval[N_EVAL_CURVES];
    long lines, skipped_steps, unreadable;
    json_t *last_eval;              // the last evaluation's "eval" object, for the table
} RunLog;

static int curve_add(Curve *c, double x, double y) {
    if (c->n == c->cap) {
        int cap = c->cap ? 2 * c->cap : 256;
        double *nx = realloc(c->x, cap * sizeof *nx);
        if (!nx) return -1;
        c->x = nx;
        double *ny = realloc(c->y, cap * sizeof *ny);
        if (!ny) return -1;
        c->y = ny;
        c->cap = cap;
    }
    c->x[c->n] = x;
    c->y[c->n++] = y;
    return 0;
}

static void runlog_free(RunLog *r) {
    for (int i = 0; i < N_STEP_CURVES; i++) { free(r->step[i].x); free(r->step[i].y); }
    for (int i = 0; i < N_EVAL_CURVES; i++) { free(r->eval[i].x); free(r->eval[i].y); }
    json_decref(r->last_eval);
    memset(r, 0, sizeof *r);
}

// A number at obj[a][b][c] (b, c may be NULL); NaN when absent or null.
static double number_at(const json_t *obj, const char *a, const char *b, const char *c) {
    const json_t *v = json_object_get(obj, a);
    if (b) v = json_object_get(v, b);
    if (c) v = json_object_get(v, c);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

static int read_metrics(const char *path, RunLog *r) {
    memset(r, 0, sizeof *r);
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "distil: error: %s: %s; give a run directory of distil train\n", path, strerror(errno));
        return 2;
    }
    char *line = NULL, err[256];
    size_t cap = 0;
    ssize_t len;
    int rc = 0;
    while (!rc && (len = getline(&line, &cap, f)) > 0) {
        r->lines++;
        json_t *o = jsonio_parse(line, (size_t)len, err, sizeof err);
        // A torn last line (a run killed mid-write) is counted, not fatal.
        if (!json_is_object(o) || !json_object_get(o, "step")) { r->unreadable++; json_decref(o); continue; }
        double step = number_at(o, "step", NULL, NULL);
        json_t *ev = json_object_get(o, "eval");
        if (json_is_object(ev)) {
            for (int i = 0; i < N_EVAL_CURVES && !rc; i++)
                rc = curve_add(&r->eval[i], step, number_at(ev, eval_keys[i].row, eval_keys[i].sub ? eval_keys[i].sub : eval_keys[i].key,
                                                         eval_keys[i].sub ? eval_keys[i].key : NULL));
            json_decref(r->last_eval);
            r->last_eval = json_incref(ev);
        } else if (json_object_get(o, "loss")) {
            for (int i = 0; i < N_STEP_CURVES && !rc; i++) {
                double v = number_at(o, step_keys[i], NULL, NULL);
                if (i == S_GRAD_NORM && v < 0) v = NAN;   // written -1 when not finite
                rc = curve_add(&r->step[i], step, v);
            }
        } else r->skipped_steps++;
        json_decref(o);
    }
    free(line);
    fclose(f);
    if (rc) fprintf(stderr, "distil: error: %s: out of memory\n", path);
    return rc ? 2 : 0;
}

// ---- the page ------------------------------------------------------------------------------

static void html_escape(FILE *f, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default: fputc(*s, f);
        }
    }
}

static const char *const page_style =
    "body{font-family:-apple-system,'Segoe UI',Roboto,'DejaVu Sans',Arial,sans-serif;margin:24px;color:#1d2329;background:#fafbfc}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5d9de;padding-bottom:4px}"
    ".sub{color:#5b636b;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:12px}"
    ".chart{border:1px solid #d5d9de;border-radius:4px}.title{font-size:13px;font-weight:600;fill:#1d2329}"
    ".tick{font-size:11px;fill:#5b636b}.note{font-size:13px;fill:#8a8f96}.grid{stroke:#e3e6ea;stroke-width:1}"
    ".frame{fill:none;stroke:#b8bec5}table{border-collapse:collapse;font-size:13px;background:#fff}"
    "td,th{border:1px solid #d5d9de;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
    ".samples{display:grid;grid-template-columns:repeat(auto-fill,minmax(540px,1fr));gap:14px}"
    ".card{background:#fff;border:1px solid #d5d9de;border-radius:6px;padding:10px;display:flex;flex-wrap:wrap;gap:10px}"
    ".cams{display:flex;flex-direction:column;gap:4px;width:256px}.cams img{image-rendering:pixelated;border:1px solid #b8bec5}"
    ".cap{font-size:11px;color:#5b636b}.traces{font-size:12px;width:100%}.traces b{display:inline-block;width:70px}"
    ".key span{display:inline-block;margin-right:16px;font-size:13px}.key i{display:inline-block;width:22px;height:4px;"
    "vertical-align:middle;margin-right:6px}.warn{color:#a15c00}";

// Raw values (thin, light) and an exponential moving average over them.
static void loss_chart(FILE *f, const Curve *c, const char *title, const char *color) {
    double *smooth = malloc((c->n ? c->n : 1) * sizeof *smooth);
    if (!smooth) return;
    double alpha = 2.0 / (fmax(1.0, c->n / 40.0) + 1), acc = NAN;
    for (int i = 0; i < c->n; i++) {
        if (isfinite(c->y[i])) acc = isfinite(acc) ? acc + alpha * (c->y[i] - acc) : c->y[i];
        smooth[i] = acc;
    }
    SvgSeries s[2] = {
        { "per step", color, c->x, c->y, c->n, 1.0, 0.35, 0 },
        { "moving average", color, c->x, smooth, c->n, 2.2, 1.0, 0 },
    };
    svg_line_chart(f, title, "step", s, c->n > 20 ? 2 : 1);
    free(smooth);
}

static int all_zero(const Curve *c) {
    for (int i = 0; i < c->n; i++)
        if (isfinite(c->y[i]) && c->y[i] != 0) return 0;
    return 1;
}

static void section_losses(FILE *f, const RunLog *r) {
    fputs("<h2 id=\"training\">Training</h2>\n<div class=\"charts\">\n", f);
    if (!r->step[S_LOSS].n) fputs("<p class=\"sub\">No optimizer step logged yet.</p>\n", f);
    for (int i = 0; i < N_STEP_CURVES && r->step[S_LOSS].n; i++) {
        if (i != S_LOSS && i != S_LR && i != S_GRAD_NORM && all_zero(&r->step[i])) continue;   // a component with weight 0
        loss_chart(f, &r->step[i], step_titles[i], i == S_LR ? COLOR_GREY : COLOR_STUDENT);
    }
    fputs("</div>\n", f);
}

static void section_eval_curves(FILE *f, const RunLog *r) {
    fputs("<h2 id=\"evaluation\">Evaluation over training</h2>\n", f);
    if (!r->eval[0].n) { fputs("<p class=\"sub\">No evaluation in metrics.jsonl (the recipe has no data.eval, or none ran yet).</p>\n", f); return; }
    fputs("<p class=\"sub\">Periodic evaluations use the first train.eval_samples eval samples; the last point is the whole eval split. "
          "Lower is better for ADE; a student that ignores its cameras can at best match the ego-only baseline.</p>\n<div class=\"charts\">\n", f);
    const Curve *e = r->eval;
    SvgSeries ade_t[4] = {
        { "student", COLOR_STUDENT, e[E_ADE_T_STUDENT].x, e[E_ADE_T_STUDENT].y, e[E_ADE_T_STUDENT].n, 2.2, 1, 0 },
        { "constant velocity", COLOR_CV, e[E_ADE_T_CV].x, e[E_ADE_T_CV].y, e[E_ADE_T_CV].n, 1.6, 1, 1 },
        { "ego history only", COLOR_EGO, e[E_ADE_T_EGO].x, e[E_ADE_T_EGO].y, e[E_ADE_T_EGO].n, 1.6, 1, 1 },
        { "teacher's own spread", COLOR_TEACHER, e[E_ADE_T_TEACHER].x, e[E_ADE_T_TEACHER].y, e[E_ADE_T_TEACHER].n, 1.6, 1, 1 },
    };
    svg_line_chart(f, "ADE to the teacher's plans (m)", "step", ade_t, 4);
    SvgSeries ade_gt[4] = {
        { "student", COLOR_STUDENT, e[E_ADE_GT_STUDENT].x, e[E_ADE_GT_STUDENT].y, e[E_ADE_GT_STUDENT].n, 2.2, 1, 0 },
        { "constant velocity", COLOR_CV, e[E_ADE_GT_CV].x, e[E_ADE_GT_CV].y, e[E_ADE_GT_CV].n, 1.6, 1, 1 },
        { "ego history only", COLOR_EGO, e[E_ADE_GT_EGO].x, e[E_ADE_GT_EGO].y, e[E_ADE_GT_EGO].n, 1.6, 1, 1 },
        { "teacher mean", COLOR_TEACHER, e[E_ADE_GT_TEACHER].x, e[E_ADE_GT_TEACHER].y, e[E_ADE_GT_TEACHER].n, 1.6, 1, 1 },
    };
    svg_line_chart(f, "ADE to what the driver did (m)", "step", ade_gt, 4);
    SvgSeries acc[2] = {
        { "student token accuracy", COLOR_STUDENT, e[E_TOKEN_ACC].x, e[E_TOKEN_ACC].y, e[E_TOKEN_ACC].n, 2.2, 1, 0 },
        { "always the majority token", COLOR_GREY, e[E_MAJORITY_ACC].x, e[E_MAJORITY_ACC].y, e[E_MAJORITY_ACC].n, 1.6, 1, 1 },
    };
    svg_line_chart(f, "trace: next-token accuracy", "step", acc, 2);
    SvgSeries kl[1] = { { "KL(teacher || student), nats", COLOR_STUDENT, e[E_KL].x, e[E_KL].y, e[E_KL].n, 2.2, 1, 0 } };
    svg_line_chart(f, "trace: KL to the teacher per position", "step", kl, 1);
    fputs("</div>\n", f);
}

static void cell(FILE *f, double v) {
    if (isfinite(v)) fprintf(f, "<td>%.3f</td>", v);
    else fputs("<td>&ndash;</td>", f);
}

// The final table: eval.json, else the last evaluation of metrics.jsonl.
static void section_eval_table(FILE *f, const char *eval_json_path, const RunLog *r) {
    char err[256];
    json_t *e = jsonio_load(eval_json_path, 1 << 20, err, sizeof err);
    const char *source = "eval.json (the whole eval split, at the end of training)";
    if (!json_is_object(e)) {
        json_decref(e);
        e = json_incref(r->last_eval);
        source = "the last evaluation in metrics.jsonl";
    }
    if (!e) return;
    fprintf(f, "<h2>Final evaluation</h2>\n<p class=\"sub\">From %s; %.0f samples, metres.</p>\n<table>\n<tr><th></th>", source,
            number_at(e, "samples", NULL, NULL));
    static const char *const cols[] = { "ade_teacher", "ade_teacher_1s", "ade_teacher_3s", "fde_teacher", "ade_gt", "ade_gt_1s",
                                        "ade_gt_3s", "fde_gt", "min_ade_teacher" };
    for (int c = 0; c < 9; c++) fprintf(f, "<th>%s</th>", cols[c]);
    fputs("</tr>\n", f);
    static const char *const rows[][3] = { { "student", "student", NULL }, { "baseline: constant velocity", "baselines", "constant_velocity" },
                                           { "baseline: ego history only", "baselines", "ego_only" },
                                           { "teacher mean (consistency)", "teacher_consistency", NULL } };
    for (int i = 0; i < 4; i++) {
        fprintf(f, "<tr><td>%s</td>", rows[i][0]);
        for (int c = 0; c < 9; c++) cell(f, number_at(e, rows[i][1], rows[i][2] ? rows[i][2] : cols[c], rows[i][2] ? cols[c] : NULL));
        fputs("</tr>\n", f);
    }
    fprintf(f, "</table>\n<p class=\"sub\">Trace: token accuracy %.3f (always the majority token: %.3f), KL to the teacher %.4f nats "
               "per position over %.0f positions.</p>\n", number_at(e, "trace", "token_acc", NULL),
            number_at(e, "trace", "majority_acc", NULL), number_at(e, "trace", "kl", NULL), number_at(e, "trace", "positions", NULL));
    json_decref(e);
}

static double ade(const float *a, const float *b, int T) {
    double s = 0;
    for (int t = 0; t < T; t++) s += hypot(a[t * 3] - b[t * 3], a[t * 3 + 1] - b[t * 3 + 1]);
    return s / T;
}

static void inline_png(FILE *f, const uint8_t *rgb, int w, int h, const char *alt) {
    uint8_t *png = NULL;
    size_t n = 0;
    char *b64 = png_encode_rgb(rgb, w, h, &png, &n) == 0 ? base64_encode(png, n) : NULL;
    int shown_w = FRAME_PX, shown_h = (int)lround((double)h * FRAME_PX / w);
    if (b64) {
        fprintf(f, "<img width=\"%d\" height=\"%d\" alt=\"", shown_w, shown_h);
        html_escape(f, alt);
        fprintf(f, "\" src=\"data:image/png;base64,%s\">", b64);
    }
    free(png);
    free(b64);
}

static const char *const command_names[4] = { "follow the road", "turn left", "go straight", "turn right" };

static void sample_card(FILE *f, const ReportSamples *rs, const ReportSample *s) {
    const int T = rs->T, K = rs->K;
    fputs("<div class=\"card\">\n<div class=\"cams\">", f);
    size_t frame = (size_t)rs->H * rs->W * 3;
    for (int c = 0; c < rs->n_cams; c++) {
        inline_png(f, s->frames + c * frame, rs->W, rs->H, rs->cam_names[c]);
        fputs("<span class=\"cap\">", f);
        html_escape(f, rs->cam_names[c]);
        fputs(" at t0</span>", f);
    }
    fprintf(f, "<span class=\"cap\">shard %d, sample %lld &middot; clip %lld, t0 %.1f s<br>%s at %.1f m/s</span></div>\n", s->shard,
            (long long)s->index, (long long)s->clip_id, s->t0_us / 1e6, command_names[s->command >= 0 && s->command < 4 ? s->command : 0],
            s->speed);
    SvgPath paths[16];
    int n = 0;
    // Drawn widest first: each line on top is narrower than those under it,
    // so the four that matter (teacher mean, driver, the student twice) can
    // be told apart where they overlap, and each ends in a dot of its colour.
    paths[n++] = (SvgPath){ "ego history", COLOR_GREY, s->history, rs->Th, 4, 2.0, 0.9, 0, 0, 0 };
    for (int k = 0; k < K && n < 10; k++)
        paths[n++] = (SvgPath){ "a teacher plan", COLOR_TEACHER, s->teacher + (size_t)k * T * 3, T, 3, 1.0,
                                0.25 + 0.45 * s->weights[k], 0, 1, 0 };
    paths[n++] = (SvgPath){ "teacher mean plan", COLOR_TEACHER, s->teacher_mean, T, 3, 8.0, 0.45, 0, 1, 4.5 };
    if (s->has_future) paths[n++] = (SvgPath){ "driver", COLOR_DRIVER, s->future, T, 3, 4.0, 0.9, 0, 1, 3.5 };
    paths[n++] = (SvgPath){ "student, with its own trace", COLOR_STUDENT, s->student, T, 3, 3.2, 0.75, 0, 1, 3.0 };
    paths[n++] = (SvgPath){ "student, given the teacher's trace", COLOR_STUDENT_FORCED, s->student_forced, T, 3, 1.3, 1.0, 1, 1, 2.0 };
    svg_topdown(f, PANEL_PX, paths, n);
    fprintf(f, "<div class=\"traces\"><span class=\"cap\">ADE to the teacher mean: student %.2f m (given the teacher's trace %.2f m)",
            ade(s->student, s->teacher_mean, T), ade(s->student_forced, s->teacher_mean, T));
    if (s->has_future) fprintf(f, "; to the driver %.2f m", ade(s->student, s->future, T));
    fputs("</span><br><b>teacher</b>", f);
    html_escape(f, s->teacher_trace ? s->teacher_trace : "");
    fputs("<br><b>student</b>", f);
    html_escape(f, s->student_trace && s->student_trace[0] ? s->student_trace : "(empty: its first token ended the trace)");
    fputs("</div>\n</div>\n", f);
}

static void section_samples(FILE *f, const ReportSamples *rs, const char *ckpt, const char *why_not) {
    fputs("<h2 id=\"samples\">Eval samples</h2>\n", f);
    if (!rs || !rs->n) {
        fputs("<p class=\"sub warn\">", f);
        html_escape(f, why_not ? why_not : "no samples");
        fputs("</p>\n", f);
        return;
    }
    fputs("<p class=\"sub\">The latest checkpoint (", f);
    html_escape(f, ckpt);
    fputs(") on eval samples. Top-down, ego frame at t0 (forward is up); each panel is framed to its own lines, the lateral "
          "axis stretched when they run far ahead (the panel says by how much). The student's trace is its own greedy "
          "decoding; the solid blue line is the trajectory that trace leads to, the dashed dark blue one the trajectory given "
          "the teacher's trace (what the metrics above measure). Wider lines lie under narrower ones, and each ends in a dot."
          "</p>\n<p class=\"key\">", f);
    fprintf(f, "<span><i style=\"background:%s\"></i>student</span><span><i style=\"background:%s\"></i>student, given the "
               "teacher's trace (dashed)</span><span><i style=\"background:%s\"></i>teacher (mean wide; its plans thin)</span>"
               "<span><i style=\"background:%s\"></i>driver</span><span><i style=\"background:%s\"></i>ego history</span></p>\n"
               "<div class=\"samples\">\n", COLOR_STUDENT, COLOR_STUDENT_FORCED, COLOR_TEACHER, COLOR_DRIVER, COLOR_GREY);
    for (int i = 0; i < rs->n; i++) sample_card(f, rs, &rs->s[i]);
    fputs("</div>\n", f);
}

// ---- the command ----------------------------------------------------------------------------

// The samples for the grid, or a note saying why there are none. Returns
// 0 (samples or a note) or 2 (an error printed: bad shards, a damaged
// checkpoint).
static int gather_samples(const ReportRequest *a, const Recipe *recipe, int has_recipe, ReportSamples *rs, char *ckpt,
                          size_t ckpt_len, char *note, size_t note_len) {
    char err[1024];
    if (!a->samples) { snprintf(note, note_len, "Samples turned off (--samples 0)."); return 0; }
    if (a->checkpoint) snprintf(ckpt, ckpt_len, "%s", a->checkpoint);
    else if (checkpoint_resolve(NULL, a->run_dir, ckpt, ckpt_len, err, sizeof err)) {
        snprintf(note, note_len, "No checkpoint to run (%s); set train.checkpoint_every, or pass --checkpoint.", err);
        return 0;
    }
    Bundle b;
    printf("report: loading %s\n", ckpt);
    fflush(stdout);
    int rc = bundle_open(&b, ckpt);
    if (rc) { bundle_close(&b); return rc; }
    // The eval shards: --logs, the run's recipe, or the checkpoint's.
    const RecipeList *eval = has_recipe ? &recipe->data.eval : b.has_recipe ? &b.recipe.data.eval : NULL;
    char *const *globs = a->n_logs ? a->logs : eval ? eval->items : NULL;
    int n_globs = a->n_logs ? a->n_logs : eval ? eval->n : 0;
    char **paths = NULL;
    int n_paths = 0;
    if (!n_globs) snprintf(note, note_len, "The recipe has no data.eval shards; pass --logs GLOB for samples.");
    else if (dl_glob(globs, n_globs, &paths, &n_paths, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s; run distil report from the directory training ran in, pass --logs GLOB, or "
                "--samples 0\n", err);
        rc = 2;
    } else {
        dl_free_paths(paths, n_paths);
        uint64_t seed = has_recipe ? (uint64_t)recipe->seed : 0;
        rc = report_run_samples(&b, globs, n_globs, a->samples, seed, rs);
    }
    bundle_close(&b);
    return rc;
}

static int write_page(FILE *f, const ReportRequest *a, const char *name, const RunLog *log, const ReportSamples *rs, const char *ckpt,
                      const char *note) {
    fputs("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>distil run: ", f);
    html_escape(f, name);
    fprintf(f, "</title>\n<style>%s</style></head>\n<body>\n<h1>distil run: ", page_style);
    html_escape(f, name);
    fputs("</h1>\n<p class=\"sub\">", f);
    html_escape(f, a->run_dir);
    fprintf(f, " &middot; %ld optimizer steps logged", (long)log->step[S_LOSS].n);
    if (log->skipped_steps) fprintf(f, " &middot; <span class=\"warn\">%ld steps skipped as non-finite</span>", log->skipped_steps);
    if (log->unreadable) fprintf(f, " &middot; <span class=\"warn\">%ld unreadable lines in metrics.jsonl</span>", log->unreadable);
    fputs("</p>\n", f);
    section_losses(f, log);
    section_eval_curves(f, log);
    char path[1200];
    snprintf(path, sizeof path, "%s/eval.json", a->run_dir);
    section_eval_table(f, path, log);
    section_samples(f, rs, ckpt, note);
    fputs("<p class=\"sub\">Written by distil report. Definitions: docs/metrics.md.</p>\n</body></html>\n", f);
    return ferror(f) ? -1 : 0;
}

int report_write(const ReportRequest *req) {
    const ReportRequest a = *req;
    int rc;
    char path[1200], out[1200], tmp[1300];
    struct stat st;
    if (stat(a.run_dir, &st) || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "distil: error: %s: not a directory; give the run directory distil train wrote\n", a.run_dir);
        return 2;
    }
    RunLog log;
    snprintf(path, sizeof path, "%s/metrics.jsonl", a.run_dir);
    if ((rc = read_metrics(path, &log))) { runlog_free(&log); return rc; }
    printf("report: %s: %ld steps and %d evaluations\n", path, (long)log.step[S_LOSS].n, log.eval[0].n);
    fflush(stdout);
    // The run's recipe: its name, its eval shards and seed. Optional.
    Recipe recipe;
    snprintf(path, sizeof path, "%s/recipe.resolved.yaml", a.run_dir);
    int has_recipe = access(path, R_OK) == 0;
    if (has_recipe && recipe_load(&recipe, path, NULL, 0)) { runlog_free(&log); return 2; }
    const char *slash = strrchr(a.run_dir, '/');
    const char *name = has_recipe ? recipe.name : slash && slash[1] ? slash + 1 : a.run_dir;

    ReportSamples rs;
    memset(&rs, 0, sizeof rs);
    char ckpt[1024] = "", note[1400] = "";
    rc = gather_samples(&a, &recipe, has_recipe, &rs, ckpt, sizeof ckpt, note, sizeof note);
    if (!rc) {
        snprintf(out, sizeof out, "%s", a.out ? a.out : "");
        if (!a.out) snprintf(out, sizeof out, "%s/report.html", a.run_dir);
        snprintf(tmp, sizeof tmp, "%s.tmp.%d", out, (int)getpid());
        FILE *f = fopen(tmp, "w");
        if (!f) { fprintf(stderr, "distil: error: %s: cannot write: %s\n", tmp, strerror(errno)); rc = 2; }
        else {
            int bad = write_page(f, &a, name, &log, &rs, ckpt, note);
            if (fclose(f) || bad || rename(tmp, out)) {
                fprintf(stderr, "distil: error: %s: cannot write: %s\n", out, strerror(errno));
                unlink(tmp);
                rc = 2;
            } else printf("wrote %s (%ld steps, %d evaluations, %d samples)\n", out, (long)log.step[S_LOSS].n, log.eval[0].n, rs.n);
        }
    }
    report_samples_free(&rs);
    if (has_recipe) recipe_free(&recipe);
    runlog_free(&log);
    return rc;
}
