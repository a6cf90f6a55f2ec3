/* rl_math.h — the reinforcement-learning math that the so_grpo / grpo stages
 * call directly: TRL's PPO rollout conventions (masks, score placement, KL in
 * the reward), GAE, masked whitening, GRPO group advantages, the clipped
 * surrogate + k3 KL policy loss (forward AND gradient w.r.t. the log-probs)
 * with the TRL / verl aggregations, and PPO's clipped value loss.
 *
 * Conventions (spec/algorithms.md §3-4, spec/quirks.md "GAE and GRPO"):
 *   - every (B, T) array is row-major, row b = one sampled completion;
 *   - a mask is 0/1 as float (any nonzero value counts as 1 in the counts);
 *     TRL's response mask is a prefix: t <= seq_len[b];
 *   - inputs are float, statistics are accumulated in double, outputs float.
 *
 * Two ways to use this code from another plugin: compile the .c files of
 * plugins/advantage/ into it (add this folder to its include path), or ask a
 * created `advantage.gae` / `advantage.group` component for the capability
 * "advantage" (advantage.h), which wraps these functions with the component's
 * YAML configuration. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ---------------------------------------------------------------------- */
/* KL estimators, per token, of KL(pi || ref) from logr = ref_logp - logp. */

typedef enum {
  PS_KL_K1, /* -logr                      (TRL PPO default, verl "kl"/"k1") */
  PS_KL_K2, /* 0.5 * logr^2               (verl "mse"/"k2") */
  PS_KL_K3, /* exp(logr) - logr - 1       (TRL GRPO, verl "low_var_kl"/"k3") */
} ps_kl_estimator;

/* The estimator's value and, in *dkl_dlogp (may be NULL), its derivative
 * w.r.t. logp (the policy log-prob; ref is constant). */
double ps_kl_estimate(double logp, double ref_logp, ps_kl_estimator est, double *dkl_dlogp);

/* ---------------------------------------------------------------------- */
/* TRL PPO rollout conventions (PPOTrainer.train steps 4-5). */

/* seq_len[b] = index of the last real response token (first pad - 1; T - 1
 * when no pad), from the response token ids.  tokens: (B, T). */
void ps_ppo_seq_len(const int64_t *tokens, int64_t B, int64_t T, int64_t pad_token_id,
                    int64_t *seq_len /* (B) */);

/* mask[b, t] = (t <= seq_len[b]) (TRL's ~padding_mask); mask_p1[b, t] =
 * (t <= seq_len[b] + 1) (~padding_mask_p1, the value-loss mask); mask_p1 may
 * be NULL.  mask, mask_p1: (B, T). */
void ps_ppo_masks(const int64_t *seq_len /* (B) */, int64_t B, int64_t T, float *mask,
                  float *mask_p1);

/* Where the scalar score goes in the reward row. */
typedef enum {
  PS_SCORE_FIRST_PAD,  /* TRL: seq_len + 1 if that is < T, else seq_len */
  PS_SCORE_LAST_TOKEN, /* verl / OpenRLHF: seq_len, the last real token */
} ps_score_position;

int64_t ps_score_index(int64_t seq_len, int64_t T, ps_score_position pos);

/* Per-token rewards as TRL builds them: -kl_coef * KL(logps, ref_logps) on
 * real tokens (t <= seq_len; 0 on padding, where TRL has set both log-probs to
 * INVALID_LOGPROB), plus scores[b] at ps_score_index().  logps / ref_logps
 * may be NULL when kl_coef == 0.  logps, ref_logps, rewards: (B, T). */
void ps_ppo_rewards(const float *logps, const float *ref_logps, const float *scores /* (B) */,
                    const int64_t *seq_len /* (B) */, int64_t B, int64_t T, double kl_coef,
                    ps_kl_estimator est, ps_score_position pos, float *rewards);

/* TRL zeroes the critic's values after the first pad (t > seq_len + 1) but
 * keeps the one at the first pad.  values: (B, T), in place. */
void ps_ppo_mask_values(float *values, const int64_t *seq_len /* (B) */, int64_t B, int64_t T);

/* ---------------------------------------------------------------------- */
/* GAE. */

