/* grad_harness.c — see grad_harness.h. */
#include "grad_harness.h"

#include <pathseg/pipeline.h>

ps_registry *gh_registry(void) {
  ps_registry *reg = ps_registry_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  ps_registry_scan(reg, NULL, problems);
  return reg;
}

static void ports_from(ps_ports *p, ps_port *items, const ps_port_desc *d) {
  size_t n = 0;
  while (d[n].name && n < GH_MAX_PORTS) {
    items[n] = (ps_port){d[n].name, NULL, FALSE};
    n++;
  }
  p->items = items;
  p->count = n;
}

gboolean gh_init(gh_comp *c, ps_registry *reg, ps_context *ctx, const char *name,
                 const char *yaml) {
  memset(c, 0, sizeof *c);
  GError *err = NULL;
  c->ctx = ctx;
  c->desc = ps_registry_find(reg, name);
  PS_CHECK_MSG(c->desc != NULL, "component %s not registered", name);
  if (!c->desc) return FALSE;
  g_autoptr(ps_config) cfg = ps_config_parse(c->desc->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return FALSE;
  c->self = c->desc->vtable->create(cfg, ctx, &err);
  PS_CHECK_OK(c->self != NULL, err);
  if (!c->self) return FALSE;
  ports_from(&c->in, c->in_items, c->desc->inputs);
  ports_from(&c->gin, c->gin_items, c->desc->inputs);
  ports_from(&c->out, c->out_items, c->desc->outputs);
  ports_from(&c->gout, c->gout_items, c->desc->outputs);
  return TRUE;
}

void gh_clear(gh_comp *c) {
  if (!c->self) return;
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
  c->desc->vtable->destroy(c->self);
  for (int i = 0; i < GH_MAX_PORTS; i++) ps_tensor_free(c->R[i]);
  memset(c, 0, sizeof *c);
}

void gh_set_input(gh_comp *c, const char *port, ps_tensor *t, gboolean needs_grad) {
  ps_port *p = ps_ports_find(&c->in, port);
  ps_port *g = ps_ports_find(&c->gin, port);
  g_assert(p && g);
  p->tensor = t;
  g->needs_grad = needs_grad;
}

void gh_train(gh_comp *c, gh_pred pred) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    if (pred(&pl.items[i]))
      pl.items[i].grad =
          ps_tensor_new(PS_DTYPE_F32, pl.items[i].value->ndim, pl.items[i].value->shape, NULL);
  }
}

void gh_randomize(gh_comp *c, ps_rng *rng, double std, double gain) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    const char *n = pl.items[i].name;
    double s = std, mean = 0.0;
    if (t->ndim == 1 && g_str_has_suffix(n, ".weight")) {
      s = 0.1;
      mean = 1.0;
    } else if (t->ndim == 2 || t->ndim == 4) {
      if (!strstr(n, "token") && !strstr(n, "pos_embed")) {
        int64_t fan = 1;
        for (int d = 1; d < t->ndim; d++) fan *= t->shape[d];
        s = gain / sqrt((double)fan);
      }
    }
    for (int64_t j = 0; j < ps_tensor_numel(t); j++)
      ps_f32(t)[j] = (float)(mean + s * ps_rng_normal(rng));
  }
}

void gh_pin_rng(gh_comp *c) {
  c->rng0 = *ps_context_rng(c->ctx);
  c->pinned = TRUE;
}

static gboolean forward(gh_comp *c) {
  GError *err = NULL;
  if (c->pinned) *ps_context_rng(c->ctx) = c->rng0;
  for (size_t p = 0; p < c->out.count; p++) c->out.items[p].tensor = NULL;
  if (!c->desc->vtable->forward(c->self, c->ctx, &c->in, &c->out, &err)) {
    PS_CHECK_OK(FALSE, err);
    return FALSE;
  }
  return TRUE;
}

gboolean gh_loss_on(gh_comp *c, const char *port, ps_rng *rng) {
  ps_context_reset_scratch(c->ctx);
  if (!forward(c)) return FALSE;
  for (size_t i = 0; i < c->out.count; i++)
    if (strcmp(c->out.items[i].name, port) == 0) {
      ps_tensor *o = c->out.items[i].tensor;
      g_assert(o && o->dtype == PS_DTYPE_F32);
      ps_tensor_free(c->R[i]);
      c->R[i] = ps_tensor_new(PS_DTYPE_F32, o->ndim, o->shape, NULL);
      for (int64_t j = 0; j < ps_tensor_numel(o); j++)
        ps_f32(c->R[i])[j] = (float)ps_rng_normal(rng);
      return TRUE;
    }
  g_assert_not_reached();
  return FALSE;
}

