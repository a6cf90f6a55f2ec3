/* report.c — `stage.report`: RUN/report.html, one self-contained page (no
 * network: inline CSS, inline SVG, images as data: URIs) with the training
 * curves of metrics.jsonl, the result tables and the sample overlays of
 * stage.evaluate with their queries and reasoning chains. */
#include <math.h>
#include <pathseg/error.h>
#include <string.h>

#include "evaluate.h"

typedef struct {
  char *title;
  int64_t samples;
} ev_report;

const ps_config_key ev_report_config[] = {
    {"title", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "page title; empty: the pipeline's name"},
    {"samples", PS_TYPE_INT, "12", 0, 10000, NULL, "overlays shown at most"},
    {NULL},
};

void ev_report_destroy(void *self) {
  ev_report *r = self;
  if (!r) return;
  g_free(r->title);
  g_free(r);
}

void *ev_report_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  (void)error;
  ev_report *r = g_new0(ev_report, 1);
  r->title = str_or_empty(cfg, "title");
  r->samples = ps_config_int(cfg, "samples");
  return r;
}

/* One curve: (step, value) pairs of one key of one stage. */
typedef struct {
  char *stage, *key;
  GArray *xy; /* double pairs */
} series;

static void series_free(gpointer p) {
  series *s = p;
  g_free(s->stage);
  g_free(s->key);
  g_array_unref(s->xy);
  g_free(s);
}

static gboolean plotted(const char *key) {
  return strcmp(key, "stage") && strcmp(key, "step") && strcmp(key, "time") &&
         strcmp(key, "examples_per_s") && !g_str_has_prefix(key, "eval/");
}

/* Every numeric key of RUN/metrics.jsonl, per stage, in order of appearance,
 * appended to `all` (stage names prefixed with `label` when given). */
static void read_series(const char *run_dir, const char *label, GPtrArray *all) {
  g_autofree char *path = g_build_filename(run_dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return;
  g_autoptr(GHashTable) index = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(JsonParser) parser = json_parser_new();
  for (size_t i = 0; lines[i]; i++) {
    if (!*lines[i] || !json_parser_load_from_data(parser, lines[i], -1, NULL)) continue;
    JsonNode *root = json_parser_get_root(parser);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) continue;
    JsonObject *o = json_node_get_object(root);
    const char *st =
        json_object_has_member(o, "stage") ? json_object_get_string_member(o, "stage") : "run";
    g_autofree char *stage = label ? g_strdup_printf("%s / %s", label, st) : g_strdup(st);
    double step = json_object_has_member(o, "step") ? json_object_get_double_member(o, "step") : 0;
    g_autoptr(GList) keys = json_object_get_members(o);
    for (GList *l = keys; l; l = l->next) {
      JsonNode *v = json_object_get_member(o, l->data);
      if (!plotted(l->data) || json_node_get_value_type(v) == G_TYPE_STRING ||
          !JSON_NODE_HOLDS_VALUE(v))
        continue;
      double y = json_node_get_double(v);
      if (!isfinite(y)) continue;
      g_autofree char *k = g_strdup_printf("%s\n%s", stage ? stage : "run", (char *)l->data);
      series *s = g_hash_table_lookup(index, k);
      if (!s) {
        s = g_new0(series, 1);
        s->stage = g_strdup(stage ? stage : "run");
        s->key = g_strdup(l->data);
        s->xy = g_array_new(FALSE, FALSE, sizeof(double));
        g_ptr_array_add(all, s);
        g_hash_table_insert(index, g_strdup(k), s);
      }
      double p[2] = {step, y};
      g_array_append_vals(s->xy, p, 2);
    }
  }
}

