/* gemm_plan.h — the column-major GEMM calls behind the row-major products of
 * the kernel table (linear and bmm, forward and backward).
 *
 * cuBLAS is column-major: a row-major (r, c) matrix is, to cuBLAS, its (c, r)
 * transpose. Working out the transposes and leading dimensions by hand is
 * error-prone, so each product is described once here as a plain C struct
 * that the CUDA code hands to cublasSgemmStridedBatched, and that
 * tests/cuda/test_gemm_plan.c replays with column-major CBLAS on the CPU
 * against the CPU kernels (so the mapping is tested without a GPU). Plain C
 * so both nvcc and the C compiler include it.
 *
 * A plan whose C stride is 0 with batch > 1 (a broadcast operand's gradient,
 * summed over the batch) must run as `batch` sequential single GEMMs. */
#pragma once

#include <stdint.h>

/* C[b] = alpha * op(A[b]) @ op(B[b]) + beta * C[b], column-major, for b < batch,
 * with A[b] = A + b * sA (likewise B, C). trans: 0 = N, 1 = T. */
typedef struct ps_gemm_plan {
  int transa, transb;
  int64_t m, n, k;
  int64_t lda, ldb, ldc;
  int64_t sA, sB, sC; /* element strides between batches (0 broadcasts) */
  int64_t batch;
  float beta;
  /* Which of the op's pointers play A, B and C (see the PS_GP_* names). */
  int a_is, b_is, c_is;
} ps_gemm_plan;

/* Operand names: the pointers an op gets, in the order of its signature. */
enum {
  PS_GP_INP = 0,  /* linear: inp (N, C) | bmm: a */
  PS_GP_W = 1,    /* linear: weight (OC, C) | bmm: m */
  PS_GP_OUT = 2,  /* forward output / the gradient being accumulated */
  PS_GP_DOUT = 3, /* backward: dout */
};

/* linear_forward: out[N, OC] (=, or += after a bias fill) inp[N, C] @ W[OC, C]^T.
 * Column-major: out^T (OC x N) = op_T(W as C x OC) @ (inp as C x N). */
static inline ps_gemm_plan ps_gemm_linear_fwd(int64_t N, int64_t C, int64_t OC, float beta) {
  ps_gemm_plan p = {1, 0, OC, N, C, C, C, OC, 0, 0, 0, 1, beta, PS_GP_W, PS_GP_INP, PS_GP_OUT};
  return p;
}

/* linear dinp[N, C] += dout[N, OC] @ W[OC, C].
 * dinp^T (C x N) = (W as C x OC) @ (dout as OC x N). */
static inline ps_gemm_plan ps_gemm_linear_dinp(int64_t N, int64_t C, int64_t OC) {
  ps_gemm_plan p = {0, 0, C, N, OC, C, OC, C, 0, 0, 0, 1, 1.0f, PS_GP_W, PS_GP_DOUT, PS_GP_OUT};
  return p;
}

/* linear dW[OC, C] += dout^T @ inp.
 * dW^T (C x OC) = (inp as C x N) @ op_T(dout as OC x N). */
static inline ps_gemm_plan ps_gemm_linear_dw(int64_t N, int64_t C, int64_t OC) {
  ps_gemm_plan p = {0, 1, C, OC, N, C, OC, C, 0, 0, 0, 1, 1.0f, PS_GP_INP, PS_GP_DOUT, PS_GP_OUT};
  return p;
}

/* bmm_forward: out[b] (M, N) = a[b] (M, K) @ op(m[b]), m (K, N) or (N, K) if trans_m.
 * out^T (N x M) = op(m as N x K or K x N) @ (a as K x M). */
static inline ps_gemm_plan ps_gemm_bmm_fwd(int64_t Bt, int64_t M, int64_t N, int64_t K,
                                           int trans_m, int64_t sa, int64_t sm) {
  ps_gemm_plan p = {trans_m ? 1 : 0, 0, N, M, K, trans_m ? K : N, K, N, sm, sa, M * N, Bt, 0.0f,
                    PS_GP_W, PS_GP_INP, PS_GP_OUT};
  return p;
}

/* bmm da[b] (M, K) += dout[b] (M, N) @ op(m[b])^T.
 * da^T (K x M) = X (K x N) @ (dout as N x M), X = op_T(m as N x K) without
 * trans_m, (m as K x N) with it. */
static inline ps_gemm_plan ps_gemm_bmm_da(int64_t Bt, int64_t M, int64_t N, int64_t K,
                                          int trans_m, int64_t sa, int64_t sm) {
  ps_gemm_plan p = {trans_m ? 0 : 1, 0, K, M, N, trans_m ? K : N, N, K, sm, M * N, sa, Bt, 1.0f,
                    PS_GP_W, PS_GP_DOUT, PS_GP_OUT};
  return p;
}

/* bmm dm[b] += a^T @ dout (m (K, N)), or dout^T @ a (m (N, K), trans_m).
 * Without trans_m: dm^T (N x K) = (dout as N x M) @ op_T(a as K x M).
 * With trans_m:    dm^T (K x N) = (a as K x M) @ op_T(dout as N x M). */
static inline ps_gemm_plan ps_gemm_bmm_dm(int64_t Bt, int64_t M, int64_t N, int64_t K,
                                          int trans_m, int64_t sa, int64_t sm) {
  if (!trans_m) {
    ps_gemm_plan p = {0, 1, N, K, M, N, K, N, M * N, sa, sm, Bt, 1.0f, PS_GP_DOUT, PS_GP_INP,
                      PS_GP_OUT};
    return p;
  }
  ps_gemm_plan p = {0, 1, K, N, M, K, N, K, sa, M * N, sm, Bt, 1.0f, PS_GP_INP, PS_GP_DOUT,
                    PS_GP_OUT};
  return p;
}

/* A row-major product C(M, N) = op(A)(M, K) @ op(B)(K, N) + beta C (the CBLAS
 * RowMajor call) as a column-major one: C^T = op(B)^T @ op(A)^T, i.e. the
 * operands swap and the trans flags stay. A is the op's first operand
 * (PS_GP_INP), B its second (PS_GP_W). */
static inline ps_gemm_plan ps_gemm_rowmajor(int transA, int transB, int64_t M, int64_t N, int64_t K,
                                            int64_t lda, int64_t ldb, int64_t ldc, float beta) {
  ps_gemm_plan p = {transB, transA, N, M, K, ldb, lda, ldc, 0, 0, 0, 1, beta, PS_GP_W, PS_GP_INP,
                    PS_GP_OUT};
  return p;
}
