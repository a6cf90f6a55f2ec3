/* mae_fixture.c — the "fixture" capability of ssl.mae: the `mae.loss`
 * reference (the official MaskedAutoencoderViT at a tiny size, torch.rand
 * replaced by input.noise) through mae_vit.c, every size read from the
 * fixture's config and every parameter loaded by its state_dict name. Runs
 * on the context's device (weights loaded on the host, then moved; results
 * copied back to compare). */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "ssl_plugin.h"

/* A number from the config (booleans as 0/1); `fallback` when absent. */
static double cfg_num(JsonObject *o, const char *key, double fallback) {
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

/* Copies `n` values into a new tensor shaped like output.NAME and puts it. */
static gboolean put_like(ps_fixture *fx, const char *name, ps_dtype dtype, const void *data,
                         int64_t n, GError **error) {
  g_autofree char *full = g_strconcat("output.", name, NULL);
  if (!ps_fixture_has(fx, full)) return TRUE;
  const ps_tensor *want = ps_fixture_get(fx, full, error);
  if (!want) return FALSE;
  if (ps_tensor_numel(want) != n) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "mae.loss fixture: %s has %" G_GINT64_FORMAT
                " elements, the model made %" G_GINT64_FORMAT,
                full, ps_tensor_numel(want), n);
    return FALSE;
  }
  ps_tensor *t = ps_tensor_new(dtype, want->ndim, want->shape, error);
  if (!t) return FALSE;
  if (n > 0) memcpy(t->data, data, t->nbytes);
  ps_fixture_put(fx, name, t);
  return TRUE;
}

gboolean ssl_mae_fixture_run(ps_fixture *fx, ps_context *ctx, mae_model **model_out,
                             GError **error) {
  static const char *const known[] = {"loss", "pred", "mask", "ids_restore", NULL};
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++)
    if (g_str_has_prefix(names[i], "output.") && !g_strv_contains(known, names[i] + 7)) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "mae.loss fixture: unknown output '%s'",
                  names[i]);
      return FALSE;
    }

  g_autoptr(JsonParser) parser = json_parser_new();
  const char *text = ps_fixture_config(fx);
  if (!json_parser_load_from_data(parser, text ? text : "{}", -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "mae.loss fixture: config is not a JSON object");
    return FALSE;
  }
  JsonObject *o = json_node_get_object(root);
  mae_cfg c;
  mae_cfg_base(&c);
  c.img_size = (int64_t)cfg_num(o, "img_size", (double)c.img_size);
  c.patch_size = (int64_t)cfg_num(o, "patch_size", (double)c.patch_size);
  c.in_chans = (int64_t)cfg_num(o, "in_chans", (double)c.in_chans);
  c.embed_dim = (int64_t)cfg_num(o, "embed_dim", (double)c.embed_dim);
  c.depth = (int64_t)cfg_num(o, "depth", (double)c.depth);
  c.num_heads = (int64_t)cfg_num(o, "num_heads", (double)c.num_heads);
  c.dec_dim = (int64_t)cfg_num(o, "decoder_embed_dim", (double)c.dec_dim);
  c.dec_depth = (int64_t)cfg_num(o, "decoder_depth", (double)c.dec_depth);
  c.dec_heads = (int64_t)cfg_num(o, "decoder_num_heads", (double)c.dec_heads);
  c.mlp_ratio = cfg_num(o, "mlp_ratio", c.mlp_ratio);
  c.eps = cfg_num(o, "layer_norm_eps", c.eps);
  c.norm_pix = cfg_num(o, "norm_pix_loss", c.norm_pix ? 1.0 : 0.0) != 0.0;
  c.mask_ratio = cfg_num(o, "mask_ratio", c.mask_ratio);

  const ps_device device = ps_context_device(ctx);
  const ps_kernels *k = ps_kernels_get(device, error);
  if (!k) return FALSE;
  mae_model *m = g_new0(mae_model, 1);
  gboolean ok = mae_model_init(m, &c, NULL, error) &&
                pl_params_load(&m->P, fx_get, fx, "mae.loss fixture", error);
  /* Every parameter in the file must be one of the model's, so a renamed or
   * extra tensor fails loudly rather than being ignored. */
  for (size_t i = 0; ok && names[i]; i++) {
    if (g_str_has_prefix(names[i], "input.") || g_str_has_prefix(names[i], "output.") ||
        g_str_has_prefix(names[i], "trace."))
      continue;
    gboolean found = FALSE;
    for (guint j = 0; j < m->P.items->len && !found; j++)
      found = strcmp(pl_param(&m->P, (int)j)->name, names[i]) == 0;
    if (!found) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "mae.loss fixture: parameter '%s' is not part of the model", names[i]);
      ok = FALSE;
    }
  }
  g_autoptr(ps_tensor) imgs = ok ? ps_fixture_get_f32(fx, "input.imgs", error) : NULL;
  g_autoptr(ps_tensor) noise = imgs ? ps_fixture_get_f32(fx, "input.noise", error) : NULL;
  ok = ok && noise;
  const int64_t g = c.img_size / c.patch_size, L = g * g;
  if (ok) {
    const int64_t ishape[4] = {-1, c.in_chans, c.img_size, c.img_size};
    ok = ps_tensor_check(imgs, "mae.loss fixture: input.imgs", PS_DTYPE_F32, 4, ishape, error);
  }
  const int64_t B = ok ? imgs->shape[0] : 0;
  if (ok) {
    const int64_t nshape[2] = {B, L};
    ok = ps_tensor_check(noise, "mae.loss fixture: input.noise", PS_DTYPE_F32, 2, nshape, error);
  }
  g_autoptr(ps_tensor) dimgs = ok ? ps_tensor_to_device(imgs, device, error) : NULL;
  ok = ok && dimgs && pl_params_move_to(&m->P, device, error) &&
       mae_model_forward(m, k, ctx, ps_f32(dimgs), ps_f32(noise), B, error);
  if (ok) {
    float loss = (float)m->loss;
    g_autofree float *pred = g_new(float, B *L * m->P_dim);
    k->copy_to_host(pred, m->pred.p, (size_t)(B * L * m->P_dim) * sizeof(float));
    ok = put_like(fx, "loss", PS_DTYPE_F32, &loss, 1, error) &&
         put_like(fx, "pred", PS_DTYPE_F32, pred, B * L * m->P_dim, error) &&
         put_like(fx, "mask", PS_DTYPE_F32, m->mask_h, B * L, error) &&
         put_like(fx, "ids_restore", PS_DTYPE_I64, m->ids_restore, B * L, error);
  }
  if (ok && model_out) {
    *model_out = m;
    return TRUE;
  }
  mae_model_clear(m);
  g_free(m);
  return ok;
}

static gboolean fixture_run(ps_fixture *fx, ps_context *ctx, GError **error) {
  return ssl_mae_fixture_run(fx, ctx, NULL, error);
}

static const char *const fixture_components[] = {"mae.loss", NULL};

const ps_fixture_iface ssl_mae_fixture_iface = {
    sizeof(ps_fixture_iface),
    fixture_components,
    fixture_run,
};
