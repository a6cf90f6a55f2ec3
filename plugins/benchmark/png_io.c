/* png_io.c — PNG tiles through libvips (png_io.h). */
#include "png_io.h"

#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <vips/vips.h>

gboolean ps_png_init(GError **error) {
  if (VIPS_INIT("pathseg") != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "cannot start libvips: %s", vips_error_buffer());
    vips_error_clear();
    return FALSE;
  }
  return TRUE;
}

static void vips_fail(GError **error, const char *what, const char *path) {
  g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s %s: %s", what, path, vips_error_buffer());
  vips_error_clear();
}

gboolean ps_png_write(const char *path, const uint8_t *data, int w, int h, int bands, GError **error) {
  VipsImage *img = vips_image_new_from_memory(data, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
  if (!img) {
    vips_fail(error, "cannot wrap", path);
    return FALSE;
  }
  void *buf = NULL;
  size_t len = 0;
  int rc = vips_pngsave_buffer(img, &buf, &len, "compression", 6, NULL);
  g_object_unref(img);
  if (rc != 0) {
    vips_fail(error, "cannot encode", path);
    return FALSE;
  }
  gboolean ok = g_file_set_contents(path, buf, (gssize)len, error);
  g_free(buf);
  return ok;
}

uint8_t *ps_png_read(const char *path, int want_bands, int *w, int *h, GError **error) {
  /* fail_on truncated: libvips would otherwise decode a cut-off file with
   * the missing rows grey and only warn, and a half image would pass as a
   * tile. */
  VipsImage *img = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, "fail_on",
                                            VIPS_FAIL_ON_TRUNCATED, NULL);
  if (!img) {
    vips_fail(error, "cannot read", path);
    return NULL;
  }
  VipsImage *t = NULL;
  /* Drop alpha, convert to the wanted number of bands, 8 bit. */
  if (vips_image_hasalpha(img)) {
    if (vips_flatten(img, &t, NULL) != 0) goto fail;
    g_object_unref(img);
    img = t;
  }
  if (img->Bands != want_bands) {
    if (vips_colourspace(img, &t, want_bands == 1 ? VIPS_INTERPRETATION_B_W : VIPS_INTERPRETATION_sRGB, NULL) != 0)
      goto fail;
    g_object_unref(img);
    img = t;
  }
  if (img->BandFmt != VIPS_FORMAT_UCHAR) {
    if (vips_cast_uchar(img, &t, NULL) != 0) goto fail;
    g_object_unref(img);
    img = t;
  }
  size_t len = 0;
  uint8_t *mem = vips_image_write_to_memory(img, &len);
  if (!mem || len != (size_t)img->Xsize * img->Ysize * want_bands) {
    g_free(mem);
    goto fail;
  }
  *w = img->Xsize;
  *h = img->Ysize;
  g_object_unref(img);
  return mem;
fail:
  vips_fail(error, "cannot decode", path);
  g_object_unref(img);
  return NULL;
}
