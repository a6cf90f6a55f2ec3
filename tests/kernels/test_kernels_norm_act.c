/* test_kernels_norm_act.c — layernorm, layernorm2d, rmsnorm, GELU, ReLU, SiLU,
 * SwiGLU (separate and packed layouts), layer scale, softmax, transpose and
 * the elementwise helpers: forward vs double references, backward vs finite
 * differences (see kcheck.h). */
#include "kcheck.h"

static const ps_kernels *K;

/* ---- layernorm ---- */

typedef struct {
  int64_t N, C;
  double eps;
  int affine;
} ln_ctx;

static void ln_ref(kc_problem *p) {
  const ln_ctx *c = p->ctx;
  for (int64_t n = 0; n < c->N; n++) {
    const double *x = p->in[0] + n * c->C;
    double m = 0.0, v = 0.0;
    for (int64_t i = 0; i < c->C; i++) m += x[i];
    m /= c->C;
    for (int64_t i = 0; i < c->C; i++) v += (x[i] - m) * (x[i] - m);
    v /= c->C;
    for (int64_t i = 0; i < c->C; i++) {
      double y = (x[i] - m) / sqrt(v + c->eps);
      p->out[n * c->C + i] = c->affine ? y * p->in[1][i] + p->in[2][i] : y;
    }
  }
}

static void test_layernorm(int64_t N, int64_t C, double eps, int affine) {
  ln_ctx c = {N, C, eps, affine};
  kc_problem p = {.forward = ln_ref, .ctx = &c};
  kc_add_input(&p, N * C, -2, 3); /* non-zero mean on purpose */
  kc_add_input(&p, C, 0.5, 1.5);
  kc_add_input(&p, C, -1, 1);
  kc_set_output(&p, N * C);
  g_autofree float *x = kc_f32(p.in[0], N * C), *w = kc_f32(p.in[1], C), *b = kc_f32(p.in[2], C);
  g_autofree float *y = kc_fzeros(N * C), *mean = kc_fzeros(N), *rstd = kc_fzeros(N);
  K->layernorm_forward(y, mean, rstd, x, affine ? w : NULL, affine ? b : NULL, N, C, (float)eps);
  /* C = 1 normalises to exactly 0: compare absolutely there */
  KC_EXPECT("layernorm forward", kc_err(y, p.out, N * C, 1.0), 2e-5);
  g_autofree float *dy = kc_f32(p.dout, N * C);
  g_autofree float *dx = kc_ffill(N * C, KC_PREFILL), *dw = kc_ffill(C, KC_PREFILL);
  g_autofree float *db = kc_ffill(C, KC_PREFILL);
  K->layernorm_backward(dx, affine ? dw : NULL, affine ? db : NULL, dy, x, affine ? w : NULL, mean,
                        rstd, N, C);
  if (C > 1) kc_check_grad("layernorm dinp", &p, 0, dx, 2e-4, 300);
  if (affine) {
    kc_check_grad("layernorm dweight", &p, 1, dw, 1e-4, 300);
    kc_check_grad("layernorm dbias", &p, 2, db, 1e-4, 300);
  }
  kc_problem_free(&p);
}

/* ---- layernorm2d ---- */

typedef struct {
  int64_t B, C, HW;
  double eps;
} ln2_ctx;

static void ln2_ref(kc_problem *p) {
  const ln2_ctx *c = p->ctx;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t q = 0; q < c->HW; q++) {
      const double *x = p->in[0] + b * c->C * c->HW + q;
      double m = 0.0, v = 0.0;
      for (int64_t i = 0; i < c->C; i++) m += x[i * c->HW];
      m /= c->C;
      for (int64_t i = 0; i < c->C; i++) v += (x[i * c->HW] - m) * (x[i * c->HW] - m);
      v /= c->C;
      for (int64_t i = 0; i < c->C; i++)
        p->out[(b * c->C + i) * c->HW + q] =
            (x[i * c->HW] - m) / sqrt(v + c->eps) * p->in[1][i] + p->in[2][i];
    }
}

