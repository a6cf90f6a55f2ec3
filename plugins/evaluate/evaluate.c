/* evaluate.c — `stage.evaluate`: reasoning segmentation of every row of a
 * split (protocol in evaluate.h), scored against the manifest:
 *   - Dice and IoU per image (both 1 when prediction and truth are empty; a
 *     row whose answer has no <SEG> is scored with the empty mask), averaged
 *     per source dataset, per target class and over all rows;
 *   - for reference, the Dice of predicting the whole tile (full_tile_dice:
 *     large targets make it high, so read the model's Dice against it);
 *   - reasoning quality: corpus BLEU-4 (sacreBLEU: 13a, exp smoothing) and
 *     SQuAD token F1 (100 x mean) of the generated answers against the
 *     manifest's reasoning chains (both with <SEG> kept as text).
 * Results merge into RUN/results.json under "evaluations" (key SET:PROTOCOL),
 * and the tables (results.md, table2/3/6.csv) are rewritten each time. A few
 * overlays are kept under RUN/samples/ for the report.
 *
 * `predictions: DIR` scores ready-made masks (DIR/<image stem>.png, and the
 * answer from DIR/<image stem>.txt when present) instead of running the
 * model — for checking the arithmetic, or for scoring another system. */
#include <math.h>
#include <pathseg/error.h>
#include <string.h>

#include "evaluate.h"
#include "manifest.h"
#include "text_metric.h"

typedef struct {
  char *model, *manifest, *tokenizer, *protocol, *ref_split, *set, *predictions;
  char **splits;
  int64_t max_examples, max_new_tokens, samples;
} ev_eval;

const ps_config_key ev_eval_config[] = {
    {"model", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "run directory or checkpoint to evaluate; empty: the graph as this run trained it"},
    {"manifest", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "manifest to evaluate; empty: the one of the dataset the model was fine-tuned on"},
    {"tokenizer", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "tokenizer.json; empty: beside the training manifest"},
    {"splits", PS_TYPE_STRING_LIST, "[test, zeroshot]", PS_NO_RANGE, NULL,
     "splits to evaluate (train, val, test, zeroshot, or all)"},
    {"protocol", PS_TYPE_ENUM, "zero_shot", PS_NO_RANGE, "zero_shot|one_shot",
     "one_shot: a reference image of the same target class and its mask enter the prompt"},
    {"reference_split", PS_TYPE_STRING, "train", PS_NO_RANGE, NULL,
     "one-shot references come from this split (or 'same': the evaluated rows, never the row "
     "itself)"},
    {"set", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "name of the evaluation set in the tables; empty: the split name (with the manifest's folder "
     "when `manifest` is given)"},
    {"predictions", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "score masks from DIR/<image stem>.png (+ .txt answers) instead of running the model"},
    {"max_examples", PS_TYPE_INT, "0", 0, 1e9, NULL, "rows per split at most (0: all)"},
    {"max_new_tokens", PS_TYPE_INT, "0", 0, 1e6, NULL,
     "generation budget (0: max_length - prompt)"},
    {"samples", PS_TYPE_INT, "6", 0, 1000, NULL, "overlays kept for the report per evaluation"},
    {NULL},
};

void ev_eval_destroy(void *self) {
  ev_eval *e = self;
  if (!e) return;
  g_free(e->model);
  g_free(e->manifest);
  g_free(e->tokenizer);
  g_free(e->protocol);
  g_free(e->ref_split);
  g_free(e->set);
  g_free(e->predictions);
  g_strfreev(e->splits);
  g_free(e);
}

void *ev_eval_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  (void)error;
  ev_eval *e = g_new0(ev_eval, 1);
  e->model = str_or_empty(cfg, "model");
  e->manifest = str_or_empty(cfg, "manifest");
  e->tokenizer = str_or_empty(cfg, "tokenizer");
  e->protocol = str_or_empty(cfg, "protocol");
  e->ref_split = str_or_empty(cfg, "reference_split");
  e->set = str_or_empty(cfg, "set");
  e->predictions = str_or_empty(cfg, "predictions");
  size_t n = 0;
  const char *const *s = ps_config_string_list(cfg, "splits", &n);
  e->splits = g_new0(char *, n + 1);
  for (size_t i = 0; i < n; i++) e->splits[i] = g_strdup(s[i]);
  e->max_examples = ps_config_int(cfg, "max_examples");
  e->max_new_tokens = ps_config_int(cfg, "max_new_tokens");
  e->samples = ps_config_int(cfg, "samples");
  return e;
}

