// world.c: presets, scene sampling, road geometry and the ego history.
#include "data/synth/world.h"
#include <math.h>
#include "data/synth/trace.h"   // defines: SYNTH_DEMO_VOCAB
#include <string.h>

static const SynthPreset presets[] = {
    // CPU-sized: one small camera, a few minutes of training.
    { "demo", 1, { "front" }, "front", 2, 32, 64, 10.0f, 10, 30, 4, 32, 8, 16, SYNTH_DEMO_VOCAB, 0 },
    // A 4-camera urban rig at a realistic resolution, shaped like an
    // Alpamayo-class teacher's logs: a 6.4 s plan at 10 Hz, reasoning reports
    // of 30-128 tokens over a 32k vocabulary, top-32, a 256-float embedding.
    { "urban4", 4, { "front", "left", "right", "rear" }, "front,left,right,rear",
      2, 224, 400, 10.0f, 10, 64, 4, 256, 32, 128, 32768, 1 },
};

const SynthPreset *synth_preset_find(const char *name) {
    for (size_t i = 0; i < sizeof presets / sizeof presets[0]; i++)
        if (!strcmp(presets[i].name, name)) return &presets[i];
    return NULL;
}

const char *synth_preset_names(void) { return "demo|urban4"; }

// A clamp the compiler inlines (fminf/fmaxf are library calls at -O3 on
// baseline x86-64, and this runs once per pixel).
static inline float clampf(float x, float lo, float hi) { return x < lo ? lo : x > hi ? hi : x; }

static float uniform(Rng *rng, float lo, float hi) { return lo + (hi - lo) * rng_uniform(rng); }
static int chance(Rng *rng, float p) { return rng_uniform(rng) < p; }

// ---- road geometry -----------------------------------------------------------

// Heading at arclength s: the curvature is kappa0 + rate * s, and the lane
// heads at -heading_err0 at s = 0 (the ego is heading_err0 to the left of it).
static double heading_at(const SynthScene *sc, double s) {
    return -sc->heading_err0 + sc->curvature0 * s + 0.5 * sc->curvature_rate * s * s;
}

static void road_build(SynthScene *sc) {
    SynthRoad *r = &sc->road;
    int i0 = (int)lroundf(-SYNTH_ROAD_S0 / SYNTH_ROAD_DS);   // the index of s = 0
    // The ego stands offset0 to the left of the centre line, so the centre
    // point at s = 0 is offset0 along the right-hand normal.
    double h0 = heading_at(sc, 0.0);
    r->x[i0] = (float)(sc->offset0 * sin(h0));
    r->y[i0] = (float)(-sc->offset0 * cos(h0));
    r->heading[i0] = (float)h0;
    // Integrate outwards with the midpoint heading (exact enough at 0.5 m steps).
    for (int i = i0 + 1; i < SYNTH_ROAD_N; i++) {
        double s = SYNTH_ROAD_S0 + i * SYNTH_ROAD_DS, hm = heading_at(sc, s - 0.5 * SYNTH_ROAD_DS);
        r->x[i] = r->x[i - 1] + (float)(SYNTH_ROAD_DS * cos(hm));
        r->y[i] = r->y[i - 1] + (float)(SYNTH_ROAD_DS * sin(hm));
        r->heading[i] = (float)heading_at(sc, s);
    }
    for (int i = i0 - 1; i >= 0; i--) {
        double s = SYNTH_ROAD_S0 + i * SYNTH_ROAD_DS, hm = heading_at(sc, s + 0.5 * SYNTH_ROAD_DS);
        r->x[i] = r->x[i + 1] - (float)(SYNTH_ROAD_DS * cos(hm));
        r->y[i] = r->y[i + 1] - (float)(SYNTH_ROAD_DS * sin(hm));
        r->heading[i] = (float)heading_at(sc, s);
    }
    for (int i = 0; i < SYNTH_ROAD_N; i++) {
        r->cos_h[i] = cosf(r->heading[i]);
        r->sin_h[i] = sinf(r->heading[i]);
    }
    // x grows with s while |heading| < pi/2, which the curvature bounds keep
    // true over the table; walk both in step.
    int j = 0;
    for (int k = 0; k < SYNTH_ROAD_XN; k++) {
        float x = SYNTH_ROAD_X0 + 0.5f * k;
        while (j + 1 < SYNTH_ROAD_N - 1 && r->x[j + 1] < x) j++;
        float dx = r->x[j + 1] - r->x[j];
        float f = dx > 1e-6f ? (x - r->x[j]) / dx : 0.0f;
        f = fminf(fmaxf(f, 0.0f), 1.0f);
        r->s_of_x[k] = SYNTH_ROAD_S0 + (j + f) * SYNTH_ROAD_DS;
    }
}

