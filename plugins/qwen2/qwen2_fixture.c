/* qwen2_fixture.c — the "fixture" capability of the qwen2 plugin: runs the
 * qwen2.decoder reference fixture (transformers Qwen2ForCausalLM, eager; peft
 * LoRA) through the plugin's own decoder. Every size comes from the
 * fixture's JSON config (HF Qwen2Config names); parameters load by their HF
 * names, LoRA tensors by peft's saved-adapter names. Outputs: `logits` and
 * `hidden_last` (full pass), `logits_incremental` (prefix_len tokens into a
 * KV cache, then the rest with positions continuing), `logits_lora`.
 * It runs on the CPU table whatever the context's device (host buffers). */
#include <json-glib/json-glib.h>
#include <string.h>

#include <pathseg/error.h>

#include "qwen2.h"
#include "qwen2_plugin.h"

static double num(JsonObject *o, const char *key, double fallback) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return fallback;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_BOOLEAN) return json_node_get_boolean(n) ? 1.0 : 0.0;
  if (t == G_TYPE_STRING) return fallback;
  return json_node_get_double(n);
}

static JsonObject *obj(JsonObject *o, const char *key) {
  JsonNode *n = o ? json_object_get_member(o, key) : NULL;
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static ps_tensor *fx_get(void *user, const char *name, GError **error) {
  if (!ps_fixture_has(user, name)) return NULL;
  return ps_fixture_get_f32(user, name, error);
}

/* The decoder configuration from HF Qwen2Config keys. */
static gboolean cfg_from_json(JsonObject *o, qwen2_cfg *c, GError **error) {
  if (!qwen2_cfg_preset(c, "tiny", error)) return FALSE;
  c->hidden = (int64_t)num(o, "hidden_size", 0);
  c->layers = (int64_t)num(o, "num_hidden_layers", 0);
  c->heads = (int64_t)num(o, "num_attention_heads", 0);
  c->kv_heads = (int64_t)num(o, "num_key_value_heads", (double)c->heads);
  c->head_dim = (int64_t)num(o, "head_dim", c->heads ? (double)(c->hidden / c->heads) : 0);
  c->intermediate = (int64_t)num(o, "intermediate_size", 0);
  c->vocab = (int64_t)num(o, "vocab_size", 0);
  c->tied = num(o, "tie_word_embeddings", 0) != 0;
  c->rope_theta = num(o, "rope_theta", 10000.0);
  c->rms_eps = num(o, "rms_norm_eps", 1e-6);
  if (!num(o, "attention_bias_qkv", 1) || num(o, "attention_bias_o", 0) || num(o, "mlp_bias", 0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "qwen2.decoder fixture: only q/k/v biases (no o_proj or MLP bias) are implemented, "
                "as in every Qwen2 checkpoint");
    return FALSE;
  }
  const char *act = o && json_object_has_member(o, "hidden_act")
                        ? json_object_get_string_member(o, "hidden_act")
                        : "silu";
  if (!act || strcmp(act, "silu") != 0 || num(o, "use_sliding_window", 0)) {
    g_set_error(
        error, PS_ERROR, PS_ERROR_UNSUPPORTED,
        "qwen2.decoder fixture: only hidden_act silu without sliding window is implemented");
    return FALSE;
  }
  JsonObject *rs = obj(o, "rope_scaling");
  if (rs) {
    JsonNode *sec = json_object_get_member(rs, "mrope_section");
    if (!sec || !JSON_NODE_HOLDS_ARRAY(sec) ||
        json_array_get_length(json_node_get_array(sec)) != 3) {
      g_set_error(
          error, PS_ERROR, PS_ERROR_UNSUPPORTED,
          "qwen2.decoder fixture: rope_scaling other than mrope_section is not implemented");
      return FALSE;
    }
    c->n_sections = 3;
    for (guint i = 0; i < 3; i++)
      c->sections[i] = (int32_t)json_array_get_int_element(json_node_get_array(sec), i);
  }
  return qwen2_cfg_validate(c, "qwen2.decoder fixture", error);
}

/* input_ids (B, T) as int32, and the attention mask (B, T) into *mask
 * (NULL when the fixture has none or it is all ones). */
static int32_t *get_ids(ps_fixture *fx, int64_t *B, int64_t *T, int32_t **mask, GError **error) {
  *mask = NULL;
  g_autoptr(ps_tensor) t = ps_fixture_get_f32(fx, "input.input_ids", error);
  if (!t) return NULL;
  if (t->ndim != 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "qwen2.decoder fixture: input.input_ids must be (B, T)");
    return NULL;
  }
  *B = t->shape[0];
  *T = t->shape[1];
  int32_t *ids = g_new(int32_t, *B * *T);
  for (int64_t i = 0; i < *B * *T; i++) ids[i] = (int32_t)ps_f32(t)[i];
  if (ps_fixture_has(fx, "input.attention_mask")) {
    g_autoptr(ps_tensor) am = ps_fixture_get_f32(fx, "input.attention_mask", error);
    if (!am || !ps_tensor_check(am, "qwen2.decoder fixture: input.attention_mask", PS_DTYPE_F32, 2,
                                t->shape, error)) {
      g_free(ids);
      return NULL;
    }
    gboolean pad = FALSE;
    for (int64_t i = 0; i < ps_tensor_numel(am); i++) pad = pad || ps_f32(am)[i] == 0.0f;
    if (pad) {
      *mask = g_new(int32_t, *B * *T);
      for (int64_t i = 0; i < *B * *T; i++) (*mask)[i] = ps_f32(am)[i] != 0.0f;
    }
  }
  return ids;
}

