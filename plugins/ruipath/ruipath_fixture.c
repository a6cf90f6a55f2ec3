/* ruipath_fixture.c — the "fixture" capability of the RuiPath plugin: runs
 * dinov2.vit reference fixtures (DinoVisionTransformer.forward_features,
 * FORMAT.md) through the encoder's own code.
 *
 * Every hyper-parameter is read from the fixture's JSON config and every
 * parameter is loaded by its checkpoint name. Each `input.img_CASE` is one
 * forward; its results are handed over as `CASE.x_norm_clstoken`,
 * `CASE.x_norm_regtokens`, `CASE.x_norm_patchtokens` and, should a fixture
 * promote them to outputs, `CASE.x_prenorm`, `CASE.tokens` and
 * `CASE.pos_embed` (the trace.* names). The forward runs in training mode so
 * that the pre-norm stream is kept (nothing is random without LoRA). */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "ruipath.h"
#include "ruipath_plugin.h"

static const char *const leaves[] = {"x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens",
                                     "x_prenorm",       "tokens",           "pos_embed",
                                     NULL};

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

/* A number (or boolean) from the config; `fallback` when absent or null. */
static double num(JsonObject *o, const char *key, double fallback) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return fallback;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_BOOLEAN) return json_node_get_boolean(n) ? 1.0 : 0.0;
  if (t == G_TYPE_STRING) return fallback;
  return json_node_get_double(n);
}

static const char *str(JsonObject *o, const char *key, const char *fallback) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING)
    return fallback;
  return json_node_get_string(n);
}

static gboolean cfg_from_fixture(rp_cfg *c, JsonObject *o, GError **error) {
  rp_cfg_preset(c, "tiny");
  c->img_size = (int64_t)num(o, "img_size", 224);
  c->patch_size = (int64_t)num(o, "patch_size", 16);
  c->embed_dim = (int64_t)num(o, "embed_dim", 0);
  c->depth = (int64_t)num(o, "depth", 0);
  c->num_heads = (int64_t)num(o, "num_heads", 0);
  c->mlp_ratio = num(o, "mlp_ratio", 4.0);
  c->in_chans = (int64_t)num(o, "in_chans", 3);
  c->num_register_tokens = (int64_t)num(o, "num_register_tokens", 0);
  c->layer_norm_eps = num(o, "layer_norm_eps", 1e-6);
  /* DINOv2: init_values None/0 means no LayerScale. */
  c->init_values = num(o, "init_values", 0.0);
  c->qkv_bias = num(o, "qkv_bias", 1) != 0;
  c->proj_bias = num(o, "proj_bias", 1) != 0;
  c->ffn_bias = num(o, "ffn_bias", 1) != 0;
  c->interpolate_offset = num(o, "interpolate_offset", 0.1);
  c->interpolate_antialias = num(o, "interpolate_antialias", 0) != 0;
  c->lora_r = 0;
  const char *ffn = str(o, "ffn_layer", "mlp");
  if (strcmp(ffn, "mlp") != 0 || num(o, "block_chunks", 0) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "dinov2.vit fixture: only ffn_layer 'mlp' and block_chunks 0 are implemented "
                "(got '%s', %g)",
                ffn, num(o, "block_chunks", 0));
    return FALSE;
  }
  return rp_cfg_validate(c, "dinov2.vit fixture", error);
}

static ps_tensor *fx_get(void *user, const char *name, GError **error) {
  return ps_fixture_get_f32(user, name, error);
}
static gboolean fx_has(void *user, const char *name) { return ps_fixture_has(user, name); }

/* Hands a copy of `t` over as CASE.LEAF when the fixture has that output. */
static gboolean put(ps_fixture *fx, const char *cs, const char *leaf, const ps_tensor *t,
                    GError **error) {
  g_autofree char *name = g_strdup_printf("%s.%s", cs, leaf);
  g_autofree char *full = g_strconcat("output.", name, NULL);
  if (!ps_fixture_has(fx, full)) return TRUE;
  if (!t) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "dinov2.vit fixture: %s was not produced", name);
    return FALSE;
  }
  ps_tensor *c = ps_tensor_copy(t, error);
  if (!c) return FALSE;
  ps_fixture_put(fx, name, c);
  return TRUE;
}

/* Every output.* must be CASE.LEAF for a case that has input.img_CASE. */
static gboolean check_outputs(ps_fixture *fx, GError **error) {
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++) {
    if (!g_str_has_prefix(names[i], "output.")) continue;
    const char *rest = names[i] + strlen("output.");
    const char *dot = strrchr(rest, '.');
    gboolean ok = dot && g_strv_contains(leaves, dot + 1);
    if (ok) {
      g_autofree char *cs = g_strndup(rest, (gsize)(dot - rest));
      g_autofree char *input = g_strconcat("input.img_", cs, NULL);
      ok = ps_fixture_has(fx, input);
    }
    if (!ok) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "dinov2.vit fixture: unknown output '%s' (expected CASE.x_norm_* with an "
                  "input.img_CASE)",
                  names[i]);
      return FALSE;
    }
  }
  return TRUE;
}

static gboolean run_case(rp_encoder *e, ps_fixture *fx, ps_context *ctx, const char *cs,
                         GError **error) {
  g_autofree char *input = g_strconcat("input.img_", cs, NULL);
  g_autoptr(ps_tensor) img = ps_fixture_get_f32(fx, input, error);
  if (!img) return FALSE;
  rp_outputs o;
  if (!rp_encoder_forward(e, ctx, img, &o, error)) return FALSE;
  return put(fx, cs, "x_norm_clstoken", o.cls, error) &&
         put(fx, cs, "x_norm_regtokens", o.registers, error) &&
         put(fx, cs, "x_norm_patchtokens", o.patches, error) &&
         put(fx, cs, "x_prenorm", o.prenorm, error) && put(fx, cs, "tokens", o.tokens, error) &&
         put(fx, cs, "pos_embed", o.pos_embed, error);
}

static gboolean run_vit(ps_fixture *fx, ps_context *ctx, GError **error) {
  if (!check_outputs(fx, error)) return FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *o = config_object(fx, parser, error);
  if (!o) return FALSE;
  rp_cfg c;
  if (!cfg_from_fixture(&c, o, error)) return FALSE;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, error);
  if (!k) return FALSE;
  rp_encoder *e = rp_encoder_new(&c, k, NULL, error);
  if (!e) return FALSE;
  gboolean ok = rp_encoder_load(e, fx_get, fx_has, fx, "dinov2.vit fixture", error);
  const gboolean was_training = ps_context_training(ctx);
  ps_context_set_training(ctx, TRUE);
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; ok && names[i]; i++)
    if (g_str_has_prefix(names[i], "input.img_"))
      ok = run_case(e, fx, ctx, names[i] + strlen("input.img_"), error);
  ps_context_set_training(ctx, was_training);
  rp_encoder_free(e);
  return ok;
}

static const char *const vit_components[] = {"dinov2.vit", NULL};

const ps_fixture_iface rp_fixture = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = vit_components,
    .run = run_vit,
};
