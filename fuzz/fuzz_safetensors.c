// fuzz_safetensors.c: a safetensors file, opened and every tensor read as
// float32 (train/formats/safetensors.c): the header's JSON, the dtypes,
// shapes and offsets, the conversions.
#include "fuzz/fuzz.h"
#include "train/formats/safetensors.h"   // defines: st_open, st_read_f32_at, st_meta

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], err[1024];
    fuzz_write(fuzz_path(path, sizeof path, "model.safetensors"), data, size);
    StFile *f = st_open(path, err, sizeof err);
    if (!f) return 0;
    st_meta(f, "format");
    for (int i = 0; i < f->n_tensors; i++) {
        const StInfo *t = &f->tensors[i];
        if (t->dtype != ST_F32 && t->dtype != ST_F16 && t->dtype != ST_BF16 && t->dtype != ST_F64) continue;
        float *x = malloc((t->numel ? t->numel : 1) * sizeof(float));   // numel is bounded by the file's size
        if (x) st_read_f32_at(f, i, x, t->numel, err, sizeof err);
        free(x);
        if (st_find(f, t->name) != i) abort();   // names are unique and sorted: each finds itself
    }
    st_close(f);
    return 0;
}
