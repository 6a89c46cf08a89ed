// recipe.c: the recipe key table and the strict YAML reader built on it.
// A value reaches the Recipe by one path, convert_node(), whether it comes
// from the file, from --set or from the table's default (itself YAML text),
// so the three obey the same type and range rules.
#include "train/recipe/recipe.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <yaml.h>               // defines: yaml_parser_load, yaml_document_t

#define NO_LIMIT HUGE_VAL

// Enum fields are written through an int, so every enum must be int-sized.
_Static_assert(sizeof(RecipeKl) == sizeof(int), "recipe enums are stored as int");

// ---- the key table ----------------------------------------------------------

static const char *const bad_sample_names[] = { "error", "skip", NULL };
static const char *const traj_repr_names[] = { "xyyaw", "accel_curvature", NULL };
static const char *const vocab_names[] = { "teacher", "from_logs", NULL };
static const char *const attention_names[] = { "prefix", "causal", NULL };
static const char *const kl_names[] = { "forward", "reverse", "jsd", NULL };
static const char *const traj_target_names[] = {
    "teacher_mean", "teacher_best", "teacher_all", "ground_truth", NULL };
static const char *const precision_names[] = { "fp32", "bf16", NULL };
static const char *const device_names[] = { "auto", "cpu", "cuda", NULL };
static const char *const export_dtype_names[] = { "fp32", "fp16", "bf16", NULL };

#define OFF(field) offsetof(Recipe, field)
#define INT_KEY(s, k, def, lo, hi, field, doc) { s, k, RK_INT, def, lo, hi, 0, NULL, OFF(field), doc }
#define NUM_KEY(s, k, def, lo, hi, fl, field, doc) { s, k, RK_FLOAT, def, lo, hi, fl, NULL, OFF(field), doc }
#define BOOL_KEY(s, k, def, field, doc) { s, k, RK_BOOL, def, 0, 1, 0, NULL, OFF(field), doc }
#define ENUM_KEY(s, k, def, names, field, doc) { s, k, RK_ENUM, def, 0, 0, 0, names, OFF(field), doc }
#define LIST_KEY(s, k, def, fl, field, doc) { s, k, RK_LIST, def, 0, 0, fl, NULL, OFF(field), doc }

