/* softmax_row.c — the row softmax and the row exp(x - shift) that softmax,
 * attention and (via attention backward) its recomputed probabilities share.
 *
 * Why a file of its own: these loops are bound by the exp, and a 256-wide row
 * is too short for the compiler's loop vectoriser to do well (it kept the
 * reductions in 16 scalar lanes folded one by one, and a short row pays every
 * such latency chain; and whether it vectorises the exp loop at all depends
 * on details). The row is written with GCC vector types of the register width
 * (softmax_row_impl.h, included once per instruction set: 16 floats for
 * AVX-512, 8 for AVX2 + FMA, 4 for SSE2), chosen at load time by ifunc like
 * the PS_SIMD_CLONES functions:
 *  - max: four independent accumulators, then a log2 tree of lane swaps;
 *  - exp and sum fused in one pass (two accumulators), store of exp(x - max);
 *  - scale by 1/sum.
 * Measured on the 2-vCPU Emerald Rapids VM, one thread, 256-wide rows, ns
 * per element (the row in L1 / 8192 rows from L3), old loops -> this file:
 * AVX-512 0.52 / 0.91 -> 0.32 / 0.36, AVX2 0.99 / 1.5 -> 0.69 / 0.75, SSE2
 * 2.3 / 3.2 -> 1.4 / 1.6 (the last two built with -march for the check).
 *
 * Rows that come from memory rather than L1 (softmax_forward over an (N, C)
 * tensor) go through ps_cpu_softmax_rows, which also prefetches the rows
 * ahead while the exp of the current row computes: without it the next row's
 * max pass waits for its loads (the reorder window is full of exp work and
 * cannot reach them), and memory and compute time add up instead of
 * overlapping (0.42 -> 0.34 ns per element from L3 at one thread). A call
 * per row through the ifunc costs nothing measurable next to that.
 *
 * Not done: an "online" softmax (running max and rescaled sum in one pass).
 * It saves the max pass, ~10 ns of an L1 row's ~90 (timed pass by pass on a
 * first version of this code: max 10, exp and sum 70, scale 15-20), but
 * needs a second exp per element (or per vector) for the rescaling, and the
 * exp pass is most of the row.
 *
 * FMA contraction is switched on here, for this file only and before any
 * header is read: ISO C mode (-std=c11) forbids GCC to fuse the polynomial's
 * multiply-adds, which doubles its instruction count (and GCC refuses to
 * inline a helper compiled under different optimisation options, so every
 * inline function in the translation unit must see the same ones). FMA rounds
 * once where mul+add rounds twice. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("no-trapping-math", "fp-contract=fast")
/* vectors are only passed between always_inline helpers, so the ABI note GCC
 * gives for vectors wider than the target's registers does not apply */
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln(2)/2, for x <= 88
 * (callers clamp where x can be larger): x < -87.34 (the float normal range)
 * and -inf give exactly 0, NaN stays NaN. No lower clamp is needed: for such
 * x the garbage of the exponent arithmetic (NaN for -inf) is masked away at
 * the end.
 *
 * Adding SM_EXP_MAGIC = 1.5 * 2^23 + 127 rounds x / ln 2 to an integer and
 * adds the exponent bias, so t's low mantissa bits are n + 127 and (t << 23)
 * is 2^n as a float (0x4B400000 has no bits below the 9th to spill into it).
 * r = x - n ln 2 in two steps (Cody-Waite: ln 2 = 0.693359375 - 2.12194440e-4).
 *
 * exp(r) = 1 + r + r^2 (C2 + C3 r + ... + C6 r^4), Horner form: a degree-6
 * weighted minimax fit of exp's relative error on |r| <= 0.3467 (3.1e-9
 * before rounding; a Lawson iteration in long double, not part of the build).
 * One multiply-add less than ps_vexpf's Cephes degree-7 polynomial at the same
 * accuracy in float with FMA: worst relative error 7.6e-8 (Cephes: 7.4e-8)
 * over every 7th float of [-87.34, 0] against double exp. */
#define SM_EXP_LO (-87.33654f)
#define SM_EXP_HI 88.0f
#define SM_EXP_MAGIC 12583039.0f
#define SM_EXP_C2 4.9999994040e-01f
#define SM_EXP_C3 1.6666521132e-01f
#define SM_EXP_C4 4.1668388993e-02f
#define SM_EXP_C5 8.3687268198e-03f
#define SM_EXP_C6 1.3814601116e-03f

