// objective.c: the recipe and the first shard checked against each other
// (setup_from_shards: the model config, cameras, horizon, top-k), the
// distillation objective recorded on the tape (objective_build), and the
// counts and shares that normalise it over the global batch
// (objective_counts, objective_set_shares).
#include "train/core/objective.h"
#include <stdio.h>
#include <string.h>
#include "autograd/ops.h"   // defines: op_*

static int fail_key(const Recipe *r, const char *key, const char *msg) {
    char where[512];
    recipe_where(r, key, where, sizeof where);   // "--set KEY" names the key already
    fprintf(stderr, "distil: error: %s%s%s: %s\n", where, strncmp(where, "--set ", 6) ? ": " : "",
            strncmp(where, "--set ", 6) ? key : "", msg);
    return 2;
}

static int count_without_embedding(const DlSet *set) {
    int n = 0;
    for (int i = 0; i < set->n_shards; i++) n += set->shards[i].D == 0;
    return n;
}

int setup_from_shards(Setup *s, const Recipe *r, const DlSet *set, int vocab_size) {
    memset(s, 0, sizeof *s);
    const DlShard *sh = &set->shards[0];
    char msg[512];
    // Cameras: the recipe's names, in its order, or every camera of the shards.
    int n_cams = r->data.cameras.n ? r->data.cameras.n : sh->n_cameras;
    if (n_cams > DL_MAX_CAMERAS) return fail_key(r, "data.cameras", "too many cameras");
    for (int c = 0; c < n_cams; c++) {
        if (!r->data.cameras.n) { s->cam_index[c] = c; continue; }
        s->cam_index[c] = -1;
        for (int j = 0; j < sh->n_cameras; j++)
            if (!strcmp(r->data.cameras.items[c], sh->camera_names[j])) s->cam_index[c] = j;
        if (s->cam_index[c] < 0) {
            snprintf(msg, sizeof msg, "camera '%s' is not in %s (it has '%s'); name cameras from the shards' cameras attribute",
                     r->data.cameras.items[c], sh->path, sh->cameras);
            return fail_key(r, "data.cameras", msg);
        }
    }
    int c0 = s->cam_index[0];
    s->shard_frames = sh->frames[c0];
    if (r->data.history_frames > s->shard_frames) {
        snprintf(msg, sizeof msg, "%d frames asked, the shards hold %d per camera", r->data.history_frames, s->shard_frames);
        return fail_key(r, "data.history_frames", msg);
    }
    s->shard_horizon = sh->T;
    if (r->model.horizon > sh->T) {
        snprintf(msg, sizeof msg, "%d waypoints asked, the shards hold %d (/teacher/trajectory)", r->model.horizon, sh->T);
        return fail_key(r, "model.horizon", msg);
    }
    if (sh->height[c0] % r->model.patch || sh->width[c0] % r->model.patch) {
        snprintf(msg, sizeof msg, "patch %d does not divide the %dx%d camera frames", r->model.patch, sh->height[c0], sh->width[c0]);
        return fail_key(r, "model.patch", msg);
    }
    if (r->distill.traj_target == TRAJ_TARGET_GROUND_TRUTH && sh->ds[DL_FUTURE].id < 0) {
        snprintf(msg, sizeof msg, "ground_truth needs /ego/future, which %s does not have", sh->path);
        return fail_key(r, "distill.traj_target", msg);
    }
    // The feature loss needs the teacher's embedding in every shard: on
    // shards without it, it would train nothing, in silence.
    for (int i = 0; i < set->n_shards && r->distill.w_feature > 0; i++)
        if (set->shards[i].D == 0) {
            snprintf(msg, sizeof msg, "%g, but %s has no /teacher/embedding (of %d training shards, %d lack it); "
                     "set distill.w_feature: 0, or train on shards that log the embedding", r->distill.w_feature,
                     set->shards[i].path, set->n_shards, count_without_embedding(set));
            return fail_key(r, "distill.w_feature", msg);
        }
    // One logged temperature for the whole set (the distillation op takes one).
    for (int i = 1; i < set->n_shards; i++)
        if (set->shards[i].temperature != sh->temperature) {
            fprintf(stderr, "distil: error: %s and %s log top-k at temperatures %g and %g; "
                    "train on shards of one temperature\n", sh->path, set->shards[i].path,
                    sh->temperature, set->shards[i].temperature);
            return 2;
        }
    s->K = sh->K;
    s->k = sh->k;
    s->D = sh->D;
    s->t_logged = sh->temperature;

    ModelConfig *mc = &s->mc;
    mc->dim = r->model.dim;
    mc->layers = r->model.layers;
    mc->heads = r->model.heads;
    mc->mlp_ratio = r->model.mlp_ratio;
    mc->patch = r->model.patch;
    mc->n_cams = n_cams;
    mc->frames = r->data.history_frames;
    mc->img_h = sh->height[c0];
    mc->img_w = sh->width[c0];
    mc->hist = sh->Th;
    mc->horizon = r->model.horizon;
    mc->hz = (float)sh->hz;
    mc->traj_repr = r->model.traj_repr == TRAJ_REPR_ACCEL_CURVATURE ? TRAJ_ACCEL_CURVATURE : TRAJ_XYYAW;
    mc->attention = r->model.attention == ATTENTION_CAUSAL ? ATTN_CAUSAL : ATTN_PREFIX;
    mc->vocab = vocab_size;
    mc->max_trace = r->data.max_trace_tokens;
    mc->feat_dim = r->distill.w_feature > 0 ? sh->D : 0;
    for (int c = 0; c < 3; c++) {
        mc->img_mean[c] = (float)r->model.image_mean[c];
        mc->img_std[c] = (float)r->model.image_std[c];
    }
    const char *bad = model_config_check(mc);
    if (bad) { fprintf(stderr, "distil: error: %s: %s\n", r->path ? r->path : "recipe", bad); return 2; }
    return 0;
}

