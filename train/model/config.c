// config.c: ModelConfig <-> JSON (see model.h).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "train/formats/json.h"    // defines: json_parse, json_get_*
#include "train/model/model.h"

char *model_config_to_json(const ModelConfig *c) {
    char *buf = malloc(2048);
    if (!buf) return NULL;
    snprintf(buf, 2048,
             "{\"dim\": %d, \"layers\": %d, \"heads\": %d, \"mlp_ratio\": %d, \"patch\": %d, "
             "\"n_cams\": %d, \"frames\": %d, \"img_h\": %d, \"img_w\": %d, \"hist\": %d, \"horizon\": %d, "
             "\"hz\": %.9g, \"traj_repr\": \"%s\", \"vocab\": %d, \"max_trace\": %d, \"feat_dim\": %d, "
             "\"img_mean\": [%.9g, %.9g, %.9g], \"img_std\": [%.9g, %.9g, %.9g], "
             "\"ego_scale\": [%.9g, %.9g, %.9g, %.9g], \"traj_scale\": [%.9g, %.9g, %.9g], "
             "\"accel_scale\": %.9g, \"curvature_scale\": %.9g, \"layernorm_eps\": 1e-05}",
             c->dim, c->layers, c->heads, c->mlp_ratio, c->patch, c->n_cams, c->frames, c->img_h, c->img_w, c->hist,
             c->horizon, c->hz, c->traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw", c->vocab,
             c->max_trace, c->feat_dim, c->img_mean[0], c->img_mean[1], c->img_mean[2], c->img_std[0], c->img_std[1],
             c->img_std[2], EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED, TRAJ_SCALE_X, TRAJ_SCALE_Y,
             TRAJ_SCALE_YAW, ACCEL_SCALE, CURVATURE_SCALE);
    return buf;
}

static int get_int(const Json *o, const char *key, int *out, char *err, size_t errlen) {
    int64_t v;
    if (json_get_int64(o, key, &v, err, errlen)) return -1;
    if (v < 0 || v > 1 << 24) { snprintf(err, errlen, "\"%s\" = %lld is out of range", key, (long long)v); return -1; }
    *out = (int)v;
    return 0;
}

static int get_float3(const Json *o, const char *key, float out[3], char *err, size_t errlen) {
    const Json *a = json_get(o, key);
    for (int i = 0; i < 3; i++) {
        double v;
        if (json_as_number(a ? json_index(a, i) : NULL, key, &v, err, errlen)) return -1;
        out[i] = (float)v;
    }
    return 0;
}

int model_config_from_json(const char *text, ModelConfig *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    Json *o = json_parse(text, strlen(text), err, errlen);
    if (!o) return -1;
    const char *repr = NULL;
    double hz = 0;
    int rc = get_int(o, "dim", &c->dim, err, errlen) || get_int(o, "layers", &c->layers, err, errlen) ||
             get_int(o, "heads", &c->heads, err, errlen) || get_int(o, "mlp_ratio", &c->mlp_ratio, err, errlen) ||
             get_int(o, "patch", &c->patch, err, errlen) || get_int(o, "n_cams", &c->n_cams, err, errlen) ||
             get_int(o, "frames", &c->frames, err, errlen) || get_int(o, "img_h", &c->img_h, err, errlen) ||
             get_int(o, "img_w", &c->img_w, err, errlen) || get_int(o, "hist", &c->hist, err, errlen) ||
             get_int(o, "horizon", &c->horizon, err, errlen) || get_int(o, "vocab", &c->vocab, err, errlen) ||
             get_int(o, "max_trace", &c->max_trace, err, errlen) || get_int(o, "feat_dim", &c->feat_dim, err, errlen) ||
             json_get_number(o, "hz", &hz, err, errlen) || json_get_string(o, "traj_repr", &repr, err, errlen) ||
             get_float3(o, "img_mean", c->img_mean, err, errlen) || get_float3(o, "img_std", c->img_std, err, errlen);
    if (!rc) {
        c->hz = (float)hz;
        if (!strcmp(repr, "xyyaw")) c->traj_repr = TRAJ_XYYAW;
        else if (!strcmp(repr, "accel_curvature")) c->traj_repr = TRAJ_ACCEL_CURVATURE;
        else { snprintf(err, errlen, "\"traj_repr\" is \"%s\", expected xyyaw or accel_curvature", repr); rc = 1; }
    }
    json_free(o);
    if (!rc && model_config_check(c)) { snprintf(err, errlen, "%s", model_config_check(c)); rc = 1; }
    return rc ? -1 : 0;
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
    return NULL;
}
