/* test_stain_units.c — the RandStainNA pieces the fixtures do not cover:
 * image statistics (plain and mask-weighted), template fitting (population
 * std, 3-decimal rounding, normal vs Laplace by histogram SSE), sampling
 * (draw order, determinism, the three distributions, std_hyper, probability),
 * the transform's edge cases and the RandStainNA++ blend. Expected values
 * come from closed forms or from straightforward double-precision
 * re-computations written here, never from the code's own earlier output. */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>

#include "lab_opencv.h"
#include "ps_test.h"
#include "randstainna.h"

/* ---------------------------------------------------------------------- */
/* Statistics */

static void test_stats(void) {
  /* channel 0: 0..9, channel 1: constant 7, channel 2: 0/200 alternating */
  uint8_t lab[10 * 3];
  for (int i = 0; i < 10; i++) {
    lab[i * 3] = (uint8_t)i;
    lab[i * 3 + 1] = 7;
    lab[i * 3 + 2] = i % 2 ? 200 : 0;
  }
  double m[3], s[3];
  PS_CHECK(ps_stain_lab_stats(lab, 10, NULL, FALSE, m, s));
  PS_CHECK_NEAR(m[0], 4.5, 0);
  PS_CHECK_NEAR(s[0], sqrt(8.25), 1e-15); /* population variance of 0..9 = 8.25 */
  PS_CHECK_NEAR(m[1], 7.0, 0);
  PS_CHECK_NEAR(s[1], 0.0, 0);
  PS_CHECK_NEAR(m[2], 100.0, 0);
  PS_CHECK_NEAR(s[2], 100.0, 1e-13);

  /* All-one weights give the plain statistics; 0/1 weights a subset. */
  float w[10];
  for (int i = 0; i < 10; i++) w[i] = 1.0f;
  double wm[3], ws[3];
  PS_CHECK(ps_stain_lab_stats(lab, 10, w, FALSE, wm, ws));
  for (int c = 0; c < 3; c++) {
    PS_CHECK_NEAR(wm[c], m[c], 1e-15);
    PS_CHECK_NEAR(ws[c], s[c], 1e-13);
  }
  for (int i = 0; i < 10; i++) w[i] = i < 4 ? 1.0f : 0.0f; /* pixels 0..3 */
  PS_CHECK(ps_stain_lab_stats(lab, 10, w, FALSE, wm, ws));
  PS_CHECK_NEAR(wm[0], 1.5, 1e-15);
  PS_CHECK_NEAR(ws[0], sqrt(1.25), 1e-15);
  PS_CHECK(ps_stain_lab_stats(lab, 10, w, TRUE, wm, ws)); /* complement: pixels 4..9 */
  PS_CHECK_NEAR(wm[0], 6.5, 1e-15);
  PS_CHECK_NEAR(ws[0], sqrt(35.0 / 12.0), 1e-14);
  /* Soft weights: weighted mean and variance by their definitions. */
  double sw = 0, swx = 0;
  for (int i = 0; i < 10; i++) {
    w[i] = (float)(i + 1) / 10.0f;
    sw += w[i];
    swx += (double)w[i] * i;
  }
  double wmean = swx / sw, wvar = 0;
  for (int i = 0; i < 10; i++) wvar += (double)w[i] * (i - wmean) * (i - wmean);
  PS_CHECK(ps_stain_lab_stats(lab, 10, w, FALSE, wm, ws));
  PS_CHECK_NEAR(wm[0], wmean, 1e-13);
  PS_CHECK_NEAR(ws[0], sqrt(wvar / sw), 1e-13);
  /* Undefined: no pixels, or zero total weight. */
  for (int i = 0; i < 10; i++) w[i] = 0.0f;
  PS_CHECK(!ps_stain_lab_stats(lab, 10, w, FALSE, wm, ws));
  PS_CHECK(!ps_stain_lab_stats(lab, 0, NULL, FALSE, wm, ws));
}

/* ---------------------------------------------------------------------- */
/* Template fitting */

