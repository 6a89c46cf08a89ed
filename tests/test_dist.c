// test_dist.c: data-parallel training on CPU ranks over MPI (train/dist/dist.h),
// on real synthetic shards and real MPI processes.
//
// Run as a plain program (tests/run.sh), it is the driver: it writes the
// shards and a tiny recipe, then launches itself under
// `mpirun -np R test_dist --worker ...` for R = 1, 2 and 4. Each worker
// trains a few steps once per configuration (ZeRO-0/1, bucket sizes, bf16
// on the wire, a NaN on one rank), and rank 0 writes the per-step losses,
// norms and outcomes, whether every rank ended with the same weights, and
// its weights, which the driver compares.
//
// The recipe uses micro_batch 1 and a global batch of 4: every rank count
// then runs the same samples per step, each micro-batch being one sample,
// so the objective is the same function for every R and only the order of
// the gradient sums differs (see the tolerances below).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <omp.h>
#include "data/synth/synth.h"
#include "tests/test.h"
#include "tests/tiny_recipe.h"   // defines: tiny_recipe_load
#include "train/dist/dist.h"
#include "train/core/state.h"

#define STEPS 6
#define MAX_CONFIGS 8

static char dir[256], self[1024];

// ---- the worker (under mpirun) ---------------------------------------------------

typedef struct { int rank_to_poison, at_call, calls; } NanHook;

static void poison(void *ctx, TrainState *ts) {
    NanHook *h = ctx;
    if (dist_world()->rank == h->rank_to_poison && h->calls++ == h->at_call)
        ((float *)ts->model.obj.topk_logprobs->data)[3] = NAN;
}

// tests/tiny.yaml on SHARDS (no eval) at micro-batch 1 and a global batch of
// 4 (see the top of this file), then a configuration's own sets.
static int load_recipe(Recipe *r, const char *shards, char **config_sets, int n_config) {
    char *sets[TINY_MAX_SETS] = { "train.steps=40", "train.micro_batch=1", "train.batch_size=4", "train.min_lr=3.0e-3",
                                  "train.max_bad_steps=2", "dist.timeout_s=60" };
    int n = 6;
    for (int i = 0; i < n_config && n < TINY_MAX_SETS; i++) sets[n++] = config_sets[i];
    return tiny_recipe_load(r, shards, 0, sets, n);
}

// One configuration: STEPS steps; rank 0 writes OUT.txt and OUT.bin.
static int worker_config(const char *shards, char **sets, int n_sets, int nan_test, int thread, const char *out) {
    const Dist *d = dist_world();
    Recipe r;
    if (load_recipe(&r, shards, sets, n_sets)) return 2;
    TrainState ts;
    int rc = train_state_open(&ts, &r);
    if (rc) return rc;
    NanHook hook = { 1, 2 * ts.data.accum, 0 };   // rank 1's first micro-batch of step 2
    if (nan_test) { ts.hooks.after_inputs = poison; ts.hooks.ctx = &hook; }
    if (thread && ts.sync) {   // the same buckets, progressed by a thread instead of the hook
        char err[256];
        grad_sync_free(ts.sync);
        GradSyncConfig gc = { r.dist.bucket_mb, r.dist.grad_dtype == PRECISION_BF16, r.dist.zero, 0, 1 };
        if (!(ts.sync = grad_sync_new(ts.model.g, &gc, err, sizeof err))) { fprintf(stderr, "test_dist: %s\n", err); return 2; }
    }
    char path[1100];
    snprintf(path, sizeof path, "%s.txt", out);
    FILE *f = d->rank == 0 ? fopen(path, "w") : NULL;
    for (long s = 0; s < STEPS; s++) {
        StepStats ss;
        int st = train_step(&ts, s, &ss);
        if (st == STEP_ERROR) return 2;
        if (f) fprintf(f, "step %ld %d %.9e %.9e %ld\n", s, st, ss.loss, ss.grad_norm, ss.samples);
    }
    size_t param_bytes = ts.model.g->param_numel * sizeof(float);
    uint64_t h = dist_fnv1a(ts.model.g->param_mem, param_bytes, DIST_FNV_SEED), all[64];
    dist_allgather_u64(h, all, "test weights");
    int same = 1;
    for (int i = 0; i < d->world; i++) same &= all[i] == all[0];
    if (f) {
        fprintf(f, "same_on_all_ranks %d\n", same);
        fclose(f);
        snprintf(path, sizeof path, "%s.bin", out);
        FILE *w = fopen(path, "wb");
        if (!w || fwrite(ts.model.g->param_mem, 1, param_bytes, w) != param_bytes) return 1;
        fclose(w);
    }
    train_state_close(&ts);
    recipe_free(&r);
    return 0;
}

