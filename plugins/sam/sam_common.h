/* sam_common.h — small helpers shared by the SAM plugin's files: a growing
 * parameter list (names as in the official checkpoint, roles, value/grad
 * access by index), linear layers over it, and float buffers that are
 * reallocated only when their size changes (so the steady state allocates
 * nothing). */
#pragma once

#include <string.h>

#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

/* ---- parameters ------------------------------------------------------------ */

typedef struct {
  GArray *items;    /* ps_param; the array is not appended to after create() */
  GPtrArray *names; /* owned name strings */
} sam_params;

void sam_params_init(sam_params *P);
void sam_params_clear(sam_params *P);
/* Adds a zero-filled parameter `prefix``name` (printf-style name) of the given
 * shape (-1 ends the shape); returns its index, or -1 with an error. */
int sam_param_add(sam_params *P, ps_role role, const int64_t *shape, int ndim, GError **error,
                  const char *fmt, ...) G_GNUC_PRINTF(6, 7);
ps_param_list sam_params_list(sam_params *P);

static inline ps_param *sam_param(const sam_params *P, int i) {
  return &g_array_index(P->items, ps_param, i);
}
static inline float *sam_pv(const sam_params *P, int i) {
  return ps_f32(sam_param(P, i)->value);
}
/* The gradient buffer, or NULL when the parameter does not train (or i < 0). */
static inline float *sam_pg(const sam_params *P, int i) {
  if (i < 0) return NULL;
  ps_tensor *g = sam_param(P, i)->grad;
  return g ? ps_f32(g) : NULL;
}

/* Copies every parameter from a lookup (e.g. a fixture file) by name; shape
 * must match. `get` returns an f32 tensor the caller frees, or NULL + error. */
typedef ps_tensor *(*sam_tensor_getter)(void *user, const char *name, GError **error);
gboolean sam_params_load(sam_params *P, sam_tensor_getter get, void *user, const char *what,
                         GError **error);

/* PyTorch's default init of nn.Linear / nn.Conv2d: U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
void sam_init_uniform(float *x, int64_t n, double bound, ps_rng *rng);
void sam_init_normal(float *x, int64_t n, double std, ps_rng *rng);
void sam_init_const(float *x, int64_t n, float v);

/* ---- linear layers ------------------------------------------------------- */

typedef struct {
  int w, b; /* parameter indices (b = -1: no bias) */
  int64_t in, out;
} sam_linear;

/* Registers `<name>.weight` [out, in] and `<name>.bias` [out], initialised
 * as PyTorch does (unless `zero`). */
gboolean sam_linear_add(sam_params *P, sam_linear *l, const char *name, int64_t in, int64_t out,
                        ps_role role, gboolean bias, ps_rng *rng, GError **error);
/* y: (N, out) = x: (N, in) W^T + b */
void sam_linear_fwd(const ps_kernels *k, const sam_params *P, const sam_linear *l, float *y,
                    const float *x, int64_t N);
/* dx: (N, in) += dy W (dx may be NULL); weight/bias grads when they train. */
void sam_linear_bwd(const ps_kernels *k, const sam_params *P, const sam_linear *l, float *dx,
                    const float *dy, const float *x, int64_t N);
/* TRUE when the weight or bias trains. */
gboolean sam_linear_trains(const sam_params *P, const sam_linear *l);

/* ---- buffers ----------------------------------------------------------------- */

/* A float buffer of n elements (reallocated, zero-filled, only when n changes). */
typedef struct {
  float *p;
  int64_t n;
} sam_buf;

gboolean sam_buf_ensure(sam_buf *b, int64_t n, GError **error);
void sam_buf_free(sam_buf *b);
static inline void sam_buf_zero(sam_buf *b) {
  if (b->p) memset(b->p, 0, (size_t)b->n * sizeof(float));
}

/* An output tensor kept by a component: replaced only when the shape changes. */
gboolean sam_tensor_ensure(ps_tensor **t, int32_t ndim, const int64_t *shape, GError **error);

/* Scratch from the context of at least n floats, or NULL with an error. */
float *sam_scratch(ps_context *ctx, int64_t n, GError **error);
