// export.c: `distil export CKPT_DIR --out DIR [--dtype fp32|fp16|bf16] [--onnx]`:
// a deployment bundle from a checkpoint (docs/export.md): model.safetensors
// in the chosen dtype, config.json, vocab.json and, with --onnx, model.onnx.
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/ckpt/bundle.h"     // defines: Bundle, bundle_open, bundle_student
#include "train/cmd/cli.h"
#include "train/formats/fsutil.h"     // defines: fs_mkdir_p
#include "train/formats/json_io.h"    // defines: json_pack, jsonio_write_file
#include "train/model/onnx_student.h"  // defines: onnx_export_student

#define ONNX_MIN_OPSET 17     // LayerNormalization

typedef struct ExportArgs {
    const char *ckpt, *out, *cameras;
    int dtype;                // EXPORT_* or -1: the recipe's export.dtype (fp32 without one)
    int onnx;                 // 1 --onnx, 0 the recipe's export.onnx
    int opset;                // 0: the recipe's export.opset (17 without one)
} ExportArgs;

static void usage(FILE *f) {
    fprintf(f, "usage: distil export CKPT_DIR --out DIR [--dtype fp32|fp16|bf16] [--onnx] [--opset N] [--cameras A,B,...]\n"
               "  Writes a deployment bundle: DIR/model.safetensors, DIR/config.json, DIR/vocab.json and, with\n"
               "  --onnx, DIR/model.onnx. Defaults come from the checkpoint recipe's export section. --cameras\n"
               "  names the cameras when the recipe does not and its shards are not reachable. See docs/export.md.\n");
}

static int parse_args(int argc, char **argv, ExportArgs *a) {
    memset(a, 0, sizeof *a);
    a->dtype = -1;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        int has_value = i + 1 < argc;
        if (!strcmp(arg, "--help") || !strcmp(arg, "-h")) { usage(stdout); exit(0); }
        else if (!strcmp(arg, "--onnx")) a->onnx = 1;
        else if (!strcmp(arg, "--out") && has_value) a->out = argv[++i];
        else if (!strcmp(arg, "--cameras") && has_value) a->cameras = argv[++i];
        else if (!strcmp(arg, "--dtype") && has_value) {
            const char *v = argv[++i];
            a->dtype = !strcmp(v, "fp32") ? EXPORT_FP32 : !strcmp(v, "fp16") ? EXPORT_FP16 : !strcmp(v, "bf16") ? EXPORT_BF16 : -2;
            if (a->dtype == -2) { fprintf(stderr, "distil: error: export: --dtype '%s': expected fp32, fp16 or bf16\n", v); return 2; }
        } else if (!strcmp(arg, "--opset") && has_value) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < ONNX_MIN_OPSET || v > 21) {
                fprintf(stderr, "distil: error: export: --opset '%s': expected %d..21 (LayerNormalization needs %d)\n", argv[i],
                        ONNX_MIN_OPSET, ONNX_MIN_OPSET);
                return 2;
            }
            a->opset = (int)v;
        } else if (arg[0] == '-') {
            fprintf(stderr, "distil: error: export: unknown option '%s' (or its value is missing); see distil export --help\n", arg);
            return 2;
        } else if (!a->ckpt) a->ckpt = arg;
        else { fprintf(stderr, "distil: error: export: one checkpoint only, got '%s' too\n", arg); return 2; }
    }
    if (!a->ckpt || !a->out) { usage(stderr); return 2; }
    return 0;
}


// --cameras A,B,... replaces the bundle's names; the count must match the model.
static int take_camera_flag(Bundle *b, const char *list) {
    for (int i = 0; i < b->n_cameras; i++) free(b->camera_names[i]);
    b->n_cameras = 0;
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (b->n_cameras == DL_MAX_CAMERAS) break;
        b->camera_names[b->n_cameras++] = strdup(tok);
    }
    if (b->n_cameras != b->mc.n_cams) {
        fprintf(stderr, "distil: error: export: --cameras names %d cameras, the model has %d; name each, in the training order\n",
                b->n_cameras, b->mc.n_cams);
        return 2;
    }
    return 0;
}