// --worker OUT SHARDS [--config [@nan] [@thread] SET...]...: configuration i writes OUT.i.*.
static int worker_main(int argc, char **argv) {
    const char *out = argv[2], *shards = argv[3];
    int config = 0;
    for (int i = 4; i < argc;) {
        if (strcmp(argv[i], "--config")) { fprintf(stderr, "test_dist: bad worker arguments\n"); return 2; }
        int j = ++i, nan_test = 0, thread = 0;
        while (j < argc && strcmp(argv[j], "--config")) j++;
        char *sets[16];
        int n = 0;
        for (int k = i; k < j && n < 16; k++) {
            if (!strcmp(argv[k], "@nan")) nan_test = 1;
            else if (!strcmp(argv[k], "@thread")) thread = 1;
            else sets[n++] = argv[k];
        }
        char prefix[1024];
        snprintf(prefix, sizeof prefix, "%s.%d", out, config++);
        int rc = worker_config(shards, sets, n, nan_test, thread, prefix);
        if (rc) return rc;
        i = j;
    }
    return 0;
}

// ---- the driver ----------------------------------------------------------------------

typedef struct Run {
    int ok;
    int status[STEPS];
    double loss[STEPS], norm[STEPS];
    int same_on_all_ranks;
    unsigned char *weights;
    size_t weight_bytes;
} Run;

static int make_shards(void) {
    snprintf(dir, sizeof dir, "/tmp/distil_test_dist_%d", (int)getpid());
    char *args[] = { "--out", dir, "--shards", "2", "--samples-per-shard", "48", "--seed", "5", "--preset", "demo" };
    return logs_synth_main(10, args);
}

static int have_mpirun(void) { return system("command -v mpirun >/dev/null 2>&1") == 0; }

// Launch R ranks of this program over the configurations; 0 when mpirun
// exited 0. The configs are strings of space-separated --set values.
static int launch(int R, const char *tag, const char *const *configs, int n) {
    char cmd[8192];
    int at = snprintf(cmd, sizeof cmd,
                      // Under SAN=1: Open MPI's dlopen'ed components leak at exit (not distil's memory).
                      "ASAN_OPTIONS=detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS} "
                      "OMP_NUM_THREADS=1 OMPI_MCA_rmaps_base_oversubscribe=1 mpirun --allow-run-as-root --oversubscribe "
                      "-np %d %s --worker %s/%s %s", R, self, dir, tag, dir);
    for (int i = 0; i < n; i++) at += snprintf(cmd + at, sizeof cmd - at, " --config %s", configs[i]);
    snprintf(cmd + at, sizeof cmd - at, " >%s/%s.log 2>&1", dir, tag);
    int rc = system(cmd);
    if (rc) {
        char show[600];
        snprintf(show, sizeof show, "tail -n 20 %s/%s.log", dir, tag);
        printf("  mpirun -np %d (%s) exited %d; its output:\n", R, tag, rc);
        fflush(stdout);
        if (system(show)) {}
    }
    return rc;
}

static Run read_run(const char *tag, int config) {
    Run run;
    memset(&run, 0, sizeof run);
    char path[600];
    snprintf(path, sizeof path, "%s/%s.%d.txt", dir, tag, config);
    FILE *f = fopen(path, "r");
    if (!f) return run;
    int n = 0;
    for (long s; n < STEPS; n++) {
        long samples;
        if (fscanf(f, "step %ld %d %le %le %ld\n", &s, &run.status[n], &run.loss[n], &run.norm[n], &samples) != 5) break;
    }
    if (fscanf(f, "same_on_all_ranks %d", &run.same_on_all_ranks) != 1 || n != STEPS) { fclose(f); return run; }
    fclose(f);
    snprintf(path, sizeof path, "%s/%s.%d.bin", dir, tag, config);
    f = fopen(path, "rb");
    if (!f) return run;
    fseek(f, 0, SEEK_END);
    run.weight_bytes = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    run.weights = malloc(run.weight_bytes);
    run.ok = fread(run.weights, 1, run.weight_bytes, f) == run.weight_bytes;
    fclose(f);
    return run;
}

