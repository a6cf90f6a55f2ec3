/* test_metric_plugin.c — the built metric_text plugin as the host and the
 * evaluate stage see it: metric.bleu4 through the fixture harness
 * (`pipeline fixture`), and the "text_metric" capability of metric.bleu and
 * metric.token_f1 against sacreBLEU's / the SQuAD script's numbers in the
 * same fixture. */
#include <pathseg/host.h>
#include <pathseg/pipeline.h>
#include <string.h>

#include "fixture_util.h"
#include "text_metric.h"

static void run_fixture(ps_registry *reg) {
  g_autofree char *path = ps_test_source_path("tests/fixtures/bleu.safetensors");
  g_autoptr(GPtrArray) results =
      g_ptr_array_new_with_free_func((GDestroyNotify)ps_fixture_result_free);
  GError *error = NULL;
  const gboolean ok = ps_fixture_run_file(reg, path, NULL, results, &error);
  PS_CHECK_MSG(ok, "bleu: %s", error ? error->message : "an output failed");
  g_clear_error(&error);
  for (guint i = 0; i < results->len; i++) {
    const ps_fixture_result *r = results->pdata[i];
    printf("  bleu %s: max abs %.3g, max rel %.3g%s%s\n", r->output, r->max_abs_err, r->max_rel_err,
           r->problem ? " — " : "", r->problem ? r->problem : "");
    PS_CHECK_MSG(r->passed, "bleu %s", r->output);
  }
  PS_CHECK(results->len == 9);
}

static void *create(ps_registry *reg, ps_context *ctx, const char *name, const char *yaml,
                    const ps_text_metric_iface **iface) {
  const ps_component_desc *desc = ps_registry_find(reg, name);
  PS_CHECK(desc != NULL && desc->kind == PS_KIND_METRIC);
  if (!desc) exit(1);
  GError *error = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(desc->config, yaml, name, &error);
  PS_CHECK_OK(cfg != NULL, error);
  if (!cfg) exit(1);
  void *self = desc->vtable->create(cfg, ctx, &error);
  PS_CHECK_OK(self != NULL, error);
  *iface = desc->capability(PS_TEXT_METRIC_CAPABILITY);
  PS_CHECK(*iface && (*iface)->struct_size == sizeof(ps_text_metric_iface));
  return self;
}

/* Corpus 2 of the fixture (three reference streams) through the capability. */
static void test_capability(ps_registry *reg, ps_context *ctx) {
  g_autoptr(ps_safetensors) st = fx_open("bleu.safetensors");
  g_autoptr(JsonParser) p = json_parser_new();
  PS_CHECK(json_parser_load_from_data(p, ps_safetensors_metadata(st, "corpora"), -1, NULL));
  JsonObject *o = json_array_get_object_element(json_node_get_array(json_parser_get_root(p)), 2);
  JsonArray *h = json_object_get_array_member(o, "hyps"),
            *r = json_object_get_array_member(o, "refs");
  const size_t n = json_array_get_length(h), R = json_array_get_length(r);
  g_autofree const char **hyps = g_new0(const char *, n);
  g_autofree const char **refs = g_new0(const char *, n *R);
  for (size_t i = 0; i < n; i++) hyps[i] = json_array_get_string_element(h, (guint)i);
  for (size_t k = 0; k < R; k++)
    for (size_t i = 0; i < n; i++)
      refs[k * n + i] =
          json_array_get_string_element(json_array_get_array_element(r, (guint)k), (guint)i);
  g_autofree float *w_bleu = fx_f32(st, "output.bleu", NULL);
  g_autofree float *w_sent = fx_f32(st, "output.sentence_bleu", NULL);
  g_autofree float *w_f1 = fx_f32(st, "output.f1", NULL);

  const ps_text_metric_iface *bleu, *f1;
  void *bs = create(reg, ctx, "metric.bleu", "{}", &bleu);
  void *fs = create(reg, ctx, "metric.token_f1", "{}", &f1);
  PS_CHECK(strcmp(bleu->name, "bleu") == 0 && strcmp(f1->name, "token_f1") == 0);
  GError *error = NULL;
  double score;
  PS_CHECK_OK(bleu->corpus_score(bs, hyps, n, refs, R, &score, &error), error);
  PS_CHECK_NEAR(score, w_bleu[2], 1e-4 + 1e-5 * fabs(w_bleu[2]));
  const char *seg[8];
  for (size_t k = 0; k < R; k++) seg[k] = refs[k * n + 7];
  PS_CHECK_OK(bleu->sentence_score(bs, hyps[7], seg, R, &score, &error), error);
  PS_CHECK_NEAR(score, w_sent[2 * n + 7], 1e-4 + 1e-5 * fabs(w_sent[2 * n + 7]));
  double mean = 0.0;
  for (size_t i = 0; i < n; i++) mean += w_f1[2 * n + i];
  mean = 100.0 * mean / (double)n;
  PS_CHECK_OK(f1->corpus_score(fs, hyps, n, refs, R, &score, &error), error);
  PS_CHECK_NEAR(score, mean, 1e-3);
  PS_CHECK_OK(f1->sentence_score(fs, hyps[7], seg, R, &score, &error), error);
  PS_CHECK_NEAR(score, 100.0 * w_f1[2 * n + 7], 1e-3);

  /* Config reaches the options: lowercase makes "THE CAT" match "the cat". */
  const ps_component_desc *desc = ps_registry_find(reg, "metric.bleu");
  desc->vtable->destroy(bs);
  bs = create(reg, ctx, "metric.bleu", "lowercase: true\n", &bleu);
  const char *hyp1[1] = {"THE CAT SAT ON THE MAT"}, *ref1[1] = {"the cat sat on the mat"};
  PS_CHECK_OK(bleu->corpus_score(bs, hyp1, 1, ref1, 1, &score, &error), error);
  PS_CHECK_NEAR(score, 100.0, 1e-9);
  desc->vtable->destroy(bs);
  ps_registry_find(reg, "metric.token_f1")->vtable->destroy(fs);
  /* The schema refuses an unknown smoothing method. */
  ps_config *bad = ps_config_parse(desc->config, "smooth_method: laplace\n", "test", &error);
  PS_CHECK_FAILS_WITH(bad != NULL, error, "smooth_method");
}

int main(void) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *path = g_build_filename(dir ? dir : "plugins", "pathseg-metric_text.so", NULL);
  GError *error = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, path, &error), error);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 0);
  run_fixture(reg);
  test_capability(reg, ctx);
  return ps_test_finish();
}
