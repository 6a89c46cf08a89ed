// loader.h: the training data loader over a set of drive-log shards: a
// seeded per-epoch permutation split across ranks, batches assembled by
// worker threads into a ring of contiguous buffers ahead of the consumer.
//
//   Loader *ld = loader_open(patterns, n, &opt, err, sizeof err);
//   for (;;) {
//       const Batch *b = loader_next(ld);
//       if (!b) { fprintf(stderr, "distil: error: %s\n", loader_error(ld)); exit(2); }
//       ... train on b (valid until the next loader_next) ...
//   }
//   LoaderPosition pos = loader_tell(ld);   // into the checkpoint
//   loader_seek(ld, pos);                   // after a restart: the same batches follow
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "data/drivelog.h"

typedef struct LoaderOptions {
    int batch_size;             // B
    int max_trace_tokens;       // L: longer traces are cut to their first L tokens (and counted)
    int rank, world;            // this process is rank r of R (0 of 1 alone)
    uint64_t seed;              // the epoch permutations derive from (seed, epoch)
    int workers;                // threads reading and decoding (>= 1)
    int prefetch;               // batch buffers in the ring, the consumer's included (>= 2)
    int on_bad_sample;          // DL_ON_BAD_ERROR or DL_ON_BAD_SKIP (bad samples, and unusable shards)
    // Evaluation: shuffle 0 reads samples in shard order; keep_tail 1 keeps
    // the tail, padding the last batches with invalid samples, so that across
    // the ranks every sample is read exactly once per epoch.
    int shuffle;                // 1: a fresh permutation each epoch (training)
    int keep_tail;              // 0: drop what does not fill whole batches on every rank
    // Batch buffers come from here (the CUDA backend passes cudaHostAlloc for
    // pinned memory); NULL: 64-byte aligned malloc.
    void *(*alloc)(size_t bytes, void *ctx);
    void (*release)(void *ptr, void *ctx);
    void *alloc_ctx;
} LoaderOptions;

// Defaults: B 8, L 64, rank 0 of 1, seed 0, 2 workers, prefetch 4, error,
// shuffled, tail dropped.
LoaderOptions loader_defaults(void);

// One batch; every array is a view into one contiguous buffer. b indexes the
// batch, a sample that is invalid (a bad one skipped) has valid[b] = 0 and
// all-zero fields, zero weights and an all-zero trace mask, so masked losses
// drop it with no special case.
typedef struct Batch {
    int B, cams, F, H, W;       // frames shape, shared by every camera
    int Th, T, K, D, L, k;      // D = 0 when no shard has /teacher/embedding
    uint8_t *frames;            // (B, cams, F, H, W, 3) RGB, oldest frame first
    float *history;             // (B, Th, 4) x, y (m), yaw (rad), speed (m/s); ego frame at t0
    float *future;              // (B, T, 3) logged x, y, yaw at t0 + i/hz; zeros where has_future = 0
    uint8_t *has_future;        // (B)
    int8_t *command;            // (B) 0 follow, 1 left, 2 straight, 3 right; 0 when the shard has none
    float *trajectory;          // (B, K, T, 3) teacher plans, x, y, yaw
    float *weight;              // (B, K) non-negative, sum 1 per valid sample (uniform when absent)
    float *embedding;           // (B, D) or NULL when D = 0; zeros where has_embedding = 0
    uint8_t *has_embedding;     // (B)
    int32_t *trace_tokens;      // (B, L) teacher token ids, 0 after trace_len
    uint8_t *trace_mask;        // (B, L) 1 for the trace_len real positions
    int32_t *trace_len;         // (B) tokens kept, <= L
    int32_t *topk_ids;          // (B, L, k) most likely first; 0 in padding
    float *topk_logprobs;       // (B, L, k) natural log at the logged temperature; 0 in padding
    float *temperature;         // (B) temperature the log-probs were taken at
    uint8_t *valid;             // (B) 0 for a bad sample skipped under on_bad_sample: skip
    int32_t *shard;             // (B) shard index in the set, for debugging
    int64_t *index;             // (B) sample index within that shard
    int64_t *clip_id, *t0_us;   // (B)
    int64_t epoch, step;        // this batch's position
    int n_bad;                  // bad samples skipped in this batch
    int n_padding;              // slots past the end of the epoch (keep_tail), invalid too
    int n_truncated;            // traces cut to L in this batch
} Batch;

typedef struct LoaderPosition {
    int64_t epoch;              // epochs completed
    int64_t step;               // batches of this epoch already returned
} LoaderPosition;

typedef struct Loader Loader;

// Open the shards the patterns match, check them, start the workers at
// (epoch 0, step 0). NULL with err set ("distil: error: " not included).
// Under on_bad_sample skip, unusable shards are left out (loader_set(ld)->
// unusable lists them, for the caller to print).
Loader *loader_open(char *const *patterns, int n_patterns, const LoaderOptions *opt, char *err, size_t errlen);
void loader_close(Loader *ld);

// The next batch, valid until the next loader_next or loader_seek. NULL when a bad sample meets
// on_bad_sample: error (loader_error says which; every later call is NULL too).
const Batch *loader_next(Loader *ld);
// The next n batches at once (n <= prefetch), all valid until the next
// loader_next, loader_next_many or loader_seek: a training step reads its
// micro-batches together to count their tokens before any backward.
// Returns 0, or -1 as loader_next returns NULL.
int loader_next_many(Loader *ld, int n, const Batch **out);
const char *loader_error(const Loader *ld);

// The position of the batch the next loader_next returns; seek restarts the
// workers there, so the batch sequence continues exactly as if uninterrupted.
LoaderPosition loader_tell(const Loader *ld);
int loader_seek(Loader *ld, LoaderPosition pos);

// Batches each rank gets per epoch: floor(floor(S / R) / B) for S samples.
// The tail of each epoch's permutation is dropped so every rank runs the
// same number of steps; as the permutation changes each epoch, so does the
// tail. With keep_tail: ceil(ceil(S / R) / B), the last ones padded.
int64_t loader_batches_per_epoch(const Loader *ld);
// The global sample (see dl_set_locate) at slot b of batch (epoch, step) for
// this rank: what that batch holds, without reading it; -1 for padding.
int64_t loader_sample_at(const Loader *ld, int64_t epoch, int64_t step, int b);

const DlSet *loader_set(const Loader *ld);
int64_t loader_bad_samples(const Loader *ld);       // skipped, over the batches returned so far
int64_t loader_truncated_traces(const Loader *ld);  // cut to L, over the batches returned so far
size_t loader_batch_bytes(const Loader *ld);        // one batch buffer
