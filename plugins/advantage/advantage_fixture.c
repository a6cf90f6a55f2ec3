/* advantage_fixture.c — the "fixture" capability of the advantage plugin:
 * runs the rl.gae and rl.grpo reference fixtures (TRL outputs) through
 * rl_math.h, reading every hyper-parameter from the fixture's config so the
 * hidden variants (other eps / beta / gamma) run unchanged. */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "advantage_internal.h"

/* The fixture's config object; NULL with an error when it is not one. */
static JsonObject *config_object(ps_fixture *fx, JsonParser *parser, GError **error) {
  const char *text = ps_fixture_config(fx);
  if (!json_parser_load_from_data(parser, text ? text : "{}", -1, error)) return NULL;
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s fixture: config is not a JSON object",
                ps_fixture_component(fx));
    return NULL;
  }
  return json_node_get_object(root);
}

/* A number from the config; `fallback` when absent or null. */
static double cfg_num(JsonObject *o, const char *key, double fallback) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || JSON_NODE_HOLDS_NULL(n) || !JSON_NODE_HOLDS_VALUE(n)) return fallback;
  return json_node_get_double(n);
}

static const char *cfg_str(JsonObject *o, const char *key, const char *fallback) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || json_node_get_value_type(n) != G_TYPE_STRING) return fallback;
  return json_node_get_string(n);
}

/* A required f32 input of shape (d0[, d1]); integer tensors are converted. */
static ps_tensor *input_f32(ps_fixture *fx, const char *name, int32_t ndim, const int64_t *shape,
                            GError **error) {
  ps_tensor *t = ps_fixture_get_f32(fx, name, error);
  if (!t) return NULL;
  g_autofree char *what = g_strdup_printf("%s fixture: %s", ps_fixture_component(fx), name);
  if (!ps_tensor_check(t, what, PS_DTYPE_F32, ndim, shape, error)) {
    ps_tensor_free(t);
    return NULL;
  }
  return t;
}

/* Hands `data` (n floats) to the harness as output NAME with the shape of the
 * fixture's own output.NAME; skipped when the fixture has no such output. */
static gboolean put_like(ps_fixture *fx, const char *name, const float *data, int64_t n,
                         GError **error) {
  g_autofree char *full = g_strconcat("output.", name, NULL);
  if (!ps_fixture_has(fx, full)) return TRUE;
  const ps_tensor *want = ps_fixture_get(fx, full, error);
  if (!want) return FALSE;
  if (ps_tensor_numel(want) != n) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "%s fixture: %s has %" G_GINT64_FORMAT " elements, expected %" G_GINT64_FORMAT,
                ps_fixture_component(fx), full, ps_tensor_numel(want), n);
    return FALSE;
  }
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, want->ndim, want->shape, error);
  if (!t) return FALSE;
  if (n > 0) memcpy(t->data, data, (size_t)n * sizeof(float));
  ps_fixture_put(fx, name, t);
  return TRUE;
}

/* Every output.* must be one this runner knows, so a new output in a fixture
 * fails loudly instead of being skipped. */
