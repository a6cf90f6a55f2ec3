/* rl_stage.c — the step driver of stage.so_grpo (SO-GRPO, paper §3.4,
 * Eq. 3-4) and stage.grpo (the standard GRPO baseline).
 *
 * One step, with P = batch_size prompts and G = group_size completions each
 * (N = P G rows, the G completions of one prompt consecutive):
 *  1. Prompts. The loader's batch (same loader as stage.fit: a pure function
 *     of (seed, step)) gives the chat-layout input_ids; a prompt is the
 *     prefix before the first label != -100 (user turn, image placeholders,
 *     "<|im_start|>assistant\n"). The image rows the LLM's `image_embeds` is
 *     bound to (projector.tokens) are computed by a graph forward on the
 *     batch, in eval mode, and fed to generation as in SFT.
 *  2. Rollout (rl_sample.c). G completions per prompt with the KV cache,
 *     temperature / top-p, row i of prompt p seeded from (seed, step, p, i)
 *     alone (rl_sample_seed), at most
 *     max_new_tokens, ending at <|im_end|>. seg_mode auto: the policy
 *     decides where to emit <SEG> (banned after max_seg of them); fixed (the
 *     "w/o auto-emission" ablation): <SEG> is banned and appended after the
 *     sampled tokens, outside the policy mask.
 *  3. One teacher-forced forward of the graph (training mode, so that
 *     backward has its caches) on N rows: prompt + completion, right-padded
 *     with <|endoftext|> (causal attention makes right padding harmless and
 *     positions stay 0..T-1); the other data fields (image, mask, ...) are
 *     the prompt's, repeated G times; seg_positions = the first <SEG> of the
 *     completion (adapter.seg reads the state before it: the same state
 *     generation produced <SEG> from) or -1. This forward gives the new
 *     log-probs (log softmax(logits / T)), the mask logits (`mask`, e.g.
 *     decoder.masks at data.mask's size) and the critic values. The rewards
 *     are scored on these masks: with one update per rollout (TRL's
 *     num_iterations = 1) the parameters are those that sampled, so these
 *     are the masks of the rollout and need no second decoder pass (the
 *     default ppo_epochs 1; later epochs only recompute the reward gradient).
 *  4. Reference log-probs for the KL (k3) to the frozen SFT policy: the
 *     trainable parameters are snapshot when the stage starts fresh (and
 *     saved to reference-STAGE.safetensors in the run directory, so a resumed
 *     run keeps the same reference); a second forward of the LLM with the
 *     snapshot swapped in gives them. This is the simplest approach that is
 *     right whatever trains (full, LoRA, merged or not) and costs one
 *     forward, no second model.
 *  5. Rewards: every instance in `rewards:` scores every row (weight * term;
 *     ps_reward_sample gets the decoded completion, the <SEG> indices and
 *     byte offsets, and the first <SEG>'s mask with the ground truth); rows
 *     without <SEG> get no mask (the terms decide what that earns).
 *  6. Advantages from the `advantage` instance: advantage.gae (per-token GAE
 *     with the critic's values V(s_t) = critic(hidden at the position that
 *     produced token t), TRL's pipeline: score at the first pad, KL-in-reward
 *     by its kl_coef, whitening) or advantage.group (GRPO: group-normalised,
 *     no critic). The lambda_KL of Eq. 3 is the component's `beta` (k3 KL in
 *     the loss, 0.01 in pipelines/pathchat_segr1.yaml).
 *  7. Loss and backward, all from the one forward: the component's clipped
 *     surrogate + beta k3 (rl_math.h) gives d loss / d logp per token; the
 *     chain rule through log softmax(logits / T) seeds llm.logits. The value
 *     loss (gae) seeds critic.values with vf_coef (the critic shares the LLM
 *     trunk, so the value gradient also reaches the LLM as in PPO with a
 *     shared backbone). With differentiable_reward, the loss also gets
 *     -reward_grad_weight * mean_rows(sum_k w_k R_k) over the differentiable
 *     terms (R_soft): their gradient w.r.t. the mask logits seeds the mask
 *     output and reaches decoder -> adapter.seg -> the <SEG> hidden state.
 *     Then an AdamW step (train_roles / train_components as stage.fit) at
 *     the schedule's rate; with ppo_epochs > 1 the forward, losses and step
 *     repeat on the same rollout (fixed advantages, old and reference
 *     log-probs; value loss clipped around the rollout's values). The rate:
 *     robbins_monro a0 / (1 + eta k) by default (k = the step), cosine or
 *     constant for the "w/o adaptive scheduling" ablation. Metrics of a step
 *     are means over its epochs.
 * Dropout: the update forward runs in training mode (backward needs its
 * caches), so LoRA / critic dropout would make the ratio differ from 1; the
 * RL pipelines set them to 0 as TRL's PPO does (disable_dropout).
 * Metrics per step (metrics.jsonl): reward and each reward/INSTANCE term
 * (unweighted means), kl, clip_frac, ratio, policy_loss, value_loss,
 * adv_mean, adv_std, grad_norm, grad_var (variance of the gradient's
 * entries), grad_norm/INSTANCE, param_delta (L2 distance to the reference),
 * seg_dice (hard Dice of the sampled masks, rows with <SEG>), seg_rate,
 * n_seg, length, lr. Checkpoints and resume as stage.fit. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <pathseg/dataset.h>
#include <pathseg/kernels.h>
#include <pathseg/loader.h>
#include <pathseg/reward.h>
#include <pathseg/safetensors.h>
#include <stdio.h>
#include <string.h>

#include "advantage.h"
#include "bpe.h"
#include "rl_dist.h"
#include "rl_stage.h"

typedef struct {
  ps_param *param;
  ps_tensor *ref; /* the snapshot, on the parameter's device */
  char *key;      /* "instance/param" */
} ref_param;

typedef struct {
  const char *name;
  const ps_reward_iface *iface;
  void *self;
  double weight;
} reward_ref;

/* Everything one run of the stage holds. */
typedef struct {
  rl_config *c;
  ps_run *run;
  ps_graph *g;
  ps_context *ctx;
  const ps_dataset_iface *ds;
  void *ds_self;
  const ps_advantage_iface *adv;
  void *adv_self;
  gboolean gae;
  reward_ref *rewards;
  ps_bpe *tok;
  rl_tokens tk;
  rl_sampler sampler;
  char *img_instance, *img_port; /* what llm.image_embeds is bound to, or NULL */
  GArray *refs;                  /* ref_param */
  GHashTable *inst_norm;         /* instance -> index into inst_names */
  GPtrArray *inst_names;
  FILE *dump;
  ps_device device;     /* the run's device: component outputs and parameters live there */
  ps_tensor *swap_tmp;  /* (largest trainable numel) on `device`: swap_reference's buffer */
  /* Host copies of device outputs (unused on the CPU, where the outputs
   * themselves are read): llm.logits, the mask, critic.values, image rows,
   * a parameter / gradient / snapshot for the metrics. */
  ps_tensor *h_logits, *h_mask, *h_values, *h_img, *h_param, *h_ref;
  const ps_tensor *lg_host; /* llm.logits of the last forward on the host (h_logits or the output) */
  ps_loader *val;      /* validation batches, or NULL */
  double best_dice;    /* best val_dice so far, NAN before the first validation */
  int64_t best_step;
} rl_state;

/* ---------------------------------------------------------------------- */
/* Set-up. */

static void collect_trainable(const char *instance, ps_param *param, void *user) {
  if (!param->grad) return;
  ref_param r = {param, NULL, g_strdup_printf("%s/%s", instance, param->name)};
  g_array_append_val((GArray *)user, r);
}

static void clear_ref(gpointer p) {
  ref_param *r = p;
  ps_tensor_free(r->ref);
  g_free(r->key);
}

/* The buffer swap_reference goes through: as big as the largest trainable
 * parameter, on the run's device. */
static gboolean swap_buffer(rl_state *s, GError **error) {
  int64_t big = 0;
  for (guint i = 0; i < s->refs->len; i++)
    big = MAX(big, (int64_t)g_array_index(s->refs, ref_param, i).param->value->nbytes);
  int64_t shape[1] = {big};
  return ps_tensor_ensure_on(&s->swap_tmp, s->device, PS_DTYPE_U8, 1, shape, error);
}

/* Snapshot of the trainable parameters (the frozen SFT policy), saved in the
 * run directory on a fresh start and read back on resume. */