/* The manifest the model was fine-tuned on (the sft dataset's). */
static const char *training_manifest(const ps_pipeline *p) {
  const char *found = NULL;
  for (size_t i = 0; i < p->n_components; i++) {
    const ps_pipeline_component *c = &p->components[i];
    if (c->desc->kind != PS_KIND_DATASET) continue;
    gboolean has_manifest = FALSE, has_text = FALSE;
    for (const ps_config_key *k = c->desc->config; k && k->key; k++) {
      has_manifest |= strcmp(k->key, "manifest") == 0;
      has_text |= strcmp(k->key, "text") == 0;
    }
    if (!has_manifest) continue;
    if (!found || (has_text && strcmp(ps_config_string(c->config, "text"), "sft") == 0))
      found = ps_config_string(c->config, "manifest");
  }
  return found;
}

typedef struct {
  double dice, iou;
  int64_t n;
} acc;

static void acc_add(GHashTable *t, const char *key, double dice, double iou) {
  acc *a = g_hash_table_lookup(t, key);
  if (!a) {
    a = g_new0(acc, 1);
    g_hash_table_insert(t, g_strdup(key), a);
  }
  a->dice += dice;
  a->iou += iou;
  a->n++;
}

static JsonNode *acc_table(GHashTable *t) {
  JsonObject *o = json_object_new();
  g_autoptr(GList) keys = g_list_sort(g_hash_table_get_keys(t), (GCompareFunc)strcmp);
  for (GList *l = keys; l; l = l->next) {
    acc *a = g_hash_table_lookup(t, l->data);
    JsonObject *r = json_object_new();
    json_object_set_int_member(r, "n", a->n);
    json_object_set_double_member(r, "dice", a->dice / (double)a->n);
    json_object_set_double_member(r, "iou", a->iou / (double)a->n);
    json_object_set_object_member(o, l->data, r);
  }
  JsonNode *n = json_node_new(JSON_NODE_OBJECT);
  json_node_take_object(n, o);
  return n;
}

static char *stem(const char *path) {
  g_autofree char *base = g_path_get_basename(path);
  char *dot = strrchr(base, '.');
  if (dot) *dot = 0;
  return g_strdup(base);
}

/* The reference for one-shot: the first row of the reference rows with the
 * same target class and another image (another patient when there is one). */
static const ps_manifest_row *pick_reference(GPtrArray *rows, const ps_manifest_row *r,
                                             const char *ref_split) {
  const ps_manifest_row *best = NULL;
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *c = g_ptr_array_index(rows, i);
    if (c == r || g_strcmp0(c->target, r->target) != 0 || g_strcmp0(c->image, r->image) == 0)
      continue;
    if (strcmp(ref_split, "same") == 0 ? g_strcmp0(c->split, r->split) != 0
                                       : g_strcmp0(c->split, ref_split) != 0)
      continue;
    if (g_strcmp0(c->group, r->group) != 0) return c;
    if (!best) best = c;
  }
  return best;
}

typedef struct {
  ev_eval *e;
  ps_run *run;
  ev_model model;
  gboolean have_model;
  GPtrArray *rows;
  char *dir; /* manifest directory */
} eval_state;

