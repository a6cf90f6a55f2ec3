/* example.c — a complete pathseg plugin in one file, written to document the
 * plugin ABI by example (read core/include/pathseg/plugin.h alongside).
 *
 * It provides three components:
 *   example.linear          y = x W^T + b, with forward and backward
 *   example.mse             mean squared error between two tensors (a loss)
 *   example.toy_regression  a dataset of (x, y = x A^T + c + noise) pairs
 * pipelines/example.yaml trains example.linear on the toy data with the
 * generic `stage.fit` stage.
 *
 * Build against an installed pathseg with only pkg-config:
 *   cc -shared -fPIC -fvisibility=hidden example.c -o pathseg-example.so \
 *      $(pkg-config --cflags --libs pathseg)
 * and put the .so in $(pkg-config --variable=pluginsdir pathseg) or in a
 * directory named by PATHSEG_PLUGIN_PATH.
 *
 * Devices: the components run on whatever device the context names (the
 * pipeline's `device:`). Parameters are made and initialised on the host and
 * then moved (ps_tensor_move_to); outputs and gradients are made on the
 * device; every computation goes through the device's kernel table, and the
 * host never dereferences device memory (it reads a loss with
 * ps_tensor_item). Inputs may come from the host (datasets): a component
 * copies them with ps_tensor_on_device. */
#include <math.h>
#include <pathseg/dataset.h>
#include <pathseg/kernels.h>
#include <pathseg/plugin.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* example.linear */

typedef struct {
  int64_t in, out;
  ps_tensor *weight, *bias;   /* (out, in), (out) */
  ps_param params[2];
  ps_tensor *y, *dx;          /* outputs and input gradients we own */
  const ps_tensor *x;         /* the last forward's input (on our device), kept for backward */
  ps_tensor *x_dev;           /* our copy of an input that came from another device */
  ps_device device;
  const ps_kernels *k;
} linear;

static const ps_config_key linear_config[] = {
    {"in_features", PS_TYPE_INT, NULL, 1, 1 << 20, NULL, "width of the input"},
    {"out_features", PS_TYPE_INT, NULL, 1, 1 << 20, NULL, "width of the output"},
    {"bias", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL, "add a learned bias"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL, "std of the normal weight initialisation"},
    {NULL},
};
static const ps_port_desc linear_inputs[] = {{"x", "[N, in_features] f32", FALSE}, {NULL}};
static const ps_port_desc linear_outputs[] = {{"y", "[N, out_features] f32", FALSE}, {NULL}};

static void linear_destroy(void *self) {
  linear *l = self;
  ps_tensor_free(l->weight);
  ps_tensor_free(l->bias);
  ps_tensor_free(l->y);
  ps_tensor_free(l->dx);
  ps_tensor_free(l->x_dev);
  g_free(l);
}

static void *linear_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  linear *l = g_new0(linear, 1);
  l->in = ps_config_int(cfg, "in_features");
  l->out = ps_config_int(cfg, "out_features");
  l->device = ps_context_device(ctx);
  l->k = ps_context_kernels(ctx, error); /* the device's table at the run's precision */
  l->weight = l->k ? ps_tensor_new4(PS_DTYPE_F32, l->out, l->in, -1, -1, error) : NULL;
  if (!l->weight) {
    linear_destroy(l);
    return NULL;
  }
  /* Initialisation draws from the context's RNG, so a seed reproduces it. */
  double std = ps_config_float(cfg, "init_std");
  float *w = ps_f32(l->weight);
  for (int64_t i = 0; i < l->out * l->in; i++) w[i] = (float)(std * ps_rng_normal(ps_context_rng(ctx)));
  l->params[0] = (ps_param){"weight", l->weight, NULL, PS_ROLE_FULL};
  if (ps_config_bool(cfg, "bias")) {
    l->bias = ps_tensor_new4(PS_DTYPE_F32, l->out, -1, -1, -1, error);
    if (!l->bias) {
      linear_destroy(l);
      return NULL;
    }
    l->params[1] = (ps_param){"bias", l->bias, NULL, PS_ROLE_FULL};
  }
  /* Initialised on the host; now to the device (in place, so params[] stays valid). */
  if (!ps_tensor_move_to(l->weight, l->device, error) ||
      (l->bias && !ps_tensor_move_to(l->bias, l->device, error))) {
    linear_destroy(l);
    return NULL;
  }
  return l;
}

