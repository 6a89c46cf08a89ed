// test_recipe.c: strict YAML recipes. Defaults, the shipped recipes, the
// resolved printout reading back to the same recipe, --set, the docs staying
// true to the key table, and a corpus of broken recipes (tests/recipes_bad),
// each checked through the distil binary for its exit status 2 and its one
// error line with file:line:column.
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "tests/test.h"
#include "train/recipe/recipe.h"

static char distil_bin[4096];
static char tmp_dir[64];

// The resolved printout of r, as one malloc'ed string.
static char *resolved(const Recipe *r) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    recipe_print_resolved(r, f);
    fclose(f);
    return buf;
}

static char *read_text(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    int c;
    while ((c = fgetc(f)) != EOF) fputc(c, mem);
    fclose(mem);
    fclose(f);
    return buf;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

// An empty file standing in for an exported student, for init_from.
static const char *fake_student(void) {
    static char path[128];
    snprintf(path, sizeof path, "%s/student.bin", tmp_dir);
    write_text(path, "");
    return path;
}

// ---- in-process tests ---------------------------------------------------------

static void test_defaults(void) {
    Recipe r;
    recipe_defaults(&r);
    CHECK(!strcmp(r.name, "default"), "name %s", r.name);
    CHECK(r.seed == 1337, "seed %d", r.seed);
    CHECK(r.data.train.n == 0 && r.data.eval.n == 0 && r.data.cameras.n == 0, "lists not empty");
    CHECK(r.data.on_bad_sample == BAD_SAMPLE_ERROR, "on_bad_sample");
    CHECK(r.model.dim % r.model.heads == 0, "default heads do not divide dim");
    CHECK(r.model.traj_repr == TRAJ_REPR_XYYAW && r.model.vocab == VOCAB_FROM_LOGS, "model enums");
    CHECK(r.model.image_std[0] > 0 && r.model.image_mean[2] == 0.406, "image normalisation");
    CHECK(r.distill.kl == KL_FORWARD && r.distill.tail_bucket == 1 && r.distill.t2_scaling == 1, "distill");
    CHECK(r.distill.traj_target == TRAJ_TARGET_TEACHER_MEAN, "traj_target");
    CHECK(r.train.batch_size % r.train.micro_batch == 0, "default batch");
    CHECK(r.train.min_lr <= r.train.lr && r.train.warmup_steps <= r.train.steps, "default schedule");
    CHECK(r.train.init_from && r.train.init_from[0] == '\0', "init_from");
    CHECK(r.train.precision == PRECISION_FP32 && r.train.device == DEVICE_AUTO, "precision/device");
    CHECK(r.dist.grad_dtype == PRECISION_FP32 && r.dist.zero == 0, "dist");
    CHECK(r.export.dtype == EXPORT_FP32 && r.export.onnx == 0 && r.export.opset == 17, "export");
    recipe_free(&r);
    recipe_free(&r);  // freeing twice is safe: recipe_free zeroes
}

// Every key in the table is documented, has a doc line, and its default
// appears in the resolved printout of the defaults.
static void test_key_table(void) {
    int n;
    const RecipeKey *k = recipe_keys(&n);
    REQUIRE(n >= 50, "only %d keys", n);
    for (int i = 0; i < n; i++) {
        char dotted[96];
        snprintf(dotted, sizeof dotted, "%s%s%s", k[i].section, k[i].section[0] ? "." : "", k[i].key);
        CHECK(recipe_key_index(dotted) == i, "%s does not find itself", dotted);
        CHECK(k[i].doc && strlen(k[i].doc) > 10, "%s has no doc", dotted);
        CHECK(k[i].type != RK_ENUM || k[i].allowed, "%s: enum without values", dotted);
    }
    CHECK(recipe_key_index("train.nope") == -1, "unknown key found");
}

// The three shipped recipes load (finetune's init_from pointed at a stand-in).
static void test_shipped_recipes(void) {
    Recipe r;
    int rc;
    rc = recipe_load(&r, "recipes/demo.yaml", NULL, 0);
    REQUIRE(rc == 0, "demo.yaml");
    CHECK(!strcmp(r.name, "demo"), "name %s", r.name);
    CHECK(r.data.train.n == 1 && !strcmp(r.data.train.items[0], "demo_logs/train/*.h5"), "data.train");
    CHECK(r.data.eval.n == 1 && !strcmp(r.data.eval.items[0], "demo_logs/eval/*.h5"), "data.eval");
    CHECK(r.data.cameras.n == 1 && !strcmp(r.data.cameras.items[0], "front"), "cameras");
    CHECK(r.data.history_frames == 2 && r.data.max_trace_tokens == 16, "history/trace");
    CHECK(r.model.dim == 128 && r.model.layers == 4 && r.model.heads == 4 && r.model.patch == 8, "model size");
    CHECK(r.model.horizon == 30, "horizon %d", r.model.horizon);
    CHECK(r.train.steps == 1500 && r.train.batch_size == 32 && r.train.device == DEVICE_CPU, "train");
    CHECK(r.train.lr == 1e-3, "lr %g", r.train.lr);
    recipe_free(&r);

    rc = recipe_load(&r, "recipes/urban4.yaml", NULL, 0);
    REQUIRE(rc == 0, "urban4.yaml");
    CHECK(r.data.cameras.n == 4 && !strcmp(r.data.cameras.items[3], "rear"), "4 cameras");
    CHECK(r.train.precision == PRECISION_BF16 && r.train.device == DEVICE_CUDA, "GPU training");
    CHECK(r.model.traj_repr == TRAJ_REPR_ACCEL_CURVATURE && r.distill.kl == KL_REVERSE, "urban4 choices");
    recipe_free(&r);

    char set[256];
    snprintf(set, sizeof set, "train.init_from=%s", fake_student());
    char *overrides[] = { set };
    rc = recipe_load(&r, "recipes/finetune.yaml", overrides, 1);
    REQUIRE(rc == 0, "finetune.yaml");
    CHECK(r.distill.traj_target == TRAJ_TARGET_GROUND_TRUTH, "ground truth");
    CHECK(r.train.freeze.n == 5 && !strcmp(r.train.freeze.items[4], "blocks.[0-5].*"), "freeze");
    CHECK(!strcmp(r.train.init_from, fake_student()), "init_from %s", r.train.init_from);
    recipe_free(&r);
}

// Printing a recipe and reading the printout back gives the same recipe, and
// the printout of that is byte-identical.
static void roundtrip(const char *path, char **overrides, int n) {
    Recipe a, b;
    int rc = recipe_load(&a, path, overrides, n);
    REQUIRE(rc == 0, "%s", path);
    char *first = resolved(&a);
    char out[128];
    snprintf(out, sizeof out, "%s/resolved.yaml", tmp_dir);
    write_text(out, first);
    rc = recipe_load(&b, out, NULL, 0);
    CHECK(rc == 0, "%s: resolved does not re-parse:\n%s", path, first);
    if (rc) {
        free(first);
        recipe_free(&a);
        return;
    }
    char *second = resolved(&b);
    CHECK(!strcmp(first, second), "%s: resolved differs after a round trip", path);
    CHECK(!strcmp(a.name, b.name), "name lost");
    CHECK(!memcmp(&a.model, &b.model, sizeof a.model), "model differs");
    CHECK(!memcmp(&a.distill, &b.distill, sizeof a.distill), "distill differs");
    CHECK(a.train.lr == b.train.lr && a.train.eps == b.train.eps, "doubles changed");
    free(first);
    free(second);
    recipe_free(&a);
    recipe_free(&b);
}

static void test_resolved_roundtrip(void) {
    roundtrip("recipes/demo.yaml", NULL, 0);
    roundtrip("recipes/urban4.yaml", NULL, 0);
    char set[256];
    snprintf(set, sizeof set, "train.init_from=%s", fake_student());
    // Awkward values: a string needing escapes and doubles with no short form.
    char *overrides[] = { set, "name=odd_name-1.x", "train.lr=0.1", "distill.temperature=1.2345678901234567",
                          "data.train=[\"a \\\"quoted\\\" dir/*.h5\", 'b\\\\c/*.h5']" };
    roundtrip("recipes/finetune.yaml", overrides, 5);
}

static void test_set(void) {
    Recipe r;
    int rc;
    char *ok[] = { "train.lr=2e-3", "seed=7", "name=quick", "data.cameras=[front, left]",
                   "model.image_mean=[0.5, 0.5, 0.5]", "distill.kl=jsd", "distill.jsd_beta=0.25",
                   "train.allow_tf32=false", "train.steps=50", "train.warmup_steps=5" };
    rc = recipe_load(&r, "recipes/demo.yaml", ok, 10);
    REQUIRE(rc == 0, "valid overrides refused");
    CHECK(r.train.lr == 2e-3 && r.seed == 7 && !strcmp(r.name, "quick"), "scalars");
    CHECK(r.data.cameras.n == 2 && !strcmp(r.data.cameras.items[1], "left"), "list");
    CHECK(r.model.image_mean[1] == 0.5, "float3");
    CHECK(r.distill.kl == KL_JSD && r.distill.jsd_beta == 0.25 && r.train.allow_tf32 == 0, "enum/bool");
    char where[256];
    CHECK(!strcmp(recipe_where(&r, "train.lr", where, sizeof where), "--set train.lr"), "where %s", where);
    CHECK(!strcmp(recipe_where(&r, "model.dim", where, sizeof where), "recipes/demo.yaml:29:8"), "where %s", where);
    CHECK(!strcmp(recipe_where(&r, "train.beta1", where, sizeof where), "recipes/demo.yaml"), "where %s", where);
    recipe_free(&r);

    // The last override wins, as on a command line.
    char *twice[] = { "train.steps=50", "train.steps=60" };
    rc = recipe_load(&r, "recipes/demo.yaml", twice, 2);
    REQUIRE(rc == 0, "two overrides");
    CHECK(r.train.steps == 60, "steps %d", r.train.steps);
    recipe_free(&r);

    // Refused overrides return 2 and leave nothing to free.
    const char *bad[] = { "train.lr=fast", "train.lrr=1e-3", "train.lr", "model.heads=5", "distill.kl=kl",
                          "data.cameras=front", "train.init_from=/nonexistent/student.bin", "seed=-1" };
    for (int i = 0; i < (int)(sizeof bad / sizeof bad[0]); i++) {
        char *one[] = { (char *)bad[i] };
        CHECK(recipe_load(&r, "recipes/demo.yaml", one, 1) == 2, "--set %s accepted", bad[i]);
        CHECK(r.name == NULL && r.sources == NULL, "--set %s: recipe not emptied", bad[i]);
        recipe_free(&r);
    }
}

// docs/recipes.md names every key, and its generated part is what the key
// table generates today.
static void test_docs_true(void) {
    char *doc = read_text("docs/recipes.md");
    REQUIRE(doc, "docs/recipes.md is missing");
    int n;
    const RecipeKey *k = recipe_keys(&n);
    for (int i = 0; i < n; i++) {
        char cell[128];
        snprintf(cell, sizeof cell, "| `%s%s%s` |", k[i].section, k[i].section[0] ? "." : "", k[i].key);
        CHECK(strstr(doc, cell), "docs/recipes.md does not document %s", cell);
    }
    char *gen = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&gen, &len);
    recipe_print_doc(f);
    fclose(f);
    CHECK(strstr(doc, gen), "docs/recipes.md is out of date; run: distil recipe doc docs/recipes.md");
    free(gen);
    free(doc);
}

