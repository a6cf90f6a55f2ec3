/* test_slide_plugin.c — dataset.slide as the host sees it (built plugin,
 * YAML config, forward), and its fixture capability through the harness. */
#include <string.h>

#include <pathseg/dataset.h>
#include <pathseg/host.h>

#include "ps_test.h"
#include "slide.h"

/* A directory from the environment ctest sets, or the source-tree default. */
static const char *env_dir(const char *name, const char *fallback) {
  const char *v = g_getenv(name);
  return v && *v ? v : fallback;
}

static char *svs_path(void) {
  return g_build_filename(env_dir("PATHSEG_TEST_DATA", "tests/data"), "CMU-1-Small-Region.svs",
                          NULL);
}

static ps_component *make(const ps_component_desc *d, ps_context *ctx, const char *yaml,
                          GError **err) {
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", err);
  if (!cfg) return NULL;
  return ps_component_new(d, cfg, "slide", ctx, err);
}

static void test_dataset(const ps_component_desc *d, ps_context *ctx) {
  g_autofree char *svs = svs_path();
  g_autofree char *yaml = g_strdup_printf("{path: '%s', min_tissue: 0.6}", svs);
  GError *err = NULL;
  ps_component *c = make(d, ctx, yaml, &err);
  PS_CHECK_OK(c != NULL, err);
  const ps_dataset_iface *ds = c ? ps_component_capability(c, "dataset") : NULL;
  PS_CHECK(ds && ds->size && ds->batch);
  if (!ds) {
    ps_component_free(c);
    return;
  }
  void *self = ps_component_self(c);
  const int64_t count = ds->size(self, "train");
  PS_CHECK(count > 10 && count < 8 * 11); /* a 256-pixel grid of 2220 x 2967 has 88 tiles */
  PS_CHECK(ds->size(self, "val") == 0);
  const int64_t idx[4] = {0, 3, count - 1, 3};
  const ps_ports *batch = ds->batch(self, "train", idx, 4, NULL, &err);
  PS_CHECK_OK(batch != NULL, err);
  ps_tensor *img = batch ? ps_ports_get(batch, "image") : NULL;
  ps_tensor *xy = batch ? ps_ports_get(batch, "coords") : NULL;
  const int64_t ishape[4] = {4, 256, 256, 3}, cshape[2] = {4, 2};
  PS_CHECK(img && ps_tensor_has_shape(img, 4, ishape) && img->dtype == PS_DTYPE_U8);
  PS_CHECK(xy && ps_tensor_has_shape(xy, 2, cshape) && xy->dtype == PS_DTYPE_I64);
  if (!img || !xy) {
    ps_component_free(c);
    return;
  }

  /* Each tile is the RGB of read_region at its coordinates, on the tile
   * grid, with at least 60% of its thumbnail cells in the tissue mask; the
   * tiles are in raster order and an index always gives the same tile. */
  g_autoptr(ps_slide) s = ps_slide_open(svs, &err);
  PS_CHECK_OK(s != NULL, err);
  uint8_t *mask = NULL;
  int64_t mw = 0, mh = 0;
  double thr;
  PS_CHECK_OK(s && ps_slide_tissue_mask(s, 0, 16, &mask, &mw, &mh, &thr, &err), err);
  uint8_t *rgba = g_malloc(256 * 256 * 4);
  const int64_t *c2 = xy->data;
  for (int b = 0; s && mask && b < 4; b++) {
    int64_t x = c2[2 * b], y = c2[2 * b + 1];
    PS_CHECK(x % 256 == 0 && y % 256 == 0 && x + 256 <= 2220 && y + 256 <= 2967);
    PS_CHECK_OK(ps_slide_read_region(s, x, y, 0, 256, 256, rgba, &err), err);
    size_t bad = 0;
    const uint8_t *t = (const uint8_t *)img->data + (size_t)b * 256 * 256 * 3;
    for (size_t i = 0; i < 256 * 256; i++) bad += memcmp(t + i * 3, rgba + i * 4, 3) != 0;
    PS_CHECK_MSG(bad == 0, "tile %d: %zu pixels differ from read_region", b, bad);
    int on = 0;
    for (int cy = (int)(y / 16); cy < (y + 256) / 16; cy++)
      for (int cx = (int)(x / 16); cx < (x + 256) / 16; cx++) on += mask[cy * mw + cx];
    PS_CHECK_MSG(on >= 0.6 * 256, "tile %d at (%ld, %ld): tissue %d/256", b, (long)x, (long)y, on);
  }
  PS_CHECK(c2[3] < c2[5] || (c2[3] == c2[5] && c2[2] < c2[4])); /* raster order */
  PS_CHECK(c2[2] == c2[6] && c2[3] == c2[7]);
  PS_CHECK(memcmp((uint8_t *)img->data + 256 * 256 * 3, (uint8_t *)img->data + 3 * 256 * 256 * 3,
                  256 * 256 * 3) == 0);
  g_free(rgba);
  g_free(mask);
  const int64_t out_of_range = count;
  PS_CHECK_FAILS_WITH(ds->batch(self, "train", &out_of_range, 1, NULL, &err) != NULL, err,
                      "out of range");
  PS_CHECK_FAILS_WITH(ds->batch(self, "val", idx, 1, NULL, &err) != NULL, err, "split 'val'");
  ps_component_free(c);

  /* Config errors name the problem. */
  PS_CHECK_FAILS_WITH(make(d, ctx, "{min_tissue: 0.2}", &err) != NULL, err, "path");
  PS_CHECK_FAILS_WITH(make(d, ctx, "{path: /nonexistent/x.svs}", &err) != NULL, err,
                      "no such file");
  g_autofree char *none = g_strdup_printf("{path: '%s', tile_size: 2048, min_tissue: 1.0}", svs);
  PS_CHECK_FAILS_WITH(make(d, ctx, none, &err) != NULL, err, "min_tissue");
  g_autofree char *lvl = g_strdup_printf("{path: '%s', level: 3}", svs);
  PS_CHECK_FAILS_WITH(make(d, ctx, lvl, &err) != NULL, err, "level 3");
}

static void test_harness(ps_registry *reg) {
  g_autofree char *path =
      g_build_filename(env_dir("PATHSEG_FIXTURES", "tests/fixtures"), "slide.safetensors", NULL);
  g_autoptr(GPtrArray) results =
      g_ptr_array_new_with_free_func((GDestroyNotify)ps_fixture_result_free);
  GError *err = NULL;
  gboolean ok = ps_fixture_run_file(reg, path, NULL, results, &err);
  PS_CHECK_MSG(ok, "slide fixture: %s", err ? err->message : "an output failed");
  g_clear_error(&err);
  for (guint k = 0; k < results->len; k++) {
    ps_fixture_result *r = results->pdata[k];
    printf("slide %s: max abs err %g%s%s\n", r->output, r->max_abs_err, r->passed ? "" : " FAILED ",
           r->problem ? r->problem : "");
    PS_CHECK(r->passed);
  }
  PS_CHECK(results->len == 8); /* 4 regions, thumbnail, saturation, threshold, mask */
}

int main(void) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *so = g_build_filename(dir ? dir : "plugins", "pathseg-slide.so", NULL);
  GError *err = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, so, &err), err);
  const ps_component_desc *d = ps_registry_find(reg, "dataset.slide");
  PS_CHECK(d && d->kind == PS_KIND_DATASET);
  if (!d) return ps_test_finish();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 2, 1);
  test_dataset(d, ctx);
  test_harness(reg);
  return ps_test_finish();
}
