/* test_kernels_softmax.c — the CPU softmax forward on rows wide enough for
 * its 16-float vector path (kernels/cpu/softmax_row.c), where
 * test_kernels_norm_act's narrow rows exercise mostly the scalar tails:
 *  - the exp over its whole range [-87.3, 0], element by element, against
 *    double precision (relative error, not a norm);
 *  - random rows of many widths (vector body, single-vector step, tails),
 *    several rows per call so that the multi-row path with its prefetch runs,
 *    in place and out of place, against a double reference;
 *  - the special values: -inf entries, logits below the float range, NaN
 *    anywhere, all -inf rows, huge logits. */
#include <math.h>

#include "kcheck.h"

static const ps_kernels *K;

/* Rows (0, x, x, ..., x) of width W: y_x / y_0 = exp(x) * (1 + d) with |d| <=
 * 2 float roundings (the two products by 1/sum; the 1/sum itself cancels), so
 * the ratio measures the kernel's exp directly. Returns the worst relative
 * error of exp and (via *worst_p) of the probabilities themselves. */
static double exp_sweep(int64_t W, double *worst_p) {
  enum { R = 20001 };
  g_autofree float *x = g_new(float, R * W), *y = g_new(float, R * W);
  for (int64_t i = 0; i < R; i++) {
    float v = (float)(-87.3 * (double)i / (R - 1));
    x[i * W] = 0.0f;
    for (int64_t j = 1; j < W; j++) x[i * W + j] = v;
  }
  K->softmax_forward(y, x, R, W);
  double worst_e = 0.0;
  *worst_p = 0.0;
  for (int64_t i = 0; i < R; i++) {
    double e = exp((double)x[i * W + 1]), p0 = 1.0 / (1.0 + (double)(W - 1) * e);
    double err0 = fabs(y[i * W] - p0) / p0;
    if (err0 > *worst_p) *worst_p = err0;
    for (int64_t j = 1; j < W; j++) {
      double p = e * p0, err = fabs(y[i * W + j] - p) / p;
      if (err > *worst_p) *worst_p = err;
      double ee = fabs((double)y[i * W + j] / (double)y[i * W] - e) / e;
      if (ee > worst_e) worst_e = ee;
    }
  }
  return worst_e;
}

static void test_exp_range(void) {
  /* 16: one vector; 48: the two-vector loop plus the one-vector step; 53: and
   * a scalar tail (the scalar exp is checked on the same arguments) */
  static const int64_t widths[] = {16, 48, 53};
  for (size_t w = 0; w < G_N_ELEMENTS(widths); w++) {
    double worst_p, worst_e = exp_sweep(widths[w], &worst_p);
    printf("softmax width %" G_GINT64_FORMAT ": exp worst relative error %.3g, "
           "probability %.3g\n",
           widths[w], worst_e, worst_p);
    PS_CHECK_MSG(worst_e <= 2e-7, "exp, width %" G_GINT64_FORMAT ": worst relative error %.3g",
                 widths[w], worst_e);
    /* a few float ulps (6e-8 each): exp ~1 ulp, the sum and the 1/sum scale;
     * the float x - 0 is exact here. (The scalar tail's exp has the same
     * polynomial without the vector path's reassociation freedom.) */
    PS_CHECK_MSG(worst_p <= 8e-7,
                 "probabilities, width %" G_GINT64_FORMAT ": worst relative error %.3g", widths[w],
                 worst_p);
  }
}

/* Rows of random logits in [-range, range), widths around the vector sizes;
 * every element against the double softmax. */
static void check_rows(int64_t N, int64_t C, double range, int in_place) {
  g_autofree double *xd = kc_dvec(N * C, -range, range);
  g_autofree float *x = g_new(float, N * C), *y = g_new(float, N * C);
  for (int64_t i = 0; i < N * C; i++) x[i] = (float)xd[i];
  if (in_place) {
    memcpy(y, x, (size_t)(N * C) * sizeof(float));
    K->softmax_forward(y, y, N, C);
  } else {
    K->softmax_forward(y, x, N, C);
  }
  double worst = 0.0;
  for (int64_t n = 0; n < N; n++) {
    const double *r = xd + n * C;
    double mx = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < C; i++) mx = fmax(mx, r[i]);
    for (int64_t i = 0; i < C; i++) s += exp(r[i] - mx);
    for (int64_t i = 0; i < C; i++) {
      double p = exp(r[i] - mx) / s;
      /* The float x - max is rounded (half an ulp of |x - max|, 6e-8 of it),
       * which moves exp's result by that much relative; on top come the exp
       * (~1 ulp), the sum (a few ulps, more for thousands of terms) and the
       * scale. Probabilities below the float normal range flush to 0. */
      double allowed = 4e-7 + 6e-8 * (mx - r[i]) + (C > 1000 ? 5e-7 : 0.0);
      double err = p < 1e-37 ? fabs(y[n * C + i] - p) / 1.2e-38 : fabs(y[n * C + i] - p) / p / allowed;
      if (err > worst) worst = err;
    }
  }
  PS_CHECK_MSG(worst <= 1.0,
               "softmax %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
               " (%s): worst relative error %.3g of the allowed",
               N, C, in_place ? "in place" : "out of place", worst);
}

