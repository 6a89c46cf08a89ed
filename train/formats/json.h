// json.h: a small, strict JSON parser into a tree, lookup helpers that
// report clear errors, and a few writer helpers.
//
// Strict means RFC 8259 and nothing more: no comments, no trailing commas,
// no NaN/Infinity, no leading zeros, valid UTF-8 in strings, no lone
// surrogates. Two deliberate restrictions on top: duplicate keys in an
// object are an error (a header that names a tensor twice is corrupt, not
// "last one wins"), and the \u0000 escape is refused so that every string
// is a plain NUL-terminated C string. Depth, size and node limits bound the
// work and memory any input can cost, and a parse of arbitrary bytes either
// returns a tree or one line "byte N: what is wrong". Numbers are read and
// written with strtod/printf, so the process must keep the C locale (distil
// never calls setlocale).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum { JSON_NULL = 0, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct Json Json;
struct Json {
    JsonType type;
    size_t offset;          // byte offset of the value's first character in the parsed text
    int boolean;            // JSON_BOOL
    double number;          // JSON_NUMBER (every number)
    int64_t integer;        // JSON_NUMBER with is_int
    int is_int;             // written without fraction or exponent, and within int64
    char *string;           // JSON_STRING: UTF-8, NUL-terminated
    size_t string_len;      // bytes, without the NUL
    int n;                  // JSON_ARRAY, JSON_OBJECT: members
    Json *items;            // (n) the values, in document order
    char **keys;            // (n) JSON_OBJECT: the keys, unique
};

typedef struct JsonLimits {
    size_t max_bytes;       // input length
    int max_depth;          // nested arrays/objects
    size_t max_nodes;       // values in the tree (each costs sizeof(Json) bytes)
} JsonLimits;

// The defaults: 100 MB (the safetensors reference's header cap), depth 64,
// 4 million values (about 350 MB of tree at most).
#define JSON_MAX_BYTES 100000000u
#define JSON_MAX_DEPTH 64
#define JSON_MAX_NODES 4000000u

// Parse text[0..len) (need not be NUL-terminated). Returns the tree, or NULL
// with err = "byte N: what is wrong". Whitespace around the value is
// allowed; anything else after it is an error.
Json *json_parse(const char *text, size_t len, char *err, size_t errlen);
Json *json_parse_limits(const char *text, size_t len, const JsonLimits *limits, char *err, size_t errlen);
void json_free(Json *v);

const char *json_type_name(JsonType t);   // "a string", "an object"...

// Lookups: NULL when v is not an object/array, or the key/index is absent.
const Json *json_get(const Json *obj, const char *key);
const Json *json_index(const Json *arr, int i);

// Typed views of a value. `what` names it in the message, e.g.
// "\"dtype\" at byte 40: expected a string, found a number". Return 0, or
// -1 with err set. json_as_int64 accepts only numbers written as integers.
int json_as_string(const Json *v, const char *what, const char **out, char *err, size_t errlen);
int json_as_number(const Json *v, const char *what, double *out, char *err, size_t errlen);
int json_as_int64(const Json *v, const char *what, int64_t *out, char *err, size_t errlen);
int json_as_bool(const Json *v, const char *what, int *out, char *err, size_t errlen);

// The same for obj[key]; a missing key (or obj not an object) is an error
// naming the key and where obj starts.
int json_get_string(const Json *obj, const char *key, const char **out, char *err, size_t errlen);
int json_get_number(const Json *obj, const char *key, double *out, char *err, size_t errlen);
int json_get_int64(const Json *obj, const char *key, int64_t *out, char *err, size_t errlen);
int json_get_bool(const Json *obj, const char *key, int *out, char *err, size_t errlen);

// Writers. Strings: quoted, with '"', '\\' and control characters escaped
// (other bytes pass through, so UTF-8 stays UTF-8). Numbers: "%.9g" for a
// float and "%.17g" for a double, the shortest fixed precisions that read
// back bit-exactly; JSON has no NaN or infinity, so those are written null.
void json_write_string(FILE *f, const char *s);
void json_write_f32(FILE *f, float x);
void json_write_f64(FILE *f, double x);
void json_write_int(FILE *f, int64_t x);
