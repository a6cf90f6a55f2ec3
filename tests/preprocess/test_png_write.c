/* test_png_write.c — the preprocessing stage's PNG encoder (png_write.c):
 * grey, grey+alpha, RGB and RGBA images, odd sizes, every row filter and
 * deflate levels 0, 1, 6 and 9 decode with libvips (libpng/libspng, which
 * check every CRC and the zlib checksum) to exactly the input bytes; the
 * adaptive filter writes smaller files than no filter on smooth (tissue-like)
 * content; bad sizes are errors, not crashes. */
#include <glib/gstdio.h>
#include <string.h>
#include <vips/vips.h>

#include "png_write.h"
#include "ps_test.h"

/* Smooth gradients with noise and flat runs: every filter gets used. */
static void make_image(uint8_t *img, int w, int h, int bands, uint32_t seed) {
  uint32_t s = seed * 2654435761u + 1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int b = 0; b < bands; b++) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        int v = (x * (b + 1) + y * 2) / 3 + (int)(s % 7) - 3;
        if (y % 5 == 4) v = 200; /* a flat row */
        img[((size_t)y * w + x) * bands + b] = (uint8_t)CLAMP(v, 0, 255);
      }
}

/* Decodes path with libvips; (h, w, bands) u8 or NULL. */
static uint8_t *decode(const char *path, int *w, int *h, int *bands) {
  VipsImage *img = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
  if (!img) {
    g_printerr("libvips cannot read %s: %s\n", path, vips_error_buffer());
    vips_error_clear();
    return NULL;
  }
  *w = img->Xsize, *h = img->Ysize, *bands = img->Bands;
  size_t len = 0;
  uint8_t *mem = img->BandFmt == VIPS_FORMAT_UCHAR ? vips_image_write_to_memory(img, &len) : NULL;
  g_object_unref(img);
  return mem;
}

int main(void) {
  PS_CHECK(VIPS_INIT("test_png_write") == 0);
  g_autofree char *tmp = g_dir_make_tmp("ps-png-write-XXXXXX", NULL);
  static const int sizes[][2] = {{1, 1}, {7, 5}, {256, 256}, {33, 2}};
  static const int levels[] = {0, 1, 6, 9};
  int cases = 0;
  for (int bands = 1; bands <= 4; bands++)
    for (size_t si = 0; si < G_N_ELEMENTS(sizes); si++)
      for (int f = PP_PNG_FILTER_NONE; f <= PP_PNG_FILTER_ADAPTIVE; f++)
        for (size_t li = 0; li < G_N_ELEMENTS(levels); li++) {
          const int w = sizes[si][0], h = sizes[si][1];
          g_autofree uint8_t *img = g_malloc((size_t)w * h * bands);
          make_image(img, w, h, bands, (uint32_t)(bands * 131 + si * 17 + f * 3 + li));
          g_autoptr(pp_png_encoder) enc = pp_png_encoder_new(levels[li], (pp_png_filter)f);
          g_autofree char *path = g_strdup_printf("%s/t%d_%zu_%d_%zu.png", tmp, bands, si, f, li);
          GError *error = NULL;
          /* Every other case through a temporary directory, as the stage writes. */
          PS_CHECK_OK(pp_png_write(enc, path, cases % 2 ? tmp : NULL, img, w, h, bands, &error),
                      error);
          int dw = 0, dh = 0, db = 0;
          g_autofree uint8_t *back = decode(path, &dw, &dh, &db);
          PS_CHECK_MSG(back && dw == w && dh == h && db == bands &&
                           memcmp(back, img, (size_t)w * h * bands) == 0,
                       "bands %d, %d x %d, filter %d, level %d: decodes to other pixels", bands, w,
                       h, f, levels[li]);
          cases++;
        }
  PS_CHECK(cases == 4 * 4 * 5 * 4);

  /* Adaptive filtering pays on smooth content: smaller than no filter. */
  {
    const int w = 256, h = 256;
    g_autofree uint8_t *img = g_malloc((size_t)w * h * 3);
    make_image(img, w, h, 3, 7);
    size_t len[2] = {0, 0};
    for (int i = 0; i < 2; i++) {
      g_autoptr(pp_png_encoder) enc =
          pp_png_encoder_new(6, i ? PP_PNG_FILTER_ADAPTIVE : PP_PNG_FILTER_NONE);
      const uint8_t *png = NULL;
      GError *error = NULL;
      PS_CHECK_OK(pp_png_encode(enc, img, w, h, 3, &png, &len[i], &error), error);
      PS_CHECK(png && memcmp(png, "\x89PNG\r\n\x1a\n", 8) == 0);
    }
    PS_CHECK_MSG(len[1] < len[0], "adaptive %zu bytes, none %zu", len[1], len[0]);
  }

  /* Filter names and bad sizes. */
  pp_png_filter f = PP_PNG_FILTER_NONE;
  PS_CHECK(pp_png_filter_from_name("adaptive", &f) && f == PP_PNG_FILTER_ADAPTIVE);
  PS_CHECK(pp_png_filter_from_name("paeth", &f) && f == PP_PNG_FILTER_PAETH);
  PS_CHECK(!pp_png_filter_from_name("all", &f));
  {
    g_autoptr(pp_png_encoder) enc = pp_png_encoder_new(6, PP_PNG_FILTER_ADAPTIVE);
    uint8_t px[4] = {0};
    const uint8_t *png = NULL;
    size_t len = 0;
    GError *error = NULL;
    PS_CHECK_FAILS_WITH(pp_png_encode(enc, px, 0, 1, 3, &png, &len, &error), error,
                        "cannot encode 0 x 1 x 3");
    PS_CHECK_FAILS_WITH(pp_png_encode(enc, px, 1, 1, 5, &png, &len, &error), error,
                        "cannot encode 1 x 1 x 5");
    g_autofree char *nowhere = g_strdup_printf("%s/missing-dir/x.png", tmp);
    PS_CHECK_FAILS_WITH(pp_png_write(enc, nowhere, NULL, px, 1, 1, 3, &error), error,
                        "missing-dir");
  }
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(cmd) != 0) g_printerr("cannot remove %s\n", tmp);
  return ps_test_finish();
}
