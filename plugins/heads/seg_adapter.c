/* seg_adapter.c — the `adapter.seg` component: LISA's text_hidden_fcs, which
 * turns the LLM's hidden state for a <SEG> token into the mask decoder's
 * prompt embedding: Linear(H, H) -> ReLU -> Linear(H, out) (Dropout 0).
 *
 * Which hidden state (spec/model.md §3, LISA issue #71): the one at the
 * position IMMEDIATELY BEFORE <SEG>, i.e. the position whose output predicts
 * <SEG>. The caller passes the position of the <SEG> token itself in
 * `seg_positions`, and this component reads hidden[b, pos - 1]. pos may be T
 * (the <SEG> token was sampled from the last hidden state and not fed back);
 * pos = -1 marks a sequence without <SEG>: its prompt is zero and passes no
 * gradient. Anything else outside [1, T] is an error.
 *
 * Runs on the context's device: the positions are control data read on the
 * host; hidden rows are gathered and scattered with device copies. */
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "heads.h"

typedef struct {
  int64_t H, out;
  const ps_kernels *k;
  hd_params P;
  ps_linear fc1, fc2;
  /* last forward */
  int64_t B, T;
  ps_device dev;
  int64_t *src; /* (B) host: hidden row used (b*T + pos - 1), or -1 */
  float *x, *h, *a; /* (B, H) gathered, fc1 output, ReLU output (device) */
  int64_t cap_x, cap_h, cap_a, cap_src;
  gboolean have;
  ps_tensor *prompt, *dhidden;
  ps_tensor *hid_dev, *dt_dev; /* device copies of host inputs / gradients */
} seg_adapter;

static const ps_config_key seg_config[] = {
    {"hidden", PS_TYPE_INT, "128", 1, 1 << 17, NULL, "LLM hidden width H"},
    {"out", PS_TYPE_INT, "256", 1, 1 << 16, NULL, "prompt width (SAM prompt embedding 256)"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL, "std of the N(0, std) weight initialisation"},
    {NULL},
};
static const ps_port_desc seg_inputs[] = {
    {"hidden", "[B, T, H] f32 last-layer hidden states (after the final norm)", FALSE},
    {"seg_positions",
     "[B] i32 position of the <SEG> token in each sequence (the state at pos - 1 is used); -1: "
     "none",
     FALSE},
    {NULL}};
static const ps_port_desc seg_outputs[] = {
    {"prompt", "[B, 1, out] f32 prompt embedding for the mask decoder", FALSE}, {NULL}};

static void seg_destroy(void *self) {
  seg_adapter *s = self;
  if (!s) return;
  ps_linear_clear(&s->fc1);
  ps_linear_clear(&s->fc2);
  hd_params_clear(&s->P);
  hd_buf_free(s->k, &s->x, &s->cap_x);
  hd_buf_free(s->k, &s->h, &s->cap_h);
  hd_buf_free(s->k, &s->a, &s->cap_a);
  g_free(s->src);
  ps_tensor_free(s->prompt);
  ps_tensor_free(s->dhidden);
  ps_tensor_free(s->hid_dev);
  ps_tensor_free(s->dt_dev);
  g_free(s);
}

static void *seg_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  seg_adapter *s = g_new0(seg_adapter, 1);
  s->H = ps_config_int(cfg, "hidden");
  s->out = ps_config_int(cfg, "out");
  hd_params_init(&s->P);
  const double std = ps_config_float(cfg, "init_std");
  ps_rng *rng = ps_context_rng(ctx);
  int f1, f2;
  s->dev = ps_context_device(ctx);
  s->k = hd_kernels(ctx, "adapter.seg", error);
  if (!s->k ||
      (f1 = hd_linear_add(&s->P, &s->fc1, "text_hidden_fcs.0.0", s->H, s->H, std, rng, error)) < 0 ||
      (f2 = hd_linear_add(&s->P, &s->fc2, "text_hidden_fcs.0.2", s->H, s->out, std, rng, error)) < 0) {
    seg_destroy(s);
    return NULL;
  }
  ps_linear_bind(&s->fc1, s->P.items, (guint)f1);
  ps_linear_bind(&s->fc2, s->P.items, (guint)f2);
  if (!hd_params_move_to(&s->P, s->dev, error)) {
    g_prefix_error(error, "adapter.seg: ");
    seg_destroy(s);
    return NULL;
  }
  return s;
}

