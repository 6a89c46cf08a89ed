// render.c: ground shading per pixel, then objects far to near.
#include "data/synth/render.h"
#include <math.h>
#include <string.h>

#define LIFT 0.6f            // m of image distance per metre of height (the oblique view)
#define MAX_OBJECTS 16

// Road layout across l (m): ego lane [-1.75, 1.75], other lane [1.75, 5.25].
#define ROAD_RIGHT (-0.5f * SYNTH_LANE_WIDTH)
#define ROAD_LEFT (1.5f * SYNTH_LANE_WIDTH)
#define SIDEWALK 2.5f        // m of pavement beside the road
#define CROSSING_DEPTH 3.0f  // m along the road
#define CROSS_ROAD_WIDTH 10.0f

SynthCamera synth_camera(const char *name) {
    if (!strcmp(name, "rear")) return (SynthCamera){ 3.14159265f, 3.0f, 51.0f, 16.0f };
    if (!strcmp(name, "left")) return (SynthCamera){ 1.5707963f, 1.5f, 25.5f, 32.0f };
    if (!strcmp(name, "right")) return (SynthCamera){ -1.5707963f, 1.5f, 25.5f, 32.0f };
    return (SynthCamera){ 0.0f, 3.0f, 67.0f, 16.0f };   // front, and any other name
}

int synth_frame_row(const SynthPreset *p, int f) {
    if (p->frames <= 1) return p->history - 1;
    return (int)lroundf((float)f * (float)(p->history - 1) / (float)(p->frames - 1));
}

// ---- colours -----------------------------------------------------------------

typedef struct { float r, g, b; } Rgb;

static const Rgb GRASS = { 72, 112, 58 }, PAVEMENT = { 150, 148, 140 }, ASPHALT = { 88, 88, 92 },
                 MARKING = { 225, 225, 215 }, POLE = { 105, 105, 110 }, HOUSING = { 22, 22, 24 },
                 SKIN = { 230, 190, 150 };
static const Rgb CAR_COLORS[4] = { { 40, 70, 190 }, { 165, 168, 175 }, { 38, 38, 44 }, { 110, 50, 150 } };
static const Rgb SHIRT_COLORS[3] = { { 210, 40, 190 }, { 30, 190, 210 }, { 240, 130, 30 } };
static const Rgb LAMP_COLORS[4] = { { 0, 0, 0 }, { SYNTH_RGB_RED_LAMP }, { SYNTH_RGB_YELLOW_LAMP }, { SYNTH_RGB_GREEN_LAMP } };

// A fixed speckle of the ground in [-1, 1] per 0.5 m cell, so the texture
// moves with the world between frames.
static float speckle(float gx, float gy) {
    uint32_t ix = (uint32_t)(int32_t)floorf(gx * 2.0f), iy = (uint32_t)(int32_t)floorf(gy * 2.0f);
    uint32_t h = ix * 73856093u ^ iy * 19349663u;
    h ^= h >> 13; h *= 0x5bd1e995u; h ^= h >> 15;
    return (float)(h & 0xffu) / 127.5f - 1.0f;
}

// Round to the nearest 8-bit value (inline: this runs three times per pixel).
static inline uint8_t to_u8(float v) { return v <= 0.0f ? 0 : v >= 255.0f ? 255 : (uint8_t)(v + 0.5f); }

static void put(uint8_t *px, Rgb c, float scale) {
    px[0] = to_u8(c.r * scale);
    px[1] = to_u8(c.g * scale);
    px[2] = to_u8(c.b * scale);
}

// ---- ground ------------------------------------------------------------------

// Half-widths (m) that keep thin markings at least one pixel wide: across the
// road (hw_l) and along it (hw_s).
typedef struct { float hw_l, hw_s; } LineWidths;

