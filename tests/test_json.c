// test_json.c: the strict JSON parser and writers. Good documents read back
// exactly; every malformed one (a corpus, every prefix of a good one, and
// random bytes and mutations) is an error with a byte offset, never a
// crash or a read past the input, which is always handed over in a buffer
// of its exact length so that AddressSanitizer sees any overrun.
#include <stdint.h>
#include <string.h>
#include "autograd/rng.h"
#include "train/formats/json.h"
#include "tests/test.h"

static Rng rng;

// Parse a copy of text[0..len) in an allocation of exactly len bytes.
static Json *parse_exact(const char *text, size_t len, char *err, size_t errlen) {
    char *copy = malloc(len ? len : 1);
    if (!copy) return NULL;
    memcpy(copy, text, len);
    Json *v = json_parse(copy, len, err, errlen);
    free(copy);
    return v;
}

static Json *parse(const char *text, char *err, size_t errlen) { return parse_exact(text, strlen(text), err, errlen); }

static void test_structure(void) {
    char err[256];
    const char *doc = "{\"a\": [1, 2.5, -3e2, true, false, null], \"b\": {\"c\": \"x\"}, \"e\": {}, \"f\": []}";
    Json *v = parse(doc, err, sizeof err);
    REQUIRE(v, "parse: %s", err);
    CHECK(v->type == JSON_OBJECT && v->n == 4 && v->offset == 0, "root");
    const Json *a = json_get(v, "a");
    REQUIRE(a && a->type == JSON_ARRAY && a->n == 6, "a");
    CHECK(a->offset == 6, "a at byte %zu", a->offset);
    CHECK(json_index(a, 0)->is_int && json_index(a, 0)->integer == 1, "a[0]");
    CHECK(json_index(a, 1)->number == 2.5 && !json_index(a, 1)->is_int, "a[1]");
    CHECK(json_index(a, 2)->number == -300.0 && !json_index(a, 2)->is_int, "a[2]");
    CHECK(json_index(a, 3)->type == JSON_BOOL && json_index(a, 3)->boolean == 1, "a[3]");
    CHECK(json_index(a, 4)->type == JSON_BOOL && json_index(a, 4)->boolean == 0, "a[4]");
    CHECK(json_index(a, 5)->type == JSON_NULL, "a[5]");
    CHECK(json_index(a, 6) == NULL && json_index(a, -1) == NULL && json_index(v, 0) == NULL, "index out of range");
    const char *c;
    CHECK(json_get_string(json_get(v, "b"), "c", &c, err, sizeof err) == 0 && !strcmp(c, "x"), "b.c");
    CHECK(json_get(v, "e")->type == JSON_OBJECT && json_get(v, "e")->n == 0, "empty object");
    CHECK(json_get(v, "f")->type == JSON_ARRAY && json_get(v, "f")->n == 0, "empty array");
    CHECK(json_get(v, "zz") == NULL && json_get(a, "a") == NULL, "absent key");
    json_free(v);
    json_free(NULL);
}

