/* test_gemm_plan.c — the cuBLAS call plans of kernels/cuda/gemm_plan.h,
 * replayed with column-major CBLAS on the CPU, must give what a
 * double-precision row-major reference gives for linear and bmm forward and
 * backward (every trans_m, broadcast batch strides). This checks the
 * transposes and leading dimensions of the CUDA products without a GPU. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "cuda/gemm_plan.h"
#include "ps_test.h"

static void fill(float *x, int64_t n, uint32_t seed) {
  for (int64_t i = 0; i < n; i++) {
    seed = seed * 1664525u + 1013904223u;
    x[i] = (float)((seed >> 8) * (1.0 / 16777216.0)) - 0.5f;
  }
}

/* Runs a plan the way kernels/cuda/linear.cu does: one strided-batched call,
 * or sequential single calls when C is shared by the batch. */
static void replay(const ps_gemm_plan *p, const float *ops[4], float *c) {
  const float *A = ops[p->a_is], *B = ops[p->b_is];
  for (int64_t b = 0; b < p->batch; b++) {
    /* sequential replay is exact for both cases; beta applies per call, so a
     * shared C with beta 0 would be wrong — plans with sC == 0 use beta 1. */
    cblas_sgemm(CblasColMajor, p->transa ? CblasTrans : CblasNoTrans,
                p->transb ? CblasTrans : CblasNoTrans, (int)p->m, (int)p->n, (int)p->k, 1.0f,
                A + b * p->sA, (int)p->lda, B + b * p->sB, (int)p->ldb, p->beta, c + b * p->sC,
                (int)p->ldc);
  }
}

static double max_rel(const float *got, const double *want, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num += (got[i] - want[i]) * (got[i] - want[i]);
    den += want[i] * want[i];
  }
  return sqrt(num / (den + 1e-30));
}

static void test_linear(int64_t N, int64_t C, int64_t OC) {
  float *inp = g_new(float, N * C), *w = g_new(float, OC * C), *dout = g_new(float, N * OC);
  fill(inp, N * C, 1), fill(w, OC * C, 2), fill(dout, N * OC, 3);
  double *ref = g_new0(double, MAX(N * OC, MAX(N * C, OC * C)));
  float *got = g_new0(float, MAX(N * OC, MAX(N * C, OC * C)));

  /* forward */
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < OC; o++) {
      double s = 0;
      for (int64_t c = 0; c < C; c++) s += (double)inp[n * C + c] * w[o * C + c];
      ref[n * OC + o] = s;
    }
  ps_gemm_plan p = ps_gemm_linear_fwd(N, C, OC, 0.0f);
  const float *ops[4] = {inp, w, got, dout};
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, N * OC) < 1e-5, "linear fwd %g", max_rel(got, ref, N * OC));

  /* dinp += dout @ W, starting from 1 to check accumulation */
  for (int64_t i = 0; i < N * C; i++) got[i] = 1.0f;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++) {
      double s = 1.0;
      for (int64_t o = 0; o < OC; o++) s += (double)dout[n * OC + o] * w[o * C + c];
      ref[n * C + c] = s;
    }
  p = ps_gemm_linear_dinp(N, C, OC);
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, N * C) < 1e-5, "linear dinp %g", max_rel(got, ref, N * C));

  /* dW += dout^T @ inp */
  for (int64_t i = 0; i < OC * C; i++) got[i] = 1.0f;
  for (int64_t o = 0; o < OC; o++)
    for (int64_t c = 0; c < C; c++) {
      double s = 1.0;
      for (int64_t n = 0; n < N; n++) s += (double)dout[n * OC + o] * inp[n * C + c];
      ref[o * C + c] = s;
    }
  p = ps_gemm_linear_dw(N, C, OC);
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, OC * C) < 1e-5, "linear dW %g", max_rel(got, ref, OC * C));
  g_free(inp), g_free(w), g_free(dout), g_free(ref), g_free(got);
}

/* op(m)[k][n] for m (K, N), or m (N, K) transposed. */
static double opm(const float *m, int trans, int64_t K, int64_t N, int64_t k, int64_t n) {
  return trans ? m[n * K + k] : m[k * N + n];
}

