/* layers.h — building blocks that several model plugins share, written once
 * on top of the kernel table: a linear layer with an optional LoRA branch.
 *
 * LoRA (peft): y = x W^T + b + (alpha / r) * B(A(dropout(x))), A: (r, in)
 * initialised kaiming-uniform(a = sqrt 5), B: (out, r) initialised to zero, so
 * a fresh adapter changes nothing. Dropout applies to A's input only and only
 * in training. Parameters are named "<prefix>.weight", "<prefix>.bias",
 * "<prefix>.lora_A.weight" and "<prefix>.lora_B.weight" (peft's saved names
 * without the "base_model.model." prefix). */
#pragma once

#include <glib.h>
#include <pathseg/kernels.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_linear {
  int64_t in, out;
  ps_tensor *weight; /* (out, in) */
  ps_tensor *bias;   /* (out) or NULL */
  /* LoRA, when r > 0 */
  int64_t r;
  float scaling, dropout;
  ps_tensor *lora_a; /* (r, in) */
  ps_tensor *lora_b; /* (out, r) */
  /* What forward keeps for backward (owned, grown to the largest N seen). */
  const float *saved_x;   /* (N, in), the caller's input; must stay valid */
  int64_t saved_n;
  gboolean dropped;       /* dropout ran in the last forward */
  /* Buffers on the device of the kernel table `mem` that made them: */
  float *drop_x;          /* (N, in) dropout(x) */
  float *keep;            /* (N, in) dropout mask: 1 / (1 - p) where kept, 0 where dropped */
  float *ax;              /* (N, r) scaling * A(dropout(x)) */
  float *dax;             /* (N, r) backward scratch */
  float *dlora_x;         /* (N, in) backward scratch: dax A before the dropout mask */
  float *b_t;             /* (r, out) B transposed, for y += ax B^T as one GEMM */
  float *keep_host;       /* (N, in) host memory: the mask is drawn here, then copied */
  const ps_kernels *mem;
  int64_t cap_n;
  /* Gradients (set by ps_linear_bind_grads from the ps_param list) */
  ps_tensor **g_weight, **g_bias, **g_lora_a, **g_lora_b;
} ps_linear;

/* Allocates weight (and bias) with N(0, init_std) entries drawn from `rng`
 * (init_std 0 leaves zeros, for weights that will be loaded). The tensors
 * are made on the CPU; a component on another device moves its parameters
 * there when they are final (ps_tensor_move_to), and the layer's buffers are
 * made on the device of the kernel table it is run with. */
gboolean ps_linear_init(ps_linear *l, int64_t in, int64_t out, gboolean bias, double init_std,
                        ps_rng *rng, GError **error);
/* Adds a LoRA branch of rank r (alpha / r scaling, dropout on A's input). */
gboolean ps_linear_add_lora(ps_linear *l, int64_t r, double alpha, double dropout, ps_rng *rng,
                            GError **error);
void ps_linear_clear(ps_linear *l);

/* Appends the layer's parameters to `params` (GArray of ps_param) under
 * `prefix`, with `role` for weight/bias and PS_ROLE_LORA for A/B. Parameter
 * names are g_strdup'ed into `names` (a GPtrArray with g_free) so they live
 * as long as the component. Call ps_linear_bind after the array stops
 * growing. */
void ps_linear_params(ps_linear *l, const char *prefix, ps_role role, GArray *params,
                      GPtrArray *names);
/* Points the layer's gradient slots at the `grad` fields of its entries in
 * `params` (the core fills them in per stage). `first` is the index of the
 * layer's first entry, as it was when ps_linear_params was called. */
void ps_linear_bind(ps_linear *l, GArray *params, guint first);

/* y: (N, out) = layer(x: (N, in)). Keeps x (by pointer) for backward. */
gboolean ps_linear_forward(ps_linear *l, const ps_kernels *k, ps_context *ctx, float *y,
                           const float *x, int64_t N, GError **error);
/* dx: (N, in) += d/dx (may be NULL); parameter gradients += where they train. */
void ps_linear_backward(ps_linear *l, const ps_kernels *k, float *dx, const float *dy, int64_t N);

G_END_DECLS
