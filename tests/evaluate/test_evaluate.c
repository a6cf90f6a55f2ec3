/* test_evaluate.c — evaluation, inference and reports.
 *
 * Unit part (the plugin's sources compiled in): Dice/IoU against
 * hand-computed values; the contour tracer (closed rings, signed areas that
 * add up to the mask's pixel count, holes, diagonal pieces kept apart);
 * GeoJSON that json-glib parses.
 *
 * End-to-end part (the `pipeline` binary, argv[1]):
 *   1. trains the quickstart pipeline for a few steps on a tiny benchmark;
 *   2. `pipeline segment` on a tile and on a slide region: PNG sizes,
 *      GeoJSON validity (closed rings inside the image / region), the
 *      reasoning text and the documented <SEG> handling; clear non-zero
 *      failures for a missing model, a corrupt image, a region outside the
 *      slide;
 *   3. stage.evaluate with ready-made predictions on a 3-row manifest:
 *      per-image, per-source and overall Dice/IoU against hand-computed
 *      values, BLEU/F1 of exact answers = 100, the CSV tables;
 *   4. stage.evaluate with the trained model (zero-shot and one-shot);
 *   5. `pipeline compare` of the two runs; stage.report writes report.html
 *      with inline images and SVG (the browser check is test_report_browser). */
#include <json-glib/json-glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>

#include "evaluate.h"
#include "png_io.h"
#include "ps_test.h"
#include "tiny_split.h"

static const char *pipeline_bin;
static char *tmp;

/* ---------------------------------------------------------------------- */
/* Unit checks. */

static void test_dice_iou(void) {
  /* pred: 4 pixels, gt: 6 pixels, overlap 3 */
  const uint8_t pred[10] = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
  const uint8_t gt[10] = {0, 1, 1, 1, 1, 1, 1, 0, 0, 0};
  ev_overlap o;
  ev_overlap_count(pred, gt, 10, &o);
  PS_CHECK(o.pred == 4 && o.gt == 6 && o.inter == 3);
  PS_CHECK_NEAR(ev_dice(&o), 6.0 / 10.0, 1e-12);
  PS_CHECK_NEAR(ev_iou(&o), 3.0 / 7.0, 1e-12);
  const uint8_t zero[10] = {0};
  ev_overlap_count(zero, zero, 10, &o);
  PS_CHECK(ev_dice(&o) == 1.0 && ev_iou(&o) == 1.0); /* both empty */
  ev_overlap_count(zero, gt, 10, &o);
  PS_CHECK(ev_dice(&o) == 0.0 && ev_iou(&o) == 0.0); /* empty prediction */
}

static void check_rings_closed_inside(GPtrArray *rings, int w, int h) {
  for (guint i = 0; i < rings->len; i++) {
    const ev_ring *r = g_ptr_array_index(rings, i);
    const double *p = (const double *)r->xy->data;
    guint n = r->xy->len / 2;
    PS_CHECK(n >= 5); /* a pixel square: 4 corners + closing point */
    PS_CHECK(p[0] == p[2 * n - 2] && p[1] == p[2 * n - 1]);
    for (guint k = 0; k < n; k++)
      PS_CHECK(p[2 * k] >= 0 && p[2 * k] <= w && p[2 * k + 1] >= 0 && p[2 * k + 1] <= h);
  }
}

