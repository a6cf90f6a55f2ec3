/* ssl_stain_device.c — Eq. 1's stain term, mean pooling and the variance
 * guard over the kernel table, for feature maps in a device's memory (see
 * ssl_stain.h). Per-image and per-channel scalars (cosine weights, squared
 * distances, channel sums) are the only values read back to the host. */
#include "ssl_stain.h"

#include <math.h>

gboolean ssl_pool_mean_dev(const ps_kernels *k, ps_context *ctx, float *z, const float *emb,
                           int64_t B, int64_t C, int64_t HW, GError **error) {
  /* z (B*C, 1) = emb (B*C, HW) @ w (1, HW)^T with w = 1/HW */
  float *w = pl_scratch(ctx, HW, error);
  if (!w) return FALSE;
  k->fill(w, 1.0f / (float)HW, HW);
  k->linear_forward(z, emb, w, NULL, B * C, HW, 1);
  return TRUE;
}

gboolean ssl_pool_mean_backward_dev(const ps_kernels *k, ps_context *ctx, float *demb,
                                    const float *dz, int64_t B, int64_t C, int64_t HW,
                                    GError **error) {
  /* demb (B*C, HW) = dz (B*C, 1) @ w (HW, 1)^T with w = 1/HW: an outer product */
  float *w = pl_scratch(ctx, HW, error);
  if (!w) return FALSE;
  k->fill(w, 1.0f / (float)HW, HW);
  k->linear_forward(demb, dz, w, NULL, B * C, 1, HW);
  return TRUE;
}

gboolean ssl_stain_loss_dev(const ps_kernels *k, ps_context *ctx, float *dza, float *dzb,
                            const float *za, const float *zb, const float *sa, const float *sb,
                            int64_t B, int64_t C, int64_t S, double alpha, double dloss,
                            double *loss, double *dist, GError **error) {
  float *diff = pl_scratch(ctx, B * C, error);
  if (!diff) return FALSE;
  k->copy_on_device(diff, za, (size_t)(B * C) * sizeof(float));
  k->axpy(diff, -1.0f, zb, B * C); /* z_a - z_b */
  double total = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const float *x = sa + b * S, *y = sb + b * S;
    double dot = 0.0, nx = 0.0, ny = 0.0;
    for (int64_t i = 0; i < S; i++) {
      dot += (double)x[i] * y[i];
      nx += (double)x[i] * x[i];
      ny += (double)y[i] * y[i];
    }
    const double w = 1.0 - dot / fmax(sqrt(nx) * sqrt(ny), 1e-8);
    total += w * k->sum_squares(diff + b * C, C); /* ||z_a - z_b||^2, one scalar per image */
    /* d/dz_a of alpha/B * w * ||z_a - z_b||^2 = 2 alpha w (z_a - z_b) / B */
    const double g = dloss * 2.0 * alpha * w / (double)B;
    if (dza) k->axpy(dza + b * C, (float)g, diff + b * C, C);
    if (dzb) k->axpy(dzb + b * C, (float)-g, diff + b * C, C);
  }
  total /= (double)(B > 0 ? B : 1);
  if (dist) *dist = total;
  *loss = alpha * total;
  return TRUE;
}

static float *var_host(ssl_var_dev *v, int64_t C) {
  if (v->cap < C) {
    v->host = g_renew(float, v->host, C);
    v->centre = g_renew(float, v->centre, C);
    v->shift = g_renew(float, v->shift, C);
    v->cap = C;
  }
  return v->host;
}