static void test_strings(void) {
    static const struct { const char *json, *utf8; } cases[] = {
        { "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "a\"b\\c/d\b\f\n\r\t" },
        { "\"\\u00e9\"", "\xc3\xa9" },
        { "\"\\u20AC\"", "\xe2\x82\xac" },
        { "\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80" },
        { "\"\\u0041\\u007f\\u0080\\u07ff\\u0800\\uffff\"", "A\x7f\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf" },
        { "\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf" },
        { "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
        { "\"\"", "" },
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Json *v = parse(cases[i].json, err, sizeof err);
        if (!v) { CHECK(0, "case %zu: %s", i, err); continue; }
        CHECK(v->type == JSON_STRING && !strcmp(v->string, cases[i].utf8) && v->string_len == strlen(cases[i].utf8),
              "case %zu: got \"%s\"", i, v->string ? v->string : "(not a string)");
        json_free(v);
    }
}

static void test_numbers(void) {
    static const struct { const char *text; double number; int is_int; int64_t integer; } cases[] = {
        { "0", 0, 1, 0 }, { "-0", -0.0, 1, 0 }, { "123", 123, 1, 123 },
        { "9223372036854775807", 9223372036854775807.0, 1, INT64_MAX },
        { "-9223372036854775808", -9223372036854775808.0, 1, INT64_MIN },
        { "9223372036854775808", 9223372036854775808.0, 0, 0 },   // past int64: a double only
        { "9007199254740993", 9007199254740992.0, 1, 9007199254740993LL },  // int64 view is exact, the double is not
        { "1.5", 1.5, 0, 0 }, { "1e3", 1000, 0, 0 }, { "1E+2", 100, 0, 0 }, { "2.5e-3", 2.5e-3, 0, 0 },
        { "-0.0", -0.0, 0, 0 }, { "1e-400", 0, 0, 0 }, { " 7 ", 7, 1, 7 },
        { "0.1", 0.1, 0, 0 }, { "1.7976931348623157e308", 1.7976931348623157e308, 0, 0 },
    };
    char err[256];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Json *v = parse(cases[i].text, err, sizeof err);
        if (!v) { CHECK(0, "%s: %s", cases[i].text, err); continue; }
        CHECK(v->type == JSON_NUMBER && v->number == cases[i].number && v->is_int == cases[i].is_int &&
              (!v->is_int || v->integer == cases[i].integer), "%s: %.17g is_int %d %lld", cases[i].text, v->number,
              v->is_int, (long long)v->integer);
        CHECK(signbit(v->number) == signbit(cases[i].number), "%s: sign", cases[i].text);
        json_free(v);
    }
}

// Each bad document gives NULL and an error starting "byte <offset>: " and
// containing `what`.
static void test_bad_inputs(void) {
    static const struct { const char *text; size_t at; const char *what; } cases[] = {
        { "", 0, "unexpected end" },
        { "   ", 3, "unexpected end" },
        { "01", 0, "leading zero" },
        { "-01", 0, "leading zero" },
        { "1.", 0, "no digit after '.'" },
        { "1.e5", 0, "no digit after '.'" },
        { ".5", 0, "unexpected '.'" },
        { "+1", 0, "unexpected '+'" },
        { "1e", 0, "exponent" },
        { "1e+", 0, "exponent" },
        { "-", 1, "unexpected end" },
        { "-a", 0, "not followed by a digit" },
        { "NaN", 0, "unexpected 'N'" },
        { "Infinity", 0, "unexpected 'I'" },
        { "-Infinity", 0, "not followed by a digit" },
        { "1e999", 0, "out of the range" },
        { "tru", 0, "unexpected end" },
        { "nulx", 0, "invalid literal" },
        { "True", 0, "unexpected 'T'" },
        { "[1,]", 3, "unexpected ']'" },
        { "[1 2]", 3, "expected ',' or ']'" },
        { "[1,", 3, "unexpected end" },
        { "{\"a\":1,}", 7, "expected a string key" },
        { "{\"a\" 1}", 5, "expected ':'" },
        { "{a:1}", 1, "expected a string key" },
        { "{'a':1}", 1, "expected a string key" },
        { "{\"a\":1 \"b\":2}", 7, "expected ',' or '}'" },
        { "{\"a\":1,\"a\":2}", 11, "duplicate key \"a\"" },
        { "\"abc", 4, "unterminated string" },
        { "\"\\", 2, "unterminated string" },
        { "\"\\x\"", 1, "bad escape \\'x'" },
        { "\"\\u12g4\"", 1, "bad \\u escape" },
        { "\"\\u12\"", 1, "bad \\u escape" },
        { "\"\\ud800\"", 1, "not followed by a low surrogate" },
        { "\"\\ud800\\u0041\"", 1, "not followed by a low surrogate" },
        { "\"\\udc00\"", 1, "lone low surrogate" },
        { "\"\\u0000\"", 1, "NUL" },
        { "\"a\tb\"", 2, "control character 0x09" },
        { "\"a\nb\"", 2, "control character 0x0a" },
        { "\"\xc3\"", 1, "invalid UTF-8" },
        { "\"\xc0\xaf\"", 1, "invalid UTF-8" },            // overlong '/'
        { "\"\xe0\x80\xaf\"", 1, "invalid UTF-8" },        // overlong, 3 bytes
        { "\"\xed\xa0\x80\"", 1, "invalid UTF-8" },        // a UTF-16 surrogate encoded
        { "\"\xf4\x90\x80\x80\"", 1, "invalid UTF-8" },    // past U+10FFFF
        { "\"\xff\"", 1, "invalid UTF-8" },
        { "[] x", 3, "after the JSON value" },
        { "{} {}", 3, "after the JSON value" },
        { "// c\n1", 0, "unexpected '/'" },
        { "\xef\xbb\xbf{}", 0, "unexpected 0xef" },           // a byte-order mark
    };
    char err[256], want[64];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        Json *v = parse(cases[i].text, err, sizeof err);
        if (v) { CHECK(0, "case %zu (%s) parsed", i, cases[i].text); json_free(v); continue; }
        snprintf(want, sizeof want, "byte %zu: ", cases[i].at);
        CHECK(strncmp(err, want, strlen(want)) == 0 && strstr(err, cases[i].what), "case %zu (%s): \"%s\", want \"%s...%s\"",
              i, cases[i].text, err, want, cases[i].what);
    }
    // An embedded NUL byte is just a bad byte, inside or outside a string.
    CHECK(!parse_exact("[1,\0]", 5, err, sizeof err) && strstr(err, "unexpected 0x00"), "NUL outside: %s", err);
    CHECK(!parse_exact("\"a\0\"", 4, err, sizeof err) && strstr(err, "control character 0x00"), "NUL inside: %s", err);
}

