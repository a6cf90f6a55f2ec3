/* compare.c — `pipeline compare RUN...`: several runs' results in one table,
 * the layout of the paper's ablation Tables 4 and 5: one row per run with
 * its test Dice and IoU, the Dice of every other evaluation set (zero-shot
 * and one-shot), reasoning BLEU-4 and token F1, the step that reached the
 * best validation Dice and that Dice, and the variance of the gradient norm
 * over the training steps of the last training stage (metrics.jsonl).
 * Markdown to stdout (or --out FILE), CSV with --csv FILE. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"

typedef struct {
  char *name;
  JsonObject *evals; /* may be NULL */
  JsonParser *parser;
  double best_dice; /* NAN when no validation Dice was logged */
  double best_step;
  double grad_var; /* NAN when no grad_norm */
} run_info;

/* Best validation Dice (any key val_*dice) of the last stage that logged
 * one, and its step — so that a run ending in RL is judged by the RL
 * stage's greedy validation (its step 0 is the SFT model), not by the
 * teacher-forced Dice of its SFT stage; variance of grad_norm over the last
 * stage that logged it. */
static void scan_metrics(const char *dir, run_info *r) {
  r->best_dice = r->best_step = r->grad_var = NAN;
  g_autofree char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return;
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(JsonParser) p = json_parser_new();
  g_autofree char *grad_stage = NULL, *dice_stage = NULL;
  double s1 = 0, s2 = 0;
  int64_t n = 0;
  for (size_t i = 0; lines[i]; i++) {
    if (!*lines[i] || !json_parser_load_from_data(p, lines[i], -1, NULL)) continue;
    JsonNode *root = json_parser_get_root(p);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) continue;
    JsonObject *o = json_node_get_object(root);
    const char *stage =
        json_object_has_member(o, "stage") ? json_object_get_string_member(o, "stage") : "";
    double step = json_object_has_member(o, "step") ? json_object_get_double_member(o, "step") : 0;
    g_autoptr(GList) keys = json_object_get_members(o);
    for (GList *l = keys; l; l = l->next) {
      const char *k = l->data;
      JsonNode *v = json_object_get_member(o, k);
      if (!JSON_NODE_HOLDS_VALUE(v) || json_node_get_value_type(v) == G_TYPE_STRING) continue;
      double x = json_node_get_double(v);
      if (g_str_has_prefix(k, "val_") && g_str_has_suffix(k, "dice") && isfinite(x)) {
        if (g_strcmp0(dice_stage, stage) != 0) { /* a later stage validated: its Dice counts */
          g_free(dice_stage);
          dice_stage = g_strdup(stage);
          r->best_dice = r->best_step = NAN;
        }
        if (isnan(r->best_dice) || x > r->best_dice) {
          r->best_dice = x;
          r->best_step = step;
        }
      }
      if (strcmp(k, "grad_norm") == 0 && isfinite(x)) {
        if (g_strcmp0(grad_stage, stage) != 0) { /* a new training stage: start over */
          g_free(grad_stage);
          grad_stage = g_strdup(stage);
          s1 = s2 = 0;
          n = 0;
        }
        s1 += x;
        s2 += x * x;
        n++;
      }
    }
  }
  if (n > 1) r->grad_var = (s2 - s1 * s1 / (double)n) / (double)(n - 1);
}

static JsonObject *ev_get(const run_info *r, const char *key) {
  return r->evals && json_object_has_member(r->evals, key)
             ? json_object_get_object_member(r->evals, key)
             : NULL;
}

static char *fmt(double v, const char *f) {
  return isnan(v) ? g_strdup("-") : g_strdup_printf(f, v);
}