typedef enum {
  PS_GAE_TRL,    /* TRL: the recursion runs over all T columns, mask ignored */
  PS_GAE_MASKED, /* verl: where mask == 0, nextvalues and lastgaelam carry over */
} ps_gae_recursion;

/* For t = T-1..0: delta = r_t + gamma * V_{t+1} - V_t (V_T = 0),
 * A_t = delta + gamma * lam * A_{t+1}; returns = A + V (NULL to skip).
 * mask is read only by PS_GAE_MASKED (NULL: all ones, the same as PS_GAE_TRL).
 * rewards, values, mask, advantages, returns: (B, T). */
void ps_gae(const float *rewards, const float *values, const float *mask, int64_t B, int64_t T,
            double gamma, double lam, ps_gae_recursion rec, float *advantages, float *returns);

/* TRL masked_whiten over ALL n elements together (the whole batch):
 * mean = Σxm/Σm; var = Σ(x-mean)²m/Σm, times Σm/(Σm-1) when `unbiased`;
 * x = (x - mean) * rsqrt(var + eps), plus mean again when !shift_mean.
 * Fails (as TRL raises) when Σm == 0, or Σm == 1 with `unbiased`.
 * x, mask: (n); x is whitened in place, at every position (mask only weights
 * the statistics). */
gboolean ps_masked_whiten(float *x, const float *mask, int64_t n, gboolean shift_mean,
                          gboolean unbiased, double eps, GError **error);

/* TRL's last step of PPO advantages: whiten with the unbiased variance, then
 * set the masked-out positions to 0.  adv, mask: (n). */
gboolean ps_whiten_advantages(float *adv, const float *mask, int64_t n, double eps, GError **error);

/* ---------------------------------------------------------------------- */
/* GRPO group advantages (TRL _generate_and_score_completions). */

typedef enum {
  PS_SCALE_GROUP, /* (r - group mean) / (group std + eps)       TRL default */
  PS_SCALE_BATCH, /* (r - group mean) / (batch std + eps) */
  PS_SCALE_NONE,  /* r - group mean                              Dr. GRPO */
} ps_reward_scale;

/* rewards[k*G .. k*G+G-1] are the G completions of prompt k.  Means and stds
 * ignore NaN rewards (TRL nanmean / nanstd); stds are unbiased (Bessel).
 * NaN advantages become 0, so a group of size 1 (std undefined) and a NaN
 * reward give 0; a group of equal rewards gives exactly 0.
 * Fails when G < 1 or N is not a multiple of G.  rewards, adv: (N). */
gboolean ps_group_advantages(const float *rewards, int64_t N, int64_t G, ps_reward_scale scale,
                             double eps, float *adv, GError **error);

/* r[i] = nansum_k(weights[k] * per_func[i, k]) (TRL multi-reward sum;
 * weights NULL = all 1).  per_func: (N, K), r: (N). */
void ps_combine_rewards(const float *per_func, const float *weights /* (K) */, int64_t N, int64_t K,
                        float *r);

/* ---------------------------------------------------------------------- */
/* Policy loss: clipped surrogate + beta * k3 KL, aggregated. */

typedef enum {
  PS_LOSS_GRPO,    /* mean_b( Σ_t l m / max(Σ_t m, 1) )   = verl seq-mean-token-mean */
  PS_LOSS_BNPO,    /* Σ l m / max(Σ m, 1) over this batch  = verl token-mean, TRL PPO */
  PS_LOSS_DR_GRPO, /* Σ l m / (B * max_completion_length)  = verl seq-mean-token-sum-norm */
  PS_LOSS_DAPO,    /* Σ l m / normaliser (global active tokens / processes) */
  PS_LOSS_SEQ_SUM, /* mean_b( Σ_t l m )                    = verl seq-mean-token-sum */
  PS_LOSS_COUNT
} ps_loss_agg;

/* "grpo", "bnpo", "dr_grpo", "dapo", "seq_sum"; and back (FALSE if unknown;
 * "token-mean" etc. of verl are accepted too). */
const char *ps_loss_agg_name(ps_loss_agg agg);
gboolean ps_loss_agg_from_name(const char *name, ps_loss_agg *out);

