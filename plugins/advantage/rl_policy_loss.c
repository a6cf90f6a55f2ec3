/* rl_policy_loss.c — the clipped-surrogate + k3 KL policy loss of TRL's
 * GRPOTrainer._compute_loss (with verl's dual clip as an option), its
 * aggregations, and its gradient w.r.t. the policy log-probs. */
#include "rl_math.h"

#include <math.h>
#include <string.h>

#include <pathseg/error.h>

static const char *const agg_names[PS_LOSS_COUNT] = {
    [PS_LOSS_GRPO] = "grpo", [PS_LOSS_BNPO] = "bnpo",       [PS_LOSS_DR_GRPO] = "dr_grpo",
    [PS_LOSS_DAPO] = "dapo", [PS_LOSS_SEQ_SUM] = "seq_sum",
};

const char *ps_loss_agg_name(ps_loss_agg agg) {
  return (unsigned)agg < PS_LOSS_COUNT ? agg_names[agg] : "unknown";
}

gboolean ps_loss_agg_from_name(const char *name, ps_loss_agg *out) {
  if (!name) return FALSE;
  for (int a = 0; a < PS_LOSS_COUNT; a++) {
    if (strcmp(name, agg_names[a]) == 0) {
      *out = (ps_loss_agg)a;
      return TRUE;
    }
  }
  /* verl's loss_agg_mode spellings. */
  static const struct {
    const char *name;
    ps_loss_agg agg;
  } verl[] = {
      {"token-mean", PS_LOSS_BNPO},
      {"seq-mean-token-mean", PS_LOSS_GRPO},
      {"seq-mean-token-sum", PS_LOSS_SEQ_SUM},
      {"seq-mean-token-sum-norm", PS_LOSS_DR_GRPO},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(verl); i++) {
    if (strcmp(name, verl[i].name) == 0) {
      *out = verl[i].agg;
      return TRUE;
    }
  }
  return FALSE;
}

void ps_policy_loss_cfg_default(ps_policy_loss_cfg *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->eps_low = 0.2;
  cfg->eps_high = 0.2;
  cfg->agg = PS_LOSS_DAPO;
}

double ps_kl_estimate(double logp, double ref_logp, ps_kl_estimator est, double *dkl_dlogp) {
  const double logr = ref_logp - logp;
  double kl, d;
  switch (est) {
  case PS_KL_K1:
    kl = -logr;
    d = 1.0;
    break;
  case PS_KL_K2:
    kl = 0.5 * logr * logr;
    d = -logr;
    break;
  case PS_KL_K3:
  default:
    kl = exp(logr) - logr - 1.0;
    d = 1.0 - exp(logr); /* d/dlogp of exp(ref - logp) - (ref - logp) - 1 */
    break;
  }
  if (dkl_dlogp) *dkl_dlogp = d;
  return kl;
}

/* The derivative of min(a, b) as torch's autograd takes it: a tie sends half
 * of the gradient each way. */
static inline double min_grad(double a, double b, double da, double db) {
  if (a < b) return da;
  if (a > b) return db;
  return 0.5 * (da + db);
}

typedef struct policy_token {
  double loss, dloss, kl, coef_1;
  gboolean clipped;
} policy_token;