static void test_layernorm2d(int64_t B, int64_t C, int64_t HW) {
  ln2_ctx c = {B, C, HW, 1e-6};
  int64_t n = B * C * HW;
  kc_problem p = {.forward = ln2_ref, .ctx = &c};
  kc_add_input(&p, n, -2, 3);
  kc_add_input(&p, C, 0.5, 1.5);
  kc_add_input(&p, C, -1, 1);
  kc_set_output(&p, n);
  g_autofree float *x = kc_f32(p.in[0], n), *w = kc_f32(p.in[1], C), *b = kc_f32(p.in[2], C);
  g_autofree float *y = kc_fzeros(n), *mean = kc_fzeros(B * HW), *rstd = kc_fzeros(B * HW);
  K->layernorm2d_forward(y, mean, rstd, x, w, b, B, C, HW, 1e-6f);
  KC_EXPECT("layernorm2d forward", kc_err(y, p.out, n, 1.0), 2e-5);
  g_autofree float *dy = kc_f32(p.dout, n);
  g_autofree float *dx = kc_ffill(n, KC_PREFILL), *dw = kc_ffill(C, KC_PREFILL);
  g_autofree float *db = kc_ffill(C, KC_PREFILL);
  K->layernorm2d_backward(dx, dw, db, dy, x, w, mean, rstd, B, C, HW);
  if (C > 1) kc_check_grad("layernorm2d dinp", &p, 0, dx, 2e-4, 300);
  kc_check_grad("layernorm2d dweight", &p, 1, dw, 1e-4, 300);
  kc_check_grad("layernorm2d dbias", &p, 2, db, 1e-4, 300);
  kc_problem_free(&p);
}

/* ---- rmsnorm ---- */

typedef struct {
  int64_t N, C;
  double eps;
} rms_ctx;

static void rms_ref(kc_problem *p) {
  const rms_ctx *c = p->ctx;
  for (int64_t n = 0; n < c->N; n++) {
    const double *x = p->in[0] + n * c->C;
    double ss = 0.0;
    for (int64_t i = 0; i < c->C; i++) ss += x[i] * x[i];
    double r = 1.0 / sqrt(ss / c->C + c->eps);
    for (int64_t i = 0; i < c->C; i++) p->out[n * c->C + i] = p->in[1][i] * x[i] * r;
  }
}

static void test_rmsnorm(int64_t N, int64_t C) {
  rms_ctx c = {N, C, 1e-6};
  kc_problem p = {.forward = rms_ref, .ctx = &c};
  kc_add_input(&p, N * C, -2, 2);
  kc_add_input(&p, C, -1.5, 1.5);
  kc_set_output(&p, N * C);
  g_autofree float *x = kc_f32(p.in[0], N * C), *w = kc_f32(p.in[1], C);
  g_autofree float *y = kc_fzeros(N * C), *rstd = kc_fzeros(N);
  K->rmsnorm_forward(y, rstd, x, w, N, C, 1e-6f);
  kc_check_fwd("rmsnorm forward", y, p.out, N * C, 2e-5);
  g_autofree float *dy = kc_f32(p.dout, N * C);
  g_autofree float *dx = kc_ffill(N * C, KC_PREFILL), *dw = kc_ffill(C, KC_PREFILL);
  K->rmsnorm_backward(dx, dw, dy, x, w, rstd, N, C);
  /* C = 1: the true dinp is ~eps/|x|^3, pure cancellation in any f32 code */
  if (C > 1) kc_check_grad("rmsnorm dinp", &p, 0, dx, 2e-4, 300);
  kc_check_grad("rmsnorm dweight", &p, 1, dw, 1e-4, 300);
  kc_problem_free(&p);
}

/* ---- pointwise activations ---- */

typedef enum { ACT_GELU, ACT_RELU, ACT_SILU } act_kind;

static double act_ref1(act_kind k, double x) {
  switch (k) {
  case ACT_GELU:
    return 0.5 * x * (1.0 + erf(x / sqrt(2.0)));
  case ACT_RELU:
    return x > 0 ? x : 0.0;
  default:
    return x / (1.0 + exp(-x));
  }
}

