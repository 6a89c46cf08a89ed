// trace.c: vocabulary, traces, top-k softmax and the scene embedding.
#include "data/synth/trace.h"
#include <math.h>
#include <string.h>

// The teacher's words. Ids are positions; the first four are the specials.
static const char *const vocab[] = {
    "<pad>", "<bos>", "<eos>", "<unk>", ",", ".",
    "red", "yellow", "green", "light", "signal", "ahead", "stop", "before", "the", "line",
    "lead", "vehicle", "car", "close", "near", "slow", "down", "brake", "gently", "keep",
    "distance", "speed", "clear", "road", "lane", "pedestrian", "person", "on", "crossing",
    "yield", "wait", "curve", "bend", "left", "right", "go", "through", "continue",
    "too", "to", "a", "at", "hold", "open",
};
#define V (int)(sizeof vocab / sizeof vocab[0])

int synth_vocab_size(void) { return V; }
const char *synth_vocab_piece(int id) { return id >= 0 && id < V ? vocab[id] : "<unk>"; }

static int word_id(const char *w) {
    for (int i = 0; i < V; i++) if (!strcmp(vocab[i], w)) return i;
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
    if (cap == 0) return;
    text[0] = '\0';
    for (int t = 0; t < n; t++) {
        if (tokens[t] == SYNTH_TOKEN_BOS || tokens[t] == SYNTH_TOKEN_EOS || tokens[t] == SYNTH_TOKEN_PAD) continue;
        const char *w = synth_vocab_piece(tokens[t]);
        int glue = len > 0 && strcmp(w, ",") && strcmp(w, ".");   // punctuation hugs its word
        size_t need = strlen(w) + (size_t)glue;
        if (len + need + 1 > cap) break;
        if (glue) text[len++] = ' ';
        memcpy(text + len, w, strlen(w) + 1);
        len += strlen(w);
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
