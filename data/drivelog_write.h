// drivelog_write.h: writes valid drive-log v1 shards whose every value is a
// known function of (shard, sample, position), for tests and benchmarks that
// need shards of a given shape and storage layout and must check what the
// reader returns. (The synthetic fleet with meaningful content is data/synth*.)
#pragma once
#include <stddef.h>
#include <stdint.h>

enum { DLW_NONE = 0, DLW_ZSTD = 1, DLW_DEFLATE_SHUFFLE = 2 };

typedef struct DlWriteSpec {
    int shard_id;               // mixed into every value, so shards differ
    int64_t n;                  // N samples
    int cams, F, H, W;          // cameras "cam0,cam1,..." each (N, F, H, W, 3)
    int Th, T, K, k, D;         // D = 0: no /teacher/embedding
    int V;                      // vocab: "tok0" .. "tok{V-1}" (plus vocab_salt)
    int trace_min, trace_max;   // trace lengths vary between these
    int chunk_samples;          // samples per chunk; 0: contiguous datasets
    int split_inner;            // chunk cameras (1, 1, H/2, W, 3): chunks that cut a sample
    int compress;               // DLW_NONE, DLW_ZSTD, DLW_DEFLATE_SHUFFLE (chunked only)
    int zstd_level;
    int logprob_f16;            // top-k log-probs (and embedding) stored as float16
    int fixed_strings;          // fixed-length strings for attributes, vocab and text
    int with_future, with_command, with_weight, with_text;
    int vocab_salt;             // != 0: the pieces differ (for mismatch tests)
    int userblock;              // bytes of user block before the HDF5 data (0, or a power of 2 >= 512)
    double hz;                  // 0: 10
    float temperature;          // 0: no attribute
} DlWriteSpec;

// A spec with small, valid defaults (N 12, 2 cameras 2x8x12, Th 4, T 6, K 3,
// k 4, D 5, V 50, traces 0..9 tokens, zstd chunks of one sample, everything present).
DlWriteSpec dlw_defaults(void);

// Write the shard; 0, or -1 with err set.
int dlw_write(const char *path, const DlWriteSpec *s, char *err, size_t errlen);

// The values written (and expected back). `field` names a dataset: the
// DL_HISTORY, DL_FUTURE, ... slots of drivelog.h.
int64_t dlw_trace_len(const DlWriteSpec *s, int64_t n);
int64_t dlw_trace_offset(const DlWriteSpec *s, int64_t n);      // sum of the lengths before n
uint8_t dlw_pixel(const DlWriteSpec *s, int64_t n, int cam, int f, int y, int x, int ch);
float dlw_value(const DlWriteSpec *s, int field, int64_t n, int64_t i);   // element i of sample n's row
float dlw_weight(const DlWriteSpec *s, int64_t n, int j);                // un-normalised
int32_t dlw_token(const DlWriteSpec *s, int64_t n, int64_t t);
int32_t dlw_topk_id(const DlWriteSpec *s, int64_t n, int64_t t, int j);
float dlw_topk_logprob(int j);