// The order here is the order of the resolved printout and of the docs.
static const RecipeKey keys[] = {
    { "", "name", RK_STRING, "default", 0, 0, 0, NULL, OFF(name),
      "Run name: the run directory defaults to runs/<name>. Letters, digits, '.', '_' and '-'. "
      "Defaults to the recipe's file name without .yaml." },
    INT_KEY("", "seed", "1337", 0, INT_MAX, seed,
      "Seed of the initialisation and the data order: the same recipe and seed give the same run."),

    LIST_KEY("data", "train", "[]", RK_REQUIRED, data.train,
      "Glob patterns of the training shards (drive-log v1 HDF5), relative to the working directory. "
      "Expanded when the loader starts, which reports a pattern that matches nothing."),
    LIST_KEY("data", "eval", "[]", 0, data.eval,
      "Glob patterns of the evaluation shards. Empty: no evaluation."),
    LIST_KEY("data", "cameras", "[]", RK_UNIQUE, data.cameras,
      "Cameras the student sees, in this order. Empty: every camera of the shards, in their order."),
    INT_KEY("data", "history_frames", "2", 1, 64, data.history_frames,
      "Frames per camera fed to the student, the newest ones (the last is t0); at most the shards' F."),
    INT_KEY("data", "max_trace_tokens", "64", 0, 8192, data.max_trace_tokens,
      "Reasoning-trace positions kept per sample; longer traces are cut, shorter ones padded and masked. "
      "0 drops the trace and its losses."),
    ENUM_KEY("data", "on_bad_sample", "error", bad_sample_names, data.on_bad_sample,
      "A sample that breaks the drive-log rules: error stops the run (exit 2) naming file, dataset and "
      "index; skip drops it, counts it and reports the count. The same for an unusable shard (damaged, or "
      "disagreeing with the others): skip leaves it out with a warning line."),
    INT_KEY("data", "loader_threads", "2", 1, 256, data.loader_threads,
      "Loader threads reading and decompressing shards, beside the training threads."),
    INT_KEY("data", "prefetch", "4", 1, 1024, data.prefetch,
      "Micro-batches the loader reads ahead of the training step, beyond the step's own micro-batches "
      "(a step holds all of them at once, to normalise its losses over the global batch)."),

    INT_KEY("model", "dim", "256", 8, 65536, model.dim,
      "Width of the transformer (embedding size)."),
    INT_KEY("model", "layers", "6", 1, 1024, model.layers,
      "Number of pre-norm transformer blocks."),
    INT_KEY("model", "heads", "8", 1, 1024, model.heads,
      "Attention heads per block; must divide dim."),
    ENUM_KEY("model", "attention", "causal", attention_names, model.attention,
      "Which tokens attend to which: causal lets every token see only itself and the tokens before it; "
      "prefix lets the image, ego and command tokens see each other both ways, the trace tokens see that "
      "prefix and the trace before them, the action query sees everything. Causal is the default: on the "
      "demo fleet it trained the better student (docs/performance.md). train.init_from keeps the mask of "
      "the student it starts from (docs/model.md)."),
    INT_KEY("model", "mlp_ratio", "4", 1, 64, model.mlp_ratio,
      "MLP hidden width as a multiple of dim."),
    INT_KEY("model", "patch", "16", 1, 1024, model.patch,
      "Side of the square image patches, in pixels; must divide the shards' frame height and width."),
    INT_KEY("model", "horizon", "30", 1, 10000, model.horizon,
      "T: future waypoints predicted, at the shards' rate (hz); at most the shards' T."),
    ENUM_KEY("model", "traj_repr", "xyyaw", traj_repr_names, model.traj_repr,
      "What the trajectory head outputs: xyyaw regresses T (x, y, yaw) waypoints; accel_curvature "
      "outputs T (acceleration, curvature) pairs integrated by a unicycle model from v0 (the "
      "teacher's own action space)."),
    ENUM_KEY("model", "vocab", "from_logs", vocab_names, model.vocab,
      "Student vocabulary: teacher keeps the teacher's ids; from_logs builds a compact one from the "
      "ids in the training shards, plus <unk>. The mapping is saved with each checkpoint."),
    { "model", "image_mean", RK_FLOAT3, "[0.485, 0.456, 0.406]", 0, 1, 0, NULL, OFF(model.image_mean),
      "Per-channel RGB mean subtracted from pixels scaled to [0, 1]." },
    { "model", "image_std", RK_FLOAT3, "[0.229, 0.224, 0.225]", 0, 10, RK_MIN_OPEN, NULL, OFF(model.image_std),
      "Per-channel RGB standard deviation the centred pixels are divided by." },

    NUM_KEY("distill", "temperature", "2.0", 0, 100, RK_MIN_OPEN, distill.temperature,
      "T of token distillation: the teacher's top-k is re-tempered from its logged temperature to T "
      "and renormalised; the student's logits are divided by T."),
    ENUM_KEY("distill", "kl", "forward", kl_names, distill.kl,
      "Token divergence: forward KL(teacher || student), reverse KL(student || teacher), or jsd "
      "(generalised Jensen-Shannon with jsd_beta)."),
    NUM_KEY("distill", "jsd_beta", "0.5", 0, 1, RK_MIN_OPEN | RK_MAX_OPEN, distill.jsd_beta,
      "beta of JSD: the mixture is beta * teacher + (1 - beta) * student. Used when kl is jsd."),
    BOOL_KEY("distill", "tail_bucket", "true", distill.tail_bucket,
      "Add a tail bucket holding the probability mass outside the teacher's top-k (and, for the "
      "student, outside those k ids), instead of renormalising over the top-k alone."),
    BOOL_KEY("distill", "t2_scaling", "true", distill.t2_scaling,
      "Multiply the token loss by T^2, which keeps its gradient scale independent of T."),
    NUM_KEY("distill", "w_token_kl", "1.0", 0, 1e6, 0, distill.w_token_kl,
      "Weight of the token distillation loss."),
    NUM_KEY("distill", "w_ce", "0.5", 0, 1e6, 0, distill.w_ce,
      "Weight of the cross-entropy on the trace tokens the teacher emitted."),
    NUM_KEY("distill", "w_traj", "1.0", 0, 1e6, 0, distill.w_traj,
      "Weight of the trajectory loss."),
    ENUM_KEY("distill", "traj_target", "teacher_mean", traj_target_names, distill.traj_target,
      "What the trajectory is regressed to: teacher_mean, the weighted mean of the teacher's K samples; "
      "teacher_best, the closest sample (best of K); teacher_all, every sample weighted by its weight; "
      "ground_truth, the logged future (/ego/future), for fine-tuning."),
    NUM_KEY("distill", "yaw_weight", "1.0", 0, 1e6, 0, distill.yaw_weight,
      "Weight of the yaw term (radians) relative to the x and y terms (metres) of the trajectory loss."),
    NUM_KEY("distill", "huber_beta", "1.0", 0, 1000, RK_MIN_OPEN, distill.huber_beta,
      "beta of the smooth-L1 trajectory loss: quadratic below beta, linear above (metres, radians for yaw)."),
    NUM_KEY("distill", "w_feature", "0.0", 0, 1e6, 0, distill.w_feature,
      "Weight of the cosine feature loss between a learned projection of the student's pooled state "
      "and /teacher/embedding; 0 turns it off. The shards must hold /teacher/embedding when it is on."),

    INT_KEY("train", "steps", "1000", 1, INT_MAX, train.steps,
      "Optimizer steps: the length of the learning-rate schedule. --max-steps stops earlier "
      "without changing the schedule."),
    INT_KEY("train", "micro_batch", "16", 1, 65536, train.micro_batch,
      "Samples per forward/backward pass on one rank."),
    INT_KEY("train", "batch_size", "32", 1, INT_MAX, train.batch_size,
      "Global batch in samples per optimizer step: micro_batch x accumulation steps x ranks. "
      "Must be a multiple of micro_batch."),
    NUM_KEY("train", "lr", "3e-4", 0, 10, RK_MIN_OPEN, train.lr,
      "Peak learning rate of AdamW, reached after warmup_steps."),
    NUM_KEY("train", "min_lr", "3e-5", 0, 10, 0, train.min_lr,
      "Learning rate at the end of the cosine decay; at most lr."),
    INT_KEY("train", "warmup_steps", "100", 0, INT_MAX, train.warmup_steps,
      "Steps of linear warmup from 0 to lr; at most steps."),
    NUM_KEY("train", "weight_decay", "0.05", 0, 10, 0, train.weight_decay,
      "AdamW decoupled weight decay, applied to the linear layers' weight matrices only: not to biases, "
      "layernorms or embedding tables (the tied tok_emb included); see docs/model.md."),
    NUM_KEY("train", "beta1", "0.9", 0, 1, RK_MAX_OPEN, train.beta1, "AdamW beta1."),
    NUM_KEY("train", "beta2", "0.95", 0, 1, RK_MAX_OPEN, train.beta2, "AdamW beta2."),
    NUM_KEY("train", "eps", "1e-8", 0, 1, RK_MIN_OPEN, train.eps, "AdamW epsilon."),
    NUM_KEY("train", "grad_clip", "1.0", 0, 1e6, 0, train.grad_clip,
      "Clip the global gradient norm to this value; 0 turns clipping off."),
    INT_KEY("train", "eval_every", "500", 0, INT_MAX, train.eval_every,
      "Evaluate on data.eval every this many steps; 0: only at the end."),
    INT_KEY("train", "eval_samples", "0", 0, INT_MAX, train.eval_samples,
      "Evaluation samples used by the periodic evaluations; 0: all of them. The final one uses all."),
    INT_KEY("train", "checkpoint_every", "1000", 0, INT_MAX, train.checkpoint_every,
      "Write a checkpoint every this many steps; 0: only at the end."),
    INT_KEY("train", "keep_checkpoints", "3", 0, 1000000, train.keep_checkpoints,
      "Checkpoints kept in the run directory, newest first; 0 keeps them all."),
    ENUM_KEY("train", "precision", "fp32", precision_names, train.precision,
      "Precision of the model's matrix products: bf16 rounds both operands of every product (forward "
      "and backward) to bf16 and sums in fp32, on the CPU and on CUDA at the same points, and the "
      "attention reads its q, k, v as bf16 (its math stays fp32); the activations only those read "
      "are stored bf16 (docs/performance.md). Every other op's math, the gradients, the losses, the "
      "master weights and the optimizer state stay fp32. Checkpoints are fp32 either way, so a run "
      "resumes in the other precision."),
    ENUM_KEY("train", "device", "auto", device_names, train.device,
      "Where to train. cuda: the GPU, once distil's quick self-test has passed on it (run at its "
      "first use by this binary and driver, then cached; a failure is refused with one line naming "
      "the op); auto: the GPU when there is one and it passes, else the CPU (docs/cli.md)."),
    BOOL_KEY("train", "allow_tf32", "true", train.allow_tf32,
      "Let the fp32 matrix products on the GPU use TF32 tensor cores (~1e-3 relative error per "
      "product; train.precision fp32 only)."),
    INT_KEY("train", "max_bad_steps", "5", 1, 1000000, train.max_bad_steps,
      "A step with a non-finite loss or gradient is skipped (no weight is touched) and counted; "
      "this many in a row stop the run."),
    { "train", "init_from", RK_PATH, "\"\"", 0, 0, 0, NULL, OFF(train.init_from),
      "Start from the weights of this student: an export bundle or checkpoint directory (its vocab.json "
      "is kept as the run's vocabulary) or a .safetensors file, relative to the working directory; it "
      "must exist. Its input normalisation, image size, cameras, horizon and trajectory representation "
      "must be this run's, and the shards' teacher vocabulary the one it was trained on (each checked, "
      "naming both values). Parameters the file lacks keep their initialisation. Empty: train from scratch." },
    LIST_KEY("train", "freeze", "[]", 0, train.freeze,
      "Glob patterns of parameter names (as in docs/model.md) that are not trained."),
    INT_KEY("train", "log_every", "10", 1, INT_MAX, train.log_every,
      "Print the progress line every this many steps (metrics.jsonl and TensorBoard get every step)."),

    NUM_KEY("dist", "bucket_mb", "25", 0, 4096, RK_MIN_OPEN, dist.bucket_mb,
      "Size of the gradient all-reduce buckets, MiB of fp32 gradients (fractions allowed: 0.0001 is 26 floats)."),
    ENUM_KEY("dist", "grad_dtype", "fp32", precision_names, dist.grad_dtype,
      "Type of the gradients on the wire; they are accumulated in fp32 either way."),
    INT_KEY("dist", "zero", "0", 0, 1, dist.zero,
      "1 shards the optimizer state across ranks (ZeRO stage 1); 0 keeps a full copy on every rank."),
    INT_KEY("dist", "timeout_s", "600", 1, 86400, dist.timeout_s,
      "Seconds a collective may wait before the run is declared hung and stopped."),

    ENUM_KEY("export", "dtype", "fp32", export_dtype_names, export.dtype,
      "Type of the exported weights."),
    BOOL_KEY("export", "onnx", "false", export.onnx,
      "Also write an ONNX graph of the student."),
    // 17: the student's graph uses LayerNormalization (train/cmd/export.c).
    INT_KEY("export", "opset", "17", 17, 21, export.opset,
      "ONNX opset of that graph (LayerNormalization needs 17)."),
};
#define N_KEYS (int)(sizeof keys / sizeof keys[0])