static Rgb ground_color(const SynthScene *sc, float s, float l, LineWidths lw, float *texture_gain) {
    int in_junction = sc->light && s > sc->line_s + 1.5f && s < sc->line_s + 1.5f + CROSS_ROAD_WIDTH;
    *texture_gain = 4.0f;
    if (in_junction) return ASPHALT;   // the cross road, unmarked
    if (l >= ROAD_RIGHT && l <= ROAD_LEFT) {
        float edge = 0.15f;   // m, edge lines sit just inside the road
        if (fabsf(l - (ROAD_RIGHT + edge)) < lw.hw_l || fabsf(l - (ROAD_LEFT - edge)) < lw.hw_l) return MARKING;
        if (fabsf(l - 0.5f * SYNTH_LANE_WIDTH) < lw.hw_l && fmodf(s + 900.0f, 9.0f) < 3.5f) return MARKING;
        if (sc->light && fabsf(s - sc->line_s) < lw.hw_s) return MARKING;
        if (sc->crossing && s > sc->cross_s - lw.hw_s && s < sc->cross_s + CROSSING_DEPTH &&
            fmodf(l + 30.0f, 1.2f) < 0.6f) return MARKING;
        return ASPHALT;
    }
    if (l > ROAD_RIGHT - SIDEWALK && l < ROAD_LEFT + SIDEWALK) { *texture_gain = 3.0f; return PAVEMENT; }
    *texture_gain = 10.0f;
    return GRASS;
}

// ---- objects -----------------------------------------------------------------

typedef struct {
    float x, y, heading;         // ground centre (t0 frame, m) and heading (rad)
    float half_len, half_wid;    // m, footprint half extents along / across the heading
    float z_lo, z_hi;            // m, the height span drawn
    int min_rows, min_cols;      // pixels, the least it is drawn as
    Rgb color;
    int emissive;                // lamps ignore the scene's brightness
    int kind;                    // OBJ_*
    float anchor_x, anchor_y;    // the point whose camera distance orders the drawing;
                                 // the parts of one traffic light share the pole's, so
                                 // they draw in the order they were added
    float depth;                 // camera distance of the anchor
} Object;

enum { OBJ_BOX, OBJ_CAR, OBJ_PERSON };

typedef struct {
    Object items[MAX_OBJECTS];
    int n;
} ObjectList;

static Object *add_object(ObjectList *list, const SynthScene *sc, float s, float l, float half_len, float half_wid,
                          float z_lo, float z_hi, Rgb color, int kind) {
    if (list->n == MAX_OBJECTS) return NULL;
    Object *o = &list->items[list->n++];
    float yaw;
    synth_road_pose(&sc->road, s, l, 0.0f, &o->x, &o->y, &yaw);
    *o = (Object){ .x = o->x, .y = o->y, .heading = yaw, .half_len = half_len, .half_wid = half_wid,
                   .z_lo = z_lo, .z_hi = z_hi, .min_rows = 1, .min_cols = 1, .color = color, .kind = kind,
                   .anchor_x = o->x, .anchor_y = o->y };
    return o;
}

