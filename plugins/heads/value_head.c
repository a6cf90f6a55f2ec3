/* value_head.c — the `critic.value` component: a value head on the LLM's
 * hidden states for GAE, values[b, t] = score(dropout(hidden[b, t])), with
 * score a Linear(H, 1) (score.weight [1, H], score.bias [1]) and inverted
 * dropout of probability p in training only (TRL's ValueHead: dropout then
 * linear). Runs on the context's device: the dropout mask is drawn on the
 * host (the same RNG draws on every device) and applied as a product with a
 * device copy of the mask (1 / (1 - p) where kept, 0 where dropped). */
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "heads.h"

typedef struct {
  int64_t H;
  float p;
  const ps_kernels *k;
  hd_params P;
  ps_linear score;
  /* last forward */
  int64_t B, T;
  ps_device dev;
  const ps_tensor *x; /* the input on the device (the caller's or x_dev) */
  gboolean dropped;
  float *u;         /* (B*T, H) device: dropout(hidden) when dropped */
  float *mask;      /* (B*T, H) device: the dropout scale per entry */
  float *mask_host; /* (B*T, H) host: the mask as drawn */
  int64_t cap_u, cap_mask, cap_mask_host;
  ps_tensor *values, *dhidden;
  ps_tensor *x_dev, *dv_dev; /* device copies of host inputs / gradients */
} value_head;

static const ps_config_key val_config[] = {
    {"hidden", PS_TYPE_INT, "128", 1, 1 << 17, NULL, "LLM hidden width H"},
    {"dropout", PS_TYPE_FLOAT, "0.1", 0, 0.99, NULL, "dropout on the hidden states (training only)"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL, "std of the N(0, std) weight initialisation"},
    {NULL},
};
static const ps_port_desc val_inputs[] = {
    {"hidden", "[B, T, H] f32 hidden states", FALSE}, {NULL}};
static const ps_port_desc val_outputs[] = {{"values", "[B, T] f32 state values", FALSE}, {NULL}};

static void val_destroy(void *self) {
  value_head *v = self;
  if (!v) return;
  ps_linear_clear(&v->score);
  hd_params_clear(&v->P);
  hd_buf_free(v->k, &v->u, &v->cap_u);
  hd_buf_free(v->k, &v->mask, &v->cap_mask);
  g_free(v->mask_host);
  ps_tensor_free(v->values);
  ps_tensor_free(v->dhidden);
  ps_tensor_free(v->x_dev);
  ps_tensor_free(v->dv_dev);
  g_free(v);
}

static void *val_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  value_head *v = g_new0(value_head, 1);
  v->H = ps_config_int(cfg, "hidden");
  v->p = (float)ps_config_float(cfg, "dropout");
  hd_params_init(&v->P);
  int f;
  v->dev = ps_context_device(ctx);
  v->k = hd_kernels(ctx, "critic.value", error);
  if (!v->k || (f = hd_linear_add(&v->P, &v->score, "score", v->H, 1,
                                  ps_config_float(cfg, "init_std"), ps_context_rng(ctx), error)) < 0) {
    val_destroy(v);
    return NULL;
  }
  ps_linear_bind(&v->score, v->P.items, (guint)f);
  if (!hd_params_move_to(&v->P, v->dev, error)) {
    g_prefix_error(error, "critic.value: ");
    val_destroy(v);
    return NULL;
  }
  return v;
}

static ps_param_list val_params(void *self) { return hd_params_list(&((value_head *)self)->P); }

