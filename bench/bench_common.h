/* bench_common.h — timing helpers shared by the CPU benchmarks.
 *
 * A measurement alternates the contestants (pathseg, peer, pathseg, ...) so
 * that frequency drift and noisy neighbours hit both alike, and reports the
 * median of each. Results go to stdout as one line per row:
 *   RESULT <bench> <case> key=value ...
 * which bench/run.sh collects. Nothing here runs under ctest. */
#pragma once

#include <glib.h>
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static inline double bench_median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Uniform [-1, 1) from a fixed-seed xorshift: reproducible inputs. */
static inline void bench_fill(float *x, size_t n, uint64_t seed) {
  uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
  for (size_t i = 0; i < n; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    x[i] = (float)((double)(s >> 11) * (2.0 / 9007199254740992.0) - 1.0);
  }
}

/* 64-byte aligned, zeroed; aborts on failure (a benchmark, not a library). */
static inline float *bench_alloc(size_t n) {
  size_t bytes = ((n * sizeof(float) + 63) / 64) * 64;
  float *p = aligned_alloc(64, bytes ? bytes : 64);
  if (!p) {
    fprintf(stderr, "bench: out of memory (%zu bytes)\n", bytes);
    exit(2);
  }
  memset(p, 0, bytes);
  return p;
}

typedef void (*bench_fn)(void *ctx);

/* The fastest repetition of the last bench_pair call, for each side: on a
 * shared machine the minimum is the least disturbed run, a useful second
 * estimate next to the median. */
static double bench_min_a, bench_min_b;

/* The median over repetitions of b_i / a_i for the last bench_pair call (0
 * without b). Each pair ran back to back, so a burst of load from other
 * processes slows both sides of the same pair: on a shared machine this
 * ratio is far steadier than the ratio of the two medians. */
static double bench_ratio_pair;

/* Times a and b alternately: one warm-up each, then rounds until both have
 * run `min_reps` times and `min_seconds` of total time has passed (capped at
 * max_reps). Writes the medians in seconds (minima in bench_min_a/b). */
static inline void bench_pair(bench_fn a, void *actx, bench_fn b, void *bctx, int min_reps,
                              double min_seconds, double *ta, double *tb) {
  enum { MAX_REPS = 200 };
  double va[MAX_REPS], vb[MAX_REPS];
  a(actx);
  if (b) b(bctx);
  int n = 0;
  double start = bench_now();
  while (n < MAX_REPS && (n < min_reps || bench_now() - start < min_seconds)) {
    double t0 = bench_now();
    a(actx);
    double t1 = bench_now();
    va[n] = t1 - t0;
    if (b) {
      b(bctx);
      vb[n] = bench_now() - t1;
    }
    n++;
  }
  if (b) {
    double vr[MAX_REPS];
    for (int i = 0; i < n; i++) vr[i] = vb[i] / va[i];
    bench_ratio_pair = bench_median(vr, n);
  } else {
    bench_ratio_pair = 0.0;
  }
  *ta = bench_median(va, n); /* sorts va */
  bench_min_a = va[0];
  if (tb) *tb = b ? bench_median(vb, n) : 0.0;
  bench_min_b = b ? vb[0] : 0.0;
  if (b && !tb) qsort(vb, (size_t)n, sizeof *vb, bench_cmp_double), bench_min_b = vb[0];
}

static inline int bench_threads(void) { return omp_get_max_threads(); }