/* Prediction of one row: the model's, or a ready-made mask. */
static gboolean predict_row(eval_state *st, const ps_manifest_row *r, const uint8_t *rgb, int w,
                            int h, const ps_manifest_row *ref_row, ev_prediction *pred,
                            GError **error) {
  if (st->e->predictions[0]) {
    memset(pred, 0, sizeof *pred);
    g_autofree char *s = stem(r->image);
    g_autofree char *mp = g_strdup_printf("%s/%s.png", st->e->predictions, s);
    g_autofree char *tp = g_strdup_printf("%s/%s.txt", st->e->predictions, s);
    pred->mask = g_malloc0((gsize)w * h);
    pred->has_seg = g_file_test(mp, G_FILE_TEST_IS_REGULAR);
    if (pred->has_seg) {
      int mw = 0, mh = 0;
      g_autofree uint8_t *m = ev_read_image(mp, 1, &mw, &mh, error);
      if (!m) return FALSE;
      if (mw != w || mh != h) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s is %dx%d, the image %dx%d", mp, mw, mh, w,
                    h);
        return FALSE;
      }
      for (int64_t p = 0; p < (int64_t)w * h; p++) pred->mask[p] = m[p] > 127 ? 255 : 0;
    }
    if (!g_file_get_contents(tp, &pred->text, NULL, NULL)) pred->text = g_strdup("");
    return TRUE;
  }
  if (!ref_row) return ev_predict(&st->model, rgb, w, h, r->query, NULL, pred, error);
  g_autofree char *ip = g_build_filename(st->dir, ref_row->image, NULL);
  g_autofree char *mp = g_build_filename(st->dir, ref_row->mask, NULL);
  int rw = 0, rh = 0, mw = 0, mh = 0;
  g_autofree uint8_t *rimg = ev_read_image(ip, 3, &rw, &rh, error);
  g_autofree uint8_t *rmask = rimg ? ev_read_image(mp, 1, &mw, &mh, error) : NULL;
  if (!rmask) return FALSE;
  if (mw != rw || mh != rh) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "reference %s and its mask differ in size", ip);
    return FALSE;
  }
  ev_reference ref = {rimg, rmask, rw, rh};
  return ev_predict(&st->model, rgb, w, h, r->query, &ref, pred, error);
}

