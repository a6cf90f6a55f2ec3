/* rl_gae.c — TRL PPOTrainer's rollout conventions (masks, score placement,
 * KL in the reward, value masking), GAE, masked whitening and the clipped
 * value loss (spec/algorithms.md §4, spec/quirks.md "GAE and GRPO"). */
#include "rl_math.h"

#include <math.h>

#include <pathseg/error.h>

void ps_ppo_seq_len(const int64_t *tokens, int64_t B, int64_t T, int64_t pad_token_id,
                    int64_t *seq_len) {
  for (int64_t b = 0; b < B; b++) {
    int64_t first_pad = T; /* TRL first_true_indices: T when the row has no pad */
    for (int64_t t = 0; t < T; t++) {
      if (tokens[b * T + t] == pad_token_id) {
        first_pad = t;
        break;
      }
    }
    seq_len[b] = first_pad - 1;
  }
}

void ps_ppo_masks(const int64_t *seq_len, int64_t B, int64_t T, float *mask, float *mask_p1) {
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++) {
      mask[b * T + t] = t <= seq_len[b] ? 1.0f : 0.0f;
      if (mask_p1) mask_p1[b * T + t] = t <= seq_len[b] + 1 ? 1.0f : 0.0f;
    }
  }
}

int64_t ps_score_index(int64_t seq_len, int64_t T, ps_score_position pos) {
  if (pos == PS_SCORE_FIRST_PAD && seq_len + 1 < T) return seq_len + 1;
  /* Clamp so that a bad seq_len cannot write outside the row. */
  if (seq_len >= T) return T - 1;
  return seq_len < 0 ? 0 : seq_len;
}

void ps_ppo_rewards(const float *logps, const float *ref_logps, const float *scores,
                    const int64_t *seq_len, int64_t B, int64_t T, double kl_coef,
                    ps_kl_estimator est, ps_score_position pos, float *rewards) {
  const gboolean kl = kl_coef != 0 && logps && ref_logps;
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++) {
      const int64_t i = b * T + t;
      /* On padding TRL sets logp = ref = INVALID_LOGPROB, so the KL is 0. */
      rewards[i] = (kl && t <= seq_len[b])
                       ? (float)(-kl_coef * ps_kl_estimate(logps[i], ref_logps[i], est, NULL))
                       : 0.0f;
    }
    if (T > 0) rewards[b * T + ps_score_index(seq_len[b], T, pos)] += scores[b];
  }
}

void ps_ppo_mask_values(float *values, const int64_t *seq_len, int64_t B, int64_t T) {
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = seq_len[b] + 2; t < T; t++)
      if (t >= 0) values[b * T + t] = 0.0f;
}

void ps_gae(const float *rewards, const float *values, const float *mask, int64_t B, int64_t T,
            double gamma, double lam, ps_gae_recursion rec, float *advantages, float *returns) {
  for (int64_t b = 0; b < B; b++) {
    const float *r = rewards + b * T, *v = values + b * T;
    float *a = advantages + b * T;
    /* float state, like the float32 torch loop the fixture comes from. */
    float lastgaelam = 0.0f, nextvalues = 0.0f;
    for (int64_t t = T - 1; t >= 0; t--) {
      if (rec == PS_GAE_TRL) {
        nextvalues = t < T - 1 ? v[t + 1] : 0.0f;
        const float delta = r[t] + (float)gamma * nextvalues - v[t];
        lastgaelam = delta + (float)(gamma * lam) * lastgaelam;
        a[t] = lastgaelam;
      } else {
        /* verl: masked positions carry nextvalues and lastgaelam over. */
        const float delta = r[t] + (float)gamma * nextvalues - v[t];
        const float cand = delta + (float)(gamma * lam) * lastgaelam;
        if (!mask || mask[b * T + t] != 0) { /* no mask: every position counts */
          nextvalues = v[t];
          lastgaelam = cand;
        }
        a[t] = lastgaelam;
      }
    }
    if (returns)
      for (int64_t t = 0; t < T; t++) returns[b * T + t] = a[t] + v[t];
  }
}

gboolean ps_masked_whiten(float *x, const float *mask, int64_t n, gboolean shift_mean,
                          gboolean unbiased, double eps, GError **error) {
  double msum = 0.0, xsum = 0.0;
  for (int64_t i = 0; i < n; i++) {
    msum += mask[i];
    xsum += (double)x[i] * mask[i];
  }
  if (msum == 0.0 || (unbiased && msum == 1.0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                "masked whiten: the mask sums to %g, so the %s variance is undefined "
                "(TRL raises here too: need at least %d unmasked values)",
                msum, unbiased ? "unbiased" : "", unbiased ? 2 : 1);
    return FALSE;
  }
  const double mean = xsum / msum;
  double var = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double d = (double)x[i] - mean;
    var += d * d * mask[i];
  }
  var /= msum;
  if (unbiased) var *= msum / (msum - 1.0);
  const double rstd = 1.0 / sqrt(var + eps);
  for (int64_t i = 0; i < n; i++) {
    double w = ((double)x[i] - mean) * rstd;
    if (!shift_mean) w += mean;
    x[i] = (float)w;
  }
  return TRUE;
}

gboolean ps_whiten_advantages(float *adv, const float *mask, int64_t n, double eps,
                              GError **error) {
  if (!ps_masked_whiten(adv, mask, n, TRUE, TRUE, eps, error)) return FALSE;
  for (int64_t i = 0; i < n; i++)
    if (mask[i] == 0) adv[i] = 0.0f;
  return TRUE;
}

gboolean ps_value_loss(const float *v, const float *v_old, const float *returns, const float *mask,
                       int64_t n, double clip, double *loss, double *clip_frac, float *grad_v,
                       GError **error) {
  double msum = 0.0;
  for (int64_t i = 0; i < n; i++) msum += mask[i];
  if (msum == 0.0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                "value loss: the mask is all zeros, the masked mean is undefined");
    return FALSE;
  }
  double sum = 0.0, clipped = 0.0;
  for (int64_t i = 0; i < n; i++) {
    const double x = v[i], lo = (double)v_old[i] - clip, hi = (double)v_old[i] + clip;
    const double xc = x < lo ? lo : (x > hi ? hi : x);
    const double e1 = x - returns[i], e2 = xc - returns[i];
    const double l1 = e1 * e1, l2 = e2 * e2;
    /* torch.max: a tie splits the gradient; clamp passes it at its bounds. */
    const double d1 = 2.0 * e1, d2 = (x >= lo && x <= hi) ? 2.0 * e2 : 0.0;
    const double l = l1 > l2 ? l1 : l2;
    const double d = l1 > l2 ? d1 : (l1 < l2 ? d2 : 0.5 * (d1 + d2));
    sum += l * mask[i];
    clipped += (l2 > l1 ? 1.0 : 0.0) * mask[i];
    if (grad_v) grad_v[i] = (float)(0.5 * d * mask[i] / msum);
  }
  if (loss) *loss = 0.5 * sum / msum;
  if (clip_frac) *clip_frac = clipped / msum;
  return TRUE;
}
