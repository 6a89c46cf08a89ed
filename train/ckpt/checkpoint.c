// checkpoint.c: checkpoint directories: the crash-safe write protocol,
// `latest`, pruning, and loading one back into a TrainState (see
// checkpoint.h; docs/checkpoints.md).
//
// The write protocol, and why each step:
//   1. everything goes into checkpoints/.tmp-step_N-<pid>/, each file
//      fsync'ed, then the directory: a kill leaves only a .tmp-* directory,
//      which nothing references and the next run into the directory
//      removes (checkpoint_sweep, under the run directory's lock);
//   2. rename to step_N, fsync checkpoints/: the step directory appears
//      complete or not at all;
//   3. a new symlink at a temporary name is renamed over `latest`, fsync
//      checkpoints/: `latest` names the old or the new checkpoint, both whole;
//   4. old step directories are first renamed to .trash-*, then deleted, so
//      a step_* name never refers to a half-deleted directory.
#include "train/ckpt/checkpoint.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "kernels/backend.h"             // defines: backend_from_host
#include "train/formats/fsutil.h"        // defines: fs_fsync
#include "train/formats/json_io.h"       // defines: jsonio_parse, jsonio_get_int64
#include "train/formats/safetensors.h"   // defines: st_save_graph_params, st_open, st_load_graph_params

#define CKPT_PATH 4096    // PATH_MAX: run directories and --resume arguments are shorter (checked)

// snprintf into a CKPT_PATH buffer. The inputs are bounded well below
// CKPT_PATH (train.c's run directory, checkpoint_resolve's argument), so
// nothing is cut; vsnprintf keeps the compiler from asking.
__attribute__((format(printf, 2, 3))) static void pathf(char *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out, CKPT_PATH, fmt, ap);
    va_end(ap);
}

// ---- small filesystem helpers ------------------------------------------------


static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    return remove(path);
}

static int remove_tree(const char *path) {
    struct stat st;
    if (lstat(path, &st)) return errno == ENOENT ? 0 : -1;
    return nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

// "step_0001200" -> 1200; -1 for any other name.
static long step_of_name(const char *name) {
    if (strncmp(name, "step_", 5) || !name[5]) return -1;
    long v = 0;
    for (const char *p = name + 5; *p; p++) {
        if (*p < '0' || *p > '9' || v > LONG_MAX / 10 - 1) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

// ---- writing -----------------------------------------------------------------

// The recipe as resolved YAML text (malloc'ed), for the weights' metadata.
static char *recipe_text(const Recipe *r) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) return NULL;
    recipe_print_resolved(r, f);
    fclose(f);
    return text;
}

static int write_weights(const TrainState *ts, const char *path, long step, char *err, size_t errlen) {
    char *recipe = recipe_text(ts->r), *config = model_config_to_json(&ts->data.setup.mc);
    char version[16], step_s[32];
    snprintf(version, sizeof version, "%d", CKPT_FORMAT_VERSION);
    snprintf(step_s, sizeof step_s, "%ld", step);
    int rc = -1;
    if (!recipe || !config) { snprintf(err, errlen, "%s: out of memory", path); goto done; }
    StMeta meta[] = {
        { "format", CKPT_FORMAT }, { "format_version", version }, { "recipe", recipe },
        { "model_config", config }, { "step", step_s },
    };
    rc = st_save_graph_params(path, ts->model.g, meta, (int)(sizeof meta / sizeof meta[0]), ST_F32, err, errlen);
done:
    free(recipe);
    free(config);
    return rc;
}

// Step 1 of the protocol: the checkpoint's three files in `tmp`, on disk.
static int write_files(const TrainState *ts, const char *tmp, long step, char *err, size_t errlen) {
    char path[CKPT_PATH];
    CkptFileSum sums[CKPT_N_FILES];
    pathf(path, "%s/model.safetensors", tmp);
    if (write_weights(ts, path, step, err, errlen)) return -1;
    if (ckpt_file_sum(path, "model.safetensors", &sums[0], err, errlen)) return -1;
    pathf(path, "%s/vocab.json", tmp);
    if (vocab_write_json(&ts->data.vocab, path, err, errlen)) return -1;
    if (fs_fsync(path, 0)) {
        snprintf(err, errlen, "%s: fsync: %s", path, strerror(errno));
        return -1;
    }
    if (ckpt_file_sum(path, "vocab.json", &sums[1], err, errlen)) return -1;
    pathf(path, "%s/state.bin", tmp);
    if (ckpt_state_write(path, ts, step, sums, err, errlen)) return -1;
    if (fs_fsync(tmp, 1)) { snprintf(err, errlen, "%s: fsync: %s", tmp, strerror(errno)); return -1; }
    return 0;
}

// Step 2: tmp becomes `final`. Were `final` there already (a step redone),
// the two are exchanged atomically, so the name never goes missing.
static int publish(const char *tmp, const char *final, const char *ckdir, char *err, size_t errlen) {
    if (rename(tmp, final)) {
        if (errno != ENOTEMPTY && errno != EEXIST) {
            snprintf(err, errlen, "%s: cannot rename %s to it: %s", final, tmp, strerror(errno));
            return -1;
        }
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, final, RENAME_EXCHANGE)) {
            snprintf(err, errlen, "%s: exists and cannot be replaced: %s", final, strerror(errno));
            return -1;
        }
        remove_tree(tmp);   // now the old contents
    }
    if (fs_fsync(ckdir, 1)) { snprintf(err, errlen, "%s: fsync: %s", ckdir, strerror(errno)); return -1; }
    return 0;
}

