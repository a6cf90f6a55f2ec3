/* rng.h — the deterministic random number generator of pathseg.
 *
 * xoshiro256** seeded through splitmix64. The whole state is four words, so
 * a checkpoint stores it and `--resume` continues the exact same stream. Every
 * random choice in pathseg (initialisation, dropout, masking, augmentation,
 * sampling) draws from a ps_rng, never from rand(). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct ps_rng {
  uint64_t s[4];
} ps_rng;

void ps_rng_seed(ps_rng *rng, uint64_t seed);
/* A new independent stream derived from `rng` and `stream` (does not advance rng). */
ps_rng ps_rng_fork(const ps_rng *rng, uint64_t stream);
uint64_t ps_rng_u64(ps_rng *rng);
/* Uniform in [0, 1) with 24 (f32) or 53 (f64) random bits. */
float ps_rng_uniform(ps_rng *rng);
double ps_rng_uniform_f64(ps_rng *rng);
/* Uniform integer in [0, n), unbiased; n > 0. */
uint64_t ps_rng_below(ps_rng *rng, uint64_t n);
/* Standard normal (Box-Muller, f64). */
double ps_rng_normal(ps_rng *rng);

G_END_DECLS