static gboolean evaluate_split(eval_state *st, const char *split, JsonObject *evaluations,
                               GError **error) {
  ev_eval *e = st->e;
  gboolean one_shot = strcmp(e->protocol, "one_shot") == 0;
  g_autoptr(GPtrArray) sel = g_ptr_array_new();
  for (guint i = 0; i < st->rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(st->rows, i);
    if (strcmp(split, "all") == 0 || strcmp(r->split, split) == 0) g_ptr_array_add(sel, r);
    if (e->max_examples > 0 && sel->len >= (guint)e->max_examples) break;
  }
  g_autofree char *set = NULL;
  if (e->set[0])
    set = g_strv_length(e->splits) > 1 ? g_strdup_printf("%s/%s", e->set, split) : g_strdup(e->set);
  else if (e->manifest[0]) {
    g_autofree char *d = g_path_get_dirname(e->manifest);
    g_autofree char *b = g_path_get_basename(d);
    set = g_strdup_printf("%s/%s", b, split);
  } else
    set = g_strdup(split);
  if (sel->len == 0) {
    ps_run_log(st->run, "%s: split '%s' has no rows; skipped", set, split);
    return TRUE;
  }
  g_autoptr(GHashTable) by_source = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GHashTable) by_target = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  g_autoptr(GPtrArray) hyps = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(GPtrArray) refs = g_ptr_array_new();
  JsonArray *examples = json_array_new();
  JsonArray *samples = json_array_new();
  double dice_sum = 0, iou_sum = 0, f1_sum = 0, full_sum = 0;
  int64_t no_seg = 0, no_ref = 0;
  g_autofree char *sample_dir = g_build_filename(ps_run_dir(st->run), "samples", NULL);
  g_mkdir_with_parents(sample_dir, 0755);
  g_autofree char *key = g_strdup_printf("%s:%s", set, e->protocol);
  g_autofree char *safe = g_strdup(key);
  g_strcanon(safe, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_", '_');
  for (guint i = 0; i < sel->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(sel, i);
    g_autofree char *ip = g_build_filename(st->dir, r->image, NULL);
    g_autofree char *mp = g_build_filename(st->dir, r->mask, NULL);
    int w = 0, h = 0, mw = 0, mh = 0;
    g_autofree uint8_t *rgb = ev_read_image(ip, 3, &w, &h, error);
    g_autofree uint8_t *gt = rgb ? ev_read_image(mp, 1, &mw, &mh, error) : NULL;
    if (!gt) return FALSE;
    if (mw != w || mh != h) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s is %dx%d but its mask %dx%d", ip, w, h, mw,
                  mh);
      return FALSE;
    }
    for (int64_t p = 0; p < (int64_t)w * h; p++) gt[p] = gt[p] > 127;
    const ps_manifest_row *ref_row = one_shot ? pick_reference(st->rows, r, e->ref_split) : NULL;
    if (one_shot && !ref_row) no_ref++;
    ev_prediction pred;
    if (!predict_row(st, r, rgb, w, h, ref_row, &pred, error)) {
      g_prefix_error(error, "%s: ", r->image);
      return FALSE;
    }
    ev_overlap o;
    ev_overlap_count(pred.mask, gt, (int64_t)w * h, &o);
    double dice = ev_dice(&o), iou = ev_iou(&o);
    /* reference point: the Dice of predicting the whole tile */
    ev_overlap full = {(int64_t)w * h, o.gt, o.gt};
    full_sum += ev_dice(&full);
    dice_sum += dice;
    iou_sum += iou;
    no_seg += !pred.has_seg;
    acc_add(by_source, r->source ? r->source : "unknown", dice, iou);
    acc_add(by_target, r->target ? r->target : "unknown", dice, iou);
    const char *ref_text = r->reasoning ? r->reasoning : "";
    f1_sum += ps_token_f1(pred.text, ref_text);
    g_ptr_array_add(hyps, g_strdup(pred.text));
    g_ptr_array_add(refs, (gpointer)ref_text);
    JsonObject *ex = json_object_new();
    json_object_set_string_member(ex, "image", r->image);
    json_object_set_string_member(ex, "source", r->source ? r->source : "unknown");
    json_object_set_string_member(ex, "target", r->target ? r->target : "unknown");
    json_object_set_double_member(ex, "dice", dice);
    json_object_set_double_member(ex, "iou", iou);
    json_object_set_boolean_member(ex, "has_seg", pred.has_seg);
    json_object_set_int_member(ex, "pred_pixels", o.pred);
    json_object_set_int_member(ex, "gt_pixels", o.gt);
    json_object_set_int_member(ex, "inter_pixels", o.inter);
    if (ref_row) json_object_set_string_member(ex, "reference", ref_row->image);
    json_object_set_string_member(ex, "reasoning", pred.text);
    json_array_add_object_element(examples, ex);
    if ((int64_t)i < e->samples) {
      g_autofree uint8_t *ov = g_malloc((gsize)w * h * 3);
      ev_overlay(rgb, pred.mask, w, h, ov);
      g_autofree char *name = g_strdup_printf("%s-%u.png", safe, i);
      g_autofree char *path = g_build_filename(sample_dir, name, NULL);
      if (!ev_write_png(path, ov, w, h, 3, error)) {
        ev_prediction_clear(&pred);
        return FALSE;
      }
      JsonObject *s = json_object_new();
      g_autofree char *rel = g_build_filename("samples", name, NULL);
      json_object_set_string_member(s, "overlay", rel);
      json_object_set_string_member(s, "image", r->image);
      json_object_set_string_member(s, "query", r->query ? r->query : "");
      json_object_set_string_member(s, "reasoning", pred.text);
      json_object_set_string_member(s, "reference_reasoning", ref_text);
      json_object_set_double_member(s, "dice", dice);
      json_object_set_boolean_member(s, "has_seg", pred.has_seg);
      json_array_add_object_element(samples, s);
    }
    ev_prediction_clear(&pred);
    ps_run_progress(st->run, i + 1, sel->len, "%s: Dice %.3f", set, dice_sum / (i + 1));
  }
  ps_bleu_options bo;
  ps_bleu_options_default(&bo);
  ps_bleu_score bleu;
  if (!ps_bleu_corpus(&bo, (const char *const *)hyps->pdata, hyps->len,
                      (const char *const *)refs->pdata, 1, &bleu, error))
    return FALSE;
  const double n = sel->len;
  JsonObject *res = json_object_new();
  json_object_set_string_member(res, "set", set);
  json_object_set_string_member(res, "split", split);
  json_object_set_string_member(res, "protocol", e->protocol);
  json_object_set_string_member(
      res, "manifest", e->manifest[0] ? e->manifest : training_manifest(ps_run_pipeline(st->run)));
  json_object_set_string_member(res, "model", e->model[0] ? e->model : ps_run_dir(st->run));
  json_object_set_int_member(res, "n", sel->len);
  json_object_set_double_member(res, "dice", dice_sum / n);
  json_object_set_double_member(res, "iou", iou_sum / n);
  json_object_set_double_member(res, "full_tile_dice", full_sum / n);
  json_object_set_int_member(res, "no_seg", no_seg);
  if (one_shot) json_object_set_int_member(res, "no_reference", no_ref);
  json_object_set_double_member(res, "bleu", bleu.score);
  json_object_set_double_member(res, "token_f1", 100.0 * f1_sum / n);
  json_object_set_member(res, "per_source", acc_table(by_source));
  json_object_set_member(res, "per_target", acc_table(by_target));
  json_object_set_array_member(res, "samples", samples);
  json_object_set_array_member(res, "examples", examples);
  json_object_set_object_member(evaluations, key, res);
  ps_run_log(st->run,
             "%s (%s, %u images): Dice %.4f, IoU %.4f, no <SEG> in %" G_GINT64_FORMAT
             ", BLEU-4 %.2f, token F1 %.2f",
             set, e->protocol, sel->len, dice_sum / n, iou_sum / n, no_seg, bleu.score,
             100.0 * f1_sum / n);
  g_autofree char *mkey = g_strdup_printf("eval/%s/dice", key);
  ps_run_metrics(st->run, 0, mkey, dice_sum / n, NULL);
  return TRUE;
}

