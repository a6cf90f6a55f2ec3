/* norm.c — LayerNorm (last dim), SAM's LayerNorm2d (channels of NCHW) and
 * RMSNorm on the CPU. Rows are independent, so row spans are split across
 * threads; weight/bias gradients, which sum over rows, are split by column
 * instead so that no two threads write the same element. Span functions are
 * compiled per SIMD level (PS_SIMD_CLONES). */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

typedef struct {
  float *out, *mean, *rstd, *dweight, *dbias;
  const float *inp, *weight, *bias, *dout, *cmean, *crstd;
  int64_t N, C, B, HW;
  float eps;
} norm_args;

/* ---- LayerNorm over the last dim ---- */

PS_SIMD_CLONES static void ln_fwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const norm_args *a = ctx;
  int64_t C = a->C;
  const float *weight = a->weight, *bias = a->bias;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = a->inp + r * C;
    float *y = a->out + r * C;
    /* two passes over the (cached) row: the shifted variance is exact enough
     * even for rows with a large mean */
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t c = 0; c < C; c++) s += x[c];
    float m = s / (float)C;
    float v = 0.0f;
#pragma omp simd reduction(+ : v)
    for (int64_t c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
    float rs = 1.0f / sqrtf(v / (float)C + a->eps);
    if (weight && bias) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs * weight[c] + bias[c];
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) y[c] = (x[c] - m) * rs;
      if (weight) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) y[c] *= weight[c];
      }
      if (bias) {
#pragma omp simd
        for (int64_t c = 0; c < C; c++) y[c] += bias[c];
      }
    }
    if (a->mean) a->mean[r] = m;
    if (a->rstd) a->rstd[r] = rs;
  }
}

void ps_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int64_t N, int64_t C,
                              float eps) {
  /* out, inp: (N, C); mean, rstd: (N) or NULL; weight, bias: (C) or NULL */
  norm_args a = {.out = out,
                 .mean = mean,
                 .rstd = rstd,
                 .inp = inp,
                 .weight = weight,
                 .bias = bias,
                 .N = N,
                 .C = C,
                 .eps = eps};
  ps_parallel_spans(N, C, ln_fwd_span, &a);
}

/* Rows r0..r1 of the LayerNorm backward:
 *   dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dout * weight
 * (when a->out), and dy * xhat, dy added into accw / accb (when not NULL) in
 * the same visit of the row. */
PS_SIMD_CLONES static void ln_bwd_block(const norm_args *a, int64_t r0, int64_t r1, float *accw,
                                        float *accb) {
  int64_t C = a->C;
  const float *weight = a->weight;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = a->inp + r * C, *dy = a->dout + r * C;
    float m = a->cmean[r], rs = a->crstd[r];
    if (accw) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) accw[c] += dy[c] * (x[c] - m) * rs;
    }
    if (accb) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) accb[c] += dy[c];
    }
    if (!a->out) continue;
    float *dx = a->out + r * C;
    float sg = 0.0f, sgx = 0.0f;
    if (weight) {
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t c = 0; c < C; c++) {
        float g = dy[c] * weight[c];
        sg += g;
        sgx += g * (x[c] - m) * rs;
      }
    } else {
#pragma omp simd reduction(+ : sg, sgx)
      for (int64_t c = 0; c < C; c++) {
        sg += dy[c];
        sgx += dy[c] * (x[c] - m) * rs;
      }
    }
    sg /= (float)C;
    sgx /= (float)C;
    if (weight) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++)
        dx[c] += rs * (dy[c] * weight[c] - sg - (x[c] - m) * rs * sgx);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dx[c] += rs * (dy[c] - sg - (x[c] - m) * rs * sgx);
    }
  }
}

static void ln_bwd_rows(const void *ctx, int64_t r0, int64_t r1) {
  ln_bwd_block(ctx, r0, r1, NULL, NULL);
}

/* dweight[c] += sum_r dy * xhat, dbias[c] += sum_r dy over a column range
 * (the unfused path for very wide rows). */
PS_SIMD_CLONES static void ln_bwd_cols(const void *ctx, int64_t c0, int64_t c1) {
  const norm_args *a = ctx;
  int64_t C = a->C;
  for (int64_t r = 0; r < a->N; r++) {
    const float *x = a->inp + r * C, *dy = a->dout + r * C;
    float m = a->cmean[r], rs = a->crstd[r];
    if (a->dweight) {
      float *dw = a->dweight;
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) dw[c] += dy[c] * (x[c] - m) * rs;
    }
    if (a->dbias) {
      float *db = a->dbias;
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) db[c] += dy[c];
    }
  }
}

