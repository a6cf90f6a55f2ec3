/* optim.h — AdamW over a graph's trainable parameters, gradient clipping,
 * and learning-rate schedules.
 *
 * AdamW uses decoupled weight decay (p -= lr * wd * p, then the Adam step),
 * bias-corrected moments, and keeps its state (m, v) only for parameters that
 * train: frozen parameters cost neither memory nor time. */
#pragma once

#include <glib.h>
#include <pathseg/graph.h>
#include <pathseg/safetensors.h>

G_BEGIN_DECLS

typedef struct ps_adamw_config {
  double beta1, beta2, eps;
  double weight_decay;
  gboolean decay_1d;  /* also decay 1-D parameters (biases, norms); off as in MAE/LISA */
  double clip_norm;   /* global gradient-norm clip; <= 0 disables */
} ps_adamw_config;

/* beta1 0.9, beta2 0.999, eps 1e-8, weight_decay 0.01, clip_norm 1.0 */
ps_adamw_config ps_adamw_defaults(void);

typedef struct ps_optim ps_optim;

/* Collects the parameters of `g` that currently have gradient buffers. */
ps_optim *ps_optim_new(ps_graph *g, const ps_adamw_config *cfg, GError **error);
void ps_optim_free(ps_optim *opt);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_optim, ps_optim_free)

/* Global L2 norm of all gradients (before clipping). */
double ps_optim_grad_norm(const ps_optim *opt);
/* Scales every gradient (e.g. 1/accumulation steps). */
void ps_optim_scale_grads(ps_optim *opt, double factor);
/* With several ranks (comm.h), ps_optim_step first replaces every gradient
 * by its mean over the ranks, so that all ranks take the same step. By
 * default the sums start inside ps_optim_step; a stage that calls this right
 * before the last backward pass of a step lets them start during that pass,
 * as each component's gradients become final. No effect with one rank. */
void ps_optim_reduce_during_backward(ps_optim *opt);
/* Clips, checks for NaN/Inf (error names the parameter), updates; returns
 * the pre-clip gradient norm in *grad_norm when non-NULL. */
gboolean ps_optim_step(ps_optim *opt, double lr, double *grad_norm, GError **error);
int64_t ps_optim_step_count(const ps_optim *opt);
int64_t ps_optim_param_count(const ps_optim *opt); /* trainable scalars */

/* Optimizer state in a checkpoint: "optim.m.INSTANCE/PARAM", "optim.v...". */
gboolean ps_optim_save(const ps_optim *opt, ps_safetensors_writer *w, GError **error);
gboolean ps_optim_load(ps_optim *opt, ps_safetensors *st, GError **error);

/* ---------------------------------------------------------------------- */
/* Learning-rate schedules. */

typedef enum {
  PS_SCHEDULE_CONSTANT,
  PS_SCHEDULE_COSINE,        /* linear warmup, then half-cosine from lr to min_lr */
  PS_SCHEDULE_ROBBINS_MONRO, /* lr / (1 + eta * k), the paper's adaptive schedule */
} ps_schedule_kind;

typedef struct ps_schedule {
  ps_schedule_kind kind;
  double lr, min_lr, eta;
  int64_t warmup_steps, total_steps;
} ps_schedule;

gboolean ps_schedule_from_name(const char *name, ps_schedule_kind *out);
double ps_schedule_lr(const ps_schedule *s, int64_t step);

/* Reads the optimizer keys every training stage declares in its schema —
 * lr, min_lr, schedule (constant|cosine|robbins_monro), warmup_steps, eta,
 * beta1, beta2, weight_decay, clip_norm — into a schedule over `total_steps`
 * and an AdamW configuration. The stage keeps its own defaults in its schema. */
void ps_optim_from_config(const ps_config *cfg, int64_t total_steps, ps_schedule *schedule,
                          ps_adamw_config *adamw);

G_END_DECLS