static void test_depth(void) {
    char err[256];
    size_t n = 100000;
    char *deep = malloc(2 * n);
    memset(deep, '[', n);
    memset(deep + n, ']', n);
    // Exactly the limit parses; one more level is an error, and so is far more.
    Json *v = parse_exact(deep + n - JSON_MAX_DEPTH, 2 * JSON_MAX_DEPTH, err, sizeof err);
    CHECK(v != NULL, "depth %d: %s", JSON_MAX_DEPTH, err);
    json_free(v);
    v = parse_exact(deep + n - JSON_MAX_DEPTH - 1, 2 * JSON_MAX_DEPTH + 2, err, sizeof err);
    CHECK(!v && strstr(err, "nesting deeper than 64") && strncmp(err, "byte 64: ", 9) == 0, "depth 65: %s", err);
    json_free(v);
    v = parse_exact(deep, 2 * n, err, sizeof err);
    CHECK(!v && strstr(err, "nesting deeper"), "depth %zu: %s", n, err);
    json_free(v);
    v = parse_exact(deep, n, err, sizeof err);   // unclosed as well
    CHECK(!v && strstr(err, "nesting deeper"), "unclosed: %s", err);
    for (size_t i = 0; i < n; i++) deep[i] = i % 2 ? '{' : '[';   // mixed, invalid anyway
    v = parse_exact(deep, n, err, sizeof err);
    CHECK(!v, "mixed parsed");
    free(deep);
}

static void test_limits(void) {
    char err[256];
    JsonLimits lim = { 16, 4, 5 };
    Json *v = json_parse_limits("[1,2,3,4]", 9, &lim, err, sizeof err);   // 5 values
    CHECK(v != NULL, "5 values: %s", err);
    json_free(v);
    v = json_parse_limits("[1,2,3,4,5]", 11, &lim, err, sizeof err);
    CHECK(!v && strstr(err, "more than 5 values"), "6 values: %s", err);
    v = json_parse_limits("[1,2,3,4,5,6,7,8,9]", 19, &lim, err, sizeof err);
    CHECK(!v && strstr(err, "over the limit of 16"), "size: %s", err);
    v = json_parse_limits("[[[[[1]]]]]", 11, &lim, err, sizeof err);
    CHECK(!v && strstr(err, "nesting deeper than 4"), "depth: %s", err);
}

