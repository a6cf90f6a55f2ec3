/* test_slide_errors.c — slide.c beyond the fixture: a generic tiled TIFF
 * written here (regions and block means against the pixels we wrote, levels,
 * the missing-mpp error), corrupt / truncated / non-slide files (clear errors,
 * never a crash), and saturation and Otsu against their definitions. */
#include <glib/gstdio.h>
#include <math.h>
#include <string.h>
#include <vips/vips.h>

#include <pathseg/rng.h>

#include "ps_test.h"
#include "slide.h"

/* A directory from the environment ctest sets, or the source-tree default. */
static const char *env_dir(const char *name, const char *fallback) {
  const char *v = g_getenv(name);
  return v && *v ? v : fallback;
}

enum { W = 700, H = 520 };

/* A deterministic RGB test pattern. */
static uint8_t pattern(int x, int y, int c) {
  return (uint8_t)((x * (3 + c) + y * (5 + 2 * c) + ((x / 37 + y / 29) % 2) * 90) % 256);
}

static char *write_tiff(const char *dir) {
  uint8_t *px = g_malloc((size_t)W * H * 3);
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      for (int c = 0; c < 3; c++) px[((size_t)y * W + x) * 3 + c] = pattern(x, y, c);
  char *path = g_build_filename(dir, "generic.tif", NULL);
  VipsImage *img =
      vips_image_new_from_memory_copy(px, (size_t)W * H * 3, W, H, 3, VIPS_FORMAT_UCHAR);
  int rc =
      img ? vips_tiffsave(img, path, "tile", TRUE, "tile_width", 128, "tile_height", 128, "pyramid",
                          TRUE, "compression", VIPS_FOREIGN_TIFF_COMPRESSION_DEFLATE, NULL)
          : -1;
  PS_CHECK_MSG(rc == 0, "tiffsave: %s", vips_error_buffer());
  if (img) g_object_unref(img);
  g_free(px);
  return path;
}

static void test_generic_tiff(const char *dir) {
  g_autofree char *path = write_tiff(dir);
  GError *err = NULL;
  g_autoptr(ps_slide) s = ps_slide_open(path, &err);
  PS_CHECK_OK(s != NULL, err);
  if (!s) return;
  int64_t w, h;
  PS_CHECK(ps_slide_level_count(s) >= 2);
  PS_CHECK(ps_slide_level_size(s, 0, &w, &h) && w == W && h == H);
  PS_CHECK(ps_slide_level_size(s, 1, &w, &h) && w == W / 2 && h == H / 2);
  PS_CHECK_NEAR(ps_slide_level_downsample(s, 1), 2.0, 1e-9);

  /* No resolution in the file: the mpp error names the slide and the keys. */
  double mx, my;
  PS_CHECK_FAILS_WITH(ps_slide_mpp(s, &mx, &my, &err), err, "no microns-per-pixel");
  PS_CHECK(!ps_slide_mpp(s, &mx, &my, &err) && err && strstr(err->message, path) &&
           strstr(err->message, "aperio.MPP"));
  g_clear_error(&err);

  /* Level-0 regions are the pixels we wrote, opaque; crossing tile borders
   * and the slide edge. */
  const int rw = 150, rh = 140;
  uint8_t *r = g_malloc((size_t)rw * rh * 4);
  const int64_t at[3][2] = {{100, 90}, {W - 100, H - 60}, {-20, 500}};
  for (int k = 0; k < 3; k++) {
    PS_CHECK_OK(ps_slide_read_region(s, at[k][0], at[k][1], 0, rw, rh, r, &err), err);
    size_t bad = 0;
    for (int y = 0; y < rh; y++)
      for (int x = 0; x < rw; x++) {
        int64_t sx = at[k][0] + x, sy = at[k][1] + y;
        const uint8_t *p = r + ((size_t)y * rw + x) * 4;
        gboolean inside = sx >= 0 && sy >= 0 && sx < W && sy < H;
        if (inside)
          bad += p[0] != pattern((int)sx, (int)sy, 0) || p[1] != pattern((int)sx, (int)sy, 1) ||
                 p[2] != pattern((int)sx, (int)sy, 2) || p[3] != 255;
        else
          bad += p[0] || p[1] || p[2] || p[3];
      }
    PS_CHECK_MSG(bad == 0, "region %d: %zu pixels wrong", k, bad);
  }
  /* Level 1: level-0 coordinates halved. */
  PS_CHECK_OK(ps_slide_read_region(s, 0, 0, 1, 8, 8, r, &err), err);
  PS_CHECK(r[3] == 255);
  PS_CHECK_OK(ps_slide_read_region(s, W, 0, 1, 8, 8, r, &err), err); /* x = W -> level x W/2 */
  PS_CHECK(r[3] == 0);
  PS_CHECK_FAILS_WITH(ps_slide_read_region(s, 0, 0, 0, 0, 8, r, &err), err, "bad region size");
  g_free(r);

  /* Block means of the pixels we wrote (image cropped to whole blocks). */
  const int f = 16;
  double *thumb = NULL;
  int64_t tw, th;
  PS_CHECK_OK(ps_slide_thumbnail_mean(s, 0, f, &thumb, &tw, &th, &err), err);
  PS_CHECK(tw == W / f && th == H / f);
  double e = 0;
  for (int by = 0; thumb && by < th; by++)
    for (int bx = 0; bx < tw; bx++)
      for (int c = 0; c < 3; c++) {
        double sum = 0;
        for (int y = 0; y < f; y++)
          for (int x = 0; x < f; x++) sum += pattern(bx * f + x, by * f + y, c);
        e = fmax(e, fabs(thumb[(by * tw + bx) * 3 + c] - sum / (f * f)));
      }
  PS_CHECK_MSG(e == 0.0, "block mean error %g", e);
  g_free(thumb);
  PS_CHECK_FAILS_WITH(ps_slide_thumbnail_mean(s, 0, 0, &thumb, &tw, &th, &err), err, "factor");
  PS_CHECK_FAILS_WITH(ps_slide_thumbnail_mean(s, 0, 4096, &thumb, &tw, &th, &err), err,
                      "smaller than one");
  uint8_t *mask = NULL;
  double thr;
  PS_CHECK_OK(ps_slide_tissue_mask(s, 1, 8, &mask, &tw, &th, &thr, &err), err);
  PS_CHECK(tw == W / 2 / 8 && th == H / 2 / 8);
  g_free(mask);
}