static gboolean val_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  value_head *v = self;
  const ps_tensor *x = ps_ports_require(in, "critic.value", "hidden", error);
  const int64_t hs[] = {-1, -1, v->H};
  if (!x || !ps_tensor_check(x, "critic.value input hidden", PS_DTYPE_F32, 3, hs, error))
    return FALSE;
  const int64_t B = x->shape[0], T = x->shape[1], n = B * T * v->H;
  const int64_t vs[] = {B, T};
  const ps_kernels *k = v->k;
  if (!ps_tensor_ensure_on(&v->values, v->dev, PS_DTYPE_F32, 2, vs, error)) return FALSE;
  const ps_tensor *xd = ps_tensor_on_device(x, v->dev, &v->x_dev, error);
  if (!xd) return FALSE;
  const float *u = ps_f32(xd);
  v->dropped = v->p > 0 && ps_context_training(ctx);
  if (v->dropped) {
    if (!hd_buf(k, &v->u, &v->cap_u, n, error) || !hd_buf(k, &v->mask, &v->cap_mask, n, error))
      return FALSE;
    if (v->cap_mask_host < n) {
      g_free(v->mask_host);
      v->mask_host = g_new(float, n);
      v->cap_mask_host = n;
    }
    /* Inverted dropout as torch: kept entries scaled by 1 / (1 - p). */
    ps_rng *rng = ps_context_rng(ctx);
    const float keep = 1.0f - v->p, inv = 1.0f / keep;
    for (int64_t i = 0; i < n; i++) v->mask_host[i] = ps_rng_uniform(rng) < keep ? inv : 0.0f;
    k->copy_to_device(v->mask, v->mask_host, sizeof(float) * (size_t)n);
    k->mul_forward(v->u, ps_f32(xd), v->mask, n);
    u = v->u;
  }
  if (!ps_linear_forward(&v->score, k, ctx, ps_f32(v->values), u, B * T, error)) return FALSE;
  v->B = B;
  v->T = T;
  v->x = xd;
  ps_ports_set(out, "values", v->values);
  return TRUE;
}

static gboolean val_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  value_head *v = self;
  if (!v->x) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "critic.value: backward before forward");
    return FALSE;
  }
  const int64_t B = v->B, T = v->T, H = v->H, n = B * T * H;
  const ps_kernels *k = v->k;
  ps_port *dp = hd_wants_grad(grad_in, "hidden");
  if (dp) {
    const int64_t hs[] = {B, T, H};
    if (!ps_tensor_ensure_on(&v->dhidden, v->dev, PS_DTYPE_F32, 3, hs, error)) return FALSE;
    k->mem_zero(v->dhidden->data, v->dhidden->nbytes);
    dp->tensor = v->dhidden;
  }
  const ps_tensor *dv = ps_ports_get(grad_out, "values");
  if (!dv) return TRUE;
  if (!ps_tensor_check(dv, "critic.value gradient of values", PS_DTYPE_F32, 2, v->values->shape,
                       error))
    return FALSE;
  dv = ps_tensor_on_device(dv, v->dev, &v->dv_dev, error);
  if (!dv) return FALSE;
  if (!v->dropped) {
    ps_linear_backward(&v->score, k, dp ? ps_f32(v->dhidden) : NULL, ps_f32(dv), B * T);
    return TRUE;
  }
  float *du = NULL;
  if (dp) {
    du = ps_context_scratch(ctx, sizeof(float) * (size_t)n);
    k->mem_zero(du, sizeof(float) * (size_t)n);
  }
  ps_linear_backward(&v->score, k, du, ps_f32(dv), B * T);
  /* dx += du * mask (0 where dropped, 1 / (1 - p) where kept). */
  if (dp) k->mul_backward(ps_f32(v->dhidden), NULL, du, ps_f32(v->x), v->mask, n);
  return TRUE;
}

static const ps_component_vtable val_vtable = {
    sizeof(ps_component_vtable), val_create, val_destroy, val_params, val_forward, val_backward,
};

const ps_component_desc hd_value_desc = {
    sizeof(ps_component_desc),
    PS_KIND_CRITIC,
    "critic.value",
    "Value head for GAE: dropout (training only) then Linear(hidden, 1) on every position "
    "(score.weight, score.bias). Role full.",
    val_config,
    val_inputs,
    val_outputs,
    &val_vtable,
    NULL,
};
