// bundle.c: reading a checkpoint or an export back (see bundle.h).
#include "train/ckpt/bundle.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "train/ckpt/checkpoint.h" // defines: checkpoint_open (the checksums of state.bin)
#include "train/formats/json_io.h"    // defines: jsonio_load, jsonio_string

#define CONFIG_JSON_MAX_BYTES (16u << 20)

static int fail(const char *fmt, const char *a, const char *b) {
    fputs("distil: error: ", stderr);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

static int is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *xstrdup(const char *s) {
    char *d = malloc(strlen(s) + 1);
    if (d) strcpy(d, s);
    return d;
}

static void set_cameras(Bundle *b, const RecipeList *names) {
    for (int i = 0; i < names->n && i < DL_MAX_CAMERAS; i++) b->camera_names[i] = xstrdup(names->items[i]);
    b->n_cameras = names->n < DL_MAX_CAMERAS ? names->n : DL_MAX_CAMERAS;
}

// obj["a"]["b"]... for the dotted path "a.b" (NULL when any step is missing).
static const json_t *at_path(const json_t *obj, const char *path) {
    char key[64];
    for (const char *p = path; obj;) {
        size_t n = strcspn(p, ".");
        snprintf(key, sizeof key, "%.*s", (int)n, p);
        obj = json_object_get(obj, key);
        if (!p[n]) break;
        p += n + 1;
    }
    return obj;
}

// The parts of config.json that restate the "model" object for deployment
// code (docs/export.md) must restate it exactly: a consumer may read either.
static int check_restated(const json_t *o, const ModelConfig *mc, int vocab_unk_max, char *err, size_t errlen) {
    const char *repr = mc->traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw";
    struct { const char *path; double want; } numbers[] = {
        { "frames", mc->frames }, { "image.height", mc->img_h }, { "image.width", mc->img_w }, { "image.channels", 3 },
        { "image.mean.0", mc->img_mean[0] }, { "image.mean.1", mc->img_mean[1] }, { "image.mean.2", mc->img_mean[2] },
        { "image.std.0", mc->img_std[0] }, { "image.std.1", mc->img_std[1] }, { "image.std.2", mc->img_std[2] },
        { "ego_history.steps", mc->hist }, { "trajectory.horizon", mc->horizon }, { "trajectory.hz", mc->hz },
        { "trace.max_tokens", mc->max_trace }, { "trace.vocab_size", mc->vocab }, { "vocab_size", mc->vocab },
    };
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        char path[64];
        snprintf(path, sizeof path, "%s", numbers[i].path);
        const json_t *v;
        char *dot = strrchr(path, '.');
        if (dot && dot[1] >= '0' && dot[1] <= '9') {   // an array element
            *dot = 0;
            v = json_array_get(at_path(o, path), (size_t)atoi(dot + 1));
            *dot = '.';
        } else {
            v = at_path(o, path);
        }
        double x;
        if (jsonio_number(v, path, &x, err, errlen)) return -1;
        if ((float)x != (float)numbers[i].want) {
            snprintf(err, errlen, "\"%s\" is %.9g, but \"model\" says %.9g", path, x, numbers[i].want);
            return -1;
        }
    }
    const char *str;
    if (jsonio_string(at_path(o, "trajectory.representation"), "\"trajectory.representation\"", &str, err, errlen)) return -1;
    if (strcmp(str, repr)) { snprintf(err, errlen, "\"trajectory.representation\" is \"%s\", but \"model\" says \"%s\"", str, repr); return -1; }
    if (jsonio_string(json_object_get(o, "dtype"), "\"dtype\"", &str, err, errlen)) return -1;
    if (strcmp(str, "fp32") && strcmp(str, "fp16") && strcmp(str, "bf16")) {
        snprintf(err, errlen, "\"dtype\" is \"%s\", expected fp32, fp16 or bf16", str);
        return -1;
    }
    int64_t unk;
    if (jsonio_int64(at_path(o, "trace.unk"), "\"trace.unk\"", &unk, err, errlen)) return -1;
    if (unk < -1 || unk >= vocab_unk_max) { snprintf(err, errlen, "\"trace.unk\" = %lld is not a token id of the vocabulary", (long long)unk); return -1; }
    return 0;
}

