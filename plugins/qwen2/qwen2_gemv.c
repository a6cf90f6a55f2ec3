/* qwen2_gemv.c — the projections of a decode step (a few rows: one token
 * per sequence) as matrix-vector products.
 *
 * A generation step multiplies one row by every weight matrix, so it is
 * bound by reading the weights (2 GB per token at Qwen2.5-0.5B in f32).
 * OpenBLAS 0.3.21's sgemm has no M = 1 path: it packs the whole weight
 * into panels first, reading it twice and writing it once; sgemv streams it
 * once and runs 2-3x faster at these shapes (bench/components). Rows
 * above QWEN2_GEMV_MAX_ROWS and training-mode LoRA (dropout, saved
 * activations for backward) go through ps_linear_forward unchanged. */
#include <cblas.h>
#include <string.h>

#include "qwen2.h"

/* Up to this many rows a step runs as separate sgemv calls: each reads the
 * weight again, and past a few rows sgemm's packing pays for itself. */
#define QWEN2_GEMV_MAX_ROWS 2
/* LoRA ranks handled on the stack in the fast path. */
#define QWEN2_GEMV_MAX_R 256

void qwen2_gemv_rows(float *y, const float *x, const float *w, const float *bias, int64_t N,
                     int64_t in, int64_t out) {
  for (int64_t n = 0; n < N; n++) {
    if (bias) memcpy(y + n * out, bias, sizeof(float) * (size_t)out);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)out, (blasint)in, 1.0f, w, (blasint)in,
                x + n * in, 1, bias ? 1.0f : 0.0f, y + n * out, 1);
  }
}

gboolean qwen2_linear_forward(ps_linear *l, const ps_kernels *k, ps_context *ctx, float *y,
                              const float *x, int64_t N, GError **error) {
  const gboolean lora_trains = l->r > 0 && ps_context_training(ctx);
  if (N > QWEN2_GEMV_MAX_ROWS || lora_trains || l->r > QWEN2_GEMV_MAX_R)
    return ps_linear_forward(l, k, ctx, y, x, N, error);
  qwen2_gemv_rows(y, x, ps_f32(l->weight), l->bias ? ps_f32(l->bias) : NULL, N, l->in, l->out);
  /* What ps_linear_forward records, so a backward after a short forward
   * (no LoRA here) still sees its input. */
  l->saved_x = x;
  l->saved_n = N;
  l->dropped = FALSE;
  if (!l->r) return TRUE;
  /* Inference LoRA (no dropout): y += B (scaling A x). */
  float ax[QWEN2_GEMV_MAX_R];
  for (int64_t n = 0; n < N; n++) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)l->r, (blasint)l->in, l->scaling,
                ps_f32(l->lora_a), (blasint)l->in, x + n * l->in, 1, 0.0f, ax, 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, (blasint)l->out, (blasint)l->r, 1.0f,
                ps_f32(l->lora_b), (blasint)l->r, ax, 1, 1.0f, y + n * l->out, 1);
  }
  return TRUE;
}
