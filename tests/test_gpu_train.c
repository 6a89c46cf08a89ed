// test_gpu_train.c: the whole trainer on the GPU against the CPU: a tiny
// student on synthetic shards opened twice from the same seed (so from the
// same initial weights and the same batches), once on DEV_CPU and once on
// DEV_CUDA, trained a few steps, evaluated, and compared: each step's loss,
// its components and the gradient norm, the weights' updates, and the
// evaluation's sums. It exercises what test_gpu_parity does not: inputs
// staged through the host mirrors (graph_input_host, graph_upload_inputs),
// the outputs read back, AdamW and the norm on the device.
//
// Without a CUDA device every test is skipped with the runtime's reason.
// kernels/cuda/sim/run.sh also runs it against the CPU simulator of the
// CUDA runtime and cuBLAS (tests/test_cuda_sim.sh).
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "data/synth/synth.h"         // defines: logs_synth_main
#include "kernels/backend.h"    // defines: backend_cuda_device_count, backend_to_host
#include "train/selftest/tolerance.h"   // defines: TOL_STEP_*
#include "tests/test.h"
#include "tests/tiny_recipe.h"   // defines: tiny_recipe_load
#include "train/core/evaluate.h"     // defines: fit_ego_only, EvalResult
#include "train/core/state.h"      // defines: TrainState, train_state_open_on, train_step

#define STEPS 3

static char dir[256];
static char skip_reason[256];   // SKIP keeps the pointer, so it must outlive the test
static int have_shards;

static int no_gpu(void) {
    if (backend_cuda_device_count() > 0) return 0;
    snprintf(skip_reason, sizeof skip_reason, "no CUDA device: %s", backend_cuda_unavailable_reason());
    return 1;
}
#define NEED_GPU() do { if (no_gpu()) SKIP(skip_reason); } while (0)

// ---- Tolerances ------------------------------------------------------------
// train/selftest/tolerance.h argues them (TOL_STEP_*), for `distil selftest`
// too. The evaluation at the initial weights: the trajectory metrics are
// means of distances from the student's plan (forward only, TOL_STEP per
// value). token_acc counts argmaxes, which a near-tie may flip, so the KL
// sum is compared instead.
static const double LOSS_RTOL = TOL_STEP_LOSS_RTOL;
static const double NORM_RTOL = TOL_STEP_NORM_RTOL;
static const double UPDATE_RTOL = TOL_STEP_UPDATE_RTOL;
static const double EVAL_RTOL = 1e-4;

static int make_shards(void) {
    snprintf(dir, sizeof dir, "/tmp/distil_test_gpu_train_%d", (int)getpid());
    char *args[] = { "--out", dir, "--shards", "2", "--samples-per-shard", "32", "--seed", "5",
                     "--preset", "demo", "--eval-shards", "1", "--eval-samples-per-shard", "8" };
    return logs_synth_main(14, args);
}

// A tiny student on the demo shards, 2 micro-batches per step so gradient
// accumulation runs too. Smaller than tests/test_train.c's (one frame,
// 16-pixel patches: 19 tokens per sample, micro-batches of 2) so that the
// CPU simulator of CUDA (one thread per GPU thread) gets through it in a
// few minutes.
// extra: more --set lines, applied after these.
static int load_recipe(Recipe *r, char **extra, int n_extra) {
    char *sets[16] = { "data.history_frames=1", "data.max_trace_tokens=8", "model.patch=16", "train.steps=40",
                       "train.micro_batch=2", "train.batch_size=4", "train.min_lr=3.0e-3",
                       "train.allow_tf32=false" };   // fp32 products on the GPU, as the tolerances assume
    int n = 8;
    for (int i = 0; i < n_extra && n < 16; i++) sets[n++] = extra[i];
    return tiny_recipe_load(r, dir, 1, sets, n);
}

