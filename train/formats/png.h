// png.h: a tiny PNG encoder (8-bit RGB, no interlace), enough to inline
// camera frames in the run report as data URIs.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Encode h rows of w RGB pixels (row-major, 3 bytes a pixel, row 0 at the
// top). *out is malloc'ed, *len its size. Returns 0, or -1 (bad size, out
// of memory).
int png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *len);

// Standard base64 (RFC 4648, padded) of n bytes, NUL-terminated, malloc'ed;
// NULL when out of memory.
char *base64_encode(const uint8_t *data, size_t n);