static gboolean reference_snapshot(rl_state *s, gboolean resumed, GError **error) {
  s->refs = g_array_new(FALSE, TRUE, sizeof(ref_param));
  g_array_set_clear_func(s->refs, clear_ref);
  ps_graph_visit_params(s->g, collect_trainable, s->refs);
  g_autofree char *name = g_strdup_printf("reference-%s.safetensors", ps_run_stage(s->run));
  g_autofree char *path = g_build_filename(ps_run_dir(s->run), name, NULL);
  if (resumed && g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_autoptr(ps_safetensors) st = ps_safetensors_open(path, error);
    if (!st) return FALSE;
    for (guint i = 0; i < s->refs->len; i++) {
      ref_param *r = &g_array_index(s->refs, ref_param, i);
      g_autoptr(ps_tensor) t = ps_safetensors_get_f32(st, r->key, error);
      if (!t) return FALSE;
      if (ps_tensor_numel(t) != ps_tensor_numel(r->param->value)) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: %s has the wrong size", path, r->key);
        return FALSE;
      }
      if (t->dtype != r->param->value->dtype) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s: %s is %s, the parameter %s", path, r->key,
                    ps_dtype_name(t->dtype), ps_dtype_name(r->param->value->dtype));
        return FALSE;
      }
      /* the parameter's shape, on its device */
      r->ref = ps_tensor_new_on(r->param->value->device, t->dtype, r->param->value->ndim,
                                r->param->value->shape, error);
      if (!r->ref || !ps_tensor_copy_into(r->ref, t, error)) return FALSE;
    }
    return swap_buffer(s, error);
  }
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  for (guint i = 0; i < s->refs->len; i++) {
    ref_param *r = &g_array_index(s->refs, ref_param, i);
    /* a copy on the parameter's device (the writer keeps a host copy) */
    r->ref = ps_tensor_to_device(r->param->value, r->param->value->device, error);
    if (!r->ref || !ps_safetensors_writer_add(w, r->key, r->param->value, error)) return FALSE;
  }
  if (!swap_buffer(s, error)) return FALSE;
  /* every rank holds the same parameters; rank 0 writes the run directory */
  return !ps_run_is_root(s->run) || ps_safetensors_writer_write(w, path, error);
}

/* Swaps the live trainable parameters with the snapshot (twice = back), in
 * place (the values' data pointers stay, so nothing that holds them goes
 * stale), by three copies within the device through swap_tmp. */
static gboolean swap_reference(rl_state *s, GError **error) {
  const ps_kernels *k = ps_kernels_get(s->device, error);
  if (!k) return FALSE;
  void *tmp = s->swap_tmp->data;
  for (guint i = 0; i < s->refs->len; i++) {
    ref_param *r = &g_array_index(s->refs, ref_param, i);
    size_t n = r->param->value->nbytes;
    if (n == 0) continue;
    if (r->param->value->device != s->device) { /* a parameter held elsewhere (not expected) */
      g_autoptr(ps_tensor) keep = ps_tensor_copy(r->param->value, error);
      if (!keep || !ps_tensor_copy_into(r->param->value, r->ref, error) ||
          !ps_tensor_copy_into(r->ref, keep, error))
        return FALSE;
      continue;
    }
    k->copy_on_device(tmp, r->param->value->data, n);
    k->copy_on_device(r->param->value->data, r->ref->data, n);
    k->copy_on_device(r->ref->data, tmp, n);
  }
  return TRUE;
}

static ps_bpe *load_tokenizer(const ps_pipeline *p, const char *dataset, GError **error) {
  const ps_pipeline_component *pc = ps_pipeline_get_component(p, dataset);
  const char *tok = pc ? ps_config_string(pc->config, "tokenizer") : NULL;
  const char *manifest = pc ? ps_config_string(pc->config, "manifest") : NULL;
  if (!manifest) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "dataset '%s' has no `manifest`: the RL stages need dataset.benchmark", dataset);
    return NULL;
  }
  g_autofree char *dir = g_path_get_dirname(manifest);
  g_autofree char *path = tok && *tok ? g_strdup(tok) : g_build_filename(dir, "tokenizer.json", NULL);
  ps_bpe *bpe = ps_bpe_load(path, error);
  if (!bpe) return NULL;
  /* the same special tokens, in the same order, as dataset.benchmark adds */
  static const char *const specials[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                         "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                         "<SEG>", NULL};
  for (size_t i = 0; specials[i]; i++)
    if (ps_bpe_token_to_id(bpe, specials[i]) < 0 &&
        ps_bpe_add_token(bpe, specials[i], strcmp(specials[i], "<SEG>") != 0, error) < 0) {
      ps_bpe_free(bpe);
      return NULL;
    }
  return bpe;
}

static gboolean setup(rl_state *s, GError **error) {
  rl_config *c = s->c;
  const ps_pipeline *p = ps_run_pipeline(s->run);
  s->g = ps_run_graph(s->run);
  s->ctx = ps_run_context(s->run);
  s->ds_self = ps_graph_self(s->g, c->dataset, NULL);
  s->ds = s->ds_self ? ps_graph_capability(s->g, c->dataset, "dataset") : NULL;
  if (!s->ds) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "dataset: '%s' is not a component with the dataset capability", c->dataset);
    return FALSE;
  }
  if (!ps_dataset_open(s->ds, s->ds_self, error)) return FALSE;
  s->sampler.llm = ps_graph_self(s->g, c->llm, NULL);
  s->sampler.gen = s->sampler.llm ? ps_graph_capability(s->g, c->llm, PS_LLM_GENERATE_CAPABILITY) : NULL;
  if (!s->sampler.gen) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "llm: '%s' is not a component with the \"generate\" capability", c->llm);
    return FALSE;
  }
  s->sampler.ctx = s->ctx;
  if (!ps_graph_self(s->g, c->mask_instance, NULL)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "mask: no component '%s'", c->mask_instance);
    return FALSE;
  }
  s->adv_self = ps_graph_self(s->g, c->advantage, NULL);
  s->adv = s->adv_self ? ps_graph_capability(s->g, c->advantage, PS_ADVANTAGE_CAPABILITY) : NULL;
  if (!s->adv) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "advantage: '%s' is not an advantage.gae / advantage.group component", c->advantage);
    return FALSE;
  }
  s->gae = s->adv->value_loss != NULL;
  if (c->grpo && s->gae) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "advantage: stage.grpo is the group baseline; '%s' is advantage.gae (use stage.so_grpo)",
                c->advantage);
    return FALSE;
  }
  if (s->gae && !(*c->critic && ps_graph_self(s->g, c->critic, NULL))) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "critic: advantage '%s' is GAE and needs a critic.value component (critic: '%s')",
                c->advantage, c->critic);
    return FALSE;
  }
  s->rewards = g_new0(reward_ref, c->n_rewards);
  for (size_t k = 0; k < c->n_rewards; k++) {
    reward_ref *r = &s->rewards[k];
    r->name = c->rewards[k];
    r->self = ps_graph_self(s->g, r->name, NULL);
    r->iface = r->self ? ps_graph_capability(s->g, r->name, "reward") : NULL;
    if (!r->iface) {
      g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "rewards: '%s' is not a reward component", r->name);
      return FALSE;
    }
    r->weight = r->iface->weight(r->self);
  }
  const ps_pipeline_component *llm = ps_pipeline_get_component(p, c->llm);
  for (size_t i = 0; llm && i < llm->n_inputs; i++)
    if (strcmp(llm->inputs[i].port, "image_embeds") == 0 && strcmp(llm->inputs[i].source, "data") != 0) {
      s->img_instance = g_strdup(llm->inputs[i].source);
      s->img_port = g_strdup(llm->inputs[i].source_port);
    }
  s->tok = load_tokenizer(p, c->dataset, error);
  if (!s->tok) return FALSE;
  s->tk.seg = ps_bpe_token_to_id(s->tok, "<SEG>");
  s->tk.eos = ps_bpe_token_to_id(s->tok, "<|im_end|>");
  s->tk.pad = ps_bpe_token_to_id(s->tok, "<|endoftext|>");
  s->tk.image = ps_bpe_token_to_id(s->tok, "<|image_pad|>");
  if (llm && ps_config_has(llm->config, "image_token_id"))
    s->tk.image = (int32_t)ps_config_int(llm->config, "image_token_id");
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* The step. */