// config.json: everything a reimplementation or a runtime needs besides the
// weights (docs/export.md lists the keys). Every real in it is an fp32 value.
static int write_config(const char *path, const Bundle *b, const ModelConfig *mc, const char *dtype, int opset,
                        char *err, size_t errlen) {
    const float ego_scale[4] = { EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED };
    const float traj_scale[3] = { TRAJ_SCALE_X, TRAJ_SCALE_Y, TRAJ_SCALE_YAW };
    json_t *cameras = json_array();
    for (int i = 0; cameras && i < b->n_cameras; i++)
        if (json_array_append_new(cameras, json_string(b->camera_names[i]))) {
            snprintf(err, errlen, "%s: camera name \"%.100s\" is not valid UTF-8; pass --cameras", path, b->camera_names[i]);
            json_decref(cameras);
            return -1;
        }
    json_t *image = json_pack("{s:i, s:i, s:i, s:s, s:s, s:o, s:o, s:s}", "height", mc->img_h, "width", mc->img_w,
                              "channels", 3, "dtype", "uint8", "layout", "HWC RGB", "mean", jsonio_f32_array(mc->img_mean, 3),
                              "std", jsonio_f32_array(mc->img_std, 3), "normalisation", "(pixel / 255 - mean[c]) / std[c]");
    json_t *ego_history = json_pack("{s:i, s:[ssss], s:[ssss], s:o}", "steps", mc->hist, "columns", "x", "y", "yaw", "speed",
                                    "units", "m", "m", "rad", "m/s", "scale", jsonio_f32_array(ego_scale, 4));
    json_t *trajectory = json_pack("{s:i, s:o, s:s, s:[sss], s:[sss], s:s, s:o, s:o, s:o}", "horizon", mc->horizon,
                                   "hz", jsonio_real(mc->hz),
                                   "representation", mc->traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw",
                                   "columns", "x", "y", "yaw", "units", "m", "m", "rad", "frame", "ego at t0, x forward, y left",
                                   "output_scale", jsonio_f32_array(traj_scale, 3), "accel_scale", jsonio_real(ACCEL_SCALE),
                                   "curvature_scale", jsonio_real(CURVATURE_SCALE));
    json_t *onnx = opset ? json_pack("{s:s, s:i, s:s}", "file", "model.onnx", "opset", opset, "dtype", "fp32") : json_null();
    json_error_t jerr;
    json_t *doc = json_pack_ex(&jerr, 0, "{s:s, s:i, s:o, s:o, s:o, s:i, s:o, s:[ssss], s:o, s:{s:i, s:i, s:i}, s:i, s:s, s:o, s:{s:s, s:I}}",
                               "format", "distil-export", "format_version", atoi(BUNDLE_FORMAT_VERSION),
                               "model", model_config_object(mc), "cameras", cameras, "image", image, "frames", mc->frames,
                               "ego_history", ego_history, "commands", "follow", "left", "straight", "right",
                               "trajectory", trajectory,
                               "trace", "max_tokens", mc->max_trace, "vocab_size", b->vocab.size, "unk", b->vocab.unk,
                               "vocab_size", b->vocab.size, "dtype", dtype, "onnx", onnx,
                               "source", "checkpoint", b->dir, "step", (json_int_t)b->step);
    if (!doc) {   // the checkpoint's path is not UTF-8, or out of memory
        snprintf(err, errlen, "%s: cannot build its JSON: %s", path, jerr.text);
        return -1;
    }
    int rc = jsonio_write_file(path, doc, JSON_INDENT(2) | JSONIO_F32);
    if (rc) snprintf(err, errlen, "%s: cannot write: %s", path, strerror(errno));
    json_decref(doc);
    return rc;
}

static int write_weights(const char *path, const Bundle *b, const Graph *g, const ModelConfig *mc, StDtype dtype) {
    char *mc_json = model_config_to_json(mc), step[32], cameras[1024] = "", err[1024];
    snprintf(step, sizeof step, "%ld", b->step);
    for (int i = 0; i < b->n_cameras; i++)
        snprintf(cameras + strlen(cameras), sizeof cameras - strlen(cameras), "%s%s", i ? "," : "", b->camera_names[i]);
    StMeta meta[] = { { "format", "distil-export" }, { "format_version", BUNDLE_FORMAT_VERSION },
                      { "model_config", mc_json ? mc_json : "" }, { "step", step }, { "cameras", cameras } };
    int rc = st_save_graph_params(path, g, meta, 5, dtype, err, sizeof err);
    free(mc_json);
    if (rc) fprintf(stderr, "distil: error: %s\n", err);
    return rc ? 2 : 0;
}

