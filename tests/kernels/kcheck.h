/* kcheck.h — shared helpers of the kernel tests: deterministic random data,
 * float <-> double copies, error norms, and the finite-difference gradient
 * check.
 *
 * How the checks work. Every op has a straightforward double-precision
 * reference forward written in its test. The f32 forward is compared with it
 * by the normalised max error  max|f32 - ref| / max|ref|  (so tolerances are
 * relative to the output's scale). For backward, the scalar loss
 * L = sum(dout * ref_forward(inputs)) is differentiated by central finite
 * differences IN DOUBLE (step 1e-5, truncation error ~1e-10 relative), and the
 * f32 backward must match that to ~1e-4 of the gradient's scale: float32 has
 * a 6e-8 unit roundoff and the reductions here are over at most a few
 * thousand terms, so a correct kernel lands around 1e-6 .. 1e-5 while a wrong
 * formula is off by O(1). Gradient buffers are pre-filled with 0.25 and the
 * check subtracts it, which also verifies that backward ADDS. */
#pragma once

#include <glib.h>
#include <math.h>
#include <pathseg/kernels.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ps_test.h"

#define KC_PREFILL 0.25f

/* ---- data ---- */

static uint64_t kc_state = 0x9E3779B97F4A7C15ull;
static inline void kc_seed(uint64_t s) {
  kc_state = s * 0x9E3779B97F4A7C15ull + 1;
}
static inline double kc_uniform(void) { /* [0, 1), splitmix64 */
  uint64_t z = (kc_state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * (1.0 / 9007199254740992.0);
}
/* Uniform in [lo, hi), rounded to float so f32 and f64 inputs are identical. */
static inline double kc_rand(double lo, double hi) {
  return (float)(lo + (hi - lo) * kc_uniform());
}

static inline double *kc_dvec(int64_t n, double lo, double hi) {
  double *v = g_new(double, n > 0 ? n : 1);
  for (int64_t i = 0; i < n; i++) v[i] = kc_rand(lo, hi);
  return v;
}
static inline double *kc_dzeros(int64_t n) {
  return g_new0(double, n > 0 ? n : 1);
}
static inline float *kc_fzeros(int64_t n) {
  return g_new0(float, n > 0 ? n : 1);
}
static inline float *kc_ffill(int64_t n, float v) {
  float *f = g_new(float, n > 0 ? n : 1);
  for (int64_t i = 0; i < n; i++) f[i] = v;
  return f;
}
static inline float *kc_f32(const double *d, int64_t n) {
  float *f = g_new(float, n > 0 ? n : 1);
  for (int64_t i = 0; i < n; i++) f[i] = (float)d[i];
  return f;
}

/* ---- comparisons ---- */

/* max|a - b| / max(max|b|, floor) */
static inline double kc_err(const float *a, const double *b, int64_t n, double floor_) {
  double md = 0.0, mb = floor_;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= md)) md = d; /* also catches NaN */
    if (fabs(b[i]) > mb) mb = fabs(b[i]);
  }
  return md / mb;
}

#define KC_EXPECT(name, err, tol)                                                                  \
  PS_CHECK_MSG((err) <= (tol), "%s: normalised error %.3g > %.3g", (name), (double)(err),          \
               (double)(tol))

/* Forward: f32 output vs double reference. */
static inline void kc_check_fwd(const char *name, const float *got, const double *ref, int64_t n,
                                double tol) {
  KC_EXPECT(name, kc_err(got, ref, n, 1e-30), tol);
}

/* ---- finite differences ---- */

/* A problem: inputs (double), a reference forward writing `out`, and the
 * weights `dout` that define the scalar loss sum(dout * out). */
typedef struct kc_problem {
  int n_in;
  double *in[10];
  int64_t in_n[10];
  double *out;
  int64_t out_n;
  double *dout;
  void (*forward)(struct kc_problem *p);
  const void *ctx;
} kc_problem;

static inline double kc_loss(kc_problem *p) {
  p->forward(p);
  double s = 0.0;
  for (int64_t i = 0; i < p->out_n; i++) s += p->dout[i] * p->out[i];
  return s;
}

/* Checks grad (f32, pre-filled with KC_PREFILL before backward) of input k
 * against central differences of the reference; checks every element when
 * there are at most max_checks, else a deterministic sample. */
static inline void kc_check_grad(const char *name, kc_problem *p, int k, const float *grad,
                                 double tol, int64_t max_checks) {
  int64_t n = p->in_n[k];
  int64_t m = n <= max_checks ? n : max_checks;
  double md = 0.0, mg = 1e-12;
  for (int64_t t = 0; t < m; t++) {
    /* sampled: always the first and last element (edges of blocks and
     * thread ranges), the rest at random */
    int64_t i = n <= max_checks ? t
                : t == 0        ? 0
                : t == 1        ? n - 1
                                : (int64_t)(kc_uniform() * (double)n);
    double x0 = p->in[k][i];
    double h = 1e-5 * fmax(1.0, fabs(x0));
    p->in[k][i] = x0 + h;
    double lp = kc_loss(p);
    p->in[k][i] = x0 - h;
    double lm = kc_loss(p);
    p->in[k][i] = x0;
    double fd = (lp - lm) / (2.0 * h);
    double got = (double)grad[i] - KC_PREFILL;
    /* adding a gradient to 0.25 in float32 rounds it to 2^-25 absolute: not the kernel's error */
    double d = fmax(0.0, fabs(got - fd) - 0x1p-25);
    if (!(d <= md)) md = d;
    if (fabs(fd) > mg) mg = fabs(fd);
  }
  p->forward(p); /* leave out consistent with the unperturbed inputs */
  KC_EXPECT(name, md / mg, tol);
}

static inline void kc_problem_free(kc_problem *p) {
  for (int i = 0; i < p->n_in; i++) g_free(p->in[i]);
  g_free(p->out);
  g_free(p->dout);
}

/* Adds input k of n random values in [lo, hi). */
static inline void kc_add_input(kc_problem *p, int64_t n, double lo, double hi) {
  p->in[p->n_in] = kc_dvec(n, lo, hi);
  p->in_n[p->n_in] = n;
  p->n_in++;
}

/* Sets the output size, random dout and evaluates the reference once. */
static inline void kc_set_output(kc_problem *p, int64_t n) {
  p->out = kc_dzeros(n);
  p->out_n = n;
  p->dout = kc_dvec(n, -1.0, 1.0);
  p->forward(p);
}

static inline const ps_kernels *kc_cpu(void) {
  GError *error = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &error);
  if (!k) {
    fprintf(stderr, "no CPU kernels: %s\n", error ? error->message : "?");
    exit(1);
  }
  return k;
}

static inline int64_t kc_max64(int64_t a, int64_t b) {
  return a > b ? a : b;
}
