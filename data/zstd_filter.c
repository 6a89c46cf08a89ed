// zstd_filter.c: the zstd HDF5 filter (see zstd_filter.h).
#include "data/zstd_filter.h"
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <hdf5.h>
#include <zstd.h>

// No HDF5 chunk exceeds 4 GiB; a frame header claiming more is damaged, and
// trusting it would ask malloc for up to 2^64 bytes.
#define MAX_CHUNK_BYTES (1ull << 32)

// Decompress a frame whose size is not in its header, growing the buffer.
static size_t decompress_streaming(const void *src, size_t n, void **out) {
    size_t cap = n * 4 + 4096, len = 0;
    char *dst = H5allocate_memory(cap, 0);
    ZSTD_DStream *ds = ZSTD_createDStream();
    if (!dst || !ds) goto fail;
    ZSTD_initDStream(ds);
    ZSTD_inBuffer in = { src, n, 0 };
    for (;;) {
        ZSTD_outBuffer ob = { dst, cap, len };
        size_t r = ZSTD_decompressStream(ds, &ob, &in);
        if (ZSTD_isError(r)) goto fail;
        len = ob.pos;
        if (r == 0 && in.pos == in.size) break;
        if (len == cap) {
            if (cap * 2 > MAX_CHUNK_BYTES) goto fail;
            char *bigger = H5resize_memory(dst, cap * 2);
            if (!bigger) goto fail;
            dst = bigger;
            cap *= 2;
        } else if (in.pos == in.size && r != 0) {
            goto fail;   // truncated frame
        }
    }
    ZSTD_freeDStream(ds);
    *out = dst;
    return len;
fail:
    if (ds) ZSTD_freeDStream(ds);
    if (dst) H5free_memory(dst);
    return 0;
}

static size_t zstd_filter(unsigned flags, size_t cd_nelmts, const unsigned cd_values[],
                          size_t nbytes, size_t *buf_size, void **buf) {
    void *out = NULL;
    size_t out_len;
    if (flags & H5Z_FLAG_REVERSE) {
        unsigned long long size = ZSTD_getFrameContentSize(*buf, nbytes);
        if (size == ZSTD_CONTENTSIZE_ERROR || (size != ZSTD_CONTENTSIZE_UNKNOWN && size > MAX_CHUNK_BYTES)) return 0;
        if (size == ZSTD_CONTENTSIZE_UNKNOWN) {
            out_len = decompress_streaming(*buf, nbytes, &out);
            if (!out) return 0;
        } else {
            out = H5allocate_memory(size ? size : 1, 0);
            if (!out) return 0;
            out_len = ZSTD_decompress(out, size, *buf, nbytes);
            if (ZSTD_isError(out_len) || out_len != size) { H5free_memory(out); return 0; }
        }
        H5free_memory(*buf);
        *buf = out;
        *buf_size = out_len;
        return out_len;
    }
    int level = cd_nelmts > 0 ? (int)cd_values[0] : 3;
    size_t cap = ZSTD_compressBound(nbytes);
    out = H5allocate_memory(cap, 0);
    if (!out) return 0;
    out_len = ZSTD_compress(out, cap, *buf, nbytes, level);
    if (ZSTD_isError(out_len)) { H5free_memory(out); return 0; }
    H5free_memory(*buf);
    *buf = out;
    *buf_size = cap;
    return out_len;
}

static const H5Z_class2_t zstd_class = {
    H5Z_CLASS_T_VERS, (H5Z_filter_t)DL_ZSTD_FILTER_ID, 1, 1, "zstd (distil, in-process)",
    NULL, NULL, zstd_filter,
};

static int register_status = -1;
static void register_once(void) {
    register_status = H5Zregister(&zstd_class) < 0 ? -1 : 0;
}

int dl_zstd_register(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, register_once);
    if (register_status < 0) fprintf(stderr, "distil: error: cannot register the zstd HDF5 filter (%d)\n", DL_ZSTD_FILTER_ID);
    return register_status;
}
