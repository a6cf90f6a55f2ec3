/* qwen2_plugin.c — the `llm.qwen2` component (kind llm): config schema with
 * size presets and LoRA, ports, vtable (forward with optional image
 * embeddings at placeholder tokens and the shifted cross-entropy, backward),
 * the plugin descriptor and its capabilities ("generate", "fixture").
 * Runs on the context's device: parameters are made and loaded on the host,
 * then moved; outputs and gradients are device tensors; integer inputs
 * (ids, positions, mask, labels) are read on the host, where the control
 * logic needs them. */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2_plugin.h"

static const ps_config_key qwen2_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|qwen2.5-0.5b|qwen2.5-3b|qwen2.5-7b",
     "fills every size key left unset (config.json of the released Qwen2.5 checkpoints)"},
    {"hidden", PS_TYPE_INT, "null", 1, 65536, NULL, "model width (hidden_size)"},
    {"layers", PS_TYPE_INT, "null", 1, QWEN2_MAX_LAYERS, NULL, "decoder layers"},
    {"heads", PS_TYPE_INT, "null", 1, 1024, NULL, "query heads"},
    {"kv_heads", PS_TYPE_INT, "null", 1, 1024, NULL, "key/value heads (GQA); divides heads"},
    {"head_dim", PS_TYPE_INT, "null", 2, 4096, NULL, "per-head width (default hidden / heads)"},
    {"intermediate", PS_TYPE_INT, "null", 1, 1 << 20, NULL, "MLP width (intermediate_size)"},
    {"vocab", PS_TYPE_INT, "null", 1, 1 << 24, NULL, "vocabulary size (embedding rows)"},
    {"tied", PS_TYPE_BOOL, "null", PS_NO_RANGE, NULL,
     "tie_word_embeddings: lm_head is model.embed_tokens.weight"},
    {"rope_theta", PS_TYPE_FLOAT, "null", 1, 1e12, NULL, "RoPE base (Qwen2.5: 1e6)"},
    {"rms_eps", PS_TYPE_FLOAT, "null", 1e-12, 1, NULL, "RMSNorm epsilon (1e-6)"},
    {"mrope_section", PS_TYPE_INT_LIST, "null", 0, 4096, NULL,
     "Qwen2.5-VL multimodal RoPE sections [t, h, w] (sum head_dim / 2, e.g. [16, 24, 24]); "
     "position_ids then carry 3 streams"},
    {"image_token_id", PS_TYPE_INT, "null", 0, 1 << 24, NULL,
     "placeholder id replaced by consecutive rows of image_embeds (Qwen2.5-VL 151655)"},
    {"lora.r", PS_TYPE_INT, "0", 0, 4096, NULL, "LoRA rank; 0: no LoRA"},
    {"lora.alpha", PS_TYPE_FLOAT, "16", 0, 1e6, NULL, "LoRA alpha (scaling alpha / r)"},
    {"lora.dropout", PS_TYPE_FLOAT, "0.1", 0, 0.99, NULL, "dropout on the LoRA input (training)"},
    {"lora.targets", PS_TYPE_STRING_LIST, "[q_proj, v_proj]", PS_NO_RANGE, NULL,
     "projections with LoRA: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL,
     "std of the random initialisation (HF initializer_range) when no checkpoint is given"},
    {"checkpoint", PS_TYPE_STRING, "null", PS_NO_RANGE, NULL,
     "safetensors with the base weights (model.* or model.language_model.* names)"},
    {"adapter", PS_TYPE_STRING, "null", PS_NO_RANGE, NULL,
     "peft adapter_model.safetensors (base_model.model.<path>.lora_A/B.weight)"},
    {NULL},
};

static const ps_port_desc qwen2_inputs[] = {
    {"input_ids", "[B, T] i32 token ids (or inputs_embeds)", TRUE},
    {"inputs_embeds", "[B, T, D] f32 input embeddings instead of input_ids", TRUE},
    {"image_embeds", "[B, N, D] f32 rows placed at the image_token_id positions of each row", TRUE},
    {"position_ids", "[B, T] or [3, B, T] i32 positions (default 0..T-1 in every stream)", TRUE},
    {"labels", "[B, T] i32 next-token targets (shifted inside; -100 ignored)", TRUE},
    {"attention_mask",
     "[B, T] i32 1 = token, 0 = padding (never attended to; positions are "
     "not shifted: pass position_ids for left padding)",
     TRUE},
    {NULL},
};

