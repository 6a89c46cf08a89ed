// opsuite.h: every op of the fixtures replayed on a device: the case's op
// built on a fresh tape from its inputs and attributes, forward, backward
// from the stored d(out), and the output and each input gradient compared
// with PyTorch's values and, off the CPU, with the CPU's on the same inputs.
// tests/test_forward_torch (the CPU against PyTorch) and `distil selftest`
// (every backend) run it.
#pragma once
#include <stddef.h>
#include "autograd/graph.h"            // defines: Graph, Tensor, Device
#include "train/selftest/fixture.h"    // defines: Fixture, FxCase
#include "train/selftest/tolerance.h"  // defines: Tol

// The op of case c applied to its inputs x[0..n) (the 'i' and 'p' tensors in
// order) and attributes; NULL when the op is unknown or n does not fit it.
Tensor *opsuite_build(Graph *g, const FxCase *c, Tensor **x, int n);

// The bound on the error against PyTorch (tolerance.h's metric) of op on
// the CPU: 0 is bitwise; -1 for an op with no bound (a case the suite
// cannot judge).
double opsuite_fixture_tol(const char *op);
// A device against the CPU: the bounds on op's output and its input
// gradients. 0 when op is unknown.
int opsuite_parity_tol(const char *op, Tol *out, Tol *grad);

// One case run on one device: its output and input gradients on the host.
typedef struct OpRun {
    Tensor *out;                     // on the tape (freed with it)
    DType out_dtype;
    size_t out_numel;
    float *out_f32;                  // (out_numel) f32 outputs, else NULL
    uint16_t *out_bf16;              // (out_numel) bf16 outputs' bits, else NULL
    int n_in;
    const FxTensor *in[FX_MAX_TENSORS];   // the case's inputs, in order
    float *grad[FX_MAX_TENSORS];     // ('p' inputs with an expected gradient) d(input), else NULL
    char err[160];                   // why the case could not run ("" when it ran)
} OpRun;

// How the op's backward writes its inputs' gradients (autograd/tensor.h:
// the first writer of a gradient assigns it, later ones and parameters add).
typedef enum {
    // Each 'p' input reaches the op through a copy (op_scale by 1, exact:
    // the op sees the same values and its gradient passes back unchanged),
    // so the op writes activation gradients, which it must assign; the tape
    // fills them with NaNs first (poison_grads), and a kernel that adds
    // where it should assign shows. `distil selftest` runs this way.
    OPSUITE_ASSIGN,
    // Each 'p' input is a parameter the op reads directly: its backward adds
    // into gradients zeroed before it.
    OPSUITE_ACCUMULATE,
} OpGradMode;

// Builds and runs case c on dev; 0, or -1 with run->err set (the case and
// this build of distil disagree). Free with opsuite_run_free.
int opsuite_run(const FxCase *c, Device dev, OpGradMode mode, OpRun *run);
void opsuite_run_free(OpRun *run);

// One comparison's outcome: a tensor of a case on a device against a
// reference, judged by its worst element.
typedef struct OpCheck {
    char op[32], case_name[64], what[72];    // what: "out" or "d<input>"
    const char *against;                     // "PyTorch", "the CPU"... (NULL: a check of got alone)
    const char *rule;                        // what must hold, when not a bound ("it must be lower")
    size_t index;                            // the worst element
    double got, want;                        // its values
    double error, tolerance;                 // against PyTorch: error and bound;
                                             // the CPU: ratio to the bound, and 1
    double excess;                           // error / tolerance (inf when the bound is 0 and they differ)
} OpCheck;

// Collects a suite's outcome on one device.
typedef struct OpSuiteResult {
    int cases, checks, failed;               // cases run, comparisons, comparisons failed
    OpCheck worst;                           // the comparison with the largest excess (failed if failed > 0)
    char failed_ops[256];                    // each failing op once, comma-separated
    char error[512];                         // a case that could not run (then failed > 0 too)
} OpSuiteResult;

// Every case of fx on dev, its gradients assigned (OPSUITE_ASSIGN): against
// PyTorch, and against the CPU when dev is not the CPU. Adds to *res (zero it first). verbose: print each check.
void opsuite_check_fixture(const Fixture *fx, Device dev, int verbose, OpSuiteResult *res);

// Adds one finished comparison to *res; returns 1 when it failed.
int opsuite_record(OpSuiteResult *res, const OpCheck *c);
// "op gelu, case gelu_tails: out[17] = 0.5123 against PyTorch's 0.4988
// (error 2.7e-02, tolerance 1.1e-04)" into buf.
char *opsuite_describe(const OpCheck *c, char *buf, size_t n);