static void test_contours(void) {
  /* 8x7: a 5x5 square with a 1-pixel hole, and two pixels touching only
   * diagonally (two 4-connected pieces). */
  enum { W = 8, H = 7 };
  uint8_t m[H][W] = {{0}};
  for (int y = 0; y < 5; y++)
    for (int x = 0; x < 5; x++) m[y][x] = 1;
  m[2][2] = 0;
  m[5][6] = 1;
  m[6][7] = 1;
  g_autoptr(GPtrArray) rings = ev_trace_rings(&m[0][0], W, H);
  int outer = 0, holes = 0;
  double total = 0;
  for (guint i = 0; i < rings->len; i++) {
    const ev_ring *r = g_ptr_array_index(rings, i);
    outer += r->area > 0;
    holes += r->area < 0;
    total += r->area;
  }
  PS_CHECK_MSG(outer == 3 && holes == 1, "outer %d holes %d", outer, holes);
  PS_CHECK_NEAR(total, 24 + 2, 1e-9); /* signed areas add up to the pixel count */
  check_rings_closed_inside(rings, W, H);
  /* the square's outer ring is 4 corners after merging collinear points */
  for (guint i = 0; i < rings->len; i++) {
    const ev_ring *r = g_ptr_array_index(rings, i);
    if (r->area == 25) PS_CHECK(r->xy->len / 2 == 5);
  }
  g_autofree char *gj = ev_geojson(&m[0][0], W, H, 2.0, 100, 50, "t");
  g_autoptr(JsonParser) p = json_parser_new();
  GError *err = NULL;
  PS_CHECK_OK(json_parser_load_from_data(p, gj, -1, &err), err);
  JsonObject *root = json_node_get_object(json_parser_get_root(p));
  PS_CHECK(strcmp(json_object_get_string_member(root, "type"), "FeatureCollection") == 0);
  JsonArray *f = json_object_get_array_member(root, "features");
  PS_CHECK(json_array_get_length(f) == 3);
  /* the feature with a hole has two rings; coordinates are scaled and offset */
  int with_hole = 0;
  for (guint i = 0; i < json_array_get_length(f); i++) {
    JsonObject *g = json_object_get_object_member(json_array_get_object_element(f, i), "geometry");
    JsonArray *c = json_object_get_array_member(g, "coordinates");
    with_hole += json_array_get_length(c) == 2;
    JsonArray *ring = json_array_get_array_element(c, 0);
    JsonArray *pt = json_array_get_array_element(ring, 0);
    double x = json_array_get_double_element(pt, 0), y = json_array_get_double_element(pt, 1);
    PS_CHECK(x >= 100 && x <= 100 + 2 * W && y >= 50 && y <= 50 + 2 * H);
  }
  PS_CHECK(with_hole == 1);
}

/* ---------------------------------------------------------------------- */
/* Helpers for the end-to-end part. */