static void act_ref(kc_problem *p) {
  const act_kind *k = p->ctx;
  for (int64_t i = 0; i < p->out_n; i++) p->out[i] = act_ref1(*k, p->in[0][i]);
}

static void test_activation(act_kind kind, int64_t n, double range) {
  static const char *names[] = {"gelu", "relu", "silu"};
  kc_problem p = {.forward = act_ref, .ctx = &kind};
  kc_add_input(&p, n, -range, range);
  for (int64_t i = 0; i < n; i++) /* keep FD away from ReLU's kink */
    if (fabs(p.in[0][i]) < 1e-3) p.in[0][i] = 0.5;
  kc_set_output(&p, n);
  g_autofree float *x = kc_f32(p.in[0], n), *y = kc_fzeros(n);
  void (*fwd[])(float *, const float *, int64_t) = {K->gelu_forward, K->relu_forward,
                                                    K->silu_forward};
  void (*bwd[])(float *, const float *, const float *,
                int64_t) = {K->gelu_backward, K->relu_backward, K->silu_backward};
  fwd[kind](y, x, n);
  /* absolute error check (outputs near 0 in the tails): the vectorised
   * exp/erf are accurate to a few 1e-7 */
  g_autofree char *fn = g_strdup_printf("%s forward", names[kind]);
  KC_EXPECT(fn, kc_err(y, p.out, n, 1.0), 2e-6);
  g_autofree float *dy = kc_f32(p.dout, n), *dx = kc_ffill(n, KC_PREFILL);
  bwd[kind](dx, x, dy, n);
  g_autofree char *bn = g_strdup_printf("%s backward", names[kind]);
  kc_check_grad(bn, &p, 0, dx, 1e-5, n > 10000 ? 60 : 400);
  /* in place forward */
  fwd[kind](x, x, n);
  PS_CHECK(memcmp(x, y, sizeof(float) * n) == 0);
  kc_problem_free(&p);
}

/* GELU against exact erf on a dense grid including the far tails. */
static void test_gelu_grid(void) {
  int64_t n = 4001;
  g_autofree float *x = kc_fzeros(n), *y = kc_fzeros(n);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(-20.0 + 40.0 * i / (n - 1));
  K->gelu_forward(y, x, n);
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double r = act_ref1(ACT_GELU, x[i]);
    double e = fabs(y[i] - r) / fmax(fabs(r), 1.0);
    if (!(e <= worst)) worst = e;
  }
  /* the rational erf is within 4e-7 of erf, so |GELU error| <= 0.5 |x| 4e-7
   * where erf saturates (|x| ~ 5.7); PyTorch's own f32 1 + erf rounds at 6e-8 */
  KC_EXPECT("gelu grid [-20, 20]", worst, 1.5e-6);
}

/* ---- swiglu ---- */

typedef struct {
  int64_t N, C, ld;
} sw_ctx;

static void swiglu_ref(kc_problem *p) {
  const sw_ctx *c = p->ctx;
  /* in[0] holds gate and up: separate (ld = C, up after all gates) or packed rows */
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t i = 0; i < c->C; i++) {
      double g, u;
      if (c->ld == c->C) {
        g = p->in[0][n * c->C + i];
        u = p->in[0][c->N * c->C + n * c->C + i];
      } else {
        g = p->in[0][n * c->ld + i];
        u = p->in[0][n * c->ld + c->C + i];
      }
      p->out[n * c->C + i] = g / (1.0 + exp(-g)) * u;
    }
}

