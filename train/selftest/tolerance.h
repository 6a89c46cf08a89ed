// tolerance.h: how far a device's result may lie from the CPU's on the same
// inputs, and from PyTorch's. tests/test_gpu_parity, tests/test_gpu_train and
// `distil selftest` all judge by these, so the argument for each bound is
// made once, here.
#pragma once
#include <stddef.h>

// ---- A device against the CPU ----------------------------------------------
// A value passes when |cpu - dev| <= rtol * max(|cpu|, |dev|) + atol * S,
// S the largest |cpu| of that tensor. The atol term is relative to the
// tensor's scale because rounding errors scale with the terms that were
// combined, not with a result that cancelled to near zero.
typedef struct { double rtol, atol; } Tol;
// (Compound literals rather than const objects: clang, which builds make
// fuzz, takes no const object in a static initializer such as opsuite.c's
// table.)

// Data movement (concat, slice, transpose, embedding, cast, patchify) and
// single IEEE operations (a + b, a * b, s * a, a gradient added once onto
// zero), and sums carried in the same order on both sides (cumsum's double
// scan, embedding's id-ordered scatter): both devices round identically.
#define TOL_EXACT ((Tol){ 0, 0 })
// Elementwise math: CUDA's expf/sinf/cosf/tanhf are within 2 ulp (~2.4e-7),
// glibc's within 1, and nvcc contracts a * b + c into one FMA (one rounding
// instead of two). 1e-6 is ~8 ulp; the atol covers 1 + tanh(u) and friends
// cancelling towards 0 (gelu of a very negative x). The distillation losses
// belong here too: both backends compute them in double and round once,
// and only the order of the double sums differs.
#define TOL_ULP ((Tol){ 1e-6, 1e-6 })
// Reductions of <= ~64 terms summed in another order (a fixed tree of fp32
// partials on the GPU, serial or double sums on the CPU): the typical error
// is ~ sqrt(n) ulp of the terms' scale, ~1e-6 here; 1e-5 leaves a 10x margin.
// Softmax, layernorm, attention and the losses all reduce rows this way.
#define TOL_REDUCE ((Tol){ 1e-5, 1e-5 })
// Matrix products: cuBLAS and OpenBLAS sum the K <= 64 products in
// different orders (blocked, FMA'd): the same argument as TOL_REDUCE. TF32
// is off (cuda_set_allow_tf32 defaults to 0); with it on, 1e-3 would be needed.
#define TOL_GEMM ((Tol){ 1e-5, 1e-5 })
// A whole transformer step: ~15 ops deep, and layernorm and softmax
// backward amplify earlier rounding by rstd (up to ~3 here) and by the
// cancellation in y * (dy - sum(dy * y)). Each op's own error is ~1e-6;
// compounded and amplified, 1e-4 is a 10x margin over what is expected.
#define TOL_STEP ((Tol){ 1e-4, 1e-4 })

// train.precision bf16's stored activations (autograd/plan.h): each backend
// rounds its own fp32 value to bf16, and the two fp32 values differ by a
// few ulps (TOL_REDUCE's sums), so now and then one lies on the other side
// of a rounding boundary and the stored bf16 differs by one bf16 ulp,
// 2^-8 = 3.9e-3 of the element. Whatever reads it (a product, the
// attention) moves by that much of one term: 1e-2 holds a few such flips.
// It cannot see a missing rounding (half a bf16 ulp at most), so the bf16
// cases also compare the stored bits themselves (tests/test_gpu_parity.c).
#define TOL_BF16 ((Tol){ 1e-2, 1e-2 })

// ---- Training steps against the CPU's ----------------------------------------
// The step's loss and its components, with the same weights on both sides
// (step 0), differ only by the ops' own rounding: TOL_STEP's 1e-4, relative.
// Later steps start from weights that already differ by the updates'
// rounding; a few AdamW steps at a small learning rate keep that below it.
#define TOL_STEP_LOSS_RTOL 1e-4
// The gradient norm: a sum of squares over every gradient, each within the
// TOL_STEP bound of its CPU twin; the norm's relative error is at most theirs.
#define TOL_STEP_NORM_RTOL 1e-4
// The weights' updates after a few AdamW steps, as
// ||dW_dev - dW_cpu|| / ||dW_cpu|| over all parameters. Adam divides each
// gradient by its own running scale, so an element whose gradient is
// rounding noise on both sides (ulp-sized, of either sign) moves by up to lr
// either way: a per-element bound would have to be lr itself and would
// check nothing. In the norm such elements are a few among thousands:
// 1e-2 holds them and still fails a wrong update, a wrong gradient or a
// missed input (each of which moves dW by O(1) of itself).
#define TOL_STEP_UPDATE_RTOL 1e-2

// The worst element of got against ref under tol, as the ratio of its
// difference to its bound (<= 1 passes; NaN against a number, or a number
// where the bound is 0, is infinite; equal values, NaNs or infinities are
// 0). *at gets its index, *scale the tensor's S.
double tol_worst_ratio(const float *ref, const float *got, size_t n, Tol tol, size_t *at, double *scale);
// The same with S given: for a long sum whose result may cancel, S is the
// sum of its terms' magnitudes (a reordered sum of n terms errs by at most
// ~n eps of that, typically ~sqrt(n) eps: ~1.5e-6 at 600 terms).
double tol_worst_ratio_at(const float *ref, const float *got, size_t n, Tol tol, double scale, size_t *at);

// ---- Against PyTorch ------------------------------------------------------------
// The fixtures hold float64 math on the same float32 inputs, rounded once.
// An element's error is |got - want| / max(|want|, FX_FLOOR * max|want| over
// the tensor): relative, except that elements far below the tensor's scale
// (the results of cancellation, where fp32 keeps only an absolute accuracy
// on that scale) are judged on 1% of it. Each op's bound is argued in
// opsuite.c (opsuite_fixture_tol).
#define FX_FLOOR 1e-2
// The worst element's error; exact (a bound of 0) makes any difference
// infinite. NaN or an infinity where want differs is infinite.
double fx_worst_error(const float *got, const float *want, size_t n, int exact, size_t *at);
