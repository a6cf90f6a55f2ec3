/* heads_common.c — parameter lists and buffers shared by the heads plugin's
 * components (heads.h). */
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "heads.h"

void hd_params_init(hd_params *P) {
  P->items = g_array_new(FALSE, TRUE, sizeof(ps_param));
  P->names = g_ptr_array_new_with_free_func(g_free);
  P->owned = g_ptr_array_new_with_free_func((GDestroyNotify)ps_tensor_free);
}

void hd_params_clear(hd_params *P) {
  if (P->items) g_array_free(P->items, TRUE);
  if (P->names) g_ptr_array_free(P->names, TRUE);
  if (P->owned) g_ptr_array_free(P->owned, TRUE);
  memset(P, 0, sizeof *P);
}

int hd_param_add(hd_params *P, const char *name, ps_role role, int ndim, const int64_t *shape,
                 GError **error) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, error);
  if (!t) return -1;
  g_ptr_array_add(P->owned, t);
  char *n = g_strdup(name);
  g_ptr_array_add(P->names, n);
  ps_param p = {n, t, NULL, role};
  g_array_append_val(P->items, p);
  return (int)P->items->len - 1;
}

int hd_linear_add(hd_params *P, ps_linear *l, const char *prefix, int64_t in, int64_t out,
                  double std, ps_rng *rng, GError **error) {
  if (!ps_linear_init(l, in, out, TRUE, rng ? std : 0.0, rng, error)) return -1;
  int first = (int)P->items->len;
  ps_linear_params(l, prefix, PS_ROLE_FULL, P->items, P->names);
  return first;
}

ps_param_list hd_params_list(hd_params *P) {
  return (ps_param_list){(ps_param *)(void *)P->items->data, P->items->len};
}

gboolean hd_linear_trains(const ps_linear *l) {
  return (l->g_weight && *l->g_weight) || (l->g_bias && *l->g_bias);
}

gboolean hd_params_move_to(hd_params *P, ps_device device, GError **error) {
  for (guint i = 0; i < P->items->len; i++) {
    ps_param *p = &g_array_index(P->items, ps_param, i);
    if (!ps_tensor_move_to(p->value, device, error)) {
      g_prefix_error(error, "parameter %s: ", p->name);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean hd_buf(const ps_kernels *k, float **p, int64_t *cap, int64_t n, GError **error) {
  if (n <= *cap && *p) return TRUE;
  hd_buf_free(k, p, cap);
  *p = k->mem_alloc(sizeof(float) * (size_t)MAX(n, 1));
  if (!*p) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "out of %s memory for %" G_GINT64_FORMAT " floats", k->name, n);
    return FALSE;
  }
  *cap = n;
  return TRUE;
}

void hd_buf_free(const ps_kernels *k, float **p, int64_t *cap) {
  if (*p) k->mem_free(*p);
  *p = NULL;
  *cap = 0;
}

ps_port *hd_wants_grad(ps_ports *grad_in, const char *name) {
  ps_port *p = ps_ports_find(grad_in, name);
  return p && p->needs_grad ? p : NULL;
}

const ps_kernels *hd_kernels(ps_context *ctx, const char *component, GError **error) {
  /* The device's table at the run's precision. */
  const ps_kernels *k = ps_context_kernels(ctx, error);
  if (!k) g_prefix_error(error, "%s: ", component);
  return k;
}
