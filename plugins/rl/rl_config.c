/* rl_config.c — the YAML configuration of stage.so_grpo and stage.grpo.
 * Both stages share one schema; only the defaults differ (grpo: group
 * advantages, no critic, no reward gradient, constant learning rate). */
#include <string.h>

#include "rl_stage.h"

#define RL_KEYS(ADV, DIFF, SCHED, SEGMAX)                                                            \
  {"dataset", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "instance name of the dataset component"},    \
      {"llm", PS_TYPE_STRING, "llm", PS_NO_RANGE, NULL,                                              \
       "instance of the policy LLM (capability \"generate\")"},                                      \
      {"mask", PS_TYPE_STRING, "decoder.masks", PS_NO_RANGE, NULL,                                   \
       "\"instance.port\" of the mask logits predicted from the <SEG> state, at the size of "        \
       "data.mask"},                                                                                 \
      {"critic", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,                                              \
       "instance of critic.value over the LLM hidden states (needed by advantage.gae)"},             \
      {"advantage", PS_TYPE_STRING, ADV, PS_NO_RANGE, NULL,                                          \
       "instance of advantage.gae (per-token GAE) or advantage.group (GRPO)"},                       \
      {"rewards", PS_TYPE_STRING_LIST, NULL, PS_NO_RANGE, NULL,                                      \
       "reward component instances; each is weighted by its own `weight`"},                          \
      {"steps", PS_TYPE_INT, "100", 0, 1e12, NULL, "policy updates"},                                \
      {"batch_size", PS_TYPE_INT, "4", 1, 1e6, NULL, "prompts per step"},                             \
      {"group_size", PS_TYPE_INT, "4", 1, 1e4, NULL, "completions sampled per prompt (G)"},          \
      {"max_new_tokens", PS_TYPE_INT, "64", 2, 1e6, NULL, "longest completion"},                     \
      {"temperature", PS_TYPE_FLOAT, "1.0", 0, 100, NULL, "sampling temperature (0: greedy)"},       \
      {"top_p", PS_TYPE_FLOAT, "1.0", 0, 1, NULL, "nucleus sampling (1: off)"},                      \
      {"max_seg", PS_TYPE_INT, SEGMAX, 1, 1e4, NULL,                                                 \
       "most <SEG> tokens per completion (the sampler bans <SEG> after that many)"},                 \
      {"seg_mode", PS_TYPE_ENUM, "auto", PS_NO_RANGE, "auto|fixed",                                  \
       "auto: the policy emits <SEG>; fixed: <SEG> is never sampled and is appended at the end"},    \
      {"differentiable_reward", PS_TYPE_BOOL, DIFF, PS_NO_RANGE, NULL,                               \
       "send the gradient of differentiable rewards (R_soft) back through the mask decoder and "     \
       "SEG adapter into the <SEG> state"},                                                          \
      {"reward_grad_weight", PS_TYPE_FLOAT, "1.0", 0, 1e6, NULL,                                     \
       "scale of the differentiable-reward term (loss -= c * mean weighted reward)"},                \
      {"ppo_epochs", PS_TYPE_INT, "1", 1, 1000, NULL,                                                \
       "policy updates per rollout (TRL num_iterations); 1: the ratio stays 1, clipping is idle"},  \
      {"vf_coef", PS_TYPE_FLOAT, "0.1", 0, 1e6, NULL, "weight of the critic's value loss (TRL 0.1)"}, \
      {"lr", PS_TYPE_FLOAT, "1e-5", 0, 10, NULL, "a0, the initial learning rate"},                   \
      {"min_lr", PS_TYPE_FLOAT, "0", 0, 10, NULL, "final learning rate of the cosine schedule"},     \
      {"schedule", PS_TYPE_ENUM, SCHED, PS_NO_RANGE, "constant|cosine|robbins_monro",               \
       "learning-rate schedule; robbins_monro = a0 / (1 + eta k) (the paper's adaptive schedule)"},  \
      {"eta", PS_TYPE_FLOAT, "0.01", 0, 1e6, NULL, "decay eta of a0 / (1 + eta k)"},                 \
      {"warmup_steps", PS_TYPE_INT, "0", 0, 1e12, NULL, "linear warmup (cosine schedule)"},          \
      {"weight_decay", PS_TYPE_FLOAT, "0.0", 0, 10, NULL, "decoupled AdamW weight decay"},           \
      {"beta1", PS_TYPE_FLOAT, "0.9", 0, 1, NULL, "AdamW beta1"},                                    \
      {"beta2", PS_TYPE_FLOAT, "0.999", 0, 1, NULL, "AdamW beta2"},                                  \
      {"clip_norm", PS_TYPE_FLOAT, "1.0", 0, 1e9, NULL, "global gradient-norm clip (0 = off)"},      \
      {"train_roles", PS_TYPE_STRING_LIST, "[full, lora, adapter]", PS_NO_RANGE, NULL,               \
       "parameter roles that train"},                                                                \
      {"train_components", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,                             \
       "component instances whose parameters may train (empty: all)"},                               \
      {"checkpoint_every", PS_TYPE_INT, "0", 0, 1e12, NULL, "save every N steps (0 = at the end)"},  \
      {"eval_every", PS_TYPE_INT, "0", 0, 1e12, NULL,                                                \
       "validation Dice every N steps; always before the first update and after the last "          \
       "(0 = only those two)"},                                                                      \
      {"eval_batches", PS_TYPE_INT, "4", 0, 1e6, NULL,                                               \
       "validation batches (the first ones of the val split, in order; 0 = no validation)"},        \
      {"eval_batch_size", PS_TYPE_INT, "8", 1, 1e6, NULL,                                            \
       "prompts per validation batch (greedy, one completion each)"},                               \
      {"seed", PS_TYPE_INT, "0", 0, 1e15, NULL,                                                      \
       "batch and sampling seed (mixed with the pipeline seed)"},                                    \
      {"stop_after_steps", PS_TYPE_INT, "0", 0, 1e12, NULL,                                          \
       "stop (checkpoint, resumable) after this many steps in this invocation; 0 = never"},          \
      {"dump_rollouts", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,                                    \
       "write every sampled completion (text, reward terms, advantage) to "                          \
       "rollouts-STAGE.jsonl in the run directory"},                                                 \
  {                                                                                                  \
    NULL                                                                                             \
  }

