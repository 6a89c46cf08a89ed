// cache.c: the self-test's results, kept per (binary, GPU, driver) so that
// `distil train` runs the quick self-test on a GPU once, not every run (see
// selftest.h).
//
// The file is JSON: {"format": 1, "results": [{...}, ...]}, one object per
// key with its latest result, at most CACHE_MAX_RESULTS of them (the oldest
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
#include "train/formats/json.h"      // defines: json_parse, json_get_*, json_write_*
#include "train/selftest/selftest.h"

#define CACHE_FORMAT 1
#define CACHE_MAX_RESULTS 64
#define CACHE_MAX_BYTES (1 << 20)

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

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(CACHE_MAX_BYTES + 1);
    *len = buf ? fread(buf, 1, CACHE_MAX_BYTES + 1, f) : 0;
    fclose(f);
    if (!buf || *len > CACHE_MAX_BYTES) { free(buf); return NULL; }
    buf[*len] = 0;
    return buf;
}

// The cached results, or NULL (no file, or a damaged one: both mean "none").
static Json *load_results(const char *path) {
    size_t len;
    char *text = read_all(path, &len);
    if (!text) return NULL;
    char err[256];
    Json *doc = json_parse(text, len, err, sizeof err);
    free(text);
    const Json *results = doc ? json_get(doc, "results") : NULL;
    int64_t format = 0;
    if (!results || results->type != JSON_ARRAY || json_get_int64(doc, "format", &format, err, sizeof err) ||
        format != CACHE_FORMAT) {
        json_free(doc);
        return NULL;
    }
    return doc;
}

static const char *str_of(const Json *o, const char *key) {
    const char *s = NULL;
    char err[128];
    return json_get_string(o, key, &s, err, sizeof err) ? "" : s;
}

static int same_key(const Json *e, const char *binary, const SelftestHardware *hw) {
    int64_t driver = -1;
    char err[128];
    return !strcmp(str_of(e, "binary"), binary) && !strcmp(str_of(e, "device_uuid"), hw->uuid) &&
           !strcmp(str_of(e, "driver"), hw->driver_release) &&
           !json_get_int64(e, "cuda_driver", &driver, err, sizeof err) && driver == hw->driver;
}

int selftest_cache_lookup(const SelftestHardware *hw, char *why, size_t whylen, char *when, size_t whenlen) {
    char path[1024];
    if (!selftest_cache_path(path, sizeof path)[0]) return -1;
    Json *doc = load_results(path);
    if (!doc) return -1;
    const Json *results = json_get(doc, "results");
    int found = -1;
    for (int i = 0; i < results->n; i++) {
        const Json *e = &results->items[i];
        if (e->type != JSON_OBJECT || !same_key(e, selftest_binary_id(), hw)) continue;
        int passed = 0;
        char err[128];
        if (json_get_bool(e, "passed", &passed, err, sizeof err)) continue;
        found = passed;
        snprintf(why, whylen, "%s", str_of(e, "failure"));
        snprintf(when, whenlen, "%s", str_of(e, "date"));
    }
    json_free(doc);
    return found;
}

// ---- writing -------------------------------------------------------------------------

static void write_entry(FILE *f, const char *binary, const char *uuid, const char *device, const char *driver,
                        int64_t cuda_driver, int passed, int quick, const char *failure, const char *date) {
    fputs("    {\"binary\": ", f);
    json_write_string(f, binary);
    fputs(", \"device_uuid\": ", f);
    json_write_string(f, uuid);
    fputs(", \"device\": ", f);
    json_write_string(f, device);
    fputs(", \"driver\": ", f);
    json_write_string(f, driver);
    fputs(", \"cuda_driver\": ", f);
    json_write_int(f, cuda_driver);
    fprintf(f, ", \"passed\": %s, \"quick\": %s, \"failure\": ", passed ? "true" : "false", quick ? "true" : "false");
    json_write_string(f, failure);
    fputs(", \"date\": ", f);
    json_write_string(f, date);
    fputc('}', f);
}

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
    Json *doc = load_results(path);
    const Json *old = doc ? json_get(doc, "results") : NULL;
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f) { snprintf(err, errlen, "%s: %s", tmp, strerror(errno)); json_free(doc); return -1; }
    const char *binary = selftest_binary_id();
    // The kept results: the newest CACHE_MAX_RESULTS - 1 of other keys.
    int keep = 0, skip = 0;
    for (int i = 0; old && i < old->n; i++) keep += old->items[i].type == JSON_OBJECT && !same_key(&old->items[i], binary, &r->hw);
    if (keep > CACHE_MAX_RESULTS - 1) skip = keep - (CACHE_MAX_RESULTS - 1);
    fprintf(f, "{\"format\": %d, \"results\": [\n", CACHE_FORMAT);
    for (int i = 0; old && i < old->n; i++) {
        const Json *e = &old->items[i];
        if (e->type != JSON_OBJECT || same_key(e, binary, &r->hw) || skip-- > 0) continue;
        int passed = 0, quick = 0;
        int64_t cuda_driver = 0;
        char jerr[128];
        json_get_bool(e, "passed", &passed, jerr, sizeof jerr);
        json_get_bool(e, "quick", &quick, jerr, sizeof jerr);
        json_get_int64(e, "cuda_driver", &cuda_driver, jerr, sizeof jerr);
        write_entry(f, str_of(e, "binary"), str_of(e, "device_uuid"), str_of(e, "device"), str_of(e, "driver"),
                    cuda_driver, passed, quick, str_of(e, "failure"), str_of(e, "date"));
        fputs(",\n", f);
    }
    char date[32], failure[700] = "";
    time_t now = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
    if (!r->passed) selftest_failure(r, failure, sizeof failure);
    write_entry(f, binary, r->hw.uuid, r->hw.name, r->hw.driver_release, r->hw.driver, r->passed, r->quick, failure, date);
    fputs("\n]}\n", f);
    json_free(doc);
    int bad = ferror(f) != 0;
    bad |= fflush(f) != 0 || fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno ? errno : EIO));
        unlink(tmp);
        return -1;
    }
    fs_fsync_parent(path);
    return 0;
}