static const char *const sections[] = { "data", "model", "distill", "train", "dist", "export" };
#define N_SECTIONS (int)(sizeof sections / sizeof sections[0])

const RecipeKey *recipe_keys(int *n) {
    *n = N_KEYS;
    return keys;
}

// "section.key" of key i into buf (just "key" at the top level).
static const char *dotted_name(int i, char *buf, size_t n) {
    if (keys[i].section[0]) snprintf(buf, n, "%s.%s", keys[i].section, keys[i].key);
    else snprintf(buf, n, "%s", keys[i].key);
    return buf;
}

int recipe_key_index(const char *dotted) {
    char name[96];
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(dotted, dotted_name(i, name, sizeof name))) return i;
    return -1;
}

static int key_in_section(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section) && !strcmp(keys[i].key, key)) return i;
    return -1;
}

// The first key of section s in the table (for examples in messages).
static int first_key_of(const char *section) {
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section)) return i;
    return 0;
}

static int is_section(const char *s) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (!strcmp(sections[i], s)) return i;
    return -1;
}

// ---- suggestions for misspelt keys ------------------------------------------

// Optimal-string-alignment distance: edits plus adjacent transpositions, so
// "trian" is one step from "train".
static int edit_distance(const char *a, const char *b) {
    int na = (int)strlen(a), nb = (int)strlen(b);
    if (na > 63 || nb > 63) return 99;
    int d[64][64];
    for (int i = 0; i <= na; i++) d[i][0] = i;
    for (int j = 0; j <= nb; j++) d[0][j] = j;
    for (int i = 1; i <= na; i++)
        for (int j = 1; j <= nb; j++) {
            int cost = a[i - 1] != b[j - 1];
            int best = d[i - 1][j - 1] + cost;
            if (d[i - 1][j] + 1 < best) best = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < best) best = d[i][j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < best)
                best = d[i - 2][j - 2] + 1;
            d[i][j] = best;
        }
    return d[na][nb];
}

static int close_enough(const char *word, int dist) {
    int len = (int)strlen(word);
    return dist <= (len <= 3 ? 1 : len <= 6 ? 2 : 3);
}

// The best "did you mean" for an unknown key written in section ("" at the
// top level): a close key of the same section first, then the same or a close
// key of another section (written in the wrong place), then a section name.
// Returns 0 when nothing is close.
static int suggest(const char *section, const char *word, char *out, size_t n) {
    int best = -1, best_score = INT_MAX;
    char name[96];
    for (int i = 0; i < N_KEYS; i++) {
        int dist = edit_distance(word, keys[i].key);
        if (!close_enough(word, dist)) continue;
        int score = 2 * dist + (strcmp(keys[i].section, section) != 0);
        if (score < best_score) best_score = score, best = i;
    }
    if (!section[0])
        for (int s = 0; s < N_SECTIONS; s++) {
            int dist = edit_distance(word, sections[s]);
            if (close_enough(word, dist) && 2 * dist < best_score) {
                snprintf(out, n, "%s", sections[s]);
                return 1;
            }
        }
    if (best < 0) return 0;
    snprintf(out, n, "%s", dotted_name(best, name, sizeof name));
    return 1;
}

// ---- errors -----------------------------------------------------------------

// Where values come from while a recipe is read, and how errors are worded.
typedef struct {
    const char *path;         // the recipe file, for file:line:column
    const char *set_key;      // non-NULL while applying --set: errors say "--set KEY"
    int defaults;             // applying the table's defaults: an error is a bug here
    RecipeSource *src;        // one per key
    yaml_mark_t section_mark[N_SECTIONS];
    int section_seen[N_SECTIONS];
} Reader;

