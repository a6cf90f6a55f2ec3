/* test_kernels_softmax_isa.c — every instruction-set body of the row softmax
 * (kernels/cpu/softmax_row.c: AVX-512, AVX2 + FMA and SSE2 widths of
 * softmax_row_impl.h), not only the one this CPU's ifunc picks: the kernel
 * source is compiled into this test so that its per-width static functions
 * can be called directly, each only where the CPU runs it. Each is checked
 * against a double-precision softmax on rows of many widths (vector body,
 * single-vector step, scalar tail), for the log-sum-exp, the exp over
 * [-87.3, 0], the special values (-inf, NaN, below range) and exp_shifted_row. */

/* the entry points get other names here, so they do not clash with libpathseg's */
#define ps_cpu_softmax_row isa_test_softmax_row
#define ps_cpu_softmax_rows isa_test_softmax_rows
#define ps_cpu_exp_shifted_row isa_test_exp_shifted_row
#include "cpu/softmax_row.c"

#include <math.h>

#include "kcheck.h"

typedef struct {
  const char *name;
  int runs; /* the CPU has the instruction set */
  void (*row)(float *, const float *, int64_t, float *);
  void (*rows)(float *, const float *, int64_t, int64_t);
  void (*exp_shifted)(float *, const float *, float, int64_t);
} isa_body;

/* Worst error of one body's rows against double, relative to what float
 * arithmetic allows (<= 1 passes): the rounding of x - max (6e-8 of |x - max|)
 * moves exp's result by that much relative, plus a few ulps for the exp, the
 * sum and the scale. */
static double check_body(const isa_body *b, int64_t N, int64_t C, double range, int use_rows) {
  g_autofree double *xd = kc_dvec(N * C, -range, range);
  g_autofree float *x = g_new(float, N * C), *y = g_new(float, N * C), *lse = g_new(float, N);
  for (int64_t i = 0; i < N * C; i++) x[i] = (float)xd[i];
  if (use_rows) b->rows(y, x, N, C);
  else
    for (int64_t n = 0; n < N; n++) b->row(y + n * C, x + n * C, C, &lse[n]);
  double worst = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const double *r = xd + n * C;
    double mx = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < C; i++) mx = fmax(mx, r[i]);
    for (int64_t i = 0; i < C; i++) s += exp(r[i] - mx);
    for (int64_t i = 0; i < C; i++) {
      double p = exp(r[i] - mx) / s, allowed = 4e-7 + 6e-8 * (mx - r[i]);
      double err = p < 1e-37 ? fabs(y[n * C + i] - p) / 1.2e-38 : fabs(y[n * C + i] - p) / p / allowed;
      if (err > worst) worst = err;
    }
    if (!use_rows) {
      double l = mx + log(s), err = fabs(lse[n] - l) / (1e-6 * fmax(1.0, fabs(l)));
      if (err > worst) worst = err;
    }
  }
  return worst;
}

