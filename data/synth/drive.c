// drive.c: the IDM speed model, lateral settling, the driver and the teacher.
#include "data/synth/drive.h"
#include <math.h>
#include <float.h>
#include <stddef.h>

#define SUBSTEPS 5           // integration steps per trajectory step
#define MAX_DECEL 8.0f       // m/s^2, the hardest braking anyone does
#define STOP_S0 0.3f         // m, IDM standstill gap to a stop point

static float uniform(Rng *rng, float lo, float hi) { return lo + (hi - lo) * rng_uniform(rng); }

SynthStyle synth_teacher_style(void) {
    return (SynthStyle){
        .speed_gain = 1.0f, .accel = 1.5f, .comfort_decel = 2.5f, .time_gap = 1.4f,
        .min_gap = 2.0f, .stop_margin = 1.0f, .lane_bias = 0.0f, .lane_settle = 1.8f,
        .yellow_decel = 3.0f, .accel_noise = 0.0f, .lateral_noise = 0.0f,
    };
}

SynthStyle synth_driver_style(Rng *rng) {
    return (SynthStyle){
        .speed_gain = 1.0f + 0.04f * rng_normal(rng),
        .accel = uniform(rng, 1.2f, 2.0f),
        .comfort_decel = uniform(rng, 2.0f, 3.2f),
        .time_gap = uniform(rng, 1.0f, 1.8f),
        .min_gap = uniform(rng, 1.5f, 3.0f),
        .stop_margin = uniform(rng, 0.5f, 2.0f),
        .lane_bias = 0.15f * rng_normal(rng),
        .lane_settle = uniform(rng, 1.2f, 2.5f),
        .yellow_decel = uniform(rng, 2.5f, 3.8f),
        .accel_noise = 0.2f,
        .lateral_noise = 0.08f,
    };
}

// Arclength (ego centre) where the ego stops for the light / the crossing.
static float light_stop_s(const SynthScene *sc, const SynthStyle *st) {
    return sc->line_s - st->stop_margin - SYNTH_EGO_HALF_LENGTH;
}
static float crossing_stop_s(const SynthScene *sc, const SynthStyle *st) {
    return sc->cross_s - st->stop_margin - 0.5f - SYNTH_EGO_HALF_LENGTH;
}

int synth_stops_for_light(const SynthScene *sc, const SynthStyle *st) {
    if (sc->light == SYNTH_LIGHT_RED) return 1;
    if (sc->light != SYNTH_LIGHT_YELLOW) return 0;
    float room = light_stop_s(sc, st);
    return room >= sc->v0 * sc->v0 / (2.0f * st->yellow_decel);
}

// IDM interaction term (m/s^2, <= 0) for an obstacle `gap` metres ahead
// moving at speed w, when the ego moves at v.
static float idm_interaction(const SynthStyle *st, float v, float gap, float w, float s0) {
    float dyn = v * st->time_gap + v * (v - w) / (2.0f * sqrtf(st->accel * st->comfort_decel));
    float desired = s0 + fmaxf(0.0f, dyn);
    float r = desired / fmaxf(gap, 0.2f);
    return -st->accel * r * r;
}

// Lead vehicle gap (bumper to bumper, m) at time t when the ego centre is at s.
static float lead_gap(const SynthScene *sc, float s, float t) {
    return sc->lead_s + sc->lead_v * t - 0.5f * SYNTH_CAR_LENGTH - (s + SYNTH_EGO_HALF_LENGTH);
}

// Acceleration (m/s^2) at arclength s, speed v, time t, before noise.
static float idm_accel(const SynthScene *sc, const SynthStyle *st, int stop_light, float s, float v, float t) {
    float v_des = fmaxf(1.0f, st->speed_gain * sc->v0);
    float free_term = st->accel * (1.0f - powf(v / v_des, 4.0f));
    float worst = 0.0f;   // the most negative interaction
    if (stop_light) worst = fminf(worst, idm_interaction(st, v, light_stop_s(sc, st) - s, 0.0f, STOP_S0));
    if (sc->n_peds > 0) worst = fminf(worst, idm_interaction(st, v, crossing_stop_s(sc, st) - s, 0.0f, STOP_S0));
    if (sc->lead) worst = fminf(worst, idm_interaction(st, v, lead_gap(sc, s, t), sc->lead_v, st->min_gap));
    return free_term + worst;
}

// Lateral offset (m) and its slope dl/ds at arclength s >= 0: a critically
// damped return from (offset0, tan heading_err0) to lane_bias over length L.
static void lateral_settle(const SynthScene *sc, const SynthStyle *st, float s, float *l, float *dl) {
    float L = st->lane_settle * fmaxf(sc->v0, 3.0f);
    float e = sc->offset0 - st->lane_bias;
    float c = tanf(sc->heading_err0) + e / L;
    float decay = expf(-s / L);
    *l = st->lane_bias + (e + c * s) * decay;
    *dl = (c - (e + c * s) / L) * decay;
}