static void svg_chart(GString *h, const series *s) {
  const double W = 300, H = 170, L = 48, R = 8, T = 22, B = 26;
  guint n = s->xy->len / 2;
  const double *p = (const double *)s->xy->data;
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (guint i = 0; i < n; i++) {
    x0 = fmin(x0, p[2 * i]), x1 = fmax(x1, p[2 * i]);
    y0 = fmin(y0, p[2 * i + 1]), y1 = fmax(y1, p[2 * i + 1]);
  }
  if (x1 <= x0) x1 = x0 + 1;
  if (y1 <= y0) y1 = y0 + (y0 == 0 ? 1 : fabs(y0) * 0.1);
  g_autofree char *title = g_markup_printf_escaped("%s: %s", s->stage, s->key);
  g_string_append_printf(
      h,
      "<svg class=\"chart\" xmlns=\"http://www.w3.org/2000/svg\" width=\"%g\" height=\"%g\" "
      "viewBox=\"0 0 %g %g\"><text x=\"%g\" y=\"14\" class=\"ct\">%s</text>",
      W, H, W, H, L, title);
  g_string_append_printf(h, "<path class=\"axis\" d=\"M%g %g L%g %g L%g %g\"/>", L, T, L, H - B,
                         W - R, H - B);
  g_string_append_printf(h,
                         "<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"end\">%.3g</text>",
                         L - 3, T + 8, y1);
  g_string_append_printf(h,
                         "<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"end\">%.3g</text>",
                         L - 3, H - B, y0);
  g_string_append_printf(h, "<text x=\"%g\" y=\"%g\" class=\"tick\">%.0f</text>", L, H - 8, x0);
  g_string_append_printf(
      h, "<text x=\"%g\" y=\"%g\" class=\"tick\" text-anchor=\"end\">step %.0f</text>", W - R,
      H - 8, x1);
  g_string_append(h, "<path class=\"line\" d=\"");
  for (guint i = 0; i < n; i++) {
    double x = L + (p[2 * i] - x0) / (x1 - x0) * (W - L - R);
    double y = (H - B) - (p[2 * i + 1] - y0) / (y1 - y0) * (H - B - T);
    g_string_append_printf(h, "%s%.1f %.1f", i ? " L" : "M", x, y);
  }
  g_string_append(h, "\"/>");
  if (n == 1) {
    double y = (H - B) - (p[1] - y0) / (y1 - y0) * (H - B - T);
    g_string_append_printf(h, "<circle cx=\"%g\" cy=\"%.1f\" r=\"3\" class=\"dot\"/>", L + 2, y);
  }
  g_string_append(h, "</svg>\n");
}

static const char *CSS =
    "body{font-family:sans-serif;margin:24px;color:#222;max-width:1200px}"
    "h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px}"
    "table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #bbb;padding:3px 8px;"
    "text-align:right}th{background:#eee}td:first-child{text-align:left}"
    ".chart{border:1px solid #ddd;margin:4px;background:#fff}.axis{stroke:#888;fill:none}"
    ".line{stroke:#1565c0;stroke-width:1.5;fill:none}.dot{fill:#1565c0}.ct{font-size:12px}"
    ".tick{font-size:10px;fill:#555}.samples{display:flex;flex-wrap:wrap}"
    ".sample{width:280px;margin:6px;font-size:12px}.sample "
    "img{width:256px;image-rendering:pixelated;"
    "border:1px solid #999}.reason{background:#f6f6f6;padding:4px}";

