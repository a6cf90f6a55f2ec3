/* loss.c — the mask losses on the CPU: BCE with logits (stable form, mean per
 * mask) and soft Dice on sigmoid(logits) per mask (LISA's and MONAI's
 * variants through ps_dice_desc), each with its gradient. Sums over a mask's
 * pixels accumulate in double (a 1024 x 1024 mask has 2^20 terms). */
#include <math.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

void ps_cpu_bce_logits_forward(float *losses, const float *logits, const float *targets, int64_t M,
                               int64_t P) {
  /* losses: (M); logits, targets: (M, P) */
  for (int64_t m = 0; m < M; m++) {
    const float *x = logits + m * P, *t = targets + m * P;
    double s = 0.0;
#pragma omp parallel for reduction(+ : s) schedule(static) if (P > PS_OMP_MIN_WORK)
    for (int64_t i = 0; i < P; i++) {
      float xi = x[i];
      s += (double)(fmaxf(xi, 0.0f) - xi * t[i] + log1pf(ps_vexpf(-fabsf(xi))));
    }
    losses[m] = P > 0 ? (float)(s / (double)P) : 0.0f;
  }
}

void ps_cpu_bce_logits_backward(float *dlogits, const float *dlosses, const float *logits,
                                const float *targets, int64_t M, int64_t P) {
  /* dlogits: (M, P) += dlosses[m] * (sigmoid(x) - t) / P */
  for (int64_t m = 0; m < M; m++) {
    const float *x = logits + m * P, *t = targets + m * P;
    float *g = dlogits + m * P;
    float k = dlosses[m] / (float)P;
#pragma omp parallel for simd schedule(static) if (P > PS_OMP_MIN_WORK)
    for (int64_t i = 0; i < P; i++) g[i] += k * (ps_vsigmoid(x[i]) - t[i]);
  }
}

typedef struct {
  double spt, sp, st; /* sum p*t, sum p^k, sum t^k */
} dice_sums;

static dice_sums dice_reduce(const float *x, const float *t, int64_t P, int squared) {
  double spt = 0.0, sp = 0.0, st = 0.0;
#pragma omp parallel for reduction(+ : spt, sp, st) schedule(static) if (P > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < P; i++) {
    float p = ps_vsigmoid(x[i]);
    spt += (double)(p * t[i]);
    sp += (double)(squared ? p * p : p);
    st += (double)(squared ? t[i] * t[i] : t[i]);
  }
  dice_sums s = {spt, sp, st};
  return s;
}

void ps_cpu_dice_forward(float *losses, const float *logits, const float *targets, int64_t M,
                         int64_t P, const ps_dice_desc *d) {
  /* losses: (M); logits, targets: (M, P) */
  for (int64_t m = 0; m < M; m++) {
    dice_sums s = dice_reduce(logits + m * P, targets + m * P, P, d->squared);
    double num = 2.0 * s.spt / d->scale + d->smooth_nr;
    double den = (s.sp + s.st) / d->scale + d->smooth_dr;
    losses[m] = (float)(1.0 - num / den);
  }
}

void ps_cpu_dice_backward(float *dlogits, const float *dlosses, const float *logits,
                          const float *targets, int64_t M, int64_t P, const ps_dice_desc *d) {
  /* dlogits: (M, P) += dlosses[m] * dloss/dx.
   * loss = 1 - num/den: dloss/dp_i = -(2 t_i/scale) / den + num * (k p_i^(k-1)/scale) / den^2,
   * dp/dx = p (1 - p). */
  for (int64_t m = 0; m < M; m++) {
    const float *x = logits + m * P, *t = targets + m * P;
    float *g = dlogits + m * P;
    dice_sums s = dice_reduce(x, t, P, d->squared);
    double num = 2.0 * s.spt / d->scale + d->smooth_nr;
    double den = (s.sp + s.st) / d->scale + d->smooth_dr;
    float a = (float)(-2.0 / (d->scale * den)) * dlosses[m];      /* times t_i */
    float b = (float)(num / (den * den * d->scale)) * dlosses[m]; /* times dp^k/dp */
    int sq = d->squared;
#pragma omp parallel for simd schedule(static) if (P > PS_OMP_MIN_WORK)
    for (int64_t i = 0; i < P; i++) {
      float p = ps_vsigmoid(x[i]);
      float dp = a * t[i] + b * (sq ? 2.0f * p : 1.0f);
      g[i] += dp * p * (1.0f - p);
    }
  }
}

void ps_cpu_mask_counts(int64_t *counts, const float *logits, const float *targets, int64_t M,
                        int64_t P) {
  /* counts: (M, 3); logits, targets: (M, P) */
#pragma omp parallel for if (M * P > 65536)
  for (int64_t m = 0; m < M; m++) {
    const float *x = logits + m * P, *t = targets + m * P;
    int64_t np = 0, nt = 0, both = 0;
    for (int64_t i = 0; i < P; i++) {
      int pi = x[i] > 0.0f, ti = t[i] > 0.5f;
      np += pi;
      nt += ti;
      both += pi & ti;
    }
    counts[3 * m] = np, counts[3 * m + 1] = nt, counts[3 * m + 2] = both;
  }
}
