// safetensors.h: the format checkpoints, init_from and export use.
//
//   8 bytes   N, little-endian u64
//   N bytes   JSON header: {"__metadata__": {str: str}, "name": {"dtype": "F32",
//             "shape": [...], "data_offsets": [begin, end]}, ...}, padded with
//             spaces to a multiple of 8
//   the data  every tensor's bytes, little-endian, row-major; offsets are
//             relative to this section, which the tensors cover exactly
//
// The writer lays files out as the reference implementation (huggingface/
// safetensors) does: compact JSON, metadata first, tensors sorted by dtype
// (widest first) then name, so a file of one dtype is sorted by name and is
// byte-identical to the reference's (but for names or metadata holding
// control characters other than \b\f\n\r\t, which jansson escapes as
// \u001F and the reference as \u001f). It writes atomically (temp file,
// fsync, rename, fsync of the directory). The reader checks everything
// before it hands out a byte: a truncated or corrupt file is one error line
// naming the file and what is wrong (for the header JSON, its line and
// column).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "autograd/graph.h"   // defines: Graph, Tensor
#include "train/formats/json_io.h"    // defines: json_t

#define ST_MAX_DIMS 8

// The dtypes of the format with whole-byte elements. Sub-byte ones
// (F4, F6_*) are refused by name.
typedef enum {
    ST_F32 = 0, ST_F16, ST_BF16, ST_F64,
    ST_I64, ST_I32, ST_I16, ST_I8,
    ST_U64, ST_U32, ST_U16, ST_U8,
    ST_BOOL, ST_F8_E5M2, ST_F8_E4M3, ST_F8_E8M0, ST_C64,
    ST_DTYPE_COUNT
} StDtype;

const char *st_dtype_name(StDtype dt);   // "F32"
size_t st_dtype_size(StDtype dt);        // bytes per element
int st_dtype_parse(const char *name);    // an StDtype, or -1

// IEEE half precision. Rounds to nearest even; overflow goes to infinity,
// values below the half range to subnormals or zero; NaN stays a quiet NaN.
uint16_t st_f32_to_f16(float f);
float st_f16_to_f32(uint16_t h);

// A tensor to write: fp32 host values, converted to the file's dtype; or,
// with raw set, raw_dtype elements (host order, little-endian) written as
// they are (integer tables such as a vocabulary map).
typedef struct StTensor {
    const char *name;
    int ndim;                         // 0 (a scalar) .. ST_MAX_DIMS
    int64_t shape[ST_MAX_DIMS];
    const float *data;                // (numel) fp32, unless raw
    const void *raw;                  // (numel) raw_dtype elements, or NULL
    StDtype raw_dtype;
} StTensor;

typedef struct StMeta { const char *key, *value; } StMeta;

// Write tensors (names unique, not "__metadata__") and metadata (keys
// unique) to path, the float tensors as out_dtype (ST_F32, ST_F16 or
// ST_BF16). Atomic: "<path>.tmp.<pid>" is written, flushed, fsync'ed and
// renamed over path, then the directory is fsync'ed; a crash at any instant
// leaves the old file or the new one. Returns 0, or -1 with err set.
int st_write(const char *path, const StTensor *tensors, int n, const StMeta *meta, int n_meta,
             StDtype out_dtype, char *err, size_t errlen);

// One tensor of an open file.
typedef struct StInfo {
    const char *name;
    StDtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    size_t numel;
    const uint8_t *data;              // (nbytes) into the file's bytes: little-endian, unaligned
    size_t nbytes;
} StInfo;

typedef struct StFile {
    char *path;
    uint8_t *bytes;                   // the whole file
    size_t size;
    size_t data_start;                // 8 + N
    StInfo *tensors;                  // (n_tensors) sorted by name
    int n_tensors;
    StMeta *meta;                     // (n_meta) sorted by key
    int n_meta;
    json_t *header;                   // owns the names and metadata strings
} StFile;

// Read and validate the whole file. NULL with err set on any problem.
StFile *st_open(const char *path, char *err, size_t errlen);
void st_close(StFile *f);
// Index of the tensor named name, or -1.
int st_find(const StFile *f, const char *name);
// The metadata value for key, or NULL.
const char *st_meta(const StFile *f, const char *key);
// Tensor `index` (or `name`) as fp32 into dst[0..n): F32, F16, BF16 and F64
// are converted; n must equal its numel. Returns 0, or -1 with err set.
int st_read_f32_at(const StFile *f, int index, float *dst, size_t n, char *err, size_t errlen);
int st_read_f32(const StFile *f, const char *name, float *dst, size_t n, char *err, size_t errlen);

// ---- a Graph's parameters ----------------------------------------------------

// Every parameter of g under its name, as dtype (ST_F32, ST_F16, ST_BF16).
int st_save_graph_params(const char *path, const Graph *g, const StMeta *meta, int n_meta, StDtype dtype,
                         char *err, size_t errlen);

typedef struct StLoadReport {
    int loaded;          // parameters set from the file
    int missing;         // selected model parameters absent from the file
    int unexpected;      // selected file tensors that are no model parameter
    int skipped;         // model parameters and file tensors outside only_patterns
} StLoadReport;

// Load the parameters of g found in path. only_patterns (fnmatch globs
// over names; n_patterns 0: everything) select the names considered on both
// sides; the rest is skipped. A shape mismatch is always an error naming
// the tensor and both shapes. strict: a selected model parameter missing
// from the file, or a selected file tensor unknown to the model, is an
// error; otherwise they are counted in *report (may be NULL). Everything is
// checked before any parameter is written, so on error g is unchanged.
int st_load_graph_params(const char *path, Graph *g, const char *const *only_patterns, int n_patterns,
                         int strict, StLoadReport *report, char *err, size_t errlen);
