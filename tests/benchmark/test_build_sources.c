/* test_build_sources.c — stage.build_benchmark from sources other than the
 * generator: a GlaS tree in its published layout (convert:glas), the real
 * EBHI-Seg pairs in tests/data (convert:ebhi_seg) and a manifest in the
 * layout stage.preprocess_slides writes (manifest:), through an
 * annotator.template instance. Checks: grid tiles are exact crops of the
 * original pixels and masks at the positions their names give, empty tiles
 * dropped, images smaller than tile_size and missing files skipped with the
 * reason logged, every tile and mask tile_size square, groups (patients,
 * slides) in one split each as ps_manifest_split_for says, chains with one
 * final <SEG>; `dataset check` finds no problem and dataset.benchmark opens
 * the result; rebuilding gives the same manifest; tiling: resize gives one
 * tile per image with the mask's area kept and the magnification scaled;
 * bad source strings are errors naming the entry. */
#include <glib/gstdio.h>
#include <pathseg/dataset.h>
#include <pathseg/host.h>
#include <pathseg/run.h>

#include "conv_test_util.h"
#include "manifest.h"
#include "png_io.h"
#include "ps_test.h"

static ps_registry *reg;
enum { S = 112, GW = 230, GH = 160, SW = 128 };
static const char *const glas_names[] = {"train_1", "train_2", "testA_1"};
static const int glas_patients[] = {1, 2, 1};

static uint8_t *glas_label(int i) {
  uint8_t *lab = g_malloc0((size_t)GW * GH);
  tu_rect(lab, GW, 5 + i, 5, 60, 40, 1);
  tu_rect(lab, GW, 150, 100 + i, 220, 150, 2);
  return lab;
}

static void write_glas(const char *root) {
  tu_mkdirs(root);
  GString *csv = g_string_new("name, Patient ID, grade (GlaS)\n");
  for (int i = 0; i < 3; i++) {
    g_autofree uint8_t *rgb = tu_rgb(GW, GH, 10 + i);
    g_autofree uint8_t *lab = glas_label(i);
    g_autofree char *img = g_strdup_printf("%s/%s.bmp", root, glas_names[i]);
    g_autofree char *anno = g_strdup_printf("%s/%s_anno.bmp", root, glas_names[i]);
    tu_write_bmp24(img, rgb, GW, GH);
    tu_write_bmp8(anno, lab, GW, GH);
    g_string_append_printf(csv, "%s,%d,malignant\n", glas_names[i], glas_patients[i]);
  }
  /* Smaller than a tile: skipped with the reason. */
  g_autofree uint8_t *small = tu_rgb(50, 40, 99);
  g_autofree uint8_t *small_lab = g_malloc0(50 * 40);
  tu_rect(small_lab, 50, 5, 5, 20, 20, 1);
  g_autofree char *si = g_strdup_printf("%s/testB_1.bmp", root);
  g_autofree char *sa = g_strdup_printf("%s/testB_1_anno.bmp", root);
  tu_write_bmp24(si, small, 50, 40);
  tu_write_bmp8(sa, small_lab, 50, 40);
  g_autofree char *csv_path = tu_path(root, "Grade.csv");
  tu_write_text(csv_path, csv->str);
  g_string_free(csv, TRUE);
}

/* Two slides as stage.preprocess_slides lays them out, and one row whose
 * files do not exist. */
