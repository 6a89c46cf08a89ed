// rng.h: a seeded, splittable random number generator whose whole state is
// this struct, so a checkpoint can save and restore it (xoshiro256**).
#pragma once
#include <stdint.h>

typedef struct Rng {
    uint64_t s[4];
    // Box-Muller yields normals in pairs; the spare is part of the state.
    int has_spare;
    float spare;
} Rng;

void rng_seed(Rng *r, uint64_t seed);
uint64_t rng_u64(Rng *r);
// Uniform in [0, 1) with 24 random bits.
float rng_uniform(Rng *r);
// Uniform integer in [0, n), unbiased.
uint64_t rng_below(Rng *r, uint64_t n);
float rng_normal(Rng *r);
// A stream derived from (seed, a, b) without touching any other state: the
// loader's epoch permutations and per-rank streams use this.
void rng_derive(Rng *r, uint64_t seed, uint64_t a, uint64_t b);
