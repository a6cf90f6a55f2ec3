/* pairs.c — conv_pair (convert.h): the image + mask-file case shared by the
 * tile datasets. */
#include "convert.h"
#include "image_io.h"
#include "png_io.h"

gboolean conv_pair(conv_ctx *c, const conv_item *it, const char *image_path, const char *mask_path, const char *stem,
                   gboolean grey,
                   GError **error) {
  GError *local = NULL;
  int w = 0, h = 0, mw = 0, mh = 0;
  g_autofree uint8_t *rgb = conv_load_rgb(image_path, &w, &h, &local);
  if (!rgb) {
    conv_skip_error(c, image_path, &local);
    return TRUE;
  }
  g_autofree uint8_t *mask = g_malloc0((size_t)w * h);
  if (mask_path && grey) {
    g_autofree uint8_t *g = ps_png_read(mask_path, 1, &mw, &mh, &local);
    if (!g) {
      conv_skip(c, image_path, "mask %s: %s", conv_rel(c, mask_path), local->message);
      g_clear_error(&local);
      return TRUE;
    }
    if (mw != w || mh != h) {
      conv_skip(c, image_path, "mask %s is %dx%d, the image %dx%d", conv_rel(c, mask_path), mw, mh, w, h);
      return TRUE;
    }
    for (size_t i = 0; i < (size_t)w * h; i++) mask[i] = g[i] >= c->o->threshold;
  } else if (mask_path) {
    g_autofree uint32_t *l = conv_load_labels(mask_path, &mw, &mh, &local);
    if (!l) {
      conv_skip(c, image_path, "mask %s: %s", conv_rel(c, mask_path), local->message);
      g_clear_error(&local);
      return TRUE;
    }
    if (mw != w || mh != h) {
      conv_skip(c, image_path, "mask %s is %dx%d, the image %dx%d", conv_rel(c, mask_path), mw, mh, w, h);
      return TRUE;
    }
    for (size_t i = 0; i < (size_t)w * h; i++) mask[i] = l[i] != 0;
  }
  g_autofree char *own = conv_stem(image_path);
  g_autofree char *rel = conv_write_image(c, it, stem ? stem : own, rgb, w, h, error);
  return rel && conv_add_row(c, it, rel, NULL, rgb, mask, w, h, error);
}
