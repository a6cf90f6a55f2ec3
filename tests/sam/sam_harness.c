/* sam_harness.c — see sam_harness.h. */
#include "sam_harness.h"

#include <pathseg/pipeline.h>

static gboolean report(GError *err) {
  fprintf(stderr, "error: %s\n", err ? err->message : "(no message)");
  g_clear_error(&err);
  return FALSE;
}

static void ports_from(ps_ports *p, ps_port *items, const ps_port_desc *d) {
  size_t n = 0;
  while (d[n].name && n < H_MAX_PORTS) {
    items[n] = (ps_port){d[n].name, NULL, FALSE};
    n++;
  }
  p->items = items;
  p->count = n;
}

gboolean h_comp_init(h_comp *c, ps_registry *reg, ps_context *ctx, const char *name,
                     const char *yaml) {
  memset(c, 0, sizeof *c);
  GError *err = NULL;
  c->desc = ps_registry_find(reg, name);
  if (!c->desc) {
    fprintf(stderr, "component %s not registered\n", name);
    return FALSE;
  }
  g_autoptr(ps_config) cfg = ps_config_parse(c->desc->config, yaml, "test", &err);
  if (!cfg) return report(err);
  c->self = c->desc->vtable->create(cfg, ctx, &err);
  if (!c->self) return report(err);
  ports_from(&c->in, c->in_items, c->desc->inputs);
  ports_from(&c->gin, c->gin_items, c->desc->inputs);
  ports_from(&c->out, c->out_items, c->desc->outputs);
  ports_from(&c->gout, c->gout_items, c->desc->outputs);
  return TRUE;
}

void h_comp_clear(h_comp *c) {
  if (!c->desc) return;
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
  c->desc->vtable->destroy(c->self);
  for (int i = 0; i < H_MAX_PORTS; i++) ps_tensor_free(c->R[i]);
  memset(c, 0, sizeof *c);
}

void h_set_input(h_comp *c, const char *port, ps_tensor *t, gboolean needs_grad) {
  ps_port *p = ps_ports_find(&c->in, port);
  ps_port *g = ps_ports_find(&c->gin, port);
  g_assert(p && g);
  p->tensor = t;
  g->needs_grad = needs_grad;
}

void h_train(h_comp *c, h_param_pred pred) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    if (pred(&pl.items[i]))
      pl.items[i].grad =
          ps_tensor_new(PS_DTYPE_F32, pl.items[i].value->ndim, pl.items[i].value->shape, NULL);
  }
}

void h_zero_grads(h_comp *c) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++)
    if (pl.items[i].grad) memset(pl.items[i].grad->data, 0, pl.items[i].grad->nbytes);
}

void h_randomize(h_comp *c, ps_rng *rng, double std) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    const char *n = pl.items[i].name;
    /* norm gains around 1; matrices scaled by 1/sqrt(fan in) so that every
     * layer keeps activations O(1) (a well-conditioned point for finite
     * differences); vectors and tables N(0, std). */
    gboolean gain = g_str_has_suffix(n, ".weight") && t->ndim == 1;
    double s = std, mean = gain ? 1.0 : 0.0;
    if (t->ndim >= 2 && !strstr(n, "rel_pos") && !strstr(n, "pos_embed") && !strstr(n, "tokens") &&
        !strstr(n, "token.") && !strstr(n, "embed.weight") && !strstr(n, "embeddings.") &&
        !strstr(n, "gaussian")) {
      int64_t fan = 1;
      for (int d = 1; d < t->ndim; d++) fan *= t->shape[d];
      if (strstr(n, "output_upscaling")) fan = t->shape[0]; /* ConvTranspose: [in, out, 2, 2] */
      s = 1.0 / sqrt((double)fan);
    }
    for (int64_t j = 0; j < ps_tensor_numel(t); j++)
      ps_f32(t)[j] = (float)(mean + s * ps_rng_normal(rng));
  }
}

void h_loss_on(h_comp *c, const char *port, ps_rng *rng) {
  for (size_t i = 0; i < c->out.count; i++)
    if (strcmp(c->out.items[i].name, port) == 0) {
      ps_tensor *o = c->out.items[i].tensor;
      g_assert(o);
      ps_tensor_free(c->R[i]);
      c->R[i] = ps_tensor_new(PS_DTYPE_F32, o->ndim, o->shape, NULL);
      for (int64_t j = 0; j < ps_tensor_numel(o); j++)
        ps_f32(c->R[i])[j] = (float)ps_rng_normal(rng);
    }
}

