/* qwen2_gemv.c — the projections of a decode step (one token per sequence)
 * as a batch-invariant matrix-vector product.
 *
 * Two reasons for a kernel of our own:
 *  - Speed. A decode step multiplies a few rows by every weight matrix, so
 *    it is bound by reading the weights (2 GB per token at Qwen2.5-0.5B in
 *    f32). OpenBLAS 0.3.21's sgemm has no small-M path: it packs the whole
 *    weight into panels first, reading it twice and writing it once. Here
 *    each weight row is read from memory once per step, whatever the number
 *    of sequences, and reused from L1 for every sequence.
 *  - Batch invariance. Every output element is one dot product summed in a
 *    fixed order (16 lanes, then a fixed tree), whatever the number of rows,
 *    the threads or the instruction set of the clone that runs (no FMA
 *    contraction in ISO C mode, so every clone rounds the same). A sequence
 *    decoded alone, in its group, or on another rank gets the same bits:
 *    the SO-GRPO groups that data-parallel ranks split (plugins/rl) sample
 *    exactly the tokens of one process. The choice between this kernel and
 *    sgemm depends only on T (decode steps have T = 1), never on the batch.
 * Training-mode LoRA (dropout, saved activations for backward) goes through
 * ps_linear_forward unchanged.
 *
 * This is a CPU kernel over host memory. On another device (a table other
 * than the CPU's) decode steps go through ps_linear_forward, i.e. the
 * table's linear_forward (cuBLAS), whose summation order may depend on the
 * number of rows: generation there is NOT batch-invariant (a sequence may
 * get other bits alone than in its group). */
#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "qwen2.h"

/* LoRA ranks handled on the stack in the fast path. */
#define QWEN2_GEMV_MAX_R 256
/* Below this many multiply-adds a call runs on one thread. */
#define QWEN2_GEMV_PARALLEL_MIN (1 << 16)

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define QWEN2_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define QWEN2_CLONES
#endif

/* The fixed summation order of every output element: lane l (0..15) sums
 * the products i = l, l + 16, l + 32, ... in increasing i (the tail of a
 * length that is not a multiple of 16 goes into lanes 0..), then the lanes
 * are added as a fixed tree. JB weight rows go together (independent
 * accumulators, JB memory streams); the order per element is the same for
 * any blocking, so the bits do not depend on it either. */
#define JB 4

static inline float lanes_sum(float *acc) {
  for (int h = 8; h > 0; h >>= 1)
    for (int l = 0; l < h; l++) acc[l] += acc[l + h];
  return acc[0];
}

/* Output columns [j0, j1) of y = x w^T (+ bias): one thread's share. */
QWEN2_CLONES static void rows_block(float *y, const float *x, int64_t x_stride, const float *w,
                                    const float *bias, int64_t N, int64_t in, int64_t out,
                                    int64_t j0, int64_t j1) {
  const int64_t in16 = in - in % 16;
  int64_t j = j0;
  for (; j + JB <= j1; j += JB) {
    const float *w0 = w + j * in, *w1 = w0 + in, *w2 = w1 + in, *w3 = w2 + in;
    for (int64_t n = 0; n < N; n++) {
      const float *xn = x + n * x_stride;
      float a0[16] = {0}, a1[16] = {0}, a2[16] = {0}, a3[16] = {0};
      for (int64_t i = 0; i < in16; i += 16)
        for (int l = 0; l < 16; l++) {
          const float xv = xn[i + l];
          a0[l] += w0[i + l] * xv;
          a1[l] += w1[i + l] * xv;
          a2[l] += w2[i + l] * xv;
          a3[l] += w3[i + l] * xv;
        }
      for (int l = 0; in16 + l < in; l++) {
        const float xv = xn[in16 + l];
        a0[l] += w0[in16 + l] * xv;
        a1[l] += w1[in16 + l] * xv;
        a2[l] += w2[in16 + l] * xv;
        a3[l] += w3[in16 + l] * xv;
      }
      float *yn = y + n * out + j;
      yn[0] = lanes_sum(a0) + (bias ? bias[j] : 0.0f);
      yn[1] = lanes_sum(a1) + (bias ? bias[j + 1] : 0.0f);
      yn[2] = lanes_sum(a2) + (bias ? bias[j + 2] : 0.0f);
      yn[3] = lanes_sum(a3) + (bias ? bias[j + 3] : 0.0f);
    }
  }
  for (; j < j1; j++) {
    const float *wj = w + j * in;
    for (int64_t n = 0; n < N; n++) {
      const float *xn = x + n * x_stride;
      float acc[16] = {0};
      for (int64_t i = 0; i < in16; i += 16)
        for (int l = 0; l < 16; l++) acc[l] += wj[i + l] * xn[i + l];
      for (int l = 0; in16 + l < in; l++) acc[l] += wj[in16 + l] * xn[in16 + l];
      y[n * out + j] = lanes_sum(acc) + (bias ? bias[j] : 0.0f);
    }
  }
}

