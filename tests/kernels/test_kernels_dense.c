/* test_kernels_dense.c — linear, batched matmul, conv2d (general, patch
 * embedding, pointwise, strided/padded) and the 2x2 transposed convolution:
 * forward vs double references, backward vs finite differences. */
#include "kcheck.h"

static const ps_kernels *K;

/* ---- linear ---- */

typedef struct {
  int64_t N, C, OC;
  int bias;
} lin_ctx;

static void lin_ref(kc_problem *p) {
  const lin_ctx *c = p->ctx;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t o = 0; o < c->OC; o++) {
      double s = c->bias ? p->in[2][o] : 0.0;
      for (int64_t i = 0; i < c->C; i++) s += p->in[0][n * c->C + i] * p->in[1][o * c->C + i];
      p->out[n * c->OC + o] = s;
    }
}

static void test_linear(int64_t N, int64_t C, int64_t OC, int bias) {
  lin_ctx c = {N, C, OC, bias};
  kc_problem p = {.forward = lin_ref, .ctx = &c};
  kc_add_input(&p, N * C, -1, 1);
  kc_add_input(&p, OC * C, -1, 1);
  kc_add_input(&p, OC, -1, 1);
  kc_set_output(&p, N * OC);
  g_autofree float *x = kc_f32(p.in[0], N * C), *w = kc_f32(p.in[1], OC * C);
  g_autofree float *b = kc_f32(p.in[2], OC), *y = kc_ffill(N * OC, 7.0f);
  K->linear_forward(y, x, w, bias ? b : NULL, N, C, OC);
  kc_check_fwd("linear forward", y, p.out, N * OC, 1e-5);
  g_autofree float *dy = kc_f32(p.dout, N * OC);
  g_autofree float *dx = kc_ffill(N * C, KC_PREFILL), *dw = kc_ffill(OC * C, KC_PREFILL);
  g_autofree float *db = kc_ffill(OC, KC_PREFILL);
  K->linear_backward(dx, dw, bias ? db : NULL, dy, x, w, N, C, OC);
  kc_check_grad("linear dinp", &p, 0, dx, 1e-4, 300);
  kc_check_grad("linear dweight", &p, 1, dw, 1e-4, 300);
  if (bias) kc_check_grad("linear dbias", &p, 2, db, 1e-4, 300);
  /* NULL gradients are skipped without touching anything */
  g_autofree float *dx2 = kc_ffill(N * C, KC_PREFILL);
  K->linear_backward(dx2, NULL, NULL, dy, x, w, N, C, OC);
  PS_CHECK(memcmp(dx, dx2, sizeof(float) * N * C) == 0);
  kc_problem_free(&p);
}

/* ---- bmm ---- */

typedef struct {
  int64_t Bt, M, N, Kd;
  int trans;
  int64_t sa, sm;
} bmm_ctx;

static void bmm_ref(kc_problem *p) {
  const bmm_ctx *c = p->ctx;
  for (int64_t b = 0; b < c->Bt; b++)
    for (int64_t i = 0; i < c->M; i++)
      for (int64_t j = 0; j < c->N; j++) {
        double s = 0.0;
        for (int64_t k = 0; k < c->Kd; k++) {
          double mv =
              c->trans ? p->in[1][b * c->sm + j * c->Kd + k] : p->in[1][b * c->sm + k * c->N + j];
          s += p->in[0][b * c->sa + i * c->Kd + k] * mv;
        }
        p->out[(b * c->M + i) * c->N + j] = s;
      }
}

static void test_bmm(int64_t Bt, int64_t M, int64_t N, int64_t Kd, int trans, int bcast_a,
                     int bcast_m) {
  bmm_ctx c = {Bt, M, N, Kd, trans, bcast_a ? 0 : M * Kd, bcast_m ? 0 : Kd * N};
  kc_problem p = {.forward = bmm_ref, .ctx = &c};
  int64_t na = (bcast_a ? 1 : Bt) * M * Kd, nm = (bcast_m ? 1 : Bt) * Kd * N;
  kc_add_input(&p, na, -1, 1);
  kc_add_input(&p, nm, -1, 1);
  kc_set_output(&p, Bt * M * N);
  g_autofree float *a = kc_f32(p.in[0], na), *m = kc_f32(p.in[1], nm);
  g_autofree float *y = kc_fzeros(Bt * M * N);
  K->bmm_forward(y, a, m, Bt, M, N, Kd, trans, c.sa, c.sm);
  kc_check_fwd("bmm forward", y, p.out, Bt * M * N, 1e-5);
  g_autofree float *dy = kc_f32(p.dout, Bt * M * N);
  g_autofree float *da = kc_ffill(na, KC_PREFILL), *dm = kc_ffill(nm, KC_PREFILL);
  K->bmm_backward(da, dm, dy, a, m, Bt, M, N, Kd, trans, c.sa, c.sm);
  kc_check_grad("bmm da", &p, 0, da, 1e-4, 200);
  kc_check_grad("bmm dm", &p, 1, dm, 1e-4, 200);
  kc_problem_free(&p);
}