/* The exp for one float (row tails shorter than a vector). */
PS_VINLINE float sm_exp1(float x) {
  float t = x * 1.44269504088896341f + SM_EXP_MAGIC;
  float n = t - SM_EXP_MAGIC;
  uint32_t bits;
  memcpy(&bits, &t, sizeof bits);
  uint32_t sbits = bits << 23; /* unsigned: a NaN's garbage shifts out, no UB */
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = SM_EXP_C6;
  p = p * r + SM_EXP_C5;
  p = p * r + SM_EXP_C4;
  p = p * r + SM_EXP_C3;
  p = p * r + SM_EXP_C2;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  float s;
  memcpy(&s, &sbits, sizeof s);
  return x < SM_EXP_LO ? 0.0f : p * s;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PS_NO_SIMD_CLONES)

/* One body per instruction set (see softmax_row_impl.h), each compiled for
 * its target, and an ifunc resolver per entry point that picks the widest the
 * CPU runs (the same test target_clones("arch=...") makes). */
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define SM_W 16
#define SM_SUF avx512
#include "cpu/softmax_row_impl.h"
#pragma GCC pop_options

#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define SM_W 8
#define SM_SUF avx2
#include "cpu/softmax_row_impl.h"
#pragma GCC pop_options

#define SM_W 4
#define SM_SUF sse2
#include "cpu/softmax_row_impl.h"

/* 2 for AVX-512 (x86-64-v4), 1 for AVX2 + FMA (x86-64-v3), 0 otherwise.
 * Resolvers run before constructors, hence __builtin_cpu_init. */
static int sm_level(void) {
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) return 2;
  if (__builtin_cpu_supports("x86-64-v3")) return 1;
  return 0;
}

typedef void (*sm_row_fn)(float *, const float *, int64_t, float *);
typedef void (*sm_rows_fn)(float *, const float *, int64_t, int64_t);
typedef void (*sm_exp_fn)(float *, const float *, float, int64_t);

static sm_row_fn sm_resolve_row(void) {
  static const sm_row_fn fn[] = {softmax_row_sse2, softmax_row_avx2, softmax_row_avx512};
  return fn[sm_level()];
}
static sm_rows_fn sm_resolve_rows(void) {
  static const sm_rows_fn fn[] = {softmax_rows_sse2, softmax_rows_avx2, softmax_rows_avx512};
  return fn[sm_level()];
}
static sm_exp_fn sm_resolve_exp(void) {
  static const sm_exp_fn fn[] = {exp_shifted_row_sse2, exp_shifted_row_avx2,
                                 exp_shifted_row_avx512};
  return fn[sm_level()];
}

void ps_cpu_softmax_row(float *y, const float *x, int64_t n, float *lse)
    __attribute__((ifunc("sm_resolve_row")));
void ps_cpu_softmax_rows(float *y, const float *x, int64_t rows, int64_t n)
    __attribute__((ifunc("sm_resolve_rows")));
void ps_cpu_exp_shifted_row(float *y, const float *x, float shift, int64_t n)
    __attribute__((ifunc("sm_resolve_exp")));

#else /* other compilers and targets: one body at the compile-time target's width */

#if defined(__AVX512F__)
#define SM_W 16
#elif defined(__AVX2__)
#define SM_W 8
#else /* SSE2, NEON and other 128-bit vector units */
#define SM_W 4
#endif
#define SM_SUF generic
#include "cpu/softmax_row_impl.h"

void ps_cpu_softmax_row(float *y, const float *x, int64_t n, float *lse) {
  /* y, x: (n), in place allowed; lse: one float or NULL */
  softmax_row_generic(y, x, n, lse);
}
void ps_cpu_softmax_rows(float *y, const float *x, int64_t rows, int64_t n) {
  /* y, x: (rows, n), in place allowed */
  softmax_rows_generic(y, x, rows, n);
}
void ps_cpu_exp_shifted_row(float *y, const float *x, float shift, int64_t n) {
  /* y, x: (n), in place allowed */
  exp_shifted_row_generic(y, x, shift, n);
}

#endif