static ps_param_list seg_params(void *self) { return hd_params_list(&((seg_adapter *)self)->P); }

static gboolean seg_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  seg_adapter *s = self;
  const ps_tensor *hid = ps_ports_require(in, "adapter.seg", "hidden", error);
  const ps_tensor *pos = hid ? ps_ports_require(in, "adapter.seg", "seg_positions", error) : NULL;
  const int64_t hs[] = {-1, -1, s->H};
  if (!pos || !ps_tensor_check(hid, "adapter.seg input hidden", PS_DTYPE_F32, 3, hs, error))
    return FALSE;
  const int64_t B = hid->shape[0], T = hid->shape[1], H = s->H;
  const int64_t ps[] = {B};
  if (pos->dtype == PS_DTYPE_I64) {
    if (!ps_tensor_check(pos, "adapter.seg input seg_positions", PS_DTYPE_I64, 1, ps, error))
      return FALSE;
  } else if (!ps_tensor_check(pos, "adapter.seg input seg_positions", PS_DTYPE_I32, 1, ps, error)) {
    return FALSE;
  }
  if (s->cap_src < B) {
    g_free(s->src);
    s->src = g_new(int64_t, B);
    s->cap_src = B;
  }
  /* The positions decide which rows are read: host data (a copy when they
   * come from a device). */
  g_autoptr(ps_tensor) pos_host = NULL;
  if (pos->device != PS_DEVICE_CPU) {
    pos_host = ps_tensor_copy(pos, error);
    if (!pos_host) return FALSE;
    pos = pos_host;
  }
  for (int64_t b = 0; b < B; b++) {
    int64_t p = pos->dtype == PS_DTYPE_I64 ? ((const int64_t *)pos->data)[b]
                                            : ((const int32_t *)pos->data)[b];
    if (p == -1) {
      s->src[b] = -1;
      continue;
    }
    if (p < 1 || p > T) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "adapter.seg: seg_positions[%" G_GINT64_FORMAT "] = %" G_GINT64_FORMAT
                  " is outside [1, %" G_GINT64_FORMAT "] (the state before <SEG> is used; -1 "
                  "marks a sequence without <SEG>)",
                  b, p, T);
      return FALSE;
    }
    s->src[b] = b * T + p - 1;
  }
  const int64_t os[] = {B, 1, s->out};
  const ps_kernels *k = s->k;
  if (!hd_buf(k, &s->x, &s->cap_x, B * H, error) || !hd_buf(k, &s->h, &s->cap_h, B * H, error) ||
      !hd_buf(k, &s->a, &s->cap_a, B * H, error) ||
      !ps_tensor_ensure_on(&s->prompt, s->dev, PS_DTYPE_F32, 3, os, error))
    return FALSE;
  const ps_tensor *hd = ps_tensor_on_device(hid, s->dev, &s->hid_dev, error);
  if (!hd) return FALSE;
  for (int64_t b = 0; b < B; b++) {
    if (s->src[b] < 0)
      k->mem_zero(s->x + b * H, sizeof(float) * (size_t)H);
    else
      k->copy_on_device(s->x + b * H, ps_f32(hd) + s->src[b] * H, sizeof(float) * (size_t)H);
  }
  if (!ps_linear_forward(&s->fc1, k, ctx, s->h, s->x, B, error)) return FALSE;
  k->relu_forward(s->a, s->h, B * H);
  if (!ps_linear_forward(&s->fc2, k, ctx, ps_f32(s->prompt), s->a, B, error)) return FALSE;
  for (int64_t b = 0; b < B; b++)
    if (s->src[b] < 0)
      k->mem_zero(ps_f32(s->prompt) + b * s->out, sizeof(float) * (size_t)s->out);
  s->B = B;
  s->T = T;
  s->have = TRUE;
  ps_ports_set(out, "prompt", s->prompt);
  return TRUE;
}