static void test_body(const isa_body *b) {
  kc_seed(11);
  static const int64_t widths[] = {1, 3, 4, 5, 8, 9, 15, 16, 17, 24, 31, 32, 33, 64, 65, 100, 256, 257};
  double worst = 0.0;
  for (size_t w = 0; w < G_N_ELEMENTS(widths); w++) {
    worst = fmax(worst, check_body(b, 3, widths[w], 10.0, 0));
    worst = fmax(worst, check_body(b, 7, widths[w], 30.0, 1));
  }
  worst = fmax(worst, check_body(b, 40, 1000, 5.0, 1));
  printf("%s: worst error %.3g of the allowed\n", b->name, worst);
  PS_CHECK_MSG(worst <= 1.0, "%s: softmax rows, worst error %.3g of the allowed", b->name, worst);

  /* the exp over its whole range: rows (0, x, ..., x), y_x / y_0 = exp(x) */
  enum { R = 4001, W = 37 };
  g_autofree float *x = g_new(float, R * W), *y = g_new(float, R * W);
  for (int64_t i = 0; i < R; i++) {
    x[i * W] = 0.0f;
    for (int64_t j = 1; j < W; j++) x[i * W + j] = (float)(-87.3 * (double)i / (R - 1));
  }
  b->rows(y, x, R, W);
  double worst_e = 0.0;
  for (int64_t i = 0; i < R; i++) {
    double e = exp((double)x[i * W + 1]);
    for (int64_t j = 1; j < W; j++)
      worst_e = fmax(worst_e, fabs((double)y[i * W + j] / (double)y[i * W] - e) / e);
  }
  /* SSE2 has no FMA: each multiply-add rounds twice */
  double tol = strcmp(b->name, "sse2") == 0 ? 3e-7 : 2e-7;
  PS_CHECK_MSG(worst_e <= tol, "%s: exp worst relative error %.3g", b->name, worst_e);

  /* special values, in the vector body and in the tail (width 21 = 16 + 5,
   * 8 + 8 + 5, 4 * 5 + 1) */
  enum { V = 21 };
  float xs[3 * V], ys[3 * V], l[3];
  for (int i = 0; i < 3 * V; i++) xs[i] = (float)(i % 4) * 0.5f;
  xs[2] = -INFINITY, xs[20] = -INFINITY, xs[5] = -87.5f, xs[19] = -1e30f; /* row 0 */
  xs[V + 3] = NAN;                                                         /* row 1: NaN */
  for (int i = 2 * V; i < 3 * V; i++) xs[i] = -INFINITY;                   /* row 2: all -inf */
  for (int r = 0; r < 3; r++) b->row(ys + r * V, xs + r * V, V, &l[r]);
  double s0 = 0.0;
  for (int i = 0; i < V; i++)
    if (xs[i] > -80.0f) s0 += exp(xs[i] - 1.5);
  for (int i = 0; i < V; i++) {
    if (xs[i] > -80.0f) PS_CHECK_NEAR(ys[i], exp(xs[i] - 1.5) / s0, 1e-7);
    else PS_CHECK_MSG(ys[i] == 0.0f, "%s: element %d of row 0 is %g, not 0", b->name, i, ys[i]);
  }
  PS_CHECK_NEAR(l[0], 1.5 + log(s0), 1e-6);
  for (int i = V; i < 2 * V; i++) PS_CHECK_MSG(isnan(ys[i]), "%s: NaN row", b->name);
  for (int i = 2 * V; i < 3 * V; i++) PS_CHECK(ys[i] == 0.0f);
  PS_CHECK(l[2] == -INFINITY);

  /* exp_shifted_row: exp(x - shift), large arguments capped at exp(88), NaN stays */
  float xe[V], ye[V];
  for (int i = 0; i < V; i++) xe[i] = -20.0f + 2.0f * (float)i;
  xe[4] = 1000.0f, xe[18] = 1000.0f, xe[7] = NAN, xe[20] = -INFINITY;
  b->exp_shifted(ye, xe, 3.0f, V);
  for (int i = 0; i < V; i++) {
    if (i == 7) PS_CHECK(isnan(ye[i]));
    else if (i == 20) PS_CHECK(ye[i] == 0.0f);
    else {
      double e = exp(fmin((double)xe[i] - 3.0, 88.0));
      PS_CHECK_MSG(fabs(ye[i] - e) / e <= 3e-7, "%s: exp_shifted element %d: %g, want %g", b->name,
                   i, ye[i], e);
    }
  }
}

int main(void) {
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && !defined(PS_NO_SIMD_CLONES)
  __builtin_cpu_init();
  const isa_body bodies[] = {
      {"avx512", __builtin_cpu_supports("x86-64-v4"), softmax_row_avx512, softmax_rows_avx512,
       exp_shifted_row_avx512},
      {"avx2", __builtin_cpu_supports("x86-64-v3"), softmax_row_avx2, softmax_rows_avx2,
       exp_shifted_row_avx2},
      {"sse2", 1, softmax_row_sse2, softmax_rows_sse2, exp_shifted_row_sse2},
  };
#else
  const isa_body bodies[] = {
      {"generic", 1, softmax_row_generic, softmax_rows_generic, exp_shifted_row_generic},
  };
#endif
  for (size_t i = 0; i < G_N_ELEMENTS(bodies); i++) {
    if (bodies[i].runs) test_body(&bodies[i]);
    else printf("%s: not run (the CPU lacks it)\n", bodies[i].name);
  }
  return ps_test_finish();
}
