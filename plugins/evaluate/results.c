/* results.c — RUN/results.json and the paper-layout tables made from it:
 *   Table 2  Dice (%) per source dataset on the test split, and their mean;
 *   Table 3  zero-shot and one-shot Dice / IoU (%) per evaluation set, and
 *            the Dice of predicting the whole tile for reference
 *            (held-out synthetic morphologies, real EBHI-Seg pairs, ...);
 *   Table 6  reasoning quality: corpus BLEU-4 and token F1 per set.
 * Each is written as Markdown (results.md, all three) and CSV
 * (table2.csv, table3.csv, table6.csv); the report renders them as HTML. */
#include <pathseg/error.h>
#include <string.h>

#include "evaluate.h"

JsonObject *ev_results_load(const char *run_dir, GError **error) {
  g_autofree char *path = g_build_filename(run_dir, "results.json", NULL);
  if (!g_file_test(path, G_FILE_TEST_EXISTS)) return json_object_new();
  g_autoptr(JsonParser) parser = json_parser_new();
  if (!json_parser_load_from_file(parser, path, error)) {
    g_prefix_error(error, "%s: ", path);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not a JSON object", path);
    return NULL;
  }
  return json_object_ref(json_node_get_object(root));
}

gboolean ev_results_save(const char *run_dir, JsonObject *results, GError **error) {
  g_autoptr(JsonNode) root = json_node_new(JSON_NODE_OBJECT);
  json_node_set_object(root, results);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, root);
  json_generator_set_pretty(gen, TRUE);
  g_autofree char *text = json_generator_to_data(gen, NULL);
  g_autofree char *path = g_build_filename(run_dir, "results.json", NULL);
  return g_file_set_contents(path, text, -1, error);
}

/* A table of strings: header row then data rows. */
typedef struct {
  char *title;
  GPtrArray *rows; /* GPtrArray of GPtrArray of char* */
} table;

static GPtrArray *row_new(void) {
  return g_ptr_array_new_with_free_func(g_free);
}

static void table_free(table *t) {
  g_free(t->title);
  g_ptr_array_unref(t->rows);
}

static char *pct(double v) {
  return g_strdup_printf("%.2f", 100.0 * v);
}

static double num(JsonObject *o, const char *k) {
  return o && json_object_has_member(o, k) ? json_object_get_double_member(o, k) : 0.0;
}

static const char *str(JsonObject *o, const char *k) {
  return o && json_object_has_member(o, k) ? json_object_get_string_member(o, k) : "";
}

/* Table 2: one row for this method, one column per source on test. */
static void table2(JsonObject *evals, const char *method, table *t) {
  t->title = g_strdup("Table 2. Dice (%) per dataset, test split");
  t->rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
  GPtrArray *head = row_new(), *row = row_new();
  g_ptr_array_add(head, g_strdup("Method"));
  g_ptr_array_add(row, g_strdup(method));
  g_autoptr(GList) keys = json_object_get_members(evals);
  for (GList *l = keys; l; l = l->next) {
    JsonObject *ev = json_object_get_object_member(evals, l->data);
    if (strcmp(str(ev, "split"), "test") != 0 || strcmp(str(ev, "protocol"), "zero_shot") != 0)
      continue;
    JsonObject *src = json_object_get_object_member(ev, "per_source");
    g_autoptr(GList) sk = src ? json_object_get_members(src) : NULL;
    for (GList *s = sk; s; s = s->next) {
      g_ptr_array_add(head, g_strdup(s->data));
      g_ptr_array_add(row, pct(num(json_object_get_object_member(src, s->data), "dice")));
    }
    g_ptr_array_add(head, g_strdup("Mean"));
    g_ptr_array_add(row, pct(num(ev, "dice")));
    break;
  }
  if (row->len == 1) { /* nothing evaluated on a test split yet */
    g_ptr_array_add(head, g_strdup("Mean"));
    g_ptr_array_add(row, g_strdup("-"));
  }
  g_ptr_array_add(t->rows, head);
  g_ptr_array_add(t->rows, row);
}

