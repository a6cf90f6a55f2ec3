/* test_rl_grpo.c — GRPO group advantages, the clipped surrogate + k3 KL
 * per-token loss and the grpo / dapo aggregations against TRL's outputs
 * (tests/fixtures/grpo.safetensors); the loss gradient w.r.t. the log-probs
 * against central finite differences in double for every aggregation and
 * option; and the edge cases (group of size 1, equal rewards, NaN reward,
 * mask all zeros, bad group size). */
#include <string.h>

#include "fixture_util.h"
#include "rl_math.h"

static void test_fixture(void) {
  g_autoptr(ps_safetensors) st = fx_open("grpo.safetensors");
  fx_tolerance tol = fx_tol(st);
  int64_t N = 0, n = 0;
  g_autofree float *rewards = fx_f32(st, "input.rewards", &N);
  g_autofree float *logps = fx_f32(st, "input.logps", &n);
  g_autofree float *old = fx_f32(st, "input.old_logps", NULL);
  g_autofree float *ref = fx_f32(st, "input.ref_logps", NULL);
  g_autofree float *mask = fx_f32(st, "input.completion_mask", NULL);
  const int64_t B = N, T = n / N;

  GError *error = NULL;
  g_autofree float *adv = g_new0(float, B);
  PS_CHECK_OK(ps_group_advantages(rewards, B, 4, PS_SCALE_GROUP, 1e-4, adv, &error), error);
  fx_compare(st, "output.advantages", adv, B, tol);

  ps_policy_loss_cfg cfg;
  ps_policy_loss_cfg_default(&cfg);
  cfg.beta = 0.04;
  g_autofree float *ptl = g_new0(float, n);
  g_autofree float *kl = g_new0(float, n);
  ps_policy_batch batch = {
      .B = B,
      .T = T,
      .logps = logps,
      .old_logps = old,
      .ref_logps = ref,
      .advantages = adv,
      .adv_per_row = TRUE,
      .mask = mask,
      .per_token_loss = ptl,
      .per_token_kl = kl,
  };
  ps_policy_loss_stats stats;
  cfg.agg = PS_LOSS_GRPO;
  PS_CHECK_OK(ps_policy_loss(&cfg, &batch, &stats, &error), error);
  float loss = (float)stats.loss;
  fx_compare(st, "output.loss_grpo", &loss, 1, tol);
  fx_compare(st, "output.per_token_loss", ptl, n, tol);
  fx_compare(st, "output.per_token_kl", kl, n, tol);
  cfg.agg = PS_LOSS_DAPO;
  PS_CHECK_OK(ps_policy_loss(&cfg, &batch, &stats, &error), error);
  loss = (float)stats.loss;
  fx_compare(st, "output.loss_dapo", &loss, 1, tol);
  /* The loss is on all positions: a masked-out token still has its value. */
  PS_CHECK(mask[1 * T + 5] == 0.0f && ptl[1 * T + 5] != 0.0f);

  /* Advantages broadcast per token give the same loss as per row. */
  g_autofree float *adv_bt = g_new0(float, n);
  for (int64_t i = 0; i < n; i++) adv_bt[i] = adv[i / T];
  ps_policy_batch b2 = batch;
  b2.advantages = adv_bt;
  b2.adv_per_row = FALSE;
  ps_policy_loss_stats s2;
  PS_CHECK_OK(ps_policy_loss(&cfg, &b2, &s2, &error), error);
  PS_CHECK(s2.loss == stats.loss);
}

/* The DAPO normaliser for several processes, bnpo, dr_grpo and seq_sum by
 * hand on a tiny batch where every per-token loss is known. */
