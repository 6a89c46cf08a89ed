// test_forward_torch.c: every op's forward values and input gradients
// against PyTorch, from the committed fixture tests/fixtures/ops.bin (made by
// scripts/gen_op_fixtures.py, which says how to regenerate it; CI needs no
// torch). Run from the repo root. DISTIL_TEST_VERBOSE=1 prints each case's
// worst error.
//
// For each case, twice: a fresh CPU tape; float inputs with an expected
// gradient are parameters, the rest inputs; one op constructor; graph_forward
// and the output compared; then graph_zero_grad + graph_backward_seeded with
// the stored upstream gradient d(out), and each input's gradient compared.
// Once the parameters reach the op through a copy (its backward assigns the
// gradients, poisoned with NaNs first), once directly (it adds into them).
//
// ops.bin's format: train/selftest/fixture.h. The replay is opsuite_run's,
// the one `distil selftest` runs on every backend.
#include <stdint.h>
#include <string.h>
#include "train/selftest/fixture.h"     // defines: Fixture, fixture_load, fx_find, fx_floats
#include "train/selftest/opsuite.h"     // defines: opsuite_run, opsuite_fixture_tol, fx_worst_error
#include "tests/test.h"                 // defines: RUN, CHECK, REQUIRE, test_summary

#define FIXTURE_PATH "tests/fixtures/ops.bin"

// The bounds and the metric are argued once, in train/selftest/opsuite.c
// (opsuite_fixture_tol) and tolerance.h; `distil selftest` judges by them too.

static int verbose;

// CHECKs got (n floats) against want; what names the tensor in messages.
static void compare_f32(const char *what, const float *got, const float *want, size_t n, double tol) {
    size_t at = 0;
    double worst = fx_worst_error(got, want, n, tol == 0, &at);
    if (verbose) printf("    %-34s worst err %.3g (tol %.3g)\n", what, worst, tol);
    CHECK(worst <= tol, "%s: err %.3g > %.3g at [%zu]: got %.9g, want %.9g", what, worst, tol, at, n ? got[at] : 0.0,
          n ? want[at] : 0.0);
}

static void check_output(const FxCase *c, const OpRun *run, const FxTensor *want, double tol) {
    char what[160];
    snprintf(what, sizeof what, "%s: out", c->name);
    if (run->out_bf16) {
        // Compare the stored bit patterns: rounding must match exactly.
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < run->out_numel; i++) {
            uint16_t w;
            memcpy(&w, want->data + 2 * i, 2);
            if (run->out_bf16[i] != w && bad++ == 0) first = i;
        }
        uint16_t w0 = 0;
        if (bad) memcpy(&w0, want->data + 2 * first, 2);
        if (verbose) printf("    %-34s %zu of %zu bf16 values differ\n", what, bad, run->out_numel);
        CHECK(bad == 0, "%s: %zu bf16 values differ; first at [%zu]: got 0x%04x, want 0x%04x", what, bad, first,
              bad ? run->out_bf16[first] : 0, w0);
        return;
    }
    float *w = fx_floats(want);
    compare_f32(what, run->out_f32, w, run->out_numel, tol);
    free(w);
}

// One case on a CPU tape (opsuite_run): the output, then each input's
// gradient from the stored d(out), written as mode says.
static void run_case_as(const FxCase *c, double tol, OpGradMode mode) {
    OpRun run;
    if (opsuite_run(c, DEV_CPU, mode, &run)) { CHECK(0, "%s: %s", c->name, run.err); return; }
    check_output(c, &run, fx_find(c, 'o', NULL), tol);
    int n_grads = fx_count(c, "g");
    CHECK(n_grads == fx_count(c, "p"), "%s: fixture has %d params but %d expected grads", c->name, fx_count(c, "p"), n_grads);
    for (int k = 0; k < run.n_in; k++) {
        const FxTensor *wg = fx_find(c, 'g', run.in[k]->name);
        if (run.in[k]->role != 'p' || !wg) continue;
        CHECK(run.grad[k], "%s: d%s: the output takes no gradient", c->name, run.in[k]->name);
        if (!run.grad[k]) continue;
        float *w = fx_floats(wg);
        char what[160];
        snprintf(what, sizeof what, "%s: d%s", c->name, run.in[k]->name);
        compare_f32(what, run.grad[k], w, run.in[k]->numel, tol);
        free(w);
    }
    opsuite_run_free(&run);
}

// Both ways a backward writes a gradient: assigned (an activation's, behind
// another op) and added (a parameter's).
static void run_case(const FxCase *c, double tol) {
    run_case_as(c, tol, OPSUITE_ASSIGN);
    run_case_as(c, tol, OPSUITE_ACCUMULATE);
}

// ---- one test per op -----------------------------------------------------------

static Fixture *fixture;   // loaded once by main

static void check_op(const char *op) {
    REQUIRE(fixture, "no fixture (%s)", FIXTURE_PATH);
    double tol = opsuite_fixture_tol(op);
    REQUIRE(tol >= 0, "no tolerance for op %s", op);
    int n = 0;
    for (int i = 0; i < fixture->n_cases; i++) {
        if (strcmp(fixture->cases[i].op, op) != 0) continue;
        if (verbose) printf("  %s\n", fixture->cases[i].name);
        run_case(&fixture->cases[i], tol);
        n++;
    }
    CHECK(n > 0, "%s has no case for op %s", FIXTURE_PATH, op);
}

#define OP_TEST(op) static void test_##op(void) { check_op(#op); }
OP_TEST(matmul) OP_TEST(linear) OP_TEST(add) OP_TEST(mul) OP_TEST(scale)
OP_TEST(layernorm) OP_TEST(gelu) OP_TEST(softmax) OP_TEST(attention)
OP_TEST(embedding) OP_TEST(concat) OP_TEST(slice) OP_TEST(transpose)
OP_TEST(sum) OP_TEST(mean) OP_TEST(patchify) OP_TEST(sin) OP_TEST(cos)
OP_TEST(cumsum) OP_TEST(cross_entropy) OP_TEST(smooth_l1) OP_TEST(mse) OP_TEST(cast)
OP_TEST(bias_gelu) OP_TEST(bias_residual)

// Every case in the file belongs to an op tested above (a renamed op would
// otherwise drop its cases silently).
static void test_fixture_covers_ops(void) {
    REQUIRE(fixture, "no fixture (%s)", FIXTURE_PATH);
    for (int i = 0; i < fixture->n_cases; i++)
        CHECK(opsuite_fixture_tol(fixture->cases[i].op) >= 0, "case %s: unknown op %s", fixture->cases[i].name,
              fixture->cases[i].op);
}

int main(void) {
    const char *v = getenv("DISTIL_TEST_VERBOSE");
    verbose = v && *v && strcmp(v, "0") != 0;
    fixture = fixture_load(FIXTURE_PATH, "scripts/gen_op_fixtures.py");
    RUN(test_fixture_covers_ops);
    RUN(test_matmul); RUN(test_linear); RUN(test_add); RUN(test_mul); RUN(test_scale);
    RUN(test_layernorm); RUN(test_gelu); RUN(test_softmax); RUN(test_attention);
    RUN(test_embedding); RUN(test_concat); RUN(test_slice); RUN(test_transpose);
    RUN(test_sum); RUN(test_mean); RUN(test_patchify); RUN(test_sin); RUN(test_cos);
    RUN(test_cumsum); RUN(test_cross_entropy); RUN(test_smooth_l1); RUN(test_mse); RUN(test_cast);
    RUN(test_bias_gelu); RUN(test_bias_residual);
    fixture_free(fixture);
    return test_summary();
}