/* ---- conv2d ---- */

static void conv_ref(kc_problem *p) {
  const ps_conv2d_desc *d = p->ctx;
  int64_t OH = (d->H + 2 * d->pad - d->KH) / d->stride + 1;
  int64_t OW = (d->W + 2 * d->pad - d->KW) / d->stride + 1;
  const double *x = p->in[0], *w = p->in[1], *b = p->n_in > 2 ? p->in[2] : NULL;
  for (int64_t n = 0; n < d->B; n++)
    for (int64_t o = 0; o < d->OC; o++)
      for (int64_t oy = 0; oy < OH; oy++)
        for (int64_t ox = 0; ox < OW; ox++) {
          double s = b ? b[o] : 0.0;
          for (int64_t c = 0; c < d->C; c++)
            for (int64_t ky = 0; ky < d->KH; ky++)
              for (int64_t kx = 0; kx < d->KW; kx++) {
                int64_t iy = oy * d->stride - d->pad + ky, ix = ox * d->stride - d->pad + kx;
                if (iy < 0 || iy >= d->H || ix < 0 || ix >= d->W) continue;
                s += x[((n * d->C + c) * d->H + iy) * d->W + ix] *
                     w[((o * d->C + c) * d->KH + ky) * d->KW + kx];
              }
          p->out[((n * d->OC + o) * OH + oy) * OW + ox] = s;
        }
}

static void test_conv2d(ps_conv2d_desc d, int bias, const char *name) {
  int64_t OH = (d.H + 2 * d.pad - d.KH) / d.stride + 1;
  int64_t OW = (d.W + 2 * d.pad - d.KW) / d.stride + 1;
  int64_t nx = d.B * d.C * d.H * d.W, nw = d.OC * d.C * d.KH * d.KW, ny = d.B * d.OC * OH * OW;
  kc_problem p = {.forward = conv_ref, .ctx = &d};
  kc_add_input(&p, nx, -1, 1);
  kc_add_input(&p, nw, -1, 1);
  if (bias) kc_add_input(&p, d.OC, -1, 1);
  kc_set_output(&p, ny);
  g_autofree float *x = kc_f32(p.in[0], nx), *w = kc_f32(p.in[1], nw);
  g_autofree float *b = bias ? kc_f32(p.in[2], d.OC) : NULL;
  g_autofree float *y = kc_ffill(ny, 3.0f);
  int64_t ns = K->conv2d_scratch(&d);
  g_autofree float *scratch = kc_fzeros(ns);
  K->conv2d_forward(y, x, w, b, &d, scratch, ns);
  g_autofree char *fname = g_strdup_printf("conv2d %s forward", name);
  kc_check_fwd(fname, y, p.out, ny, 1e-5);
  g_autofree float *dy = kc_f32(p.dout, ny);
  g_autofree float *dx = kc_ffill(nx, KC_PREFILL), *dw = kc_ffill(nw, KC_PREFILL);
  g_autofree float *db = kc_ffill(d.OC, KC_PREFILL);
  K->conv2d_backward(dx, dw, bias ? db : NULL, dy, x, w, &d, scratch, ns);
  g_autofree char *n0 = g_strdup_printf("conv2d %s dinp", name);
  g_autofree char *n1 = g_strdup_printf("conv2d %s dweight", name);
  g_autofree char *n2 = g_strdup_printf("conv2d %s dbias", name);
  kc_check_grad(n0, &p, 0, dx, 1e-4, 150);
  kc_check_grad(n1, &p, 1, dw, 1e-4, 150);
  if (bias) kc_check_grad(n2, &p, 2, db, 1e-4, 150);
  kc_problem_free(&p);
}

/* ---- conv transpose 2x2 stride 2 ---- */

typedef struct {
  int64_t B, C, H, W, OC;
} ct_ctx;

static void convt_ref(kc_problem *p) {
  const ct_ctx *c = p->ctx;
  const double *x = p->in[0], *w = p->in[1], *b = p->in[2];
  for (int64_t n = 0; n < c->B; n++)
    for (int64_t o = 0; o < c->OC; o++)
      for (int64_t y = 0; y < 2 * c->H; y++)
        for (int64_t xx = 0; xx < 2 * c->W; xx++) {
          int64_t i = y / 2, j = xx / 2, a = y % 2, e = xx % 2;
          double s = b[o];
          for (int64_t ch = 0; ch < c->C; ch++)
            s += x[((n * c->C + ch) * c->H + i) * c->W + j] * w[((ch * c->OC + o) * 2 + a) * 2 + e];
          p->out[((n * c->OC + o) * 2 * c->H + y) * 2 * c->W + xx] = s;
        }
}