static void test_bad_files(const char *dir) {
  GError *err = NULL;
  g_autofree char *svs =
      g_build_filename(env_dir("PATHSEG_TEST_DATA", "tests/data"), "CMU-1-Small-Region.svs", NULL);
  gchar *buf = NULL;
  gsize len = 0;
  PS_CHECK(g_file_get_contents(svs, &buf, &len, NULL) && len > 1000000);
  if (!buf) return;

  /* Truncated: the TIFF directory of an SVS is at the end. */
  g_autofree char *trunc = g_build_filename(dir, "truncated.svs", NULL);
  PS_CHECK(g_file_set_contents(trunc, buf, (gssize)(len / 2), NULL));
  ps_slide *s = ps_slide_open(trunc, &err);
  PS_CHECK(s == NULL && err && strstr(err->message, trunc) && strstr(err->message, "cannot open"));
  g_clear_error(&err);
  ps_slide_close(s);

  /* Corrupt tile data: opens, but reading fails with an error, not a crash. */
  for (gsize i = 4096; i < 400000; i += 977) buf[i] ^= 0x5a;
  g_autofree char *bad = g_build_filename(dir, "corrupt.svs", NULL);
  PS_CHECK(g_file_set_contents(bad, buf, (gssize)len, NULL));
  s = ps_slide_open(bad, &err);
  PS_CHECK_OK(s != NULL, err);
  if (s) {
    double *thumb = NULL;
    int64_t tw, th;
    gboolean ok = ps_slide_thumbnail_mean(s, 0, 16, &thumb, &tw, &th, &err);
    PS_CHECK(!ok && err && strstr(err->message, bad) && strstr(err->message, "cannot read"));
    g_clear_error(&err);
    g_free(thumb);
    ps_slide_close(s);
  }
  g_free(buf);

  /* Not a slide, no file, a directory. */
  g_autofree char *text = g_build_filename(dir, "notes.svs", NULL);
  PS_CHECK(g_file_set_contents(text, "not a slide at all", -1, NULL));
  PS_CHECK_FAILS_WITH(ps_slide_open(text, &err) != NULL, err, "cannot open as a whole-slide");
  g_autofree char *none = g_build_filename(dir, "missing.svs", NULL);
  PS_CHECK_FAILS_WITH(ps_slide_open(none, &err) != NULL, err, "no such file");
  PS_CHECK_FAILS_WITH(ps_slide_open(dir, &err) != NULL, err, "no such file");
}