static void test_aggregations(void) {
  /* coef_1 = 1 (old = NULL), beta = 0: per-token loss = -A. */
  const float logps[2 * 3] = {-1, -2, -3, -1, -1, -1};
  const float adv[2] = {1.0f, -2.0f};
  const float mask[2 * 3] = {1, 1, 1, 1, 0, 0};
  ps_policy_loss_cfg cfg;
  ps_policy_loss_cfg_default(&cfg);
  ps_policy_batch b = {
      .B = 2, .T = 3, .logps = logps, .advantages = adv, .adv_per_row = TRUE, .mask = mask};
  ps_policy_loss_stats st;
  GError *error = NULL;
  struct {
    ps_loss_agg agg;
    double want;
  } cases[] = {
      {PS_LOSS_GRPO, 0.5 * (-1.0 + 2.0)}, /* row means -1 and 2 */
      {PS_LOSS_BNPO, (-3.0 + 2.0) / 4.0}, /* token mean over 4 */
      {PS_LOSS_DAPO, (-3.0 + 2.0) / 4.0},    {PS_LOSS_DR_GRPO, (-3.0 + 2.0) / (2 * 3)},
      {PS_LOSS_SEQ_SUM, (-3.0 + 2.0) / 2.0},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    cfg.agg = cases[i].agg;
    PS_CHECK_OK(ps_policy_loss(&cfg, &b, &st, &error), error);
    PS_CHECK_NEAR(st.loss, cases[i].want, 1e-7);
  }
  cfg.agg = PS_LOSS_DAPO;
  cfg.dapo_normalizer = 8.0 / 2.0; /* 8 active tokens globally over 2 processes */
  PS_CHECK_OK(ps_policy_loss(&cfg, &b, &st, &error), error);
  PS_CHECK_NEAR(st.loss, -1.0 / 4.0, 1e-7);
  cfg.dapo_normalizer = 0;
  cfg.agg = PS_LOSS_DR_GRPO;
  cfg.max_completion_length = 10;
  PS_CHECK_OK(ps_policy_loss(&cfg, &b, &st, &error), error);
  PS_CHECK_NEAR(st.loss, -1.0 / 20.0, 1e-7);

  /* Names both ways, verl spellings included. */
  ps_loss_agg a;
  PS_CHECK(ps_loss_agg_from_name("dapo", &a) && a == PS_LOSS_DAPO);
  PS_CHECK(ps_loss_agg_from_name("token-mean", &a) && a == PS_LOSS_BNPO);
  PS_CHECK(ps_loss_agg_from_name("seq-mean-token-mean", &a) && a == PS_LOSS_GRPO);
  PS_CHECK(!ps_loss_agg_from_name("mean", &a));
  PS_CHECK(strcmp(ps_loss_agg_name(PS_LOSS_DR_GRPO), "dr_grpo") == 0);
}