static void test_convt(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC) {
  ct_ctx c = {B, C, H, W, OC};
  int64_t nx = B * C * H * W, nw = C * OC * 4, ny = B * OC * 4 * H * W;
  kc_problem p = {.forward = convt_ref, .ctx = &c};
  kc_add_input(&p, nx, -1, 1);
  kc_add_input(&p, nw, -1, 1);
  kc_add_input(&p, OC, -1, 1);
  kc_set_output(&p, ny);
  g_autofree float *x = kc_f32(p.in[0], nx), *w = kc_f32(p.in[1], nw), *b = kc_f32(p.in[2], OC);
  g_autofree float *y = kc_fzeros(ny);
  int64_t ns = K->convt2x2_scratch(B, C, H, W, OC);
  g_autofree float *scratch = kc_fzeros(ns);
  K->convt2x2_forward(y, x, w, b, B, C, H, W, OC, scratch, ns);
  kc_check_fwd("convt2x2 forward", y, p.out, ny, 1e-5);
  g_autofree float *dy = kc_f32(p.dout, ny);
  g_autofree float *dx = kc_ffill(nx, KC_PREFILL), *dw = kc_ffill(nw, KC_PREFILL);
  g_autofree float *db = kc_ffill(OC, KC_PREFILL);
  K->convt2x2_backward(dx, dw, db, dy, x, w, B, C, H, W, OC, scratch, ns);
  kc_check_grad("convt2x2 dinp", &p, 0, dx, 1e-4, 200);
  kc_check_grad("convt2x2 dweight", &p, 1, dw, 1e-4, 200);
  kc_check_grad("convt2x2 dbias", &p, 2, db, 1e-4, 200);
  kc_problem_free(&p);
}

int main(void) {
  K = kc_cpu();
  kc_seed(1);
  PS_CHECK(strcmp(K->name, "cpu") == 0);

  test_linear(1, 1, 1, 1);
  test_linear(3, 5, 7, 1);
  test_linear(17, 33, 9, 0);
  test_linear(65, 130, 67, 1); /* not a multiple of any GEMM blocking */

  test_bmm(1, 1, 1, 1, 0, 0, 0);
  test_bmm(3, 4, 5, 6, 0, 0, 0);
  test_bmm(3, 4, 5, 6, 1, 0, 0);
  test_bmm(2, 3, 7, 5, 1, 0, 1); /* broadcast m: its gradient sums the batch */
  test_bmm(2, 3, 7, 5, 0, 1, 0); /* broadcast a */

  /* general 3x3 pad 1 (SAM neck), odd sizes */
  test_conv2d(
      (ps_conv2d_desc){
          .B = 2, .C = 3, .H = 7, .W = 9, .OC = 4, .KH = 3, .KW = 3, .stride = 1, .pad = 1},
      0, "3x3p1");
  /* patch embedding: kernel = stride = 4 (16 / 14 in the models), one partial patch row dropped */
  test_conv2d(
      (ps_conv2d_desc){
          .B = 2, .C = 3, .H = 9, .W = 8, .OC = 5, .KH = 4, .KW = 4, .stride = 4, .pad = 0},
      1, "patch");
  /* pointwise 1x1 (SAM neck conv1, mask downscaling last conv) */
  test_conv2d(
      (ps_conv2d_desc){
          .B = 2, .C = 5, .H = 3, .W = 7, .OC = 3, .KH = 1, .KW = 1, .stride = 1, .pad = 0},
      1, "1x1");
  /* k2 s2 on odd input (mask downscaling), stride 2 pad 1 with a 3x3 kernel, size 1 */
  test_conv2d(
      (ps_conv2d_desc){
          .B = 1, .C = 2, .H = 7, .W = 6, .OC = 3, .KH = 2, .KW = 2, .stride = 2, .pad = 0},
      1, "k2s2");
  test_conv2d(
      (ps_conv2d_desc){
          .B = 1, .C = 2, .H = 5, .W = 6, .OC = 2, .KH = 3, .KW = 3, .stride = 2, .pad = 1},
      1, "3x3s2p1");
  test_conv2d(
      (ps_conv2d_desc){
          .B = 1, .C = 1, .H = 1, .W = 1, .OC = 1, .KH = 1, .KW = 1, .stride = 1, .pad = 0},
      1, "1x1x1");

  test_convt(1, 1, 1, 1, 1);
  test_convt(2, 3, 3, 5, 4);
  return ps_test_finish();
}
