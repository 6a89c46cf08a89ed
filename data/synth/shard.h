// shard.h: write one drive-log v1 shard with the HDF5 C API.
//
// The per-sample datasets (cameras, history, future, teacher trajectories,
// weights, embedding) are chunked one sample per chunk. Their chunks are
// compressed with zstd by worker threads (OpenMP) and handed to HDF5 as raw
// chunks (H5Dwrite_chunk), so HDF5, which is single-threaded, only copies
// bytes (a chunk zstd cannot shrink is stored raw, flagged in its filter
// mask as HDF5 does for a skipped optional filter). The datasets carry filter 32015 (zstd, level as its one cd_value),
// so any reader decodes them like hdf5plugin.Zstd's. The small datasets (ids,
// times, command, the trace) go through the same filter at the end, in chunks
// of 256 rows; strings are variable-length UTF-8, contiguous. Object timestamps are off, so the same data gives
// the same bytes.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "data/synth/world.h"   // defines: SynthPreset, SYNTH_MAX_CAMERAS

// The per-sample datasets, in the order synth_shard_write_samples takes them.
enum {
    SYNTH_DS_HISTORY, SYNTH_DS_FUTURE, SYNTH_DS_TRAJECTORY, SYNTH_DS_WEIGHT, SYNTH_DS_EMBEDDING,
    SYNTH_DS_CAMERA0,
    SYNTH_DS_MAX = SYNTH_DS_CAMERA0 + SYNTH_MAX_CAMERAS
};

typedef struct SynthShard SynthShard;

// What is written once the samples are in: per-sample scalars and the traces.
typedef struct SynthShardTail {
    const int64_t *clip_id, *t0_us;     // (N)
    const int8_t *command;              // (N)
    const int64_t *offsets;             // (N + 1), offsets[N] = M
    const int32_t *tokens;              // (M)
    const int32_t *topk_ids;            // (M, k)
    const float *topk_logprobs;         // (M, k)
    const char *const *text;            // (N) UTF-8
} SynthShardTail;

// Create the file and every per-sample dataset for n samples. level: the
// zstd level, or 0 for uncompressed chunks.
SynthShard *synth_shard_create(const char *path, const SynthPreset *p, int n, const char *fleet,
                               int level, char *err, size_t errlen);
// Number of per-sample datasets of a preset (SYNTH_DS_CAMERA0 + cameras) and
// the bytes one sample of dataset d holds.
int synth_sample_datasets(const SynthPreset *p);
size_t synth_sample_bytes(const SynthPreset *p, int d);
// Write samples [first, first + count): src[d] points at count consecutive
// samples of dataset d. Returns 0, or -1 with err set.
int synth_shard_write_samples(SynthShard *sh, int first, int count, const void *const *src,
                              char *err, size_t errlen);
// Write the tail and the vocabulary, close and free. Returns 0 or -1.
int synth_shard_finish(SynthShard *sh, const SynthShardTail *tail, char *err, size_t errlen);
// Close and free without finishing (after an error); the file is removed.
void synth_shard_abort(SynthShard *sh);
