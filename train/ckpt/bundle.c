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

// An export's config.json: the architecture and the camera names.
static int read_config_json(Bundle *b, const char *path) {
    char err[512];
    json_t *o = jsonio_load(path, CONFIG_JSON_MAX_BYTES, err, sizeof err);
    if (!o) return fail("%s: %s; re-run distil export to rewrite the bundle", path, err);
    const json_t *model = json_object_get(o, "model"), *cams = json_object_get(o, "cameras");
    int rc = 0;
    if (!json_is_object(model) || !json_is_array(cams))
        rc = fail("%s: %s; re-run distil export to rewrite the bundle", path,
                  "no \"model\" object or \"cameras\" list (docs/export.md lists config.json's keys)");
    else if (model_config_from_object(model, &b->mc, err, sizeof err))
        rc = fail("%s: \"model\": %s; re-run distil export to rewrite the bundle", path, err);
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
    // checksums in state.bin: a truncated or flipped file is caught here.
    char state[1200];
    snprintf(state, sizeof state, "%s/state.bin", dir);
    if (is_file(state)) {
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

int bundle_student(const Bundle *b, int B, Graph **gp, Student *st) {
    ModelConfig mc = b->mc;
    mc.feat_dim = 0;
    Graph *g = graph_new(DEV_CPU);
    *st = student_build(g, &mc, B);
    *gp = g;
    if (graph_plan(g)) return 2;
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
    if (graph_plan(m->g)) return 2;
    student_fill_constants(&m->st);
    return load_weights(b, m->g);
}

void inference_close(Inference *m) {
    if (m->g) graph_free(m->g);
    recipe_free(&m->r);
    memset(m, 0, sizeof *m);
}
