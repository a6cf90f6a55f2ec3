/* conv.c — 2-D convolution (NCHW, im2col + SGEMM per image) and the 2x2
 * stride-2 transposed convolution of SAM's output upscaling (one SGEMM per
 * image plus a pixel shuffle), forward and backward, on the CPU. The im2col
 * matrix / shuffle buffer lives in caller-provided scratch. */
#include <cblas.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* Output size; 0 for a descriptor the kernels cannot run (non-positive
 * stride or kernel, negative padding, kernel larger than the padded input). */
static int conv_valid(const ps_conv2d_desc *d) {
  return d->stride > 0 && d->KH > 0 && d->KW > 0 && d->pad >= 0 && d->C > 0 && d->B >= 0 &&
         d->H + 2 * d->pad >= d->KH && d->W + 2 * d->pad >= d->KW;
}
static int64_t conv_oh(const ps_conv2d_desc *d) {
  return conv_valid(d) ? (d->H + 2 * d->pad - d->KH) / d->stride + 1 : 0;
}
static int64_t conv_ow(const ps_conv2d_desc *d) {
  return conv_valid(d) ? (d->W + 2 * d->pad - d->KW) / d->stride + 1 : 0;
}

/* A 1x1, stride 1, unpadded convolution is a plain GEMM on the input. */
static int conv_is_pointwise(const ps_conv2d_desc *d) {
  return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

int64_t ps_cpu_conv2d_scratch(const ps_conv2d_desc *d) {
  if (conv_is_pointwise(d)) return 0;
  return d->C * d->KH * d->KW * conv_oh(d) * conv_ow(d);
}

/* col: (C*KH*KW, OH*OW) from one image x: (C, H, W); zeros where padded. */
static void im2col(float *col, const float *x, const ps_conv2d_desc *d, int64_t OH, int64_t OW) {
  int64_t rows = d->C * d->KH * d->KW;
#pragma omp parallel for schedule(static) if (rows * OH * OW > PS_OMP_MIN_WORK)
  for (int64_t r = 0; r < rows; r++) {
    int64_t c = r / (d->KH * d->KW), ky = (r / d->KW) % d->KH, kx = r % d->KW;
    float *dst = col + r * OH * OW;
    const float *plane = x + c * d->H * d->W;
    for (int64_t oy = 0; oy < OH; oy++) {
      int64_t iy = oy * d->stride - d->pad + ky;
      float *drow = dst + oy * OW;
      if (iy < 0 || iy >= d->H) {
        memset(drow, 0, (size_t)OW * sizeof(float));
        continue;
      }
      const float *srow = plane + iy * d->W;
      for (int64_t ox = 0; ox < OW; ox++) {
        int64_t ix = ox * d->stride - d->pad + kx;
        drow[ox] = (ix >= 0 && ix < d->W) ? srow[ix] : 0.0f;
      }
    }
  }
}

/* x: (C, H, W) += col2im(col); one thread per channel so writes never collide. */
static void col2im_add(float *x, const float *col, const ps_conv2d_desc *d, int64_t OH,
                       int64_t OW) {
#pragma omp parallel for schedule(static) if (d->C * d->KH * d->KW * OH * OW > PS_OMP_MIN_WORK)
  for (int64_t c = 0; c < d->C; c++) {
    float *plane = x + c * d->H * d->W;
    for (int64_t ky = 0; ky < d->KH; ky++) {
      for (int64_t kx = 0; kx < d->KW; kx++) {
        const float *src = col + ((c * d->KH + ky) * d->KW + kx) * OH * OW;
        for (int64_t oy = 0; oy < OH; oy++) {
          int64_t iy = oy * d->stride - d->pad + ky;
          if (iy < 0 || iy >= d->H) continue;
          float *drow = plane + iy * d->W;
          const float *srow = src + oy * OW;
          for (int64_t ox = 0; ox < OW; ox++) {
            int64_t ix = ox * d->stride - d->pad + kx;
            if (ix >= 0 && ix < d->W) drow[ix] += srow[ox];
          }
        }
      }
    }
  }
}

void ps_cpu_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                           const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats) {
  /* out: (B, OC, OH, OW); inp: (B, C, H, W); weight: (OC, C, KH, KW); bias: (OC) or NULL */
  int64_t OH = conv_oh(d), OW = conv_ow(d), P = OH * OW, K = d->C * d->KH * d->KW;
  if (OH <= 0 || OW <= 0 || d->OC <= 0) return;
  int pointwise = conv_is_pointwise(d);
  if (!pointwise && scratch_floats < K * P) return;
  for (int64_t b = 0; b < d->B; b++) {
    float *ob = out + b * d->OC * P;
    const float *xb = inp + b * d->C * d->H * d->W;
    if (bias) {
      for (int64_t o = 0; o < d->OC; o++) {
        float bv = bias[o];
        for (int64_t p = 0; p < P; p++) ob[o * P + p] = bv;
      }
    }
    const float *colb = xb;
    if (!pointwise) {
      im2col(scratch, xb, d, OH, OW);
      colb = scratch;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)d->OC, (int)P, (int)K, 1.0f, weight,
                (int)K, colb, (int)P, bias ? 1.0f : 0.0f, ob, (int)P);
  }
}

