// test_export.c: the pieces under `distil export` and `distil eval`: the
// protobuf encoding, vocab.json read back, and every bad bundle (a file
// missing from an export, a wrong format version, a damaged config.json)
// refused by the real binary with one line and exit status 2.
//
// Helper modes for tests/test_export.py and test_eval.py, which need small
// checkpoints of chosen shapes quickly (test_eval.py and test_report.py
// also use `distil train`'s own checkpoints):
//   test_export --make-checkpoint CKPT_DIR TRAIN_GLOB [--steps N] [section.key=value ...]
//       trains a tiny student N steps on TRAIN_GLOB and writes CKPT_DIR in the
//       checkpoint layout (model.safetensors with the distil-checkpoint
//       metadata, vocab.json).
//   test_export --make-shards DIR
//       writes DIR/train/shard-0000{0,1}.h5 and DIR/eval/shard-00000.h5: two
//       cameras (cam0, cam1) of 2 frames of 8x12 pixels, with embeddings,
//       uncompressed (h5py reads them as they are).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include "data/drivelog_write.h"
#include "data/synth/synth.h"
#include "tests/test.h"
#include "tests/tiny_recipe.h"   // defines: TINY_RECIPE
#include "train/ckpt/bundle.h"
#include "train/ckpt/checkpoint.h"   // defines: ckpt_state_write, ckpt_file_sum
#include "train/formats/onnx.h"
#include "train/model/onnx_student.h"
#include "train/core/state.h"

static char dir[256];

// ---- checkpoints for the tests --------------------------------------------------------

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fputs(text, f);
    return fclose(f);
}

// A tiny student (dim 32, one block) trained `steps` steps, saved in the
// checkpoint layout. sets: extra recipe overrides.
static int make_checkpoint(const char *ckpt, const char *train_glob, int steps, char **sets, int n_sets) {
    char train[600];
    snprintf(train, sizeof train, "data.train=[\"%s\"]", train_glob);
    char *all[TINY_MAX_SETS] = { train, "data.eval=[]", "train.steps=200", "train.min_lr=3.0e-3" };
    int n = 4;
    for (int i = 0; i < n_sets && n < TINY_MAX_SETS; i++) all[n++] = sets[i];
    Recipe r;
    if (recipe_load(&r, TINY_RECIPE, all, n)) return -1;
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    for (long s = 0; !rc && s < steps; s++) {
        StepStats ss;
        if (train_step(&ts, s, &ss) == STEP_ERROR) rc = -1;
    }
    char *yaml = NULL, *mc = NULL, step[32], path[700], err[1024];
    size_t yaml_len = 0;
    FILE *mem = rc ? NULL : open_memstream(&yaml, &yaml_len);
    if (mem) { recipe_print_resolved(&r, mem); fclose(mem); }
    mc = rc ? NULL : model_config_to_json(&ts.data.setup.mc);
    snprintf(step, sizeof step, "%d", steps);
    if (!rc && (!yaml || !mc || (mkdir(ckpt, 0777) && access(ckpt, F_OK)))) rc = -1;
    if (!rc) {
        StMeta meta[] = { { "format", "distil-checkpoint" }, { "format_version", "1" }, { "recipe", yaml },
                          { "model_config", mc }, { "step", step } };
        snprintf(path, sizeof path, "%s/model.safetensors", ckpt);
        if (st_save_graph_params(path, ts.model.g, meta, 5, ST_F32, err, sizeof err)) { fprintf(stderr, "%s\n", err); rc = -1; }
        snprintf(path, sizeof path, "%s/vocab.json", ckpt);
        if (!rc && vocab_write_json(&ts.data.vocab, path, err, sizeof err)) { fprintf(stderr, "%s\n", err); rc = -1; }
    }
    // state.bin with both files' sums: a checkpoint without it is refused.
    CkptFileSum sums[CKPT_N_FILES];
    char weights[700];
    snprintf(weights, sizeof weights, "%s/model.safetensors", ckpt);
    snprintf(path, sizeof path, "%s/vocab.json", ckpt);
    if (!rc && (ckpt_file_sum(weights, "model.safetensors", &sums[0], err, sizeof err) ||
                ckpt_file_sum(path, "vocab.json", &sums[1], err, sizeof err))) { fprintf(stderr, "%s\n", err); rc = -1; }
    snprintf(path, sizeof path, "%s/state.bin", ckpt);
    if (!rc && ckpt_state_write(path, &ts, steps, sums, err, sizeof err)) { fprintf(stderr, "%s\n", err); rc = -1; }
    free(yaml);
    free(mc);
    train_state_close(&ts);
    recipe_free(&r);
    return rc;
}

