/* ssl_stain.c — Eq. 1's stain-invariant term, mean pooling and the u8 HWC to
 * f32 CHW conversion (see ssl_stain.h). */
#include "ssl_stain.h"

#include <math.h>

double ssl_stain_loss(float *dza, float *dzb, const float *za, const float *zb, const float *sa,
                      const float *sb, int64_t B, int64_t C, int64_t S, double alpha, double dloss,
                      double *dist) {
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
    const float *u = za + b * C, *v = zb + b * C;
    double sq = 0.0;
    for (int64_t c = 0; c < C; c++) sq += ((double)u[c] - v[c]) * ((double)u[c] - v[c]);
    total += w * sq;
    /* d/dz_a of alpha/B * w * ||z_a - z_b||^2 = 2 alpha w (z_a - z_b) / B */
    const double g = dloss * 2.0 * alpha * w / (double)B;
    for (int64_t c = 0; c < C; c++) {
      const double d = g * ((double)u[c] - v[c]);
      if (dza) dza[b * C + c] += (float)d;
      if (dzb) dzb[b * C + c] -= (float)d;
    }
  }
  total /= (double)(B > 0 ? B : 1);
  if (dist) *dist = total;
  return alpha * total;
}

void ssl_variance_stats(double *stats, const float *emb, int64_t B, int64_t C, int64_t HW) {
  for (int64_t c = 0; c < C; c++) {
    double sum = 0.0, sq = 0.0;
    for (int64_t b = 0; b < B; b++) {
      const float *e = emb + (b * C + c) * HW;
      for (int64_t j = 0; j < HW; j++) {
        sum += e[j];
        sq += (double)e[j] * e[j];
      }
    }
    stats[3 * c] += (double)(B * HW);
    stats[3 * c + 1] += sum;
    stats[3 * c + 2] += sq;
  }
}

double ssl_variance_loss(float *demb, const float *emb, const double *stats, int64_t B, int64_t C,
                         int64_t HW, double gamma, double target, double *std_mean) {
  double loss = 0.0, stds = 0.0;
  for (int64_t c = 0; c < C; c++) {
    const double n = stats[3 * c], mean = stats[3 * c + 1] / fmax(n, 1.0);
    /* sum of squared deviations from the sums; clamped: rounding can make it -0 */
    const double ss = fmax(stats[3 * c + 2] - n * mean * mean, 0.0);
    const double var = n > 1.0 ? ss / (n - 1.0) : 0.0, sd = sqrt(var + 1e-4);
    stds += sqrt(var);
    if (sd >= target) continue; /* the hinge is flat: no loss, no gradient */
    loss += target - sd;
    if (!demb || n <= 1.0) continue;
    /* d/dx_i of -gamma/C * sqrt(var + eps) = -gamma/C * (x_i - mean) / ((n - 1) sd) */
    const double g = -gamma / ((double)C * (n - 1.0) * sd);
    for (int64_t b = 0; b < B; b++) {
      const float *e = emb + (b * C + c) * HW;
      float *d = demb + (b * C + c) * HW;
      for (int64_t j = 0; j < HW; j++) d[j] += (float)(g * ((double)e[j] - mean));
    }
  }
  if (std_mean) *std_mean = C > 0 ? stds / (double)C : 0.0;
  return C > 0 ? gamma * loss / (double)C : 0.0;
}

void ssl_pool_mean(float *z, const float *emb, int64_t B, int64_t C, int64_t HW) {
  for (int64_t i = 0; i < B * C; i++) {
    const float *e = emb + i * HW;
    double s = 0.0;
    for (int64_t j = 0; j < HW; j++) s += e[j];
    z[i] = (float)(s / (double)HW);
  }
}

void ssl_pool_mean_backward(float *demb, const float *dz, int64_t B, int64_t C, int64_t HW) {
  for (int64_t i = 0; i < B * C; i++) {
    const float g = dz[i] / (float)HW;
    for (int64_t j = 0; j < HW; j++) demb[i * HW + j] = g;
  }
}

void ssl_u8_hwc_to_f32_chw(float *out, const uint8_t *inp, int64_t B, int64_t H, int64_t W,
                           int64_t C) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t p = 0; p < H * W; p++)
        out[(b * C + c) * H * W + p] = (float)inp[(b * H * W + p) * C + c] / 255.0f;
}