static void write_slides(const char *dir) {
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  for (int s = 0; s < 2; s++) {
    g_autofree char *tiles = g_strdup_printf("%s/slide-%d/tiles", dir, s);
    g_autofree char *masks = g_strdup_printf("%s/slide-%d/masks", dir, s);
    tu_mkdirs(tiles);
    tu_mkdirs(masks);
    g_autofree uint8_t *rgb = tu_rgb(SW, SW, 50 + s);
    g_autofree uint8_t *mask = g_malloc0(SW * SW);
    tu_rect(mask, SW, 10, 10 + s, 120, 60, 255);
    g_autofree char *ip = g_strdup_printf("%s/0_0.png", tiles);
    g_autofree char *mp = g_strdup_printf("%s/0_0.png", masks);
    tu_write_png(ip, rgb, SW, SW, 3);
    tu_write_png(mp, mask, SW, SW, 1);
    ps_manifest_row *r = g_new0(ps_manifest_row, 1);
    r->image = g_strdup_printf("slide-%d/tiles/0_0.png", s);
    r->mask = g_strdup_printf("slide-%d/masks/0_0.png", s);
    r->query = g_strdup("q");
    r->reasoning = g_strdup("r <SEG>");
    r->source = g_strdup("wsi");
    r->group = g_strdup_printf("slide-%d", s);
    r->target = g_strdup("tumour");
    r->stain = g_strdup("he");
    r->magnification = 20;
    r->split = g_strdup("train");
    g_ptr_array_add(rows, r);
  }
  /* A truncated tile: skipped too. */
  g_autofree char *bad_tiles = g_strdup_printf("%s/slide-8/tiles", dir);
  g_autofree char *bad_masks = g_strdup_printf("%s/slide-8/masks", dir);
  tu_mkdirs(bad_tiles);
  tu_mkdirs(bad_masks);
  g_autofree uint8_t *rgb8 = tu_rgb(SW, SW, 58);
  g_autofree uint8_t *mask8 = g_malloc0(SW * SW);
  tu_rect(mask8, SW, 0, 0, SW, SW, 255);
  g_autofree char *ip8 = g_strdup_printf("%s/0_0.png", bad_tiles);
  g_autofree char *mp8 = g_strdup_printf("%s/0_0.png", bad_masks);
  tu_write_png(ip8, rgb8, SW, SW, 3);
  tu_write_png(mp8, mask8, SW, SW, 1);
  g_autofree char *png = NULL;
  gsize png_len = 0;
  g_file_get_contents(ip8, &png, &png_len, NULL);
  g_file_set_contents(ip8, png, (gssize)(png_len / 2), NULL);
  ps_manifest_row *cut = g_new0(ps_manifest_row, 1);
  cut->image = g_strdup("slide-8/tiles/0_0.png");
  cut->mask = g_strdup("slide-8/masks/0_0.png");
  cut->query = g_strdup("q");
  cut->reasoning = g_strdup("r <SEG>");
  cut->group = g_strdup("slide-8");
  cut->split = g_strdup("train");
  g_ptr_array_add(rows, cut);
  ps_manifest_row *gone = g_new0(ps_manifest_row, 1);
  gone->image = g_strdup("slide-9/tiles/0_0.png");
  gone->mask = g_strdup("slide-9/masks/0_0.png");
  gone->query = g_strdup("q");
  gone->reasoning = g_strdup("r <SEG>");
  gone->split = g_strdup("train");
  g_ptr_array_add(rows, gone);
  g_autofree char *path = tu_path(dir, "manifest.jsonl");
  GError *error = NULL;
  PS_CHECK_OK(ps_manifest_write(path, rows, &error), error);
}

static gboolean build(const char *tmp, const char *name, const char *sources, const char *extra, GError **error) {
  g_autofree char *yaml = g_strdup_printf(
      "name: %s\nseed: 1\ncomponents:\n  tmpl: {plugin: annotator.template}\n"
      "stages:\n  build:\n    plugin: stage.build_benchmark\n    out_dir: %s/%s\n    annotator: tmpl\n"
      "    sources: %s\n    tile_size: %d\n%s",
      name, tmp, name, sources, S, extra);
  g_autofree char *path = g_strdup_printf("%s/%s.yaml", tmp, name);
  g_file_set_contents(path, yaml, -1, NULL);
  g_autofree char *runs = g_strdup_printf("run_dir=%s/runs", tmp);
  const char *sets[] = {runs, NULL};
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, sets, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  return ps_run_execute(p, reg, &opts, NULL, error);
}

static int count_source(GPtrArray *rows, const char *source) {
  int n = 0;
  for (guint i = 0; i < rows->len; i++) n += g_strcmp0(((ps_manifest_row *)g_ptr_array_index(rows, i))->source, source) == 0;
  return n;
}

