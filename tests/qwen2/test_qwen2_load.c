/* test_qwen2_load.c — llm.qwen2's `checkpoint` and `adapter` configs: a
 * model saved under the newer Qwen2.5-VL names (model.language_model.*,
 * lm_head.weight) plus a peft adapter file (base_model.model.<path>.lora_*)
 * loads into a fresh instance that then computes the same logits bit for
 * bit; the older model.* names load too; a missing tensor, a wrong shape and
 * an adapter without lora.r are errors that name the problem. */
#include <glib/gstdio.h>
#include <pathseg/safetensors.h>

#include "qw_harness.h"

#define CFG                                                                                        \
  "hidden: 16, layers: 2, heads: 4, kv_heads: 2, intermediate: 24, vocab: 29, tied: false, "
#define LORA "lora: {r: 2, alpha: 4, dropout: 0.0, targets: [q_proj, o_proj, down_proj]}"

/* Writes the instance's base parameters (renamed model. -> `base_prefix`)
 * into `base` and its LoRA tensors under peft names into `adapter`. */
static void save(qw_comp *c, const char *base_prefix, const char *base, const char *adapter,
                 const char *skip) {
  g_autoptr(ps_safetensors_writer) wb = ps_safetensors_writer_new();
  g_autoptr(ps_safetensors_writer) wa = ps_safetensors_writer_new();
  GError *err = NULL;
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    const char *n = pl.items[i].name;
    if (skip && strcmp(n, skip) == 0) continue;
    g_autofree char *renamed =
        g_str_has_prefix(n, "model.") ? g_strconcat(base_prefix, n + 6, NULL) : g_strdup(n);
    if (strstr(n, ".lora_")) {
      g_autofree char *peft = g_strconcat("base_model.model.", renamed, NULL);
      PS_CHECK_OK(ps_safetensors_writer_add(wa, peft, pl.items[i].value, &err), err);
    } else {
      PS_CHECK_OK(ps_safetensors_writer_add(wb, renamed, pl.items[i].value, &err), err);
    }
  }
  PS_CHECK_OK(ps_safetensors_writer_write(wb, base, &err), err);
  PS_CHECK_OK(ps_safetensors_writer_write(wa, adapter, &err), err);
}

static ps_tensor *logits_of(qw_comp *c, ps_tensor *ids) {
  qw_set_input(c, "input_ids", ids, FALSE);
  if (!qw_forward(c)) return NULL;
  return ps_tensor_copy(qw_output(c, "logits"), NULL);
}

int main(void) {
  g_autofree char *dir = g_dir_make_tmp("qwen2-load-XXXXXX", NULL);
  g_autofree char *base = g_build_filename(dir, "model.safetensors", NULL);
  g_autofree char *adapter = g_build_filename(dir, "adapter_model.safetensors", NULL);
  g_autofree char *old = g_build_filename(dir, "old.safetensors", NULL);
  g_autofree char *old_adapter = g_build_filename(dir, "old_adapter.safetensors", NULL);
  g_autofree char *partial = g_build_filename(dir, "partial.safetensors", NULL);
  g_autofree char *partial_adapter = g_build_filename(dir, "partial_adapter.safetensors", NULL);
  ps_rng rng;
  ps_rng_seed(&rng, 31);
  static const int32_t ids[] = {1, 7, 3, 28, 0, 5, 9, 9, 14, 2, 21, 6};
  g_autoptr(ps_tensor) tids = qw_ids(2, 6, ids);

  qw_comp a;
  if (!qw_init(&a, "{" CFG LORA "}", 1)) return ps_test_finish();
  qw_randomize(&a, &rng, 0.3); /* LoRA B non-zero too */
  g_autoptr(ps_tensor) want = logits_of(&a, tids);
  save(&a, "model.language_model.", base, adapter, NULL);
  save(&a, "model.", old, old_adapter, NULL);
  save(&a, "model.", partial, partial_adapter, "model.layers.1.mlp.up_proj.weight");
  qw_clear(&a);

  const char *variants[][2] = {{base, adapter}, {old, old_adapter}, {base, old_adapter}};
  for (int v = 0; v < 3; v++) {
    g_autofree char *yaml = g_strdup_printf("{" CFG LORA ", checkpoint: '%s', adapter: '%s'}",
                                            variants[v][0], variants[v][1]);
    qw_comp b;
    if (!qw_init(&b, yaml, 2)) continue;
    g_autoptr(ps_tensor) got = logits_of(&b, tids);
    PS_CHECK_MSG(got && want && memcmp(got->data, want->data, want->nbytes) == 0,
                 "variant %d: logits after loading differ", v);
    qw_clear(&b);
  }

  /* errors */
  const ps_component_desc *d = ps_registry_find(qw_registry(), "llm.qwen2");
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  GError *err = NULL;
  struct {
    const char *yaml_fmt, *path, *needle;
  } bad[] = {
      {"{" CFG LORA ", checkpoint: '%s'}", partial, "model.layers.1.mlp.up_proj.weight"},
      {"{" CFG "lora: {r: 3, targets: [q_proj]}, adapter: '%s'}", adapter,
       "layers.0.self_attn.q_proj.lora_A.weight"},
      {"{" CFG "adapter: '%s'}", adapter, "lora.r is 0"},
      {"{hidden: 16, layers: 2, heads: 4, kv_heads: 2, intermediate: 20, vocab: 29, tied: false, "
       "checkpoint: '%s'}",
       base, "model.language_model.layers.0.mlp.gate_proj.weight"},
      {"{" CFG "checkpoint: '%s'}", "/nonexistent/model.safetensors", "nonexistent"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autofree char *yaml = g_strdup_printf(bad[i].yaml_fmt, bad[i].path);
    g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", &err);
    PS_CHECK_OK(cfg != NULL, err);
    if (!cfg) continue;
    void *self = d->vtable->create(cfg, ctx, &err);
    PS_CHECK_FAILS_WITH(self != NULL, err, bad[i].needle);
    if (self) d->vtable->destroy(self);
  }
  const char *files[] = {base, adapter, old, old_adapter, partial, partial_adapter};
  for (size_t i = 0; i < G_N_ELEMENTS(files); i++) g_unlink(files[i]);
  g_rmdir(dir);
  return ps_test_finish();
}