static void test_group_edges(void) {
  GError *error = NULL;
  float adv[6];
  /* Group of size 1: TRL's std is NaN, so the advantage is 0. */
  const float r1[3] = {0.3f, 5.0f, -2.0f};
  PS_CHECK_OK(ps_group_advantages(r1, 3, 1, PS_SCALE_GROUP, 1e-4, adv, &error), error);
  PS_CHECK(adv[0] == 0.0f && adv[1] == 0.0f && adv[2] == 0.0f);
  /* All-equal rewards give exactly 0 (0.1 is not exact in binary). */
  const float eq[6] = {0.1f, 0.1f, 0.1f, 0.7f, 0.7f, 0.7f};
  PS_CHECK_OK(ps_group_advantages(eq, 6, 3, PS_SCALE_GROUP, 1e-4, adv, &error), error);
  for (int i = 0; i < 6; i++) PS_CHECK(adv[i] == 0.0f);
  /* Hand values: {0, 1} -> mean 0.5, unbiased std sqrt(0.5). */
  const float two[2] = {0.0f, 1.0f};
  PS_CHECK_OK(ps_group_advantages(two, 2, 2, PS_SCALE_GROUP, 1e-4, adv, &error), error);
  PS_CHECK_NEAR(adv[1], 0.5 / (sqrt(0.5) + 1e-4), 1e-6);
  PS_CHECK_NEAR(adv[0], -adv[1], 1e-7);
  PS_CHECK_OK(ps_group_advantages(two, 2, 2, PS_SCALE_NONE, 1e-4, adv, &error), error);
  PS_CHECK(adv[0] == -0.5f && adv[1] == 0.5f);
  /* Batch scaling divides by the whole batch's std, means stay per group. */
  const float four[4] = {0.0f, 1.0f, 10.0f, 12.0f};
  PS_CHECK_OK(ps_group_advantages(four, 4, 2, PS_SCALE_BATCH, 0.0, adv, &error), error);
  const double m = 23.0 / 4.0;
  const double sd = sqrt(
      ((0 - m) * (0 - m) + (1 - m) * (1 - m) + (10 - m) * (10 - m) + (12 - m) * (12 - m)) / 3.0);
  PS_CHECK_NEAR(adv[0], -0.5 / sd, 1e-6);
  PS_CHECK_NEAR(adv[3], 1.0 / sd, 1e-6);
  /* A NaN reward is left out of the statistics and gets advantage 0. */
  const float withnan[3] = {1.0f, NAN, 3.0f};
  PS_CHECK_OK(ps_group_advantages(withnan, 3, 3, PS_SCALE_GROUP, 0.0, adv, &error), error);
  PS_CHECK(adv[1] == 0.0f);
  PS_CHECK_NEAR(adv[0], -1.0 / sqrt(2.0), 1e-6);
  /* Sizes that do not split are refused. */
  PS_CHECK_FAILS_WITH(ps_group_advantages(four, 4, 3, PS_SCALE_GROUP, 1e-4, adv, &error), error,
                      "groups of 3");
  PS_CHECK_FAILS_WITH(ps_group_advantages(four, 4, 0, PS_SCALE_GROUP, 1e-4, adv, &error), error,
                      "groups of 0");
  /* Weighted nansum of reward terms. */
  const float per[2 * 3] = {1.0f, NAN, 2.0f, 0.5f, 0.5f, 0.5f};
  const float w[3] = {1.0f, 3.0f, 0.5f};
  float r[2];
  ps_combine_rewards(per, w, 2, 3, r);
  PS_CHECK_NEAR(r[0], 2.0, 1e-7);
  PS_CHECK_NEAR(r[1], 2.25, 1e-7);
}

static void test_mask_zero(void) {
  const float logps[2 * 2] = {-1, -2, -3, -4}, adv[2] = {1.0f, -1.0f}, zeros[4] = {0};
  float grad[4];
  ps_policy_loss_cfg cfg;
  ps_policy_loss_cfg_default(&cfg);
  ps_policy_batch b = {.B = 2,
                       .T = 2,
                       .logps = logps,
                       .advantages = adv,
                       .adv_per_row = TRUE,
                       .mask = zeros,
                       .grad_logps = grad};
  GError *error = NULL;
  ps_policy_loss_stats st;
  for (int a = 0; a < PS_LOSS_COUNT; a++) {
    cfg.agg = (ps_loss_agg)a;
    PS_CHECK_OK(ps_policy_loss(&cfg, &b, &st, &error), error);
    PS_CHECK(st.loss == 0.0 && isfinite(st.kl) && st.tokens == 0.0);
    for (int i = 0; i < 4; i++) PS_CHECK(grad[i] == 0.0f);
  }
  cfg.beta = 0.1;
  PS_CHECK_FAILS_WITH(ps_policy_loss(&cfg, &b, &st, &error), error, "reference");
}

/* The aggregated loss of a double batch, for finite differences. */
static double loss_at(const ps_policy_loss_cfg *cfg, const ps_policy_batch_f64 *b) {
  ps_policy_batch_f64 c = *b;
  c.grad_logps = NULL;
  c.per_token_loss = NULL;
  c.per_token_kl = NULL;
  ps_policy_loss_stats st;
  ps_policy_loss_f64(cfg, &c, &st, NULL);
  return st.loss;
}

/* d loss / d logps against central differences (double, h = 1e-6), for each
 * aggregation, with and without KL, delta, dual clip and old = logps. */
