/* export.c — images in and out for evaluation and inference: PNG/any-format
 * reads through libvips (the benchmark's png_io.c, compiled in), PNG bytes
 * for the HTML report, and the mask overlay. */
#include <pathseg/error.h>
#include <vips/vips.h>

#include "evaluate.h"
#include "png_io.h"

gboolean ev_png_init(GError **error) {
  return ps_png_init(error);
}

gboolean ev_write_png(const char *path, const uint8_t *data, int w, int h, int bands,
                      GError **error) {
  return ps_png_write(path, data, w, h, bands, error);
}

uint8_t *ev_read_image(const char *path, int bands, int *w, int *h, GError **error) {
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no such file", path);
    return NULL;
  }
  return ps_png_read(path, bands, w, h, error);
}

guint8 *ev_png_bytes(const uint8_t *data, int w, int h, int bands, gsize *len, GError **error) {
  VipsImage *img =
      vips_image_new_from_memory(data, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
  void *buf = NULL;
  size_t n = 0;
  if (!img || vips_pngsave_buffer(img, &buf, &n, "compression", 6, NULL) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot encode a PNG: %s", vips_error_buffer());
    vips_error_clear();
    if (img) g_object_unref(img);
    return NULL;
  }
  g_object_unref(img);
  *len = n;
  return buf;
}

/* Red tint (40 %) inside the mask and a solid yellow outline on its
 * boundary pixels (inside pixels with a 4-neighbour outside). */
void ev_overlay(const uint8_t *rgb, const uint8_t *mask, int w, int h, uint8_t *out) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      int64_t p = (int64_t)y * w + x;
      const uint8_t *s = rgb + 3 * p;
      uint8_t *d = out + 3 * p;
      if (!mask[p]) {
        d[0] = s[0], d[1] = s[1], d[2] = s[2];
        continue;
      }
      gboolean edge = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !mask[p - 1] ||
                      !mask[p + 1] || !mask[p - w] || !mask[p + w];
      if (edge) {
        d[0] = 255, d[1] = 230, d[2] = 0;
      } else {
        d[0] = (uint8_t)(0.6 * s[0] + 0.4 * 255);
        d[1] = (uint8_t)(0.6 * s[1]);
        d[2] = (uint8_t)(0.6 * s[2]);
      }
    }
}