// Step 3: `latest` -> name, by renaming a fresh symlink over it.
static int point_latest(const char *ckdir, const char *name, char *err, size_t errlen) {
    char tmp[CKPT_PATH], latest[CKPT_PATH];
    pathf(tmp, "%s/.tmp-latest-%ld", ckdir, (long)getpid());
    pathf(latest, "%s/latest", ckdir);
    unlink(tmp);
    if (symlink(name, tmp)) { snprintf(err, errlen, "%s: cannot create a symlink: %s", tmp, strerror(errno)); return -1; }
    if (rename(tmp, latest)) {
        snprintf(err, errlen, "%s: cannot replace it: %s", latest, strerror(errno));
        unlink(tmp);
        return -1;
    }
    if (fs_fsync(ckdir, 1)) { snprintf(err, errlen, "%s: fsync: %s", ckdir, strerror(errno)); return -1; }
    return 0;
}

typedef struct StepDir { long step; char name[64]; } StepDir;

static int by_step(const void *a, const void *b) {
    long x = ((const StepDir *)a)->step, y = ((const StepDir *)b)->step;
    return (x > y) - (x < y);
}

// Rename step directory `name` aside, then delete it (step 4).
static void discard(const char *ckdir, const char *name) {
    char from[CKPT_PATH], to[CKPT_PATH];
    pathf(from, "%s/%s", ckdir, name);
    pathf(to, "%s/.trash-%s-%ld", ckdir, name, (long)getpid());
    if (rename(from, to) == 0) remove_tree(to);
}

// The step_* directories of ckdir, sorted by step (malloc'ed; NULL and 0
// when there are none or ckdir cannot be read).
static StepDir *list_steps(const char *ckdir, int *n) {
    *n = 0;
    DIR *d = opendir(ckdir);
    if (!d) return NULL;
    StepDir *v = NULL;
    int cap = 0;
    for (struct dirent *e; (e = readdir(d));) {
        long s = step_of_name(e->d_name);
        size_t len = strlen(e->d_name);
        if (s < 0 || len >= sizeof v->name) continue;
        if (*n == cap) {
            StepDir *nv = realloc(v, (size_t)(cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!nv) break;
            v = nv;
        }
        v[*n].step = s;
        memcpy(v[(*n)++].name, e->d_name, len + 1);
    }
    closedir(d);
    if (v) qsort(v, (size_t)*n, sizeof *v, by_step);
    return v;
}

// Whether name is one of this process's own temporary entries:
// .tmp-<what>-<pid> or .trash-<what>-<pid>.
static int own_temporary(const char *name) {
    char suffix[32];
    int n = snprintf(suffix, sizeof suffix, "-%ld", (long)getpid());
    size_t len = strlen(name);
    if (strncmp(name, ".tmp-", 5) && strncmp(name, ".trash-", 7)) return 0;
    return len > (size_t)n && !strcmp(name + len - (size_t)n, suffix);
}

// Remove the temporary entries of this process's killed or failed saves,
// the step directories past `step` (an earlier run's, which this one
// replaces), and all but the newest `keep` (keep 0: all kept). Another
// process's temporaries are left alone: only checkpoint_sweep, under the
// run directory's lock, removes those.
static void prune(const char *ckdir, long step, int keep) {
    DIR *d = opendir(ckdir);
    if (d) {
        char path[CKPT_PATH];
        for (struct dirent *e; (e = readdir(d));) {
            if (!own_temporary(e->d_name)) continue;
            pathf(path, "%s/%s", ckdir, e->d_name);
            remove_tree(path);
        }
        closedir(d);
    }
    int n;
    StepDir *v = list_steps(ckdir, &n);
    while (n > 0 && v[n - 1].step > step) discard(ckdir, v[--n].name);
    for (int i = 0; keep > 0 && i < n - keep; i++) discard(ckdir, v[i].name);
    free(v);
}

void checkpoint_sweep(const char *run_dir) {
    char ckdir[CKPT_PATH], path[CKPT_PATH];
    pathf(ckdir, "%s/checkpoints", run_dir);
    DIR *d = opendir(ckdir);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (strncmp(e->d_name, ".tmp-", 5) && strncmp(e->d_name, ".trash-", 7) && strncmp(e->d_name, ".zero1-", 7)) continue;
        pathf(path, "%s/%s", ckdir, e->d_name);
        remove_tree(path);
    }
    closedir(d);
}