static void test_gradient(void) {
  enum { B = 6, T = 9, N = B * T };
  double logp[N], old[N], ref[N], advt[N], adv[B], mask[N], grad[N];
  GRand *rng = g_rand_new_with_seed(2025);
  for (int i = 0; i < N; i++) {
    logp[i] = g_rand_double_range(rng, -4, -0.05);
    old[i] = logp[i] + g_rand_double_range(rng, -0.5, 0.5); /* ratios across both clips */
    ref[i] = logp[i] + g_rand_double_range(rng, -0.6, 0.6);
    advt[i] = g_rand_double_range(rng, -2, 2);
  }
  for (int b = 0; b < B; b++) {
    adv[b] = g_rand_double_range(rng, -2, 2);
    const int len = b == 1 ? 1 : (b == 3 ? 0 : 1 + (int)g_rand_int_range(rng, 0, T));
    for (int t = 0; t < T; t++) mask[b * T + t] = t < len ? 1.0 : 0.0;
  }
  g_rand_free(rng);

  struct {
    const char *what;
    double beta, delta, dual;
    gboolean has_old, per_row;
  } opts[] = {
      {"plain", 0.0, 0.0, 0.0, TRUE, TRUE},
      {"kl", 0.04, 0.0, 0.0, TRUE, TRUE},
      {"kl per-token adv", 0.3, 0.0, 0.0, TRUE, FALSE},
      {"delta", 0.04, 1.1, 0.0, TRUE, TRUE},
      {"dual clip", 0.04, 0.0, 1.05, TRUE, FALSE},
      {"old = logp", 0.04, 0.0, 0.0, FALSE, TRUE},
  };
  int clipped_seen = 0;
  for (size_t o = 0; o < G_N_ELEMENTS(opts); o++) {
    for (int a = 0; a < PS_LOSS_COUNT; a++) {
      ps_policy_loss_cfg cfg;
      ps_policy_loss_cfg_default(&cfg);
      cfg.eps_low = 0.2;
      cfg.eps_high = 0.28;
      cfg.beta = opts[o].beta;
      cfg.delta = opts[o].delta;
      cfg.dual_clip = opts[o].dual;
      cfg.agg = (ps_loss_agg)a;
      if (a == PS_LOSS_DAPO) cfg.dapo_normalizer = 17.0;
      double lp[N];
      memcpy(lp, logp, sizeof lp);
      ps_policy_batch_f64 b = {
          .B = B,
          .T = T,
          .logps = lp,
          .old_logps = opts[o].has_old ? old : NULL,
          .ref_logps = ref,
          .advantages = opts[o].per_row ? adv : advt,
          .adv_per_row = opts[o].per_row,
          .mask = mask,
          .grad_logps = grad,
      };
      ps_policy_loss_stats st;
      GError *error = NULL;
      PS_CHECK_OK(ps_policy_loss_f64(&cfg, &b, &st, &error), error);
      if (st.clip_frac > 0) clipped_seen++;
      /* old = NULL means old = logps.detach(): the finite differences move
       * logps with old held at the unperturbed values. */
      ps_policy_batch_f64 fdb = b;
      if (!opts[o].has_old) fdb.old_logps = logp;
      double worst = 0.0;
      int worst_i = -1;
      for (int i = 0; i < N; i++) {
        const double h = 1e-6, keep = lp[i];
        lp[i] = keep + h;
        const double up = loss_at(&cfg, &fdb);
        lp[i] = keep - h;
        const double dn = loss_at(&cfg, &fdb);
        lp[i] = keep;
        const double fd = (up - dn) / (2 * h);
        const double err = fabs(fd - grad[i]);
        if (err > worst) {
          worst = err;
          worst_i = i;
        }
      }
      PS_CHECK_MSG(worst < 1e-7, "%s / %s: worst |fd - grad| %.3g at %d", opts[o].what,
                   ps_loss_agg_name(cfg.agg), worst, worst_i);

      /* The float API gives the same gradient within float rounding. */
      float lpf[N], oldf[N], reff[N], advf[N], maskf[N], gf[N];
      for (int i = 0; i < N; i++) {
        lpf[i] = (float)logp[i];
        oldf[i] = (float)old[i];
        reff[i] = (float)ref[i];
        advf[i] = (float)(opts[o].per_row ? (i < B ? adv[i] : 0.0) : advt[i]);
        maskf[i] = (float)mask[i];
      }
      ps_policy_batch bf = {
          .B = B,
          .T = T,
          .logps = lpf,
          .old_logps = opts[o].has_old ? oldf : NULL,
          .ref_logps = reff,
          .advantages = advf,
          .adv_per_row = opts[o].per_row,
          .mask = maskf,
          .grad_logps = gf,
      };
      ps_policy_loss_stats sf;
      PS_CHECK_OK(ps_policy_loss(&cfg, &bf, &sf, &error), error);
      double gworst = 0.0;
      for (int i = 0; i < N; i++) gworst = fmax(gworst, fabs(gf[i] - grad[i]));
      PS_CHECK_MSG(gworst < 1e-5 && fabs(sf.loss - st.loss) < 1e-5,
                   "%s / %s: float vs double grad %.3g, loss %.3g", opts[o].what,
                   ps_loss_agg_name(cfg.agg), gworst, fabs(sf.loss - st.loss));
    }
  }
  PS_CHECK(clipped_seen > 0); /* the clipped branch was exercised */
}