static int traj_candidates(const Setup *s, const Recipe *r) {
    switch (r->distill.traj_target) {
    case TRAJ_TARGET_TEACHER_BEST:
    case TRAJ_TARGET_TEACHER_ALL: return s->K;
    default: return 1;   // the teacher's weighted mean, or the logged future
    }
}

// The op's mean over this micro-batch times its share of the global batch.
static Tensor *shared(Graph *g, Tensor *mean, Tensor **share, const char *name) {
    *share = graph_input(g, name, DT_F32, 1, (int[]){ 1 });
    return op_mul(g, mean, *share);
}

// total += w * component
static Tensor *add_weighted(Graph *g, Tensor *total, Tensor *component, double w) {
    Tensor *term = w == 1.0 ? component : op_scale(g, component, (float)w);
    return total ? op_add(g, total, term) : term;
}

void objective_build(Graph *g, Student *st, Objective *obj, const Setup *s, const Recipe *r, int B) {
    memset(obj, 0, sizeof *obj);
    *st = student_build(g, &s->mc, B);
    const int L = s->mc.max_trace, k = s->k, T = s->mc.horizon, Kt = traj_candidates(s, r);
    const RecipeDistill *d = &r->distill;
    obj->vocab = s->mc.vocab;
    obj->ce_targets = graph_input(g, "ce_targets", DT_I32, 2, (int[]){ B, L });
    obj->topk_ids = graph_input(g, "topk_ids", DT_I32, 3, (int[]){ B, L, k });
    obj->topk_logprobs = graph_input(g, "topk_logprobs", DT_F32, 3, (int[]){ B, L, k });
    obj->kl_mask = graph_input(g, "kl_mask", DT_F32, 2, (int[]){ B, L });
    obj->traj_targets = graph_input(g, "traj_targets", DT_F32, 4, (int[]){ B, Kt, T, 3 });
    obj->traj_weights = graph_input(g, "traj_weights", DT_F32, 2, (int[]){ B, Kt });
    Tensor *total = NULL;
    if (d->w_token_kl > 0) {
        DistillKLConfig cfg = {
            .t_logged = s->t_logged, .t = (float)d->temperature,
            .mode = d->kl == KL_REVERSE ? DISTILL_REVERSE_KL : d->kl == KL_JSD ? DISTILL_JSD : DISTILL_FORWARD_KL,
            .beta = (float)d->jsd_beta, .tail = d->tail_bucket, .t2 = d->t2_scaling,
        };
        obj->kl = shared(g, op_distill_kl(g, st->lm_logits, obj->topk_ids, obj->topk_logprobs, obj->kl_mask, &cfg),
                         &obj->kl_share, "kl_share");
        total = add_weighted(g, total, obj->kl, d->w_token_kl);
    }
    if (d->w_ce > 0) {
        obj->ce = shared(g, op_cross_entropy(g, st->lm_logits, obj->ce_targets, -1), &obj->ce_share, "ce_share");
        total = add_weighted(g, total, obj->ce, d->w_ce);
    }
    if (d->w_traj > 0) {
        int mode = d->traj_target == TRAJ_TARGET_TEACHER_BEST ? TRAJ_BEST : TRAJ_WEIGHTED;
        obj->traj = shared(g, op_traj_loss(g, st->traj, obj->traj_targets, obj->traj_weights, mode, (float)d->huber_beta,
                                           (float)d->yaw_weight), &obj->traj_share, "traj_share");
        total = add_weighted(g, total, obj->traj, d->w_traj);
    }
    if (st->feature) {
        obj->feat_target = graph_input(g, "feat_target", DT_F32, 2, (int[]){ B, s->mc.feat_dim });
        obj->feat_mask = graph_input(g, "feat_mask", DT_F32, 1, (int[]){ B });
        obj->feature = shared(g, op_cosine_loss(g, st->feature, obj->feat_target, obj->feat_mask), &obj->feature_share,
                              "feature_share");
        total = add_weighted(g, total, obj->feature, d->w_feature);
    }
    obj->total = total;
    // The step reads each component on the host after backward.
    Tensor *read[] = { obj->kl, obj->ce, obj->traj, obj->feature, obj->total };
    for (size_t i = 0; i < sizeof read / sizeof read[0]; i++)
        if (read[i]) graph_keep(read[i]);
}