// Everything standing in the scene at time t (s, <= 0).
static void scene_objects(const SynthScene *sc, float t, ObjectList *list) {
    list->n = 0;
    if (sc->lead) {
        Object *o = add_object(list, sc, sc->lead_s + sc->lead_v * t, sc->lead_l, 0.5f * SYNTH_CAR_LENGTH,
                               0.5f * SYNTH_CAR_WIDTH, 0.0f, 1.5f, CAR_COLORS[sc->lead_color], OBJ_CAR);
        if (o) { o->min_rows = 2; o->min_cols = 2; }
    }
    if (sc->other) {
        Object *o = add_object(list, sc, sc->other_s + sc->other_v * t, SYNTH_LANE_WIDTH, 0.5f * SYNTH_CAR_LENGTH,
                               0.5f * SYNTH_CAR_WIDTH, 0.0f, 1.5f, CAR_COLORS[sc->other_color], OBJ_CAR);
        if (o) { o->min_rows = 2; o->min_cols = 2; }
    }
    for (int i = 0; i < sc->n_peds; i++) {
        Object *o = add_object(list, sc, sc->cross_s + 0.5f * CROSSING_DEPTH, sc->ped_l[i] + sc->ped_v[i] * t,
                               0.25f, 0.25f, 0.0f, 1.7f, SHIRT_COLORS[sc->ped_color[i]], OBJ_PERSON);
        if (o) { o->min_rows = 2; o->min_cols = 2; }
    }
    if (sc->light) {
        // A pole at the right kerb, an arm over the road, a head on each.
        float s = sc->line_s + 1.0f, pole_l = ROAD_RIGHT - 0.8f;
        Rgb lamp = LAMP_COLORS[sc->light];
        int first = list->n;
        add_object(list, sc, s, pole_l, 0.12f, 0.12f, 0.0f, 5.2f, POLE, OBJ_BOX);
        add_object(list, sc, s, 0.5f * (pole_l + 0.4f), 0.08f, 0.5f * (0.4f - pole_l), 5.9f, 6.1f, POLE, OBJ_BOX);
        const float head_l[2] = { pole_l, 0.0f }, head_z[2] = { 3.8f, 5.0f };
        for (int h = 0; h < 2; h++) {
            // A dark housing a little larger than the lamp; at low resolution
            // the lamp's minimum size covers it.
            add_object(list, sc, s, head_l[h], 0.25f, 0.35f, head_z[h] - 0.1f, head_z[h] + 0.9f, HOUSING, OBJ_BOX);
            Object *o = add_object(list, sc, s, head_l[h], 0.2f, 0.25f, head_z[h], head_z[h] + 0.8f, lamp, OBJ_BOX);
            if (o) { o->emissive = 1; o->min_rows = 3; o->min_cols = 4; }
        }
        for (int i = first + 1; i < list->n; i++) {
            list->items[i].anchor_x = list->items[first].x;
            list->items[i].anchor_y = list->items[first].y;
        }
    }
}

// The pixel span [*lo, *hi) of the continuous span [a, b] (pixel units), at
// least `min` pixels, centred on it when widened, clipped to [0, n).
static int pixel_span(float a, float b, int min, int n, int *lo, int *hi) {
    int i0 = (int)floorf(a + 0.5f), i1 = (int)floorf(b + 0.5f);   // pixels whose centres lie inside
    if (i1 - i0 < min) {
        int centre = (int)floorf(0.5f * (a + b));
        i0 = centre - (min - 1) / 2;
        i1 = i0 + min;
    }
    *lo = i0 < 0 ? 0 : i0;
    *hi = i1 > n ? n : i1;
    return *hi > *lo;
}

typedef struct {
    float ex, ey, cos_y, sin_y;   // camera position (t0 frame, m) and heading
    float yaw;                    // rad, camera heading in the t0 frame
    float near, du, dv;           // m: ground at the bottom row, per row, per column
    int H, W;
} View;

static void draw_object(const View *vw, const Object *o, float brightness, uint8_t *img) {
    float dx = o->x - vw->ex, dy = o->y - vw->ey;
    float u = dx * vw->cos_y + dy * vw->sin_y, v = -dx * vw->sin_y + dy * vw->cos_y;
    float rel = o->heading - vw->yaw;
    float eu = fabsf(cosf(rel)) * o->half_len + fabsf(sinf(rel)) * o->half_wid;
    float ev = fabsf(sinf(rel)) * o->half_len + fabsf(cosf(rel)) * o->half_wid;
    float u_lo = u - eu + LIFT * o->z_lo, u_hi = u + eu + LIFT * o->z_hi;
    // Rows grow towards the camera; columns grow to the right (v decreasing).
    float row_a = vw->H - (u_hi - vw->near) / vw->du, row_b = vw->H - (u_lo - vw->near) / vw->du;
    float col_a = 0.5f * vw->W - (v + ev) / vw->dv, col_b = 0.5f * vw->W - (v - ev) / vw->dv;
    int r0, r1, c0, c1;
    if (!pixel_span(row_a, row_b, o->min_rows, vw->H, &r0, &r1)) return;
    if (!pixel_span(col_a, col_b, o->min_cols, vw->W, &c0, &c1)) return;
    float scale = o->emissive ? 1.0f : brightness;
    for (int r = r0; r < r1; r++) {
        Rgb c = o->color;
        float shade = scale;
        if (o->kind == OBJ_CAR && r1 - r0 >= 3 && r < r0 + (r1 - r0) / 3) shade *= 0.8f;   // the roof
        if (o->kind == OBJ_PERSON && r1 - r0 >= 3 && r == r0) c = SKIN;                     // the head
        for (int col = c0; col < c1; col++) put(img + 3 * ((size_t)r * vw->W + col), c, shade);
    }
}

