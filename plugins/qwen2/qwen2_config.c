/* qwen2_config.c — Qwen2 size presets (config.json values of the released
 * checkpoints, spec/model.md §4), LoRA target names and the consistency
 * checks of a configuration. */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2.h"

static const char *const proj_names[QW_NLIN] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                                                "gate_proj", "up_proj", "down_proj"};

const char *qwen2_proj_name(qwen2_proj p) {
  return p < QW_NLIN ? proj_names[p] : "?";
}

typedef struct {
  const char *name;
  int64_t hidden, layers, heads, kv_heads, intermediate, vocab;
  gboolean tied;
} preset;

/* head_dim = hidden / heads in every released Qwen2.5 size. */
static const preset presets[] = {
    {"tiny", 128, 2, 4, 2, 344, 1024, TRUE},
    {"qwen2.5-0.5b", 896, 24, 14, 2, 4864, 151936, TRUE},
    {"qwen2.5-3b", 2048, 36, 16, 2, 11008, 151936, TRUE},
    {"qwen2.5-7b", 3584, 28, 28, 4, 18944, 152064, FALSE},
};

gboolean qwen2_cfg_preset(qwen2_cfg *c, const char *name, GError **error) {
  memset(c, 0, sizeof *c);
  for (size_t i = 0; i < G_N_ELEMENTS(presets); i++) {
    const preset *p = &presets[i];
    if (strcmp(p->name, name) != 0) continue;
    c->hidden = p->hidden;
    c->layers = p->layers;
    c->heads = p->heads;
    c->kv_heads = p->kv_heads;
    c->head_dim = p->hidden / p->heads;
    c->intermediate = p->intermediate;
    c->vocab = p->vocab;
    c->tied = p->tied;
    c->rope_theta = 1e6;
    c->rms_eps = 1e-6;
    c->lora_alpha = 16;
    c->init_std = 0.02;
    return TRUE;
  }
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
              "llm.qwen2: unknown preset '%s' (tiny, qwen2.5-0.5b, qwen2.5-3b, qwen2.5-7b)", name);
  return FALSE;
}

gboolean qwen2_cfg_add_target(qwen2_cfg *c, const char *name, GError **error) {
  for (int p = 0; p < QW_NLIN; p++)
    if (strcmp(name, proj_names[p]) == 0) {
      c->lora_targets |= 1u << p;
      return TRUE;
    }
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
              "llm.qwen2: unknown LoRA target '%s' (q_proj, k_proj, v_proj, o_proj, gate_proj, "
              "up_proj, down_proj)",
              name);
  return FALSE;
}

gboolean qwen2_cfg_validate(const qwen2_cfg *c, const char *who, GError **error) {
  if (c->hidden <= 0 || c->layers <= 0 || c->heads <= 0 || c->kv_heads <= 0 || c->head_dim <= 0 ||
      c->intermediate <= 0 || c->vocab <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: hidden, layers, heads, kv_heads, head_dim, intermediate and vocab must be "
                "positive",
                who);
    return FALSE;
  }
  if (c->layers > QWEN2_MAX_LAYERS) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: at most %d layers, got %" G_GINT64_FORMAT,
                who, QWEN2_MAX_LAYERS, c->layers);
    return FALSE;
  }
  if (c->heads % c->kv_heads != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: kv_heads (%" G_GINT64_FORMAT ") must divide heads (%" G_GINT64_FORMAT ")", who,
                c->kv_heads, c->heads);
    return FALSE;
  }
  if (c->head_dim % 2 != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: head_dim must be even for rotate-half RoPE, got %" G_GINT64_FORMAT, who,
                c->head_dim);
    return FALSE;
  }
  if (c->n_sections) {
    int64_t sum = 0;
    gboolean negative = FALSE;
    for (int i = 0; i < c->n_sections && i < 3; i++) {
      negative = negative || c->sections[i] < 0;
      sum += c->sections[i];
    }
    if (c->n_sections != 3 || negative || sum != c->head_dim / 2) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "%s: mrope_section needs 3 non-negative entries summing to head_dim / 2 = "
                  "%" G_GINT64_FORMAT,
                  who, c->head_dim / 2);
      return FALSE;
    }
  }
  if (!(c->rope_theta > 0) || !(c->rms_eps > 0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: rope_theta and rms_eps must be positive",
                who);
    return FALSE;
  }
  if (c->lora_r < 0 || (c->lora_r > 0 && (c->lora_dropout < 0 || c->lora_dropout >= 1))) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: lora.r must be >= 0 and lora.dropout in [0, 1)", who);
    return FALSE;
  }
  return TRUE;
}