static ps_param_list linear_params(void *self) {
  linear *l = self;
  return (ps_param_list){l->params, l->bias ? 2 : 1};
}

/* Outputs live in tensors the component keeps: ps_tensor_ensure reallocates
 * only when the shape changes, so after the first step with a given batch
 * size nothing is allocated. */
static gboolean ensure(ps_tensor **t, ps_device device, int64_t rows, int64_t cols,
                       GError **error) {
  const int64_t shape[2] = {rows, cols};
  return ps_tensor_ensure_on(t, device, PS_DTYPE_F32, 2, shape, error);
}

static gboolean linear_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                               GError **error) {
  linear *l = self;
  const ps_tensor *x = ps_ports_require(in, "example.linear", "x", error);
  const int64_t shape[2] = {-1, l->in};
  if (!x || !ps_tensor_check(x, "example.linear input x", PS_DTYPE_F32, 2, shape, error)) return FALSE;
  x = ps_tensor_on_device(x, l->device, &l->x_dev, error);
  if (!x) return FALSE;
  int64_t n = x->shape[0];
  if (!ensure(&l->y, l->device, n, l->out, error)) return FALSE;
  l->k->linear_forward(ps_f32(l->y), ps_f32(x), ps_f32(l->weight), l->bias ? ps_f32(l->bias) : NULL,
                       n, l->in, l->out);
  l->x = x;
  ps_ports_set(out, "y", l->y);
  return TRUE;
}

static gboolean linear_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                                ps_ports *grad_in, GError **error) {
  linear *l = self;
  const ps_tensor *dy = ps_ports_get(grad_out, "y");
  if (!dy) return TRUE; /* no gradient flows back through us */
  int64_t n = l->x->shape[0];
  ps_port *dx_port = ps_ports_find(grad_in, "x");
  float *dx = NULL;
  if (dx_port && dx_port->needs_grad) {
    if (!ensure(&l->dx, l->device, n, l->in, error)) return FALSE;
    l->k->mem_zero(l->dx->data, l->dx->nbytes); /* kernels accumulate */
    dx = ps_f32(l->dx);
    dx_port->tensor = l->dx;
  }
  /* grad is NULL for a parameter that does not train: no work is done for it. */
  float *dw = l->params[0].grad ? ps_f32(l->params[0].grad) : NULL;
  float *db = l->bias && l->params[1].grad ? ps_f32(l->params[1].grad) : NULL;
  l->k->linear_backward(dx, dw, db, ps_f32(dy), ps_f32(l->x), ps_f32(l->weight), n, l->in, l->out);
  return TRUE;
}

static const ps_component_vtable linear_vtable = {
    sizeof(ps_component_vtable), linear_create, linear_destroy,
    linear_params, linear_forward, linear_backward,
};

static const ps_component_desc linear_desc = {
    sizeof(ps_component_desc), PS_KIND_ADAPTER, "example.linear",
    "A fully connected layer y = x W^T + b (the ABI example).",
    linear_config, linear_inputs, linear_outputs, &linear_vtable, NULL,
};

/* ---------------------------------------------------------------------- */
/* example.mse */

typedef struct {
  ps_tensor *loss, *dpred, *diff; /* on the device of `pred` */
  ps_tensor *target_dev;          /* target copied to pred's device when it is elsewhere */
  const ps_tensor *pred, *target;
} mse;

static const ps_config_key mse_config[] = {{NULL}};
static const ps_port_desc mse_inputs[] = {
    {"pred", "[N, D] f32", FALSE}, {"target", "[N, D] f32, same shape", FALSE}, {NULL}};
static const ps_port_desc mse_outputs[] = {{"loss", "[1] f32, mean of squared differences", FALSE},
                                           {NULL}};

static void *mse_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  return g_new0(mse, 1);
}

