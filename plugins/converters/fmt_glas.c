/* fmt_glas.c — GlaS (MICCAI 2015, Warwick-QU), as published:
 *
 *   Warwick_QU_Dataset/   (or "Warwick QU Dataset (Released 2016_07_08)/", or input_dir itself)
 *     train_<k>.bmp, train_<k>_anno.bmp, testA_<k>..., testB_<k>..., Grade.csv
 *
 * Annotations are instance-labelled BMPs (0 background, 1..N glands; the
 * palette index is the label); the binary mask is their union. 20x.
 * Grouping: when Grade.csv has a column whose header contains "patient",
 * rows are grouped by that id ("glas-patient-<id>"); otherwise each image is
 * its own group ("glas-<name>"), since the file names carry no patient. The
 * first "grade" column (benign/malignant) becomes the morphology. */
#include <string.h>

#include "convert.h"

typedef struct {
  char *patient, *grade;
} glas_grade;

static void grade_free(glas_grade *g) {
  g_free(g->patient);
  g_free(g->grade);
  g_free(g);
}

/* name -> glas_grade*, from Grade.csv when present. */
static GHashTable *read_grades(conv_ctx *c, const char *root) {
  GHashTable *t = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, (GDestroyNotify)grade_free);
  g_autofree char *path = g_build_filename(root, "Grade.csv", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) {
    conv_log(c, "glas: no Grade.csv in %s; every image is its own group", root);
    return t;
  }
  g_auto(GStrv) lines = g_strsplit_set(text, "\r\n", -1);
  int col_patient = -1, col_grade = -1;
  gboolean header = TRUE;
  for (char **l = lines; *l; l++) {
    if (!*g_strstrip(*l)) continue;
    g_auto(GStrv) f = g_strsplit(*l, ",", -1);
    int n = (int)g_strv_length(f);
    for (int i = 0; i < n; i++) g_strstrip(f[i]);
    if (header) {
      for (int i = 0; i < n; i++) {
        g_autofree char *lower = g_ascii_strdown(f[i], -1);
        if (col_patient < 0 && strstr(lower, "patient")) col_patient = i;
        if (col_grade < 0 && strstr(lower, "grade")) col_grade = i;
      }
      header = FALSE;
      continue;
    }
    if (n < 1 || !*f[0]) continue;
    glas_grade *g = g_new0(glas_grade, 1);
    if (col_patient >= 0 && col_patient < n && *f[col_patient]) g->patient = g_strdup(f[col_patient]);
    if (col_grade >= 0 && col_grade < n && *f[col_grade]) g->grade = g_ascii_strdown(f[col_grade], -1);
    g_hash_table_replace(t, g_strdup(f[0]), g);
  }
  if (col_patient < 0) conv_log(c, "glas: %s has no patient column; every image is its own group", path);
  return t;
}

gboolean conv_glas(conv_ctx *c, GError **error) {
  g_autofree char *found = conv_find_dir(c->o->input_dir, "Warwick_QU_Dataset|Warwick QU Dataset (Released 2016_07_08)");
  const char *root = found ? found : c->o->input_dir;
  g_autoptr(GHashTable) grades = read_grades(c, root);
  g_autoptr(GPtrArray) files = conv_list(root, ".bmp", FALSE);
  for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
    const char *img = g_ptr_array_index(files, i);
    if (g_str_has_suffix(img, "_anno.bmp")) continue;
    g_autofree char *stem = conv_stem(img);
    g_autofree char *dir = g_path_get_dirname(img);
    g_autofree char *anno_name = g_strdup_printf("%s_anno.bmp", stem);
    g_autofree char *anno = g_build_filename(dir, anno_name, NULL);
    if (!g_file_test(anno, G_FILE_TEST_IS_REGULAR)) {
      conv_skip(c, img, "no annotation %s", anno_name);
      continue;
    }
    const glas_grade *g = g_hash_table_lookup(grades, stem);
    g_autofree char *group = g && g->patient ? g_strdup_printf("glas-patient-%s", g->patient)
                                             : g_strdup_printf("glas-%s", stem);
    conv_item it = {"glas", group, "gland", g ? g->grade : NULL, "colonic", 20};
    if (!conv_pair(c, &it, img, anno, NULL, FALSE, error)) return FALSE;
  }
  return TRUE;
}
