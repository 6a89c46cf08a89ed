// test_grad_loss.c: the losses (cross_entropy, smooth_l1, mse): finite-
// difference gradient checks with ignored targets and every kind of mask,
// forward values against double-precision reference loops written here, and
// the degenerate cases (every target ignored, every weight 0) that must give
// a loss of 0 and no gradient.
#include <string.h>
#include "tests/gradcheck.h"

static Rng rng;

// Each loss is a scalar ~O(1) rounded once to fp32, ~1e-7 absolute; through
// the step 2 eps that is the noise of a numeric gradient, so eps is as large
// as the losses allow. smooth_l1 and mse are piecewise quadratic, where
// central differences are exact (the test data keeps |d| >= 0.2 from the
// kink at beta = 1, so eps = 0.05 never crosses it); cross_entropy adds a
// truncation error ~eps^2/6 * |f'''| that grows with eps. Against the floor
// 1e-2 (gradients ~1/rows) the worst over 300 seeds was 1.1e-3 for
// cross_entropy and 2.6e-4 for the regressions; 1e-2 leaves ~10x margin,
// while a wrong factor or sign errs by >= 0.3.
#define LOSS_EPS 5e-2
#define LOSS_FLOOR 1e-2
#define LOSS_BOUND 1e-2
// Forward values: both sides sum in double; the kernel rounds the loss to
// fp32 (6e-8) and cross_entropy keeps logsumexp in fp32 (a few ulps of ~3).
// 1e-5 relative leaves >10x margin over both.
#define LOSS_FWD_BOUND 1e-5

static float *f32(const Tensor *t) { return (float *)t->data; }

// ---- cross_entropy ---------------------------------------------------------

enum { CE_R = 6, CE_V = 7 };                    // logits [2, 3, 7]: 6 rows of 7

typedef struct { int ignore_index; const int *targets; } CeCase;

static Tensor *build_ce(Graph *g, Tensor **in, void *ctx) {
    return op_cross_entropy(g, in[0], in[1], ((const CeCase *)ctx)->ignore_index);
}

// -100 is PyTorch's default; 2 is an ignore_index inside [0, V), so class 2
// never counts. 9 and -1 are outside [0, V) and must be skipped, not read.
static const int ce_targets_a[CE_R] = { 3, -100, 0, 6, -100, 2 };
static const int ce_targets_b[CE_R] = { 2, 5, 2, 1, 9, -1 };
static const int ce_targets_none[CE_R] = { -100, -100, 7, -100, -3, -100 };

static double ce_reference(const float *logits, const int *targets, int ignore_index) {
    double total = 0;
    int count = 0;
    for (int r = 0; r < CE_R; r++) {
        int t = targets[r];
        if (t == ignore_index || t < 0 || t >= CE_V) continue;
        const float *row = logits + r * CE_V;
        double s = 0;
        for (int v = 0; v < CE_V; v++) s += exp((double)row[v]);
        total += log(s) - row[t];
        count++;
    }
    return count ? total / count : 0.0;
}

