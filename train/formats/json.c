// json.c: the strict recursive-descent parser, lookups and writers (json.h).
#include "train/formats/json.h"
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct Parser {
    const char *s;
    size_t len, pos;
    JsonLimits lim;
    size_t nodes;
    char *err;
    size_t errlen;
    int failed;
} Parser;

// Records the first error only: later ones are consequences of it.
static void fail(Parser *p, size_t at, const char *fmt, ...) {
    if (p->failed) return;
    p->failed = 1;
    if (!p->err || !p->errlen) return;
    int n = snprintf(p->err, p->errlen, "byte %zu: ", at);
    if (n < 0 || (size_t)n >= p->errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err + n, p->errlen - n, fmt, ap);
    va_end(ap);
}

// A byte as the message shows it: 'x' when printable ASCII, else 0xNN.
static const char *show_byte(unsigned char c, char buf[8]) {
    if (c >= 0x20 && c < 0x7f) snprintf(buf, 8, "'%c'", c);
    else snprintf(buf, 8, "0x%02x", c);
    return buf;
}

static void skip_ws(Parser *p) {
    while (p->pos < p->len) {
        char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
        p->pos++;
    }
}

static void fail_end(Parser *p, const char *what) {
    fail(p, p->pos, "unexpected end of input %s (truncated?)", what);
}

// ---- strings ------------------------------------------------------------------