/* numpy.histogram(x, 100, density=True) + the fitted pdf, straight from the
 * definitions (np.linspace edges, the last bin closed). */
static double reference_sse(const double *x, size_t n, gboolean laplace) {
  double lo = INFINITY, hi = -INFINITY, mean = 0;
  for (size_t i = 0; i < n; i++) {
    lo = fmin(lo, x[i]);
    hi = fmax(hi, x[i]);
    mean += x[i] / n;
  }
  double counts[100] = {0};
  for (size_t i = 0; i < n; i++) {
    int b = 99;
    for (int k = 0; k < 100; k++)
      if (x[i] < lo + (hi - lo) * (k + 1) / 100.0) {
        b = k;
        break;
      }
    counts[b]++;
  }
  double loc = mean, scale = 0;
  if (laplace) {
    /* median by counting */
    double *s = g_memdup2(x, n * sizeof *x);
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        if (s[j] < s[i]) {
          double t = s[i];
          s[i] = s[j];
          s[j] = t;
        }
    loc = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
    g_free(s);
    for (size_t i = 0; i < n; i++) scale += fabs(x[i] - loc) / n;
  } else {
    for (size_t i = 0; i < n; i++) scale += (x[i] - mean) * (x[i] - mean) / n;
    scale = sqrt(scale);
  }
  double width = (hi - lo) / 100.0, sse = 0;
  for (int k = 0; k < 100; k++) {
    double c = lo + (k + 0.5) * width;
    double pdf = laplace ? exp(-fabs(c - loc) / scale) / (2 * scale)
                         : exp(-0.5 * pow((c - loc) / scale, 2)) / (scale * sqrt(2 * G_PI));
    double d = counts[k] / (n * width) - pdf;
    sse += d * d;
  }
  return sse;
}

static void test_fit(void) {
  /* Population std and rounding: means 1, 2, 3, 4 -> 2.5 and sqrt(1.25) =
   * 1.1180339..., rounded 1.118; stds 0.1234, 0.1236 -> 0.1235 -> 0.123 or
   * 0.124 (numpy rounds half to even on the scaled value: 123.5 -> 124). */
  const size_t n = 4;
  double means[4 * 3], stds[4 * 3];
  for (size_t i = 0; i < n; i++) {
    for (int c = 0; c < 3; c++) {
      means[i * 3 + c] = (double)(i + 1) + 10.0 * c;
      stds[i * 3 + c] = 2.0;
    }
  }
  stds[0] = 0.12345;
  stds[3] = 0.12345;
  stds[6] = 0.12345;
  stds[9] = 0.12345;
  ps_stain_template t;
  GError *err = NULL;
  PS_CHECK_OK(ps_stain_template_fit(means, stds, n, &t, &err), err);
  PS_CHECK_NEAR(t.avg_mean[0], 2.5, 0);
  PS_CHECK_NEAR(t.avg_std[0], 1.118, 1e-12);
  PS_CHECK_NEAR(t.avg_mean[2], 22.5, 0);
  PS_CHECK_NEAR(t.std_mean[0], 0.123, 1e-12); /* 0.12345 -> 0.123 */
  PS_CHECK_NEAR(t.std_std[0], 0.0, 0);
  PS_CHECK(t.std_dist[0] == PS_STAIN_NORMAL); /* no spread: normal */

  /* Normal vs Laplace on large samples of each (inverse CDFs here). */
  const size_t m = 3000;
  double *nx = g_new(double, m * 3), *lx = g_new(double, m * 3);
  ps_rng rng;
  ps_rng_seed(&rng, 42);
  for (size_t i = 0; i < m; i++) {
    for (int c = 0; c < 3; c++) {
      double u1 = ps_rng_uniform_f64(&rng) + 1e-300, u2 = ps_rng_uniform_f64(&rng);
      nx[i * 3 + c] = 150.0 + 10.0 * sqrt(-2 * log(u1)) * cos(2 * G_PI * u2);
      double u = ps_rng_uniform_f64(&rng) - 0.5;
      lx[i * 3 + c] = 8.0 - 3.0 * (u < 0 ? -1 : 1) * log(1 - 2 * fabs(u) + 1e-300);
    }
  }
  PS_CHECK_OK(ps_stain_template_fit(nx, lx, m, &t, &err), err);
  for (int c = 0; c < 3; c++) {
    PS_CHECK_MSG(t.avg_dist[c] == PS_STAIN_NORMAL, "channel %d: normal sample fitted as %s", c,
                 ps_stain_dist_name(t.avg_dist[c]));
    PS_CHECK_MSG(t.std_dist[c] == PS_STAIN_LAPLACE, "channel %d: Laplace sample fitted as %s", c,
                 ps_stain_dist_name(t.std_dist[c]));
    PS_CHECK_NEAR(t.avg_mean[c], 150.0, 1.0);
    PS_CHECK_NEAR(t.avg_std[c], 10.0, 0.5);
    PS_CHECK_NEAR(t.std_std[c], 3.0 * sqrt(2.0), 0.3); /* Laplace std = b sqrt(2) */
  }
  /* The SSE itself against the reference computation. */
  double col[3000];
  for (size_t i = 0; i < m; i++) col[i] = lx[i * 3];
  PS_CHECK_NEAR(ps_stain_fit_sse(col, m, PS_STAIN_LAPLACE), reference_sse(col, m, TRUE), 1e-12);
  PS_CHECK_NEAR(ps_stain_fit_sse(col, m, PS_STAIN_NORMAL), reference_sse(col, m, FALSE), 1e-12);
  g_free(nx);
  g_free(lx);

  /* The YAML names the distributions as the reference files do. */
  g_autofree char *yaml = ps_stain_template_to_yaml(&t);
  PS_CHECK(strstr(yaml, "color_space: LAB") && strstr(yaml, "distribution: laplace") &&
           strstr(yaml, "distribution: norm"));

  PS_CHECK_FAILS_WITH(ps_stain_template_fit(means, stds, 0, &t, &err), err, "no image");
  means[4] = NAN;
  PS_CHECK_FAILS_WITH(ps_stain_template_fit(means, stds, n, &t, &err), err, "image 1");
}

