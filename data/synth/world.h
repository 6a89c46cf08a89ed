// world.h: the synthetic fleet's world: the presets (tensor sizes), one
// sample's scene (a curved two-lane road, a traffic light with its stop line,
// a zebra crossing with pedestrians, a lead vehicle, a vehicle in the other
// lane), the road geometry, and the ego history that led to t0.
//
// Frame: the ego frame at t0 (x forward, y left, metres, radians). The road is
// described by arclength s along the ego lane's centre line (s = 0 beside the
// ego at t0) and lateral offset l from it (left positive); the other lane is
// on the left, centred at l = SYNTH_LANE_WIDTH.
//
// The hazards are drawn independently of the ego history (as if the light had
// just changed and the pedestrian just stepped out): the history shows the
// speed, never whether the light ahead is red. Only the cameras show that.
#pragma once
#include <stdint.h>
#include "autograd/rng.h"   // defines: Rng

#define SYNTH_MAX_CAMERAS 4
#define SYNTH_MAX_PEDS 3
#define SYNTH_LANE_WIDTH 3.5f
#define SYNTH_EGO_HALF_LENGTH 2.3f   // m, ego centre to front bumper
#define SYNTH_CAR_LENGTH 4.6f        // m, every vehicle
#define SYNTH_CAR_WIDTH 1.9f
#define SYNTH_LIGHT_RANGE 60.0f      // m, the farthest stop line a scene holds

// Road geometry table: the ego lane's centre line sampled every SYNTH_ROAD_DS
// metres of arclength from SYNTH_ROAD_S0.
#define SYNTH_ROAD_S0 (-100.0f)
#define SYNTH_ROAD_DS 0.5f
#define SYNTH_ROAD_N 501
// x -> s lookup for projecting ground points onto the road, every 0.5 m of x.
#define SYNTH_ROAD_X0 (-90.0f)
#define SYNTH_ROAD_XN 361

typedef struct SynthPreset {
    const char *name;
    int n_cameras;
    const char *camera_names[SYNTH_MAX_CAMERAS];
    const char *cameras_attr;    // the root attribute: names joined by commas
    int frames, height, width;   // F, H, W of every camera
    float hz;                    // history and future step rate
    int history, horizon;        // Th, T steps
    int samples_k;               // K teacher trajectories
    int embed_dim;               // D
    int topk;                    // k
    int max_trace;               // most tokens in a trace, <bos> and <eos> included
    int vocab_size;              // V, the teacher's vocabulary
    int report;                  // 1: the long reports of data/synth/trace.h, 0: the demo's short traces
} SynthPreset;

// The preset named `name`, or NULL.
const SynthPreset *synth_preset_find(const char *name);
// "demo|urban4", for usage lines.
const char *synth_preset_names(void);

enum { SYNTH_LIGHT_NONE = 0, SYNTH_LIGHT_RED, SYNTH_LIGHT_YELLOW, SYNTH_LIGHT_GREEN };

typedef struct SynthRoad {
    float x[SYNTH_ROAD_N], y[SYNTH_ROAD_N];   // (n) centre line in the t0 frame, m
    float heading[SYNTH_ROAD_N];              // (n) rad, direction of travel
    float cos_h[SYNTH_ROAD_N], sin_h[SYNTH_ROAD_N];   // (n) of the heading, for the renderer's inner loop
    float s_of_x[SYNTH_ROAD_XN];              // arclength whose centre point has that x
} SynthRoad;

typedef struct SynthScene {
    SynthRoad road;
    float curvature0;        // 1/m at s = 0, left positive
    float curvature_rate;    // 1/m^2, change of curvature per metre of s
    // ego at t0
    float v0;                // m/s
    float offset0;           // m, lateral offset from the lane centre
    float heading_err0;      // rad, heading relative to the lane
    // ego history (drawn independently of everything below)
    float hist_accel;        // m/s^2, the speed trend over the history
    float hist_wobble_amp, hist_wobble_phase;   // m/s, rad: a small speed ripple
    float hist_lateral_curv; // 1/m, bend of the lateral offset over the history
    // traffic light at an intersection
    int light;               // SYNTH_LIGHT_*
    float line_s;            // m, arclength of the stop line
    // zebra crossing
    int crossing;
    float cross_s;           // m, near edge of the crossing
    int n_peds;              // pedestrians on the crossing, in the roadway
    float ped_l[SYNTH_MAX_PEDS], ped_v[SYNTH_MAX_PEDS];   // m at t0, m/s across the road
    int ped_color[SYNTH_MAX_PEDS];
    // lead vehicle in the ego lane
    int lead;
    float lead_s, lead_v, lead_l;   // centre arclength at t0 (m), speed (m/s), lateral (m)
    int lead_color;
    // a vehicle in the other lane, which changes nothing
    int other;
    float other_s, other_v;
    int other_color;
    float brightness;        // multiplies every lit-by-sun colour
    int command;             // 0 follow, 2 straight (through the intersection)
} SynthScene;

// Draw a scene. v0 and the history parameters are drawn first and the hazards
// after, from their own distributions.
void synth_scene_sample(SynthScene *sc, Rng *rng);

// Pose of the road point (s, l) whose lateral offset changes by dl_ds per metre:
// position (m) and yaw (rad) in the t0 frame.
void synth_road_pose(const SynthRoad *road, float s, float l, float dl_ds, float *x, float *y, float *yaw);
// Road coordinates (s, l) of the ground point (x, y) of the t0 frame.
void synth_road_project(const SynthRoad *road, float x, float y, float *s, float *l);
// Heading of the road (rad) at arclength s.
float synth_road_heading(const SynthRoad *road, float s);

// The ego history (Th, 4): (x, y, yaw, speed) at t0 - (Th-1-i)/hz, oldest
// first; the last row is exactly (0, 0, 0, v0).
void synth_history(const SynthScene *sc, const SynthPreset *p, float *history);