static int close_rel(double a, double b, double rtol) {
    return fabs(a - b) <= rtol * fmax(fmax(fabs(a), fabs(b)), 1e-12);
}

// Every parameter, flat, on the host.
static float *params_host(const TrainState *ts) {
    float *p = malloc(ts->model.g->param_numel * sizeof(float));
    if (p) backend_to_host(ts->model.g->device, p, ts->model.g->param_mem, ts->model.g->param_numel * sizeof(float));
    return p;
}

typedef struct { Recipe r; TrainState ts; int open; } Run;

static int open_run_with(Run *run, Device d, char **extra, int n_extra) {
    memset(run, 0, sizeof *run);
    if (load_recipe(&run->r, extra, n_extra)) return -1;
    if (train_state_open_on(&run->ts, &run->r, d)) { train_state_close(&run->ts); recipe_free(&run->r); return -1; }
    run->open = 1;
    return 0;
}

static int open_run(Run *run, Device d) { return open_run_with(run, d, NULL, 0); }

static void close_run(Run *run) {
    if (!run->open) return;
    train_state_close(&run->ts);
    recipe_free(&run->r);
    run->open = 0;
}

// STEPS optimizer steps on each device from the same initial weights: the
// same losses, gradient norms and weight updates within the tolerances.
static void test_steps_match_cpu(void) {
    NEED_GPU();
    REQUIRE(have_shards, "no shards");
    Run cpu, gpu;
    REQUIRE(open_run(&cpu, DEV_CPU) == 0, "open on the CPU");
    if (open_run(&gpu, DEV_CUDA)) { close_run(&cpu); REQUIRE(0, "open on CUDA"); }
    size_t n = cpu.ts.model.g->param_numel, bytes = n * sizeof(float);
    float *w0 = params_host(&cpu.ts), *g0 = params_host(&gpu.ts);
    CHECK(w0 && g0 && memcmp(w0, g0, bytes) == 0, "the initial weights differ (the same seed on both devices)");
    for (long s = 0; s < STEPS; s++) {
        StepStats a, b;
        int ra = train_step(&cpu.ts, s, &a), rb = train_step(&gpu.ts, s, &b);
        CHECK(ra == STEP_OK && rb == STEP_OK, "step %ld: cpu %d, cuda %d", s, ra, rb);
        printf("  step %ld: loss cpu %.7f cuda %.7f, grad norm cpu %.7f cuda %.7f\n", s, a.loss,
               b.loss, a.grad_norm, b.grad_norm);
        CHECK(a.micro == b.micro && a.samples == b.samples, "step %ld: micro-batches %d/%d", s, a.micro, b.micro);
        double ca[5] = { a.loss, a.kl, a.ce, a.traj, a.feature }, cb[5] = { b.loss, b.kl, b.ce, b.traj, b.feature };
        const char *names[5] = { "loss", "kl", "ce", "traj", "feature" };
        for (int i = 0; i < 5; i++)
            CHECK(close_rel(ca[i], cb[i], LOSS_RTOL), "step %ld: %s cpu %.9g cuda %.9g", s, names[i], ca[i], cb[i]);
        CHECK(close_rel(a.grad_norm, b.grad_norm, NORM_RTOL), "step %ld: grad norm cpu %.9g cuda %.9g", s, a.grad_norm, b.grad_norm);
    }
    CHECK(cpu.ts.optim.adamw.step == STEPS && gpu.ts.optim.adamw.step == STEPS, "optimizer steps %ld, %ld", cpu.ts.optim.adamw.step, gpu.ts.optim.adamw.step);
    float *w1 = params_host(&cpu.ts), *g1 = params_host(&gpu.ts);
    REQUIRE(w0 && g0 && w1 && g1, "out of memory");
    double diff = 0, norm = 0, worst = 0;
    for (size_t i = 0; i < n; i++) {
        double dc = (double)w1[i] - w0[i], dg = (double)g1[i] - g0[i];
        diff += (dg - dc) * (dg - dc);
        norm += dc * dc;
        worst = fmax(worst, fabs(dg - dc));
    }
    double rel = sqrt(diff) / fmax(sqrt(norm), 1e-30);
    printf("  weight updates: ||dW_cuda - dW_cpu|| / ||dW_cpu|| = %.3g (||dW_cpu|| %.4g, worst element %.3g)\n",
           rel, sqrt(norm), worst);
    CHECK(norm > 0, "the CPU run did not update the weights");
    CHECK(rel <= UPDATE_RTOL, "weight updates differ: %.3g of their norm (tolerance %.0e)", rel, UPDATE_RTOL);
    free(w0); free(g0); free(w1); free(g1);
    close_run(&gpu);
    close_run(&cpu);
}

