// render.h: draw a scene into a camera's frames.
//
// The projection is a top-down-forward view with an oblique lift: a row is a
// ground distance from the camera (linear, so a lead vehicle's distance reads
// straight off its row), a column a lateral offset, and something h metres
// tall is drawn lifted away from the camera by 0.6 h, like a high camera
// looking down and ahead. Objects have a minimum size in pixels, so a traffic
// light's colour, a pedestrian and a vehicle stay visible at 32x64.
// Emissive lamp colours are pure (no other surface comes near them).
#pragma once
#include <stdint.h>
#include "data/synth/world.h"   // defines: SynthScene, SynthPreset

// Render camera `cam` of the preset: F frames (F, H, W, 3) RGB, oldest first.
// Frame f is seen from the ego pose of history row round(f (Th-1) / (F-1))
// (the last frame from t0). history: (Th, 4) as synth_history wrote it.
void synth_render_camera(const SynthScene *sc, const SynthPreset *p, const float *history, int cam,
                         uint8_t *frames);

// The history row frame f is seen from.
int synth_frame_row(const SynthPreset *p, int f);

// Camera geometry by name: yaw relative to the ego (rad) and the ground it
// covers: rows from near to far (m), columns over +-half_width (m).
typedef struct SynthCamera {
    float yaw, near, far, half_width;
} SynthCamera;
SynthCamera synth_camera(const char *name);

// Colours the tests read back from the pixels.
#define SYNTH_RGB_RED_LAMP    255, 30, 20
#define SYNTH_RGB_YELLOW_LAMP 255, 210, 0
#define SYNTH_RGB_GREEN_LAMP  30, 230, 80