static gboolean check_outputs(ps_fixture *fx, const char *const *known, gboolean allow_loss_prefix,
                              GError **error) {
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++) {
    if (!g_str_has_prefix(names[i], "output.")) continue;
    const char *name = names[i] + strlen("output.");
    gboolean ok = g_strv_contains(known, name);
    ps_loss_agg agg;
    if (!ok && allow_loss_prefix && g_str_has_prefix(name, "loss_"))
      ok = ps_loss_agg_from_name(name + strlen("loss_"), &agg);
    if (!ok) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s fixture: unknown output '%s'",
                  ps_fixture_component(fx), names[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* rl.gae: TRL PPOTrainer steps 6 (GAE, returns, whitening). */

static gboolean run_gae(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {"advantages", "returns", "advantages_whitened", NULL};
  if (!check_outputs(fx, known, FALSE, error)) return FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *cfg = config_object(fx, parser, error);
  if (!cfg) return FALSE;
  const double gamma = cfg_num(cfg, "gamma", 1.0), lam = cfg_num(cfg, "lam", 0.95);
  const double eps = cfg_num(cfg, "whiten_eps", 1e-8);
  JsonNode *unb = json_object_get_member(cfg, "whiten_unbiased");
  const gboolean unbiased = unb && JSON_NODE_HOLDS_VALUE(unb) ? json_node_get_boolean(unb) : TRUE;

  g_autoptr(ps_tensor) rewards = ps_fixture_get_f32(fx, "input.rewards", error);
  if (!rewards) return FALSE;
  if (rewards->ndim != 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "rl.gae fixture: input.rewards must be (B, T)");
    return FALSE;
  }
  const int64_t B = rewards->shape[0], T = rewards->shape[1], n = B * T;
  g_autoptr(ps_tensor) values = input_f32(fx, "input.values", 2, rewards->shape, error);
  if (!values) return FALSE;
  g_autoptr(ps_tensor) mask = input_f32(fx, "input.mask", 2, rewards->shape, error);
  if (!mask) return FALSE;

  g_autofree float *adv = g_new0(float, n);
  g_autofree float *ret = g_new0(float, n);
  ps_gae(ps_f32(rewards), ps_f32(values), ps_f32(mask), B, T, gamma, lam, PS_GAE_TRL, adv, ret);
  if (!put_like(fx, "advantages", adv, n, error) || !put_like(fx, "returns", ret, n, error))
    return FALSE;
  if (!ps_masked_whiten(adv, ps_f32(mask), n, TRUE, unbiased, eps, error)) return FALSE;
  for (int64_t i = 0; i < n; i++)
    if (ps_f32(mask)[i] == 0) adv[i] = 0.0f;
  return put_like(fx, "advantages_whitened", adv, n, error);
}

/* ---------------------------------------------------------------------- */
/* rl.grpo: TRL GRPOTrainer advantages and _compute_loss. */

static gboolean run_grpo(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {"advantages", "per_token_kl", "per_token_loss", NULL};
  if (!check_outputs(fx, known, TRUE, error)) return FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *cfg = config_object(fx, parser, error);
  if (!cfg) return FALSE;
  const char *level = cfg_str(cfg, "importance_sampling_level", "token");
  JsonNode *bias = json_object_get_member(cfg, "use_bias_correction_kl");
  if (strcmp(level, "token") != 0 ||
      (bias && JSON_NODE_HOLDS_VALUE(bias) && json_node_get_boolean(bias))) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "rl.grpo fixture: importance_sampling_level '%s' / use_bias_correction_kl are not "
                "implemented (token level, no bias correction only)",
                level);
    return FALSE;
  }
  const int64_t G = (int64_t)cfg_num(cfg, "num_generations", 0);
  const char *scale_name = cfg_str(cfg, "scale_rewards", "group");
  ps_reward_scale scale = strcmp(scale_name, "batch") == 0  ? PS_SCALE_BATCH
                          : strcmp(scale_name, "none") == 0 ? PS_SCALE_NONE
                                                            : PS_SCALE_GROUP;
  ps_policy_loss_cfg lc;
  ps_policy_loss_cfg_default(&lc);
  lc.eps_low = cfg_num(cfg, "epsilon", 0.2);
  lc.eps_high = cfg_num(cfg, "epsilon_high", lc.eps_low);
  lc.beta = cfg_num(cfg, "beta", 0.0);
  lc.delta = cfg_num(cfg, "delta", 0.0);
  lc.max_completion_length = (int64_t)cfg_num(cfg, "max_completion_length", 0);
  const double processes = cfg_num(cfg, "num_processes", 1.0);
  const double accumulation = cfg_num(cfg, "gradient_accumulation_steps", 1.0);

  g_autoptr(ps_tensor) rewards = ps_fixture_get_f32(fx, "input.rewards", error);
  if (!rewards) return FALSE;
  g_autoptr(ps_tensor) logps = ps_fixture_get_f32(fx, "input.logps", error);
  if (!logps) return FALSE;
  if (logps->ndim != 2 || rewards->ndim != 1 || rewards->shape[0] != logps->shape[0]) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "rl.grpo fixture: need input.rewards (B) and input.logps (B, T)");
    return FALSE;
  }
  const int64_t B = logps->shape[0], T = logps->shape[1], n = B * T;
  g_autoptr(ps_tensor) old = input_f32(fx, "input.old_logps", 2, logps->shape, error);
  if (!old) return FALSE;
  g_autoptr(ps_tensor) mask = input_f32(fx, "input.completion_mask", 2, logps->shape, error);
  if (!mask) return FALSE;
  g_autoptr(ps_tensor) ref = NULL;
  if (ps_fixture_has(fx, "input.ref_logps")) {
    ref = input_f32(fx, "input.ref_logps", 2, logps->shape, error);
    if (!ref) return FALSE;
  }

  g_autofree float *adv = g_new0(float, B);
  if (!ps_group_advantages(ps_f32(rewards), B, G, scale, 1e-4, adv, error)) return FALSE;
  if (!put_like(fx, "advantages", adv, B, error)) return FALSE;

  g_autofree float *ptl = g_new0(float, n);
  g_autofree float *kl = g_new0(float, n);
  ps_policy_batch batch = {
      .B = B,
      .T = T,
      .logps = ps_f32(logps),
      .old_logps = ps_f32(old),
      .ref_logps = ref ? ps_f32(ref) : NULL,
      .advantages = adv,
      .adv_per_row = TRUE,
      .mask = ps_f32(mask),
      .per_token_loss = ptl,
      .per_token_kl = kl,
  };
  g_autofree const char **names = ps_fixture_names(fx);
  gboolean first = TRUE;
  for (size_t i = 0; names[i]; i++) {
    if (!g_str_has_prefix(names[i], "output.loss_")) continue;
    const char *name = names[i] + strlen("output.");
    ps_loss_agg_from_name(name + strlen("loss_"), &lc.agg); /* checked in check_outputs */
    if (lc.agg == PS_LOSS_DAPO) {
      double tokens = 0.0;
      for (int64_t k = 0; k < n; k++) tokens += ps_f32(mask)[k];
      lc.dapo_normalizer = (tokens > 1.0 ? tokens : 1.0) / processes;
    }
    ps_policy_loss_stats st;
    if (!ps_policy_loss(&lc, &batch, &st, error)) return FALSE;
    /* TRL divides by the accumulation steps except where the normaliser
     * already counts the whole accumulated batch (dapo). */
    float loss = (float)(lc.agg == PS_LOSS_DAPO ? st.loss : st.loss / accumulation);
    if (!put_like(fx, name, &loss, 1, error)) return FALSE;
    first = FALSE;
  }
  if (first) { /* no loss output: still compute the per-token values */
    if (!ps_policy_loss(&lc, &batch, NULL, error)) return FALSE;
  }
  if (!put_like(fx, "per_token_loss", ptl, n, error)) return FALSE;
  return put_like(fx, "per_token_kl", kl, n, error);
}

static const char *const gae_components[] = {"rl.gae", NULL};
static const char *const grpo_components[] = {"rl.grpo", NULL};

const ps_fixture_iface ps_advantage_gae_fixture = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = gae_components,
    .run = run_gae,
};

const ps_fixture_iface ps_advantage_grpo_fixture = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = grpo_components,
    .run = run_grpo,
};