// Forward against the reference; logits are a parameter so that the
// all-ignored case can also check that no gradient reaches them.
static void check_ce_forward(const CeCase *c) {
    Graph *g = graph_new(DEV_CPU);
    Tensor *logits = graph_param(g, "logits", 3, (int[]){ 2, 3, CE_V }, INIT_ZEROS, 0, 0);
    Tensor *targets = graph_input(g, "targets", DT_I32, 2, (int[]){ 2, 3 });
    Tensor *loss = op_cross_entropy(g, logits, targets, c->ignore_index);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    for (size_t i = 0; i < logits->numel; i++) f32(logits)[i] = 2.0f * rng_normal(&rng);
    memcpy(targets->data, c->targets, CE_R * sizeof(int));
    graph_forward(g);
    double want = ce_reference(f32(logits), c->targets, c->ignore_index);
    CHECK(test_rel_err(f32(loss)[0], want, 1.0) <= LOSS_FWD_BOUND, "ignore %d: loss %.9g, want %.9g",
          c->ignore_index, f32(loss)[0], want);
    graph_zero_grad(g);
    graph_backward(g, loss);
    // Every row of logits sums to 0 in the gradient (softmax - onehot), and
    // a row whose target does not count has no gradient at all.
    for (int r = 0; r < CE_R; r++) {
        int t = c->targets[r], counted = t != c->ignore_index && t >= 0 && t < CE_V;
        double s = 0, mag = 0;
        for (int v = 0; v < CE_V; v++) { s += logits->grad[r * CE_V + v]; mag += fabs(logits->grad[r * CE_V + v]); }
        // The softmax sums to 1 within a few ulps of logsumexp (~5): ~1e-6,
        // times 1/count <= 1; 1e-5 is 10x that.
        if (counted) CHECK(fabs(s) < 1e-5 && mag > 0, "row %d: grad sums to %g (|grad| %g)", r, s, mag);
        else CHECK(mag == 0, "ignored row %d has gradient %g", r, mag);
    }
    graph_free(g);
}

static void test_cross_entropy(void) {
    const CeCase cases[] = { { -100, ce_targets_a }, { 2, ce_targets_b } };
    for (int k = 0; k < 2; k++) {
        GcInput spec[] = {
            { "logits", DT_F32, 3, { 2, 3, CE_V }, 1, .scale = 2.0f },
            { "targets", DT_I32, 2, { 2, 3 }, 0, .ivalues = cases[k].targets },
        };
        GcResult r = gradcheck(spec, 2, build_ce, (void *)&cases[k], &rng, LOSS_EPS, LOSS_FLOOR);
        CHECK_GRAD(r, spec, LOSS_BOUND);
        check_ce_forward(&cases[k]);
    }
}

static void test_cross_entropy_all_ignored(void) {
    CeCase c = { -100, ce_targets_none };
    check_ce_forward(&c);                       // reference 0; every row checked for no gradient
    Graph *g = graph_new(DEV_CPU);
    Tensor *logits = graph_param(g, "logits", 2, (int[]){ CE_R, CE_V }, INIT_ZEROS, 0, 0);
    Tensor *targets = graph_input(g, "targets", DT_I32, 1, (int[]){ CE_R });
    Tensor *loss = op_cross_entropy(g, logits, targets, -100);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    for (size_t i = 0; i < logits->numel; i++) f32(logits)[i] = rng_normal(&rng);
    memcpy(targets->data, ce_targets_none, sizeof ce_targets_none);
    graph_forward(g);
    CHECK(f32(loss)[0] == 0.0f, "loss %g with every target ignored", f32(loss)[0]);
    graph_zero_grad(g);
    graph_backward(g, loss);
    for (size_t i = 0; i < logits->numel; i++)
        if (logits->grad[i] != 0.0f) { CHECK(0, "logits grad[%zu] = %g", i, logits->grad[i]); break; }
    graph_free(g);
}

// ---- smooth_l1 and mse ------------------------------------------------------

enum { RG_B = 2, RG_T = 4, RG_C = 3, RG_N = RG_B * RG_T * RG_C };   // pred [2, 4, 3]
typedef enum { MASK_NONE, MASK_FULL, MASK_BT, MASK_B, MASK_KINDS } MaskKind;
static const char *mask_names[MASK_KINDS] = { "none", "full [2,4,3]", "prefix [2,4]", "prefix [2]" };
static const int mask_ndim[MASK_KINDS] = { 0, 3, 2, 1 };

typedef struct {
    int is_mse;
    float beta;
    MaskKind mask;
    float pred[RG_N], target[RG_N], weight[RG_N];   // weight: the mask's own values (its numel)
} RegCase;

static size_t mask_numel(MaskKind m) {
    static const size_t n[MASK_KINDS] = { 0, RG_N, RG_B * RG_T, RG_B };
    return n[m];
}

