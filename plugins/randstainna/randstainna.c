/* randstainna.c — RandStainNA statistics, template fitting, sampling and the
 * Lab transform (see randstainna.h; spec/algorithms.md §1a-§1d). */
#include "randstainna.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "lab_opencv.h"

gboolean ps_stain_dist_from_name(const char *name, ps_stain_dist *out) {
  if (!name) return FALSE;
  if (strcmp(name, "normal") == 0 || strcmp(name, "norm") == 0)
    *out = PS_STAIN_NORMAL;
  else if (strcmp(name, "laplace") == 0)
    *out = PS_STAIN_LAPLACE;
  else if (strcmp(name, "uniform") == 0)
    *out = PS_STAIN_UNIFORM;
  else if (strcmp(name, "fitted") == 0)
    *out = PS_STAIN_FITTED;
  else
    return FALSE;
  return TRUE;
}

const char *ps_stain_dist_name(ps_stain_dist d) {
  switch (d) {
  case PS_STAIN_NORMAL:
    return "norm";
  case PS_STAIN_LAPLACE:
    return "laplace";
  case PS_STAIN_UNIFORM:
    return "uniform";
  case PS_STAIN_FITTED:
    return "fitted";
  }
  return "?";
}

void ps_stain_template_crc(ps_stain_template *t) {
  static const ps_stain_template crc = {
      .avg_mean = {158.033, 151.187, 116.812},
      .avg_std = {48.792, 10.958, 6.643},
      .std_mean = {36.899, 8.134, 6.129},
      .std_std = {14.383, 2.822, 2.013},
      .avg_dist = {PS_STAIN_NORMAL, PS_STAIN_LAPLACE, PS_STAIN_NORMAL},
      .std_dist = {PS_STAIN_NORMAL, PS_STAIN_LAPLACE, PS_STAIN_NORMAL},
  };
  *t = crc;
}

/* ---------------------------------------------------------------------- */
/* Image statistics. */

gboolean ps_stain_lab_stats(const uint8_t *lab, size_t n, const float *weight, gboolean complement,
                            double mean[3], double std[3]) {
  if (n == 0) return FALSE;
  /* A value histogram per channel: the sums below are then over 256 terms,
   * exact for the plain mean (integer sum / n, as numpy gets it). */
  double hist[3][256];
  memset(hist, 0, sizeof hist);
  double wsum = 0.0;
  if (weight) {
    for (size_t i = 0; i < n; i++) {
      double w = complement ? 1.0 - (double)weight[i] : (double)weight[i];
      if (!(w > 0.0)) continue; /* also drops NaN */
      wsum += w;
      for (int c = 0; c < 3; c++) hist[c][lab[i * 3 + c]] += w;
    }
    if (!(wsum > 0.0)) return FALSE;
  } else {
    uint64_t counts[3][256];
    memset(counts, 0, sizeof counts);
    for (size_t i = 0; i < n; i++)
      for (int c = 0; c < 3; c++) counts[c][lab[i * 3 + c]]++;
    for (int c = 0; c < 3; c++)
      for (int v = 0; v < 256; v++) hist[c][v] = (double)counts[c][v];
    wsum = (double)n;
  }
  for (int c = 0; c < 3; c++) {
    double s = 0.0;
    for (int v = 0; v < 256; v++) s += hist[c][v] * v;
    double m = s / wsum, q = 0.0;
    for (int v = 0; v < 256; v++) q += hist[c][v] * (v - m) * (v - m);
    mean[c] = m;
    std[c] = sqrt(q / wsum);
  }
  return TRUE;
}

gboolean ps_stain_rgb_stats(const uint8_t *rgb, size_t n, uint8_t *scratch, double mean[3],
                            double std[3]) {
  ps_lab_from_rgb_u8(rgb, scratch, n, PS_LAB_RGB);
  return ps_stain_lab_stats(scratch, n, NULL, FALSE, mean, std);
}

/* ---------------------------------------------------------------------- */
/* Template fitting. */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

enum { FIT_BINS = 100 };

