// fuzz_checkpoint.c: a checkpoint directory (docs/checkpoints.md) read by
// checkpoint_open (state.bin, the recorded sizes and checksums, the weights'
// metadata), then by bundle_open and built into a student with its weights,
// as `distil eval` and `distil export` do.
//
// The input packs (fuzz/fuzz.h) state.bin's payload uncompressed, then
// model.safetensors, then vocab.json. The harness writes a valid state.bin
// around the payload (the header, its CRCs, the zstd frame) and writes the
// other two files' real sizes and CRC-32s into the payload where the format
// keeps them: without that, every mutation would stop at a checksum.
// DISTIL_FUZZ_PACK="state.bin model.safetensors vocab.json" writes a seed
// (state.bin is decompressed into its payload first).
#include <zlib.h>                  // defines: crc32
#include <zstd.h>                  // defines: ZSTD_compress2, ZSTD_decompress
#include "fuzz/bundle_fuzz.h"
#include "train/ckpt/checkpoint.h" // defines: checkpoint_open, CKPT_STATE_MAGIC

#define VOCAB_SIZE_AT 116          // the payload's vocab_size field (docs/checkpoints.md)

static void put_le(uint8_t *p, uint64_t x, int bytes) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(x >> (8 * i));
}

static uint32_t crc_of(const uint8_t *p, size_t n) { return (uint32_t)crc32(crc32(0, Z_NULL, 0), p, (uInt)n); }

// A seed: state.bin's payload, then the two files, packed.
static void pack_seed(void) {
    const char *list = getenv("DISTIL_FUZZ_PACK");
    if (!list) return;
    char state[600], weights[600], vocab[600];
    if (sscanf(list, "%599s %599s %599s", state, weights, vocab) != 3) { fprintf(stderr, "DISTIL_FUZZ_PACK: 3 files\n"); exit(1); }
    size_t n;
    uint8_t *raw = fuzz_read(state, &n);
    unsigned long long content = n > 48 ? ZSTD_getFrameContentSize(raw + 48, n - 48) : 0;
    if (n <= 48 || content == ZSTD_CONTENTSIZE_ERROR || content == ZSTD_CONTENTSIZE_UNKNOWN) abort();
    uint8_t *payload = malloc(content);
    if (ZSTD_isError(ZSTD_decompress(payload, content, raw + 48, n - 48))) abort();
    char tmp[700];
    fuzz_write(fuzz_path(tmp, sizeof tmp, "payload"), payload, content);
    free(payload);
    free(raw);
    char both[2200];
    snprintf(both, sizeof both, "%s %s %s", tmp, weights, vocab);
    setenv("DISTIL_FUZZ_PACK", both, 1);
    fuzz_pack_if_asked();
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    pack_seed();
    return 0;
}

// state.bin around `payload`, with the files' sums patched in when the
// payload is long enough to hold them.
static void write_state(const char *path, const uint8_t *payload, size_t n, const uint8_t *const *files, const size_t *file_len) {
    uint8_t *p = malloc(n ? n : 1);
    memcpy(p, payload, n);
    if (n >= VOCAB_SIZE_AT + 4) {
        uint64_t vocab = (uint64_t)p[VOCAB_SIZE_AT] | (uint64_t)p[VOCAB_SIZE_AT + 1] << 8 |
                         (uint64_t)p[VOCAB_SIZE_AT + 2] << 16 | (uint64_t)p[VOCAB_SIZE_AT + 3] << 24;
        uint64_t at = VOCAB_SIZE_AT + 4 + 4 * vocab;
        for (int i = 0; i < 2 && at + 12 <= n; i++, at += 12) {
            put_le(p + at, file_len[i], 8);
            put_le(p + at + 8, crc_of(files[i], file_len[i]), 4);
        }
    }
    size_t cap = ZSTD_compressBound(n);
    uint8_t *out = malloc(48 + cap);
    ZSTD_CCtx *cc = ZSTD_createCCtx();
    ZSTD_CCtx_setParameter(cc, ZSTD_c_checksumFlag, 1);
    ZSTD_CCtx_setParameter(cc, ZSTD_c_compressionLevel, 1);
    size_t nc = ZSTD_compress2(cc, out + 48, cap, p, n);
    ZSTD_freeCCtx(cc);
    if (ZSTD_isError(nc)) abort();
    memset(out, 0, 48);
    memcpy(out, CKPT_STATE_MAGIC, 9);
    put_le(out + 12, CKPT_FORMAT_VERSION, 4);
    put_le(out + 16, n, 8);
    put_le(out + 24, nc, 8);
    put_le(out + 32, crc_of(p, n), 4);
    put_le(out + 44, crc_of(out, 44), 4);
    fuzz_write(path, out, 48 + nc);
    free(out);
    free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *part[3];
    size_t len[3];
    int present = fuzz_unpack(data, size, part, len, 3);
    const char *dir = bundle_dir("checkpoint");
    char path[700];
    snprintf(path, sizeof path, "%s/state.bin", dir);
    write_state(path, part[0], len[0], part + 1, len + 1);
    put_part(dir, "model.safetensors", part[1], len[1], present > 1);
    put_part(dir, "vocab.json", part[2], len[2], present > 2);
    CkptState s;
    char err[2048];
    if (checkpoint_open(dir, &s, err, sizeof err) == 0) ckpt_state_free(&s);
    open_and_build(dir);
    return 0;
}
