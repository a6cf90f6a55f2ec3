/* losses.c — training objectives as graph components:
 *   loss.segmentation   BCE-with-logits + soft Dice of a predicted mask (the
 *                       seg term of Eq. 2), with hard Dice/IoU as metrics
 *   loss.weighted_sum   sum_i w_i * x_i of scalar losses (Eq. 2's lambdas)
 * Both have a backward, so stage.fit can minimise them directly.
 *
 * Devices: every tensor a component makes (losses, metrics, gradients) is on
 * the context's device, one-element losses included; the scalars the host
 * combines (per-mask losses, incoming loss gradients, the weighted sum's
 * terms) come back with copy_to_host. Inputs on another device are copied
 * over (caches freed in destroy). */
#include <math.h>
#include <pathseg/error.h>
#include <pathseg/kernels.h>
#include <pathseg/plugin.h>
#include <string.h>

/* F32 tensors on `device` kept between steps (ps_tensor_ensure_on). */
static gboolean ensure(ps_tensor **t, ps_device device, int32_t ndim, const int64_t *shape,
                       GError **error) {
  return ps_tensor_ensure_on(t, device, PS_DTYPE_F32, ndim, shape, error);
}

/* Writes the host value v into the one-element device tensor t. */
static void set_scalar(const ps_kernels *k, ps_tensor *t, float v) {
  k->copy_to_device(t->data, &v, sizeof v);
}

/* The value of a one-element f32 tensor on any device. */
static float get_scalar(const ps_tensor *t) { return ps_tensor_item(t); }

/* ---------------------------------------------------------------------- */
/* loss.segmentation */

typedef struct {
  const ps_kernels *k;
  ps_device dev;
  double w_bce, w_dice;
  double pos_weight; /* BCE weight of the positive pixels (PyTorch's pos_weight); 1 = plain */
  ps_dice_desc dice;
  gboolean upsample;
  const ps_tensor *logits, *target; /* on the device (the caller's or the caches) */
  ps_tensor *logits_dev, *target_dev; /* device copies of host inputs */
  ps_tensor *up;      /* (B, H, W) logits at the target's size */
  ps_tensor *dup;     /* (B, H, W) gradient there */
  ps_tensor *dlogits; /* (B, 1, h, w) */
  ps_tensor *bce, *dsc; /* (B) per-mask losses */
  ps_tensor *scales;  /* (2, B) d loss / d per-mask BCE and Dice */
  ps_tensor *counts;  /* (B, 3) i64 hard overlap counts (mask_counts) */
  float *h_bce, *h_dsc; /* (B) host copies of the per-mask losses */
  int64_t *h_counts;    /* (B, 3) host copy of counts */
  int64_t h_cap;        /* masks the host buffers hold */
  ps_tensor *loss, *hard_dice, *iou; /* (1) */
  int64_t B, H, W, h, w;
} segloss;

static const ps_config_key seg_config[] = {
    {"bce_weight", PS_TYPE_FLOAT, "1.0", 0, 1e6, NULL, "weight of the BCE-with-logits term"},
    {"dice_weight", PS_TYPE_FLOAT, "1.0", 0, 1e6, NULL, "weight of the soft Dice term"},
    {"pos_weight", PS_TYPE_FLOAT, "1.0", 0, 1e6, NULL,
     "BCE weight of positive pixels, as PyTorch's BCEWithLogitsLoss(pos_weight): "
     "pw * t * softplus(-z) + (1 - t) * softplus(z); > 1 counters small foregrounds"},
    {"dice", PS_TYPE_ENUM, "lisa", PS_NO_RANGE, "lisa|monai|monai_squared",
     "soft Dice flavour: LISA (scale 1000, eps 1e-6), MONAI (eps 1e-5), MONAI squared (MedSAM)"},
    {"upsample", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "compare at the target's size (bilinear upsampling of the logits), as LISA and MedSAM do"},
    {NULL},
};
static const ps_port_desc seg_inputs[] = {
    {"logits", "[B, 1, h, w] f32 mask logits", FALSE},
    {"target", "[B, 1, H, W] f32 in {0, 1} (or soft)", FALSE},
    {NULL},
};
static const ps_port_desc seg_outputs[] = {
    {"loss", "[1] bce_weight * BCE + dice_weight * Dice, mean over masks", FALSE},
    {"dice", "[1] hard Dice of (logits > 0) against (target > 0.5), mean over masks", FALSE},
    {"iou", "[1] hard IoU, mean over masks", FALSE},
    {NULL},
};