// Every proper prefix of a document is an error (the document is an object,
// so none of them is complete); so is every prefix cut inside an escape or
// a UTF-8 sequence.
static void test_truncated_prefixes(void) {
    const char *doc = "{\"name\": {\"dtype\": \"F32\", \"shape\": [2, 3], \"data_offsets\": [0, 24]},"
                      " \"e\": \"\\u00e9\\ud83d\\ude00 caf\xc3\xa9\", \"n\": [-1.5e-3, true, false, null, 1E5, {}]}";
    size_t len = strlen(doc);
    char err[256];
    Json *v = parse_exact(doc, len, err, sizeof err);
    REQUIRE(v, "full document: %s", err);
    json_free(v);
    int bad = 0;
    for (size_t k = 0; k < len; k++) {
        err[0] = '\0';
        v = parse_exact(doc, k, err, sizeof err);
        if (v || strncmp(err, "byte ", 5) != 0) { bad++; CHECK(0, "prefix of %zu bytes: %s", k, v ? "parsed" : err); }
        json_free(v);
        if (bad > 3) return;
    }
}

// Random bytes, JSON-flavoured random text and mutations of a good document:
// whatever happens, no crash, and an error always comes with a message.
static void test_fuzz(void) {
    static const char alphabet[] = "{}[]\",:\\u0123456789abcdefABCDEF.eE+- \t\ntrue false null \xc3\xa9\xed\xf0\x9f\x80";
    const char *seed_doc = "{\"a\": [1, -2.5e3, \"x\\n\\u00e9\\ud83d\\ude00\"], \"b\": {\"c\": null, \"d\": [true, false, {}]}}";
    size_t seed_len = strlen(seed_doc);
    char buf[128], err[256];
    int parsed = 0;
    for (int it = 0; it < 30000; it++) {
        size_t len;
        int mode = it % 3;
        if (mode == 0) {            // random bytes
            len = rng_below(&rng, 48);
            for (size_t i = 0; i < len; i++) buf[i] = (char)rng_below(&rng, 256);
        } else if (mode == 1) {     // random JSON-ish tokens
            len = rng_below(&rng, 64);
            for (size_t i = 0; i < len; i++) buf[i] = alphabet[rng_below(&rng, sizeof alphabet - 1)];
        } else {                    // a good document with 1-3 bytes changed, and maybe cut
            len = seed_len;
            memcpy(buf, seed_doc, len);
            int flips = 1 + (int)rng_below(&rng, 3);
            for (int f = 0; f < flips; f++) buf[rng_below(&rng, len)] = (char)rng_below(&rng, 256);
            if (rng_below(&rng, 4) == 0) len = rng_below(&rng, len + 1);
        }
        err[0] = '\0';
        Json *v = parse_exact(buf, len, err, sizeof err);
        if (v) parsed++;
        else if (strncmp(err, "byte ", 5) != 0) { CHECK(0, "iteration %d: no message (\"%s\")", it, err); return; }
        json_free(v);
    }
    CHECK(parsed > 0, "nothing parsed at all");
}

static void test_getters(void) {
    char err[256];
    Json *v = parse("{\"a\": [1], \"s\": \"str\", \"f\": 1.5, \"i\": -42, \"b\": true, \"big\": 1e300}", err, sizeof err);
    REQUIRE(v, "parse: %s", err);
    const char *s;
    double d;
    int64_t i;
    int b;
    CHECK(json_get_string(v, "s", &s, err, sizeof err) == 0 && !strcmp(s, "str"), "string");
    CHECK(json_get_number(v, "f", &d, err, sizeof err) == 0 && d == 1.5, "number");
    CHECK(json_get_number(v, "i", &d, err, sizeof err) == 0 && d == -42, "integer as number");
    CHECK(json_get_int64(v, "i", &i, err, sizeof err) == 0 && i == -42, "int64");
    CHECK(json_get_bool(v, "b", &b, err, sizeof err) == 0 && b == 1, "bool");

    CHECK(json_get_string(v, "a", &s, err, sizeof err) == -1 &&
          !strcmp(err, "\"a\" at byte 6: expected a string, found an array"), "%s", err);
    CHECK(json_get_int64(v, "f", &i, err, sizeof err) == -1 && strstr(err, "\"f\" at byte ") &&
          strstr(err, "expected an integer within int64, found 1.5"), "%s", err);
    CHECK(json_get_int64(v, "big", &i, err, sizeof err) == -1 && strstr(err, "found 1.0000000000000001e+300"), "%s", err);
    CHECK(json_get_int64(v, "s", &i, err, sizeof err) == -1 && strstr(err, "expected an integer, found a string"), "%s", err);
    CHECK(json_get_bool(v, "i", &b, err, sizeof err) == -1 && strstr(err, "expected true or false, found a number"), "%s", err);
    CHECK(json_get_number(v, "nope", &d, err, sizeof err) == -1 &&
          !strcmp(err, "missing key \"nope\" in the object at byte 0"), "%s", err);
    CHECK(json_get_string(json_get(v, "a"), "x", &s, err, sizeof err) == -1 && strstr(err, "an array at byte 6 is not an object"),
          "%s", err);
    CHECK(json_as_int64(json_index(json_get(v, "a"), 0), "a[0]", &i, err, sizeof err) == 0 && i == 1, "as_int64");
    json_free(v);
}

