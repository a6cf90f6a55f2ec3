/* synth_contact_sheet.c — draws docs/synthetic_contact_sheet.png: synthetic
 * tiles in a grid, one row per stain style and one column per morphology,
 * and in the last two columns one more tile next to its target mask drawn
 * over it. Also writes single tiles for close inspection.
 *
 *   synth_contact_sheet sheet OUT.png [SEED] [CELL]
 *   synth_contact_sheet tile OUT.png MORPHOLOGY STAIN MAG SIZE SEED [ARTEFACT_P] [TARGET]
 *   synth_contact_sheet random OUT.png [SEED] [K]   (K x K tiles of the default mix)
 *
 * Tiles are drawn at 2 * CELL and halved by 2x2 averaging, which shows the
 * texture the way a thumbnail of a scan does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "synth.h"

static gboolean save_png(const uint8_t *rgb, int w, int h, const char *path) {
  VipsImage *im = vips_image_new_from_memory(rgb, (size_t)w * h * 3, w, h, 3, VIPS_FORMAT_UCHAR);
  if (!im) return FALSE;
  /* An 8-bit palette (libimagequant) keeps the docs' sheet small. */
  int rc = vips_pngsave(im, path, "compression", 9, "palette", TRUE, "Q", 95, "effort", 10, NULL);
  g_object_unref(im);
  if (rc) fprintf(stderr, "%s: %s\n", path, vips_error_buffer());
  return rc == 0;
}

/* Halves a (2c, 2c) tile into cell (c, c) of the sheet at (ox, oy). */
static void put_half(uint8_t *sheet, int sw, int ox, int oy, const uint8_t *tile, int c) {
  int tw = 2 * c;
  for (int y = 0; y < c; y++)
    for (int x = 0; x < c; x++)
      for (int k = 0; k < 3; k++) {
        int s = tile[((2 * y) * tw + 2 * x) * 3 + k] + tile[((2 * y) * tw + 2 * x + 1) * 3 + k] +
                tile[((2 * y + 1) * tw + 2 * x) * 3 + k] +
                tile[((2 * y + 1) * tw + 2 * x + 1) * 3 + k];
        sheet[((size_t)(oy + y) * sw + ox + x) * 3 + k] = (uint8_t)((s + 2) / 4);
      }
}

/* The mask over the tile: tinted inside, a bright outline on its border. */
static void overlay(uint8_t *rgb, const uint8_t *mask, int w, int h) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      if (!mask[i]) continue;
      gboolean border = x == 0 || y == 0 || x == w - 1 || y == h - 1 || !mask[i - 1] ||
                        !mask[i + 1] || !mask[i - w] || !mask[i + w];
      static const uint8_t tint[3] = {40, 220, 90};
      for (int k = 0; k < 3; k++)
        rgb[i * 3 + k] =
            border ? (k == 1 ? 255 : 30) : (uint8_t)((rgb[i * 3 + k] * 55 + tint[k] * 45) / 100);
    }
}

/* Dark text at (x, y) of the sheet, rendered by libvips (pango). */
static void put_text(uint8_t *img, int sw, int sh, int x, int y, const char *text, gboolean box) {
  VipsImage *t = NULL;
  if (vips_text(&t, text, "font", "sans 8", "dpi", 96, NULL)) {
    vips_error_clear();
    return;
  }
  const uint8_t *ink = (const uint8_t *)VIPS_IMAGE_ADDR(t, 0, 0);
  int tw = t->Xsize, th = t->Ysize;
  if (vips_image_wio_input(t) == 0) ink = (const uint8_t *)VIPS_IMAGE_ADDR(t, 0, 0);
  /* On a tile: a pale box behind the text so that it reads. */
  for (int j = -1; box && j <= th && y + j < sh; j++)
    for (int i = -2; i < tw + 2 && x + i < sw; i++)
      for (int k = 0; k < 3 && y + j >= 0 && x + i >= 0; k++) {
        uint8_t *p = img + ((size_t)(y + j) * sw + x + i) * 3 + k;
        *p = (uint8_t)((*p + 3 * 255) / 4);
      }
  for (int j = 0; j < th && y + j < sh; j++)
    for (int i = 0; i < tw && x + i < sw; i++) {
      int a = ink[(size_t)j * tw + i];
      for (int k = 0; k < 3; k++) {
        uint8_t *p = img + ((size_t)(y + j) * sw + x + i) * 3 + k;
        *p = (uint8_t)((*p * (255 - a) + 40 * a) / 255);
      }
    }
  g_object_unref(t);
}