static void seg_destroy(void *self) {
  segloss *s = self;
  ps_tensor *all[] = {s->up,   s->dup,       s->dlogits, s->bce,        s->dsc,       s->scales,
                      s->loss, s->hard_dice, s->iou,     s->logits_dev, s->target_dev};
  for (size_t i = 0; i < G_N_ELEMENTS(all); i++) ps_tensor_free(all[i]);
  ps_tensor_free(s->counts);
  g_free(s->h_bce);
  g_free(s->h_dsc);
  g_free(s->h_counts);
  g_free(s);
}

/* The per-step buffers for B masks: host copies of the per-mask values and
 * the device counts (reallocated only when B grows). */
static gboolean ensure_host(segloss *s, int64_t B, GError **error) {
  const int64_t shape[2] = {B, 3};
  if (!ps_tensor_ensure_on(&s->counts, s->dev, PS_DTYPE_I64, 2, shape, error)) return FALSE;
  if (B <= s->h_cap) return TRUE;
  s->h_bce = g_renew(float, s->h_bce, B);
  s->h_dsc = g_renew(float, s->h_dsc, B);
  s->h_counts = g_renew(int64_t, s->h_counts, 3 * B);
  s->h_cap = B;
  return TRUE;
}

static void *seg_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  segloss *s = g_new0(segloss, 1);
  s->dev = ps_context_device(ctx);
  s->k = ps_context_kernels(ctx, error);
  s->w_bce = ps_config_float(cfg, "bce_weight");
  s->w_dice = ps_config_float(cfg, "dice_weight");
  s->pos_weight = ps_config_float(cfg, "pos_weight");
  s->upsample = ps_config_bool(cfg, "upsample");
  const char *flavour = ps_config_string(cfg, "dice");
  if (strcmp(flavour, "lisa") == 0)
    s->dice = (ps_dice_desc){1000.0f, 1e-6f, 1e-6f, 0};
  else
    s->dice = (ps_dice_desc){1.0f, 1e-5f, 1e-5f, strcmp(flavour, "monai_squared") == 0};
  const int64_t one[1] = {1};
  if (!s->k || !ensure(&s->loss, s->dev, 1, one, error) ||
      !ensure(&s->hard_dice, s->dev, 1, one, error) || !ensure(&s->iou, s->dev, 1, one, error)) {
    seg_destroy(s);
    return NULL;
  }
  return s;
}

/* log(1 + exp(x)) without overflow. */
static double softplus(double x) { return fmax(x, 0) + log1p(exp(-fabs(x))); }

/* Mean over P pixels of pw * t * softplus(-z) + (1 - t) * softplus(z), per
 * mask. out: (B); z, t: (B, P). With pw = 1 it equals the kernel's
 * bce_logits_forward; it runs only when pos_weight != 1. */
static void bce_pos_forward(float *out, const float *z, const float *t, int64_t B, int64_t P, double pw) {
  for (int64_t b = 0; b < B; b++) {
    double acc = 0;
    for (int64_t i = 0; i < P; i++) {
      double zi = z[b * P + i], ti = t[b * P + i];
      acc += pw * ti * softplus(-zi) + (1 - ti) * softplus(zi);
    }
    out[b] = (float)(acc / (double)P);
  }
}

/* dz += scale[b] / P * (pw * t * (sigmoid(z) - 1) + (1 - t) * sigmoid(z)).
 * dz, z, t: (B, P); scale: (B). */
static void bce_pos_backward(float *dz, const float *scale, const float *z, const float *t, int64_t B,
                             int64_t P, double pw) {
  for (int64_t b = 0; b < B; b++) {
    double k = scale[b] / (double)P;
    for (int64_t i = 0; i < P; i++) {
      double zi = z[b * P + i], ti = t[b * P + i];
      double sg = zi >= 0 ? 1 / (1 + exp(-zi)) : exp(zi) / (1 + exp(zi));
      dz[b * P + i] += (float)(k * (pw * ti * (sg - 1) + (1 - ti) * sg));
    }
  }
}

