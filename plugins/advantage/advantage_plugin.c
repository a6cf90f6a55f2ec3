/* advantage_plugin.c — the `advantage` plugin: components advantage.gae
 * (TRL PPO: per-token GAE from a critic) and advantage.group (TRL GRPO:
 * group-normalised sequence advantages).  Neither has parameters or ports; a
 * stage drives them through the "advantage" capability (advantage.h), and
 * `pipeline fixture` runs rl.gae / rl.grpo through the "fixture" one
 * (advantage_fixture.c). */
#include "advantage.h"

#include <string.h>

#include <pathseg/error.h>
#include <pathseg/plugin.h>

#include "advantage_internal.h"

/* ---------------------------------------------------------------------- */
/* Config schemas (defaults: spec/algorithms.md §3a TRL GRPO, §4a TRL PPO). */

#define LOSS_KEYS(default_loss, default_beta)                                                      \
  {"epsilon",                                                                                      \
   PS_TYPE_FLOAT,                                                                                  \
   "0.2",                                                                                          \
   0,                                                                                              \
   1,                                                                                              \
   NULL,                                                                                           \
   "ratio clipped to [1 - epsilon, 1 + epsilon_high] (TRL epsilon / cliprange)"},                  \
      {"epsilon_high",                                                                             \
       PS_TYPE_FLOAT,                                                                              \
       "null",                                                                                     \
       0,                                                                                          \
       10,                                                                                         \
       NULL,                                                                                       \
       "upper clip (DAPO clip-higher); unset: = epsilon"},                                         \
      {"beta",                                                                                     \
       PS_TYPE_FLOAT,                                                                              \
       default_beta,                                                                               \
       0,                                                                                          \
       1e6,                                                                                        \
       NULL,                                                                                       \
       "weight of the per-token k3 KL to the reference policy in the loss; 0: none"},              \
      {"delta",                                                                                    \
       PS_TYPE_FLOAT,                                                                              \
       "null",                                                                                     \
       1,                                                                                          \
       1e6,                                                                                        \
       NULL,                                                                                       \
       "TRL two-sided clipping: the unclipped ratio is capped at delta; unset: off"},              \
      {"dual_clip",                                                                                \
       PS_TYPE_FLOAT,                                                                              \
       "null",                                                                                     \
       1,                                                                                          \
       1e6,                                                                                        \
       NULL,                                                                                       \
       "verl dual clip clip_ratio_c (e.g. 3.0) for negative advantages; unset: off"},              \
      {"loss_type",                                                                                \
       PS_TYPE_ENUM,                                                                               \
       default_loss,                                                                               \
       PS_NO_RANGE,                                                                                \
       "grpo|bnpo|dr_grpo|dapo|seq_sum",                                                           \
       "aggregation: grpo = mean of row means, dapo/bnpo = token mean, dr_grpo = sum / (B L)"},    \
  {                                                                                                \
    "max_completion_length", PS_TYPE_INT, "0", 0, 1e9, NULL,                                       \
        "dr_grpo normaliser per row; 0: the batch's T"                                             \
  }

static const ps_config_key gae_keys[] = {
    {"gamma", PS_TYPE_FLOAT, "1.0", 0, 1, NULL, "discount (TRL PPO default 1.0)"},
    {"lam", PS_TYPE_FLOAT, "0.95", 0, 1, NULL, "GAE lambda (TRL PPO default 0.95)"},
    {"recursion", PS_TYPE_ENUM, "trl", PS_NO_RANGE, "trl|masked",
     "trl: the recursion runs over all T columns ignoring the mask; masked: verl's carry-over"},
    {"score_position", PS_TYPE_ENUM, "first_pad", PS_NO_RANGE, "first_pad|last_token",
     "where the sequence score enters the reward row: TRL's first pad, or the last real token"},
    {"kl_coef", PS_TYPE_FLOAT, "0.05", 0, 1e6, NULL, "per-token KL penalty in the reward (TRL)"},
    {"kl_estimator", PS_TYPE_ENUM, "k1", PS_NO_RANGE, "k1|k2|k3", "KL estimator in the reward"},
    {"whiten", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "whiten advantages over the batch (unbiased variance), then 0 on padding"},
    {"whiten_eps", PS_TYPE_FLOAT, "1e-8", 0, 1, NULL, "rsqrt(var + whiten_eps)"},
    {"whiten_rewards", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "TRL whiten_rewards: whiten the rewards (keep the mean) before GAE"},
    {"cliprange_value", PS_TYPE_FLOAT, "0.2", 0, 1e6, NULL,
     "value-loss clip around the old values"},
    LOSS_KEYS("bnpo", "0.0"),
    {NULL},
};

static const ps_config_key group_keys[] = {
    {"scale_rewards", PS_TYPE_ENUM, "group", PS_NO_RANGE, "group|batch|none",
     "divide by the group's (or batch's) unbiased std; none: Dr. GRPO"},
    {"eps", PS_TYPE_FLOAT, "1e-4", 0, 1, NULL,
     "A = (r - mean) / (std + eps) (TRL 1e-4, verl 1e-6)"},
    LOSS_KEYS("dapo", "0.0"),
    {NULL},
};

static const ps_port_desc no_ports[] = {{NULL}};

/* ---------------------------------------------------------------------- */
/* Instances. */