int checkpoint_save(const TrainState *ts, const char *run_dir, long step, int keep, char *err, size_t errlen) {
    char ckdir[CKPT_PATH], name[64], tmp[CKPT_PATH], final[CKPT_PATH];
    pathf(ckdir, "%s/checkpoints", run_dir);
    if (mkdir(ckdir, 0777) && errno != EEXIST) {
        snprintf(err, errlen, "%s: cannot create: %s", ckdir, strerror(errno));
        return -1;
    }
    snprintf(name, sizeof name, "step_%07ld", step);
    pathf(tmp, "%s/.tmp-%s-%ld", ckdir, name, (long)getpid());
    pathf(final, "%s/%s", ckdir, name);
    remove_tree(tmp);
    if (mkdir(tmp, 0777)) { snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); return -1; }
    // ZeRO-1: the shards every rank staged join the directory before it is published (train/dist/dist.h).
    int zero = ts->sync && ts->r->dist.zero;
    if (write_files(ts, tmp, step, err, errlen) || (zero && dist_zero_adopt(run_dir, step, tmp, err, errlen)) ||
        publish(tmp, final, ckdir, err, errlen)) {
        remove_tree(tmp);
        return -1;
    }
    if (point_latest(ckdir, name, err, errlen)) return -1;
    prune(ckdir, step, keep);
    return 0;
}

// ---- finding and checking a checkpoint -------------------------------------------

static int resolve_latest(const char *ckdir, char *out, size_t outlen, char *err, size_t errlen) {
    char latest[CKPT_PATH], target[256];
    pathf(latest, "%s/latest", ckdir);
    ssize_t n = readlink(latest, target, sizeof target - 1);
    if (n < 0) {
        if (errno == ENOENT) snprintf(err, errlen, "%s: no checkpoint to resume from (none was written yet); train without --resume", latest);
        else snprintf(err, errlen, "%s: not a symlink to a checkpoint (%s)", latest, strerror(errno));
        return -1;
    }
    target[n] = 0;
    if (step_of_name(target) < 0) {
        snprintf(err, errlen, "%s: points at \"%s\", not a step_N directory; pass a checkpoint to --resume", latest, target);
        return -1;
    }
    snprintf(out, outlen, "%s/%s", ckdir, target);
    if (!is_dir(out)) {
        snprintf(err, errlen, "%s: points at %s, which is missing; pass an existing checkpoint to --resume", latest, target);
        return -1;
    }
    return 0;
}

int checkpoint_resolve(const char *arg, const char *run_dir, char *out, size_t outlen, char *err, size_t errlen) {
    char ckdir[CKPT_PATH], probe[CKPT_PATH];
    if (!arg) {
        pathf(ckdir, "%s/checkpoints", run_dir);
        return resolve_latest(ckdir, out, outlen, err, errlen);
    }
    size_t limit = outlen < CKPT_PATH / 2 ? outlen - 1 : CKPT_PATH / 2;
    if (strlen(arg) > limit) { snprintf(err, errlen, "--resume: the path is over %zu bytes; use a shorter one", limit); return -1; }
    if (!is_dir(arg)) { snprintf(err, errlen, "%s: not a directory; --resume takes a checkpoint or a run directory", arg); return -1; }
    pathf(probe, "%s/checkpoints", arg);
    pathf(ckdir, "%s/state.bin", arg);
    if (is_dir(probe) && access(ckdir, F_OK)) return resolve_latest(probe, out, outlen, err, errlen);
    snprintf(out, outlen, "%s", arg);
    return 0;
}

