// test_fuzz_replay.c: every file under tests/fuzz/HARNESS/ run once through
// its fuzzing harness (fuzz/fuzz_HARNESS.c), built here with this build's
// compiler and flags (under SAN=1: ASan and UBSan). These are the inputs the
// fuzzing campaigns found crashing or hanging distil, kept after the fix
// (docs/robustness.md). Damaged shards go through the production path, the
// wall included. A file passes when its harness returns: a crash, a hang or
// a sanitizer report kills the program before its TESTS line. The wall's
// CPU limit is 3 s here (DISTIL_SHARD_CHECK_CPU_S), so that the shards that
// make libhdf5 loop cost little; tests/test_damaged_shards.py runs them
// with the default.
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "tests/test.h"

typedef struct Harness {
    const char *name;
    int (*init)(int *argc, char ***argv);
    int (*one)(const uint8_t *data, size_t size);
} Harness;

#define HARNESS(name) \
    int fuzz_##name##_init(int *argc, char ***argv); \
    int fuzz_##name##_one(const uint8_t *data, size_t size);
HARNESS(recipe)
HARNESS(drivelog_file)
HARNESS(drivelog_datasets)
HARNESS(checkpoint)
HARNESS(bundle)
HARNESS(safetensors)
#undef HARNESS

// libFuzzer's mutator, which fuzz_drivelog_file's custom one falls back to; never called here.
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size) { (void)data; (void)max_size; return size; }

static const Harness harnesses[] = {
    { "recipe", fuzz_recipe_init, fuzz_recipe_one },
    { "drivelog_file", fuzz_drivelog_file_init, fuzz_drivelog_file_one },
    { "drivelog_datasets", fuzz_drivelog_datasets_init, fuzz_drivelog_datasets_one },
    { "checkpoint", fuzz_checkpoint_init, fuzz_checkpoint_one },
    { "bundle", fuzz_bundle_init, fuzz_bundle_one },
    { "safetensors", fuzz_safetensors_init, fuzz_safetensors_one },
};

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    for (size_t got; buf && (got = fread(buf + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    *n = len;
    return buf;
}

static char cwd[4096];

// Every file of tests/fuzz/<harness>/, sorted by name, through harness h.
static void replay(size_t h) {
    char dir[4300];
    snprintf(dir, sizeof dir, "%s/tests/fuzz/%s", cwd, harnesses[h].name);
    DIR *d = opendir(dir);
    if (!d) return;
    char *names[4096];
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) && n < 4096;)
        if (e->d_name[0] != '.') names[n++] = strdup(e->d_name);
    closedir(d);
    qsort(names, (size_t)n, sizeof names[0], by_name);
    if (n) harnesses[h].init(NULL, NULL);
    for (int i = 0; i < n; i++) {
        char path[8500];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t size;
        uint8_t *data = read_all(path, &size);
        CHECK(data != NULL, "%s: cannot read it", path);
        if (data) harnesses[h].one(data, size);
        printf("     %s/%s\n", harnesses[h].name, names[i]);
        fflush(stdout);
        free(data);
        free(names[i]);
    }
}

static void test_recipe(void) { replay(0); }
static void test_drivelog_file(void) { replay(1); }
static void test_drivelog_datasets(void) { replay(2); }
static void test_checkpoint(void) { replay(3); }
static void test_bundle(void) { replay(4); }
static void test_safetensors(void) { replay(5); }

int main(void) {
    if (!getcwd(cwd, sizeof cwd)) return 1;
    // The datasets harness lays its inputs over the shard they were found on.
    char seed[4200];
    snprintf(seed, sizeof seed, "%s/tests/fuzz/seed_shard.h5", cwd);
    setenv("DISTIL_FUZZ_SHARD", seed, 0);
    setenv("DISTIL_SHARD_CHECK_CPU_S", "3", 0);
    RUN(test_recipe);
    RUN(test_drivelog_file);
    RUN(test_drivelog_datasets);
    RUN(test_checkpoint);
    RUN(test_bundle);
    RUN(test_safetensors);
    return test_summary();
}
