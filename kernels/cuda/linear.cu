/* linear.cu — linear and batched matrix products on the GPU: cuBLAS SGEMM
 * (FP32 math; TF32 is not enabled, so results match the CPU to ~1e-6) with
 * the transposes of gemm_plan.h, plus bias fill and bias-gradient sums.
 * The bf16 linear runs the same plans through cublasGemmEx: bf16 operands,
 * CUBLAS_COMPUTE_32F (f32 accumulation), a bf16 output (out, dinp: rounded
 * once) or an f32 one (dweight). */
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

template <typename T>
__global__ static void bias_fill_kernel(T *out, const T *bias, int64_t N, int64_t OC) {
  /* out: (N, OC) = bias broadcast over rows */
  PS_GRID_STRIDE(i, N * OC) out[i] = bias[i % OC];
}

void ps_cuda_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                            int64_t N, int64_t C, int64_t OC) {
  /* out: (N, OC); inp: (N, C); weight: (OC, C); bias: (OC) or NULL */
  if (N == 0 || OC == 0) return;
  if (bias) {
    bias_fill_kernel<float><<<ps_blocks(N * OC), PS_THREADS>>>(out, bias, N, OC);
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

/* ---- bf16 storage ---- */

/* A plan with bf16 A and B (the op's bf16 operands) and C of type c_type
 * (CUDA_R_16BF or CUDA_R_32F), alpha 1; f32 accumulation. The linear plans
 * are single (batch 1) GEMMs. */
static void run_plan_bf16(const ps_gemm_plan &p, const void *ops0, const void *ops1, void *c,
                          cudaDataType_t c_type, const void *ops3) {
  const void *ops[4] = {ops0, ops1, c, ops3};
  const void *A = ops[p.a_is], *B = ops[p.b_is];
  const float one = 1.0f, beta = p.beta;
  size_t c_size = c_type == CUDA_R_32F ? sizeof(float) : sizeof(ps_cuda_bf16);
  if (p.m == 0 || p.n == 0 || p.batch == 0) return;
  if (p.batch != 1) {
    fprintf(stderr, "pathseg-cuda: %s:%d: bf16 plan with batch %lld\n", __FILE__, __LINE__,
            (long long)p.batch);
    abort();
  }
  if (p.k == 0) {
    if (beta == 0.0f)
      for (int64_t col = 0; col < p.n; col++)
        PS_CUDA_CHECK(cudaMemsetAsync((char *)c + (size_t)(col * p.ldc) * c_size, 0,
                                      (size_t)p.m * c_size));
    return;
  }
  PS_CUBLAS_CHECK(cublasGemmEx(ps_cuda_cublas(), p.transa ? CUBLAS_OP_T : CUBLAS_OP_N,
                               p.transb ? CUBLAS_OP_T : CUBLAS_OP_N, (int)p.m, (int)p.n, (int)p.k,
                               &one, A, CUDA_R_16BF, (int)p.lda, B, CUDA_R_16BF, (int)p.ldb,
                               &beta, c, c_type, (int)p.ldc, CUBLAS_COMPUTE_32F,
                               CUBLAS_GEMM_DEFAULT));
}

void ps_cuda_linear_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const ps_bf16 *weight,
                                 const ps_bf16 *bias, int64_t N, int64_t C, int64_t OC) {
  /* out: (N, OC) bf16; inp: (N, C) bf16; weight: (OC, C) bf16; bias: (OC) bf16 or NULL.
   * With a bias, out is first filled with it and the GEMM adds (beta 1): the
   * bias is bf16 already, so the sum is still rounded only once. */
  if (N == 0 || OC == 0) return;
  if (bias) {
    bias_fill_kernel<ps_cuda_bf16><<<ps_blocks(N * OC), PS_THREADS>>>(ps_bf(out), ps_bf(bias), N,
                                                                      OC);
    PS_CUDA_LAUNCHED();
  }
  run_plan_bf16(ps_gemm_linear_fwd(N, C, OC, bias ? 1.0f : 0.0f), inp, weight, out, CUDA_R_16BF,
                NULL);
}

void ps_cuda_linear_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias,
                                  const ps_bf16 *dout, const ps_bf16 *inp, const ps_bf16 *weight,
                                  int64_t N, int64_t C, int64_t OC) {
  /* dinp: (N, C) bf16; dweight: (OC, C) f32; dbias: (OC) f32; dout: (N, OC) bf16 */
  if (N == 0) return;
  if (dinp) run_plan_bf16(ps_gemm_linear_dinp(N, C, OC), inp, weight, dinp, CUDA_R_16BF, dout);
  if (dweight) run_plan_bf16(ps_gemm_linear_dw(N, C, OC), inp, weight, dweight, CUDA_R_32F, dout);
  if (dbias) {
    const ps_cuda_bf16 *dy = ps_bf(dout);
    ps_colsum(dbias, N, OC, [=] __device__(int64_t r, int64_t c) { return ps_ld(dy[r * OC + c]); });
  }
}

