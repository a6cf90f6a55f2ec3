/* generate.h — the "generate" capability of LLM components (llm.qwen2): KV-cached
 * incremental decoding with greedy / temperature / top-p sampling, returning
 * the generated ids, their log-probabilities and the hidden state at every
 * generated position (what SO-GRPO needs for its ratios and for the `<SEG>`
 * embedding). A stage includes this header (it depends on pathseg headers
 * only) and does:
 *
 *     const ps_llm_generate_iface *g = desc->capability(PS_LLM_GENERATE_CAPABILITY);
 *     ps_llm_generation out = {0};
 *     g->generate(self, ctx, &prompt, &sampling, &out, &error);
 *     ... out.tokens, out.logprobs, out.hidden, out.lengths ...
 *     g->generation_clear(&out);
 *
 * or drives prefill/step itself. The component's last forward (and so its
 * backward) is invalidated by any call here. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include <pathseg/plugin.h>
#include <pathseg/rng.h>

G_BEGIN_DECLS

#define PS_LLM_GENERATE_CAPABILITY "generate"

typedef struct ps_llm_prompt {
  int64_t B, T;
  const int32_t *input_ids;   /* (B, T), or NULL when inputs_embeds is given */
  const float *inputs_embeds; /* (B, T, D) or NULL */
  const float *image_embeds;  /* (B, n_image, D) replacing image_token_id placeholders, or NULL */
  int64_t n_image;
  const int32_t *position_ids; /* (S, B, T) position streams (S = 3 with M-RoPE) or NULL */
  /* (B, T) 1 = token, 0 = (left) padding, or NULL. Without position_ids the
   * positions are then HF generate's cumsum(mask) - 1 (1 at padding). */
  const int32_t *attention_mask;
} ps_llm_prompt;

typedef struct ps_llm_sampling {
  int64_t max_new_tokens;
  double temperature;      /* <= 0: greedy (argmax, first maximum on ties) */
  double top_p;            /* nucleus sampling; >= 1: off */
  const int32_t *stop_ids; /* a row stops after emitting one of these (it is kept) */
  size_t n_stop;
  int32_t pad_id; /* written after a row has stopped */
  ps_rng *rng;    /* draws of the sampler; NULL: the context's */
} ps_llm_sampling;

typedef struct ps_llm_generation {
  int64_t B, max_new, D;
  int32_t *tokens;  /* (B, max_new) generated ids, pad_id after the stop */
  float *logprobs;  /* (B, max_new) log softmax(logits / temperature)[token] (temperature 1
                       when greedy; top-p is not renormalised in); 0 after the stop */
  float *hidden;    /* (B, max_new, D) final-norm hidden state of the position whose logits
                       produced each token (LISA's <SEG> embedding for a <SEG> token); 0
                       after the stop */
  int64_t *lengths; /* (B) generated tokens per row, the stop token included */
} ps_llm_generation;

typedef struct ps_llm_generate_iface {
  uint32_t struct_size; /* sizeof(ps_llm_generate_iface) of the plugin */
  /* Starts a session: runs the prompt into a fresh KV cache with room for
   * `max_new` more tokens. Then logits() is (B, V) at each row's last token
   * and hidden() (B, D) its final-norm state. */
  gboolean (*prefill)(void *self, ps_context *ctx, const ps_llm_prompt *prompt, int64_t max_new,
                      GError **error);
  /* Feeds one token per row (B) at the next positions. */
  gboolean (*step)(void *self, ps_context *ctx, const int32_t *tokens, GError **error);
  const float *(*logits)(void *self); /* (B, V) of the last prefill/step */
  const float *(*hidden)(void *self); /* (B, D) of the last prefill/step */
  /* prefill + sampling + step until every row stopped or max_new_tokens. */
  gboolean (*generate)(void *self, ps_context *ctx, const ps_llm_prompt *prompt,
                       const ps_llm_sampling *sampling, ps_llm_generation *out, GError **error);
  void (*generation_clear)(ps_llm_generation *g);
} ps_llm_generate_iface;

G_END_DECLS
