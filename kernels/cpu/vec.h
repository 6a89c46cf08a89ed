// vec.h: 8-wide fp32 vectors (GCC vector extensions) and the elementwise
// math the fused CPU kernels need: an exp accurate to a few ulps,
// branch-free, so a loop over them runs 8 floats per instruction.
//
// The kernels are compiled for baseline x86-64 (SSE2, two instructions per
// vector op) and, through VEC_CLONES, once more for x86-64-v3 (AVX2), the
// clone picked at load time by the CPU. No FMA is used and every sum runs in
// a fixed order, so both clones give the same bits: a run replays, and a
// checkpoint resumes, identically on any x86-64.
//
// Tails (n not a multiple of 8) go through v8_load_n/v8_store_n, the same
// arithmetic on a zero-padded vector, so element i's value does not depend
// on where it falls.
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include "autograd/tensor.h"   // defines: f32_to_bf16
#if defined(__SSE__)
#include <xmmintrin.h>   // defines: _mm_sqrt_ps
#endif

// The helpers below are always inlined, so no 32-byte vector crosses a call
// in the baseline build (whose ABI has no such register; GCC warns).
#pragma GCC diagnostic ignored "-Wpsabi"

#define V8_INLINE static inline __attribute__((always_inline))

typedef float f32x8 __attribute__((vector_size(32)));
typedef int32_t i32x8 __attribute__((vector_size(32)));
typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint16_t u16x8 __attribute__((vector_size(16)));

// Hot kernels get an AVX2 clone next to the baseline one (GCC's
// target_clones: an ifunc resolved once at load time).
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VEC_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define VEC_CLONES
#endif

V8_INLINE f32x8 v8_set1(float x) { return (f32x8){ x, x, x, x, x, x, x, x }; }
V8_INLINE f32x8 v8_load(const float *p) { f32x8 v; memcpy(&v, p, sizeof v); return v; }
V8_INLINE void v8_store(float *p, f32x8 v) { memcpy(p, &v, sizeof v); }
// The first n (< 8) floats of p, zeros after.
V8_INLINE f32x8 v8_load_n(const float *p, ptrdiff_t n) {
    f32x8 v = v8_set1(0.0f);
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
V8_INLINE void v8_store_n(float *p, f32x8 v, ptrdiff_t n) { memcpy(p, &v, (size_t)n * sizeof(float)); }
// k (1..8) floats: a full load or a padded one.
V8_INLINE f32x8 v8_load_k(const float *p, ptrdiff_t k) { return k == 8 ? v8_load(p) : v8_load_n(p, k); }
V8_INLINE void v8_store_k(float *p, f32x8 v, ptrdiff_t k) {
    if (k == 8) v8_store(p, v);
    else v8_store_n(p, v, k);
}

// Lanes [0, k) rounded to bf16 with tensor.h's f32_to_bf16's bits (the bits
// every backend stores), k <= 8: a train.precision bf16 output (plan.h).
// The same integer steps on 8 lanes at once: round to nearest even by
// adding 0x7fff plus the kept part's lowest bit, and a NaN kept a quiet NaN.
V8_INLINE void v8_store_bf16_k(uint16_t *p, f32x8 v, ptrdiff_t k) {
    u32x8 u = (u32x8)v;
    u32x8 rounded = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16, quiet = (u >> 16) | 0x40u;
    u32x8 nan = (u32x8)((u & 0x7fffffffu) > 0x7f800000u);   // all ones where NaN
    u16x8 bits = __builtin_convertvector((nan & quiet) | (~nan & rounded), u16x8);
    memcpy(p, &bits, (size_t)k * sizeof(uint16_t));
}

// p[0, k) = v (assign) or += v: the assign/accumulate contract of gradients.
V8_INLINE void v8_put_k(float *p, f32x8 v, ptrdiff_t k, int assign) {
    if (!assign) v += v8_load_k(p, k);
    v8_store_k(p, v, k);
}

// mask ? a : b, mask lanes all ones or all zeros (a comparison's result).
V8_INLINE f32x8 v8_select(i32x8 mask, f32x8 a, f32x8 b) {
    return (f32x8)((mask & (i32x8)a) | (~mask & (i32x8)b));
}
V8_INLINE f32x8 v8_min(f32x8 a, f32x8 b) { return v8_select(a < b, a, b); }
V8_INLINE f32x8 v8_max(f32x8 a, f32x8 b) { return v8_select(a > b, a, b); }

// sqrt per lane, correctly rounded as sqrtf is (so the same bits), but
// without the errno check that keeps GCC from vectorising sqrtf: two SSE
// sqrtps, which both clones have.
V8_INLINE f32x8 v8_sqrt(f32x8 x) {
#if defined(__SSE__)
    __m128 lo, hi;
    memcpy(&lo, &x, sizeof lo);
    memcpy(&hi, (const char *)&x + sizeof lo, sizeof hi);
    lo = _mm_sqrt_ps(lo);
    hi = _mm_sqrt_ps(hi);
    memcpy(&x, &lo, sizeof lo);
    memcpy((char *)&x + sizeof lo, &hi, sizeof hi);
    return x;
#else
    for (int j = 0; j < 8; j++) x[j] = __builtin_sqrtf(x[j]);
    return x;
#endif
}

// The sum of the 8 lanes, in a fixed pairwise order.
V8_INLINE float v8_hsum(f32x8 v) {
    return ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]));
}

// exp(x), x clamped to [-87.3, 88.3] (so no overflow to inf, no
// subnormal). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, a degree-6
// polynomial for exp(r) (Cephes' expf, ~1 ulp), then 2^n through the exponent
// bits. NaN in gives NaN out.
V8_INLINE f32x8 v8_exp(f32x8 x) {
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;   // ln2_hi has 9 bits: n * ln2_hi is exact
    f32x8 xc = v8_min(v8_max(x, v8_set1(-87.3f)), v8_set1(88.3f));
    f32x8 fx = xc * log2e + 0.5f;
    f32x8 fl = __builtin_convertvector(__builtin_convertvector(fx, i32x8), f32x8);   // toward zero
    fl = v8_select(fl > fx, fl - 1.0f, fl);                                           // floor
    f32x8 r = xc - fl * ln2_hi;
    r = r - fl * ln2_lo;
    f32x8 r2 = r * r;
    f32x8 p = v8_set1(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r2 + r;
    p = p + 1.0f;
    i32x8 n = __builtin_convertvector(fl, i32x8);
    f32x8 pow2n = (f32x8)((n + 127) << 23);
    f32x8 y = p * pow2n;
    return v8_select(x != x, x, y);
}
