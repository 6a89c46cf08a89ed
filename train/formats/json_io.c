// json_io.c: strict jansson reads, typed lookups and exact writes (json_io.h).
#include "train/formats/json_io.h"
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

// Duplicate keys refused; \u0000 refused because JSON_ALLOW_NUL is not set.
#define JSONIO_LOAD_FLAGS JSON_REJECT_DUPLICATES

json_t *jsonio_parse(const char *text, size_t len, char *err, size_t errlen) {
    json_error_t e;
    json_t *v = json_loadb(text, len, JSONIO_LOAD_FLAGS, &e);
    if (v) return v;
    // jansson's own wording names a flag the reader cannot act on.
    const char *what = json_error_code(&e) == json_error_null_character ? "\\u0000 (NUL) in a string is not allowed" : e.text;
    snprintf(err, errlen, "line %d, column %d: %s", e.line, e.column, what);
    return NULL;
}

json_t *jsonio_load(const char *path, size_t max_bytes, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { snprintf(err, errlen, "cannot open: %s", strerror(errno)); return NULL; }
    struct stat st;
    char *buf = NULL;
    json_t *v = NULL;
    if (fstat(fileno(f), &st) || !S_ISREG(st.st_mode)) snprintf(err, errlen, "not a regular file");
    else if ((uintmax_t)st.st_size > max_bytes) snprintf(err, errlen, "larger than %zu bytes", max_bytes);
    else if (!(buf = malloc((size_t)st.st_size + 1))) snprintf(err, errlen, "out of memory");
    else if (fread(buf, 1, (size_t)st.st_size, f) != (size_t)st.st_size) snprintf(err, errlen, "read error");
    else v = jsonio_parse(buf, (size_t)st.st_size, err, errlen);
    fclose(f);
    free(buf);
    return v;
}

const char *jsonio_type(const json_t *v) {
    if (!v) return "nothing";
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE: return "true";
    case JSON_FALSE: return "false";
    case JSON_NULL: return "null";
    }
    return "?";
}

static int expected(const json_t *v, const char *what, const char *type, char *err, size_t errlen) {
    if (!v) snprintf(err, errlen, "%s is missing", what);
    else snprintf(err, errlen, "%s: expected %s, found %s", what, type, jsonio_type(v));
    return -1;
}

int jsonio_int64(const json_t *v, const char *what, int64_t *out, char *err, size_t errlen) {
    if (!json_is_integer(v)) return expected(v, what, "an integer", err, errlen);
    *out = (int64_t)json_integer_value(v);
    return 0;
}

int jsonio_number(const json_t *v, const char *what, double *out, char *err, size_t errlen) {
    if (!json_is_number(v)) return expected(v, what, "a number", err, errlen);
    *out = json_number_value(v);
    return 0;
}

int jsonio_string(const json_t *v, const char *what, const char **out, char *err, size_t errlen) {
    if (!json_is_string(v)) return expected(v, what, "a string", err, errlen);
    *out = json_string_value(v);
    return 0;
}

// obj[key] into *v (NULL when absent), named "\"key\"" in what; -1 with err
// set when obj is not an object.
static int member(const json_t *obj, const char *key, const json_t **v, char *what, size_t what_len, char *err, size_t errlen) {
    snprintf(what, what_len, "\"%s\"", key);
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "looking up \"%s\": expected an object, found %s", key, jsonio_type(obj));
        return -1;
    }
    *v = json_object_get(obj, key);
    return 0;
}

int jsonio_get_int64(const json_t *obj, const char *key, int64_t *out, char *err, size_t errlen) {
    char what[96];
    const json_t *v;
    return member(obj, key, &v, what, sizeof what, err, errlen) ? -1 : jsonio_int64(v, what, out, err, errlen);
}

int jsonio_get_number(const json_t *obj, const char *key, double *out, char *err, size_t errlen) {
    char what[96];
    const json_t *v;
    return member(obj, key, &v, what, sizeof what, err, errlen) ? -1 : jsonio_number(v, what, out, err, errlen);
}

int jsonio_get_string(const json_t *obj, const char *key, const char **out, char *err, size_t errlen) {
    char what[96];
    const json_t *v;
    return member(obj, key, &v, what, sizeof what, err, errlen) ? -1 : jsonio_string(v, what, out, err, errlen);
}

json_t *jsonio_real(double x) { return isfinite(x) ? json_real(x) : json_null(); }

json_t *jsonio_f32_array(const float *v, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, jsonio_real(v[i]))) { json_decref(a); return NULL; }
    return a;
}

int jsonio_dump(const json_t *doc, FILE *f, size_t flags) {
    errno = 0;
    if (!doc || json_dumpf(doc, f, flags) || fputc('\n', f) == EOF) {
        if (!errno) errno = ENOMEM;
        return -1;
    }
    return 0;
}

int jsonio_write_file(const char *path, const json_t *doc, size_t flags) {
    if (!doc) { errno = ENOMEM; return -1; }
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    int rc = jsonio_dump(doc, f, flags), saved = errno;
    if (fclose(f) && !rc) return -1;   // fclose's errno: the write-back failed
    if (rc) errno = saved;
    return rc;
}