// model.safetensors' metadata: the format, its version, the step and the
// model config.
static int check_weights_meta(const char *path, ModelConfig *mc, long *meta_step, char *err, size_t errlen) {
    StFile *f = st_open(path, err, errlen);
    if (!f) return -1;
    int rc = -1;
    const char *format = st_meta(f, "format"), *version = st_meta(f, "format_version");
    const char *config = st_meta(f, "model_config"), *step = st_meta(f, "step");
    char want[16];
    snprintf(want, sizeof want, "%d", CKPT_FORMAT_VERSION);
    if (!format || strcmp(format, CKPT_FORMAT)) {
        snprintf(err, errlen, "%s: metadata \"format\" is %s%s%s, not \"%s\": not a distil checkpoint", path,
                 format ? "\"" : "", format ? format : "missing", format ? "\"" : "", CKPT_FORMAT);
    } else if (!version || strcmp(version, want)) {
        snprintf(err, errlen, "%s: checkpoint format_version %s%s%s; this distil reads version %s", path,
                 version ? "\"" : "", version ? version : "missing", version ? "\"" : "", want);
    } else if (!config || !step) {
        snprintf(err, errlen, "%s: metadata lacks \"%s\": not a complete distil checkpoint", path, config ? "step" : "model_config");
    } else {
        char cerr[512], *end;
        *meta_step = strtol(step, &end, 10);
        if (*end || *meta_step < 0) snprintf(err, errlen, "%s: metadata \"step\" is \"%.40s\", not a step number", path, step);
        else if (model_config_from_json(config, mc, cerr, sizeof cerr))
            snprintf(err, errlen, "%s: metadata \"model_config\": %s", path, cerr);
        else rc = 0;
    }
    st_close(f);
    return rc;
}

static int check_sums(const char *dir, const CkptState *s, char *err, size_t errlen) {
    char path[CKPT_PATH];
    for (int i = 0; i < CKPT_N_FILES; i++) {
        const CkptFileSum *want = &s->files[i];
        CkptFileSum got;
        pathf(path, "%s/%s", dir, want->name);
        if (ckpt_file_sum(path, want->name, &got, err, errlen)) return -1;
        if (got.bytes != want->bytes) {
            snprintf(err, errlen, "%s: %llu bytes, state.bin recorded %llu: %s", path, (unsigned long long)got.bytes,
                     (unsigned long long)want->bytes, got.bytes < want->bytes ? "truncated" : "changed");
            return -1;
        }
        if (got.crc32 != want->crc32) {
            snprintf(err, errlen, "%s: checksum mismatch (CRC-32 %08x, state.bin recorded %08x): corrupt", path,
                     got.crc32, want->crc32);
            return -1;
        }
    }
    return 0;
}

// The order of the checks: state.bin first, whose header says which format
// version wrote the checkpoint (another version is named as such, not as
// damage); then the other files' sizes and checksums against it; then the
// weights' own metadata.
int checkpoint_open(const char *dir, CkptState *s, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!is_dir(dir)) { snprintf(err, errlen, "%s: no such checkpoint directory", dir); return -1; }
    char path[CKPT_PATH];
    pathf(path, "%s/state.bin", dir);
    if (ckpt_state_read(path, s, err, errlen)) return -1;
    long meta_step = -1;
    pathf(path, "%s/model.safetensors", dir);
    if (check_sums(dir, s, err, errlen) || check_weights_meta(path, &s->model_config, &meta_step, err, errlen)) {
        ckpt_state_free(s);
        return -1;
    }
    if (meta_step != s->step) {
        snprintf(err, errlen, "%s: state.bin is at step %lld but model.safetensors at step %ld: files of two checkpoints",
                 dir, (long long)s->step, meta_step);
        ckpt_state_free(s);
        return -1;
    }
    return 0;
}

// ---- loading into a run ------------------------------------------------------------

