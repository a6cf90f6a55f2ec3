/* test_losses.c — loss.segmentation against a double-precision reference of
 * LISA's BCE + Dice (after bilinear upsampling) and against central finite
 * differences; hard Dice/IoU on known masks; loss.weighted_sum. */
#include <pathseg/host.h>

#include "ps_test.h"

static ps_component *make(ps_registry *reg, ps_context *ctx, const char *name, const char *yaml) {
  GError *error = NULL;
  const ps_component_desc *d = ps_registry_find(reg, name);
  if (!d) return NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, name, &error);
  if (!cfg) {
    fprintf(stderr, "%s\n", error->message);
    g_clear_error(&error);
    return NULL;
  }
  ps_component *c = ps_component_new(d, cfg, name, ctx, &error);
  g_clear_error(&error);
  return c;
}

/* PyTorch bilinear, align_corners=False, one plane, in double. */
static double bilinear(const float *x, int h, int w, int H, int W, int oy, int ox) {
  double sy = fmax(((oy + 0.5) * h / H) - 0.5, 0), sx = fmax(((ox + 0.5) * w / W) - 0.5, 0);
  int y0 = (int)sy, x0 = (int)sx, y1 = MIN(y0 + 1, h - 1), x1 = MIN(x0 + 1, w - 1);
  double ly = sy - y0, lx = sx - x0;
  return (1 - ly) * ((1 - lx) * x[y0 * w + x0] + lx * x[y0 * w + x1]) +
         ly * ((1 - lx) * x[y1 * w + x0] + lx * x[y1 * w + x1]);
}

/* LISA: bce mean per mask; dice = 1 - (2 sum(p t)/1000 + 1e-6) / (sum(p)/1000 + sum(t)/1000 + 1e-6).
 * BCE with PyTorch's pos_weight pw: pw t softplus(-z) + (1 - t) softplus(z) (pw = 1: plain BCE). */
static double reference_pw(const float *logits, const float *target, int B, int h, int w, int H, int W,
                           double wb, double wd, double pw) {
  double total = 0;
  for (int b = 0; b < B; b++) {
    double bce = 0, pt = 0, ps = 0, ts = 0;
    for (int y = 0; y < H; y++)
      for (int x = 0; x < W; x++) {
        double z = bilinear(logits + b * h * w, h, w, H, W, y, x), t = target[(b * H + y) * W + x];
        double sp_pos = fmax(z, 0) + log1p(exp(-fabs(z))), sp_neg = sp_pos - z; /* softplus(z), softplus(-z) */
        bce += pw * t * sp_neg + (1 - t) * sp_pos;
        double p = 1 / (1 + exp(-z));
        pt += p * t;
        ps += p;
        ts += t;
      }
    double dice = 1 - (2 * pt / 1000 + 1e-6) / (ps / 1000 + ts / 1000 + 1e-6);
    total += wb * bce / (H * W) + wd * dice;
  }
  return total / B;
}

static double reference(const float *logits, const float *target, int B, int h, int w, int H, int W,
                        double wb, double wd) {
  return reference_pw(logits, target, B, h, w, H, W, wb, wd, 1.0);
}

