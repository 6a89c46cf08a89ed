// test_grad_linalg.c: finite-difference gradient checks of matmul and linear.
#include "tests/gradcheck.h"

static Rng rng;

// fp32 forward, central differences with eps = 1e-2 on O(1) inputs: the
// truncation error is O(eps^2) ~ 1e-4 relative and the rounding error about
// 1e-7 * |L| / eps ~ 1e-4 for L ~ 10; 5e-3 leaves a margin of ~10x over both.
#define LINALG_BOUND 5e-3

static Tensor *build_linear(Graph *g, Tensor **in, void *ctx) {
    return op_linear(g, in[0], in[1], ctx ? in[2] : NULL);
}

static void test_linear_grad(void) {
    GcInput spec[] = {
        { "x", DT_F32, 3, { 2, 3, 5 }, 1 },
        { "w", DT_F32, 2, { 4, 5 }, 1 },
        { "b", DT_F32, 1, { 4 }, 1 },
    };
    GcResult r = gradcheck(spec, 3, build_linear, (void *)1, &rng, 1e-2, 1e-2);
    CHECK_GRAD(r, spec, LINALG_BOUND);
    r = gradcheck(spec, 2, build_linear, NULL, &rng, 1e-2, 1e-2);
    CHECK_GRAD(r, spec, LINALG_BOUND);
}

int main(void) {
    rng_seed(&rng, test_seed("test_grad_linalg"));
    RUN(test_linear_grad);
    return test_summary();
}
