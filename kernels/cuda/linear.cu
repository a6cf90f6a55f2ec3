/* linear.cu — linear and batched matrix products on the GPU: cuBLAS SGEMM
 * (FP32 math; TF32 is not enabled, so results match the CPU to ~1e-6) with
 * the transposes of gemm_plan.h, plus bias fill and bias-gradient sums. */
#include "common.cuh"
#include "cuda/gemm_plan.h"
#include "ops.cuh"

/* Runs a plan on (inp/a, weight/m, out/grad, dout) pointers. A plan whose C is
 * shared across the batch (broadcast operand's gradient) runs sequentially. */
void ps_cuda_run_plan(const ps_gemm_plan &p, const float *ops0, const float *ops1, float *c,
                      const float *ops3) {
  const float *ops[4] = {ops0, ops1, c, ops3};
  const float *A = ops[p.a_is], *B = ops[p.b_is];
  const float one = 1.0f, beta = p.beta;
  cublasOperation_t ta = p.transa ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = p.transb ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasHandle_t h = ps_cuda_cublas();
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;
  if (p.k == 0) {
    /* An empty product still scales C by beta (0 or 1 here). */
    if (beta == 0.0f)
      for (int64_t b = 0; b < (p.sC ? p.batch : 1); b++)
        for (int64_t col = 0; col < p.n; col++)
          PS_CUDA_CHECK(cudaMemsetAsync(c + b * p.sC + col * p.ldc, 0, p.m * sizeof(float)));
    return;
  }
  if (p.batch == 1 || p.sC == 0) {
    for (int64_t b = 0; b < p.batch; b++)
      PS_CUBLAS_CHECK(cublasSgemm(h, ta, tb, (int)p.m, (int)p.n, (int)p.k, &one, A + b * p.sA,
                                  (int)p.lda, B + b * p.sB, (int)p.ldb, &beta, c + b * p.sC,
                                  (int)p.ldc));
    return;
  }
  PS_CUBLAS_CHECK(cublasSgemmStridedBatched(h, ta, tb, (int)p.m, (int)p.n, (int)p.k, &one, A,
                                            (int)p.lda, p.sA, B, (int)p.ldb, p.sB, &beta, c,
                                            (int)p.ldc, p.sC, (int)p.batch));
}

__global__ static void bias_fill_kernel(float *out, const float *bias, int64_t N, int64_t OC) {
  /* out: (N, OC) = bias broadcast over rows */
  PS_GRID_STRIDE(i, N * OC) out[i] = bias[i % OC];
}

void ps_cuda_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                            int64_t N, int64_t C, int64_t OC) {
  /* out: (N, OC); inp: (N, C); weight: (OC, C); bias: (OC) or NULL */
  if (N == 0 || OC == 0) return;
  if (bias) {
    bias_fill_kernel<<<ps_blocks(N * OC), PS_THREADS>>>(out, bias, N, OC);
    PS_CUDA_LAUNCHED();
  }
  ps_cuda_run_plan(ps_gemm_linear_fwd(N, C, OC, bias ? 1.0f : 0.0f), inp, weight, out, NULL);
}

void ps_cuda_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int64_t N, int64_t C,
                             int64_t OC) {
  /* dinp: (N, C); dweight: (OC, C); dbias: (OC); dout: (N, OC) */
  if (N == 0) return;
  if (dinp) ps_cuda_run_plan(ps_gemm_linear_dinp(N, C, OC), inp, weight, dinp, dout);
  if (dweight) ps_cuda_run_plan(ps_gemm_linear_dw(N, C, OC), inp, weight, dweight, dout);
  if (dbias)
    ps_colsum(dbias, N, OC, [=] __device__(int64_t r, int64_t c) { return dout[r * OC + c]; });
}

void ps_cuda_bmm_forward(float *out, const float *a, const float *m, int64_t Bt, int64_t M,
                         int64_t N, int64_t K, int trans_m, int64_t sa, int64_t sm) {
  /* out: (Bt, M, N); a: (Bt, M, K) stride sa; m: (Bt, K, N) or (Bt, N, K), stride sm */
  ps_cuda_run_plan(ps_gemm_bmm_fwd(Bt, M, N, K, trans_m, sa, sm), a, m, out, NULL);
}

void ps_cuda_bmm_backward(float *da, float *dm, const float *dout, const float *a, const float *m,
                          int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                          int64_t sm) {
  /* da: like a; dm: like m; dout: (Bt, M, N) */
  if (da) ps_cuda_run_plan(ps_gemm_bmm_da(Bt, M, N, K, trans_m, sa, sm), a, m, da, dout);
  if (dm) ps_cuda_run_plan(ps_gemm_bmm_dm(Bt, M, N, K, trans_m, sa, sm), a, m, dm, dout);
}