int main(void) {
  GError *error = NULL;
  g_autoptr(ps_registry) reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 5);
  g_autoptr(ps_component) seg = make(reg, ctx, "loss.segmentation", "{bce_weight: 2.0, dice_weight: 0.5}");
  PS_CHECK(seg != NULL);
  if (!seg) return ps_test_finish();
  const ps_component_desc *d = ps_component_desc_of(seg);

  enum { B = 2, h = 5, w = 3, H = 11, W = 7 };
  g_autoptr(ps_tensor) logits = ps_tensor_new4(PS_DTYPE_F32, B, 1, h, w, NULL);
  g_autoptr(ps_tensor) target = ps_tensor_new4(PS_DTYPE_F32, B, 1, H, W, NULL);
  ps_rng rng;
  ps_rng_seed(&rng, 9);
  for (int i = 0; i < B * h * w; i++) ps_f32(logits)[i] = (float)(2 * ps_rng_normal(&rng));
  for (int i = 0; i < B * H * W; i++) ps_f32(target)[i] = ps_rng_uniform(&rng) < 0.4f;

  ps_port in_items[2] = {{"logits", logits, FALSE}, {"target", target, FALSE}};
  ps_ports in = {in_items, 2};
  ps_port out_items[3] = {{"loss", NULL, FALSE}, {"dice", NULL, FALSE}, {"iou", NULL, FALSE}};
  ps_ports out = {out_items, 3};
  PS_CHECK_OK(d->vtable->forward(ps_component_self(seg), ctx, &in, &out, &error), error);
  double want = reference(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5);
  PS_CHECK_NEAR(ps_f32(out_items[0].tensor)[0], want, 1e-5 * fabs(want) + 1e-6);

  /* Gradient w.r.t. the low-resolution logits, against central differences of the reference. */
  g_autoptr(ps_tensor) one = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  ps_f32(one)[0] = 1.0f;
  ps_port go_items[3] = {{"loss", one, FALSE}, {"dice", NULL, FALSE}, {"iou", NULL, FALSE}};
  ps_ports go = {go_items, 3};
  ps_port gi_items[2] = {{"logits", NULL, TRUE}, {"target", NULL, FALSE}};
  ps_ports gi = {gi_items, 2};
  PS_CHECK_OK(d->vtable->backward(ps_component_self(seg), ctx, &go, &gi, &error), error);
  PS_CHECK(gi_items[0].tensor != NULL && gi_items[1].tensor == NULL);
  for (int i = 0; gi_items[0].tensor && i < B * h * w; i++) {
    float saved = ps_f32(logits)[i];
    const double eps = 1e-3;
    ps_f32(logits)[i] = (float)(saved + eps);
    double up = reference(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5);
    ps_f32(logits)[i] = (float)(saved - eps);
    double down = reference(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5);
    ps_f32(logits)[i] = saved;
    double numeric = (up - down) / (2 * eps);
    PS_CHECK_NEAR(ps_f32(gi_items[0].tensor)[i], numeric, 1e-4 + 1e-3 * fabs(numeric));
  }

  /* pos_weight: value against the double reference, gradient against
   * central differences of it (the positive pixels weigh 3x in the BCE). */
  g_autoptr(ps_component) pw = make(reg, ctx, "loss.segmentation", "{bce_weight: 2.0, dice_weight: 0.5, pos_weight: 3.0}");
  PS_CHECK(pw != NULL);
  if (pw) {
    const ps_component_desc *pd = ps_component_desc_of(pw);
    PS_CHECK_OK(pd->vtable->forward(ps_component_self(pw), ctx, &in, &out, &error), error);
    double want_pw = reference_pw(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5, 3.0);
    PS_CHECK_NEAR(ps_f32(out_items[0].tensor)[0], want_pw, 1e-5 * fabs(want_pw) + 1e-6);
    /* it must differ from the plain loss, or the key did nothing */
    PS_CHECK(fabs(want_pw - want) > 0.1);
    gi_items[0].tensor = NULL;
    PS_CHECK_OK(pd->vtable->backward(ps_component_self(pw), ctx, &go, &gi, &error), error);
    PS_CHECK(gi_items[0].tensor != NULL);
    for (int i = 0; gi_items[0].tensor && i < B * h * w; i++) {
      float saved = ps_f32(logits)[i];
      const double eps = 1e-3;
      ps_f32(logits)[i] = (float)(saved + eps);
      double up = reference_pw(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5, 3.0);
      ps_f32(logits)[i] = (float)(saved - eps);
      double down = reference_pw(ps_f32(logits), ps_f32(target), B, h, w, H, W, 2.0, 0.5, 3.0);
      ps_f32(logits)[i] = saved;
      double numeric = (up - down) / (2 * eps);
      PS_CHECK_NEAR(ps_f32(gi_items[0].tensor)[i], numeric, 1e-4 + 1e-3 * fabs(numeric));
    }
  }

  /* Hard metrics: a prediction that equals the target gives Dice = IoU = 1;
   * disjoint gives 0; both empty counts as a perfect answer. */
  g_autoptr(ps_component) exact = make(reg, ctx, "loss.segmentation", "{upsample: false}");
  g_autoptr(ps_tensor) l2 = ps_tensor_new4(PS_DTYPE_F32, 3, 1, 2, 2, NULL);
  g_autoptr(ps_tensor) t2 = ps_tensor_new4(PS_DTYPE_F32, 3, 1, 2, 2, NULL);
  const float lv[12] = {5, -5, 5, -5, /* = target */ 5, 5, -5, -5, /* disjoint */ -5, -5, -5, -5};
  const float tv[12] = {1, 0, 1, 0, /**/ 0, 0, 1, 1, /**/ 0, 0, 0, 0};
  memcpy(l2->data, lv, sizeof lv);
  memcpy(t2->data, tv, sizeof tv);
  in_items[0].tensor = l2;
  in_items[1].tensor = t2;
  PS_CHECK_OK(ps_component_desc_of(exact)->vtable->forward(ps_component_self(exact), ctx, &in, &out, &error), error);
  PS_CHECK_NEAR(ps_f32(out_items[1].tensor)[0], (1.0 + 0.0 + 1.0) / 3, 1e-6);
  PS_CHECK_NEAR(ps_f32(out_items[2].tensor)[0], (1.0 + 0.0 + 1.0) / 3, 1e-6);

  /* Mismatched batch sizes are a clear error. */
  g_autoptr(ps_tensor) t3 = ps_tensor_new4(PS_DTYPE_F32, 2, 1, 2, 2, NULL);
  in_items[1].tensor = t3;
  PS_CHECK_FAILS_WITH(ps_component_desc_of(exact)->vtable->forward(ps_component_self(exact), ctx, &in, &out, &error),
                      error, "3 logit masks but 2 targets");

  /* loss.weighted_sum: value and gradients. */
  g_autoptr(ps_component) sum = make(reg, ctx, "loss.weighted_sum", "{weights: [0.5, 2.0]}");
  g_autoptr(ps_tensor) a = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  g_autoptr(ps_tensor) b = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
  ps_f32(a)[0] = 3.0f;
  ps_f32(b)[0] = 0.25f;
  ps_port s_in[4] = {{"a", a, FALSE}, {"b", b, FALSE}, {"c", NULL, FALSE}, {"d", NULL, FALSE}};
  ps_ports sin_ = {s_in, 4};
  ps_port s_out[1] = {{"loss", NULL, FALSE}};
  ps_ports sout = {s_out, 1};
  PS_CHECK_OK(ps_component_desc_of(sum)->vtable->forward(ps_component_self(sum), ctx, &sin_, &sout, &error), error);
  PS_CHECK_NEAR(ps_f32(s_out[0].tensor)[0], 0.5 * 3.0 + 2.0 * 0.25, 1e-7);
  ps_port s_go[1] = {{"loss", one, FALSE}};
  ps_ports sgo = {s_go, 1};
  ps_port s_gi[4] = {{"a", NULL, TRUE}, {"b", NULL, TRUE}, {"c", NULL, FALSE}, {"d", NULL, FALSE}};
  ps_ports sgi = {s_gi, 4};
  PS_CHECK_OK(ps_component_desc_of(sum)->vtable->backward(ps_component_self(sum), ctx, &sgo, &sgi, &error), error);
  PS_CHECK(s_gi[0].tensor && s_gi[1].tensor && ps_f32(s_gi[0].tensor)[0] == 0.5f && ps_f32(s_gi[1].tensor)[0] == 2.0f);
  /* Too many weights is refused at creation. */
  const ps_component_desc *sd = ps_registry_find(reg, "loss.weighted_sum");
  g_autoptr(ps_config) bad = ps_config_parse(sd->config, "{weights: [1, 2, 3, 4, 5]}", "test", &error);
  PS_CHECK(bad != NULL);
  PS_CHECK_FAILS_WITH(ps_component_new(sd, bad, "sum", ctx, &error), error, "expected 1 to 4 numbers");
  return ps_test_finish();
}
