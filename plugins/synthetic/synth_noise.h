/* synth_noise.h — hash noise for the synthetic tile generator: integer
 * hashes, value noise and fBm. Everything is a pure function of its
 * arguments (the seed included), so textures are deterministic without
 * drawing from the RNG per pixel. Inline because the generator calls these
 * a dozen times per pixel. */
#pragma once

#include <math.h>
#include <stdint.h>

/* Full-quality hash: for choices (holes, debris) where bias would show. */
static inline uint32_t synth_hash3(int32_t x, int32_t y, uint32_t seed) {
  uint32_t h = seed ^ ((uint32_t)x * 0x8da6b343u) ^ ((uint32_t)y * 0xd8163841u);
  h ^= h >> 16;
  h *= 0x7feb352du;
  h ^= h >> 15;
  h *= 0x846ca68bu;
  h ^= h >> 16;
  return h;
}

/* A cheaper hash for the lattice of value noise (four per sample). */
static inline uint32_t synth_hash_fast(int32_t x, int32_t y, uint32_t seed) {
  uint32_t h = (seed ^ ((uint32_t)x * 0x8da6b343u) ^ ((uint32_t)y * 0xd8163841u)) * 0x2c1b3c6du;
  return h ^ (h >> 15);
}

/* floor() without the libm call (SSE2 has no rounding instruction). */
static inline int32_t synth_floor(float v) {
  int32_t i = (int32_t)v;
  return i - ((float)i > v);
}

/* Uniform in [0, 1) from a hash. */
static inline float synth_unit(uint32_t h) {
  return (float)(h >> 8) * (1.0f / 16777216.0f);
}

static inline float synth_smooth(float t) {
  return t * t * (3.0f - 2.0f * t);
}

/* Value noise in [0, 1) with a unit lattice. */
static inline __attribute__((always_inline)) float synth_vnoise(float x, float y, uint32_t seed) {
  int32_t ix = synth_floor(x), iy = synth_floor(y);
  float tx = synth_smooth(x - (float)ix), ty = synth_smooth(y - (float)iy);
  float a = synth_unit(synth_hash_fast(ix, iy, seed)),
        b = synth_unit(synth_hash_fast(ix + 1, iy, seed));
  float c = synth_unit(synth_hash_fast(ix, iy + 1, seed));
  float d = synth_unit(synth_hash_fast(ix + 1, iy + 1, seed));
  float top = a + (b - a) * tx, bot = c + (d - c) * tx;
  return top + (bot - top) * ty;
}

/* Fractal sum of `octaves` value-noise octaves, normalised to about [0, 1). */
static inline float synth_fbm(float x, float y, uint32_t seed, int octaves) {
  float sum = 0, amp = 0.5f, norm = 0;
  for (int o = 0; o < octaves; o++) {
    /* The rotation between octaves hides the lattice's axis alignment. */
    sum += amp * synth_vnoise(x, y, seed + (uint32_t)o * 0x9e3779b9u);
    norm += amp;
    float nx = 1.6f * x - 1.2f * y, ny = 1.2f * x + 1.6f * y;
    x = nx + 17.3f;
    y = ny - 9.1f;
    amp *= 0.5f;
  }
  return sum / norm;
}

/* Per-pixel white noise in [0, 1). */
static inline float synth_white(int32_t x, int32_t y, uint32_t seed) {
  return synth_unit(synth_hash3(x, y, seed));
}