// config.json's "format" and "format_version": an export's, of the version this distil reads.
static int check_config_format(const json_t *o, const char *path) {
    const char *format = NULL;
    int64_t version = 0;
    char err[256];
    if (jsonio_get_string(o, "format", &format, err, sizeof err) || strcmp(format, "distil-export"))
        return fail("%s: %s; not a distil export's config.json (docs/export.md)", path,
                    format ? "\"format\" is not \"distil-export\"" : err);
    if (jsonio_get_int64(o, "format_version", &version, err, sizeof err)) return fail("%s: %s; re-run distil export to rewrite the bundle", path, err);
    if (version != atoi(BUNDLE_FORMAT_VERSION)) {
        fprintf(stderr, "distil: error: %s: format_version %lld; this distil reads version %s; use the distil that wrote it\n",
                path, (long long)version, BUNDLE_FORMAT_VERSION);
        return 2;
    }
    return 0;
}

// An export's config.json: its format, the architecture (every field in
// range, docs/export.md), what restates it, and the camera names.
static int read_config_json(Bundle *b, const char *path) {
    char err[512];
    json_t *o = jsonio_load(path, CONFIG_JSON_MAX_BYTES, err, sizeof err);
    if (!o) return fail("%s: %s; re-run distil export to rewrite the bundle", path, err);
    const json_t *model = json_object_get(o, "model"), *cams = json_object_get(o, "cameras");
    int rc = check_config_format(o, path);
    if (rc) {
    } else if (!json_is_object(model) || !json_is_array(cams))
        rc = fail("%s: %s; re-run distil export to rewrite the bundle", path,
                  "no \"model\" object or \"cameras\" list (docs/export.md lists config.json's keys)");
    else if (model_config_from_object(model, &b->mc, err, sizeof err))
        rc = fail("%s: \"model\": %s; re-run distil export to rewrite the bundle", path, err);
    else if (check_restated(o, &b->mc, b->mc.vocab, err, sizeof err))
        rc = fail("%s: %s; re-run distil export to rewrite the bundle", path, err);
    for (size_t i = 0; !rc && i < json_array_size(cams); i++) {
        const char *name;
        char what[32];
        snprintf(what, sizeof what, "cameras[%zu]", i);
        if (i >= DL_MAX_CAMERAS || jsonio_string(json_array_get(cams, i), what, &name, err, sizeof err))
            rc = fail("%s: \"cameras\": %s; re-run distil export to rewrite the bundle", path,
                      i >= DL_MAX_CAMERAS ? "too many cameras" : err);
        else b->camera_names[b->n_cameras++] = xstrdup(name);
    }
    json_decref(o);
    return rc;
}

// The camera names of the first shard data.train matches, when it opens
// from the working directory; quietly nothing otherwise.
static void probe_shard_cameras(Bundle *b, const RecipeList *train) {
    char **paths = NULL, err[DL_ERR_LEN];
    int n = 0;
    if (!train->n || dl_glob(train->items, train->n, &paths, &n, err, sizeof err)) return;
    DlShard sh;
    if (n > 0) {
        if (dl_shard_open(&sh, paths[0], err, sizeof err) == 0) {
            for (int i = 0; i < sh.n_cameras && i < DL_MAX_CAMERAS; i++) b->camera_names[i] = xstrdup(sh.camera_names[i]);
            b->n_cameras = sh.n_cameras < DL_MAX_CAMERAS ? sh.n_cameras : DL_MAX_CAMERAS;
        }
        dl_shard_close(&sh);
    }
    dl_free_paths(paths, n);
}

// A checkpoint's recipe (metadata "recipe") through the recipe reader,
// which wants a file.
static int read_recipe_meta(Bundle *b, const char *yaml, Recipe *r) {
    char tmp[] = "/tmp/distil-recipe-XXXXXX";
    int fd = mkstemp(tmp);
    if (fd < 0) return fail("%s: cannot write a temporary file for the recipe: %s", tmp, strerror(errno));
    size_t n = strlen(yaml);
    int ok = write(fd, yaml, n) == (ssize_t)n;
    close(fd);
    int rc = ok ? recipe_load(r, tmp, NULL, 0) : fail("%s: cannot write: %s", tmp, strerror(errno));
    unlink(tmp);
    if (rc) fprintf(stderr, "distil: error: %s/model.safetensors: the recipe in its metadata (above) does not load; "
                    "the checkpoint is damaged or from another distil\n", b->dir);
    return rc ? 2 : 0;
}