gboolean ssl_variance_stats_dev(ssl_var_dev *v, const ps_kernels *k, ps_context *ctx, double *stats,
                                const float *emb, int64_t B, int64_t C, int64_t HW,
                                GError **error) {
  const int64_t n = B * HW;
  v->xt = pl_scratch(ctx, n * C, error);
  float *sq = v->xt ? pl_scratch(ctx, n * C, error) : NULL;
  if (!sq || !pl_buf_ensure(&v->row, k, C, error)) return FALSE;
  float *host = var_host(v, C);
  v->C = C;
  /* channel means (float) as the centre */
  k->transpose_forward(v->xt, emb, B, C, HW); /* (B, HW, C) */
  pl_buf_zero(&v->row);
  k->sum_rows(v->row.p, v->xt, n, C);
  k->copy_to_host(host, v->row.p, (size_t)C * sizeof(float));
  for (int64_t c = 0; c < C; c++) {
    v->centre[c] = n > 0 ? (float)((double)host[c] / (double)n) : 0.0f;
    host[c] = -v->centre[c];
  }
  k->copy_to_device(v->row.p, host, (size_t)C * sizeof(float));
  k->add_rows(v->xt, v->xt, v->row.p, n, C);
  /* squared deviations from the centre, summed per channel */
  k->mul_forward(sq, v->xt, v->xt, n * C);
  pl_buf_zero(&v->row);
  k->sum_rows(v->row.p, sq, n, C);
  k->copy_to_host(host, v->row.p, (size_t)C * sizeof(float));
  for (int64_t c = 0; c < C; c++) {
    const double m = v->centre[c];
    stats[3 * c] += (double)n;
    stats[3 * c + 1] += (double)n * m;
    stats[3 * c + 2] += (double)host[c] + (double)n * m * m;
  }
  return TRUE;
}

gboolean ssl_variance_loss_dev(ssl_var_dev *v, const ps_kernels *k, float *demb,
                               const double *stats, int64_t B, int64_t C, int64_t HW, double gamma,
                               double target, double *loss, double *std_mean, GError **error) {
  (void)error;
  if (demb && v->C != C) demb = NULL; /* no centred tokens of this shape: no gradient */
  float *host = var_host(v, C);
  double sum = 0.0, stds = 0.0;
  gboolean any = FALSE;
  for (int64_t c = 0; c < C; c++) {
    const double n = stats[3 * c], mean = stats[3 * c + 1] / fmax(n, 1.0);
    /* sum of squared deviations from the sums; clamped: rounding can make it -0 */
    const double ss = fmax(stats[3 * c + 2] - n * mean * mean, 0.0);
    const double var = n > 1.0 ? ss / (n - 1.0) : 0.0, sd = sqrt(var + 1e-4);
    stds += sqrt(var);
    host[c] = 0.0f;
    if (sd >= target) continue; /* the hinge is flat: no loss, no gradient */
    sum += target - sd;
    if (n <= 1.0) continue;
    /* d/dx_i of -gamma/C * sqrt(var + eps) = -gamma/C * (x_i - mean) / ((n - 1) sd) */
    host[c] = (float)(-gamma / ((double)C * (n - 1.0) * sd));
    any = TRUE;
  }
  if (std_mean) *std_mean = C > 0 ? stds / (double)C : 0.0;
  *loss = C > 0 ? gamma * sum / (double)C : 0.0;
  if (!demb || !any) return TRUE;
  const int64_t n = B * HW;
  /* x - mean = (x - centre) + (centre - mean): the all-reduced mean differs
   * from this rank's centre */
  float *shift = v->shift;
  for (int64_t c = 0; c < C; c++)
    shift[c] = (float)((double)v->centre[c] - stats[3 * c + 1] / fmax(stats[3 * c], 1.0));
  k->copy_to_device(v->row.p, shift, (size_t)C * sizeof(float));
  k->add_rows(v->xt, v->xt, v->row.p, n, C);
  k->copy_to_device(v->row.p, host, (size_t)C * sizeof(float));
  k->layerscale_forward(v->xt, v->xt, v->row.p, n, C);
  k->transpose_backward(demb, v->xt, B, C, HW); /* (B, HW, C) added into (B, C, HW) */
  return TRUE;
}

void ssl_var_dev_clear(ssl_var_dev *v) {
  pl_buf_free(&v->row);
  g_clear_pointer(&v->host, g_free);
  g_clear_pointer(&v->centre, g_free);
  g_clear_pointer(&v->shift, g_free);
  v->xt = NULL;
  v->C = v->cap = 0;
}
