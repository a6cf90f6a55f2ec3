/* param_list.h — helpers that several plugins compile in (plugins/common/):
 * a growing parameter list (names as in the official checkpoints, roles,
 * value/grad access by index), linear layers over it, float buffers that are
 * reallocated only when their size changes (so steady-state steps allocate
 * nothing) and scratch from the context.
 *
 * A plugin lists ../common/param_list.c among its SOURCES and includes this
 * header as "../common/param_list.h". It is not part of libpathseg's public
 * API: core/include/pathseg/layers.h has the public linear layer (tensors it
 * owns, LoRA), while these layers are indices into one list that the
 * component hands to the core as its ps_param_list. */
#pragma once

#include <string.h>

#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

/* ---- parameters ------------------------------------------------------------ */

typedef struct {
  GArray *items;    /* ps_param; not appended to after create() */
  GPtrArray *names; /* owned name strings */
} pl_params;

void pl_params_init(pl_params *P);
void pl_params_clear(pl_params *P);
/* Adds a zero-filled parameter named by the printf-style `fmt` with `ndim`
 * dims; returns its index, or -1 with an error. */
int pl_param_add(pl_params *P, ps_role role, const int64_t *shape, int ndim, GError **error,
                 const char *fmt, ...) G_GNUC_PRINTF(6, 7);
ps_param_list pl_params_list(pl_params *P);

static inline ps_param *pl_param(const pl_params *P, int i) {
  return &g_array_index(P->items, ps_param, i);
}
static inline float *pl_pv(const pl_params *P, int i) {
  return ps_f32(pl_param(P, i)->value);
}
/* The gradient buffer, or NULL when the parameter does not train (or i < 0). */
static inline float *pl_pg(const pl_params *P, int i) {
  if (i < 0) return NULL;
  ps_tensor *g = pl_param(P, i)->grad;
  return g ? ps_f32(g) : NULL;
}

/* Copies every parameter by name from `get` (an f32 tensor the caller frees,
 * or NULL with an error, which gets "`what`: " in front); shapes must match
 * exactly. */
typedef ps_tensor *(*pl_tensor_getter)(void *user, const char *name, GError **error);
gboolean pl_params_load(pl_params *P, pl_tensor_getter get, void *user, const char *what,
                        GError **error);

/* Initialisers; each draws from rng in element order. The two uniform ones
 * differ in the draw (ps_rng_uniform: 24 bits; ps_rng_uniform_f64: 53 bits)
 * and stay apart so that every model keeps the initial weights it had. */
void pl_init_uniform(float *x, int64_t n, double bound, ps_rng *rng);
void pl_init_uniform_f64(float *x, int64_t n, double bound, ps_rng *rng);
void pl_init_normal(float *x, int64_t n, double std, ps_rng *rng);
void pl_init_const(float *x, int64_t n, float v);

/* ---- linear layers --------------------------------------------------------- */

typedef struct {
  int w, b; /* parameter indices (b = -1: no bias) */
  int64_t in, out;
} pl_linear;

/* How pl_linear_add initialises a layer when given an rng. */
typedef enum {
  /* nn.Linear's own default (SAM): weight and bias U(-1/sqrt(in), 1/sqrt(in)),
   * drawn with pl_init_uniform. */
  PL_INIT_TORCH,
  /* MAE's _init_weights: xavier_uniform_ weight, U(-a, a) with
   * a = sqrt(6 / (in + out)) drawn with pl_init_uniform_f64; zero bias. */
  PL_INIT_XAVIER,
} pl_init;

/* Registers `<name>.weight` (out, in) and `<name>.bias` (out), initialised as
 * `init` says when rng is not NULL (zeros otherwise, for loaded weights). */
gboolean pl_linear_add(pl_params *P, pl_linear *l, const char *name, int64_t in, int64_t out,
                       ps_role role, pl_init init, ps_rng *rng, GError **error);
/* y: (N, out) = x: (N, in) W^T + b */
void pl_linear_fwd(const ps_kernels *k, const pl_params *P, const pl_linear *l, float *y,
                   const float *x, int64_t N);
/* dx: (N, in) += dy: (N, out) W (dx may be NULL); weight/bias gradients where
 * they train. x: (N, in) is the forward's input. */
void pl_linear_bwd(const ps_kernels *k, const pl_params *P, const pl_linear *l, float *dx,
                   const float *dy, const float *x, int64_t N);
/* TRUE when the weight or bias trains. */
gboolean pl_linear_trains(const pl_params *P, const pl_linear *l);

/* ---- buffers --------------------------------------------------------------- */

/* A float buffer of n elements in the memory of the kernel table k
 * (reallocated, zero-filled, only when n or the table changes). */
typedef struct {
  float *p;
  int64_t n;
  const ps_kernels *k; /* the table that allocated p */
} pl_buf;

gboolean pl_buf_ensure(pl_buf *b, const ps_kernels *k, int64_t n, GError **error);
void pl_buf_free(pl_buf *b);
static inline void pl_buf_zero(pl_buf *b) {
  if (b->p) b->k->mem_zero(b->p, (size_t)b->n * sizeof(float));
}

/* Scratch from the context for n floats (valid until the stage resets it),
 * uninitialised; NULL with an error when there is none. It is memory of the
 * context's device. */
float *pl_scratch(ps_context *ctx, int64_t n, GError **error);
/* The same, zero-filled, for callers that accumulate into it. */
float *pl_scratch_zero(ps_context *ctx, int64_t n);

/* ---- devices ------------------------------------------------------------------ */

/* Moves every parameter value to `device` (in place: the list's tensors keep
 * their headers). Initialise and load on the host first. */
gboolean pl_params_move_to(pl_params *P, ps_device device, GError **error);
