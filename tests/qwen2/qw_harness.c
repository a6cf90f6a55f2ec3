/* qw_harness.c — see qw_harness.h. */
#include "qw_harness.h"

static ps_registry *registry;

ps_registry *qw_registry(void) {
  if (!registry) {
    registry = ps_registry_new();
    ps_registry_scan(registry, NULL, NULL);
  }
  return registry;
}

static void ports_from(ps_ports *p, ps_port *items, const ps_port_desc *d) {
  size_t n = 0;
  while (d[n].name && n < QW_PORTS) {
    items[n] = (ps_port){d[n].name, NULL, FALSE};
    n++;
  }
  p->items = items;
  p->count = n;
}

gboolean qw_init(qw_comp *c, const char *yaml, uint64_t seed) {
  return qw_init_on(c, yaml, seed, PS_DEVICE_CPU);
}

gboolean qw_init_on(qw_comp *c, const char *yaml, uint64_t seed, ps_device device) {
  memset(c, 0, sizeof *c);
  GError *err = NULL;
  c->desc = ps_registry_find(qw_registry(), "llm.qwen2");
  PS_CHECK_MSG(c->desc != NULL, "llm.qwen2 is not registered (plugin path?)");
  if (!c->desc) return FALSE;
  g_autoptr(ps_config) cfg = ps_config_parse(c->desc->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return FALSE;
  c->ctx = ps_context_new(device, 1, seed);
  c->self = c->desc->vtable->create(cfg, c->ctx, &err);
  PS_CHECK_OK(c->self != NULL, err);
  if (!c->self) {
    ps_context_free(c->ctx);
    c->desc = NULL;
    return FALSE;
  }
  ports_from(&c->in, c->in_items, c->desc->inputs);
  ports_from(&c->gin, c->gin_items, c->desc->inputs);
  ports_from(&c->out, c->out_items, c->desc->outputs);
  ports_from(&c->gout, c->gout_items, c->desc->outputs);
  c->g_loss = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  return TRUE;
}

void qw_clear(qw_comp *c) {
  if (!c->desc) return;
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
  c->desc->vtable->destroy(c->self);
  ps_context_free(c->ctx);
  ps_tensor_free(c->r_hidden);
  ps_tensor_free(c->r_logits);
  ps_tensor_free(c->g_loss);
  memset(c, 0, sizeof *c);
}

void qw_set_input(qw_comp *c, const char *port, ps_tensor *t, gboolean needs_grad) {
  ps_port *p = ps_ports_find(&c->in, port), *g = ps_ports_find(&c->gin, port);
  g_assert(p && g);
  p->tensor = t;
  g->needs_grad = needs_grad;
}

ps_tensor *qw_output(qw_comp *c, const char *port) {
  return ps_ports_get(&c->out, port);
}
ps_tensor *qw_input_grad(qw_comp *c, const char *port) {
  return ps_ports_get(&c->gin, port);
}

void qw_randomize(qw_comp *c, ps_rng *rng, double std) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    gboolean norm = strstr(pl.items[i].name, "norm.weight") != NULL;
    for (int64_t j = 0; j < ps_tensor_numel(t); j++)
      ps_f32(t)[j] = (float)((norm ? 1.0 : 0.0) + std * ps_rng_normal(rng));
  }
}

void qw_train(qw_comp *c, gboolean (*pred)(const ps_param *p)) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    if (pred(&pl.items[i]))
      pl.items[i].grad =
          ps_tensor_new(PS_DTYPE_F32, pl.items[i].value->ndim, pl.items[i].value->shape, NULL);
  }
}

ps_param *qw_param(qw_comp *c, const char *name) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++)
    if (strcmp(pl.items[i].name, name) == 0) return &pl.items[i];
  return NULL;
}

gboolean qw_forward(qw_comp *c) {
  GError *err = NULL;
  for (size_t p = 0; p < c->out.count; p++) c->out.items[p].tensor = NULL;
  gboolean ok = c->desc->vtable->forward(c->self, c->ctx, &c->in, &c->out, &err);
  PS_CHECK_OK(ok, err);
  return ok;
}

static double dot(const ps_tensor *a, const ps_tensor *b) {
  double s = 0;
  for (int64_t i = 0; i < ps_tensor_numel(a); i++) s += (double)ps_f32(a)[i] * ps_f32(b)[i];
  return s;
}

double qw_loss(qw_comp *c) {
  if (!qw_forward(c)) return NAN;
  double L = 0;
  if (c->w_loss != 0) L += c->w_loss * ps_f32(qw_output(c, "loss"))[0];
  if (c->r_hidden) L += dot(qw_output(c, "hidden"), c->r_hidden);
  if (c->r_logits) L += dot(qw_output(c, "logits"), c->r_logits);
  return L;
}

gboolean qw_backward(qw_comp *c) {
  GError *err = NULL;
  ps_ports_set(&c->gout, "hidden", c->r_hidden);
  ps_ports_set(&c->gout, "logits", c->r_logits);
  ps_f32(c->g_loss)[0] = (float)c->w_loss;
  ps_ports_set(&c->gout, "loss", c->w_loss != 0 ? c->g_loss : NULL);
  for (size_t p = 0; p < c->gin.count; p++) c->gin.items[p].tensor = NULL;
  gboolean ok = c->desc->vtable->backward(c->self, c->ctx, &c->gout, &c->gin, &err);
  PS_CHECK_OK(ok, err);
  return ok;
}

ps_tensor *qw_randn(ps_rng *rng, double std, int64_t d0, int64_t d1, int64_t d2) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_F32, d0, d1, d2, -1, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++) ps_f32(t)[i] = (float)(std * ps_rng_normal(rng));
  return t;
}

ps_tensor *qw_ids(int64_t B, int64_t T, const int32_t *values) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_I32, B, T, -1, -1, NULL);
  memcpy(t->data, values, sizeof(int32_t) * (size_t)(B * T));
  return t;
}