void qwen2_gemv_rows(float *y, const float *x, int64_t x_stride, const float *w, const float *bias,
                     int64_t N, int64_t in, int64_t out) {
  if (N <= 0 || out <= 0) return;
  if (N * in * out < QWEN2_GEMV_PARALLEL_MIN) {
    rows_block(y, x, x_stride, w, bias, N, in, out, 0, out);
    return;
  }
#pragma omp parallel
  {
    /* static, contiguous shares: each element is computed whole by one thread */
    const int64_t nth = omp_get_num_threads(), t = omp_get_thread_num();
    const int64_t per = (out + nth - 1) / nth, j0 = MIN(out, t * per), j1 = MIN(out, j0 + per);
    rows_block(y, x, x_stride, w, bias, N, in, out, j0, j1);
  }
}

gboolean qwen2_linear_forward(ps_linear *l, const ps_kernels *k, ps_context *ctx, float *y,
                              const float *x, int64_t N, int64_t seq_rows, GError **error) {
  const gboolean lora_trains = l->r > 0 && ps_context_training(ctx);
  const gboolean host = k == ps_kernels_get(PS_DEVICE_CPU, NULL);
  if (!host || seq_rows != 1 || lora_trains || l->r > QWEN2_GEMV_MAX_R) {
    /* one product per sequence (seq_rows < N: generation's prefill), so that
     * sgemm, whose small-matrix kernels and blocking depend on M, sees the
     * same M for a sequence whatever the batch */
    const int64_t rows = seq_rows > 1 && seq_rows < N ? seq_rows : N; /* one call for backward */
    for (int64_t r0 = 0; r0 < N; r0 += rows)
      if (!ps_linear_forward(l, k, ctx, y + r0 * l->out, x + r0 * l->in, MIN(rows, N - r0), error))
        return FALSE;
    return TRUE;
  }
  qwen2_gemv_rows(y, x, l->in, ps_f32(l->weight), l->bias ? ps_f32(l->bias) : NULL, N, l->in,
                  l->out);
  /* What ps_linear_forward records, so a backward after a short forward
   * (no LoRA here) still sees its input. */
  l->saved_x = x;
  l->saved_n = N;
  l->dropped = FALSE;
  if (!l->r) return TRUE;
  /* Inference LoRA (no dropout): y += B (scaling A x), row by row (so also
   * batch-invariant). */
  float ax[QWEN2_GEMV_MAX_R];
  for (int64_t n = 0; n < N; n++) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)l->r, (blasint)l->in, l->scaling,
                ps_f32(l->lora_a), (blasint)l->in, x + n * l->in, 1, 0.0f, ax, 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)l->out, (blasint)l->r, 1.0f,
                ps_f32(l->lora_b), (blasint)l->r, ax, 1, 1.0f, y + n * l->out, 1);
  }
  return TRUE;
}