static void add_samples(GString *h, JsonObject *results, const char *run_dir, int64_t max) {
  JsonObject *evals = json_object_has_member(results, "evaluations")
                          ? json_object_get_object_member(results, "evaluations")
                          : NULL;
  g_autoptr(GList) keys = evals ? json_object_get_members(evals) : NULL;
  int64_t shown = 0;
  g_string_append(h, "<div class=\"samples\">\n");
  for (GList *l = keys; l && shown < max; l = l->next) {
    JsonObject *ev = json_object_get_object_member(evals, l->data);
    JsonArray *s =
        json_object_has_member(ev, "samples") ? json_object_get_array_member(ev, "samples") : NULL;
    for (guint i = 0; s && i < json_array_get_length(s) && shown < max; i++) {
      JsonObject *o = json_array_get_object_element(s, i);
      g_autofree char *path =
          g_build_filename(run_dir, json_object_get_string_member(o, "overlay"), NULL);
      g_autofree char *data = NULL;
      gsize len = 0;
      if (!g_file_get_contents(path, &data, &len, NULL)) continue;
      g_autofree char *b64 = g_base64_encode((const guchar *)data, len);
      g_autofree char *cap = g_markup_printf_escaped(
          "<div class=\"sample\"><img alt=\"%s\" src=\"data:image/png;base64,%s\"/><div><b>%s</b> "
          "— %s, Dice %.3f%s</div>"
          "<div><i>%s</i></div><div class=\"reason\">%s</div></div>\n",
          json_object_get_string_member(o, "image"), b64, (char *)l->data,
          json_object_get_string_member(o, "image"), json_object_get_double_member(o, "dice"),
          json_object_get_boolean_member(o, "has_seg") ? "" : " (no <SEG>)",
          json_object_get_string_member(o, "query"), json_object_get_string_member(o, "reasoning"));
      g_string_append(h, cap);
      shown++;
    }
  }
  g_string_append(h, "</div>\n");
  if (!shown) g_string_append(h, "<p>No evaluation samples (run stage.evaluate first).</p>\n");
}

gboolean ev_report_run(void *self, ps_run *run, GError **error) {
  ev_report *r = self;
  const char *dir = ps_run_dir(run);
  const ps_pipeline *p = ps_run_pipeline(run);
  g_autoptr(JsonObject) results = ev_results_load(dir, error);
  if (!results) return FALSE;
  const char *title = r->title[0] ? r->title : p->name;
  g_autofree char *et = g_markup_escape_text(title, -1);
  g_autofree char *ed = g_markup_escape_text(dir, -1);
  GString *h = g_string_new(NULL);
  g_string_append_printf(
      h,
      "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>%s</title>"
      "<style>%s</style></head><body>\n<h1>%s</h1>\n<p>Run <code>%s</code></p>\n",
      et, CSS, et, ed);
  g_string_append(h, "<h2>Training curves</h2>\n<div>\n");
  /* this run's curves, then those of every evaluated model run */
  g_autoptr(GPtrArray) ser = g_ptr_array_new_with_free_func(series_free);
  read_series(dir, NULL, ser);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_hash_table_add(seen, g_canonicalize_filename(dir, NULL));
  JsonObject *evals = json_object_has_member(results, "evaluations")
                          ? json_object_get_object_member(results, "evaluations")
                          : NULL;
  g_autoptr(GList) ek = evals ? json_object_get_members(evals) : NULL;
  for (GList *l = ek; l; l = l->next) {
    JsonObject *ev = json_object_get_object_member(evals, l->data);
    const char *model =
        json_object_has_member(ev, "model") ? json_object_get_string_member(ev, "model") : NULL;
    if (!model || !g_file_test(model, G_FILE_TEST_IS_DIR)) continue;
    char *canon = g_canonicalize_filename(model, NULL);
    if (g_hash_table_contains(seen, canon)) {
      g_free(canon);
      continue;
    }
    g_hash_table_add(seen, canon);
    g_autofree char *label = g_path_get_basename(model);
    read_series(model, label, ser);
  }
  for (guint i = 0; i < ser->len; i++) svg_chart(h, g_ptr_array_index(ser, i));
  if (!ser->len) g_string_append(h, "<p>No metrics logged.</p>\n");
  g_string_append(h, "</div>\n<h2>Results</h2>\n");
  g_autofree char *tables = ev_tables_html(results, p->name);
  g_string_append(h, tables);
  g_string_append(h, "<h2>Samples</h2>\n");
  add_samples(h, results, dir, r->samples);
  g_string_append(h, "</body></html>\n");
  g_autofree char *path = g_build_filename(dir, "report.html", NULL);
  gboolean ok = g_file_set_contents(path, h->str, (gssize)h->len, error);
  if (ok) ps_run_log(run, "report: %s", path);
  g_string_free(h, TRUE);
  return ok;
}
