/* test_conv_real.c — real images with real masks. EBHI-Seg: the 7 pairs
 * copied into tests/data/ebhi-seg (always). The three sets under
 * /work/shared/data/real (EBHI-Seg 40 pairs, MoNuSeg with ImageScope XML,
 * CPM-15 with ASCII label maps) when that directory exists (PATHSEG_REAL_DATA
 * overrides it); they live outside the project, so the test says why it skips
 * them when they are absent. Masks are checked against the sources decoded
 * here independently: EBHI labels >= 128, MoNuSeg polygons filled by
 * point-in-polygon at every pixel centre, the union of CPM-15's instances. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conv_test_util.h"
#include "png_io.h"
#include "ps_test.h"

static const uint64_t SEED = 3;

static const char *const ebhi_folders[][2] = {
    {"adenocarcinoma", "Adenocarcinoma"}, {"high_grade_in", "High-grade IN"}, {"low_grade_in", "Low-grade IN"},
    {"normal", "Normal"},                 {"polyp", "Polyp"},                 {"serrated_adenoma", "Serrated adenoma"},
};

static void check_ebhi(const char *input, const char *out, int expected_rows) {
  GError *error = NULL;
  conv_stats st;
  PS_CHECK_OK(tu_convert("ebhi_seg", input, out, SEED, &st, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG((int)rows->len == expected_rows && st.skipped == 0, "ebhi: %u rows, %d skipped", rows->len, st.skipped);
  tu_check_rows(rows, out, "ebhi-seg", SEED);
  g_autoptr(GHashTable) classes = g_hash_table_new(g_str_hash, g_str_equal);
  int bad = 0;
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(rows, i);
    const char *folder = NULL;
    for (size_t k = 0; k < G_N_ELEMENTS(ebhi_folders); k++)
      if (g_strcmp0(r->morphology, ebhi_folders[k][0]) == 0) folder = ebhi_folders[k][1];
    if (!folder) {
      bad++;
      continue;
    }
    g_hash_table_add(classes, (gpointer)folder);
    /* images/ebhi-seg/<morphology>_<name>.png <- EBHI-SEG/<folder>/label/<name>.png */
    g_autofree char *stem = g_path_get_basename(r->image);
    const char *name = stem + strlen(r->morphology) + 1;
    g_autofree char *label = g_build_filename(input, "EBHI-SEG", folder, "label", name, NULL);
    g_autofree char *image = g_build_filename(input, "EBHI-SEG", folder, "image", name, NULL);
    int w, h, iw, ih;
    g_autofree uint8_t *l = ps_png_read(label, 1, &w, &h, &error);
    g_clear_error(&error);
    g_autofree uint8_t *src = ps_png_read(image, 3, &iw, &ih, &error);
    g_clear_error(&error);
    if (!l || !src) {
      bad++;
      continue;
    }
    g_autofree uint8_t *exp = g_malloc((size_t)w * h);
    int64_t on = 0;
    for (int p = 0; p < w * h; p++) on += exp[p] = l[p] >= 128;
    if (on == 0 || tu_mask_diff(out, r, exp, w, h) != 0) bad++;
    g_autofree char *ip = tu_path(out, r->image);
    int ow, oh;
    g_autofree uint8_t *copy = ps_png_read(ip, 3, &ow, &oh, &error);
    g_clear_error(&error);
    if (!copy || ow != iw || oh != ih || memcmp(copy, src, (size_t)iw * ih * 3) != 0) bad++;
    char case_id[32];
    g_snprintf(case_id, sizeof case_id, "ebhi-%.*s", (int)strcspn(name, "-"), name);
    g_autofree char *up = g_ascii_strup(case_id + 5, -1);
    g_autofree char *group = g_strdup_printf("ebhi-%s", up);
    if (strcmp(r->group, group) != 0 || r->magnification != 40) bad++;
  }
  PS_CHECK_MSG(bad == 0, "ebhi: %d rows whose mask, image, group or class does not match the source", bad);
  PS_CHECK(g_hash_table_size(classes) == 6);
  /* One case in two classes: one group, one split. */
  const ps_manifest_row *a = tu_find(rows, "GT1815555-6-400-001", FALSE), *b = tu_find(rows, "GT1815555-2-400-001", FALSE);
  PS_CHECK(a && b && strcmp(a->group, "ebhi-GT1815555") == 0 && strcmp(a->group, b->group) == 0 &&
           strcmp(a->split, b->split) == 0 && strcmp(a->target, b->target) != 0);
}