// The evaluation pass at the initial weights: the student's trajectory
// metrics and the trace KL match the CPU's.
static void test_eval_matches_cpu(void) {
    NEED_GPU();
    REQUIRE(have_shards, "no shards");
    Run cpu, gpu;
    REQUIRE(open_run(&cpu, DEV_CPU) == 0, "open on the CPU");
    if (open_run(&gpu, DEV_CUDA)) { close_run(&cpu); REQUIRE(0, "open on CUDA"); }
    EgoOnly ego;
    memset(&ego, 0, sizeof ego);
    REQUIRE(fit_ego_only(&ego, &cpu.r, &cpu.ts.data.setup, 64) == 0, "ego-only fit");
    EvalResult a, b;
    CHECK(train_evaluate(&cpu.ts, &ego, 0, &a) == 0, "cpu eval");
    CHECK(train_evaluate(&gpu.ts, &ego, 0, &b) == 0, "cuda eval");
    printf("  eval: ade_teacher cpu %.7f cuda %.7f, trace KL sum cpu %.7f cuda %.7f over %.0f positions\n",
           traj_metric(&a.student, "ade_teacher"), traj_metric(&b.student, "ade_teacher"), a.trace.kl_sum, b.trace.kl_sum,
           a.trace.positions);
    CHECK(a.samples == b.samples && a.samples > 0, "samples %ld, %ld", a.samples, b.samples);
    CHECK(a.trace.positions == b.trace.positions && a.trace.positions > 0, "trace positions %.0f, %.0f",
          a.trace.positions, b.trace.positions);
    const char *keys[] = { "ade_teacher", "fde_teacher", "min_ade_teacher", "ade_gt" };
    for (int i = 0; i < 4; i++) {
        double x = traj_metric(&a.student, keys[i]), y = traj_metric(&b.student, keys[i]);
        CHECK((isnan(x) && isnan(y)) || close_rel(x, y, EVAL_RTOL), "%s: cpu %.9g cuda %.9g", keys[i], x, y);
    }
    CHECK(close_rel(a.trace.kl_sum, b.trace.kl_sum, EVAL_RTOL), "trace KL sum: cpu %.9g cuda %.9g", a.trace.kl_sum, b.trace.kl_sum);
    // The baselines never touch the graph: the same bits on both sides.
    CHECK(memcmp(&a.constant_velocity, &b.constant_velocity, sizeof a.constant_velocity) == 0, "baseline differs");
    ego_only_free(&ego);
    close_run(&gpu);
    close_run(&cpu);
}

