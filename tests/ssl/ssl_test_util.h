/* ssl_test_util.h — helpers of the ssl tests: opening the MAE fixture,
 * building its model with the fixture's parameters, and comparisons. */
#pragma once

#include <json-glib/json-glib.h>
#include <pathseg/host.h>
#include <pathseg/safetensors.h>

#include "mae_vit.h"
#include "ps_test.h"

/* tests/fixtures/NAME through PATHSEG_FIXTURES (set by ctest) or the source tree. */
static inline char *ssl_fixture_path(const char *name) {
  const char *dir = g_getenv("PATHSEG_FIXTURES");
  if (dir) return g_build_filename(dir, name, NULL);
  g_autofree char *rel = g_build_filename("tests", "fixtures", name, NULL);
  return ps_test_source_path(rel);
}

static inline ps_tensor *ssl_st_get(void *user, const char *name, GError **error) {
  return ps_safetensors_get_f32(user, name, error);
}

/* The fixture's config as an mae_cfg. */
static inline gboolean ssl_fixture_cfg(ps_safetensors *st, mae_cfg *c, GError **error) {
  mae_cfg_base(c);
  g_autoptr(JsonParser) parser = json_parser_new();
  const char *text = ps_safetensors_metadata(st, "config");
  if (!text || !json_parser_load_from_data(parser, text, -1, error)) return FALSE;
  JsonObject *o = json_node_get_object(json_parser_get_root(parser));
  c->img_size = json_object_get_int_member(o, "img_size");
  c->patch_size = json_object_get_int_member(o, "patch_size");
  c->embed_dim = json_object_get_int_member(o, "embed_dim");
  c->depth = json_object_get_int_member(o, "depth");
  c->num_heads = json_object_get_int_member(o, "num_heads");
  c->dec_dim = json_object_get_int_member(o, "decoder_embed_dim");
  c->dec_depth = json_object_get_int_member(o, "decoder_depth");
  c->dec_heads = json_object_get_int_member(o, "decoder_num_heads");
  c->mlp_ratio = json_object_get_double_member(o, "mlp_ratio");
  c->eps = json_object_get_double_member(o, "layer_norm_eps");
  c->norm_pix = json_object_get_boolean_member(o, "norm_pix_loss");
  c->mask_ratio = json_object_get_double_member(o, "mask_ratio");
  return TRUE;
}

/* max |a - b| and whether every element is within atol + rtol |b|. */
static inline gboolean ssl_close(const float *a, const float *b, int64_t n, double atol,
                                 double rtol, double *max_abs) {
  gboolean ok = TRUE;
  double m = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double d = fabs((double)a[i] - b[i]);
    if (!(d <= atol + rtol * fabs((double)b[i]))) ok = FALSE;
    if (d > m || isnan(d)) m = d;
  }
  if (max_abs) *max_abs = m;
  return ok;
}