static double max_loss_rel(const Run *a, const Run *b) {
    double worst = 0;
    for (int s = 0; s < STEPS; s++) worst = fmax(worst, test_rel_err(a->loss[s], b->loss[s], 1e-6));
    return worst;
}

// Largest difference between two runs' weights, relative to the largest weight.
static double max_weight_diff(const Run *a, const Run *b) {
    if (a->weight_bytes != b->weight_bytes) return INFINITY;
    const float *x = (const float *)a->weights, *y = (const float *)b->weights;
    double worst = 0, scale = 1e-6;
    for (size_t i = 0; i < a->weight_bytes / sizeof(float); i++) {
        worst = fmax(worst, fabs((double)x[i] - y[i]));
        scale = fmax(scale, fabs(x[i]));
    }
    return worst / scale;
}

static int bitwise_same(const Run *a, const Run *b) {
    return a->weight_bytes == b->weight_bytes && !memcmp(a->weights, b->weights, a->weight_bytes) &&
           !memcmp(a->loss, b->loss, sizeof a->loss);
}

static Run ref1, r2[MAX_CONFIGS], r4[MAX_CONFIGS];

static const char *const configs2[] = {
    "",                                       // 0: ZeRO-0, 25 MiB buckets (one bucket)
    "dist.zero=1",                            // 1: ZeRO-1
    "dist.bucket_mb=0.0001",                  // 2: 26-float buckets (hundreds of them)
    "dist.bucket_mb=4096",                    // 3: one huge bucket
    "dist.grad_dtype=bf16",                   // 4: bf16 on the wire
    "dist.zero=1 dist.grad_dtype=bf16 dist.bucket_mb=0.001",   // 5: all of it
    "@nan",                                   // 6: a NaN on rank 1 only
    "@thread dist.bucket_mb=0.001",           // 7: a progress thread drives MPI during backward
};
static const char *const configs4[] = { "", "dist.zero=1", "dist.bucket_mb=0.0001", "@thread dist.zero=1 dist.bucket_mb=0.001" };
#define N2 (int)(sizeof configs2 / sizeof configs2[0])
#define N4 (int)(sizeof configs4 / sizeof configs4[0])

static void run_all(void) {
    static int done;
    if (done++) return;
    const char *one[] = { "" };
    if (launch(1, "r1", one, 1) == 0) ref1 = read_run("r1", 0);
    if (launch(2, "r2", configs2, N2) == 0)
        for (int i = 0; i < N2; i++) r2[i] = read_run("r2", i);
    if (launch(4, "r4", configs4, N4) == 0)
        for (int i = 0; i < N4; i++) r4[i] = read_run("r4", i);
}

// mpirun -np 1 goes through the buckets (a one-rank all-reduce) and the
// per-shard norm; a process started alone skips both. Same bits.
static void test_one_rank_matches_plain_process(void) {
    run_all();
    REQUIRE(ref1.ok, "the mpirun -np 1 run failed");
    Recipe r;
    REQUIRE(load_recipe(&r, dir, NULL, 0) == 0, "recipe");
    TrainState ts;
    REQUIRE(train_state_open(&ts, &r) == 0, "open");
    REQUIRE(ts.sync == NULL, "a plain process should have no all-reduce");
    for (long s = 0; s < STEPS; s++) {
        StepStats ss;
        REQUIRE(train_step(&ts, s, &ss) == STEP_OK, "step %ld", s);
        CHECK(ss.loss == ref1.loss[s] || test_rel_err(ss.loss, ref1.loss[s], 0) < 1e-8,
              "step %ld loss %.9e vs %.9e under mpirun -np 1", s, ss.loss, ref1.loss[s]);
    }
    CHECK(ts.model.g->param_numel * sizeof(float) == ref1.weight_bytes && !memcmp(ts.model.g->param_mem, ref1.weights, ref1.weight_bytes),
          "weights differ from mpirun -np 1's");
    train_state_close(&ts);
    recipe_free(&r);
}