/* Grid starts for an extent, written out independently of the stage. */
static int starts(int extent, int *out) {
  int n = 0;
  for (int x = 0; x + S <= extent; x += S) out[n++] = x;
  if (n && out[n - 1] + S < extent) out[n++] = extent - S;
  return n;
}

static void test_grid(const char *tmp, const char *glas, const char *ebhi, const char *slides) {
  GError *error = NULL;
  g_autofree char *sources = g_strdup_printf("[\"convert:glas:%s\", \"convert:ebhi_seg:%s\", \"manifest:%s/manifest.jsonl\"]",
                                             glas, ebhi, slides);
  PS_CHECK_OK(build(tmp, "grid", sources, "", &error), error);
  g_autofree char *out = tu_path(tmp, "grid");
  g_autofree char *manifest = tu_path(out, "manifest.jsonl");
  g_autoptr(GPtrArray) rows = ps_manifest_read(manifest, &error);
  PS_CHECK_OK(rows != NULL, error);
  if (!rows) return;

  /* GlaS: the non-empty grid tiles, each an exact crop. */
  int xs[8], ys[8], nx = starts(GW, xs), ny = starts(GH, ys), expected_glas = 0;
  PS_CHECK(nx == 3 && ny == 2 && xs[2] == GW - S);
  for (int i = 0; i < 3; i++) {
    g_autofree uint8_t *rgb = tu_rgb(GW, GH, 10 + i);
    g_autofree uint8_t *lab = glas_label(i);
    for (int ty = 0; ty < ny; ty++)
      for (int tx = 0; tx < nx; tx++) {
        int on = 0;
        for (int y = 0; y < S; y++)
          for (int x = 0; x < S; x++) on += lab[(ys[ty] + y) * GW + xs[tx] + x] != 0;
        g_autofree char *needle = g_strdup_printf("glas_%s_%d_%d.png", glas_names[i], xs[tx], ys[ty]);
        const ps_manifest_row *r = tu_find(rows, needle, FALSE);
        PS_CHECK_MSG((r != NULL) == (on > 0), "%s: %s, %d mask pixels", needle, r ? "present" : "absent", on);
        if (!r) continue;
        expected_glas++;
        g_autofree char *group = g_strdup_printf("glas-patient-%d", glas_patients[i]);
        PS_CHECK(strcmp(r->group, group) == 0 && strcmp(r->target, "gland") == 0 && r->magnification == 20);
        int w = 0, h = 0, mw = 0, mh = 0;
        g_autofree char *ip = tu_path(out, r->image);
        g_autofree char *mp = tu_path(out, r->mask);
        g_autofree uint8_t *img = ps_png_read(ip, 3, &w, &h, &error);
        g_clear_error(&error);
        g_autofree uint8_t *m = ps_png_read(mp, 1, &mw, &mh, &error);
        g_clear_error(&error);
        gboolean same = img && m && w == S && h == S && mw == S && mh == S;
        for (int y = 0; same && y < S; y++)
          for (int x = 0; x < S; x++) {
            size_t src = (size_t)(ys[ty] + y) * GW + xs[tx] + x, dst = (size_t)y * S + x;
            same = same && memcmp(img + 3 * dst, rgb + 3 * src, 3) == 0 && (m[dst] == 255) == (lab[src] != 0) &&
                   (m[dst] == 0 || m[dst] == 255);
          }
        PS_CHECK_MSG(same, "%s is not the crop at (%d, %d)", r->image, xs[tx], ys[ty]);
      }
  }
  PS_CHECK_MSG(count_source(rows, "glas") == expected_glas && expected_glas > 0, "glas %d, expected %d",
               count_source(rows, "glas"), expected_glas);
  /* The slides' tiles (128 px -> starts 0 and 16 both ways, all non-empty). */
  PS_CHECK_MSG(count_source(rows, "wsi") == 8, "wsi %d", count_source(rows, "wsi"));
  PS_CHECK(tu_find(rows, "manifest/slide-1_tiles_0_0_16_16.png", FALSE) != NULL);
  PS_CHECK(count_source(rows, "ebhi-seg") > 0);
  PS_CHECK((int)rows->len == count_source(rows, "glas") + count_source(rows, "wsi") + count_source(rows, "ebhi-seg"));

  /* Every row: square tiles of tile_size, a non-empty mask, one final <SEG>,
   * the group's split. */
  g_autoptr(GHashTable) split_of = g_hash_table_new(g_str_hash, g_str_equal);
  for (guint i = 0; i < rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(rows, i);
    PS_CHECK(r->width == S && r->height == S && strcmp(r->review, "pending") == 0);
    PS_CHECK(strcmp(r->split, ps_manifest_split_for(r->group, 1)) == 0);
    const char *before = g_hash_table_lookup(split_of, r->group);
    PS_CHECK(!before || strcmp(before, r->split) == 0);
    g_hash_table_insert(split_of, r->group, r->split);
    const char *seg = strstr(r->reasoning, "<SEG>");
    PS_CHECK_MSG(seg && strcmp(seg, "<SEG>.") == 0 && *r->query, "%s", r->reasoning);
    if (strcmp(r->source, "wsi") == 0) PS_CHECK(g_str_has_prefix(r->group, "slide-") && strstr(r->reasoning, "tumour"));
    if (strcmp(r->source, "ebhi-seg") == 0) PS_CHECK(g_str_has_prefix(r->group, "ebhi-") && r->magnification == 40);
  }

  /* The skips are logged with their reasons. */
  g_autofree char *grep1 = g_strdup_printf("grep -q 'skipped .*testB_1.*smaller than tile_size' %s/runs/grid-*/log.txt", tmp);
  g_autofree char *grep2 = g_strdup_printf("grep -q 'skipped .*slide-9/tiles/0_0.png' %s/runs/grid-*/log.txt", tmp);
  g_autofree char *grep3 = g_strdup_printf("grep -q 'skipped .*slide-8/tiles/0_0.png' %s/runs/grid-*/log.txt", tmp);
  PS_CHECK(system(grep1) == 0);
  PS_CHECK(system(grep2) == 0);
  PS_CHECK(system(grep3) == 0);

  /* `pipeline dataset check` has nothing to report; dataset.benchmark reads it. */
  const ps_component_desc *d = ps_registry_find(reg, "dataset.benchmark");
  PS_CHECK(d != NULL);
  if (!d) return;
  const ps_manifest_tools *tools = d->capability("manifest_tools");
  g_autoptr(GString) report = g_string_new(NULL);
  int64_t problems = -1;
  PS_CHECK_OK(tools->check(manifest, report, &problems, &error), error);
  PS_CHECK_MSG(problems == 0, "%s", report->str);
  g_autofree char *yaml = g_strdup_printf("{manifest: \"%s\", image_tokens: 4, max_length: 400}", manifest);
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", &error);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  g_autoptr(ps_component) ds = cfg ? ps_component_new(d, cfg, "bench", ctx, &error) : NULL;
  PS_CHECK_OK(ds != NULL, error);
  if (ds) {
    const ps_dataset_iface *iface = ps_component_capability(ds, "dataset");
    void *self = ps_component_self(ds);
    PS_CHECK_OK(ps_dataset_open(iface, self, &error), error);
    PS_CHECK(iface->size(self, "train") + iface->size(self, "val") + iface->size(self, "test") == (int64_t)rows->len);
  }

  /* Rebuilding gives the same manifest. */
  g_autofree char *first = NULL, *second = NULL;
  g_file_get_contents(manifest, &first, NULL, NULL);
  PS_CHECK_OK(build(tmp, "grid", sources, "", &error), error);
  g_file_get_contents(manifest, &second, NULL, NULL);
  PS_CHECK(first && second && strcmp(first, second) == 0);
}