/* Table 3: per set (not the test split), zero-shot and one-shot. */
static void table3(JsonObject *evals, table *t) {
  t->title = g_strdup("Table 3. Zero-shot and one-shot segmentation (%)");
  t->rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
  GPtrArray *head = row_new();
  const char *h[] = {
      "Set",           "N", "Zero-shot Dice", "Zero-shot IoU", "One-shot Dice", "One-shot IoU",
      "Full-tile Dice"};
  for (size_t i = 0; i < G_N_ELEMENTS(h); i++) g_ptr_array_add(head, g_strdup(h[i]));
  g_ptr_array_add(t->rows, head);
  g_autoptr(GHashTable) done = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GList) keys = json_object_get_members(evals);
  for (GList *l = keys; l; l = l->next) {
    JsonObject *ev = json_object_get_object_member(evals, l->data);
    const char *set = str(ev, "set");
    if (strcmp(str(ev, "split"), "test") == 0 || g_hash_table_contains(done, set)) continue;
    g_hash_table_add(done, g_strdup(set));
    g_autofree char *zk = g_strdup_printf("%s:zero_shot", set),
                    *ok = g_strdup_printf("%s:one_shot", set);
    JsonObject *z =
        json_object_has_member(evals, zk) ? json_object_get_object_member(evals, zk) : NULL;
    JsonObject *o =
        json_object_has_member(evals, ok) ? json_object_get_object_member(evals, ok) : NULL;
    GPtrArray *row = row_new();
    g_ptr_array_add(row, g_strdup(set));
    g_ptr_array_add(row, g_strdup_printf("%" G_GINT64_FORMAT, (int64_t)num(z ? z : o, "n")));
    g_ptr_array_add(row, z ? pct(num(z, "dice")) : g_strdup("-"));
    g_ptr_array_add(row, z ? pct(num(z, "iou")) : g_strdup("-"));
    g_ptr_array_add(row, o ? pct(num(o, "dice")) : g_strdup("-"));
    g_ptr_array_add(row, o ? pct(num(o, "iou")) : g_strdup("-"));
    g_ptr_array_add(row, pct(num(z ? z : o, "full_tile_dice")));
    g_ptr_array_add(t->rows, row);
  }
}

/* Table 6: reasoning quality of every zero-shot evaluation. */
static void table6(JsonObject *evals, table *t) {
  t->title = g_strdup("Table 6. Reasoning quality (corpus BLEU-4, token F1)");
  t->rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
  GPtrArray *head = row_new();
  const char *h[] = {"Set", "Protocol", "N", "BLEU-4", "Token F1", "No SEG token"};
  for (size_t i = 0; i < G_N_ELEMENTS(h); i++) g_ptr_array_add(head, g_strdup(h[i]));
  g_ptr_array_add(t->rows, head);
  g_autoptr(GList) keys = json_object_get_members(evals);
  for (GList *l = keys; l; l = l->next) {
    JsonObject *ev = json_object_get_object_member(evals, l->data);
    GPtrArray *row = row_new();
    g_ptr_array_add(row, g_strdup(str(ev, "set")));
    g_ptr_array_add(row, g_strdup(str(ev, "protocol")));
    g_ptr_array_add(row, g_strdup_printf("%" G_GINT64_FORMAT, (int64_t)num(ev, "n")));
    g_ptr_array_add(row, g_strdup_printf("%.2f", num(ev, "bleu")));
    g_ptr_array_add(row, g_strdup_printf("%.2f", num(ev, "token_f1")));
    g_ptr_array_add(row, g_strdup_printf("%" G_GINT64_FORMAT, (int64_t)num(ev, "no_seg")));
    g_ptr_array_add(t->rows, row);
  }
}

