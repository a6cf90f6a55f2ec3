/* qwen2_model.c — the Qwen2 parameters under their HF names, their
 * initialisation, loading from checkpoints (both `model.*` and
 * `model.language_model.*` prefixes, peft adapter names for LoRA), moving
 * them to the device, and the activation buffers the forward keeps (memory
 * of the model's kernel table). */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>
#include <pathseg/safetensors.h>

#include "qwen2.h"

static guint push(qwen2_model *m, const char *name, ps_tensor *t, ps_role role) {
  char *n = g_strdup(name);
  g_ptr_array_add(m->names, n);
  ps_param p = {n, t, NULL, role};
  g_array_append_val(m->params, p);
  return m->params->len - 1;
}

/* A new (d0[, d1]) parameter tensor filled with `fill` (norms: 1) or N(0, std). */
static ps_tensor *param_tensor(int64_t d0, int64_t d1, float fill, double std, ps_rng *rng,
                               GError **error) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, d0, d1, -1, -1, error);
  if (!t) return NULL;
  float *p = ps_f32(t);
  const int64_t n = ps_tensor_numel(t);
  for (int64_t i = 0; i < n; i++) p[i] = rng && std > 0 ? (float)(std * ps_rng_normal(rng)) : fill;
  return t;
}

qwen2_model *qwen2_model_new(const qwen2_cfg *c, const ps_kernels *k, ps_rng *rng, GError **error) {
  if (!qwen2_cfg_validate(c, "llm.qwen2", error)) return NULL;
  g_autoptr(qwen2_model) m = g_new0(qwen2_model, 1);
  m->cfg = *c;
  m->k = k;
  m->host = k == ps_kernels_get(PS_DEVICE_CPU, NULL);
  m->params = g_array_new(FALSE, TRUE, sizeof(ps_param));
  m->names = g_ptr_array_new_with_free_func(g_free);
  m->L = g_new0(qwen2_layer, c->layers);
  const int64_t D = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
  const int64_t I = c->intermediate;
  const double std = rng ? c->init_std : 0.0;
  /* LoRA A needs random numbers even when the base is loaded afterwards. */
  ps_rng fallback;
  ps_rng_seed(&fallback, 0x5157454e32ULL);
  ps_rng *lrng = rng ? rng : &fallback;

  ps_tensor *t = param_tensor(c->vocab, D, 0.0f, std, rng, error);
  if (!t) return NULL;
  m->i_embed = push(m, "model.embed_tokens.weight", t, PS_ROLE_BACKBONE);

  /* (in, out, bias) of each projection */
  const int64_t shapes[QW_NLIN][3] = {{D, qd, 1}, {D, kvd, 1}, {D, kvd, 1}, {qd, D, 0},
                                      {D, I, 0},  {D, I, 0},   {I, D, 0}};
  guint first[QWEN2_MAX_LAYERS][QW_NLIN];
  for (int64_t l = 0; l < c->layers; l++) {
    qwen2_layer *L = &m->L[l];
    g_autofree char *pre = g_strdup_printf("model.layers.%" G_GINT64_FORMAT, l);
    g_autofree char *n1 = g_strconcat(pre, ".input_layernorm.weight", NULL);
    if (!(t = param_tensor(D, -1, 1.0f, 0.0, NULL, error))) return NULL;
    L->i_in_norm = push(m, n1, t, PS_ROLE_BACKBONE);
    for (int p = 0; p < QW_NLIN; p++) {
      ps_linear *lin = &L->lin[p];
      if (!ps_linear_init(lin, shapes[p][0], shapes[p][1], shapes[p][2] != 0, std, rng, error))
        return NULL;
      if (c->lora_r > 0 && (c->lora_targets & (1u << p)) &&
          !ps_linear_add_lora(lin, c->lora_r, c->lora_alpha, c->lora_dropout, lrng, error))
        return NULL;
      g_autofree char *lp =
          g_strdup_printf("%s.%s.%s", pre, p <= QW_O ? "self_attn" : "mlp", qwen2_proj_name(p));
      first[l][p] = m->params->len;
      ps_linear_params(lin, lp, PS_ROLE_BACKBONE, m->params, m->names);
      if (p == QW_O) {
        g_autofree char *n2 = g_strconcat(pre, ".post_attention_layernorm.weight", NULL);
        if (!(t = param_tensor(D, -1, 1.0f, 0.0, NULL, error))) return NULL;
        L->i_post_norm = push(m, n2, t, PS_ROLE_BACKBONE);
      }
    }
  }
  if (!(t = param_tensor(D, -1, 1.0f, 0.0, NULL, error))) return NULL;
  m->i_norm = push(m, "model.norm.weight", t, PS_ROLE_BACKBONE);
  if (c->tied) {
    m->i_head = m->i_embed;
  } else {
    if (!(t = param_tensor(c->vocab, D, 0.0f, std, rng, error))) return NULL;
    m->i_head = push(m, "lm_head.weight", t, PS_ROLE_BACKBONE);
  }
  /* The array has stopped growing: bind the layers' gradient slots. */
  for (int64_t l = 0; l < c->layers; l++)
    for (int p = 0; p < QW_NLIN; p++) ps_linear_bind(&m->L[l].lin[p], m->params, first[l][p]);
  return g_steal_pointer(&m);
}

