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

void gh_link(gh_comp *up, const char *out_port, gh_comp *down, const char *in_port) {
  g_assert(ps_ports_find(&up->out, out_port) && ps_ports_find(&down->gin, in_port));
  up->next = down;
  up->link_out = out_port;
  down->prev = up;
  down->link_in = in_port;
  ps_ports_find(&down->gin, in_port)->needs_grad = TRUE;
}

static gh_comp *first_of(gh_comp *c) {
  while (c->prev) c = c->prev;
  return c;
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

/* Parameters drawn like vectors whatever their rank: tokens, position and
 * prompt-embedding tables, the random-Fourier PE matrix. */
static gboolean is_table(const char *n) {
  static const char *const parts[] = {"tokens",       "token.",      "pos_embed", "rel_pos",
                                      "embed.weight", "embeddings.", "gaussian"};
  for (size_t i = 0; i < G_N_ELEMENTS(parts); i++)
    if (strstr(n, parts[i])) return TRUE;
  return g_str_has_suffix(n, "token");
}

void gh_randomize_norm(gh_comp *c, ps_rng *rng, double std, double gain, double norm_std) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    const char *n = pl.items[i].name;
    double s = std, mean = 0.0;
    if (t->ndim == 1 && g_str_has_suffix(n, ".weight")) {
      s = norm_std;
      mean = 1.0;
    } else if (t->ndim >= 2 && !is_table(n)) {
      int64_t fan = 1;
      for (int d = 1; d < t->ndim; d++) fan *= t->shape[d];
      if (strstr(n, "output_upscaling")) fan = t->shape[0]; /* ConvTranspose: (in, out, kh, kw) */
      s = gain / sqrt((double)fan);
    }
    for (int64_t j = 0; j < ps_tensor_numel(t); j++)
      ps_f32(t)[j] = (float)(mean + s * ps_rng_normal(rng));
  }
}

void gh_randomize(gh_comp *c, ps_rng *rng, double std, double gain) {
  gh_randomize_norm(c, rng, std, gain, 0.1);
}

void gh_pin_rng(gh_comp *c) {
  c = first_of(c);
  c->rng0 = *ps_context_rng(c->ctx);
  c->pinned = TRUE;
}