static gboolean forward(h_chain *ch) {
  GError *err = NULL;
  for (int i = 0; i < ch->n; i++) {
    h_comp *c = ch->a[i];
    if (i > 0) {
      ps_tensor *t = ps_ports_get(&ch->a[i - 1]->out, ch->link_out);
      ps_ports_find(&c->in, ch->link_in)->tensor = t;
    }
    for (size_t p = 0; p < c->out.count; p++) c->out.items[p].tensor = NULL;
    if (!c->desc->vtable->forward(c->self, ch->ctx, &c->in, &c->out, &err)) return report(err);
  }
  return TRUE;
}

double h_loss(h_chain *ch) {
  ps_context_reset_scratch(ch->ctx);
  if (!forward(ch)) return NAN;
  double L = 0;
  for (int i = 0; i < ch->n; i++) {
    h_comp *c = ch->a[i];
    for (size_t p = 0; p < c->out.count; p++) {
      if (!c->R[p]) continue;
      const ps_tensor *o = c->out.items[p].tensor;
      for (int64_t j = 0; j < ps_tensor_numel(o); j++)
        L += (double)ps_f32(o)[j] * ps_f32(c->R[p])[j];
    }
  }
  return L;
}

gboolean h_backward(h_chain *ch) {
  ps_context_reset_scratch(ch->ctx);
  if (!forward(ch)) return FALSE;
  GError *err = NULL;
  ps_tensor *link_grad = NULL;
  for (int i = ch->n - 1; i >= 0; i--) {
    h_comp *c = ch->a[i];
    for (size_t p = 0; p < c->gout.count; p++) {
      c->gout.items[p].tensor = c->R[p];
      if (i < ch->n - 1 && strcmp(c->gout.items[p].name, ch->link_out) == 0)
        c->gout.items[p].tensor = link_grad;
    }
    for (size_t p = 0; p < c->gin.count; p++) c->gin.items[p].tensor = NULL;
    if (i > 0) ps_ports_find(&c->gin, ch->link_in)->needs_grad = TRUE;
    if (!c->desc->vtable->backward(c->self, ch->ctx, &c->gout, &c->gin, &err)) return report(err);
    if (i > 0) link_grad = ps_ports_get(&c->gin, ch->link_in);
  }
  return TRUE;
}

/* Differences of the loss along entry x with step eps: central, right-sided
 * and left-sided (the one-sided ones are exact at a kink of the function). */
static void differences(h_chain *ch, float *x, double eps, double *central, double *right,
                        double *left) {
  float x0 = *x;
  double l0 = h_loss(ch);
  *x = (float)(x0 + eps);
  double hp = (double)*x - x0, lp = h_loss(ch);
  *x = (float)(x0 - eps);
  double hm = (double)x0 - *x, lm = h_loss(ch);
  *x = x0;
  /* steps as actually applied in f32 */
  *central = (lp - lm) / (hp + hm);
  *right = (lp - l0) / hp;
  *left = (l0 - lm) / hm;
}

double h_check_one(h_chain *ch, ps_tensor *value, const float *grad, int64_t j, double eps,
                   double atol, double rtol, const char *what) {
  float *x = ps_f32(value) + j;
  double an = grad ? grad[j] : 0.0, ratio = INFINITY, fd[3] = {0};
  /* ReLU makes the loss piecewise smooth. A kink inside [x - eps, x + eps]
   * spoils the central difference at that step but rarely at eps / 4; a
   * kink AT x (a unit at exactly zero) makes the analytic gradient one of
   * the one-sided derivatives. So an entry passes when the central
   * difference at eps, or any of the central / right / left differences at
   * eps / 4 (noise 4x: tolerance 4 atol) agrees. A wrong gradient agrees
   * with none of them. */
  for (int k = 0; k < 2 && ratio > 1.0; k++) {
    double e = k == 0 ? eps : eps / 4;
    differences(ch, x, e, &fd[0], &fd[1], &fd[2]);
    for (int d = 0; d < (k == 0 ? 1 : 3); d++) {
      double tol = atol * (k == 0 ? 1.0 : 4.0) + rtol * MAX(fabs(fd[d]), fabs(an));
      ratio = MIN(ratio, fabs(fd[d] - an) / tol);
    }
  }
  if (ratio > 1.0)
    fprintf(stderr,
            "gradient check failed: %s[%" G_GINT64_FORMAT "]: analytic %.6g, finite "
            "differences %.6g (central) %.6g (right) %.6g (left)\n",
            what, j, an, fd[0], fd[1], fd[2]);
  return ratio;
}

double h_check_entries(h_chain *ch, ps_tensor *value, const float *grad, int count, double eps,
                       double atol, double rtol, ps_rng *rng, const char *what) {
  double worst = 0;
  int64_t n = ps_tensor_numel(value);
  for (int r = 0; r < count && r < n; r++) {
    int64_t j = (int64_t)ps_rng_below(rng, (uint64_t)n);
    worst = MAX(worst, h_check_one(ch, value, grad, j, eps, atol, rtol, what));
  }
  return worst;
}