/* Rows up to this width accumulate the weight/bias gradients in per-thread
 * copies on the stack (2 x 16 KB) during the dinp pass, so backward reads
 * dout and inp once; the copies are added in thread order (deterministic for
 * a given thread count). */
#define FUSE_MAX_C 4096

void ps_cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int64_t N, int64_t C) {
  /* dinp: (N, C); dweight, dbias: (C); dout, inp: (N, C); mean, rstd: (N) */
  norm_args a = {.out = dinp,
                 .dweight = dweight,
                 .dbias = dbias,
                 .inp = inp,
                 .weight = weight,
                 .dout = dout,
                 .cmean = mean,
                 .crstd = rstd,
                 .N = N,
                 .C = C};
  if (N <= 0 || C <= 0) return;
  if (!dweight && !dbias) {
    if (dinp) ps_parallel_spans(N, C, ln_bwd_rows, &a);
    return;
  }
  if (C > FUSE_MAX_C) {
    if (dinp) ps_parallel_spans(N, C, ln_bwd_rows, &a);
    ps_parallel_spans(C, N, ln_bwd_cols, &a);
    return;
  }
  if (N * C <= PS_OMP_MIN_WORK || omp_get_max_threads() == 1) {
    ln_bwd_block(&a, 0, N, dweight, dbias);
    return;
  }
#pragma omp parallel
  {
    float accw[FUSE_MAX_C], accb[FUSE_MAX_C];
    memset(accw, 0, (size_t)C * sizeof(float));
    memset(accb, 0, (size_t)C * sizeof(float));
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    ln_bwd_block(&a, N * t / nt, N * (t + 1) / nt, dweight ? accw : NULL, dbias ? accb : NULL);
#pragma omp for ordered schedule(static, 1)
    for (int i = 0; i < nt; i++) {
#pragma omp ordered
      {
        for (int64_t c = 0; c < C; c++) {
          if (dweight) dweight[c] += accw[c];
          if (dbias) dbias[c] += accb[c];
        }
      }
    }
  }
}

/* ---- LayerNorm2d: channels of NCHW, in blocks of PIX pixels whose channel
 * slices are contiguous, so the statistics vectorise across pixels ---- */

#define PIX 64

PS_SIMD_CLONES static void ln2d_fwd_span(const void *ctx, int64_t u0, int64_t u1) {
  const norm_args *a = ctx;
  int64_t C = a->C, HW = a->HW, nblk = (HW + PIX - 1) / PIX;
  for (int64_t u = u0; u < u1; u++) {
    int64_t b = u / nblk, p0 = (u % nblk) * PIX, np = ps_min64(PIX, HW - p0);
    const float *x = a->inp + b * C * HW + p0;
    float *y = a->out + b * C * HW + p0;
    float m[PIX], rs[PIX];
    for (int64_t p = 0; p < np; p++) m[p] = rs[p] = 0.0f;
    for (int64_t c = 0; c < C; c++) {
#pragma omp simd
      for (int64_t p = 0; p < np; p++) m[p] += x[c * HW + p];
    }
    for (int64_t p = 0; p < np; p++) m[p] /= (float)C;
    for (int64_t c = 0; c < C; c++) {
#pragma omp simd
      for (int64_t p = 0; p < np; p++) {
        float d = x[c * HW + p] - m[p];
        rs[p] += d * d;
      }
    }
    for (int64_t p = 0; p < np; p++) rs[p] = 1.0f / sqrtf(rs[p] / (float)C + a->eps);
    for (int64_t c = 0; c < C; c++) {
      float w = a->weight ? a->weight[c] : 1.0f, bb = a->bias ? a->bias[c] : 0.0f;
#pragma omp simd
      for (int64_t p = 0; p < np; p++) y[c * HW + p] = (x[c * HW + p] - m[p]) * rs[p] * w + bb;
    }
    for (int64_t p = 0; p < np; p++) {
      if (a->mean) a->mean[b * HW + p0 + p] = m[p];
      if (a->rstd) a->rstd[b * HW + p0 + p] = rs[p];
    }
  }
}

