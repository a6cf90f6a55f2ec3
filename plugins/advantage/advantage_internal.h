/* advantage_internal.h — what the advantage plugin's files share: the
 * instance struct and the capability functions.  Not installed. */
#pragma once

#include <pathseg/plugin.h>

#include "advantage.h"

typedef struct ps_advantage_self {
  gboolean is_gae;
  struct {
    double gamma, lam, kl_coef, whiten_eps, cliprange_value;
    ps_gae_recursion recursion;
    ps_score_position score_position;
    ps_kl_estimator kl_estimator;
    gboolean whiten, whiten_rewards;
  } gae;
  struct {
    ps_reward_scale scale;
    double eps;
  } group;
  ps_policy_loss_cfg loss;
  /* Work buffers reused across steps (grown, never shrunk). */
  void *scratch;
  size_t scratch_len;
} ps_advantage_self;

gboolean ps_advantage_gae_compute(void *self, const ps_advantage_batch *batch, float *advantages,
                                  float *returns, GError **error);
gboolean ps_advantage_group_compute(void *self, const ps_advantage_batch *batch, float *advantages,
                                    float *returns, GError **error);
gboolean ps_advantage_policy_loss(void *self, const ps_policy_batch *batch,
                                  ps_policy_loss_stats *stats, GError **error);
gboolean ps_advantage_value_loss(void *self, const float *v, const float *v_old,
                                 const float *returns, const float *mask, int64_t n, double *loss,
                                 float *grad_v, GError **error);
const ps_policy_loss_cfg *ps_advantage_loss_config(void *self);

extern const ps_fixture_iface ps_advantage_gae_fixture;
extern const ps_fixture_iface ps_advantage_grpo_fixture;
