// svg.c: inline SVG for the run report (see report.h): line charts
// and top-down trajectory panels. No external references: the page must
// render offline, so there is no xmlns (inline SVG in HTML needs none).
#include <math.h>
#include <stdio.h>
#include "train/report/report.h"

#define CHART_W 520
#define CHART_H 250
#define MARGIN_L 58
#define MARGIN_R 14
#define MARGIN_T 30
#define MARGIN_B 40
#define LEGEND_ROW 16
#define MAX_POINTS 2000    // a curve of more steps is drawn every k-th point

// A "nice" tick step (1, 2 or 5 times a power of ten) near span / n.
static double nice_step(double span, int n) {
    double raw = span / n, p = pow(10, floor(log10(raw))), m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
}

static void range_of(const SvgSeries *s, int n, int use_x, double *lo, double *hi) {
    *lo = INFINITY;
    *hi = -INFINITY;
    for (int k = 0; k < n; k++)
        for (int i = 0; i < s[k].n; i++) {
            double v = use_x ? s[k].x[i] : s[k].y[i];
            if (!isfinite(v) || !isfinite(s[k].y[i])) continue;
            if (v < *lo) *lo = v;
            if (v > *hi) *hi = v;
        }
}

static void escape(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else fputc(*s, f);
    }
}

void svg_line_chart(FILE *f, const char *title, const char *x_label, const SvgSeries *s, int n) {
    int named = 0;
    for (int k = 0; k < n; k++) named += s[k].name != NULL;
    int legend_rows = (named + 2) / 3, height = CHART_H + legend_rows * LEGEND_ROW + 6;
    double x0, x1, y0, y1;
    range_of(s, n, 1, &x0, &x1);
    range_of(s, n, 0, &y0, &y1);
    fprintf(f, "<svg class=\"chart\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n", CHART_W, height, CHART_W, height);
    fprintf(f, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n<text x=\"%d\" y=\"18\" class=\"title\">", CHART_W, height, MARGIN_L);
    escape(f, title);
    fputs("</text>\n", f);
    const int pw = CHART_W - MARGIN_L - MARGIN_R, ph = CHART_H - MARGIN_T - MARGIN_B;
    if (!isfinite(x0) || !isfinite(y0)) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"note\">no data</text>\n</svg>\n", MARGIN_L + 10, MARGIN_T + ph / 2);
        return;
    }
    if (x1 <= x0) { x0 -= 1; x1 += 1; }
    double pad = (y1 - y0) * 0.06;
    if (pad <= 0) pad = fabs(y0) * 0.1 + 1e-3;
    y0 -= pad;
    y1 += pad;
#define SX(v) (MARGIN_L + ((v) - x0) / (x1 - x0) * pw)
#define SY(v) (MARGIN_T + (1 - ((v) - y0) / (y1 - y0)) * ph)
    // Grid and ticks.
    double ys = nice_step(y1 - y0, 5), xs = nice_step(x1 - x0, 6);
    for (double v = ceil(y0 / ys) * ys; v <= y1; v += ys)
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/><text x=\"%d\" y=\"%.1f\" class=\"tick\" "
                   "text-anchor=\"end\">%.4g</text>\n", MARGIN_L, MARGIN_L + pw, SY(v), SY(v), MARGIN_L - 6, SY(v) + 4, fabs(v) < ys * 1e-6 ? 0 : v);
    for (double v = ceil(x0 / xs) * xs; v <= x1; v += xs)
        fprintf(f, "<line x1=\"%.1f\" x2=\"%.1f\" y1=\"%d\" y2=\"%d\" class=\"grid\"/><text x=\"%.1f\" y=\"%d\" class=\"tick\" "
                   "text-anchor=\"middle\">%.6g</text>\n", SX(v), SX(v), MARGIN_T, MARGIN_T + ph, SX(v), MARGIN_T + ph + 16, v);
    fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" class=\"frame\"/>\n", MARGIN_L, MARGIN_T, pw, ph);
    fprintf(f, "<text x=\"%d\" y=\"%d\" class=\"tick\" text-anchor=\"middle\">", MARGIN_L + pw / 2, MARGIN_T + ph + 32);
    escape(f, x_label);
    fputs("</text>\n", f);
    // The lines: one polyline per run of finite points.
    for (int k = 0; k < n; k++) {
        int stride = s[k].n > MAX_POINTS ? (s[k].n + MAX_POINTS - 1) / MAX_POINTS : 1, open = 0;
        for (int i = 0; i < s[k].n; i += stride) {
            int ok = isfinite(s[k].x[i]) && isfinite(s[k].y[i]);
            if (ok && !open) {
                fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\"%s points=\"", s[k].color,
                        s[k].width, s[k].opacity, s[k].dashed ? " stroke-dasharray=\"6 4\"" : "");
                open = 1;
            }
            if (ok) fprintf(f, "%.1f,%.1f ", SX(s[k].x[i]), SY(s[k].y[i]));
            if (!ok && open) { fputs("\"/>\n", f); open = 0; }
        }
        if (open) fputs("\"/>\n", f);
        // A single point would be invisible as a line.
        if (s[k].n == 1 && isfinite(s[k].y[0]))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>\n", SX(s[k].x[0]), SY(s[k].y[0]), s[k].color);
    }
    // Legend, three entries a row, under the plot.
    int slot = 0;
    for (int k = 0; k < n; k++) {
        if (!s[k].name) continue;
        int lx = MARGIN_L + (slot % 3) * (pw / 3), ly = CHART_H + 10 + (slot / 3) * LEGEND_ROW;
        fprintf(f, "<line x1=\"%d\" x2=\"%d\" y1=\"%d\" y2=\"%d\" stroke=\"%s\" stroke-width=\"3\"%s/><text x=\"%d\" y=\"%d\" class=\"tick\">",
                lx, lx + 18, ly - 4, ly - 4, s[k].color, s[k].dashed ? " stroke-dasharray=\"6 4\"" : "", lx + 22, ly);
        escape(f, s[k].name);
        fputs("</text>\n", f);
        slot++;
    }