static void test_bmm(int64_t Bt, int64_t M, int64_t N, int64_t K, int trans, int bcast_a,
                     int bcast_m) {
  int64_t sa = bcast_a ? 0 : M * K, sm = bcast_m ? 0 : K * N;
  int64_t na = bcast_a ? M * K : Bt * M * K, nm = bcast_m ? K * N : Bt * K * N;
  float *a = g_new(float, na), *m = g_new(float, nm), *dout = g_new(float, Bt * M * N);
  fill(a, na, 4), fill(m, nm, 5), fill(dout, Bt * M * N, 6);
  int64_t big = MAX(Bt * M * N, MAX(na, nm));
  double *ref = g_new0(double, big);
  float *got = g_new0(float, big);
  const float *ops[4] = {a, m, got, dout};

  for (int64_t b = 0; b < Bt; b++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t k = 0; k < K; k++) s += a[b * sa + i * K + k] * opm(m + b * sm, trans, K, N, k, j);
        ref[(b * M + i) * N + j] = s;
      }
  ps_gemm_plan p = ps_gemm_bmm_fwd(Bt, M, N, K, trans, sa, sm);
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, Bt * M * N) < 1e-5, "bmm fwd trans %d bcast %d%d", trans,
               bcast_a, bcast_m);

  /* da += dout @ op(m)^T (summed over b when a is broadcast) */
  for (int64_t i = 0; i < na; i++) got[i] = 0.5f, ref[i] = 0.5;
  for (int64_t b = 0; b < Bt; b++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t k = 0; k < K; k++) {
        double s = 0;
        for (int64_t j = 0; j < N; j++) s += dout[(b * M + i) * N + j] * opm(m + b * sm, trans, K, N, k, j);
        ref[b * sa + i * K + k] += s;
      }
  p = ps_gemm_bmm_da(Bt, M, N, K, trans, sa, sm);
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, na) < 1e-5, "bmm da trans %d bcast %d%d: %g", trans, bcast_a,
               bcast_m, max_rel(got, ref, na));

  /* dm: gradient of op(m) is a^T @ dout (K, N); stored in m's layout. */
  for (int64_t i = 0; i < nm; i++) got[i] = 0.5f, ref[i] = 0.5;
  for (int64_t b = 0; b < Bt; b++)
    for (int64_t k = 0; k < K; k++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t i = 0; i < M; i++) s += a[b * sa + i * K + k] * dout[(b * M + i) * N + j];
        ref[b * sm + (trans ? j * K + k : k * N + j)] += s;
      }
  p = ps_gemm_bmm_dm(Bt, M, N, K, trans, sa, sm);
  replay(&p, ops, got);
  PS_CHECK_MSG(max_rel(got, ref, nm) < 1e-5, "bmm dm trans %d bcast %d%d: %g", trans, bcast_a,
               bcast_m, max_rel(got, ref, nm));
  g_free(a), g_free(m), g_free(dout), g_free(ref), g_free(got);
}

/* The row-major adapter against CBLAS RowMajor itself, every trans pair. */
static void test_rowmajor(void) {
  int64_t M = 13, N = 7, K = 11;
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      float *A = g_new(float, M * K), *B = g_new(float, K * N), *C = g_new(float, M * N),
            *R = g_new(float, M * N);
      fill(A, M * K, 7), fill(B, K * N, 8), fill(C, M * N, 9);
      memcpy(R, C, sizeof(float) * M * N);
      int64_t lda = ta ? M : K, ldb = tb ? K : N;
      cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                  (int)M, (int)N, (int)K, 1.0f, A, (int)lda, B, (int)ldb, 0.5f, R, (int)N);
      ps_gemm_plan p = ps_gemm_rowmajor(ta, tb, M, N, K, lda, ldb, N, 0.5f);
      const float *ops[4] = {A, B, C, NULL};
      replay(&p, ops, C);
      double err = 0;
      for (int64_t i = 0; i < M * N; i++) err = fmax(err, fabs(C[i] - R[i]));
      PS_CHECK_MSG(err < 1e-5, "rowmajor ta %d tb %d: %g", ta, tb, err);
      g_free(A), g_free(B), g_free(C), g_free(R);
    }
}

int main(void) {
  test_rowmajor();
  test_linear(7, 5, 3);
  test_linear(33, 17, 64);
  for (int trans = 0; trans < 2; trans++) {
    test_bmm(3, 4, 5, 6, trans, 0, 0);
    test_bmm(3, 7, 2, 9, trans, 1, 0);
    test_bmm(4, 3, 8, 5, trans, 0, 1);
  }
  return ps_test_finish();
}
