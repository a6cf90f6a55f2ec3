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

/* Samples G completions of one prompt with the KV cache.
 * prompt: (Tp) ids; image: (n_image, D) embeddings or NULL; tokens: (G, Tc)
 * out, pad-filled; logps: (G, Tc) out, log softmax(logits / temperature) of
 * the unconstrained policy at each sampled token (0 elsewhere); n_gen: (G)
 * out, sampled tokens per row. In fixed mode <SEG> is never sampled and is
 * appended after the sampled tokens (tokens[g, n_gen[g]]); Tc = max_new + 1
 * then, else max_new. */
gboolean rl_sample_group(rl_sampler *s, const rl_config *c, const rl_tokens *tk,
                         const int32_t *prompt, int64_t Tp, const float *image, int64_t n_image,
                         int64_t D, ps_rng *rng, int64_t Tc, int32_t *tokens, float *logps,
                         int64_t *n_gen, GError **error);

gboolean rl_stage_run(void *self, ps_run *run, GError **error);
