/* fit.c — `stage.fit`: generic supervised training of a pipeline graph.
 *
 * Each step draws a batch from the dataset component named by `dataset`,
 * runs forward up to the component that produces `loss` ("instance.port", a
 * one-element tensor), backpropagates from it, and takes an AdamW step on
 * the parameters whose roles are in `train_roles`. Batches come from a
 * ps_loader (shuffled epochs, prepared on a worker thread) and are a pure
 * function of (seed, step), so a resumed run continues bit-exactly. A
 * non-finite loss stops the stage with the step and the term named; the last
 * checkpoint on disk stays the last good one.
 *
 * Data-parallel (mpirun -np N): each rank takes its slice of every batch
 * (batch_size is per rank, so a step sees N * batch_size examples), the
 * optimizer averages gradients across ranks, starting during the last
 * backward pass of the step, and validation batches are shared out. */
#include <math.h>
#include <pathseg/loader.h>
#include <pathseg/run.h>
#include <string.h>

#include "lr_scale.h"

typedef struct {
  char *dataset, *loss_instance, *loss_port;
  int64_t steps, batch_size, checkpoint_every, eval_every, eval_batches, stop_after, accumulate;
  ps_tensor *seed_grad; /* (1) d total / d loss of one micro-batch */
  ps_schedule schedule;
  ps_adamw_config adamw;
  ps_role roles[PS_ROLE_COUNT];
  char **metrics;  /* "instance.port" scalars averaged over validation batches */
  char **only;     /* instances whose parameters may train; NULL = all */
  size_t n_metrics;
  size_t n_roles;
  uint64_t seed;
  fit_lr_scale *lr_scale; /* per-component learning-rate factors */
} fit;

static const ps_config_key fit_config[] = {
    {"dataset", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "instance name of the dataset component"},
    {"loss", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "the scalar to minimise: \"instance.port\""},
    {"steps", PS_TYPE_INT, "100", 0, 1e12, NULL, "optimizer steps"},
    {"batch_size", PS_TYPE_INT, "16", 1, 1e6, NULL, "examples per micro-batch"},
    {"accumulate", PS_TYPE_INT, "1", 1, 1e6, NULL, "micro-batches whose gradients make one step"},
    {"lr", PS_TYPE_FLOAT, "1e-3", 0, 10, NULL, "peak learning rate"},
    {"min_lr", PS_TYPE_FLOAT, "0", 0, 10, NULL, "final learning rate of the cosine schedule"},
    {"schedule", PS_TYPE_ENUM, "cosine", PS_NO_RANGE, "constant|cosine|robbins_monro",
     "learning-rate schedule"},
    {"warmup_steps", PS_TYPE_INT, "0", 0, 1e12, NULL, "linear warmup (cosine schedule)"},
    {"eta", PS_TYPE_FLOAT, "0.01", 0, 1e6, NULL, "decay of the Robbins-Monro schedule lr/(1+eta k)"},
    {"weight_decay", PS_TYPE_FLOAT, "0.01", 0, 10, NULL, "decoupled AdamW weight decay"},
    {"beta1", PS_TYPE_FLOAT, "0.9", 0, 1, NULL, "AdamW beta1"},
    {"beta2", PS_TYPE_FLOAT, "0.999", 0, 1, NULL, "AdamW beta2"},
    {"clip_norm", PS_TYPE_FLOAT, "1.0", 0, 1e9, NULL, "global gradient-norm clip (0 = off)"},
    {"train_roles", PS_TYPE_STRING_LIST, "[full, lora, adapter]", PS_NO_RANGE, NULL,
     "parameter roles that train"},
    {"train_components", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "component instances whose parameters may train (empty: those the loss depends on)"},
    {"lr_scale", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "per-component learning-rate factors, \"instance=factor\" (e.g. [decoder=10, seg_adapter=10]): "
     "that instance's parameters take the AdamW step of lr * factor"},
    {"checkpoint_every", PS_TYPE_INT, "0", 0, 1e12, NULL, "save every N steps (0 = only at the end)"},
    {"eval_every", PS_TYPE_INT, "0", 0, 1e12, NULL, "validation loss every N steps (0 = at the end)"},
    {"eval_batches", PS_TYPE_INT, "4", 0, 1e6, NULL, "validation batches per evaluation (at most the batches the val split fills)"},
    {"eval_metrics", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "more one-element outputs (\"instance.port\") to average over validation, e.g. [seg_loss.dice]"},
    {"seed", PS_TYPE_INT, "0", 0, 1e15, NULL, "batch sampling seed (mixed with the pipeline seed)"},
    {"stop_after_steps", PS_TYPE_INT, "0", 0, 1e12, NULL,
     "stop (checkpoint, resumable) after this many steps in this invocation; 0 = never"},
    {NULL},
};

