/* value_head.c — the `critic.value` component: a value head on the LLM's
 * hidden states for GAE, values[b, t] = score(dropout(hidden[b, t])), with
 * score a Linear(H, 1) (score.weight [1, H], score.bias [1]) and inverted
 * dropout of probability p in training only (TRL's ValueHead: dropout then
 * linear). */
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
  const ps_tensor *x;
  gboolean dropped;
  float *u; /* (B*T, H) dropout(hidden) when dropped */
  uint8_t *keep;
  int64_t cap_u, cap_keep;
  ps_tensor *values, *dhidden;
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
  free(v->u);
  g_free(v->keep);
  ps_tensor_free(v->values);
  ps_tensor_free(v->dhidden);
  g_free(v);
}

static void *val_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  value_head *v = g_new0(value_head, 1);
  v->H = ps_config_int(cfg, "hidden");
  v->p = (float)ps_config_float(cfg, "dropout");
  hd_params_init(&v->P);
  int f;
  v->k = hd_cpu_kernels(ctx, "critic.value", error);
  if (!v->k || (f = hd_linear_add(&v->P, &v->score, "score", v->H, 1,
                                  ps_config_float(cfg, "init_std"), ps_context_rng(ctx), error)) < 0) {
    val_destroy(v);
    return NULL;
  }
  ps_linear_bind(&v->score, v->P.items, (guint)f);
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
  if (!hd_ensure(&v->values, PS_DTYPE_F32, 2, vs, error)) return FALSE;
  const float *u = ps_f32(x);
  v->dropped = v->p > 0 && ps_context_training(ctx);
  if (v->dropped) {
    if (!hd_buf(&v->u, &v->cap_u, n, error)) return FALSE;
    if (v->cap_keep < n) {
      g_free(v->keep);
      v->keep = g_new(uint8_t, n);
      v->cap_keep = n;
    }
    /* Inverted dropout as torch: kept entries scaled by 1 / (1 - p). */
    ps_rng *rng = ps_context_rng(ctx);
    const float keep = 1.0f - v->p, inv = 1.0f / keep;
    for (int64_t i = 0; i < n; i++) {
      v->keep[i] = ps_rng_uniform(rng) < keep;
      v->u[i] = v->keep[i] ? ps_f32(x)[i] * inv : 0.0f;
    }
    u = v->u;
  }
  if (!ps_linear_forward(&v->score, v->k, ctx, ps_f32(v->values), u, B * T, error)) return FALSE;
  v->B = B;
  v->T = T;
  v->x = x;
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
  ps_port *dp = hd_wants_grad(grad_in, "hidden");
  if (dp) {
    const int64_t hs[] = {B, T, H};
    if (!hd_ensure(&v->dhidden, PS_DTYPE_F32, 3, hs, error)) return FALSE;
    memset(v->dhidden->data, 0, v->dhidden->nbytes);
    dp->tensor = v->dhidden;
  }
  const ps_tensor *dv = ps_ports_get(grad_out, "values");
  if (!dv) return TRUE;
  if (!ps_tensor_check(dv, "critic.value gradient of values", PS_DTYPE_F32, 2, v->values->shape,
                       error))
    return FALSE;
  if (!v->dropped) {
    ps_linear_backward(&v->score, v->k, dp ? ps_f32(v->dhidden) : NULL, ps_f32(dv), B * T);
    return TRUE;
  }
  float *du = NULL;
  if (dp) {
    du = ps_context_scratch(ctx, sizeof(float) * (size_t)n);
    memset(du, 0, sizeof(float) * (size_t)n);
  }
  ps_linear_backward(&v->score, v->k, du, ps_f32(dv), B * T);
  if (dp) {
    const float inv = 1.0f / (1.0f - v->p);
    float *dx = ps_f32(v->dhidden);
    for (int64_t i = 0; i < n; i++)
      if (v->keep[i]) dx[i] += du[i] * inv;
  }
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