typedef struct {
  int64_t P, G, N, Tc, Tu, V;
  int64_t *Tp;       /* (P) prompt lengths */
  int32_t *tokens;   /* (N, Tc) */
  float *old_logps;  /* (N, Tc) rollout */
  float *logps;      /* (N, Tc) teacher-forced */
  float *ref_logps;  /* (N, Tc) */
  float *mask;       /* (N, Tc) policy tokens */
  float *mask_p1;    /* (N, Tc) value-loss mask */
  float *values;     /* (N, Tc) */
  float *scores;     /* (N) */
  float *terms;      /* (N, K) unweighted reward terms */
  float *adv, *ret;  /* (N, Tc) */
  float *grad;       /* (N, Tc) */
  int64_t *n_gen, *seq_len, *n_seg, *seg_pos; /* (N) */
  double *dice;      /* (N) hard Dice, NaN without <SEG> */
} rollout;

static void rollout_free(rollout *r) {
  g_free(r->Tp);
  g_free(r->tokens);
  g_free(r->old_logps);
  g_free(r->logps);
  g_free(r->ref_logps);
  g_free(r->mask);
  g_free(r->mask_p1);
  g_free(r->values);
  g_free(r->scores);
  g_free(r->terms);
  g_free(r->adv);
  g_free(r->ret);
  g_free(r->grad);
  g_free(r->n_gen);
  g_free(r->seq_len);
  g_free(r->n_seg);
  g_free(r->seg_pos);
  g_free(r->dice);
}

/* The update batch: every field of `batch` repeated G times along dim 0
 * (those with P rows), input_ids / labels / seg_positions / lengths rebuilt
 * for prompt + completion. */
typedef struct {
  ps_port *items;
  ps_tensor **owned;
  size_t n;
  ps_ports ports;
} upd_batch;

static void upd_free(upd_batch *u) {
  for (size_t i = 0; i < u->n; i++) ps_tensor_free(u->owned[i]);
  g_free(u->owned);
  g_free(u->items);
}

static gboolean build_update_batch(const rollout *r, const ps_ports *batch, const int32_t *ids_in,
                                   int64_t T_in, const rl_tokens *tk, upd_batch *u, GError **error) {
  u->n = batch->count;
  u->items = g_new0(ps_port, u->n);
  u->owned = g_new0(ps_tensor *, u->n);
  for (size_t i = 0; i < u->n; i++) {
    const ps_port *src = &batch->items[i];
    u->items[i].name = src->name;
    const ps_tensor *t = src->tensor;
    if (!t) continue;
    const char *nm = src->name;
    gboolean text = strcmp(nm, "input_ids") == 0 || strcmp(nm, "labels") == 0 ||
                    strcmp(nm, "attention_mask") == 0;
    int64_t shape[PS_MAX_DIMS];
    memcpy(shape, t->shape, sizeof shape);
    if (t->ndim < 1 || t->shape[0] != r->P) {
      u->items[i].tensor = (ps_tensor *)t; /* not per example: shared */
      continue;
    }
    shape[0] = r->N;
    if (text) shape[1] = r->Tu;
    ps_tensor *o = ps_tensor_new(t->dtype, t->ndim, shape, error);
    if (!o) return FALSE;
    u->owned[i] = o;
    u->items[i].tensor = o;
    size_t row = t->nbytes / (size_t)r->P;
    if (!text)
      for (int64_t n = 0; n < r->N; n++)
        memcpy((char *)o->data + (size_t)n * row, (const char *)t->data + (size_t)(n / r->G) * row, row);
    if (o->dtype != PS_DTYPE_I32 && (text || strcmp(nm, "seg_positions") == 0 || strcmp(nm, "lengths") == 0)) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "data.%s: expected I32", nm);
      return FALSE;
    }
    int32_t *d = o->data;
    for (int64_t n = 0; n < r->N; n++) {
      int64_t p = n / r->G, Tp = r->Tp[p], L = r->n_gen[n];
      const int32_t *comp = r->tokens + n * r->Tc;
      int64_t Lall = L + (L < r->Tc && comp[L] == tk->seg); /* sampled + a forced <SEG> */
      if (strcmp(nm, "input_ids") == 0) {
        int32_t *row_ids = d + n * r->Tu;
        for (int64_t t2 = 0; t2 < r->Tu; t2++) row_ids[t2] = tk->pad;
        memcpy(row_ids, ids_in + p * T_in, sizeof(int32_t) * (size_t)Tp);
        memcpy(row_ids + Tp, comp, sizeof(int32_t) * (size_t)Lall);
      } else if (strcmp(nm, "labels") == 0) {
        int32_t *row_l = d + n * r->Tu;
        for (int64_t t2 = 0; t2 < r->Tu; t2++) row_l[t2] = -100;
        for (int64_t t2 = 0; t2 < L; t2++) row_l[Tp + t2] = comp[t2];
      } else if (strcmp(nm, "attention_mask") == 0) {
        int32_t *row_m = d + n * r->Tu;
        for (int64_t t2 = 0; t2 < r->Tu; t2++) row_m[t2] = t2 < Tp + Lall;
      } else if (strcmp(nm, "seg_positions") == 0) {
        d[n] = r->seg_pos[n] >= 0 ? (int32_t)(Tp + r->seg_pos[n]) : -1;
      } else if (strcmp(nm, "lengths") == 0) {
        d[n] = (int32_t)(Tp + Lall);
      }
    }
  }
  u->ports.items = u->items;
  u->ports.count = u->n;
  return TRUE;
}

/* log softmax(row / T)[tok]; with `softmax` (V) non-NULL also the probs. */
static double token_logp(const float *row, int64_t V, double T, int32_t tok, float *softmax) {
  double mx = -INFINITY, z = 0;
  for (int64_t v = 0; v < V; v++) mx = fmax(mx, row[v] / T);
  for (int64_t v = 0; v < V; v++) z += exp(row[v] / T - mx);
  double logz = mx + log(z);
  if (softmax)
    for (int64_t v = 0; v < V; v++) softmax[v] = (float)exp(row[v] / T - logz);
  return row[tok] / T - logz;
}

static gboolean llm_logps(rl_state *s, rollout *r, float *out, GError **error) {
  const ps_tensor *lg = ps_graph_output(s->g, s->c->llm, "logits");
  if (!lg || lg->ndim != 3 || lg->shape[0] != r->N || lg->shape[1] != r->Tu) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.logits is missing or not (N, T, V)", s->c->llm);
    return FALSE;
  }
  /* read on the host: the output itself on the CPU, else a copy (kept for
   * policy_update, which differentiates this same forward's logits) */
  s->lg_host = ps_tensor_on_device(lg, PS_DEVICE_CPU, &s->h_logits, error);
  if (!s->lg_host) return FALSE;
  const float *lgh = ps_f32(s->lg_host);
  double T = s->c->temperature > 0 ? s->c->temperature : 1.0;
  for (int64_t n = 0; n < r->N; n++) {
    int64_t Tp = r->Tp[n / r->G];
    for (int64_t t = 0; t < r->Tc; t++)
      out[n * r->Tc + t] =
          t < r->n_gen[n] ? (float)token_logp(lgh + ((n * r->Tu) + Tp + t - 1) * r->V, r->V, T,
                                              r->tokens[n * r->Tc + t], NULL)
                          : 0.0f;
  }
  return TRUE;
}

typedef struct {
  double sum, sq;
  int64_t n;
  GHashTable *per_inst; /* name -> double* (sum of squares) */
  ps_tensor **cache;    /* host copy of a device gradient */
  GError *error;        /* the first failure to copy one */
} grad_stats;

static void grad_visit(const char *instance, ps_param *param, void *user) {
  grad_stats *gs = user;
  if (!param->grad || gs->error) return;
  /* DEVICE: the statistics are summed on the host (in double, as on the
   * CPU); a device gradient comes back first */
  const ps_tensor *gh = ps_tensor_on_device(param->grad, PS_DEVICE_CPU, gs->cache, &gs->error);
  if (!gh) return;
  const float *gr = ps_f32(gh);
  double sq = 0;
  for (int64_t k = 0, n = ps_tensor_numel(param->grad); k < n; k++) {
    gs->sum += gr[k];
    sq += (double)gr[k] * gr[k];
  }
  gs->sq += sq;
  gs->n += ps_tensor_numel(param->grad);
  double *acc = g_hash_table_lookup(gs->per_inst, instance);
  if (!acc) {
    acc = g_new0(double, 1);
    g_hash_table_insert(gs->per_inst, g_strdup(instance), acc);
  }
  *acc += sq;
}

