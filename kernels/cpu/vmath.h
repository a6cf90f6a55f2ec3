/* cpu/vmath.h — branch-free float math that GCC can vectorise inside
 * `#pragma omp simd` loops (glibc's expf/erff are scalar calls without
 * -ffast-math, which would cap the activations far below memory bandwidth),
 * plus small helpers shared by the CPU kernels (internal). */
#pragma once

/* Float compares may raise FE_INVALID under the default -ftrapping-math, which
 * stops GCC from if-converting (and so vectorising) any loop with a select in
 * it. pathseg never inspects floating-point exception flags, so every kernel
 * file that includes this header is compiled without trapping math. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math")
#endif

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

/* The vector math below must be inlined into each caller so that it is
 * compiled for the caller's target clone (AVX2 / AVX-512 / baseline). */
#if defined(__GNUC__)
#define PS_VINLINE static inline __attribute__((always_inline))
#else
#define PS_VINLINE static inline
#endif

/* Hot loops live in "span" functions marked PS_SIMD_CLONES: GCC compiles
 * them for x86-64-v4 (AVX-512), x86-64-v3 (AVX2 + FMA) and the baseline and
 * picks one at load time (ifunc), so a generic build still runs 8/16 floats
 * per instruction where the CPU has them. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PS_NO_SIMD_CLONES)
#define PS_SIMD_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define PS_SIMD_CLONES
#endif

/* Parallelise a loop only when it has at least this many elements of work:
 * below it the OpenMP fork/join costs more than it saves. */
#define PS_OMP_MIN_WORK 32768

static inline int64_t ps_min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}
static inline int64_t ps_max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}

static inline float ps_bits_to_float(int32_t bits) {
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}
static inline int32_t ps_float_to_bits(float f) {
  int32_t bits;
  memcpy(&bits, &f, sizeof bits);
  return bits;
}

/* exp(x) with ~1 ulp error (Cephes expf polynomial, Cody-Waite reduction).
 * x < -87.33 gives 0 (also -inf, so masked logits vanish); x is capped at 88
 * (exp(88) = 1.65e38) instead of overflowing; NaN stays NaN. The rounding to
 * nearest integer uses the 1.5 * 2^23 trick because floorf/roundf only
 * vectorise with SSE4.1, which the baseline x86-64 target lacks. */

PS_VINLINE float ps_vexpf(float x) {
  const float lo = -87.33654f, hi = 88.0f;
  float xc = x > hi ? hi : x;
  xc = xc < lo ? lo : xc;
  const float magic = 12582912.0f; /* 1.5 * 2^23 */
  float t = xc * 1.44269504088896341f + magic;
  float n = t - magic;
  /* the integer n from t's mantissa; unsigned so that a NaN's garbage wraps
   * (defined) instead of overflowing the shift below */
  uint32_t ni = (uint32_t)ps_float_to_bits(t) - 0x4B400000u;
  float r = xc - n * 0.693359375f + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  float y = p * ps_bits_to_float((int32_t)((ni + 127u) << 23));
  return x < lo ? 0.0f : y;
}

/* erfc(a) * exp(a^2) for a >= 0 is approximated by a degree-5 polynomial in
 * t = 1/(1 + p a) (Abramowitz & Stegun 7.1.26, |error of erf| < 1.5e-7).
 * Returns erfc(a) for a >= 0; `e2` must be exp(-a*a). */

PS_VINLINE float ps_erfc_pos(float a, float e2) {
  float t = 1.0f / (1.0f + 0.3275911f * a);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  return poly * t * e2;
}

/* Logistic sigmoid, vectorisable; exact 0/1 limits. */

PS_VINLINE float ps_vsigmoid(float x) {
  return 1.0f / (1.0f + ps_vexpf(-x));
}

/* erf(x) as a rational function of x (the approximation Eigen and XLA use):
 * |error| < 4e-7 on all of R, no exp, one division; saturates to +-1 past |x| = 4. */
PS_VINLINE float ps_verf(float a) {
  float x = a > 4.0f ? 4.0f : a;
  x = x < -4.0f ? -4.0f : x;
  float x2 = x * x;
  float p = -2.72614225801306e-10f;
  p = p * x2 + 2.77068142495902e-08f;
  p = p * x2 - 2.10102402082508e-06f;
  p = p * x2 - 5.69250639462346e-05f;
  p = p * x2 - 7.34990630326855e-04f;
  p = p * x2 - 2.95459980854025e-03f;
  p = p * x2 - 1.60960333262415e-02f;
  p = p * x;
  float q = -1.45660718464996e-05f;
  q = q * x2 - 2.13374055278905e-04f;
  q = q * x2 - 1.68282697438203e-03f;
  q = q * x2 - 7.37332916720468e-03f;
  q = q * x2 - 1.42647390514189e-02f;
  return p / q;
}

/* Runs fn(ctx, i0, i1) over [0, n) split into one contiguous span per
 * OpenMP thread, or inline when n * cost (elements of work) is small. */
typedef void (*ps_span_fn)(const void *ctx, int64_t i0, int64_t i1);

static inline void ps_parallel_spans(int64_t n, int64_t cost, ps_span_fn fn, const void *ctx) {
  if (n <= 0) return;
  if (n * cost <= PS_OMP_MIN_WORK || omp_get_max_threads() == 1) {
    fn(ctx, 0, n);
    return;
  }
#pragma omp parallel
  {
    int64_t nt = omp_get_num_threads(), t = omp_get_thread_num();
    int64_t i0 = n * t / nt, i1 = n * (t + 1) / nt;
    if (i1 > i0) fn(ctx, i0, i1);
  }
}
