/* resize.c — bilinear and bicubic resampling of NCHW planes on the CPU with
 * PyTorch's F.interpolate(align_corners=False, antialias=False) semantics,
 * and the adjoint for backward.
 *
 * Per output index PyTorch computes, in float32:
 *   src = scale * (dst + 0.5) - 0.5   (bilinear: negative src clamped to 0)
 *   i0 = min(floor(src), in - 1); lambda = clamp(src - i0, 0, 1)
 * bilinear taps i0 and i0 + (i0 < in - 1); bicubic taps i0-1..i0+2 clamped
 * to [0, in-1] with Keys' cubic convolution weights, A = -0.75. The two
 * dimensions are separable, so the taps and weights are computed once per
 * output row/column (at most 4 taps each). */
#include <math.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

#define CUBIC_A -0.75f

typedef struct {
  int64_t idx[4];
  float w[4];
} taps;

static float cubic1(float x) {
  return ((CUBIC_A + 2.0f) * x - (CUBIC_A + 3.0f)) * x * x + 1.0f;
}
static float cubic2(float x) {
  return ((CUBIC_A * x - 5.0f * CUBIC_A) * x + 8.0f * CUBIC_A) * x - 4.0f * CUBIC_A;
}

static taps make_taps(int64_t dst, int64_t in, float scale, ps_resize_mode mode) {
  taps t;
  float src = scale * ((float)dst + 0.5f) - 0.5f;
  if (mode == PS_RESIZE_BILINEAR && src < 0.0f) src = 0.0f;
  int64_t i0 = ps_min64((int64_t)floorf(src), in - 1);
  float lam = src - (float)i0;
  lam = lam < 0.0f ? 0.0f : (lam > 1.0f ? 1.0f : lam);
  if (mode == PS_RESIZE_BILINEAR) {
    t.idx[0] = i0;
    t.idx[1] = i0 + (i0 < in - 1 ? 1 : 0);
    t.w[0] = 1.0f - lam;
    t.w[1] = lam;
    t.idx[2] = t.idx[3] = i0;
    t.w[2] = t.w[3] = 0.0f;
  } else {
    t.w[0] = cubic2(lam + 1.0f);
    t.w[1] = cubic1(lam);
    float x2 = 1.0f - lam; /* same float steps as PyTorch */
    t.w[2] = cubic1(x2);
    t.w[3] = cubic2(x2 + 1.0f);
    for (int k = 0; k < 4; k++) t.idx[k] = ps_max64(0, ps_min64(i0 - 1 + k, in - 1));
  }
  return t;
}

static float axis_scale(float given, int64_t in, int64_t out) {
  return given > 0.0f ? given : (float)in / (float)out;
}

void ps_cpu_resize_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float scale_h, float scale_w,
                           ps_resize_mode mode) {
  /* out: (NC, OH, OW); inp: (NC, H, W) */
  if (NC <= 0 || OH <= 0 || OW <= 0 || H <= 0 || W <= 0) return;
  float sh = axis_scale(scale_h, H, OH), sw = axis_scale(scale_w, W, OW);
  int nt = mode == PS_RESIZE_BILINEAR ? 2 : 4;
#pragma omp parallel for schedule(static) if (NC * OH * OW > PS_OMP_MIN_WORK)
  for (int64_t u = 0; u < NC * OH; u++) {
    int64_t p = u / OH, oy = u % OH;
    taps ty = make_taps(oy, H, sh, mode);
    const float *plane = inp + p * H * W;
    float *orow = out + u * OW;
    for (int64_t ox = 0; ox < OW; ox++) {
      taps tx = make_taps(ox, W, sw, mode);
      float acc = 0.0f;
      for (int a = 0; a < nt; a++) {
        const float *row = plane + ty.idx[a] * W;
        float s = 0.0f;
        for (int c = 0; c < nt; c++) s += tx.w[c] * row[tx.idx[c]];
        acc += ty.w[a] * s;
      }
      orow[ox] = acc;
    }
  }
}

void ps_cpu_resize_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float scale_h, float scale_w,
                            ps_resize_mode mode) {
  /* dinp: (NC, H, W) += the adjoint applied to dout: (NC, OH, OW); one plane per unit */
  if (NC <= 0 || OH <= 0 || OW <= 0 || H <= 0 || W <= 0) return;
  float sh = axis_scale(scale_h, H, OH), sw = axis_scale(scale_w, W, OW);
  int nt = mode == PS_RESIZE_BILINEAR ? 2 : 4;
#pragma omp parallel for schedule(static) if (NC * OH * OW > PS_OMP_MIN_WORK)
  for (int64_t p = 0; p < NC; p++) {
    float *plane = dinp + p * H * W;
    for (int64_t oy = 0; oy < OH; oy++) {
      taps ty = make_taps(oy, H, sh, mode);
      const float *grow = dout + (p * OH + oy) * OW;
      for (int64_t ox = 0; ox < OW; ox++) {
        taps tx = make_taps(ox, W, sw, mode);
        float g = grow[ox];
        for (int a = 0; a < nt; a++) {
          float *row = plane + ty.idx[a] * W;
          float ga = g * ty.w[a];
          for (int c = 0; c < nt; c++) row[tx.idx[c]] += ga * tx.w[c];
        }
      }
    }
  }
}