// The training step captured into a CUDA Graph against the same steps run
// eagerly, on one micro-batch per step (what the capture holds): from the
// same weights and batches, the same losses, norms, weights and moments bit
// for bit (the graph replays the eager step's kernels with the same
// arguments, reading what changes, the inputs and the step's scalars, from
// device memory). The first step runs eagerly, the second is captured and
// launched, every later one a replay: the graph's own count of launches
// says so, and the eager run never captured.
static void test_captured_steps_match_eager(void) {
    NEED_GPU();
    REQUIRE(have_shards, "no shards");
    enum { CAPTURED_STEPS = 4 };
    char *one_micro[] = { "train.batch_size=2" };
    Run eager, captured;
    REQUIRE(open_run_with(&eager, DEV_CUDA, one_micro, 1) == 0, "open the eager run");
    if (open_run_with(&captured, DEV_CUDA, one_micro, 1)) { close_run(&eager); REQUIRE(0, "open the captured run"); }
    eager.ts.capture.off = 1;
    REQUIRE(captured.ts.model.g->input_host_pinned, "the input mirror is not page-locked: the step cannot be captured");
    for (long s = 0; s < CAPTURED_STEPS; s++) {
        StepStats a, b;
        int ra = train_step(&eager.ts, s, &a), rb = train_step(&captured.ts, s, &b);
        CHECK(ra == STEP_OK && rb == STEP_OK, "step %ld: eager %d, captured %d", s, ra, rb);
        CHECK(memcmp(&a.loss, &b.loss, sizeof a.loss) == 0 && memcmp(&a.kl, &b.kl, sizeof a.kl) == 0 &&
              memcmp(&a.traj, &b.traj, sizeof a.traj) == 0 && memcmp(&a.grad_norm, &b.grad_norm, sizeof a.grad_norm) == 0,
              "step %ld: loss %.9g/%.9g, grad norm %.9g/%.9g (eager/captured)", s, a.loss, b.loss, a.grad_norm, b.grad_norm);
        CHECK(a.samples == b.samples && b.micro == 1, "step %ld: samples %ld/%ld", s, a.samples, b.samples);
    }
    const StepCapture *c = &captured.ts.capture;
    REQUIRE(c->graph, "the step was never captured");
    printf("  captured step: %zu nodes, %ld launches, %ld eager step(s)\n", backend_capture_nodes(c->graph),
           backend_capture_launches(c->graph), c->eager_steps);
    CHECK(backend_capture_nodes(c->graph) >= 20, "the captured step has only %zu nodes", backend_capture_nodes(c->graph));
    CHECK(backend_capture_launches(c->graph) == CAPTURED_STEPS - 1 && c->eager_steps == 1,
          "%ld graph launches and %ld eager steps over %d steps (expected %d and 1)", backend_capture_launches(c->graph),
          c->eager_steps, CAPTURED_STEPS, CAPTURED_STEPS - 1);
    CHECK(!eager.ts.capture.graph && eager.ts.capture.eager_steps == CAPTURED_STEPS, "the eager run captured");
    CHECK(captured.ts.optim.adamw.step == CAPTURED_STEPS, "optimizer steps %ld", captured.ts.optim.adamw.step);
    float *we = params_host(&eager.ts), *wc = params_host(&captured.ts);
    size_t n = eager.ts.model.g->param_numel, k = eager.ts.optim.adamw.n;
    REQUIRE(we && wc, "out of memory");
    CHECK(memcmp(we, wc, n * sizeof(float)) == 0, "the weights differ between eager and captured steps");
    float *me = malloc(k * sizeof(float)), *mc = malloc(k * sizeof(float));
    REQUIRE(me && mc, "out of memory");
    backend_to_host(DEV_CUDA, me, eager.ts.optim.adamw.v, k * sizeof(float));
    backend_to_host(DEV_CUDA, mc, captured.ts.optim.adamw.v, k * sizeof(float));
    CHECK(memcmp(me, mc, k * sizeof(float)) == 0, "AdamW's second moments differ between eager and captured steps");
    free(we); free(wc); free(me); free(mc);
    close_run(&captured);
    close_run(&eager);
}

int main(void) {
    test_seed("test_gpu_train");
    if (!no_gpu()) have_shards = make_shards() == 0;
    RUN(test_steps_match_cpu);
    RUN(test_eval_matches_cpu);
    RUN(test_captured_steps_match_eager);
    if (have_shards) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        if (system(cmd)) fprintf(stderr, "could not remove %s\n", dir);
    }
    return test_summary();
}
