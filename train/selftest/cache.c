// cache.c: the self-test's results, kept per (binary, GPU, driver) so that
// `distil train` runs the quick self-test on a GPU once, not every run (see
// selftest.h).
//
// The file is JSON (jansson): {"format": 1, "results": [{...}, ...]}, one
// object per key with its latest result, at most CACHE_MAX_RESULTS of them (the oldest
// dropped). It is rewritten whole through a temporary file and a rename, so
// a reader sees the old file or the new one, never half of one. Two
// processes storing at once (the ranks of one node) may each rename their
// own version: the loser's result is then not cached and its GPU is checked
// again on the next run, which costs seconds and is never wrong.
#include <elf.h>
#include <errno.h>
#include <link.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "train/formats/fsutil.h"    // defines: fs_mkdir_p, fs_fsync_parent
#include "train/formats/json_io.h"   // defines: json_t, json_pack, jsonio_load, jsonio_dump
#include "train/selftest/selftest.h"

#define CACHE_FORMAT 1
#define CACHE_MAX_RESULTS 64
#define CACHE_MAX_BYTES (1u << 20)

char *selftest_cache_path(char *buf, size_t n) {
    const char *dir = getenv("DISTIL_CACHE_DIR"), *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (dir && *dir) snprintf(buf, n, "%s/selftest.json", dir);
    else if (xdg && *xdg) snprintf(buf, n, "%s/distil/selftest.json", xdg);
    else if (home && *home) snprintf(buf, n, "%s/.cache/distil/selftest.json", home);
    else buf[0] = 0;
    return buf;
}

// ---- this binary ---------------------------------------------------------------------

static char binary_id[96];

// The main program is the first object dl_iterate_phdr reports; its PT_NOTE
// segments hold the linker's NT_GNU_BUILD_ID.
static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    (void)data;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const uint8_t *p = (const uint8_t *)(info->dlpi_addr + ph->p_vaddr), *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)(const void *)p;
            const uint8_t *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                size_t at = 0;
                for (unsigned j = 0; j < nh->n_descsz && at + 3 < sizeof binary_id; j++)
                    at += (size_t)snprintf(binary_id + at, sizeof binary_id - at, "%02x", desc[j]);
                return 1;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1;   // only the first object (the program) counts
}

// Without a build ID: FNV-1a over the executable's bytes.
static void hash_executable(void) {
    FILE *f = fopen("/proc/self/exe", "rb");
    uint64_t h = 1469598103934665603ull;
    unsigned char buf[1 << 16];
    size_t n;
    while (f && (n = fread(buf, 1, sizeof buf, f)) > 0)
        for (size_t i = 0; i < n; i++) h = (h ^ buf[i]) * 1099511628211ull;
    if (f) fclose(f);
    snprintf(binary_id, sizeof binary_id, "fnv1a64:%016llx", (unsigned long long)h);
}

const char *selftest_binary_id(void) {
    if (!binary_id[0]) dl_iterate_phdr(find_build_id, NULL);
    if (!binary_id[0]) hash_executable();
    return binary_id;
}

// ---- reading -------------------------------------------------------------------------

// The cached results (the "results" array of a well-formed file of this
// format), or NULL: no file and a damaged one both mean "none".
static json_t *load_results(const char *path) {
    char err[256];
    json_t *doc = jsonio_load(path, CACHE_MAX_BYTES, err, sizeof err);
    int64_t format = 0;
    if (!doc || !json_is_array(json_object_get(doc, "results")) || jsonio_get_int64(doc, "format", &format, err, sizeof err) ||
        format != CACHE_FORMAT) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}

static const char *str_of(const json_t *o, const char *key) {
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

static int same_key(const json_t *e, const char *binary, const SelftestHardware *hw) {
    const json_t *driver = json_object_get(e, "cuda_driver");
    return !strcmp(str_of(e, "binary"), binary) && !strcmp(str_of(e, "device_uuid"), hw->uuid) &&
           !strcmp(str_of(e, "driver"), hw->driver_release) && json_is_integer(driver) &&
           json_integer_value(driver) == hw->driver;
}

int selftest_cache_lookup(const SelftestHardware *hw, char *why, size_t whylen, char *when, size_t whenlen) {
    char path[1024];
    if (!selftest_cache_path(path, sizeof path)[0]) return -1;
    json_t *doc = load_results(path);
    if (!doc) return -1;
    int found = -1;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(doc, "results"), i, e) {
        const json_t *passed = json_object_get(e, "passed");
        if (!json_is_object(e) || !json_is_boolean(passed) || !same_key(e, selftest_binary_id(), hw)) continue;
        found = json_is_true(passed);
        snprintf(why, whylen, "%s", str_of(e, "failure"));
        snprintf(when, whenlen, "%s", str_of(e, "date"));
    }
    json_decref(doc);
    return found;
}

// ---- writing -------------------------------------------------------------------------

int selftest_cache_store(const SelftestResult *r, char *err, size_t errlen) {
    char path[1024], dir[1024], tmp[1100];
    if (!selftest_cache_path(path, sizeof path)[0]) {
        snprintf(err, errlen, "no cache directory: set DISTIL_CACHE_DIR, XDG_CACHE_HOME or HOME");
        return -1;
    }
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0;
    if (slash && dir[0] && fs_mkdir_p(dir)) { snprintf(err, errlen, "%s: %s", dir, strerror(errno)); return -1; }
    const char *binary = selftest_binary_id();
    // The other keys' results, the newest CACHE_MAX_RESULTS - 1 of them, then this one.
    json_t *old = load_results(path), *results = json_array(), *e;
    size_t i, others = 0;
    json_array_foreach(old ? json_object_get(old, "results") : NULL, i, e) others += json_is_object(e) && !same_key(e, binary, &r->hw);
    size_t skip = others > CACHE_MAX_RESULTS - 1 ? others - (CACHE_MAX_RESULTS - 1) : 0;
    json_array_foreach(old ? json_object_get(old, "results") : NULL, i, e) {
        if (!json_is_object(e) || same_key(e, binary, &r->hw)) continue;
        if (skip) { skip--; continue; }
        json_array_append(results, e);
    }
    json_decref(old);
    char date[32], failure[700] = "";
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (!r->passed) selftest_failure(r, failure, sizeof failure);
    json_array_append_new(results, json_pack("{s:s, s:s, s:s, s:s, s:I, s:b, s:b, s:s, s:s}", "binary", binary,
                                             "device_uuid", r->hw.uuid, "device", r->hw.name, "driver", r->hw.driver_release,
                                             "cuda_driver", (json_int_t)r->hw.driver, "passed", r->passed, "quick", r->quick,
                                             "failure", failure, "date", date));
    json_t *doc = json_pack("{s:i, s:o}", "format", CACHE_FORMAT, "results", results);
    // A whole new file renamed over the old one: readers see one or the other.
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    int bad = !f || jsonio_dump(doc, f, JSON_INDENT(1)) || fflush(f) || fsync(fileno(f));
    int saved = errno ? errno : EIO;
    if (f && fclose(f) && !bad) { bad = 1; saved = errno; }
    json_decref(doc);
    if (bad || rename(tmp, path)) {
        snprintf(err, errlen, "%s: %s", bad ? tmp : path, strerror(bad ? saved : errno));
        unlink(tmp);
        return -1;
    }
    fs_fsync_parent(path);
    return 0;
}