static const ps_port_desc qwen2_outputs[] = {
    {"logits", "[B, T, V] f32", FALSE},
    {"hidden", "[B, T, D] f32 final-norm output (lm_head input)", FALSE},
    {"loss", "[1] f32 mean shifted cross-entropy, when labels are given", FALSE},
    {NULL},
};

static void qwen2_destroy(void *self) {
  qwen2_self *s = self;
  if (!s) return;
  if (s->m) qwen2_self_free_rows(s); /* memory of the model's table */
  qwen2_kv_free(s->kv);
  qwen2_model_free(s->m);
  ps_tensor *caches[] = {s->c_ids, s->c_pos, s->c_mask, s->c_labels,
                         s->c_emb, s->c_img, s->c_gl,   s->c_gh};
  for (size_t i = 0; i < G_N_ELEMENTS(caches); i++) ps_tensor_free(caches[i]);
  ps_tensor_free(s->logits);
  ps_tensor_free(s->hidden);
  ps_tensor_free(s->loss);
  ps_tensor_free(s->d_embeds);
  ps_tensor_free(s->d_image);
  g_free(s->gen_hidden);
  g_free(s->gen_logits);
  g_free(s);
}

static gboolean cfg_from_config(const ps_config *cfg, qwen2_cfg *c, GError **error) {
  if (!qwen2_cfg_preset(c, ps_config_string(cfg, "preset"), error)) return FALSE;
#define INT_KEY(k, f)                                                                              \
  if (ps_config_has(cfg, k)) c->f = ps_config_int(cfg, k)
  INT_KEY("hidden", hidden);
  INT_KEY("layers", layers);
  INT_KEY("heads", heads);
  INT_KEY("kv_heads", kv_heads);
  INT_KEY("intermediate", intermediate);
  INT_KEY("vocab", vocab);
#undef INT_KEY
  c->head_dim = ps_config_has(cfg, "head_dim") ? ps_config_int(cfg, "head_dim")
                                               : (c->heads > 0 ? c->hidden / c->heads : 0);
  if (ps_config_has(cfg, "tied")) c->tied = ps_config_bool(cfg, "tied");
  if (ps_config_has(cfg, "rope_theta")) c->rope_theta = ps_config_float(cfg, "rope_theta");
  if (ps_config_has(cfg, "rms_eps")) c->rms_eps = ps_config_float(cfg, "rms_eps");
  if (ps_config_has(cfg, "mrope_section")) {
    size_t n = 0;
    const int64_t *sec = ps_config_int_list(cfg, "mrope_section", &n);
    if (n != 3) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "llm.qwen2: mrope_section needs 3 entries [t, h, w], got %zu", n);
      return FALSE;
    }
    c->n_sections = 3;
    for (int i = 0; i < 3; i++) c->sections[i] = (int32_t)sec[i];
  }
  c->lora_r = ps_config_int(cfg, "lora.r");
  c->lora_alpha = ps_config_float(cfg, "lora.alpha");
  c->lora_dropout = ps_config_float(cfg, "lora.dropout");
  size_t nt = 0;
  const char *const *targets = ps_config_string_list(cfg, "lora.targets", &nt);
  for (size_t i = 0; i < nt; i++)
    if (!qwen2_cfg_add_target(c, targets[i], error)) return FALSE;
  c->init_std = ps_config_float(cfg, "init_std");
  return qwen2_cfg_validate(c, "llm.qwen2", error);
}

