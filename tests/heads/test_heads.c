/* test_heads.c — the heads plugin through its vtables:
 *   projector     forward against a double-precision reference written from
 *                 the Qwen2.5-VL merger definition (RMSNorm, 2x2 blocks
 *                 concatenated (r,c),(r,c+1),(r+1,c),(r+1,c+1), Linear, erf
 *                 GELU, Linear); backward against finite differences on every
 *                 parameter and the patches; grid errors;
 *   adapter.seg   reads the hidden state just before <SEG> (pos - 1), -1 rows
 *                 give zero and no gradient; reference forward; finite
 *                 differences; position errors;
 *   critic.value  reference forward; finite differences; dropout in training:
 *                 the mask seen through the input gradient reproduces the
 *                 values exactly, and about p of the entries are dropped.
 *
 * Tolerances: float32 forwards of a few hundred terms give a loss with
 * ~1e-6 rounding noise; central differences with step 1e-2 (1e-3 across
 * ReLUs, to keep kinks out of reach) have noise <= 1e-4 and truncation
 * ~1e-5 relative. An entry passes when |fd - an| <= 1e-3 + 1e-2 max(|fd|,
 * |an|); reference forwards must agree to 1e-5 (float32 rounding of sums
 * of ~50 products). */
#include "grad_harness.h"

#include <pathseg/pipeline.h>

#define ATOL 1e-3
#define RTOL 1e-2

static gboolean all_params(const ps_param *p) { return TRUE; }

static double gelu_ref(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

/* y (N, O) = x (N, I) W^T + b in double */
static void linear_ref(double *y, const double *x, const float *W, const float *b, int64_t N,
                       int64_t I, int64_t O) {
  for (int64_t n = 0; n < N; n++)
    for (int64_t o = 0; o < O; o++) {
      double acc = b ? b[o] : 0.0;
      for (int64_t i = 0; i < I; i++) acc += x[n * I + i] * W[o * I + i];
      y[n * O + o] = acc;
    }
}

static float *pv(gh_comp *c, const char *name) {
  ps_param *p = gh_param(c, name);
  g_assert(p);
  return ps_f32(p->value);
}

/* ---- projector ------------------------------------------------------------- */

static void test_projector(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 1);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "projector", "{in_width: 6, llm_width: 5}")) return;
  PS_CHECK(gh_param(&c, "ln_q.weight") && gh_param(&c, "mlp.0.weight") &&
           gh_param(&c, "mlp.0.bias") && gh_param(&c, "mlp.2.weight") && gh_param(&c, "mlp.2.bias"));
  PS_CHECK(gh_param(&c, "mlp.0.weight")->value->shape[0] == 24 &&
           gh_param(&c, "mlp.2.weight")->value->shape[0] == 5 &&
           gh_param(&c, "mlp.2.weight")->role == PS_ROLE_FULL);
  gh_randomize(&c, &rng, 0.5, 1.0);
  const int64_t B = 2, gh = 4, gw = 6, N = gh * gw, C = 6, K = 24, O = 5;
  g_autoptr(ps_tensor) x = gh_randn(&rng, 1.0, B, N, C, -1);
  g_autoptr(ps_tensor) grid = ps_tensor_new4(PS_DTYPE_I32, 2, -1, -1, -1, NULL);
  ((int32_t *)grid->data)[0] = (int32_t)gh;
  ((int32_t *)grid->data)[1] = (int32_t)gw;
  gh_set_input(&c, "patches", x, TRUE);
  gh_set_input(&c, "patch_grid", grid, FALSE);
  gh_loss_on(&c, "tokens", &rng);

  /* reference */
  const ps_tensor *tok = ps_ports_get(&c.out, "tokens");
  PS_CHECK(tok && tok->ndim == 3 && tok->shape[0] == B && tok->shape[1] == N / 4 && tok->shape[2] == O);
  g_autofree double *g = g_new(double, B * (N / 4) * K);
  const float *lnw = pv(&c, "ln_q.weight");
  for (int64_t b = 0; b < B; b++)
    for (int64_t i = 0; i < gh / 2; i++)
      for (int64_t j = 0; j < gw / 2; j++) {
        const int64_t row = (b * (gh / 2) + i) * (gw / 2) + j;
        const int64_t src[4][2] = {{2 * i, 2 * j}, {2 * i, 2 * j + 1}, {2 * i + 1, 2 * j}, {2 * i + 1, 2 * j + 1}};
        for (int q = 0; q < 4; q++) {
          const float *v = ps_f32(x) + ((b * gh + src[q][0]) * gw + src[q][1]) * C;
          double ms = 0;
          for (int64_t cc = 0; cc < C; cc++) ms += (double)v[cc] * v[cc];
          const double r = 1.0 / sqrt(ms / C + 1e-6);
          for (int64_t cc = 0; cc < C; cc++) g[row * K + q * C + cc] = v[cc] * r * lnw[cc];
        }
      }
  const int64_t rows = B * N / 4;
  g_autofree double *h = g_new(double, rows * K);
  g_autofree double *y = g_new(double, rows * O);
  linear_ref(h, g, pv(&c, "mlp.0.weight"), pv(&c, "mlp.0.bias"), rows, K, K);
  for (int64_t i = 0; i < rows * K; i++) h[i] = gelu_ref(h[i]);
  linear_ref(y, h, pv(&c, "mlp.2.weight"), pv(&c, "mlp.2.bias"), rows, K, O);
  double worst = 0;
  for (int64_t i = 0; i < rows * O; i++) worst = MAX(worst, fabs(ps_f32(tok)[i] - y[i]));
  PS_CHECK_MSG(worst <= 1e-5, "projector differs from the reference by %g", worst);

  gh_train(&c, all_params);
  PS_CHECK(gh_backward(&c));
  double w = gh_check_params(&c, 4, 1e-2, ATOL, RTOL, &rng);
  w = fmax(w, gh_check_input(&c, "patches", 12, 1e-2, ATOL, RTOL, &rng));
  printf("projector: |forward - reference| %.2g, gradients worst error/tolerance %.3f\n", worst, w);

  /* no patch_grid: a square 4x4 grid is assumed; 3x8 is refused */
  GError *err = NULL;
  g_autoptr(ps_tensor) sq = gh_randn(&rng, 1.0, 1, 16, C, -1);
  gh_set_input(&c, "patches", sq, FALSE);
  gh_set_input(&c, "patch_grid", NULL, FALSE);
  PS_CHECK_OK(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err);
  PS_CHECK(ps_ports_get(&c.out, "tokens")->shape[1] == 4);
  ((int32_t *)grid->data)[0] = 3;
  ((int32_t *)grid->data)[1] = 8;
  gh_set_input(&c, "patches", x, FALSE);
  gh_set_input(&c, "patch_grid", grid, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err,
                      "multiple of merge_size");
  gh_clear(&c);
}