static void dump_rows(rl_state *s, const rollout *r, int64_t step) {
  for (int64_t n = 0; n < r->N; n++) {
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "step");
    json_builder_add_int_value(b, step);
    json_builder_set_member_name(b, "row");
    json_builder_add_int_value(b, n);
    json_builder_set_member_name(b, "prompt");
    json_builder_add_int_value(b, n / r->G);
    json_builder_set_member_name(b, "reward");
    json_builder_add_double_value(b, r->scores[n]);
    for (size_t k = 0; k < s->c->n_rewards; k++) {
      json_builder_set_member_name(b, s->rewards[k].name);
      json_builder_add_double_value(b, r->terms[n * (int64_t)s->c->n_rewards + (int64_t)k]);
    }
    json_builder_set_member_name(b, "advantage");
    json_builder_add_double_value(b, r->adv[n * r->Tc]);
    json_builder_set_member_name(b, "length");
    json_builder_add_int_value(b, r->n_gen[n]);
    json_builder_set_member_name(b, "n_seg");
    json_builder_add_int_value(b, r->n_seg[n]);
    g_autofree char *text = ps_bpe_decode(s->tok, r->tokens + n * r->Tc,
                                          (size_t)(r->n_gen[n] + (r->seg_pos[n] == r->n_gen[n])), FALSE, NULL);
    /* sampled byte-level tokens can decode to invalid UTF-8 and to control
     * characters, which json-glib would write raw (invalid JSON) */
    g_autofree char *clean = g_utf8_make_valid(text ? text : "", -1);
    for (char *c = clean; *c; c++)
      if ((unsigned char)*c < 0x20 && *c != '\n' && *c != '\t') *c = '?';
    json_builder_set_member_name(b, "text");
    json_builder_add_string_value(b, clean);
    json_builder_end_object(b);
    g_autoptr(JsonGenerator) gen = json_generator_new();
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    g_autofree char *line = json_generator_to_data(gen, NULL);
    fprintf(s->dump, "%s\n", line);
  }
  fflush(s->dump);
}

/* Scores every row on the mask logits `mk` (N, ..., H, W) of the current
 * forward. With `record`, stores the weighted sums, the terms and the hard
 * Dice in r; always fills `dmask` (zeroed here) with d loss / d mask logits
 * of the differentiable rewards when they are enabled. *any: some entry != 0. */
static void score_rows(rl_state *s, rollout *r, const int32_t *ids, int64_t T_in, const ps_tensor *mk,
                       const ps_tensor *tgt_t, ps_tensor *dmask, float *dtmp, gboolean record,
                       gboolean *any) {
  rl_config *c = s->c;
  const int64_t N = r->N, G = r->G, P = r->P, Tc = r->Tc, K = (int64_t)c->n_rewards;
  const int64_t H = tgt_t->shape[tgt_t->ndim - 2], W = tgt_t->shape[tgt_t->ndim - 1];
  const int64_t mrow = ps_tensor_numel(mk) / N;
  memset(dmask->data, 0, dmask->nbytes);
  *any = FALSE;
  for (int64_t n = 0; n < N; n++) {
    gboolean grad_row = c->differentiable && r->n_seg[n] > 0;
    if (!record && !grad_row) continue;
    int64_t p = n / G, L = r->n_gen[n];
    const int32_t *comp = r->tokens + n * Tc;
    int64_t Lall = L + (c->seg_mode == RL_SEG_FIXED);
    g_autofree char *query = ps_bpe_decode(s->tok, ids + p * T_in, (size_t)r->Tp[p], TRUE, NULL);
    g_autofree char *text = ps_bpe_decode(s->tok, comp, (size_t)Lall, FALSE, NULL);
    g_autofree int64_t *seg_at = g_new0(int64_t, r->n_seg[n] + 1);
    g_autofree int64_t *seg_char = g_new0(int64_t, r->n_seg[n] + 1);
    int64_t k2 = 0;
    for (int64_t t = 0; t < Lall; t++)
      if (comp[t] == s->tk.seg) {
        g_autofree char *pre = ps_bpe_decode(s->tok, comp, (size_t)t, FALSE, NULL);
        seg_at[k2] = t;
        seg_char[k2++] = pre ? (int64_t)strlen(pre) : 0;
      }
    const float *ml = ps_f32(mk) + n * mrow;
    const float *tg = ps_f32(tgt_t) + p * (ps_tensor_numel(tgt_t) / P);
    ps_reward_sample rs = {.query = query ? query : "", .completion = text ? text : "",
                           .n_tokens = L, .n_seg = r->n_seg[n], .seg_at = seg_at, .seg_char = seg_char,
                           .finished = L > 0 && comp[L - 1] == s->tk.eos,
                           .logits = r->n_seg[n] ? ml : NULL, .target = r->n_seg[n] ? tg : NULL,
                           .H = H, .W = W};
    double total = 0;
    for (int64_t k = 0; k < K; k++) {
      if (grad_row) memset(dtmp, 0, sizeof(float) * (size_t)(H * W));
      double v = s->rewards[k].iface->score(s->rewards[k].self, &rs, grad_row ? dtmp : NULL);
      if (record) r->terms[n * K + k] = (float)v;
      total += s->rewards[k].weight * v;
      if (grad_row) {
        /* loss -= c * w_k * R_k / N  =>  d loss / d logits = -c w_k dR / N */
        float f = (float)(-c->reward_grad_weight * s->rewards[k].weight / (double)N);
        float *dm = ps_f32(dmask) + n * mrow;
        for (int64_t i = 0; i < H * W; i++) {
          dm[i] += f * dtmp[i];
          *any |= dtmp[i] != 0;
        }
      }
    }
    if (!record) continue;
    r->scores[n] = (float)total;
    r->dice[n] = NAN;
    if (r->n_seg[n]) {
      double inter = 0, ps = 0, ts = 0;
      for (int64_t i = 0; i < H * W; i++) {
        double pr = ml[i] > 0;
        inter += pr * tg[i];
        ps += pr;
        ts += tg[i];
      }
      r->dice[n] = ps + ts > 0 ? 2 * inter / (ps + ts) : 1.0;
    }
  }
}

/* Sums over the PPO epochs of one step, for the metrics. */
typedef struct {
  double loss, kl, clip_frac, ratio, vloss, norm, gvar;
  int64_t n;
  GHashTable *per_inst; /* instance -> double* sum of gradient norms */
} upd_stats;

/* One policy update from the graph's last forward: policy loss (+ value
 * loss, + differentiable reward) -> seeds -> backward -> AdamW step.
 * values_now: (N, Tc) the critic's current values (gae), r->values those of
 * the rollout (v_old of the clipped value loss). */