/* Forward of the whole chain that c is the first component of. */
static gboolean forward(gh_comp *c) {
  if (c->pinned) *ps_context_rng(c->ctx) = c->rng0;
  ps_context_reset_scratch(c->ctx);
  for (; c; c = c->next) {
    if (c->prev)
      ps_ports_find(&c->in, c->link_in)->tensor = ps_ports_get(&c->prev->out, c->prev->link_out);
    for (size_t p = 0; p < c->out.count; p++) c->out.items[p].tensor = NULL;
    GError *err = NULL;
    if (!c->desc->vtable->forward(c->self, c->ctx, &c->in, &c->out, &err)) {
      PS_CHECK_OK(FALSE, err);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean gh_loss_on(gh_comp *c, const char *port, ps_rng *rng) {
  if (!forward(first_of(c))) return FALSE;
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
  c = first_of(c);
  if (!forward(c)) return NAN;
  double L = 0;
  for (; c; c = c->next)
    for (size_t p = 0; p < c->out.count; p++) {
      if (!c->R[p]) continue;
      const ps_tensor *o = c->out.items[p].tensor;
      for (int64_t j = 0; j < ps_tensor_numel(o); j++)
        L += (double)ps_f32(o)[j] * ps_f32(c->R[p])[j];
    }
  return L;
}

gboolean gh_backward(gh_comp *c) {
  c = first_of(c);
  gh_comp *last = c;
  for (gh_comp *k = c; k; k = k->next) {
    ps_param_list pl = k->desc->vtable->params(k->self);
    for (size_t i = 0; i < pl.count; i++)
      if (pl.items[i].grad) memset(pl.items[i].grad->data, 0, pl.items[i].grad->nbytes);
    last = k;
  }
  if (!forward(c)) return FALSE;
  /* From the last component back: a linked output's gradient is the next
   * component's input gradient (a linked output carries no R of its own). */
  ps_tensor *link_grad = NULL;
  for (gh_comp *k = last; k; k = k->prev) {
    for (size_t p = 0; p < k->gout.count; p++) {
      k->gout.items[p].tensor = k->R[p];
      if (k->next && strcmp(k->gout.items[p].name, k->link_out) == 0)
        k->gout.items[p].tensor = link_grad;
    }
    for (size_t p = 0; p < k->gin.count; p++) k->gin.items[p].tensor = NULL;
    GError *err = NULL;
    if (!k->desc->vtable->backward(k->self, k->ctx, &k->gout, &k->gin, &err)) {
      PS_CHECK_OK(FALSE, err);
      return FALSE;
    }
    if (k->prev) link_grad = ps_ports_get(&k->gin, k->link_in);
  }
  return TRUE;
}

ps_param *gh_param(gh_comp *c, const char *name) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++)
    if (strcmp(pl.items[i].name, name) == 0) return &pl.items[i];
  return NULL;
}

/* Differences of the loss along *x with step eps, over the steps as applied
 * in f32: fd[0] central and, when `sided`, fd[1] right- and fd[2] left-sided
 * (the one-sided ones are exact at a kink of the function). */
static void differences(gh_comp *c, float *x, double eps, gboolean sided, double fd[3]) {
  const float x0 = *x;
  const double l0 = sided ? gh_loss(c) : 0.0;
  *x = (float)(x0 + eps);
  const double hp = (double)*x - x0, lp = gh_loss(c);
  *x = (float)(x0 - eps);
  const double hm = (double)x0 - *x, lm = gh_loss(c);
  *x = x0;
  fd[0] = (lp - lm) / (hp + hm);
  fd[1] = sided ? (lp - l0) / hp : fd[0];
  fd[2] = sided ? (l0 - lm) / hm : fd[0];
}

double gh_check_one(gh_comp *c, ps_tensor *value, const float *grad, int64_t j, double eps,
                    double atol, double rtol, const char *what) {
  float *x = ps_f32(value) + j;
  const double an = grad ? grad[j] : 0.0;
  double fd[3], q[3] = {NAN, NAN, NAN};
  differences(c, x, eps, FALSE, fd);
  double ratio = fabs(fd[0] - an) / (atol + rtol * MAX(fabs(fd[0]), fabs(an)));
  if (ratio > 1.0 && c->kinks) {
    /* A ReLU kink inside [x - eps, x + eps] spoils the central difference
     * at that step but rarely at eps / 4; a kink AT x (a unit at exactly
     * zero) makes the analytic gradient one of the one-sided derivatives.
     * So the entry also passes when the central, right or left difference
     * at eps / 4 agrees (noise 4x: tolerance 4 atol). A wrong gradient
     * agrees with none of them. */
    differences(c, x, eps / 4, TRUE, q);
    for (int d = 0; d < 3; d++)
      ratio = MIN(ratio, fabs(q[d] - an) / (4 * atol + rtol * MAX(fabs(q[d]), fabs(an))));
  }
  g_autofree char *sided =
      ratio > 1.0 && c->kinks
          ? g_strdup_printf(" (at eps / 4: central %.6g, right %.6g, left %.6g)", q[0], q[1], q[2])
          : NULL;
  PS_CHECK_MSG(ratio <= 1.0, "%s[%" G_GINT64_FORMAT "]: analytic %.6g, finite difference %.6g%s",
               what, j, an, fd[0], sided ? sided : "");
  return ratio;
}

double gh_check_entries(gh_comp *c, ps_tensor *value, const float *grad, int count, double eps,
                        double atol, double rtol, ps_rng *rng, const char *what) {
  const int64_t n = ps_tensor_numel(value);
  double worst = 0;
  for (int64_t r = 0; r < MIN((int64_t)count, n); r++) {
    int64_t j = count >= n ? r : (int64_t)ps_rng_below(rng, (uint64_t)n);
    worst = fmax(worst, gh_check_one(c, value, grad, j, eps, atol, rtol, what));
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
    worst = fmax(worst, gh_check_entries(c, pl.items[i].value, ps_f32(g), count, eps, atol, rtol,
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
