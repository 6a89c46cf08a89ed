// sample.h: one synthetic sample, start to finish, from its own random
// stream: the scene, the history, the camera frames, the driver's logged
// future, the teacher's plans, trace and embedding. Samples share nothing, so
// any number can be generated in parallel and the result does not depend on
// the order or the thread count.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "data/synth/world.h"   // defines: SynthPreset, SYNTH_MAX_CAMERAS

// Where one sample goes; every buffer is the caller's.
typedef struct SynthSampleOut {
    uint8_t *camera[SYNTH_MAX_CAMERAS];   // per camera (F, H, W, 3) RGB
    float *history;                       // (Th, 4) x, y, yaw, speed
    float *future;                        // (T, 3) the driver's x, y, yaw
    float *trajectory;                    // (K, T, 3) the teacher's plans
    float *weight;                        // (K)
    float *embedding;                     // (D)
    int64_t *clip_id, *t0_us;
    int8_t *command;
    int32_t *tokens;                      // (max_trace)
    int32_t *topk_ids;                    // (max_trace, k)
    float *topk_logprobs;                 // (max_trace, k)
    int *n_tokens;
    char *text;                           // the trace for people
    size_t text_cap;
} SynthSampleOut;

// Sample `index` of shard `shard` of split `split` (0 train, 1 eval) for `seed`.
// samples_per_shard numbers the clips uniquely across a split.
void synth_sample(const SynthPreset *p, uint64_t seed, int split, int shard, int index,
                  int samples_per_shard, const SynthSampleOut *out);
