/* test_pipeline.c — pipeline files end to end against fake components:
 * every user-facing error with its file:line:col and message, extends deep
 * merge (scalar replace, nested merge, null delete, list replace, a list of
 * bases in other directories), --set overrides, topological order, defaults,
 * and that resolved_yaml loads back to the same pipeline. */
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <pathseg/pipeline.h>

#include <ps_test.h>

#include "fake_components.h"

static char *yaml_path(const char *name) {
  g_autofree char *rel = g_build_filename("tests/pipeline/yaml", name, NULL);
  return ps_test_source_path(rel);
}

static ps_pipeline *load(const char *name, const char *const *overrides, GError **err) {
  g_autofree char *path = yaml_path(name);
  return ps_pipeline_load(path, overrides, fake_lookup, NULL, err);
}

typedef struct {
  const char *file;
  const char *needle; /* must appear in the message: "file.yaml:L:C: ..." */
} error_case;

static void test_errors(void) {
  static const error_case cases[] = {
      {"err_malformed.yaml", "err_malformed.yaml:4:24: malformed YAML: did not find expected ',' or ']'"},
      {"err_tab.yaml", "err_tab.yaml:3:1: malformed YAML: found character that cannot start any token"},
      {"err_tab.yaml", "tabs cannot indent YAML, use spaces"},
      {"err_dup.yaml", "err_dup.yaml:5:3: duplicate key 'aug' in one mapping (first at line 2, column 3)"},
      {"err_top_unknown.yaml", "err_top_unknown.yaml:2:1: unknown top-level key 'stges' (did you mean 'stages'?)"},
      {"err_plugin.yaml",
       "err_plugin.yaml:3:13: components.enc.plugin: unknown plugin component 'encoder.nosuch'"},
      {"err_config_key.yaml",
       "err_config_key.yaml:5:7: unknown key 'dpeth' in components.enc.with (did you mean 'depth'?)"},
      {"err_type.yaml", "err_type.yaml:4:19: components.enc.with.depth: expected an int, got the float '2.5'"},
      {"err_range.yaml", "err_range.yaml:6:12: components.enc.with.lora.r: 999 is out of range [0, 256]"},
      {"err_enum.yaml",
       "err_enum.yaml:4:20: components.enc.with.preset: expected one of tiny|base|large, got 'huge'"},
      {"err_required.yaml",
       "err_required.yaml:4:11: components.dec.with: missing required key 'hidden' (int: hidden width)"},
      {"err_port.yaml",
       "err_port.yaml:4:14: components.enc.inputs: unknown input port 'imgae' of encoder.fake (did you mean 'image'?)"},
      {"err_dangling.yaml",
       "err_dangling.yaml:8:19: components.dec.inputs.emb: dangling binding 'enc.embedings': enc (encoder.fake) "
       "has no output 'embedings' (did you mean 'embeddings'?)"},
      {"err_dangling_component.yaml",
       "err_dangling_component.yaml:8:19: components.dec.inputs.emb: dangling binding 'ecn.embeddings': there is "
       "no component 'ecn' (did you mean 'enc'?)"},
      {"err_unbound.yaml",
       "err_unbound.yaml:5:13: components.dec.inputs: required input 'emb' of decoder.fake is not bound"},
      {"err_cycle.yaml", "err_cycle.yaml:5:3: components: the inputs form a cycle: a -> b -> a"},
      {"err_extends_cycle_a.yaml", "err_extends_cycle_b.yaml:2:27: extends: cycle: "},
      {"err_extends_cycle_a.yaml", "err_extends_cycle_a.yaml -> "},
      {"err_extends_missing.yaml", "err_extends_missing.yaml:2:10: extends: cannot read "},
      {"err_extends_missing.yaml", "nosuch_base.yaml: No such file or directory"},
      {"err_deep.yaml", "err_deep.yaml:1:76: nesting deeper than 64 levels"},
      {"err_bomb.yaml", "err_bomb.yaml:"},
      {"err_bomb.yaml", "would expand the document past 200000 nodes (an alias bomb?)"},
      {"err_schema_bug.yaml", "err_schema_bug.yaml:2:3: components.bad.with: encoder.badschema has a malformed "
                              "default for 'x' (\"[oops\"): it is not valid YAML — a bug in that plugin's schema"},
      {"err_stage_kind.yaml",
       "err_stage_kind.yaml:3:13: stages.sft.plugin: 'encoder.fake' is a component of kind encoder, not a stage"},
      {"err_component_key.yaml",
       "err_component_key.yaml:5:5: unknown key 'wieghts' in components.enc (did you mean 'weights'?)"},
      {"err_list_item.yaml",
       "err_list_item.yaml:6:26: components.enc.with.scales: item 3: expected a float, got 'big'"},
      {"err_bool.yaml",
       "err_bool.yaml:5:21: components.enc.with.use_cls: expected a bool (true or false), got 'yes'"},
      {"err_role.yaml",
       "err_role.yaml:5:25: components.enc.roles.blocks.*: expected one of frozen|full|lora|adapter|backbone, "
       "got 'adaptor' (did you mean 'adapter'?)"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    GError *err = NULL;
    ps_pipeline *p = load(cases[i].file, NULL, &err);
    PS_CHECK_MSG(!p && err && strstr(err->message, cases[i].needle), "%s: want \"%s\", got \"%s\"",
                 cases[i].file, cases[i].needle, p ? "success" : err ? err->message : "no error");
    ps_pipeline_free(p);
    g_clear_error(&err);
  }
}

static void test_oversized(void) {
  GError *err = NULL;
  g_autofree char *dir = g_dir_make_tmp("pathseg-yaml-XXXXXX", &err);
  PS_CHECK_OK(dir != NULL, err);
  if (!dir)
    return;
  g_autofree char *path = g_build_filename(dir, "big.yaml", NULL);
  gsize n = 4u * 1024u * 1024u + 1u;
  g_autofree char *text = g_malloc(n);
  memset(text, '#', n);
  PS_CHECK_OK(g_file_set_contents(path, text, (gssize)n, &err), err);
  PS_CHECK_FAILS_WITH(ps_pipeline_load(path, NULL, fake_lookup, NULL, &err), err,
                      "big.yaml: the file is 4194305 bytes, over the limit of 4 MiB");
  g_unlink(path);
  g_rmdir(dir);
}

static void test_bad_overrides(void) {
  static const struct {
    const char *set;
    const char *needle;
  } cases[] = {
      {"seed", "bad --set 'seed': expected KEY.PATH=VALUE (e.g. stages.sft.steps=10)"},
      {"=3", "bad --set '=3': expected KEY.PATH=VALUE"},
      {"seed=[1", "bad --set 'seed=[1': the value is not valid YAML: --set 'seed=[1':2:1: malformed YAML: did not find expected ',' or ']'"},
      {"seed.x=1", "bad --set 'seed.x=1': 'seed' is '99' (at --set 'seed=99'), not a mapping"},
      {"components..with=1", "bad --set 'components..with=1': 'components..with' has an empty key"},
      {"components.enc.with.dpeth=3",
       "--set 'components.enc.with.dpeth=3': unknown key 'dpeth' in components.enc.with (did you mean 'depth'?)"},
      {"stages.sft.stpes=3", "--set 'stages.sft.stpes=3': unknown key 'stpes' in stages.sft (did you mean 'steps'?)"},
      {"sede=3", "--set 'sede=3': unknown top-level key 'sede' (did you mean 'seed'?)"},
      {"components.enc.with.depth=abc",
       "--set 'components.enc.with.depth=abc': components.enc.with.depth: expected an int, got 'abc'"},
      {"components.enc.with.depth=\"4\"", "components.enc.with.depth: expected an int, got the string '4'"},
      {"stages.sft.steps=0", "--set 'stages.sft.steps=0': stages.sft.steps: 0 is out of range [1, 1000000000]"},
      {"components.nosuch.with.depth=3",
       "--set 'components.nosuch.with.depth=3': components.nosuch: missing required key 'plugin'"},
      {"components.enc.inputs.image=aug.nosuch", "dangling binding 'aug.nosuch'"},
      {"components.aug=~", "components.enc.inputs.image: dangling binding 'aug.image': there is no component 'aug'"},
      {"extends=x.yaml", "--set 'extends=x.yaml': extends: only a file can extend another"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    GError *err = NULL;
    const char *const overrides[] = {"seed=99", cases[i].set, NULL};
    ps_pipeline *p = load("good_base.yaml", overrides, &err);
    PS_CHECK_MSG(!p && err && strstr(err->message, cases[i].needle), "--set %s: want \"%s\", got \"%s\"",
                 cases[i].set, cases[i].needle, p ? "success" : err ? err->message : "no error");
    ps_pipeline_free(p);
    g_clear_error(&err);
  }
}

static const char *order_names(const ps_pipeline *p, GString *out) {
  g_string_truncate(out, 0);
  for (size_t i = 0; i < p->n_components; i++)
    g_string_append_printf(out, "%s%s", i ? " " : "", p->components[p->order[i]].name);
  return out->str;
}

static void check_base(const ps_pipeline *p) {
  g_autoptr(GString) s = g_string_new(NULL);
  PS_CHECK(strcmp(p->name, "base") == 0);
  PS_CHECK(strcmp(p->description, "a small graph for the loader tests") == 0);
  PS_CHECK(p->seed == 1234 && p->device == PS_DEVICE_CPU && p->threads == 2);
  PS_CHECK(strcmp(p->run_dir, "runs") == 0);
  PS_CHECK(p->n_components == 4 && p->n_stages == 2);
  /* Document order dec, enc, aug, aug2; data flows aug -> enc -> dec; aug2
   * is ready from the start but comes later in the document than aug, enc
   * and dec are only ready after it. */
  PS_CHECK_MSG(strcmp(order_names(p, s), "aug enc dec aug2") == 0, "order: %s", s->str);

  const ps_pipeline_component *enc = ps_pipeline_get_component(p, "enc");
  PS_CHECK(enc && enc->desc == &fake_encoder && strcmp(enc->plugin, "encoder.fake") == 0);
  if (!enc)
    return;
  PS_CHECK(ps_config_int(enc->config, "depth") == 6);
  PS_CHECK(ps_config_int(enc->config, "lora.r") == 8);
  PS_CHECK(ps_config_float(enc->config, "lora.alpha") == 16.0);
  size_t n = 0;
  const double *scales = ps_config_float_list(enc->config, "scales", &n);
  PS_CHECK(n == 2 && scales[0] == 1.0 && scales[1] == 0.5);
  /* Defaults filled in. */
  PS_CHECK(ps_config_int(enc->config, "width") == 64);
  PS_CHECK(strcmp(ps_config_string(enc->config, "preset"), "tiny") == 0);
  PS_CHECK(ps_config_bool(enc->config, "use_cls") == TRUE);
  PS_CHECK(ps_config_float(enc->config, "dropout") == 0.0);
  const char *const *targets = ps_config_string_list(enc->config, "lora.targets", &n);
  PS_CHECK(n == 2 && strcmp(targets[0], "q") == 0 && strcmp(targets[1], "v") == 0);
  PS_CHECK(!ps_config_has(enc->config, "heads") && !ps_config_has(enc->config, "checkpoint_name"));
  /* Ports, weights (relative to the YAML file), prefix, roles. */
  PS_CHECK(enc->n_inputs == 1 && strcmp(enc->inputs[0].port, "image") == 0 &&
           strcmp(enc->inputs[0].source, "aug") == 0 && strcmp(enc->inputs[0].source_port, "image") == 0);
  g_autofree char *want_weights = yaml_path("weights/enc.safetensors");
  g_autofree char *want_abs = g_canonicalize_filename(want_weights, NULL);
  PS_CHECK_MSG(enc->weights && strcmp(enc->weights, want_abs) == 0, "weights %s", enc->weights);
  PS_CHECK(strcmp(enc->weights_prefix, "image_encoder.") == 0);
  PS_CHECK(enc->n_roles == 1 && strcmp(enc->roles[0].pattern, "blocks.*.adapter.*") == 0 &&
           enc->roles[0].role == PS_ROLE_ADAPTER);
  PS_CHECK_MSG(g_str_has_suffix(enc->where, "good_base.yaml:15:3"), "where %s", enc->where);

  const ps_pipeline_component *dec = ps_pipeline_get_component(p, "dec");
  PS_CHECK(dec && ps_config_int(dec->config, "hidden") == 32 && dec->n_inputs == 2 && dec->weights == NULL &&
           strcmp(dec->weights_prefix, "") == 0);
  PS_CHECK(dec && strcmp(dec->inputs[1].source, "data") == 0 && strcmp(dec->inputs[1].source_port, "prompt") == 0);
  const ps_pipeline_component *aug = ps_pipeline_get_component(p, "aug");
  PS_CHECK(aug && ps_config_float(aug->config, "strength") == 0.5);
  PS_CHECK(ps_pipeline_get_component(p, "nosuch") == NULL);

  PS_CHECK(strcmp(p->stages[0].name, "sft") == 0 && p->stages[0].enabled && p->stages[0].desc == &fake_stage);
  PS_CHECK(ps_config_int(p->stages[0].config, "steps") == 100);
  PS_CHECK(ps_config_float(p->stages[0].config, "lr") == 0.001);
  PS_CHECK(strcmp(p->stages[1].name, "grpo") == 0 && !p->stages[1].enabled);
  PS_CHECK(strcmp(ps_config_string(p->stages[1].config, "advantage"), "group") == 0);
  PS_CHECK(g_path_is_absolute(p->path) && g_str_has_suffix(p->path, "tests/pipeline/yaml/good_base.yaml"));
}

static void check_same(const ps_pipeline *a, const ps_pipeline *b) {
  PS_CHECK(strcmp(a->name, b->name) == 0 && strcmp(a->description, b->description) == 0);
  PS_CHECK(a->seed == b->seed && a->device == b->device && a->threads == b->threads);
  PS_CHECK(strcmp(a->run_dir, b->run_dir) == 0);
  PS_CHECK(a->n_components == b->n_components && a->n_stages == b->n_stages);
  if (a->n_components != b->n_components || a->n_stages != b->n_stages)
    return;
  for (size_t i = 0; i < a->n_components; i++) {
    const ps_pipeline_component *x = &a->components[i], *y = &b->components[i];
    PS_CHECK(a->order[i] == b->order[i]);
    PS_CHECK(strcmp(x->name, y->name) == 0 && x->desc == y->desc);
    g_autofree char *cx = ps_config_format(x->config);
    g_autofree char *cy = ps_config_format(y->config);
    PS_CHECK_MSG(strcmp(cx, cy) == 0, "%s:\n%s\nvs\n%s", x->name, cx, cy);
    PS_CHECK(x->n_inputs == y->n_inputs && g_strcmp0(x->weights, y->weights) == 0 &&
             strcmp(x->weights_prefix, y->weights_prefix) == 0 && x->n_roles == y->n_roles);
    for (size_t k = 0; k < x->n_inputs && k < y->n_inputs; k++)
      PS_CHECK(strcmp(x->inputs[k].port, y->inputs[k].port) == 0 &&
               strcmp(x->inputs[k].source, y->inputs[k].source) == 0 &&
               strcmp(x->inputs[k].source_port, y->inputs[k].source_port) == 0);
  }
  for (size_t i = 0; i < a->n_stages; i++) {
    g_autofree char *cx = ps_config_format(a->stages[i].config);
    g_autofree char *cy = ps_config_format(b->stages[i].config);
    PS_CHECK(strcmp(a->stages[i].name, b->stages[i].name) == 0 && a->stages[i].enabled == b->stages[i].enabled &&
             strcmp(cx, cy) == 0);
  }
}

/* Writes resolved_yaml to a file elsewhere and loads it: same pipeline. */
static void check_reload(const ps_pipeline *p) {
  GError *err = NULL;
  g_autofree char *dir = g_dir_make_tmp("pathseg-yaml-XXXXXX", &err);
  PS_CHECK_OK(dir != NULL, err);
  if (!dir)
    return;
  g_autofree char *path = g_build_filename(dir, "resolved.yaml", NULL);
  PS_CHECK_OK(g_file_set_contents(path, p->resolved_yaml, -1, &err), err);
  g_autoptr(ps_pipeline) q = ps_pipeline_load(path, NULL, fake_lookup, NULL, &err);
  PS_CHECK_OK(q != NULL, err);
  if (q) {
    check_same(p, q);
    PS_CHECK_MSG(strcmp(p->resolved_yaml, q->resolved_yaml) == 0, "%s\nvs\n%s", p->resolved_yaml,
                 q->resolved_yaml);
  }
  g_unlink(path);
  g_rmdir(dir);
}

static void test_base(void) {
  GError *err = NULL;
  int calls = 0;
  g_autofree char *path = yaml_path("good_base.yaml");
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, NULL, fake_lookup, &calls, &err);
  PS_CHECK_OK(p != NULL, err);
  PS_CHECK(calls == 6); /* the user pointer reaches the callback: 4 components, 2 stages */
  if (!p)
    return;
  check_base(p);
  check_reload(p);
}

static void test_extends(void) {
  GError *err = NULL;
  g_autoptr(GString) s = g_string_new(NULL);
  g_autoptr(ps_pipeline) p = load("good_ablation.yaml", NULL, &err);
  PS_CHECK_OK(p != NULL, err);
  if (!p)
    return;
  PS_CHECK(strcmp(p->name, "ablation") == 0 && p->seed == 1234); /* replaced / inherited */
  PS_CHECK(p->n_components == 3 && ps_pipeline_get_component(p, "aug2") == NULL); /* null deletes */
  PS_CHECK_MSG(strcmp(order_names(p, s), "aug enc dec") == 0, "order: %s", s->str);
  const ps_pipeline_component *enc = ps_pipeline_get_component(p, "enc");
  PS_CHECK(ps_config_int(enc->config, "depth") == 2);           /* scalar replaced */
  PS_CHECK(ps_config_int(enc->config, "lora.r") == 4);          /* nested merge ... */
  PS_CHECK(ps_config_float(enc->config, "lora.alpha") == 16.0); /* ... keeps siblings */
  size_t n = 0;
  const double *scales = ps_config_float_list(enc->config, "scales", &n);
  PS_CHECK(n == 1 && scales[0] == 2.0); /* list replaced, not appended */
  PS_CHECK(strcmp(enc->weights_prefix, "image_encoder.") == 0);
  /* The base's weights path stays relative to the base file. */
  g_autofree char *want_weights = yaml_path("weights/enc.safetensors");
  g_autofree char *want_abs = g_canonicalize_filename(want_weights, NULL);
  PS_CHECK(enc->weights && strcmp(enc->weights, want_abs) == 0);
  PS_CHECK(p->n_stages == 2 && p->stages[1].enabled);
  PS_CHECK(strcmp(ps_config_string(p->stages[1].config, "advantage"), "gae") == 0); /* deleted: default */
  PS_CHECK(strstr(p->resolved_yaml, "aug2") == NULL && strstr(p->resolved_yaml, "extends") == NULL);
  check_reload(p);

  /* A list of bases, one in a subdirectory with its own relative weights. */
  g_autoptr(ps_pipeline) q = load("good_list.yaml", NULL, &err);
  PS_CHECK_OK(q != NULL, err);
  if (!q)
    return;
  PS_CHECK(q->seed == 7 && q->threads == 1 && strcmp(q->name, "ablation") == 0);
  const ps_pipeline_component *qe = ps_pipeline_get_component(q, "enc");
  g_autofree char *sub = yaml_path("sub/enc_sub.safetensors");
  g_autofree char *sub_abs = g_canonicalize_filename(sub, NULL);
  PS_CHECK_MSG(qe && qe->weights && strcmp(qe->weights, sub_abs) == 0, "weights %s", qe ? qe->weights : "");
  PS_CHECK(qe && ps_config_int(qe->config, "depth") == 2);
  check_reload(q);
}

static void test_overrides(void) {
  GError *err = NULL;
  const char *const sets[] = {
      "stages.sft.steps=5",                        /* nested stage key */
      "stages.grpo.advantage=gae",                 /* enum */
      "components.enc.with.lora.r=16",             /* nested component config */
      "components.enc.with.heads=[2, 4, 8]",       /* flow list */
      "components.dec.with={hidden: 64}",          /* flow mapping replaces `with` */
      "components.aug2=~",                         /* deletes a component */
      "components.enc.weights=/tmp/abs.safetensors",
      "device=cuda",
      "name = renamed",                            /* spaces around the key are trimmed */
      NULL,
  };
  g_autoptr(ps_pipeline) p = load("good_base.yaml", sets, &err);
  PS_CHECK_OK(p != NULL, err);
  if (!p)
    return;
  PS_CHECK(ps_config_int(p->stages[0].config, "steps") == 5);
  PS_CHECK(strcmp(ps_config_string(p->stages[1].config, "advantage"), "gae") == 0);
  const ps_pipeline_component *enc = ps_pipeline_get_component(p, "enc");
  PS_CHECK(ps_config_int(enc->config, "lora.r") == 16 && ps_config_int(enc->config, "depth") == 6);
  size_t n = 0;
  const int64_t *heads = ps_config_int_list(enc->config, "heads", &n);
  PS_CHECK(ps_config_has(enc->config, "heads") && n == 3 && heads[0] == 2 && heads[2] == 8);
  PS_CHECK(ps_config_int(ps_pipeline_get_component(p, "dec")->config, "hidden") == 64);
  PS_CHECK(p->n_components == 3 && ps_pipeline_get_component(p, "aug2") == NULL);
  PS_CHECK(strcmp(enc->weights, "/tmp/abs.safetensors") == 0);
  PS_CHECK(p->device == PS_DEVICE_CUDA && p->seed == 1234 && strcmp(p->name, "renamed") == 0);
  check_reload(p);
}

static void test_anchors(void) {
  GError *err = NULL;
  g_autoptr(GString) s = g_string_new(NULL);
  g_autoptr(ps_pipeline) p = load("good_anchors.yaml", NULL, &err);
  PS_CHECK_OK(p != NULL, err);
  if (!p)
    return;
  const ps_pipeline_component *aug2 = ps_pipeline_get_component(p, "aug2");
  PS_CHECK(aug2 && ps_config_float(aug2->config, "strength") == 0.1 && aug2->n_inputs == 1 &&
           strcmp(aug2->inputs[0].source, "data") == 0);
  const ps_pipeline_component *enc = ps_pipeline_get_component(p, "enc");
  PS_CHECK(enc && ps_config_int(enc->config, "depth") == 5 &&
           strcmp(ps_config_string(enc->config, "preset"), "base") == 0);
  PS_CHECK_MSG(strcmp(order_names(p, s), "aug aug2 enc") == 0, "order: %s", s->str);
  check_reload(p);
}

static void test_find(void) {
  GError *err = NULL;
  g_autofree char *dir = yaml_path("");
  const char *const dirs[] = {"/nonexistent-dir", dir, NULL};
  g_autofree char *found = ps_pipeline_find("good_base", dirs, &err);
  PS_CHECK_OK(found && g_str_has_suffix(found, "good_base.yaml") && g_file_test(found, G_FILE_TEST_IS_REGULAR),
              err);
  g_autofree char *direct = yaml_path("good_list.yaml");
  g_autofree char *found2 = ps_pipeline_find(direct, NULL, &err);
  PS_CHECK_OK(found2 && strcmp(found2, direct) == 0, err);
  PS_CHECK_FAILS_WITH(ps_pipeline_find("no_such_pipeline", dirs, &err), err,
                      "pipeline 'no_such_pipeline' not found (looked in: ., /nonexistent-dir, ");
}

static void test_defaults_only(void) {
  /* A file with nothing but a name: every top-level default. */
  GError *err = NULL;
  g_autofree char *dir = g_dir_make_tmp("pathseg-yaml-XXXXXX", &err);
  g_autofree char *path = g_build_filename(dir, "minimal.yaml", NULL);
  PS_CHECK_OK(g_file_set_contents(path, "# nothing set\n", -1, &err), err);
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, NULL, fake_lookup, NULL, &err);
  PS_CHECK_OK(p != NULL, err);
  PS_CHECK(p && strcmp(p->name, "minimal") == 0 && p->seed == 0 && p->device == PS_DEVICE_CPU &&
           p->threads == 0 && strcmp(p->run_dir, "runs") == 0 && p->n_components == 0 && p->n_stages == 0);
  g_unlink(path);
  g_rmdir(dir);
}

int main(void) {
  test_errors();
  test_oversized();
  test_bad_overrides();
  test_base();
  test_extends();
  test_overrides();
  test_anchors();
  test_find();
  test_defaults_only();
  return ps_test_finish();
}
