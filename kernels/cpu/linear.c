/* linear.c — fully connected layer and batched matrix product on the CPU:
 * GEMMs through CBLAS (OpenBLAS threads them) plus the bias. */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

void ps_cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int64_t C, int64_t OC) {
  /* out: (N, OC)  inp: (N, C)  weight: (OC, C)  bias: (OC) or NULL.
   * The bias is copied into out first and the GEMM accumulates onto it (beta 1). */
  if (N == 0 || OC == 0) return;
  if (bias) {
#pragma omp parallel for schedule(static) if (N * OC > PS_OMP_MIN_WORK)
    for (int64_t n = 0; n < N; n++) memcpy(out + n * OC, bias, (size_t)OC * sizeof(float));
  }
  if (C == 0) {
    if (!bias) memset(out, 0, (size_t)(N * OC) * sizeof(float));
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)OC, (int)C, 1.0f, inp, (int)C,
              weight, (int)C, bias ? 1.0f : 0.0f, out, (int)OC);
}

void ps_cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int64_t N, int64_t C,
                            int64_t OC) {
  /* dinp: (N, C) += dout (N, OC) @ weight (OC, C)
   * dweight: (OC, C) += dout^T @ inp (N, C)
   * dbias: (OC) += column sums of dout */
  if (N == 0 || OC == 0) return;
  if (dinp && C > 0)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)N, (int)C, (int)OC, 1.0f, dout,
                (int)OC, weight, (int)C, 1.0f, dinp, (int)C);
  if (dweight && C > 0)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)OC, (int)C, (int)N, 1.0f, dout,
                (int)OC, inp, (int)C, 1.0f, dweight, (int)C);
  if (dbias) {
    /* threads own column ranges, rows are summed in order */
#pragma omp parallel if (N * OC > PS_OMP_MIN_WORK)
    {
      int nt = omp_get_num_threads(), tid = omp_get_thread_num();
      int64_t o0 = OC * tid / nt, o1 = OC * (tid + 1) / nt;
      for (int64_t n = 0; n < N; n++) {
        const float *row = dout + n * OC;
#pragma omp simd
        for (int64_t o = o0; o < o1; o++) dbias[o] += row[o];
      }
    }
  }
}

void ps_cpu_bmm_forward(float *out, const float *a, const float *m, int64_t Bt, int64_t M,
                        int64_t N, int64_t K, int trans_m, int64_t sa, int64_t sm) {
  /* out: (Bt, M, N); a: (Bt, M, K) batch stride sa; m: (Bt, K, N) or (Bt, N, K) batch stride sm */
  if (M == 0 || N == 0) return;
  for (int64_t b = 0; b < Bt; b++) {
    float *ob = out + b * M * N;
    if (K == 0) {
      memset(ob, 0, (size_t)(M * N) * sizeof(float));
      continue;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_m ? CblasTrans : CblasNoTrans, (int)M, (int)N,
                (int)K, 1.0f, a + b * sa, (int)K, m + b * sm, trans_m ? (int)K : (int)N, 0.0f, ob,
                (int)N);
  }
}

void ps_cpu_bmm_backward(float *da, float *dm, const float *dout, const float *a, const float *m,
                         int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                         int64_t sm) {
  /* da: like a (+=); dm: like m (+=); dout: (Bt, M, N). Batches run in order,
   * so a broadcast (stride 0) operand's gradient accumulates safely. */
  if (M == 0 || N == 0 || K == 0) return;
  for (int64_t b = 0; b < Bt; b++) {
    const float *g = dout + b * M * N;
    if (da) {
      /* da (M, K) += g (M, N) @ op(m)^T */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, trans_m ? CblasNoTrans : CblasTrans, (int)M, (int)K,
                  (int)N, 1.0f, g, (int)N, m + b * sm, trans_m ? (int)K : (int)N, 1.0f, da + b * sa,
                  (int)K);
    }
    if (dm) {
      if (trans_m) /* dm (N, K) += g^T (N, M) @ a (M, K) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)N, (int)K, (int)M, 1.0f, g,
                    (int)N, a + b * sa, (int)K, 1.0f, dm + b * sm, (int)K);
      else /* dm (K, N) += a^T (K, M) @ g (M, N) */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)N, (int)M, 1.0f,
                    a + b * sa, (int)K, g, (int)N, 1.0f, dm + b * sm, (int)N);
    }
  }
}
