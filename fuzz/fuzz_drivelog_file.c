// fuzz_drivelog_file.c: a whole drive-log shard, any byte of it, opened and
// read as `distil logs validate` reads it.
//
// Two modes:
//   default                 the production path: dl_shard_check, whose HDF5
//                           metadata reads run behind the wall (a child
//                           process, data/wall.c) and go on past each
//                           structural problem (so they reach at least what
//                           dl_shard_open's do), then every sample in this
//                           process. Any crash, hang or sanitizer report here
//                           is a bug in distil.
//   DISTIL_FUZZ_IN_PROCESS=1 the wall's work done in this process: libhdf5's
//                           own crashes on damaged files show up as findings.
//                           That is how tests/damaged_shards/ was made; a
//                           finding is only a bug of distil's when distil's
//                           code is at the top of its stack.
// DISTIL_FUZZ_ONE_BYTE=1 makes every input the seed shard with exactly one
// byte changed (7 times in 8 in the file's metadata, outside the dataset
// bytes that fuzz_drivelog_datasets covers), instead of libFuzzer's own
// mutations, which pile up. DISTIL_FUZZ_SHARD names the seed shard
// (scripts/fuzz.sh sets it).
#include "fuzz/drivelog_fuzz.h"

static int in_process, one_byte;
static uint8_t *pristine;
static size_t pristine_n;
static Extents data_bytes;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    in_process = getenv("DISTIL_FUZZ_IN_PROCESS") && atoi(getenv("DISTIL_FUZZ_IN_PROCESS"));
    one_byte = getenv("DISTIL_FUZZ_ONE_BYTE") && atoi(getenv("DISTIL_FUZZ_ONE_BYTE"));
    const char *seed = getenv("DISTIL_FUZZ_SHARD");
    if (one_byte) {
        if (!seed) { fprintf(stderr, "fuzz_drivelog_file: DISTIL_FUZZ_ONE_BYTE needs DISTIL_FUZZ_SHARD\n"); exit(1); }
        pristine = fuzz_read(seed, &pristine_n);
        data_bytes = shard_extents(seed);
    }
    return 0;
}

static int in_data(size_t pos) {
    for (int i = 0; i < data_bytes.n; i++)
        if (pos >= data_bytes.v[i].offset && pos < data_bytes.v[i].offset + data_bytes.v[i].bytes) return 1;
    return 0;
}

// The seed with one byte changed: half the time near where the input's own
// change is (a neighbourhood that reached new code is worth more tries).
size_t LLVMFuzzerCustomMutator(uint8_t *data, size_t size, size_t max_size, unsigned int seed) {
    if (!one_byte) return LLVMFuzzerMutate(data, size, max_size);
    if (max_size < pristine_n) return LLVMFuzzerMutate(data, size, max_size);
    size_t changed = pristine_n;
    for (size_t i = 0; i < size && i < pristine_n; i++)
        if (data[i] != pristine[i]) { changed = i; break; }
    memcpy(data, pristine, pristine_n);
    uint64_t r = seed * 0x9E3779B97F4A7C15ull + 1;
    size_t pos;
    for (int tries = 0;; tries++) {
        r ^= r >> 29; r *= 0xBF58476D1CE4E5B9ull; r ^= r >> 32;
        if (changed < pristine_n && (r & 1)) pos = (changed + (r >> 8) % 129 + pristine_n - 64) % pristine_n;
        else pos = (size_t)((r >> 8) % pristine_n);
        if (tries > 16 || !in_data(pos) || ((r >> 4) & 7) == 0) break;
    }
    uint8_t value = (uint8_t)(r >> 40);
    data[pos] = value == pristine[pos] ? (uint8_t)~value : value;
    return pristine_n;
}

// The problems validate would print: dropped.
static void ignore(const char *line, void *ctx) { (void)line; (void)ctx; }

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[600], err[DL_ERR_LEN];
    fuzz_write(fuzz_path(path, sizeof path, "shard.h5"), data, size);
    DlShard sh;
    int rc = in_process ? dl_shard_check_here(&sh, path, ignore, NULL) : dl_shard_check(&sh, path, ignore, NULL);
    if (rc == 0 && in_process) rc = dl_shard_check_deep(&sh, err, sizeof err);
    if (rc == 0) read_whole_shard(&sh);
    dl_shard_close(&sh);
    return 0;
}