gboolean qwen2_model_move_to(qwen2_model *m, ps_device device, GError **error) {
  /* In place: the LoRA layers and the core keep pointers to these headers. */
  for (guint i = 0; i < m->params->len; i++)
    if (!ps_tensor_move_to(qwen2_param(m, i)->value, device, error)) return FALSE;
  return TRUE;
}

/* Frees device memory of the model's table and clears the pointer. */
#define dev_free(m, pp)                                                                            \
  do {                                                                                             \
    if (*(pp)) (m)->k->mem_free(*(pp));                                                            \
    *(pp) = NULL;                                                                                  \
  } while (0)

static void free_acts(qwen2_model *m) {
  if (m->A)
    for (int64_t l = 0; l < m->cfg.layers; l++) {
      qwen2_acts *a = &m->A[l];
      float **all[] = {&a->x,   &a->ln1, &a->rstd1, &a->q,     &a->k,    &a->v,  &a->att,
                       &a->lse, &a->xm,  &a->ln2,   &a->rstd2, &a->gate, &a->up, &a->act};
      for (size_t i = 0; i < G_N_ELEMENTS(all); i++) dev_free(m, all[i]);
    }
  g_clear_pointer(&m->A, g_free);
  dev_free(m, &m->xf);
  dev_free(m, &m->hidden);
  dev_free(m, &m->rstdf);
  dev_free(m, &m->logits);
  dev_free(m, &m->last);
  dev_free(m, &m->pos);
  dev_free(m, &m->targets);
  g_clear_pointer(&m->pos_h, g_free);
  g_clear_pointer(&m->targets_h, g_free);
  m->cap_n = 0;
  m->saved = FALSE;
}

static void free_bwd(qwen2_model *m) {
  float **all[] = {&m->dx,   &m->dln,   &m->dq,  &m->dk,   &m->dv,      &m->dqr,    &m->dkr,
                   &m->datt, &m->dgate, &m->dup, &m->dact, &m->dhidden, &m->dlogits};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++) dev_free(m, all[i]);
  m->cap_bwd = 0;
}

void qwen2_model_free(qwen2_model *m) {
  if (!m) return;
  free_acts(m);
  free_bwd(m);
  dev_free(m, &m->att_scratch);
  dev_free(m, &m->bias);
  dev_free(m, &m->ids);
  g_free(m->bias_h);
  if (m->L)
    for (int64_t l = 0; l < m->cfg.layers; l++)
      for (int p = 0; p < QW_NLIN; p++) ps_linear_clear(&m->L[l].lin[p]);
  g_free(m->L);
  if (m->params) {
    /* The linear layers' tensors were freed above; free the others here. */
    for (guint i = 0; i < m->params->len; i++) {
      ps_param *p = qwen2_param(m, i);
      gboolean linear = i != m->i_embed && i != m->i_norm && i != m->i_head &&
                        !g_str_has_suffix(p->name, "layernorm.weight");
      if (!linear) ps_tensor_free(p->value);
    }
    g_array_free(m->params, TRUE);
  }
  if (m->names) g_ptr_array_free(m->names, TRUE);
  g_free(m);
}