static void mse_destroy(void *self) {
  mse *m = self;
  ps_tensor_free(m->loss);
  ps_tensor_free(m->dpred);
  ps_tensor_free(m->diff);
  ps_tensor_free(m->target_dev);
  g_free(m);
}

static gboolean mse_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  mse *m = self;
  m->pred = ps_ports_require(in, "example.mse", "pred", error);
  m->target = m->pred ? ps_ports_require(in, "example.mse", "target", error) : NULL;
  if (!m->target ||
      !ps_tensor_check(m->target, "example.mse target", PS_DTYPE_F32, m->pred->ndim, m->pred->shape, error))
    return FALSE;
  /* Everything on pred's device: diff = pred - target, loss = |diff|^2 / n. */
  const ps_device dev = m->pred->device;
  const ps_kernels *k = ps_kernels_get(dev, error);
  m->target = k ? ps_tensor_on_device(m->target, dev, &m->target_dev, error) : NULL;
  const int64_t one = 1;
  if (!m->target || !ps_tensor_ensure_on(&m->diff, dev, PS_DTYPE_F32, m->pred->ndim, m->pred->shape, error) ||
      !ps_tensor_ensure_on(&m->loss, dev, PS_DTYPE_F32, 1, &one, error))
    return FALSE;
  int64_t n = ps_tensor_numel(m->pred);
  ps_tensor_copy_into(m->diff, m->pred, NULL);
  k->axpy(ps_f32(m->diff), -1.0f, ps_f32(m->target), n);
  float loss = n ? (float)(k->sum_squares(ps_f32(m->diff), n) / (double)n) : 0.0f;
  k->copy_to_device(m->loss->data, &loss, sizeof loss);
  ps_ports_set(out, "loss", m->loss);
  return TRUE;
}

static gboolean mse_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  mse *m = self;
  const ps_tensor *dl = ps_ports_get(grad_out, "loss");
  ps_port *p = ps_ports_find(grad_in, "pred");
  if (!dl || !p || !p->needs_grad) return TRUE;
  const ps_kernels *k = ps_kernels_get(m->pred->device, error);
  if (!k || !ps_tensor_ensure_on(&m->dpred, m->pred->device, PS_DTYPE_F32, m->pred->ndim,
                                 m->pred->shape, error))
    return FALSE;
  /* d loss / d pred = 2 dl (pred - target) / n; diff still holds pred - target */
  int64_t n = ps_tensor_numel(m->pred);
  float scale = 2.0f * ps_tensor_item(dl) / (float)(n ? n : 1);
  k->scale(ps_f32(m->dpred), ps_f32(m->diff), scale, n);
  p->tensor = m->dpred;
  return TRUE;
}

static const ps_component_vtable mse_vtable = {
    sizeof(ps_component_vtable), mse_create, mse_destroy, NULL, mse_forward, mse_backward,
};

static const ps_component_desc mse_desc = {
    sizeof(ps_component_desc), PS_KIND_METRIC, "example.mse",
    "Mean squared error between `pred` and `target`, differentiable in `pred`.",
    mse_config, mse_inputs, mse_outputs, &mse_vtable, NULL,
};

/* ---------------------------------------------------------------------- */
/* example.toy_regression: a dataset exposed through the "dataset" capability. */

typedef struct {
  int64_t in, out, n_train, n_val;
  double noise;
  uint64_t seed;
  float *a, *c;          /* the true map: (out, in), (out) */
  ps_tensor *x, *y;
  ps_port fields[2];
  ps_ports batch;
} toy;

static const ps_config_key toy_config[] = {
    {"in_features", PS_TYPE_INT, "8", 1, 4096, NULL, "width of x"},
    {"out_features", PS_TYPE_INT, "4", 1, 4096, NULL, "width of y"},
    {"train_size", PS_TYPE_INT, "512", 1, 1e9, NULL, "examples in the train split"},
    {"val_size", PS_TYPE_INT, "128", 0, 1e9, NULL, "examples in the val split"},
    {"noise", PS_TYPE_FLOAT, "0.01", 0, 10, NULL, "std of the noise added to y"},
    {"seed", PS_TYPE_INT, "7", 0, 1e15, NULL, "seed of the true map and of the examples"},
    {NULL},
};
static const ps_port_desc no_ports[] = {{NULL}};