double ps_stain_fit_sse(const double *x, size_t n, ps_stain_dist dist) {
  double lo = x[0], hi = x[0], sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    lo = fmin(lo, x[i]);
    hi = fmax(hi, x[i]);
    sum += x[i];
  }
  if (!(hi > lo)) return INFINITY;
  /* Density histogram over [lo, hi], numpy's rule: the last bin is closed. */
  double counts[FIT_BINS] = {0};
  double width = (hi - lo) / FIT_BINS;
  for (size_t i = 0; i < n; i++) {
    long b = (long)((x[i] - lo) / (hi - lo) * FIT_BINS);
    b = b < 0 ? 0 : b >= FIT_BINS ? FIT_BINS - 1 : b;
    counts[b] += 1.0;
  }
  /* Maximum-likelihood parameters, as scipy's norm.fit / laplace.fit. */
  double loc, scale;
  if (dist == PS_STAIN_LAPLACE) {
    double *s = g_new(double, n);
    memcpy(s, x, n * sizeof *s);
    qsort(s, n, sizeof *s, cmp_double);
    loc = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    g_free(s);
    scale = 0.0;
    for (size_t i = 0; i < n; i++) scale += fabs(x[i] - loc);
    scale /= (double)n;
  } else {
    loc = sum / (double)n;
    scale = 0.0;
    for (size_t i = 0; i < n; i++) scale += (x[i] - loc) * (x[i] - loc);
    scale = sqrt(scale / (double)n);
  }
  if (!(scale > 0.0)) return INFINITY;
  double sse = 0.0;
  for (int b = 0; b < FIT_BINS; b++) {
    double c = lo + (b + 0.5) * width;
    double pdf = dist == PS_STAIN_LAPLACE ? exp(-fabs(c - loc) / scale) / (2.0 * scale)
                                          : exp(-0.5 * ((c - loc) / scale) * ((c - loc) / scale)) /
                                                (scale * sqrt(2.0 * G_PI));
    double dens = counts[b] / ((double)n * width);
    sse += (dens - pdf) * (dens - pdf);
  }
  return sse;
}

static double round3(double v) {
  return nearbyint(v * 1000.0) / 1000.0;
}

static void fit_list(const double *x, size_t n, double *mean, double *std, ps_stain_dist *dist) {
  double s = 0.0;
  for (size_t i = 0; i < n; i++) s += x[i];
  double m = s / (double)n, q = 0.0;
  for (size_t i = 0; i < n; i++) q += (x[i] - m) * (x[i] - m);
  *mean = round3(m);
  *std = round3(sqrt(q / (double)n));
  double e_norm = ps_stain_fit_sse(x, n, PS_STAIN_NORMAL);
  double e_lap = ps_stain_fit_sse(x, n, PS_STAIN_LAPLACE);
  /* Ties (and a list with no spread) keep the normal, fitter's first candidate. */
  *dist = e_lap < e_norm ? PS_STAIN_LAPLACE : PS_STAIN_NORMAL;
}

gboolean ps_stain_template_fit(const double *means, const double *stds, size_t n,
                               ps_stain_template *out, GError **error) {
  if (n == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "RandStainNA template: no image statistics to fit");
    return FALSE;
  }
  for (size_t i = 0; i < n * 3; i++) {
    if (!isfinite(means[i]) || !isfinite(stds[i])) {
      g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                  "RandStainNA template: image %zu has a non-finite statistic", i / 3);
      return FALSE;
    }
  }
  double *col = g_new(double, n);
  for (int c = 0; c < 3; c++) {
    for (size_t i = 0; i < n; i++) col[i] = means[i * 3 + c];
    fit_list(col, n, &out->avg_mean[c], &out->avg_std[c], &out->avg_dist[c]);
    for (size_t i = 0; i < n; i++) col[i] = stds[i * 3 + c];
    fit_list(col, n, &out->std_mean[c], &out->std_std[c], &out->std_dist[c]);
  }
  g_free(col);
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Sampling. */

/* numpy's legacy laplace: one uniform, inverse CDF by halves. */
static double draw_laplace(ps_rng *rng, double loc, double scale) {
  double u;
  do u = ps_rng_uniform_f64(rng);
  while (u == 0.0);
  return u >= 0.5 ? loc - scale * log(2.0 - u - u) : loc + scale * log(u + u);
}

