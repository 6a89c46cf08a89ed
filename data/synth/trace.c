// trace.c: vocabulary, traces, top-k softmax and the scene embedding.
#include "data/synth/trace.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

// The teacher's words. Ids are positions; the first four are the specials.
// The demo teacher speaks the first V of them; the report teacher all.
static const char *const vocab[] = {
    "<pad>", "<bos>", "<eos>", "<unk>", ",", ".",
    "red", "yellow", "green", "light", "signal", "ahead", "stop", "before", "the", "line",
    "lead", "vehicle", "car", "close", "near", "slow", "down", "brake", "gently", "keep",
    "distance", "speed", "clear", "road", "lane", "pedestrian", "person", "on", "crossing",
    "yield", "wait", "curve", "bend", "left", "right", "go", "through", "continue",
    "too", "to", "a", "at", "hold", "open",
    // The report teacher's further words.
    "ego", "m/s", "m", "s", "radius", "straight", "no", "in", "other", "oncoming", "gap", "closing",
    "opening", "steady", "decision", "plan", ":", "pedestrians", "for", "then", "of", "is", "visible",
    "stopped", "moving", "across", "from", "kerb", "behind", "overtake", "not", "needed", "mirror",
    "check", "rear", "sides", "and", "with", "intersection", "route", "follow", "turn",
};
#define V SYNTH_DEMO_VOCAB                                     // the demo teacher's words
#define N_WORDS (int)(sizeof vocab / sizeof vocab[0])         // the report teacher's

static int word_id(const char *w) {
    for (int i = 0; i < N_WORDS; i++) if (!strcmp(vocab[i], w)) return i;
    return SYNTH_TOKEN_UNK;
}

// Append the space-separated words of `phrase` to tokens[*n..max).
static void append_words(const char *phrase, int32_t *tokens, int *n, int max) {
    char word[32];
    const char *p = phrase;
    while (*p) {
        while (*p == ' ') p++;
        size_t len = strcspn(p, " ");
        if (len == 0) break;
        if (len >= sizeof word) len = sizeof word - 1;
        memcpy(word, p, len);
        word[len] = '\0';
        if (*n < max) tokens[(*n)++] = word_id(word);
        p += strcspn(p, " ");
    }
}

static const char *cause_phrase(SynthCause cause) {
    switch (cause) {
    case SYNTH_CAUSE_RED:         return "red light ahead , stop before the line";
    case SYNTH_CAUSE_YELLOW_STOP: return "yellow light ahead , stop before the line";
    case SYNTH_CAUSE_YELLOW_GO:   return "yellow light , too close to stop , go through";
    case SYNTH_CAUSE_PEDESTRIAN:  return "pedestrian on the crossing , yield";
    case SYNTH_CAUSE_LEAD_CLOSE:  return "lead vehicle close , slow down";
    case SYNTH_CAUSE_LEAD_FOLLOW: return "lead vehicle ahead , keep distance";
    case SYNTH_CAUSE_GREEN:       return "green light ahead , go through";
    case SYNTH_CAUSE_CLEAR:       break;
    }
    return "clear road , keep speed";
}

int synth_trace_tokens(const SynthScene *sc, SynthCause cause, int32_t *tokens, int max) {
    int n = 0;
    if (max < 2) return 0;
    tokens[n++] = SYNTH_TOKEN_BOS;
    append_words(cause_phrase(cause), tokens, &n, max - 1);
    // A bend worth mentioning (radius under ~330 m).
    if (fabsf(sc->curvature0) > 0.003f)
        append_words(sc->curvature0 > 0.0f ? ", curve left" : ", curve right", tokens, &n, max - 1);
    tokens[n++] = SYNTH_TOKEN_EOS;
    return n;
}

