/* test_rl_plugin.c — the built advantage plugin (pathseg-advantage.so) as
 * the host and the stages see it: the rl.gae and rl.grpo fixtures through
 * the fixture harness (`pipeline fixture`), the "advantage" capability of
 * advantage.group against TRL's GRPO outputs, advantage.gae's whole pipeline
 * (score placement, value masking, GAE, whitening) on a case worked by hand,
 * and config errors caught by the schema. */
#include <pathseg/host.h>
#include <pathseg/pipeline.h>
#include <string.h>

#include "advantage.h"
#include "fixture_util.h"

static ps_registry *load_plugin(void) {
  ps_registry *reg = ps_registry_new();
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *path = g_build_filename(dir ? dir : "plugins", "pathseg-advantage.so", NULL);
  GError *error = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, path, &error), error);
  return reg;
}

static void run_fixture(ps_registry *reg, const char *name) {
  g_autofree char *rel = g_build_filename("tests", "fixtures", name, NULL);
  g_autofree char *path = ps_test_source_path(rel);
  g_autoptr(GPtrArray) results =
      g_ptr_array_new_with_free_func((GDestroyNotify)ps_fixture_result_free);
  GError *error = NULL;
  const gboolean ok = ps_fixture_run_file(reg, path, NULL, results, &error);
  PS_CHECK_MSG(ok, "%s: %s", name, error ? error->message : "an output failed");
  g_clear_error(&error);
  for (guint i = 0; i < results->len; i++) {
    const ps_fixture_result *r = results->pdata[i];
    printf("  %s %s: max abs %.3g, max rel %.3g%s%s\n", name, r->output, r->max_abs_err,
           r->max_rel_err, r->problem ? " — " : "", r->problem ? r->problem : "");
    PS_CHECK_MSG(r->passed, "%s %s", name, r->output);
  }
  PS_CHECK(results->len >= 3);
}

/* An instance of `name` with the YAML config `yaml`. */
static void *create(ps_registry *reg, ps_context *ctx, const char *name, const char *yaml,
                    const ps_component_desc **desc_out) {
  const ps_component_desc *desc = ps_registry_find(reg, name);
  PS_CHECK(desc != NULL && desc->kind == PS_KIND_ADVANTAGE);
  if (!desc) exit(1);
  GError *error = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(desc->config, yaml, name, &error);
  PS_CHECK_OK(cfg != NULL, error);
  if (!cfg) exit(1);
  void *self = desc->vtable->create(cfg, ctx, &error);
  PS_CHECK_OK(self != NULL, error);
  *desc_out = desc;
  return self;
}

static void test_group_capability(ps_registry *reg, ps_context *ctx) {
  const ps_component_desc *desc;
  void *self = create(reg, ctx, "advantage.group", "beta: 0.04\nloss_type: grpo\n", &desc);
  const ps_advantage_iface *adv = desc->capability(PS_ADVANTAGE_CAPABILITY);
  PS_CHECK(adv && adv->struct_size == sizeof(ps_advantage_iface) && adv->value_loss == NULL);
  const ps_policy_loss_cfg *lc = adv->loss_config(self);
  PS_CHECK(lc->eps_low == 0.2 && lc->eps_high == 0.2 && lc->beta == 0.04 &&
           lc->agg == PS_LOSS_GRPO);

  g_autoptr(ps_safetensors) st = fx_open("grpo.safetensors");
  fx_tolerance tol = fx_tol(st);
  int64_t B = 0, n = 0;
  g_autofree float *rewards = fx_f32(st, "input.rewards", &B);
  g_autofree float *logps = fx_f32(st, "input.logps", &n);
  g_autofree float *old = fx_f32(st, "input.old_logps", NULL);
  g_autofree float *ref = fx_f32(st, "input.ref_logps", NULL);
  g_autofree float *mask = fx_f32(st, "input.completion_mask", NULL);
  const int64_t T = n / B;
  g_autofree float *a = g_new0(float, n);
  ps_advantage_batch batch = {.B = B, .T = T, .scores = rewards, .mask = mask, .group_size = 4};
  GError *error = NULL;
  PS_CHECK_OK(adv->compute(self, &batch, a, NULL, &error), error);
  g_autofree float *row = g_new0(float, B);
  for (int64_t b = 0; b < B; b++) {
    row[b] = a[b * T];
    for (int64_t t = 0; t < T; t++) PS_CHECK(a[b * T + t] == row[b]); /* broadcast */
  }
  fx_compare(st, "output.advantages", row, B, tol);

  ps_policy_batch pb = {.B = B,
                        .T = T,
                        .logps = logps,
                        .old_logps = old,
                        .ref_logps = ref,
                        .advantages = a,
                        .mask = mask};
  ps_policy_loss_stats stats;
  PS_CHECK_OK(adv->policy_loss(self, &pb, &stats, &error), error);
  float loss = (float)stats.loss;
  fx_compare(st, "output.loss_grpo", &loss, 1, tol);

  batch.group_size = 3; /* 8 rows do not split into 3s */
  PS_CHECK_FAILS_WITH(adv->compute(self, &batch, a, NULL, &error), error, "groups of 3");
  desc->vtable->destroy(self);
}