static void fit_destroy(void *self) {
  fit *f = self;
  g_free(f->dataset);
  g_free(f->loss_instance);
  g_free(f->loss_port);
  g_strfreev(f->metrics);
  g_strfreev(f->only);
  ps_tensor_free(f->seed_grad);
  fit_lr_scale_free(f->lr_scale);
  g_free(f);
}

static void *fit_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  fit *f = g_new0(fit, 1);
  const char *loss = ps_config_string(cfg, "loss");
  const char *dot = strrchr(loss, '.');
  if (!dot || dot == loss || !dot[1]) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "loss: '%s' is not \"instance.port\"", loss);
    fit_destroy(f);
    return NULL;
  }
  size_t n = 0;
  const char *const *roles = ps_config_string_list(cfg, "train_roles", &n);
  for (size_t i = 0; i < n; i++) {
    if (!ps_role_from_name(roles[i], &f->roles[f->n_roles])) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "train_roles: '%s' is not a role (frozen, full, lora, adapter, backbone)", roles[i]);
      fit_destroy(f);
      return NULL;
    }
    if (f->n_roles < PS_ROLE_COUNT - 1) f->n_roles++;
  }
  size_t n_metrics = 0;
  const char *const *metrics = ps_config_string_list(cfg, "eval_metrics", &n_metrics);
  f->metrics = g_new0(char *, n_metrics + 1);
  for (size_t i = 0; i < n_metrics; i++) {
    if (!strchr(metrics[i], '.')) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "eval_metrics: '%s' is not \"instance.port\"", metrics[i]);
      fit_destroy(f);
      return NULL;
    }
    f->metrics[i] = g_strdup(metrics[i]);
  }
  f->n_metrics = n_metrics;
  size_t n_only = 0;
  const char *const *only = ps_config_string_list(cfg, "train_components", &n_only);
  if (n_only) {
    f->only = g_new0(char *, n_only + 1);
    for (size_t i = 0; i < n_only; i++) f->only[i] = g_strdup(only[i]);
  }
  size_t n_scale = 0;
  const char *const *scale = ps_config_string_list(cfg, "lr_scale", &n_scale);
  f->lr_scale = fit_lr_scale_parse(scale, n_scale, error);
  if (!f->lr_scale) {
    fit_destroy(f);
    return NULL;
  }
  f->dataset = g_strdup(ps_config_string(cfg, "dataset"));
  f->loss_instance = g_strndup(loss, (gsize)(dot - loss));
  f->loss_port = g_strdup(dot + 1);
  f->steps = ps_config_int(cfg, "steps");
  f->batch_size = ps_config_int(cfg, "batch_size");
  f->checkpoint_every = ps_config_int(cfg, "checkpoint_every");
  f->eval_every = ps_config_int(cfg, "eval_every");
  f->eval_batches = ps_config_int(cfg, "eval_batches");
  f->seed = (uint64_t)ps_config_int(cfg, "seed");
  f->stop_after = ps_config_int(cfg, "stop_after_steps");
  f->accumulate = ps_config_int(cfg, "accumulate");
  f->seed_grad = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, error);
  if (!f->seed_grad) {
    fit_destroy(f);
    return NULL;
  }
  ps_optim_from_config(cfg, f->steps, &f->schedule, &f->adamw);
  return f;
}

/* Forward on one batch; returns the loss value through *loss. */
static gboolean step_forward(fit *f, ps_graph *g, const ps_ports *batch, double *loss, GError **error) {
  const char *targets[] = {f->loss_instance, NULL};
  if (!ps_graph_forward(g, batch, targets, error)) return FALSE;
  const ps_tensor *l = ps_graph_output(g, f->loss_instance, f->loss_port);
  if (!l || l->dtype != PS_DTYPE_F32 || ps_tensor_numel(l) != 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "loss %s.%s is not a one-element F32 tensor",
                f->loss_instance, f->loss_port);
    return FALSE;
  }
  *loss = ps_tensor_item(l);
  return TRUE;
}

/* Mean loss (and eval_metrics) over the first eval_batches batches of the
 * val split, in a fixed order; never more batches than the split fills (the
 * loader wraps around, which would count examples twice). */