static gboolean policy_update(rl_state *s, rollout *r, const float *values_now, ps_tensor *dmask,
                              gboolean any_dgrad, ps_optim *opt, double lr, upd_stats *us,
                              GError **error) {
  rl_config *c = s->c;
  ps_graph *g = s->g;
  const int64_t N = r->N, G = r->G, Tc = r->Tc, V = r->V;
  ps_policy_loss_stats st = {0};
  ps_policy_batch pb = {.B = N, .T = Tc, .logps = r->logps, .old_logps = r->old_logps,
                        .ref_logps = r->ref_logps, .advantages = r->adv, .adv_per_row = FALSE,
                        .mask = r->mask, .grad_logps = r->grad};
  if (!s->adv->policy_loss(s->adv_self, &pb, &st, error)) return FALSE;
  double vloss = NAN;
  ps_graph_zero_grad(g);
  {
    /* the logits of the update forward, on the host (llm_logps read them);
     * the seed is built on the host and the graph takes it to the logits'
     * device */
    const ps_tensor *lg = s->lg_host;
    g_autoptr(ps_tensor) dl = ps_tensor_new(PS_DTYPE_F32, lg->ndim, lg->shape, error); /* zeros */
    if (!dl) return FALSE;
    double T = c->temperature > 0 ? c->temperature : 1.0;
    g_autofree float *sm = g_new(float, V);
    /* d logp / d logits = (onehot(token) - softmax(logits / T)) / T */
    for (int64_t n = 0; n < N; n++)
      for (int64_t t = 0; t < r->n_gen[n]; t++) {
        float gl = r->grad[n * Tc + t];
        if (gl == 0) continue;
        int64_t pos = n * r->Tu + r->Tp[n / G] + t - 1;
        token_logp(ps_f32(lg) + pos * V, V, T, r->tokens[n * Tc + t], sm);
        float *d = ps_f32(dl) + pos * V;
        for (int64_t v = 0; v < V; v++) d[v] += (float)(gl * (-sm[v]) / T);
        d[r->tokens[n * Tc + t]] += (float)(gl / T);
      }
    if (!ps_graph_seed_grad(g, c->llm, "logits", dl, error)) return FALSE;
  }
  if (s->gae) {
    g_autofree float *gv = g_new0(float, N * Tc);
    if (!s->adv->value_loss(s->adv_self, values_now, r->values, r->ret, r->mask_p1, N * Tc, &vloss, gv, error))
      return FALSE;
    const ps_tensor *vt = ps_graph_output(g, c->critic, "values");
    g_autoptr(ps_tensor) dv = ps_tensor_new(PS_DTYPE_F32, vt->ndim, vt->shape, error); /* host zeros */
    if (!dv) return FALSE;
    for (int64_t n = 0; n < N; n++)
      for (int64_t t = 0; t < Tc; t++)
        ps_f32(dv)[n * r->Tu + r->Tp[n / G] + t - 1] += (float)(c->vf_coef * gv[n * Tc + t]);
    if (!ps_graph_seed_grad(g, c->critic, "values", dv, error)) return FALSE;
  }
  if (any_dgrad && !ps_graph_seed_grad(g, c->mask_instance, c->mask_port, dmask, error)) return FALSE;
  if (!ps_graph_backward(g, error)) return FALSE;
  grad_stats gs = {0, 0, 0, g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free), &s->h_param,
                   NULL};
  ps_graph_visit_params(g, grad_visit, &gs);
  if (gs.error) {
    g_propagate_prefixed_error(error, gs.error, "gradient statistics: ");
    g_hash_table_unref(gs.per_inst);
    return FALSE;
  }
  double gmean = gs.n ? gs.sum / (double)gs.n : 0;
  us->gvar += gs.n ? gs.sq / (double)gs.n - gmean * gmean : 0;
  GHashTableIter it;
  gpointer key, val;
  g_hash_table_iter_init(&it, gs.per_inst);
  while (g_hash_table_iter_next(&it, &key, &val)) {
    double *acc = g_hash_table_lookup(us->per_inst, key);
    if (!acc) {
      acc = g_new0(double, 1);
      g_hash_table_insert(us->per_inst, g_strdup(key), acc);
    }
    *acc += sqrt(*(double *)val);
  }
  g_hash_table_unref(gs.per_inst);
  double norm = 0;
  if (!ps_optim_step(opt, lr, &norm, error)) return FALSE;
  ps_context_reset_scratch(s->ctx);
  us->loss += st.loss;
  us->kl += st.kl;
  us->clip_frac += st.clip_frac;
  us->ratio += st.ratio_mean;
  us->vloss += vloss;
  us->norm += norm;
  us->n++;
  return TRUE;
}

/* The teacher-forced forward (training mode) on the update batch; reads the
 * new log-probs, the mask output and the critic's values (N, Tc). */
static gboolean update_forward(rl_state *s, rollout *r, const ps_ports *batch, int64_t H, int64_t W,
                               const ps_tensor **mk, float *values, GError **error) {
  /* *mk: the mask output on the host (the output itself on the CPU, else
   * s->h_mask), where the rewards read it */
  rl_config *c = s->c;
  const char *targets[] = {c->llm, c->mask_instance, s->gae ? c->critic : NULL, NULL};
  if (!ps_graph_forward(s->g, batch, targets, error) || !llm_logps(s, r, r->logps, error)) return FALSE;
  *mk = ps_graph_output(s->g, c->mask_instance, c->mask_port);
  const ps_tensor *m = *mk;
  if (!m || m->dtype != PS_DTYPE_F32 || m->ndim < 2 || m->shape[0] != r->N || m->shape[m->ndim - 2] != H ||
      m->shape[m->ndim - 1] != W) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "mask: %s.%s must be (N, ..., %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT ") like data.mask",
                c->mask_instance, c->mask_port, H, W);
    return FALSE;
  }
  if (!(*mk = ps_tensor_on_device(m, PS_DEVICE_CPU, &s->h_mask, error))) return FALSE;
  if (!s->gae) return TRUE;
  const ps_tensor *vt = ps_graph_output(s->g, c->critic, "values");
  if (!vt || vt->dtype != PS_DTYPE_F32 || vt->ndim != 2 || vt->shape[0] != r->N || vt->shape[1] != r->Tu) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.values is not (N, T)", c->critic);
    return FALSE;
  }
  const ps_tensor *vh = ps_tensor_on_device(vt, PS_DEVICE_CPU, &s->h_values, error);
  if (!vh) return FALSE;
  for (int64_t n = 0; n < r->N; n++)
    for (int64_t t = 0; t < r->Tc; t++)
      values[n * r->Tc + t] = ps_f32(vh)[n * r->Tu + r->Tp[n / r->G] + t - 1];
  return TRUE;
}

/* Prompt lengths: the prefix of each row before its first label != -100.
 * labels: (P, T) i32; Tp: (P) out. */
static gboolean prompt_lengths(const ps_tensor *lab_t, int64_t step, int64_t *Tp, int64_t *max_tp,
                               GError **error) {
  const int64_t P = lab_t->shape[0], T_in = lab_t->shape[1];
  const int32_t *lab = lab_t->data;
  *max_tp = 0;
  for (int64_t p = 0; p < P; p++) {
    int64_t t = 0;
    while (t < T_in && lab[p * T_in + t] == -100) t++;
    if (t == 0 || t == T_in) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "step %" G_GINT64_FORMAT ": example %" G_GINT64_FORMAT
                  " has no prompt/answer split in its labels", step + 1, p);
      return FALSE;
    }
    Tp[p] = t;
    *max_tp = MAX(*max_tp, t);
  }
  return TRUE;
}

/* The image rows the LLM's image_embeds is bound to, computed by a graph
 * forward on `batch` (call in eval mode): *img (P, n_image, D), a copy the
 * caller frees, or NULL when the LLM takes no image rows. */
static gboolean image_rows(rl_state *s, const ps_ports *batch, int64_t P, float **img, int64_t *n_image,
                           int64_t *D, GError **error) {
  *img = NULL;
  *n_image = *D = 0;
  if (!s->img_instance) return TRUE;
  const char *targets[] = {s->img_instance, NULL};
  if (!ps_graph_forward(s->g, batch, targets, error)) return FALSE;
  const ps_tensor *it = ps_graph_output(s->g, s->img_instance, s->img_port);
  if (!it || it->ndim != 3 || it->shape[0] != P) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.%s is not (B, n_image, D)", s->img_instance, s->img_port);
    return FALSE;
  }
  *n_image = it->shape[1];
  *D = it->shape[2];
  const ps_tensor *ih = ps_tensor_on_device(it, PS_DEVICE_CPU, &s->h_img, error); /* the prompt is host memory */
  if (!ih) return FALSE;
  *img = g_memdup2(ih->data, ih->nbytes);
  return TRUE;
}

/* Counts the <SEG> tokens of each row and finds the first (seg_pos -1: none). */
static void find_segs(rollout *r, const rl_config *c, int32_t seg) {
  for (int64_t n = 0; n < r->N; n++) {
    r->seg_pos[n] = -1;
    r->n_seg[n] = 0;
    for (int64_t t = 0; t < r->Tc; t++) {
      gboolean in = t < r->n_gen[n] || (c->seg_mode == RL_SEG_FIXED && t == r->n_gen[n]);
      if (in && r->tokens[n * r->Tc + t] == seg) {
        if (r->seg_pos[n] < 0) r->seg_pos[n] = t;
        r->n_seg[n]++;
      }
    }
  }
}

