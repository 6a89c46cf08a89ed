// drivelog.h: the drive-log v1 reader. Opens shards (HDF5 files laid out as
// /work/shared/drivelog-v1.md says), checks every structural rule when a shard
// is opened, checks the per-sample rules when a sample is read, and checks that
// the shards of one set agree with each other.
//
// Two kinds of problems, two ways out:
//   structural (a missing dataset, a wrong dtype or rank, mismatched N, a vocab
//   that differs between shards, a file HDF5 cannot open): the whole shard is
//   unusable; dl_shard_open / dl_set_open fail with one line naming the file.
//   per sample (NaN, a token id >= V, a positive log-prob, offsets that go back,
//   a chunk that does not decompress): dl_read_sample returns DL_BAD_SAMPLE with
//   one line naming file, dataset and sample index; the caller applies
//   on_bad_sample (error: stop with exit 2; skip: count it and go on).
//
// Before a shard is opened here, its HDF5 metadata is read and checked in a
// child process (data/wall.h): a damaged file that would crash libhdf5 or
// make it loop is refused with one line naming it, like any other structural
// problem, and dl_set_open_on_bad can skip it.
//
// Error lines carry no "distil: error: " prefix; the command that prints them adds it.
// Every HDF5 call made here runs under one process-wide lock (HDF5 keeps one
// state per process, so it has one lock); decompression runs outside it.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <hdf5.h>
#include "data/wall.h"      // defines: DlWallValues

#define DL_VERSION 1
#define DL_MAX_CAMERAS 16
#define DL_MAX_RANK 5
#define DL_MAX_FILTERS 8
#define DL_ERR_LEN 512        // room for one error line

enum { DL_ON_BAD_ERROR = 0, DL_ON_BAD_SKIP = 1 };
enum { DL_OK = 0, DL_BAD_SAMPLE = 1 };

// Element types as the reader sees them in the file. The contract's types
// are U8 .. STR; the rest are the wider types a writer may use where the
// values survive (numpy's defaults: int64 for any integer, float64).
typedef enum {
    DL_KIND_OTHER = 0, DL_U8, DL_I8, DL_I32, DL_I64, DL_F16, DL_F32, DL_STR,
    DL_I16, DL_U16, DL_U32, DL_U64, DL_F64
} DlKind;

// The datasets of a shard; cameras take DL_CAMERA0 + camera index.
enum {
    DL_CLIP_ID, DL_T0_US, DL_HISTORY, DL_FUTURE, DL_COMMAND, DL_TRAJECTORY, DL_WEIGHT,
    DL_OFFSETS, DL_TOKENS, DL_TOPK_IDS, DL_TOPK_LOGPROBS, DL_TEXT, DL_EMBEDDING, DL_VOCAB,
    DL_CAMERA0,
    DL_N_SLOTS = DL_CAMERA0 + DL_MAX_CAMERAS
};

typedef struct DlFilter {
    int id;                 // H5Z filter id: 1 deflate, 2 shuffle, 32015 zstd, ...
    unsigned flags;
    size_t n_cd;
    unsigned cd[8];         // client data (the zstd level, the shuffle element size)
} DlFilter;

// One dataset of a shard, as found on disk.
typedef struct DlDataset {
    hid_t id;               // -1 when the shard has no such dataset
    char path[96];          // "/camera/front"
    DlKind kind;            // as stored
    DlKind field;           // the contract's type of the field when the file stores
                            // another (read at kind's width, then narrowed, each
                            // value checked to fit), else kind
    int rank;
    hsize_t dims[DL_MAX_RANK];
    size_t type_size;       // bytes per element in the file
    int chunked;
    hsize_t chunk[DL_MAX_RANK];
    size_t chunk_bytes;     // one decompressed chunk: prod(chunk) * type_size
    int n_filters;
    DlFilter filters[DL_MAX_FILTERS];
    // Chunks can be read raw and decoded here (little-endian, filters among
    // deflate/shuffle/zstd); otherwise H5Dread does the work under the lock.
    int raw_ok;
} DlDataset;

