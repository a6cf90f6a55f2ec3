/* test_kernels_losses.c — embedding lookup/scatter-add, vocabulary
 * cross-entropy with ignore_index (accumulating and in-place), BCE with
 * logits, soft Dice (LISA and MONAI settings) and bilinear/bicubic resize
 * with PyTorch's align_corners=False rules (sizes, scale factors, border
 * clamps): forward vs double references, backward vs finite differences. */
#include "kcheck.h"

static const ps_kernels *K;

/* ---- embedding ---- */

static void test_embedding(void) {
  enum { V = 7, C = 5, N = 9 };
  int32_t ids[N] = {3, 0, 6, 3, 3, 1, 6, 2, 0};
  g_autofree double *td = kc_dvec(V * C, -1, 1), *gd = kc_dvec(N * C, -1, 1);
  g_autofree float *table = kc_f32(td, V * C), *g = kc_f32(gd, N * C), *out = kc_fzeros(N * C);
  K->embedding_forward(out, ids, table, N, V, C);
  int ok = 1;
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) ok &= out[n * C + c] == table[ids[n] * C + c];
  PS_CHECK(ok);
  g_autofree float *dt = kc_ffill(V * C, KC_PREFILL);
  K->embedding_backward(dt, ids, g, N, V, C);
  double md = 0.0;
  for (int v = 0; v < V; v++)
    for (int c = 0; c < C; c++) {
      double s = KC_PREFILL;
      for (int n = 0; n < N; n++)
        if (ids[n] == v) s += gd[n * C + c];
      md = fmax(md, fabs(dt[v * C + c] - s));
    }
  PS_CHECK_NEAR(md, 0.0, 1e-6);
  /* out-of-range ids: zero row forward, skipped backward */
  int32_t bad[2] = {-1, V};
  g_autofree float *ob = kc_ffill(2 * C, 5.0f), *dtb = kc_fzeros(V * C);
  K->embedding_forward(ob, bad, table, 2, V, C);
  K->embedding_backward(dtb, bad, g, 2, V, C);
  ok = 1;
  for (int i = 0; i < 2 * C; i++) ok &= ob[i] == 0.0f;
  for (int i = 0; i < V * C; i++) ok &= dtb[i] == 0.0f;
  PS_CHECK(ok);
  /* threaded scatter with many repeats */
  enum { N2 = 3000, C2 = 40 };
  g_autofree int32_t *ids2 = g_new(int32_t, N2);
  for (int n = 0; n < N2; n++) ids2[n] = (int32_t)(kc_uniform() * V);
  g_autofree float *g2 = kc_ffill(N2 * C2, 1.0f), *dt2 = kc_fzeros(V * C2);
  K->embedding_backward(dt2, ids2, g2, N2, V, C2);
  int counts[V] = {0};
  for (int n = 0; n < N2; n++) counts[ids2[n]]++;
  ok = 1;
  for (int v = 0; v < V; v++)
    for (int c = 0; c < C2; c++) ok &= dt2[v * C2 + c] == (float)counts[v];
  PS_CHECK(ok);
}

/* ---- cross-entropy ---- */

typedef struct {
  int64_t N, V;
  const int32_t *t;
  double denom;
} ce_ctx;

/* out[0] = loss (sum over valid rows / denom) */
static void ce_ref(kc_problem *p) {
  const ce_ctx *c = p->ctx;
  double total = 0.0;
  for (int64_t n = 0; n < c->N; n++) {
    if (c->t[n] == -100) continue;
    const double *x = p->in[0] + n * c->V;
    double mx = -INFINITY, s = 0.0;
    for (int64_t j = 0; j < c->V; j++) mx = fmax(mx, x[j]);
    for (int64_t j = 0; j < c->V; j++) s += exp(x[j] - mx);
    total += mx + log(s) - x[c->t[n]];
  }
  p->out[0] = total / c->denom;
}