/* A host pointer to the floats of t: its data on the CPU, otherwise a copy
 * in *buf (g_free it). DEVICE: host round trip, needs a kernel — the
 * pos_weight BCE has no table entry. */
static const float *host_floats(const ps_tensor *t, float **buf) {
  *buf = NULL;
  if (t->device == PS_DEVICE_CPU) return ps_f32(t);
  const ps_kernels *k = ps_kernels_get(t->device, NULL);
  *buf = g_new(float, ps_tensor_numel(t));
  if (k) k->copy_to_host(*buf, t->data, t->nbytes);
  return *buf;
}

static gboolean seg_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  segloss *s = self;
  const ps_kernels *k = s->k;
  const ps_tensor *x = ps_ports_require(in, "loss.segmentation", "logits", error);
  const ps_tensor *t = x ? ps_ports_require(in, "loss.segmentation", "target", error) : NULL;
  const int64_t any4[4] = {-1, 1, -1, -1};
  if (!t || !ps_tensor_check(x, "loss.segmentation logits", PS_DTYPE_F32, 4, any4, error) ||
      !ps_tensor_check(t, "loss.segmentation target", PS_DTYPE_F32, 4, any4, error))
    return FALSE;
  if (t->shape[0] != x->shape[0]) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "loss.segmentation: %" G_GINT64_FORMAT
                " logit masks but %" G_GINT64_FORMAT " targets", x->shape[0], t->shape[0]);
    return FALSE;
  }
  s->B = x->shape[0];
  s->h = x->shape[2];
  s->w = x->shape[3];
  s->H = s->upsample ? t->shape[2] : s->h;
  s->W = s->upsample ? t->shape[3] : s->w;
  if (!s->upsample && (t->shape[2] != s->h || t->shape[3] != s->w)) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "loss.segmentation: upsample is off but logits are %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " and targets %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT,
                s->h, s->w, t->shape[2], t->shape[3]);
    return FALSE;
  }
  s->logits = ps_tensor_on_device(x, s->dev, &s->logits_dev, error);
  s->target = s->logits ? ps_tensor_on_device(t, s->dev, &s->target_dev, error) : NULL;
  if (!s->target) return FALSE;
  const int64_t up_shape[3] = {s->B, s->H, s->W}, b_shape[1] = {s->B};
  if (!ensure(&s->up, s->dev, 3, up_shape, error) || !ensure(&s->bce, s->dev, 1, b_shape, error) ||
      !ensure(&s->dsc, s->dev, 1, b_shape, error))
    return FALSE;
  if (s->upsample)
    k->resize_forward(ps_f32(s->up), ps_f32(s->logits), s->B, s->h, s->w, s->H, s->W, 0, 0,
                      PS_RESIZE_BILINEAR);
  else
    k->copy_on_device(s->up->data, s->logits->data, s->logits->nbytes);
  const int64_t P = s->H * s->W, B = s->B;
  if (!ensure_host(s, B, error)) return FALSE;
  float *bce_h = s->h_bce, *dsc_h = s->h_dsc;
  int64_t *counts = s->h_counts;
  if (s->pos_weight != 1.0) {
    /* The pos_weight BCE runs on the host: host views of the upsampled
     * logits and the target. */
    float *up_buf, *t_buf;
    const float *up_h = host_floats(s->up, &up_buf), *t_h = host_floats(t, &t_buf);
    bce_pos_forward(bce_h, up_h, t_h, B, P, s->pos_weight);
    g_free(up_buf);
    g_free(t_buf);
    k->copy_to_device(s->bce->data, bce_h, sizeof(float) * (size_t)B);
  } else {
    k->bce_logits_forward(ps_f32(s->bce), ps_f32(s->up), ps_f32(s->target), B, P);
    k->copy_to_host(bce_h, s->bce->data, sizeof(float) * (size_t)B);
  }
  k->dice_forward(ps_f32(s->dsc), ps_f32(s->up), ps_f32(s->target), B, P, &s->dice);
  k->copy_to_host(dsc_h, s->dsc->data, sizeof(float) * (size_t)B);
  /* hard metrics: the overlap counts on the device, 3 integers per mask back */
  k->mask_counts(s->counts->data, ps_f32(s->up), ps_f32(s->target), B, P);
  k->copy_to_host(counts, s->counts->data, sizeof(int64_t) * 3 * (size_t)B);
  double total = 0, hard = 0, iou = 0;
  for (int64_t b = 0; b < B; b++) {
    total += s->w_bce * bce_h[b] + s->w_dice * dsc_h[b];
    const int64_t np = counts[3 * b], ng = counts[3 * b + 1], inter = counts[3 * b + 2];
    /* Both empty: a perfect answer. */
    hard += np + ng ? 2.0 * (double)inter / (double)(np + ng) : 1.0;
    iou += np + ng - inter ? (double)inter / (double)(np + ng - inter) : 1.0;
  }
  set_scalar(k, s->loss, (float)(total / (double)B));
  set_scalar(k, s->hard_dice, (float)(hard / (double)B));
  set_scalar(k, s->iou, (float)(iou / (double)B));
  ps_ports_set(out, "loss", s->loss);
  ps_ports_set(out, "dice", s->hard_dice);
  ps_ports_set(out, "iou", s->iou);
  return TRUE;
}

