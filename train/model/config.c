// config.c: ModelConfig <-> JSON (see model.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include "train/formats/json_io.h"   // defines: json_pack, jsonio_get_*, jsonio_f32_array
#include "train/model/model.h"
#include "train/recipe/recipe.h"     // defines: recipe_keys, recipe_key_index (the ranges)

const char *model_attention_name(AttnMode mode) { return mode == ATTN_PREFIX ? "prefix" : "causal"; }

json_t *model_config_object(const ModelConfig *c) {
    const float ego_scale[4] = { EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED };
    const float traj_scale[3] = { TRAJ_SCALE_X, TRAJ_SCALE_Y, TRAJ_SCALE_YAW };
    return json_pack("{s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:o, s:s, s:i, s:i, s:i,"
                     " s:o, s:o, s:o, s:o, s:o, s:o, s:f, s:s}",
                     "dim", c->dim, "layers", c->layers, "heads", c->heads, "mlp_ratio", c->mlp_ratio, "patch", c->patch,
                     "n_cams", c->n_cams, "frames", c->frames, "img_h", c->img_h, "img_w", c->img_w, "hist", c->hist,
                     "horizon", c->horizon, "hz", jsonio_real(c->hz),
                     "traj_repr", c->traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw", "vocab", c->vocab,
                     "max_trace", c->max_trace, "feat_dim", c->feat_dim, "img_mean", jsonio_f32_array(c->img_mean, 3),
                     "img_std", jsonio_f32_array(c->img_std, 3), "ego_scale", jsonio_f32_array(ego_scale, 4),
                     "traj_scale", jsonio_f32_array(traj_scale, 3), "accel_scale", jsonio_real(ACCEL_SCALE),
                     "curvature_scale", jsonio_real(CURVATURE_SCALE), "layernorm_eps", 1e-5,
                     "attention", model_attention_name(c->attention));
}

char *model_config_to_json(const ModelConfig *c) {
    json_t *o = model_config_object(c);
    char *text = o ? json_dumps(o, JSONIO_F32) : NULL;
    json_decref(o);
    return text;
}

// The range of each field: the recipe key it comes from, whose range it
// takes, or (for what the shards fix) the one the drive-log reader allows.
typedef struct FieldRange {
    const char *key;          // in the JSON object
    const char *recipe_key;   // NULL: min and max below
    double min, max;
    int min_open;
} FieldRange;

static const FieldRange ranges[] = {
    { "dim", "model.dim", 0, 0, 0 },
    { "layers", "model.layers", 0, 0, 0 },
    { "heads", "model.heads", 0, 0, 0 },
    { "mlp_ratio", "model.mlp_ratio", 0, 0, 0 },
    { "patch", "model.patch", 0, 0, 0 },
    { "horizon", "model.horizon", 0, 0, 0 },
    { "frames", "data.history_frames", 0, 0, 0 },
    { "max_trace", "data.max_trace_tokens", 1, 0, 0 },   // at least 1: a student always has a trace slot
    { "img_mean", "model.image_mean", 0, 0, 0 },
    { "img_std", "model.image_std", 0, 0, 0 },
    { "n_cams", NULL, 1, 16, 0 },                        // DL_MAX_CAMERAS
    { "img_h", NULL, 1, 1 << 24, 0 },                    // a shard's H and W (data/drivelog.c)
    { "img_w", NULL, 1, 1 << 24, 0 },
    { "hist", NULL, 1, 1 << 24, 0 },                     // Th
    { "hz", NULL, 0, 1e6, 1 },
    { "vocab", NULL, 2, 1 << 24, 0 },
    { "feat_dim", NULL, 0, 1 << 24, 0 },                 // D of /teacher/embedding; 0: no feature head
};

// The range of field `key`: min, max, and whether min itself is out.
static void range_of(const char *key, double *min, double *max, int *min_open) {
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
        const FieldRange *f = &ranges[i];
        if (strcmp(f->key, key)) continue;
        *min = f->min;
        *max = f->max;
        *min_open = f->min_open;
        if (f->recipe_key) {
            int n, k = recipe_key_index(f->recipe_key);
            const RecipeKey *rk = &recipe_keys(&n)[k];
            if (rk->min > *min) *min = rk->min;   // a field's own min only ever tightens the key's
            *max = rk->max;
            *min_open = (rk->flags & RK_MIN_OPEN) != 0;
        }
        return;
    }
    *min = -INFINITY;
    *max = INFINITY;
    *min_open = 0;
}

static int in_range(const char *what, const char *key, double v, char *err, size_t errlen) {
    double min, max;
    int min_open;
    range_of(key, &min, &max, &min_open);
    if (isfinite(v) && (min_open ? v > min : v >= min) && v <= max) return 0;
    const FieldRange *f = NULL;
    for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++)
        if (!strcmp(ranges[i].key, key)) f = &ranges[i];
    snprintf(err, errlen, "%s = %.9g is out of range %s%.9g, %.9g]%s%s%s", what, v, min_open ? "(" : "[", min, max,
             f && f->recipe_key ? " (the range of " : "", f && f->recipe_key ? f->recipe_key : "", f && f->recipe_key ? ")" : "");
    return -1;
}

