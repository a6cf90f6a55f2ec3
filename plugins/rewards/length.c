/* length.c — `reward.length`, R_len = -max(0, ln(L - L0 + 1)) with L the
 * completion's length in tokens: free up to L0 tokens, then a slowly growing
 * penalty (weighted by lambda_len). */
#include <math.h>

#include "rewards.h"

typedef struct {
  reward_base base;
  int64_t free_tokens;
} length;

static const ps_config_key config[] = {
    {"weight", PS_TYPE_FLOAT, "0.1", 0, 1e6, NULL, "lambda_len"},
    {"free_tokens", PS_TYPE_INT, "128", 0, 1e9, NULL, "L0: tokens without penalty"},
    {NULL},
};

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  length *s = g_new0(length, 1);
  s->base.weight = ps_config_float(cfg, "weight");
  s->free_tokens = ps_config_int(cfg, "free_tokens");
  return s;
}

static double score(void *self, const ps_reward_sample *x, float *dlogits) {
  length *s = self;
  double over = (double)(x->n_tokens - s->free_tokens + 1);
  return over > 1.0 ? -log(over) : 0.0;
}

static const ps_reward_iface iface = {sizeof(ps_reward_iface), ps_reward_weight, score};
static const void *capability(const char *name) { return g_strcmp0(name, "reward") == 0 ? &iface : NULL; }
static const ps_port_desc none[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, g_free, NULL, NULL, NULL};
const ps_component_desc ps_reward_length_desc = {
    sizeof(ps_component_desc), PS_KIND_REWARD, "reward.length",
    "R_len: -max(0, ln(L - L0 + 1)) on the completion length.",
    config, none, none, &vtable, capability,
};
