/* rl_group.c — GRPO's group-normalised advantages as TRL computes them
 * (nanmean / unbiased nanstd over the G completions of a prompt, divided by
 * std + eps, NaN -> 0), and TRL's weighted nansum of several reward terms. */
#include "rl_math.h"

#include <math.h>

#include <pathseg/error.h>

/* nanmean and unbiased nanstd of x[0..n); NaN when undefined (no values, or
 * one value for the std), exactly as torch's nanmean / TRL's nanstd give. */
static void nan_stats(const float *x, int64_t n, double *mean, double *std) {
  double sum = 0.0, count = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (!isnan(x[i])) {
      sum += x[i];
      count += 1.0;
    }
  }
  *mean = count > 0 ? sum / count : NAN;
  double ss = 0.0;
  for (int64_t i = 0; i < n; i++) {
    if (!isnan(x[i])) {
      const double d = x[i] - *mean;
      ss += d * d;
    }
  }
  *std = count > 1 ? sqrt(ss / (count - 1.0)) : NAN;
}

gboolean ps_group_advantages(const float *rewards, int64_t N, int64_t G, ps_reward_scale scale,
                             double eps, float *adv, GError **error) {
  if (G < 1 || N < 0 || N % G != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "group advantages: %" G_GINT64_FORMAT
                " rewards do not split into groups of %" G_GINT64_FORMAT,
                N, G);
    return FALSE;
  }
  double batch_mean, batch_std;
  nan_stats(rewards, N, &batch_mean, &batch_std);
  for (int64_t g0 = 0; g0 < N; g0 += G) {
    double mean, std;
    nan_stats(rewards + g0, G, &mean, &std);
    if (scale == PS_SCALE_BATCH) std = batch_std;
    for (int64_t i = g0; i < g0 + G; i++) {
      double a = (double)rewards[i] - mean;
      if (scale != PS_SCALE_NONE) a /= std + eps;
      adv[i] = isnan(a) ? 0.0f : (float)a; /* TRL: nan_to_num(advantages, 0) */
    }
  }
  return TRUE;
}

void ps_combine_rewards(const float *per_func, const float *weights, int64_t N, int64_t K,
                        float *r) {
  for (int64_t i = 0; i < N; i++) {
    double s = 0.0;
    for (int64_t k = 0; k < K; k++) {
      const double v = per_func[i * K + k] * (weights ? (double)weights[k] : 1.0);
      if (!isnan(v)) s += v;
    }
    r[i] = (float)s;
  }
}
