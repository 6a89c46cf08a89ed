// sample.c: one sample from its stream (see data/synth/sample.h).
#include "data/synth/sample.h"
#include "autograd/rng.h"          // defines: Rng, rng_derive
#include "data/synth/drive.h"      // defines: synth_driver_style, synth_drive, synth_teacher_*
#include "data/synth/render.h"     // defines: synth_render_camera
#include "data/synth/trace.h"      // defines: synth_trace_*, synth_embedding

void synth_sample(const SynthPreset *p, uint64_t seed, int split, int shard, int index,
                  int samples_per_shard, const SynthSampleOut *out) {
    // The stream is a function of (seed, split, shard, index) alone.
    Rng rng;
    rng_derive(&rng, seed, ((uint64_t)split << 32) | (uint32_t)shard, (uint64_t)index);
    SynthScene sc;   // ~12 KB, on this thread's stack
    synth_scene_sample(&sc, &rng);

    synth_history(&sc, p, out->history);
    for (int c = 0; c < p->n_cameras; c++) synth_render_camera(&sc, p, out->history, c, out->camera[c]);

    SynthStyle driver = synth_driver_style(&rng);
    synth_drive(&sc, p, &driver, synth_stops_for_light(&sc, &driver), &rng, out->future);

    synth_teacher_plans(&sc, p, &rng, out->trajectory, out->weight);
    SynthCause cause = synth_teacher_cause(&sc);
    int n;
    if (p->report) {
        n = synth_report_tokens(&sc, cause, out->trajectory, p->horizon, p->hz, out->tokens, p->max_trace);
        synth_report_topk(out->tokens, n, p->topk, p->vocab_size, &rng, out->topk_ids, out->topk_logprobs);
    } else {
        n = synth_trace_tokens(&sc, cause, out->tokens, p->max_trace);
        synth_trace_topk(out->tokens, n, p->topk, &rng, out->topk_ids, out->topk_logprobs);
    }
    synth_trace_text(out->tokens, n, out->text, out->text_cap);
    *out->n_tokens = n;
    synth_embedding(&sc, cause, p->embed_dim, &rng, out->embedding);

    // Clip ids are unique within a split; eval clips start at 10^9.
    *out->clip_id = (int64_t)split * 1000000000 + (int64_t)shard * samples_per_shard + index;
    *out->t0_us = 2000000 + (int64_t)rng_below(&rng, 180) * 100000;   // 2 s .. 20 s into the clip
    *out->command = (int8_t)sc.command;
}