static void test_saturation_otsu(void) {
  const double rgb[5 * 3] = {255, 0, 0, 100, 100, 100, 200, 100, 50, 0, 0, 0, 10, 20, 40};
  double sat[5];
  ps_saturation(rgb, 5, sat);
  PS_CHECK_NEAR(sat[0], 1.0, 1e-15);
  PS_CHECK_NEAR(sat[1], 0.0, 0);
  PS_CHECK_NEAR(sat[2], 0.75, 1e-15);
  PS_CHECK_NEAR(sat[3], 0.0, 0);
  PS_CHECK_NEAR(sat[4], 0.75, 1e-15);

  /* Otsu against brute force: the between-class variance of every split of
   * the 256-bin histogram computed from its definition. */
  enum { N = 5000 };
  double *x = g_new(double, N);
  ps_rng rng;
  ps_rng_seed(&rng, 3);
  for (int i = 0; i < N; i++)
    x[i] = i % 3 ? 0.05 + 0.05 * ps_rng_uniform_f64(&rng) : 0.4 + 0.2 * ps_rng_uniform_f64(&rng);
  int64_t hist[256];
  double centers[256];
  double thr = ps_otsu_threshold(x, N, 256, hist, centers);
  int64_t total = 0;
  for (int i = 0; i < 256; i++) total += hist[i];
  PS_CHECK(total == N);
  int best = -1;
  double best_v = -1;
  for (int t = 0; t < 255; t++) {
    double w0 = 0, w1 = 0, s0 = 0, s1 = 0;
    for (int i = 0; i < 256; i++) {
      if (i <= t)
        w0 += hist[i], s0 += hist[i] * centers[i];
      else
        w1 += hist[i], s1 += hist[i] * centers[i];
    }
    if (w0 == 0 || w1 == 0) continue;
    double v = w0 * w1 * pow(s0 / w0 - s1 / w1, 2);
    if (v > best_v * (1 + 1e-12)) best_v = v, best = t;
  }
  PS_CHECK(best >= 0 && thr == centers[best]);
  PS_CHECK(thr > 0.1 && thr < 0.4); /* between the two clusters */
  /* centers of 256 equal bins over [min, max] */
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < N; i++) lo = fmin(lo, x[i]), hi = fmax(hi, x[i]);
  PS_CHECK_NEAR(centers[0], lo + (hi - lo) / 512, 1e-15);
  PS_CHECK_NEAR(centers[255], hi - (hi - lo) / 512, 1e-15);
  uint8_t m[4];
  const double xs[4] = {thr - 1e-9, thr, thr + 1e-9, 1.0};
  ps_threshold_mask(xs, 4, thr, m);
  PS_CHECK(m[0] == 0 && m[1] == 0 && m[2] == 1 && m[3] == 1);
  /* A constant input is its own threshold. */
  for (int i = 0; i < N; i++) x[i] = 0.25;
  PS_CHECK(ps_otsu_threshold(x, N, 256, hist, centers) == 0.25);
  g_free(x);
}

int main(void) {
  GError *err = NULL;
  PS_CHECK_OK(ps_slide_init_vips(&err), err);
  g_autofree char *dir = g_dir_make_tmp("pathseg-slide-XXXXXX", &err);
  PS_CHECK_OK(dir != NULL, err);
  if (dir) {
    test_generic_tiff(dir);
    test_bad_files(dir);
    const char *names[] = {"generic.tif", "truncated.svs", "corrupt.svs", "notes.svs"};
    for (size_t i = 0; i < G_N_ELEMENTS(names); i++) {
      g_autofree char *p = g_build_filename(dir, names[i], NULL);
      g_remove(p);
    }
    g_rmdir(dir);
  }
  test_saturation_otsu();
  return ps_test_finish();
}
