/* fmt_camelyon.c — Camelyon16/17 tiles already cut from the whole-slide
 * TIFFs (the slide preprocessing stage cuts slides; this converter only
 * rasterises the lesion annotations onto its tiles):
 *
 *   input_dir/tiles/<slide>/<...>_x<X>_y<Y>[_d<DS>].png   X, Y: level-0 origin of the tile,
 *                                                         DS: level-0 px per tile px (else `downsample`)
 *   input_dir/.../lesion_annotations/<slide>.xml          ASAP XML (asap_xml.h), as published
 *   Camelyon16: [testing/]reference.csv   "test_001,Tumor,..."   (optional)
 *   Camelyon17: [training/]stage_labels.csv "patient_004_node_4.tif,negative" (optional)
 *
 * A slide without XML is negative (all-background masks) when it is known to
 * be: Camelyon16 `normal_*` or a reference.csv "Normal" row, Camelyon17 a
 * stage "negative" row. Otherwise (a tumour slide without its XML, e.g. the
 * unannotated Camelyon17 slides) its tiles are skipped. Tiles without tumour
 * are kept only with `negatives`. Level 0 is 40x (0.243 um/px), so a tile's
 * magnification is 40 / DS. Grouping: Camelyon16 by slide, Camelyon17 by
 * patient ("patient_XXX", the five nodes of a patient stay together). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "asap_xml.h"
#include "convert.h"
#include "image_io.h"

/* First-column name (without .tif) -> lower-case label, from a CSV. */
static void read_labels(GHashTable *t, const char *path, int column) {
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return;
  g_auto(GStrv) lines = g_strsplit_set(text, "\r\n", -1);
  for (char **l = lines; *l; l++) {
    g_auto(GStrv) f = g_strsplit(*l, ",", -1);
    if (g_strv_length(f) <= (guint)column) continue;
    char *name = g_strstrip(f[0]);
    if (g_str_has_suffix(name, ".tif")) name[strlen(name) - 4] = '\0';
    g_hash_table_replace(t, g_strdup(name), g_ascii_strdown(g_strstrip(f[column]), -1));
  }
}

typedef enum { SLIDE_ANNOTATED, SLIDE_NEGATIVE, SLIDE_UNKNOWN } slide_kind;