// ---- through the binary ---------------------------------------------------------

// Runs `distil ARGS`, returns its exit status and its stderr in err.
static int run_distil(const char *args, char *err, size_t n) {
    char cmd[16384];
    snprintf(cmd, sizeof cmd, "'%s' %s 2>&1 >/dev/null", distil_bin, args);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t got = fread(err, 1, n - 1, p);
    err[got] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int count_lines(const char *s) {
    int lines = 0;
    for (; *s; s++) lines += *s == '\n';
    return lines;
}

// One broken recipe: its first line reads "# expect: LINE:COL fragment".
static void check_bad_recipe(const char *path) {
    char *text = read_text(path);
    REQUIRE(text, "%s: unreadable", path);
    int line = 0, col = 0, used = 0;
    char fragment[512] = "";
    if (sscanf(text, "# expect: %d:%d %n", &line, &col, &used) < 2 || !used) {
        CHECK(0, "%s: first line must be '# expect: LINE:COL message fragment'", path);
        free(text);
        return;
    }
    sscanf(text + used, "%511[^\n]", fragment);
    free(text);
    char args[4200], err[8192], at[4200];
    snprintf(args, sizeof args, "recipe check '%s'", path);
    int rc = run_distil(args, err, sizeof err);
    snprintf(at, sizeof at, "distil: error: %s:%d:%d: ", path, line, col);
    CHECK(rc == 2, "%s: exit status %d, want 2; stderr: %s", path, rc, err);
    CHECK(count_lines(err) == 1, "%s: want exactly one stderr line, got:\n%s", path, err);
    CHECK(!strncmp(err, at, strlen(at)), "%s: want it to start with '%s', got: %s", path, at, err);
    CHECK(strstr(err, fragment), "%s: want '%s' in: %s", path, fragment, err);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void test_bad_recipes(void) {
    if (access(distil_bin, X_OK)) SKIP("no distil binary (set DISTIL)");
    DIR *d = opendir("tests/recipes_bad");
    REQUIRE(d, "tests/recipes_bad is missing");
    char *names[256];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < 256)
        if (strstr(e->d_name, ".yaml")) names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof *names, by_name);
    CHECK(n >= 15, "only %d broken recipes", n);
    for (int i = 0; i < n; i++) {
        char path[512];
        snprintf(path, sizeof path, "tests/recipes_bad/%s", names[i]);
        check_bad_recipe(path);
        free(names[i]);
    }
}

