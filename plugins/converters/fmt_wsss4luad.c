/* fmt_wsss4luad.c — WSSS4LUAD (ISBI 2022), as published:
 *
 *   [WSSS4LUAD/]1.training/<name>-[TE, TAS, NOR].png   image-level labels only: not converted
 *   [WSSS4LUAD/]2.validation/img/<name>.png  2.validation/mask/<name>.png  (background-mask/ ignored)
 *   [WSSS4LUAD/]3.testing/img/...            3.testing/mask/...
 *
 * (any folder with img/ and mask/ is read). Masks are palette PNGs whose
 * index is the class: 0 tumour (0,64,128), 1 stroma (64,128,0), 2 normal
 * (243,152,0), 3 background/excluded (255,255,255); an RGB mask is mapped
 * back through those colours. One row per tissue class present in the mask,
 * its binary mask = the pixels of that class. A `[a, b, c]` label list in
 * the name is checked against the mask (a disagreement is logged). Grouping:
 * `<slide>-<x>-<y>-[..]` names give "wsss4luad-<slide>"; other names are
 * their own group. Magnification unknown (0). */
#include <pathseg/error.h>
#include <stdio.h>
#include <string.h>

#include "convert.h"
#include "image_io.h"
#include "png_io.h"

static const uint8_t colours[4][3] = {{0, 64, 128}, {64, 128, 0}, {243, 152, 0}, {255, 255, 255}};
static const char *const targets[3] = {"tumour", "stroma", "normal tissue"};
static const char *const suffixes[3] = {"tumour", "stroma", "normal"};

/* (h, w) class indices 0..3, or NULL with the reason in *error. */
static uint8_t *load_classes(const char *path, int *w, int *h, GError **error) {
  uint8_t pal[256][3];
  int npal = 0;
  gboolean is_palette = FALSE;
  uint8_t *idx = conv_load_png_indices(path, w, h, pal, &npal, &is_palette, error);
  if (!is_palette) {
    if (error && *error) return NULL;
    g_autofree uint8_t *rgb = ps_png_read(path, 3, w, h, error);
    if (!rgb) return NULL;
    idx = g_malloc((size_t)*w * *h);
    for (size_t i = 0; i < (size_t)*w * *h; i++) {
      int k = 0;
      while (k < 4 && memcmp(rgb + 3 * i, colours[k], 3) != 0) k++;
      if (k == 4) {
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "mask colour (%d,%d,%d) at (%zu, %zu) is none of the four classes",
                    rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], i % (size_t)*w, i / (size_t)*w);
        g_free(idx);
        return NULL;
      }
      idx[i] = (uint8_t)k;
    }
    return idx;
  }
  for (size_t i = 0; i < (size_t)*w * *h; i++)
    if (idx[i] > 3) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "mask index %d at (%zu, %zu) is none of the four classes 0..3", idx[i],
                  i % (size_t)*w, i / (size_t)*w);
      g_free(idx);
      return NULL;
    }
  return idx;
}

static char *group_of(const char *stem, const char *split) {
  const char *bracket = strchr(stem, '[');
  int dashes = 0;
  for (const char *p = stem; *p && (!bracket || p < bracket); p++) dashes += *p == '-';
  if (bracket && dashes >= 3) return g_strdup_printf("wsss4luad-%.*s", (int)strcspn(stem, "-"), stem);
  return g_strdup_printf("wsss4luad-%s-%s", split, stem);
}