void ps_cpu_layernorm2d_forward(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int64_t B, int64_t C,
                                int64_t HW, float eps) {
  /* out, inp: (B, C, HW); mean, rstd: (B, HW) or NULL; weight, bias: (C) or NULL */
  norm_args a = {.out = out,
                 .mean = mean,
                 .rstd = rstd,
                 .inp = inp,
                 .weight = weight,
                 .bias = bias,
                 .C = C,
                 .B = B,
                 .HW = HW,
                 .eps = eps};
  int64_t nblk = (HW + PIX - 1) / PIX;
  ps_parallel_spans(B * nblk, C * PIX, ln2d_fwd_span, &a);
}

PS_SIMD_CLONES static void ln2d_bwd_span(const void *ctx, int64_t u0, int64_t u1) {
  const norm_args *a = ctx;
  int64_t C = a->C, HW = a->HW, nblk = (HW + PIX - 1) / PIX;
  for (int64_t u = u0; u < u1; u++) {
    int64_t b = u / nblk, p0 = (u % nblk) * PIX, np = ps_min64(PIX, HW - p0);
    const float *x = a->inp + b * C * HW + p0, *dy = a->dout + b * C * HW + p0;
    const float *m = a->cmean + b * HW + p0, *rs = a->crstd + b * HW + p0;
    float *dx = a->out + b * C * HW + p0;
    float sg[PIX], sgx[PIX];
    for (int64_t p = 0; p < np; p++) sg[p] = sgx[p] = 0.0f;
    for (int64_t c = 0; c < C; c++) {
      float w = a->weight ? a->weight[c] : 1.0f;
#pragma omp simd
      for (int64_t p = 0; p < np; p++) {
        float g = dy[c * HW + p] * w;
        sg[p] += g;
        sgx[p] += g * (x[c * HW + p] - m[p]) * rs[p];
      }
    }
    for (int64_t p = 0; p < np; p++) {
      sg[p] /= (float)C;
      sgx[p] /= (float)C;
    }
    for (int64_t c = 0; c < C; c++) {
      float w = a->weight ? a->weight[c] : 1.0f;
#pragma omp simd
      for (int64_t p = 0; p < np; p++) {
        float xh = (x[c * HW + p] - m[p]) * rs[p];
        dx[c * HW + p] += rs[p] * (dy[c * HW + p] * w - sg[p] - xh * sgx[p]);
      }
    }
  }
}

PS_SIMD_CLONES static void ln2d_bwd_channels(const void *ctx, int64_t c0, int64_t c1) {
  const norm_args *a = ctx;
  int64_t C = a->C, HW = a->HW;
  for (int64_t c = c0; c < c1; c++) {
    float sw = 0.0f, sb = 0.0f;
    for (int64_t b = 0; b < a->B; b++) {
      const float *x = a->inp + (b * C + c) * HW, *dy = a->dout + (b * C + c) * HW;
      const float *m = a->cmean + b * HW, *rs = a->crstd + b * HW;
#pragma omp simd reduction(+ : sw, sb)
      for (int64_t p = 0; p < HW; p++) {
        sw += dy[p] * (x[p] - m[p]) * rs[p];
        sb += dy[p];
      }
    }
    if (a->dweight) a->dweight[c] += sw;
    if (a->dbias) a->dbias[c] += sb;
  }
}

void ps_cpu_layernorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, const float *mean,
                                 const float *rstd, int64_t B, int64_t C, int64_t HW) {
  /* dinp, dout, inp: (B, C, HW); dweight, dbias: (C); mean, rstd: (B, HW) */
  norm_args a = {.out = dinp,
                 .dweight = dweight,
                 .dbias = dbias,
                 .inp = inp,
                 .weight = weight,
                 .dout = dout,
                 .cmean = mean,
                 .crstd = rstd,
                 .C = C,
                 .B = B,
                 .HW = HW};
  int64_t nblk = (HW + PIX - 1) / PIX;
  if (dinp) ps_parallel_spans(B * nblk, C * PIX, ln2d_bwd_span, &a);
  if (dweight || dbias) ps_parallel_spans(C, B * HW, ln2d_bwd_channels, &a);
}

/* ---- RMSNorm (Qwen2): weight * x * rsqrt(mean(x^2) + eps) ---- */

PS_SIMD_CLONES static void rms_fwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const norm_args *a = ctx;
  int64_t C = a->C;
  const float *weight = a->weight;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = a->inp + r * C;
    float *y = a->out + r * C;
    float ss = 0.0f;