static gboolean evaluate(fit *f, ps_run *run, const ps_dataset_iface *ds, void *ds_self,
                         int64_t step, GError **error) {
  const int64_t n_val = ds->size(ds_self, "val");
  if (n_val <= 0 || f->eval_batches <= 0) return TRUE;
  const int64_t n_batches = MIN(f->eval_batches, MAX(1, n_val / f->batch_size));
  ps_loader_options opt = {.split = "val", .batch_size = f->batch_size, .seed = f->seed, .shuffle = FALSE, .prefetch = FALSE};
  g_autoptr(ps_loader) val = ps_loader_new(ds, ds_self, &opt, error);
  if (!val) return FALSE;
  ps_graph *g = ps_run_graph(run);
  ps_comm *comm = ps_run_comm(run);
  const int rank = ps_comm_rank(comm), ranks = ps_comm_size(comm);
  ps_context_set_training(ps_run_context(run), FALSE);
  /* sums[0]: loss, sums[1 + m]: metric m, over this rank's batches */
  g_autofree double *sums = g_new0(double, f->n_metrics + 1);
  double *msum = sums + 1;
  g_autoptr(GPtrArray) targets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(targets, g_strdup(f->loss_instance));
  for (size_t m = 0; m < f->n_metrics; m++)
    g_ptr_array_add(targets, g_strndup(f->metrics[m], strcspn(f->metrics[m], ".")));
  g_ptr_array_add(targets, NULL);
  for (int64_t b = rank; b < n_batches; b += ranks) {
    const ps_ports *batch = ps_loader_get(val, b, error);
    if (!batch || !ps_graph_forward(g, batch, (const char *const *)targets->pdata, error)) return FALSE;
    const ps_tensor *l = ps_graph_output(g, f->loss_instance, f->loss_port);
    sums[0] += l ? ps_tensor_item(l) : NAN;
    for (size_t m = 0; m < f->n_metrics; m++) {
      const char *dot = strchr(f->metrics[m], '.');
      g_autofree char *inst = g_strndup(f->metrics[m], (gsize)(dot - f->metrics[m]));
      const ps_tensor *t = ps_graph_output(g, inst, dot + 1);
      if (!t || t->dtype != PS_DTYPE_F32 || ps_tensor_numel(t) != 1) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "eval_metrics: %s is not a one-element F32 output",
                    f->metrics[m]);
        return FALSE;
      }
      msum[m] += ps_tensor_item(t);
    }
  }
  if (!ps_comm_allreduce_f64(comm, sums, f->n_metrics + 1, error)) return FALSE;
  ps_context_set_training(ps_run_context(run), TRUE);
  double mean = sums[0] / (double)n_batches;
  ps_run_metrics(run, step, "val_loss", mean, NULL);
  GString *line = g_string_new(NULL);
  g_string_append_printf(line, "step %" G_GINT64_FORMAT ": validation loss %.6g", step, mean);
  for (size_t m = 0; m < f->n_metrics; m++) {
    double v = msum[m] / (double)n_batches;
    g_autofree char *key = g_strconcat("val_", f->metrics[m], NULL);
    ps_run_metrics(run, step, key, v, NULL);
    g_string_append_printf(line, ", %s %.4g", f->metrics[m], v);
  }
  ps_run_log(run, "%s", line->str);
  g_string_free(line, TRUE);
  return TRUE;
}