gboolean conv_camelyon(conv_ctx *c, gboolean c17, GError **error) {
  const char *source = c17 ? "camelyon17" : "camelyon16";
  g_autofree char *tiles = conv_find_dir(c->o->input_dir, "tiles");
  if (!tiles) {
    conv_log(c, "%s: no tiles/ folder under %s (cut the slides first)", source, c->o->input_dir);
    return TRUE;
  }
  /* slide name -> XML path, wherever the XMLs are. */
  g_autoptr(GHashTable) xmls = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GPtrArray) all_xml = conv_list(c->o->input_dir, ".xml", TRUE);
  for (guint i = 0; i < all_xml->len; i++)
    g_hash_table_replace(xmls, conv_stem(g_ptr_array_index(all_xml, i)), g_strdup(g_ptr_array_index(all_xml, i)));
  g_autoptr(GHashTable) labels = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  const char *csv[] = {c17 ? "stage_labels.csv" : "reference.csv",
                       c17 ? "training/stage_labels.csv" : "testing/reference.csv"};
  for (size_t k = 0; k < G_N_ELEMENTS(csv); k++) {
    g_autofree char *p = g_build_filename(c->o->input_dir, csv[k], NULL);
    read_labels(labels, p, 1);
  }
  g_autoptr(GRegex) re = g_regex_new("_x(-?[0-9]+(?:\\.[0-9]+)?)_y(-?[0-9]+(?:\\.[0-9]+)?)(?:_d([0-9]+(?:\\.[0-9]+)?))?",
                                     0, 0, NULL);
  g_autoptr(GPtrArray) slides = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GDir) d = g_dir_open(tiles, 0, NULL);
  for (const char *e = d ? g_dir_read_name(d) : NULL; e; e = g_dir_read_name(d)) g_ptr_array_add(slides, g_strdup(e));
  g_ptr_array_sort(slides, conv_cmp_str);
  for (guint s = 0; s < slides->len && !conv_cancelled(c); s++) {
    const char *slide = g_ptr_array_index(slides, s);
    g_autofree char *dir = g_build_filename(tiles, slide, NULL);
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) continue;
    g_autoptr(GPtrArray) files = conv_list(dir, ".png|.jpg|.jpeg|.tif|.tiff", TRUE);
    const char *xml = g_hash_table_lookup(xmls, slide);
    const char *label = g_hash_table_lookup(labels, slide);
    g_autoptr(ps_asap_annotations) ann = NULL;
    slide_kind kind = SLIDE_UNKNOWN;
    if (xml) {
      GError *local = NULL;
      ann = ps_asap_read(xml, &local);
      if (!ann) {
        for (guint i = 0; i < files->len; i++) conv_skip(c, g_ptr_array_index(files, i), "%s", local->message);
        g_clear_error(&local);
        continue;
      }
      kind = SLIDE_ANNOTATED;
    } else if ((!c17 && g_str_has_prefix(slide, "normal")) || g_strcmp0(label, "normal") == 0 ||
               g_strcmp0(label, "negative") == 0) {
      kind = SLIDE_NEGATIVE;
    }
    if (kind == SLIDE_UNKNOWN) {
      for (guint i = 0; i < files->len; i++)
        conv_skip(c, g_ptr_array_index(files, i), "slide %s has no lesion annotation XML and is not known to be %s",
                  slide, c17 ? "negative (stage_labels.csv)" : "normal");
      continue;
    }
    g_autofree char *group = NULL;
    if (c17 && strstr(slide, "_node"))
      group = g_strdup_printf("%s-%.*s", source, (int)(strstr(slide, "_node") - slide), slide);
    else
      group = g_strdup_printf("%s-%s", source, slide);
    for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
      const char *path = g_ptr_array_index(files, i);
      g_autofree char *stem = conv_stem(path);
      g_autoptr(GMatchInfo) m = NULL;
      if (!g_regex_match(re, stem, 0, &m)) {
        conv_skip(c, path, "the name has no _x<X>_y<Y> level-0 origin");
        continue;
      }
      g_autofree char *xs = g_match_info_fetch(m, 1), *ys = g_match_info_fetch(m, 2), *ds_s = g_match_info_fetch(m, 3);
      double x0 = g_ascii_strtod(xs, NULL), y0 = g_ascii_strtod(ys, NULL);
      double ds = ds_s && *ds_s ? g_ascii_strtod(ds_s, NULL) : c->o->downsample;
      if (!(ds > 0)) {
        conv_skip(c, path, "downsample %g is not positive", ds);
        continue;
      }
      GError *local = NULL;
      int w, h;
      g_autofree uint8_t *rgb = conv_load_rgb(path, &w, &h, &local);
      if (!rgb) {
        conv_skip_error(c, path, &local);
        continue;
      }
      g_autofree uint8_t *mask = g_malloc0((size_t)w * h);
      int64_t on = ann ? ps_asap_rasterise(ann, mask, w, h, x0, y0, ds) : 0;
      if (on == 0 && !c->o->negatives) continue;
      g_autofree char *out_stem = g_str_has_prefix(stem, slide) ? g_strdup(stem) : g_strdup_printf("%s_%s", slide, stem);
      int mag = (int)lround(40.0 / ds);
      conv_item it = {source, group, "tumour", NULL, "lymph node", fabs(40.0 / ds - mag) < 0.05 ? mag : 0};
      g_autofree char *rel = conv_write_image(c, &it, out_stem, rgb, w, h, error);
      if (!rel || !conv_add_row(c, &it, rel, NULL, rgb, mask, w, h, error)) return FALSE;
    }
  }
  return TRUE;
}