static void *qwen2_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  qwen2_cfg c;
  if (!cfg_from_config(cfg, &c, error)) return NULL;
  const ps_device dev = ps_context_device(ctx);
  const ps_kernels *k = ps_context_kernels(ctx, error); /* at the run's precision */
  if (!k) return NULL;
  const char *ckpt = ps_config_has(cfg, "checkpoint") ? ps_config_string(cfg, "checkpoint") : NULL;
  const char *adapter = ps_config_has(cfg, "adapter") ? ps_config_string(cfg, "adapter") : NULL;
  if (adapter && c.lora_r == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "llm.qwen2: adapter '%s' given but lora.r is 0",
                adapter);
    return NULL;
  }
  qwen2_self *s = g_new0(qwen2_self, 1);
  s->dev = dev;
  s->image_token_id =
      ps_config_has(cfg, "image_token_id") ? ps_config_int(cfg, "image_token_id") : -1;
  /* With a checkpoint the random draws would be overwritten: skip them.
   * Initialised and loaded on the host, then moved to the device. */
  s->m = qwen2_model_new(&c, k, ckpt ? NULL : ps_context_rng(ctx), error);
  if (!s->m || (ckpt && !qwen2_model_load_file(s->m, ckpt, TRUE, FALSE, error)) ||
      (adapter && !qwen2_model_load_file(s->m, adapter, FALSE, TRUE, error)) ||
      !qwen2_model_move_to(s->m, dev, error)) {
    qwen2_destroy(s);
    return NULL;
  }
  return s;
}

static ps_param_list qwen2_params(void *self) {
  return qwen2_model_params(((qwen2_self *)self)->m);
}

/* A (d0, d1, d2) view over `data` (memory of `dev`), reusing *t when it
 * already is one. */
static gboolean view3(ps_tensor **t, ps_device dev, float *data, int64_t d0, int64_t d1, int64_t d2,
                      GError **error) {
  int64_t shape[3] = {d0, d1, d2};
  if (*t && (*t)->data == data && (*t)->device == dev && ps_tensor_has_shape(*t, 3, shape))
    return TRUE;
  ps_tensor_free(*t);
  *t = ps_tensor_new_view(PS_DTYPE_F32, 3, shape, data, error);
  if (*t) (*t)->device = dev; /* a view never frees its data */
  return *t != NULL;
}

/* An integer input (ids, positions, mask, labels: control data) where the
 * host reads it: the tensor itself, or a host copy in *cache. */
static gboolean on_host(const ps_tensor **t, ps_tensor **cache, GError **error) {
  if (!*t || (*t)->device == PS_DEVICE_CPU) return TRUE;
  *t = ps_tensor_on_device(*t, PS_DEVICE_CPU, cache, error);
  return *t != NULL;
}

/* A float input where the table copies from: the host or the device. */
static gboolean reachable(const ps_tensor **t, ps_device dev, ps_tensor **cache, GError **error) {
  if (!*t || (*t)->device == PS_DEVICE_CPU || (*t)->device == dev) return TRUE;
  *t = ps_tensor_on_device(*t, dev, cache, error);
  return *t != NULL;
}

static gboolean check_i32(const ps_tensor *t, const char *port, int32_t ndim, const int64_t *shape,
                          GError **error) {
  g_autofree char *what = g_strdup_printf("llm.qwen2 input %s", port);
  return ps_tensor_check(t, what, PS_DTYPE_I32, ndim, shape, error);
}