// Words the teacher also considers in place of `word`: the second choices
// that keep the sentence about the same scene.
static const char *alternatives(const char *word) {
    static const char *const table[][2] = {
        { "red", "yellow green" }, { "yellow", "red green" }, { "green", "yellow red" },
        { "light", "signal" }, { "ahead", "close near" }, { "stop", "wait yield slow" },
        { "before", "at" }, { "the", "a" }, { "line", "crossing" }, { "lead", "car" },
        { "vehicle", "car" }, { "close", "near ahead" }, { "slow", "brake" }, { "down", "gently" },
        { "keep", "hold" }, { "distance", "speed" }, { "speed", "distance" }, { "clear", "open" },
        { "road", "lane" }, { "pedestrian", "person" }, { "on", "at" }, { "crossing", "line" },
        { "yield", "stop wait" }, { "curve", "bend" }, { "left", "right" }, { "right", "left" },
        { "go", "continue keep" }, { "through", "ahead" }, { "too", "close" }, { "to", "at" },
        { ",", ". <eos>" }, { "<eos>", ", ." },
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i][0], word)) return table[i][1];
    return "";
}

void synth_trace_topk(const int32_t *tokens, int n, int k, Rng *rng, int32_t *topk_ids, float *topk_logprobs) {
    float logit[V];   // (V)
    int32_t alt[8];
    for (int t = 0; t < n; t++) {
        // Unrelated words: low; fitting alternatives: in between; the emitted word: high.
        for (int i = 0; i < V; i++) logit[i] = -1.0f + rng_normal(rng);
        logit[SYNTH_TOKEN_PAD] = -8.0f;
        int n_alt = 0;
        append_words(alternatives(vocab[tokens[t]]), alt, &n_alt, 8);
        for (int j = 0; j < n_alt; j++)
            if (alt[j] != SYNTH_TOKEN_UNK) logit[alt[j]] = 2.0f + 0.7f * rng_normal(rng);
        float top = -INFINITY;
        for (int i = 0; i < V; i++) if (i != tokens[t]) top = fmaxf(top, logit[i]);
        // The teacher decoded greedily, so the emitted word is the most likely.
        logit[tokens[t]] = fmaxf(5.0f + 0.5f * rng_normal(rng), top + 0.5f);
        // Log-softmax at the logged temperature.
        float mx = -INFINITY, sum = 0.0f;
        for (int i = 0; i < V; i++) mx = fmaxf(mx, logit[i] / SYNTH_TEMPERATURE);
        for (int i = 0; i < V; i++) sum += expf(logit[i] / SYNTH_TEMPERATURE - mx);
        float log_z = mx + logf(sum);
        // Top k by selection (V is small).
        int taken[V];
        memset(taken, 0, sizeof taken);
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < V; i++)
                if (!taken[i] && (best < 0 || logit[i] > logit[best])) best = i;
            taken[best] = 1;
            topk_ids[t * k + j] = best;
            topk_logprobs[t * k + j] = fminf(0.0f, logit[best] / SYNTH_TEMPERATURE - log_z);
        }
    }
}

void synth_trace_text(const int32_t *tokens, int n, char *text, size_t cap) {
    size_t len = 0;
    char buf[SYNTH_PIECE_CAP];
    if (cap == 0) return;
    text[0] = '\0';
    for (int t = 0; t < n; t++) {
        if (tokens[t] == SYNTH_TOKEN_BOS || tokens[t] == SYNTH_TOKEN_EOS || tokens[t] == SYNTH_TOKEN_PAD) continue;
        const char *w = synth_piece(tokens[t], buf);
        int glue = len > 0 && strcmp(w, ",") && strcmp(w, ".");   // punctuation hugs its word
        size_t need = strlen(w) + (size_t)glue;
        if (len + need + 1 > cap) break;
        if (glue) text[len++] = ' ';
        memcpy(text + len, w, strlen(w) + 1);
        len += strlen(w);
    }
}

// ---- the report teacher (urban4) -------------------------------------------
//
// Its vocabulary: the words above (ids 0..N_WORDS-1), then the decimal
// numbers "0.0" .. "199.9" (REPORT_DEC0 + tenths), then the integers "0" ..
// "4095" (REPORT_INT0 + n), then pieces no trace uses ("<piece_N>"), up to
// the preset's vocabulary size. A report names speeds, distances, radii and
// times, so a few thousand ids occur across a fleet: the student's
// `vocab: from_logs` keeps those and drops the rest.
#define REPORT_DEC0 256
#define REPORT_N_DEC 2000
#define REPORT_INT0 (REPORT_DEC0 + REPORT_N_DEC)
#define REPORT_N_INT 4096
#define REPORT_FIRST_UNUSED (REPORT_INT0 + REPORT_N_INT)
_Static_assert(REPORT_DEC0 >= (int)(sizeof vocab / sizeof vocab[0]), "the words overlap the numbers");