static void test_resize(const char *tmp, const char *ebhi) {
  GError *error = NULL;
  g_autofree char *sources = g_strdup_printf("[\"convert:ebhi_seg:%s\"]", ebhi);
  PS_CHECK_OK(build(tmp, "resize", sources, "    tiling: resize\n", &error), error);
  g_autofree char *out = tu_path(tmp, "resize");
  g_autoptr(GPtrArray) rows = tu_rows(out);
  if (!rows) return;
  g_autoptr(GPtrArray) all = conv_list(ebhi, ".png", TRUE);
  guint pairs = 0;
  for (guint k = 0; k < all->len; k++) pairs += strstr(g_ptr_array_index(all, k), "/image/") != NULL;
  PS_CHECK_MSG(pairs > 0 && rows->len == pairs, "%u rows, %u pairs", rows->len, pairs); /* one per pair */
  for (guint i = 0; i < rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(rows, i);
    PS_CHECK(r->magnification == 20); /* 40x at 224 px shown at 112 px */
    /* The mask keeps its area: compare with the original label (>= 128). */
    const char *base = strrchr(r->image, '/') + 1; /* "images_ebhi-seg_<class>_<stem>.png" */
    const char *stem = strstr(base, "_GT");
    g_autofree char *name = stem ? g_strdup_printf("%.*s.png", (int)(strlen(stem + 1) - 4), stem + 1) : NULL;
    g_autoptr(GPtrArray) labels = conv_list(ebhi, ".png", TRUE);
    const char *label = NULL;
    for (guint k = 0; name && k < labels->len; k++) {
      const char *p = g_ptr_array_index(labels, k);
      if (strstr(p, "/label/") && g_str_has_suffix(p, name)) label = p;
    }
    PS_CHECK_MSG(label != NULL, "no label for %s", r->image);
    if (!label) continue;
    int w = 0, h = 0, mw = 0, mh = 0;
    g_autofree uint8_t *orig = ps_png_read(label, 1, &w, &h, &error);
    g_clear_error(&error);
    g_autofree char *mp = tu_path(out, r->mask);
    g_autofree uint8_t *m = ps_png_read(mp, 1, &mw, &mh, &error);
    g_clear_error(&error);
    PS_CHECK(orig && m && mw == S && mh == S);
    if (!orig || !m) continue;
    double a = 0, b = 0;
    for (int k = 0; k < w * h; k++) a += orig[k] >= 128;
    for (int k = 0; k < S * S; k++) b += m[k] == 255;
    PS_CHECK_NEAR(b / (S * S), a / (w * h), 0.02);
  }
}