static int read_checkpoint_meta(Bundle *b, const char *weights_path) {
    char err[512];
    const char *mc_json = st_meta(b->weights, "model_config"), *recipe = st_meta(b->weights, "recipe");
    if (!mc_json) return fail("%s: no \"model_config\" in its metadata; %s", weights_path, "the checkpoint is damaged or from another distil");
    if (model_config_from_json(mc_json, &b->mc, err, sizeof err))
        return fail("%s: metadata model_config: %s; the checkpoint is damaged", weights_path, err);
    if (!recipe) return 0;
    if (read_recipe_meta(b, recipe, &b->recipe)) return 2;
    b->has_recipe = 1;
    b->recipe_yaml = xstrdup(recipe);
    if (b->recipe.data.cameras.n) set_cameras(b, &b->recipe.data.cameras);
    else probe_shard_cameras(b, &b->recipe.data.train);
    return 0;
}

int bundle_open(Bundle *b, const char *dir) {
    memset(b, 0, sizeof *b);
    b->step = -1;
    snprintf(b->dir, sizeof b->dir, "%s", dir);
    struct stat st;
    int found = stat(dir, &st) == 0;
    if (!found || !S_ISDIR(st.st_mode))
        return fail("%s: %s; give a checkpoint (RUN_DIR/checkpoints/step_N) or an export (distil export --out)", dir,
                    found ? "not a directory" : "not found");
    char weights[1200], config[1200], vocab[1200], err[1024];
    snprintf(weights, sizeof weights, "%s/model.safetensors", dir);
    snprintf(config, sizeof config, "%s/config.json", dir);
    snprintf(vocab, sizeof vocab, "%s/vocab.json", dir);
    if (!is_file(weights)) {
        if (is_file(config)) return fail("%s: missing from the export; %s", weights, "re-run distil export to rewrite the bundle");
        return fail("%s: missing: %s is neither a checkpoint nor an export; give RUN_DIR/checkpoints/step_N or an export", weights, dir);
    }
    // A checkpoint written by `distil train` records its files' sizes and
    // checksums in state.bin: a truncated or flipped file is caught here,
    // and a checkpoint without state.bin is refused below.
    char state[1200];
    snprintf(state, sizeof state, "%s/state.bin", dir);
    int has_state = is_file(state);
    if (has_state) {
        CkptState cs;
        if (checkpoint_open(dir, &cs, err, sizeof err)) return fail("%s; %s", err, "use another checkpoint");
        ckpt_state_free(&cs);
    }
    b->weights = st_open(weights, err, sizeof err);
    if (!b->weights) return fail("%s; %s", err, "the file is damaged: use another checkpoint, or re-export");
    const char *format = st_meta(b->weights, "format"), *version = st_meta(b->weights, "format_version");
    if (!format || (strcmp(format, "distil-checkpoint") && strcmp(format, "distil-export")))
        return fail("%s: metadata format is \"%s\", expected distil-checkpoint or distil-export; not a distil model", weights,
                    format ? format : "(none)");
    b->is_export = !strcmp(format, "distil-export");
    if (!b->is_export && !has_state)
        return fail("%s: missing: without it the checkpoint's sizes and checksums cannot be checked (docs/checkpoints.md)%s",
                    state, "; use another checkpoint, or one exported for deployment (distil export)");
    if (!version || strcmp(version, BUNDLE_FORMAT_VERSION)) {
        fprintf(stderr, "distil: error: %s: %s format version %s, this distil reads version %s; use the distil that wrote it\n",
                weights, format, version ? version : "(none)", BUNDLE_FORMAT_VERSION);
        return 2;
    }
    const char *step = st_meta(b->weights, "step");
    if (step) b->step = strtol(step, NULL, 10);
    if (b->is_export) {
        if (!is_file(config)) return fail("%s: missing from the export; %s", config, "re-run distil export to rewrite the bundle");
        if (!is_file(vocab)) return fail("%s: missing from the export; %s", vocab, "re-run distil export to rewrite the bundle");
        if (read_config_json(b, config)) return 2;
    } else {
        if (!is_file(vocab)) return fail("%s: missing from the checkpoint; %s", vocab, "the checkpoint is incomplete: use another one");
        if (read_checkpoint_meta(b, weights)) return 2;
    }
    if (vocab_read_json(&b->vocab, vocab, err, sizeof err))
        return fail("%s: %s; the bundle is damaged: use another checkpoint, or re-export", vocab, err);
    if (b->vocab.size != b->mc.vocab) {
        fprintf(stderr, "distil: error: %s: %d pieces, the model has a vocabulary of %d; the bundle is damaged\n", vocab,
                b->vocab.size, b->mc.vocab);
        return 2;
    }
    if (b->n_cameras && b->n_cameras != b->mc.n_cams) {
        fprintf(stderr, "distil: error: %s: %d camera names for a model of %d cameras; the bundle is damaged\n", dir,
                b->n_cameras, b->mc.n_cams);
        return 2;
    }
    return 0;
}

