/* test_rl_gae.c — GAE, returns and masked whitening against TRL's outputs
 * (tests/fixtures/gae.safetensors), TRL's masks / score placement / value
 * masking against the fixture's inputs, the verl recursion against truncated
 * rows, the value loss gradient against finite differences, and the edge
 * cases (mask all zeros or a single token: whitening refuses, as TRL). */
#include <string.h>

#include "fixture_util.h"
#include "rl_math.h"

static void test_fixture(void) {
  g_autoptr(ps_safetensors) st = fx_open("gae.safetensors");
  fx_tolerance tol = fx_tol(st);
  int64_t n = 0, nb = 0;
  g_autofree float *rewards = fx_f32(st, "input.rewards", &n);
  g_autofree float *values = fx_f32(st, "input.values", NULL);
  g_autofree float *mask = fx_f32(st, "input.mask", NULL);
  g_autofree int64_t *seq_len = fx_i64(st, "input.seq_len", &nb);
  const int64_t B = nb, T = n / nb;
  PS_CHECK(B == 6 && T == 16);

  g_autofree float *adv = g_new0(float, n);
  g_autofree float *ret = g_new0(float, n);
  ps_gae(rewards, values, mask, B, T, 0.99, 0.95, PS_GAE_TRL, adv, ret);
  fx_compare(st, "output.advantages", adv, n, tol);
  fx_compare(st, "output.returns", ret, n, tol);
  GError *error = NULL;
  PS_CHECK_OK(ps_whiten_advantages(adv, mask, n, 1e-8, &error), error);
  fx_compare(st, "output.advantages_whitened", adv, n, tol);

  /* The same advantages with the mask ignored prove the loop does not look at
   * it: a different mask must give identical raw advantages. */
  g_autofree float *adv2 = g_new0(float, n);
  ps_gae(rewards, values, NULL, B, T, 0.99, 0.95, PS_GAE_TRL, adv2, NULL);
  fx_compare(st, "output.advantages", adv2, n, tol);

  /* TRL's masks from seq_len reproduce input.mask exactly. */
  g_autofree float *m = g_new0(float, n);
  g_autofree float *m1 = g_new0(float, n);
  ps_ppo_masks(seq_len, B, T, m, m1);
  PS_CHECK(memcmp(m, mask, (size_t)n * sizeof(float)) == 0);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) PS_CHECK(m1[b * T + t] == (t <= seq_len[b] + 1 ? 1.0f : 0.0f));

  /* Values: zero after the first pad, kept at it (the fixture's inputs were
   * masked that way, so masking again changes nothing, and the kept value at
   * the first pad is not zero). */
  g_autofree float *v = g_memdup2(values, (size_t)n * sizeof(float));
  ps_ppo_mask_values(v, seq_len, B, T);
  PS_CHECK(memcmp(v, values, (size_t)n * sizeof(float)) == 0);
  PS_CHECK(values[1 * T + 1] != 0.0f); /* row 1: seq_len 0, first pad 1 */
  g_autofree float *ones = g_new(float, n);
  for (int64_t i = 0; i < n; i++) ones[i] = 1.0f;
  ps_ppo_mask_values(ones, seq_len, B, T);
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      PS_CHECK(ones[b * T + t] == (t <= seq_len[b] + 1 ? 1.0f : 0.0f));

  /* Score placement: with no KL the rewards are the score at the first pad
   * (the last column for a full row) and 0 elsewhere.  The fixture's rewards
   * (score + small KL terms) agree: 0 on padding except there, and the
   * score within the KL terms' size at that index. */
  g_autofree float *scores = fx_f32(st, "trace.scores", NULL);
  g_autofree float *r0 = g_new0(float, n);
  ps_ppo_rewards(NULL, NULL, scores, seq_len, B, T, 0.0, PS_KL_K3, PS_SCORE_FIRST_PAD, r0);
  for (int64_t b = 0; b < B; b++) {
    const int64_t at = ps_score_index(seq_len[b], T, PS_SCORE_FIRST_PAD);
    PS_CHECK(at == (seq_len[b] + 1 < T ? seq_len[b] + 1 : seq_len[b]));
    for (int64_t t = 0; t < T; t++) {
      PS_CHECK(r0[b * T + t] == (t == at ? scores[b] : 0.0f));
      if (t > seq_len[b] && t != at) PS_CHECK(rewards[b * T + t] == 0.0f);
    }
    PS_CHECK_NEAR(rewards[b * T + at], scores[b], 0.05);
    if (at > seq_len[b]) PS_CHECK(rewards[b * T + at] == scores[b]);
  }
  PS_CHECK(ps_score_index(5, 16, PS_SCORE_LAST_TOKEN) == 5);
  PS_CHECK(ps_score_index(15, 16, PS_SCORE_FIRST_PAD) == 15);
}

