/* ssl_common.c — the parameter list, linear-layer and buffer helpers of the
 * ssl plugin (see ssl_common.h). */
#include "ssl_common.h"

#include <math.h>
#include <stdarg.h>

#include <pathseg/error.h>

void ssl_params_init(ssl_params *P) {
  P->items = g_array_new(FALSE, TRUE, sizeof(ps_param));
  P->names = g_ptr_array_new_with_free_func(g_free);
}

void ssl_params_clear(ssl_params *P) {
  if (P->items) {
    for (guint i = 0; i < P->items->len; i++) ps_tensor_free(ssl_param(P, (int)i)->value);
    g_array_free(P->items, TRUE);
  }
  if (P->names) g_ptr_array_free(P->names, TRUE);
  P->items = NULL;
  P->names = NULL;
}

int ssl_param_add(ssl_params *P, ps_role role, const int64_t *shape, int ndim, GError **error,
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

ps_param_list ssl_params_list(ssl_params *P) {
  return (ps_param_list){(ps_param *)P->items->data, P->items->len};
}

gboolean ssl_params_load(ssl_params *P, ssl_tensor_getter get, void *user, const char *what,
                         GError **error) {
  for (guint i = 0; i < P->items->len; i++) {
    ps_param *p = ssl_param(P, (int)i);
    g_autoptr(ps_tensor) t = get(user, p->name, error);
    if (!t) {
      g_prefix_error(error, "%s: ", what);
      return FALSE;
    }
    g_autofree char *label = g_strdup_printf("%s: parameter %s", what, p->name);
    if (!ps_tensor_check(t, label, PS_DTYPE_F32, p->value->ndim, p->value->shape, error))
      return FALSE;
    memcpy(p->value->data, t->data, p->value->nbytes);
  }
  return TRUE;
}

void ssl_init_uniform(float *x, int64_t n, double bound, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(bound * (2.0 * ps_rng_uniform_f64(rng) - 1.0));
}

void ssl_init_normal(float *x, int64_t n, double std, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(std * ps_rng_normal(rng));
}

void ssl_init_const(float *x, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++) x[i] = v;
}

gboolean ssl_linear_add(ssl_params *P, ssl_linear *l, const char *name, int64_t in, int64_t out,
                        ps_role role, ps_rng *rng, GError **error) {
  l->in = in;
  l->out = out;
  int64_t ws[2] = {out, in};
  l->w = ssl_param_add(P, role, ws, 2, error, "%s.weight", name);
  if (l->w < 0) return FALSE;
  l->b = ssl_param_add(P, role, &out, 1, error, "%s.bias", name);
  if (l->b < 0) return FALSE;
  /* torch.nn.init.xavier_uniform_: U(-a, a), a = sqrt(6 / (fan_in + fan_out)). */
  if (rng) ssl_init_uniform(ssl_pv(P, l->w), out * in, sqrt(6.0 / (double)(in + out)), rng);
  return TRUE;
}

void ssl_linear_fwd(const ps_kernels *k, const ssl_params *P, const ssl_linear *l, float *y,
                    const float *x, int64_t N) {
  k->linear_forward(y, x, ssl_pv(P, l->w), l->b >= 0 ? ssl_pv(P, l->b) : NULL, N, l->in, l->out);
}

void ssl_linear_bwd(const ps_kernels *k, const ssl_params *P, const ssl_linear *l, float *dx,
                    const float *dy, const float *x, int64_t N) {
  float *dw = ssl_pg(P, l->w), *db = ssl_pg(P, l->b);
  if (!dx && !dw && !db) return;
  k->linear_backward(dx, dw, db, dy, x, ssl_pv(P, l->w), N, l->in, l->out);
}

gboolean ssl_buf_ensure(ssl_buf *b, int64_t n, GError **error) {
  if (b->p && b->n == n) return TRUE;
  g_free(b->p);
  b->p = NULL;
  b->n = 0;
  if (n <= 0) return TRUE;
  b->p = g_try_malloc0_n((gsize)n, sizeof(float));
  if (!b->p) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "ssl: out of memory for %" G_GINT64_FORMAT " floats", n);
    return FALSE;
  }
  b->n = n;
  return TRUE;
}

void ssl_buf_free(ssl_buf *b) {
  g_free(b->p);
  b->p = NULL;
  b->n = 0;
}

gboolean ssl_tensor_ensure(ps_tensor **t, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                           GError **error) {
  return ps_tensor_ensure(t, dtype, ndim, shape, error);
}

float *ssl_scratch(ps_context *ctx, int64_t n) {
  size_t bytes = (size_t)(n > 0 ? n : 1) * sizeof(float);
  float *s = ps_context_scratch(ctx, bytes);
  memset(s, 0, bytes);
  return s;
}