static gboolean qwen2_fwd(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                          GError **error) {
  qwen2_self *s = self;
  qwen2_model *m = s->m;
  const qwen2_cfg *c = &m->cfg;
  const ps_tensor *ids = ps_ports_get(in, "input_ids"), *emb = ps_ports_get(in, "inputs_embeds");
  const ps_tensor *img = ps_ports_get(in, "image_embeds"), *pos = ps_ports_get(in, "position_ids");
  const ps_tensor *labels = ps_ports_get(in, "labels"), *mask = ps_ports_get(in, "attention_mask");
  if (!on_host(&ids, &s->c_ids, error) || !on_host(&pos, &s->c_pos, error) ||
      !on_host(&labels, &s->c_labels, error) || !on_host(&mask, &s->c_mask, error) ||
      !reachable(&emb, s->dev, &s->c_emb, error) || !reachable(&img, s->dev, &s->c_img, error))
    return FALSE;
  if ((ids == NULL) == (emb == NULL)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: give exactly one of input_ids and inputs_embeds");
    return FALSE;
  }
  int64_t B, T;
  if (ids) {
    int64_t sh[2] = {-1, -1};
    if (!check_i32(ids, "input_ids", 2, sh, error)) return FALSE;
    B = ids->shape[0];
    T = ids->shape[1];
  } else {
    int64_t sh[3] = {-1, -1, c->hidden};
    if (!ps_tensor_check(emb, "llm.qwen2 input inputs_embeds", PS_DTYPE_F32, 3, sh, error))
      return FALSE;
    B = emb->shape[0];
    T = emb->shape[1];
  }
  if (img) {
    int64_t sh[3] = {B, -1, c->hidden};
    if (!ps_tensor_check(img, "llm.qwen2 input image_embeds", PS_DTYPE_F32, 3, sh, error))
      return FALSE;
    if (!ids || s->image_token_id < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "llm.qwen2: image_embeds need input_ids and the image_token_id config");
      return FALSE;
    }
  }
  const ps_tensor *fin = emb ? emb : img;
  const gboolean src_host = !fin || fin->device == PS_DEVICE_CPU;
  if (!qwen2_self_inputs(s, ids ? ids->data : NULL, emb ? ps_f32(emb) : NULL,
                         img ? ps_f32(img) : NULL, src_host, img ? img->shape[1] : 0, B, T, error))
    return FALSE;
  /* Positions: one stream, or 3 with M-RoPE (a [B, T] input fills all 3). */
  const int32_t *p = NULL;
  g_autofree int32_t *p3 = NULL;
  if (pos) {
    int64_t s2[2] = {B, T}, s3[3] = {3, B, T};
    if (c->n_sections && pos->ndim == 3) {
      if (!check_i32(pos, "position_ids", 3, s3, error)) return FALSE;
      p = pos->data;
    } else {
      if (!check_i32(pos, "position_ids", 2, s2, error)) return FALSE;
      p = pos->data;
      if (c->n_sections) {
        p3 = g_new(int32_t, 3 * B * T);
        for (int i = 0; i < 3; i++) memcpy(p3 + i * B * T, p, sizeof(int32_t) * (size_t)(B * T));
        p = p3;
      }
    }
  }
  if (mask) {
    int64_t s2[2] = {B, T};
    if (!check_i32(mask, "attention_mask", 2, s2, error)) return FALSE;
  }
  if (!qwen2_forward(m, ctx, s->emb, p, mask ? mask->data : NULL, B, T, NULL, QWEN2_LOGITS_ALL,
                     error))
    return FALSE;
  if (!view3(&s->logits, s->dev, m->logits, B, T, c->vocab, error) ||
      !view3(&s->hidden, s->dev, m->hidden, B, T, c->hidden, error))
    return FALSE;
  ps_ports_set(out, "logits", s->logits);
  ps_ports_set(out, "hidden", s->hidden);
  s->have_loss = FALSE;
  if (labels) {
    int64_t sh[2] = {B, T};
    if (!check_i32(labels, "labels", 2, sh, error)) return FALSE;
    const int32_t *lab = labels->data;
    for (int64_t n = 0; n < B * T; n++)
      if (lab[n] != -100 && (lab[n] < 0 || lab[n] >= c->vocab)) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "llm.qwen2: labels[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                    "] = %d is neither -100 nor in [0, %" G_GINT64_FORMAT ")",
                    n / T, n % T, lab[n], c->vocab);
        return FALSE;
      }
    const int64_t s1[1] = {1};
    if (!ps_tensor_ensure_on(&s->loss, s->dev, PS_DTYPE_F32, 1, s1, error)) return FALSE;
    const float loss = qwen2_loss(m, lab); /* the table returns the sum to the host */
    m->k->copy_to_device(s->loss->data, &loss, sizeof loss);
    s->have_loss = TRUE;
    ps_ports_set(out, "loss", s->loss);
  }
  return TRUE;
}

/* A zeroed input gradient on the model's device. */
static gboolean grad_of(qwen2_self *s, ps_tensor **t, int32_t ndim, const int64_t *shape,
                        GError **error) {
  if (!ps_tensor_ensure_on(t, s->dev, PS_DTYPE_F32, ndim, shape, error)) return FALSE;
  s->m->k->mem_zero((*t)->data, (*t)->nbytes);
  return TRUE;
}