void synth_drive(const SynthScene *sc, const SynthPreset *p, const SynthStyle *st, int stop_light,
                 Rng *noise, float *path) {
    float dt = 1.0f / (p->hz * SUBSTEPS);
    float s = 0.0f, v = sc->v0, t = 0.0f, wobble = 0.0f;   // wobble: m/s^2, an Ornstein-Uhlenbeck process
    float stop_at = FLT_MAX;   // the arclength the ego may not pass
    if (stop_light) stop_at = fminf(stop_at, light_stop_s(sc, st));
    if (sc->n_peds > 0) stop_at = fminf(stop_at, crossing_stop_s(sc, st));
    float sway_amp = 0.0f, sway_phase = 0.0f;
    if (noise && st->lateral_noise > 0.0f) {
        sway_amp = st->lateral_noise * rng_normal(noise);
        sway_phase = 6.2831853f * rng_uniform(noise);
    }
    for (int i = 0; i < p->horizon; i++) {
        for (int k = 0; k < SUBSTEPS; k++) {
            float a = idm_accel(sc, st, stop_light, s, v, t);
            if (noise && st->accel_noise > 0.0f) {
                wobble += -wobble * dt + st->accel_noise * sqrtf(2.0f * dt) * rng_normal(noise);
                a += wobble;
            }
            a = fminf(fmaxf(a, -MAX_DECEL), st->accel + 0.5f);
            v = fmaxf(0.0f, v + a * dt);
            s += v * dt;
            t += dt;
            if (s >= stop_at) { s = fmaxf(stop_at, 0.0f); v = 0.0f; }
            if (sc->lead && lead_gap(sc, s, t) < 0.5f) {   // never closer than half a metre
                s = sc->lead_s + sc->lead_v * t - 0.5f * SYNTH_CAR_LENGTH - SYNTH_EGO_HALF_LENGTH - 0.5f;
                v = fminf(v, sc->lead_v);
            }
        }
        float l, dl;
        lateral_settle(sc, st, s, &l, &dl);
        // A slow sway over time (period 4 s), zero at t0.
        float w = 6.2831853f / 4.0f;
        l += sway_amp * (sinf(w * t + sway_phase) - sinf(sway_phase));
        dl += v > 0.5f ? sway_amp * w * cosf(w * t + sway_phase) / v : 0.0f;
        float *row = path + 3 * i;
        synth_road_pose(&sc->road, s, l, dl, &row[0], &row[1], &row[2]);
    }
}

SynthCause synth_teacher_cause(const SynthScene *sc) {
    SynthStyle st = synth_teacher_style();
    int stop_light = synth_stops_for_light(sc, &st);
    SynthCause cause = SYNTH_CAUSE_CLEAR;
    float worst = FLT_MAX;   // the strongest braking term among the hazards that apply
    if (stop_light) {
        worst = idm_interaction(&st, sc->v0, light_stop_s(sc, &st), 0.0f, STOP_S0);
        cause = sc->light == SYNTH_LIGHT_RED ? SYNTH_CAUSE_RED : SYNTH_CAUSE_YELLOW_STOP;
    }
    if (sc->n_peds > 0) {
        float term = idm_interaction(&st, sc->v0, crossing_stop_s(sc, &st), 0.0f, STOP_S0);
        if (term < worst) { worst = term; cause = SYNTH_CAUSE_PEDESTRIAN; }
    }
    if (sc->lead) {
        float gap = lead_gap(sc, 0.0f, 0.0f);
        float term = idm_interaction(&st, sc->v0, gap, sc->lead_v, st.min_gap);
        int close = term < -0.5f || gap < 12.0f;
        if (close && term < worst) return SYNTH_CAUSE_LEAD_CLOSE;
    }
    if (cause != SYNTH_CAUSE_CLEAR) return cause;
    if (sc->light == SYNTH_LIGHT_YELLOW) return SYNTH_CAUSE_YELLOW_GO;
    if (sc->light == SYNTH_LIGHT_GREEN) return SYNTH_CAUSE_GREEN;
    if (sc->lead && lead_gap(sc, 0.0f, 0.0f) < 40.0f) return SYNTH_CAUSE_LEAD_FOLLOW;
    return SYNTH_CAUSE_CLEAR;
}

void synth_teacher_plans(const SynthScene *sc, const SynthPreset *p, Rng *rng, float *trajectory, float *weight) {
    SynthStyle nominal = synth_teacher_style();
    // The teacher decides once; its samples vary how, not whether, it stops.
    int stop_light = synth_stops_for_light(sc, &nominal);
    float total = 0.0f;
    for (int k = 0; k < p->samples_k; k++) {
        SynthStyle st = nominal;
        float z2 = 0.0f;   // squared distance of this sample's style from the nominal one
        if (k > 0) {
            float z[5];
            for (int j = 0; j < 5; j++) { z[j] = rng_normal(rng); z2 += z[j] * z[j]; }
            st.speed_gain *= 1.0f + 0.03f * z[0];
            st.time_gap *= 1.0f + 0.12f * z[1];
            st.comfort_decel *= 1.0f + 0.15f * z[2];
            st.stop_margin = fmaxf(0.2f, st.stop_margin + 0.4f * z[3]);
            st.lane_bias = 0.12f * z[4];
        }
        synth_drive(sc, p, &st, stop_light, NULL, trajectory + (size_t)k * p->horizon * 3);
        weight[k] = expf(-0.25f * z2);
        total += weight[k];
    }
    for (int k = 0; k < p->samples_k; k++) weight[k] /= total;
}
