/* fmt_crag.c — CRAG (Graham et al., MILD-Net), as published:
 *
 *   [CRAG/]train/Images/<name>.png   train/Annotation/<name>.png   (also "Annotations")
 *   [CRAG/]test/Images/...           test/Annotation/...           (Overlay/ ignored)
 *
 * Annotations are instance label maps (0 background); the binary mask is
 * their union. 20x. Grouping: the file names carry no patient, so each image
 * is its own group ("crag-<split>-<name>"). */
#include "convert.h"

gboolean conv_crag(conv_ctx *c, GError **error) {
  const char *splits[] = {"train", "test", "valid"};
  int found = 0;
  for (size_t s = 0; s < G_N_ELEMENTS(splits); s++) {
    g_autofree char *split_dir = conv_find_dir(c->o->input_dir, splits[s]);
    if (!split_dir) continue;
    g_autofree char *images = conv_find_dir(split_dir, "Images|images|Image");
    g_autofree char *annos = conv_find_dir(split_dir, "Annotation|Annotations|annotation|annotations");
    if (!images) continue;
    found++;
    g_autoptr(GPtrArray) files = conv_list(images, ".png|.tif|.tiff|.bmp|.jpg", FALSE);
    for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
      const char *img = g_ptr_array_index(files, i);
      g_autofree char *base = g_path_get_basename(img);
      g_autofree char *anno = annos ? g_build_filename(annos, base, NULL) : NULL;
      if (!anno || !g_file_test(anno, G_FILE_TEST_IS_REGULAR)) {
        conv_skip(c, img, "no annotation %s/%s", annos ? "Annotation" : "(no Annotation folder)", base);
        continue;
      }
      g_autofree char *stem = conv_stem(img);
      g_autofree char *group = g_strdup_printf("crag-%s-%s", splits[s], stem);
      conv_item it = {"crag", group, "gland", NULL, "colonic", 20};
      if (!conv_pair(c, &it, img, anno, NULL, FALSE, error)) return FALSE;
    }
  }
  if (!found) conv_log(c, "crag: no train/Images or test/Images under %s", c->o->input_dir);
  return TRUE;
}