static void vreport(const char *where, const char *fmt, va_list ap) {
    fprintf(stderr, "distil: error: %s: ", where);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

// An error at a YAML position of the file (or in a --set value). Returns 2.
static int fail_at(const Reader *rd, yaml_mark_t m, const char *fmt, ...) {
    char where[4400];
    if (rd->set_key) snprintf(where, sizeof where, "--set %s", rd->set_key);
    else snprintf(where, sizeof where, "%s:%zu:%zu", rd->path, m.line + 1, m.column + 1);
    va_list ap;
    va_start(ap, fmt);
    vreport(where, fmt, ap);
    va_end(ap);
    if (rd->defaults) abort();  // a table default broke the table's own rules
    return 2;
}

// An error in the value of key name (or of an item of it, "data.train[1]"):
// "file:L:C: name: ..." or, from --set, "--set name: ...".
static int fail_value(const Reader *rd, yaml_mark_t m, const char *name, const char *fmt, ...) {
    char where[4400];
    if (rd->set_key) snprintf(where, sizeof where, "--set %s", name);
    else snprintf(where, sizeof where, "%s:%zu:%zu: %s", rd->path, m.line + 1, m.column + 1, name);
    va_list ap;
    va_start(ap, fmt);
    vreport(where, fmt, ap);
    va_end(ap);
    if (rd->defaults) abort();
    return 2;
}

// An error about key i's value after it was set: points at where it was set.
static int fail_key(const Reader *rd, int i, const char *fmt, ...) {
    char where[4400], name[96];
    const RecipeSource *s = &rd->src[i];
    dotted_name(i, name, sizeof name);
    if (s->from_set) snprintf(where, sizeof where, "--set %s", name);
    else if (s->line) snprintf(where, sizeof where, "%s:%d:%d: %s", rd->path, s->line, s->column, name);
    else snprintf(where, sizeof where, "%s: %s", rd->path, name);
    va_list ap;
    va_start(ap, fmt);
    vreport(where, fmt, ap);
    va_end(ap);
    return 2;
}

static int is_given(const Reader *rd, int i) { return rd->src[i].from_set || rd->src[i].line; }

// Of two keys in a broken rule, the one to point at: one given by --set
// (what the user just changed), else b when it was given, else a (a rule
// between two defaults cannot break).
static int blame(const Reader *rd, int a, int b) {
    if (rd->src[b].from_set) return b;
    if (rd->src[a].from_set) return a;
    return is_given(rd, b) || !is_given(rd, a) ? b : a;
}

// Where the other key of a broken rule came from, for the message:
// " (--set KEY)", " (FILE:L:C)" beside a blamed --set, " (line L)" beside
// a blamed line of the same file, " (the default)".
static const char *other_where(const Reader *rd, int blamed, int i, char *buf, size_t n) {
    const RecipeSource *s = &rd->src[i];
    char name[96];
    dotted_name(i, name, sizeof name);
    if (s->from_set) snprintf(buf, n, " (--set %s)", name);
    else if (s->line && rd->src[blamed].from_set) snprintf(buf, n, " (%s:%d:%d)", rd->path, s->line, s->column);
    else if (s->line) snprintf(buf, n, " (line %d)", s->line);
    else snprintf(buf, n, " (the default)");
    return buf;
}

// ---- converting one YAML node to a key's value --------------------------------

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }
static int is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}
static int is_null(const yaml_node_t *n) {
    if (!is_plain(n)) return 0;
    const char *s = scalar(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

// How a value is shown in "got ...": its text, cut to a readable length.
static const char *describe(const yaml_node_t *n, char *buf, size_t size) {
    if (n->type == YAML_MAPPING_NODE) return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE) return "a list";
    if (is_null(n)) return "nothing";
    const char *s = scalar(n);
    snprintf(buf, size, "%s\"%.40s%s\"", is_plain(n) ? "" : "the quoted string ", s, strlen(s) > 40 ? "..." : "");
    return buf;
}

// "[1, 64]", "(0, 1)", ">= 0" or "> 0", as the docs and errors write ranges.
static const char *range_text(const RecipeKey *k, char *buf, size_t n) {
    const char *lo = k->flags & RK_MIN_OPEN ? "(" : "[", *hi = k->flags & RK_MAX_OPEN ? ")" : "]";
    if (k->max >= NO_LIMIT || (k->type == RK_INT && k->max >= INT_MAX))
        snprintf(buf, n, "%s %g", k->flags & RK_MIN_OPEN ? ">" : ">=", k->min);
    else snprintf(buf, n, "%s%g, %g%s", lo, k->min, k->max, hi);
    return buf;
}

static int in_range(const RecipeKey *k, double v) {
    if (v < k->min || v > k->max) return 0;
    if ((k->flags & RK_MIN_OPEN) && v == k->min) return 0;
    if ((k->flags & RK_MAX_OPEN) && v == k->max) return 0;
    return 1;
}

// Strict YAML numbers: decimal only; .inf, .nan, hex and "1_000" are refused.
static int parse_int(const yaml_node_t *n, long long *out) {
    if (!is_plain(n)) return 0;
    const char *s = scalar(n);
    const char *p = s + (*s == '-' || *s == '+');
    if (!*p) return 0;
    for (; *p; p++) if (!isdigit((unsigned char)*p)) return 0;
    errno = 0;
    *out = strtoll(s, NULL, 10);
    return errno == 0;
}

static int parse_number(const yaml_node_t *n, double *out) {
    if (!is_plain(n)) return 0;
    const char *s = scalar(n);
    if (!*s || strspn(s, "0123456789+-.eE") != strlen(s)) return 0;
    char *end;
    *out = strtod(s, &end);
    return *end == '\0' && isfinite(*out);
}

static int convert_number(Reader *rd, const char *name, const RecipeKey *k, const yaml_node_t *n, double *out) {
    char got[96], range[64];
    if (!parse_number(n, out))
        return fail_value(rd, n->start_mark, name, "expected a number, got %s", describe(n, got, sizeof got));
    if (!in_range(k, *out))
        return fail_value(rd, n->start_mark, name, "%s is out of range %s", scalar(n), range_text(k, range, sizeof range));
    return 0;
}

static int convert_int(Reader *rd, const char *name, const RecipeKey *k, const yaml_node_t *n, int *out) {
    char got[96], range[64];
    long long v;
    if (!parse_int(n, &v))
        return fail_value(rd, n->start_mark, name, "expected an integer, got %s", describe(n, got, sizeof got));
    if (!in_range(k, (double)v) || v > INT_MAX)
        return fail_value(rd, n->start_mark, name, "%s is out of range %s", scalar(n), range_text(k, range, sizeof range));
    *out = (int)v;
    return 0;
}

static int convert_bool(Reader *rd, const char *name, const yaml_node_t *n, int *out) {
    char got[96];
    static const char *const yes[] = { "true", "True", "TRUE" }, *const no[] = { "false", "False", "FALSE" };
    for (int i = 0; i < 3 && is_plain(n); i++) {
        if (!strcmp(scalar(n), yes[i])) return *out = 1, 0;
        if (!strcmp(scalar(n), no[i])) return *out = 0, 0;
    }
    return fail_value(rd, n->start_mark, name, "expected true or false, got %s", describe(n, got, sizeof got));
}

static int convert_enum(Reader *rd, const char *name, const RecipeKey *k, const yaml_node_t *n, int *out) {
    char got[96], allowed[256] = "";
    if (n->type == YAML_SCALAR_NODE)
        for (int i = 0; k->allowed[i]; i++)
            if (!strcmp(scalar(n), k->allowed[i])) return *out = i, 0;
    for (int i = 0; k->allowed[i]; i++)
        snprintf(allowed + strlen(allowed), sizeof allowed - strlen(allowed), "%s%s", i ? ", " : "", k->allowed[i]);
    return fail_value(rd, n->start_mark, name, "expected one of %s, got %s", allowed, describe(n, got, sizeof got));
}

static int convert_string(Reader *rd, const char *name, const yaml_node_t *n, char **out) {
    char got[96];
    if (n->type != YAML_SCALAR_NODE || is_null(n) || !*scalar(n))
        return fail_value(rd, n->start_mark, name, "expected a non-empty string, got %s", describe(n, got, sizeof got));
    *out = strdup(scalar(n));
    return 0;
}

// Whether the path exists is checked after the overrides (check_paths), so
// that --set can replace a path the file names.
static int convert_path(Reader *rd, const char *name, const yaml_node_t *n, char **out) {
    char got[96];
    if (n->type != YAML_SCALAR_NODE)
        return fail_value(rd, n->start_mark, name, "expected a path, got %s", describe(n, got, sizeof got));
    *out = strdup(is_null(n) ? "" : scalar(n));
    return 0;
}

static void list_free(RecipeList *l) {
    for (int i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

static int convert_list(Reader *rd, const char *name, const RecipeKey *k, yaml_document_t *d,
                        const yaml_node_t *n, RecipeList *out) {
    char got[96], item_name[112];
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_value(rd, n->start_mark, name, "expected a list of strings such as [\"a\", \"b\"] ([] for none), got %s",
                       describe(n, got, sizeof got));
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    RecipeList l = { calloc((size_t)count + 1, sizeof(char *)), 0 };
    for (int i = 0; i < count; i++) {
        const yaml_node_t *item = yaml_document_get_node(d, n->data.sequence.items.start[i]);
        snprintf(item_name, sizeof item_name, "%s[%d]", name, i);
        if (item->type != YAML_SCALAR_NODE || is_null(item) || !*scalar(item)) {
            list_free(&l);
            return fail_value(rd, item->start_mark, item_name, "expected a non-empty string, got %s",
                              describe(item, got, sizeof got));
        }
        for (int j = 0; j < l.n && (k->flags & RK_UNIQUE); j++)
            if (!strcmp(l.items[j], scalar(item))) {
                list_free(&l);
                return fail_value(rd, item->start_mark, item_name, "\"%s\" is already item %d; list each once",
                                  scalar(item), j);
            }
        l.items[l.n++] = strdup(scalar(item));
    }
    list_free(out);
    *out = l;
    return 0;
}

static int convert_float3(Reader *rd, const char *name, const RecipeKey *k, yaml_document_t *d,
                          const yaml_node_t *n, double *out) {
    char got[96], item_name[112];
    if (n->type != YAML_SEQUENCE_NODE)
        return fail_at(rd, n->start_mark, "%s: expected a list of 3 numbers (R, G, B), got %s", name,
                       describe(n, got, sizeof got));
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count != 3)
        return fail_value(rd, n->start_mark, name, "expected a list of 3 numbers (R, G, B), got %d", count);
    double v[3];
    for (int i = 0; i < 3; i++) {
        snprintf(item_name, sizeof item_name, "%s[%d]", name, i);
        if (convert_number(rd, item_name, k, yaml_document_get_node(d, n->data.sequence.items.start[i]), &v[i]))
            return 2;
    }
    memcpy(out, v, sizeof v);
    return 0;
}

// Converts node n to key i's type and stores it in r. Returns 0 or 2.
static int convert_node(Reader *rd, Recipe *r, int i, yaml_document_t *d, const yaml_node_t *n) {
    const RecipeKey *k = &keys[i];
    char name[96];
    dotted_name(i, name, sizeof name);
    void *field = (char *)r + k->offset;
    int v = 0;
    char *s = NULL;
    switch (k->type) {
    case RK_INT: return convert_int(rd, name, k, n, (int *)field);
    case RK_FLOAT: return convert_number(rd, name, k, n, (double *)field);
    case RK_FLOAT3: return convert_float3(rd, name, k, d, n, (double *)field);
    case RK_BOOL: return convert_bool(rd, name, n, (int *)field);
    case RK_ENUM:
        if (convert_enum(rd, name, k, n, &v)) return 2;
        memcpy(field, &v, sizeof v);
        return 0;
    case RK_STRING:
    case RK_PATH:
        if ((k->type == RK_STRING ? convert_string : convert_path)(rd, name, n, &s)) return 2;
        free(*(char **)field);
        *(char **)field = s;
        return 0;
    case RK_LIST: return convert_list(rd, name, k, d, n, (RecipeList *)field);
    }
    return 2;
}

// Parses text as a one-document YAML value and converts it to key i: the path
// of --set values and of the table's defaults.
static int convert_text(Reader *rd, Recipe *r, int i, const char *text) {
    yaml_parser_t p;
    yaml_document_t d;
    yaml_parser_initialize(&p);
    // An empty value ("--set train.init_from=") means null, as in a file.
    const char *t = *text ? text : "~";
    yaml_parser_set_input_string(&p, (const unsigned char *)t, strlen(t));
    int rc;
    if (!yaml_parser_load(&p, &d)) {
        rc = fail_at(rd, p.problem_mark, "the value \"%s\" is not valid YAML (%s); quote strings that hold "
                     "YAML's special characters, e.g. '[\"*.h5\"]'", text, p.problem ? p.problem : "?");
        yaml_parser_delete(&p);
        return rc;
    }
    yaml_node_t *root = yaml_document_get_root_node(&d);
    rc = root ? convert_node(rd, r, i, &d, root) : fail_at(rd, p.mark, "no value given");
    yaml_document_delete(&d);
    yaml_parser_delete(&p);
    return rc;
}

// ---- defaults, freeing --------------------------------------------------------

void recipe_defaults(Recipe *r) {
    memset(r, 0, sizeof *r);
    Reader rd = { .path = "the key table's defaults", .defaults = 1 };
    for (int i = 0; i < N_KEYS; i++) {
        rd.set_key = keys[i].key;
        convert_text(&rd, r, i, keys[i].def);
    }
}

void recipe_free(Recipe *r) {
    for (int i = 0; i < N_KEYS; i++) {
        void *field = (char *)r + keys[i].offset;
        if (keys[i].type == RK_STRING || keys[i].type == RK_PATH) free(*(char **)field);
        if (keys[i].type == RK_LIST) list_free((RecipeList *)field);
    }
    free(r->path);
    free(r->sources);
    memset(r, 0, sizeof *r);
}

// ---- reading the file ---------------------------------------------------------

static int check_key_node(Reader *rd, const yaml_node_t *k, const char *where) {
    char got[96];
    if (k->type == YAML_SCALAR_NODE && !is_null(k)) return 0;
    return fail_at(rd, k->start_mark, "expected a key name %s, got %s", where, describe(k, got, sizeof got));
}

// A key repeated in one mapping: YAML forbids it, and libyaml does not check.
static int check_duplicate(Reader *rd, yaml_document_t *d, const yaml_node_t *map, const yaml_node_pair_t *pair,
                           const char *section) {
    const char *name = scalar(yaml_document_get_node(d, pair->key));
    for (const yaml_node_pair_t *q = map->data.mapping.pairs.start; q < pair; q++) {
        const yaml_node_t *prev = yaml_document_get_node(d, q->key);
        if (prev->type == YAML_SCALAR_NODE && !strcmp(scalar(prev), name))
            return fail_at(rd, yaml_document_get_node(d, pair->key)->start_mark,
                           "duplicate key %s%s%s (first given at line %zu); give each key once",
                           section, *section ? "." : "", name, prev->start_mark.line + 1);
    }
    return 0;
}

// v is the key's value: a mapping at the top level reads as a misspelt section.
static int unknown_key(Reader *rd, const yaml_node_t *k, const yaml_node_t *v, const char *section) {
    char hint[96];
    const char *name = scalar(k);
    const char *what = !*section && v->type == YAML_MAPPING_NODE ? "section" : "key";
    if (suggest(section, name, hint, sizeof hint))
        return fail_at(rd, k->start_mark, "unknown %s %s%s%s; did you mean %s?", what, section, *section ? "." : "",
                       name, hint);
    if (!*section)
        return fail_at(rd, k->start_mark, "unknown %s %s; the top level holds name, seed and the sections "
                       "data, model, distill, train, dist, export", what, name);
    char known[1024] = "";
    for (int i = 0; i < N_KEYS; i++)
        if (!strcmp(keys[i].section, section))
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", keys[i].key);
    return fail_at(rd, k->start_mark, "unknown key %s.%s; %s holds %s", section, name, section, known);
}

static int set_from_file(Reader *rd, Recipe *r, int i, yaml_document_t *d, const yaml_node_t *v) {
    if (convert_node(rd, r, i, d, v)) return 2;
    rd->src[i] = (RecipeSource){ (int)v->start_mark.line + 1, (int)v->start_mark.column + 1, 0 };
    return 0;
}

static int read_section(Reader *rd, Recipe *r, yaml_document_t *d, int s, const yaml_node_t *map) {
    char got[96];
    if (map->type != YAML_MAPPING_NODE)
        return fail_at(rd, map->start_mark, "%s: expected a mapping of keys (key: value lines indented under %s:), got %s",
                       sections[s], sections[s], describe(map, got, sizeof got));
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
        if (check_key_node(rd, k, "in a section") || check_duplicate(rd, d, map, p, sections[s])) return 2;
        int i = key_in_section(sections[s], scalar(k));
        if (i < 0) return unknown_key(rd, k, v, sections[s]);
        if (set_from_file(rd, r, i, d, v)) return 2;
    }
    return 0;
}

static int read_root(Reader *rd, Recipe *r, yaml_document_t *d) {
    char got[96];
    yaml_node_t *root = yaml_document_get_root_node(d);
    if (!root) {
        yaml_mark_t start = { 0 };
        return fail_at(rd, start, "the recipe is empty; it needs at least a data: section with train: shard globs");
    }
    if (root->type != YAML_MAPPING_NODE || is_null(root))
        return fail_at(rd, root->start_mark, "expected a mapping of sections (data:, model:, ...) at the top level, got %s",
                       describe(root, got, sizeof got));
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(d, p->key), *v = yaml_document_get_node(d, p->value);
        if (check_key_node(rd, k, "at the top level") || check_duplicate(rd, d, root, p, "")) return 2;
        int s = is_section(scalar(k));
        if (s >= 0) {
            rd->section_seen[s] = 1;
            rd->section_mark[s] = k->start_mark;
            if (read_section(rd, r, d, s, v)) return 2;
            continue;
        }
        int i = key_in_section("", scalar(k));
        if (i < 0) return unknown_key(rd, k, v, "");
        if (set_from_file(rd, r, i, d, v)) return 2;
    }
    return 0;
}