static void test_bad(const char *tmp) {
  GError *error = NULL;
  PS_CHECK_FAILS_WITH(build(tmp, "bad1", "[\"convert:nosuch:/x\"]", "", &error), error, "sources[0] 'convert:nosuch:/x'");
  PS_CHECK_FAILS_WITH(build(tmp, "bad2", "[synthetic, \"slides:/x\"]", "", &error), error, "sources[1] 'slides:/x'");
  PS_CHECK_FAILS_WITH(build(tmp, "bad3", "[\"manifest:/nonexistent/manifest.jsonl\"]", "", &error), error,
                      "source 'manifest:/nonexistent/manifest.jsonl'");
  g_autofree char *bad3 = g_strdup_printf("%s/bad3/manifest.jsonl", tmp);
  PS_CHECK(!g_file_test(bad3, G_FILE_TEST_EXISTS));
}

int main(void) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_init(&error), error);
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-bench-src-XXXXXX", NULL);
  g_autofree char *glas = g_build_filename(tmp, "raw", "Warwick_QU_Dataset", NULL);
  g_autofree char *slides = g_build_filename(tmp, "slides", NULL);
  const char *data = g_getenv("PATHSEG_TEST_DATA");
  g_autofree char *ebhi = g_build_filename(data ? data : "tests/data", "ebhi-seg", NULL);
  write_glas(glas);
  write_slides(slides);
  test_grid(tmp, glas, ebhi, slides);
  test_resize(tmp, ebhi);
  test_bad(tmp);
  ps_registry_free(reg);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (ps_test_failed_ == 0 && system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return ps_test_finish();
}
