/* metric_text_fixture.c — the "fixture" capability of metric.bleu: runs the
 * metric.bleu4 reference fixture (sacreBLEU corpus_score and sentence_score,
 * SQuAD F1) whose texts are in the `corpora` metadata (FORMAT.md). */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "metric_text_internal.h"

/* A JSON array of strings as a NULL-terminated vector of borrowed strings
 * (g_free the array only); NULL with an error when it is not one. */
static const char **string_array(JsonArray *a, const char *what, GError **error) {
  const guint n = json_array_get_length(a);
  const char **out = g_new0(const char *, n + 1);
  for (guint i = 0; i < n; i++) {
    JsonNode *node = json_array_get_element(a, i);
    if (json_node_get_value_type(node) != G_TYPE_STRING) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "metric.bleu4 fixture: %s[%u] is not a string",
                  what, i);
      g_free(out);
      return NULL;
    }
    out[i] = json_node_get_string(node);
  }
  return out;
}

/* One corpus: hyps (n) and refs in stream layout refs[r * n + i]. */
typedef struct corpus {
  const char **hyps;
  const char **refs;
  size_t n, n_refs;
} corpus;

static gboolean read_corpus(JsonNode *node, size_t c, corpus *out, GError **error) {
  memset(out, 0, sizeof *out);
  JsonObject *o = JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
  JsonNode *hn = o ? json_object_get_member(o, "hyps") : NULL;
  JsonNode *rn = o ? json_object_get_member(o, "refs") : NULL;
  if (!hn || !rn || !JSON_NODE_HOLDS_ARRAY(hn) || !JSON_NODE_HOLDS_ARRAY(rn)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "metric.bleu4 fixture: corpora[%zu] needs arrays 'hyps' and 'refs'", c);
    return FALSE;
  }
  g_autofree char *what = g_strdup_printf("corpora[%zu].hyps", c);
  out->hyps = string_array(json_node_get_array(hn), what, error);
  if (!out->hyps) return FALSE;
  out->n = json_array_get_length(json_node_get_array(hn));
  JsonArray *streams = json_node_get_array(rn);
  out->n_refs = json_array_get_length(streams);
  out->refs = g_new0(const char *, out->n * out->n_refs + 1);
  for (size_t r = 0; r < out->n_refs; r++) {
    JsonNode *s = json_array_get_element(streams, (guint)r);
    g_autofree char *swhat = g_strdup_printf("corpora[%zu].refs[%zu]", c, r);
    g_autofree const char **strs =
        JSON_NODE_HOLDS_ARRAY(s) ? string_array(json_node_get_array(s), swhat, error) : NULL;
    if (!strs || g_strv_length((char **)strs) != out->n) {
      if (error && !*error)
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                    "metric.bleu4 fixture: %s must be an array of %zu strings", swhat, out->n);
      return FALSE;
    }
    for (size_t i = 0; i < out->n; i++) out->refs[r * out->n + i] = strs[i];
  }
  return TRUE;
}

static void corpus_clear(corpus *c) {
  g_free(c->hyps);
  g_free(c->refs);
}

static gboolean cfg_bool(JsonObject *o, const char *key, gboolean fallback) {
  JsonNode *n = json_object_get_member(o, key);
  return n && json_node_get_value_type(n) == G_TYPE_BOOLEAN ? json_node_get_boolean(n) : fallback;
}

/* The corpus options from the fixture config (sacreBLEU BLEU() arguments). */
static gboolean options_from_config(const char *text, ps_bleu_options *opt, GError **error) {
  ps_bleu_options_default(opt);
  g_autoptr(JsonParser) p = json_parser_new();
  if (!json_parser_load_from_data(p, text ? text : "{}", -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(p);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) return TRUE;
  JsonObject *o = json_node_get_object(root);
  if (json_object_has_member(o, "tokenize")) {
    const char *tok = json_object_get_string_member(o, "tokenize");
    if (tok && strcmp(tok, "none") == 0) {
      opt->tokenize = PS_BLEU_TOKENIZE_NONE;
    } else if (!tok || strcmp(tok, "13a") != 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "metric.bleu4 fixture: tokenizer '%s' is not implemented (13a, none)",
                  tok ? tok : "?");
      return FALSE;
    }
  }
  if (json_object_has_member(o, "smooth_method")) {
    const char *sm = json_object_get_string_member(o, "smooth_method");
    opt->smooth = !sm                        ? PS_BLEU_SMOOTH_EXP
                  : strcmp(sm, "floor") == 0 ? PS_BLEU_SMOOTH_FLOOR
                  : strcmp(sm, "add-k") == 0 ? PS_BLEU_SMOOTH_ADD_K
                  : strcmp(sm, "none") == 0  ? PS_BLEU_SMOOTH_NONE
                                             : PS_BLEU_SMOOTH_EXP;
  }
  JsonNode *sv = json_object_get_member(o, "smooth_value");
  if (sv && JSON_NODE_HOLDS_VALUE(sv)) opt->smooth_value = json_node_get_double(sv);
  if (json_object_has_member(o, "max_ngram_order"))
    opt->max_order = (int)json_object_get_int_member(o, "max_ngram_order");
  opt->lowercase = cfg_bool(o, "lowercase", FALSE);
  opt->effective_order = cfg_bool(o, "effective_order", FALSE);
  return TRUE;
}

static gboolean put(ps_fixture *fx, const char *name, ps_dtype dtype, int32_t ndim,
                    const int64_t *shape, const void *data, GError **error) {
  g_autofree char *full = g_strconcat("output.", name, NULL);
  if (!ps_fixture_has(fx, full)) return TRUE;
  ps_tensor *t = ps_tensor_new(dtype, ndim, shape, error);
  if (!t) return FALSE;
  if (t->nbytes) memcpy(t->data, data, t->nbytes);
  ps_fixture_put(fx, name, t);
  return TRUE;
}

