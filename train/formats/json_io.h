// json_io.h: JSON through jansson, read strictly and written so that numbers
// read back exactly; lookups whose errors name the key and what was expected.
//
// Reading (jsonio_parse, jsonio_load): RFC 8259 as jansson checks it (no
// comments, no trailing commas, no NaN, valid UTF-8, integers within int64,
// nothing after the value, an object or array at the top), plus two
// refusals that distil's formats rely on: a duplicate key in an object (a
// header that names a tensor twice is corrupt, not "last one wins":
// JSON_REJECT_DUPLICATES), and \u0000 in a string (so that every string is a
// plain C string: jansson's default without JSON_ALLOW_NUL). A parse error
// is "line L, column C: what", the column at the end of the offending
// token; the caller puts the file in front.
//
// Writing: jansson's dumps, key order as inserted. A real is written with
// JSONIO_F32's 9 significant digits when every real of the document is an
// fp32 value, JSONIO_F64's 17 otherwise: the fewest that read back to the
// same float or double. Integers stay integers (json_integer); JSON has no
// NaN or infinity, so jsonio_real writes those as null.
#pragma once
#include <jansson.h>   // defines: json_t, json_pack, json_object_get, json_dumps...
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSONIO_F32 JSON_REAL_PRECISION(9)
#define JSONIO_F64 JSON_REAL_PRECISION(17)

// Parse text[0..len) (need not be NUL-terminated). NULL with err set.
json_t *jsonio_parse(const char *text, size_t len, char *err, size_t errlen);
// Read and parse a whole regular file of at most max_bytes. NULL with err =
// "cannot open: ...", "larger than N bytes", ... or a parse error; the
// caller names the file.
json_t *jsonio_load(const char *path, size_t max_bytes, char *err, size_t errlen);

// "an object", "an array", "a string", "an integer", "a real number", "true",
// "false", "null"; "nothing" for NULL.
const char *jsonio_type(const json_t *v);

// Typed views of v, which `what` names in the message ("\"dim\"",
// "data_offsets[1]"): "\"dim\": expected an integer, found a string". v may
// be NULL (an absent member or index): "\"dim\" is missing". Return 0, or -1
// with err set. jsonio_int64 takes integers only (not 4.0), jsonio_number
// integers and reals.
int jsonio_int64(const json_t *v, const char *what, int64_t *out, char *err, size_t errlen);
int jsonio_number(const json_t *v, const char *what, double *out, char *err, size_t errlen);
int jsonio_string(const json_t *v, const char *what, const char **out, char *err, size_t errlen);

// The same for obj[key], named "\"key\"".
int jsonio_get_int64(const json_t *obj, const char *key, int64_t *out, char *err, size_t errlen);
int jsonio_get_number(const json_t *obj, const char *key, double *out, char *err, size_t errlen);
int jsonio_get_string(const json_t *obj, const char *key, const char **out, char *err, size_t errlen);

// A new real, or null when x is NaN or infinite.
json_t *jsonio_real(double x);
// (n) fp32 values as a new array of reals.
json_t *jsonio_f32_array(const float *v, int n);

// doc and a newline into f (one line unless flags indent), or into a new
// file at path. 0, or -1 with errno set (a jansson allocation failure
// counts as ENOMEM).
int jsonio_dump(const json_t *doc, FILE *f, size_t flags);
int jsonio_write_file(const char *path, const json_t *doc, size_t flags);