// Write into memory, parse back.
static Json *write_and_parse(void (*write)(FILE *, const void *), const void *arg, char *text, size_t text_len) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    write(f, arg);
    fclose(f);
    snprintf(text, text_len, "%s", buf);
    char err[256];
    Json *v = parse_exact(buf, len, err, sizeof err);
    free(buf);
    return v;
}

static void put_string(FILE *f, const void *s) { json_write_string(f, s); }
static void put_f32(FILE *f, const void *x) { json_write_f32(f, *(const float *)x); }
static void put_f64(FILE *f, const void *x) { json_write_f64(f, *(const double *)x); }
static void put_int(FILE *f, const void *x) { json_write_int(f, *(const int64_t *)x); }

static void test_writer_round_trip(void) {
    char text[512];
    char all[160];
    size_t k = 0;
    for (int c = 1; c < 128; c++) all[k++] = (char)c;          // every ASCII byte, controls included
    strcpy(all + k, "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    Json *v = write_and_parse(put_string, all, text, sizeof text);
    CHECK(v && v->type == JSON_STRING && !strcmp(v->string, all), "string round trip: %s", text);
    json_free(v);
    v = write_and_parse(put_string, "a\"b\\c\n", text, sizeof text);
    CHECK(!strcmp(text, "\"a\\\"b\\\\c\\n\""), "escaped as %s", text);
    json_free(v);

    int bad = 0;
    for (int it = 0; it < 20000 && bad < 3; it++) {
        uint64_t r = rng_u64(&rng);
        uint32_t u = (uint32_t)r;
        float x;
        memcpy(&x, &u, 4);
        double d;
        memcpy(&d, &r, 8);
        if (!isfinite(x)) x = 1.0f / (float)(it + 1);
        if (!isfinite(d)) d = -1.0 / (it + 1);
        v = write_and_parse(put_f32, &x, text, sizeof text);
        float back = v ? (float)v->number : NAN;
        if (!v || memcmp(&back, &x, 4)) { bad++; CHECK(0, "float %a written %s read %a", (double)x, text, (double)back); }
        json_free(v);
        v = write_and_parse(put_f64, &d, text, sizeof text);
        if (!v || memcmp(&v->number, &d, 8)) { bad++; CHECK(0, "double %a written %s", d, text); }
        json_free(v);
    }
    float nan = NAN, inf = INFINITY;
    v = write_and_parse(put_f32, &nan, text, sizeof text);
    CHECK(v && v->type == JSON_NULL, "NaN written %s", text);
    json_free(v);
    v = write_and_parse(put_f32, &inf, text, sizeof text);
    CHECK(v && v->type == JSON_NULL, "inf written %s", text);
    json_free(v);
    int64_t big[] = { INT64_MIN, INT64_MAX, 0, -1 };
    for (int i = 0; i < 4; i++) {
        v = write_and_parse(put_int, &big[i], text, sizeof text);
        CHECK(v && v->is_int && v->integer == big[i], "int %s", text);
        json_free(v);
    }
}

int main(void) {
    rng_seed(&rng, test_seed("test_json"));
    RUN(test_structure);
    RUN(test_strings);
    RUN(test_numbers);
    RUN(test_bad_inputs);
    RUN(test_depth);
    RUN(test_limits);
    RUN(test_truncated_prefixes);
    RUN(test_fuzz);
    RUN(test_getters);
    RUN(test_writer_round_trip);
    return test_summary();
}
