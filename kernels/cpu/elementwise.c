/* elementwise.c — layer scale, add/mul/axpy/scale/fill and batched transpose
 * on the CPU: the small glue ops between the big ones. */
#include <omp.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

void ps_cpu_layerscale_forward(float *out, const float *inp, const float *gamma, int64_t N,
                               int64_t C) {
  /* out, inp: (N, C); gamma: (C) */
#pragma omp parallel for schedule(static) if (N * C > PS_OMP_MIN_WORK)
  for (int64_t r = 0; r < N; r++) {
#pragma omp simd
    for (int64_t c = 0; c < C; c++) out[r * C + c] = inp[r * C + c] * gamma[c];
  }
}

void ps_cpu_layerscale_backward(float *dinp, float *dgamma, const float *dout, const float *inp,
                                const float *gamma, int64_t N, int64_t C) {
  /* dinp: (N, C) += dout * gamma; dgamma: (C) += sum_n dout * inp */
  if (dinp) {
#pragma omp parallel for schedule(static) if (N * C > PS_OMP_MIN_WORK)
    for (int64_t r = 0; r < N; r++) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dinp[r * C + c] += dout[r * C + c] * gamma[c];
    }
  }
  if (dgamma) {
    /* Each thread owns a column range, so the sum over rows needs no atomics. */
#pragma omp parallel if (N * C > PS_OMP_MIN_WORK)
    {
      int nt = omp_get_num_threads(), tid = omp_get_thread_num();
      int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
      for (int64_t r = 0; r < N; r++) {
#pragma omp simd
        for (int64_t c = c0; c < c1; c++) dgamma[c] += dout[r * C + c] * inp[r * C + c];
      }
    }
  }
}

void ps_cpu_add_forward(float *out, const float *a, const float *b, int64_t n) {
  /* out, a, b: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void ps_cpu_mul_forward(float *out, const float *a, const float *b, int64_t n) {
  /* out, a, b: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) out[i] = a[i] * b[i];
}

void ps_cpu_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                         int64_t n) {
  /* da += dout * b; db += dout * a; all (n) */
  if (da) {
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) da[i] += dout[i] * b[i];
  }
  if (db) {
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
    for (int64_t i = 0; i < n; i++) db[i] += dout[i] * a[i];
  }
}

void ps_cpu_axpy(float *y, float alpha, const float *x, int64_t n) {
  /* y, x: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) y[i] += alpha * x[i];
}

void ps_cpu_scale(float *out, const float *inp, float alpha, int64_t n) {
  /* out, inp: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) out[i] = alpha * inp[i];
}

void ps_cpu_fill(float *x, float value, int64_t n) {
  /* x: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) x[i] = value;
}

/* 32 x 32 tiles keep both the read and the write side within cache lines. */
#define TILE 32

static void transpose_tiles(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N,
                            int accumulate) {
  /* out: (Bt, N, M) (=, or += when accumulate); inp: (Bt, M, N) */
  int64_t tm = (M + TILE - 1) / TILE, tn = (N + TILE - 1) / TILE;
  int64_t units = Bt * tm * tn;
#pragma omp parallel for schedule(static) if (Bt * M * N > PS_OMP_MIN_WORK)
  for (int64_t u = 0; u < units; u++) {
    int64_t b = u / (tm * tn), rest = u % (tm * tn);
    int64_t i0 = (rest / tn) * TILE, j0 = (rest % tn) * TILE;
    int64_t i1 = ps_min64(i0 + TILE, M), j1 = ps_min64(j0 + TILE, N);
    const float *src = inp + b * M * N;
    float *dst = out + b * M * N;
    for (int64_t j = j0; j < j1; j++) {
      if (accumulate) {
        for (int64_t i = i0; i < i1; i++) dst[j * M + i] += src[i * N + j];
      } else {
        for (int64_t i = i0; i < i1; i++) dst[j * M + i] = src[i * N + j];
      }
    }
  }
}

void ps_cpu_transpose_forward(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N) {
  /* out: (Bt, N, M); inp: (Bt, M, N) */
  transpose_tiles(out, inp, Bt, M, N, 0);
}

void ps_cpu_transpose_backward(float *dinp, const float *dout, int64_t Bt, int64_t M, int64_t N) {
  /* dinp: (Bt, M, N) += dout: (Bt, N, M) transposed */
  transpose_tiles(dinp, dout, Bt, N, M, 1);
}
