/* rl_sample.c — the rollout sampler of the RL stages: G completions of one
 * prompt with the LLM's KV cache (capability "generate": prefill, then one
 * step per token).
 *
 * The stage samples itself rather than calling generate() because it
 * constrains the sampler: <SEG> is banned once `max_seg` were emitted, and
 * always in `seg_mode: fixed` (where the stage appends it after the sampled
 * tokens); the image placeholder token is always banned (a completion cannot
 * carry image rows). The recorded log-probability is that of the unconstrained policy,
 * log softmax(logits / T)[token], which is what the teacher-forced update
 * recomputes, so the PPO ratio starts at 1; the constraint is part of the
 * environment, as a logits processor is in TRL/vLLM. Top-p keeps the
 * smallest set of most likely tokens whose mass reaches top_p (ties broken by
 * the lower id) and renormalises. Each row has its own rng, seeded from
 * (seed, step, prompt, row) by rl_sample_seed, and takes exactly one draw
 * per token it samples: a row's completion depends on nothing else (not on
 * the other rows, the group size or when they stop), so a run is
 * reproducible and a group can be split across ranks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rl_stage.h"

static int by_prob_desc(const void *a, const void *b, void *user) {
  const float *probs = user;
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (probs[i] != probs[j]) return probs[i] > probs[j] ? -1 : 1;
  return i < j ? -1 : (i > j);
}

/* Draws one token from `row` (V logits). probs / order: (V) scratch. */
static int32_t draw(const float *row, int64_t V, double temperature, double top_p, int32_t banned,
                    int32_t banned2, ps_rng *rng, float *probs, int32_t *order, double *logp) {
  double T = temperature > 0 ? temperature : 1.0;
  double mx = -INFINITY;
  for (int64_t v = 0; v < V; v++) mx = fmax(mx, row[v] / T);
  double z = 0;
  for (int64_t v = 0; v < V; v++) z += exp(row[v] / T - mx);
  double logz = mx + log(z);
  int32_t tok = -1;
  if (temperature <= 0) {
    float best = -INFINITY;
    for (int64_t v = 0; v < V; v++)
      if (v != banned && v != banned2 && (tok < 0 || row[v] > best)) best = row[v], tok = (int32_t)v;
  } else {
    double mass = 0;
    for (int64_t v = 0; v < V; v++) {
      probs[v] = v == banned || v == banned2 ? 0.0f : (float)exp(row[v] / T - logz);
      mass += probs[v];
    }
    int64_t keep = V;
    if (top_p < 1.0) {
      for (int64_t v = 0; v < V; v++) order[v] = (int32_t)v;
      qsort_r(order, (size_t)V, sizeof *order, by_prob_desc, probs);
      double acc = 0;
      for (keep = 0; keep < V;) {
        acc += probs[order[keep++]];
        if (acc >= top_p * mass) break;
      }
      mass = acc;
    }
    double u = ps_rng_uniform_f64(rng) * mass, acc = 0;
    for (int64_t k = 0; k < keep; k++) {
      int32_t v = top_p < 1.0 ? order[k] : (int32_t)k;
      if (probs[v] <= 0) continue;
      acc += probs[v];
      tok = v;
      if (u < acc) break;
    }
  }
  if (tok < 0) tok = 0;
  *logp = row[tok] / T - logz;
  return tok;
}

/* splitmix64's finaliser: a bijection that mixes every input bit. */
static uint64_t mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ULL;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

uint64_t rl_sample_seed(uint64_t seed, int64_t step, int64_t prompt, int64_t row) {
  /* chained, so (step, prompt, row) tuples cannot cancel as XORed products can */
  uint64_t h = mix64(seed);
  h = mix64(h ^ (uint64_t)step);
  h = mix64(h ^ (uint64_t)prompt);
  return mix64(h ^ (uint64_t)row);
}

gboolean rl_sample_group(rl_sampler *s, const rl_config *c, const rl_tokens *tk,
                         const int32_t *prompt, int64_t Tp, const float *image, int64_t n_image,
                         int64_t D, const uint64_t *row_seeds, int64_t G, double temperature, int64_t Tc,
                         int32_t *tokens, float *logps, int64_t *n_gen, GError **error) {
  if (G <= 0) G = c->group_size;
  gboolean fixed = c->seg_mode == RL_SEG_FIXED;
  int64_t budget = fixed ? Tc - 1 : Tc; /* fixed: room for the appended <SEG> */
  g_autofree int32_t *ids = g_new(int32_t, G * Tp);
  g_autofree float *img = image ? g_new(float, G * n_image * D) : NULL;
  for (int64_t g = 0; g < G; g++) {
    memcpy(ids + g * Tp, prompt, sizeof(int32_t) * Tp);
    if (img) memcpy(img + g * n_image * D, image, sizeof(float) * n_image * D);
  }
  ps_llm_prompt pr = {.B = G, .T = Tp, .input_ids = ids, .image_embeds = img, .n_image = n_image};
  if (!s->gen->prefill(s->llm, s->ctx, &pr, budget, error)) return FALSE;
  g_autofree int32_t *next = g_new(int32_t, G);
  g_autofree int64_t *n_seg = g_new0(int64_t, G);
  g_autofree gboolean *done = g_new0(gboolean, G);
  g_autofree ps_rng *rngs = g_new(ps_rng, G);
  for (int64_t g = 0; g < G; g++) ps_rng_seed(&rngs[g], row_seeds[g]);
  for (int64_t i = 0; i < G * Tc; i++) tokens[i] = tk->pad, logps[i] = 0;
  for (int64_t g = 0; g < G; g++) n_gen[g] = 0;
  for (int64_t t = 0; t < budget; t++) {
    const float *logits = s->gen->logits(s->llm);
    gboolean any = FALSE;
    for (int64_t g = 0; g < G; g++) {
      next[g] = tk->pad;
      if (done[g]) continue;
      int32_t banned = fixed || n_seg[g] >= c->max_seg ? tk->seg : -1;
      double lp = 0;
      int32_t tok = draw(logits + g * s->V, s->V, temperature, c->top_p, banned, tk->image, &rngs[g],
                         s->probs, s->order, &lp);
      tokens[g * Tc + t] = tok;
      logps[g * Tc + t] = (float)lp;
      n_gen[g] = t + 1;
      n_seg[g] += tok == tk->seg;
      if (tok == tk->eos) done[g] = TRUE;
      else any = TRUE;
      next[g] = tok;
    }
    if (!any || t + 1 == budget) break;
    if (!s->gen->step(s->llm, s->ctx, next, error)) return FALSE;
  }
  /* fixed: the forced <SEG> follows the last sampled token (after the
   * end-of-turn token when there is one), outside the policy's mask, so its
   * state (the one that "emits" it) has read the whole chain. */
  if (fixed)
    for (int64_t g = 0; g < G; g++) tokens[g * Tc + n_gen[g]] = tk->seg;
  return TRUE;
}