static void test_swiglu(int64_t N, int64_t C, int packed) {
  sw_ctx c = {N, C, packed ? 2 * C : C};
  kc_problem p = {.forward = swiglu_ref, .ctx = &c};
  kc_add_input(&p, 2 * N * C, -4, 4);
  kc_set_output(&p, N * C);
  g_autofree float *h = kc_f32(p.in[0], 2 * N * C), *y = kc_fzeros(N * C);
  const float *gate = h, *up = packed ? h + C : h + N * C;
  K->swiglu_forward(y, gate, up, N, C, packed ? 2 * C : 0);
  kc_check_fwd(packed ? "swiglu packed forward" : "swiglu forward", y, p.out, N * C, 1e-6);
  g_autofree float *dy = kc_f32(p.dout, N * C), *dh = kc_ffill(2 * N * C, KC_PREFILL);
  K->swiglu_backward(dh, packed ? dh + C : dh + N * C, dy, gate, up, N, C, packed ? 2 * C : 0);
  kc_check_grad(packed ? "swiglu packed backward" : "swiglu backward", &p, 0, dh, 1e-5, 400);
  kc_problem_free(&p);
}

/* ---- layer scale ---- */

typedef struct {
  int64_t N, C;
} nc_ctx;

static void ls_ref(kc_problem *p) {
  const nc_ctx *c = p->ctx;
  for (int64_t n = 0; n < c->N; n++)
    for (int64_t i = 0; i < c->C; i++) p->out[n * c->C + i] = p->in[0][n * c->C + i] * p->in[1][i];
}

static void test_layerscale(int64_t N, int64_t C) {
  nc_ctx c = {N, C};
  kc_problem p = {.forward = ls_ref, .ctx = &c};
  kc_add_input(&p, N * C, -2, 2);
  kc_add_input(&p, C, -1, 1);
  kc_set_output(&p, N * C);
  g_autofree float *x = kc_f32(p.in[0], N * C), *g = kc_f32(p.in[1], C), *y = kc_fzeros(N * C);
  K->layerscale_forward(y, x, g, N, C);
  kc_check_fwd("layerscale forward", y, p.out, N * C, 1e-7);
  g_autofree float *dy = kc_f32(p.dout, N * C);
  g_autofree float *dx = kc_ffill(N * C, KC_PREFILL), *dg = kc_ffill(C, KC_PREFILL);
  K->layerscale_backward(dx, dg, dy, x, g, N, C);
  kc_check_grad("layerscale dinp", &p, 0, dx, 1e-5, 300);
  kc_check_grad("layerscale dgamma", &p, 1, dg, 1e-5, 300);
  kc_problem_free(&p);
}

/* ---- softmax ---- */

static void softmax_ref(kc_problem *p) {
  const nc_ctx *c = p->ctx;
  for (int64_t n = 0; n < c->N; n++) {
    const double *x = p->in[0] + n * c->C;
    double mx = -INFINITY, s = 0.0;
    for (int64_t i = 0; i < c->C; i++) mx = fmax(mx, x[i]);
    for (int64_t i = 0; i < c->C; i++) s += exp(x[i] - mx);
    for (int64_t i = 0; i < c->C; i++) p->out[n * c->C + i] = exp(x[i] - mx) / s;
  }
}

static void test_softmax(int64_t N, int64_t C, double range) {
  nc_ctx c = {N, C};
  kc_problem p = {.forward = softmax_ref, .ctx = &c};
  kc_add_input(&p, N * C, -range, range);
  kc_set_output(&p, N * C);
  g_autofree float *x = kc_f32(p.in[0], N * C), *y = kc_fzeros(N * C);
  K->softmax_forward(y, x, N, C);
  kc_check_fwd("softmax forward", y, p.out, N * C, 1e-5);
  g_autofree float *dy = kc_f32(p.dout, N * C), *dx = kc_ffill(N * C, KC_PREFILL);
  K->softmax_backward(dx, dy, y, N, C);
  kc_check_grad("softmax backward", &p, 0, dx, 1e-4, 300);
  kc_problem_free(&p);
}