void bundle_close(Bundle *b) {
    if (b->weights) st_close(b->weights);
    if (b->vocab.size) vocab_free(&b->vocab);
    for (int i = 0; i < b->n_cameras; i++) free(b->camera_names[i]);
    free(b->recipe_yaml);
    if (b->has_recipe) recipe_free(&b->recipe);
    memset(b, 0, sizeof *b);
}

// Load every parameter of g from the bundle. The file may hold the feature
// head on top (a checkpoint trained with it); anything else missing or left
// over is an error.
static int load_weights(const Bundle *b, Graph *g) {
    char path[1200], err[1024];
    snprintf(path, sizeof path, "%s/model.safetensors", b->dir);
    StLoadReport rep;
    if (st_load_graph_params(path, g, NULL, 0, 0, &rep, err, sizeof err))
        return fail("%s; %s", err, "the bundle does not match its own model config: it is damaged");
    int feature_tensors = 0;
    for (int i = 0; i < b->weights->n_tensors; i++) feature_tensors += !strncmp(b->weights->tensors[i].name, "feat_proj.", 10);
    if (rep.missing || rep.unexpected != feature_tensors) {
        fprintf(stderr, "distil: error: %s: %d parameters of the model missing and %d unknown tensors; the bundle is damaged\n",
                path, rep.missing, rep.unexpected - feature_tensors);
        return 2;
    }
    return 0;
}

// The config fields a parameter's shape follows, for the message when the
// weights file disagrees (a tensor absent: "layers").
static const char *fields_of(const char *tensor) {
    static const struct { const char *prefix, *fields; } table[] = {
        { "cam_emb", "\"n_cams\", \"dim\"" }, { "frame_emb", "\"frames\", \"dim\"" },
        { "patch_pos_emb", "\"img_h\", \"img_w\", \"patch\", \"dim\"" }, { "patch_embed", "\"patch\", \"dim\"" },
        { "ego_embed", "\"hist\", \"dim\"" }, { "tok_emb", "\"vocab\", \"dim\"" },
        { "trace_pos_emb", "\"max_trace\", \"dim\"" }, { "traj_head", "\"horizon\", \"traj_repr\", \"dim\"" },
        { "feat_proj", "\"feat_dim\", \"dim\"" }, { "blocks.", "\"layers\", \"mlp_ratio\", \"dim\"" },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strncmp(tensor, table[i].prefix, strlen(table[i].prefix))) return table[i].fields;
    return "\"dim\"";
}

static void shape_text(char *buf, size_t n, int ndim, const int64_t *shape) {
    size_t at = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && at < n; i++) at += (size_t)snprintf(buf + at, n - at, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (at < n) snprintf(buf + at, n - at, "]");
}

// Every parameter of g (recorded, not yet allocated) has its tensor in the
// weights file with the same shape: the model the config describes is the
// one the file holds, so what graph_plan allocates is what the file
// already holds. Otherwise one line naming the config and its fields.
static int check_shapes(const Bundle *b, const Graph *g) {
    char config[1200];
    if (b->is_export) snprintf(config, sizeof config, "%s/config.json", b->dir);
    else snprintf(config, sizeof config, "%s/model.safetensors metadata model_config", b->dir);
    for (int i = 0; i < g->n_params; i++) {
        const Tensor *t = g->params[i];
        int k = st_find(b->weights, t->name);
        if (k < 0) {
            fprintf(stderr, "distil: error: %s: describes a model with %s, which %s/model.safetensors lacks (%s); "
                    "the bundle is damaged: use another checkpoint, or re-export\n", config, t->name, b->dir, fields_of(t->name));
            return 2;
        }
        const StInfo *w = &b->weights->tensors[k];
        int same = w->ndim == t->ndim;
        int64_t want[TENSOR_MAX_DIMS];
        for (int d = 0; d < t->ndim; d++) {
            want[d] = t->shape[d];
            same = same && w->shape[d] == want[d];
        }
        if (!same) {
            char file_shape[96], model_shape[96];
            shape_text(file_shape, sizeof file_shape, w->ndim, w->shape);
            shape_text(model_shape, sizeof model_shape, t->ndim, want);
            fprintf(stderr, "distil: error: %s: %s would be %s (%s), but %s/model.safetensors holds %s; the bundle is "
                    "damaged: use another checkpoint, or re-export\n", config, t->name, model_shape, fields_of(t->name), b->dir,
                    file_shape);
            return 2;
        }
    }
    return 0;
}

