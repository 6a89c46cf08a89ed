// fuzz.h: what the libFuzzer harnesses share (make fuzz; docs/robustness.md).
//
// Each harness is one file, fuzz/fuzz_<what>.c, linked against libdistil built
// with clang, ASan, UBSan and libFuzzer's coverage. distil's readers take
// paths, so an input is written to a file (or several, for a checkpoint or a
// bundle) in a private directory under $TMPDIR (/dev/shm when it exists: a
// write there is a memcpy) and the real reader opens it.
//
// Several files in one input ("packed"): sections of a u32 little-endian
// length and that many bytes, one after another. A harness started with
// DISTIL_FUZZ_PACK="file1 file2 ..." in its environment writes those files
// packed to stdout and exits: that is how scripts/fuzz.sh turns what distil
// wrote (a checkpoint, an export) into a seed.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);
size_t LLVMFuzzerMutate(uint8_t *data, size_t size, size_t max_size);

static char fuzz_dir_path[512];

static inline int fuzz_remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw) {
    (void)st; (void)type; (void)ftw;
    return remove(path);
}

static inline void fuzz_remove_dir(void) {
    if (fuzz_dir_path[0]) nftw(fuzz_dir_path, fuzz_remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

// This process's directory for the inputs' files, made on the first call and
// removed at exit.
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/distil-fuzz-XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) { perror(fuzz_dir_path); abort(); }
    atexit(fuzz_remove_dir);
    return fuzz_dir_path;
}

// fuzz_dir()/name, in a buffer of the caller's.
static inline const char *fuzz_path(char *buf, size_t len, const char *name) {
    snprintf(buf, len, "%s/%s", fuzz_dir(), name);
    return buf;
}

static inline void fuzz_write(const char *path, const uint8_t *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f)) { perror(path); abort(); }
}

static inline uint8_t *fuzz_read(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); abort(); }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || (size > 0 && fread(buf, 1, (size_t)size, f) != (size_t)size)) { perror(path); abort(); }
    fclose(f);
    *n = (size_t)size;
    return buf;
}

// Split a packed input into at most max sections; missing ones are empty.
// Returns how many were present.
static inline int fuzz_unpack(const uint8_t *data, size_t size, const uint8_t **part, size_t *len, int max) {
    int n = 0;
    size_t at = 0;
    for (int i = 0; i < max; i++) { part[i] = data; len[i] = 0; }
    while (n < max && at + 4 <= size) {
        size_t want = (size_t)data[at] | (size_t)data[at + 1] << 8 | (size_t)data[at + 2] << 16 | (size_t)data[at + 3] << 24;
        at += 4;
        if (want > size - at) want = size - at;
        part[n] = data + at;
        len[n++] = want;
        at += want;
    }
    return n;
}

// DISTIL_FUZZ_PACK="a b c": those files packed to stdout, then exit 0.
static inline void fuzz_pack_if_asked(void) {
    const char *list = getenv("DISTIL_FUZZ_PACK");
    if (!list) return;
    char *copy = strdup(list), *save = NULL;
    for (char *name = strtok_r(copy, " ", &save); name; name = strtok_r(NULL, " ", &save)) {
        size_t n;
        uint8_t *bytes = fuzz_read(name, &n);
        uint8_t le[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
        fwrite(le, 1, 4, stdout);
        fwrite(bytes, 1, n, stdout);
        free(bytes);
    }
    free(copy);
    fflush(stdout);
    fuzz_remove_dir();
    _exit(0);   // no leak check: the harness's own state is still held
}