/* ---------------------------------------------------------------------- */
/* Sampling */

static void test_sample_order(void) {
  ps_stain_template t;
  ps_stain_template_crc(&t);
  ps_rng a, b;
  ps_rng_seed(&a, 2024);
  b = a;
  double tm[3], ts[3];
  PS_CHECK(ps_stain_sample(&t, -0.3, 1.0, PS_STAIN_NORMAL, &a, tm, ts));
  /* The same stream by hand: probability uniform, then mean/std per channel. */
  PS_CHECK(ps_rng_uniform_f64(&b) < 1.0);
  for (int c = 0; c < 3; c++) {
    double em = t.avg_mean[c] + t.avg_std[c] * 0.7 * ps_rng_normal(&b);
    double es = t.std_mean[c] + t.std_std[c] * 0.7 * ps_rng_normal(&b);
    PS_CHECK_NEAR(tm[c], em, 1e-12);
    PS_CHECK_NEAR(ts[c], es, 1e-12);
  }
  PS_CHECK(memcmp(&a, &b, sizeof a) == 0); /* nothing else was drawn */

  /* probability 0: one uniform, then nothing. */
  ps_rng_seed(&a, 5);
  b = a;
  PS_CHECK(!ps_stain_sample(&t, 0, 0.0, PS_STAIN_NORMAL, &a, tm, ts));
  ps_rng_uniform_f64(&b);
  PS_CHECK(memcmp(&a, &b, sizeof a) == 0);

  /* Determinism: the same seed gives the same templates. */
  ps_rng_seed(&a, 77);
  ps_rng_seed(&b, 77);
  double tm2[3], ts2[3];
  for (int k = 0; k < 5; k++) {
    ps_stain_sample(&t, 0, 1.0, PS_STAIN_LAPLACE, &a, tm, ts);
    ps_stain_sample(&t, 0, 1.0, PS_STAIN_LAPLACE, &b, tm2, ts2);
    PS_CHECK(memcmp(tm, tm2, sizeof tm) == 0 && memcmp(ts, ts2, sizeof ts) == 0);
  }
}