static int make_dlw_shards(const char *out) {
    char path[600], err[512];
    for (int split = 0; split < 2; split++) {
        snprintf(path, sizeof path, "%s/%s", out, split ? "eval" : "train");
        if (mkdir(out, 0777) && access(out, F_OK)) return -1;
        if (mkdir(path, 0777) && access(path, F_OK)) return -1;
        for (int s = 0; s < (split ? 1 : 2); s++) {
            DlWriteSpec spec = dlw_defaults();
            spec.shard_id = split * 10 + s;
            spec.n = split ? 20 : 24;
            spec.trace_max = 9;
            spec.compress = DLW_NONE;   // h5py reads them without a zstd plugin
            spec.chunk_samples = 0;
            snprintf(path, sizeof path, "%s/%s/shard-%05d.h5", out, split ? "eval" : "train", s);
            if (dlw_write(path, &spec, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
        }
    }
    return 0;
}

// ---- protobuf ------------------------------------------------------------------------

// The encodings of the protobuf documentation's examples: 150 in field 1
// is 08 96 01; "testing" in field 2 is 12 07 74 65 73 74 69 6e 67; a
// negative int64 is ten bytes; a float is four little-endian bytes.
static void test_protobuf_encoding(void) {
    PbBuf b = { 0 };
    pb_int(&b, 1, 150);
    CHECK(b.len == 3 && b.data[0] == 0x08 && b.data[1] == 0x96 && b.data[2] == 0x01, "150: %zu bytes", b.len);
    pb_free(&b);
    pb_string(&b, 2, "testing");
    CHECK(b.len == 9 && b.data[0] == 0x12 && b.data[1] == 7 && !memcmp(b.data + 2, "testing", 7), "string");
    pb_free(&b);
    pb_int(&b, 3, -1);
    CHECK(b.len == 11 && b.data[0] == 0x18 && b.data[10] == 0x01, "-1: %zu bytes", b.len);
    pb_free(&b);
    pb_fixed32(&b, 2, 1.0f);   // 0x3f800000
    CHECK(b.len == 5 && b.data[0] == 0x15 && b.data[1] == 0 && b.data[3] == 0x80 && b.data[4] == 0x3f, "fixed32");
    PbBuf outer = { 0 };
    pb_message(&outer, 7, &b);
    CHECK(outer.len == 7 && outer.data[0] == 0x3a && outer.data[1] == 5, "embedded message");
    pb_free(&b);
    pb_free(&outer);
}

// ---- vocab.json --------------------------------------------------------------------------

static void test_vocab_json_round_trip(void) {
    Vocab v = { 0 }, back;
    char err[512], path[400];
    v.mode = VOCAB_MODE_FROM_LOGS;
    v.teacher_size = 6;
    v.size = 4;
    v.unk = 0;
    v.majority = 2;
    int32_t to_teacher[4] = { -1, 5, 1, 3 }, to_student[6] = { -1, 2, -1, 3, -1, 1 };
    char *pieces[4] = { "<unk>", "quote\"d", "tab\there", "caf\xc3\xa9" };
    v.to_teacher = to_teacher;
    v.to_student = to_student;
    v.pieces = pieces;
    snprintf(path, sizeof path, "%s/vocab.json", dir);
    REQUIRE(vocab_write_json(&v, path, err, sizeof err) == 0, "write: %s", err);
    REQUIRE(vocab_read_json(&back, path, err, sizeof err) == 0, "read: %s", err);
    CHECK(back.mode == v.mode && back.size == 4 && back.teacher_size == 6 && back.unk == 0 && back.majority == 2, "header");
    for (int i = 0; i < 4; i++) CHECK(back.to_teacher[i] == to_teacher[i] && !strcmp(back.pieces[i], pieces[i]), "piece %d", i);
    for (int t = 0; t < 6; t++) CHECK(back.to_student[t] == to_student[t], "teacher %d", t);
    vocab_free(&back);
    // Damaged files: each is refused with a message, never a crash.
    const char *bad[] = {
        "{\"mode\": \"teacher\"}",
        "[1, 2]",
        "{\"mode\": \"x\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1, \"pieces\": [\"a\", \"b\"], \"teacher_ids\": [0, 1]}",
        "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1, \"pieces\": [\"a\"], \"teacher_ids\": [0, 1]}",
        "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1, \"pieces\": [\"a\", \"b\"], \"teacher_ids\": [0, 7]}",
        "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1, \"pieces\": [\"a\", \"b\"], \"teacher_ids\": [1, 1]}",
        "{\"mode\": \"from_logs\", \"teacher_size\": 3, \"size\": 2, \"unk\": 0, \"pieces\": [\"a\", \"b\"], \"teacher_ids\": [0, 1]}",
        "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1, \"majority\": 9, \"pieces\": [\"a\", \"b\"], \"teacher_ids\": [0, 1]}",
        "{\"mode\": \"teacher\", \"teacher_size\": 3,",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        REQUIRE(write_text(path, bad[i]) == 0, "write");
        err[0] = 0;
        CHECK(vocab_read_json(&back, path, err, sizeof err) == -1 && err[0], "bad vocab %zu accepted", i);
    }
    // The JSON rules vocab.json relies on: a key given twice and \u0000 in a
    // piece are refused, and a parse error says where.
    static const struct { const char *text, *what; } strict[] = {
        { "{\"mode\": \"teacher\", \"mode\": \"from_logs\"}", "line 1, column 26: duplicate object key near '\"mode\"'" },
        { "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": 2, \"unk\": -1,\n \"pieces\": [\"a\\u0000\", \"b\"], \"teacher_ids\": [0, 1]}",
          "line 2, column 21: \\u0000 (NUL) in a string is not allowed" },
        { "{\"mode\": \"teacher\",\n \"teacher_size\": 3,", "line 2, column 19: string or '}' expected near end of file" },
        { "{\"mode\": \"teacher\", \"teacher_size\": 3, \"size\": \"2\"}", "\"size\": expected an integer, found a string" },
    };
    for (size_t i = 0; i < sizeof strict / sizeof strict[0]; i++) {
        REQUIRE(write_text(path, strict[i].text) == 0, "write");
        CHECK(vocab_read_json(&back, path, err, sizeof err) == -1 && strstr(err, strict[i].what), "%s: \"%s\"", strict[i].what, err);
    }
    // A piece that is not UTF-8 cannot be written as JSON: named, not mangled.
    pieces[2] = "caf\xe9";
    CHECK(vocab_write_json(&v, path, err, sizeof err) == -1 && strstr(err, "piece 2 (teacher id 1) is not valid UTF-8"), "%s", err);
    snprintf(path, sizeof path, "%s/absent.json", dir);
    CHECK(vocab_read_json(&back, path, err, sizeof err) == -1 && strstr(err, "cannot open"), "absent: %s", err);
}

// ---- bad bundles, through the binary ----------------------------------------------------------

static const char *distil_bin(void) {
    static char buf[512];
    const char *d = getenv("DISTIL");
    if (d) return d;
    snprintf(buf, sizeof buf, "%s/distil", getenv("DISTIL_BUILD") ? getenv("DISTIL_BUILD") : "build/cpu");
    return buf;
}

// Run `distil ARGS`; its exit status, and stderr in err.
static int run_distil(const char *args, char *err, size_t errlen) {
    char cmd[2048], errfile[400];
    snprintf(errfile, sizeof errfile, "%s/stderr.txt", dir);
    snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>%s", distil_bin(), args, errfile);
    int st = system(cmd);
    err[0] = 0;
    FILE *f = fopen(errfile, "r");
    if (f) { size_t n = fread(err, 1, errlen - 1, f); err[n] = 0; fclose(f); }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int one_error_line(const char *err) {
    const char *nl = strchr(err, '\n');
    return !strncmp(err, "distil: error: ", 15) && nl && nl[1] == 0;
}

static int copy_file(const char *from, const char *to) {
    char cmd[1400];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", from, to);
    return system(cmd);
}

// Each file of an export removed in turn: `distil eval` and `distil export`
// say which one is missing, in one line, exit 2. Then a wrong format
// version and a config.json that is not JSON.
static void test_export_missing_files(void) {
    char ckpt[400], exp[400], args[1400], err[4096], path[600], saved[600];
    snprintf(ckpt, sizeof ckpt, "%s/ckpt", dir);
    snprintf(exp, sizeof exp, "%s/export", dir);
    char train_glob[400];
    snprintf(train_glob, sizeof train_glob, "%s/shards/train/*.h5", dir);
    REQUIRE(make_checkpoint(ckpt, train_glob, 2, NULL, 0) == 0, "checkpoint");
    snprintf(args, sizeof args, "export %s --out %s", ckpt, exp);
    int rc = run_distil(args, err, sizeof err);
    REQUIRE(rc == 0, "export exited %d: %s", rc, err);
    const char *files[] = { "model.safetensors", "config.json", "vocab.json" };
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s/%s", exp, files[i]);
        snprintf(saved, sizeof saved, "%s/saved", dir);
        REQUIRE(rename(path, saved) == 0, "move %s", files[i]);
        snprintf(args, sizeof args, "eval %s --logs '%s/shards/eval/*.h5'", exp, dir);
        rc = run_distil(args, err, sizeof err);
        CHECK(rc == 2 && one_error_line(err) && strstr(err, files[i]) && strstr(err, "missing"),
              "eval without %s: exit %d, stderr: %s", files[i], rc, err);
        snprintf(args, sizeof args, "export %s --out %s/re-export", exp, dir);
        rc = run_distil(args, err, sizeof err);
        CHECK(rc == 2 && one_error_line(err) && strstr(err, files[i]), "re-export without %s: exit %d, stderr: %s", files[i], rc, err);
        REQUIRE(rename(saved, path) == 0, "restore %s", files[i]);
    }
    // A checkpoint without its vocab.json.
    snprintf(path, sizeof path, "%s/vocab.json", ckpt);
    snprintf(saved, sizeof saved, "%s/saved", dir);
    REQUIRE(rename(path, saved) == 0, "move vocab");
    snprintf(args, sizeof args, "export %s --out %s/x", ckpt, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err) && strstr(err, "vocab.json"), "checkpoint without vocab: %d %s", rc, err);
    REQUIRE(rename(saved, path) == 0, "restore vocab");
    // Not a bundle at all, and a directory that does not exist.
    snprintf(args, sizeof args, "eval %s/shards --logs '%s/shards/eval/*.h5'", dir, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err) && strstr(err, "neither a checkpoint nor an export"), "not a bundle: %d %s", rc, err);
    snprintf(args, sizeof args, "export %s/nowhere --out %s/x", dir, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err) && strstr(err, "not found"), "absent dir: %d %s", rc, err);
    // config.json damaged.
    snprintf(path, sizeof path, "%s/config.json", exp);
    snprintf(saved, sizeof saved, "%s/config.saved", dir);
    REQUIRE(copy_file(path, saved) == 0, "save config");
    REQUIRE(write_text(path, "{\"model\": {\"dim\": 32},") == 0, "damage config");
    snprintf(args, sizeof args, "eval %s --logs '%s/shards/eval/*.h5'", exp, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err) && strstr(err, "config.json"), "damaged config: %d %s", rc, err);
    REQUIRE(copy_file(saved, path) == 0, "restore config");
    // Another format version: weights rewritten with format_version 2.
    Bundle b;
    REQUIRE(bundle_open(&b, exp) == 0, "the export opens again");
    Graph *g = NULL;
    Student st;
    REQUIRE(bundle_student(&b, 1, &g, &st) == 0, "student");
    StMeta meta[] = { { "format", "distil-export" }, { "format_version", "2" } };
    snprintf(path, sizeof path, "%s/model.safetensors", exp);
    REQUIRE(st_save_graph_params(path, g, meta, 2, ST_F32, err, sizeof err) == 0, "rewrite: %s", err);
    graph_free(g);
    bundle_close(&b);
    snprintf(args, sizeof args, "eval %s --logs '%s/shards/eval/*.h5'", exp, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err) && strstr(err, "format version 2"), "version 2: %d %s", rc, err);
    // Eval on shards of another shape: the dlw shards' two cameras.
    snprintf(args, sizeof args, "eval %s --logs '%s/dlw/eval/*.h5'", ckpt, dir);
    rc = run_distil(args, err, sizeof err);
    CHECK(rc == 2 && one_error_line(err), "shards of another shape: %d %s", rc, err);
}