// pred ~ N(0, 1); target = pred - d with |d| in [0.1, 0.8] or [1.2, 3]
// (either sign), so a step of eps = 0.05 never crosses smooth_l1's kink at
// |d| = beta = 1 and both of its zones are exercised. Mask values are 0 a
// quarter of the time, else in [0.25, 1.25); the first is 1 so the weights
// never all vanish.
static void reg_fill(RegCase *c) {
    for (int i = 0; i < RG_N; i++) {
        float mag = rng_below(&rng, 2) ? 0.1f + 0.7f * rng_uniform(&rng) : 1.2f + 1.8f * rng_uniform(&rng);
        c->pred[i] = rng_normal(&rng);
        c->target[i] = c->pred[i] - (rng_below(&rng, 2) ? mag : -mag);
    }
    for (size_t j = 0; j < mask_numel(c->mask); j++)
        c->weight[j] = rng_below(&rng, 4) ? 0.25f + rng_uniform(&rng) : 0.0f;
    c->weight[0] = 1.0f;
}

static Tensor *build_reg(Graph *g, Tensor **in, void *ctx) {
    const RegCase *c = ctx;
    Tensor *mask = c->mask == MASK_NONE ? NULL : in[2];
    return c->is_mse ? op_mse(g, in[0], in[1], mask) : op_smooth_l1(g, in[0], in[1], mask, c->beta);
}

static double reg_reference(const RegCase *c) {
    size_t inner = c->mask == MASK_NONE ? 1 : RG_N / mask_numel(c->mask);
    double num = 0, den = 0;
    for (int i = 0; i < RG_N; i++) {
        double w = c->mask == MASK_NONE ? 1.0 : c->weight[i / inner];
        double d = (double)c->pred[i] - c->target[i], l;
        if (c->is_mse) l = d * d;
        else l = fabs(d) < c->beta ? 0.5 * d * d / c->beta : fabs(d) - 0.5 * c->beta;
        num += w * l;
        den += w;
    }
    return den == 0 ? 0.0 : num / den;
}

// Forward value against the reference; then backward with pred, target and
// the mask all parameters: pred's and target's grads are exact negatives,
// and the mask, though it could take one, gets no gradient.
static void check_reg_forward(const RegCase *c, double want) {
    Graph *g = graph_new(DEV_CPU);
    const int shape[3] = { RG_B, RG_T, RG_C };
    Tensor *in[3];
    in[0] = graph_param(g, "pred", 3, shape, INIT_ZEROS, 0, 0);
    in[1] = graph_param(g, "target", 3, shape, INIT_ZEROS, 0, 0);
    in[2] = c->mask == MASK_NONE ? NULL : graph_param(g, "mask", mask_ndim[c->mask], shape, INIT_ZEROS, 0, 0);
    Tensor *loss = build_reg(g, in, (void *)c);
    REQUIRE(graph_plan(g) == 0, "plan failed");
    memcpy(in[0]->data, c->pred, sizeof c->pred);
    memcpy(in[1]->data, c->target, sizeof c->target);
    if (in[2]) memcpy(in[2]->data, c->weight, mask_numel(c->mask) * sizeof(float));
    graph_forward(g);
    const char *op = c->is_mse ? "mse" : "smooth_l1";
    CHECK(test_rel_err(f32(loss)[0], want, 1.0) <= LOSS_FWD_BOUND, "%s, mask %s: loss %.9g, want %.9g",
          op, mask_names[c->mask], f32(loss)[0], want);
    graph_zero_grad(g);
    graph_backward(g, loss);
    int bad = 0;
    for (int i = 0; i < RG_N; i++) bad += in[0]->grad[i] != -in[1]->grad[i];
    CHECK(bad == 0, "%s, mask %s: %d pred grads are not the negated target grads", op, mask_names[c->mask], bad);
    for (size_t j = 0; in[2] && j < in[2]->numel; j++)
        if (in[2]->grad[j] != 0.0f) { CHECK(0, "%s: mask grad[%zu] = %g", op, j, in[2]->grad[j]); break; }
    graph_free(g);
}