// libyaml's reader reports a bad byte by its offset only; count the lines
// up to it so that the error still reads file:line:column.
static yaml_mark_t mark_of_offset(const char *path, size_t offset) {
    yaml_mark_t m = { offset, 0, 0 };
    FILE *f = fopen(path, "rb");
    for (size_t i = 0; f && i < offset; i++) {
        int c = fgetc(f);
        if (c == EOF) break;
        if (c == '\n') m.line++, m.column = 0;
        else m.column++;
    }
    if (f) fclose(f);
    return m;
}

static int yaml_error(Reader *rd, const yaml_parser_t *p) {
    if (p->error == YAML_MEMORY_ERROR) return fail_at(rd, p->problem_mark, "out of memory reading the recipe");
    if (p->error == YAML_READER_ERROR)
        return fail_at(rd, mark_of_offset(rd->path, p->problem_offset),
                       "not a readable YAML file: %s; save it as UTF-8 text", p->problem);
    if (p->context)
        return fail_at(rd, p->problem_mark, "YAML syntax error: %s (%s at line %zu)", p->problem, p->context,
                       p->context_mark.line + 1);
    return fail_at(rd, p->problem_mark, "YAML syntax error: %s", p->problem);
}

static int read_stream(Reader *rd, Recipe *r, FILE *f);