static int check_vocab(const CkptState *s, const Vocab *v, char *err, size_t errlen) {
    if (s->vocab_mode != (int32_t)v->mode) {
        snprintf(err, errlen, "model.vocab is %s in the checkpoint and %s here", s->vocab_mode ? "from_logs" : "teacher",
                 v->mode ? "from_logs" : "teacher");
        return -1;
    }
    if (s->vocab_size != v->size || s->vocab_teacher_size != v->teacher_size) {
        snprintf(err, errlen, "the vocabulary has %d tokens (of a teacher vocabulary of %d) in the checkpoint and %d (of %d) "
                 "here (other training shards)", s->vocab_size, s->vocab_teacher_size, v->size, v->teacher_size);
        return -1;
    }
    for (int i = 0; i < v->size; i++)
        if (s->to_teacher[i] != v->to_teacher[i]) {
            snprintf(err, errlen, "the vocabulary maps student token %d to teacher token %d in the checkpoint and %d here "
                     "(other training shards)", i, s->to_teacher[i], v->to_teacher[i]);
            return -1;
        }
    return 0;
}

static int check_params(const CkptState *s, const Graph *g, char *err, size_t errlen) {
    if (s->n_params != g->n_grad_params || s->grad_numel != g->grad_numel) {
        snprintf(err, errlen, "%d trainable parameters (%llu floats) in the checkpoint and %d (%zu) here (train.freeze differs)",
                 s->n_params, (unsigned long long)s->grad_numel, g->n_grad_params, g->grad_numel);
        return -1;
    }
    for (int i = 0; i < g->n_grad_params; i++) {
        const Tensor *t = g->flat_order[i];
        const CkptParam *p = &s->params[i];
        if (strcmp(p->name, t->name) || p->offset != (uint64_t)(t->grad - g->grad_mem) || p->numel != (uint64_t)t->numel) {
            snprintf(err, errlen, "trainable parameter %d is %s (%llu floats) in the checkpoint and %s (%zu) here "
                     "(train.freeze differs)", i, p->name, (unsigned long long)p->numel, t->name, t->numel);
            return -1;
        }
    }
    return 0;
}

// Whether the checkpoint can go on in ts; err says what differs.
static int check_compatible(const CkptState *s, const TrainState *ts, char *err, size_t errlen) {
    const char *diff = model_config_diff(&s->model_config, &ts->data.setup.mc);
    if (diff) { snprintf(err, errlen, "%s", diff); return -1; }
    if (check_vocab(s, &ts->data.vocab, err, errlen)) return -1;
    if (s->micro_batch != ts->r->train.micro_batch) {
        snprintf(err, errlen, "train.micro_batch is %d in the checkpoint and %d here (the loader position counts micro-batches)",
                 s->micro_batch, ts->r->train.micro_batch);
        return -1;
    }
    if (s->world != dist_world()->world) {
        snprintf(err, errlen, "the checkpoint was written by %d processes and this run has %d (the loader position "
                 "counts each rank's batches)", s->world, dist_world()->world);
        return -1;
    }
    return check_params(s, ts->model.g, err, errlen);
}

