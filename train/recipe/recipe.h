// recipe.h: strict YAML recipes. One key table (recipe.c) drives parsing,
// validation, defaults, the resolved printout and docs/recipes.md, so the
// four cannot drift apart. Every mistake in a recipe is one error line with
// file:line:column and exit status 2.
#pragma once
#include <stddef.h>
#include <stdio.h>

// An owned list of strings (globs, camera names, parameter-name patterns).
typedef struct RecipeList {
    char **items;
    int n;
} RecipeList;

// Enum values are the index of their name in the key table's allowed list.
typedef enum { BAD_SAMPLE_ERROR, BAD_SAMPLE_SKIP } RecipeBadSample;
typedef enum { TRAJ_REPR_XYYAW, TRAJ_REPR_ACCEL_CURVATURE } RecipeTrajRepr;
typedef enum { VOCAB_TEACHER, VOCAB_FROM_LOGS } RecipeVocab;
typedef enum { ATTENTION_PREFIX, ATTENTION_CAUSAL } RecipeAttention;
typedef enum { KL_FORWARD, KL_REVERSE, KL_JSD } RecipeKl;
typedef enum {
    TRAJ_TARGET_TEACHER_MEAN, TRAJ_TARGET_TEACHER_BEST,
    TRAJ_TARGET_TEACHER_ALL, TRAJ_TARGET_GROUND_TRUTH,
} RecipeTrajTarget;
typedef enum { PRECISION_FP32, PRECISION_BF16 } RecipePrecision;
typedef enum { DEVICE_AUTO, DEVICE_CPU, DEVICE_CUDA } RecipeDevice;
typedef enum { EXPORT_FP32, EXPORT_FP16, EXPORT_BF16 } RecipeExportDtype;

typedef struct RecipeData {
    RecipeList train;            // shard globs, relative to the working directory
    RecipeList eval;             // empty: no evaluation
    RecipeList cameras;          // empty: every camera in the shards, in their order
    int history_frames;          // newest frames per camera fed to the student
    int max_trace_tokens;        // trace positions kept per sample
    RecipeBadSample on_bad_sample;
    int loader_threads;
    int prefetch;                // micro-batches decoded ahead
} RecipeData;

typedef struct RecipeModel {
    int dim, layers, heads;
    RecipeAttention attention;   // the attention mask (docs/model.md)
    int mlp_ratio;               // MLP hidden width = dim * mlp_ratio
    int patch;                   // square patch side, pixels
    int horizon;                 // T future waypoints
    RecipeTrajRepr traj_repr;
    RecipeVocab vocab;
    double image_mean[3], image_std[3];  // RGB, on pixels scaled to [0, 1]
} RecipeModel;

typedef struct RecipeDistill {
    double temperature;
    RecipeKl kl;
    double jsd_beta;
    int tail_bucket, t2_scaling;          // bools
    double w_token_kl, w_ce, w_traj, w_feature;
    RecipeTrajTarget traj_target;
    double yaw_weight, huber_beta;
} RecipeDistill;

typedef struct RecipeTrain {
    int steps, micro_batch, batch_size;   // batch_size is global, in samples
    double lr, min_lr;
    int warmup_steps;
    double weight_decay, beta1, beta2, eps, grad_clip;
    int eval_every, eval_samples;
    int checkpoint_every, keep_checkpoints;
    RecipePrecision precision;
    RecipeDevice device;
    int allow_tf32;                       // bool
    int max_bad_steps;
    char *init_from;                      // "" when training from scratch
    RecipeList freeze;                    // parameter-name glob patterns
    int log_every;
} RecipeTrain;

typedef struct RecipeDist {
    double bucket_mb;                     // MiB of fp32 gradients per all-reduce bucket
    RecipePrecision grad_dtype;
    int zero;                             // 0 or 1: shard optimizer state
    int timeout_s;
} RecipeDist;

typedef struct RecipeExport {
    RecipeExportDtype dtype;
    int onnx;                             // bool
    int opset;
} RecipeExport;

// Where each key's value came from, for errors raised after loading.
typedef struct RecipeSource {
    int line, column;                     // 1-based; 0 when not from the file
    int from_set;                         // given by --set
} RecipeSource;

typedef struct Recipe {
    char *name;                           // run name: runs/<name>
    int seed;
    RecipeData data;
    RecipeModel model;
    RecipeDistill distill;
    RecipeTrain train;
    RecipeDist dist;
    RecipeExport export;
    char *path;                           // the file it was read from, or NULL
    RecipeSource *sources;                // one per key table entry, or NULL
} Recipe;

// ---- loading ---------------------------------------------------------------

// Fills r with every default (name "default", no data). r need not be
// initialised; recipe_free it afterwards.
void recipe_defaults(Recipe *r);

// Reads path, applies the overrides ("section.key=value", or "key=value" for
// top-level keys; the value is YAML, e.g. "data.cameras=[front,left]"), then
// checks the cross-field rules. Returns 0, or prints one error line to
// stderr and returns 2; r is then empty (recipe_free is still safe).
int recipe_load(Recipe *r, const char *path, char **overrides, int n_overrides);
// The same from text (a checkpoint's recipe, from its metadata), `name`
// standing for the file in messages. Paths (train.init_from) are not
// checked: they were the other run's.
int recipe_load_text(Recipe *r, const char *name, const char *text);

// Whether argv[*i] is a --set (as "--set k=v" or "--set=k=v"): 1 and the
// "k=v" in *value (advancing *i past it), 0 if not, -1 (error printed) when
// the value is missing. Commands pass the values on to recipe_load.
int recipe_arg_set(int argc, char **argv, int *i, const char **value);

// Frees what r owns and zeroes it.
void recipe_free(Recipe *r);

// Valid YAML that recipe_load reads back to the same recipe: every key, with
// defaults filled in.
void recipe_print_resolved(const Recipe *r, FILE *f);

// "file:line:column" of where key ("section.key") was set, "--set key", or
// "file" when it holds its default. For errors found after loading, e.g. a
// data.train glob that matches nothing. Returns buf.
char *recipe_where(const Recipe *r, const char *key, char *buf, size_t n);

// ---- the key table -----------------------------------------------------------

typedef enum {
    RK_INT, RK_FLOAT, RK_BOOL, RK_STRING, RK_PATH, RK_ENUM, RK_LIST, RK_FLOAT3,
} RecipeKeyType;

enum {
    RK_REQUIRED = 1,     // must be given (in the file or by --set)
    RK_MIN_OPEN = 2,     // the range excludes min
    RK_MAX_OPEN = 4,     // the range excludes max
    RK_UNIQUE = 8,       // list items must differ
};

typedef struct RecipeKey {
    const char *section;         // "" for top-level keys
    const char *key;
    RecipeKeyType type;
    const char *def;             // the default, written as YAML
    double min, max;             // RK_INT, RK_FLOAT, RK_FLOAT3 items
    unsigned flags;
    const char *const *allowed;  // RK_ENUM names, NULL-terminated
    size_t offset;               // into Recipe
    const char *doc;
} RecipeKey;

const RecipeKey *recipe_keys(int *n);
// The index of "section.key" (or a top-level key) in the table, or -1.
int recipe_key_index(const char *dotted);

// The key reference of docs/recipes.md: one markdown table per section.
void recipe_print_doc(FILE *f);