const char *synth_piece(int id, char buf[SYNTH_PIECE_CAP]) {
    if (id >= 0 && id < N_WORDS) return vocab[id];
    if (id >= REPORT_DEC0 && id < REPORT_INT0) snprintf(buf, SYNTH_PIECE_CAP, "%d.%d", (id - REPORT_DEC0) / 10, (id - REPORT_DEC0) % 10);
    else if (id >= REPORT_INT0 && id < REPORT_FIRST_UNUSED) snprintf(buf, SYNTH_PIECE_CAP, "%d", id - REPORT_INT0);
    else if (id >= 0) snprintf(buf, SYNTH_PIECE_CAP, "<piece_%d>", id);
    else return "<unk>";
    return buf;
}

int synth_report_min_vocab(void) { return REPORT_FIRST_UNUSED; }

static int decimal_id(float x) {
    int tenths = (int)lroundf(fmaxf(x, 0.0f) * 10.0f);
    return REPORT_DEC0 + (tenths < REPORT_N_DEC ? tenths : REPORT_N_DEC - 1);
}

static int integer_id(int n) { return REPORT_INT0 + (n < 0 ? 0 : n < REPORT_N_INT ? n : REPORT_N_INT - 1); }

typedef struct { int32_t *tokens; int n, max; } Report;

static void say(Report *r, const char *phrase) { append_words(phrase, r->tokens, &r->n, r->max); }
static void say_id(Report *r, int id) { if (r->n < r->max) r->tokens[r->n++] = id; }
static void say_decimal(Report *r, float x, const char *unit) { say_id(r, decimal_id(x)); say(r, unit); }

// The speed of a plan (T, 3) at step i (>= 0), from its positions.
static float plan_speed(const float *plan, int i, float hz) {
    float x0 = i > 0 ? plan[3 * (i - 1)] : 0.0f, y0 = i > 0 ? plan[3 * (i - 1) + 1] : 0.0f;
    return hypotf(plan[3 * i] - x0, plan[3 * i + 1] - y0) * hz;
}

int synth_report_tokens(const SynthScene *sc, SynthCause cause, const float *plan, int horizon, float hz,
                        int32_t *tokens, int max) {
    if (max < 2) return 0;
    Report r = { tokens, 0, max - 1 };   // room for <eos>
    say_id(&r, SYNTH_TOKEN_BOS);
    say(&r, "ego speed");
    say_decimal(&r, sc->v0, "m/s .");
    if (fabsf(sc->curvature0) > 0.003f) {
        say(&r, sc->curvature0 > 0.0f ? "road curve left , radius" : "road curve right , radius");
        say_id(&r, integer_id((int)lroundf(1.0f / fabsf(sc->curvature0))));
        say(&r, "m .");
    } else {
        say(&r, "road straight .");
    }
    static const char *const colours[] = { "", "red", "yellow", "green" };
    if (sc->light) {
        say(&r, colours[sc->light]);
        say(&r, "light ahead , stop line at");
        say_decimal(&r, sc->line_s, "m .");
    } else {
        say(&r, "no light ahead .");
    }
    if (sc->crossing) {
        say(&r, "crossing at");
        say_decimal(&r, sc->cross_s, "m ,");
        if (sc->n_peds > 0) {
            say_id(&r, integer_id(sc->n_peds));
            say(&r, sc->n_peds > 1 ? "pedestrians on it , moving across ." : "pedestrian on it , moving across .");
        } else {
            say(&r, "clear .");
        }
    }
    if (sc->lead) {
        float gap = sc->lead_s - 0.5f * SYNTH_CAR_LENGTH - SYNTH_EGO_HALF_LENGTH, dv = sc->lead_v - sc->v0;
        say(&r, "lead vehicle at");
        say_decimal(&r, gap, "m , speed");
        say_decimal(&r, sc->lead_v, "m/s , gap");
        say(&r, dv < -0.5f ? "closing ." : dv > 0.5f ? "opening ." : "steady .");
    } else {
        say(&r, "no lead vehicle .");
    }
    if (sc->other) {
        say(&r, "other vehicle in the other lane ,");
        say_decimal(&r, fabsf(sc->other_s), sc->other_s < 0.0f ? "m behind ." : "m ahead .");
    }
    say(&r, "decision :");
    say(&r, cause_phrase(cause));
    say(&r, ".");
    // The nominal plan: its speed at each whole second, or one figure when
    // it holds its speed.
    float v_first = plan_speed(plan, 0, hz), v_lo = v_first, v_hi = v_first;
    for (int i = 1; i < horizon; i++) {
        float v = plan_speed(plan, i, hz);
        v_lo = fminf(v_lo, v);
        v_hi = fmaxf(v_hi, v);
    }
    say(&r, "plan :");
    if (v_hi - v_lo < 0.5f) {
        say(&r, "keep");
        say_decimal(&r, 0.5f * (v_lo + v_hi), "m/s for");
        say_decimal(&r, (float)horizon / hz, "s .");
    } else {
        int per_second = (int)lroundf(hz);
        for (int i = per_second - 1, sec = 1; i < horizon; i += per_second, sec++) {
            if (sec > 1) say(&r, ",");
            say_decimal(&r, plan_speed(plan, i, hz), "m/s at");
            say_id(&r, integer_id(sec));
            say(&r, "s");
        }
        say(&r, ".");
    }
    tokens[r.n++] = SYNTH_TOKEN_EOS;
    return r.n;
}

