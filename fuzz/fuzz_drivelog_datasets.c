// fuzz_drivelog_datasets.c: a well-formed shard whose datasets' stored bytes
// (every chunk, every contiguous dataset's data) are replaced by the input,
// read as `distil logs validate` reads it: the chunk decoders (zstd, deflate,
// shuffle, float16) and the per-sample rules, with the metadata left whole.
//
// The input is laid over the seed shard's dataset bytes in file order: its
// first bytes over the first chunk, and so on; bytes past its end keep the
// seed's. Datasets of variable-length strings (/vocab, /teacher/trace/text)
// store pointers into the global heap, not values: those are metadata, which
// fuzz_drivelog_file damages. The metadata being whole, the shard is opened
// in this process (dl_shard_open_here + dl_shard_check_deep, what the wall's
// child runs), so that every finding is reading code's.
//
// DISTIL_FUZZ_SHARD names the seed shard (scripts/fuzz.sh sets it).
// DISTIL_FUZZ_EXTRACT=1 writes the seed's dataset bytes, concatenated, to
// stdout and exits: the seed input.
#include "fuzz/drivelog_fuzz.h"

static uint8_t *pristine, *work;
static size_t pristine_n;
static Extents data_bytes;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *seed = getenv("DISTIL_FUZZ_SHARD");
    if (!seed) { fprintf(stderr, "fuzz_drivelog_datasets: set DISTIL_FUZZ_SHARD to the seed shard\n"); exit(1); }
    pristine = fuzz_read(seed, &pristine_n);
    work = malloc(pristine_n);
    data_bytes = shard_extents(seed);
    if (getenv("DISTIL_FUZZ_EXTRACT")) {
        for (int i = 0; i < data_bytes.n; i++) fwrite(pristine + data_bytes.v[i].offset, 1, data_bytes.v[i].bytes, stdout);
        fflush(stdout);
        _exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    memcpy(work, pristine, pristine_n);
    size_t used = 0;
    for (int i = 0; i < data_bytes.n && used < size; i++) {
        const Extent *e = &data_bytes.v[i];
        size_t n = size - used < e->bytes ? size - used : (size_t)e->bytes;
        if (e->offset + n > pristine_n) break;
        memcpy(work + e->offset, data + used, n);
        used += n;
    }
    char path[600], err[DL_ERR_LEN];
    fuzz_write(fuzz_path(path, sizeof path, "shard.h5"), work, pristine_n);
    DlShard sh;
    int rc = dl_shard_open_here(&sh, path, err, sizeof err);
    if (rc == 0) rc = dl_shard_check_deep(&sh, err, sizeof err);
    if (rc == 0) read_whole_shard(&sh);
    dl_shard_close(&sh);
    return 0;
}