static int get_int(const json_t *o, const char *key, int *out, char *err, size_t errlen) {
    int64_t v;
    char what[64];
    snprintf(what, sizeof what, "\"%s\"", key);
    if (jsonio_get_int64(o, key, &v, err, errlen) || in_range(what, key, (double)v, err, errlen)) return -1;
    *out = (int)v;
    return 0;
}

static int get_float3(const json_t *o, const char *key, float out[3], char *err, size_t errlen) {
    const json_t *a = json_object_get(o, key);
    if (!json_is_array(a) || json_array_size(a) != 3) {
        snprintf(err, errlen, "\"%s\": expected an array of 3 numbers, found %s", key, jsonio_type(a));
        return -1;
    }
    for (int i = 0; i < 3; i++) {
        char what[64];
        double v;
        snprintf(what, sizeof what, "\"%s\"[%d]", key, i);
        if (jsonio_number(json_array_get(a, i), what, &v, err, errlen) || in_range(what, key, v, err, errlen)) return -1;
        out[i] = (float)v;
    }
    return 0;
}

int model_config_from_object(const json_t *o, ModelConfig *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (!json_is_object(o)) { snprintf(err, errlen, "expected an object, found %s", jsonio_type(o)); return -1; }
    const char *repr = NULL;
    double hz = 0;
    int rc = get_int(o, "dim", &c->dim, err, errlen) || get_int(o, "layers", &c->layers, err, errlen) ||
             get_int(o, "heads", &c->heads, err, errlen) || get_int(o, "mlp_ratio", &c->mlp_ratio, err, errlen) ||
             get_int(o, "patch", &c->patch, err, errlen) || get_int(o, "n_cams", &c->n_cams, err, errlen) ||
             get_int(o, "frames", &c->frames, err, errlen) || get_int(o, "img_h", &c->img_h, err, errlen) ||
             get_int(o, "img_w", &c->img_w, err, errlen) || get_int(o, "hist", &c->hist, err, errlen) ||
             get_int(o, "horizon", &c->horizon, err, errlen) || get_int(o, "vocab", &c->vocab, err, errlen) ||
             get_int(o, "max_trace", &c->max_trace, err, errlen) || get_int(o, "feat_dim", &c->feat_dim, err, errlen) ||
             jsonio_get_number(o, "hz", &hz, err, errlen) || in_range("\"hz\"", "hz", hz, err, errlen) ||
             jsonio_get_string(o, "traj_repr", &repr, err, errlen) ||
             get_float3(o, "img_mean", c->img_mean, err, errlen) || get_float3(o, "img_std", c->img_std, err, errlen);
    if (rc) return -1;
    c->hz = (float)hz;
    if (!strcmp(repr, "xyyaw")) c->traj_repr = TRAJ_XYYAW;
    else if (!strcmp(repr, "accel_curvature")) c->traj_repr = TRAJ_ACCEL_CURVATURE;
    else { snprintf(err, errlen, "\"traj_repr\" is \"%s\", expected xyyaw or accel_curvature", repr); return -1; }
    // "attention" came with the prefix mask; a config written before it is
    // a causal student.
    const char *attention = "causal";
    if (json_object_get(o, "attention") && jsonio_get_string(o, "attention", &attention, err, errlen)) return -1;
    if (!strcmp(attention, "prefix")) c->attention = ATTN_PREFIX;
    else if (!strcmp(attention, "causal")) c->attention = ATTN_CAUSAL;
    else { snprintf(err, errlen, "\"attention\" is \"%s\", expected prefix or causal", attention); return -1; }
    const char *bad = model_config_check(c);
    if (bad) { snprintf(err, errlen, "%s", bad); return -1; }
    return 0;
}

int model_config_from_json(const char *text, ModelConfig *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    json_t *o = jsonio_parse(text, strlen(text), err, errlen);
    if (!o) return -1;
    int rc = model_config_from_object(o, c, err, errlen);
    json_decref(o);
    return rc;
}

const char *model_config_diff(const ModelConfig *a, const ModelConfig *b) {
    static char msg[256];
    struct { const char *name; int x, y; } f[] = {
        { "model.dim", a->dim, b->dim }, { "model.layers", a->layers, b->layers }, { "model.heads", a->heads, b->heads },
        { "model.mlp_ratio", a->mlp_ratio, b->mlp_ratio }, { "model.patch", a->patch, b->patch },
        { "cameras", a->n_cams, b->n_cams }, { "data.history_frames", a->frames, b->frames },
        { "image height", a->img_h, b->img_h }, { "image width", a->img_w, b->img_w },
        { "history steps", a->hist, b->hist }, { "model.horizon", a->horizon, b->horizon },
        { "model.traj_repr", a->traj_repr, b->traj_repr }, { "vocabulary size", a->vocab, b->vocab },
        { "data.max_trace_tokens", a->max_trace, b->max_trace }, { "feature head width", a->feat_dim, b->feat_dim },
    };
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
        if (f[i].x != f[i].y) {
            snprintf(msg, sizeof msg, "%s is %d in the checkpoint and %d here", f[i].name, f[i].x, f[i].y);
            return msg;
        }
    // Not a parameter, but the same weights under another mask are another model.
    if (a->attention != b->attention) {
        snprintf(msg, sizeof msg, "model.attention is %s in the checkpoint and %s here (--set model.attention=%s keeps it)",
                 model_attention_name(a->attention), model_attention_name(b->attention), model_attention_name(a->attention));
        return msg;
    }
    return NULL;
}
