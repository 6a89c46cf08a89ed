// fixture.h: the reader of the PyTorch fixtures (tests/fixtures/ops.bin
// from scripts/gen_op_fixtures.py, tests/fixtures/losses.bin from
// scripts/gen_loss_fixtures.py, one format): from a file for the tests, from
// the copy built into the binary for `distil selftest` (fixtures_embedded.c).
// Every read is bounds-checked: a damaged image is reported, never read past.
//
// The format, all little-endian (the reader assumes a little-endian host):
//   magic "DSTLOPS1", u32 case count, then per case:
//     str case name, str op name (op_name())      str = u16 length + bytes
//     u8 n + i32[n] iattr, u8 n + f32[n] fattr     as the constructor stores them
//     u8 tensor count, then per tensor:
//       str name; u8 role ('i' input without gradient, 'p' input with
//       gradient, in constructor order; 'o' expected output; 'u' d(out);
//       'g' expected gradient of the 'p' of the same name); u8 dtype (DType);
//       u8 ndim; u32 shape[ndim]; numel * dtype_size bytes, row-major.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "autograd/tensor.h"   // defines: DType, TENSOR_NAME_LEN, TENSOR_MAX_DIMS

#define FX_MAX_TENSORS 16
#define FX_MAX_ATTR 8

typedef struct {
    char name[TENSOR_NAME_LEN];
    char role;                 // 'i', 'p', 'o', 'u' or 'g'
    DType dtype;
    int ndim;
    int shape[TENSOR_MAX_DIMS];
    size_t numel;
    const uint8_t *data;       // into the image; possibly unaligned
} FxTensor;

typedef struct {
    char name[64], op[32];
    int iattr[FX_MAX_ATTR], n_iattr;
    float fattr[FX_MAX_ATTR];
    int n_fattr;
    FxTensor t[FX_MAX_TENSORS];
    int n_tensors;
} FxCase;

typedef struct {
    const uint8_t *bytes;      // the whole image
    size_t len;
    int owned;                 // bytes were malloc'ed by fixture_load
    FxCase *cases;
    int n_cases;
} Fixture;

// Parse an image that outlives the Fixture (not copied). NULL with err =
// "<name>: what is wrong and where".
Fixture *fixture_parse(const uint8_t *bytes, size_t len, const char *name, char *err, size_t errlen);
// Read and parse a file. NULL after printing what is wrong with it and
// where; `generator` is the script that regenerates it, for that message.
Fixture *fixture_load(const char *path, const char *generator);
void fixture_free(Fixture *fx);

// The tensor of case c with this role and name (any name when NULL), or NULL.
const FxTensor *fx_find(const FxCase *c, char role, const char *name);
// How many of c's tensors have one of these roles ("ip": the inputs).
int fx_count(const FxCase *c, const char *roles);
// A float fixture tensor as an aligned host array (the caller frees).
float *fx_floats(const FxTensor *t);