/* The KL estimators' derivatives against central differences. */
static void test_kl_estimators(void) {
  const ps_kl_estimator ests[3] = {PS_KL_K1, PS_KL_K2, PS_KL_K3};
  for (int e = 0; e < 3; e++) {
    for (double logp = -3.0; logp < 0; logp += 0.7) {
      const double ref = -1.3, h = 1e-6;
      double d;
      ps_kl_estimate(logp, ref, ests[e], &d);
      const double fd = (ps_kl_estimate(logp + h, ref, ests[e], NULL) -
                         ps_kl_estimate(logp - h, ref, ests[e], NULL)) /
                        (2 * h);
      PS_CHECK_NEAR(d, fd, 1e-7);
    }
  }
  PS_CHECK(ps_kl_estimate(-1.0, -1.0, PS_KL_K3, NULL) == 0.0);
  PS_CHECK(ps_kl_estimate(-1.0, -2.0, PS_KL_K3, NULL) > 0.0);
}

/* Clipping by hand: A > 0 and a ratio above 1 + eps gives the clipped,
 * constant branch (zero gradient); A < 0 with a ratio above it keeps the
 * unclipped one. */
static void test_clip_by_hand(void) {
  const double logp = log(1.5), old = 0.0, m = 1.0;
  double loss[1], grad[1];
  ps_policy_loss_cfg cfg;
  ps_policy_loss_cfg_default(&cfg);
  cfg.agg = PS_LOSS_BNPO;
  double a = 2.0;
  ps_policy_batch_f64 b = {.B = 1,
                           .T = 1,
                           .logps = &logp,
                           .old_logps = &old,
                           .advantages = &a,
                           .adv_per_row = TRUE,
                           .mask = &m,
                           .per_token_loss = loss,
                           .grad_logps = grad};
  ps_policy_loss_stats st;
  PS_CHECK(ps_policy_loss_f64(&cfg, &b, &st, NULL));
  PS_CHECK_NEAR(loss[0], -1.2 * 2.0, 1e-12);
  PS_CHECK(grad[0] == 0.0 && st.clip_frac == 1.0);
  a = -2.0;
  PS_CHECK(ps_policy_loss_f64(&cfg, &b, &st, NULL));
  PS_CHECK_NEAR(loss[0], 1.5 * 2.0, 1e-12);
  PS_CHECK_NEAR(grad[0], 1.5 * 2.0, 1e-12);
  /* Dual clip caps -A r at -A c = 2 * 1.2... with c = 1.3: 2.6 < 3. */
  cfg.dual_clip = 1.3;
  PS_CHECK(ps_policy_loss_f64(&cfg, &b, &st, NULL));
  PS_CHECK_NEAR(loss[0], 2.6, 1e-12);
  PS_CHECK(grad[0] == 0.0);
}

int main(void) {
  test_fixture();
  test_aggregations();
  test_group_edges();
  test_mask_zero();
  test_gradient();
  test_kl_estimators();
  test_clip_by_hand();
  return ps_test_finish();
}
