/* mae.c — MAE's parameter-free maths (see mae.h), a line-by-line transcription
 * of models_mae.py / util/pos_embed.py with the index arithmetic spelled out. */
#include "mae.h"

#include <math.h>
#include <string.h>

#include <pathseg/error.h>

void mae_patchify(float *x, const float *imgs, int64_t N, int64_t C, int64_t h, int64_t w,
                  int64_t p) {
  const int64_t H = h * p, W = w * p, P = p * p * C;
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < h; i++)
      for (int64_t j = 0; j < w; j++) {
        float *dst = x + ((n * h + i) * w + j) * P;
        for (int64_t a = 0; a < p; a++)
          for (int64_t b = 0; b < p; b++)
            for (int64_t c = 0; c < C; c++)
              dst[(a * p + b) * C + c] = imgs[((n * C + c) * H + i * p + a) * W + j * p + b];
      }
}

void mae_unpatchify(float *imgs, const float *x, int64_t N, int64_t C, int64_t h, int64_t w,
                    int64_t p) {
  const int64_t H = h * p, W = w * p, P = p * p * C;
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < h; i++)
      for (int64_t j = 0; j < w; j++) {
        const float *src = x + ((n * h + i) * w + j) * P;
        for (int64_t a = 0; a < p; a++)
          for (int64_t b = 0; b < p; b++)
            for (int64_t c = 0; c < C; c++)
              imgs[((n * C + c) * H + i * p + a) * W + j * p + b] = src[(a * p + b) * C + c];
      }
}

int64_t mae_len_keep(int64_t L, double ratio) {
  return (int64_t)((double)L * (1.0 - ratio));
}

/* Stable merge sort of idx[0..n) by ascending key (bottom-up, tmp of n).
 * Stability makes ties deterministic (lower index first); the official code
 * relies on the noise having none. */
static void argsort_stable(int64_t *idx, int64_t *tmp, const float *key, int64_t n) {
  for (int64_t width = 1; width < n; width *= 2) {
    for (int64_t lo = 0; lo < n; lo += 2 * width) {
      int64_t mid = MIN(lo + width, n), hi = MIN(lo + 2 * width, n);
      int64_t a = lo, b = mid, o = lo;
      while (a < mid && b < hi) tmp[o++] = key[idx[b]] < key[idx[a]] ? idx[b++] : idx[a++];
      while (a < mid) tmp[o++] = idx[a++];
      while (b < hi) tmp[o++] = idx[b++];
    }
    memcpy(idx, tmp, (size_t)n * sizeof(int64_t));
  }
}

void mae_masking_from_noise(int64_t *ids_shuffle, int64_t *ids_restore, float *mask,
                            const float *noise, int64_t N, int64_t L, int64_t len_keep) {
  g_autofree int64_t *order = g_new(int64_t, L > 0 ? 2 * L : 1);
  for (int64_t n = 0; n < N; n++) {
    for (int64_t l = 0; l < L; l++) order[l] = l;
    argsort_stable(order, order + L, noise + n * L, L);
    for (int64_t r = 0; r < L; r++) {
      if (ids_shuffle) ids_shuffle[n * L + r] = order[r];
      /* argsort of a permutation is its inverse. */
      if (ids_restore) ids_restore[n * L + order[r]] = r;
      if (mask) mask[n * L + order[r]] = r < len_keep ? 0.0f : 1.0f;
    }
  }
}

gboolean mae_ids_from_mask(int64_t *ids_shuffle, int64_t *ids_restore, int64_t *len_keep,
                           const float *mask, int64_t N, int64_t L, GError **error) {
  int64_t keep0 = -1;
  for (int64_t n = 0; n < N; n++) {
    const float *m = mask + n * L;
    int64_t keep = 0;
    for (int64_t l = 0; l < L; l++) {
      if (m[l] != 0.0f && m[l] != 1.0f) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "mask[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT "] is %g; expected 0 (kept) "
                    "or 1 (removed)",
                    n, l, (double)m[l]);
        return FALSE;
      }
      keep += m[l] == 0.0f;
    }
    if (keep0 >= 0 && keep != keep0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "mask: image %" G_GINT64_FORMAT " keeps %" G_GINT64_FORMAT
                  " patches, image 0 keeps %" G_GINT64_FORMAT "; MAE needs the same number",
                  n, keep, keep0);
      return FALSE;
    }
    keep0 = keep;
    int64_t r_keep = 0, r_rem = keep;
    for (int64_t l = 0; l < L; l++) {
      int64_t r = m[l] == 0.0f ? r_keep++ : r_rem++;
      ids_shuffle[n * L + r] = l;
      ids_restore[n * L + l] = r;
    }
  }
  *len_keep = keep0 < 0 ? 0 : keep0;
  return TRUE;
}