int bundle_student(const Bundle *b, int B, Graph **gp, Student *st) {
    ModelConfig mc = b->mc;
    mc.feat_dim = 0;
    Graph *g = graph_new(DEV_CPU);
    *st = student_build(g, &mc, B);
    *gp = g;
    if (check_shapes(b, g) || graph_plan(g)) return 2;
    student_fill_constants(st);
    return load_weights(b, g);
}

static RecipeList list_copy(char *const *items, int n) {
    RecipeList l = { calloc(n > 0 ? n : 1, sizeof(char *)), n };
    for (int i = 0; i < n; i++) l.items[i] = xstrdup(items[i]);
    return l;
}

// The recipe keys that decide the student's shape and inputs, from the bundle.
static void recipe_for(Recipe *r, const Bundle *b) {
    recipe_defaults(r);
    const ModelConfig *mc = &b->mc;
    for (int i = 0; i < r->data.cameras.n; i++) free(r->data.cameras.items[i]);
    free(r->data.cameras.items);
    r->data.cameras = list_copy(b->camera_names, b->n_cameras);
    r->data.history_frames = mc->frames;
    r->data.max_trace_tokens = mc->max_trace;
    r->model.dim = mc->dim;
    r->model.layers = mc->layers;
    r->model.heads = mc->heads;
    r->model.mlp_ratio = mc->mlp_ratio;
    r->model.patch = mc->patch;
    r->model.horizon = mc->horizon;
    r->model.traj_repr = mc->traj_repr == TRAJ_ACCEL_CURVATURE ? TRAJ_REPR_ACCEL_CURVATURE : TRAJ_REPR_XYYAW;
    r->model.attention = mc->attention == ATTN_PREFIX ? ATTENTION_PREFIX : ATTENTION_CAUSAL;
    for (int c = 0; c < 3; c++) {
        r->model.image_mean[c] = mc->img_mean[c];
        r->model.image_std[c] = mc->img_std[c];
    }
    r->distill.w_feature = 0;   // the feature head is not evaluated
    r->distill.traj_target = TRAJ_TARGET_TEACHER_MEAN;
}

int inference_open(Inference *m, const Bundle *b, const DlSet *set, int B) {
    memset(m, 0, sizeof *m);
    recipe_for(&m->r, b);
    free(m->r.path);
    m->r.path = xstrdup(b->dir);
    const DlShard *first = &set->shards[0];
    for (int c = 0; c < b->n_cameras; c++) {
        int found = 0;
        for (int j = 0; j < first->n_cameras; j++) found |= !strcmp(b->camera_names[c], first->camera_names[j]);
        if (!found) {
            fprintf(stderr, "distil: error: %s: no camera '%s' (it has '%s'); the model needs shards with its cameras, which %s/%s "
                    "lists\n", first->path, b->camera_names[c], first->cameras, b->dir, b->is_export ? "config.json" : "model.safetensors");
            return 2;
        }
    }
    int rc = setup_from_shards(&m->s, &m->r, set, b->vocab.size);
    if (rc) return rc;
    ModelConfig want = b->mc;
    want.feat_dim = 0;
    const char *diff = model_config_diff(&want, &m->s.mc);
    const DlShard *sh = first;
    if (diff) {
        fprintf(stderr, "distil: error: %s: the shards do not fit the model: %s (shards); evaluate on shards like the "
                "training ones\n", sh->path, diff);
        return 2;
    }
    if (m->s.mc.hz != b->mc.hz) {
        fprintf(stderr, "distil: error: %s: logged at %g Hz, the model predicts waypoints at %g Hz; evaluate on shards of "
                "the training rate\n", sh->path, m->s.mc.hz, b->mc.hz);
        return 2;
    }
    char where[1100], err[1536];
    snprintf(where, sizeof where, "%s/vocab.json", b->dir);
    if (vocab_check_teacher(&b->vocab, where, sh, err, sizeof err)) {
        fprintf(stderr, "distil: error: %s\n", err);
        return 2;
    }
    m->g = graph_new(DEV_CPU);
    objective_build(m->g, &m->st, &m->obj, &m->s, &m->r, B);
    if (check_shapes(b, m->g) || graph_plan(m->g)) return 2;
    student_fill_constants(&m->st);
    return load_weights(b, m->g);
}

void inference_close(Inference *m) {
    if (m->g) graph_free(m->g);
    recipe_free(&m->r);
    memset(m, 0, sizeof *m);
}
