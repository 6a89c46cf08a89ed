// fuzz_bundle.c: an export bundle (docs/export.md): config.json,
// model.safetensors and vocab.json, packed into one input in that order
// (fuzz/fuzz.h), read with bundle_open and built into a student with its
// weights loaded, as `distil eval` does.
#include "fuzz/bundle_fuzz.h"

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    fuzz_pack_if_asked();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const char *names[] = { "config.json", "model.safetensors", "vocab.json" };
    const uint8_t *part[3];
    size_t len[3];
    int present = fuzz_unpack(data, size, part, len, 3);
    const char *dir = bundle_dir("bundle");
    for (int i = 0; i < 3; i++) put_part(dir, names[i], part[i], len[i], i < present);
    open_and_build(dir);
    return 0;
}