static void test_random_rows(void) {
  kc_seed(7);
  static const int64_t widths[] = {1, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 100, 255, 256, 257};
  for (size_t w = 0; w < G_N_ELEMENTS(widths); w++) {
    check_rows(3, widths[w], 8.0, 0);
    check_rows(5, widths[w], 30.0, 1);
  }
  /* enough work for every OpenMP thread to take a span of rows */
  check_rows(600, 256, 10.0, 0);
  check_rows(300, 256, 10.0, 1);
  check_rows(10, 4096, 10.0, 0);
  check_rows(700, 77, 50.0, 0);
}

static void test_special_values(void) {
  enum { W = 40 };
  /* -inf entries in the vector body and in the tail are exactly 0; so are
   * logits more than 87.34 below the max (exp below the float normal range) */
  float x[W], y[W];
  for (int i = 0; i < W; i++) x[i] = (float)(i % 5) * 0.25f;
  x[3] = -INFINITY, x[20] = -INFINITY, x[37] = -INFINITY;
  x[5] = -87.5f, x[21] = -100.0f, x[38] = -1e30f;
  K->softmax_forward(y, x, 1, W);
  double s = 0.0, mx = 1.0;
  for (int i = 0; i < W; i++)
    if (x[i] > -80.0f) s += exp(x[i] - mx);
  for (int i = 0; i < W; i++) {
    if (x[i] > -80.0f) PS_CHECK_NEAR(y[i], exp(x[i] - mx) / s, 1e-7);
    else PS_CHECK(y[i] == 0.0f);
  }
  /* a NaN anywhere (vector body or tail) makes its row NaN: non-finite
   * losses must surface; the other rows are untouched by it */
  for (int pos = 0; pos < 2; pos++) {
    float xn[2 * W], yn[2 * W];
    for (int i = 0; i < 2 * W; i++) xn[i] = (float)(i % 7) * 0.5f;
    xn[pos ? 38 : 9] = NAN;
    K->softmax_forward(yn, xn, 2, W);
    for (int i = 0; i < W; i++) PS_CHECK(isnan(yn[i]));
    double s2 = 0.0;
    for (int i = W; i < 2 * W; i++) s2 += exp(xn[i] - 3.0);
    for (int i = W; i < 2 * W; i++) PS_CHECK_NEAR(yn[i], exp(xn[i] - 3.0) / s2, 1e-7);
  }
  /* a row of only -inf gives zeros, not NaN, and does not disturb its neighbours */
  float xm[3 * W], ym[3 * W];
  for (int i = 0; i < 3 * W; i++) xm[i] = i / W == 1 ? -INFINITY : 0.0f;
  K->softmax_forward(ym, xm, 3, W);
  for (int i = 0; i < 3 * W; i++) PS_CHECK(ym[i] == (i / W == 1 ? 0.0f : 1.0f / W));
  /* huge logits do not overflow */
  float xb[W], yb[W];
  for (int i = 0; i < W; i++) xb[i] = -1e4f;
  xb[17] = 1e4f, xb[30] = 1e4f - 1.0f;
  K->softmax_forward(yb, xb, 1, W);
  PS_CHECK_NEAR(yb[17], 1.0 / (1.0 + exp(-1.0)), 1e-6);
  PS_CHECK_NEAR(yb[30], exp(-1.0) / (1.0 + exp(-1.0)), 1e-6);
  PS_CHECK(yb[0] == 0.0f && yb[39] == 0.0f);
}

int main(void) {
  g_autoptr(GError) err = NULL;
  K = ps_kernels_get(PS_DEVICE_CPU, &err);
  PS_CHECK(K != NULL);
  if (!K) return ps_test_finish();
  test_exp_range();
  test_random_rows();
  test_special_values();
  return ps_test_finish();
}
