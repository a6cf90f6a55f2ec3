/* layers.c — the shared linear layer with an optional LoRA branch (layers.h).
 *
 * With u = dropout(x) and a = s * (u A^T) (s = alpha / r), the LoRA branch
 * adds a B^T to y. Backward, with g = dy:
 *   dB += g^T a,  da = g B,  dA += s * da^T u,  dx += mask * (s * da A) / keep
 * all through the kernel table's linear products (GEMMs), so that the
 * branch costs little more than its r / out share of the layer's FLOPs.
 * Everything after initialisation goes through the table, so the layer runs
 * on any device; only the dropout mask is drawn on the host and copied. */
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

static void free_buffers(ps_linear *l) {
  float **bufs[] = {&l->drop_x, &l->keep, &l->ax, &l->dax, &l->dlora_x, &l->b_t};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) {
    if (*bufs[i]) l->mem->mem_free(*bufs[i]);
    *bufs[i] = NULL;
  }
  g_clear_pointer(&l->keep_host, g_free);
  l->cap_n = 0;
}

void ps_linear_clear(ps_linear *l) {
  g_clear_pointer(&l->weight, ps_tensor_free);
  g_clear_pointer(&l->bias, ps_tensor_free);
  g_clear_pointer(&l->lora_a, ps_tensor_free);
  g_clear_pointer(&l->lora_b, ps_tensor_free);
  free_buffers(l);
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

static gboolean reserve(ps_linear *l, const ps_kernels *k, int64_t N, GError **error) {
  if (N <= l->cap_n && l->mem == k) return TRUE;
  free_buffers(l);
  l->mem = k;
  size_t nx = (size_t)(N * l->in) * sizeof(float), nr = (size_t)(N * l->r) * sizeof(float);
  l->b_t = k->mem_alloc(sizeof(float) * (size_t)(l->r * l->out));
  l->ax = k->mem_alloc(nr);
  l->dax = k->mem_alloc(nr);
  if (l->dropout > 0) {
    l->drop_x = k->mem_alloc(nx);
    l->keep = k->mem_alloc(nx);
    l->dlora_x = k->mem_alloc(nx);
    l->keep_host = g_try_malloc(nx);
  }
  if (!l->ax || !l->dax || !l->b_t ||
      (l->dropout > 0 && (!l->drop_x || !l->keep || !l->dlora_x || !l->keep_host))) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "out of %s memory for LoRA activations of %" G_GINT64_FORMAT " rows", k->name, N);
    free_buffers(l);
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
  if (!reserve(l, k, N, error)) return FALSE;
  const float *u = x;
  if (l->dropout > 0 && ps_context_training(ctx)) {
    /* Inverted dropout as torch does it: kept entries are scaled by 1/(1-p). */
    /* Two draws per 64-bit random word: entry i is kept when its 32-bit
     * half is below keep * 2^32. */
    ps_rng *rng = ps_context_rng(ctx);
    const float keep = 1.0f - l->dropout, inv = 1.0f / keep;
    const uint64_t threshold = (uint64_t)((double)keep * 4294967296.0);
    const int64_t n = N * l->in;
    float *mask = l->keep_host;
    for (int64_t i = 0; i < n; i += 2) {
      uint64_t bits = ps_rng_u64(rng);
      mask[i] = (bits & 0xffffffffu) < threshold ? inv : 0.0f;
      if (i + 1 < n) mask[i + 1] = (bits >> 32) < threshold ? inv : 0.0f;
    }
    k->copy_to_device(l->keep, mask, (size_t)n * sizeof(float));
    k->mul_forward(l->drop_x, x, l->keep, n);
    u = l->drop_x;
    l->dropped = TRUE;
  }
  k->linear_forward(l->ax, u, ps_f32(l->lora_a), NULL, N, l->in, l->r);
  k->scale(l->ax, l->ax, l->scaling, N * l->r);
  /* y += ax B^T, as the table's "dinp += dout @ weight" with dout = ax
   * (N, r) and weight = B^T (r, out). */
  k->transpose_forward(l->b_t, ps_f32(l->lora_b), 1, l->out, l->r);
  k->linear_backward(y, NULL, NULL, l->ax, NULL, l->b_t, N, l->out, l->r);
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
  k->mem_zero(l->dax, sizeof(float) * (size_t)(N * l->r));
  k->linear_backward(l->dax, NULL, NULL, dy, l->ax, ps_f32(l->lora_b), N, l->r, l->out);
  k->scale(l->dax, l->dax, l->scaling, N * l->r);
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
  const int64_t n = N * l->in;
  k->mem_zero(l->dlora_x, sizeof(float) * (size_t)n);
  k->linear_backward(l->dlora_x, NULL, NULL, l->dax, NULL, ps_f32(l->lora_a), N, l->in, l->r);
  k->mul_backward(dx, NULL, l->dlora_x, NULL, l->keep, n); /* dx += dlora_x * mask */
}