/* One token's loss and d loss / d logp (module comment of rl_math.h). */
static void policy_token_eval(const ps_policy_loss_cfg *cfg, double logp, double old, double ref,
                              double adv, gboolean has_ref, policy_token *out) {
  const double c1_raw = exp(logp - old);
  const double dc1_raw = c1_raw; /* d exp(logp - old) / d logp */
  const double lo = 1.0 - cfg->eps_low, hi = 1.0 + cfg->eps_high;
  /* torch.clamp passes the gradient where lo <= x <= hi (bounds included). */
  const double c2 = c1_raw < lo ? lo : (c1_raw > hi ? hi : c1_raw);
  const double dc2 = (c1_raw >= lo && c1_raw <= hi) ? dc1_raw : 0.0;
  double c1 = c1_raw, dc1 = dc1_raw;
  if (cfg->delta > 0 && c1_raw > cfg->delta) { /* clamp(max=delta): no gradient above */
    c1 = cfg->delta;
    dc1 = 0.0;
  }
  const double a1 = c1 * adv, a2 = c2 * adv;
  double loss = -(a1 < a2 ? a1 : a2);
  double dloss = -min_grad(a1, a2, dc1 * adv, dc2 * adv);
  out->clipped = a2 < a1;
  if (cfg->dual_clip > 0 && adv < 0) {
    /* verl: where A < 0, min(max(-A r, -A clip(r)), -A c); the cap is constant. */
    const double cap = -adv * cfg->dual_clip;
    dloss = min_grad(loss, cap, dloss, 0.0);
    if (cap < loss) {
      loss = cap;
      out->clipped = TRUE;
    }
  }
  double kl = 0.0;
  if (has_ref) {
    double dkl;
    kl = ps_kl_estimate(logp, ref, PS_KL_K3, &dkl);
    if (cfg->beta != 0) {
      loss += cfg->beta * kl;
      dloss += cfg->beta * dkl;
    }
  }
  out->loss = loss;
  out->dloss = dloss;
  out->kl = kl;
  out->coef_1 = c1_raw;
}

static gboolean policy_loss_check(const ps_policy_loss_cfg *cfg, int64_t B, int64_t T,
                                  gboolean has_logps, gboolean has_ref, gboolean has_adv,
                                  gboolean has_mask, GError **error) {
  if (B < 0 || T < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "policy loss: bad batch size (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ")", B, T);
    return FALSE;
  }
  if (!has_logps || !has_adv || !has_mask) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "policy loss: logps, advantages and mask are required");
    return FALSE;
  }
  if (cfg->beta != 0 && !has_ref) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "policy loss: beta = %g needs the reference log-probs", cfg->beta);
    return FALSE;
  }
  if ((unsigned)cfg->agg >= PS_LOSS_COUNT) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "policy loss: unknown aggregation %d",
                (int)cfg->agg);
    return FALSE;
  }
  if (cfg->eps_low < 0 || cfg->eps_high < 0 || (cfg->dual_clip != 0 && cfg->dual_clip <= 1.0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "policy loss: clip epsilons must be >= 0 and dual_clip 0 or > 1 (got %g, %g, %g)",
                cfg->eps_low, cfg->eps_high, cfg->dual_clip);
    return FALSE;
  }
  return TRUE;
}

/* d(aggregated loss) / d(per-token loss * mask) for the tokens of one row. */
static double policy_loss_weight(const ps_policy_loss_cfg *cfg, int64_t B, int64_t T,
                                 double row_count, double total) {
  const double nb = B > 0 ? (double)B : 1.0;
  switch (cfg->agg) {
  case PS_LOSS_GRPO:
    return 1.0 / (nb * (row_count > 1.0 ? row_count : 1.0));
  case PS_LOSS_BNPO:
    return 1.0 / (total > 1.0 ? total : 1.0);
  case PS_LOSS_DR_GRPO: {
    const double len = cfg->max_completion_length > 0 ? (double)cfg->max_completion_length
                                                      : (T > 0 ? (double)T : 1.0);
    return 1.0 / (nb * len);
  }
  case PS_LOSS_DAPO:
    if (cfg->dapo_normalizer > 0) return 1.0 / cfg->dapo_normalizer;
    return 1.0 / (total > 1.0 ? total : 1.0);
  case PS_LOSS_SEQ_SUM:
  default:
    return 1.0 / nb;
  }
}

#define REAL float
#define FN ps_policy_loss
#define BATCH ps_policy_batch
#include "rl_policy_loss_impl.h"
#undef REAL
#undef FN
#undef BATCH

#define REAL double
#define FN ps_policy_loss_f64
#define BATCH ps_policy_batch_f64
#include "rl_policy_loss_impl.h"
#undef REAL
#undef FN
#undef BATCH