/* With `model` empty the graph must already hold a model: an earlier
 * enabled stage of this pipeline trained it (any stage other than
 * evaluation, inference, reports, conversion and benchmark building) or
 * loaded it (an evaluate/infer stage with `model` set). */
gboolean ev_graph_has_model(const ps_pipeline *p, const char *current) {
  static const char *const passive[] = {"stage.evaluate",
                                        "stage.infer",
                                        "stage.report",
                                        "stage.convert",
                                        "stage.build_benchmark",
                                        "stage.preprocess_slides",
                                        NULL};
  for (size_t s = 0; s < p->n_stages && strcmp(p->stages[s].name, current) != 0; s++) {
    const ps_pipeline_stage *st = &p->stages[s];
    if (!st->enabled) continue;
    gboolean is_passive = FALSE;
    for (size_t k = 0; passive[k]; k++) is_passive |= strcmp(st->plugin, passive[k]) == 0;
    if (!is_passive) return TRUE;
    if ((strcmp(st->plugin, "stage.evaluate") == 0 || strcmp(st->plugin, "stage.infer") == 0) &&
        ps_config_string(st->config, "model") && *ps_config_string(st->config, "model"))
      return TRUE;
  }
  return FALSE;
}

gboolean ev_eval_run(void *self, ps_run *run, GError **error) {
  ev_eval *e = self;
  if (!e->model[0] && !e->predictions[0] &&
      !ev_graph_has_model(ps_run_pipeline(run), ps_run_stage(run))) {
    g_set_error(
        error, PS_ERROR, PS_ERROR_INVALID,
        "stage %s: `model` is empty and no earlier stage of this pipeline trains or loads a model; "
        "set it, e.g. --set stages.%s.model=runs/quickstart-...",
        ps_run_stage(run), ps_run_stage(run));
    return FALSE;
  }
  eval_state st = {.e = e, .run = run};
  const ps_pipeline *p = ps_run_pipeline(run);
  if (!ev_png_init(error)) return FALSE;
  const char *manifest = e->manifest[0] ? e->manifest : training_manifest(p);
  if (!manifest) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.evaluate: no `manifest` and no dataset component has one");
    return FALSE;
  }
  st.rows = ps_manifest_read(manifest, error);
  if (!st.rows) return FALSE;
  st.dir = g_path_get_dirname(manifest);
  gboolean ok = TRUE;
  if (!e->predictions[0]) {
    if (e->model[0] && !ev_load_checkpoint(ps_run_graph(run), p, e->model, error)) ok = FALSE;
    if (ok && !ev_model_init(&st.model, ps_run_graph(run), p, e->tokenizer, NULL, error))
      ok = FALSE;
    st.have_model = ok;
    st.model.max_new_tokens = e->max_new_tokens;
  }
  g_autoptr(JsonObject) results = ok ? ev_results_load(ps_run_dir(run), error) : NULL;
  if (ok && !results) ok = FALSE;
  if (ok) {
    if (!json_object_has_member(results, "evaluations"))
      json_object_set_object_member(results, "evaluations", json_object_new());
    json_object_set_string_member(results, "method", p->name);
    JsonObject *evals = json_object_get_object_member(results, "evaluations");
    for (size_t s = 0; ok && e->splits[s]; s++)
      ok = evaluate_split(&st, e->splits[s], evals, error);
  }
  ok = ok && ev_results_save(ps_run_dir(run), results, error) &&
       ev_tables_write(ps_run_dir(run), results, error);
  if (st.have_model) ev_model_clear(&st.model);
  g_ptr_array_unref(st.rows);
  g_free(st.dir);
  return ok;
}
