/* qwen2_generate.c — the "generate" capability of llm.qwen2
 * (pathseg/generate.h): prefill a KV cache with the prompt, then one token per
 * step, sampling with qwen2_sample, until every row stopped or the budget is
 * spent. The prompt arrives in host memory (ps_llm_prompt). Off the CPU the
 * last rows' logits (B x V floats per step) and hidden states come back to
 * host buffers, where the sampler and the caller read them; decode steps
 * there run through the table's linear_forward, so a sequence's bits may
 * depend on its batch (qwen2_gemv.c is the CPU's batch-invariant kernel). */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2_plugin.h"

/* The logits of the last prefill/step (B, V) where the sampler reads them:
 * off the CPU, a host copy. */
static void logits_to_host(qwen2_self *s) {
  if (!s->m->host)
    s->m->k->copy_to_host(s->gen_logits, s->m->logits,
                          sizeof(float) * (size_t)(s->gen_B * s->m->cfg.vocab));
}

static gboolean gen_prefill(void *self, ps_context *ctx, const ps_llm_prompt *p, int64_t max_new,
                            GError **error) {
  qwen2_self *s = self;
  qwen2_model *m = s->m;
  const int64_t B = p->B, T = p->T, D = m->cfg.hidden;
  if (B <= 0 || T <= 0 || max_new < 0 || (p->input_ids == NULL) == (p->inputs_embeds == NULL) ||
      (p->image_embeds && (!p->input_ids || s->image_token_id < 0))) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2 generate: the prompt needs B, T > 0, exactly one of input_ids and "
                "inputs_embeds, and input_ids + image_token_id for image_embeds");
    return FALSE;
  }
  if (!qwen2_self_inputs(s, p->input_ids, p->inputs_embeds, p->image_embeds, TRUE, p->n_image, B, T,
                         error))
    return FALSE;
  if (s->kv && (s->kv->B != B || s->kv->cap < T + max_new)) g_clear_pointer(&s->kv, qwen2_kv_free);
  if (!s->kv && !(s->kv = qwen2_kv_new(&m->cfg, m->k, B, T + max_new, error))) return FALSE;
  qwen2_kv_reset(s->kv);
  if (s->gen_B != B) {
    g_free(s->gen_hidden);
    g_free(s->gen_logits);
    s->gen_hidden = g_new0(float, B *D);
    s->gen_logits = m->host ? NULL : g_new0(float, B * m->cfg.vocab);
    s->gen_B = B;
  }
  /* Left padding without explicit positions: HF generate's
   * position_ids = cumsum(mask) - 1, masked_fill(mask == 0, 1). */
  const int32_t *pos = p->position_ids;
  g_autofree int32_t *cum = NULL;
  if (!pos && p->attention_mask) {
    const int64_t S = m->cfg.n_sections ? m->cfg.n_sections : 1;
    cum = g_new(int32_t, S * B * T);
    for (int64_t b = 0; b < B; b++) {
      int32_t c = 0;
      for (int64_t t = 0; t < T; t++) {
        const gboolean real = p->attention_mask[b * T + t] != 0;
        c += real;
        for (int64_t s2 = 0; s2 < S; s2++) cum[s2 * B * T + b * T + t] = real ? c - 1 : 1;
      }
    }
    pos = cum;
  }
  if (!qwen2_forward(m, ctx, s->emb, pos, p->attention_mask, B, T, s->kv, QWEN2_LOGITS_LAST, error))
    return FALSE;
  for (int64_t b = 0; b < B; b++)
    m->k->copy_to_host(s->gen_hidden + b * D, m->hidden + (b * T + T - 1) * D,
                       sizeof(float) * (size_t)D);
  logits_to_host(s);
  return TRUE;
}

