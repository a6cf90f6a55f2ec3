/* sam_fixture.c — the "fixture" capability of the SAM plugin: runs the
 * sam.image_encoder and sam.mask_decoder reference fixtures (segment-anything
 * outputs, FORMAT.md) through the plugin's own code, with every size read
 * from the fixture's JSON config and every parameter loaded by its
 * checkpoint name. */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "sam_fixture.h"
#include "sam_plugin.h"

JsonObject *sam_fx_config(ps_fixture *fx, JsonParser *parser, GError **error) {
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

double sam_fx_num(JsonObject *o, const char *key, double fallback) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return fallback;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_BOOLEAN) return json_node_get_boolean(n) ? 1.0 : 0.0;
  if (t == G_TYPE_STRING) return fallback;
  return json_node_get_double(n);
}

static ps_tensor *fx_get(void *user, const char *name, GError **error) {
  return ps_fixture_get_f32(user, name, error);
}

gboolean sam_fx_load(ps_fixture *fx, pl_params *P, GError **error) {
  return pl_params_load(P, fx_get, fx, ps_fixture_component(fx), error);
}

/* Every output.* must be one the runner produces. */
gboolean sam_fx_check_outputs(ps_fixture *fx, const char *const *known, GError **error) {
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++) {
    if (!g_str_has_prefix(names[i], "output.")) continue;
    if (!g_strv_contains(known, names[i] + strlen("output."))) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s fixture: unknown output '%s'",
                  ps_fixture_component(fx), names[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* A copy of `t` under output NAME. */
gboolean sam_fx_put(ps_fixture *fx, const char *name, const ps_tensor *t, GError **error) {
  ps_tensor *c = ps_tensor_copy(t, error);
  if (!c) return FALSE;
  ps_fixture_put(fx, name, c);
  return TRUE;
}

/* ---------------------------------------------------------------------- */

static gboolean run_encoder(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {"image_embeddings", NULL};
  if (!sam_fx_check_outputs(fx, known, error)) return FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *o = sam_fx_config(fx, parser, error);
  if (!o) return FALSE;
  if (!sam_fx_num(o, "qkv_bias", 1) || !sam_fx_num(o, "use_abs_pos", 1) ||
      !sam_fx_num(o, "use_rel_pos", 1)) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "sam.image_encoder fixture: only qkv_bias, use_abs_pos and use_rel_pos = true "
                "are implemented (as in every SAM checkpoint)");
    return FALSE;
  }
  sam_enc_cfg c;
  sam_enc_cfg_preset(&c, "tiny");
  c.embed_dim = (int64_t)sam_fx_num(o, "embed_dim", 0);
  c.depth = (int64_t)sam_fx_num(o, "depth", 0);
  c.num_heads = (int64_t)sam_fx_num(o, "num_heads", 0);
  c.mlp_ratio = sam_fx_num(o, "mlp_ratio", 4.0);
  c.patch_size = (int64_t)sam_fx_num(o, "patch_size", 16);
  c.img_size = (int64_t)sam_fx_num(o, "img_size", 0);
  c.window_size = (int64_t)sam_fx_num(o, "window_size", 0);
  c.out_chans = (int64_t)sam_fx_num(o, "out_chans", 256);
  c.eps = sam_fx_num(o, "layer_norm_eps", 1e-6);
  c.adapter = FALSE;
  c.medsam_input = FALSE; /* the fixture feeds randn straight to ImageEncoderViT */
  memset(c.global_attn, 0, sizeof c.global_attn);
  JsonNode *gn = json_object_get_member(o, "global_attn_indexes");
  if (gn && JSON_NODE_HOLDS_ARRAY(gn)) {
    JsonArray *a = json_node_get_array(gn);
    for (guint i = 0; i < json_array_get_length(a); i++) {
      int64_t idx = json_array_get_int_element(a, i);
      if (idx < 0 || idx >= c.depth) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "sam.image_encoder fixture: global_attn_indexes entry %" G_GINT64_FORMAT
                    " outside depth %" G_GINT64_FORMAT,
                    idx, c.depth);
        return FALSE;
      }
      c.global_attn[idx] = TRUE;
    }
  }
  if (sam_fx_num(o, "neck_layer_norm2d_eps", c.eps) != c.eps) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "sam.image_encoder fixture: different block and neck eps are not implemented");
    return FALSE;
  }
  /* the fixture runs on the host (its inputs and outputs are host tensors) */
  sam_encoder *e = sam_encoder_new(&c, PS_DEVICE_CPU, 0, NULL, error);
  if (!e) return FALSE;
  gboolean ok = FALSE;
  g_autoptr(ps_tensor) image = NULL;
  ps_tensor *out = NULL;
  if (sam_fx_load(fx, sam_encoder_params(e), error) &&
      (image = ps_fixture_get_f32(fx, "input.image", error)) &&
      sam_encoder_forward(e, ctx, image, FALSE, NULL, &out, error))
    ok = sam_fx_put(fx, "image_embeddings", out, error);
  sam_encoder_free(e);
  return ok;
}

static const char *const handled[] = {"sam.image_encoder", "sam.mask_decoder", NULL};

static gboolean run(ps_fixture *fx, ps_context *ctx, GError **error) {
  const char *comp = ps_fixture_component(fx);
  if (strcmp(comp, "sam.image_encoder") == 0) return run_encoder(fx, ctx, error);
  if (strcmp(comp, "sam.mask_decoder") == 0) return sam_decoder_run_fixture(fx, ctx, error);
  g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "sam plugin: no fixture runner for '%s'",
              comp);
  return FALSE;
}

static const ps_fixture_iface fixture_iface = {sizeof(ps_fixture_iface), handled, run};

const void *sam_capability(const char *name) {
  return strcmp(name, "fixture") == 0 ? &fixture_iface : NULL;
}