static int sheet(const char *out, uint64_t seed, int c) {
  const int rows = PS_SYNTH_STAIN_COUNT, cols = PS_SYNTH_MORPHOLOGY_COUNT + 2, gap = 2;
  const int lm = 92, tm = 18; /* margins for the row and column labels */
  const int sw = lm + cols * (c + gap) + gap, sh = tm + rows * (c + gap) + gap;
  uint8_t *img = g_malloc((size_t)sw * sh * 3);
  memset(img, 255, (size_t)sw * sh * 3);
  static const char *const heads[] = {"normal",       "tubular adeno", "cribriform*", "mucinous",
                                      "signet ring*", "solid",         "query tile",  "its mask"};
  for (int k = 0; k < cols; k++)
    put_text(img, sw, sh, lm + gap + k * (c + gap) + 4, 3, heads[k], FALSE);
  for (int r = 0; r < rows; r++) {
    g_autofree char *label = g_strdup_printf("%s%s", ps_synth_stain_name((ps_synth_stain)r),
                                             ps_synth_stain_held_out((ps_synth_stain)r) ? "*" : "");
    put_text(img, sw, sh, 4, tm + gap + r * (c + gap) + c / 2 - 6, label, FALSE);
  }
  int t = 2 * c;
  uint8_t *rgb = g_malloc((size_t)t * t * 3), *mask = g_malloc((size_t)t * t);
  g_autoptr(ps_synth_scratch) scratch = ps_synth_scratch_new();
  GError *err = NULL;
  for (int r = 0; r < rows; r++) {
    for (int k = 0; k < cols; k++) {
      ps_synth_spec spec = {t, t, 0, 0, 1u << r, 0, 0.0};
      int morph = k < PS_SYNTH_MORPHOLOGY_COUNT ? k : (r + 1) % PS_SYNTH_MORPHOLOGY_COUNT;
      spec.morphologies = 1u << morph;
      /* Magnifications cycle along the diagonal; the pair column shows a
       * frozen section every other row. */
      spec.magnifications = 1u << ((r + k) % 3 + 1);
      if (k >= PS_SYNTH_MORPHOLOGY_COUNT) {
        spec.magnifications = 1u << (r % 2 ? 2 : 1);
        spec.artefact_probability = r % 2 ? 1.0 : 0.0;
        spec.targets = 1u << (r % PS_SYNTH_TARGET_COUNT);
        spec.morphologies =
            ps_synth_target_morphologies((ps_synth_target)(r % PS_SYNTH_TARGET_COUNT)) &
            ~(1u << PS_SYNTH_M_NORMAL);
        if (r % PS_SYNTH_TARGET_COUNT == PS_SYNTH_T_STROMA) spec.morphologies = 0;
      }
      uint64_t s =
          ps_synth_tile_seed(seed, "sheet", r * 16 + (k >= PS_SYNTH_MORPHOLOGY_COUNT ? 15 : k));
      ps_synth_info info;
      if (!ps_synth_tile(&spec, s, scratch, rgb, mask, NULL, &info, &err)) {
        fprintf(stderr, "%s\n", err->message);
        return 1;
      }
      if (k == cols - 1) overlay(rgb, mask, t, t);
      put_half(img, sw, lm + gap + k * (c + gap), tm + gap + r * (c + gap), rgb, c);
      if (k == cols - 2) { /* what the pair shows, under the query tile */
        g_autofree char *cap = g_strdup_printf("%s, %dx%s", info.target_name, info.magnification,
                                               info.frozen ? ", frozen" : "");
        put_text(img, sw, sh, lm + gap + k * (c + gap) + 3, tm + gap + r * (c + gap) + c - 15, cap,
                 TRUE);
      }
      printf("row %d col %d: %s %s %dx %s%s area %.3f components %d\n", r, k, info.stain_name,
             info.morphology_name, info.magnification, info.target_name,
             info.frozen ? " frozen" : "", info.area_fraction, info.components);
    }
  }
  gboolean ok = save_png(img, sw, sh, out);
  g_free(img);
  g_free(rgb);
  g_free(mask);
  return ok ? 0 : 1;
}

/* k x k tiles as the dataset's train split draws them (everything mixed). */
static int random_grid(const char *out, uint64_t seed, int k, int c) {
  const int gap = 2, sw = k * (c + gap) + gap;
  uint8_t *img = g_malloc((size_t)sw * sw * 3);
  memset(img, 255, (size_t)sw * sw * 3);
  int t = 2 * c;
  uint8_t *rgb = g_malloc((size_t)t * t * 3);
  g_autoptr(ps_synth_scratch) scratch = ps_synth_scratch_new();
  ps_synth_spec spec = {t, t, 0, 0, 0, 0, 0.2};
  GError *err = NULL;
  for (int i = 0; i < k * k; i++) {
    if (!ps_synth_tile(&spec, ps_synth_tile_seed(seed, "train", i), scratch, rgb, NULL, NULL, NULL,
                       &err)) {
      fprintf(stderr, "%s\n", err->message);
      return 1;
    }
    put_half(img, sw, gap + (i % k) * (c + gap), gap + (i / k) * (c + gap), rgb, c);
  }
  gboolean ok = save_png(img, sw, sw, out);
  g_free(img);
  g_free(rgb);
  return ok ? 0 : 1;
}