static void md(GString *s, const table *t) {
  g_string_append_printf(s, "### %s\n\n", t->title);
  for (guint r = 0; r < t->rows->len; r++) {
    GPtrArray *row = g_ptr_array_index(t->rows, r);
    g_string_append(s, "|");
    for (guint c = 0; c < row->len; c++) {
      g_autofree char *cell = g_strdup(g_ptr_array_index(row, c));
      g_strdelimit(cell, "|", '/');
      g_string_append_printf(s, " %s |", cell);
    }
    g_string_append_c(s, '\n');
    if (r == 0) {
      g_string_append(s, "|");
      for (guint c = 0; c < row->len; c++) g_string_append(s, c ? " ---: |" : " --- |");
      g_string_append_c(s, '\n');
    }
  }
  g_string_append_c(s, '\n');
}

static void csv(GString *s, const table *t) {
  for (guint r = 0; r < t->rows->len; r++) {
    GPtrArray *row = g_ptr_array_index(t->rows, r);
    for (guint c = 0; c < row->len; c++) {
      const char *cell = g_ptr_array_index(row, c);
      if (c) g_string_append_c(s, ',');
      if (strpbrk(cell, ",\"\n")) {
        g_string_append_c(s, '"');
        for (const char *p = cell; *p; p++) {
          if (*p == '"') g_string_append_c(s, '"');
          g_string_append_c(s, *p);
        }
        g_string_append_c(s, '"');
      } else {
        g_string_append(s, cell);
      }
    }
    g_string_append_c(s, '\n');
  }
}

static void html(GString *s, const table *t) {
  g_autofree char *title = g_markup_escape_text(t->title, -1);
  g_string_append_printf(s, "<h3>%s</h3>\n<table>\n", title);
  for (guint r = 0; r < t->rows->len; r++) {
    GPtrArray *row = g_ptr_array_index(t->rows, r);
    g_string_append(s, "<tr>");
    for (guint c = 0; c < row->len; c++) {
      g_autofree char *cell = g_markup_escape_text(g_ptr_array_index(row, c), -1);
      g_string_append_printf(s, r ? "<td>%s</td>" : "<th>%s</th>", cell);
    }
    g_string_append(s, "</tr>\n");
  }
  g_string_append(s, "</table>\n");
}

static JsonObject *evals_of(JsonObject *results) {
  return json_object_has_member(results, "evaluations")
             ? json_object_get_object_member(results, "evaluations")
             : NULL;
}

static void make_tables(JsonObject *results, const char *method, table t[3]) {
  JsonObject *evals = evals_of(results);
  g_autoptr(JsonObject) empty = json_object_new();
  if (!evals) evals = empty;
  table2(evals, method, &t[0]);
  table3(evals, &t[1]);
  table6(evals, &t[2]);
}

char *ev_tables_markdown(JsonObject *results, const char *method) {
  table t[3];
  make_tables(results, method, t);
  GString *s = g_string_new(NULL);
  for (int i = 0; i < 3; i++) {
    md(s, &t[i]);
    table_free(&t[i]);
  }
  return g_string_free(s, FALSE);
}

char *ev_tables_html(JsonObject *results, const char *method) {
  table t[3];
  make_tables(results, method, t);
  GString *s = g_string_new(NULL);
  for (int i = 0; i < 3; i++) {
    html(s, &t[i]);
    table_free(&t[i]);
  }
  return g_string_free(s, FALSE);
}

gboolean ev_tables_write(const char *run_dir, JsonObject *results, GError **error) {
  const char *method = json_object_has_member(results, "method")
                           ? json_object_get_string_member(results, "method")
                           : "pathseg";
  table t[3];
  make_tables(results, method, t);
  g_autoptr(GString) m = g_string_new("# Results\n\n");
  const char *names[3] = {"table2.csv", "table3.csv", "table6.csv"};
  gboolean ok = TRUE;
  for (int i = 0; i < 3; i++) {
    md(m, &t[i]);
    g_autoptr(GString) c = g_string_new(NULL);
    csv(c, &t[i]);
    g_autofree char *path = g_build_filename(run_dir, names[i], NULL);
    if (ok) ok = g_file_set_contents(path, c->str, (gssize)c->len, error);
    table_free(&t[i]);
  }
  g_autofree char *path = g_build_filename(run_dir, "results.md", NULL);
  return ok && g_file_set_contents(path, m->str, (gssize)m->len, error);
}