static int hex4(const char *s, unsigned *out) {
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *dst, unsigned cp) {
    if (cp < 0x80) { dst[0] = (char)cp; return 1; }
    if (cp < 0x800) {
        dst[0] = (char)(0xc0 | (cp >> 6));
        dst[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        dst[0] = (char)(0xe0 | (cp >> 12));
        dst[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
        dst[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    dst[0] = (char)(0xf0 | (cp >> 18));
    dst[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
    dst[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
    dst[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

// Length of the valid UTF-8 sequence at s[0..avail), or 0 if it is not one:
// no overlong forms, no surrogates, nothing past U+10FFFF.
static size_t utf8_seq(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    size_t n;
    unsigned lo = 0x80, hi = 0xbf;   // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) n = 2;
    else if (c == 0xe0) { n = 3; lo = 0xa0; }
    else if (c >= 0xe1 && c <= 0xec) n = 3;
    else if (c == 0xed) { n = 3; hi = 0x9f; }
    else if (c >= 0xee && c <= 0xef) n = 3;
    else if (c == 0xf0) { n = 4; lo = 0x90; }
    else if (c >= 0xf1 && c <= 0xf3) n = 4;
    else if (c == 0xf4) { n = 4; hi = 0x8f; }
    else return 0;
    if (avail < n) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf) return 0;
    return n;
}

// A \uXXXX escape at p->pos (the backslash), a surrogate pair included,
// in a string whose closing quote is at `end`. Writes UTF-8 to dst; returns
// the bytes written or 0 on error.
static size_t parse_u_escape(Parser *p, size_t end, char *dst) {
    size_t at = p->pos;
    unsigned cp, lo;
    if (end - p->pos < 6 || hex4(p->s + p->pos + 2, &cp)) { fail(p, at, "bad \\u escape (4 hex digits expected)"); return 0; }
    p->pos += 6;
    if (cp == 0) { fail(p, at, "\\u0000 (NUL) is not supported in strings"); return 0; }
    if (cp >= 0xdc00 && cp <= 0xdfff) { fail(p, at, "lone low surrogate \\u%04x", cp); return 0; }
    if (cp >= 0xd800 && cp <= 0xdbff) {
        if (end - p->pos < 6 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u' ||
            hex4(p->s + p->pos + 2, &lo) || lo < 0xdc00 || lo > 0xdfff) {
            fail(p, at, "high surrogate \\u%04x not followed by a low surrogate", cp);
            return 0;
        }
        p->pos += 6;
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    return put_utf8(dst, cp);
}

// The string starting at p->pos (its opening quote), decoded to *out.
static int parse_string(Parser *p, char **out, size_t *out_len) {
    size_t start = p->pos;
    // Find the closing quote first: the decoded string is never longer than
    // its source, so one allocation of that size holds it.
    size_t end = start + 1;
    while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
    if (end >= p->len) { fail(p, p->len, "unterminated string (it starts at byte %zu)", start); return -1; }
    char *buf = malloc(end - start);
    if (!buf) { fail(p, start, "out of memory"); return -1; }
    size_t n = 0;
    p->pos = start + 1;
    while (p->pos < end) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c < 0x20) { fail(p, p->pos, "control character 0x%02x in a string (escape it)", c); goto bad; }
        if (c >= 0x80) {
            size_t k = utf8_seq((const unsigned char *)p->s + p->pos, end - p->pos);
            if (!k) { fail(p, p->pos, "invalid UTF-8 in a string"); goto bad; }
            memcpy(buf + n, p->s + p->pos, k);
            n += k; p->pos += k;
            continue;
        }
        if (c != '\\') { buf[n++] = (char)c; p->pos++; continue; }
        char e = p->s[p->pos + 1];   // in bounds: end is a quote after it
        const char *simple = strchr("\"\\/bfnrt", e);
        if (e == 'u') {
            size_t k = parse_u_escape(p, end, buf + n);
            if (!k) goto bad;
            n += k;
            continue;
        }
        if (!e || !simple) {
            char b[8];
            fail(p, p->pos, "bad escape \\%s in a string", show_byte((unsigned char)e, b));
            goto bad;
        }
        static const char decoded[] = "\"\\/\b\f\n\r\t";
        buf[n++] = decoded[simple - "\"\\/bfnrt"];
        p->pos += 2;
    }
    buf[n] = '\0';
    p->pos = end + 1;
    *out = buf;
    *out_len = n;
    return 0;
bad:
    free(buf);
    return -1;
}

// ---- numbers and literals -------------------------------------------------------

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int parse_number(Parser *p, Json *v) {
    size_t start = p->pos, i = p->pos;
    int integral = 1;
    if (i < p->len && p->s[i] == '-') i++;
    if (i >= p->len) { fail(p, i, "unexpected end of input in a number (truncated?)"); return -1; }
    if (p->s[i] == '0') {
        i++;
        if (i < p->len && is_digit(p->s[i])) { fail(p, start, "number with a leading zero"); return -1; }
    } else if (is_digit(p->s[i])) {
        while (i < p->len && is_digit(p->s[i])) i++;
    } else {
        fail(p, start, "'-' not followed by a digit");
        return -1;
    }
    if (i < p->len && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->len || !is_digit(p->s[i])) { fail(p, start, "number with no digit after '.'"); return -1; }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    if (i < p->len && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->len && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->len || !is_digit(p->s[i])) { fail(p, start, "number with no digit in its exponent"); return -1; }
        while (i < p->len && is_digit(p->s[i])) i++;
    }
    // strtod needs a NUL-terminated copy; the text need not be terminated.
    size_t n = i - start;
    char small[64];
    char *copy = n < sizeof small ? small : malloc(n + 1);
    if (!copy) { fail(p, start, "out of memory"); return -1; }
    memcpy(copy, p->s + start, n);
    copy[n] = '\0';
    errno = 0;
    v->number = strtod(copy, NULL);
    int out_of_range = isinf(v->number);
    if (integral && !out_of_range) {
        errno = 0;
        long long x = strtoll(copy, NULL, 10);
        if (errno != ERANGE) { v->integer = x; v->is_int = 1; }
    }
    if (copy != small) free(copy);
    if (out_of_range) { fail(p, start, "number out of the range of a double"); return -1; }
    v->type = JSON_NUMBER;
    p->pos = i;
    return 0;
}

static int parse_literal(Parser *p, Json *v) {
    static const struct { const char *word; JsonType type; int boolean; } lits[] = {
        { "true", JSON_BOOL, 1 }, { "false", JSON_BOOL, 0 }, { "null", JSON_NULL, 0 },
    };
    for (size_t k = 0; k < sizeof lits / sizeof lits[0]; k++) {
        size_t n = strlen(lits[k].word);
        if (p->s[p->pos] != lits[k].word[0]) continue;
        if (p->len - p->pos < n) { fail_end(p, "in a literal"); return -1; }
        if (memcmp(p->s + p->pos, lits[k].word, n)) break;
        v->type = lits[k].type;
        v->boolean = lits[k].boolean;
        p->pos += n;
        return 0;
    }
    fail(p, p->pos, "invalid literal (true, false or null expected)");
    return -1;
}

// ---- arrays and objects -------------------------------------------------------

static int parse_value(Parser *p, Json *v, int depth);

// Room for one more member; keys too when with_keys. The new slot is zeroed
// and counted, so a failure inside it still leaves a tree json_free can walk.
static Json *append_member(Parser *p, Json *v, int *cap, int with_keys) {
    if (v->n == *cap) {
        int ncap = *cap ? 2 * *cap : 4;
        Json *items = realloc(v->items, (size_t)ncap * sizeof *items);
        if (!items) { fail(p, p->pos, "out of memory"); return NULL; }
        v->items = items;
        if (with_keys) {
            char **keys = realloc(v->keys, (size_t)ncap * sizeof *keys);
            if (!keys) { fail(p, p->pos, "out of memory"); return NULL; }
            v->keys = keys;
        }
        *cap = ncap;
    }
    memset(&v->items[v->n], 0, sizeof v->items[v->n]);
    if (with_keys) v->keys[v->n] = NULL;
    return &v->items[v->n++];
}

static int parse_array(Parser *p, Json *v, int depth) {
    v->type = JSON_ARRAY;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == ']') { p->pos++; return 0; }
    int cap = 0;
    for (;;) {
        Json *item = append_member(p, v, &cap, 0);
        if (!item || parse_value(p, item, depth + 1)) return -1;
        skip_ws(p);
        if (p->pos >= p->len) { fail_end(p, "in an array"); return -1; }
        char c = p->s[p->pos++];
        if (c == ']') return 0;
        if (c != ',') {
            char b[8];
            fail(p, p->pos - 1, "expected ',' or ']' in the array at byte %zu, found %s", v->offset, show_byte((unsigned char)c, b));
            return -1;
        }
    }
}

typedef struct KeyAt { const char *key; size_t offset; } KeyAt;

static int by_key(const void *a, const void *b) {
    const KeyAt *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    if (c) return c;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

// Duplicate keys, found by sorting (objects can hold many thousand keys).
static int check_unique_keys(Parser *p, const Json *v) {
    if (v->n < 2) return 0;
    KeyAt *ks = malloc((size_t)v->n * sizeof *ks);
    if (!ks) { fail(p, v->offset, "out of memory"); return -1; }
    for (int i = 0; i < v->n; i++) ks[i] = (KeyAt){ v->keys[i], v->items[i].offset };
    qsort(ks, (size_t)v->n, sizeof *ks, by_key);
    int rc = 0;
    for (int i = 1; i < v->n && !rc; i++) {
        if (strcmp(ks[i - 1].key, ks[i].key)) continue;
        fail(p, ks[i].offset, "duplicate key \"%.64s\" in the object at byte %zu", ks[i].key, v->offset);
        rc = -1;
    }
    free(ks);
    return rc;
}

static int parse_object(Parser *p, Json *v, int depth) {
    v->type = JSON_OBJECT;
    p->pos++;
    skip_ws(p);
    if (p->pos < p->len && p->s[p->pos] == '}') { p->pos++; return 0; }
    int cap = 0;
    char b[8];
    for (;;) {
        skip_ws(p);
        if (p->pos >= p->len) { fail_end(p, "in an object"); return -1; }
        if (p->s[p->pos] != '"') {
            fail(p, p->pos, "expected a string key in the object at byte %zu, found %s", v->offset,
                 show_byte((unsigned char)p->s[p->pos], b));
            return -1;
        }
        Json *item = append_member(p, v, &cap, 1);
        size_t key_len;
        if (!item || parse_string(p, &v->keys[v->n - 1], &key_len)) return -1;
        skip_ws(p);
        if (p->pos >= p->len) { fail_end(p, "in an object"); return -1; }
        if (p->s[p->pos] != ':') {
            fail(p, p->pos, "expected ':' after the key \"%.64s\", found %s", v->keys[v->n - 1],
                 show_byte((unsigned char)p->s[p->pos], b));
            return -1;
        }
        p->pos++;
        if (parse_value(p, item, depth + 1)) return -1;
        skip_ws(p);
        if (p->pos >= p->len) { fail_end(p, "in an object"); return -1; }
        char c = p->s[p->pos++];
        if (c == '}') return check_unique_keys(p, v);
        if (c != ',') {
            fail(p, p->pos - 1, "expected ',' or '}' in the object at byte %zu, found %s", v->offset, show_byte((unsigned char)c, b));
            return -1;
        }
    }
}

static int parse_value(Parser *p, Json *v, int depth) {
    skip_ws(p);
    if (p->pos >= p->len) { fail_end(p, "where a value was expected"); return -1; }
    v->offset = p->pos;
    if (++p->nodes > p->lim.max_nodes) { fail(p, p->pos, "more than %zu values", p->lim.max_nodes); return -1; }
    char c = p->s[p->pos];
    if (c == '[' || c == '{') {
        if (depth >= p->lim.max_depth) { fail(p, p->pos, "nesting deeper than %d levels", p->lim.max_depth); return -1; }
        return c == '[' ? parse_array(p, v, depth) : parse_object(p, v, depth);
    }
    if (c == '"') {
        v->type = JSON_STRING;
        return parse_string(p, &v->string, &v->string_len);
    }
    if (c == '-' || is_digit(c)) return parse_number(p, v);
    if (c == 't' || c == 'f' || c == 'n') return parse_literal(p, v);
    char b[8];
    fail(p, p->pos, "unexpected %s where a value was expected", show_byte((unsigned char)c, b));
    return -1;
}

// ---- the tree -----------------------------------------------------------------

static void free_contents(Json *v) {
    free(v->string);
    for (int i = 0; i < v->n; i++) {
        free_contents(&v->items[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
}

void json_free(Json *v) {
    if (!v) return;
    free_contents(v);
    free(v);
}

Json *json_parse_limits(const char *text, size_t len, const JsonLimits *limits, char *err, size_t errlen) {
    Parser p = { .s = text, .len = len, .lim = *limits, .err = err, .errlen = errlen };
    if (err && errlen) err[0] = '\0';
    if (len > limits->max_bytes) {
        fail(&p, 0, "input of %zu bytes is over the limit of %zu", len, limits->max_bytes);
        return NULL;
    }
    Json *root = calloc(1, sizeof *root);
    if (!root) { fail(&p, 0, "out of memory"); return NULL; }
    if (parse_value(&p, root, 0) == 0) {
        skip_ws(&p);
        if (p.pos < p.len) {
            char b[8];
            fail(&p, p.pos, "unexpected %s after the JSON value", show_byte((unsigned char)text[p.pos], b));
        }
    }
    if (p.failed) { json_free(root); return NULL; }
    return root;
}

Json *json_parse(const char *text, size_t len, char *err, size_t errlen) {
    JsonLimits lim = { JSON_MAX_BYTES, JSON_MAX_DEPTH, JSON_MAX_NODES };
    return json_parse_limits(text, len, &lim, err, errlen);
}

const char *json_type_name(JsonType t) {
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

const Json *json_get(const Json *obj, const char *key) {
    if (!obj || obj->type != JSON_OBJECT) return NULL;
    for (int i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0) return &obj->items[i];
    return NULL;
}

const Json *json_index(const Json *arr, int i) {
    if (!arr || arr->type != JSON_ARRAY || i < 0 || i >= arr->n) return NULL;
    return &arr->items[i];
}

// ---- typed views ----------------------------------------------------------------

static int wrong_type(const Json *v, const char *what, const char *expected, char *err, size_t errlen) {
    snprintf(err, errlen, "%s at byte %zu: expected %s, found %s", what, v->offset, expected, json_type_name(v->type));
    return -1;
}

int json_as_string(const Json *v, const char *what, const char **out, char *err, size_t errlen) {
    if (v->type != JSON_STRING) return wrong_type(v, what, "a string", err, errlen);
    *out = v->string;
    return 0;
}

int json_as_number(const Json *v, const char *what, double *out, char *err, size_t errlen) {
    if (v->type != JSON_NUMBER) return wrong_type(v, what, "a number", err, errlen);
    *out = v->number;
    return 0;
}

int json_as_int64(const Json *v, const char *what, int64_t *out, char *err, size_t errlen) {
    if (v->type != JSON_NUMBER) return wrong_type(v, what, "an integer", err, errlen);
    if (!v->is_int) {
        snprintf(err, errlen, "%s at byte %zu: expected an integer within int64, found %.17g", what, v->offset, v->number);
        return -1;
    }
    *out = v->integer;
    return 0;
}

int json_as_bool(const Json *v, const char *what, int *out, char *err, size_t errlen) {
    if (v->type != JSON_BOOL) return wrong_type(v, what, "true or false", err, errlen);
    *out = v->boolean;
    return 0;
}

// obj[key] with a missing key reported; `what` receives "\"key\"".
static const Json *member(const Json *obj, const char *key, char *what, size_t what_len, char *err, size_t errlen) {
    snprintf(what, what_len, "\"%s\"", key);
    if (!obj || obj->type != JSON_OBJECT) {
        snprintf(err, errlen, "looking up \"%s\": %s at byte %zu is not an object", key,
                 obj ? json_type_name(obj->type) : "nothing", obj ? obj->offset : 0);
        return NULL;
    }
    const Json *v = json_get(obj, key);
    if (!v) snprintf(err, errlen, "missing key \"%s\" in the object at byte %zu", key, obj->offset);
    return v;
}

int json_get_string(const Json *obj, const char *key, const char **out, char *err, size_t errlen) {
    char what[96];
    const Json *v = member(obj, key, what, sizeof what, err, errlen);
    return v ? json_as_string(v, what, out, err, errlen) : -1;
}

int json_get_number(const Json *obj, const char *key, double *out, char *err, size_t errlen) {
    char what[96];
    const Json *v = member(obj, key, what, sizeof what, err, errlen);
    return v ? json_as_number(v, what, out, err, errlen) : -1;
}

int json_get_int64(const Json *obj, const char *key, int64_t *out, char *err, size_t errlen) {
    char what[96];
    const Json *v = member(obj, key, what, sizeof what, err, errlen);
    return v ? json_as_int64(v, what, out, err, errlen) : -1;
}

int json_get_bool(const Json *obj, const char *key, int *out, char *err, size_t errlen) {
    char what[96];
    const Json *v = member(obj, key, what, sizeof what, err, errlen);
    return v ? json_as_bool(v, what, out, err, errlen) : -1;
}

// ---- writers -------------------------------------------------------------------

void json_write_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20) fprintf(f, "\\u%04x", *c);
            else fputc(*c, f);
        }
    }
    fputc('"', f);
}

void json_write_f32(FILE *f, float x) {
    if (!isfinite(x)) { fputs("null", f); return; }
    fprintf(f, "%.9g", (double)x);
}

void json_write_f64(FILE *f, double x) {
    if (!isfinite(x)) { fputs("null", f); return; }
    fprintf(f, "%.17g", x);
}

void json_write_int(FILE *f, int64_t x) { fprintf(f, "%" PRId64, x); }