#undef SX
#undef SY
    fputs("</svg>\n", f);
}

// Each panel is framed to its own content: the forward (x) and lateral (y)
// extents of every point and the car, each with a margin and a minimum
// (TOPDOWN_MIN_X, _Y m). The two axes get their own scales, the lateral one
// at most TOPDOWN_MAX_STRETCH times the forward one, so that a plan that
// runs 40 m ahead and drifts 1 m sideways still shows how the lines part;
// the panel says how much the lateral axis is stretched.
#define TOPDOWN_MIN_X 8.0
#define TOPDOWN_MIN_Y 4.0
#define TOPDOWN_MAX_STRETCH 4.0

void svg_topdown(FILE *f, int size, const SvgPath *paths, int n) {
    double xmin = -1.5, xmax = 1.0, ymin = -1.0, ymax = 1.0;   // the car
    for (int k = 0; k < n; k++)
        for (int i = 0; i < paths[k].n; i++) {
            double x = paths[k].xy[(size_t)i * paths[k].stride], y = paths[k].xy[(size_t)i * paths[k].stride + 1];
            if (!isfinite(x) || !isfinite(y)) continue;
            xmin = fmin(xmin, x); xmax = fmax(xmax, x); ymin = fmin(ymin, y); ymax = fmax(ymax, y);
        }
    double span_x = fmax(xmax - xmin, TOPDOWN_MIN_X) * 1.12, span_y = fmax(ymax - ymin, TOPDOWN_MIN_Y) * 1.2;
    span_y = fmax(span_y, span_x / TOPDOWN_MAX_STRETCH);
    double cx = (xmin + xmax) / 2, cy = (ymin + ymax) / 2;
    double sx = size / span_x, sy = size / span_y;   // px per metre, forward and lateral
    // x forward is up, y left is left.
#define PX(y) (size / 2.0 - ((y) - cy) * sy)
#define PY(x) (size / 2.0 - ((x) - cx) * sx)
    fprintf(f, "<svg class=\"topdown\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\">\n<rect width=\"%d\" height=\"%d\" fill=\"#f4f6f8\"/>\n",
            size, size, size, size, size, size);
    double gx = nice_step(span_x, 6), gy = nice_step(span_y, 6);
    for (double v = ceil((cx - span_x / 2) / gx) * gx; v <= cx + span_x / 2; v += gx)
        fprintf(f, "<line x1=\"0\" x2=\"%d\" y1=\"%.1f\" y2=\"%.1f\" class=\"grid\"/>\n", size, PY(v), PY(v));
    for (double v = ceil((cy - span_y / 2) / gy) * gy; v <= cy + span_y / 2; v += gy)
        fprintf(f, "<line y1=\"0\" y2=\"%d\" x1=\"%.1f\" x2=\"%.1f\" class=\"grid\"/>\n", size, PX(v), PX(v));
    double stretch = sy / sx;
    if (stretch > 1.05)
        fprintf(f, "<text x=\"4\" y=\"%d\" class=\"tick\">grid %g m ahead, %g m across (across \u00d7%.1f)</text>\n", size - 5,
                gx, gy, stretch);
    else
        fprintf(f, "<text x=\"4\" y=\"%d\" class=\"tick\">grid %g m ahead, %g m across</text>\n", size - 5, gx, gy);
    // The ego car at t0: 4.5 m by 1.9 m, its reference point 1 m behind the front.
    fprintf(f, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"#37474f\" fill-opacity=\"0.8\" rx=\"2\"/>\n",
            PX(0.95), PY(1.0), 1.9 * sy, 4.5 * sx);
    for (int k = 0; k < n; k++) {
        const SvgPath *p = &paths[k];
        fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-opacity=\"%.2f\" stroke-linejoin=\"round\" "
                "stroke-linecap=\"round\"%s points=\"", p->color, p->width, p->opacity, p->dashed ? " stroke-dasharray=\"5 4\"" : "");
        if (p->origin) fprintf(f, "%.1f,%.1f ", PX(0), PY(0));
        double ex = NAN, ey = NAN;
        for (int i = 0; i < p->n; i++) {
            double x = p->xy[(size_t)i * p->stride], y = p->xy[(size_t)i * p->stride + 1];
            if (!isfinite(x) || !isfinite(y)) continue;
            fprintf(f, "%.1f,%.1f ", PX(y), PY(x));
            ex = x; ey = y;
        }
        fputs("\">", f);
        if (p->name) { fputs("<title>", f); escape(f, p->name); fputs("</title>", f); }
        fputs("</polyline>\n", f);
        // Where a path ends, a mark of its own (a line drawn over another still shows its end).
        if (p->end_mark && isfinite(ex))
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" stroke=\"#fff\" stroke-width=\"1\"/>\n", PX(ey),
                    PY(ex), p->end_mark, p->color);
    }
#undef PX
#undef PY
    fputs("</svg>\n", f);
}
