// bundle_fuzz.h: what the checkpoint and bundle harnesses share: reading a
// directory the way `distil eval` and `distil export` do (bundle_open), then
// building the student it describes and loading its weights.
#pragma once
#include <sys/stat.h>
#include "fuzz/fuzz.h"
#include "train/ckpt/bundle.h"     // defines: bundle_open, bundle_student, bundle_close

// dir: fuzz_dir()/name, made once.
static inline const char *bundle_dir(const char *name) {
    static char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", fuzz_dir(), name);
    mkdir(dir, 0777);
    return dir;
}

// Write part i as dir/name (or remove dir/name when the input has no such part).
static inline void put_part(const char *dir, const char *name, const uint8_t *bytes, size_t n, int present) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (present) fuzz_write(path, bytes, n);
    else unlink(path);
}

static inline void open_and_build(const char *dir) {
    Bundle b;
    if (bundle_open(&b, dir) == 0) {
        Graph *g = NULL;
        Student st;
        bundle_student(&b, 1, &g, &st);
        if (g) graph_free(g);
    }
    bundle_close(&b);
}
