/* ssl_common.h — small helpers shared by the ssl plugin's files: a growing
 * parameter list (official checkpoint names, roles, value/grad by index),
 * linear layers over it, and float buffers that are reallocated only when
 * their size changes, so steady-state steps allocate nothing. */
#pragma once

#include <string.h>

#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

/* ---- parameters ------------------------------------------------------------ */

typedef struct {
  GArray *items;    /* ps_param; not appended to after create() */
  GPtrArray *names; /* owned name strings */
} ssl_params;

void ssl_params_init(ssl_params *P);
void ssl_params_clear(ssl_params *P);
/* Adds a zero-filled parameter named by the printf-style `fmt` with `ndim`
 * dims; returns its index, or -1 with an error. */
int ssl_param_add(ssl_params *P, ps_role role, const int64_t *shape, int ndim, GError **error,
                  const char *fmt, ...) G_GNUC_PRINTF(6, 7);
ps_param_list ssl_params_list(ssl_params *P);

static inline ps_param *ssl_param(const ssl_params *P, int i) {
  return &g_array_index(P->items, ps_param, i);
}
static inline float *ssl_pv(const ssl_params *P, int i) {
  return ps_f32(ssl_param(P, i)->value);
}
/* The gradient buffer, or NULL when the parameter does not train (or i < 0). */
static inline float *ssl_pg(const ssl_params *P, int i) {
  if (i < 0) return NULL;
  ps_tensor *g = ssl_param(P, i)->grad;
  return g ? ps_f32(g) : NULL;
}

/* Copies every parameter by name from `get` (an f32 tensor the caller frees,
 * or NULL with an error); shapes must match exactly. */
typedef ps_tensor *(*ssl_tensor_getter)(void *user, const char *name, GError **error);
gboolean ssl_params_load(ssl_params *P, ssl_tensor_getter get, void *user, const char *what,
                         GError **error);

/* Initialisers (draws from rng in element order). */
void ssl_init_uniform(float *x, int64_t n, double bound, ps_rng *rng);
void ssl_init_normal(float *x, int64_t n, double std, ps_rng *rng);
void ssl_init_const(float *x, int64_t n, float v);

/* ---- linear layers --------------------------------------------------------- */

typedef struct {
  int w, b; /* parameter indices (b = -1: no bias) */
  int64_t in, out;
} ssl_linear;

/* Registers `<name>.weight` (out, in) and `<name>.bias` (out). With rng:
 * xavier_uniform weight and zero bias (MAE's _init_weights for nn.Linear). */
gboolean ssl_linear_add(ssl_params *P, ssl_linear *l, const char *name, int64_t in, int64_t out,
                        ps_role role, ps_rng *rng, GError **error);
/* y: (N, out) = x: (N, in) W^T + b */
void ssl_linear_fwd(const ps_kernels *k, const ssl_params *P, const ssl_linear *l, float *y,
                    const float *x, int64_t N);
/* dx: (N, in) += dy W (dx may be NULL); weight/bias gradients where they train. */
void ssl_linear_bwd(const ps_kernels *k, const ssl_params *P, const ssl_linear *l, float *dx,
                    const float *dy, const float *x, int64_t N);

/* ---- buffers --------------------------------------------------------------- */

/* A float buffer of n elements (reallocated, zero-filled, only when n changes). */
typedef struct {
  float *p;
  int64_t n;
} ssl_buf;

gboolean ssl_buf_ensure(ssl_buf *b, int64_t n, GError **error);
void ssl_buf_free(ssl_buf *b);
static inline void ssl_buf_zero(ssl_buf *b) {
  if (b->p) memset(b->p, 0, (size_t)b->n * sizeof(float));
}

/* An output tensor a component keeps: replaced only when dtype or shape change. */
gboolean ssl_tensor_ensure(ps_tensor **t, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                           GError **error);

/* Zeroed scratch from the context for n floats (valid until the stage resets it). */
float *ssl_scratch(ps_context *ctx, int64_t n);
