// protobuf.c: the protobuf wire format, encoding only (see protobuf.h).
#include "train/formats/protobuf.h"
#include <stdlib.h>
#include <string.h>

// Protobuf wire types.
enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

void pb_free(PbBuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static void put(PbBuf *b, const void *src, size_t n) {
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n) cap *= 2;
        uint8_t *d = realloc(b->data, cap);
        if (!d) { b->oom = 1; return; }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, src, n);
    b->len += n;
}

void pb_varint(PbBuf *b, uint64_t v) {
    uint8_t buf[10];
    int n = 0;
    do {
        buf[n] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) buf[n] |= 0x80;
        n++;
    } while (v);
    put(b, buf, n);
}

static void tag(PbBuf *b, int field, int wire) { pb_varint(b, ((uint64_t)field << 3) | (uint64_t)wire); }

void pb_int(PbBuf *b, int field, int64_t v) {
    tag(b, field, WIRE_VARINT);
    pb_varint(b, (uint64_t)v);
}

void pb_double(PbBuf *b, int field, double v) {
    uint64_t u;
    memcpy(&u, &v, 8);
    uint8_t le[8];
    for (int i = 0; i < 8; i++) le[i] = (uint8_t)(u >> (8 * i));
    tag(b, field, WIRE_FIXED64);
    put(b, le, 8);
}

void pb_fixed32(PbBuf *b, int field, float v) {
    uint32_t u;
    memcpy(&u, &v, 4);
    uint8_t le[4] = { (uint8_t)u, (uint8_t)(u >> 8), (uint8_t)(u >> 16), (uint8_t)(u >> 24) };
    tag(b, field, WIRE_FIXED32);
    put(b, le, 4);
}

void pb_bytes(PbBuf *b, int field, const void *data, size_t n) {
    tag(b, field, WIRE_LEN);
    pb_varint(b, n);
    put(b, data, n);
}

void pb_len_prefix(PbBuf *b, int field, size_t n) {
    tag(b, field, WIRE_LEN);
    pb_varint(b, n);
}

void pb_string(PbBuf *b, int field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

void pb_message(PbBuf *b, int field, const PbBuf *msg) {
    if (msg->oom) b->oom = 1;
    pb_bytes(b, field, msg->data, msg->len);
}