/* Rewards with KL in them: -kl_coef * k on real tokens only. */
static void test_rewards_kl(void) {
  const int64_t B = 1, T = 4, seq_len[1] = {1};
  const float logp[4] = {-1.0f, -2.0f, -0.5f, -0.5f}, ref[4] = {-1.5f, -1.0f, -3.0f, -3.0f};
  const float score[1] = {2.0f};
  float r[4];
  ps_ppo_rewards(logp, ref, score, seq_len, B, T, 0.1, PS_KL_K3, PS_SCORE_FIRST_PAD, r);
  const double k0 = exp(-0.5) + 0.5 - 1.0, k1 = exp(1.0) - 1.0 - 1.0;
  PS_CHECK_NEAR(r[0], -0.1 * k0, 1e-7);
  PS_CHECK_NEAR(r[1], -0.1 * k1, 1e-7);
  PS_CHECK(r[2] == 2.0f); /* first pad: the score only, no KL on padding */
  PS_CHECK(r[3] == 0.0f);
  ps_ppo_rewards(logp, ref, score, seq_len, B, T, 0.1, PS_KL_K1, PS_SCORE_LAST_TOKEN, r);
  PS_CHECK_NEAR(r[0], -0.1 * 0.5, 1e-7);
  PS_CHECK_NEAR(r[1], -0.1 * -1.0 + 2.0, 1e-6);
  PS_CHECK(r[2] == 0.0f && r[3] == 0.0f);

  /* seq_len from token ids: first pad - 1, T - 1 without a pad. */
  const int64_t tokens[2 * 4] = {5, 6, 0, 0, 5, 6, 7, 8};
  int64_t sl[2];
  ps_ppo_seq_len(tokens, 2, 4, 0, sl);
  PS_CHECK(sl[0] == 1 && sl[1] == 3);
}

/* Recursion by hand for T = 2, and verl's masked recursion equals TRL's on
 * the row truncated at the last real token. */
static void test_recursion(void) {
  const float r[2] = {1.0f, 2.0f}, v[2] = {0.5f, -0.25f};
  float a[2], ret[2];
  ps_gae(r, v, NULL, 1, 2, 0.9, 0.8, PS_GAE_TRL, a, ret);
  const double a1 = 2.0 - (-0.25), a0 = 1.0 + 0.9 * -0.25 - 0.5 + 0.9 * 0.8 * a1;
  PS_CHECK_NEAR(a[1], a1, 1e-6);
  PS_CHECK_NEAR(a[0], a0, 1e-6);
  PS_CHECK_NEAR(ret[0], a0 + 0.5, 1e-6);

  enum { T = 7 };
  const float rr[T] = {0.1f, -0.3f, 0.7f, 1.5f, 9.0f, -4.0f, 3.0f};
  const float vv[T] = {0.2f, 0.4f, -0.6f, 0.9f, 5.0f, 2.0f, -1.0f};
  const float mm[T] = {1, 1, 1, 1, 0, 0, 0};
  float am[T], at[4];
  ps_gae(rr, vv, mm, 1, T, 0.97, 0.9, PS_GAE_MASKED, am, NULL);
  ps_gae(rr, vv, NULL, 1, 4, 0.97, 0.9, PS_GAE_TRL, at, NULL);
  for (int t = 0; t < 4; t++) PS_CHECK_NEAR(am[t], at[t], 1e-6);
  /* With a full mask both recursions agree everywhere. */
  const float full[T] = {1, 1, 1, 1, 1, 1, 1};
  float a_full[T], a_trl[T];
  ps_gae(rr, vv, full, 1, T, 0.97, 0.9, PS_GAE_MASKED, a_full, NULL);
  ps_gae(rr, vv, NULL, 1, T, 0.97, 0.9, PS_GAE_TRL, a_trl, NULL);
  for (int t = 0; t < T; t++) PS_CHECK_NEAR(a_full[t], a_trl[t], 1e-6);
  ps_gae(rr, vv, NULL, 1, T, 0.97, 0.9, PS_GAE_MASKED, a_full, NULL);
  for (int t = 0; t < T; t++) PS_CHECK_NEAR(a_full[t], a_trl[t], 1e-6);
  /* A masked hole in the middle is skipped: A at t = 1 then equals the
   * recursion from t = 3 with gamma applied once. */
  const float hole[4] = {1, 1, 0, 1};
  float ah[4], at2[3];
  ps_gae(rr, vv, hole, 1, 4, 0.97, 0.9, PS_GAE_MASKED, ah, NULL);
  const float r3[3] = {rr[0], rr[1], rr[3]}, v3[3] = {vv[0], vv[1], vv[3]};
  ps_gae(r3, v3, NULL, 1, 3, 0.97, 0.9, PS_GAE_TRL, at2, NULL);
  PS_CHECK_NEAR(ah[0], at2[0], 1e-6);
  PS_CHECK_NEAR(ah[1], at2[1], 1e-6);
  PS_CHECK_NEAR(ah[2], ah[3], 0.0); /* carried over */
  PS_CHECK_NEAR(ah[3], at2[2], 1e-6);
}