static int read_file(Reader *rd, Recipe *r, const char *path) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "distil: error: %s: is a directory; name a recipe file, e.g. recipes/demo.yaml\n", path);
        return 2;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "distil: error: %s: cannot read the recipe: %s\n", path, strerror(errno));
        return 2;
    }
    int rc = read_stream(rd, r, f);
    fclose(f);
    return rc;
}

static int read_stream(Reader *rd, Recipe *r, FILE *f) {
    yaml_parser_t p;
    yaml_document_t d;
    yaml_parser_initialize(&p);
    yaml_parser_set_input_file(&p, f);
    int rc = yaml_parser_load(&p, &d) ? 0 : yaml_error(rd, &p);
    if (!rc) {
        rc = read_root(rd, r, &d);
        yaml_document_delete(&d);
    }
    // A second document would be silently ignored; refuse it instead.
    if (!rc && !yaml_parser_load(&p, &d)) rc = yaml_error(rd, &p);
    else if (!rc) {
        yaml_node_t *extra = yaml_document_get_root_node(&d);
        if (extra) rc = fail_at(rd, d.start_mark, "a second YAML document (after ---); a recipe is one document");
        yaml_document_delete(&d);
    }
    yaml_parser_delete(&p);
    return rc;
}

// ---- --set ------------------------------------------------------------------