/* Hands n floats to the harness in the shape of output.NAME (if present). */
static gboolean put(ps_fixture *fx, const char *name, const float *data, int64_t n,
                    GError **error) {
  g_autofree char *full = g_strconcat("output.", name, NULL);
  if (!ps_fixture_has(fx, full)) return TRUE;
  const ps_tensor *want = ps_fixture_get(fx, full, error);
  if (!want) return FALSE;
  if (ps_tensor_numel(want) != n) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "qwen2.decoder fixture: %s has %" G_GINT64_FORMAT
                " elements, computed %" G_GINT64_FORMAT,
                full, ps_tensor_numel(want), n);
    return FALSE;
  }
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, want->ndim, want->shape, error);
  if (!t) return FALSE;
  memcpy(t->data, data, sizeof(float) * (size_t)n);
  ps_fixture_put(fx, name, t);
  return TRUE;
}

static gboolean run(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {"logits", "hidden_last", "logits_incremental", "logits_lora",
                                      NULL};
  g_autofree const char **names = ps_fixture_names(fx);
  for (size_t i = 0; names[i]; i++)
    if (g_str_has_prefix(names[i], "output.") &&
        !g_strv_contains(known, names[i] + strlen("output."))) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "qwen2.decoder fixture: unknown output '%s'", names[i]);
      return FALSE;
    }
  g_autoptr(JsonParser) parser = json_parser_new();
  const char *text = ps_fixture_config(fx);
  if (!json_parser_load_from_data(parser, text ? text : "{}", -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(parser);
  JsonObject *o = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  qwen2_cfg c;
  if (!cfg_from_json(o, &c, error)) return FALSE;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, error);
  if (!k) return FALSE;
  int64_t B = 0, T = 0;
  g_autofree int32_t *mask = NULL;
  g_autofree int32_t *ids = get_ids(fx, &B, &T, &mask, error);
  if (!ids) return FALSE;
  const int64_t N = B * T, D = c.hidden, V = c.vocab;

  g_autoptr(qwen2_model) m = qwen2_model_new(&c, k, NULL, error);
  if (!m || !qwen2_model_load(m, fx_get, fx, TRUE, FALSE, "qwen2.decoder fixture", error))
    return FALSE;
  g_autofree float *emb = g_new(float, N *D);
  if (!qwen2_embed(m, emb, ids, N, error)) return FALSE;
  if (!qwen2_forward(m, ctx, emb, NULL, mask, B, T, NULL, QWEN2_LOGITS_ALL, error) ||
      !put(fx, "logits", m->logits, N * V, error) ||
      !put(fx, "hidden_last", m->hidden, N * D, error))
    return FALSE;

  if (ps_fixture_has(fx, "output.logits_incremental")) {
    g_autoptr(ps_tensor) pl = ps_fixture_get_f32(fx, "input.prefix_len", error);
    if (!pl) return FALSE;
    const int64_t P = ps_tensor_numel(pl) == 1 ? (int64_t)ps_f32(pl)[0] : -1;
    if (P <= 0 || P >= T) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "qwen2.decoder fixture: input.prefix_len must be one number in [1, seq_len)");
      return FALSE;
    }
    /* Cached continuation: (B, P) then (B, T - P) tokens, row-major per batch. */
    g_autofree float *e1 = g_new(float, B *P *D);
    g_autofree float *e2 = g_new(float, B *(T - P) * D);
    g_autofree int32_t *m1 = mask ? g_new(int32_t, B * P) : NULL;
    g_autofree int32_t *m2 = mask ? g_new(int32_t, B * (T - P)) : NULL;
    for (int64_t b = 0; b < B; b++) {
      memcpy(e1 + b * P * D, emb + b * T * D, sizeof(float) * (size_t)(P * D));
      memcpy(e2 + b * (T - P) * D, emb + (b * T + P) * D, sizeof(float) * (size_t)((T - P) * D));
      if (mask) {
        memcpy(m1 + b * P, mask + b * T, sizeof(int32_t) * (size_t)P);
        memcpy(m2 + b * (T - P), mask + b * T + P, sizeof(int32_t) * (size_t)(T - P));
      }
    }
    qwen2_kv *kv = qwen2_kv_new(&c, k, B, T, error);
    gboolean ok = kv && qwen2_forward(m, ctx, e1, NULL, m1, B, P, kv, QWEN2_LOGITS_NONE, error) &&
                  qwen2_forward(m, ctx, e2, NULL, m2, B, T - P, kv, QWEN2_LOGITS_ALL, error) &&
                  put(fx, "logits_incremental", m->logits, B * (T - P) * V, error);
    qwen2_kv_free(kv);
    if (!ok) return FALSE;
  }

  if (ps_fixture_has(fx, "output.logits_lora")) {
    JsonObject *lo = obj(o, "lora");
    qwen2_cfg cl = c;
    cl.lora_r = (int64_t)num(lo, "r", 0);
    cl.lora_alpha = num(lo, "lora_alpha", (double)cl.lora_r);
    cl.lora_dropout = 0.0;
    JsonNode *tm = lo ? json_object_get_member(lo, "target_modules") : NULL;
    if (cl.lora_r <= 0 || !tm || !JSON_NODE_HOLDS_ARRAY(tm)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "qwen2.decoder fixture: output.logits_lora needs config.lora.r and "
                  "config.lora.target_modules");
      return FALSE;
    }
    if (num(lo, "use_rslora", 0)) {
      g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                  "qwen2.decoder fixture: rsLoRA scaling is not implemented");
      return FALSE;
    }
    JsonArray *ta = json_node_get_array(tm);
    for (guint i = 0; i < json_array_get_length(ta); i++)
      if (!qwen2_cfg_add_target(&cl, json_array_get_string_element(ta, i), error)) return FALSE;
    g_autoptr(qwen2_model) ml = qwen2_model_new(&cl, k, NULL, error);
    if (!ml || !qwen2_model_load(ml, fx_get, fx, TRUE, TRUE, "qwen2.decoder fixture", error) ||
        !qwen2_forward(ml, ctx, emb, NULL, mask, B, T, NULL, QWEN2_LOGITS_ALL, error) ||
        !put(fx, "logits_lora", ml->logits, N * V, error))
      return FALSE;
  }
  return TRUE;
}

static const char *const handled[] = {"qwen2.decoder", NULL};

const ps_fixture_iface qwen2_fixture_iface = {sizeof(ps_fixture_iface), handled, run};