static gboolean seg_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  segloss *s = self;
  const ps_kernels *k = s->k;
  const ps_tensor *dl = ps_ports_get(grad_out, "loss");
  ps_port *p = ps_ports_find(grad_in, "logits");
  if (!dl || !p || !p->needs_grad) return TRUE;
  const int64_t P = s->H * s->W, B = s->B;
  const int64_t up_shape[3] = {B, s->H, s->W}, sc_shape[1] = {2 * (B > 0 ? B : 1)};
  if (!ensure(&s->dup, s->dev, 3, up_shape, error) ||
      !ensure(&s->dlogits, s->dev, s->logits->ndim, s->logits->shape, error) ||
      !ensure(&s->scales, s->dev, 1, sc_shape, error))
    return FALSE;
  k->mem_zero(s->dup->data, s->dup->nbytes);
  /* d loss / d per-mask term = weight / B: (2, B) [BCE row, Dice row]. */
  const double g = get_scalar(dl);
  float *sc = g_new(float, 2 * (B > 0 ? B : 1));
  for (int64_t b = 0; b < B; b++) {
    sc[b] = (float)(g * s->w_bce / (double)B);
    sc[B + b] = (float)(g * s->w_dice / (double)B);
  }
  k->copy_to_device(s->scales->data, sc, sizeof(float) * (size_t)(2 * B));
  if (s->pos_weight != 1.0) {
    /* dup is zero here: the host adds into a zeroed copy, which replaces it. */
    float *up_buf, *t_buf;
    const float *up_h = host_floats(s->up, &up_buf), *t_h = host_floats(s->target, &t_buf);
    if (s->dev == PS_DEVICE_CPU) {
      bce_pos_backward(ps_f32(s->dup), sc, up_h, t_h, B, P, s->pos_weight);
    } else {
      float *dup_h = g_new0(float, B * P);
      bce_pos_backward(dup_h, sc, up_h, t_h, B, P, s->pos_weight);
      k->copy_to_device(s->dup->data, dup_h, s->dup->nbytes);
      g_free(dup_h);
    }
    g_free(up_buf);
    g_free(t_buf);
  } else {
    k->bce_logits_backward(ps_f32(s->dup), ps_f32(s->scales), ps_f32(s->up), ps_f32(s->target), B,
                           P);
  }
  g_free(sc);
  k->dice_backward(ps_f32(s->dup), ps_f32(s->scales) + B, ps_f32(s->up), ps_f32(s->target), B, P,
                   &s->dice);
  k->mem_zero(s->dlogits->data, s->dlogits->nbytes);
  if (s->upsample)
    k->resize_backward(ps_f32(s->dlogits), ps_f32(s->dup), B, s->h, s->w, s->H, s->W, 0, 0,
                       PS_RESIZE_BILINEAR);
  else
    k->copy_on_device(s->dlogits->data, s->dup->data, s->dup->nbytes);
  p->tensor = s->dlogits;
  return TRUE;
}