/* Moments of many draws of the L mean: mean, variance, excess kurtosis. */
static void moments(ps_stain_dist d, double std_hyper, double p, double out[4]) {
  ps_stain_template t;
  ps_stain_template_crc(&t);
  ps_rng rng;
  ps_rng_seed(&rng, 9);
  const int n = 200000;
  double s1 = 0, s2 = 0, s4 = 0, lo = INFINITY, hi = -INFINITY;
  double *x = g_new(double, n);
  int drawn = 0;
  for (int i = 0; i < n; i++) {
    double tm[3], ts[3];
    if (!ps_stain_sample(&t, std_hyper, p, d, &rng, tm, ts)) continue;
    x[drawn++] = tm[1]; /* A channel: avg 151.187, std 10.958, fitted Laplace */
  }
  for (int i = 0; i < drawn; i++) s1 += x[i];
  double m = s1 / drawn;
  for (int i = 0; i < drawn; i++) {
    double e = x[i] - m;
    s2 += e * e;
    s4 += e * e * e * e;
    lo = fmin(lo, x[i]);
    hi = fmax(hi, x[i]);
  }
  double var = s2 / drawn;
  out[0] = m;
  out[1] = var;
  out[2] = (s4 / drawn) / (var * var) - 3.0;
  out[3] = (double)drawn / n;
  if (d == PS_STAIN_UNIFORM) {
    PS_CHECK(lo >= 151.187 - 3 * 10.958 && hi <= 151.187 + 3 * 10.958);
  }
  g_free(x);
}

static void test_sample_distributions(void) {
  const double mu = 151.187, sd = 10.958;
  double r[4];
  moments(PS_STAIN_NORMAL, 0.0, 1.0, r);
  PS_CHECK_NEAR(r[0], mu, 0.15);
  PS_CHECK_NEAR(sqrt(r[1]), sd, 0.1);
  PS_CHECK_NEAR(r[2], 0.0, 0.1);
  moments(PS_STAIN_NORMAL, -0.5, 1.0, r); /* std_hyper scales the spread */
  PS_CHECK_NEAR(sqrt(r[1]), 0.5 * sd, 0.05);
  moments(PS_STAIN_LAPLACE, 0.0, 1.0, r); /* variance 2 b^2, excess kurtosis 3 */
  PS_CHECK_NEAR(r[0], mu, 0.2);
  PS_CHECK_NEAR(sqrt(r[1]), sqrt(2.0) * sd, 0.15);
  PS_CHECK_NEAR(r[2], 3.0, 0.3);
  moments(PS_STAIN_UNIFORM, 5.0, 1.0, r); /* +-3 std, std_hyper unused: var 3 sd^2 */
  PS_CHECK_NEAR(sqrt(r[1]), sqrt(3.0) * sd, 0.1);
  PS_CHECK_NEAR(r[2], -1.2, 0.05);
  moments(PS_STAIN_FITTED, 0.0, 1.0, r); /* A.avg is fitted Laplace in the CRC template */
  PS_CHECK_NEAR(r[2], 3.0, 0.3);
  moments(PS_STAIN_NORMAL, 0.0, 0.25, r);
  PS_CHECK_NEAR(r[3], 0.25, 0.01);
}

/* ---------------------------------------------------------------------- */
/* Transform and blend */

