/* layers.c — the shared linear layer with an optional LoRA branch (layers.h).
 *
 * With u = dropout(x) and a = s * (u A^T) (s = alpha / r), the LoRA branch
 * adds a B^T to y. Backward, with g = dy:
 *   dB += g^T a,  da = g B,  dA += s * da^T u,  dx += mask * (s * da A) / keep
 * all through the kernel table's linear products (GEMMs), so that the
 * branch costs little more than its r / out share of the layer's FLOPs. */
#include <math.h>
#include <pathseg/layers.h>
#include <stdlib.h>
#include <string.h>

gboolean ps_linear_init(ps_linear *l, int64_t in, int64_t out, gboolean bias, double init_std,
                        ps_rng *rng, GError **error) {
  memset(l, 0, sizeof *l);
  l->in = in;
  l->out = out;
  l->weight = ps_tensor_new4(PS_DTYPE_F32, out, in, -1, -1, error);
  if (!l->weight) return FALSE;
  if (init_std > 0)
    for (int64_t i = 0; i < out * in; i++) ps_f32(l->weight)[i] = (float)(init_std * ps_rng_normal(rng));
  if (bias) {
    l->bias = ps_tensor_new4(PS_DTYPE_F32, out, -1, -1, -1, error);
    if (!l->bias) return FALSE;
  }
  return TRUE;
}

gboolean ps_linear_add_lora(ps_linear *l, int64_t r, double alpha, double dropout, ps_rng *rng,
                            GError **error) {
  if (r <= 0 || dropout < 0 || dropout >= 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "LoRA needs rank > 0 and dropout in [0, 1), got r %" G_GINT64_FORMAT ", dropout %g", r,
                dropout);
    return FALSE;
  }
  l->r = r;
  l->scaling = (float)(alpha / (double)r);
  l->dropout = (float)dropout;
  l->lora_a = ps_tensor_new4(PS_DTYPE_F32, r, l->in, -1, -1, error);
  l->lora_b = l->lora_a ? ps_tensor_new4(PS_DTYPE_F32, l->out, r, -1, -1, error) : NULL;
  if (!l->lora_b) return FALSE;
  /* kaiming_uniform_(a = sqrt 5) on (r, in): bound = sqrt(6 / ((1 + 5) in)) = 1 / sqrt(in).
   * B stays zero, so a new adapter leaves the layer unchanged. */
  double bound = 1.0 / sqrt((double)l->in);
  for (int64_t i = 0; i < r * l->in; i++)
    ps_f32(l->lora_a)[i] = (float)((2.0 * ps_rng_uniform_f64(rng) - 1.0) * bound);
  return TRUE;
}

void ps_linear_clear(ps_linear *l) {
  g_clear_pointer(&l->weight, ps_tensor_free);
  g_clear_pointer(&l->bias, ps_tensor_free);
  g_clear_pointer(&l->lora_a, ps_tensor_free);
  g_clear_pointer(&l->lora_b, ps_tensor_free);
  g_clear_pointer(&l->drop_x, free);
  g_clear_pointer(&l->keep, free);
  g_clear_pointer(&l->ax, free);
  g_clear_pointer(&l->dax, free);
  g_clear_pointer(&l->dlora_x, free);
  g_clear_pointer(&l->b_t, free);
  l->cap_n = 0;
}

static void push(GArray *params, GPtrArray *names, const char *prefix, const char *leaf,
                 ps_tensor *t, ps_role role) {
  char *name = g_strconcat(prefix, leaf, NULL);
  g_ptr_array_add(names, name);
  ps_param p = {name, t, NULL, role};
  g_array_append_val(params, p);
}

void ps_linear_params(ps_linear *l, const char *prefix, ps_role role, GArray *params,
                      GPtrArray *names) {
  push(params, names, prefix, ".weight", l->weight, role);
  if (l->bias) push(params, names, prefix, ".bias", l->bias, role);
  if (l->r) {
    push(params, names, prefix, ".lora_A.weight", l->lora_a, PS_ROLE_LORA);
    push(params, names, prefix, ".lora_B.weight", l->lora_b, PS_ROLE_LORA);
  }
}

void ps_linear_bind(ps_linear *l, GArray *params, guint first) {
  ps_param *p = &g_array_index(params, ps_param, first);
  guint k = 0;
  l->g_weight = &p[k++].grad;
  l->g_bias = l->bias ? &p[k++].grad : NULL;
  l->g_lora_a = l->r ? &p[k++].grad : NULL;
  l->g_lora_b = l->r ? &p[k++].grad : NULL;
}

static gboolean reserve(ps_linear *l, int64_t N, GError **error) {
  if (N <= l->cap_n) return TRUE;
  size_t nx = (size_t)(N * l->in), nr = (size_t)(N * l->r);
  g_clear_pointer(&l->drop_x, free);
  g_clear_pointer(&l->keep, free);
  g_clear_pointer(&l->ax, free);
  g_clear_pointer(&l->dax, free);
  g_clear_pointer(&l->dlora_x, free);
  if (!l->b_t) l->b_t = malloc(sizeof(float) * (size_t)(l->r * l->out));
  l->ax = malloc(sizeof(float) * nr);
  l->dax = malloc(sizeof(float) * nr);
  if (l->dropout > 0) {
    l->drop_x = malloc(sizeof(float) * nx);
    l->keep = malloc(nx);
    l->dlora_x = malloc(sizeof(float) * nx);
  }
  if (!l->ax || !l->dax || !l->b_t || (l->dropout > 0 && (!l->drop_x || !l->keep || !l->dlora_x))) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "out of memory for LoRA activations of %" G_GINT64_FORMAT " rows", N);
    l->cap_n = 0;
    return FALSE;
  }
  l->cap_n = N;
  return TRUE;
}