int checkpoint_load(TrainState *ts, const char *dir, long *step, int *threads, char *err, size_t errlen) {
    CkptState s;
    if (checkpoint_open(dir, &s, err, errlen)) return -1;
    char what[768];
    int rc = -1;
    if (check_compatible(&s, ts, what, sizeof what)) {
        snprintf(err, errlen, "%s: incompatible with this recipe: %s", dir, what);
        rc = 1;
        goto done;
    }
    // ZeRO-1: each rank's moments are in its own shard file (train/dist/zero_ckpt.c).
    int zero = ts->sync && ts->r->dist.zero;
    if (zero != dist_zero_in_checkpoint(dir)) {
        snprintf(err, errlen, "%s: incompatible with this recipe: written with dist.zero: %d, and this run has %d",
                 dir, !zero, zero);
        rc = 1;
        goto done;
    }
    if (!zero && ts->optim.adamw.n != s.grad_numel) {
        snprintf(err, errlen, "%s: the optimizer state holds %zu moments and this run %zu", dir, (size_t)s.grad_numel,
                 ts->optim.adamw.n);
        goto done;
    }
    if (s.loader.epoch < 0 || s.loader.step < 0 || s.loader.step >= loader_batches_per_epoch(ts->data.train)) {
        snprintf(err, errlen, "%s: loader position (epoch %lld, batch %lld) is outside an epoch of %lld batches (other training shards)",
                 dir, (long long)s.loader.epoch, (long long)s.loader.step, (long long)loader_batches_per_epoch(ts->data.train));
        rc = 1;
        goto done;
    }
    char path[CKPT_PATH];
    pathf(path, "%s/model.safetensors", dir);
    if (st_load_graph_params(path, ts->model.g, NULL, 0, 1, NULL, err, errlen)) goto done;
    if (loader_seek(ts->data.train, s.loader)) { snprintf(err, errlen, "%s: cannot restart the loader", dir); goto done; }
    if (zero) {
        if (dist_zero_load(&ts->optim.adamw, ts->model.g, dir, err, errlen)) goto done;
    } else {
        backend_from_host(ts->optim.adamw.device, ts->optim.adamw.m, s.m, s.grad_numel * sizeof(float));
        backend_from_host(ts->optim.adamw.device, ts->optim.adamw.v, s.v, s.grad_numel * sizeof(float));
    }
    ts->optim.adamw.step = s.adam_step;
    ts->optim.bad_in_a_row = s.bad_in_a_row;
    ts->optim.bad_total = s.bad_total;
    ts->rng = s.rng;
    *step = (long)s.step;
    *threads = s.threads;
    rc = 0;
done:
    ckpt_state_free(&s);
    return rc;
}

// ---- rewinding the run directory ----------------------------------------------------

int checkpoint_rewind(const char *run_dir, const char *dir, long step, char *err, size_t errlen) {
    char ckdir[CKPT_PATH], a[PATH_MAX], b[PATH_MAX];
    pathf(ckdir, "%s/checkpoints", run_dir);
    const char *slash = strrchr(dir, '/');
    const char *name = slash ? slash + 1 : dir;
    char parent[CKPT_PATH];
    pathf(parent, "%.*s", slash ? (int)(slash - dir) : 1, slash ? dir : ".");
    if (step_of_name(name) != step || !realpath(ckdir, a) || !realpath(parent, b) || strcmp(a, b)) return 0;
    if (point_latest(ckdir, name, err, errlen)) return -1;
    int n;
    StepDir *v = list_steps(ckdir, &n);
    for (int i = 0; i < n; i++)
        if (v[i].step > step) discard(ckdir, v[i].name);
    free(v);
    return 0;
}

// A metrics line's step, or -1 when the line is not a whole JSON object with
// one; *eval: whether it is an evaluation's line.
static long line_step(const char *line, size_t len, int *eval) {
    char jerr[256];
    json_t *j = jsonio_parse(line, len, jerr, sizeof jerr);
    if (!j) return -1;
    int64_t s = -1;
    if (jsonio_get_int64(j, "step", &s, jerr, sizeof jerr)) s = -1;
    *eval = json_object_get(j, "eval") != NULL;
    json_decref(j);
    return (long)s;
}

int metrics_rewind(const char *path, long step, char *err, size_t errlen) {
    FILE *in = fopen(path, "rb");
    if (!in) {
        if (errno == ENOENT) return 0;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return -1;
    }
    char tmp[CKPT_PATH];
    pathf(tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *out = fopen(tmp, "wb");
    if (!out) { snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(errno)); fclose(in); return -1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    while ((n = getline(&line, &cap, in)) > 0) {
        // A line cut short by a kill has no newline: dropped with the rest.
        if (line[n - 1] != '\n') break;
        // Step N's line came before checkpoint N; the evaluation at N is redone.
        int eval = 0;
        long s = line_step(line, (size_t)n - 1, &eval);
        if (s >= 0 && (s < step || (s == step && !eval))) fwrite(line, 1, (size_t)n, out);
    }
    free(line);
    fclose(in);
    int bad = fflush(out) || fsync(fileno(out));
    if (fclose(out)) bad = 1;
    if (bad || rename(tmp, path)) {
        snprintf(err, errlen, "%s: cannot rewrite: %s", path, strerror(errno));
        unlink(tmp);
        return -1;
    }
    char dir[CKPT_PATH];
    const char *slash = strrchr(path, '/');
    pathf(dir, "%.*s", slash ? (int)(slash - path) : 1, slash ? path : ".");
    fs_fsync(dir, 1);
    return 0;
}