static int export_bundle(Bundle *b, const ExportArgs *a) {
    const RecipeExport *re = b->has_recipe ? &b->recipe.export : NULL;
    int dtype = a->dtype >= 0 ? a->dtype : re ? (int)re->dtype : EXPORT_FP32;
    int onnx = a->onnx || (re && re->onnx);
    int opset = a->opset ? a->opset : re ? re->opset : ONNX_MIN_OPSET;
    if (onnx && opset < ONNX_MIN_OPSET) {
        fprintf(stderr, "distil: error: %s: export.opset %d in the checkpoint's recipe; the student's graph needs %d "
                "(LayerNormalization): pass --opset %d\n", b->dir, opset, ONNX_MIN_OPSET, ONNX_MIN_OPSET);
        return 2;
    }
    if (a->cameras && take_camera_flag(b, a->cameras)) return 2;
    if (!b->n_cameras) {
        fprintf(stderr, "distil: error: %s: the camera names are unknown (the recipe names no data.cameras and its data.train "
                "shards are not reachable from here); pass --cameras NAME,... in the shards' order\n", b->dir);
        return 2;
    }
    if (fs_mkdir_p(a->out)) { fprintf(stderr, "distil: error: %s: cannot create the directory: %s\n", a->out, strerror(errno)); return 2; }
    // Writing over the source would replace the checkpoint's weights.
    char src_real[PATH_MAX], out_real[PATH_MAX];
    if (realpath(b->dir, src_real) && realpath(a->out, out_real) && !strcmp(src_real, out_real)) {
        fprintf(stderr, "distil: error: %s: --out is the bundle being exported; export to another directory\n", a->out);
        return 2;
    }

    Graph *g = NULL;
    Student st;
    int rc = bundle_student(b, 1, &g, &st);
    ModelConfig mc = st.cfg;   // the feature head left out
    static const StDtype st_dtypes[] = { ST_F32, ST_F16, ST_BF16 };
    static const char *const names[] = { "fp32", "fp16", "bf16" };
    char path[1200], err[1600];
    if (!rc) {
        snprintf(path, sizeof path, "%s/model.safetensors", a->out);
        rc = write_weights(path, b, g, &mc, st_dtypes[dtype]);
    }
    // Read the weights back: checks the file, and gives the ONNX graph the
    // same (rounded) values, so that the bundle holds one model in two forms.
    if (!rc && st_load_graph_params(path, g, NULL, 0, 1, NULL, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s; the file just written does not read back (disk trouble?)\n", err);
        rc = 2;
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/config.json", a->out);
        if (write_config(path, b, &mc, names[dtype], onnx ? opset : 0, err, sizeof err)) {
            fprintf(stderr, "distil: error: %s\n", err);
            rc = 2;
        }
    }
    if (!rc) {
        snprintf(path, sizeof path, "%s/vocab.json", a->out);
        if (vocab_write_json(&b->vocab, path, err, sizeof err)) { fprintf(stderr, "distil: error: %s\n", err); rc = 2; }
    }
    snprintf(path, sizeof path, "%s/model.onnx", a->out);
    if (!rc && onnx && onnx_export_student(path, g, &mc, opset, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s\n", err);
        rc = 2;
    }
    // A model.onnx left by an earlier export would not match these weights.
    if (!rc && !onnx && unlink(path) == 0) printf("removed %s (from an earlier export; pass --onnx for a new one)\n", path);
    if (!rc)
        printf("exported %s (step %ld, %zu parameters, %s) to %s: model.safetensors, config.json, vocab.json%s\n", b->dir, b->step,
               graph_param_numel(g), names[dtype], a->out, onnx ? ", model.onnx" : "");
    if (g) graph_free(g);
    return rc;
}

int cmd_export(int argc, char **argv) {
    ExportArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc) return rc;
    Bundle b;
    if ((rc = bundle_open(&b, a.ckpt)) == 0) rc = export_bundle(&b, &a);
    bundle_close(&b);
    return rc;
}