static gboolean seg_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  seg_adapter *s = self;
  if (!s->have) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "adapter.seg: backward before forward");
    return FALSE;
  }
  const int64_t B = s->B, T = s->T, H = s->H, O = s->out;
  const ps_kernels *k = s->k;
  ps_port *dp = hd_wants_grad(grad_in, "hidden");
  if (dp) {
    const int64_t hs[] = {B, T, H};
    if (!ps_tensor_ensure_on(&s->dhidden, s->dev, PS_DTYPE_F32, 3, hs, error)) return FALSE;
    k->mem_zero(s->dhidden->data, s->dhidden->nbytes);
    dp->tensor = s->dhidden;
  }
  const ps_tensor *dt = ps_ports_get(grad_out, "prompt");
  if (!dt) return TRUE;
  if (!ps_tensor_check(dt, "adapter.seg gradient of prompt", PS_DTYPE_F32, 3, s->prompt->shape,
                       error))
    return FALSE;
  dt = ps_tensor_on_device(dt, s->dev, &s->dt_dev, error);
  if (!dt) return FALSE;
  /* Rows without <SEG> were zeroed in forward: their gradient is dropped. */
  float *dy = ps_context_scratch(ctx, sizeof(float) * (size_t)(B * O));
  k->copy_on_device(dy, ps_f32(dt), sizeof(float) * (size_t)(B * O));
  for (int64_t b = 0; b < B; b++)
    if (s->src[b] < 0) k->mem_zero(dy + b * O, sizeof(float) * (size_t)O);
  const gboolean need_dx = dp != NULL;
  const gboolean need_dh = need_dx || hd_linear_trains(&s->fc1);
  float *da = NULL;
  if (need_dh) {
    da = ps_context_scratch(ctx, sizeof(float) * (size_t)(B * H));
    k->mem_zero(da, sizeof(float) * (size_t)(B * H));
  }
  ps_linear_backward(&s->fc2, k, da, dy, B);
  if (!need_dh) return TRUE;
  float *dh = ps_context_scratch(ctx, sizeof(float) * (size_t)(B * H));
  k->mem_zero(dh, sizeof(float) * (size_t)(B * H));
  k->relu_backward(dh, s->h, da, B * H);
  float *dx = NULL;
  if (need_dx) {
    dx = da;
    k->mem_zero(dx, sizeof(float) * (size_t)(B * H));
  }
  ps_linear_backward(&s->fc1, k, dx, dh, B);
  if (need_dx)
    for (int64_t b = 0; b < B; b++)
      if (s->src[b] >= 0) k->axpy(ps_f32(s->dhidden) + s->src[b] * H, 1.0f, dx + b * H, H);
  return TRUE;
}

static const ps_component_vtable seg_vtable = {
    sizeof(ps_component_vtable), seg_create, seg_destroy, seg_params, seg_forward, seg_backward,
};

const ps_component_desc hd_seg_adapter_desc = {
    sizeof(ps_component_desc),
    PS_KIND_ADAPTER,
    "adapter.seg",
    "LISA's text_hidden_fcs: the LLM hidden state just before each <SEG> token (seg_positions "
    "gives the <SEG> position; pos - 1 is read) through Linear-ReLU-Linear into the mask "
    "decoder's prompt width. Role full.",
    seg_config,
    seg_inputs,
    seg_outputs,
    &seg_vtable,
    NULL,
};
