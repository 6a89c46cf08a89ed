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
    if (v->teacher_size != train->shards[0].V) {
        snprintf(err, errlen, "%s: the student was trained on a teacher vocabulary of %d pieces, %s has %lld; "
                 "fine-tune on shards of the same teacher", vocab_path, v->teacher_size, train->shards[0].path,
                 (long long)train->shards[0].V);
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
