/* mae_device.c — MAE's patchify and normalised-pixel loss through the kernel
 * table (see mae_device.h), so that they run wherever the model's tensors
 * live; on the CPU the table entries are the plain loops. */
#include "mae_device.h"

#include <math.h>

#include <pathseg/error.h>

int32_t *mae_ids_host(mae_ids *ids, int64_t n) {
  if (ids->cap < n) {
    ids->host = g_renew(int32_t, ids->host, n);
    ids->cap = n;
  }
  return ids->host;
}

const int32_t *mae_ids_upload(mae_ids *ids, const ps_kernels *k, int64_t n, GError **error) {
  /* int32 and float have the same size: the float buffer holds the ids' bytes */
  G_STATIC_ASSERT(sizeof(int32_t) == sizeof(float));
  if (!pl_buf_ensure(&ids->dev, k, MAX(n, ids->dev.n), error)) return NULL;
  if (n > 0) k->copy_to_device(ids->dev.p, ids->host, (size_t)n * sizeof(int32_t));
  ids->n = n;
  return (const int32_t *)ids->dev.p;
}

void mae_ids_clear(mae_ids *ids) {
  pl_buf_free(&ids->dev);
  g_clear_pointer(&ids->host, g_free);
  ids->n = ids->cap = 0;
}

gboolean mae_patchify_dev(const ps_kernels *k, ps_context *ctx, float *x, const float *imgs,
                          int64_t N, int64_t C, int64_t h, int64_t w, int64_t p, GError **error) {
  /* imgs (n, c, i, a, j, b) -> x (n, i, j, a, b, c), with i < h, j < w the
   * patch row and column, a, b the pixel in the patch. One transpose makes
   * it NHWC, (n, i, a, j, b, c), where each (b, c) run of p*C floats is
   * contiguous; then for each (a, j) one strided block copy moves the runs
   * of every (n, i) (source stride p*W*C, destination stride w*P: equal). */
  const int64_t W = w * p, P = p * p * C, n = N * C * h * p * W;
  float *t = pl_scratch(ctx, n, error);
  if (!t) return FALSE;
  k->transpose_forward(t, imgs, N, C, h * p * W);
  for (int64_t a = 0; a < p; a++)
    for (int64_t j = 0; j < w; j++)
      k->copy_2d(x + j * P + a * p * C, w * P, t + (a * W + j * p) * C, p * W * C, N * h, p * C, 0);
  return TRUE;
}

gboolean mae_loss_dev(const ps_kernels *k, ps_context *ctx, mae_ids *ids, float *dpred,
                      const float *pred, float *target, const float *mask, int64_t N, int64_t L,
                      int64_t P, gboolean norm_pix, double eps, double dloss, double *loss,
                      GError **error) {
  const int64_t NL = N * L;
  *loss = 0.0;
  if (NL > G_MAXINT32) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "MAE loss: %" G_GINT64_FORMAT " patches exceed the int32 row ids", NL);
    return FALSE;
  }
  if (norm_pix) {
    /* (t - mean) / sqrt(var_unbiased + eps) with var_unbiased = f var_biased,
     * f = P / (P - 1): LayerNorm's (t - mean) / sqrt(var_biased + eps / f)
     * times 1 / sqrt(f), the factor as its weight (one pass over the rows). */
    const double f = (double)P / (double)(P > 1 ? P - 1 : 1);
    float *wt = pl_scratch(ctx, P, error);
    if (!wt) return FALSE;
    k->fill(wt, (float)(1.0 / sqrt(f)), P);
    k->layernorm_forward(target, NULL, NULL, target, wt, NULL, NL, P, (float)(eps / f));
  }
  /* The removed patches, in patch order: their rows are gathered, their
   * squared error summed (in double) and its gradient scattered back. */
  int32_t *host = mae_ids_host(ids, NL);
  int64_t M = 0;
  for (int64_t i = 0; i < NL; i++)
    if (mask[i] != 0.0f) host[M++] = (int32_t)i;
  if (M == 0) return TRUE;
  const int32_t *rows = mae_ids_upload(ids, k, M, error);
  float *dp = rows ? pl_scratch(ctx, M * P, error) : NULL;
  float *dt = dp ? pl_scratch(ctx, M * P, error) : NULL;
  if (!dt) return FALSE;
  k->embedding_forward(dp, rows, pred, M, NL, P);
  k->embedding_forward(dt, rows, target, M, NL, P);
  k->axpy(dp, -1.0f, dt, M * P); /* pred - target */
  *loss = k->sum_squares(dp, M * P) / ((double)P * (double)M);
  if (dpred) {
    k->scale(dp, dp, (float)(dloss * 2.0 / ((double)P * (double)M)), M * P);
    k->embedding_backward(dpred, rows, dp, M, NL, P);
  }
  return TRUE;
}