const ps_config_key rl_so_grpo_config[] = {RL_KEYS("gae", "true", "robbins_monro", "3")};
const ps_config_key rl_grpo_config[] = {RL_KEYS("grpo", "false", "constant", "3")};

void rl_config_destroy(void *self) {
  rl_config *c = self;
  if (!c) return;
  g_free(c->dataset);
  g_free(c->llm);
  g_free(c->mask_instance);
  g_free(c->mask_port);
  g_free(c->critic);
  g_free(c->advantage);
  g_strfreev(c->rewards);
  g_strfreev(c->only);
  g_free(c);
}

static char **copy_list(const ps_config *cfg, const char *key, size_t *n) {
  const char *const *v = ps_config_string_list(cfg, key, n);
  char **out = g_new0(char *, *n + 1);
  for (size_t i = 0; i < *n; i++) out[i] = g_strdup(v[i]);
  return out;
}

void *rl_config_create(const ps_config *cfg, gboolean grpo, GError **error) {
  rl_config *c = g_new0(rl_config, 1);
  c->grpo = grpo;
  const char *mask = ps_config_string(cfg, "mask");
  const char *dot = strrchr(mask, '.');
  if (!dot || dot == mask || !dot[1]) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "mask: '%s' is not \"instance.port\"", mask);
    rl_config_destroy(c);
    return NULL;
  }
  c->mask_instance = g_strndup(mask, (gsize)(dot - mask));
  c->mask_port = g_strdup(dot + 1);
  size_t n = 0;
  const char *const *roles = ps_config_string_list(cfg, "train_roles", &n);
  for (size_t i = 0; i < n; i++) {
    if (!ps_role_from_name(roles[i], &c->roles[c->n_roles])) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "train_roles: '%s' is not a role (frozen, full, lora, adapter, backbone)", roles[i]);
      rl_config_destroy(c);
      return NULL;
    }
    if (c->n_roles < PS_ROLE_COUNT - 1) c->n_roles++;
  }
  size_t n_only = 0;
  char **only = copy_list(cfg, "train_components", &n_only);
  if (n_only) c->only = only;
  else g_strfreev(only);
  c->rewards = copy_list(cfg, "rewards", &c->n_rewards);
  if (c->n_rewards == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "rewards: name at least one reward component");
    rl_config_destroy(c);
    return NULL;
  }
  c->dataset = g_strdup(ps_config_string(cfg, "dataset"));
  c->llm = g_strdup(ps_config_string(cfg, "llm"));
  c->critic = g_strdup(ps_config_string(cfg, "critic"));
  c->advantage = g_strdup(ps_config_string(cfg, "advantage"));
  c->steps = ps_config_int(cfg, "steps");
  c->batch_size = ps_config_int(cfg, "batch_size");
  c->group_size = ps_config_int(cfg, "group_size");
  c->max_new = ps_config_int(cfg, "max_new_tokens");
  c->max_seg = ps_config_int(cfg, "max_seg");
  c->ppo_epochs = ps_config_int(cfg, "ppo_epochs");
  c->temperature = ps_config_float(cfg, "temperature");
  c->top_p = ps_config_float(cfg, "top_p");
  c->seg_mode = strcmp(ps_config_string(cfg, "seg_mode"), "fixed") == 0 ? RL_SEG_FIXED : RL_SEG_AUTO;
  c->differentiable = ps_config_bool(cfg, "differentiable_reward");
  c->reward_grad_weight = ps_config_float(cfg, "reward_grad_weight");
  c->vf_coef = ps_config_float(cfg, "vf_coef");
  c->checkpoint_every = ps_config_int(cfg, "checkpoint_every");
  c->eval_every = ps_config_int(cfg, "eval_every");
  c->eval_batches = ps_config_int(cfg, "eval_batches");
  c->eval_batch_size = ps_config_int(cfg, "eval_batch_size");
  c->stop_after = ps_config_int(cfg, "stop_after_steps");
  c->seed = (uint64_t)ps_config_int(cfg, "seed");
  c->dump_rollouts = ps_config_bool(cfg, "dump_rollouts");
  ps_optim_from_config(cfg, c->steps, &c->schedule, &c->adamw);
  return c;
}