// Centre point, heading and the table position of arclength s (clamped to the table).
static void road_sample(const SynthRoad *r, float s, float *x, float *y, float *h) {
    float u = (s - SYNTH_ROAD_S0) / SYNTH_ROAD_DS;
    u = clampf(u, 0.0f, (float)(SYNTH_ROAD_N - 1) - 1e-3f);
    int i = (int)u;
    float f = u - (float)i;
    *x = r->x[i] + f * (r->x[i + 1] - r->x[i]);
    *y = r->y[i] + f * (r->y[i + 1] - r->y[i]);
    *h = r->heading[i] + f * (r->heading[i + 1] - r->heading[i]);
}

float synth_road_heading(const SynthRoad *road, float s) {
    float x, y, h;
    road_sample(road, s, &x, &y, &h);
    return h;
}

void synth_road_pose(const SynthRoad *road, float s, float l, float dl_ds, float *x, float *y, float *yaw) {
    float cx, cy, h;
    road_sample(road, s, &cx, &cy, &h);
    *x = cx - l * sinf(h);
    *y = cy + l * cosf(h);
    *yaw = h + atanf(dl_ds);
}

void synth_road_project(const SynthRoad *road, float x, float y, float *s, float *l) {
    float u = (x - SYNTH_ROAD_X0) / 0.5f;
    u = clampf(u, 0.0f, (float)(SYNTH_ROAD_XN - 1) - 1e-3f);
    int k = (int)u;
    float sv = road->s_of_x[k] + (u - (float)k) * (road->s_of_x[k + 1] - road->s_of_x[k]);
    // Newton steps onto the foot of the perpendicular, with the tabulated
    // cos/sin of the heading (this runs once per pixel).
    float cx = 0, cy = 0, ch = 1, sh = 0;
    for (int it = 0; it < 3; it++) {
        float t = (sv - SYNTH_ROAD_S0) / SYNTH_ROAD_DS;
        t = clampf(t, 0.0f, (float)(SYNTH_ROAD_N - 1) - 1e-3f);
        int i = (int)t;
        float f = t - (float)i;
        cx = road->x[i] + f * (road->x[i + 1] - road->x[i]);
        cy = road->y[i] + f * (road->y[i + 1] - road->y[i]);
        ch = road->cos_h[i] + f * (road->cos_h[i + 1] - road->cos_h[i]);
        sh = road->sin_h[i] + f * (road->sin_h[i + 1] - road->sin_h[i]);
        if (it < 2) sv = SYNTH_ROAD_S0 + t * SYNTH_ROAD_DS + (x - cx) * ch + (y - cy) * sh;
    }
    *s = sv;
    *l = -(x - cx) * sh + (y - cy) * ch;
}

// ---- scene -----------------------------------------------------------------

// The nearest stop line or crossing a driver at v0 can still stop for at a
// firm 4.5 m/s^2, plus room: hazards are placed no nearer than this.
static float nearest_stoppable(float v0) { return v0 * v0 / (2.0f * 4.5f) + 6.0f; }

// Stop lines and crossings lie at most this far (m) beyond the nearest
// stoppable distance: close enough to shape the 3 s plan, so that what the
// cameras show changes what the teacher does.
#define HAZARD_WINDOW 25.0f