void ps_cpu_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const ps_conv2d_desc *d,
                            float *scratch, int64_t scratch_floats) {
  /* dinp: (B, C, H, W); dweight: (OC, C, KH, KW); dbias: (OC); dout: (B, OC, OH, OW) */
  int64_t OH = conv_oh(d), OW = conv_ow(d), P = OH * OW, K = d->C * d->KH * d->KW;
  if (OH <= 0 || OW <= 0 || d->OC <= 0) return;
  int pointwise = conv_is_pointwise(d);
  if (!pointwise && scratch_floats < K * P) return;
  for (int64_t b = 0; b < d->B; b++) {
    const float *gb = dout + b * d->OC * P;
    const float *xb = inp + b * d->C * d->H * d->W;
    if (dbias) {
      for (int64_t o = 0; o < d->OC; o++) {
        float s = 0.0f;
        for (int64_t p = 0; p < P; p++) s += gb[o * P + p];
        dbias[o] += s;
      }
    }
    if (dweight) {
      const float *colb = xb;
      if (!pointwise) {
        im2col(scratch, xb, d, OH, OW);
        colb = scratch;
      }
      /* dW (OC, K) += dout_b (OC, P) @ col^T (P, K) */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d->OC, (int)K, (int)P, 1.0f, gb,
                  (int)P, colb, (int)P, 1.0f, dweight, (int)K);
    }
    if (dinp) {
      float *dxb = dinp + b * d->C * d->H * d->W;
      if (pointwise) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)d->OC, 1.0f,
                    weight, (int)K, gb, (int)P, 1.0f, dxb, (int)P);
      } else {
        /* dcol (K, P) = W^T (K, OC) @ dout_b (OC, P), then scatter back */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)K, (int)P, (int)d->OC, 1.0f,
                    weight, (int)K, gb, (int)P, 0.0f, scratch, (int)P);
        col2im_add(dxb, scratch, d, OH, OW);
      }
    }
  }
}

int64_t ps_cpu_convt2x2_scratch(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC) {
  return 4 * OC * H * W;
}

void ps_cpu_convt2x2_forward(float *out, const float *inp, const float *weight, const float *bias,
                             int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, float *scratch,
                             int64_t scratch_floats) {
  /* out: (B, OC, 2H, 2W); inp: (B, C, H, W); weight: (C, OC, 2, 2); bias: (OC) or NULL.
   * Y (OC*4, HW) = weight^T (OC*4, C) @ x_b (C, HW), then out[o, 2i+a, 2j+c] = Y[o*4+a*2+c, i*W+j].
   */
  int64_t P = H * W;
  if (scratch_floats < 4 * OC * P || P == 0) return;
  for (int64_t b = 0; b < B; b++) {
    const float *xb = inp + b * C * P;
    float *ob = out + b * OC * 4 * P;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(4 * OC), (int)P, (int)C, 1.0f,
                weight, (int)(4 * OC), xb, (int)P, 0.0f, scratch, (int)P);
#pragma omp parallel for schedule(static) if (OC * 4 * P > PS_OMP_MIN_WORK)
    for (int64_t o = 0; o < OC; o++) {
      float bv = bias ? bias[o] : 0.0f;
      for (int64_t i = 0; i < H; i++) {
        for (int a = 0; a < 2; a++) {
          float *orow = ob + (o * 2 * H + 2 * i + a) * 2 * W;
          const float *y0 = scratch + (o * 4 + a * 2) * P + i * W;
          const float *y1 = y0 + P;
          for (int64_t j = 0; j < W; j++) {
            orow[2 * j] = y0[j] + bv;
            orow[2 * j + 1] = y1[j] + bv;
          }
        }
      }
    }
  }
}

void ps_cpu_convt2x2_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int64_t B, int64_t C,
                              int64_t H, int64_t W, int64_t OC, float *scratch,
                              int64_t scratch_floats) {
  /* dinp: (B, C, H, W); dweight: (C, OC, 2, 2); dbias: (OC); dout: (B, OC, 2H, 2W) */
  int64_t P = H * W;
  if (scratch_floats < 4 * OC * P || P == 0) return;
  for (int64_t b = 0; b < B; b++) {
    const float *gb = dout + b * OC * 4 * P;
    /* gather dY (OC*4, HW) from the interleaved output gradient */
#pragma omp parallel for schedule(static) if (OC * 4 * P > PS_OMP_MIN_WORK)
    for (int64_t o = 0; o < OC; o++) {
      for (int64_t i = 0; i < H; i++) {
        for (int a = 0; a < 2; a++) {
          const float *grow = gb + (o * 2 * H + 2 * i + a) * 2 * W;
          float *y0 = scratch + (o * 4 + a * 2) * P + i * W;
          float *y1 = y0 + P;
          for (int64_t j = 0; j < W; j++) {
            y0[j] = grow[2 * j];
            y1[j] = grow[2 * j + 1];
          }
        }
      }
    }
    if (dbias) {
      for (int64_t o = 0; o < OC; o++) {
        float s = 0.0f;
        for (int64_t p = 0; p < 4 * P; p++) s += scratch[o * 4 * P + p];
        dbias[o] += s;
      }
    }
    if (dinp)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)C, (int)P, (int)(4 * OC), 1.0f,
                  weight, (int)(4 * OC), scratch, (int)P, 1.0f, dinp + b * C * P, (int)P);
    if (dweight)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)C, (int)(4 * OC), (int)P, 1.0f,
                  inp + b * C * P, (int)P, scratch, (int)P, 1.0f, dweight, (int)(4 * OC));
  }
}