static int apply_override(Reader *rd, Recipe *r, const char *arg) {
    const char *eq = strchr(arg, '=');
    char key[96], hint[96];
    int len = eq ? (int)(eq - arg) : (int)strlen(arg);
    snprintf(key, sizeof key, "%.*s", len, arg);
    if (!eq) {
        fprintf(stderr, "distil: error: --set %s: expected section.key=value, e.g. --set train.lr=1e-3\n", key);
        return 2;
    }
    int i = recipe_key_index(key);
    if (i < 0 && is_section(key) >= 0) {
        fprintf(stderr, "distil: error: --set %s: name one key of the section, e.g. --set %s.%s=...\n", key, key,
                keys[first_key_of(key)].key);
        return 2;
    }
    if (i < 0) {
        const char *dot = strrchr(key, '.');
        char section[96];
        snprintf(section, sizeof section, "%.*s", dot ? (int)(dot - key) : 0, key);
        if (suggest(is_section(section) >= 0 ? section : "", dot ? dot + 1 : key, hint, sizeof hint))
            fprintf(stderr, "distil: error: --set %s: unknown key; did you mean %s?\n", key, hint);
        else fprintf(stderr, "distil: error: --set %s: unknown key; see docs/recipes.md for the keys\n", key);
        return 2;
    }
    rd->set_key = key;
    int rc = convert_text(rd, r, i, eq + 1);
    rd->set_key = NULL;
    if (!rc) rd->src[i] = (RecipeSource){ 0, 0, 1 };
    return rc;
}

// ---- rules between keys -------------------------------------------------------

static int K(const char *dotted) {
    int i = recipe_key_index(dotted);
    if (i < 0) abort();  // a rule names a key the table lacks
    return i;
}

static int check_name(Reader *rd, const Recipe *r) {
    for (const char *c = r->name; *c; c++)
        if (!isalnum((unsigned char)*c) && !strchr("._-", *c))
            return fail_key(rd, K("name"), "\"%s\" is not a usable run directory name; use letters, "
                            "digits, '.', '_' and '-'", r->name);
    if (r->name[0] == '.')
        return fail_key(rd, K("name"), "\"%s\" must not start with '.'", r->name);
    return 0;
}

static int check_required(Reader *rd) {
    char name[96];
    for (int i = 0; i < N_KEYS; i++) {
        if (!(keys[i].flags & RK_REQUIRED) || is_given(rd, i)) continue;
        int s = is_section(keys[i].section);
        yaml_mark_t at = s >= 0 && rd->section_seen[s] ? rd->section_mark[s] : (yaml_mark_t){ 0 };
        return fail_at(rd, at, "%s: required key is missing; add it under %s: (see docs/recipes.md)",
                       dotted_name(i, name, sizeof name), keys[i].section);
    }
    return 0;
}

// A missing file should stop the run before any work, pointing at the key.
static int check_paths(Reader *rd, const Recipe *r) {
    for (int i = 0; i < N_KEYS; i++) {
        const char *path = keys[i].type == RK_PATH ? *(char *const *)((const char *)r + keys[i].offset) : NULL;
        struct stat st;
        if (path && *path && stat(path, &st) != 0)
            return fail_key(rd, i, "\"%s\" does not exist (paths are relative to the working directory)", path);
    }
    return 0;
}

static int check_rules(Reader *rd, const Recipe *r) {
    const RecipeModel *m = &r->model;
    const RecipeTrain *t = &r->train;
    const RecipeDistill *ds = &r->distill;
    char other[4400];
    int k;
    if (check_name(rd, r)) return 2;
    // Each rule between two keys is told from the side of the key blamed,
    // naming where the other one came from.
    if (m->dim % m->heads) {
        if ((k = blame(rd, K("model.dim"), K("model.heads"))) == K("model.heads"))
            return fail_key(rd, k, "%d does not divide model.dim %d%s; pick heads so that dim/heads is whole",
                            m->heads, m->dim, other_where(rd, k, K("model.dim"), other, sizeof other));
        return fail_key(rd, k, "%d is not divisible by model.heads %d%s; pick dim so that dim/heads is whole",
                        m->dim, m->heads, other_where(rd, k, K("model.heads"), other, sizeof other));
    }
    if (t->batch_size % t->micro_batch) {
        if ((k = blame(rd, K("train.micro_batch"), K("train.batch_size"))) == K("train.batch_size"))
            return fail_key(rd, k, "%d is not a multiple of train.micro_batch %d%s", t->batch_size, t->micro_batch,
                            other_where(rd, k, K("train.micro_batch"), other, sizeof other));
        return fail_key(rd, k, "%d does not divide train.batch_size %d%s", t->micro_batch, t->batch_size,
                        other_where(rd, k, K("train.batch_size"), other, sizeof other));
    }
    if (t->min_lr > t->lr) {
        if ((k = blame(rd, K("train.lr"), K("train.min_lr"))) == K("train.min_lr"))
            return fail_key(rd, k, "%g is above train.lr %g%s; the schedule decays from lr down to min_lr", t->min_lr,
                            t->lr, other_where(rd, k, K("train.lr"), other, sizeof other));
        return fail_key(rd, k, "%g is below train.min_lr %g%s; the schedule decays from lr down to min_lr", t->lr,
                        t->min_lr, other_where(rd, k, K("train.min_lr"), other, sizeof other));
    }
    if (t->warmup_steps > t->steps) {
        if ((k = blame(rd, K("train.steps"), K("train.warmup_steps"))) == K("train.warmup_steps"))
            return fail_key(rd, k, "%d is more than train.steps %d%s", t->warmup_steps, t->steps,
                            other_where(rd, k, K("train.steps"), other, sizeof other));
        return fail_key(rd, k, "%d is fewer than train.warmup_steps %d%s; lower the warmup too "
                        "(--set train.warmup_steps=N)", t->steps, t->warmup_steps,
                        other_where(rd, k, K("train.warmup_steps"), other, sizeof other));
    }
    if (ds->w_token_kl + ds->w_ce + ds->w_traj + ds->w_feature <= 0)
        return fail_key(rd, blame(rd, K("distill.w_token_kl"), K("distill.w_traj")),
                        "every loss weight (w_token_kl, w_ce, w_traj, w_feature) is 0; nothing would be trained");
    if (r->data.max_trace_tokens == 0 && (ds->w_token_kl > 0 || ds->w_ce > 0)) {
        int i = ds->w_token_kl > 0 ? K("distill.w_token_kl") : K("distill.w_ce");
        double w = ds->w_token_kl > 0 ? ds->w_token_kl : ds->w_ce;
        if ((k = blame(rd, i, K("data.max_trace_tokens"))) == K("data.max_trace_tokens"))
            return fail_key(rd, k, "no trace tokens are kept (data.max_trace_tokens 0) but distill.%s is %g%s; keep some tokens or set "
                            "w_token_kl and w_ce to 0", keys[i].key, w, other_where(rd, k, i, other, sizeof other));
        return fail_key(rd, k, "%g, but no trace tokens are kept (data.max_trace_tokens 0%s); keep some tokens or "
                        "set w_token_kl and w_ce to 0", w, other_where(rd, k, K("data.max_trace_tokens"), other, sizeof other));
    }
    return 0;
}

// ---- recipe_load ----------------------------------------------------------------