void synth_scene_sample(SynthScene *sc, Rng *rng) {
    memset(sc, 0, sizeof *sc);
    // The ego and its recent past.
    sc->v0 = uniform(rng, 4.0f, 15.0f);
    sc->offset0 = 0.25f * rng_normal(rng);
    sc->offset0 = fminf(fmaxf(sc->offset0, -0.6f), 0.6f);
    sc->heading_err0 = fminf(fmaxf(0.02f * rng_normal(rng), -0.05f), 0.05f);
    sc->hist_accel = uniform(rng, -0.8f, 0.8f);
    sc->hist_wobble_amp = uniform(rng, 0.0f, 0.3f);
    sc->hist_wobble_phase = uniform(rng, 0.0f, 6.2831853f);
    sc->hist_lateral_curv = 0.002f * rng_normal(rng);
    // The road: straight or a gentle bend, the bend changing slowly.
    sc->curvature0 = chance(rng, 0.35f) ? 0.0f : uniform(rng, -0.006f, 0.006f);
    sc->curvature_rate = uniform(rng, -2e-5f, 2e-5f);
    road_build(sc);

    float near = nearest_stoppable(sc->v0);
    // An intersection with a traffic light.
    if (chance(rng, 0.5f)) {
        float c = rng_uniform(rng);
        sc->light = c < 0.4f ? SYNTH_LIGHT_RED : c < 0.6f ? SYNTH_LIGHT_YELLOW : SYNTH_LIGHT_GREEN;
        sc->line_s = uniform(rng, near, fminf(near + HAZARD_WINDOW, SYNTH_LIGHT_RANGE - 5.0f));
        sc->command = 2;
    }
    // A zebra crossing, away from the intersection.
    if (chance(rng, 0.3f)) {
        sc->cross_s = uniform(rng, near, fminf(near + HAZARD_WINDOW, 50.0f));
        if (!sc->light || fabsf(sc->cross_s - sc->line_s) > 16.0f) {
            sc->crossing = 1;
            sc->n_peds = chance(rng, 0.6f) ? 1 + (int)rng_below(rng, SYNTH_MAX_PEDS) : 0;
            for (int i = 0; i < sc->n_peds; i++) {
                sc->ped_l[i] = uniform(rng, -1.4f, 4.9f);
                sc->ped_v[i] = (chance(rng, 0.5f) ? 1.0f : -1.0f) * uniform(rng, 0.6f, 1.5f);
                sc->ped_color[i] = (int)rng_below(rng, 3);
            }
        }
    }
    // A lead vehicle in the ego lane.
    if (chance(rng, 0.5f)) {
        sc->lead = 1;
        float gap = uniform(rng, 6.0f, 40.0f);   // bumper to bumper, m
        sc->lead_s = SYNTH_EGO_HALF_LENGTH + gap + 0.5f * SYNTH_CAR_LENGTH;
        sc->lead_v = uniform(rng, fmaxf(0.0f, sc->v0 - 8.0f), sc->v0 + 1.0f);
        sc->lead_l = 0.2f * rng_normal(rng);
        sc->lead_color = (int)rng_below(rng, 4);
    }
    // Someone in the other lane, for the student to learn to ignore.
    if (chance(rng, 0.4f)) {
        sc->other = 1;
        sc->other_s = uniform(rng, -20.0f, 60.0f);
        sc->other_v = uniform(rng, 3.0f, 15.0f);
        sc->other_color = (int)rng_below(rng, 4);
    }
    sc->brightness = uniform(rng, 0.85f, 1.1f);
}

// ---- history -----------------------------------------------------------------

// Speed at time t <= 0 (s): the trend plus a ripple that is zero at t0.
static double hist_speed(const SynthScene *sc, double t) {
    double w = 2.0 * M_PI / 1.7;   // rad/s, one ripple per 1.7 s
    return sc->v0 + sc->hist_accel * t
         + sc->hist_wobble_amp * (sin(w * t + sc->hist_wobble_phase) - sin(sc->hist_wobble_phase));
}

// Antiderivative of hist_speed in t (m).
static double hist_speed_integral(const SynthScene *sc, double t) {
    double w = 2.0 * M_PI / 1.7, ph = sc->hist_wobble_phase;
    return sc->v0 * t + 0.5 * sc->hist_accel * t * t
         + sc->hist_wobble_amp * (-cos(w * t + ph) / w - t * sin(ph));
}

// Arclength at time t <= 0: minus the distance driven from t to 0.
static double hist_arclength(const SynthScene *sc, double t) {
    return hist_speed_integral(sc, t) - hist_speed_integral(sc, 0.0);
}

void synth_history(const SynthScene *sc, const SynthPreset *p, float *history) {
    float tan_err = tanf(sc->heading_err0);
    for (int i = 0; i < p->history; i++) {
        double t = -(double)(p->history - 1 - i) / p->hz;
        float s = (float)hist_arclength(sc, t);
        // The lateral offset bends gently into its value at t0.
        float l = sc->offset0 + tan_err * s + sc->hist_lateral_curv * s * s;
        float dl = tan_err + 2.0f * sc->hist_lateral_curv * s;
        float *row = history + 4 * i;   // (x, y, yaw, speed)
        synth_road_pose(&sc->road, s, l, dl, &row[0], &row[1], &row[2]);
        row[3] = (float)hist_speed(sc, t);
    }
    // The last row is t0 itself; the pose above is (0, 0, 0) up to rounding.
    float *last = history + 4 * (p->history - 1);
    last[0] = 0.0f; last[1] = 0.0f; last[2] = 0.0f; last[3] = sc->v0;
}