/* ---- adapter.seg ----------------------------------------------------------- */

static void test_seg_adapter(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 2);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "adapter.seg", "{hidden: 6, out: 4}")) return;
  PS_CHECK(gh_param(&c, "text_hidden_fcs.0.0.weight") && gh_param(&c, "text_hidden_fcs.0.0.bias") &&
           gh_param(&c, "text_hidden_fcs.0.2.weight") && gh_param(&c, "text_hidden_fcs.0.2.bias"));
  gh_randomize(&c, &rng, 0.5, 1.0);
  const int64_t B = 3, T = 5, H = 6, O = 4;
  g_autoptr(ps_tensor) hid = gh_randn(&rng, 1.0, B, T, H, -1);
  g_autoptr(ps_tensor) pos = ps_tensor_new4(PS_DTYPE_I32, B, -1, -1, -1, NULL);
  const int32_t seg[3] = {3, 5, -1}; /* <SEG> at 3 and at T (sampled, not fed back); none */
  memcpy(pos->data, seg, sizeof seg);
  gh_set_input(&c, "hidden", hid, TRUE);
  gh_set_input(&c, "seg_positions", pos, FALSE);
  gh_loss_on(&c, "prompt", &rng);
  const ps_tensor *pr = ps_ports_get(&c.out, "prompt");
  PS_CHECK(pr && pr->ndim == 3 && pr->shape[0] == B && pr->shape[1] == 1 && pr->shape[2] == O);
  double worst = 0;
  for (int64_t b = 0; b < B; b++) {
    double x[6], hh[6], yy[4];
    for (int64_t i = 0; i < H; i++) x[i] = seg[b] < 0 ? 0 : ps_f32(hid)[(b * T + seg[b] - 1) * H + i];
    linear_ref(hh, x, pv(&c, "text_hidden_fcs.0.0.weight"), pv(&c, "text_hidden_fcs.0.0.bias"), 1, H, H);
    for (int i = 0; i < H; i++) hh[i] = hh[i] > 0 ? hh[i] : 0;
    linear_ref(yy, hh, pv(&c, "text_hidden_fcs.0.2.weight"), pv(&c, "text_hidden_fcs.0.2.bias"), 1, H, O);
    for (int64_t o = 0; o < O; o++) {
      double want = seg[b] < 0 ? 0.0 : yy[o];
      worst = MAX(worst, fabs(ps_f32(pr)[b * O + o] - want));
    }
  }
  PS_CHECK_MSG(worst <= 1e-5, "adapter.seg differs from the reference by %g", worst);

  gh_train(&c, all_params);
  PS_CHECK(gh_backward(&c));
  const ps_tensor *dh = ps_ports_get(&c.gin, "hidden");
  PS_CHECK(dh != NULL);
  if (dh) {
    /* only rows (0, 2) and (1, 4) receive a gradient */
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++) {
        double s = 0;
        for (int64_t i = 0; i < H; i++) s += fabs(ps_f32(dh)[(b * T + t) * H + i]);
        gboolean used = seg[b] >= 0 && t == seg[b] - 1;
        PS_CHECK_MSG(used ? s > 0 : s == 0, "hidden gradient row (%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                     ") sum %g", b, t, s);
      }
  }
  double w = gh_check_params(&c, 6, 1e-3, ATOL, RTOL, &rng);
  w = fmax(w, gh_check_input(&c, "hidden", B * T * H, 1e-3, ATOL, RTOL, &rng));
  printf("adapter.seg: |forward - reference| %.2g, gradients worst error/tolerance %.3f\n", worst, w);

  GError *err = NULL;
  const int32_t bad[3][3] = {{0, 1, 1}, {1, 6, 1}, {1, 1, -2}};
  for (int i = 0; i < 3; i++) {
    memcpy(pos->data, bad[i], sizeof bad[i]);
    PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err,
                        "seg_positions");
  }
  gh_clear(&c);
}

