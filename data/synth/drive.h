// drive.h: how the ego moves in the synthetic world. Speed follows the
// intelligent driver model (IDM) along the road: keep speed on a clear road,
// keep a time gap to the lead vehicle, stop before the line at a red light (or
// a yellow one there is room to stop for) and before a crossing a pedestrian
// is on. The lateral offset settles back to the lane centre. The logged human
// driver and the rule-based teacher are two styles of the same model, so the
// teacher plans close to, but not exactly like, what the driver did.
#pragma once
#include "autograd/rng.h"        // defines: Rng
#include "data/synth/world.h"    // defines: SynthScene, SynthPreset

typedef struct SynthStyle {
    float speed_gain;     // desired speed / v0 (1: keep speed)
    float accel;          // IDM maximum acceleration a, m/s^2
    float comfort_decel;  // IDM comfortable deceleration b, m/s^2
    float time_gap;       // IDM time headway T, s
    float min_gap;        // IDM standstill gap s0 to a vehicle, m
    float stop_margin;    // how far before a stop line the front bumper stops, m
    float lane_bias;      // lateral offset the driver settles at, m
    float lane_settle;    // s, time constant of settling back to the lane
    float yellow_decel;   // deceleration it is willing to use to stop at a yellow, m/s^2
    float accel_noise;    // m/s^2, std of the acceleration wobble (0: none)
    float lateral_noise;  // m, amplitude of a slow lateral sway (0: none)
} SynthStyle;

// What the teacher names as the reason for its plan, most pressing first.
typedef enum {
    SYNTH_CAUSE_CLEAR = 0,     // clear road, keep speed
    SYNTH_CAUSE_GREEN,         // green light, go through
    SYNTH_CAUSE_YELLOW_GO,     // yellow, too close to stop, go through
    SYNTH_CAUSE_LEAD_FOLLOW,   // a lead vehicle at a comfortable gap
    SYNTH_CAUSE_LEAD_CLOSE,    // a lead vehicle close: slow down
    SYNTH_CAUSE_YELLOW_STOP,   // yellow with room to stop
    SYNTH_CAUSE_RED,           // red light: stop before the line
    SYNTH_CAUSE_PEDESTRIAN,    // pedestrian on the crossing: yield
} SynthCause;

// The teacher's nominal style.
SynthStyle synth_teacher_style(void);
// A human driver's style: its own habits, and noise.
SynthStyle synth_driver_style(Rng *rng);

// Whether a driver of this style stops for the scene's light (always at red,
// never at green or without a light, at yellow when it has room).
int synth_stops_for_light(const SynthScene *sc, const SynthStyle *st);

// Drive the T-step future (T, 3): (x, y, yaw) at t0 + i/hz, i = 1..T.
// stop_light: whether to stop for the light. noise: the stream for the
// style's noise (NULL when accel_noise and lateral_noise are 0).
void synth_drive(const SynthScene *sc, const SynthPreset *p, const SynthStyle *st, int stop_light,
                 Rng *noise, float *path);

// The teacher's reason for its plan.
SynthCause synth_teacher_cause(const SynthScene *sc);

// The teacher's K plans (K, T, 3) around its nominal style, and their
// non-negative weights (K), summing to 1, highest for the nominal plan.
void synth_teacher_plans(const SynthScene *sc, const SynthPreset *p, Rng *rng, float *trajectory, float *weight);