static void test_whiten_edges(void) {
  GError *error = NULL;
  float x[4] = {1, 2, 3, 4};
  const float zeros[4] = {0, 0, 0, 0}, one[4] = {0, 1, 0, 0};
  PS_CHECK_FAILS_WITH(ps_masked_whiten(x, zeros, 4, TRUE, TRUE, 1e-8, &error), error,
                      "mask sums to 0");
  PS_CHECK_FAILS_WITH(ps_whiten_advantages(x, one, 4, 1e-8, &error), error, "unbiased");
  PS_CHECK(x[0] == 1 && x[3] == 4); /* untouched on failure */
  /* Biased with one element is defined: (x - x) * rsqrt(0 + eps) = 0. */
  PS_CHECK_OK(ps_masked_whiten(x, one, 4, TRUE, FALSE, 1e-8, &error), error);
  PS_CHECK(x[1] == 0.0f);
  /* Unbiased whitening of {1,2,3,4}: mean 2.5, var 5/3. */
  float y[4] = {1, 2, 3, 4};
  const float all[4] = {1, 1, 1, 1};
  PS_CHECK_OK(ps_masked_whiten(y, all, 4, TRUE, TRUE, 0.0, &error), error);
  PS_CHECK_NEAR(y[0], -1.5 / sqrt(5.0 / 3.0), 1e-6);
  /* shift_mean = FALSE adds the mean back. */
  float z[4] = {1, 2, 3, 4};
  PS_CHECK_OK(ps_masked_whiten(z, all, 4, FALSE, TRUE, 0.0, &error), error);
  PS_CHECK_NEAR(z[0], -1.5 / sqrt(5.0 / 3.0) + 2.5, 1e-6);
  /* Value loss on an all-zero mask is refused, not NaN. */
  double loss;
  PS_CHECK_FAILS_WITH(ps_value_loss(x, x, x, zeros, 4, 0.2, &loss, NULL, NULL, &error), error,
                      "all zeros");
}

/* d(value loss)/dv against central differences in double on the float API:
 * the loss is piecewise quadratic, so a step of 1e-3 is exact away from the
 * kinks up to float rounding. */
static void test_value_loss_grad(void) {
  enum { N = 12 };
  float v[N], vold[N], ret[N], mask[N], g[N];
  GRand *rng = g_rand_new_with_seed(7);
  for (int i = 0; i < N; i++) {
    v[i] = (float)g_rand_double_range(rng, -1, 1);
    vold[i] = v[i] + (float)g_rand_double_range(rng, -0.6, 0.6);
    ret[i] = (float)g_rand_double_range(rng, -1, 1);
    mask[i] = i % 5 == 4 ? 0.0f : 1.0f;
  }
  g_rand_free(rng);
  GError *error = NULL;
  double loss, clipfrac;
  PS_CHECK_OK(ps_value_loss(v, vold, ret, mask, N, 0.2, &loss, &clipfrac, g, &error), error);
  PS_CHECK(clipfrac > 0 && clipfrac < 1); /* both branches are exercised */
  for (int i = 0; i < N; i++) {
    const float keep = v[i], h = 1e-3f;
    double lp, lm;
    v[i] = keep + h;
    ps_value_loss(v, vold, ret, mask, N, 0.2, &lp, NULL, NULL, NULL);
    v[i] = keep - h;
    ps_value_loss(v, vold, ret, mask, N, 0.2, &lm, NULL, NULL, NULL);
    v[i] = keep;
    const double fd = (lp - lm) / (2.0 * (double)h);
    PS_CHECK_NEAR(g[i], fd, 2e-4);
    if (mask[i] == 0) PS_CHECK(g[i] == 0.0f);
  }
  /* A hand value: one element, unclipped, loss = 0.5 (v - R)^2. */
  const float a = 0.3f, b = 0.3f, R = -0.2f, m1 = 1.0f;
  PS_CHECK_OK(ps_value_loss(&a, &b, &R, &m1, 1, 0.2, &loss, NULL, NULL, &error), error);
  PS_CHECK_NEAR(loss, 0.5 * 0.25, 1e-7);
}

int main(void) {
  test_fixture();
  test_rewards_kl();
  test_recursion();
  test_whiten_edges();
  test_value_loss_grad();
  return ps_test_finish();
}