typedef struct DlShard {
    char *path;
    uint64_t serial;                    // unique to this open in the process: keys the readers' chunk caches
    int walled;                         // opened behind the wall: its strings are read in child processes
    hid_t file;
    int64_t n;                          // N, samples
    // root attributes
    int64_t version;
    char *fleet, *teacher, *cameras;    // cameras: the attribute as written
    double hz;
    int n_cameras;
    char *camera_names[DL_MAX_CAMERAS];
    // per-sample shapes
    int frames[DL_MAX_CAMERAS], height[DL_MAX_CAMERAS], width[DL_MAX_CAMERAS];
    int Th, T, K, D, k;                 // D = 0 without /teacher/embedding
    int64_t M;                          // trace tokens in the shard
    int64_t V;                          // vocab size
    float temperature;                  // of the top-k log-probs (1.0 when absent)
    int64_t bos, eos;                   // -1 when absent
    char **vocab;                       // (V) pieces, NUL-terminated; NULL once dropped
    int64_t *offsets;                   // (N + 1) trace offsets, loaded at open
    DlDataset ds[DL_N_SLOTS];
    // Structural problems while opening (dl_shard_check's listener).
    void (*on_problem)(const char *line, void *ctx);
    void *problem_ctx;
    int n_problems;
} DlShard;

// A set of shards that agree; samples are numbered 0..n_samples-1 across them.
typedef struct DlSet {
    int n_shards;
    DlShard *shards;
    int64_t *first;         // (n_shards + 1) global index of each shard's sample 0
    int64_t n_samples;
    int n_unusable;         // shards left out under DL_ON_BAD_SKIP (dl_set_open_on_bad)
    char **unusable;        // (n_unusable) the error line of each
} DlSet;

// Where dl_read_sample writes one sample. A NULL pointer skips that field (its
// rules are still checked for everything but the frames).
typedef struct DlSampleDst {
    uint8_t *frames;        // (cams, F, H, W, 3) RGB; NULL: cameras not read at all
    float *history;         // (Th, 4) x, y (m), yaw (rad), speed (m/s)
    float *future;          // (T, 3) x, y, yaw; zeros when the shard has none
    float *trajectory;      // (K, T, 3) x, y, yaw
    float *weight;          // (K) normalised to sum 1; uniform when absent or all zero
    float *embedding;       // (D) zeros when the shard has none
    int32_t *tokens;        // (max_tokens) the first n_tokens of the trace
    int32_t *topk_ids;      // (max_tokens, k)
    float *topk_logprobs;   // (max_tokens, k) natural log, at the logged temperature
    int max_tokens;         // L, room in the three trace buffers
} DlSampleDst;

typedef struct DlSampleInfo {
    int64_t clip_id, t0_us;
    int command;            // 0..3; 0 (follow) when the shard has no /ego/command
    int has_future, has_command, has_embedding;
    int64_t trace_len;      // tokens of the trace in the shard
    int n_tokens;           // tokens written to dst: min(trace_len, max_tokens)
    float temperature;
} DlSampleInfo;

typedef struct DlReader DlReader;   // one per thread: scratch buffers and a chunk cache

// Expand glob patterns (glob(3), sorted per pattern, duplicates dropped). A
// pattern that matches nothing is an error. Free with dl_free_paths.
int dl_glob(char *const *patterns, int n_patterns, char ***paths, int *n_paths, char *err, size_t errlen);
void dl_free_paths(char **paths, int n_paths);