static void check_regression(int is_mse) {
    static RegCase c;
    for (int m = 0; m < MASK_KINDS; m++) {
        c.is_mse = is_mse;
        c.beta = 1.0f;
        c.mask = (MaskKind)m;
        reg_fill(&c);
        GcInput spec[] = {
            { "pred", DT_F32, 3, { RG_B, RG_T, RG_C }, 1, .values = c.pred },
            { "target", DT_F32, 3, { RG_B, RG_T, RG_C }, 1, .values = c.target },
            { "mask", DT_F32, mask_ndim[m], { RG_B, RG_T, RG_C }, 0, .values = c.weight },
        };
        GcResult r = gradcheck(spec, m == MASK_NONE ? 2 : 3, build_reg, &c, &rng, LOSS_EPS, LOSS_FLOOR);
        if (r.max_rel_err > LOSS_BOUND) fprintf(stderr, "  %s, mask %s:\n", is_mse ? "mse" : "smooth_l1", mask_names[m]);
        CHECK_GRAD(r, spec, LOSS_BOUND);
        check_reg_forward(&c, reg_reference(&c));
    }
}

static void test_smooth_l1(void) {
    check_regression(0);
    // Another beta, forward only (its zones differ from beta = 1's).
    static RegCase c = { 0, 0.5f, MASK_BT };
    reg_fill(&c);
    check_reg_forward(&c, reg_reference(&c));
}

static void test_mse(void) { check_regression(1); }

// Every weight 0: the loss is 0 (not 0/0) and no gradient flows, even
// where a masked-out target is NaN.
static void test_all_masked(void) {
    static RegCase c;
    for (int is_mse = 0; is_mse < 2; is_mse++)
        for (int m = MASK_FULL; m < MASK_KINDS; m++) {
            c.is_mse = is_mse;
            c.beta = 1.0f;
            c.mask = (MaskKind)m;
            reg_fill(&c);
            memset(c.weight, 0, sizeof c.weight);
            c.target[5] = NAN;
            Graph *g = graph_new(DEV_CPU);
            Tensor *in[3];
            in[0] = graph_param(g, "pred", 3, (int[]){ RG_B, RG_T, RG_C }, INIT_ZEROS, 0, 0);
            in[1] = graph_param(g, "target", 3, (int[]){ RG_B, RG_T, RG_C }, INIT_ZEROS, 0, 0);
            in[2] = graph_input(g, "mask", DT_F32, mask_ndim[m], (int[]){ RG_B, RG_T, RG_C });
            Tensor *loss = build_reg(g, in, &c);
            REQUIRE(graph_plan(g) == 0, "plan failed");
            memcpy(in[0]->data, c.pred, sizeof c.pred);
            memcpy(in[1]->data, c.target, sizeof c.target);
            memcpy(in[2]->data, c.weight, in[2]->numel * sizeof(float));
            graph_forward(g);
            CHECK(f32(loss)[0] == 0.0f, "%s, mask %s all 0: loss %g", is_mse ? "mse" : "smooth_l1", mask_names[m], f32(loss)[0]);
            graph_zero_grad(g);
            graph_backward(g, loss);
            int nonzero = 0;
            for (int i = 0; i < RG_N; i++) nonzero += in[0]->grad[i] != 0.0f || in[1]->grad[i] != 0.0f;
            CHECK(nonzero == 0, "%s, mask %s all 0: %d nonzero grads", is_mse ? "mse" : "smooth_l1", mask_names[m], nonzero);
            graph_free(g);
        }
}

int main(void) {
    rng_seed(&rng, test_seed("test_grad_loss"));
    RUN(test_cross_entropy);
    RUN(test_cross_entropy_all_ignored);
    RUN(test_smooth_l1);
    RUN(test_mse);
    RUN(test_all_masked);
    return test_summary();
}