// The same samples per step at R = 1, 2, 4; only the order in which the
// per-sample gradients are added differs (R = 1 accumulates 4 micro-batches
// in one buffer; R = 2 adds two pairs; R = 4 sums four in MPI). fp32
// rounding of those sums is ~1e-7 relative; AdamW divides by sqrt(v), so
// near-zero gradient entries amplify it, and 6 steps of lr 3e-3 compound it.
// Measured: ~3e-8 on the losses, ~2e-6 on the weights (relative to the
// largest weight); bounds 1e-6 and 1e-4 (30-50x margin), while a wrong sum
// (a missing rank, no division by the world size) moves the losses by more
// than 1e-2 from step 1 on.
static void test_same_losses_at_1_2_4_ranks(void) {
    run_all();
    REQUIRE(ref1.ok && r2[0].ok && r4[0].ok, "a run failed (r1 %d, r2 %d, r4 %d)", ref1.ok, r2[0].ok, r4[0].ok);
    double l2 = max_loss_rel(&ref1, &r2[0]), l4 = max_loss_rel(&ref1, &r4[0]);
    double w2 = max_weight_diff(&ref1, &r2[0]), w4 = max_weight_diff(&ref1, &r4[0]);
    printf("  vs R=1: losses rel %.2e (R=2) %.2e (R=4); weights rel %.2e (R=2) %.2e (R=4)\n", l2, l4, w2, w4);
    CHECK(l2 < 1e-6 && l4 < 1e-6, "losses R=2 %.3e R=4 %.3e", l2, l4);
    CHECK(w2 < 1e-4 && w4 < 1e-4, "weights R=2 %.3e R=4 %.3e", w2, w4);
    for (int s = 0; s < STEPS; s++) CHECK(test_rel_err(ref1.norm[s], r2[0].norm[s], 1e-6) < 1e-5, "norm at step %d", s);
}

// Every rank ends each configuration with the same bits (ZeRO-0: each
// rank applies the same update to the same all-reduced gradients; ZeRO-1:
// the all-gather copies every shard from its owner).
static void test_identical_weights_on_every_rank(void) {
    run_all();
    for (int i = 0; i < N2; i++) CHECK(r2[i].ok && r2[i].same_on_all_ranks, "R=2 config %d (%s)", i, configs2[i]);
    for (int i = 0; i < N4; i++) CHECK(r4[i].ok && r4[i].same_on_all_ranks, "R=4 config %d (%s)", i, configs4[i]);
    CHECK(ref1.ok && ref1.same_on_all_ranks, "R=1");
}

// ZeRO-1 equals ZeRO-0 bit for bit at R = 2: each summed gradient is a + b
// either way (fp32 addition commutes), the norm adds the same per-shard sums
// in the same order (grad_sync_sumsq), and AdamW is elementwise. At R = 4
// MPI may add four terms in another order for a reduce-scatter than for an
// all-reduce, so there the bound is R = 1's tolerance.
static void test_zero1_equals_zero0(void) {
    run_all();
    REQUIRE(r2[0].ok && r2[1].ok, "R=2 runs failed");
    CHECK(bitwise_same(&r2[0], &r2[1]), "R=2 ZeRO-1 differs from ZeRO-0: weights %.3e, losses %.3e",
          max_weight_diff(&r2[0], &r2[1]), max_loss_rel(&r2[0], &r2[1]));
    REQUIRE(r4[0].ok && r4[1].ok, "R=4 runs failed");
    double w = max_weight_diff(&r4[0], &r4[1]);
    printf("  R=4 ZeRO-1 vs ZeRO-0: weights rel %.2e%s\n", w, bitwise_same(&r4[0], &r4[1]) ? " (bitwise)" : "");
    CHECK(w < 1e-4 && max_loss_rel(&r4[0], &r4[1]) < 1e-6, "R=4 ZeRO-1 vs ZeRO-0 %.3e", w);
}

