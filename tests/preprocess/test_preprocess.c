/* test_preprocess.c — stage.preprocess_slides on copies of the CMU-1 small
 * region (20x, 0.499 um/px), in this process with two tile threads:
 *   - tile counts equal the grid tiles whose tissue fraction (Otsu mask of
 *     the 16 px block-mean thumbnail, recomputed here) is >= min_tissue;
 *   - tile pixels equal ps_slide_read_region at the native level (20x);
 *     10x tiles are the 2x2 reduction of the level-0 region;
 *   - a GeoJSON (polygon with a hole, exclusion class, a polygon outside the
 *     slide) and an ASAP XML (triangle, exclusion group) rasterise to the
 *     masks computed analytically from pixel centres;
 *   - a rerun writes nothing; the merged manifest has every slide in one
 *     split only; a slide without mpp fails with a clear error unless `mpp`
 *     is given; a truncated slide is a logged skip. */
#include <glib/gstdio.h>
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "png_io.h"
#include "ps_test.h"
#include "slide.h"

static ps_registry *reg;

static gboolean run_stage(const char *dir, const char *const *extra, char **log, GError **error) {
  g_autofree char *yaml = ps_test_source_path("pipelines/preprocess_slides.yaml");
  g_autofree char *runs = g_strdup_printf("run_dir=%s/runs", dir);
  GPtrArray *sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup(runs));
  for (size_t i = 0; extra[i]; i++) g_ptr_array_add(sets, g_strdup(extra[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  g_ptr_array_unref(sets);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  g_autofree char *run_dir = NULL;
  gboolean ok = ps_run_execute(p, reg, &opts, &run_dir, error);
  if (log && run_dir) {
    g_autofree char *path = g_build_filename(run_dir, "log.txt", NULL);
    g_file_get_contents(path, log, NULL, NULL);
  }
  return ok;
}

/* ---------------------------------------------------------------------- */
/* Expected masks, from pixel centres (level-0 px). */

static gboolean in_rect(double x, double y, double x0, double y0, double x1, double y1) {
  return x >= x0 && x < x1 && y >= y0 && y < y1;
}
/* Slide a (GeoJSON): rectangle with a rectangular hole, minus an exclusion rectangle. */
static gboolean expect_a(double x, double y) {
  return in_rect(x, y, 800, 1100, 1400, 1700) && !in_rect(x, y, 900, 1200, 1000, 1300) &&
         !in_rect(x, y, 1200, 1500, 1600, 1600);
}
/* Slide b (ASAP): right triangle (1000,1800) (1600.5,1800) (1000,2400.5), minus group _2. */
static gboolean expect_b(double x, double y) {
  return x >= 1000 && y >= 1800 && x + y < 3400.5 && !in_rect(x, y, 1100, 1900, 1200, 2000);
}

static const char geojson[] =
    "{\"type\": \"FeatureCollection\", \"features\": ["
    " {\"type\": \"Feature\", \"properties\": {\"classification\": {\"name\": \"Tumor\"}},"
    "  \"geometry\": {\"type\": \"Polygon\", \"coordinates\": ["
    "   [[800, 1100], [1400, 1100], [1400, 1700], [800, 1700], [800, 1100]],"
    "   [[900, 1200], [1000, 1200], [1000, 1300], [900, 1300], [900, 1200]]]}},"
    " {\"type\": \"Feature\", \"properties\": {\"classification\": {\"name\": \"Exclusion\"}},"
    "  \"geometry\": {\"type\": \"MultiPolygon\", \"coordinates\": ["
    "   [[[1200, 1500], [1600, 1500], [1600, 1600], [1200, 1600]]]]}},"
    " {\"type\": \"Feature\", \"properties\": {\"classification\": {\"name\": \"Tumor\"}},"
    "  \"geometry\": {\"type\": \"Polygon\", \"coordinates\": ["
    "   [[5000, 5000], [5100, 5000], [5100, 5100], [5000, 5000]]]}}]}";

static const char asap[] =
    "<?xml version=\"1.0\"?>\n<ASAP_Annotations><Annotations>\n"
    "<Annotation Name=\"t\" Type=\"Polygon\" PartOfGroup=\"_0\" Color=\"#F4FA58\"><Coordinates>\n"
    " <Coordinate Order=\"2\" X=\"1000\" Y=\"2400.5\"/>\n"
    " <Coordinate Order=\"0\" X=\"1000\" Y=\"1800\"/>\n"
    " <Coordinate Order=\"1\" X=\"1600,5\" Y=\"1800\"/>\n"
    "</Coordinates></Annotation>\n"
    "<Annotation Name=\"x\" Type=\"Rectangle\" PartOfGroup=\"_2\"><Coordinates>\n"
    " <Coordinate Order=\"0\" X=\"1100\" Y=\"1900\"/><Coordinate Order=\"1\" X=\"1200\" Y=\"1900\"/>\n"
    " <Coordinate Order=\"2\" X=\"1200\" Y=\"2000\"/><Coordinate Order=\"3\" X=\"1100\" Y=\"2000\"/>\n"
    "</Coordinates></Annotation>\n"
    "<Annotation Name=\"p\" Type=\"Dot\" PartOfGroup=\"_0\"><Coordinates>\n"
    " <Coordinate Order=\"0\" X=\"10\" Y=\"10\"/></Coordinates></Annotation>\n"
    "</Annotations><AnnotationGroups><Group Name=\"_0\"/><Group Name=\"_2\"/></AnnotationGroups></ASAP_Annotations>\n";

/* ---------------------------------------------------------------------- */

typedef struct {
  int64_t x, y;
} pos;

/* Grid tiles (T px, level 0) with tissue fraction >= 0.5 of the 16 px Otsu mask. */
static GArray *expected_tiles(const char *slide_path, int T) {
  GError *error = NULL;
  GArray *out = g_array_new(FALSE, FALSE, sizeof(pos));
  g_autoptr(ps_slide) s = ps_slide_open(slide_path, &error);
  PS_CHECK_OK(s != NULL, error);
  if (!s) return out;
  uint8_t *mask = NULL;
  int64_t mw = 0, mh = 0, W = 0, H = 0;
  double thr = 0;
  PS_CHECK_OK(ps_slide_tissue_mask(s, 0, 16, &mask, &mw, &mh, &thr, &error), error);
  ps_slide_level_size(s, 0, &W, &H);
  for (int64_t y = 0; y + T <= H; y += T)
    for (int64_t x = 0; x + T <= W; x += T) {
      int on = 0, all = 0;
      for (int64_t cy = y / 16; cy < MIN((y + T + 15) / 16, mh); cy++)
        for (int64_t cx = x / 16; cx < MIN((x + T + 15) / 16, mw); cx++) on += mask[cy * mw + cx], all++;
      if (all && 2 * on >= all) g_array_append_val(out, ((pos){x, y}));
    }
  g_free(mask);
  return out;
}

static int count_pngs(const char *dir) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  int n = 0;
  for (const char *name; d && (name = g_dir_read_name(d));) n += g_str_has_suffix(name, ".png");
  return n;
}

/* Sum (mod 2^64) of the mtimes (ns) and count of every file under dir. */
static void scan_mtimes(const char *dir, uint64_t *sum, int *count) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  for (const char *name; d && (name = g_dir_read_name(d));) {
    g_autofree char *p = g_build_filename(dir, name, NULL);
    struct stat st;
    if (stat(p, &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      scan_mtimes(p, sum, count);
    } else {
      *sum += (uint64_t)st.st_mtim.tv_sec * 1000000000u + (uint64_t)st.st_mtim.tv_nsec; /* wraps */
      (*count)++;
    }
  }
}

static void check_mask(const char *out, const char *stem, pos p, int T, gboolean (*expect)(double, double),
                       int *mismatches, int *on) {
  GError *error = NULL;
  g_autofree char *path = g_strdup_printf("%s/%s/masks/%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", out, stem,
                                          p.x, p.y);
  int w = 0, h = 0;
  g_autofree uint8_t *m = ps_png_read(path, 1, &w, &h, &error);
  PS_CHECK_OK(m != NULL && w == T && h == T, error);
  if (!m) return;
  for (int j = 0; j < T; j++)
    for (int i = 0; i < T; i++) {
      gboolean want = expect(p.x + i + 0.5, p.y + j + 0.5);
      *mismatches += want != (m[j * T + i] == 255) || (m[j * T + i] != 0 && m[j * T + i] != 255);
      *on += want;
    }
}

/* A copy of `from`, cut to `keep` bytes (0: all), with `find` replaced and bytes [zero0, zero1) zeroed. */
static void copy_file(const char *from, const char *to, gsize keep, const char *find, const char *replace, gsize zero0,
                      gsize zero1) {
  g_autofree char *data = NULL;
  gsize len = 0;
  PS_CHECK(g_file_get_contents(from, &data, &len, NULL));
  if (!data) return;
  if (keep && keep < len) len = keep;
  for (gsize i = 0; find && i + strlen(find) <= len; i++)
    if (memcmp(data + i, find, strlen(find)) == 0) memcpy(data + i, replace, strlen(replace));
  if (zero1 > zero0 && zero1 <= len) memset(data + zero0, 0, zero1 - zero0);
  PS_CHECK(g_file_set_contents(to, data, (gssize)len, NULL));
}

int main(void) {
  GError *error = NULL;
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  PS_CHECK_OK(ps_png_init(&error), error);
  g_autofree char *src = ps_test_source_path("tests/data/CMU-1-Small-Region.svs");
  g_autofree char *tmp = g_dir_make_tmp("ps-preprocess-XXXXXX", NULL);
  g_autofree char *out = g_build_filename(tmp, "out", NULL);
  const char *stems[] = {"a", "b", "c"};
  for (int i = 0; i < 3; i++) {
    g_autofree char *link = g_strdup_printf("%s/%s.svs", tmp, stems[i]);
    PS_CHECK(symlink(src, link) == 0);
  }
  g_autofree char *bad = g_strdup_printf("%s/bad.svs", tmp);
  copy_file(src, bad, 200000, NULL, NULL, 0, 0); /* truncated: OpenSlide cannot open it */
  /* Tile data zeroed (the IFDs, at 1.27 MB, stay): it opens, but its pixels cannot be read. */
  g_autofree char *zero = g_strdup_printf("%s/zero.svs", tmp);
  copy_file(src, zero, 0, NULL, NULL, 300000, 1200000);
  g_autofree char *ga = g_strdup_printf("%s/a.geojson", tmp), *xb = g_strdup_printf("%s/b.xml", tmp);
  PS_CHECK(g_file_set_contents(ga, geojson, -1, NULL) && g_file_set_contents(xb, asap, -1, NULL));

  g_autofree char *s_slides = g_strdup_printf("stages.preprocess.slides=[%s/a.svs, %s/b.svs, %s/c.svs, %s, %s]", tmp,
                                              tmp, tmp, bad, zero);
  g_autofree char *s_ann = g_strdup_printf("stages.preprocess.annotations=[%s, %s, \"\", \"\", \"\"]", ga, xb);
  g_autofree char *s_out = g_strdup_printf("stages.preprocess.out_dir=%s", out);
  const char *sets[] = {s_slides, s_ann, s_out, "stages.preprocess.threads=2", "stages.preprocess.keep_empty=true",
                        NULL};
  g_autofree char *log = NULL;
  PS_CHECK_OK(run_stage(tmp, sets, &log, &error), error);
  PS_CHECK_MSG(log && strstr(log, "skipped: slide") && strstr(log, "bad.svs: cannot open"), "no logged skip of bad.svs:\n%s", log);
  PS_CHECK_MSG(log && strstr(log, "skipped: slide") && strstr(log, "zero.svs: cannot read pixels"),
               "no logged skip of zero.svs:\n%s", log);
  PS_CHECK_MSG(log && strstr(log, "outside the slide"), "no logged skip of the outside polygon");
  g_autofree char *bad_done = g_build_filename(out, "bad", "done", NULL);
  g_autofree char *zero_done = g_build_filename(out, "zero", "done", NULL);
  g_autofree char *zero_manifest = g_build_filename(out, "zero", "manifest.jsonl", NULL);
  PS_CHECK(!g_file_test(bad_done, G_FILE_TEST_EXISTS) && !g_file_test(zero_done, G_FILE_TEST_EXISTS));
  PS_CHECK(!g_file_test(zero_manifest, G_FILE_TEST_EXISTS));

  /* Tile counts against the tissue mask; pixels against read_region at level 0 (20x = native). */
  g_autoptr(GArray) want = expected_tiles(src, 256);
  PS_CHECK_MSG(want->len > 5, "%u tissue tiles", want->len);
  for (int i = 0; i < 3; i++) {
    g_autofree char *tiles = g_build_filename(out, stems[i], "tiles", NULL);
    g_autofree char *masks = g_build_filename(out, stems[i], "masks", NULL);
    int nt = count_pngs(tiles), nm = count_pngs(masks);
    PS_CHECK_MSG(nt == (int)want->len && nm == nt, "slide %s: %d tiles, %d masks, want %u", stems[i], nt, nm,
                 want->len);
    for (guint k = 0; k < want->len; k++) {
      pos p = g_array_index(want, pos, k);
      g_autofree char *t = g_strdup_printf("%s/%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", tiles, p.x, p.y);
      PS_CHECK_MSG(g_file_test(t, G_FILE_TEST_IS_REGULAR), "missing %s", t);
    }
  }
  g_autoptr(ps_slide) slide = ps_slide_open(src, &error);
  PS_CHECK_OK(slide != NULL, error);
  g_autofree uint8_t *rgba = g_malloc(256 * 256 * 4);
  for (guint k = 0; slide && k < want->len; k += MAX(1, want->len / 4)) {
    pos p = g_array_index(want, pos, k);
    g_autofree char *t = g_strdup_printf("%s/c/tiles/%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", out, p.x, p.y);
    int w = 0, h = 0;
    g_autofree uint8_t *rgb = ps_png_read(t, 3, &w, &h, &error);
    PS_CHECK_OK(rgb && w == 256 && h == 256, error);
    PS_CHECK_OK(ps_slide_read_region(slide, p.x, p.y, 0, 256, 256, rgba, &error), error);
    int diff = 0;
    for (int q = 0; rgb && q < 256 * 256; q++) diff += memcmp(rgb + 3 * q, rgba + 4 * q, 3) != 0;
    PS_CHECK_MSG(diff == 0, "tile %s: %d pixels differ from read_region", t, diff);
  }

  /* Masks: the analytic masks on every tile of a and b; c's masks are the tissue mask. */
  int bad_a = 0, on_a = 0, bad_b = 0, on_b = 0;
  for (guint k = 0; k < want->len; k++) {
    check_mask(out, "a", g_array_index(want, pos, k), 256, expect_a, &bad_a, &on_a);
    check_mask(out, "b", g_array_index(want, pos, k), 256, expect_b, &bad_b, &on_b);
  }
  PS_CHECK_MSG(bad_a == 0 && on_a > 10000, "GeoJSON mask: %d pixels wrong of %d on", bad_a, on_a);
  PS_CHECK_MSG(bad_b == 0 && on_b > 10000, "ASAP mask: %d pixels wrong of %d on", bad_b, on_b);

  /* The merged manifest: all rows, paths relative to out, each slide in one split. */
  g_autofree char *manifest = g_build_filename(out, "manifest.jsonl", NULL);
  g_autofree char *text = NULL;
  PS_CHECK(g_file_get_contents(manifest, &text, NULL, NULL));
  if (text) {
    g_auto(GStrv) lines = g_strsplit(g_strstrip(text), "\n", -1);
    PS_CHECK_MSG(g_strv_length(lines) == 3 * want->len, "%u rows", g_strv_length(lines));
    g_autoptr(GHashTable) split_of = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
    int missing = 0, seg = 0, mag = 0;
    for (size_t i = 0; lines[i]; i++) {
      char *pp = strstr(lines[i], "\"patient\":\""), *sp = strstr(lines[i], "\"split\":\"");
      char *ip = strstr(lines[i], "\"image\":\"");
      PS_CHECK(pp && sp && ip);
      if (!pp || !sp || !ip) continue;
      g_autofree char *patient = g_strndup(pp + 11, strcspn(pp + 11, "\""));
      g_autofree char *split = g_strndup(sp + 9, strcspn(sp + 9, "\""));
      g_autofree char *image = g_strndup(ip + 9, strcspn(ip + 9, "\""));
      g_autofree char *ipath = g_build_filename(out, image, NULL);
      missing += !g_file_test(ipath, G_FILE_TEST_IS_REGULAR) || !g_str_has_prefix(image, patient);
      const char *before = g_hash_table_lookup(split_of, patient);
      PS_CHECK_MSG(!before || strcmp(before, split) == 0, "slide %s in %s and %s", patient, before, split);
      g_hash_table_replace(split_of, g_strdup(patient), g_strdup(split));
      seg += strstr(lines[i], "<SEG>") != NULL;
      mag += strstr(lines[i], "\"magnification\":20") != NULL;
    }
    PS_CHECK(missing == 0 && g_hash_table_size(split_of) == 3);
    PS_CHECK(seg == (int)(3 * want->len) && mag == seg);
  }

  /* Resume: a second run writes nothing (same files, same mtimes). */
  uint64_t sum1 = 0, sum2 = 0;
  int n1 = 0, n2 = 0;
  scan_mtimes(out, &sum1, &n1);
  g_usleep(50000);
  PS_CHECK_OK(run_stage(tmp, sets, NULL, &error), error);
  scan_mtimes(out, &sum2, &n2);
  PS_CHECK_MSG(n1 == n2 && sum1 == sum2, "rerun changed files: %d -> %d files", n1, n2);

  /* A half-done slide resumes: remove c's done marker and a tile; only that tile is rewritten. */
  {
    g_autofree char *done = g_build_filename(out, "c", "done", NULL);
    pos p = g_array_index(want, pos, 0);
    g_autofree char *t = g_strdup_printf("%s/c/tiles/%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", out, p.x, p.y);
    g_autofree char *cm = g_build_filename(out, "c", "manifest.jsonl", NULL);
    g_autofree char *before = NULL, *after = NULL;
    g_file_get_contents(cm, &before, NULL, NULL);
    PS_CHECK(g_unlink(done) == 0 && g_unlink(t) == 0);
    g_autofree char *s_c = g_strdup_printf("stages.preprocess.slides=[%s/c.svs]", tmp);
    const char *sets_c[] = {s_c, s_out, "stages.preprocess.threads=2", NULL};
    g_autofree char *log_c = NULL;
    PS_CHECK_OK(run_stage(tmp, sets_c, &log_c, &error), error);
    PS_CHECK(g_file_test(t, G_FILE_TEST_IS_REGULAR) && g_file_test(done, G_FILE_TEST_IS_REGULAR));
    PS_CHECK_MSG(log_c && strstr(log_c, "(1 written"), "resume log:\n%s", log_c);
    g_file_get_contents(cm, &after, NULL, NULL);
    PS_CHECK(before && after && strcmp(before, after) == 0);
    /* Other settings into the same out_dir: refused, not mixed. */
    const char *sets_t[] = {s_c, s_out, "stages.preprocess.tile_size=128", NULL};
    PS_CHECK_FAILS_WITH(run_stage(tmp, sets_t, NULL, &error), error, "was made with other settings");
  }

  /* 10x with mpp 0.5 given: 128 px tiles covering 256 level-0 px, the 2x2 reduction of the region. */
  {
    g_autofree char *o10 = g_build_filename(tmp, "out10", NULL);
    g_autofree char *s_c = g_strdup_printf("stages.preprocess.slides=[%s/c.svs]", tmp);
    g_autofree char *s_o = g_strdup_printf("stages.preprocess.out_dir=%s", o10);
    const char *sets10[] = {s_c, s_o, "stages.preprocess.magnification=10", "stages.preprocess.tile_size=128",
                            "stages.preprocess.mpp=0.5", NULL};
    PS_CHECK_OK(run_stage(tmp, sets10, NULL, &error), error);
    g_autofree char *tiles = g_build_filename(o10, "c", "tiles", NULL);
    PS_CHECK_MSG(count_pngs(tiles) == (int)want->len, "10x: %d tiles, want %u", count_pngs(tiles), want->len);
    pos p = g_array_index(want, pos, want->len / 2);
    g_autofree char *t = g_strdup_printf("%s/%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", tiles, p.x, p.y);
    int w = 0, h = 0;
    g_autofree uint8_t *rgb = ps_png_read(t, 3, &w, &h, &error);
    PS_CHECK_OK(rgb && w == 128 && h == 128, error);
    if (rgb && slide && ps_slide_read_region(slide, p.x, p.y, 0, 256, 256, rgba, &error)) {
      double mad = 0;
      for (int j = 0; j < 128; j++)
        for (int i = 0; i < 128; i++)
          for (int c = 0; c < 3; c++) {
            double m = 0;
            for (int dy = 0; dy < 2; dy++)
              for (int dx = 0; dx < 2; dx++) m += rgba[((2 * j + dy) * 256 + 2 * i + dx) * 4 + c] / 4.0;
            mad += fabs(m - rgb[(j * 128 + i) * 3 + c]);
          }
      mad /= 128.0 * 128 * 3;
      PS_CHECK_MSG(mad < 8.0, "10x tile differs from the 2x2 mean by %.2f on average", mad);
    }
  }

  /* No mpp: a clear error naming the slide; the `mpp` key overrides. */
  {
    g_autofree char *nompp = g_strdup_printf("%s/nompp.svs", tmp);
    copy_file(src, nompp, 0, "MPP = ", "MPQ = ", 0, 0);
    g_autofree char *s_n = g_strdup_printf("stages.preprocess.slides=[%s]", nompp);
    g_autofree char *s_o = g_strdup_printf("stages.preprocess.out_dir=%s/outn", tmp);
    const char *sets_n[] = {s_n, s_o, "stages.preprocess.tile_size=512", NULL};
    g_autofree char *log_n = NULL;
    PS_CHECK_FAILS_WITH(run_stage(tmp, sets_n, &log_n, &error), error, "nompp.svs: no microns-per-pixel");
    PS_CHECK_MSG(log_n && strstr(log_n, "nompp.svs") && strstr(log_n, "mpp"), "no-mpp log:\n%s", log_n);
    const char *sets_m[] = {s_n, s_o, "stages.preprocess.tile_size=512", "stages.preprocess.mpp=0.5", NULL};
    PS_CHECK_OK(run_stage(tmp, sets_m, NULL, &error), error);
  }

  /* Nothing usable at all: a non-zero exit. */
  {
    g_autofree char *s_b = g_strdup_printf("stages.preprocess.slides=[%s]", bad);
    g_autofree char *s_o = g_strdup_printf("stages.preprocess.out_dir=%s/outb", tmp);
    const char *sets_b[] = {s_b, s_o, NULL};
    PS_CHECK_FAILS_WITH(run_stage(tmp, sets_b, NULL, &error), error, "no usable slide");
  }
  ps_registry_free(reg);
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(cmd) != 0) g_printerr("cannot remove %s\n", tmp);
  return ps_test_finish();
}
