/* param_list.c — the parameter list, linear-layer, buffer and scratch
 * helpers that plugins compile in (see param_list.h). */
#include "param_list.h"

#include <math.h>
#include <stdarg.h>

#include <pathseg/error.h>

void pl_params_init(pl_params *P) {
  P->items = g_array_new(FALSE, TRUE, sizeof(ps_param));
  P->names = g_ptr_array_new_with_free_func(g_free);
}

void pl_params_clear(pl_params *P) {
  if (P->items) {
    for (guint i = 0; i < P->items->len; i++) ps_tensor_free(pl_param(P, (int)i)->value);
    g_array_free(P->items, TRUE);
  }
  if (P->names) g_ptr_array_free(P->names, TRUE);
  P->items = NULL;
  P->names = NULL;
}

int pl_param_add(pl_params *P, ps_role role, const int64_t *shape, int ndim, GError **error,
                 const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *name = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, error);
  if (!t) {
    g_free(name);
    return -1;
  }
  g_ptr_array_add(P->names, name);
  ps_param p = {name, t, NULL, role};
  g_array_append_val(P->items, p);
  return (int)P->items->len - 1;
}

ps_param_list pl_params_list(pl_params *P) {
  return (ps_param_list){(ps_param *)P->items->data, P->items->len};
}

gboolean pl_params_load(pl_params *P, pl_tensor_getter get, void *user, const char *what,
                        GError **error) {
  for (guint i = 0; i < P->items->len; i++) {
    ps_param *p = pl_param(P, (int)i);
    g_autoptr(ps_tensor) t = get(user, p->name, error);
    if (!t) {
      g_prefix_error(error, "%s: ", what);
      return FALSE;
    }
    g_autofree char *label = g_strdup_printf("%s: parameter %s", what, p->name);
    if (!ps_tensor_check(t, label, PS_DTYPE_F32, p->value->ndim, p->value->shape, error))
      return FALSE;
    if (!ps_tensor_copy_into(p->value, t, error)) return FALSE;
  }
  return TRUE;
}

void pl_init_uniform(float *x, int64_t n, double bound, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(bound * (2.0 * ps_rng_uniform(rng) - 1.0));
}

void pl_init_uniform_f64(float *x, int64_t n, double bound, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(bound * (2.0 * ps_rng_uniform_f64(rng) - 1.0));
}

void pl_init_normal(float *x, int64_t n, double std, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(std * ps_rng_normal(rng));
}

void pl_init_const(float *x, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++) x[i] = v;
}

gboolean pl_linear_add(pl_params *P, pl_linear *l, const char *name, int64_t in, int64_t out,
                       ps_role role, pl_init init, ps_rng *rng, GError **error) {
  l->in = in;
  l->out = out;
  int64_t ws[2] = {out, in};
  l->w = pl_param_add(P, role, ws, 2, error, "%s.weight", name);
  if (l->w < 0) return FALSE;
  l->b = pl_param_add(P, role, &out, 1, error, "%s.bias", name);
  if (l->b < 0) return FALSE;
  if (!rng) return TRUE;
  if (init == PL_INIT_XAVIER) {
    pl_init_uniform_f64(pl_pv(P, l->w), out * in, sqrt(6.0 / (double)(in + out)), rng);
  } else {
    /* weight then bias, as nn.Linear.reset_parameters draws them */
    const double bound = 1.0 / sqrt((double)in);
    pl_init_uniform(pl_pv(P, l->w), out * in, bound, rng);
    pl_init_uniform(pl_pv(P, l->b), out, bound, rng);
  }
  return TRUE;
}

void pl_linear_fwd(const ps_kernels *k, const pl_params *P, const pl_linear *l, float *y,
                   const float *x, int64_t N) {
  k->linear_forward(y, x, pl_pv(P, l->w), l->b >= 0 ? pl_pv(P, l->b) : NULL, N, l->in, l->out);
}

void pl_linear_bwd(const ps_kernels *k, const pl_params *P, const pl_linear *l, float *dx,
                   const float *dy, const float *x, int64_t N) {
  float *dw = pl_pg(P, l->w), *db = pl_pg(P, l->b);
  if (!dx && !dw && !db) return;
  k->linear_backward(dx, dw, db, dy, x, pl_pv(P, l->w), N, l->in, l->out);
}

gboolean pl_linear_trains(const pl_params *P, const pl_linear *l) {
  return pl_pg(P, l->w) != NULL || pl_pg(P, l->b) != NULL;
}

gboolean pl_buf_ensure(pl_buf *b, const ps_kernels *k, int64_t n, GError **error) {
  if (b->p && b->n == n && b->k == k) return TRUE;
  pl_buf_free(b);
  if (n <= 0) return TRUE;
  b->p = k->mem_alloc((size_t)n * sizeof(float));
  if (!b->p) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "out of %s memory for a buffer of %" G_GINT64_FORMAT " floats", k->name, n);
    return FALSE;
  }
  b->n = n;
  b->k = k;
  return TRUE;
}

void pl_buf_free(pl_buf *b) {
  if (b->p) b->k->mem_free(b->p);
  b->p = NULL;
  b->n = 0;
  b->k = NULL;
}

gboolean pl_params_move_to(pl_params *P, ps_device device, GError **error) {
  for (guint i = 0; i < P->items->len; i++) {
    ps_param *p = pl_param(P, (int)i);
    if (!ps_tensor_move_to(p->value, device, error)) {
      g_prefix_error(error, "parameter %s: ", p->name);
      return FALSE;
    }
  }
  return TRUE;
}

float *pl_scratch(ps_context *ctx, int64_t n, GError **error) {
  float *s = ps_context_scratch(ctx, (size_t)(n > 0 ? n : 1) * sizeof(float));
  if (!s)
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "no scratch memory for %" G_GINT64_FORMAT " floats", n);
  return s;
}

float *pl_scratch_zero(ps_context *ctx, int64_t n) {
  size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
  float *s = ps_context_scratch(ctx, bytes);
  const ps_kernels *k = ps_kernels_get(ps_context_device(ctx), NULL);
  if (s && k) k->mem_zero(s, bytes);
  return s;
}
