// chunkread.h: reading rows of one shard dataset (internal to data/).
//
// A chunked dataset whose filters are among deflate, shuffle and zstd is read
// raw: under the HDF5 lock only H5Dget_chunk_storage_size + H5Dread_chunk run
// (a memcpy from the page cache, usually); the decoding (zstd, zlib, unshuffle,
// float16 -> float32) runs in the calling thread outside the lock, straight
// into the destination when a chunk is exactly the rows asked for. Anything
// else (contiguous or compact layout, big-endian, another filter, a chunk never
// written) goes through H5Dread under the lock, HDF5 converting.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include "data/drivelog.h"

// Bytes per element as delivered: ints at their own width, floats as float32.
size_t dl_mem_size(DlKind kind);
// The native HDF5 memory type for a kind (floats: H5T_NATIVE_FLOAT).
hid_t dl_mem_type(DlKind kind);

// Rows [a, b) of dataset `slot`, all of its other dimensions, into dst laid
// out as (b - a, dims[1], ...) in dl_mem_size elements. `sample` is only for
// the message. Returns 0, or -1 with err = "PATH: DATASET: what at sample n".
int dl_read_rows(DlReader *rd, const DlShard *sh, int slot, int64_t a, int64_t b, void *dst,
                 int64_t sample, char *err, size_t errlen);

// A scratch buffer of the reader (contents kept until the next call).
void *dl_reader_scratch(DlReader *rd, size_t bytes);

// The reader's trace scratch, grown to hold n elements of each array.
int dl_reader_trace_room(DlReader *rd, size_t n_tokens, size_t n_topk,
                         int32_t **tokens, int32_t **topk_ids, float **topk_logprobs);

// The innermost message on this thread's HDF5 error stack (or "unknown").
void dl_hdf5_error_text(char *buf, size_t len);

// IEEE half -> float (subnormals, Inf and NaN kept).
float dl_half_to_float(uint16_t h);
