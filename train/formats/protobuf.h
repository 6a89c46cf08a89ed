// protobuf.h: a minimal protobuf encoder: varints, fixed32/fixed64 and
// length-delimited fields, embedded messages. Enough for ONNX models
// (onnx.c) and TensorBoard event files (tfevents.c); nothing here decodes.
#pragma once
#include <stddef.h>
#include <stdint.h>

// A growing byte buffer holding encoded fields. An allocation failure sets
// oom; later writes are dropped and the writer reports it at the end.
typedef struct PbBuf {
    uint8_t *data;
    size_t len, cap;
    int oom;
} PbBuf;

void pb_free(PbBuf *b);
void pb_varint(PbBuf *b, uint64_t v);
void pb_int(PbBuf *b, int field, int64_t v);                          // wire type 0 (negative: 10 bytes, as protobuf)
void pb_double(PbBuf *b, int field, double v);                        // wire type 1
void pb_fixed32(PbBuf *b, int field, float v);                        // wire type 5
void pb_bytes(PbBuf *b, int field, const void *data, size_t n);       // wire type 2
void pb_string(PbBuf *b, int field, const char *s);
// The tag and length of a wire-type-2 field whose n bytes the caller
// writes after it (a large message streamed without a copy).
void pb_len_prefix(PbBuf *b, int field, size_t n);
void pb_message(PbBuf *b, int field, const PbBuf *msg);               // an embedded message