static void test_softmax_masked(void) {
  /* -inf entries get probability 0; a row of only -inf gives zeros, not NaN */
  float x[8] = {1.0f, -INFINITY, 2.0f, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
  float y[8];
  K->softmax_forward(y, x, 2, 4);
  double e = exp(-1.0);
  PS_CHECK_NEAR(y[0], e / (1 + e), 1e-6);
  PS_CHECK_NEAR(y[2], 1 / (1 + e), 1e-6);
  PS_CHECK(y[1] == 0.0f && y[3] == 0.0f);
  PS_CHECK(y[4] == 0.0f && y[5] == 0.0f && y[6] == 0.0f && y[7] == 0.0f);
  /* huge logits do not overflow */
  float big[3] = {1e4f, 1e4f - 1.0f, -1e4f}, yb[3];
  K->softmax_forward(yb, big, 1, 3);
  PS_CHECK_NEAR(yb[0], 1.0 / (1.0 + exp(-1.0)), 1e-6);
  PS_CHECK(yb[2] == 0.0f);
}

/* The softmax row's exp (kernels/cpu/softmax_row.c, FMA-contracted
 * polynomial) over its whole range: a row (0, x) has p1 = e^x / (1 + e^x),
 * so sweeping x over [-87.3, 0] checks every exp argument a softmax can
 * produce, element by element (relative error, not a norm), against double
 * precision. Below the float normal range the exp flushes to exactly 0, and a
 * NaN anywhere in a row makes the whole row NaN (non-finite losses must
 * surface, not be hidden). */
static void test_softmax_exp_range(void) {
  enum { R = 20001 };
  g_autofree float *x = g_new(float, 2 * R), *y = g_new(float, 2 * R);
  for (int i = 0; i < R; i++) {
    x[2 * i] = 0.0f;
    x[2 * i + 1] = (float)(-87.3 * i / (R - 1));
  }
  K->softmax_forward(y, x, R, 2);
  double worst = 0.0;
  for (int i = 0; i < R; i++) {
    double e = exp((double)x[2 * i + 1]), p1 = e / (1.0 + e);
    double err = fabs(y[2 * i + 1] - p1) / p1;
    if (err > worst) worst = err;
    PS_CHECK(y[2 * i] > 0.0f);
  }
  /* a few float ulps (6e-8 each): exp ~1 ulp, the scale by 1/sum ~1 ulp */
  PS_CHECK_MSG(worst <= 3e-7, "softmax exp: worst relative error %.3g", worst);
  float under[4] = {0.0f, -87.5f, -100.0f, -1e30f}, yu[4];
  K->softmax_forward(yu, under, 1, 4);
  PS_CHECK(yu[0] == 1.0f && yu[1] == 0.0f && yu[2] == 0.0f && yu[3] == 0.0f);
  float withnan[3] = {1.0f, NAN, 0.0f}, yn[3];
  K->softmax_forward(yn, withnan, 1, 3);
  PS_CHECK(isnan(yn[0]) && isnan(yn[1]) && isnan(yn[2]));
}

/* ---- transpose and the elementwise helpers ---- */

typedef struct {
  int64_t Bt, M, N;
} tr_ctx;

static void transpose_ref(kc_problem *p) {
  const tr_ctx *c = p->ctx;
  for (int64_t b = 0; b < c->Bt; b++)
    for (int64_t i = 0; i < c->M; i++)
      for (int64_t j = 0; j < c->N; j++)
        p->out[(b * c->N + j) * c->M + i] = p->in[0][(b * c->M + i) * c->N + j];
}

static void test_transpose(int64_t Bt, int64_t M, int64_t N) {
  tr_ctx c = {Bt, M, N};
  int64_t n = Bt * M * N;
  kc_problem p = {.forward = transpose_ref, .ctx = &c};
  kc_add_input(&p, n, -1, 1);
  kc_set_output(&p, n);
  g_autofree float *x = kc_f32(p.in[0], n), *y = kc_fzeros(n);
  K->transpose_forward(y, x, Bt, M, N);
  kc_check_fwd("transpose forward", y, p.out, n, 0.0);
  g_autofree float *dy = kc_f32(p.dout, n), *dx = kc_ffill(n, KC_PREFILL);
  K->transpose_backward(dx, dy, Bt, M, N);
  kc_check_grad("transpose backward", &p, 0, dx, 1e-6, 300);
  kc_problem_free(&p);
}

static void test_elementwise(int64_t n) {
  g_autofree double *a = kc_dvec(n, -2, 2), *b = kc_dvec(n, -2, 2), *g = kc_dvec(n, -1, 1);
  g_autofree float *fa = kc_f32(a, n), *fb = kc_f32(b, n), *fg = kc_f32(g, n);
  g_autofree float *y = kc_fzeros(n), *da = kc_ffill(n, KC_PREFILL), *db = kc_ffill(n, KC_PREFILL);
  int ok_add = 1, ok_mul = 1, ok_mulb = 1, ok_axpy = 1, ok_scale = 1, ok_fill = 1;
  K->add_forward(y, fa, fb, n);
  for (int64_t i = 0; i < n; i++) ok_add &= y[i] == (float)(fa[i] + fb[i]);
  K->mul_forward(y, fa, fb, n);
  for (int64_t i = 0; i < n; i++) ok_mul &= y[i] == fa[i] * fb[i];
  K->mul_backward(da, db, fg, fa, fb, n);
  for (int64_t i = 0; i < n; i++)
    ok_mulb &= fabs(da[i] - KC_PREFILL - g[i] * b[i]) < 1e-6 &&
               fabs(db[i] - KC_PREFILL - g[i] * a[i]) < 1e-6;
  memcpy(y, fa, sizeof(float) * n);
  K->axpy(y, 0.5f, fb, n);
  for (int64_t i = 0; i < n; i++) ok_axpy &= fabs(y[i] - (a[i] + 0.5 * b[i])) < 1e-6;
  K->scale(y, fa, -3.0f, n);
  for (int64_t i = 0; i < n; i++) ok_scale &= y[i] == -3.0f * fa[i];
  K->fill(y, 1.5f, n);
  for (int64_t i = 0; i < n; i++) ok_fill &= y[i] == 1.5f;
  PS_CHECK(ok_add);
  PS_CHECK(ok_mul);
  PS_CHECK(ok_mulb);
  PS_CHECK(ok_axpy);
  PS_CHECK(ok_scale);
  PS_CHECK(ok_fill);
}

int main(void) {
  K = kc_cpu();
  kc_seed(2);
  test_layernorm(1, 1, 1e-5, 1);
  test_layernorm(5, 7, 1e-6, 1);
  test_layernorm(3, 64, 1e-5, 0);
  test_layernorm(50, 771, 1e-6, 1); /* threaded, weight grads fused into the row pass */
  test_layernorm(9, 4099, 1e-5, 1); /* rows wider than the fused stack copies */
  test_layernorm2d(2, 5, 70);       /* HW not a multiple of the 64-pixel block */
  test_layernorm2d(1, 1, 3);
  test_layernorm2d(2, 16, 130);
  test_rmsnorm(1, 1);
  test_rmsnorm(4, 9);
  test_rmsnorm(40, 897);
  test_rmsnorm(9, 4100);
  for (int k = 0; k < 3; k++) {
    test_activation((act_kind)k, 1, 3.0);
    test_activation((act_kind)k, 1001, 6.0);
    test_activation((act_kind)k, 40001, 10.0); /* threaded path */
  }
  test_gelu_grid();
  test_swiglu(1, 1, 0);
  test_swiglu(3, 17, 0);
  test_swiglu(3, 17, 1);
  test_layerscale(1, 1);
  test_layerscale(9, 13);
  test_softmax(1, 1, 1.0);
  test_softmax(3, 17, 5.0);
  test_softmax(2, 1000, 20.0);
  /* row widths around the SIMD widths (8, 16) and the 256-wide attention rows */
  test_softmax(5, 15, 10.0);
  test_softmax(4, 257, 30.0);
  test_softmax_masked();
  test_softmax_exp_range();
  test_transpose(1, 1, 1);
  test_transpose(2, 33, 70);
  test_transpose(3, 5, 1);
  test_elementwise(1);
  test_elementwise(100003);
  return ps_test_finish();
}