// --set errors name --set and the key; a good check prints YAML; an unknown
// file and an unknown subcommand are single lines too.
static void test_cli(void) {
    if (access(distil_bin, X_OK)) SKIP("no distil binary (set DISTIL)");
    char err[8192];
    struct { const char *args, *want; } cases[] = {
        { "recipe check recipes/demo.yaml --set train.lr=fast", "distil: error: --set train.lr: expected a number, got \"fast\"" },
        { "recipe check recipes/demo.yaml --set train.lrr=1", "distil: error: --set train.lrr: unknown key; did you mean train.lr?" },
        { "recipe check recipes/demo.yaml --set model.heads=5", "distil: error: --set model.heads: 5 does not divide model.dim 128" },
        // A rule broken by a --set names the --set, not the file's line it collides with.
        { "recipe check recipes/demo.yaml --set train.steps=10", "distil: error: --set train.steps: 10 is fewer than train.warmup_steps 30 (recipes/demo.yaml:65:17)" },
        { "recipe check recipes/demo.yaml --set train.micro_batch=5", "distil: error: --set train.micro_batch: 5 does not divide train.batch_size 32" },
        { "recipe check recipes/demo.yaml --set", "distil: error: --set needs section.key=value" },
        { "recipe check recipes/nope.yaml", "distil: error: recipes/nope.yaml: cannot read the recipe" },
        { "recipe frobnicate", "distil: error: recipe: unknown subcommand 'frobnicate'" },
    };
    for (int i = 0; i < (int)(sizeof cases / sizeof cases[0]); i++) {
        int rc = run_distil(cases[i].args, err, sizeof err);
        CHECK(rc == 2, "distil %s: exit %d", cases[i].args, rc);
        CHECK(count_lines(err) == 1 && strstr(err, cases[i].want), "distil %s: want '%s', got: %s",
              cases[i].args, cases[i].want, err);
    }
    CHECK(run_distil("recipe check recipes/demo.yaml --set=seed=3", err, sizeof err) == 0 && !err[0], "check: %s", err);
    CHECK(run_distil("recipe --help", err, sizeof err) == 0, "--help");
    // Each subcommand's --help is help, not an error.
    CHECK(run_distil("recipe check --help", err, sizeof err) == 0 && !err[0], "recipe check --help: %s", err);
    CHECK(run_distil("recipe doc --help", err, sizeof err) == 0 && !err[0], "recipe doc --help: %s", err);
    CHECK(run_distil("recipe doc a.md b.md", err, sizeof err) == 2 && count_lines(err) == 1, "recipe doc a b: %s", err);
}

int main(int argc, char **argv) {
    // The binary is $DISTIL (tests/run.sh), else the distil next to this build's tests/.
    const char *env = getenv("DISTIL");
    if (env) snprintf(distil_bin, sizeof distil_bin, "%s", env);
    else {
        snprintf(distil_bin, sizeof distil_bin, "%s", argv[0]);
        char *slash = strrchr(distil_bin, '/');
        if (slash) *slash = '\0';
        slash = strrchr(distil_bin, '/');
        if (slash) snprintf(slash, sizeof distil_bin - (size_t)(slash - distil_bin), "/distil");
    }
    snprintf(tmp_dir, sizeof tmp_dir, "/tmp/test_recipe.XXXXXX");
    if (!mkdtemp(tmp_dir)) { perror("mkdtemp"); return 1; }
    RUN(test_defaults);
    RUN(test_key_table);
    RUN(test_shipped_recipes);
    RUN(test_resolved_roundtrip);
    RUN(test_set);
    RUN(test_docs_true);
    RUN(test_bad_recipes);
    RUN(test_cli);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp_dir);
    if (system(cmd)) {}
    return test_summary();
}