static gboolean gen_step(void *self, ps_context *ctx, const int32_t *tokens, GError **error) {
  qwen2_self *s = self;
  qwen2_model *m = s->m;
  if (!s->kv || s->gen_B <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "llm.qwen2 generate: step before prefill");
    return FALSE;
  }
  const int64_t B = s->gen_B, D = m->cfg.hidden;
  /* s->emb has room for the prompt's B * T >= B rows. */
  if (!qwen2_embed(m, s->emb, tokens, B, error) ||
      !qwen2_forward(m, ctx, s->emb, NULL, NULL, B, 1, s->kv, QWEN2_LOGITS_LAST, error))
    return FALSE;
  m->k->copy_to_host(s->gen_hidden, m->hidden, sizeof(float) * (size_t)(B * D));
  logits_to_host(s);
  return TRUE;
}

static const float *gen_logits(void *self) {
  qwen2_self *s = self;
  return s->m->host ? s->m->logits : s->gen_logits;
}
static const float *gen_hidden(void *self) {
  return ((qwen2_self *)self)->gen_hidden;
}

static void gen_clear(ps_llm_generation *g) {
  g_clear_pointer(&g->tokens, g_free);
  g_clear_pointer(&g->logprobs, g_free);
  g_clear_pointer(&g->hidden, g_free);
  g_clear_pointer(&g->lengths, g_free);
  g->B = g->max_new = g->D = 0;
}

static gboolean is_stop(const ps_llm_sampling *sp, int32_t tok) {
  for (size_t i = 0; i < sp->n_stop; i++)
    if (sp->stop_ids[i] == tok) return TRUE;
  return FALSE;
}

static gboolean gen_generate(void *self, ps_context *ctx, const ps_llm_prompt *prompt,
                             const ps_llm_sampling *sp, ps_llm_generation *out, GError **error) {
  qwen2_self *s = self;
  qwen2_model *m = s->m;
  const int64_t B = prompt->B, Mx = sp->max_new_tokens, D = m->cfg.hidden, V = m->cfg.vocab;
  gen_clear(out);
  if (Mx <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2 generate: max_new_tokens must be > 0");
    return FALSE;
  }
  if (!gen_prefill(self, ctx, prompt, Mx, error)) return FALSE;
  ps_rng *rng = sp->rng ? sp->rng : ps_context_rng(ctx);
  out->B = B;
  out->max_new = Mx;
  out->D = D;
  out->tokens = g_new(int32_t, B * Mx);
  out->logprobs = g_new0(float, B *Mx);
  out->hidden = g_new0(float, B *Mx *D);
  out->lengths = g_new0(int64_t, B);
  for (int64_t i = 0; i < B * Mx; i++) out->tokens[i] = sp->pad_id;
  g_autofree float *work = sp->temperature > 0 ? g_new(float, V) : NULL;
  g_autofree int32_t *idx = sp->temperature > 0 && sp->top_p < 1.0 ? g_new(int32_t, V) : NULL;
  g_autofree gboolean *done = g_new0(gboolean, B);
  g_autofree int32_t *next = g_new0(int32_t, B);
  for (int64_t i = 0; i < Mx; i++) {
    gboolean all_done = TRUE;
    for (int64_t b = 0; b < B; b++) {
      next[b] = 0; /* stopped rows still run (batched); their outputs are dropped */
      if (done[b]) continue;
      float lp = 0;
      int32_t tok =
          qwen2_sample(gen_logits(s) + b * V, V, sp->temperature, sp->top_p, rng, &lp, work, idx);
      out->tokens[b * Mx + i] = tok;
      out->logprobs[b * Mx + i] = lp;
      memcpy(out->hidden + (b * Mx + i) * D, s->gen_hidden + b * D, sizeof(float) * (size_t)D);
      out->lengths[b]++;
      next[b] = tok;
      done[b] = is_stop(sp, tok);
      all_done = all_done && done[b];
    }
    if (all_done || i + 1 == Mx) break;
    if (!gen_step(self, ctx, next, error)) {
      gen_clear(out);
      return FALSE;
    }
  }
  return TRUE;
}

const ps_llm_generate_iface qwen2_generate_iface = {
    .struct_size = sizeof(ps_llm_generate_iface),
    .prefill = gen_prefill,
    .step = gen_step,
    .logits = gen_logits,
    .hidden = gen_hidden,
    .generate = gen_generate,
    .generation_clear = gen_clear,
};
