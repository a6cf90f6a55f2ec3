/* fmt_digestpath.c — DigestPath 2019 task 2 (colonoscopy tissue), as published:
 *
 *   [Colonoscopy_tissue_segment_dataset/]tissue-train-pos[-v1]/<name>.jpg + <name>_mask.jpg
 *   [Colonoscopy_tissue_segment_dataset/]tissue-train-neg/<name>.jpg   (no masks: all background)
 *
 * Masks are 0/255 JPEGs, thresholded at `threshold` (128) because JPEG
 * blurs the edges. Images are kept at their size (often thousands of px).
 * Level 1 of the source slides, about 20x. Grouping: names look like
 * `<caseID>_<date time>-lv1-<x>-<y>-<w>-<h>`; the group is the part before the
 * first '_' (the case), else before "-lv", else the whole name. Negatives
 * are kept only with `negatives`. */
#include <string.h>

#include "convert.h"

static char *case_id(const char *stem) {
  const char *u = strchr(stem, '_');
  const char *lv = strstr(stem, "-lv");
  size_t n = u ? (size_t)(u - stem) : lv ? (size_t)(lv - stem) : strlen(stem);
  return g_strdup_printf("digestpath-%.*s", (int)n, stem);
}

static gboolean convert_dir(conv_ctx *c, const char *dir, gboolean positive, GError **error) {
  g_autoptr(GPtrArray) files = conv_list(dir, ".jpg|.jpeg|.png", FALSE);
  for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
    const char *img = g_ptr_array_index(files, i);
    g_autofree char *stem = conv_stem(img);
    if (g_str_has_suffix(stem, "_mask")) continue;
    g_autofree char *mask = NULL;
    if (positive) {
      const char *exts[] = {".jpg", ".jpeg", ".png", ".JPG"};
      for (size_t e = 0; e < G_N_ELEMENTS(exts) && !mask; e++) {
        g_autofree char *dirn = g_path_get_dirname(img);
        g_autofree char *name = g_strdup_printf("%s_mask%s", stem, exts[e]);
        char *p = g_build_filename(dirn, name, NULL);
        if (g_file_test(p, G_FILE_TEST_IS_REGULAR))
          mask = p;
        else
          g_free(p);
      }
      if (!mask) {
        conv_skip(c, img, "no mask %s_mask.jpg", stem);
        continue;
      }
    }
    g_autofree char *group = case_id(stem);
    conv_item it = {"digestpath", group, "tumour", positive ? "malignant" : "benign", "colonic", 20};
    if (!conv_pair(c, &it, img, mask, NULL, TRUE, error)) return FALSE;
  }
  return TRUE;
}

gboolean conv_digestpath(conv_ctx *c, GError **error) {
  g_autofree char *root0 = conv_find_dir(c->o->input_dir, "Colonoscopy_tissue_segment_dataset");
  const char *root = root0 ? root0 : c->o->input_dir;
  g_autofree char *pos = conv_find_dir(root, "tissue-train-pos-v1|tissue-train-pos");
  g_autofree char *neg = conv_find_dir(root, "tissue-train-neg");
  if (!pos && !neg) conv_log(c, "digestpath: no tissue-train-pos-v1/ or tissue-train-neg/ under %s", root);
  if (pos && !convert_dir(c, pos, TRUE, error)) return FALSE;
  if (neg && c->o->negatives && !convert_dir(c, neg, FALSE, error)) return FALSE;
  return TRUE;
}
