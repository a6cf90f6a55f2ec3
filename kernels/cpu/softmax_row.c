/* softmax_row.c — the row softmax and the row exp(x - shift) that softmax,
 * attention and (via attention backward) its recomputed probabilities share.
 *
 * Why a file of its own: these loops are bound by the exp (a 256-wide row of
 * probabilities lives in L1, so memory is not the limit). The polynomial exp
 * is a chain of multiply-adds, and ISO C mode (-std=c11) forbids GCC to fuse
 * them into FMAs, which doubles its instruction count. Contraction is
 * switched on here, for this file only and before any header is read (GCC
 * refuses to inline a helper compiled under different optimisation options,
 * so every inline function in the translation unit must see the same ones).
 * FMA rounds once where mul+add rounds twice, so results are at least as
 * accurate as with the shared ps_vexpf. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* exp(x) for the arguments a max- or lse-shifted softmax produces (x <= ~0),
 * with the Cephes polynomial of ps_vexpf (~1 ulp): x < -87.34 (and -inf)
 * gives 0, x is capped at 88 so a stray large argument cannot overflow the
 * exponent bits, NaN stays NaN. */
PS_VINLINE float sm_exp(float x) {
  const float lo = -87.33654f, hi = 88.0f;
  float xc = x < lo ? lo : x;
  xc = xc > hi ? hi : xc;
  const float magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
  float t = xc * 1.44269504088896341f + magic;
  float n = t - magic;
  uint32_t bits;
  memcpy(&bits, &t, sizeof bits);
  /* 2^n as float bits: n = bits - 0x4B400000 (t's mantissa), exponent n + 127.
   * Unsigned, so a NaN's garbage exponent wraps instead of being UB (the
   * NaN then comes out of p). */
  uint32_t sbits = (bits - 0x4B400000u + 127u) << 23;
  float r = xc - n * 0.693359375f;       /* Cody-Waite: ln 2 = 0.693359375 - 2.12194440e-4 */
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * (r * r) + r;
  p = p + 1.0f;
  float s;
  memcpy(&s, &sbits, sizeof s);
  return x < lo ? 0.0f : p * s;
}

/* Reductions keep LANES partial results in a fixed-size array, which GCC
 * vectorises in every clone; with `omp simd reduction` it left the max and
 * the exp-and-sum loops scalar ("no vectype" for the privatised lanes), and
 * the exp-and-sum loop was most of the op's time. */
#define LANES 16

PS_SIMD_CLONES void ps_cpu_softmax_row(float *y, const float *x, int64_t n, float *lse) {
  /* y, x: (n), in place allowed; lse: one float or NULL */
  float part[LANES];
  for (int k = 0; k < LANES; k++) part[k] = -INFINITY;
  int64_t j = 0;
  for (; j + LANES <= n; j += LANES)
    for (int k = 0; k < LANES; k++) part[k] = x[j + k] > part[k] ? x[j + k] : part[k];
  float mx = -INFINITY;
  for (int k = 0; k < LANES; k++) mx = part[k] > mx ? part[k] : mx;
  for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
  if (mx == -INFINITY) { /* nothing to attend to: zeros, lse = -inf */
    memset(y, 0, (size_t)n * sizeof(float));
    if (lse) *lse = -INFINITY;
    return;
  }
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] = sm_exp(x[i] - mx);
  for (int k = 0; k < LANES; k++) part[k] = 0.0f;
  for (j = 0; j + LANES <= n; j += LANES)
    for (int k = 0; k < LANES; k++) part[k] += y[j + k];
  float sum = 0.0f;
  for (int k = 0; k < LANES; k++) sum += part[k];
  for (; j < n; j++) sum += y[j];
  float inv = 1.0f / sum; /* sum >= 1: the max element contributes exp(0) */
#pragma omp simd
  for (int64_t i = 0; i < n; i++) y[i] *= inv;
  if (lse) *lse = mx + logf(sum);
}

PS_SIMD_CLONES void ps_cpu_exp_shifted_row(float *y, const float *x, float shift, int64_t n) {
  /* y, x: (n), in place allowed */
#pragma omp simd
  for (int64_t j = 0; j < n; j++) y[j] = sm_exp(x[j] - shift);
}