/* The regions of an ImageScope XML, read line by line with plain string
 * scanning (MoNuSeg writes one tag per line; short strings keep this linear). */
static GPtrArray *scan_regions(const char *path) {
  GPtrArray *regions = g_ptr_array_new_with_free_func((GDestroyNotify)g_array_unref);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return regions;
  g_auto(GStrv) lines = g_strsplit_set(text, "\n", -1); /* g_strsplit strstr()s the rest: quadratic under ASan */
  GArray *xy = NULL;
  for (char **l = lines; *l; l++) {
    if (strstr(*l, "<Region ")) {
      xy = g_array_new(FALSE, FALSE, sizeof(double));
      g_ptr_array_add(regions, xy);
    } else if (strstr(*l, "</Region>")) {
      xy = NULL;
    } else if (xy && strstr(*l, "<Vertex ")) {
      char *xs = strstr(*l, "X=\""), *ys = strstr(*l, "Y=\"");
      if (!xs || !ys) continue;
      double x = g_ascii_strtod(xs + 3, NULL), y = g_ascii_strtod(ys + 3, NULL);
      g_array_append_val(xy, x);
      g_array_append_val(xy, y);
    }
  }
  return regions;
}

static void check_monuseg(const char *real, const char *out) {
  g_autofree char *input = tu_path(real, "MoNuSeg");
  GError *error = NULL;
  PS_CHECK_OK(tu_convert("monuseg", input, out, SEED, NULL, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 6, "monuseg: %u rows", rows->len);
  tu_check_rows(rows, out, "monuseg", SEED);
  const struct { const char *id; int nuclei; const char *organ; } sets[] = {
      {"TCGA-HT-8564-01Z-00-DX1", 249, "brain"}, {"TCGA-HC-7209-01A-01-TS1", 325, "prostate"},
      {"TCGA-AO-A0J2-01A-01-BSA", 356, "breast"}, {"TCGA-ZF-A9R5-01A-01-TS1", 475, "bladder"},
      {"TCGA-69-7764-01A-01-TS1", 441, "lung"},  {"TCGA-A6-6782-01A-01-BS1", 441, "colonic"}};
  for (size_t s = 0; s < G_N_ELEMENTS(sets); s++) {
    g_autofree char *xml = g_strdup_printf("%s/MoNuSegTestData/%s.xml", input, sets[s].id);
    g_autoptr(GPtrArray) regions = scan_regions(xml);
    PS_CHECK_MSG((int)regions->len == sets[s].nuclei, "%s: %u regions", sets[s].id, regions->len);
    const ps_manifest_row *r = tu_find(rows, sets[s].id, FALSE);
    PS_CHECK(r && r->width == 1000 && r->height == 1000 && r->magnification == 40 &&
             strcmp(r->target, "nuclei") == 0 && strstr(r->reasoning, sets[s].organ));
    if (!r) continue;
    g_autofree char *group = g_strndup(sets[s].id, 12);
    g_autofree char *want = g_strdup_printf("monuseg-%s", group);
    PS_CHECK_MSG(strcmp(r->group, want) == 0, "%s group %s", sets[s].id, r->group);
    const int W = r->width, H = r->height;
    g_autofree uint8_t *exp = g_malloc0((size_t)W * H);
    for (guint k = 0; k < regions->len; k++) {
      GArray *xy = g_ptr_array_index(regions, k);
      const double *v = (const double *)xy->data;
      int n = (int)xy->len / 2;
      double x0 = 1e9, x1 = -1e9, y0 = 1e9, y1 = -1e9;
      for (int i = 0; i < n; i++) x0 = MIN(x0, v[2 * i]), x1 = MAX(x1, v[2 * i]), y0 = MIN(y0, v[2 * i + 1]), y1 = MAX(y1, v[2 * i + 1]);
      for (int y = MAX(0, (int)y0 - 1); y <= MIN(H - 1, (int)y1 + 1); y++)
        for (int x = MAX(0, (int)x0 - 1); x <= MIN(W - 1, (int)x1 + 1); x++)
          if (tu_inside(v, n, x + 0.5, y + 0.5)) exp[(size_t)y * W + x] = 1;
    }
    int64_t on = 0;
    for (int p = 0; p < W * H; p++) on += exp[p];
    int64_t diff = tu_mask_diff(out, r, exp, W, H);
    PS_CHECK_MSG(on > W * H / 50 && diff == 0, "monuseg %s: %" G_GINT64_FORMAT " nucleus px, %" G_GINT64_FORMAT " differ",
                 sets[s].id, on, diff);
  }
}

static void check_cpm15(const char *real, const char *out) {
  g_autofree char *input = tu_path(real, "CPM-15");
  GError *error = NULL;
  PS_CHECK_OK(tu_convert("cpm15", input, out, SEED, NULL, NULL, &error), error);
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  PS_CHECK_MSG(rows->len == 6, "cpm15: %u rows", rows->len);
  tu_check_rows(rows, out, "cpm15", SEED);
  const struct { const char *name; int w, h, mag, max_id; } sets[] = {
      {"image02", 488, 490, 20, 127}, {"image06", 459, 392, 20, 255}, {"image07", 439, 439, 20, 292},
      {"image13", 641, 589, 40, 93},  {"image14", 461, 498, 40, 139}, {"image15", 552, 526, 40, 137}};
  for (size_t s = 0; s < G_N_ELEMENTS(sets); s++) {
    g_autofree char *txt = g_strdup_printf("%s/MICCAI_competition_dataset/%s_mask.txt", input, sets[s].name);
    FILE *f = fopen(txt, "r");
    int w = 0, h = 0, max_id = 0, ok = f && fscanf(f, "%d %d", &w, &h) == 2 && w == sets[s].w && h == sets[s].h;
    g_autofree uint8_t *exp = g_malloc0((size_t)sets[s].w * sets[s].h);
    for (int p = 0; ok && p < w * h; p++) {
      int v;
      ok = fscanf(f, "%d", &v) == 1;
      exp[p] = v != 0;
      max_id = MAX(max_id, v);
    }
    if (f) fclose(f);
    PS_CHECK_MSG(ok && max_id == sets[s].max_id, "%s: reading the label map (max id %d)", sets[s].name, max_id);
    g_autofree char *needle = g_strdup_printf("/%s.png", sets[s].name);
    const ps_manifest_row *r = tu_find(rows, needle, FALSE);
    PS_CHECK_MSG(r && r->magnification == sets[s].mag && strcmp(r->group, "cpm15-") > 0, "%s row", sets[s].name);
    PS_CHECK_MSG(tu_mask_diff(out, r, exp, sets[s].w, sets[s].h) == 0, "cpm15 %s: mask != instance union", sets[s].name);
  }
}

int main(void) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_init(&error), error);
  g_autofree char *tmp = g_dir_make_tmp("ps-conv-real-XXXXXX", NULL);
  const char *data = g_getenv("PATHSEG_TEST_DATA");
  g_autofree char *ebhi = g_build_filename(data ? data : "tests/data", "ebhi-seg", NULL);
  g_autofree char *o1 = tu_path(tmp, "ebhi-local");
  check_ebhi(ebhi, o1, 7);

  const char *real = g_getenv("PATHSEG_REAL_DATA") ? g_getenv("PATHSEG_REAL_DATA") : "/work/shared/data/real";
  if (!g_file_test(real, G_FILE_TEST_IS_DIR)) {
    printf("skipping the real EBHI-Seg/MoNuSeg/CPM-15 sets: %s does not exist (set PATHSEG_REAL_DATA)\n", real);
  } else {
    g_autofree char *e = tu_path(real, "EBHI-Seg");
    g_autofree char *o2 = tu_path(tmp, "ebhi-real"), *o3 = tu_path(tmp, "monuseg"), *o4 = tu_path(tmp, "cpm15");
    check_ebhi(e, o2, 40);
    check_monuseg(real, o3);
    check_cpm15(real, o4);
  }
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (!g_getenv("PS_KEEP_TMP")) PS_CHECK(system(cmd) == 0);
  return ps_test_finish();
}
