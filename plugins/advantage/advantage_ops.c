/* advantage_ops.c — the "advantage" capability: the advantage.gae and
 * advantage.group components' compute / policy_loss / value_loss, i.e. the
 * rl_math.h functions put together the way TRL's trainers do. */
#include <string.h>

#include <pathseg/error.h>

#include "advantage_internal.h"

static gboolean check_batch(const char *who, const ps_advantage_batch *b, gboolean need_values,
                            GError **error) {
  if (b->B < 0 || b->T < 1 || !b->scores || !b->mask || (need_values && !b->values)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: the batch needs B >= 0, T >= 1, scores, mask%s", who,
                need_values ? " and values" : "");
    return FALSE;
  }
  return TRUE;
}

/* Grows the instance's work buffer; allocation happens only when a batch is
 * bigger than every earlier one. */
static void *scratch(ps_advantage_self *s, size_t bytes) {
  if (bytes > s->scratch_len) {
    g_free(s->scratch);
    s->scratch = g_malloc(bytes);
    s->scratch_len = bytes;
  }
  return s->scratch;
}

gboolean ps_advantage_gae_compute(void *self, const ps_advantage_batch *batch, float *advantages,
                                  float *returns, GError **error) {
  ps_advantage_self *s = self;
  if (!check_batch("advantage.gae", batch, TRUE, error)) return FALSE;
  const int64_t B = batch->B, T = batch->T, n = B * T;
  if (s->gae.kl_coef != 0 && (!batch->logps || !batch->ref_logps)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "advantage.gae: kl_coef = %g needs logps and ref_logps in the batch",
                s->gae.kl_coef);
    return FALSE;
  }
  /* seq_len (B) | rewards (B,T) | values (B,T) | mask_p1 (B,T) */
  char *buf = scratch(s, (size_t)B * sizeof(int64_t) + 3 * (size_t)n * sizeof(float));
  int64_t *seq_len = (int64_t *)buf;
  float *rewards = (float *)(buf + (size_t)B * sizeof(int64_t));
  float *values = rewards + n, *mask_p1 = values + n;

  /* TRL's mask is the prefix t <= seq_len: take its last set position. */
  for (int64_t b = 0; b < B; b++) {
    seq_len[b] = -1;
    for (int64_t t = 0; t < T; t++)
      if (batch->mask[b * T + t] != 0) seq_len[b] = t;
  }
  ps_ppo_rewards(batch->logps, batch->ref_logps, batch->scores, seq_len, B, T, s->gae.kl_coef,
                 s->gae.kl_estimator, s->gae.score_position, rewards);
  memcpy(values, batch->values, (size_t)n * sizeof(float));
  ps_ppo_mask_values(values, seq_len, B, T);
  if (s->gae.whiten_rewards) {
    ps_ppo_masks(seq_len, B, T, mask_p1, NULL);
    for (int64_t b = 0; b < B; b++) /* TRL whitens rewards over ~padding_mask_p1 */
      if (seq_len[b] + 1 < T) mask_p1[b * T + seq_len[b] + 1] = 1.0f;
    if (!ps_masked_whiten(rewards, mask_p1, n, FALSE, TRUE, s->gae.whiten_eps, error)) return FALSE;
    for (int64_t i = 0; i < n; i++)
      if (mask_p1[i] == 0) rewards[i] = 0.0f;
  }
  ps_gae(rewards, values, batch->mask, B, T, s->gae.gamma, s->gae.lam, s->gae.recursion, advantages,
         returns);
  if (s->gae.whiten)
    return ps_whiten_advantages(advantages, batch->mask, n, s->gae.whiten_eps, error);
  for (int64_t i = 0; i < n; i++)
    if (batch->mask[i] == 0) advantages[i] = 0.0f;
  return TRUE;
}

gboolean ps_advantage_group_compute(void *self, const ps_advantage_batch *batch, float *advantages,
                                    float *returns, GError **error) {
  ps_advantage_self *s = self;
  if (!check_batch("advantage.group", batch, FALSE, error)) return FALSE;
  const int64_t B = batch->B, T = batch->T;
  float *row = scratch(s, (size_t)B * sizeof(float));
  if (!ps_group_advantages(batch->scores, B, batch->group_size, s->group.scale, s->group.eps, row,
                           error))
    return FALSE;
  for (int64_t b = 0; b < B; b++) {
    for (int64_t t = 0; t < T; t++) {
      advantages[b * T + t] = row[b];
      if (returns) returns[b * T + t] = row[b];
    }
  }
  return TRUE;
}

gboolean ps_advantage_policy_loss(void *self, const ps_policy_batch *batch,
                                  ps_policy_loss_stats *stats, GError **error) {
  ps_advantage_self *s = self;
  return ps_policy_loss(&s->loss, batch, stats, error);
}

gboolean ps_advantage_value_loss(void *self, const float *v, const float *v_old,
                                 const float *returns, const float *mask, int64_t n, double *loss,
                                 float *grad_v, GError **error) {
  ps_advantage_self *s = self;
  return ps_value_loss(v, v_old, returns, mask, n, s->gae.cliprange_value, loss, NULL, grad_v,
                       error);
}

const ps_policy_loss_cfg *ps_advantage_loss_config(void *self) {
  return &((ps_advantage_self *)self)->loss;
}
