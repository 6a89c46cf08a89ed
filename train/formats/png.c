// png.c: the PNG encoder (see png.h). A PNG is the 8-byte signature and
// three chunks: IHDR (size and pixel format), IDAT (the zlib stream of the
// rows, each led by its filter byte: 0, none) and IEND. Each chunk is its
// length, its type, its data and the CRC-32 of type and data.
#include "train/formats/png.h"
#include <stdlib.h>
#include <string.h>
#include <zlib.h>   // defines: compress2, compressBound, crc32

static uint8_t *put_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
    return p + 4;
}

// One chunk at p: returns the byte after it.
static uint8_t *put_chunk(uint8_t *p, const char type[4], const uint8_t *data, uint32_t n) {
    p = put_be32(p, n);
    uint8_t *crc_start = p;
    memcpy(p, type, 4);
    if (n) memcpy(p + 4, data, n);
    p += 4 + n;
    return put_be32(p, (uint32_t)crc32(0L, crc_start, 4 + n));
}

int png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len) {
    if (w <= 0 || h <= 0 || w > (1 << 20) || h > (1 << 20)) return -1;
    size_t row = (size_t)w * 3, raw_len = (row + 1) * (size_t)h;
    uint8_t *raw = malloc(raw_len);
    uLongf z_len = compressBound((uLong)raw_len);
    uint8_t *z = malloc(z_len);
    uint8_t *png = malloc(8 + 25 + 12 + z_len + 12);
    int rc = -1;
    if (!raw || !z || !png) goto done;
    for (int y = 0; y < h; y++) {
        raw[(row + 1) * y] = 0;   // filter: none
        memcpy(raw + (row + 1) * y + 1, rgb + row * y, row);
    }
    if (compress2(z, &z_len, raw, (uLong)raw_len, 9) != Z_OK) goto done;
    static const uint8_t signature[8] = { 0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n' };
    uint8_t ihdr[13];
    put_be32(ihdr, (uint32_t)w);
    put_be32(ihdr + 4, (uint32_t)h);
    ihdr[8] = 8;    // bits per channel
    ihdr[9] = 2;    // colour type: RGB
    ihdr[10] = ihdr[11] = ihdr[12] = 0;   // deflate, adaptive filtering, no interlace
    memcpy(png, signature, 8);
    uint8_t *p = put_chunk(png + 8, "IHDR", ihdr, 13);
    p = put_chunk(p, "IDAT", z, (uint32_t)z_len);
    p = put_chunk(p, "IEND", NULL, 0);
    *out = png;
    *len = (size_t)(p - png);
    png = NULL;
    rc = 0;
done:
    free(raw);
    free(z);
    free(png);
    return rc;
}

char *base64_encode(const uint8_t *data, size_t n) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = malloc((n + 2) / 3 * 4 + 1), *o = out;
    if (!out) return NULL;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)data[i] << 16;
        if (i + 1 < n) v |= (uint32_t)data[i + 1] << 8;
        if (i + 2 < n) v |= data[i + 2];
        *o++ = alphabet[(v >> 18) & 63];
        *o++ = alphabet[(v >> 12) & 63];
        *o++ = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        *o++ = i + 2 < n ? alphabet[v & 63] : '=';
    }
    *o = 0;
    return out;
}
