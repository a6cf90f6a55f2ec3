/* test_conv_bad.c — bad input: a corrupt image, a mask of another size, a
 * missing mask, a truncated BMP or label map, an XML outside its image or
 * malformed, a palette index or colour of no class, an unknown class folder.
 * Each is a logged skip naming the file and the reason, the rest converts;
 * when nothing is usable the converter fails clearly and leaves any earlier
 * manifest as it was. Truncated files of every length never crash a reader. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "asap_xml.h"
#include "conv_test_util.h"
#include "image_io.h"
#include "imagescope_xml.h"
#include "png_io.h"
#include "ps_test.h"

#define LOG_HAS(log, s) PS_CHECK_MSG((log) && strstr((log), (s)), "log lacks \"%s\":\n%s", (s), (log) ? (log) : "")

static const int W = 37, H = 29;

static void glas_pair(const char *root, const char *name, int mw, int mh) {
  g_autofree uint8_t *rgb = tu_rgb(W, H, 1);
  g_autofree uint8_t *lab = g_malloc0((size_t)mw * mh);
  tu_rect(lab, mw, 1, 1, 8, 8, 1);
  g_autofree char *img = g_strdup_printf("%s/%s.bmp", root, name);
  g_autofree char *anno = g_strdup_printf("%s/%s_anno.bmp", root, name);
  tu_write_bmp24(img, rgb, W, H);
  tu_write_bmp8(anno, lab, mw, mh);
}

static void test_glas_bad(const char *tmp) {
  g_autofree char *root = tu_path(tmp, "glas");
  g_autofree char *out = tu_path(tmp, "glas-out");
  tu_mkdirs(root);
  glas_pair(root, "train_1", W, H);
  glas_pair(root, "train_2", W, H);
  g_autofree char *corrupt = tu_path(root, "train_2.bmp");
  tu_write_text(corrupt, "BM this is not a bitmap at all, just text pretending to be one ..........................");
  glas_pair(root, "train_3", 10, 10);
  glas_pair(root, "train_4", W, H);
  g_autofree char *gone = tu_path(root, "train_4_anno.bmp");
  PS_CHECK(remove(gone) == 0);
  glas_pair(root, "train_5", W, H);
  g_autofree char *trunc = tu_path(root, "train_5_anno.bmp");
  g_autofree char *bytes = NULL;
  gsize len = 0;
  PS_CHECK(g_file_get_contents(trunc, &bytes, &len, NULL));
  PS_CHECK(g_file_set_contents(trunc, bytes, (gssize)len / 2, NULL));
  GError *error = NULL;
  conv_stats st;
  g_autofree char *log = NULL;
  PS_CHECK_OK(tu_convert("glas", root, out, 1, &st, &log, &error), error);
  PS_CHECK_MSG(st.rows == 1 && st.skipped == 4, "%d rows, %d skipped", st.rows, st.skipped);
  LOG_HAS(log, "skipped train_2.bmp: ");
  LOG_HAS(log, "not a usable BMP");
  LOG_HAS(log, "skipped train_3.bmp: mask train_3_anno.bmp is 10x10, the image 37x29");
  LOG_HAS(log, "skipped train_4.bmp: no annotation train_4_anno.bmp");
  LOG_HAS(log, "skipped train_5.bmp: mask train_5_anno.bmp: ");
  LOG_HAS(log, "pixel data truncated");
  g_autoptr(GPtrArray) rows = tu_rows(out);
  PS_CHECK(rows && rows->len == 1);

  /* Nothing usable: a clear error, and the manifest already there is left alone. */
  g_autofree char *root2 = tu_path(tmp, "glas-none");
  g_autofree char *out2 = tu_path(tmp, "glas-none-out");
  tu_mkdirs(root2);
  tu_mkdirs(out2);
  glas_pair(root2, "train_1", W, H);
  g_autofree char *c2 = tu_path(root2, "train_1.bmp");
  tu_write_text(c2, "garbage");
  g_autofree char *manifest = tu_path(out2, "manifest.jsonl");
  tu_write_text(manifest, "earlier manifest\n");
  PS_CHECK_FAILS_WITH(tu_convert("glas", root2, out2, 1, NULL, NULL, &error), error, "nothing usable");
  g_autofree char *after = NULL;
  PS_CHECK(g_file_get_contents(manifest, &after, NULL, NULL) && strcmp(after, "earlier manifest\n") == 0);
  g_autofree char *out3 = tu_path(tmp, "glas-none-out3");
  PS_CHECK_FAILS_WITH(tu_convert("glas", root2, out3, 1, NULL, NULL, &error), error, "train_1.bmp");
  g_autofree char *m3 = tu_path(out3, "manifest.jsonl");
  PS_CHECK(!g_file_test(m3, G_FILE_TEST_EXISTS));

  PS_CHECK_FAILS_WITH(tu_convert("glas", "/nonexistent/glas", out3, 1, NULL, NULL, &error), error, "/nonexistent/glas");
  PS_CHECK_FAILS_WITH(tu_convert("kumar", root, out3, 1, NULL, NULL, &error), error, "unknown format 'kumar'");
}