static void test_crossentropy(int64_t N, int64_t V, const int32_t *t, float denom_arg,
                              double range) {
  int64_t valid = 0;
  for (int64_t n = 0; n < N; n++) valid += t[n] != -100;
  ce_ctx c = {N, V, t, denom_arg > 0 ? denom_arg : (double)valid};
  kc_problem p = {.forward = ce_ref, .ctx = &c};
  kc_add_input(&p, N * V, -range, range);
  kc_set_output(&p, 1);
  p.dout[0] = 1.5; /* dloss */
  p.forward(&p);
  g_autofree float *x = kc_f32(p.in[0], N * V), *rows = kc_fzeros(N);
  g_autofree float *dx = kc_ffill(N * V, KC_PREFILL);
  float loss = K->crossentropy(dx, rows, x, t, N, V, -100, denom_arg, 1.5f);
  PS_CHECK_NEAR(loss, p.out[0], 1e-5 * fmax(1.0, fabs(p.out[0])));
  double rsum = 0.0;
  for (int64_t n = 0; n < N; n++) rsum += rows[n];
  PS_CHECK_NEAR(rsum / c.denom, p.out[0], 1e-5 * fmax(1.0, fabs(p.out[0])));
  kc_check_grad("crossentropy dlogits", &p, 0, dx, 1e-4, 300);
  /* in place: logits replaced by the gradient, ignored rows zeroed */
  float loss2 = K->crossentropy(x, NULL, x, t, N, V, -100, denom_arg, 1.5f);
  PS_CHECK(loss2 == loss);
  double md = 0.0;
  for (int64_t i = 0; i < N * V; i++) md = fmax(md, fabs(x[i] - (dx[i] - KC_PREFILL)));
  PS_CHECK_NEAR(md, 0.0, 1e-7);
  kc_problem_free(&p);
}

static void test_crossentropy_edge(void) {
  /* all rows ignored: loss 0 and no gradient */
  int32_t t[2] = {-100, -100};
  float x[6] = {1, 2, 3, 4, 5, 6}, g[6] = {0};
  PS_CHECK(K->crossentropy(g, NULL, x, t, 2, 3, -100, 0.0f, 1.0f) == 0.0f);
  int ok = 1;
  for (int i = 0; i < 6; i++) ok &= g[i] == 0.0f;
  PS_CHECK(ok);
  /* huge logits stay finite */
  int32_t t1[1] = {1};
  float big[3] = {1e4f, -1e4f, 0.0f};
  float l = K->crossentropy(NULL, NULL, big, t1, 1, 3, -100, 0.0f, 1.0f);
  PS_CHECK_NEAR(l, 2e4, 1.0);
}

/* ---- BCE with logits ---- */

typedef struct {
  int64_t M, P;
  int dice;
  ps_dice_desc dd;
} mask_ctx;

static void bce_ref(kc_problem *p) {
  const mask_ctx *c = p->ctx;
  for (int64_t m = 0; m < c->M; m++) {
    double s = 0.0;
    for (int64_t i = 0; i < c->P; i++) {
      double x = p->in[0][m * c->P + i], t = p->in[1][m * c->P + i];
      s += fmax(x, 0.0) - x * t + log1p(exp(-fabs(x)));
    }
    p->out[m] = s / c->P;
  }
}

static void dice_ref(kc_problem *p) {
  const mask_ctx *c = p->ctx;
  for (int64_t m = 0; m < c->M; m++) {
    double spt = 0, sp = 0, st = 0;
    for (int64_t i = 0; i < c->P; i++) {
      double pr = 1.0 / (1.0 + exp(-p->in[0][m * c->P + i])), t = p->in[1][m * c->P + i];
      spt += pr * t;
      sp += c->dd.squared ? pr * pr : pr;
      st += c->dd.squared ? t * t : t;
    }
    p->out[m] = 1.0 - (2.0 * spt / c->dd.scale + c->dd.smooth_nr) /
                          ((sp + st) / c->dd.scale + c->dd.smooth_dr);
  }
}

