// inputs.c: a loader batch written into the graph's inputs (batch_to_inputs):
// the recipe's cameras and frames, the scaled ego history, the trace in
// student ids with its key mask, the teacher's top-k and the trajectory
// targets the recipe asks for.
#include "train/core/objective.h"
#include <string.h>
#include "train/core/metrics.h"  // defines: teacher_mean_strided
#include "train/model/model.h"   // defines: EGO_SCALE_*

static const float ego_scale[4] = { EGO_SCALE_X, EGO_SCALE_Y, EGO_SCALE_YAW, EGO_SCALE_SPEED };

int batch_to_inputs(const Batch *b, const Setup *s, const Recipe *r, const Vocab *v, Student *st, Objective *obj) {
    const ModelConfig *mc = &s->mc;
    const int B = st->B, L = mc->max_trace, k = s->k, T = mc->horizon, Th = mc->hist;
    const int F = mc->frames, C = mc->n_cams, Kt = obj->traj_weights->shape[1];
    const size_t frame_bytes = (size_t)b->H * b->W * 3;
    // Where the host writes each input: the arena on a CPU tape, the host
    // mirror on a device tape (uploaded by graph_upload_inputs).
    uint8_t *cameras = graph_input_host(st->cameras);
    float *ego_in = graph_input_host(st->ego), *key_mask_in = graph_input_host(st->key_mask);
    float *v0 = st->v0 ? graph_input_host(st->v0) : NULL;
    int32_t *command = graph_input_host(st->command), *trace = graph_input_host(st->trace);
    int32_t *ce_targets = graph_input_host(obj->ce_targets), *topk_ids = graph_input_host(obj->topk_ids);
    float *topk_logprobs = graph_input_host(obj->topk_logprobs), *kl_mask = graph_input_host(obj->kl_mask);
    float *traj_targets = graph_input_host(obj->traj_targets), *traj_weights = graph_input_host(obj->traj_weights);
    float *feat_target = obj->feat_target ? graph_input_host(obj->feat_target) : NULL;
    float *feat_mask = obj->feat_mask ? graph_input_host(obj->feat_mask) : NULL;
    int n_valid = 0;
    for (int i = 0; i < B; i++) {
        n_valid += b->valid[i] != 0;
        // Cameras: the recipe's cameras, the newest F frames, oldest first.
        uint8_t *cams = cameras + (size_t)i * C * F * frame_bytes;
        for (int c = 0; c < C; c++)
            for (int f = 0; f < F; f++) {
                int src_f = b->F - F + f;
                const uint8_t *src = b->frames + (((size_t)i * b->cams + s->cam_index[c]) * b->F + src_f) * frame_bytes;
                memcpy(cams + ((size_t)c * F + f) * frame_bytes, src, frame_bytes);
            }
        const float *hist = b->history + (size_t)i * Th * 4;
        float *ego = ego_in + (size_t)i * Th * 4;
        for (int j = 0; j < Th * 4; j++) ego[j] = hist[j] * ego_scale[j % 4];
        command[i] = b->command[i] >= 0 && b->command[i] < 4 ? b->command[i] : 0;
        if (v0)
            for (int t = 0; t < T; t++) v0[(size_t)i * T + t] = hist[(Th - 1) * 4 + 3];

        // Trace: tokens, the key mask, the CE targets and the teacher's top-k.
        float *key_mask = key_mask_in + (size_t)i * st->seq_len;
        for (int j = 0; j < st->seq_len; j++) key_mask[j] = 1.0f;
        for (int t = 0; t < L; t++) {
            size_t at = (size_t)i * L + t;
            int real = t < b->L && b->trace_mask[(size_t)i * b->L + t];
            int32_t tok = real ? vocab_token(v, b->trace_tokens[(size_t)i * b->L + t]) : 0;
            trace[at] = tok;
            ce_targets[at] = real ? tok : -1;
            kl_mask[at] = (float)real;
            key_mask[st->n_img_tokens + 2 + t] = (float)real;
            for (int j = 0; j < k; j++) {
                size_t src = ((size_t)i * b->L + t) * b->k + j, dst = at * k + j;
                topk_ids[dst] = real ? vocab_topk(v, b->topk_ids[src]) : -1;
                topk_logprobs[dst] = real ? b->topk_logprobs[src] : 0.0f;
            }
        }

        // Trajectory targets: the first T steps of the chosen plans.
        float *tgt = traj_targets + (size_t)i * Kt * T * 3;
        float *w = traj_weights + (size_t)i * Kt;
        const float *teacher = b->trajectory + (size_t)i * b->K * b->T * 3;
        const float *tw = b->weight + (size_t)i * b->K;
        switch (r->distill.traj_target) {
        case TRAJ_TARGET_GROUND_TRUTH:
            memcpy(tgt, b->future + (size_t)i * b->T * 3, (size_t)T * 3 * sizeof(float));
            w[0] = b->valid[i] && b->has_future[i] ? 1.0f : 0.0f;
            break;
        case TRAJ_TARGET_TEACHER_MEAN:
            teacher_mean_strided(teacher, (size_t)b->T * 3, tw, b->K, T * 3, tgt);
            w[0] = b->valid[i] ? 1.0f : 0.0f;
            break;
        default:   // every teacher sample, with its weight
            for (int c = 0; c < Kt; c++) {
                memcpy(tgt + (size_t)c * T * 3, teacher + (size_t)c * b->T * 3, (size_t)T * 3 * sizeof(float));
                w[c] = b->valid[i] ? tw[c] : 0.0f;
            }
        }
        if (feat_target) {
            memcpy(feat_target + (size_t)i * mc->feat_dim, b->embedding + (size_t)i * b->D,
                   (size_t)mc->feat_dim * sizeof(float));
            feat_mask[i] = b->valid[i] && b->has_embedding[i] ? 1.0f : 0.0f;
        }
    }
    // The micro-batch alone is the whole batch; train_step sets its share.
    LossCounts one = { 1, 1, 1, 1 };
    objective_set_shares(obj, &one, &one);
    return n_valid;
}