// Bucket size and who drives MPI's progress (the hook or a thread) change
// only when each piece is sent: at R = 2 the bits are the same from
// 26-float buckets to one 4 GiB bucket; at R = 4 MPI's algorithm (and so
// its order of addition) may change with the message size, so R = 1's
// tolerance.
static void test_bucket_sizes_agree(void) {
    run_all();
    REQUIRE(r2[0].ok && r2[2].ok && r2[3].ok, "R=2 runs failed");
    CHECK(bitwise_same(&r2[0], &r2[2]), "R=2 tiny buckets differ: %.3e", max_weight_diff(&r2[0], &r2[2]));
    CHECK(bitwise_same(&r2[0], &r2[3]), "R=2 huge bucket differs: %.3e", max_weight_diff(&r2[0], &r2[3]));
    CHECK(r2[7].ok && bitwise_same(&r2[0], &r2[7]), "R=2 progress thread differs: %.3e", max_weight_diff(&r2[0], &r2[7]));
    CHECK(r4[3].ok && max_weight_diff(&r4[0], &r4[3]) < 1e-4, "R=4 progress thread, ZeRO-1 %.3e", max_weight_diff(&r4[0], &r4[3]));
    REQUIRE(r4[0].ok && r4[2].ok, "R=4 runs failed");
    CHECK(max_weight_diff(&r4[0], &r4[2]) < 1e-4, "R=4 tiny buckets %.3e", max_weight_diff(&r4[0], &r4[2]));
}

// bf16 on the wire rounds each gradient to 8 bits of mantissa (2^-9
// relative): AdamW's m/sqrt(v) is insensitive to a uniform relative
// error, so the losses stay within 1e-2 of fp32's over 6 steps (measured
// 4e-5; the weights 3e-3). ZeRO-1 with bf16 and small buckets gives bf16's bits exactly (R = 2).
static void test_bf16_wire(void) {
    run_all();
    REQUIRE(r2[0].ok && r2[4].ok && r2[5].ok, "R=2 runs failed");
    double l = max_loss_rel(&r2[0], &r2[4]);
    printf("  bf16 wire vs fp32: losses rel %.2e, weights rel %.2e\n", l, max_weight_diff(&r2[0], &r2[4]));
    CHECK(l < 1e-2, "bf16 losses %.3e", l);
    CHECK(!bitwise_same(&r2[0], &r2[4]), "bf16 gave fp32's bits: was it used?");
    CHECK(bitwise_same(&r2[4], &r2[5]), "ZeRO-1 + bf16 + small buckets differs from bf16: %.3e", max_weight_diff(&r2[4], &r2[5]));
}

// A NaN on one rank only: every rank skips that step (the flag is reduced),
// the others are taken, and the weights stay the same on every rank.
static void test_nan_on_one_rank_skips_everywhere(void) {
    run_all();
    REQUIRE(r2[6].ok, "the NaN run failed");
    for (int s = 0; s < STEPS; s++)
        CHECK(r2[6].status[s] == (s == 2 ? STEP_SKIPPED : STEP_OK), "step %d status %d", s, r2[6].status[s]);
    CHECK(r2[6].same_on_all_ranks, "ranks diverged after the skipped step");
    for (int s = 0; s < 2; s++) CHECK(r2[6].loss[s] == r2[0].loss[s], "step %d before the NaN", s);
}

int main(int argc, char **argv) {
    if (argc > 1 && !strcmp(argv[1], "--worker")) return worker_main(argc, argv);
    if (!realpath(argv[0], self)) snprintf(self, sizeof self, "%s", argv[0]);
    // The workers run one OpenMP thread each, and so does the driver's own
    // run: OpenBLAS's matrix products are not bitwise the same across
    // thread counts.
    omp_set_num_threads(1);
    if (!have_mpirun()) {
        printf("skip test_dist: mpirun not found (apt-get install openmpi-bin)\nTESTS 0 passed, 0 failed, 1 skipped\n");
        return 0;
    }
    if (make_shards()) { printf("cannot make shards\n"); return 1; }
    RUN(test_one_rank_matches_plain_process);
    RUN(test_same_losses_at_1_2_4_ranks);
    RUN(test_identical_weights_on_every_rank);
    RUN(test_zero1_equals_zero0);
    RUN(test_bucket_sizes_agree);
    RUN(test_bf16_wire);
    RUN(test_nan_on_one_rank_skips_everywhere);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) {}
    return test_summary();
}