static void test_mask_loss(int64_t M, int64_t P, int dice, ps_dice_desc dd, double range,
                           const char *name) {
  mask_ctx c = {M, P, dice, dd};
  kc_problem p = {.forward = dice ? dice_ref : bce_ref, .ctx = &c};
  kc_add_input(&p, M * P, -range, range);
  kc_add_input(&p, M * P, 0, 1);
  for (int64_t i = 0; i < M * P; i++) /* binary targets, as the masks are */
    p.in[1][i] = p.in[1][i] > 0.6 ? 1.0 : 0.0;
  kc_set_output(&p, M);
  g_autofree float *x = kc_f32(p.in[0], M * P), *t = kc_f32(p.in[1], M * P);
  g_autofree float *l = kc_fzeros(M), *dl = kc_f32(p.dout, M), *dx = kc_ffill(M * P, KC_PREFILL);
  if (dice)
    K->dice_forward(l, x, t, M, P, &dd);
  else
    K->bce_logits_forward(l, x, t, M, P);
  g_autofree char *nf = g_strdup_printf("%s forward", name);
  g_autofree char *nb = g_strdup_printf("%s backward", name);
  kc_check_fwd(nf, l, p.out, M, 1e-5);
  if (dice)
    K->dice_backward(dx, dl, x, t, M, P, &dd);
  else
    K->bce_logits_backward(dx, dl, x, t, M, P);
  kc_check_grad(nb, &p, 0, dx, 1e-4, 300);
  kc_problem_free(&p);
}

static void test_mask_loss_edges(void) {
  /* BCE of extreme logits: finite and exact-ish */
  float x[4] = {100.0f, -100.0f, 100.0f, -100.0f}, t[4] = {1, 0, 0, 1}, l[1];
  K->bce_logits_forward(l, x, t, 1, 4);
  PS_CHECK_NEAR(l[0], 50.0, 1e-4);
  /* Dice of an empty target with an empty (very negative) prediction is ~0 */
  float xe[3] = {-50, -50, -50}, te[3] = {0, 0, 0}, ld[1];
  ps_dice_desc monai = {1.0f, 1e-5f, 1e-5f, 0};
  K->dice_forward(ld, xe, te, 1, 3, &monai);
  PS_CHECK_NEAR(ld[0], 0.0, 1e-6);
  /* LISA's scale: a perfect confident prediction gives ~0 */
  float xp[2] = {40, -40}, tp[2] = {1, 0};
  ps_dice_desc lisa = {1000.0f, 1e-6f, 1e-6f, 0};
  K->dice_forward(ld, xp, tp, 1, 2, &lisa);
  PS_CHECK_NEAR(ld[0], 0.0, 1e-6);
}

/* ---- resize ---- */

typedef struct {
  int64_t NC, H, W, OH, OW;
  double sh, sw; /* input pixels per output pixel as PyTorch uses them */
  int cubic;
} rs_ctx;

static double cubic_w(double x, int k) {
  /* Keys kernel, A = -0.75, taps at distance t+1, t, 1-t, 2-t */
  const double A = -0.75;
  double a = fabs(x);
  (void)k;
  if (a <= 1) return ((A + 2) * a - (A + 3)) * a * a + 1;
  if (a < 2) return ((A * a - 5 * A) * a + 8 * A) * a - 4 * A;
  return 0;
}