static int tile(int argc, char **argv) {
  if (argc < 8) return 2;
  ps_synth_spec spec = {0};
  int m = ps_synth_morphology_from_name(argv[3]), st = ps_synth_stain_from_name(argv[4]);
  int mag = ps_synth_magnification_index(atoi(argv[5]));
  if (m < 0 || st < 0 || mag < 0) {
    fprintf(stderr, "unknown morphology, stain or magnification\n");
    return 2;
  }
  spec.width = spec.height = atoi(argv[6]);
  spec.morphologies = 1u << m;
  spec.stains = 1u << st;
  spec.magnifications = 1u << mag;
  spec.artefact_probability = argc > 8 ? atof(argv[8]) : 0.0;
  if (argc > 9) spec.targets = 1u << ps_synth_target_from_name(argv[9]);
  size_t n = (size_t)spec.width * spec.height;
  uint8_t *rgb = g_malloc(n * 3 * 2), *mask = g_malloc(n), *labels = g_malloc(n);
  ps_synth_info info;
  GError *err = NULL;
  if (!ps_synth_tile(&spec, strtoull(argv[7], NULL, 10), NULL, rgb, mask, labels, &info, &err)) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  /* Mean colour of each label present, for tuning the stain styles. */
  double sum[PS_SYNTH_LABEL_COUNT][3] = {{0}};
  size_t cnt[PS_SYNTH_LABEL_COUNT] = {0};
  for (size_t i = 0; i < n; i++) {
    cnt[labels[i]]++;
    for (int k = 0; k < 3; k++) sum[labels[i]][k] += rgb[i * 3 + k];
  }
  for (int l = 0; l < PS_SYNTH_LABEL_COUNT; l++)
    if (cnt[l])
      printf("  %-20s %5.1f%%  rgb %3.0f %3.0f %3.0f\n", ps_synth_label_name((ps_synth_label)l),
             100.0 * cnt[l] / n, sum[l][0] / cnt[l], sum[l][1] / cnt[l], sum[l][2] / cnt[l]);
  g_free(labels);
  /* The tile and, to its right, the mask over it. */
  int w = spec.width, h = spec.height;
  uint8_t *pair = g_malloc(n * 3 * 2);
  memcpy(rgb + n * 3, rgb, n * 3);
  overlay(rgb + n * 3, mask, w, h);
  for (int y = 0; y < h; y++) {
    memcpy(pair + (size_t)y * 2 * w * 3, rgb + (size_t)y * w * 3, (size_t)w * 3);
    memcpy(pair + ((size_t)y * 2 * w + w) * 3, rgb + n * 3 + (size_t)y * w * 3, (size_t)w * 3);
  }
  printf("%s %s %dx target %s area %.3f components %d centroid %.2f,%.2f glands %d nuclei %d%s\n",
         info.stain_name, info.morphology_name, info.magnification, info.target_name,
         info.area_fraction, info.components, info.centroid_x, info.centroid_y, info.glands,
         info.nuclei, info.frozen ? " frozen" : "");
  gboolean ok = save_png(pair, 2 * w, h, argv[2]);
  g_free(rgb);
  g_free(mask);
  g_free(pair);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (VIPS_INIT(argv[0])) return 1;
  if (argc >= 3 && strcmp(argv[1], "sheet") == 0)
    return sheet(argv[2], argc > 3 ? strtoull(argv[3], NULL, 10) : 1,
                 argc > 4 ? atoi(argv[4]) : 128);
  if (argc >= 3 && strcmp(argv[1], "random") == 0)
    return random_grid(argv[2], argc > 3 ? strtoull(argv[3], NULL, 10) : 1,
                       argc > 4 ? atoi(argv[4]) : 6, 128);
  if (argc >= 3 && strcmp(argv[1], "tile") == 0) {
    int rc = tile(argc, argv);
    if (rc != 2) return rc;
  }
  fprintf(stderr,
          "usage: %s sheet OUT.png [SEED] [CELL]\n"
          "       %s tile OUT.png MORPHOLOGY STAIN MAG SIZE SEED [ARTEFACT_P] [TARGET]\n"
          "       %s random OUT.png [SEED] [K]\n",
          argv[0], argv[0], argv[0]);
  return 2;
}