static gboolean loss_cfg_from_config(const ps_config *config, const char *who,
                                     ps_policy_loss_cfg *lc, GError **error) {
  ps_policy_loss_cfg_default(lc);
  lc->eps_low = ps_config_float(config, "epsilon");
  lc->eps_high =
      ps_config_has(config, "epsilon_high") ? ps_config_float(config, "epsilon_high") : lc->eps_low;
  lc->beta = ps_config_float(config, "beta");
  lc->delta = ps_config_has(config, "delta") ? ps_config_float(config, "delta") : 0.0;
  lc->dual_clip = ps_config_has(config, "dual_clip") ? ps_config_float(config, "dual_clip") : 0.0;
  /* The schema's choices are exactly the names ps_loss_agg_from_name knows. */
  ps_loss_agg_from_name(ps_config_string(config, "loss_type"), &lc->agg);
  lc->max_completion_length = ps_config_int(config, "max_completion_length");
  /* The schema's ranges are inclusive; these two need strictly more than 1. */
  if ((ps_config_has(config, "dual_clip") && lc->dual_clip <= 1.0) ||
      (ps_config_has(config, "delta") && lc->delta <= 1.0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: dual_clip and delta must be > 1 when set (got %g, %g)", who, lc->dual_clip,
                lc->delta);
    return FALSE;
  }
  return TRUE;
}

static ps_kl_estimator kl_from_name(const char *name) {
  if (strcmp(name, "k2") == 0) return PS_KL_K2;
  if (strcmp(name, "k3") == 0) return PS_KL_K3;
  return PS_KL_K1;
}

static void *gae_create(const ps_config *config, ps_context *ctx, GError **error) {
  ps_advantage_self *s = g_new0(ps_advantage_self, 1);
  s->is_gae = TRUE;
  s->gae.gamma = ps_config_float(config, "gamma");
  s->gae.lam = ps_config_float(config, "lam");
  s->gae.recursion =
      strcmp(ps_config_string(config, "recursion"), "masked") == 0 ? PS_GAE_MASKED : PS_GAE_TRL;
  s->gae.score_position = strcmp(ps_config_string(config, "score_position"), "last_token") == 0
                              ? PS_SCORE_LAST_TOKEN
                              : PS_SCORE_FIRST_PAD;
  s->gae.kl_coef = ps_config_float(config, "kl_coef");
  s->gae.kl_estimator = kl_from_name(ps_config_string(config, "kl_estimator"));
  s->gae.whiten = ps_config_bool(config, "whiten");
  s->gae.whiten_eps = ps_config_float(config, "whiten_eps");
  s->gae.whiten_rewards = ps_config_bool(config, "whiten_rewards");
  s->gae.cliprange_value = ps_config_float(config, "cliprange_value");
  if (!loss_cfg_from_config(config, "advantage.gae", &s->loss, error)) {
    g_free(s);
    return NULL;
  }
  return s;
}

static void *group_create(const ps_config *config, ps_context *ctx, GError **error) {
  ps_advantage_self *s = g_new0(ps_advantage_self, 1);
  const char *scale = ps_config_string(config, "scale_rewards");
  s->group.scale = strcmp(scale, "batch") == 0  ? PS_SCALE_BATCH
                   : strcmp(scale, "none") == 0 ? PS_SCALE_NONE
                                                : PS_SCALE_GROUP;
  s->group.eps = ps_config_float(config, "eps");
  if (!loss_cfg_from_config(config, "advantage.group", &s->loss, error)) {
    g_free(s);
    return NULL;
  }
  return s;
}

static void advantage_destroy(void *self) {
  ps_advantage_self *s = self;
  if (!s) return;
  g_free(s->scratch);
  g_free(s);
}

static const ps_component_vtable gae_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = gae_create,
    .destroy = advantage_destroy,
};

static const ps_component_vtable group_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = group_create,
    .destroy = advantage_destroy,
};

/* ---------------------------------------------------------------------- */
/* Capabilities. */

static const ps_advantage_iface gae_iface = {
    .struct_size = sizeof(ps_advantage_iface),
    .compute = ps_advantage_gae_compute,
    .policy_loss = ps_advantage_policy_loss,
    .value_loss = ps_advantage_value_loss,
    .loss_config = ps_advantage_loss_config,
};

static const ps_advantage_iface group_iface = {
    .struct_size = sizeof(ps_advantage_iface),
    .compute = ps_advantage_group_compute,
    .policy_loss = ps_advantage_policy_loss,
    .value_loss = NULL,
    .loss_config = ps_advantage_loss_config,
};

static const void *gae_capability(const char *name) {
  if (strcmp(name, PS_ADVANTAGE_CAPABILITY) == 0) return &gae_iface;
  if (strcmp(name, "fixture") == 0) return &ps_advantage_gae_fixture;
  return NULL;
}

static const void *group_capability(const char *name) {
  if (strcmp(name, PS_ADVANTAGE_CAPABILITY) == 0) return &group_iface;
  if (strcmp(name, "fixture") == 0) return &ps_advantage_grpo_fixture;
  return NULL;
}

static const ps_component_desc gae_desc = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_ADVANTAGE,
    .name = "advantage.gae",
    .doc = "Per-token advantages by GAE from a critic's values, as TRL's PPOTrainer computes "
           "them (score at the first pad, KL in the reward, recursion over all columns, "
           "whitening with the unbiased variance), plus the clipped policy and value losses.",
    .config = gae_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &gae_vtable,
    .capability = gae_capability,
};

static const ps_component_desc group_desc = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_ADVANTAGE,
    .name = "advantage.group",
    .doc = "GRPO group-normalised advantages as TRL's GRPOTrainer computes them ((r - mean) / "
           "(unbiased std + eps) over the completions of one prompt), plus the clipped "
           "surrogate + k3 KL loss with the grpo / dapo / bnpo / dr_grpo aggregations.",
    .config = group_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &group_vtable,
    .capability = group_capability,
};

static const ps_component_desc *const components[] = {&gae_desc, &group_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "advantage",
    .version = "0.1.0",
    .license = "MIT",
    .description =
        "GAE and GRPO group advantages, clipped policy loss, value loss (TRL conventions)",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &plugin;
}