static int run_cmd(char **out, char **err, ...) {
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_ptr_array_add(argv, (gpointer)pipeline_bin);
  va_list ap;
  va_start(ap, err);
  for (const char *a = va_arg(ap, const char *); a; a = va_arg(ap, const char *))
    g_ptr_array_add(argv, (gpointer)a);
  va_end(ap);
  g_ptr_array_add(argv, NULL);
  int status = -1;
  GError *e = NULL;
  char *o = NULL, *r = NULL;
  if (!g_spawn_sync(tmp, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &o, &r, &status,
                    &e)) {
    fprintf(stderr, "spawn failed: %s\n", e->message);
    g_clear_error(&e);
    return -1;
  }
  if (out)
    *out = o;
  else
    g_free(o);
  if (err)
    *err = r;
  else {
    if (r && *r) fputs(r, stderr);
    g_free(r);
  }
  return g_spawn_check_wait_status(status, NULL) ? 0
                                                 : (WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

static char *path_in(const char *rel) {
  return g_build_filename(tmp, rel, NULL);
}

static JsonObject *load_json(const char *path, JsonParser **keep) {
  *keep = json_parser_new();
  GError *e = NULL;
  if (!json_parser_load_from_file(*keep, path, &e)) {
    fprintf(stderr, "%s: %s\n", path, e->message);
    g_clear_error(&e);
    return NULL;
  }
  return json_node_get_object(json_parser_get_root(*keep));
}

/* GeoJSON: a FeatureCollection whose Polygon rings are closed and inside
 * [x0, x1] x [y0, y1]. Returns the number of features, -1 when invalid. */
static int check_geojson(const char *path, double x0, double y0, double x1, double y1) {
  g_autoptr(JsonParser) p = NULL;
  JsonObject *root = load_json(path, &p);
  if (!root || g_strcmp0(json_object_get_string_member(root, "type"), "FeatureCollection") != 0)
    return -1;
  JsonArray *f = json_object_get_array_member(root, "features");
  for (guint i = 0; i < json_array_get_length(f); i++) {
    JsonObject *g = json_object_get_object_member(json_array_get_object_element(f, i), "geometry");
    if (g_strcmp0(json_object_get_string_member(g, "type"), "Polygon") != 0) return -1;
    JsonArray *rings = json_object_get_array_member(g, "coordinates");
    for (guint r = 0; r < json_array_get_length(rings); r++) {
      JsonArray *ring = json_array_get_array_element(rings, r);
      guint n = json_array_get_length(ring);
      if (n < 4) return -1;
      JsonArray *a = json_array_get_array_element(ring, 0),
                *b = json_array_get_array_element(ring, n - 1);
      if (json_array_get_double_element(a, 0) != json_array_get_double_element(b, 0) ||
          json_array_get_double_element(a, 1) != json_array_get_double_element(b, 1))
        return -1;
      for (guint k = 0; k < n; k++) {
        JsonArray *pt = json_array_get_array_element(ring, k);
        double x = json_array_get_double_element(pt, 0), y = json_array_get_double_element(pt, 1);
        if (x < x0 || x > x1 || y < y0 || y > y1) return -1;
      }
    }
  }
  return (int)json_array_get_length(f);
}

static void png_size(const char *path, int bands, int *w, int *h) {
  GError *e = NULL;
  g_autofree uint8_t *d = ps_png_read(path, bands, w, h, &e);
  if (!d) {
    fprintf(stderr, "%s\n", e->message);
    g_clear_error(&e);
    *w = *h = -1;
  }
}

/* ---------------------------------------------------------------------- */

static char *train(void) {
  g_autofree char *qs =
      g_build_filename(g_getenv("PATHSEG_SOURCE_DIR"), "pipelines", "quickstart.yaml", NULL);
  g_autofree char *out = NULL;
  int rc = run_cmd(&out, NULL, "run", qs, "--quiet", "--set", "stages.build.tiles=40", "--set",
                   "stages.build.zeroshot_tiles=8", "--set", "stages.build.patients=20", "--set",
                   "stages.build.out_dir=data/q", "--set",
                   "components.bench.with.manifest=data/q/manifest.jsonl", "--set",
                   "components.captions.with.manifest=data/q/manifest.jsonl", "--set",
                   "stages.vlm_pretrain.enabled=false", "--set",
                   "stages.ssl_pretrain.enabled=false", "--set", "stages.sft.steps=4", "--set",
                   "stages.sft.batch_size=2", "--set", "stages.sft.lr=3e-3", "--set",
                   "stages.sft.warmup_steps=1", "--set", "stages.sft.eval_every=0", "--set",
                   "stages.sft.eval_batches=1", "--set", "stages.sft.checkpoint_every=0", "--set",
                   "stages.so_grpo.enabled=false", "--set", "stages.evaluate.enabled=false", "--set",
                   "stages.report.enabled=false", NULL);
  PS_CHECK_MSG(rc == 0, "training failed (%d)", rc);
  const char *p = out ? strstr(out, "run finished: ") : NULL;
  if (!p) return NULL;
  return g_strstrip(g_strdup(p + strlen("run finished: ")));
}

static void test_segment(const char *run) {
  /* a tile of the benchmark */
  g_autofree char *out = NULL;
  int rc = run_cmd(&out, NULL, "segment", "data/q/images/000000.png", "Segment the glands.",
                   "--model", run, "--out", "seg", "--max-new-tokens", "48", NULL);
  PS_CHECK_MSG(rc == 0, "segment failed (%d)", rc);
  PS_CHECK(out && strstr(out, "reasoning: ") && strstr(out, "<SEG>: "));
  g_autofree char *mask = path_in("seg/mask.png"), *ov = path_in("seg/overlay.png");
  g_autofree char *gj = path_in("seg/mask.geojson"), *rec = path_in("seg/result.json");
  int w, h;
  png_size(mask, 1, &w, &h);
  PS_CHECK(w == 128 && h == 128);
  png_size(ov, 3, &w, &h);
  PS_CHECK(w == 128 && h == 128);
  int nf = check_geojson(gj, 0, 0, 128, 128);
  PS_CHECK_MSG(nf >= 0, "invalid GeoJSON %s", gj);
  g_autoptr(JsonParser) p = NULL;
  JsonObject *r = load_json(rec, &p);
  PS_CHECK(r != NULL);
  if (!r) return;
  const char *gen = json_object_get_string_member(r, "generated");
  const char *reasoning = json_object_get_string_member(r, "reasoning");
  gboolean has_seg = json_object_get_boolean_member(r, "has_seg");
  PS_CHECK(json_object_get_int_member(r, "generated_tokens") > 0);
  PS_CHECK(gen && *gen); /* the decoded tokens, specials kept: never empty */
  PS_CHECK(reasoning && !strstr(reasoning, "<|im_end|>") && !strstr(reasoning, "<|endoftext|>"));
  /* documented <SEG> handling: mask from the first <SEG>; none -> empty mask */
  PS_CHECK(has_seg == (strstr(gen, "<SEG>") != NULL));
  if (!has_seg)
    PS_CHECK(json_object_get_int_member(r, "mask_pixels") == 0 && nf == 0);
  else
    PS_CHECK(strstr(reasoning, "<SEG>") != NULL);
  PS_CHECK(json_object_get_int_member(r, "width") == 128);

  /* one-shot with a reference */
  rc = run_cmd(NULL, NULL, "segment", "data/q/images/000001.png", "Segment the glands.", "--model",
               run, "--reference", "data/q/images/000002.png", "data/q/masks/000002.png", "--out",
               "seg1", "--max-new-tokens", "16", NULL);
  PS_CHECK_MSG(rc == 0, "one-shot segment failed (%d)", rc);

  /* a slide region: GeoJSON in level-0 coordinates */
  g_autofree char *svs =
      g_build_filename(g_getenv("PATHSEG_TEST_DATA"), "CMU-1-Small-Region.svs", NULL);
  rc = run_cmd(NULL, NULL, "segment", "--slide", svs, "--level", "0", "--x", "300", "--y", "200",
               "--w", "96", "--h", "80", "Segment the glands.", "--model", run, "--out", "segs",
               "--max-new-tokens", "16", NULL);
  PS_CHECK_MSG(rc == 0, "slide segment failed (%d)", rc);
  g_autofree char *smask = path_in("segs/mask.png"), *sgj = path_in("segs/mask.geojson");
  png_size(smask, 1, &w, &h);
  PS_CHECK(w == 96 && h == 80);
  PS_CHECK(check_geojson(sgj, 300, 200, 396, 280) >= 0);

  /* clear failures */
  g_autofree char *err = NULL;
  rc = run_cmd(NULL, &err, "segment", "data/q/images/000000.png", "q", "--model", "no-such-run",
               NULL);
  PS_CHECK(rc == 1 && err && strstr(err, "no-such-run"));
  g_clear_pointer(&err, g_free);
  g_autofree char *bad = path_in("corrupt.png");
  g_file_set_contents(bad, "\x89PNG\r\n\x1a\nnot really", -1, NULL);
  rc = run_cmd(NULL, &err, "segment", "corrupt.png", "q", "--model", run, NULL);
  PS_CHECK(rc == 1 && err && strstr(err, "corrupt.png"));
  g_clear_pointer(&err, g_free);
  rc = run_cmd(NULL, &err, "segment", "--slide", svs, "--level", "0", "--x", "2200", "--y", "0",
               "--w", "512", "--h", "512", "q", "--model", run, NULL);
  PS_CHECK(rc == 1 && err && strstr(err, "outside"));
  g_clear_pointer(&err, g_free);
  rc = run_cmd(NULL, &err, "segment", "only-one-arg", NULL);
  PS_CHECK(rc == 2);
}

static char *test_fake_predictions(void) {
  make_tiny_split(tmp);
  g_autofree char *out = NULL;
  int rc = run_cmd(&out, NULL, "run", "tiny/eval.yaml", "--quiet", NULL);
  PS_CHECK_MSG(rc == 0, "tiny evaluation failed (%d)", rc);
  const char *p = out ? strstr(out, "run finished: ") : NULL;
  if (!p) return NULL;
  char *run = g_strstrip(g_strdup(p + strlen("run finished: ")));
  g_autofree char *rp = g_build_filename(tmp, run, "results.json", NULL);
  g_autoptr(JsonParser) jp = NULL;
  JsonObject *root = load_json(rp, &jp);
  PS_CHECK(root != NULL);
  if (!root) return run;
  JsonObject *ev = json_object_get_object_member(json_object_get_object_member(root, "evaluations"),
                                                 "tiny:zero_shot");
  PS_CHECK(ev != NULL);
  if (!ev) return run;
  /* row 0: pred 6, gt 8, inter 4 -> Dice 8/14, IoU 4/10
   * row 1: no prediction (counts as no <SEG>), gt empty -> Dice 1, IoU 1
   * row 2: pred 8, gt 16, inter 8 -> Dice 16/24, IoU 8/16 */
  const double d0 = 8.0 / 14, i0 = 4.0 / 10, d2 = 16.0 / 24, i2 = 0.5;
  PS_CHECK(json_object_get_int_member(ev, "n") == 3);
  PS_CHECK(json_object_get_int_member(ev, "no_seg") == 1);
  PS_CHECK_NEAR(json_object_get_double_member(ev, "dice"), (d0 + 1 + d2) / 3, 1e-12);
  PS_CHECK_NEAR(json_object_get_double_member(ev, "iou"), (i0 + 1 + i2) / 3, 1e-12);
  /* whole-tile reference: 2*8/(32+8), 0 (empty truth), 2*16/(32+16) */
  PS_CHECK_NEAR(json_object_get_double_member(ev, "full_tile_dice"), (0.4 + 0 + 2.0 / 3) / 3,
                1e-12);
  JsonObject *ps = json_object_get_object_member(ev, "per_source");
  PS_CHECK_NEAR(json_object_get_double_member(json_object_get_object_member(ps, "alpha"), "dice"),
                (d0 + 1) / 2, 1e-12);
  PS_CHECK_NEAR(json_object_get_double_member(json_object_get_object_member(ps, "beta"), "iou"), i2,
                1e-12);
  PS_CHECK_NEAR(json_object_get_double_member(ev, "bleu"), 100.0, 1e-9);
  PS_CHECK_NEAR(json_object_get_double_member(ev, "token_f1"), 100.0, 1e-9);
  /* the tables: Table 2 has alpha, beta and the mean in percent */
  g_autofree char *t2p = g_build_filename(tmp, run, "table2.csv", NULL);
  g_autofree char *t2 = NULL;
  PS_CHECK(g_file_get_contents(t2p, &t2, NULL, NULL));
  g_autofree char *want = g_strdup_printf("Method,alpha,beta,Mean\ntinyeval,%.2f,%.2f,%.2f\n",
                                          100 * (d0 + 1) / 2, 100 * d2, 100 * (d0 + 1 + d2) / 3);
  PS_CHECK_MSG(t2 && strcmp(t2, want) == 0, "table2.csv:\n%s\nwanted:\n%s", t2 ? t2 : "(none)",
               want);
  g_autofree char *mdp = g_build_filename(tmp, run, "results.md", NULL);
  PS_CHECK(g_file_test(mdp, G_FILE_TEST_IS_REGULAR));
  return run;
}

static char *test_model_eval(const char *model) {
  g_autofree char *qs =
      g_build_filename(g_getenv("PATHSEG_SOURCE_DIR"), "pipelines", "evaluate.yaml", NULL);
  g_autofree char *set_model = g_strdup_printf("stages.evaluate.model=%s", model);
  g_autofree char *out = NULL;
  int rc = run_cmd(
      &out, NULL, "run", qs, "--quiet", "--set",
      "components.bench.with.manifest=data/q/manifest.jsonl", "--set",
      "components.captions.with.manifest=data/q/manifest.jsonl", "--set", set_model, "--set",
      "stages.evaluate.max_examples=2", "--set", "stages.evaluate.max_new_tokens=24", "--set",
      "stages.evaluate_one_shot.max_examples=2", "--set",
      "stages.evaluate_one_shot.max_new_tokens=24", "--set", "stages.convert_ebhi.enabled=false",
      "--set", "stages.evaluate_ebhi.enabled=false", "--set",
      "stages.evaluate_ebhi_one_shot.enabled=false", NULL);
  PS_CHECK_MSG(rc == 0, "evaluate.yaml failed (%d)", rc);
  const char *p = out ? strstr(out, "run finished: ") : NULL;
  if (!p) return NULL;
  char *run = g_strstrip(g_strdup(p + strlen("run finished: ")));
  g_autofree char *rp = g_build_filename(tmp, run, "results.json", NULL);
  g_autoptr(JsonParser) jp = NULL;
  JsonObject *root = load_json(rp, &jp);
  JsonObject *evs = root ? json_object_get_object_member(root, "evaluations") : NULL;
  PS_CHECK(evs && json_object_has_member(evs, "test:zero_shot") &&
           json_object_has_member(evs, "zeroshot:zero_shot") &&
           json_object_has_member(evs, "zeroshot:one_shot"));
  if (!evs) return run;
  JsonObject *t = json_object_get_object_member(evs, "test:zero_shot");
  double dice = json_object_get_double_member(t, "dice"),
         iou = json_object_get_double_member(t, "iou");
  PS_CHECK(json_object_get_int_member(t, "n") == 2);
  PS_CHECK(dice >= 0 && dice <= 1 && iou >= 0 && iou <= dice + 1e-12); /* IoU <= Dice per image */
  JsonObject *o = json_object_get_object_member(evs, "zeroshot:one_shot");
  JsonArray *ex = json_object_get_array_member(o, "examples");
  PS_CHECK(json_array_get_length(ex) == 2);
  PS_CHECK(json_object_has_member(json_array_get_object_element(ex, 0), "reference"));
  g_autofree char *html = g_build_filename(tmp, run, "report.html", NULL);
  g_autofree char *text = NULL;
  PS_CHECK(g_file_get_contents(html, &text, NULL, NULL));
  PS_CHECK(text && strstr(text, "<img") && strstr(text, "data:image/png;base64,") &&
           strstr(text, "Table 3"));
  /* self-contained: nothing is fetched */
  PS_CHECK(text && !strstr(text, "src=\"http") && !strstr(text, "href=\"http") &&
           !strstr(text, "<link"));
  return run;
}

static void test_compare(const char *a, const char *b) {
  g_autofree char *out = NULL;
  int rc = run_cmd(&out, NULL, "compare", a, b, "--csv", "cmp.csv", NULL);
  PS_CHECK_MSG(rc == 0, "compare failed (%d)", rc);
  g_autofree char *ba = g_path_get_basename(a), *bb = g_path_get_basename(b);
  PS_CHECK(out && strstr(out, ba) && strstr(out, bb) && strstr(out, "| Run |"));
  g_autofree char *csvp = path_in("cmp.csv");
  g_autofree char *csv = NULL;
  PS_CHECK(g_file_get_contents(csvp, &csv, NULL, NULL));
  g_auto(GStrv) lines = csv ? g_strsplit(csv, "\n", -1) : NULL;
  PS_CHECK(lines && g_strv_length(lines) == 4 && g_str_has_prefix(lines[0], "Run,Dice,IoU"));
  /* The best validation Dice is the last validating stage's: an RL stage's
   * greedy Dice (0.6 at step 10), not its SFT stage's teacher-forced 0.9. */
  g_autofree char *staged = path_in("staged-run");
  g_mkdir_with_parents(staged, 0755);
  g_autofree char *mpath = g_build_filename(staged, "metrics.jsonl", NULL);
  PS_CHECK(g_file_set_contents(mpath,
                               "{\"stage\": \"sft\", \"step\": 100, \"val_seg_loss.dice\": 0.9}\n"
                               "{\"stage\": \"so_grpo\", \"step\": 0, \"val_dice\": 0.5}\n"
                               "{\"stage\": \"so_grpo\", \"step\": 10, \"val_dice\": 0.6}\n"
                               "{\"stage\": \"so_grpo\", \"step\": 20, \"val_dice\": 0.55}\n",
                               -1, NULL));
  g_autofree char *out2 = NULL;
  rc = run_cmd(&out2, NULL, "compare", staged, "--csv", "cmp2.csv", NULL);
  g_autofree char *csv2p = path_in("cmp2.csv");
  g_autofree char *csv2 = NULL;
  PS_CHECK(rc == 0 && g_file_get_contents(csv2p, &csv2, NULL, NULL));
  g_auto(GStrv) rows2 = csv2 ? g_strsplit(csv2, "\n", -1) : NULL;
  g_auto(GStrv) cells = rows2 && rows2[0] && rows2[1] ? g_strsplit(rows2[1], ",", -1) : NULL;
  g_auto(GStrv) heads = rows2 && rows2[0] ? g_strsplit(rows2[0], ",", -1) : NULL;
  int best_col = -1;
  for (int c = 0; heads && heads[c]; c++)
    if (strcmp(heads[c], "Best val Dice") == 0) best_col = c;
  PS_CHECK_MSG(best_col >= 0 && cells && (int)g_strv_length(cells) > best_col + 1 &&
                   strcmp(cells[best_col], "60.00") == 0 && strcmp(cells[best_col + 1], "10") == 0,
               "best val Dice row: %s", rows2 && rows2[1] ? rows2[1] : "(none)");

  g_autofree char *err = NULL;
  rc = run_cmd(NULL, &err, "compare", "no-such-run", NULL);
  PS_CHECK(rc == 1 && err && strstr(err, "no-such-run"));
}

int main(int argc, char **argv) {
  GError *e = NULL;
  PS_CHECK_OK(ps_png_init(&e), e);
  test_dice_iou();
  test_contours();
  if (argc < 2) {
    fprintf(stderr, "usage: test_evaluate PIPELINE_BINARY\n");
    return 2;
  }
  pipeline_bin = argv[1];
  tmp = g_dir_make_tmp("pathseg-eval-XXXXXX", &e);
  PS_CHECK_OK(tmp != NULL, e);
  if (!tmp) return ps_test_finish();
  g_autofree char *run = train();
  PS_CHECK(run != NULL);
  if (run) test_segment(run);
  g_autofree char *fake = test_fake_predictions();
  g_autofree char *evrun = run ? test_model_eval(run) : NULL;
  if (fake && evrun) test_compare(fake, evrun);
  if (g_getenv("PATHSEG_KEEP_TMP"))
    fprintf(stderr, "kept %s\n", tmp);
  else {
    g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  }
  g_free(tmp);
  return ps_test_finish();
}