static gboolean run_bleu(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {"bleu",    "bp",      "counts",        "totals", "precisions",
                                      "sys_len", "ref_len", "sentence_bleu", "f1",     NULL};
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++) {
    if (g_str_has_prefix(names[i], "output.") && !g_strv_contains(known, names[i] + 7)) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "metric.bleu4 fixture: unknown output '%s'", names[i]);
      return FALSE;
    }
  }
  ps_bleu_options opt;
  if (!options_from_config(ps_fixture_config(fx), &opt, error)) return FALSE;
  ps_bleu_options sent = opt;
  sent.effective_order = TRUE; /* notes: BLEU(effective_order=True).sentence_score */

  const char *text = ps_fixture_metadata(fx, "corpora");
  g_autoptr(JsonParser) p = json_parser_new();
  if (!text) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "metric.bleu4 fixture: no 'corpora' metadata");
    return FALSE;
  }
  if (!json_parser_load_from_data(p, text, -1, error)) {
    g_prefix_error(error, "metric.bleu4 fixture: corpora: ");
    return FALSE;
  }
  JsonNode *root = json_parser_get_root(p);
  if (!root || !JSON_NODE_HOLDS_ARRAY(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "metric.bleu4 fixture: corpora is not an array");
    return FALSE;
  }
  JsonArray *arr = json_node_get_array(root);
  const size_t C = json_array_get_length(arr);
  const int N = opt.max_order;
  size_t n_max = 0; /* sentences per corpus: the per-sentence outputs are (C, n) */
  g_autofree corpus *cs = g_new0(corpus, C + 1);
  gboolean ok = TRUE;
  for (size_t c = 0; c < C && ok; c++) {
    ok = read_corpus(json_array_get_element(arr, (guint)c), c, &cs[c], error);
    if (ok && c > 0 && cs[c].n != n_max) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                  "metric.bleu4 fixture: corpora have different sizes (%zu, %zu)", n_max, cs[c].n);
      ok = FALSE;
    }
    n_max = cs[c].n;
  }
  g_autofree float *bleu = g_new0(float, C + 1), *bp = g_new0(float, C + 1);
  g_autofree float *prec = g_new0(float, C *N + 1);
  g_autofree int64_t *counts = g_new0(int64_t, C * N + 1), *totals = g_new0(int64_t, C * N + 1);
  g_autofree int64_t *sys_len = g_new0(int64_t, C + 1), *ref_len = g_new0(int64_t, C + 1);
  g_autofree float *sbleu = g_new0(float, C *n_max + 1), *f1 = g_new0(float, C *n_max + 1);
  const char **seg = g_new0(const char *, 64);
  size_t seg_cap = 64;
  for (size_t c = 0; c < C && ok; c++) {
    ps_bleu_score sc;
    ok = ps_bleu_corpus(&opt, cs[c].hyps, cs[c].n, cs[c].refs, cs[c].n_refs, &sc, error);
    if (!ok) {
      g_prefix_error(error, "metric.bleu4 fixture: corpus %zu: ", c);
      break;
    }
    bleu[c] = (float)sc.score;
    bp[c] = (float)sc.bp;
    sys_len[c] = sc.stats.sys_len;
    ref_len[c] = sc.stats.ref_len;
    for (int k = 0; k < N; k++) {
      prec[c * N + k] = (float)sc.precisions[k];
      counts[c * N + k] = sc.stats.correct[k];
      totals[c * N + k] = sc.stats.total[k];
    }
    if (cs[c].n_refs + 1 > seg_cap) {
      seg_cap = cs[c].n_refs + 1;
      seg = g_renew(const char *, seg, seg_cap);
    }
    for (size_t i = 0; i < cs[c].n && ok; i++) {
      for (size_t r = 0; r < cs[c].n_refs; r++) seg[r] = cs[c].refs[r * cs[c].n + i];
      ps_bleu_score ss;
      ok = ps_bleu_sentence(&sent, cs[c].hyps[i], seg, cs[c].n_refs, &ss, error);
      if (!ok) break;
      sbleu[c * n_max + i] = (float)ss.score;
      f1[c * n_max + i] = (float)ps_token_f1_max(cs[c].hyps[i], seg, cs[c].n_refs);
    }
  }
  g_free(seg);
  for (size_t c = 0; c < C; c++) corpus_clear(&cs[c]);
  if (!ok) return FALSE;

  const int64_t s1[1] = {(int64_t)C}, s2[2] = {(int64_t)C, N}, s3[2] = {(int64_t)C, (int64_t)n_max};
  return put(fx, "bleu", PS_DTYPE_F32, 1, s1, bleu, error) &&
         put(fx, "bp", PS_DTYPE_F32, 1, s1, bp, error) &&
         put(fx, "sys_len", PS_DTYPE_I64, 1, s1, sys_len, error) &&
         put(fx, "ref_len", PS_DTYPE_I64, 1, s1, ref_len, error) &&
         put(fx, "precisions", PS_DTYPE_F32, 2, s2, prec, error) &&
         put(fx, "counts", PS_DTYPE_I64, 2, s2, counts, error) &&
         put(fx, "totals", PS_DTYPE_I64, 2, s2, totals, error) &&
         put(fx, "sentence_bleu", PS_DTYPE_F32, 2, s3, sbleu, error) &&
         put(fx, "f1", PS_DTYPE_F32, 2, s3, f1, error);
}

static const char *const fixture_components[] = {"metric.bleu4", NULL};

const ps_fixture_iface ps_metric_text_fixture = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = fixture_components,
    .run = run_bleu,
};