/* Writes the 1-D taps of output index o: indices and weights (count returned). */
static int ref_taps(int64_t o, int64_t in, double scale, int cubic, int64_t *idx, double *w) {
  /* PyTorch computes src in float32 */
  float srcf = (float)scale * ((float)o + 0.5f) - 0.5f;
  double src = srcf;
  if (!cubic) {
    if (src < 0) src = 0;
    int64_t i0 = (int64_t)floor(src);
    if (i0 > in - 1) i0 = in - 1;
    double l = src - i0;
    l = l < 0 ? 0 : (l > 1 ? 1 : l);
    idx[0] = i0;
    idx[1] = i0 < in - 1 ? i0 + 1 : i0;
    w[0] = 1 - l;
    w[1] = l;
    return 2;
  }
  int64_t i0 = (int64_t)floor(src);
  if (i0 > in - 1) i0 = in - 1;
  double t = src - i0;
  t = t < 0 ? 0 : (t > 1 ? 1 : t);
  for (int k = 0; k < 4; k++) {
    int64_t j = i0 - 1 + k;
    idx[k] = j < 0 ? 0 : (j > in - 1 ? in - 1 : j); /* border clamp */
    w[k] = cubic_w(t - (k - 1), k);
  }
  return 4;
}

static void resize_ref(kc_problem *p) {
  const rs_ctx *c = p->ctx;
  for (int64_t q = 0; q < c->NC; q++)
    for (int64_t oy = 0; oy < c->OH; oy++)
      for (int64_t ox = 0; ox < c->OW; ox++) {
        int64_t iy[4], ix[4];
        double wy[4], wx[4];
        int ny = ref_taps(oy, c->H, c->sh, c->cubic, iy, wy);
        int nx = ref_taps(ox, c->W, c->sw, c->cubic, ix, wx);
        double s = 0.0;
        for (int a = 0; a < ny; a++)
          for (int b = 0; b < nx; b++)
            s += wy[a] * wx[b] * p->in[0][(q * c->H + iy[a]) * c->W + ix[b]];
        p->out[(q * c->OH + oy) * c->OW + ox] = s;
      }
}

static void test_resize(int64_t NC, int64_t H, int64_t W, int64_t OH, int64_t OW, float sh,
                        float sw, ps_resize_mode mode, const char *name) {
  rs_ctx c = {NC,
              H,
              W,
              OH,
              OW,
              sh > 0 ? sh : (float)H / (float)OH,
              sw > 0 ? sw : (float)W / (float)OW,
              mode == PS_RESIZE_BICUBIC};
  kc_problem p = {.forward = resize_ref, .ctx = &c};
  kc_add_input(&p, NC * H * W, -1, 1);
  kc_set_output(&p, NC * OH * OW);
  g_autofree float *x = kc_f32(p.in[0], NC * H * W), *y = kc_fzeros(NC * OH * OW);
  K->resize_forward(y, x, NC, H, W, OH, OW, sh, sw, mode);
  g_autofree char *nf = g_strdup_printf("resize %s forward", name);
  g_autofree char *nb = g_strdup_printf("resize %s backward", name);
  /* float32 weights and a 16-term float sum (as PyTorch): a few ulp */
  kc_check_fwd(nf, y, p.out, NC * OH * OW, 4e-6);
  g_autofree float *dy = kc_f32(p.dout, NC * OH * OW), *dx = kc_ffill(NC * H * W, KC_PREFILL);
  K->resize_backward(dx, dy, NC, H, W, OH, OW, sh, sw, mode);
  kc_check_grad(nb, &p, 0, dx, 1e-5, NC * OH * OW > 20000 ? 25 : 300);
  kc_problem_free(&p);
}