static const ps_component_vtable seg_vtable = {
    sizeof(ps_component_vtable), seg_create, seg_destroy, NULL, seg_forward, seg_backward,
};
static const ps_component_desc seg_desc = {
    sizeof(ps_component_desc), PS_KIND_METRIC, "loss.segmentation",
    "BCE-with-logits + soft Dice between predicted mask logits and a target mask, with hard "
    "Dice and IoU as metrics.",
    seg_config, seg_inputs, seg_outputs, &seg_vtable, NULL,
};

/* ---------------------------------------------------------------------- */
/* loss.weighted_sum */

#define SUM_TERMS 4
static const char *const term_names[SUM_TERMS] = {"a", "b", "c", "d"};

typedef struct {
  const ps_kernels *k;
  ps_device dev;
  double w[SUM_TERMS];
  ps_tensor *loss;
  ps_tensor *grad[SUM_TERMS];
} wsum;

static const ps_config_key sum_config[] = {
    {"weights", PS_TYPE_FLOAT_LIST, "[1, 1, 1, 1]", PS_NO_RANGE, NULL,
     "weights of the inputs a, b, c, d (Eq. 2: [lambda_cot, lambda_seg])"},
    {NULL},
};
static const ps_port_desc sum_inputs[] = {
    {"a", "[1] f32", FALSE}, {"b", "[1] f32", TRUE}, {"c", "[1] f32", TRUE}, {"d", "[1] f32", TRUE},
    {NULL},
};
static const ps_port_desc sum_outputs[] = {{"loss", "[1] the weighted sum", FALSE}, {NULL}};

static void sum_destroy(void *self) {
  wsum *s = self;
  ps_tensor_free(s->loss);
  for (int i = 0; i < SUM_TERMS; i++) ps_tensor_free(s->grad[i]);
  g_free(s);
}

static void *sum_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  size_t n = 0;
  const double *w = ps_config_float_list(cfg, "weights", &n);
  if (n == 0 || n > SUM_TERMS) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "weights: expected 1 to %d numbers, got %zu",
                SUM_TERMS, n);
    return NULL;
  }
  wsum *s = g_new0(wsum, 1);
  for (size_t i = 0; i < n; i++) s->w[i] = w[i];
  s->dev = ps_context_device(ctx);
  s->k = ps_context_kernels(ctx, error);
  const int64_t one[1] = {1};
  gboolean ok = s->k && ensure(&s->loss, s->dev, 1, one, error);
  for (int i = 0; ok && i < SUM_TERMS; i++) ok = ensure(&s->grad[i], s->dev, 1, one, error);
  if (!ok) {
    sum_destroy(s);
    return NULL;
  }
  return s;
}

static gboolean sum_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  wsum *s = self;
  double total = 0;
  for (int i = 0; i < SUM_TERMS; i++) {
    const ps_tensor *t = ps_ports_get(in, term_names[i]);
    if (!t) continue;
    if (t->dtype != PS_DTYPE_F32 || ps_tensor_numel(t) != 1) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "loss.weighted_sum: input '%s' is not a one-element F32",
                  term_names[i]);
      return FALSE;
    }
    total += s->w[i] * get_scalar(t); /* the term from any device */
  }
  set_scalar(s->k, s->loss, (float)total);
  ps_ports_set(out, "loss", s->loss);
  return TRUE;
}

static gboolean sum_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  wsum *s = self;
  const ps_tensor *dl = ps_ports_get(grad_out, "loss");
  if (!dl) return TRUE;
  const double g = get_scalar(dl);
  for (int i = 0; i < SUM_TERMS; i++) {
    ps_port *p = ps_ports_find(grad_in, term_names[i]);
    if (!p || !p->needs_grad) continue;
    set_scalar(s->k, s->grad[i], (float)(s->w[i] * g));
    p->tensor = s->grad[i];
  }
  return TRUE;
}

static const ps_component_vtable sum_vtable = {
    sizeof(ps_component_vtable), sum_create, sum_destroy, NULL, sum_forward, sum_backward,
};
static const ps_component_desc sum_desc = {
    sizeof(ps_component_desc), PS_KIND_METRIC, "loss.weighted_sum",
    "A weighted sum of up to four scalar losses.",
    sum_config, sum_inputs, sum_outputs, &sum_vtable, NULL,
};

static const ps_component_desc *const components[] = {&seg_desc, &sum_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "losses",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Segmentation loss (BCE + Dice) and weighted sums of losses.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