int ps_cmd_compare(int argc, char **argv) {
  const char *out = NULL, *csv_path = NULL;
  g_autoptr(GPtrArray) dirs = g_ptr_array_new();
  for (int i = 0; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0 && i + 1 < argc)
      out = argv[++i];
    else if (strcmp(argv[i], "--csv") == 0 && i + 1 < argc)
      csv_path = argv[++i];
    else if (argv[i][0] == '-') {
      fprintf(stderr, "usage: pipeline compare RUN... [--out FILE.md] [--csv FILE.csv]\n");
      return 2;
    } else
      g_ptr_array_add(dirs, argv[i]);
  }
  if (dirs->len == 0) {
    fprintf(stderr, "usage: pipeline compare RUN... [--out FILE.md] [--csv FILE.csv]\n");
    return 2;
  }
  run_info *runs = g_new0(run_info, dirs->len);
  for (guint i = 0; i < dirs->len; i++)
    runs[i].best_dice = runs[i].best_step = runs[i].grad_var = NAN;
  int status = 0;
  /* the union of evaluation keys other than the test split, in first-seen order */
  g_autoptr(GPtrArray) cols = g_ptr_array_new_with_free_func(g_free);
  g_autofree char *test_key = NULL;
  for (guint i = 0; i < dirs->len; i++) {
    const char *dir = g_ptr_array_index(dirs, i);
    run_info *r = &runs[i];
    g_autofree char *base = g_path_get_basename(dir);
    r->name = g_strdup(base);
    g_autofree char *rp = g_build_filename(dir, "results.json", NULL);
    GError *error = NULL;
    if (!g_file_test(dir, G_FILE_TEST_IS_DIR)) {
      fprintf(stderr, "pipeline compare: %s: no such run directory\n", dir);
      status = 1;
      continue;
    }
    scan_metrics(dir, r);
    if (!g_file_test(rp, G_FILE_TEST_EXISTS)) { /* a training run: its curves only */
      fprintf(stderr,
              "pipeline compare: warning: %s has no results.json (not evaluated); only its "
              "training metrics are shown\n",
              dir);
      continue;
    }
    r->parser = json_parser_new();
    if (!json_parser_load_from_file(r->parser, rp, &error)) {
      fprintf(stderr, "pipeline compare: %s: %s\n", rp, error->message);
      g_clear_error(&error);
      status = 1;
      continue;
    }
    JsonNode *root = json_parser_get_root(r->parser);
    JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
    r->evals = o && json_object_has_member(o, "evaluations")
                   ? json_object_get_object_member(o, "evaluations")
                   : NULL;
    g_autoptr(GList) keys = r->evals ? json_object_get_members(r->evals) : NULL;
    /* an evaluation run: the training metrics are those of the model it evaluated */
    for (GList *l = keys; l && isnan(r->best_dice) && isnan(r->grad_var); l = l->next) {
      JsonObject *ev = json_object_get_object_member(r->evals, l->data);
      const char *m =
          json_object_has_member(ev, "model") ? json_object_get_string_member(ev, "model") : NULL;
      if (m && g_file_test(m, G_FILE_TEST_IS_DIR)) scan_metrics(m, r);
    }
    for (GList *l = keys; l; l = l->next) {
      JsonObject *ev = json_object_get_object_member(r->evals, l->data);
      const char *split =
          json_object_has_member(ev, "split") ? json_object_get_string_member(ev, "split") : "";
      const char *proto = json_object_has_member(ev, "protocol")
                              ? json_object_get_string_member(ev, "protocol")
                              : "";
      if (strcmp(split, "test") == 0 && strcmp(proto, "zero_shot") == 0) {
        if (!test_key) test_key = g_strdup(l->data);
        continue;
      }
      gboolean seen = FALSE;
      for (guint c = 0; c < cols->len && !seen; c++)
        seen = strcmp(g_ptr_array_index(cols, c), l->data) == 0;
      if (!seen) g_ptr_array_add(cols, g_strdup(l->data));
    }
  }
  /* header + rows */
  g_autoptr(GPtrArray) head = g_ptr_array_new_with_free_func(g_free);
  const char *fixed[] = {"Run", "Dice", "IoU"};
  for (size_t k = 0; k < 3; k++) g_ptr_array_add(head, g_strdup(fixed[k]));
  for (guint c = 0; c < cols->len; c++)
    g_ptr_array_add(head, g_strdup_printf("Dice %s", (char *)g_ptr_array_index(cols, c)));
  const char *tail[] = {"BLEU-4", "Token F1", "Best val Dice", "Steps to best", "Var(grad norm)"};
  for (size_t k = 0; k < 5; k++) g_ptr_array_add(head, g_strdup(tail[k]));
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify)g_ptr_array_unref);
  for (guint i = 0; i < dirs->len; i++) {
    run_info *r = &runs[i];
    GPtrArray *row = g_ptr_array_new_with_free_func(g_free);
    JsonObject *t = test_key ? ev_get(r, test_key) : NULL;
    g_ptr_array_add(row, g_strdup(r->name));
    g_ptr_array_add(row, fmt(t ? 100 * json_object_get_double_member(t, "dice") : NAN, "%.2f"));
    g_ptr_array_add(row, fmt(t ? 100 * json_object_get_double_member(t, "iou") : NAN, "%.2f"));
    for (guint c = 0; c < cols->len; c++) {
      JsonObject *e = ev_get(r, g_ptr_array_index(cols, c));
      g_ptr_array_add(row, fmt(e ? 100 * json_object_get_double_member(e, "dice") : NAN, "%.2f"));
    }
    g_ptr_array_add(row, fmt(t ? json_object_get_double_member(t, "bleu") : NAN, "%.2f"));
    g_ptr_array_add(row, fmt(t ? json_object_get_double_member(t, "token_f1") : NAN, "%.2f"));
    g_ptr_array_add(row, fmt(100 * r->best_dice, "%.2f"));
    g_ptr_array_add(row, fmt(r->best_step, "%.0f"));
    g_ptr_array_add(row, fmt(r->grad_var, "%.4g"));
    g_ptr_array_add(rows, row);
  }
  g_autoptr(GString) md = g_string_new("| ");
  g_autoptr(GString) csv = g_string_new(NULL);
  for (guint c = 0; c < head->len; c++) {
    g_string_append_printf(md, "%s |%s", (char *)g_ptr_array_index(head, c),
                           c + 1 < head->len ? " " : "\n|");
    g_string_append_printf(csv, "%s%s", c ? "," : "", (char *)g_ptr_array_index(head, c));
  }
  for (guint c = 0; c < head->len; c++) g_string_append(md, c ? " ---: |" : " --- |");
  g_string_append_c(md, '\n');
  g_string_append_c(csv, '\n');
  for (guint i = 0; i < rows->len; i++) {
    GPtrArray *row = g_ptr_array_index(rows, i);
    g_string_append(md, "|");
    for (guint c = 0; c < row->len; c++) {
      const char *cell = g_ptr_array_index(row, c);
      g_string_append_printf(md, " %s |", cell);
      g_string_append_printf(csv, "%s%s", c ? "," : "", cell);
    }
    g_string_append_c(md, '\n');
    g_string_append_c(csv, '\n');
  }
  GError *error = NULL;
  if (out) {
    if (!g_file_set_contents(out, md->str, (gssize)md->len, &error)) status = 1;
  } else {
    fputs(md->str, stdout);
  }
  if (!error && csv_path && !g_file_set_contents(csv_path, csv->str, (gssize)csv->len, &error))
    status = 1;
  if (error) {
    fprintf(stderr, "pipeline compare: %s\n", error->message);
    g_clear_error(&error);
  }
  for (guint i = 0; i < dirs->len; i++) {
    g_free(runs[i].name);
    if (runs[i].parser) g_object_unref(runs[i].parser);
  }
  g_free(runs);
  return status;
}