/* ---- critic.value ---------------------------------------------------------- */

static void test_value(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 3);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "critic.value", "{hidden: 6, dropout: 0}")) return;
  PS_CHECK(gh_param(&c, "score.weight") && gh_param(&c, "score.weight")->value->shape[0] == 1 &&
           gh_param(&c, "score.bias"));
  gh_randomize(&c, &rng, 0.5, 1.0);
  const int64_t B = 2, T = 4, H = 6;
  g_autoptr(ps_tensor) hid = gh_randn(&rng, 1.0, B, T, H, -1);
  gh_set_input(&c, "hidden", hid, TRUE);
  gh_loss_on(&c, "values", &rng);
  const ps_tensor *v = ps_ports_get(&c.out, "values");
  PS_CHECK(v && v->ndim == 2 && v->shape[0] == B && v->shape[1] == T);
  g_autofree double *ref = g_new(double, B * T);
  g_autofree double *xd = g_new(double, B * T * H);
  for (int64_t i = 0; i < B * T * H; i++) xd[i] = ps_f32(hid)[i];
  linear_ref(ref, xd, pv(&c, "score.weight"), pv(&c, "score.bias"), B * T, H, 1);
  double worst = 0;
  for (int64_t i = 0; i < B * T; i++) worst = MAX(worst, fabs(ps_f32(v)[i] - ref[i]));
  PS_CHECK_MSG(worst <= 1e-5, "critic.value differs from the reference by %g", worst);
  gh_train(&c, all_params);
  PS_CHECK(gh_backward(&c));
  double w = gh_check_params(&c, 7, 1e-2, ATOL, RTOL, &rng);
  w = fmax(w, gh_check_input(&c, "hidden", 12, 1e-2, ATOL, RTOL, &rng));
  printf("critic.value: |forward - reference| %.2g, gradients worst error/tolerance %.3f\n", worst, w);
  gh_clear(&c);

  /* Dropout p = 0.5 in training. With dL/dvalues = 1, d hidden[n, j] =
   * keep[n, j] * w_j / (1 - p): the mask read from it must reproduce the
   * forward's values exactly, and about half the entries are kept. */
  const int64_t Hd = 8, Td = 50;
  if (!gh_init(&c, reg, ctx, "critic.value", "{hidden: 8, dropout: 0.5}")) return;
  gh_randomize(&c, &rng, 0.5, 1.0);
  float *wv = pv(&c, "score.weight");
  for (int64_t j = 0; j < Hd; j++)
    if (fabsf(wv[j]) < 0.05f) wv[j] = 0.5f; /* nonzero, so the mask is visible */
  g_autoptr(ps_tensor) hd = gh_randn(&rng, 1.0, B, Td, Hd, -1);
  gh_set_input(&c, "hidden", hd, TRUE);
  gh_loss_on(&c, "values", &rng);
  for (int64_t i = 0; i < B * Td; i++) ps_f32(c.R[0])[i] = 1.0f;
  gh_train(&c, all_params);
  PS_CHECK(gh_backward(&c));
  const ps_tensor *vals = ps_ports_get(&c.out, "values");
  const ps_tensor *dx = ps_ports_get(&c.gin, "hidden");
  PS_CHECK(vals && dx);
  if (vals && dx) {
    int64_t kept = 0;
    double err_v = 0, err_g = 0;
    const float bias = pv(&c, "score.bias")[0];
    for (int64_t n = 0; n < B * Td; n++) {
      double acc = bias;
      for (int64_t j = 0; j < Hd; j++) {
        const float g = ps_f32(dx)[n * Hd + j];
        const gboolean k = g != 0.0f;
        kept += k;
        if (k) {
          acc += (double)wv[j] * ps_f32(hd)[n * Hd + j] * 2.0;
          err_g = MAX(err_g, fabs(g - wv[j] * 2.0));
        }
      }
      err_v = MAX(err_v, fabs(ps_f32(vals)[n] - acc));
    }
    const double frac = (double)kept / (double)(B * Td * Hd);
    PS_CHECK_MSG(err_v <= 1e-5, "dropout values differ from the mask's by %g", err_v);
    PS_CHECK_MSG(err_g <= 1e-6, "dropout gradient differs from w / (1 - p) by %g", err_g);
    PS_CHECK_MSG(frac > 0.4 && frac < 0.6, "kept fraction %g for p = 0.5", frac);
    /* the score gradients with dropout: dW = sum_n dropout(x)_n, db = B*T */
    const float *dW = ps_f32(gh_param(&c, "score.weight")->grad);
    double err_w = 0;
    for (int64_t j = 0; j < Hd; j++) {
      double s = 0;
      for (int64_t n = 0; n < B * Td; n++)
        if (ps_f32(dx)[n * Hd + j] != 0.0f) s += 2.0 * ps_f32(hd)[n * Hd + j];
      err_w = MAX(err_w, fabs(dW[j] - s));
    }
    PS_CHECK_MSG(err_w <= 1e-4, "score.weight gradient with dropout off by %g", err_w);
    PS_CHECK_NEAR(ps_f32(gh_param(&c, "score.bias")->grad)[0], (double)(B * Td), 1e-4);
    printf("critic.value dropout 0.5: kept %.3f, |values - mask reconstruction| %.2g\n", frac, err_v);
  }
  /* finite differences through the dropout, with the masks pinned */
  gh_pin_rng(&c);
  gh_loss_on(&c, "values", &rng);
  PS_CHECK(gh_backward(&c));
  double wd = gh_check_params(&c, 9, 1e-2, ATOL, RTOL, &rng);
  wd = fmax(wd, gh_check_input(&c, "hidden", 16, 1e-2, ATOL, RTOL, &rng));
  printf("critic.value dropout 0.5 (pinned masks): gradients worst error/tolerance %.3f\n", wd);
  c.pinned = FALSE;
  /* outside training nothing is dropped */
  ps_context_set_training(ctx, FALSE);
  GError *err = NULL;
  PS_CHECK_OK(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err);
  const ps_tensor *ve = ps_ports_get(&c.out, "values");
  double err_e = 0;
  for (int64_t n = 0; n < B * Td; n++) {
    double acc = pv(&c, "score.bias")[0];
    for (int64_t j = 0; j < Hd; j++) acc += (double)wv[j] * ps_f32(hd)[n * Hd + j];
    err_e = MAX(err_e, fabs(ps_f32(ve)[n] - acc));
  }
  PS_CHECK_MSG(err_e <= 1e-5, "evaluation values differ by %g", err_e);
  ps_context_set_training(ctx, TRUE);
  gh_clear(&c);
}

int main(void) {
  g_autoptr(ps_registry) reg = gh_registry();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 0, 1);
  ps_context_set_training(ctx, TRUE);
  test_projector(reg, ctx);
  test_seg_adapter(reg, ctx);
  test_value(reg, ctx);
  return gh_finish();
}
