// model.h: the compact driving student, a small vision-language-action
// transformer recorded on a Graph. docs/model.md specifies it exactly.
#pragma once
#include "autograd/graph.h"   // defines: Graph, Tensor
#include "autograd/ops.h"     // defines: AttnMode
#include "train/formats/json_io.h"   // defines: json_t

typedef enum { TRAJ_XYYAW = 0, TRAJ_ACCEL_CURVATURE = 1 } TrajRepr;

typedef struct ModelConfig {
    int dim, layers, heads, mlp_ratio, patch;
    int n_cams, frames, img_h, img_w;   // camera input: frames per camera, pixels
    int hist;                           // Th, ego history steps
    int horizon;                        // T, future waypoints
    float hz;                           // waypoint rate
    TrajRepr traj_repr;
    int vocab;                          // student vocabulary size
    int max_trace;                      // L, trace tokens per sample (padded)
    int feat_dim;                       // teacher embedding width (0: no feature head)
    float img_mean[3], img_std[3];      // pixel normalisation after /255
    // Which tokens attend to which (docs/model.md): ATTN_PREFIX, the image,
    // ego and command tokens both ways; ATTN_CAUSAL, every token only
    // backwards. 0 (causal) is what a config without the key means.
    AttnMode attention;
} ModelConfig;

// Fixed input and output scales (docs/model.md): the network sees and emits
// numbers of order one.
#define EGO_SCALE_X 0.05f       // 1 / 20 m
#define EGO_SCALE_Y 0.2f        // 1 / 5 m
#define EGO_SCALE_YAW 2.0f      // 1 / 0.5 rad
#define EGO_SCALE_SPEED 0.1f    // 1 / 10 m/s
#define TRAJ_SCALE_X 20.0f      // metres per unit of the xyyaw head
#define TRAJ_SCALE_Y 5.0f
#define TRAJ_SCALE_YAW 0.5f     // radians per unit
#define ACCEL_SCALE 3.0f        // m/s^2 per unit of the accel_curvature head
#define CURVATURE_SCALE 0.1f    // 1/m per unit

typedef struct Student {
    ModelConfig cfg;
    int B, n_img_tokens, seq_len;       // seq_len S = n_img_tokens + 2 + L + 1
    int n_prefix;                       // tokens seen both ways under ATTN_PREFIX: n_img_tokens + 2
    // Inputs, written by the trainer each step:
    Tensor *cameras;        // u8 (B*n_cams*frames, H, W, 3), sample-major, then camera, then frame (oldest first)
    Tensor *ego;            // f32 (B, hist*4): (x, y, yaw, speed) rows, oldest first, times EGO_SCALE_*
    Tensor *command;        // i32 (B): 0 follow, 1 left, 2 straight, 3 right
    Tensor *trace;          // i32 (B, L): student token ids, 0 where masked
    Tensor *key_mask;       // f32 (B, S): 1 for every token except padded trace positions
    Tensor *v0;             // f32 (B, T, 1): the speed at t0 repeated (accel_curvature only, else NULL)
    // Constant index inputs, written once by student_fill_constants():
    Tensor *img_cam_idx, *img_frame_idx, *img_pos_idx;   // i32 (n_img_tokens)
    Tensor *action_idx;     // i32 (B), all 0
    Tensor *traj_scale;     // f32 (3): TRAJ_SCALE_X, _Y, _YAW (xyyaw only, else NULL)
    // Outputs:
    Tensor *lm_logits;      // f32 (B, L, vocab): position i predicts trace token i
    Tensor *traj;           // f32 (B, T, 3): (x, y, yaw) in metres and radians, ego frame at t0
    Tensor *feature;        // f32 (B, feat_dim), or NULL
    Tensor *tok_emb;        // (vocab, dim), tied with the LM head
} Student;

// One pre-norm block: x + proj(attn(ln1(x))), then + mlp(ln2(.)); x (B, S, C).
// key_mask (B, S) or NULL; mask and n_prefix as op_attention's (ops.h; n_prefix
// 0 when causal); n_layers scales the residual projections' init.
Tensor *transformer_block(Graph *g, Tensor *x, Tensor *key_mask, AttnMode mask, int n_prefix, int heads,
                          int mlp_ratio, int n_layers, const char *prefix);

// Record the student for batch size B on g (parameters named like a
// PyTorch state dict: "blocks.0.attn.qkv.weight"...). Validate cfg first
// with model_config_check.
Student student_build(Graph *g, const ModelConfig *cfg, int B);
// Fill the constant index inputs (after graph_plan).
void student_fill_constants(Student *s);
// NULL when cfg is consistent, else what is wrong.
const char *model_config_check(const ModelConfig *cfg);
size_t student_param_count(const ModelConfig *cfg);

// The architecture as a JSON object (config.json's "model"; also stored in
// checkpoints as text): every ModelConfig field plus the fixed input/output
// scales. Its reals are fp32 values: dump it with JSONIO_F32. NULL when out
// of memory.
json_t *model_config_object(const ModelConfig *cfg);
// The same object as one line of text (malloc'ed; NULL when out of memory).
char *model_config_to_json(const ModelConfig *cfg);
// Read what model_config_object made, as an object or as text (an object
// with more keys is fine). Returns 0, or -1 with err set.
int model_config_from_object(const json_t *obj, ModelConfig *cfg, char *err, size_t errlen);
int model_config_from_json(const char *text, ModelConfig *cfg, char *err, size_t errlen);
// NULL when a and b are the same model (the same parameters and attention
// mask), else what differs (static).
const char *model_config_diff(const ModelConfig *a, const ModelConfig *b);
// "prefix" or "causal", as recipes and config.json spell the mask.
const char *model_attention_name(AttnMode mode);