ps_param_list qwen2_model_params(qwen2_model *m) {
  return (ps_param_list){(ps_param *)m->params->data, m->params->len};
}

/* Allocates n floats (zeroed) of the model's device memory or fails with
 * an error. */
static gboolean alloc_f(qwen2_model *m, float **p, int64_t n, GError **error) {
  *p = m->k->mem_alloc(sizeof(float) * (size_t)MAX(n, 1));
  if (!*p)
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "llm.qwen2: out of %s memory for %" G_GINT64_FORMAT " floats of activations",
                m->k->name, n);
  return *p != NULL;
}

/* n int32 of device memory (float-sized, so alloc_f serves). */
static gboolean alloc_i(qwen2_model *m, int32_t **p, int64_t n, GError **error) {
  G_STATIC_ASSERT(sizeof(int32_t) == sizeof(float));
  return alloc_f(m, (float **)p, n, error);
}

gboolean qwen2_reserve_ids(qwen2_model *m, int64_t n, GError **error) {
  if (n <= m->ids_n) return TRUE;
  dev_free(m, &m->ids);
  m->ids_n = 0;
  if (!alloc_i(m, &m->ids, n, error)) return FALSE;
  m->ids_n = n;
  return TRUE;
}

gboolean qwen2_reserve_rows(qwen2_model *m, int64_t N, GError **error) {
  if (N <= m->cap_n) return TRUE;
  free_acts(m);
  const qwen2_cfg *c = &m->cfg;
  const int64_t D = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
  const int64_t I = c->intermediate;
  m->A = g_new0(qwen2_acts, c->layers);
  for (int64_t l = 0; l < c->layers; l++) {
    qwen2_acts *a = &m->A[l];
    if (!alloc_f(m, &a->x, N * D, error) || !alloc_f(m, &a->ln1, N * D, error) ||
        !alloc_f(m, &a->rstd1, N, error) || !alloc_f(m, &a->q, N * qd, error) ||
        !alloc_f(m, &a->k, N * kvd, error) || !alloc_f(m, &a->v, N * kvd, error) ||
        !alloc_f(m, &a->att, N * qd, error) || !alloc_f(m, &a->lse, N * c->heads, error) ||
        !alloc_f(m, &a->xm, N * D, error) || !alloc_f(m, &a->ln2, N * D, error) ||
        !alloc_f(m, &a->rstd2, N, error) || !alloc_f(m, &a->gate, N * I, error) ||
        !alloc_f(m, &a->up, N * I, error) || !alloc_f(m, &a->act, N * I, error)) {
      free_acts(m);
      return FALSE;
    }
  }
  m->pos_h = g_try_new0(int32_t, (gsize)(3 * N));
  m->targets_h = g_try_new0(int32_t, (gsize)N);
  if (!m->pos_h || !m->targets_h || !alloc_i(m, &m->pos, 3 * N, error) ||
      !alloc_i(m, &m->targets, N, error) || !alloc_f(m, &m->xf, N * D, error) ||
      !alloc_f(m, &m->hidden, N * D, error) || !alloc_f(m, &m->rstdf, N, error) ||
      !alloc_f(m, &m->logits, N * c->vocab, error) ||
      (!m->host && !alloc_f(m, &m->last, N * D, error))) {
    if (error && !*error)
      g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "llm.qwen2: out of memory for positions");
    free_acts(m);
    return FALSE;
  }
  m->cap_n = N;
  return TRUE;
}

