// checkpoint.h: checkpoints that survive crashes, and exact resume
// (docs/checkpoints.md specifies the format byte by byte).
//
// RUN_DIR/checkpoints/step_NNNNNNN/ holds model.safetensors (the fp32 master
// weights, with the resolved recipe and the model config as metadata),
// vocab.json, and state.bin: everything else a step depends on (AdamW's
// moments and step, the loop's counters, the loader position, the RNG, the
// vocabulary map), zstd-compressed and checksummed. A checkpoint is written
// to a temporary directory, fsync'ed and renamed into place, then
// checkpoints/latest (a symlink) is swung over to it; so a process killed at
// any instant leaves `latest` naming a complete checkpoint.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "autograd/rng.h"      // defines: Rng
#include "data/loader.h"       // defines: LoaderPosition
#include "train/core/state.h"     // defines: TrainState

#define CKPT_FORMAT "distil-checkpoint"
#define CKPT_FORMAT_VERSION 1
#define CKPT_STATE_MAGIC "DSTLSTATE"     // state.bin's first 9 bytes
#define CKPT_STATE_HEADER_BYTES 48

// A file of the checkpoint as state.bin records it: a flipped byte anywhere
// in the weights is caught before they are loaded.
typedef struct CkptFileSum {
    const char *name;        // "model.safetensors", "vocab.json"
    uint64_t bytes;
    uint32_t crc32;          // zlib's CRC-32 of the whole file
} CkptFileSum;

#define CKPT_N_FILES 2

// One trainable parameter's slice of the flat gradient (and moment) buffer.
typedef struct CkptParam {
    char *name;
    uint64_t offset, numel;  // in floats
} CkptParam;

// state.bin decoded. Arrays are owned (ckpt_state_free).
typedef struct CkptState {
    int64_t step;                   // optimizer steps done: the next step's index
    int64_t adam_step;              // AdamW updates taken (skipped steps take none)
    int64_t bad_in_a_row, bad_total;
    LoaderPosition loader;          // of the training loader
    int32_t micro_batch, world;     // what the loader position counts in
    int32_t threads;                // OpenMP threads of the run that wrote it: OpenBLAS's
                                    // sums depend on it, so an exact resume needs the same
    uint64_t seed;                  // the recipe's
    Rng rng;                        // TrainState.rng
    int32_t vocab_mode, vocab_teacher_size, vocab_size;
    int32_t *to_teacher;            // (vocab_size) teacher id of each student id, -1 for <unk>
    CkptFileSum files[CKPT_N_FILES];
    int32_t n_params;
    CkptParam *params;              // (n_params) in the gradient buffer's order
    uint64_t grad_numel;
    float *m, *v;                   // (grad_numel) AdamW moments
    ModelConfig model_config;       // from model.safetensors' metadata (checkpoint_open)
} CkptState;

// ---- state.bin ---------------------------------------------------------------

// Write ts's state at `step` (steps done) to path, with the sums of the
// checkpoint's other files; flushed and fsync'ed. Returns 0, or -1 with err.
int ckpt_state_write(const char *path, const TrainState *ts, long step, const CkptFileSum *files,
                     char *err, size_t errlen);
// Read and check path (size, magic, version, both checksums, every length).
// Returns 0, or -1 with err = "<path>: what is wrong".
int ckpt_state_read(const char *path, CkptState *s, char *err, size_t errlen);
void ckpt_state_free(CkptState *s);
// The size and CRC-32 of the file at path, recorded under `name`.
int ckpt_file_sum(const char *path, const char *name, CkptFileSum *out, char *err, size_t errlen);

// ---- checkpoint directories ----------------------------------------------------

// Write RUN_DIR/checkpoints/step_<step> from ts (step = steps done), point
// `latest` at it, and keep only the newest `keep` step directories (0: all).
// Returns 0, or -1 with err set.
int checkpoint_save(const TrainState *ts, const char *run_dir, long step, int keep, char *err, size_t errlen);

// Remove what killed saves left in RUN_DIR/checkpoints: .tmp-*, .trash-*
// and .zero1-* entries. Only for the holder of the run directory's lock
// (train.c), who knows no other process is writing there.
void checkpoint_sweep(const char *run_dir);

// The checkpoint directory --resume means: `arg` itself when it holds
// state.bin, the checkpoint `arg`/checkpoints/latest names when arg is a run
// directory, RUN_DIR/checkpoints/latest when arg is NULL. Returns 0, or -1
// with err set (no checkpoint there).
int checkpoint_resolve(const char *arg, const char *run_dir, char *out, size_t outlen, char *err, size_t errlen);

// Check every file of the checkpoint at dir (present, sizes and checksums,
// format and version) and decode its state into s. Returns 0, or -1 with err.
int checkpoint_open(const char *dir, CkptState *s, char *err, size_t errlen);

// Load the checkpoint at dir into ts (opened from the same recipe): refuses
// one whose model config, vocabulary, trainable parameters or loader
// batching differ, saying what differs. *step gets the step to go on from,
// *threads the OpenMP thread count of the run that wrote it.
// Returns 0; 1 (incompatible) or -1 (missing, truncated, corrupt, another
// version) with err set, and then ts must not be trained further.
int checkpoint_load(TrainState *ts, const char *dir, long *step, int *threads, char *err, size_t errlen);

// After resuming RUN_DIR at `step` from dir: if dir is one of RUN_DIR's
// checkpoints, point `latest` at it and remove the newer ones (the run they
// belonged to is being redone). Returns 0, or -1 with err set.
int checkpoint_rewind(const char *run_dir, const char *dir, long step, char *err, size_t errlen);

// Rewrite the metrics file at path (atomically) keeping only the lines of
// steps up to `step` (steps count from 1: step N's line was written before
// checkpoint N) and of evaluations before it (the one at `step` is redone),
// dropping a torn last line. A missing file is fine. Returns 0, or -1 with
// err set.
int metrics_rewind(const char *path, long step, char *err, size_t errlen);