static gboolean qwen2_bwd(void *self, ps_context *ctx, const ps_ports *grad_out, ps_ports *grad_in,
                          GError **error) {
  qwen2_self *s = self;
  qwen2_model *m = s->m;
  const int64_t B = s->B, T = s->T, D = m->cfg.hidden;
  const ps_tensor *gl = ps_ports_get(grad_out, "logits"), *gh = ps_ports_get(grad_out, "hidden");
  const ps_tensor *gloss = ps_ports_get(grad_out, "loss");
  /* Gradients arrive on the device; a host one (a test, a host stage) is copied. */
  if ((gl && !(gl = ps_tensor_on_device(gl, s->dev, &s->c_gl, error))) ||
      (gh && !(gh = ps_tensor_on_device(gh, s->dev, &s->c_gh, error))))
    return FALSE;
  int64_t sl[3] = {B, T, m->cfg.vocab}, sh[3] = {B, T, D}, s1[1] = {1};
  if ((gl && !ps_tensor_check(gl, "llm.qwen2 gradient of logits", PS_DTYPE_F32, 3, sl, error)) ||
      (gh && !ps_tensor_check(gh, "llm.qwen2 gradient of hidden", PS_DTYPE_F32, 3, sh, error)) ||
      (gloss && !ps_tensor_check(gloss, "llm.qwen2 gradient of loss", PS_DTYPE_F32, 1, s1, error)))
    return FALSE;
  if (gloss && !s->have_loss) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: a gradient of loss arrived but the forward had no labels");
    return FALSE;
  }
  ps_port *pe = ps_ports_find(grad_in, "inputs_embeds"),
          *pi = ps_ports_find(grad_in, "image_embeds");
  gboolean want_e = pe && pe->needs_grad && !s->from_ids;
  gboolean want_i = pi && pi->needs_grad && s->n_image > 0;
  /* The loss gradient is a scalar the host passes to the kernels. */
  float dloss = 0.0f;
  if (gloss && gloss->device == PS_DEVICE_CPU) {
    dloss = ps_f32(gloss)[0];
  } else if (gloss) {
    const ps_kernels *gk = ps_kernels_get(gloss->device, error);
    if (!gk) return FALSE;
    gk->copy_to_host(&dloss, gloss->data, sizeof dloss);
  }
  float *demb = NULL;
  if (want_e || want_i) {
    if (!grad_of(s, &s->d_embeds, 3, sh, error)) return FALSE;
    demb = ps_f32(s->d_embeds);
  }
  if (!qwen2_backward(m, ctx, gl ? ps_f32(gl) : NULL, gh ? ps_f32(gh) : NULL, dloss, s->ids_d, demb,
                      error))
    return FALSE;
  if (want_e) pe->tensor = s->d_embeds;
  if (want_i) {
    int64_t si[3] = {B, s->n_image, D};
    if (!grad_of(s, &s->d_image, 3, si, error)) return FALSE;
    /* one copy per run of consecutive image rows (an image block is one) */
    for (int64_t n = 0; n < B * T;) {
      const int64_t r = s->img_row[n];
      int64_t len = 1;
      if (r < 0) {
        n++;
        continue;
      }
      while (n + len < B * T && s->img_row[n + len] == r + len) len++;
      m->k->copy_on_device(ps_f32(s->d_image) + r * D, demb + n * D,
                           sizeof(float) * (size_t)(len * D));
      n += len;
    }
    pi->tensor = s->d_image;
  }
  return TRUE;
}

static const ps_component_vtable qwen2_vtable = {
    sizeof(ps_component_vtable), qwen2_create, qwen2_destroy, qwen2_params, qwen2_fwd, qwen2_bwd,
};

static const void *qwen2_capability(const char *name) {
  if (strcmp(name, PS_LLM_GENERATE_CAPABILITY) == 0) return &qwen2_generate_iface;
  if (strcmp(name, "fixture") == 0) return &qwen2_fixture_iface;
  return NULL;
}

static const ps_component_desc qwen2_desc = {
    sizeof(ps_component_desc),
    PS_KIND_LLM,
    "llm.qwen2",
    "Qwen2 / Qwen2.5(-VL text) decoder as HF transformers computes it: RMSNorm, rotate-half "
    "RoPE (M-RoPE sections optional), grouped-query causal attention with q/k/v bias, SwiGLU, "
    "tied or separate lm_head; LoRA on chosen projections; shifted next-token loss; KV-cached "
    "generation (capability \"generate\"). Parameters carry HF names (model.layers.N...), role "
    "backbone; LoRA A/B role lora.",
    qwen2_config,
    qwen2_inputs,
    qwen2_outputs,
    &qwen2_vtable,
    qwen2_capability,
};

static const ps_component_desc *const components[] = {&qwen2_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "qwen2",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Qwen2 decoder LLM with LoRA, KV cache and sampling",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &plugin;
}