static gboolean rl_step(rl_state *s, ps_loader *loader, ps_optim *opt, int64_t step, GError **error) {
  rl_config *c = s->c;
  ps_graph *g = s->g;
  const ps_ports *batch = ps_loader_get(loader, step, error);
  if (!batch) return FALSE;
  const ps_tensor *ids_t = ps_ports_get(batch, "input_ids"), *lab_t = ps_ports_get(batch, "labels");
  const ps_tensor *tgt_t = ps_ports_get(batch, "mask");
  if (!ids_t || !lab_t || !tgt_t || ids_t->dtype != PS_DTYPE_I32 || lab_t->dtype != PS_DTYPE_I32 ||
      ids_t->ndim != 2 || tgt_t->ndim < 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "dataset '%s' must give input_ids and labels (B, T) i32 and mask (B, ..., H, W)", c->dataset);
    return FALSE;
  }
  rollout r = {0};
  upd_batch u = {0};
  gboolean ok = FALSE;
  /* declared before the first goto: their cleanups run at `out` */
  g_autofree float *img_copy = NULL, *dtmp = NULL;
  g_autoptr(ps_tensor) dmask = NULL;
  g_autofree float *values_now = NULL;
  upd_stats us = {0};
  r.P = ids_t->shape[0];
  /* with R ranks, this rank samples its G/R rows of every group (rl_dist.c) */
  ps_comm *comm = ps_run_comm(s->run);
  const int64_t ranks = ps_comm_size(comm), rank = ps_comm_rank(comm);
  r.G = c->group_size / ranks;
  r.N = r.P * r.G;
  r.Tc = c->max_new + (c->seg_mode == RL_SEG_FIXED);
  r.V = s->sampler.V;
  const int64_t T_in = ids_t->shape[1], P = r.P, G = r.G, N = r.N, Tc = r.Tc;
  const int64_t H = tgt_t->shape[tgt_t->ndim - 2], W = tgt_t->shape[tgt_t->ndim - 1];
  const size_t K = c->n_rewards;
  r.Tp = g_new0(int64_t, P);
  r.tokens = g_new(int32_t, N * Tc);
  r.old_logps = g_new0(float, N * Tc);
  r.logps = g_new0(float, N * Tc);
  r.ref_logps = g_new0(float, N * Tc);
  r.mask = g_new0(float, N * Tc);
  r.mask_p1 = g_new0(float, N * Tc);
  r.values = g_new0(float, N * Tc);
  r.scores = g_new0(float, N);
  r.terms = g_new0(float, N * (int64_t)K);
  r.adv = g_new0(float, N * Tc);
  r.ret = g_new0(float, N * Tc);
  r.grad = g_new0(float, N * Tc);
  r.n_gen = g_new0(int64_t, N);
  r.seq_len = g_new0(int64_t, N);
  r.n_seg = g_new0(int64_t, N);
  r.seg_pos = g_new0(int64_t, N);
  r.dice = g_new0(double, N);
  const int32_t *ids = ids_t->data;
  int64_t max_tp = 0;
  if (!prompt_lengths(lab_t, step, r.Tp, &max_tp, error)) goto out;
  r.Tu = max_tp + Tc;

  /* 1-2. image rows and rollout, in eval mode */
  ps_context_set_training(s->ctx, FALSE);
  int64_t n_image = 0, D = 0;
  if (!image_rows(s, batch, P, &img_copy, &n_image, &D, error)) goto out;
  const float *img = img_copy;
  {
    /* row i of prompt p draws from its own stream seeded by (seed, step, p, i) */
    const uint64_t base = c->seed ^ ((uint64_t)ps_run_pipeline(s->run)->seed * 0x9e3779b97f4a7c15ULL);
    g_autofree uint64_t *row_seeds = g_new(uint64_t, G);
    for (int64_t p = 0; p < P; p++) {
      for (int64_t i = 0; i < G; i++) row_seeds[i] = rl_sample_seed(base, step, p, rank * G + i);
      if (!rl_sample_group(&s->sampler, c, &s->tk, ids + p * T_in, r.Tp[p], img ? img + p * n_image * D : NULL,
                           n_image, D, row_seeds, G, c->temperature, Tc, r.tokens + p * G * Tc,
                           r.old_logps + p * G * Tc, r.n_gen + p * G, error))
        goto out;
    }
  }
  find_segs(&r, c, s->tk.seg);
  for (int64_t n = 0; n < N; n++) r.seq_len[n] = r.n_gen[n] - 1;
  /* TRL's masks (ps_ppo_masks, which lives in the advantage plugin): the
   * policy tokens t <= seq_len, and one more for the value loss */
  for (int64_t n = 0; n < N; n++)
    for (int64_t t = 0; t < Tc; t++) {
      r.mask[n * Tc + t] = t <= r.seq_len[n];
      r.mask_p1[n * Tc + t] = t <= r.seq_len[n] + 1;
    }
  if (!build_update_batch(&r, batch, ids, T_in, &s->tk, &u, error)) goto out;

  /* 4. reference log-probs */
  ps_context_set_training(s->ctx, TRUE);
  {
    const char *targets[] = {c->llm, NULL};
    if (!swap_reference(s, error)) goto out;
    gboolean fw = ps_graph_forward(g, &u.ports, targets, error) && llm_logps(s, &r, r.ref_logps, error);
    /* swapped back even after a failed forward (a failed swap leaves the run failed anyway) */
    if (!swap_reference(s, fw ? error : NULL) || !fw) goto out;
  }
  /* 3. the teacher-forced forward that backward runs through */
  const ps_tensor *mk = NULL;
  if (!update_forward(s, &r, &u.ports, H, W, &mk, r.values, error)) goto out;

  /* 5. rewards (and the reward gradient w.r.t. the mask logits, a host
   * tensor the graph takes to the mask's device when it is seeded) */
  dmask = ps_tensor_new(PS_DTYPE_F32, mk->ndim, mk->shape, error);
  if (!dmask) goto out;
  dtmp = g_new(float, H * W);
  gboolean any_dgrad = FALSE;
  score_rows(s, &r, ids, T_in, mk, tgt_t, dmask, dtmp, TRUE, &any_dgrad);

  /* 6. advantages */
  ps_advantage_batch ab = {.B = N, .T = Tc, .scores = r.scores, .mask = r.mask,
                           .values = s->gae ? r.values : NULL, .logps = r.old_logps,
                           .ref_logps = r.ref_logps, .group_size = G};
  if (ranks > 1 ? !rl_dist_advantages(comm, s->adv, s->adv_self, &ab, P, r.adv, r.ret, error)
                : !s->adv->compute(s->adv_self, &ab, r.adv, r.ret, error)) {
    g_prefix_error(error, "step %" G_GINT64_FORMAT ": advantage '%s': ", step + 1, c->advantage);
    goto out;
  }

  /* 7. losses, gradients, update: ppo_epochs updates on this rollout; the
   * later ones forward again (the ratio then moves away from 1 and the
   * clipping acts; the value loss is clipped around the rollout's values;
   * the reward gradient is that of the current masks) */
  double lr = ps_schedule_lr(&c->schedule, step);
  us.per_inst = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  values_now = g_memdup2(r.values, sizeof(float) * (size_t)(N * Tc));
  for (int64_t e = 0; e < c->ppo_epochs; e++) {
    if (e > 0) {
      if (!update_forward(s, &r, &u.ports, H, W, &mk, values_now, error)) goto out;
      score_rows(s, &r, ids, T_in, mk, tgt_t, dmask, dtmp, FALSE, &any_dgrad);
    }
    if (!policy_update(s, &r, values_now, dmask, any_dgrad, opt, lr, &us, error)) {
      g_prefix_error(error, "step %" G_GINT64_FORMAT ": ", step + 1);
      goto out;
    }
  }
  const double ne = (double)us.n;

  /* metrics */
  double delta = 0;
  for (guint i = 0; i < s->refs->len; i++) {
    ref_param *rp = &g_array_index(s->refs, ref_param, i);
    /* DEVICE: summed on the host in double as on the CPU (host copies of
     * the parameter and its snapshot when they live on a device) */
    const ps_tensor *vh = ps_tensor_on_device(rp->param->value, PS_DEVICE_CPU, &s->h_param, error);
    const ps_tensor *rh = vh ? ps_tensor_on_device(rp->ref, PS_DEVICE_CPU, &s->h_ref, error) : NULL;
    if (!rh) goto out;
    const float *v = ps_f32(vh), *ref = ps_f32(rh);
    for (int64_t k = 0, n = ps_tensor_numel(vh); k < n; k++)
      delta += ((double)v[k] - ref[k]) * ((double)v[k] - ref[k]);
  }
  double rsum = 0, len = 0, nseg = 0, dsum = 0, am = 0, a2 = 0, msum = 0;
  int64_t nd = 0;
  for (int64_t n = 0; n < N; n++) {
    rsum += r.scores[n];
    len += (double)r.n_gen[n];
    nseg += (double)r.n_seg[n];
    if (!isnan(r.dice[n])) dsum += r.dice[n], nd++;
    for (int64_t t = 0; t < Tc; t++)
      if (r.mask[n * Tc + t] != 0) am += r.adv[n * Tc + t], a2 += (double)r.adv[n * Tc + t] * r.adv[n * Tc + t],
                                   msum += 1;
  }
  double nrows = (double)N;
  if (ranks > 1) { /* the whole batch's statistics, as one process logs them */
    double v[13] = {rsum, len, nseg, dsum, (double)nd, am, a2, msum, us.kl, us.clip_frac, us.ratio, us.loss, us.vloss};
    if (!ps_comm_allreduce_f64(comm, v, 13, error)) goto out;
    rsum = v[0], len = v[1], nseg = v[2], dsum = v[3], nd = (int64_t)v[4], am = v[5], a2 = v[6], msum = v[7];
    us.kl = v[8] / ranks, us.clip_frac = v[9] / ranks, us.ratio = v[10] / ranks, us.loss = v[11] / ranks;
    us.vloss = v[12] / ranks;
    nrows *= (double)ranks;
  }
  am = msum > 0 ? am / msum : 0;
  double astd = msum > 1 ? sqrt(fmax(0, (a2 / msum - am * am) * msum / (msum - 1))) : 0;
  ps_run_metrics(s->run, step + 1, "reward", rsum / nrows, "kl", us.kl / ne, "clip_frac",
                 us.clip_frac / ne, "ratio", us.ratio / ne, "policy_loss", us.loss / ne, "value_loss",
                 us.vloss / ne, "adv_mean", am, "adv_std", astd, "grad_norm", us.norm / ne, "grad_var",
                 us.gvar / ne, "param_delta", sqrt(delta),
                 "seg_dice", nd ? dsum / (double)nd : NAN, "seg_rate", (double)nd / nrows, "n_seg",
                 nseg / nrows, "length", len / nrows, "lr", lr, NULL);
  for (size_t k = 0; k < K; k++) {
    double m = 0;
    for (int64_t n = 0; n < N; n++) m += r.terms[n * (int64_t)K + (int64_t)k];
    if (!ps_comm_allreduce_f64(comm, &m, 1, error)) goto out;
    g_autofree char *key = g_strdup_printf("reward/%s", s->rewards[k].name);
    ps_run_metrics(s->run, step + 1, key, m / nrows, NULL);
  }
  GHashTableIter it;
  gpointer key, val;
  g_hash_table_iter_init(&it, us.per_inst);
  while (g_hash_table_iter_next(&it, &key, &val)) {
    g_autofree char *k = g_strdup_printf("grad_norm/%s", (const char *)key);
    ps_run_metrics(s->run, step + 1, k, *(double *)val / ne, NULL);
  }
  if (s->dump && ps_run_is_root(s->run)) dump_rows(s, &r, step + 1);
  ps_run_progress(s->run, step + 1, c->steps, "reward %.4g  kl %.3g  dice %.3g  len %.1f", rsum / nrows,
                  us.kl / ne, nd ? dsum / (double)nd : 0.0, len / nrows);
  if (!isfinite(rsum) || !isfinite(us.loss)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                "step %" G_GINT64_FORMAT ": %s is not finite; stopped (the last checkpoint is the last good state)",
                step + 1, isfinite(rsum) ? "the policy loss" : "the reward");
    goto out;
  }
  ok = TRUE;