typedef struct ps_policy_loss_cfg {
  double eps_low, eps_high; /* ratio clipped to [1 - eps_low, 1 + eps_high] */
  double beta;              /* weight of the per-token k3 KL to the reference; 0: none */
  double delta;             /* TRL two-sided clipping: coef_1 <= delta; 0: off */
  double dual_clip;         /* verl clip_ratio_c (> 1) for A < 0: loss <= -A c; 0: off */
  ps_loss_agg agg;
  int64_t max_completion_length; /* dr_grpo normaliser per row; <= 0: T */
  double dapo_normalizer;        /* dapo: active tokens of the global batch / processes;
                                    <= 0: this batch's Σ mask (TRL with one process) */
} ps_policy_loss_cfg;

/* TRL GRPO defaults: eps 0.2/0.2, beta 0, no delta, no dual clip, dapo. */
void ps_policy_loss_cfg_default(ps_policy_loss_cfg *cfg);

/* One batch.  Per token (ALL positions, as TRL; the mask enters only the
 * aggregation):
 *   coef_1 = exp(logp - old_logp)   (old_logps NULL: old = logp.detach(), coef_1 = 1)
 *   coef_2 = clamp(coef_1, 1 - eps_low, 1 + eps_high);  coef_1 = min(coef_1, delta) if delta
 *   loss   = -min(coef_1 A, coef_2 A)  [dual clip: min(loss, -A c) where A < 0]
 *            + beta * (exp(ref - logp) - (ref - logp) - 1)
 * grad_logps = d(aggregated loss)/d(logps), with torch's subgradients (a tie
 * in min splits, clamp passes at its bounds: the unclipped branch when
 * coef_1 A <= coef_2 A).  old_logps and ref_logps are constants. */
typedef struct ps_policy_batch {
  int64_t B, T;
  const float *logps;      /* (B, T) current policy log-probs of the sampled tokens */
  const float *old_logps;  /* (B, T) behaviour policy, or NULL (one iteration: = logps) */
  const float *ref_logps;  /* (B, T) reference policy; may be NULL when beta == 0 */
  const float *advantages; /* (B) when adv_per_row, else (B, T) */
  gboolean adv_per_row;
  const float *mask;     /* (B, T) completion mask */
  float *per_token_loss; /* (B, T) out, or NULL */
  float *per_token_kl;   /* (B, T) out (k3), or NULL */
  float *grad_logps;     /* (B, T) out, or NULL: overwritten, not accumulated */
} ps_policy_batch;

/* The same in double, for finite-difference checks and anyone who needs it. */
typedef struct ps_policy_batch_f64 {
  int64_t B, T;
  const double *logps, *old_logps, *ref_logps, *advantages;
  gboolean adv_per_row;
  const double *mask;
  double *per_token_loss, *per_token_kl, *grad_logps;
} ps_policy_batch_f64;

typedef struct ps_policy_loss_stats {
  double loss;       /* the aggregated loss */
  double kl;         /* masked token mean of the k3 KL (0 when beta == 0 and no ref) */
  double clip_frac;  /* masked token fraction where the clipped branch was taken */
  double ratio_mean; /* masked token mean of coef_1 */
  double tokens;     /* Σ mask */
} ps_policy_loss_stats;

/* Fails on bad sizes, a NULL required array, or beta != 0 without ref. */
gboolean ps_policy_loss(const ps_policy_loss_cfg *cfg, const ps_policy_batch *batch,
                        ps_policy_loss_stats *stats, GError **error);
gboolean ps_policy_loss_f64(const ps_policy_loss_cfg *cfg, const ps_policy_batch_f64 *batch,
                            ps_policy_loss_stats *stats, GError **error);

/* ---------------------------------------------------------------------- */
/* PPO value loss (TRL): vclip = clamp(v, v_old - clip, v_old + clip),
 * loss = 0.5 * masked_mean(max((v - R)², (vclip - R)²), mask).  grad_v (may be
 * NULL) gets d loss / d v (torch subgradients).  Fails when Σ mask == 0.
 * v, v_old, returns, mask, grad_v: (n). */
gboolean ps_value_loss(const float *v, const float *v_old, const float *returns, const float *mask,
                       int64_t n, double clip, double *loss, double *clip_frac, float *grad_v,
                       GError **error);

G_END_DECLS