static void test_monuseg_bad(const char *tmp) {
  g_autofree char *root = g_build_filename(tmp, "monuseg", "MoNuSegTestData", NULL);
  g_autofree char *out = tu_path(tmp, "monuseg-out");
  tu_mkdirs(root);
  const char *xml_ok = "<Annotations MicronsPerPixel=\"0.25\"><Annotation Id=\"1\"><Regions>"
                       "<Region Id=\"1\"><Vertices><Vertex X=\"5\" Y=\"5\"/><Vertex X=\"20\" Y=\"5\"/>"
                       "<Vertex X=\"20\" Y=\"20\"/><Vertex X=\"5\" Y=\"20\"/></Vertices></Region>"
                       "<Region Id=\"2\"><Vertices><Vertex X=\"60\" Y=\"60\"/><Vertex X=\"80\" Y=\"60\"/>"
                       "<Vertex X=\"80\" Y=\"80\"/></Vertices></Region></Regions></Annotation></Annotations>";
  const char *xml_out = "<Annotations><Annotation><Regions><Region Id=\"1\"><Vertices><Vertex X=\"500\" Y=\"5\"/>"
                        "<Vertex X=\"520\" Y=\"5\"/><Vertex X=\"520\" Y=\"20\"/></Vertices></Region></Regions>"
                        "</Annotation></Annotations>";
  const char *xml_bad = "<Annotations><Annotation><Regions><Region Id=\"1\"><Vertices><Vertex X=\"5\" Y=\"5\"/>";
  const char *names[] = {"TCGA-AA-0001-01A", "TCGA-AA-0002-01A", "TCGA-AA-0003-01A", "TCGA-AA-0004-01A"};
  const char *xmls[] = {xml_ok, xml_out, xml_bad, NULL};
  for (int i = 0; i < 4; i++) {
    g_autofree uint8_t *rgb = tu_rgb(64, 64, 5 + i);
    g_autofree char *img = g_strdup_printf("%s/%s.png", root, names[i]);
    tu_write_png(img, rgb, 64, 64, 3);
    g_autofree char *xml = g_strdup_printf("%s/%s.xml", root, names[i]);
    if (xmls[i]) tu_write_text(xml, xmls[i]);
  }
  GError *error = NULL;
  conv_stats st;
  g_autofree char *log = NULL;
  g_autofree char *parent = tu_path(tmp, "monuseg");
  PS_CHECK_OK(tu_convert("monuseg", parent, out, 1, &st, &log, &error), error);
  PS_CHECK_MSG(st.rows == 1 && st.skipped == 3, "%d rows, %d skipped", st.rows, st.skipped);
  LOG_HAS(log, "skipped MoNuSegTestData/TCGA-AA-0002-01A.png: 1 of the 1 regions of MoNuSegTestData/TCGA-AA-0002-01A.xml lie wholly outside the 64x64 image");
  LOG_HAS(log, "skipped MoNuSegTestData/TCGA-AA-0003-01A.png: ");
  LOG_HAS(log, "TCGA-AA-0003-01A.xml");
  LOG_HAS(log, "skipped MoNuSegTestData/TCGA-AA-0004-01A.png: no annotation TCGA-AA-0004-01A.xml");
  g_autoptr(GPtrArray) rows = tu_rows(out);
  const ps_manifest_row *r = rows ? tu_find(rows, "0001", FALSE) : NULL;
  /* The square (5..20)^2 covers pixel centres 5.5..19.5: 15 x 15; the triangle is clipped at 64. */
  g_autofree uint8_t *exp = g_malloc0(64 * 64);
  tu_rect(exp, 64, 5, 5, 20, 20, 1);
  double tri[6] = {60, 60, 80, 60, 80, 80};
  for (int y = 0; y < 64; y++)
    for (int x = 0; x < 64; x++)
      if (tu_inside(tri, 3, x + 0.5, y + 0.5)) exp[y * 64 + x] = 1;
  PS_CHECK(r && tu_mask_diff(out, r, exp, 64, 64) == 0 && strcmp(r->group, "monuseg-TCGA-AA-0001") == 0);
}

