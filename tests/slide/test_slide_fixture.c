/* test_slide_fixture.c — whole-slide reading and tissue detection against the
 * `slide` fixture (openslide-python read_region, skimage Otsu) on
 * tests/data/CMU-1-Small-Region.svs, called directly (the plugin-harness
 * path is in test_slide_plugin.c). */
#include <math.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"
#include "slide.h"

static char *data_path(const char *dir_env, const char *fallback, const char *name) {
  const char *dir = g_getenv(dir_env);
  return g_build_filename(dir ? dir : fallback, name, NULL);
}

int main(void) {
  g_autofree char *fx_path = data_path("PATHSEG_FIXTURES", "tests/fixtures", "slide.safetensors");
  g_autofree char *svs = data_path("PATHSEG_TEST_DATA", "tests/data", "CMU-1-Small-Region.svs");
  GError *err = NULL;
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fx_path, &err);
  PS_CHECK_OK(st != NULL, err);
  g_autoptr(ps_slide) slide = ps_slide_open(svs, &err);
  PS_CHECK_OK(slide != NULL, err);
  if (!st || !slide) return ps_test_finish();

  /* Slide properties as openslide reports them. */
  int64_t w = 0, h = 0;
  PS_CHECK(ps_slide_level_count(slide) == 1);
  PS_CHECK(ps_slide_level_size(slide, 0, &w, &h) && w == 2220 && h == 2967);
  PS_CHECK(g_strcmp0(ps_slide_property(slide, "openslide.vendor"), "aperio") == 0);
  double mx = 0, my = 0;
  PS_CHECK_OK(ps_slide_mpp(slide, &mx, &my, &err), err);
  PS_CHECK_NEAR(mx, 0.499, 1e-12);
  PS_CHECK_NEAR(my, 0.499, 1e-12);

  /* Regions: bit-exact RGBA. */
  const ps_tensor *coords = ps_safetensors_get(st, "input.coords_xy", &err);
  PS_CHECK_OK(coords != NULL, err);
  if (!coords || coords->dtype != PS_DTYPE_I64 || ps_tensor_numel(coords) != 8)
    return ps_test_finish();
  const int64_t *xy = coords->data;
  uint8_t *region = g_malloc(256 * 256 * 4);
  for (int k = 0; k < 4; k++) {
    char name[32];
    g_snprintf(name, sizeof name, "output.region_%d", k);
    const ps_tensor *want = ps_safetensors_get(st, name, &err);
    PS_CHECK_OK(want != NULL, err);
    if (!want || ps_tensor_numel(want) != 256 * 256 * 4) continue;
    PS_CHECK_OK(ps_slide_read_region(slide, xy[2 * k], xy[2 * k + 1], 0, 256, 256, region, &err),
                err);
    const uint8_t *wp = want->data;
    size_t bad = 0;
    int maxd = 0;
    for (size_t i = 0; i < 256 * 256 * 4; i++) {
      int d = abs((int)region[i] - (int)wp[i]);
      bad += d != 0;
      maxd = d > maxd ? d : maxd;
    }
    PS_CHECK_MSG(bad == 0, "%s at (%ld, %ld): %zu bytes differ, max %d", name, (long)xy[2 * k],
                 (long)xy[2 * k + 1], bad, maxd);
    printf("%s: %zu bytes differ (max %d)\n", name, bad, maxd);
  }

  /* A region across the right/bottom edge is transparent outside. */
  PS_CHECK_OK(ps_slide_read_region(slide, 2220 - 8, 2967 - 8, 0, 16, 16, region, &err), err);
  PS_CHECK(region[(0 * 16 + 0) * 4 + 3] == 255);                                  /* inside */
  PS_CHECK(region[(0 * 16 + 8) * 4 + 3] == 0 && region[(15 * 16 + 15) * 4] == 0); /* outside */
  PS_CHECK_OK(ps_slide_read_region(slide, -100, -100, 0, 8, 8, region, &err), err);
  PS_CHECK(region[0] == 0 && region[3] == 0);
  PS_CHECK_FAILS_WITH(ps_slide_read_region(slide, 0, 0, 3, 8, 8, region, &err), err,
                      "level 3 out of range");
  g_free(region);

  /* Thumbnail, saturation, Otsu, mask. */
  double *thumb = NULL;
  int64_t tw = 0, th = 0;
  PS_CHECK_OK(ps_slide_thumbnail_mean(slide, 0, 16, &thumb, &tw, &th, &err), err);
  PS_CHECK(tw == 138 && th == 185);
  const ps_tensor *w_thumb = ps_safetensors_get(st, "output.thumbnail_mean", &err);
  PS_CHECK_OK(w_thumb != NULL, err);
  if (!thumb || !w_thumb || ps_tensor_numel(w_thumb) != tw * th * 3) return ps_test_finish();
  size_t n = (size_t)(tw * th);
  double e = 0.0;
  const float *wt = w_thumb->data;
  for (size_t i = 0; i < n * 3; i++) e = fmax(e, fabs(thumb[i] - wt[i]));
  PS_CHECK_MSG(e <= 1e-5 + 1e-6 * 255, "thumbnail_mean max error %g", e);

  double *sat = g_new(double, n);
  ps_saturation(thumb, n, sat);
  const ps_tensor *w_sat = ps_safetensors_get(st, "output.saturation", &err);
  PS_CHECK_OK(w_sat != NULL, err);
  if (w_sat && ps_tensor_numel(w_sat) == (int64_t)n) {
    e = 0.0;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs(sat[i] - ((const float *)w_sat->data)[i]));
    PS_CHECK_MSG(e <= 1e-6, "saturation max error %g", e);
  }

  int64_t hist[256];
  double centers[256];
  double thr = ps_otsu_threshold(sat, n, 256, hist, centers);
  const ps_tensor *w_hist = ps_safetensors_get(st, "trace.otsu_hist", &err);
  PS_CHECK_OK(w_hist != NULL, err);
  const ps_tensor *w_cent = ps_safetensors_get(st, "trace.otsu_bin_centers", &err);
  PS_CHECK_OK(w_cent != NULL, err);
  if (w_hist && w_cent && ps_tensor_numel(w_hist) == 256 && ps_tensor_numel(w_cent) == 256) {
    size_t bad = 0;
    for (int i = 0; i < 256; i++) bad += hist[i] != ((const int64_t *)w_hist->data)[i];
    PS_CHECK_MSG(bad == 0, "otsu histogram: %zu bins differ", bad);
    e = 0.0;
    for (int i = 0; i < 256; i++) e = fmax(e, fabs(centers[i] - ((const float *)w_cent->data)[i]));
    PS_CHECK_MSG(e <= 1e-7, "otsu bin centers max error %g", e);
  }
  /* config.otsu_threshold_f64 = 0.19078125660844192 */
  PS_CHECK_NEAR(thr, 0.19078125660844192, 1e-15);

  uint8_t *mask = g_new(uint8_t, n);
  ps_threshold_mask(sat, n, thr, mask);
  const ps_tensor *w_mask = ps_safetensors_get(st, "output.tissue_mask", &err);
  PS_CHECK_OK(w_mask != NULL, err);
  size_t tissue = 0;
  if (w_mask && ps_tensor_numel(w_mask) == (int64_t)n) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
      bad += mask[i] != ((const uint8_t *)w_mask->data)[i];
      tissue += mask[i];
    }
    PS_CHECK_MSG(bad == 0, "tissue mask: %zu pixels differ", bad);
  }
  PS_CHECK(tissue > n / 20 && tissue < n); /* some tissue, not all */

  /* The one-call version agrees. */
  uint8_t *mask2 = NULL;
  double thr2 = 0;
  PS_CHECK_OK(ps_slide_tissue_mask(slide, 0, 16, &mask2, &tw, &th, &thr2, &err), err);
  PS_CHECK(mask2 && memcmp(mask, mask2, n) == 0 && thr2 == thr);
  printf("thumbnail %ldx%ld, otsu %.17g, tissue %zu / %zu\n", (long)tw, (long)th, thr, tissue, n);

  g_free(mask2);
  g_free(mask);
  g_free(sat);
  g_free(thumb);
  return ps_test_finish();
}
