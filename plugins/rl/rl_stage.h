/* rl_stage.h — internal declarations of the rl plugin (stage.so_grpo,
 * stage.grpo): the stage configuration, the sampler and the step driver.
 * The behaviour and every design choice are described in rl_stage.c. */
#pragma once

#include <pathseg/generate.h>
#include <pathseg/optim.h>
#include <pathseg/run.h>

typedef enum { RL_SEG_AUTO, RL_SEG_FIXED } rl_seg_mode;

typedef struct rl_config {
  gboolean grpo; /* stage.grpo: group advantages required, no critic */
  char *dataset, *llm, *mask_instance, *mask_port, *critic, *advantage;
  char **rewards; /* reward component instances */
  size_t n_rewards;
  int64_t steps, batch_size, group_size, max_new, max_seg, checkpoint_every, stop_after, ppo_epochs;
  int64_t eval_every, eval_batches, eval_batch_size; /* validation (rl_validate in rl_stage.c) */
  double temperature, top_p, reward_grad_weight, vf_coef;
  rl_seg_mode seg_mode;
  gboolean differentiable, dump_rollouts;
  ps_schedule schedule;
  ps_adamw_config adamw;
  ps_role roles[PS_ROLE_COUNT];
  size_t n_roles;
  char **only; /* train_components, or NULL */
  uint64_t seed;
} rl_config;

extern const ps_config_key rl_so_grpo_config[];
extern const ps_config_key rl_grpo_config[];

void *rl_config_create(const ps_config *cfg, gboolean grpo, GError **error);
void rl_config_destroy(void *self);

/* Token ids the sampler needs. */
typedef struct rl_tokens {
  int32_t seg, eos, pad;
  int32_t image; /* the image placeholder: never sampled (it would need image rows) */
} rl_tokens;

typedef struct rl_sampler {
  const ps_llm_generate_iface *gen;
  void *llm;
  ps_context *ctx;
  int64_t V;
  float *probs;    /* (V) scratch */
  int32_t *order;  /* (V) scratch for top-p */
} rl_sampler;

/* The seed of row `row` (0..G-1) of prompt `prompt` (its index in the
 * step's batch) at step `step` (0-based): a splitmix64 hash of (seed, step,
 * prompt, row) and nothing else, so a group's rows can be sampled on
 * different ranks, alone or together, and come out the same. `seed` is the
 * stage's seed already mixed with the pipeline's. */
uint64_t rl_sample_seed(uint64_t seed, int64_t step, int64_t prompt, int64_t row);

/* Samples G completions of one prompt with the KV cache.
 * prompt: (Tp) ids; image: (n_image, D) embeddings or NULL; row_seeds: (G)
 * the seed of each row (rl_sample_seed): row g draws only from its own
 * stream, one draw per sampled token, so its tokens depend on its seed and
 * the policy alone, not on the other rows or on G; tokens: (G, Tc) out,
 * pad-filled; logps: (G, Tc) out, log softmax(logits / temperature) of the
 * unconstrained policy at each sampled token (0 elsewhere); n_gen: (G) out,
 * sampled tokens per row. In fixed mode <SEG> is never sampled and is
 * appended after the sampled tokens (tokens[g, n_gen[g]]); Tc = max_new + 1
 * then, else max_new. G = c->group_size unless `G` > 0 overrides it (the
 * validation pass samples one greedy row per prompt). */
gboolean rl_sample_group(rl_sampler *s, const rl_config *c, const rl_tokens *tk,
                         const int32_t *prompt, int64_t Tp, const float *image, int64_t n_image,
                         int64_t D, const uint64_t *row_seeds, int64_t G, double temperature, int64_t Tc,
                         int32_t *tokens, float *logps, int64_t *n_gen, GError **error);

gboolean rl_stage_run(void *self, ps_run *run, GError **error);