static void test_others_bad(const char *tmp) {
  GError *error = NULL;
  g_autofree char *log = NULL;
  conv_stats st;
  /* CPM-15: a label map with too few values, one of another size. */
  g_autofree char *cpm = tu_path(tmp, "cpm");
  g_autofree char *cpm_out = tu_path(tmp, "cpm-out");
  tu_mkdirs(cpm);
  for (int i = 1; i <= 3; i++) {
    g_autofree uint8_t *rgb = tu_rgb(3, 2, (uint32_t)i);
    g_autofree char *p = g_strdup_printf("%s/image0%d.png", cpm, i);
    tu_write_png(p, rgb, 3, 2, 3);
  }
  g_autofree char *t1 = tu_path(cpm, "image01_mask.txt"), *t2 = tu_path(cpm, "image02_mask.txt"),
                  *t3 = tu_path(cpm, "image03_mask.txt");
  tu_write_text(t1, "3 2\n0\n1\n1\n0\n2\n0\n");
  tu_write_text(t2, "3 2\n0\n1\n1\n");
  tu_write_text(t3, "2 3\n0\n1\n1\n0\n2\n0\n");
  PS_CHECK_OK(tu_convert("cpm15", cpm, cpm_out, 1, &st, &log, &error), error);
  PS_CHECK(st.rows == 1 && st.skipped == 2);
  LOG_HAS(log, "skipped image02.png: ");
  LOG_HAS(log, "value 4 of 6 (pixel 0, 1) is missing");
  LOG_HAS(log, "skipped image03.png: label map image03_mask.txt is 2x3, the image 3x2");
  g_clear_pointer(&log, g_free);

  /* WSSS4LUAD: a palette index of no class, an RGB colour of no class, a missing mask. */
  g_autofree char *ws = tu_path(tmp, "wsss");
  g_autofree char *ws_out = tu_path(tmp, "wsss-out");
  g_autofree char *wi = g_build_filename(ws, "2.validation", "img", NULL);
  g_autofree char *wm = g_build_filename(ws, "2.validation", "mask", NULL);
  tu_mkdirs(wi);
  tu_mkdirs(wm);
  static const uint8_t pal[8][3] = {{0, 64, 128}, {64, 128, 0}, {243, 152, 0}, {255, 255, 255}, {1, 2, 3}, {4, 5, 6}, {7, 8, 9}, {9, 9, 9}};
  uint8_t idx[16] = {0, 0, 1, 1, 3, 3, 3, 3, 2, 2, 2, 2, 3, 3, 3, 3};
  for (int i = 0; i < 4; i++) {
    g_autofree uint8_t *rgb = tu_rgb(4, 4, (uint32_t)i);
    g_autofree char *ip = g_strdup_printf("%s/%02d.png", wi, i), *mp = g_strdup_printf("%s/%02d.png", wm, i);
    tu_write_png(ip, rgb, 4, 4, 3);
    if (i == 0) tu_write_palette_png(mp, idx, 4, 4, pal, 4);
    if (i == 1) {
      uint8_t bad[16];
      memcpy(bad, idx, 16);
      bad[5] = 7;
      tu_write_palette_png(mp, bad, 4, 4, pal, 8);
    }
    if (i == 2) {
      uint8_t c[48];
      for (int p = 0; p < 16; p++) memcpy(c + 3 * p, pal[idx[p]], 3);
      c[3 * 6] = 17;
      tu_write_png(mp, c, 4, 4, 3);
    }
  }
  PS_CHECK_OK(tu_convert("wsss4luad", ws, ws_out, 1, &st, &log, &error), error);
  PS_CHECK_MSG(st.rows == 3 && st.skipped == 3, "wsss: %d rows %d skipped", st.rows, st.skipped);
  LOG_HAS(log, "skipped 2.validation/img/01.png: mask 2.validation/mask/01.png: mask index 7 at (1, 1)");
  LOG_HAS(log, "skipped 2.validation/img/02.png: mask 2.validation/mask/02.png: mask colour (17,255,255) at (2, 1)");
  LOG_HAS(log, "skipped 2.validation/img/03.png: no mask mask/03.png");
  g_clear_pointer(&log, g_free);

  /* EBHI-Seg: a folder that is not one of the six classes; a missing label. */
  g_autofree char *eb = g_build_filename(tmp, "ebhi", "EBHI-SEG", NULL);
  g_autofree char *eb_out = tu_path(tmp, "ebhi-out");
  g_autofree char *e1 = g_build_filename(eb, "Polyp", "image", NULL), *e2 = g_build_filename(eb, "Polyp", "label", NULL);
  g_autofree char *e3 = g_build_filename(eb, "Mystery", "image", NULL);
  tu_mkdirs(e1), tu_mkdirs(e2), tu_mkdirs(e3);
  g_autofree uint8_t *rgb = tu_rgb(8, 8, 3);
  g_autofree uint8_t *lab = g_malloc0(64);
  tu_rect(lab, 8, 0, 0, 4, 8, 255);
  lab[5] = 127, lab[6] = 128;
  g_autofree char *a = tu_path(e1, "GT1-1-400-001.png"), *al = tu_path(e2, "GT1-1-400-001.png"),
                  *b = tu_path(e1, "GT2-1-400-001.png");
  tu_write_png(a, rgb, 8, 8, 3);
  tu_write_png(al, lab, 8, 8, 1);
  tu_write_png(b, rgb, 8, 8, 3);
  g_autofree char *ebp = tu_path(tmp, "ebhi");
  PS_CHECK_OK(tu_convert("ebhi_seg", ebp, eb_out, 1, &st, &log, &error), error);
  PS_CHECK(st.rows == 1 && st.skipped == 2);
  LOG_HAS(log, "skipped EBHI-SEG/Mystery: not one of the six EBHI-Seg classes");
  LOG_HAS(log, "skipped EBHI-SEG/Polyp/image/GT2-1-400-001.png: no label Polyp/label/GT2-1-400-001.png");
  g_autoptr(GPtrArray) rows = tu_rows(eb_out);
  g_autofree uint8_t *exp = g_malloc(64);
  for (int p = 0; p < 64; p++) exp[p] = lab[p] >= 128;
  PS_CHECK(rows && rows->len == 1 && tu_mask_diff(eb_out, g_ptr_array_index(rows, 0), exp, 8, 8) == 0);
  g_clear_pointer(&log, g_free);

  /* Camelyon16: a malformed XML, a tile name without its origin. */
  g_autofree char *cam = tu_path(tmp, "cam");
  g_autofree char *cam_out = tu_path(tmp, "cam-out");
  g_autofree char *td = g_build_filename(cam, "tiles", "tumor_009", NULL), *nd = g_build_filename(cam, "tiles", "normal_003", NULL);
  g_autofree char *xd = g_build_filename(cam, "training", "lesion_annotations", NULL);
  tu_mkdirs(td), tu_mkdirs(nd), tu_mkdirs(xd);
  g_autofree char *x9 = tu_path(xd, "tumor_009.xml");
  tu_write_text(x9, "<ASAP_Annotations><Annotations><Annotation PartOfGroup=\"_0\"><Coordinates>"
                    "<Coordinate Order=\"0\" X=\"abc\" Y=\"1\"/></Coordinates></Annotation></Annotations></ASAP_Annotations>");
  g_autofree char *tp = tu_path(td, "tumor_009_x0_y0.png"), *np = tu_path(nd, "normal_003_x0_y0.png"),
                  *np2 = tu_path(nd, "normal_003_tile7.png");
  tu_write_png(tp, rgb, 8, 8, 3);
  tu_write_png(np, rgb, 8, 8, 3);
  tu_write_png(np2, rgb, 8, 8, 3);
  PS_CHECK_OK(tu_convert("camelyon16", cam, cam_out, 1, &st, &log, &error), error);
  PS_CHECK_MSG(st.rows == 1 && st.skipped == 2, "camelyon: %d rows %d skipped", st.rows, st.skipped);
  LOG_HAS(log, "skipped tiles/tumor_009/tumor_009_x0_y0.png: ");
  LOG_HAS(log, "tumor_009.xml:1: <Coordinate> of annotation '?' needs numeric X, Y");
  LOG_HAS(log, "skipped tiles/normal_003/normal_003_tile7.png: the name has no _x<X>_y<Y> level-0 origin");
}