// Up to `max` ids the teacher also weighs in place of `id`: for a word its
// alternatives, for a number its neighbours (8.4: 8.3, 8.5, 8.2, ...).
static int report_alternatives(int id, int32_t *alt, int max) {
    int n = 0;
    if (id < N_WORDS) {
        append_words(alternatives(vocab[id]), alt, &n, max);
        return n;
    }
    int lo = id < REPORT_INT0 ? REPORT_DEC0 : REPORT_INT0, hi = id < REPORT_INT0 ? REPORT_INT0 : REPORT_FIRST_UNUSED;
    for (int d = 1; n < max && d <= 3; d++) {
        if (id - d >= lo) alt[n++] = id - d;
        if (n < max && id + d < hi) alt[n++] = id + d;
    }
    return n;
}

// A sparse softmax: explicit logits for the candidates, every other id of
// the vocabulary at REPORT_BACKGROUND. The top k are among the candidates
// (there are more than k: REPORT_DISTRACTORS random ids besides).
#define REPORT_BACKGROUND (-8.0f)
#define REPORT_DISTRACTORS 40
#define REPORT_MAX_CANDIDATES (1 + 8 + REPORT_DISTRACTORS)

void synth_report_topk(const int32_t *tokens, int n, int k, int vocab_size, Rng *rng, int32_t *topk_ids,
                       float *topk_logprobs) {
    int32_t cand[REPORT_MAX_CANDIDATES];
    float logit[REPORT_MAX_CANDIDATES];
    for (int t = 0; t < n; t++) {
        int nc = 0;
        cand[nc] = tokens[t];
        logit[nc++] = 0.0f;   // set below, above every other
        int32_t alt[8];
        int n_alt = report_alternatives(tokens[t], alt, 8);
        for (int j = 0; j < n_alt; j++) {
            if (alt[j] == SYNTH_TOKEN_UNK || alt[j] == tokens[t]) continue;
            cand[nc] = alt[j];
            logit[nc++] = 2.0f - 0.3f * (float)j + 0.7f * rng_normal(rng);
        }
        // Distractors: words, and the numbers of everyday reports (0.0 to
        // 99.9 and 0 to 999).
        while (nc < 1 + n_alt + REPORT_DISTRACTORS && nc < REPORT_MAX_CANDIDATES) {
            int r = (int)rng_below(rng, (uint64_t)(N_WORDS - 4 + 2000));
            int id = r < N_WORDS - 4 ? 4 + r : r < N_WORDS - 4 + 1000 ? REPORT_DEC0 + r - (N_WORDS - 4)
                                                                  : REPORT_INT0 + r - (N_WORDS - 4 + 1000);
            int dup = 0;
            for (int j = 0; j < nc; j++) dup |= cand[j] == id;
            if (dup) continue;
            cand[nc] = id;
            logit[nc++] = -1.0f + rng_normal(rng);
        }
        float top = -INFINITY;
        for (int j = 1; j < nc; j++) top = fmaxf(top, logit[j]);
        logit[0] = fmaxf(5.0f + 0.5f * rng_normal(rng), top + 0.5f);   // greedy decoding: the emitted id leads
        double z = (double)(vocab_size - nc) * exp(REPORT_BACKGROUND / SYNTH_TEMPERATURE);
        for (int j = 0; j < nc; j++) z += exp(logit[j] / SYNTH_TEMPERATURE);
        float log_z = (float)log(z);
        int taken[REPORT_MAX_CANDIDATES] = { 0 };
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < nc; i++)
                if (!taken[i] && (best < 0 || logit[i] > logit[best])) best = i;
            if (best < 0) {                   // k above the candidates: background ids fill the rest
                topk_ids[t * k + j] = REPORT_FIRST_UNUSED + j < vocab_size ? REPORT_FIRST_UNUSED + j : vocab_size - 1;
                topk_logprobs[t * k + j] = REPORT_BACKGROUND / SYNTH_TEMPERATURE - log_z;
                continue;
            }
            taken[best] = 1;
            topk_ids[t * k + j] = cand[best];
            topk_logprobs[t * k + j] = fminf(0.0f, logit[best] / SYNTH_TEMPERATURE - log_z);
        }
    }
}