/* ---- bf16 precision: f32 tensors, bf16 tensor-core products ----
 * The linear entries of ps_cuda_kernels_bf16() (kernels.h: ps_precision):
 * the f32 operands are rounded to bf16 into buffers this file keeps (grown
 * when a larger product comes, so a training loop allocates only in its first
 * step), multiplied with cublasGemmEx (bf16 in, f32 accumulation) into the
 * f32 output or gradient. The bias and its gradient stay f32. */

typedef struct {
  ps_cuda_bf16 *p;
  size_t cap; /* elements */
} bf16_buf;

static bf16_buf ac_x, ac_w, ac_dy; /* rounded inp, weight, dout */

static const ps_bf16 *rounded(bf16_buf *b, const float *src, int64_t n) {
  if ((size_t)n > b->cap) {
    if (b->p) PS_CUDA_CHECK(cudaFree(b->p));
    PS_CUDA_CHECK(cudaMalloc(&b->p, (size_t)n * sizeof(ps_cuda_bf16)));
    b->cap = (size_t)n;
  }
  ps_cuda_to_bf16(reinterpret_cast<ps_bf16 *>(b->p), src, n);
  return reinterpret_cast<const ps_bf16 *>(b->p);
}

void ps_cuda_linear_forward_ac(float *out, const float *inp, const float *weight,
                               const float *bias, int64_t N, int64_t C, int64_t OC) {
  /* out: (N, OC) f32; inp: (N, C) f32; weight: (OC, C) f32; bias: (OC) f32 or NULL */
  if (N == 0 || OC == 0) return;
  if (bias) {
    bias_fill_kernel<float><<<ps_blocks(N * OC), PS_THREADS>>>(out, bias, N, OC);
    PS_CUDA_LAUNCHED();
  }
  run_plan_bf16(ps_gemm_linear_fwd(N, C, OC, bias ? 1.0f : 0.0f), rounded(&ac_x, inp, N * C),
                rounded(&ac_w, weight, OC * C), out, CUDA_R_32F, NULL);
}

void ps_cuda_linear_backward_ac(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, int64_t N, int64_t C,
                                int64_t OC) {
  /* dinp: (N, C) f32 (+=); dweight: (OC, C) f32 (+=); dbias: (OC) f32 (+=); dout: (N, OC) f32 */
  if (N == 0) return;
  if (!dinp && !dweight && !dbias) return;
  const ps_bf16 *dy = (dinp || dweight) ? rounded(&ac_dy, dout, N * OC) : NULL;
  if (dinp)
    run_plan_bf16(ps_gemm_linear_dinp(N, C, OC), NULL, rounded(&ac_w, weight, OC * C), dinp,
                  CUDA_R_32F, dy);
  if (dweight)
    run_plan_bf16(ps_gemm_linear_dw(N, C, OC), rounded(&ac_x, inp, N * C), NULL, dweight,
                  CUDA_R_32F, dy);
  if (dbias)
    ps_colsum(dbias, N, OC, [=] __device__(int64_t r, int64_t c) { return dout[r * OC + c]; });
}
