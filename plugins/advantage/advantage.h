/* advantage.h — the "advantage" capability of the advantage.gae and
 * advantage.group components: what a stage (so_grpo, grpo) calls to turn a
 * batch of sampled completions into per-token advantages, and to get the
 * policy (and value) loss with the component's configured clipping, KL weight
 * and aggregation.  The math itself is in rl_math.h.
 *
 * Use:
 *     const ps_advantage_iface *adv = desc->capability(PS_ADVANTAGE_CAPABILITY);
 *     void *self = desc->vtable->create(config, ctx, &error);
 *     adv->compute(self, &batch, advantages, returns, &error);
 *     adv->policy_loss(self, &policy_batch, &stats, &error);
 *
 * A stage checks `struct_size` before using a member added later. */
#pragma once

#include "rl_math.h"

G_BEGIN_DECLS

#define PS_ADVANTAGE_CAPABILITY "advantage"

/* One rollout batch.  Rows are completions; for the group estimator the G
 * completions of one prompt are consecutive rows. */
typedef struct ps_advantage_batch {
  int64_t B, T;
  const float *scores;    /* (B) sequence reward (the sum of the reward terms) */
  const float *mask;      /* (B, T) 1 on response tokens, a prefix of each row */
  const float *values;    /* (B, T) critic values at each response position; gae only */
  const float *logps;     /* (B, T) sampling-policy log-probs; gae KL-in-reward, or NULL */
  const float *ref_logps; /* (B, T) reference log-probs; gae KL-in-reward, or NULL */
  int64_t group_size;     /* group only: completions per prompt */
} ps_advantage_batch;

typedef struct ps_advantage_iface {
  uint32_t struct_size; /* sizeof(ps_advantage_iface) of the plugin */
  /* advantages (B, T): gae: TRL's pipeline — rewards from scores (+ KL),
   * values masked after the first pad, GAE, whitening, 0 on padding; group:
   * the row's group advantage at every column (TRL broadcasts over all
   * tokens; the loss applies the mask).  returns (B, T) or NULL: gae gives
   * A + V (before whitening), group gives the advantages again (verl). */
  gboolean (*compute)(void *self, const ps_advantage_batch *batch, float *advantages,
                      float *returns, GError **error);
  /* The clipped surrogate + beta * k3 loss with the component's config;
   * batch->advantages as produced by compute (per token). */
  gboolean (*policy_loss)(void *self, const ps_policy_batch *batch, ps_policy_loss_stats *stats,
                          GError **error);
  /* PPO's clipped value loss (gae; NULL for group).  mask is TRL's mask_p1.
   * v, v_old, returns, mask, grad_v: (n). */
  gboolean (*value_loss)(void *self, const float *v, const float *v_old, const float *returns,
                         const float *mask, int64_t n, double *loss, float *grad_v, GError **error);
  /* The loss configuration the component was created with. */
  const ps_policy_loss_cfg *(*loss_config)(void *self);
} ps_advantage_iface;

G_END_DECLS