/* B = 1, T = 4, response of 2 tokens (seq_len 1), score 2, gamma = lam = 1,
 * no KL: rewards [0, 0, 2, 0] (score at the first pad), values after the
 * first pad zeroed: V = [0.5, 0.25, 0.7, 0]. */
static void test_gae_capability(ps_registry *reg, ps_context *ctx) {
  const ps_component_desc *desc;
  void *self =
      create(reg, ctx, "advantage.gae", "gamma: 1.0\nlam: 1.0\nkl_coef: 0\nwhiten: false\n", &desc);
  const ps_advantage_iface *adv = desc->capability(PS_ADVANTAGE_CAPABILITY);
  PS_CHECK(adv && adv->value_loss != NULL);
  const float score[1] = {2.0f}, mask[4] = {1, 1, 0, 0}, values[4] = {0.5f, 0.25f, 0.7f, 9.0f};
  float a[4], ret[4];
  ps_advantage_batch batch = {.B = 1, .T = 4, .scores = score, .mask = mask, .values = values};
  GError *error = NULL;
  PS_CHECK_OK(adv->compute(self, &batch, a, ret, &error), error);
  /* A3 = 0 - 0; A2 = 2 - 0.7 = 1.3; A1 = 0 + 0.7 - 0.25 + 1.3 = 1.75;
   * A0 = 0 + 0.25 - 0.5 + 1.75 = 1.5; padding zeroed after. */
  PS_CHECK_NEAR(a[0], 1.5, 1e-6);
  PS_CHECK_NEAR(a[1], 1.75, 1e-6);
  PS_CHECK(a[2] == 0.0f && a[3] == 0.0f);
  PS_CHECK_NEAR(ret[0], 2.0, 1e-6);
  PS_CHECK_NEAR(ret[1], 2.0, 1e-6);
  PS_CHECK_NEAR(ret[2], 2.0, 1e-6);
  PS_CHECK_NEAR(ret[3], 0.0, 1e-6); /* the value 9 after the first pad was zeroed */
  desc->vtable->destroy(self);

  /* With whitening (the default): mean 1.625, unbiased var 0.03125. */
  self = create(reg, ctx, "advantage.gae", "gamma: 1.0\nlam: 1.0\nkl_coef: 0\n", &desc);
  PS_CHECK_OK(adv->compute(self, &batch, a, NULL, &error), error);
  PS_CHECK_NEAR(a[0], -0.125 / sqrt(0.03125 + 1e-8), 1e-5);
  PS_CHECK_NEAR(a[1], 0.125 / sqrt(0.03125 + 1e-8), 1e-5);
  /* A one-token batch cannot be whitened with the unbiased variance. */
  const float mask1[4] = {1, 0, 0, 0};
  batch.mask = mask1;
  PS_CHECK_FAILS_WITH(adv->compute(self, &batch, a, NULL, &error), error, "unbiased");
  /* Value loss through the capability: 0.5 (v - R)^2 when unclipped. */
  const float v[1] = {0.1f}, vold[1] = {0.1f}, R[1] = {0.5f}, m[1] = {1.0f};
  double vl;
  float g[1];
  PS_CHECK_OK(adv->value_loss(self, v, vold, R, m, 1, &vl, g, &error), error);
  PS_CHECK_NEAR(vl, 0.5 * 0.16, 1e-7);
  PS_CHECK_NEAR(g[0], -0.4, 1e-6);
  desc->vtable->destroy(self);

  /* The default kl_coef (0.05) needs the log-probs. */
  self = create(reg, ctx, "advantage.gae", "{}", &desc);
  batch.mask = mask;
  PS_CHECK_FAILS_WITH(adv->compute(self, &batch, a, NULL, &error), error, "kl_coef");
  desc->vtable->destroy(self);
}

static void test_schema(ps_registry *reg) {
  const ps_component_desc *desc = ps_registry_find(reg, "advantage.group");
  GError *error = NULL;
  ps_config *cfg = ps_config_parse(desc->config, "loss_type: mean\n", "test", &error);
  PS_CHECK_FAILS_WITH(cfg != NULL, error, "loss_type");
  cfg = ps_config_parse(desc->config, "epsilon: -0.1\n", "test", &error);
  PS_CHECK_FAILS_WITH(cfg != NULL, error, "epsilon");
  /* dual_clip = 1 passes the (inclusive) range but create() refuses it. */
  g_autoptr(ps_config) dc = ps_config_parse(desc->config, "dual_clip: 1.0\n", "test", &error);
  PS_CHECK_OK(dc != NULL, error);
  PS_CHECK_FAILS_WITH(desc->vtable->create(dc, NULL, &error) != NULL, error, "dual_clip");
}

int main(void) {
  g_autoptr(ps_registry) reg = load_plugin();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 0);
  run_fixture(reg, "gae.safetensors");
  run_fixture(reg, "grpo.safetensors");
  test_group_capability(reg, ctx);
  test_gae_capability(reg, ctx);
  test_schema(reg);
  return ps_test_finish();
}