int main(int argc, char **argv) {
    if (argc >= 4 && !strcmp(argv[1], "--make-checkpoint")) {
        int steps = 10, first_set = 4;
        if (argc >= 6 && !strcmp(argv[4], "--steps")) { steps = atoi(argv[5]); first_set = 6; }
        return make_checkpoint(argv[2], argv[3], steps, argv + first_set, argc - first_set) ? 1 : 0;
    }
    if (argc == 3 && !strcmp(argv[1], "--make-shards")) return make_dlw_shards(argv[2]) ? 1 : 0;

    snprintf(dir, sizeof dir, "/tmp/distil_test_export_%d", (int)getpid());
    if (mkdir(dir, 0777)) { printf("cannot create %s\n", dir); return 1; }
    char shards[300], dlw[300];
    snprintf(shards, sizeof shards, "%s/shards", dir);
    snprintf(dlw, sizeof dlw, "%s/dlw", dir);
    char *args[] = { "--out", shards, "--shards", "1", "--samples-per-shard", "32", "--seed", "5",
                     "--preset", "demo", "--eval-shards", "1", "--eval-samples-per-shard", "16" };
    if (logs_synth_main(14, args) != 0 || make_dlw_shards(dlw)) { printf("could not write shards\n"); return 1; }
    RUN(test_protobuf_encoding);
    RUN(test_vocab_json_round_trip);
    RUN(test_export_missing_files);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    return test_summary();
}