static void test_transform(void) {
  uint8_t lab[6 * 3], out[6 * 3];
  for (int i = 0; i < 6; i++) {
    lab[i * 3] = (uint8_t)(40 * i);
    lab[i * 3 + 1] = 128; /* constant channel */
    lab[i * 3 + 2] = (uint8_t)(100 + i);
  }
  double m[3], s[3];
  PS_CHECK(ps_stain_lab_stats(lab, 6, NULL, FALSE, m, s));
  const double tm[3] = {120.7, 140.2, 110.0}, ts[3] = {30.0, 5.0, -3.0};
  ps_stain_transform_lab(lab, 6, m, s, tm, ts, 1e-4, out);
  for (int i = 0; i < 6; i++) {
    for (int c = 0; c < 3; c++) {
      double sc = fmin(fmax(s[c], 1e-4), 255.0);
      double x = (lab[i * 3 + c] - m[c]) * (ts[c] / sc) + tm[c];
      x = fmin(fmax(x, 0.0), 255.0);
      PS_CHECK_MSG(out[i * 3 + c] == (uint8_t)floor(x), "pixel %d ch %d: %d vs %g", i, c,
                   out[i * 3 + c], x);
    }
    PS_CHECK(out[i * 3 + 1] == 140); /* constant channel collapses to trunc(tar_mean) */
  }
  /* a negative target std flips the contrast */
  PS_CHECK(out[0 * 3 + 2] > out[5 * 3 + 2]);
  /* In place works. */
  ps_stain_transform_lab(lab, 6, m, s, tm, ts, 1e-4, lab);
  PS_CHECK(memcmp(lab, out, sizeof out) == 0);
}

static void test_blend(void) {
  const size_t n = 64;
  uint8_t fg[64 * 3], bg[64 * 3], out[64 * 3];
  float mask[64];
  for (size_t i = 0; i < n * 3; i++) {
    fg[i] = (uint8_t)(i * 7);
    bg[i] = (uint8_t)(255 - i * 3);
  }
  for (size_t i = 0; i < n; i++) mask[i] = (float)i / 63.0f;
  ps_stain_blend(fg, bg, mask, n, out);
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) {
      double v = fg[i * 3 + c] * (double)mask[i] + bg[i * 3 + c] * (1.0 - (double)mask[i]);
      PS_CHECK(out[i * 3 + c] == (uint8_t)floor(v));
    }
  PS_CHECK(memcmp(out, bg, 3) == 0 && memcmp(out + 63 * 3, fg + 63 * 3, 3) == 0);

  /* Mask-weighted augmentation: all-one weights = unweighted. */
  uint8_t rgb[64 * 3], a[64 * 3], b[64 * 3], scratch[64 * 3];
  for (size_t i = 0; i < n * 3; i++) rgb[i] = (uint8_t)((i * 37) % 251);
  float ones[64];
  for (size_t i = 0; i < n; i++) ones[i] = 1.0f;
  const double tm[3] = {150, 150, 120}, ts[3] = {30, 8, 6};
  PS_CHECK(ps_stain_augment_rgb(rgb, n, NULL, FALSE, tm, ts, 1e-4, scratch, a));
  PS_CHECK(ps_stain_augment_rgb(rgb, n, ones, FALSE, tm, ts, 1e-4, scratch, b));
  PS_CHECK(memcmp(a, b, sizeof a) == 0);
  /* ...and the complement of all-ones is empty: undefined, output untouched */
  memset(b, 1, sizeof b);
  PS_CHECK(!ps_stain_augment_rgb(rgb, n, ones, TRUE, tm, ts, 1e-4, scratch, b));
  PS_CHECK(b[0] == 1 && b[100] == 1);
}

static void test_dist_names(void) {
  ps_stain_dist d;
  PS_CHECK(ps_stain_dist_from_name("norm", &d) && d == PS_STAIN_NORMAL);
  PS_CHECK(ps_stain_dist_from_name("normal", &d) && d == PS_STAIN_NORMAL);
  PS_CHECK(ps_stain_dist_from_name("laplace", &d) && d == PS_STAIN_LAPLACE);
  PS_CHECK(ps_stain_dist_from_name("uniform", &d) && d == PS_STAIN_UNIFORM);
  PS_CHECK(!ps_stain_dist_from_name("t", &d));
}

int main(void) {
  test_stats();
  test_fit();
  test_sample_order();
  test_sample_distributions();
  test_transform();
  test_blend();
  test_dist_names();
  return ps_test_finish();
}