gboolean ps_linear_forward(ps_linear *l, const ps_kernels *k, ps_context *ctx, float *y,
                           const float *x, int64_t N, GError **error) {
  k->linear_forward(y, x, ps_f32(l->weight), l->bias ? ps_f32(l->bias) : NULL, N, l->in, l->out);
  l->saved_x = x;
  l->saved_n = N;
  l->dropped = FALSE;
  if (!l->r) return TRUE;
  if (!reserve(l, N, error)) return FALSE;
  const float *u = x;
  if (l->dropout > 0 && ps_context_training(ctx)) {
    /* Inverted dropout as torch does it: kept entries are scaled by 1/(1-p). */
    /* Two draws per 64-bit random word: entry i is kept when its 32-bit
     * half is below keep * 2^32. */
    ps_rng *rng = ps_context_rng(ctx);
    const float keep = 1.0f - l->dropout, inv = 1.0f / keep;
    const uint64_t threshold = (uint64_t)((double)keep * 4294967296.0);
    const int64_t n = N * l->in;
    for (int64_t i = 0; i < n; i += 2) {
      uint64_t bits = ps_rng_u64(rng);
      l->keep[i] = (bits & 0xffffffffu) < threshold;
      if (i + 1 < n) l->keep[i + 1] = (bits >> 32) < threshold;
    }
    for (int64_t i = 0; i < n; i++) l->drop_x[i] = l->keep[i] ? x[i] * inv : 0.0f;
    u = l->drop_x;
    l->dropped = TRUE;
  }
  k->linear_forward(l->ax, u, ps_f32(l->lora_a), NULL, N, l->in, l->r);
  for (int64_t i = 0; i < N * l->r; i++) l->ax[i] *= l->scaling;
  /* y += ax B^T, as the table's "dinp += dout @ weight" with dout = ax
   * (N, r) and weight = B^T (r, out). */
  const float *B = ps_f32(l->lora_b);
  const int64_t out = l->out, r = l->r;
  for (int64_t o = 0; o < out; o++)
    for (int64_t j = 0; j < r; j++) l->b_t[j * out + o] = B[o * r + j];
  k->linear_backward(y, NULL, NULL, l->ax, NULL, l->b_t, N, out, r);
  return TRUE;
}

void ps_linear_backward(ps_linear *l, const ps_kernels *k, float *dx, const float *dy, int64_t N) {
  ps_tensor *gw = l->g_weight ? *l->g_weight : NULL;
  ps_tensor *gb = l->g_bias ? *l->g_bias : NULL;
  k->linear_backward(dx, gw ? ps_f32(gw) : NULL, gb ? ps_f32(gb) : NULL, dy, l->saved_x,
                     ps_f32(l->weight), N, l->in, l->out);
  if (!l->r) return;
  ps_tensor *ga = l->g_lora_a ? *l->g_lora_a : NULL;
  ps_tensor *gB = l->g_lora_b ? *l->g_lora_b : NULL;
  if (!dx && !ga && !gB) return;
  /* dB (out, r) += dy^T ax */
  if (gB) k->linear_backward(NULL, ps_f32(gB), NULL, dy, l->ax, ps_f32(l->lora_b), N, l->r, l->out);
  if (!dx && !ga) return;
  /* dax (N, r) = s * dy B */
  memset(l->dax, 0, sizeof(float) * (size_t)(N * l->r));
  k->linear_backward(l->dax, NULL, NULL, dy, l->ax, ps_f32(l->lora_b), N, l->r, l->out);
  for (int64_t i = 0; i < N * l->r; i++) l->dax[i] *= l->scaling;
  const float *u = l->dropped ? l->drop_x : l->saved_x;
  /* dA (r, in) += dax^T u */
  if (ga) k->linear_backward(NULL, ps_f32(ga), NULL, l->dax, u, ps_f32(l->lora_a), N, l->in, l->r);
  if (!dx) return;
  if (!l->dropped) {
    k->linear_backward(dx, NULL, NULL, l->dax, u, ps_f32(l->lora_a), N, l->in, l->r);
    return;
  }
  /* dx += mask * (dax A) / keep: the product as one GEMM into dlora_x,
   * then the mask. drop_x must stay intact: a second backward of the same
   * forward reads it again. */
  const float inv = 1.0f / (1.0f - l->dropout);
  const int64_t n = N * l->in;
  memset(l->dlora_x, 0, sizeof(float) * (size_t)n);
  k->linear_backward(l->dlora_x, NULL, NULL, l->dax, NULL, ps_f32(l->lora_a), N, l->in, l->r);
  for (int64_t i = 0; i < n; i++) dx[i] += l->keep[i] ? l->dlora_x[i] * inv : 0.0f;
}