void mae_sincos_2d(float *out, int64_t D, int64_t gh, int64_t gw, gboolean cls) {
  const int64_t half = D / 2, quarter = D / 4;
  float *row = out;
  if (cls) {
    memset(row, 0, (size_t)D * sizeof(float));
    row += D;
  }
  for (int64_t r = 0; r < gh; r++)
    for (int64_t c = 0; c < gw; c++, row += D)
      for (int64_t i = 0; i < quarter; i++) {
        /* np: omega = 1 / 10000**(arange(D/4) / (D/4)) in float64. */
        double omega = 1.0 / pow(10000.0, (double)i / (double)quarter);
        double ac = (double)c * omega, ar = (double)r * omega;
        row[i] = (float)sin(ac);
        row[quarter + i] = (float)cos(ac);
        row[half + i] = (float)sin(ar);
        row[half + quarter + i] = (float)cos(ar);
      }
}

double mae_loss(float *dpred, const float *pred, float *target, const float *mask, int64_t N,
                int64_t L, int64_t P, gboolean norm_pix, double eps, double dloss) {
  double msum = 0.0;
  for (int64_t i = 0; i < N * L; i++) msum += mask[i];
  if (norm_pix)
    for (int64_t i = 0; i < N * L; i++) {
      float *t = target + i * P;
      double mean = 0.0, var = 0.0;
      for (int64_t d = 0; d < P; d++) mean += t[d];
      mean /= (double)P;
      for (int64_t d = 0; d < P; d++) var += (t[d] - mean) * (t[d] - mean);
      var /= (double)(P > 1 ? P - 1 : 1); /* torch.var: unbiased */
      double inv = 1.0 / sqrt(var + eps);
      for (int64_t d = 0; d < P; d++) t[d] = (float)((t[d] - mean) * inv);
    }
  if (msum <= 0.0) return 0.0;
  double total = 0.0;
  const double g = dloss * 2.0 / ((double)P * msum);
  for (int64_t i = 0; i < N * L; i++) {
    if (mask[i] == 0.0f) continue;
    const float *y = pred + i * P, *t = target + i * P;
    double s = 0.0;
    for (int64_t d = 0; d < P; d++) s += ((double)y[d] - t[d]) * ((double)y[d] - t[d]);
    total += mask[i] * s / (double)P;
    if (dpred)
      for (int64_t d = 0; d < P; d++)
        dpred[i * P + d] += (float)(g * mask[i] * ((double)y[d] - t[d]));
  }
  return total / msum;
}

void mae_mask_image(float *out, const float *imgs, const float *mask, int64_t N, int64_t C,
                    int64_t h, int64_t w, int64_t p, mae_fill fill) {
  const int64_t H = h * p, W = w * p, L = h * w;
  for (int64_t n = 0; n < N; n++) {
    const float *m = mask + n * L;
    for (int64_t c = 0; c < C; c++) {
      const float *src = imgs + (n * C + c) * H * W;
      float *dst = out + (n * C + c) * H * W;
      double sum = 0.0;
      int64_t count = 0;
      if (fill == MAE_FILL_MEAN)
        for (int64_t y = 0; y < H; y++)
          for (int64_t x = 0; x < W; x++)
            if (m[(y / p) * w + x / p] == 0.0f) {
              sum += src[y * W + x];
              count++;
            }
      const float value = count > 0 ? (float)(sum / (double)count) : 0.0f;
      for (int64_t y = 0; y < H; y++)
        for (int64_t x = 0; x < W; x++)
          dst[y * W + x] = m[(y / p) * w + x / p] == 0.0f ? src[y * W + x] : value;
    }
  }
}