static gboolean convert_split(conv_ctx *c, const char *dir, const char *split, GError **error) {
  g_autofree char *imgs = g_build_filename(dir, "img", NULL);
  g_autofree char *masks = g_build_filename(dir, "mask", NULL);
  g_autoptr(GPtrArray) files = conv_list(imgs, ".png", FALSE);
  for (guint i = 0; i < files->len && !conv_cancelled(c); i++) {
    const char *img = g_ptr_array_index(files, i);
    g_autofree char *base = g_path_get_basename(img);
    g_autofree char *mask_path = g_build_filename(masks, base, NULL);
    if (!g_file_test(mask_path, G_FILE_TEST_IS_REGULAR)) {
      conv_skip(c, img, "no mask mask/%s", base);
      continue;
    }
    GError *local = NULL;
    int w, h, mw, mh;
    g_autofree uint8_t *rgb = ps_png_read(img, 3, &w, &h, &local);
    if (!rgb) {
      conv_skip_error(c, img, &local);
      continue;
    }
    g_autofree uint8_t *cls = load_classes(mask_path, &mw, &mh, &local);
    if (!cls) {
      conv_skip(c, img, "mask %s: %s", conv_rel(c, mask_path), local ? local->message : "?");
      g_clear_error(&local);
      continue;
    }
    if (mw != w || mh != h) {
      conv_skip(c, img, "mask %s is %dx%d, the image %dx%d", conv_rel(c, mask_path), mw, mh, w, h);
      continue;
    }
    size_t n = (size_t)w * h, count[4] = {0};
    for (size_t p = 0; p < n; p++) count[cls[p]]++;
    g_autofree char *stem = conv_stem(img);
    int label[3];
    const char *bracket = strchr(stem, '[');
    if (bracket && sscanf(bracket, "[%d, %d, %d]", &label[0], &label[1], &label[2]) == 3)
      for (int k = 0; k < 3; k++)
        if ((label[k] != 0) != (count[k] > 0))
          conv_log(c, "%s: the name says %s=%d but the mask has %zu %s pixels", conv_rel(c, img), suffixes[k],
                   label[k], count[k], suffixes[k]);
    if (!count[0] && !count[1] && !count[2]) {
      conv_skip(c, img, "the mask has no tumour, stroma or normal pixels");
      continue;
    }
    g_autofree char *group = group_of(stem, split);
    g_autofree char *out_stem = g_strdup_printf("%s_%s", split, stem);
    conv_item it = {"wsss4luad", group, NULL, NULL, "lung", 0};
    g_autofree char *rel = conv_write_image(c, &it, out_stem, rgb, w, h, error);
    if (!rel) return FALSE;
    g_autofree uint8_t *bin = g_malloc(n);
    for (int k = 0; k < 3; k++) {
      if (!count[k]) continue;
      for (size_t p = 0; p < n; p++) bin[p] = cls[p] == k;
      it.target = targets[k];
      if (!conv_add_row(c, &it, rel, suffixes[k], rgb, bin, w, h, error)) return FALSE;
    }
  }
  return TRUE;
}

gboolean conv_wsss4luad(conv_ctx *c, GError **error) {
  g_autofree char *root0 = conv_find_dir(c->o->input_dir, "WSSS4LUAD");
  const char *root = root0 ? root0 : c->o->input_dir;
  g_autoptr(GPtrArray) dirs = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GDir) d = g_dir_open(root, 0, NULL);
  for (const char *e = d ? g_dir_read_name(d) : NULL; e; e = g_dir_read_name(d)) g_ptr_array_add(dirs, g_strdup(e));
  g_ptr_array_sort(dirs, conv_cmp_str);
  int splits = 0;
  for (guint i = 0; i < dirs->len; i++) {
    const char *name = g_ptr_array_index(dirs, i);
    g_autofree char *dir = g_build_filename(root, name, NULL);
    g_autofree char *img = g_build_filename(dir, "img", NULL);
    g_autofree char *mask = g_build_filename(dir, "mask", NULL);
    if (g_file_test(img, G_FILE_TEST_IS_DIR) && g_file_test(mask, G_FILE_TEST_IS_DIR)) {
      splits++;
      const char *dot = strchr(name, '.');
      if (!convert_split(c, dir, dot ? dot + 1 : name, error)) return FALSE;
    } else if (g_file_test(dir, G_FILE_TEST_IS_DIR)) {
      g_autoptr(GPtrArray) pngs = conv_list(dir, ".png", FALSE);
      if (pngs->len)
        conv_log(c, "wsss4luad: %s: %u patches with image-level labels only (no pixel masks), not converted", name,
                 pngs->len);
    }
  }
  if (!splits) conv_log(c, "wsss4luad: no folder with img/ and mask/ under %s", root);
  return TRUE;
}
