/* fmt_ebhi_seg.c — EBHI-Seg (Shi et al. 2023), as published on figshare:
 *
 *   [EBHI-SEG/]<class>/image/<name>.png   <class>/label/<name>.png
 *
 * with the six diagnostic classes Adenocarcinoma, High-grade IN, Low-grade
 * IN, Normal, Polyp, Serrated adenoma (other folders are skipped). Labels
 * are greyscale with soft edges: foreground when >= threshold (128). The
 * target is the class's lesion. Names look like `GT2013112-6-400-001`:
 * "-400-" is the x400 total magnification (40x objective), and the group is
 * the first field upper-cased ("GTxc..." and "GTXC..." are one scheme), the
 * case, which can appear in several classes. */
#include <string.h>

#include "convert.h"

static const struct {
  const char *folder, *target, *morphology;
} classes[] = {
    {"Adenocarcinoma", "adenocarcinoma", "adenocarcinoma"},
    {"High-grade IN", "high-grade intraepithelial neoplasia", "high_grade_in"},
    {"Low-grade IN", "low-grade intraepithelial neoplasia", "low_grade_in"},
    {"Normal", "normal glands", "normal"},
    {"Polyp", "polyp", "polyp"},
    {"Serrated adenoma", "serrated adenoma", "serrated_adenoma"},
};

gboolean conv_ebhi_seg(conv_ctx *c, GError **error) {
  g_autofree char *root0 = conv_find_dir(c->o->input_dir, "EBHI-SEG|EBHI-Seg");
  const char *root = root0 ? root0 : c->o->input_dir;
  g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
  g_autoptr(GPtrArray) folders = g_ptr_array_new_with_free_func(g_free);
  for (const char *e = d ? g_dir_read_name(d) : NULL; e; e = g_dir_read_name(d)) {
    g_autofree char *p = g_build_filename(root, e, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR)) g_ptr_array_add(folders, g_strdup(e));
  }
  g_ptr_array_sort(folders, conv_cmp_str);
  for (guint f = 0; f < folders->len; f++) {
    const char *folder = g_ptr_array_index(folders, f);
    int k = -1;
    for (size_t j = 0; j < G_N_ELEMENTS(classes); j++)
      if (g_ascii_strcasecmp(folder, classes[j].folder) == 0) k = (int)j;
    g_autofree char *dir = g_build_filename(root, folder, NULL);
    if (k < 0) {
      conv_skip(c, dir, "not one of the six EBHI-Seg classes");
      continue;
    }
    g_autofree char *images = g_build_filename(dir, "image", NULL);
    g_autofree char *labels = g_build_filename(dir, "label", NULL);
    g_autoptr(GPtrArray) files = conv_list(images, ".png", FALSE);
    for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
      const char *img = g_ptr_array_index(files, i);
      g_autofree char *base = g_path_get_basename(img);
      g_autofree char *label = g_build_filename(labels, base, NULL);
      if (!g_file_test(label, G_FILE_TEST_IS_REGULAR)) {
        conv_skip(c, img, "no label %s/label/%s", folder, base);
        continue;
      }
      g_autofree char *stem = conv_stem(img);
      size_t cut = strcspn(stem, "-");
      g_autofree char *case_id = g_ascii_strup(stem, (gssize)cut);
      g_autofree char *group = g_strdup_printf("ebhi-%s", case_id);
      g_autofree char *named = g_strdup_printf("%s_%s", classes[k].morphology, stem);
      conv_item it = {"ebhi-seg", group, classes[k].target, classes[k].morphology, "colonic",
                      strstr(stem, "-400-") ? 40 : 0};
      if (!conv_pair(c, &it, img, label, named, TRUE, error)) return FALSE;
    }
  }
  return TRUE;
}