// Open one shard and check every structural rule; loads the offsets and vocab.
// The metadata is read behind the wall first (dl_shard_vet). On failure the
// shard holds nothing but its path (dl_shard_close is still safe).
int dl_shard_open(DlShard *sh, const char *path, char *err, size_t errlen);
// The same without the wall: for the wall's own child and the fuzzing
// harness. A damaged file can crash or hang the process that calls it.
int dl_shard_open_here(DlShard *sh, const char *path, char *err, size_t errlen);
// dl_shard_open, but every structural problem is handed to problem() (one
// line, no prefix) and the checks go on with what does not depend on it.
// Behind the wall the child finds them, and a crash, hang or runaway
// allocation that ends it is one more line. Returns the number of lines:
// 0 leaves the shard open, as dl_shard_open does.
int dl_shard_check(DlShard *sh, const char *path, void (*problem)(const char *line, void *ctx), void *ctx);
// The same without the wall: the wall's child and the fuzzing harness.
int dl_shard_check_here(DlShard *sh, const char *path, void (*problem)(const char *line, void *ctx), void *ctx);
// Run dl_shard_open_here, or with a listener (problem not NULL)
// dl_shard_check_here, then dl_shard_check_deep, in a child process under
// limits (data/wall.c). Returns 0 with the shard's variable-length strings
// in values (dl_wall_free), or -1 with one line naming path; with a
// listener, every problem line has gone to it, that one included.
int dl_shard_vet(const char *path, DlWallValues *values, DlWallListener problem, void *ctx, char *err, size_t errlen);
// What the wall checks beyond the structural rules, through the calls the
// readers will make later (data/wall.c): every chunk of every dataset looked
// up in its chunk index with its stored size bounded, contiguous data inside
// the file, every /teacher/trace/text string read. Returns 0 or -1 (err set).
int dl_shard_check_deep(const DlShard *sh, char *err, size_t errlen);
void dl_shard_close(DlShard *sh);
void dl_shard_drop_vocab(DlShard *sh);
// Check that b agrees with a (vocab, hz, cameras, per-sample shapes); the
// message names both files. a's vocab must be loaded; b's too, or is skipped.
int dl_shard_agree(const DlShard *a, const DlShard *b, char *err, size_t errlen);

// Open and check every shard the patterns match (the first problem stops it).
// Keeps only the first shard's vocab.
DlSet *dl_set_open(char *const *patterns, int n_patterns, char *err, size_t errlen);
// The same, but under DL_ON_BAD_SKIP a shard that cannot be used (it does
// not open, its metadata check fails, or it disagrees with the first usable
// shard) is left out and its line kept in set->unusable for the caller to
// print; only a set with no usable shard fails.
DlSet *dl_set_open_on_bad(char *const *patterns, int n_patterns, int on_bad, char *err, size_t errlen);
void dl_set_close(DlSet *set);
// The shard and the index within it of global sample g.
void dl_set_locate(const DlSet *set, int64_t g, int *shard, int64_t *index);

DlReader *dl_reader_new(void);
void dl_reader_free(DlReader *rd);

// Read sample n of a shard into dst, checking the per-sample rules. Returns
// DL_OK, or DL_BAD_SAMPLE with err naming file, dataset and sample.
int dl_read_sample(const DlShard *sh, DlReader *rd, int64_t n, const DlSampleDst *dst,
                   DlSampleInfo *info, char *err, size_t errlen);
// Sample n's /teacher/trace/text, or "" when the shard has none; read in a
// child process when the shard was opened behind the wall and the text is of
// variable length. Returns 0 or -1.
int dl_read_text(const DlShard *sh, int64_t n, char *buf, size_t buflen, char *err, size_t errlen);

// "error" / "skip" -> DL_ON_BAD_*; -1 for anything else.
int dl_parse_on_bad_sample(const char *s);
const char *dl_kind_name(DlKind kind);
// "float32", "big-endian int64", "string", ... for an HDF5 type.
void dl_type_name(hid_t type, char *buf, size_t len);
// "zstd", "deflate", "shuffle", "lz4", ... for an HDF5 filter id.
void dl_filter_name(int id, char *buf, size_t len);

// The process-wide HDF5 lock (see the top of this file).
void dl_hdf5_lock(void);
void dl_hdf5_unlock(void);
// In a child forked while holding it (data/wall.c): the lock made free again.
void dl_hdf5_lock_after_fork(void);