static void toy_destroy(void *self) {
  toy *t = self;
  g_free(t->a);
  g_free(t->c);
  ps_tensor_free(t->x);
  ps_tensor_free(t->y);
  g_free(t);
}

static void *toy_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  toy *t = g_new0(toy, 1);
  t->in = ps_config_int(cfg, "in_features");
  t->out = ps_config_int(cfg, "out_features");
  t->n_train = ps_config_int(cfg, "train_size");
  t->n_val = ps_config_int(cfg, "val_size");
  t->noise = ps_config_float(cfg, "noise");
  t->seed = (uint64_t)ps_config_int(cfg, "seed");
  t->a = g_new(float, t->out * t->in);
  t->c = g_new(float, t->out);
  ps_rng rng;
  ps_rng_seed(&rng, t->seed);
  for (int64_t i = 0; i < t->out * t->in; i++) t->a[i] = (float)ps_rng_normal(&rng) / sqrtf((float)t->in);
  for (int64_t i = 0; i < t->out; i++) t->c[i] = (float)ps_rng_normal(&rng);
  t->fields[0].name = "x";
  t->fields[1].name = "y";
  t->batch = (ps_ports){t->fields, 2};
  return t;
}

static int64_t toy_size(void *self, const char *split) {
  toy *t = self;
  return strcmp(split, "train") == 0 ? t->n_train : strcmp(split, "val") == 0 ? t->n_val : 0;
}

static const ps_ports *toy_batch(void *self, const char *split, const int64_t *indices, size_t n,
                                 ps_rng *rng, GError **error) {
  toy *t = self;
  /* batches are host tensors; the components copy them to their device */
  if (!ensure(&t->x, PS_DEVICE_CPU, (int64_t)n, t->in, error) ||
      !ensure(&t->y, PS_DEVICE_CPU, (int64_t)n, t->out, error))
    return NULL;
  /* Example i of a split is a pure function of (seed, split, i). */
  uint64_t split_id = strcmp(split, "train") == 0 ? 1 : 2;
  for (size_t r = 0; r < n; r++) {
    ps_rng base;
    ps_rng_seed(&base, t->seed);
    ps_rng ex = ps_rng_fork(&base, split_id << 40 | (uint64_t)indices[r]);
    float *x = ps_f32(t->x) + r * t->in, *y = ps_f32(t->y) + r * t->out;
    for (int64_t i = 0; i < t->in; i++) x[i] = (float)ps_rng_normal(&ex);
    for (int64_t o = 0; o < t->out; o++) {
      double acc = t->c[o];
      for (int64_t i = 0; i < t->in; i++) acc += (double)t->a[o * t->in + i] * x[i];
      y[o] = (float)(acc + t->noise * ps_rng_normal(&ex));
    }
  }
  t->fields[0].tensor = t->x;
  t->fields[1].tensor = t->y;
  return &t->batch;
}

/* Designated initializers: fields added to the struct later stay NULL. */
static const ps_dataset_iface toy_dataset = {
    .struct_size = sizeof(ps_dataset_iface), .size = toy_size, .batch = toy_batch};

static const void *toy_capability(const char *name) {
  return strcmp(name, "dataset") == 0 ? &toy_dataset : NULL;
}

static const ps_component_vtable toy_vtable = {
    sizeof(ps_component_vtable), toy_create, toy_destroy, NULL, NULL, NULL,
};

static const ps_component_desc toy_desc = {
    sizeof(ps_component_desc), PS_KIND_DATASET, "example.toy_regression",
    "Synthetic linear-regression pairs; fields `x` and `y`.",
    toy_config, no_ports, no_ports, &toy_vtable, toy_capability,
};

/* ---------------------------------------------------------------------- */
/* The one exported symbol. */

static const ps_component_desc *const components[] = {&linear_desc, &mse_desc, &toy_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "example",
    .version = "0.1.0",
    .license = "MIT",
    .description = "The ABI example: a linear layer, an MSE loss and a toy dataset.",
    .components = components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