// "recipes/demo.yaml" -> "demo".
static char *basename_stem(const char *path) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    size_t n = strlen(b);
    if (n > 5 && !strcmp(b + n - 5, ".yaml")) n -= 5;
    else if (n > 4 && !strcmp(b + n - 4, ".yml")) n -= 4;
    return strndup(b, n);
}

int recipe_load(Recipe *r, const char *path, char **overrides, int n_overrides) {
    recipe_defaults(r);
    r->path = strdup(path);
    r->sources = calloc(N_KEYS, sizeof *r->sources);
    Reader rd = { .path = path, .src = r->sources };
    int rc = read_file(&rd, r, path);
    if (!rc && !is_given(&rd, K("name"))) {
        free(r->name);
        r->name = basename_stem(path);
    }
    for (int i = 0; !rc && i < n_overrides; i++) rc = apply_override(&rd, r, overrides[i]);
    if (!rc) rc = check_required(&rd);
    if (!rc) rc = check_paths(&rd, r);
    if (!rc) rc = check_rules(&rd, r);
    if (rc) recipe_free(r);
    return rc;
}

int recipe_load_text(Recipe *r, const char *name, const char *text) {
    recipe_defaults(r);
    r->path = strdup(name);
    r->sources = calloc(N_KEYS, sizeof *r->sources);
    Reader rd = { .path = name, .src = r->sources };
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    if (!f) { fprintf(stderr, "distil: error: %s: cannot read the recipe: %s\n", name, strerror(errno)); recipe_free(r); return 2; }
    int rc = read_stream(&rd, r, f);
    fclose(f);
    if (!rc) rc = check_required(&rd);
    if (!rc) rc = check_rules(&rd, r);
    if (rc) recipe_free(r);
    return rc;
}

char *recipe_where(const Recipe *r, const char *key, char *buf, size_t n) {
    int i = recipe_key_index(key);
    const char *path = r->path ? r->path : "recipe";
    const RecipeSource *s = i >= 0 && r->sources ? &r->sources[i] : NULL;
    if (s && s->from_set) snprintf(buf, n, "--set %s", key);
    else if (s && s->line) snprintf(buf, n, "%s:%d:%d", path, s->line, s->column);
    else snprintf(buf, n, "%s", path);
    return buf;
}

// ---- printing -----------------------------------------------------------------

// The shortest decimal that reads back to exactly v, so that the resolved
// recipe re-parses to the same doubles and stays readable ("0.1", not
// "0.10000000000000001").
static void print_number(FILE *f, double v) {
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    // A number key prints as one ("2.0", not "2") so the type is plain to see.
    fprintf(f, "%s%s", buf, strpbrk(buf, ".e") ? "" : ".0");
}

// A YAML double-quoted string.
static void print_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') fprintf(f, "\\%c", c);
        else if (c < 0x20 || c == 0x7f) fprintf(f, "\\x%02x", c);
        else fputc(c, f);
    }
    fputc('"', f);
}

static void print_value(FILE *f, const RecipeKey *k, const Recipe *r) {
    const void *field = (const char *)r + k->offset;
    int v;
    switch (k->type) {
    case RK_INT: fprintf(f, "%d", *(const int *)field); break;
    case RK_FLOAT: print_number(f, *(const double *)field); break;
    case RK_BOOL: fputs(*(const int *)field ? "true" : "false", f); break;
    case RK_ENUM: memcpy(&v, field, sizeof v); fputs(k->allowed[v], f); break;
    case RK_STRING:
    case RK_PATH: print_string(f, *(char *const *)field ? *(char *const *)field : ""); break;
    case RK_LIST: {
        const RecipeList *l = field;
        fputc('[', f);
        for (int i = 0; i < l->n; i++) {
            if (i) fputs(", ", f);
            print_string(f, l->items[i]);
        }
        fputc(']', f);
        break;
    }
    case RK_FLOAT3:
        for (int i = 0; i < 3; i++) {
            fputs(i ? ", " : "[", f);
            print_number(f, ((const double *)field)[i]);
        }
        fputc(']', f);
        break;
    }
}

void recipe_print_resolved(const Recipe *r, FILE *f) {
    fprintf(f, "# The resolved recipe: every key, with the defaults filled in (docs/recipes.md).\n");
    const char *section = "";
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].section, section)) {
            section = keys[i].section;
            fprintf(f, "\n%s:\n", section);
        }
        fprintf(f, "%s%s: ", section[0] ? "  " : "", keys[i].key);
        print_value(f, &keys[i], r);
        fputc('\n', f);
    }
}

// ---- docs -----------------------------------------------------------------------

static const char *type_name(const RecipeKey *k) {
    switch (k->type) {
    case RK_INT: return "integer";
    case RK_FLOAT: return "number";
    case RK_BOOL: return "bool";
    case RK_STRING: return "string";
    case RK_PATH: return "path";
    case RK_ENUM: return "enum";
    case RK_LIST: return "list of strings";
    case RK_FLOAT3: return "3 numbers";
    }
    return "?";
}

static void print_allowed(FILE *f, const RecipeKey *k) {
    char range[64];
    if (k->type == RK_ENUM)
        for (int i = 0; k->allowed[i]; i++) fprintf(f, "%s`%s`", i ? ", " : "", k->allowed[i]);
    else if (k->type == RK_INT || k->type == RK_FLOAT || k->type == RK_FLOAT3)
        fprintf(f, "%s%s", k->type == RK_FLOAT3 ? "each " : "", range_text(k, range, sizeof range));
    else if (k->type == RK_BOOL) fputs("`true`, `false`", f);
    else if (k->type == RK_PATH) fputs("an existing file, or empty", f);
    else if (k->type == RK_LIST && (k->flags & RK_UNIQUE)) fputs("distinct names", f);
    else if (k->type == RK_LIST) fputs("non-empty strings", f);
    else fputs("non-empty", f);
    if (k->flags & RK_REQUIRED) fputs("; **required**", f);
}

void recipe_print_doc(FILE *f) {
    const char *section = NULL;
    char name[96];
    for (int i = 0; i < N_KEYS; i++) {
        if (!section || strcmp(keys[i].section, section)) {
            section = keys[i].section;
            fprintf(f, "%s### %s\n\n| key | type | default | allowed | meaning |\n| --- | --- | --- | --- | --- |\n",
                    i ? "\n" : "", section[0] ? section : "top level");
        }
        fprintf(f, "| `%s` | %s | ", dotted_name(i, name, sizeof name), type_name(&keys[i]));
        // The default name is the file's; the table's "default" is for recipes built in code.
        if (!strcmp(keys[i].key, "name")) fputs("the file name | ", f);
        else fprintf(f, "`%s` | ", keys[i].def);
        print_allowed(f, &keys[i]);
        fprintf(f, " | %s |\n", keys[i].doc);
    }
}
