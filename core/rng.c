/* rng.c — xoshiro256** with splitmix64 seeding (see rng.h). */
#include <math.h>
#include <pathseg/rng.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void ps_rng_seed(ps_rng *rng, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) rng->s[i] = splitmix64(&x);
}

ps_rng ps_rng_fork(const ps_rng *rng, uint64_t stream) {
  uint64_t x = rng->s[0] ^ rotl(rng->s[1], 17) ^ rotl(rng->s[2], 31) ^ rotl(rng->s[3], 47) ^
               (stream * 0xd1342543de82ef95ULL + 1);
  ps_rng out;
  for (int i = 0; i < 4; i++) out.s[i] = splitmix64(&x);
  return out;
}

uint64_t ps_rng_u64(ps_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

float ps_rng_uniform(ps_rng *rng) { return (float)(ps_rng_u64(rng) >> 40) * 0x1.0p-24f; }

double ps_rng_uniform_f64(ps_rng *rng) { return (double)(ps_rng_u64(rng) >> 11) * 0x1.0p-53; }

uint64_t ps_rng_below(ps_rng *rng, uint64_t n) {
  /* Lemire's rejection keeps the result unbiased. */
  uint64_t threshold = (0 - n) % n;
  for (;;) {
    uint64_t r = ps_rng_u64(rng);
    if (r >= threshold) return r % n;
  }
}

double ps_rng_normal(ps_rng *rng) {
  double u1 = ps_rng_uniform_f64(rng), u2 = ps_rng_uniform_f64(rng);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(2.0 * G_PI * u2);
}