gboolean qwen2_reserve_bwd(qwen2_model *m, int64_t N, GError **error) {
  if (N <= m->cap_bwd) return TRUE;
  free_bwd(m);
  const qwen2_cfg *c = &m->cfg;
  const int64_t D = c->hidden, qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
  const int64_t I = c->intermediate;
  if (!alloc_f(m, &m->dx, N * D, error) || !alloc_f(m, &m->dln, N * D, error) ||
      !alloc_f(m, &m->dq, N * qd, error) || !alloc_f(m, &m->dk, N * kvd, error) ||
      !alloc_f(m, &m->dv, N * kvd, error) || !alloc_f(m, &m->dqr, N * qd, error) ||
      !alloc_f(m, &m->dkr, N * kvd, error) || !alloc_f(m, &m->datt, N * qd, error) ||
      !alloc_f(m, &m->dgate, N * I, error) || !alloc_f(m, &m->dup, N * I, error) ||
      !alloc_f(m, &m->dact, N * I, error) || !alloc_f(m, &m->dhidden, N * D, error) ||
      !alloc_f(m, &m->dlogits, N * c->vocab, error)) {
    free_bwd(m);
    return FALSE;
  }
  m->cap_bwd = N;
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Loading. */

static gboolean is_lora_name(const char *name) {
  return g_str_has_suffix(name, ".lora_A.weight") || g_str_has_suffix(name, ".lora_B.weight");
}

/* Looks `name` up as stored by original Qwen files (`model.*`) and by newer
 * transformers (`model.language_model.*`), with an optional leading prefix
 * (peft's "base_model.model."). NULL with *error unset when absent. */
static ps_tensor *get_aliased(qwen2_getter get, void *user, const char *prefix, const char *name,
                              char **found, GError **error) {
  g_autofree char *a = g_strconcat(prefix, name, NULL);
  g_autofree char *b = g_str_has_prefix(name, "model.")
                           ? g_strconcat(prefix, "model.language_model.", name + 6, NULL)
                           : NULL;
  const char *cands[2] = {a, b};
  for (int i = 0; i < 2 && cands[i]; i++) {
    ps_tensor *t = get(user, cands[i], error);
    if (t || (error && *error)) {
      if (t && found) *found = g_strdup(cands[i]);
      return t;
    }
  }
  return NULL;
}

gboolean qwen2_model_load(qwen2_model *m, qwen2_getter get, void *user, gboolean base,
                          gboolean lora, const char *what, GError **error) {
  for (guint i = 0; i < m->params->len; i++) {
    ps_param *p = qwen2_param(m, i);
    gboolean is_lora = is_lora_name(p->name);
    if ((is_lora && !lora) || (!is_lora && !base)) continue;
    g_autofree char *found = NULL;
    GError *err = NULL;
    g_autoptr(ps_tensor) t =
        get_aliased(get, user, is_lora ? "base_model.model." : "", p->name, &found, &err);
    if (err) {
      g_propagate_error(error, err);
      return FALSE;
    }
    if (!t) {
      g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                  "%s: no tensor %s%s (nor under model.language_model.*)", what,
                  is_lora ? "base_model.model." : "", p->name);
      return FALSE;
    }
    g_autofree char *label = g_strdup_printf("%s: %s", what, found);
    /* (any device: the value may already have moved) */
    if (!ps_tensor_check(t, label, PS_DTYPE_F32, p->value->ndim, p->value->shape, error) ||
        !ps_tensor_copy_into(p->value, t, error))
      return FALSE;
  }
  return TRUE;
}

static ps_tensor *st_get(void *user, const char *name, GError **error) {
  ps_safetensors *st = user;
  if (!ps_safetensors_has(st, name)) return NULL;
  return ps_safetensors_get_f32(st, name, error);
}

gboolean qwen2_model_load_file(qwen2_model *m, const char *path, gboolean base, gboolean lora,
                               GError **error) {
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
  if (!st) return FALSE;
  return qwen2_model_load(m, st_get, st, base, lora, path, error);
}

gboolean qwen2_embed(qwen2_model *m, float *emb, const int32_t *ids, int64_t N, GError **error) {
  for (int64_t n = 0; n < N; n++)
    if (ids[n] < 0 || ids[n] >= m->cfg.vocab) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "llm.qwen2: token id %d at position %" G_GINT64_FORMAT
                  " is outside the vocabulary [0, %" G_GINT64_FORMAT ")",
                  ids[n], n, m->cfg.vocab);
      return FALSE;
    }
  if (!qwen2_reserve_ids(m, N, error)) return FALSE;
  m->k->copy_to_device(m->ids, ids, sizeof(int32_t) * (size_t)N);
  m->k->embedding_forward(emb, m->ids, qwen2_pv(m, m->i_embed), N, m->cfg.vocab, m->cfg.hidden);
  return TRUE;
}
