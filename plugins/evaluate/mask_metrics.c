/* mask_metrics.c — Dice and IoU of binary masks, and the bilinear resizes
 * the evaluation uses to bring images to the encoders' size and mask logits
 * back to an image's own size. */
#include <math.h>

#include "evaluate.h"

void ev_overlap_count(const uint8_t *pred, const uint8_t *gt, int64_t n, ev_overlap *out) {
  int64_t p = 0, g = 0, i = 0;
  for (int64_t k = 0; k < n; k++) {
    int a = pred[k] != 0, b = gt[k] != 0;
    p += a;
    g += b;
    i += a & b;
  }
  out->pred = p;
  out->gt = g;
  out->inter = i;
}

double ev_dice(const ev_overlap *o) {
  if (o->pred + o->gt == 0) return 1.0;
  return 2.0 * (double)o->inter / (double)(o->pred + o->gt);
}

double ev_iou(const ev_overlap *o) {
  int64_t uni = o->pred + o->gt - o->inter;
  if (uni == 0) return 1.0;
  return (double)o->inter / (double)uni;
}

/* Source coordinate of destination pixel d (half-pixel centres, PyTorch
 * align_corners=False, clamped at 0 as F.interpolate does). */
static void src_coord(int d, double scale, int n, int *i0, int *i1, double *f) {
  double s = (d + 0.5) * scale - 0.5;
  if (s < 0) s = 0;
  int a = (int)floor(s);
  if (a > n - 1) a = n - 1;
  *i0 = a;
  *i1 = a + 1 < n ? a + 1 : n - 1;
  *f = s - a;
}

void ev_resize_u8(const uint8_t *src, int sw, int sh, int c, uint8_t *dst, int dw, int dh) {
  double sx = (double)sw / dw, sy = (double)sh / dh;
  for (int y = 0; y < dh; y++) {
    int y0, y1;
    double fy;
    src_coord(y, sy, sh, &y0, &y1, &fy);
    for (int x = 0; x < dw; x++) {
      int x0, x1;
      double fx;
      src_coord(x, sx, sw, &x0, &x1, &fx);
      for (int k = 0; k < c; k++) {
        double a = src[((int64_t)y0 * sw + x0) * c + k], b = src[((int64_t)y0 * sw + x1) * c + k];
        double d = src[((int64_t)y1 * sw + x0) * c + k], e = src[((int64_t)y1 * sw + x1) * c + k];
        double v = (1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * d + fx * e);
        dst[((int64_t)y * dw + x) * c + k] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : lround(v));
      }
    }
  }
}

void ev_resize_f32(const float *src, int sw, int sh, float *dst, int dw, int dh) {
  double sx = (double)sw / dw, sy = (double)sh / dh;
  for (int y = 0; y < dh; y++) {
    int y0, y1;
    double fy;
    src_coord(y, sy, sh, &y0, &y1, &fy);
    for (int x = 0; x < dw; x++) {
      int x0, x1;
      double fx;
      src_coord(x, sx, sw, &x0, &x1, &fx);
      double a = src[(int64_t)y0 * sw + x0], b = src[(int64_t)y0 * sw + x1];
      double d = src[(int64_t)y1 * sw + x0], e = src[(int64_t)y1 * sw + x1];
      dst[(int64_t)y * dw + x] =
          (float)((1 - fy) * ((1 - fx) * a + fx * b) + fy * ((1 - fx) * d + fx * e));
    }
  }
}