static double draw(ps_rng *rng, ps_stain_dist d, double mean, double std, double std_hyper) {
  switch (d) {
  case PS_STAIN_LAPLACE:
    return draw_laplace(rng, mean, std * (1.0 + std_hyper));
  case PS_STAIN_UNIFORM: {
    double lo = mean - 3.0 * std, hi = mean + 3.0 * std;
    return lo + (hi - lo) * ps_rng_uniform_f64(rng);
  }
  default:
    return mean + std * (1.0 + std_hyper) * ps_rng_normal(rng);
  }
}

gboolean ps_stain_sample(const ps_stain_template *t, double std_hyper, double probability,
                         ps_stain_dist dist, ps_rng *rng, double tar_mean[3], double tar_std[3]) {
  if (!(ps_rng_uniform_f64(rng) < probability)) return FALSE;
  for (int c = 0; c < 3; c++) {
    ps_stain_dist da = dist == PS_STAIN_FITTED ? t->avg_dist[c] : dist;
    ps_stain_dist ds = dist == PS_STAIN_FITTED ? t->std_dist[c] : dist;
    tar_mean[c] = draw(rng, da, t->avg_mean[c], t->avg_std[c], std_hyper);
    tar_std[c] = draw(rng, ds, t->std_mean[c], t->std_std[c], std_hyper);
  }
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* The transform. */

void ps_stain_transform_lab(const uint8_t *lab, size_t n, const double img_mean[3],
                            const double img_std[3], const double tar_mean[3],
                            const double tar_std[3], double std_min, uint8_t *out) {
  /* Each channel maps 256 input values: build the map once, in the
   * reference's double arithmetic, then the pixel loop is a lookup. */
  uint8_t map[3][256];
  for (int c = 0; c < 3; c++) {
    double s = img_std[c];
    s = s < std_min ? std_min : s > 255.0 ? 255.0 : s;
    double gain = tar_std[c] / s;
    for (int v = 0; v < 256; v++) {
      double x = ((double)v - img_mean[c]) * gain + tar_mean[c];
      x = x > 0.0 ? (x < 255.0 ? x : 255.0) : 0.0; /* NaN -> 0 */
      map[c][v] = (uint8_t)x;                      /* truncation, as astype(uint8) */
    }
  }
  for (size_t i = 0; i < n; i++)
    for (int c = 0; c < 3; c++) out[i * 3 + c] = map[c][lab[i * 3 + c]];
}

gboolean ps_stain_augment_rgb(const uint8_t *rgb, size_t n, const float *weight,
                              gboolean complement, const double tar_mean[3],
                              const double tar_std[3], double std_min, uint8_t *scratch,
                              uint8_t *out) {
  double m[3], s[3];
  ps_lab_from_rgb_u8(rgb, scratch, n, PS_LAB_RGB);
  if (!ps_stain_lab_stats(scratch, n, weight, complement, m, s)) return FALSE;
  ps_stain_transform_lab(scratch, n, m, s, tar_mean, tar_std, std_min, scratch);
  ps_lab_to_rgb_u8(scratch, out, n, PS_LAB_RGB);
  return TRUE;
}

void ps_stain_blend(const uint8_t *fg, const uint8_t *bg, const float *mask, size_t n,
                    uint8_t *out) {
  for (size_t i = 0; i < n; i++) {
    double m = mask[i];
    m = m > 0.0 ? (m < 1.0 ? m : 1.0) : 0.0;
    for (int c = 0; c < 3; c++) {
      double v = fg[i * 3 + c] * m + bg[i * 3 + c] * (1.0 - m);
      out[i * 3 + c] = (uint8_t)(v < 255.0 ? v : 255.0);
    }
  }
}

char *ps_stain_template_to_yaml(const ps_stain_template *t) {
  GString *s = g_string_new("random: true\ncolor_space: LAB\nmethods: Reinhard\n");
  static const char *names[3] = {"L", "A", "B"};
  for (int c = 0; c < 3; c++) {
    g_string_append_printf(s,
                           "%s:\n  avg:\n    mean: %.3f\n    std: %.3f\n    distribution: %s\n"
                           "  std:\n    mean: %.3f\n    std: %.3f\n    distribution: %s\n",
                           names[c], t->avg_mean[c], t->avg_std[c],
                           ps_stain_dist_name(t->avg_dist[c]), t->std_mean[c], t->std_std[c],
                           ps_stain_dist_name(t->std_dist[c]));
  }
  return g_string_free(s, FALSE);
}
