// trace.h: what the synthetic teacher says and its hidden state: the
// word vocabulary, the reasoning trace for a scene ("red light ahead , stop
// before the line , curve left"), the top-k ids and log-probabilities of a
// noisy softmax around each emitted word, and a pooled embedding of the scene.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "autograd/rng.h"          // defines: Rng
#include "data/synth/drive.h"      // defines: SynthCause
#include "data/synth/world.h"      // defines: SynthScene

#define SYNTH_TOKEN_PAD 0
#define SYNTH_TOKEN_BOS 1
#define SYNTH_TOKEN_EOS 2
#define SYNTH_TOKEN_UNK 3
#define SYNTH_TEMPERATURE 1.0f     // the temperature the top-k log-probs are taken at

// The teacher's piece for any id: a word, a number of the report
// vocabulary, or "<piece_N>"; buf holds the ones made up on the fly.
#define SYNTH_PIECE_CAP 24
const char *synth_piece(int id, char buf[SYNTH_PIECE_CAP]);
// The demo teacher's vocabulary: the first words of synth_piece.
#define SYNTH_DEMO_VOCAB 50
// The report teacher's vocabulary needs at least this many ids (its words
// and numbers); the rest up to the preset's size no trace uses.
int synth_report_min_vocab(void);

// The trace of a scene whose plan has this cause: <bos> words <eos>, at most
// `max` tokens. Returns the number of tokens.
int synth_trace_tokens(const SynthScene *sc, SynthCause cause, int32_t *tokens, int max);

// For each of the n tokens, the k most likely ids (n, k), most likely first,
// and their natural-log probabilities (n, k) under a noisy softmax over the
// whole vocabulary that puts most of the mass on the emitted token and the
// rest mostly on words that would also fit the scene.
void synth_trace_topk(const int32_t *tokens, int n, int k, Rng *rng, int32_t *topk_ids, float *topk_logprobs);

// The urban4 preset's teacher, shaped like an Alpamayo-class model's logs:
// a report of 30 to 128 tokens (at most `max`, <bos> and <eos> included)
// naming the ego speed, the road, each hazard with its distances and
// speeds, the decision (the demo trace's phrase) and the nominal plan's
// speed each second (plan (T, 3), the teacher's first trajectory).
int synth_report_tokens(const SynthScene *sc, SynthCause cause, const float *plan, int horizon, float hz,
                        int32_t *tokens, int max);
// Its top-k over a vocabulary of vocab_size ids: the emitted id most likely
// (about 75% of the mass), then its alternatives (other words, neighbouring
// numbers), then random words and numbers; every id no candidate names
// shares a flat background.
void synth_report_topk(const int32_t *tokens, int n, int k, int vocab_size, Rng *rng, int32_t *topk_ids,
                       float *topk_logprobs);

// The trace as text for people: the words joined by spaces, without <bos>/<eos>.
void synth_trace_text(const int32_t *tokens, int n, char *text, size_t cap);

// A noisy D-float encoding of the scene (what the teacher saw and decided).
void synth_embedding(const SynthScene *sc, SynthCause cause, int dim, Rng *rng, float *embedding);