static int by_depth_far_first(const Object *a, const Object *b) {
    return a->depth > b->depth ? -1 : a->depth < b->depth ? 1 : 0;
}

// Insertion sort: a handful of objects, and it is stable.
static void sort_objects(ObjectList *list) {
    for (int i = 1; i < list->n; i++) {
        Object key = list->items[i];
        int j = i - 1;
        while (j >= 0 && by_depth_far_first(&list->items[j], &key) > 0) { list->items[j + 1] = list->items[j]; j--; }
        list->items[j + 1] = key;
    }
}

static void render_frame(const SynthScene *sc, const SynthPreset *p, const SynthCamera *cam,
                         const float *pose, float t, uint8_t *img) {
    View vw = { .ex = pose[0], .ey = pose[1], .yaw = pose[2] + cam->yaw, .near = cam->near,
                .du = (cam->far - cam->near) / p->height, .dv = 2.0f * cam->half_width / p->width,
                .H = p->height, .W = p->width };
    vw.cos_y = cosf(vw.yaw);
    vw.sin_y = sinf(vw.yaw);
    // Which pixel size lies across the road and which along it depends on
    // where the camera looks.
    float along = fabsf(cosf(cam->yaw)), across = fabsf(sinf(cam->yaw));
    LineWidths lw = { .hw_l = fmaxf(0.12f, 0.5f * (along * vw.dv + across * vw.du)),
                      .hw_s = fmaxf(0.3f, 0.5f * (along * vw.du + across * vw.dv)) };
    for (int r = 0; r < vw.H; r++) {
        float u = vw.near + (vw.H - r - 0.5f) * vw.du;
        for (int c = 0; c < vw.W; c++) {
            float v = (0.5f * vw.W - c - 0.5f) * vw.dv;
            float gx = vw.ex + u * vw.cos_y - v * vw.sin_y, gy = vw.ey + u * vw.sin_y + v * vw.cos_y;
            float s, l, gain;
            synth_road_project(&sc->road, gx, gy, &s, &l);
            Rgb base = ground_color(sc, s, l, lw, &gain);
            float g = gain * speckle(gx, gy);
            Rgb tex = { base.r + g, base.g + g, base.b + g };
            put(img + 3 * ((size_t)r * vw.W + c), tex, sc->brightness);
        }
    }
    ObjectList list;
    scene_objects(sc, t, &list);
    for (int i = 0; i < list.n; i++) {
        Object *o = &list.items[i];
        o->depth = (o->anchor_x - vw.ex) * vw.cos_y + (o->anchor_y - vw.ey) * vw.sin_y;
    }
    sort_objects(&list);
    for (int i = 0; i < list.n; i++) draw_object(&vw, &list.items[i], sc->brightness, img);
}

void synth_render_camera(const SynthScene *sc, const SynthPreset *p, const float *history, int cam,
                         uint8_t *frames) {
    SynthCamera camera = synth_camera(p->camera_names[cam]);
    size_t frame_bytes = (size_t)p->height * p->width * 3;
    for (int f = 0; f < p->frames; f++) {
        int row = synth_frame_row(p, f);
        float t = -(float)(p->history - 1 - row) / p->hz;
        render_frame(sc, p, &camera, history + 4 * row, t, frames + f * frame_bytes);
    }
}
