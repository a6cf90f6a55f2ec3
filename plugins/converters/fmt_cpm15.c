/* fmt_cpm15.c — CPM-15 (MICCAI 2015 Computational Precision Medicine nucleus
 * segmentation, training set), as published:
 *
 *   [MICCAI_competition_dataset/]imageXX.png + imageXX_mask.txt (+ imageXX_poly.png, ignored)
 *   README_training.txt  (lists each image's objective: "imageXX.png   20x")
 *
 * The mask is an ASCII instance label map (image_io.h); the binary mask is
 * the union of the instances. RGBA images: alpha dropped. Magnification per
 * image from the README table when present, else 0. Grouping: the dataset
 * gives no patient, so each image is its own group ("cpm15-imageXX"). */
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "image_io.h"

/* "imageXX" -> objective power, from the README's table. */
static GHashTable *read_magnifications(const char *root) {
  GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_autofree char *path = g_build_filename(root, "README_training.txt", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return t;
  g_auto(GStrv) lines = g_strsplit_set(text, "\r\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto(GStrv) f = g_strsplit_set(g_strstrip(*l), " \t", -1);
    const char *name = f[0], *mag = NULL;
    for (char **p = f + (f[0] ? 1 : 0); *p; p++)
      if (**p) {
        mag = *p;
        break;
      }
    if (!name || !g_str_has_suffix(name, ".png") || !mag || !g_str_has_suffix(mag, "x")) continue;
    int m = atoi(mag);
    if (m > 0) g_hash_table_replace(t, g_strndup(name, strlen(name) - 4), GINT_TO_POINTER(m));
  }
  return t;
}

gboolean conv_cpm15(conv_ctx *c, GError **error) {
  g_autofree char *root0 = conv_find_dir(c->o->input_dir, "MICCAI_competition_dataset");
  const char *root = root0 ? root0 : c->o->input_dir;
  g_autoptr(GHashTable) mags = read_magnifications(root);
  g_autoptr(GPtrArray) files = conv_list(root, ".png", FALSE);
  for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
    const char *img = g_ptr_array_index(files, i);
    g_autofree char *stem = conv_stem(img);
    if (g_str_has_suffix(stem, "_poly")) continue;
    g_autofree char *name = g_strdup_printf("%s_mask.txt", stem);
    g_autofree char *txt = g_build_filename(root, name, NULL);
    if (!g_file_test(txt, G_FILE_TEST_IS_REGULAR)) {
      conv_skip(c, img, "no label map %s", name);
      continue;
    }
    GError *local = NULL;
    int w, h, mw, mh;
    g_autofree uint8_t *rgb = conv_load_rgb(img, &w, &h, &local);
    if (!rgb) {
      conv_skip_error(c, img, &local);
      continue;
    }
    g_autofree int32_t *labels = conv_load_ascii_labels(txt, &mw, &mh, &local);
    if (!labels) {
      conv_skip_error(c, img, &local);
      continue;
    }
    if (mw != w || mh != h) {
      conv_skip(c, img, "label map %s is %dx%d, the image %dx%d", name, mw, mh, w, h);
      continue;
    }
    size_t n = (size_t)w * h;
    g_autofree uint8_t *mask = g_malloc(n);
    for (size_t p = 0; p < n; p++) mask[p] = labels[p] != 0;
    g_autofree char *group = g_strdup_printf("cpm15-%s", stem);
    conv_item it = {"cpm15", group, "nuclei", NULL, NULL, GPOINTER_TO_INT(g_hash_table_lookup(mags, stem))};
    g_autofree char *rel = conv_write_image(c, &it, stem, rgb, w, h, error);
    if (!rel || !conv_add_row(c, &it, rel, NULL, rgb, mask, w, h, error)) return FALSE;
  }
  return TRUE;
}