// The counting rules are the ops' (autograd/ops.h): distill_kl counts the
// rows whose mask is not 0, cross_entropy the targets that are not -1 and
// lie in [0, V), traj_loss the samples whose weights sum above 0,
// cosine_loss the rows whose mask is not 0.
LossCounts objective_counts(const Objective *obj) {
    LossCounts n = { 0 };
    if (obj->kl) {
        const float *mask = graph_input_host(obj->kl_mask);
        for (size_t i = 0; i < obj->kl_mask->numel; i++) n.kl += mask[i] != 0.0f;
    }
    if (obj->ce) {
        const int V = obj->vocab;
        const int32_t *targets = graph_input_host(obj->ce_targets);
        for (size_t i = 0; i < obj->ce_targets->numel; i++) n.ce += targets[i] != -1 && targets[i] >= 0 && targets[i] < V;
    }
    if (obj->traj) {
        const int B = obj->traj_weights->shape[0], Kt = obj->traj_weights->shape[1];
        const float *w = graph_input_host(obj->traj_weights);
        for (int b = 0; b < B; b++) {
            double sum = 0;
            for (int k = 0; k < Kt; k++) sum += w[(size_t)b * Kt + k];
            n.traj += sum > 0;
        }
    }
    if (obj->feature) {
        const float *mask = graph_input_host(obj->feat_mask);
        for (size_t i = 0; i < obj->feat_mask->numel; i++) n.feature += mask[i] != 0.0f;
    }
    return n;
}

static void set_share(Tensor *share, double mine, double global) {
    if (share) *(float *)graph_input_host(share) = global > 0 ? (float)(mine / global) : 0.0f;
}

void objective_set_shares(Objective *obj, const LossCounts *mine, const LossCounts *global) {
    set_share(obj->kl_share, mine->kl, global->kl);
    set_share(obj->ce_share, mine->ce, global->ce);
    set_share(obj->traj_share, mine->traj, global->traj);
    set_share(obj->feature_share, mine->feature, global->feature);
}