double gh_loss(gh_comp *c) {
  ps_context_reset_scratch(c->ctx);
  if (!forward(c)) return NAN;
  double L = 0;
  for (size_t p = 0; p < c->out.count; p++) {
    if (!c->R[p]) continue;
    const ps_tensor *o = c->out.items[p].tensor;
    for (int64_t j = 0; j < ps_tensor_numel(o); j++)
      L += (double)ps_f32(o)[j] * ps_f32(c->R[p])[j];
  }
  return L;
}

gboolean gh_backward(gh_comp *c) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++)
    if (pl.items[i].grad) memset(pl.items[i].grad->data, 0, pl.items[i].grad->nbytes);
  ps_context_reset_scratch(c->ctx);
  if (!forward(c)) return FALSE;
  GError *err = NULL;
  for (size_t p = 0; p < c->gout.count; p++) c->gout.items[p].tensor = c->R[p];
  for (size_t p = 0; p < c->gin.count; p++) c->gin.items[p].tensor = NULL;
  if (!c->desc->vtable->backward(c->self, c->ctx, &c->gout, &c->gin, &err)) {
    PS_CHECK_OK(FALSE, err);
    return FALSE;
  }
  return TRUE;
}

ps_param *gh_param(gh_comp *c, const char *name) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++)
    if (strcmp(pl.items[i].name, name) == 0) return &pl.items[i];
  return NULL;
}

double gh_check_entries(gh_comp *c, ps_tensor *value, const float *grad, int count, double eps,
                        double atol, double rtol, ps_rng *rng, const char *what) {
  double worst = 0;
  int64_t n = ps_tensor_numel(value);
  for (int r = 0; r < count && r < n; r++) {
    int64_t j = count >= n ? r : (int64_t)ps_rng_below(rng, (uint64_t)n);
    float *x = ps_f32(value) + j, x0 = *x;
    *x = (float)(x0 + eps);
    double lp = gh_loss(c);
    *x = (float)(x0 - eps);
    double lm = gh_loss(c);
    *x = x0;
    /* the perturbation actually applied in f32 */
    double step = (double)(float)(x0 + eps) - (double)(float)(x0 - eps);
    double fd = (lp - lm) / step, an = grad ? grad[j] : 0.0;
    double tol = atol + rtol * MAX(fabs(fd), fabs(an));
    double ratio = fabs(fd - an) / tol;
    worst = MAX(worst, ratio);
    PS_CHECK_MSG(ratio <= 1.0, "%s[%" G_GINT64_FORMAT "]: analytic %.6g, finite difference %.6g",
                 what, j, an, fd);
  }
  return worst;
}

double gh_check_params(gh_comp *c, int count, double eps, double atol, double rtol, ps_rng *rng) {
  double worst = 0;
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    if (!pl.items[i].grad) continue;
    /* a copy: the finite-difference forwards must not see the gradient change */
    g_autoptr(ps_tensor) g = ps_tensor_copy(pl.items[i].grad, NULL);
    worst = MAX(worst, gh_check_entries(c, pl.items[i].value, ps_f32(g), count, eps, atol, rtol,
                                        rng, pl.items[i].name));
  }
  return worst;
}

double gh_check_input(gh_comp *c, const char *port, int count, double eps, double atol, double rtol,
                      ps_rng *rng) {
  ps_tensor *x = ps_ports_get(&c->in, port);
  ps_tensor *g = ps_ports_get(&c->gin, port);
  PS_CHECK_MSG(g != NULL, "no gradient for input %s", port);
  if (!g || !x) return INFINITY;
  g_autoptr(ps_tensor) gc = ps_tensor_copy(g, NULL);
  return gh_check_entries(c, x, ps_f32(gc), count, eps, atol, rtol, rng, port);
}

ps_tensor *gh_randn(ps_rng *rng, double std, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, d0, d1, d2, d3, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++) ps_f32(t)[i] = (float)(std * ps_rng_normal(rng));
  return t;
}

void gh_counts(int *passed, int *failed) {
  *passed = ps_test_passed_;
  *failed = ps_test_failed_;
}