static gboolean fit_run(void *self, ps_run *run, GError **error) {
  fit *f = self;
  ps_graph *g = ps_run_graph(run);
  const ps_component_desc *dsd = NULL;
  void *ds_self = ps_graph_self(g, f->dataset, &dsd);
  const ps_dataset_iface *ds = ds_self ? ps_graph_capability(g, f->dataset, "dataset") : NULL;
  if (!ds) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "dataset: '%s' is not a component with the dataset capability", f->dataset);
    return FALSE;
  }
  uint64_t seed = f->seed ^ (uint64_t)ps_run_pipeline(run)->seed * 0x9e3779b97f4a7c15ULL;
  ps_comm *comm = ps_run_comm(run);
  const int ranks = ps_comm_size(comm);
  ps_loader_options lopt = {"train", f->batch_size, seed, TRUE, TRUE, ps_comm_rank(comm), ranks};
  g_autoptr(ps_loader) train = ps_loader_new(ds, ds_self, &lopt, error);
  if (!train) {
    g_prefix_error(error, "dataset '%s': ", f->dataset);
    return FALSE;
  }
  /* Without train_components, the components the loss depends on: the
   * others would get zero gradients, and weight decay would still shrink them
   * (e.g. a critic that a later RL stage needs). */
  g_auto(GStrv) upstream = f->only ? NULL : ps_graph_upstream(g, f->loss_instance);
  if (!f->only && !upstream) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "loss: no component instance '%s'", f->loss_instance);
    return FALSE;
  }
  int64_t n_trainable = ps_graph_set_trainable(g, f->roles, f->n_roles,
                                               (const char *const *)(f->only ? f->only : upstream), error);
  if (n_trainable < 0) return FALSE;
  if (n_trainable == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "no parameter has a role in train_roles");
    return FALSE;
  }
  if (!fit_lr_scale_bind(f->lr_scale, g, error)) return FALSE;
  g_autoptr(ps_optim) opt = ps_optim_new(g, &f->adamw, error);
  int64_t start = 0;
  if (!opt || !ps_run_resume(run, opt, &start, error)) return FALSE;
  ps_run_log(run, "training %" G_GINT64_FORMAT " parameters for %" G_GINT64_FORMAT " steps",
             n_trainable, f->steps);
  ps_context_set_training(ps_run_context(run), TRUE);
  gint64 t0 = g_get_monotonic_time();
  uint64_t comm_bytes = ps_comm_bytes_sent(comm); /* sent by this rank before the step */
  for (int64_t step = start; step < f->steps; step++) {
    if (f->stop_after > 0 && step - start >= f->stop_after) ps_run_request_stop(run);
    if (!ps_run_agree_stop(run, error)) return FALSE;
    if (ps_run_cancelled(run)) {
      ps_run_log(run, "interrupted: saving a checkpoint at step %" G_GINT64_FORMAT, step);
      return ps_run_save_checkpoint(run, step, opt, error);
    }
    /* One optimizer step sums the gradients of `accumulate` micro-batches
     * (micro-batch m of step s is the loader's batch s * accumulate + m);
     * the seed 1/accumulate makes the sum a mean. */
    ps_graph_zero_grad(g);
    double loss = 0;
    for (int64_t m = 0; m < f->accumulate; m++) {
      double micro = 0;
      const ps_ports *batch = ps_loader_get(train, step * f->accumulate + m, error);
      if (!batch || !step_forward(f, g, batch, &micro, error)) return FALSE;
      if (!isfinite(micro)) {
        g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                    "step %" G_GINT64_FORMAT ": loss term %s.%s is %s; stopped (the last checkpoint "
                    "is the last good state)",
                    step + 1, f->loss_instance, f->loss_port, isnan(micro) ? "NaN" : "infinite");
        return FALSE;
      }
      loss += micro / (double)f->accumulate;
      ps_f32(f->seed_grad)[0] = (float)(1.0 / (double)f->accumulate);
      if (m == f->accumulate - 1) ps_optim_reduce_during_backward(opt);
      if (!ps_graph_seed_grad(g, f->loss_instance, f->loss_port, f->seed_grad, error) ||
          !ps_graph_backward(g, error))
        return FALSE;
    }
    double lr = ps_schedule_lr(&f->schedule, step), norm = 0;
    fit_lr_scale_before(f->lr_scale);
    if (!ps_optim_step(opt, lr, &norm, error)) return FALSE;
    fit_lr_scale_after(f->lr_scale);
    if (ranks > 1) { /* log the whole step's loss, as one process would */
      if (!ps_comm_allreduce_f64(comm, &loss, 1, error)) return FALSE;
      loss /= ranks;
      uint64_t sent = ps_comm_bytes_sent(comm);
      ps_run_metrics(run, step + 1, "comm_bytes", (double)(sent - comm_bytes), NULL);
      comm_bytes = sent;
    }
    ps_context_reset_scratch(ps_run_context(run));
    double secs = (double)(g_get_monotonic_time() - t0) / 1e6;
    ps_run_metrics(run, step + 1, "loss", loss, "lr", lr, "grad_norm", norm, "examples_per_s",
                   secs > 0 ? (double)((step + 1 - start) * f->batch_size * f->accumulate * ranks) / secs : 0.0,
                   NULL);
    ps_run_progress(run, step + 1, f->steps, "loss %.4g  lr %.3g", loss, lr);
    if (f->eval_every > 0 && (step + 1) % f->eval_every == 0 &&
        !evaluate(f, run, ds, ds_self, step + 1, error))
      return FALSE;
    if (f->checkpoint_every > 0 && (step + 1) % f->checkpoint_every == 0 &&
        !ps_run_save_checkpoint(run, step + 1, opt, error))
      return FALSE;
  }
  if (f->eval_every == 0 && !evaluate(f, run, ds, ds_self, f->steps, error)) return FALSE;
  return TRUE;
}

static const ps_stage_iface fit_stage = {sizeof(ps_stage_iface), fit_run, PS_STAGE_DATA_PARALLEL};

static const void *fit_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &fit_stage : NULL;
}

static const ps_port_desc no_ports[] = {{NULL}};

static const ps_component_vtable fit_vtable = {
    sizeof(ps_component_vtable), fit_create, fit_destroy, NULL, NULL, NULL,
};

static const ps_component_desc fit_desc = {
    sizeof(ps_component_desc), PS_KIND_STAGE, "stage.fit",
    "Supervised training: minimise one scalar output of the graph with AdamW.",
    fit_config, no_ports, no_ports, &fit_vtable, fit_capability,
};

static const ps_component_desc *const components[] = {&fit_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "stage_fit",
    .version = "0.1.0",
    .license = "MIT",
    .description = "The generic supervised training stage.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
