/* test_conv_public.c — the six public datasets of the paper, each as a tiny
 * tree made here in its exact published layout (file names, mask encodings),
 * converted and checked: row counts, masks equal to the binary masks the
 * test drew, patient grouping (no patient in two splits), targets,
 * magnifications, queries and reasoning chains with <SEG>. */
#include <glib/gstdio.h>
#include <string.h>

#include "asap_xml.h"
#include "conv_test_util.h"
#include "png_io.h"
#include "ps_test.h"

static const uint64_t SEED = 7;

/* GlaS: BMP images, instance-labelled 8-bit BMP annotations, Grade.csv. */
static void test_glas(const char *tmp) {
  g_autofree char *root = g_build_filename(tmp, "glas", "Warwick_QU_Dataset", NULL);
  g_autofree char *out = tu_path(tmp, "glas-out");
  tu_mkdirs(root);
  const char *names[] = {"train_1", "train_2", "train_3", "testA_1", "testA_2", "testB_1"};
  const int patients[] = {1, 1, 2, 3, 2, 4};
  const int W = 37, H = 29; /* odd widths exercise BMP row padding */
  uint8_t *expected[6];
  GString *csv = g_string_new("name, Patient ID, grade (GlaS), grade (Sirinukunwattana et al. 2015)\n");
  for (int i = 0; i < 6; i++) {
    g_autofree uint8_t *rgb = tu_rgb(W, H, 10 + i);
    uint8_t *lab = g_malloc0((size_t)W * H);
    tu_rect(lab, W, 2 + i, 3, 12 + i, 14, 1);
    tu_rect(lab, W, 20, 10 + i, 33, 25, (uint8_t)(2 + i));  /* instance ids 2..7 */
    expected[i] = lab;
    g_autofree char *img = g_strdup_printf("%s/%s.bmp", root, names[i]);
    g_autofree char *anno = g_strdup_printf("%s/%s_anno.bmp", root, names[i]);
    tu_write_bmp24(img, rgb, W, H);
    tu_write_bmp8(anno, lab, W, H);
    g_string_append_printf(csv, "%s,%d,%s,adenomatous\n", names[i], patients[i], i % 2 ? "benign" : "malignant");
  }
  g_autofree char *csv_path = tu_path(root, "Grade.csv");
  tu_write_text(csv_path, csv->str);
  g_string_free(csv, TRUE);
  GError *error = NULL;
  conv_stats st;
  g_autofree char *parent = tu_path(tmp, "glas");
  PS_CHECK_OK(tu_convert("glas", parent, out, SEED, &st, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 6 && st.skipped == 0, "%u rows, %d skipped", rows->len, st.skipped);
  tu_check_rows(rows, out, "glas", SEED);
  for (int i = 0; i < 6; i++) {
    g_autofree char *needle = g_strdup_printf("/%s.png", names[i]);
    const ps_manifest_row *r = tu_find(rows, needle, FALSE);
    PS_CHECK_MSG(tu_mask_diff(out, r, expected[i], W, H) == 0, "glas %s mask", names[i]);
    g_autofree char *group = g_strdup_printf("glas-patient-%d", patients[i]);
    PS_CHECK(r && strcmp(r->group, group) == 0 && strcmp(r->target, "gland") == 0 && r->magnification == 20);
    PS_CHECK(r && strcmp(r->morphology, i % 2 ? "benign" : "malignant") == 0);
    /* The image is the BMP's pixels, not resized. */
    g_autofree uint8_t *rgb = tu_rgb(W, H, 10 + i);
    int w = 0, h = 0;
    g_autofree char *ip = r ? tu_path(out, r->image) : NULL;
    g_autofree uint8_t *back = ip ? ps_png_read(ip, 3, &w, &h, &error) : NULL;
    g_clear_error(&error);
    PS_CHECK(back && w == W && h == H && memcmp(back, rgb, (size_t)W * H * 3) == 0);
    g_free(expected[i]);
  }
}

/* CRAG: PNG images, PNG instance maps (8- and 16-bit) under Annotation/. */
static void test_crag(const char *tmp) {
  g_autofree char *root = tu_path(tmp, "crag");
  g_autofree char *out = tu_path(tmp, "crag-out");
  const int W = 48, H = 40;
  const char *split[] = {"train", "train", "test"};
  const char *names[] = {"train_1", "train_2", "test_1"};
  uint8_t *expected[3];
  for (int i = 0; i < 3; i++) {
    g_autofree char *imgs = g_build_filename(root, split[i], "Images", NULL);
    g_autofree char *annos = g_build_filename(root, split[i], "Annotation", NULL);
    g_autofree char *overlay = g_build_filename(root, split[i], "Overlay", NULL);
    tu_mkdirs(imgs);
    tu_mkdirs(annos);
    tu_mkdirs(overlay);
    g_autofree uint8_t *rgb = tu_rgb(W, H, 30 + i);
    uint8_t *lab = g_malloc0((size_t)W * H);
    tu_rect(lab, W, 5, 5, 20, 18, 1);
    tu_rect(lab, W, 25 + i, 20, 45, 38, 2);
    tu_rect(lab, W, 8, 25, 14, 35, (uint8_t)(200 + i));
    expected[i] = lab;
    g_autofree char *name = g_strdup_printf("%s.png", names[i]);
    g_autofree char *ip = tu_path(imgs, name), *ap = tu_path(annos, name), *op = tu_path(overlay, name);
    tu_write_png(ip, rgb, W, H, 3);
    if (i < 2) {
      tu_write_png(ap, lab, W, H, 1);
    } else { /* a 16-bit instance map, ids beyond 255 */
      g_autofree uint16_t *l16 = g_new(uint16_t, (size_t)W * H);
      for (int p = 0; p < W * H; p++) l16[p] = lab[p] ? (uint16_t)(lab[p] == 2 ? 256 : 300 + lab[p]) : 0;
      tu_write_png16(ap, l16, W, H);
    }
    tu_write_png(op, rgb, W, H, 3);
  }
  GError *error = NULL;
  PS_CHECK_OK(tu_convert("crag", root, out, SEED, NULL, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 3, "%u rows", rows->len);
  tu_check_rows(rows, out, "crag", SEED);
  for (int i = 0; i < 3; i++) {
    g_autofree char *needle = g_strdup_printf("/%s.png", names[i]);
    const ps_manifest_row *r = tu_find(rows, needle, FALSE);
    PS_CHECK_MSG(tu_mask_diff(out, r, expected[i], W, H) == 0, "crag %s mask", names[i]);
    PS_CHECK(r && r->magnification == 20 && strcmp(r->target, "gland") == 0);
    g_free(expected[i]);
  }
}

/* DigestPath: JPEG images and 0/255 JPEG masks (threshold 128), negatives without masks. */
static void test_digestpath(const char *tmp) {
  g_autofree char *root = g_build_filename(tmp, "dp", "Colonoscopy_tissue_segment_dataset", NULL);
  g_autofree char *pos = tu_path(root, "tissue-train-pos-v1"), *neg = tu_path(root, "tissue-train-neg");
  g_autofree char *out = tu_path(tmp, "dp-out");
  tu_mkdirs(pos);
  tu_mkdirs(neg);
  const int W = 64, H = 48;
  const char *names[] = {"D20180001_2019-05-07 23_56_22-lv1-3400-1480-64-48",
                         "D20180001_2019-05-07 23_56_22-lv1-9000-2000-64-48",
                         "D20180002_2019-05-08 10_01_02-lv1-100-200-64-48"};
  uint8_t *truth[3];
  for (int i = 0; i < 3; i++) {
    g_autofree uint8_t *rgb = tu_rgb(W, H, 50 + i);
    uint8_t *m = g_malloc0((size_t)W * H);
    tu_rect(m, W, 8, 8, 40 + 8 * i, 32, 255);
    truth[i] = m;
    g_autofree char *ip = g_strdup_printf("%s/%s.jpg", pos, names[i]);
    g_autofree char *mp = g_strdup_printf("%s/%s_mask.jpg", pos, names[i]);
    tu_write_jpeg(ip, rgb, W, H, 3);
    tu_write_jpeg(mp, m, W, H, 1);
  }
  g_autofree uint8_t *nrgb = tu_rgb(W, H, 99);
  g_autofree char *np = g_strdup_printf("%s/D20180003_2019-05-09 08_00_00-lv1-0-0-64-48.jpg", neg);
  tu_write_jpeg(np, nrgb, W, H, 3);
  GError *error = NULL;
  g_autofree char *parent = tu_path(tmp, "dp");
  PS_CHECK_OK(tu_convert("digestpath", parent, out, SEED, NULL, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 4, "%u rows", rows->len);
  tu_check_rows(rows, out, "digestpath", SEED);
  for (int i = 0; i < 3; i++) {
    /* Expected: the JPEG mask as decoded, thresholded at 128; and close to what was drawn. */
    g_autofree char *mp = g_strdup_printf("%s/%s_mask.jpg", pos, names[i]);
    int w, h;
    g_autofree uint8_t *dec = ps_png_read(mp, 1, &w, &h, &error);
    g_clear_error(&error);
    g_autofree uint8_t *exp = g_malloc((size_t)W * H);
    for (int p = 0; dec && p < W * H; p++) exp[p] = dec[p] >= 128;
    const ps_manifest_row *r = tu_find(rows, i < 2 ? (i ? "9000-2000" : "3400-1480") : "100-200", FALSE);
    PS_CHECK_MSG(dec && tu_mask_diff(out, r, exp, W, H) == 0, "digestpath %d mask", i);
    int64_t drift = tu_mask_diff(out, r, truth[i], W, H);
    PS_CHECK_MSG(drift >= 0 && drift <= W * H / 100, "digestpath %d: %" G_GINT64_FORMAT " px off the drawing", i, drift);
    PS_CHECK(r && strcmp(r->target, "tumour") == 0 && strcmp(r->group, i < 2 ? "digestpath-D20180001" : "digestpath-D20180002") == 0);
    g_free(truth[i]);
  }
  const ps_manifest_row *a = tu_find(rows, "3400-1480", FALSE), *b = tu_find(rows, "9000-2000", FALSE);
  PS_CHECK(a && b && strcmp(a->split, b->split) == 0);
  const ps_manifest_row *n = tu_find(rows, "D20180003", FALSE);
  g_autofree uint8_t *zeros = g_malloc0((size_t)W * H);
  PS_CHECK(n && tu_mask_diff(out, n, zeros, W, H) == 0 && strstr(n->reasoning, "mask is empty"));
}

/* WSSS4LUAD: palette masks (index 0 tumour, 1 stroma, 2 normal, 3 background). */
static void test_wsss4luad(const char *tmp) {
  g_autofree char *root = tu_path(tmp, "wsss");
  g_autofree char *out = tu_path(tmp, "wsss-out");
  static const uint8_t pal[4][3] = {{0, 64, 128}, {64, 128, 0}, {243, 152, 0}, {255, 255, 255}};
  const char *names[] = {"436219-7159-48057-[1, 1, 0]", "436219-100-200-[0, 0, 1]", "500001-1-2-[1, 0, 1]"};
  const int W = 30, H = 26;
  uint8_t *idx[3];
  g_autofree char *vimg = g_build_filename(root, "2.validation", "img", NULL);
  g_autofree char *vmask = g_build_filename(root, "2.validation", "mask", NULL);
  g_autofree char *vbg = g_build_filename(root, "2.validation", "background-mask", NULL);
  g_autofree char *timg = g_build_filename(root, "3.testing", "img", NULL);
  g_autofree char *tmask = g_build_filename(root, "3.testing", "mask", NULL);
  g_autofree char *train = g_build_filename(root, "1.training", NULL);
  tu_mkdirs(vimg), tu_mkdirs(vmask), tu_mkdirs(vbg), tu_mkdirs(timg), tu_mkdirs(tmask), tu_mkdirs(train);
  for (int i = 0; i < 3; i++) {
    idx[i] = g_malloc((size_t)W * H);
    memset(idx[i], 3, (size_t)W * H);
    if (i == 0) tu_rect(idx[i], W, 0, 0, 15, 26, 0), tu_rect(idx[i], W, 15, 0, 25, 20, 1);
    if (i == 1) tu_rect(idx[i], W, 4, 4, 28, 22, 2);
    if (i == 2) tu_rect(idx[i], W, 0, 0, 10, 10, 0), tu_rect(idx[i], W, 12, 12, 30, 26, 2);
    g_autofree uint8_t *rgb = tu_rgb(W, H, 70 + i);
    g_autofree char *name = g_strdup_printf("%s.png", names[i]);
    const char *idir = i < 2 ? vimg : timg, *mdir = i < 2 ? vmask : tmask;
    g_autofree char *ip = tu_path(idir, name), *mp = tu_path(mdir, name);
    tu_write_png(ip, rgb, W, H, 3);
    if (i < 2) {
      tu_write_palette_png(mp, idx[i], W, H, pal, 4);
    } else { /* an RGB rendering of the same classes is mapped back through the colours */
      g_autofree uint8_t *c = g_malloc((size_t)W * H * 3);
      for (int p = 0; p < W * H; p++) memcpy(c + 3 * p, pal[idx[i][p]], 3);
      tu_write_png(mp, c, W, H, 3);
    }
  }
  g_autofree uint8_t *trgb = tu_rgb(W, H, 77);
  g_autofree char *tp = tu_path(train, "436219-1-1-[1, 0, 0].png");
  tu_write_png(tp, trgb, W, H, 3);
  GError *error = NULL;
  g_autofree char *log = NULL;
  PS_CHECK_OK(tu_convert("wsss4luad", root, out, SEED, NULL, &log, &error), error);
  PS_CHECK(log && strstr(log, "image-level labels only"));
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 5, "%u rows", rows->len); /* 2 + 1 + 2 present classes */
  tu_check_rows(rows, out, "wsss4luad", SEED);
  const char *suffix[3] = {"_tumour.png", "_stroma.png", "_normal.png"};
  const char *target[3] = {"tumour", "stroma", "normal tissue"};
  int checked = 0;
  for (int i = 0; i < 3; i++)
    for (int k = 0; k < 3; k++) {
      g_autofree char *stem = g_strdup_printf("%s", names[i]);
      gboolean present = FALSE;
      for (int p = 0; p < W * H; p++) present |= idx[i][p] == k;
      /* Find the row by its mask: masks/wsss4luad/<split>_<safe stem>_<class>.png */
      g_autofree char *safe = g_strdup(stem);
      for (char *c = safe; *c; c++)
        if (!g_ascii_isalnum(*c) && *c != '-' && *c != '_' && *c != '.') *c = '_';
      g_autofree char *needle = g_strdup_printf("%s%s", safe, suffix[k]);
      const ps_manifest_row *r = tu_find(rows, needle, TRUE);
      PS_CHECK_MSG((r != NULL) == present, "%s class %d present %d", names[i], k, present);
      if (!r) continue;
      g_autofree uint8_t *exp = g_malloc((size_t)W * H);
      for (int p = 0; p < W * H; p++) exp[p] = idx[i][p] == k;
      PS_CHECK_MSG(tu_mask_diff(out, r, exp, W, H) == 0, "%s class %d", names[i], k);
      PS_CHECK(strcmp(r->target, target[k]) == 0 && strstr(r->query, i == 0 && k == 0 ? "tumour" : ""));
      checked++;
    }
  PS_CHECK(checked == 5);
  const ps_manifest_row *a = tu_find(rows, "7159-48057", FALSE), *b = tu_find(rows, "100-200", FALSE);
  PS_CHECK(a && b && strcmp(a->group, "wsss4luad-436219") == 0 && strcmp(b->group, a->group) == 0 &&
           strcmp(a->split, b->split) == 0);
  for (int i = 0; i < 3; i++) g_free(idx[i]);
}

/* An ASAP XML with the groups of Camelyon16/17. */
static void write_asap(const char *path, const double (*polys)[8], const char *const *groups, int n) {
  GString *s = g_string_new("<?xml version=\"1.0\"?>\n<ASAP_Annotations>\n\t<Annotations>\n");
  for (int k = 0; k < n; k++) {
    g_string_append_printf(s, "\t\t<Annotation Name=\"Annotation %d\" Type=\"Polygon\" PartOfGroup=\"%s\" Color=\"#F4FA58\">\n\t\t\t<Coordinates>\n", k, groups[k]);
    for (int i = 0; i < 4; i++) /* written out of order: Order decides */
      g_string_append_printf(s, "\t\t\t\t<Coordinate Order=\"%d\" X=\"%.3f\" Y=\"%.3f\" />\n", (i + 1) % 4,
                             polys[k][2 * ((i + 1) % 4)], polys[k][2 * ((i + 1) % 4) + 1]);
    g_string_append(s, "\t\t\t</Coordinates>\n\t\t</Annotation>\n");
  }
  g_string_append(s, "\t\t<Annotation Name=\"dot\" Type=\"Dot\" PartOfGroup=\"_0\"><Coordinates><Coordinate Order=\"0\" X=\"1\" Y=\"1\"/></Coordinates></Annotation>\n");
  g_string_append(s, "\t</Annotations>\n\t<AnnotationGroups>\n\t\t<Group Name=\"_0\" PartOfGroup=\"None\" Color=\"#FF0000\"><Attributes /></Group>\n\t</AnnotationGroups>\n</ASAP_Annotations>\n");
  tu_write_text(path, s->str);
  g_string_free(s, TRUE);
}

/* The expected tile mask: positives minus negatives at pixel centres. */
static uint8_t *expected_tile(const double (*polys)[8], const char *const *groups, int n, int W, int H, double x0,
                              double y0, double ds) {
  uint8_t *m = g_malloc0((size_t)W * H);
  for (int i = 0; i < H; i++)
    for (int j = 0; j < W; j++) {
      double x = x0 + (j + 0.5) * ds, y = y0 + (i + 0.5) * ds;
      gboolean pos = FALSE, neg = FALSE;
      for (int k = 0; k < n; k++) {
        int sign = ps_asap_group_sign(groups[k]);
        if (tu_inside(polys[k], 4, x, y)) pos |= sign > 0, neg |= sign < 0;
      }
      m[(size_t)i * W + j] = pos && !neg;
    }
  return m;
}

static void test_camelyon(const char *tmp, gboolean c17) {
  const char *fmt = c17 ? "camelyon17" : "camelyon16";
  g_autofree char *root = tu_path(tmp, fmt);
  g_autofree char *out = g_strdup_printf("%s-out", root);
  const char *annotated = c17 ? "patient_004_node_4" : "tumor_001";
  const char *negative = c17 ? "patient_004_node_1" : "normal_001";
  const char *unknown = c17 ? "patient_005_node_0" : "tumor_002";
  const double polys[3][8] = {{1000, 2000, 1060.5, 2004, 1052, 2050.25, 1003, 2044},
                              {1020, 2010, 1030, 2010, 1030, 2030, 1020, 2030},
                              {1070, 2010, 1100, 2012, 1096, 2040, 1068, 2036}};
  const char *const groups[3] = {c17 ? "Tumor" : "_0", c17 ? "Exclusion" : "_2", c17 ? "Tumor" : "_1"};
  g_autofree char *xml_dir = g_build_filename(root, c17 ? "training" : "training", "lesion_annotations", NULL);
  tu_mkdirs(xml_dir);
  g_autofree char *xml_name = g_strdup_printf("%s.xml", annotated);
  g_autofree char *xml = tu_path(xml_dir, xml_name);
  write_asap(xml, polys, groups, 3);
  if (c17) {
    g_autofree char *csv = g_build_filename(root, "training", "stage_labels.csv", NULL);
    tu_write_text(csv, "patient,stage\npatient_004.zip,pN1\npatient_004_node_1.tif,negative\n"
                       "patient_004_node_4.tif,macro\npatient_005.zip,pN0(i+)\npatient_005_node_0.tif,itc\n");
  }
  const int W = 40, H = 32;
  /* Tiles: two at level 0 and one at downsample 2 over the lesion, one far away. */
  const struct { double x, y, ds; } tiles[] = {{1000, 2000, 1}, {1040, 2020, 1}, {990, 1990, 2}, {50000, 60000, 1}};
  for (int t = 0; t < 4; t++) {
    const char *slides[] = {annotated, negative, unknown};
    for (int s = 0; s < 3; s++) {
      if (s > 0 && t > 0) continue;
      g_autofree char *dir = g_build_filename(root, "tiles", slides[s], NULL);
      tu_mkdirs(dir);
      g_autofree char *name = tiles[t].ds == 1 ? g_strdup_printf("%s_x%.0f_y%.0f.png", slides[s], tiles[t].x, tiles[t].y)
                                               : g_strdup_printf("%s_x%.0f_y%.0f_d%.0f.png", slides[s], tiles[t].x, tiles[t].y, tiles[t].ds);
      g_autofree char *p = tu_path(dir, name);
      g_autofree uint8_t *rgb = tu_rgb(W, H, 90 + t + 10 * s);
      tu_write_png(p, rgb, W, H, 3);
    }
  }
  GError *error = NULL;
  conv_stats st;
  g_autofree char *log = NULL;
  PS_CHECK_OK(tu_convert(fmt, root, out, SEED, &st, &log, &error), error);
  g_autofree char *why = g_strdup_printf("skipped tiles/%s/%s_x1000_y2000.png: slide %s has no lesion annotation XML",
                                         unknown, unknown, unknown);
  PS_CHECK_MSG(log && strstr(log, why), "%s: log lacks '%s'", fmt, why);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 5 && st.skipped == 1, "%s: %u rows, %d skipped", fmt, rows->len, st.skipped);
  tu_check_rows(rows, out, fmt, SEED);
  int64_t tumour_px = 0;
  for (int t = 0; t < 4; t++) {
    g_autofree char *needle = tiles[t].ds == 1 ? g_strdup_printf("%s_x%.0f_y%.0f.png", annotated, tiles[t].x, tiles[t].y)
                                               : g_strdup_printf("%s_x%.0f_y%.0f_d%.0f.png", annotated, tiles[t].x, tiles[t].y, tiles[t].ds);
    const ps_manifest_row *r = tu_find(rows, needle, FALSE);
    g_autofree uint8_t *exp = expected_tile(polys, groups, 3, W, H, tiles[t].x, tiles[t].y, tiles[t].ds);
    for (int p = 0; p < W * H; p++) tumour_px += exp[p];
    PS_CHECK_MSG(tu_mask_diff(out, r, exp, W, H) == 0, "%s tile %d", fmt, t);
    PS_CHECK(r && r->magnification == (tiles[t].ds == 1 ? 40 : 20) && strcmp(r->target, "tumour") == 0);
  }
  PS_CHECK(tumour_px > 1000); /* the tiles do cover the lesion */
  const ps_manifest_row *a = tu_find(rows, annotated, FALSE), *n = tu_find(rows, negative, FALSE);
  g_autofree uint8_t *zeros = g_malloc0((size_t)W * H);
  PS_CHECK(n && tu_mask_diff(out, n, zeros, W, H) == 0);
  if (c17)
    PS_CHECK(a && n && strcmp(a->group, "camelyon17-patient_004") == 0 && strcmp(n->group, a->group) == 0);
  else
    PS_CHECK(a && n && strcmp(a->group, "camelyon16-tumor_001") == 0 && strcmp(n->group, "camelyon16-normal_001") == 0);
}

int main(void) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_init(&error), error);
  g_autofree char *tmp = g_dir_make_tmp("ps-conv-XXXXXX", NULL);
  test_glas(tmp);
  test_crag(tmp);
  test_digestpath(tmp);
  test_wsss4luad(tmp);
  test_camelyon(tmp, FALSE);
  test_camelyon(tmp, TRUE);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (!g_getenv("PS_KEEP_TMP")) PS_CHECK(system(cmd) == 0);
  return ps_test_finish();
}
