/* metric_text_plugin.c — the `metric_text` plugin: components metric.bleu
 * (sacreBLEU-compatible BLEU) and metric.token_f1 (SQuAD token F1).  They
 * have no parameters and no ports; the evaluate stage calls them through the
 * "text_metric" capability (text_metric.h), and `pipeline fixture` runs
 * metric.bleu4 through the "fixture" one (metric_text_fixture.c). */
#include <string.h>

#include <pathseg/plugin.h>

#include "metric_text_internal.h"

static const ps_config_key bleu_keys[] = {
    {"tokenize", PS_TYPE_ENUM, "13a", PS_NO_RANGE, "13a|none", "sacreBLEU tokenizer"},
    {"smooth_method", PS_TYPE_ENUM, "exp", PS_NO_RANGE, "exp|floor|add-k|none",
     "smoothing of zero-match orders"},
    {"smooth_value", PS_TYPE_FLOAT, "null", 0, 1e9, NULL,
     "floor / add-k value; unset: 0.1 for floor, 1 for add-k"},
    {"lowercase", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL, "lowercase before tokenizing"},
    {"max_ngram_order", PS_TYPE_INT, "4", 1, PS_BLEU_MAX_ORDER, NULL, "BLEU-N"},
    {"effective_order", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "corpus score: average only the orders that have n-grams"},
    {"sentence_effective_order", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "sentence score: effective order (sacrebleu.sentence_bleu's default)"},
    {NULL},
};

static const ps_config_key f1_keys[] = {{NULL}};
static const ps_port_desc no_ports[] = {{NULL}};

static void *bleu_create(const ps_config *config, ps_context *ctx, GError **error) {
  ps_metric_text_self *s = g_new0(ps_metric_text_self, 1);
  ps_bleu_options_default(&s->bleu);
  s->bleu.tokenize = strcmp(ps_config_string(config, "tokenize"), "none") == 0
                         ? PS_BLEU_TOKENIZE_NONE
                         : PS_BLEU_TOKENIZE_13A;
  const char *sm = ps_config_string(config, "smooth_method");
  s->bleu.smooth = strcmp(sm, "floor") == 0   ? PS_BLEU_SMOOTH_FLOOR
                   : strcmp(sm, "add-k") == 0 ? PS_BLEU_SMOOTH_ADD_K
                   : strcmp(sm, "none") == 0  ? PS_BLEU_SMOOTH_NONE
                                              : PS_BLEU_SMOOTH_EXP;
  s->bleu.smooth_value =
      ps_config_has(config, "smooth_value") ? ps_config_float(config, "smooth_value") : -1.0;
  s->bleu.lowercase = ps_config_bool(config, "lowercase");
  s->bleu.max_order = (int)ps_config_int(config, "max_ngram_order");
  s->bleu.effective_order = ps_config_bool(config, "effective_order");
  s->sentence_effective_order = ps_config_bool(config, "sentence_effective_order");
  return s;
}

static void *f1_create(const ps_config *config, ps_context *ctx, GError **error) {
  return g_new0(ps_metric_text_self, 1);
}

static void metric_destroy(void *self) {
  g_free(self);
}

static gboolean bleu_corpus(void *self, const char *const *hyps, size_t n, const char *const *refs,
                            size_t n_refs, double *score, GError **error) {
  ps_metric_text_self *s = self;
  ps_bleu_score out;
  if (!ps_bleu_corpus(&s->bleu, hyps, n, refs, n_refs, &out, error)) return FALSE;
  *score = out.score;
  return TRUE;
}

static gboolean bleu_sentence(void *self, const char *hyp, const char *const *refs, size_t n_refs,
                              double *score, GError **error) {
  ps_metric_text_self *s = self;
  ps_bleu_options opt = s->bleu;
  opt.effective_order = s->sentence_effective_order;
  ps_bleu_score out;
  if (!ps_bleu_sentence(&opt, hyp, refs, n_refs, &out, error)) return FALSE;
  *score = out.score;
  return TRUE;
}

static gboolean f1_corpus(void *self, const char *const *hyps, size_t n, const char *const *refs,
                          size_t n_refs, double *score, GError **error) {
  const char **seg = g_new0(const char *, n_refs + 1);
  double sum = 0.0;
  for (size_t i = 0; i < n; i++) {
    for (size_t r = 0; r < n_refs; r++) seg[r] = refs[r * n + i];
    sum += ps_token_f1_max(hyps[i], seg, n_refs);
  }
  g_free(seg);
  *score = n > 0 ? 100.0 * sum / (double)n : 0.0;
  return TRUE;
}

static gboolean f1_sentence(void *self, const char *hyp, const char *const *refs, size_t n_refs,
                            double *score, GError **error) {
  *score = 100.0 * ps_token_f1_max(hyp, refs, n_refs);
  return TRUE;
}

static const ps_text_metric_iface bleu_iface = {
    .struct_size = sizeof(ps_text_metric_iface),
    .corpus_score = bleu_corpus,
    .sentence_score = bleu_sentence,
    .name = "bleu",
};

static const ps_text_metric_iface f1_iface = {
    .struct_size = sizeof(ps_text_metric_iface),
    .corpus_score = f1_corpus,
    .sentence_score = f1_sentence,
    .name = "token_f1",
};

static const void *bleu_capability(const char *name) {
  if (strcmp(name, PS_TEXT_METRIC_CAPABILITY) == 0) return &bleu_iface;
  if (strcmp(name, "fixture") == 0) return &ps_metric_text_fixture;
  return NULL;
}

static const void *f1_capability(const char *name) {
  return strcmp(name, PS_TEXT_METRIC_CAPABILITY) == 0 ? &f1_iface : NULL;
}

static const ps_component_vtable bleu_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = bleu_create,
    .destroy = metric_destroy,
};

static const ps_component_vtable f1_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = f1_create,
    .destroy = metric_destroy,
};

static const ps_component_desc bleu_desc = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_METRIC,
    .name = "metric.bleu",
    .doc = "Corpus BLEU exactly as sacreBLEU computes it (13a tokenizer, exp smoothing, "
           "several references: max n-gram counts, closest reference length) on a 0-100 scale.",
    .config = bleu_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &bleu_vtable,
    .capability = bleu_capability,
};

static const ps_component_desc f1_desc = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_METRIC,
    .name = "metric.token_f1",
    .doc = "SQuAD v1.1 token F1 (normalised token multisets, max over references); the corpus "
           "score is 100 x the mean over sentences.",
    .config = f1_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &f1_vtable,
    .capability = f1_capability,
};

static const ps_component_desc *const components[] = {&bleu_desc, &f1_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "metric_text",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Text metrics: sacreBLEU-compatible BLEU and SQuAD token F1",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &plugin;
}
