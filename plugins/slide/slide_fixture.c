/* slide_fixture.c — the "fixture" capability of dataset.slide: runs the
 * `slide.openslide_read_region` fixture (openslide-python regions, block-mean
 * thumbnail, skimage saturation and Otsu) through slide.c, producing every
 * `output.*` tensor the file has. The slide is found by the base name of
 * config.slide (ps_fixture_find_data). */
#include <json-glib/json-glib.h>
#include <string.h>

#include "slide.h"
#include "slide_plugin.h"

static gboolean wants(const ps_fixture *fx, const char *output) {
  g_autofree char *full = g_strconcat("output.", output, NULL);
  return ps_fixture_has(fx, full);
}

static gint64 member_int(JsonObject *o, const char *key, gint64 fallback) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_VALUE(n) ? json_node_get_int(n) : fallback;
}

static gboolean fixture_run(ps_fixture *fx, ps_context *ctx, GError **error) {
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_data(parser, ps_fixture_config(fx), -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *cfg = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  const char *slide_name =
      cfg ? json_object_get_string_member_with_default(cfg, "slide", NULL) : NULL;
  if (!slide_name) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "slide fixture: config has no 'slide'");
    return FALSE;
  }
  const int level = (int)member_int(cfg, "level", 0);
  const int factor = (int)member_int(cfg, "thumb_factor", 16);
  int rw = 256, rh = 256;
  JsonArray *size = json_object_has_member(cfg, "region_size")
                        ? json_object_get_array_member(cfg, "region_size")
                        : NULL;
  if (size && json_array_get_length(size) == 2) {
    rw = (int)json_array_get_int_element(size, 0);
    rh = (int)json_array_get_int_element(size, 1);
  }
  g_autofree char *path = ps_fixture_find_data(fx, slide_name, error);
  if (!path) return FALSE;
  g_autoptr(ps_slide) slide = ps_slide_open(path, error);
  if (!slide) return FALSE;

  const ps_tensor *coords = ps_fixture_get(fx, "input.coords_xy", error);
  if (!coords) return FALSE;
  if (coords->dtype != PS_DTYPE_I64 || coords->ndim != 2 || coords->shape[1] != 2) {
    char buf[96];
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "slide fixture: input.coords_xy must be I64 [K, 2], got %s %s",
                ps_dtype_name(coords->dtype), ps_shape_format(coords, buf, sizeof buf));
    return FALSE;
  }
  const int64_t *xy = coords->data;
  for (int64_t k = 0; k < coords->shape[0]; k++) {
    char name[48];
    g_snprintf(name, sizeof name, "region_%" G_GINT64_FORMAT, k);
    if (!wants(fx, name)) continue;
    ps_tensor *t = ps_tensor_new4(PS_DTYPE_U8, rh, rw, 4, -1, error);
    if (!t) return FALSE;
    if (!ps_slide_read_region(slide, xy[2 * k], xy[2 * k + 1], level, rw, rh, t->data, error)) {
      ps_tensor_free(t);
      return FALSE;
    }
    ps_fixture_put(fx, name, t);
  }

  if (!wants(fx, "thumbnail_mean") && !wants(fx, "saturation") && !wants(fx, "tissue_mask") &&
      !wants(fx, "otsu_threshold"))
    return TRUE;
  g_autofree double *thumb = NULL;
  int64_t tw, th;
  if (!ps_slide_thumbnail_mean(slide, level, factor, &thumb, &tw, &th, error)) return FALSE;
  const size_t n = (size_t)(tw * th);
  g_autofree double *sat = g_new(double, n);
  ps_saturation(thumb, n, sat);
  const double thr = ps_otsu_threshold(sat, n, 256, NULL, NULL);
  if (wants(fx, "thumbnail_mean")) {
    ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, th, tw, 3, -1, error);
    if (!t) return FALSE;
    for (size_t i = 0; i < n * 3; i++) ((float *)t->data)[i] = (float)thumb[i];
    ps_fixture_put(fx, "thumbnail_mean", t);
  }
  if (wants(fx, "saturation")) {
    ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, th, tw, -1, -1, error);
    if (!t) return FALSE;
    for (size_t i = 0; i < n; i++) ((float *)t->data)[i] = (float)sat[i];
    ps_fixture_put(fx, "saturation", t);
  }
  if (wants(fx, "otsu_threshold")) {
    ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, error);
    if (!t) return FALSE;
    ((float *)t->data)[0] = (float)thr;
    ps_fixture_put(fx, "otsu_threshold", t);
  }
  if (wants(fx, "tissue_mask")) {
    ps_tensor *t = ps_tensor_new4(PS_DTYPE_U8, th, tw, -1, -1, error);
    if (!t) return FALSE;
    ps_threshold_mask(sat, n, thr, t->data);
    ps_fixture_put(fx, "tissue_mask", t);
  }
  return TRUE;
}

static const char *const fixture_components[] = {"slide.openslide_read_region", NULL};

const ps_fixture_iface ps_slide_fixture_iface = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = fixture_components,
    .run = fixture_run,
};