out:
  if (us.per_inst) g_hash_table_unref(us.per_inst);
  upd_free(&u);
  rollout_free(&r);
  return ok;
}

/* ---------------------------------------------------------------------- */

/* ---------------------------------------------------------------------- */
/* Validation, the same protocol in stage.so_grpo and stage.grpo: the first
 * eval_batches batches of eval_batch_size prompts of the val split, in
 * order; one greedy completion per prompt (temperature 0, the rollouts'
 * <SEG> rules: max_seg, seg_mode); the first <SEG> decoded to a mask by a
 * forward in eval mode; hard Dice of (mask logits > 0) against
 * (target > 0.5) per example, a completion without <SEG> scored with the
 * empty mask as stage.evaluate does (1 when the target is empty too). Logs
 * val_dice, val_seg_rate, val_length, and the running best_val_dice /
 * best_val_dice_step (step 0: the policy the stage started from). With
 * several ranks each takes every ranks-th batch and the sums are all-reduced,
 * so every rank holds the same best. */
static gboolean rl_validate(rl_state *s, int64_t step, GError **error) {
  rl_config *c = s->c;
  /* sums[0..3]: Dice, <SEG> count, length, rows over this rank's batches
   * (data-parallel: batch b goes to rank b mod ranks, then an all-reduce) */
  double sums[4] = {0, 0, 0, 0};
  double *dsum = &sums[0], *nseg = &sums[1], *len = &sums[2], *rows = &sums[3];
  gboolean ok = TRUE;
  ps_comm *comm = ps_run_comm(s->run);
  const int64_t rank = ps_comm_rank(comm), ranks = ps_comm_size(comm);
  ps_context_set_training(s->ctx, FALSE);
  for (int64_t b = rank; ok && b < c->eval_batches; b += ranks) {
    const ps_ports *batch = ps_loader_get(s->val, b, error);
    if (!batch) {
      ok = FALSE;
      break;
    }
    const ps_tensor *ids_t = ps_ports_get(batch, "input_ids"), *lab_t = ps_ports_get(batch, "labels");
    const ps_tensor *tgt_t = ps_ports_get(batch, "mask");
    if (!ids_t || !lab_t || !tgt_t || ids_t->dtype != PS_DTYPE_I32 || lab_t->dtype != PS_DTYPE_I32 ||
        ids_t->ndim != 2 || tgt_t->ndim < 2) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "validation: dataset '%s' must give input_ids and labels (B, T) i32 and mask (B, ..., H, W)",
                  c->dataset);
      ok = FALSE;
      break;
    }
    rollout r = {0};
    upd_batch u = {0};
    g_autofree float *img = NULL;
    r.P = r.N = ids_t->shape[0];
    r.G = 1;
    r.Tc = c->max_new + (c->seg_mode == RL_SEG_FIXED);
    r.V = s->sampler.V;
    const int64_t T_in = ids_t->shape[1], N = r.N, Tc = r.Tc;
    const int64_t H = tgt_t->shape[tgt_t->ndim - 2], W = tgt_t->shape[tgt_t->ndim - 1];
    r.Tp = g_new0(int64_t, N);
    r.tokens = g_new(int32_t, N * Tc);
    r.old_logps = g_new0(float, N * Tc);
    r.n_gen = g_new0(int64_t, N);
    r.n_seg = g_new0(int64_t, N);
    r.seg_pos = g_new0(int64_t, N);
    int64_t max_tp = 0, n_image = 0, D = 0;
    const uint64_t seed = 0; /* greedy: no draws */
    ok = prompt_lengths(lab_t, step, r.Tp, &max_tp, error) &&
         image_rows(s, batch, N, &img, &n_image, &D, error);
    r.Tu = max_tp + Tc;
    for (int64_t p = 0; ok && p < N; p++)
      ok = rl_sample_group(&s->sampler, c, &s->tk, (const int32_t *)ids_t->data + p * T_in, r.Tp[p],
                           img ? img + p * n_image * D : NULL, n_image, D, &seed, 1, 0.0, Tc,
                           r.tokens + p * Tc, r.old_logps + p * Tc, r.n_gen + p, error);
    if (ok) {
      find_segs(&r, c, s->tk.seg);
      ok = build_update_batch(&r, batch, ids_t->data, T_in, &s->tk, &u, error);
    }
    const char *targets[] = {c->mask_instance, NULL};
    const ps_tensor *mk = ok && ps_graph_forward(s->g, &u.ports, targets, error)
                              ? ps_graph_output(s->g, c->mask_instance, c->mask_port)
                              : NULL;
    if (ok && (!mk || mk->dtype != PS_DTYPE_F32 || mk->shape[0] != N || mk->shape[mk->ndim - 2] != H ||
               mk->shape[mk->ndim - 1] != W)) {
      if (error && !*error)
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "validation: mask %s.%s is not (N, ..., H, W) like data.mask",
                    c->mask_instance, c->mask_port);
      ok = FALSE;
    }
    if (ok && !(mk = ps_tensor_on_device(mk, PS_DEVICE_CPU, &s->h_mask, error))) ok = FALSE; /* read on the host */
    for (int64_t n = 0; ok && n < N; n++) {
      const float *ml = ps_f32(mk) + n * (ps_tensor_numel(mk) / N);
      const float *tg = ps_f32(tgt_t) + n * (ps_tensor_numel(tgt_t) / N);
      double inter = 0, pc = 0, tc = 0;
      for (int64_t i = 0; i < H * W; i++) {
        double pr = r.seg_pos[n] >= 0 && ml[i] > 0, tr = tg[i] > 0.5f;
        inter += pr * tr;
        pc += pr;
        tc += tr;
      }
      *dsum += pc + tc > 0 ? 2 * inter / (pc + tc) : 1.0;
      *nseg += r.seg_pos[n] >= 0;
      *len += (double)r.n_gen[n];
      *rows += 1;
    }
    upd_free(&u);
    rollout_free(&r);
  }
  ps_context_set_training(s->ctx, TRUE);
  if (!ok || !ps_comm_allreduce_f64(comm, sums, 4, error)) return FALSE;
  if (*rows == 0) return TRUE;
  double dice = *dsum / *rows;
  if (isnan(s->best_dice) || dice > s->best_dice) {
    s->best_dice = dice;
    s->best_step = step;
  }
  ps_run_metrics(s->run, step, "val_dice", dice, "val_seg_rate", *nseg / *rows, "val_length", *len / *rows,
                 "best_val_dice", s->best_dice, "best_val_dice_step", (double)s->best_step, NULL);
  ps_run_log(s->run, "step %" G_GINT64_FORMAT ": validation Dice %.4f (%.0f prompts, <SEG> in %.0f%%), best %.4f at step %"
             G_GINT64_FORMAT, step, dice, *rows, 100 * *nseg / *rows, s->best_dice, s->best_step);
  return TRUE;
}

