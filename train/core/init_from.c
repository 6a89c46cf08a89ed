// init_from.c: `train.init_from`: start from a student's weights (an
// export bundle, a checkpoint directory, or a .safetensors file), keeping
// that student's vocabulary and attention mask.
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include "train/formats/safetensors.h"   // defines: st_load_graph_params, StLoadReport
#include "train/core/init_from.h"   // defines: init_from_*
#include "train/model/model.h"       // defines: model_config_from_json

// The weights file and its directory: PATH/model.safetensors for a
// directory, PATH itself for a file.
static void resolve(const char *path, char *file, size_t flen, char *dir, size_t dlen) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        snprintf(file, flen, "%s/model.safetensors", path);
        snprintf(dir, dlen, "%s", path);
        return;
    }
    snprintf(file, flen, "%s", path);
    snprintf(dir, dlen, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    else snprintf(dir, dlen, ".");
}

int init_from_vocab(const Recipe *r, const DlSet *train, Vocab *v, char *err, size_t errlen) {
    if (!r->train.init_from || !r->train.init_from[0]) return 0;
    char file[1024], dir[1024], vocab_path[1100];
    resolve(r->train.init_from, file, sizeof file, dir, sizeof dir);
    snprintf(vocab_path, sizeof vocab_path, "%s/vocab.json", dir);
    struct stat st;
    if (stat(vocab_path, &st) != 0) return 0;   // a bare weights file: build the vocabulary from the shards
    if (vocab_read_json(v, vocab_path, err, errlen)) return -1;
    if (vocab_check_teacher(v, vocab_path, &train->shards[0], err, errlen)) {
        vocab_free(v);
        return -1;
    }
    return 1;
}

int init_from_attention(const Recipe *r, AttnMode *mode, char *err, size_t errlen) {
    if (!r->train.init_from || !r->train.init_from[0]) return 0;
    char file[1024], dir[1024];
    resolve(r->train.init_from, file, sizeof file, dir, sizeof dir);
    StFile *f = st_open(file, err, errlen);
    if (!f) return -1;
    const char *config = st_meta(f, "model_config");
    ModelConfig mc;
    char cerr[512];
    int rc = 0;
    if (config && model_config_from_json(config, &mc, cerr, sizeof cerr)) {
        snprintf(err, errlen, "%s: metadata \"model_config\": %s", file, cerr);
        rc = -1;
    } else if (config && mc.attention != *mode) {
        *mode = mc.attention;
        rc = 1;
    }
    st_close(f);
    return rc;
}

// "[0.485, 0.456, 0.406]"
static const char *three(const float v[3], char *buf, size_t n) {
    snprintf(buf, n, "[%g, %g, %g]", v[0], v[1], v[2]);
    return buf;
}

static int differs(const Recipe *r, const char *key, const char *here, const char *there, const char *file, const char *why) {
    char where[512];
    recipe_where(r, key, where, sizeof where);
    fprintf(stderr, "distil: error: %s%s%s: %s here, %s in the student train.init_from names (%s); %s\n", where,
            strncmp(where, "--set ", 6) ? ": " : "", strncmp(where, "--set ", 6) ? key : "", here, there, file, why);
    return 2;
}

int init_from_check(const Recipe *r, const Setup *s, const DlSet *train) {
    if (!r->train.init_from || !r->train.init_from[0]) return 0;
    char file[1024], dir[1024], err[1024];
    resolve(r->train.init_from, file, sizeof file, dir, sizeof dir);
    StFile *f = st_open(file, err, sizeof err);
    if (!f) { fprintf(stderr, "distil: error: train.init_from: %s\n", err); return 2; }
    const char *mc_json = st_meta(f, "model_config"), *cams = st_meta(f, "cameras");
    ModelConfig src;
    int rc = 0;
    if (mc_json && model_config_from_json(mc_json, &src, err, sizeof err)) {
        fprintf(stderr, "distil: error: train.init_from: %s: metadata model_config: %s\n", file, err);
        rc = 2;
    }
    const ModelConfig *mc = &s->mc;
    char a[96], b[96];
    static const char *norm = "a fine-tuned student keeps the input normalisation it learned with: set the key to its value";
    if (rc || !mc_json) {
        // Nothing to check against: a .safetensors file from elsewhere.
    } else if (memcmp(mc->img_mean, src.img_mean, sizeof src.img_mean)) {
        rc = differs(r, "model.image_mean", three(mc->img_mean, a, sizeof a), three(src.img_mean, b, sizeof b), file, norm);
    } else if (memcmp(mc->img_std, src.img_std, sizeof src.img_std)) {
        rc = differs(r, "model.image_std", three(mc->img_std, a, sizeof a), three(src.img_std, b, sizeof b), file, norm);
    } else if (mc->img_h != src.img_h || mc->img_w != src.img_w) {
        snprintf(a, sizeof a, "%dx%d frames", mc->img_h, mc->img_w);
        snprintf(b, sizeof b, "%dx%d", src.img_h, src.img_w);
        rc = differs(r, "data.train", a, b, file, "fine-tune on shards of the image size it was trained on");
    } else if (mc->n_cams != src.n_cams) {
        snprintf(a, sizeof a, "%d cameras", mc->n_cams);
        snprintf(b, sizeof b, "%d", src.n_cams);
        rc = differs(r, "data.cameras", a, b, file, "name the cameras it was trained with, in its order");
    } else if (mc->horizon != src.horizon) {
        snprintf(a, sizeof a, "%d", mc->horizon);
        snprintf(b, sizeof b, "%d", src.horizon);
        rc = differs(r, "model.horizon", a, b, file, "set the horizon it was trained with");
    } else if (mc->traj_repr != src.traj_repr) {
        rc = differs(r, "model.traj_repr", mc->traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw",
                     src.traj_repr == TRAJ_ACCEL_CURVATURE ? "accel_curvature" : "xyyaw", file,
                     "set the trajectory representation it was trained with");
    } else if (cams && cams[0]) {
        // An export names its cameras, in its order (a checkpoint's are its recipe's).
        char here[512] = "";
        size_t at = 0;
        for (int c = 0; c < mc->n_cams && at < sizeof here; c++)
            at += (size_t)snprintf(here + at, sizeof here - at, "%s%s", c ? "," : "",
                                   train->shards[0].camera_names[s->cam_index[c]]);
        if (strcmp(here, cams)) rc = differs(r, "data.cameras", here, cams, file, "name the cameras it was trained with, in its order");
    }
    st_close(f);
    return rc;
}

int init_from_weights(const Recipe *r, Graph *g, char *err, size_t errlen) {
    if (!r->train.init_from || !r->train.init_from[0]) return 0;
    char file[1024], dir[1024];
    resolve(r->train.init_from, file, sizeof file, dir, sizeof dir);
    StLoadReport rep;
    // Not strict: a head the new run adds (a feature projection) keeps its
    // fresh initialisation, and tensors the new run does not use are
    // ignored; both are counted below. A shape mismatch is always an error.
    if (st_load_graph_params(file, g, NULL, 0, 0, &rep, err, errlen)) return -1;
    if (rep.loaded == 0) {
        snprintf(err, errlen, "%s: no tensor of the file is a parameter of this student; train.init_from must name a distil "
                 "export or checkpoint", file);
        return -1;
    }
    printf("init_from %s: %d parameter tensors loaded, %d kept their initialisation, %d in the file unused\n", file,
           rep.loaded, rep.missing, rep.unexpected);
    return 0;
}
