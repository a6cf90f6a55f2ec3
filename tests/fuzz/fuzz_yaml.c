/* fuzz_yaml.c — libFuzzer target for the YAML pipeline loader: arbitrary
 * bytes go through parsing (with its caps), merging, --set overrides and
 * validation against fake components, never through libyaml alone.
 *
 * Input layout: pipeline text, optionally followed by a line "%%SET" and one
 * --set override per line. When a pipeline loads, its resolved_yaml must load
 * again and re-emit identically (a fixed point), and a config text is parsed
 * against a schema on the side; any difference aborts. */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/pipeline.h>

/* Internal loader entry point (core/yaml_doc.h), not part of the public API. */
ps_pipeline *ps_pipeline_load_string(const char *text, gssize length, const char *origin,
                                     const char *const *overrides, ps_component_lookup lookup,
                                     void *user, GError **error);

static const ps_config_key enc_schema[] = {
    {"depth", PS_TYPE_INT, "4", 1, 64, NULL, "blocks"},
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base|large", "size"},
    {"dropout", PS_TYPE_FLOAT, "0.0", 0, 1, NULL, "dropout"},
    {"use_cls", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL, "class token"},
    {"lora.r", PS_TYPE_INT, "0", 0, 256, NULL, "rank"},
    {"lora.targets", PS_TYPE_STRING_LIST, "[q, v]", PS_NO_RANGE, NULL, "targets"},
    {"scales", PS_TYPE_FLOAT_LIST, "[1.0]", 0, 10, NULL, "scales"},
    {"heads", PS_TYPE_INT_LIST, "~", 1, 64, NULL, "heads"},
    {"name", PS_TYPE_STRING, "~", PS_NO_RANGE, NULL, "name"},
    {0},
};
static const ps_port_desc enc_in[] = {{"image", "", FALSE}, {"mask", "", TRUE}, {0}};
static const ps_port_desc enc_out[] = {{"embeddings", "", FALSE}, {"tokens", "", FALSE}, {0}};
static const ps_config_key dec_schema[] = {{"hidden", PS_TYPE_INT, NULL, 1, 4096, NULL, "width"}, {0}};
static const ps_port_desc dec_in[] = {{"emb", "", FALSE}, {"prompt", "", TRUE}, {0}};
static const ps_port_desc dec_out[] = {{"mask", "", FALSE}, {0}};
static const ps_config_key aug_schema[] = {{"strength", PS_TYPE_FLOAT, "0.5", 0, 1, NULL, "s"}, {0}};
static const ps_port_desc image[] = {{"image", "", FALSE}, {0}};
static const ps_config_key stage_schema[] = {
    {"steps", PS_TYPE_INT, "10", 1, 1e9, NULL, "steps"},
    {"advantage", PS_TYPE_ENUM, "gae", PS_NO_RANGE, "gae|group", "estimator"},
    {"train", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL, "components"},
    {0},
};
static const ps_port_desc none[] = {{0}};

static const ps_component_desc descs[] = {
    {sizeof(ps_component_desc), PS_KIND_ENCODER, "encoder.fake", "", enc_schema, enc_in, enc_out, NULL, NULL},
    {sizeof(ps_component_desc), PS_KIND_DECODER, "decoder.fake", "", dec_schema, dec_in, dec_out, NULL, NULL},
    {sizeof(ps_component_desc), PS_KIND_AUGMENTER, "augment.stain", "", aug_schema, image, image, NULL, NULL},
    {sizeof(ps_component_desc), PS_KIND_STAGE, "stage.fake", "", stage_schema, none, none, NULL, NULL},
};

static const ps_component_desc *lookup(const char *name, void *user) {
  (void)user;
  for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++)
    if (strcmp(descs[i].name, name) == 0)
      return &descs[i];
  return NULL;
}

static void check_fixed_point(const ps_pipeline *p) {
  GError *err = NULL;
  ps_pipeline *q = ps_pipeline_load_string(p->resolved_yaml, -1, "<resolved>", NULL, lookup, NULL, &err);
  if (!q) {
    fprintf(stderr, "resolved_yaml does not load again: %s\n---\n%s---\n", err->message, p->resolved_yaml);
    abort();
  }
  if (strcmp(p->resolved_yaml, q->resolved_yaml) != 0 || p->n_components != q->n_components ||
      p->n_stages != q->n_stages) {
    fprintf(stderr, "resolved_yaml is not a fixed point:\n%s---\n%s---\n", p->resolved_yaml, q->resolved_yaml);
    abort();
  }
  for (size_t i = 0; i < p->n_components; i++) {
    char *a = ps_config_format(p->components[i].config);
    char *b = ps_config_format(q->components[i].config);
    if (strcmp(a, b) != 0 || p->order[i] != q->order[i]) {
      fprintf(stderr, "component %zu differs after reload:\n%s---\n%s---\n", i, a, b);
      abort();
    }
    g_free(a);
    g_free(b);
  }
  ps_pipeline_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *text = g_strndup((const char *)data, size); /* the loader's text stops at a NUL */
  GPtrArray *sets = g_ptr_array_new_with_free_func(g_free);
  char *marker = strstr(text, "\n%%SET\n");
  if (marker) {
    *marker = '\0';
    char **lines = g_strsplit(marker + 7, "\n", 8);
    for (char **l = lines; *l; l++)
      if (**l)
        g_ptr_array_add(sets, g_strdup(*l));
    g_strfreev(lines);
  }
  g_ptr_array_add(sets, NULL);

  GError *err = NULL;
  ps_pipeline *p = ps_pipeline_load_string(text, -1, "<fuzz>", (const char *const *)sets->pdata, lookup, NULL,
                                           &err);
  if (p) {
    check_fixed_point(p);
    ps_pipeline_free(p);
  } else if (!err || !err->message || !*err->message) {
    fprintf(stderr, "load failed without a message\n");
    abort();
  }
  g_clear_error(&err);

  /* The same bytes as a component's config. */
  ps_config *cfg = ps_config_parse(enc_schema, text, "<fuzz config>", &err);
  if (cfg) {
    char *s = ps_config_format(cfg);
    g_free(s);
    ps_config_free(cfg);
  }
  g_clear_error(&err);

  g_ptr_array_free(sets, TRUE);
  g_free(text);
  return 0;
}