/* Every truncation of a valid file is an error or a success, never a crash
 * (ASan/UBSan builds check the reads). */
static void test_truncations(const char *tmp) {
  g_autofree char *bmp = tu_path(tmp, "t.bmp"), *cut = tu_path(tmp, "cut.bmp");
  g_autofree uint8_t *lab = g_malloc0(13 * 7);
  tu_rect(lab, 13, 1, 1, 6, 6, 3);
  tu_write_bmp8(bmp, lab, 13, 7);
  g_autofree char *bytes = NULL;
  gsize len = 0;
  PS_CHECK(g_file_get_contents(bmp, &bytes, &len, NULL));
  int failures = 0;
  for (gsize n = 0; n < len; n++) {
    FILE *f = fopen(cut, "wb"); /* no fsync per length, unlike g_file_set_contents */
    PS_CHECK(f && fwrite(bytes, 1, n, f) == n);
    if (f) fclose(f);
    ps_bmp b;
    GError *error = NULL;
    if (!ps_bmp_load(cut, &b, &error)) failures++;
    g_clear_error(&error);
    ps_bmp_clear(&b);
  }
  PS_CHECK_MSG(failures == (int)len, "%d of %zu truncated BMPs refused", failures, len);
  ps_bmp b;
  GError *error = NULL;
  PS_CHECK_OK(ps_bmp_load(bmp, &b, &error), error);
  PS_CHECK(b.index && memcmp(b.index, lab, 13 * 7) == 0);
  ps_bmp_clear(&b);

  const char *xml = "<ASAP_Annotations><Annotations><Annotation Name=\"a\" Type=\"Polygon\" PartOfGroup=\"_0\">"
                    "<Coordinates><Coordinate Order=\"0\" X=\"1\" Y=\"1\"/><Coordinate Order=\"1\" X=\"9\" Y=\"1\"/>"
                    "<Coordinate Order=\"2\" X=\"9\" Y=\"9\"/></Coordinates></Annotation></Annotations></ASAP_Annotations>";
  int ok = 0;
  for (size_t n = 0; n <= strlen(xml); n++) {
    g_autoptr(ps_asap_annotations) a = ps_asap_parse(xml, (gssize)n, "cut.xml", &error);
    if (a) ok++;
    else PS_CHECK(error && strstr(error->message, "cut.xml"));
    g_clear_error(&error);
    g_autoptr(ps_imagescope) s = ps_imagescope_parse(xml, (gssize)n, "cut.xml", &error);
    g_clear_error(&error);
  }
  PS_CHECK(ok >= 1);
}

int main(void) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_init(&error), error);
  g_autofree char *tmp = g_dir_make_tmp("ps-conv-bad-XXXXXX", NULL);
  test_glas_bad(tmp);
  test_monuseg_bad(tmp);
  test_others_bad(tmp);
  test_truncations(tmp);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (!g_getenv("PS_KEEP_TMP")) PS_CHECK(system(cmd) == 0);
  return ps_test_finish();
}
