/* fmt_monuseg.c — MoNuSeg 2018 (Kumar et al.), either published layout:
 *
 *   MoNuSegTestData/<TCGA id>.tif + <TCGA id>.xml                    (test set: flat)
 *   MoNuSeg 2018 Training Data/Tissue Images/<id>.tif + Annotations/<id>.xml   (training set)
 *
 * (image files are found anywhere under input_dir). Each ImageScope <Region>
 * is one nucleus outline in image pixels; the regions are drawn as instances
 * (imagescope_xml.h) and the binary mask is their union. An XML with a
 * region wholly outside the image is taken to belong to another image and
 * the pair is skipped. 40x. Grouping: the TCGA patient barcode (the first
 * three fields, "TCGA-HC-7209"); the organ comes from the tissue source site
 * code where it is one of the sites verified in data/real/SOURCES.md. */
#include <string.h>

#include "convert.h"
#include "image_io.h"
#include "imagescope_xml.h"

static const struct {
  const char *site, *organ;
} sites[] = {
    {"HT", "brain"}, {"HC", "prostate"}, {"AO", "breast"}, {"ZF", "bladder"}, {"69", "lung"}, {"A6", "colonic"},
};

static char *find_xml(const char *img, const char *stem) {
  g_autofree char *dir = g_path_get_dirname(img);
  g_autofree char *name = g_strdup_printf("%s.xml", stem);
  char *p = g_build_filename(dir, name, NULL);
  if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) return p;
  g_free(p);
  g_autofree char *parent = g_path_get_dirname(dir);
  p = g_build_filename(parent, "Annotations", name, NULL);
  if (g_file_test(p, G_FILE_TEST_IS_REGULAR)) return p;
  g_free(p);
  return NULL;
}

gboolean conv_monuseg(conv_ctx *c, GError **error) {
  g_autoptr(GPtrArray) files = conv_list(c->o->input_dir, ".tif|.tiff|.png", TRUE);
  for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
    const char *img = g_ptr_array_index(files, i);
    g_autofree char *stem = conv_stem(img);
    g_autofree char *xml = find_xml(img, stem);
    if (!xml) {
      conv_skip(c, img, "no annotation %s.xml next to it or in ../Annotations/", stem);
      continue;
    }
    GError *local = NULL;
    int w, h;
    g_autofree uint8_t *rgb = conv_load_rgb(img, &w, &h, &local);
    if (!rgb) {
      conv_skip_error(c, img, &local);
      continue;
    }
    g_autoptr(ps_imagescope) ann = ps_imagescope_read(xml, &local);
    if (!ann) {
      conv_skip_error(c, img, &local);
      continue;
    }
    size_t n = (size_t)w * h;
    g_autofree int32_t *labels = g_new(int32_t, n);
    int outside = 0, drawn = ps_imagescope_rasterise(ann, labels, w, h, &outside);
    if (drawn == 0) {
      conv_skip(c, img, "%s has no region with 3 or more vertices", conv_rel(c, xml));
      continue;
    }
    if (outside > 0) {
      conv_skip(c, img, "%d of the %d regions of %s lie wholly outside the %dx%d image", outside, drawn,
                conv_rel(c, xml), w, h);
      continue;
    }
    g_autofree uint8_t *mask = g_malloc(n);
    for (size_t p = 0; p < n; p++) mask[p] = labels[p] != 0;
    g_auto(GStrv) f = g_strsplit(stem, "-", 4);
    g_autofree char *group = g_strv_length(f) >= 3 ? g_strdup_printf("monuseg-%s-%s-%s", f[0], f[1], f[2])
                                                   : g_strdup_printf("monuseg-%s", stem);
    const char *organ = NULL;
    for (size_t s = 0; s < G_N_ELEMENTS(sites); s++)
      if (g_strv_length(f) >= 2 && strcmp(f[1], sites[s].site) == 0) organ = sites[s].organ;
    conv_item it = {"monuseg", group, "nuclei", NULL, organ, 40};
    g_autofree char *rel = conv_write_image(c, &it, stem, rgb, w, h, error);
    if (!rel || !conv_add_row(c, &it, rel, NULL, rgb, mask, w, h, error)) return FALSE;
  }
  return TRUE;
}