#pragma omp simd reduction(+ : ss)
    for (int64_t c = 0; c < C; c++) ss += x[c] * x[c];
    float rs = 1.0f / sqrtf(ss / (float)C + a->eps);
    if (weight) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) y[c] = weight[c] * (x[c] * rs);
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) y[c] = x[c] * rs;
    }
    if (a->rstd) a->rstd[r] = rs;
  }
}

void ps_cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                            int64_t N, int64_t C, float eps) {
  /* out, inp: (N, C); rstd: (N) or NULL; weight: (C) or NULL */
  norm_args a = {
      .out = out, .rstd = rstd, .inp = inp, .weight = weight, .N = N, .C = C, .eps = eps};
  ps_parallel_spans(N, C, rms_fwd_span, &a);
}

/* Rows r0..r1 of the RMSNorm backward,
 *   dx = rstd * g - x * rstd^3 * mean(g * x) with g = dout * weight
 * (when a->out), plus dy * x * rstd into accw (when not NULL). */
PS_SIMD_CLONES static void rms_bwd_block(const norm_args *a, int64_t r0, int64_t r1, float *accw) {
  int64_t C = a->C;
  const float *weight = a->weight;
  for (int64_t r = r0; r < r1; r++) {
    const float *x = a->inp + r * C, *dy = a->dout + r * C;
    float rs = a->crstd[r];
    if (accw) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) accw[c] += dy[c] * x[c] * rs;
    }
    if (!a->out) continue;
    float *dx = a->out + r * C;
    float sgx = 0.0f;
    if (weight) {
#pragma omp simd reduction(+ : sgx)
      for (int64_t c = 0; c < C; c++) sgx += dy[c] * weight[c] * x[c];
    } else {
#pragma omp simd reduction(+ : sgx)
      for (int64_t c = 0; c < C; c++) sgx += dy[c] * x[c];
    }
    float k = rs * rs * rs * sgx / (float)C;
    if (weight) {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dx[c] += rs * dy[c] * weight[c] - x[c] * k;
    } else {
#pragma omp simd
      for (int64_t c = 0; c < C; c++) dx[c] += rs * dy[c] - x[c] * k;
    }
  }
}

static void rms_bwd_rows(const void *ctx, int64_t r0, int64_t r1) {
  rms_bwd_block(ctx, r0, r1, NULL);
}

PS_SIMD_CLONES static void rms_bwd_cols(const void *ctx, int64_t c0, int64_t c1) {
  const norm_args *a = ctx;
  int64_t C = a->C;
  float *dw = a->dweight;
  for (int64_t r = 0; r < a->N; r++) {
    const float *x = a->inp + r * C, *dy = a->dout + r * C;
    float rs = a->crstd[r];
#pragma omp simd
    for (int64_t c = c0; c < c1; c++) dw[c] += dy[c] * x[c] * rs;
  }
}

void ps_cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int64_t N, int64_t C) {
  /* dinp, dout, inp: (N, C); dweight: (C); rstd: (N). Same fusion as LayerNorm's. */
  norm_args a = {.out = dinp,
                 .dweight = dweight,
                 .inp = inp,
                 .weight = weight,
                 .dout = dout,
                 .crstd = rstd,
                 .N = N,
                 .C = C};
  if (N <= 0 || C <= 0) return;
  if (!dweight) {
    if (dinp) ps_parallel_spans(N, C, rms_bwd_rows, &a);
    return;
  }
  if (C > FUSE_MAX_C) {
    if (dinp) ps_parallel_spans(N, C, rms_bwd_rows, &a);
    ps_parallel_spans(C, N, rms_bwd_cols, &a);
    return;
  }
  if (N * C <= PS_OMP_MIN_WORK || omp_get_max_threads() == 1) {
    rms_bwd_block(&a, 0, N, dweight);
    return;
  }
#pragma omp parallel
  {
    float accw[FUSE_MAX_C];
    memset(accw, 0, (size_t)C * sizeof(float));
    int nt = omp_get_num_threads(), t = omp_get_thread_num();
    rms_bwd_block(&a, N * t / nt, N * (t + 1) / nt, accw);
#pragma omp for ordered schedule(static, 1)
    for (int i = 0; i < nt; i++) {
#pragma omp ordered
      {
        for (int64_t c = 0; c < C; c++) dweight[c] += accw[c];
      }
    }
  }
}
