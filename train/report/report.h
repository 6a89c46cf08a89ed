// report.h: what `distil report` (train/report/report.c) draws: SVG charts and
// top-down trajectory panels (train/report/svg.c), and the eval samples the
// latest checkpoint is run on (train/report/samples.c).
#pragma once
#include <stdint.h>
#include <stdio.h>
#include "train/ckpt/bundle.h"     // defines: Bundle

// ---- SVG ----------------------------------------------------------------------------

// One line of a chart: n points (x[i], y[i]); non-finite y values are gaps.
typedef struct SvgSeries {
    const char *name;         // in the legend; NULL: not listed
    const char *color;        // CSS colour
    const double *x, *y;
    int n;
    double width;             // stroke width, px
    double opacity;
    int dashed;
} SvgSeries;

// A line chart with axes, ticks, a title and a legend, inline in the page.
void svg_line_chart(FILE *f, const char *title, const char *x_label, const SvgSeries *series, int n_series);

// One path in the ego frame at t0: n points (x forward, y left, metres),
// `stride` floats apart.
typedef struct SvgPath {
    const char *name;         // legend; NULL: not listed
    const char *color;
    const float *xy;
    int n, stride;
    double width, opacity;
    int dashed;
    int origin;               // 1: the path starts at the ego car (0, 0) (future plans)
    double end_mark;          // radius (px) of a dot where the path ends; 0: none
} SvgPath;

// A square top-down panel (x up, y to the left), framed to its own content
// (forward and lateral each scaled to fit, the lateral at most 4x
// stretched, as the panel says), with a metre grid and the ego car.
void svg_topdown(FILE *f, int size_px, const SvgPath *paths, int n_paths);

// ---- samples --------------------------------------------------------------------------

typedef struct ReportSample {
    int shard;                     // in the eval set
    int64_t index, clip_id, t0_us;
    int command;
    float speed;                   // m/s at t0
    uint8_t *frames;               // (n_cams, H, W, 3) the newest frame of each of the model's cameras
    float *history;                // (Th, 4)
    float *teacher;                // (K, T, 3) the teacher's plans
    float *weights;                // (K)
    float *teacher_mean;           // (T, 3)
    float *future;                 // (T, 3) what the driver did, when has_future
    int has_future;
    float *student;                // (T, 3) with the student's own greedy trace
    float *student_forced;         // (T, 3) with the teacher's trace (what the metrics measure)
    char *teacher_trace, *student_trace;   // text
} ReportSample;

typedef struct ReportSamples {
    ReportSample *s;
    int n;
    int n_cams, H, W, Th, T, K;
    char *cam_names[DL_MAX_CAMERAS];
} ReportSamples;

// Run the bundle on `want` eval samples picked by a seeded shuffle of the
// shards the globs match: the trajectory with the teacher's trace, the
// student's greedy trace (to its end-of-trace token or L tokens) and the
// trajectory it leads to. Returns 0, or 2 with one error line printed.
int report_run_samples(const Bundle *b, char *const *globs, int n_globs, int want, uint64_t seed, ReportSamples *out);
void report_samples_free(ReportSamples *rs);

// ---- the page ----------------------------------------------------------------
#define REPORT_DEFAULT_SAMPLES 8
#define REPORT_MAX_SAMPLES 64

// What `distil report` asked for.
typedef struct ReportRequest {
    const char *run_dir, *checkpoint, *out;   // checkpoint, out: NULL for the defaults
    char *logs[16];                           // eval shard globs (none: the recipe's)
    int n_logs, samples;
} ReportRequest;

// Write the report page (out, or RUN_DIR/report.html) atomically. Returns 0,
// or 2 with one error line printed.
int report_write(const ReportRequest *req);