/* Values worked out by hand from PyTorch's formulas (upsampling [0, 1] to 4). */
static void test_resize_known(void) {
  float x[2] = {0.0f, 1.0f}, y[4];
  K->resize_forward(y, x, 1, 1, 2, 1, 4, 0.0f, 0.0f, PS_RESIZE_BILINEAR);
  PS_CHECK_NEAR(y[0], 0.0, 1e-7);
  PS_CHECK_NEAR(y[1], 0.25, 1e-7);
  PS_CHECK_NEAR(y[2], 0.75, 1e-7);
  PS_CHECK_NEAR(y[3], 1.0, 1e-7);
  /* bicubic: src = -0.25, 0.25, 0.75, 1.25; taps clamped at the borders;
   * w(t) = [c2(t+1), c1(t), c1(1-t), c2(2-t)], e.g. y0 = c2(1.25) = -0.10546875
   * (the other taps read x[0] = 0), y1 = c1(0.75) + c2(1.75) = 0.2265625 */
  K->resize_forward(y, x, 1, 1, 2, 1, 4, 0.0f, 0.0f, PS_RESIZE_BICUBIC);
  PS_CHECK_NEAR(y[0], -0.10546875, 1e-7);
  PS_CHECK_NEAR(y[1], 0.2265625, 1e-7);
  PS_CHECK_NEAR(y[2], 0.7734375, 1e-7);
  PS_CHECK_NEAR(y[3], 1.10546875, 1e-7);
}

int main(void) {
  K = kc_cpu();
  kc_seed(5);
  test_embedding();

  int32_t t1[1] = {2};
  test_crossentropy(1, 3, t1, 0.0f, 2.0);
  int32_t t6[6] = {0, -100, 10, 4, -100, 7};
  test_crossentropy(6, 11, t6, 0.0f, 5.0);
  test_crossentropy(6, 11, t6, 10.0f, 5.0); /* explicit denominator */
  int32_t t3[3] = {1, 1999, 0};
  test_crossentropy(3, 2001, t3, 0.0f, 30.0); /* odd vocab, wide logits */
  test_crossentropy_edge();

  ps_dice_desc none = {0};
  test_mask_loss(1, 1, 0, none, 3.0, "bce");
  test_mask_loss(3, 37, 0, none, 25.0, "bce wide");
  ps_dice_desc lisa = {1000.0f, 1e-6f, 1e-6f, 0};
  ps_dice_desc monai = {1.0f, 1e-5f, 1e-5f, 0};
  ps_dice_desc monai_sq = {1.0f, 1e-5f, 1e-5f, 1};
  test_mask_loss(2, 37, 1, lisa, 4.0, "dice lisa");
  test_mask_loss(2, 41, 1, monai, 4.0, "dice monai");
  test_mask_loss(3, 29, 1, monai_sq, 4.0, "dice monai squared");
  test_mask_loss(1, 1, 1, monai, 2.0, "dice single pixel");
  test_mask_loss_edges();

  test_resize_known();
  test_resize(2, 5, 7, 9, 4, 0, 0, PS_RESIZE_BILINEAR, "bilinear up/down");
  test_resize(1, 3, 3, 8, 8, 0, 0, PS_RESIZE_BILINEAR, "bilinear up");
  test_resize(2, 9, 6, 4, 3, 0, 0, PS_RESIZE_BILINEAR, "bilinear down");
  test_resize(1, 1, 1, 3, 2, 0, 0, PS_RESIZE_BILINEAR, "bilinear from 1x1");
  test_resize(2, 5, 7, 9, 4, 0, 0, PS_RESIZE_BICUBIC, "bicubic up/down");
  test_resize(1, 4, 4, 2, 2, 0, 0, PS_RESIZE_BICUBIC, "bicubic down");
  test_resize(1, 2, 3, 7, 7, 0, 0, PS_RESIZE_BICUBIC, "bicubic border clamp");
  /* DINOv2 pos-embed path: M = 4, n = 6: scale factor (n + 0.1) / M, output
   * floor(M * sf) = 6, source step 1 / sf (not M / out) */
  double sf = (6 + 0.1) / 4.0;
  test_resize(3, 4, 4, (int64_t)floor(4 * sf), (int64_t)floor(4 * sf), (float)(1.0 / sf),
              (float)(1.0 / sf), PS_RESIZE_BICUBIC, "bicubic scale factor");
  test_resize(64, 33, 33, 70, 70, 0, 0, PS_RESIZE_BILINEAR, "bilinear threaded");
  return ps_test_finish();
}
