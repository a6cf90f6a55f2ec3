/* soft_dice.c — `reward.soft_dice`, R_soft: the soft Dice of the mask
 * predicted from the first <SEG> against the ground truth,
 *   D = (2 sum(p t) + eps) / (sum(p) + sum(t) + eps),  p = sigmoid(logits),
 * in [0, 1]. It is differentiable: dD/dz_i = p_i (1 - p_i) dD/dp_i, which the
 * stage sends back through the decoder and adapter to the <SEG> state.
 * No <SEG>, no mask: reward 0. */
#include <math.h>

#include "rewards.h"

typedef struct {
  reward_base base;
  double eps;
} soft_dice;

static const ps_config_key config[] = {
    {"weight", PS_TYPE_FLOAT, "0.3", 0, 1e6, NULL, "lambda_soft"},
    {"eps", PS_TYPE_FLOAT, "1.0", 0, 1e6, NULL, "smoothing of the Dice ratio"},
    {NULL},
};

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  soft_dice *s = g_new0(soft_dice, 1);
  s->base.weight = ps_config_float(cfg, "weight");
  s->eps = ps_config_float(cfg, "eps");
  return s;
}

static double score(void *self, const ps_reward_sample *x, float *dlogits) {
  soft_dice *s = self;
  if (x->n_seg == 0 || !x->logits) return 0.0;
  int64_t n = x->H * x->W;
  double pt = 0, ps = 0, ts = 0;
  for (int64_t i = 0; i < n; i++) {
    double p = 1.0 / (1.0 + exp(-(double)x->logits[i]));
    pt += p * x->target[i];
    ps += p;
    ts += x->target[i];
  }
  double num = 2 * pt + s->eps, den = ps + ts + s->eps;
  if (dlogits) {
    for (int64_t i = 0; i < n; i++) {
      double p = 1.0 / (1.0 + exp(-(double)x->logits[i]));
      double dp = (2 * x->target[i] * den - num) / (den * den);
      dlogits[i] += (float)(dp * p * (1 - p));
    }
  }
  return num / den;
}

static const ps_reward_iface iface = {sizeof(ps_reward_iface), ps_reward_weight, score};
static const void *capability(const char *name) { return g_strcmp0(name, "reward") == 0 ? &iface : NULL; }
static const ps_port_desc none[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, g_free, NULL, NULL, NULL};
const ps_component_desc ps_reward_soft_dice_desc = {
    sizeof(ps_component_desc), PS_KIND_REWARD, "reward.soft_dice",
    "R_soft: differentiable soft Dice of the <SEG> mask against the ground truth.",
    config, none, none, &vtable, capability,
};