// Scene features the embedding encodes, each roughly in [-1, 1].
#define N_FEATURES 16
static void scene_features(const SynthScene *sc, SynthCause cause, float *f) {
    float gap = sc->lead ? sc->lead_s - 0.5f * SYNTH_CAR_LENGTH - SYNTH_EGO_HALF_LENGTH : SYNTH_LIGHT_RANGE;
    f[0] = sc->light == SYNTH_LIGHT_RED;
    f[1] = sc->light == SYNTH_LIGHT_YELLOW;
    f[2] = sc->light == SYNTH_LIGHT_GREEN;
    f[3] = sc->light ? 1.0f - sc->line_s / SYNTH_LIGHT_RANGE : 0.0f;
    f[4] = sc->n_peds > 0;
    f[5] = sc->crossing ? 1.0f - sc->cross_s / SYNTH_LIGHT_RANGE : 0.0f;
    f[6] = sc->lead;
    f[7] = sc->lead ? 1.0f - gap / SYNTH_LIGHT_RANGE : 0.0f;
    f[8] = sc->lead ? (sc->lead_v - sc->v0) / 10.0f : 0.0f;
    f[9] = sc->v0 / 15.0f;
    f[10] = sc->curvature0 * 150.0f;
    f[11] = sc->offset0;
    f[12] = sc->heading_err0 * 20.0f;
    f[13] = cause == SYNTH_CAUSE_RED || cause == SYNTH_CAUSE_YELLOW_STOP || cause == SYNTH_CAUSE_PEDESTRIAN;
    f[14] = cause == SYNTH_CAUSE_LEAD_CLOSE;
    f[15] = sc->other;
}

void synth_embedding(const SynthScene *sc, SynthCause cause, int dim, Rng *rng, float *embedding) {
    float f[N_FEATURES];
    scene_features(sc, cause, f);
    // One fixed projection for every dataset, so that embeddings mean the same
    // thing across seeds: its weights come from a constant stream.
    Rng proj;
    rng_derive(&proj, 0x5eedd15711ull, 0, 0);
    for (int d = 0; d < dim; d++) {
        float acc = 0.3f * rng_normal(&proj);   // bias
        for (int j = 0; j < N_FEATURES; j++) acc += rng_normal(&proj) * f[j] * 0.6f;
        embedding[d] = tanhf(acc) + 0.05f * rng_normal(rng);
    }
}