/* On resume: the best validation Dice this stage logged at or before
 * `start` (metrics.jsonl of the run), so best_val_dice continues. */
static void restore_best(rl_state *s, int64_t start) {
  g_autofree char *path = g_build_filename(ps_run_dir(s->run), "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents(path, &text, NULL, NULL)) return;
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  g_autoptr(JsonParser) jp = json_parser_new();
  for (size_t i = 0; lines[i]; i++) {
    if (!strstr(lines[i], "\"val_dice\"") || !json_parser_load_from_data(jp, lines[i], -1, NULL)) continue;
    JsonNode *root = json_parser_get_root(jp);
    if (!root || !JSON_NODE_HOLDS_OBJECT(root)) continue;
    JsonObject *o = json_node_get_object(root);
    if (!json_object_has_member(o, "stage") ||
        g_strcmp0(json_object_get_string_member(o, "stage"), ps_run_stage(s->run)) != 0)
      continue;
    int64_t st = json_object_get_int_member(o, "step");
    JsonNode *v = json_object_get_member(o, "val_dice");
    if (st > start || !v || JSON_NODE_HOLDS_NULL(v)) continue;
    double d = json_node_get_double(v);
    if (isnan(s->best_dice) || d > s->best_dice) {
      s->best_dice = d;
      s->best_step = st;
    }
  }
}

static gboolean vocab_size(rl_state *s, ps_loader *loader, GError **error) {
  /* one forward of the LLM on the first batch tells the logits width */
  const ps_ports *batch = ps_loader_get(loader, 0, error);
  const char *targets[] = {s->c->llm, NULL};
  ps_context_set_training(s->ctx, FALSE);
  if (!batch || !ps_graph_forward(s->g, batch, targets, error)) return FALSE;
  const ps_tensor *lg = ps_graph_output(s->g, s->c->llm, "logits");
  if (!lg || lg->ndim != 3) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%s.logits is not (B, T, V)", s->c->llm);
    return FALSE;
  }
  s->sampler.V = lg->shape[2];
  if (s->tk.seg < 0 || s->tk.eos < 0 || s->tk.pad < 0 || s->tk.seg >= s->sampler.V ||
      s->tk.eos >= s->sampler.V) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "the tokenizer's <SEG> / <|im_end|> / <|endoftext|> ids (%d, %d, %d) are outside the "
                "LLM's vocabulary (%" G_GINT64_FORMAT ")", s->tk.seg, s->tk.eos, s->tk.pad, s->sampler.V);
    return FALSE;
  }
  s->sampler.probs = g_new(float, s->sampler.V);
  s->sampler.order = g_new(int32_t, s->sampler.V);
  return TRUE;
}

gboolean rl_stage_run(void *self, ps_run *run, GError **error) {
  rl_state s = {.c = self, .run = run};
  rl_config *c = s.c;
  gboolean ok = FALSE;
  g_autoptr(ps_loader) loader = NULL;
  g_autoptr(ps_optim) opt = NULL;
  /* On a device the components compute there; this stage reads their
   * outputs (logits, masks, values, image rows) through host copies, seeds
   * gradients built on the host, and keeps the reference snapshot on the
   * device. Sampling, rewards and advantages are host work on host data. */
  s.device = ps_context_device(ps_run_context(run));
  if (!setup(&s, error)) goto out;
  const int ranks = ps_comm_size(ps_run_comm(run));
  if (c->group_size % ranks != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "group_size %" G_GINT64_FORMAT " cannot be shared by %d ranks: the ranks sample equal "
                "parts of every group (make it a multiple of %d)", c->group_size, ranks, ranks);
    goto out;
  }
  uint64_t seed = c->seed ^ (uint64_t)ps_run_pipeline(run)->seed * 0x9e3779b97f4a7c15ULL;
  ps_loader_options lopt = {.split = "train", .batch_size = c->batch_size, .seed = seed, .shuffle = TRUE, .prefetch = TRUE};
  loader = ps_loader_new(s.ds, s.ds_self, &lopt, error);
  if (!loader) {
    g_prefix_error(error, "dataset '%s': ", c->dataset);
    goto out;
  }
  int64_t n_trainable = ps_graph_set_trainable(s.g, c->roles, c->n_roles, (const char *const *)c->only, error);
  if (n_trainable < 0) goto out;
  if (n_trainable == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no parameter has a role in train_roles");
    goto out;
  }
  opt = ps_optim_new(s.g, &c->adamw, error);
  int64_t start = 0;
  if (!opt || !ps_run_resume(run, opt, &start, error)) goto out;
  if (!reference_snapshot(&s, start > 0, error) || !vocab_size(&s, loader, error)) goto out;
  if (c->dump_rollouts && ps_run_is_root(run)) {
    g_autofree char *name = g_strdup_printf("rollouts-%s.jsonl", ps_run_stage(run));
    g_autofree char *path = g_build_filename(ps_run_dir(run), name, NULL);
    s.dump = fopen(path, start > 0 ? "a" : "w");
    if (!s.dump) {
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: cannot write", path);
      goto out;
    }
  }
  ps_run_log(run, "%s: %" G_GINT64_FORMAT " trainable parameters, %" G_GINT64_FORMAT " steps of %" G_GINT64_FORMAT
             " prompts x %" G_GINT64_FORMAT " completions, advantage %s (%s), rewards %" G_GSIZE_FORMAT,
             c->grpo ? "GRPO" : "SO-GRPO", n_trainable, c->steps, c->batch_size, c->group_size, c->advantage,
             s.gae ? "GAE with critic" : "group", c->n_rewards);
  s.best_dice = NAN;
  s.best_step = 0;
  if (c->eval_batches > 0 && s.ds->size(s.ds_self, "val") > 0) {
    ps_loader_options vopt = {.split = "val", .batch_size = c->eval_batch_size, .seed = seed, .shuffle = FALSE, .prefetch = FALSE};
    s.val = ps_loader_new(s.ds, s.ds_self, &vopt, error);
    if (!s.val) {
      g_prefix_error(error, "dataset '%s' (val): ", c->dataset);
      goto out;
    }
    if (start > 0) restore_best(&s, start);
    else if (!rl_validate(&s, 0, error)) goto out;
  }
  for (int64_t step = start; step < c->steps; step++) {
    if (c->stop_after > 0 && step - start >= c->stop_after) ps_run_request_stop(run);
    if (!ps_run_agree_stop(run, error)) goto out;
    if (ps_run_cancelled(run)) {
      ps_run_log(run, "interrupted: saving a checkpoint at step %" G_GINT64_FORMAT, step);
      ok = ps_run_save_checkpoint(run, step, opt, error);
      goto out;
    }
    if (!rl_step(&s, loader, opt, step, error)) goto out;
    if (s.val && ((c->eval_every > 0 && (step + 1) % c->eval_every == 0) || step + 1 == c->steps) &&
        !rl_validate(&s, step + 1, error))
      goto out;
    if (c->checkpoint_every > 0 && (step + 1) % c->checkpoint_every == 0 &&
        !ps_run_save_checkpoint(run, step + 1, opt, error))
      goto out;
  }
  ok = TRUE;
out:
  if (s.val) ps_loader_free(s.val);
  if (s.dump) fclose(s.dump);
  if (s.refs) g_array_unref(s.refs);
  ps_tensor_free(s.swap_tmp);
  ps_tensor_free(s.h_logits);
  ps_tensor_free(s.h_mask);
  ps_tensor_free(s.h_values);
  ps_tensor_free(s.h_img);
  ps_tensor_free(s.h_param);
  ps_tensor_free(s.h_ref);
  g_free(s.rewards);
  g_free(s.img_instance);
  g_free(s.img_port);
  g_free(s.sampler.probs);
  g_free(s.sampler.order);
  if (s.tok) ps_bpe_free(s.tok);
  return ok;
}
