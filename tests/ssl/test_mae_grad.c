/* test_mae_grad.c — backward of the ssl plugin against central finite
 * differences at tiny sizes:
 *   - the whole MaskedAutoencoderViT (mae_vit.c): every parameter tensor
 *     (including the frozen position tables, whose gradient is computed when
 *     someone trains them) and the input image, for the loss plus a random
 *     linear function of pred;
 *   - the ssl.mae_decoder component through its vtable: parameters and the
 *     gradient of the feature map (kept tokens and the mean in the cls slot);
 *   - Eq. 1's stain term, its value against a double reference, pooling.
 * Each parameter tensor is checked along a random direction (its directional
 * derivative) and at a few single coordinates. The model runs in float32, so
 * the step is 1e-2 and the tolerance a few 1e-3 relative. */
#include <pathseg/pipeline.h>

#include "ssl_plugin.h"
#include "ssl_stain.h"
#include "ssl_test_util.h"

typedef double (*objective_fn)(void *user);

/* Largest |fd - analytic| / |grad| seen, for the log. */
static double worst_rel = 0.0;

/* Checks grad (analytic, n floats) of f at x along a random direction and at
 * `coords` coordinates. */
static void check_grad(const char *what, float *x, const float *grad, int64_t n, objective_fn f,
                       void *user, ps_rng *rng, int coords, double tol) {
  const double h = 1e-2;
  float *v = g_new(float, n), *x0 = g_memdup2(x, (gsize)n * sizeof(float));
  double gv = 0, vv = 0;
  for (int64_t i = 0; i < n; i++) {
    v[i] = (float)ps_rng_normal(rng);
    gv += (double)grad[i] * v[i];
    vv += (double)v[i] * v[i];
  }
  /* scale the direction to unit length so h is a step in parameter space */
  double inv = 1.0 / sqrt(vv);
  gv *= inv;
  for (int64_t i = 0; i < n; i++) x[i] = (float)(x0[i] + h * inv * v[i]);
  double up = f(user);
  for (int64_t i = 0; i < n; i++) x[i] = (float)(x0[i] - h * inv * v[i]);
  double dn = f(user);
  memcpy(x, x0, (size_t)n * sizeof(float));
  double fd = (up - dn) / (2 * h);
  double gnorm = 0;
  for (int64_t i = 0; i < n; i++) gnorm += (double)grad[i] * grad[i];
  gnorm = sqrt(gnorm);
  double err = fabs(fd - gv);
  worst_rel = fmax(worst_rel, err / (gnorm + 1e-12));
  PS_CHECK_MSG(err <= tol * gnorm + 1e-5,
               "%s: directional derivative %.6g, analytic %.6g (|g| %.3g)", what, fd, gv, gnorm);
  for (int c = 0; c < coords; c++) {
    int64_t i = (int64_t)ps_rng_below(rng, (uint64_t)n);
    x[i] = (float)(x0[i] + h);
    up = f(user);
    x[i] = (float)(x0[i] - h);
    dn = f(user);
    x[i] = x0[i];
    fd = (up - dn) / (2 * h);
    worst_rel = fmax(worst_rel, fabs(fd - grad[i]) / (gnorm + 1e-12));
    PS_CHECK_MSG(fabs(fd - grad[i]) <= tol * gnorm + 1e-5,
                 "%s[%" G_GINT64_FORMAT "]: fd %.6g, analytic %.6g", what, i, fd, (double)grad[i]);
  }
  g_free(v);
  g_free(x0);
}

/* ---- the whole MAE model --------------------------------------------------- */

typedef struct {
  mae_model m;
  const ps_kernels *k;
  ps_context *ctx;
  float *imgs, *noise, *R; /* R: (B, L, P) weights of the extra linear term */
  int64_t B;
  double wloss; /* weight of the loss in the objective */
} mae_case;

static double mae_objective(void *user) {
  mae_case *c = user;
  if (!mae_model_forward(&c->m, c->k, c->ctx, c->imgs, c->noise, c->B, NULL)) return NAN;
  double f = c->wloss * c->m.loss;
  for (int64_t i = 0; i < c->B * c->m.L * c->m.P_dim; i++) f += (double)c->R[i] * c->m.pred.p[i];
  ps_context_reset_scratch(c->ctx);
  return f;
}

static void test_mae_model(void) {
  GError *error = NULL;
  mae_cfg cfg = {.img_size = 12,
                 .patch_size = 4,
                 .in_chans = 3,
                 .embed_dim = 8,
                 .depth = 2,
                 .num_heads = 2,
                 .dec_dim = 8,
                 .dec_depth = 1,
                 .dec_heads = 2,
                 .mlp_ratio = 2.0,
                 .eps = 1e-6,
                 .mask_ratio = 0.5,
                 .norm_pix = TRUE};
  mae_case c = {.B = 2, .wloss = 1.0};
  ps_rng rng;
  ps_rng_seed(&rng, 7);
  gboolean ok = mae_model_init(&c.m, &cfg, &rng, &error);
  PS_CHECK_OK(ok, error);
  if (!ok) return;
  c.k = ps_kernels_get(PS_DEVICE_CPU, NULL);
  c.ctx = ps_context_new(PS_DEVICE_CPU, 1, 0);
  const int64_t L = 9, P = 48, HW = 144;
  c.imgs = g_new(float, c.B * 3 * HW);
  c.noise = g_new(float, c.B *L);
  c.R = g_new(float, c.B *L *P);
  for (int64_t i = 0; i < c.B * 3 * HW; i++) c.imgs[i] = (float)ps_rng_normal(&rng);
  for (int64_t i = 0; i < c.B * L; i++) c.noise[i] = ps_rng_uniform(&rng);
  for (int64_t i = 0; i < c.B * L * P; i++) c.R[i] = (float)(0.01 * ps_rng_normal(&rng));
  /* Random (not identity) norms and tokens so their gradients are generic. */
  ps_param_list pl = pl_params_list(&c.m.P);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    if (strstr(pl.items[i].name, "norm") || strstr(pl.items[i].name, "token") ||
        g_str_has_suffix(pl.items[i].name, ".bias"))
      for (int64_t j = 0; j < ps_tensor_numel(t); j++)
        ps_f32(t)[j] += (float)(0.2 * ps_rng_normal(&rng));
    pl.items[i].grad = ps_tensor_new(PS_DTYPE_F32, t->ndim, t->shape, NULL);
  }
  PS_CHECK_OK(mae_model_forward(&c.m, c.k, c.ctx, c.imgs, c.noise, c.B, &error), error);
  PS_CHECK(c.m.Lk == 4);
  PS_CHECK_OK(mae_model_backward(&c.m, c.k, c.ctx, 1.0, c.R, NULL, &error), error);
  ps_context_reset_scratch(c.ctx);
  for (size_t i = 0; i < pl.count; i++)
    check_grad(pl.items[i].name, ps_f32(pl.items[i].value), ps_f32(pl.items[i].grad),
               ps_tensor_numel(pl.items[i].value), mae_objective, &c, &rng, 3, 5e-3);
  /* The image also makes the target, which carries no gradient (as in
   * PyTorch): check d/dimgs on the pred term alone. */
  float *dimgs = g_new0(float, c.B * 3 * HW);
  c.wloss = 0.0;
  for (int64_t i = 0; i < c.B * L * P; i++) c.R[i] *= 100.0f;
  PS_CHECK_OK(mae_model_forward(&c.m, c.k, c.ctx, c.imgs, c.noise, c.B, &error), error);
  PS_CHECK_OK(mae_model_backward(&c.m, c.k, c.ctx, 0.0, c.R, dimgs, &error), error);
  ps_context_reset_scratch(c.ctx);
  check_grad("imgs", c.imgs, dimgs, c.B * 3 * HW, mae_objective, &c, &rng, 5, 5e-3);
  /* The encoder never sees a removed patch's pixels. */
  gboolean any_kept = FALSE, masked_zero = TRUE;
  for (int64_t l = 0; l < L; l++) {
    int64_t py = l / 3, px = l % 3;
    float s = 0;
    for (int64_t ch = 0; ch < 3; ch++)
      for (int64_t y = 0; y < 4; y++)
        for (int64_t x = 0; x < 4; x++) s += fabsf(dimgs[(ch * 12 + py * 4 + y) * 12 + px * 4 + x]);
    if (c.m.mask.p[l] == 1.0f)
      masked_zero = masked_zero && s == 0.0f;
    else
      any_kept = any_kept || s > 0.0f;
  }
  PS_CHECK(any_kept && masked_zero);
  for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
  g_free(dimgs);
  g_free(c.imgs);
  g_free(c.noise);
  g_free(c.R);
  ps_context_free(c.ctx);
  mae_model_clear(&c.m);
}

/* ---- ssl.mae_decoder through its vtable ----------------------------------- */

typedef struct {
  void *self;
  ps_context *ctx;
  ps_tensor *feat, *mask;
  float *R;
  int64_t n_pred;
} dec_case;

static double dec_objective(void *user) {
  dec_case *c = user;
  ps_port in_items[2] = {{"features", c->feat, FALSE}, {"mask", c->mask, FALSE}};
  ps_port out_items[1] = {{"pred", NULL, FALSE}};
  ps_ports in = {in_items, 2}, out = {out_items, 1};
  if (!ssl_mae_decoder_desc.vtable->forward(c->self, c->ctx, &in, &out, NULL)) return NAN;
  double f = 0;
  for (int64_t i = 0; i < c->n_pred; i++) f += (double)c->R[i] * ps_f32(out_items[0].tensor)[i];
  ps_context_reset_scratch(c->ctx);
  return f;
}

static void test_decoder_component(void) {
  GError *error = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(
      ssl_mae_decoder_desc.config,
      "{in_dim: 6, embed_dim: 8, depth: 2, num_heads: 2, patch_size: 2, mlp_ratio: 2.0}", "test",
      &error);
  PS_CHECK_OK(cfg != NULL, error);
  if (!cfg) return;
  dec_case c = {0};
  c.ctx = ps_context_new(PS_DEVICE_CPU, 1, 3);
  c.self = ssl_mae_decoder_desc.vtable->create(cfg, c.ctx, &error);
  PS_CHECK_OK(c.self != NULL, error);
  if (!c.self) return;
  ps_rng rng;
  ps_rng_seed(&rng, 11);
  const int64_t B = 2, C = 6, gh = 3, gw = 2, L = 6, P = 12;
  c.feat = ps_tensor_new4(PS_DTYPE_F32, B, C, gh, gw, NULL);
  c.mask = ps_tensor_new4(PS_DTYPE_F32, B, L, -1, -1, NULL);
  for (int64_t i = 0; i < B * C * L; i++) ps_f32(c.feat)[i] = (float)ps_rng_normal(&rng);
  const float m[12] = {1, 0, 1, 1, 0, 0, /**/ 0, 1, 1, 0, 1, 1}; /* 3 and 2 kept: uneven */
  memcpy(c.mask->data, m, sizeof m);
  ps_port in_items[2] = {{"features", c.feat, FALSE}, {"mask", c.mask, FALSE}};
  ps_port out_items[1] = {{"pred", NULL, FALSE}};
  ps_ports in = {in_items, 2}, out = {out_items, 1};
  PS_CHECK_FAILS_WITH(ssl_mae_decoder_desc.vtable->forward(c.self, c.ctx, &in, &out, &error), error,
                      "keeps");
  const float m2[12] = {1, 0, 1, 1, 0, 1, /**/ 0, 1, 1, 0, 1, 1};
  memcpy(c.mask->data, m2, sizeof m2);
  c.n_pred = B * L * P;
  c.R = g_new(float, c.n_pred);
  for (int64_t i = 0; i < c.n_pred; i++) c.R[i] = (float)ps_rng_normal(&rng);
  ps_param_list pl = ssl_mae_decoder_desc.vtable->params(c.self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *t = pl.items[i].value;
    for (int64_t j = 0; j < ps_tensor_numel(t); j++)
      ps_f32(t)[j] += (float)(0.1 * ps_rng_normal(&rng));
    pl.items[i].grad = ps_tensor_new(PS_DTYPE_F32, t->ndim, t->shape, NULL);
  }
  PS_CHECK_OK(ssl_mae_decoder_desc.vtable->forward(c.self, c.ctx, &in, &out, &error), error);
  PS_CHECK(out_items[0].tensor && out_items[0].tensor->shape[1] == L &&
           out_items[0].tensor->shape[2] == P);
  ps_tensor *dpred = ps_tensor_new4(PS_DTYPE_F32, B, L, P, -1, NULL);
  memcpy(dpred->data, c.R, dpred->nbytes);
  ps_port go[1] = {{"pred", dpred, FALSE}};
  ps_port gi[2] = {{"features", NULL, TRUE}, {"mask", NULL, FALSE}};
  ps_ports grad_out = {go, 1}, grad_in = {gi, 2};
  PS_CHECK_OK(ssl_mae_decoder_desc.vtable->backward(c.self, c.ctx, &grad_out, &grad_in, &error),
              error);
  PS_CHECK(gi[0].tensor != NULL && gi[0].tensor->ndim == 4 && gi[0].tensor->shape[2] == gh);
  float *dfeat = gi[0].tensor ? g_memdup2(gi[0].tensor->data, gi[0].tensor->nbytes) : NULL;
  ps_context_reset_scratch(c.ctx);
  for (size_t i = 0; i < pl.count; i++)
    check_grad(pl.items[i].name, ps_f32(pl.items[i].value), ps_f32(pl.items[i].grad),
               ps_tensor_numel(pl.items[i].value), dec_objective, &c, &rng, 3, 5e-3);
  if (dfeat) {
    check_grad("features", ps_f32(c.feat), dfeat, B * C * L, dec_objective, &c, &rng, 6, 5e-3);
    /* Removed positions of the feature map get no gradient. */
    gboolean zero = TRUE;
    for (int64_t b = 0; b < B; b++)
      for (int64_t l = 0; l < L; l++)
        if (m2[b * L + l] == 1.0f)
          for (int64_t ch = 0; ch < C; ch++) zero = zero && dfeat[(b * C + ch) * L + l] == 0.0f;
    PS_CHECK(zero);
  }
  for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
  g_free(dfeat);
  g_free(c.R);
  ps_tensor_free(dpred);
  ps_tensor_free(c.feat);
  ps_tensor_free(c.mask);
  ssl_mae_decoder_desc.vtable->destroy(c.self);
  ps_context_free(c.ctx);
}

/* ---- Eq. 1 ------------------------------------------------------------------- */

typedef struct {
  float *za, *zb, *sa, *sb;
  int64_t B, C;
  double alpha;
} stain_case;

static double stain_objective(void *user) {
  stain_case *s = user;
  return ssl_stain_loss(NULL, NULL, s->za, s->zb, s->sa, s->sb, s->B, s->C, 6, s->alpha, 1.0, NULL);
}

static void test_stain(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 5);
  stain_case s = {.B = 3, .C = 5, .alpha = 0.7};
  s.za = g_new(float, 15);
  s.zb = g_new(float, 15);
  s.sa = g_new(float, 18);
  s.sb = g_new(float, 18);
  for (int i = 0; i < 15; i++) {
    s.za[i] = (float)ps_rng_normal(&rng);
    s.zb[i] = (float)ps_rng_normal(&rng);
  }
  for (int i = 0; i < 18; i++) {
    s.sa[i] = (float)(100 + 60 * ps_rng_uniform(&rng));
    s.sb[i] = (float)(100 + 60 * ps_rng_uniform(&rng));
  }
  /* reference in double */
  double ref = 0;
  for (int b = 0; b < 3; b++) {
    double dot = 0, na = 0, nb = 0, sq = 0;
    for (int i = 0; i < 6; i++) {
      dot += (double)s.sa[b * 6 + i] * s.sb[b * 6 + i];
      na += (double)s.sa[b * 6 + i] * s.sa[b * 6 + i];
      nb += (double)s.sb[b * 6 + i] * s.sb[b * 6 + i];
    }
    for (int c = 0; c < 5; c++) sq += pow((double)s.za[b * 5 + c] - s.zb[b * 5 + c], 2);
    ref += (1 - dot / sqrt(na * nb)) * sq / 3;
  }
  double dist = 0;
  double got = ssl_stain_loss(NULL, NULL, s.za, s.zb, s.sa, s.sb, 3, 5, 6, 0.7, 1.0, &dist);
  PS_CHECK_NEAR(got, 0.7 * ref, 1e-9);
  PS_CHECK_NEAR(dist, ref, 1e-9);
  PS_CHECK(ref > 0);
  /* identical stains weigh nothing; alpha 0 is off */
  PS_CHECK(ssl_stain_loss(NULL, NULL, s.za, s.zb, s.sa, s.sa, 3, 5, 6, 0.7, 1.0, NULL) < 1e-9);
  PS_CHECK(ssl_stain_loss(NULL, NULL, s.za, s.zb, s.sa, s.sb, 3, 5, 6, 0.0, 1.0, NULL) == 0.0);
  float dza[15] = {0}, dzb[15] = {0};
  ssl_stain_loss(dza, dzb, s.za, s.zb, s.sa, s.sb, 3, 5, 6, 0.7, 1.0, NULL);
  check_grad("z_a", s.za, dza, 15, stain_objective, &s, &rng, 4, 1e-4);
  check_grad("z_b", s.zb, dzb, 15, stain_objective, &s, &rng, 4, 1e-4);
  /* pooling and its backward are adjoint: <pool(e), g> = <e, pool^T(g)> */
  float emb[2 * 3 * 4], z[6], g[6], demb[24];
  for (int i = 0; i < 24; i++) emb[i] = (float)ps_rng_normal(&rng);
  for (int i = 0; i < 6; i++) g[i] = (float)ps_rng_normal(&rng);
  ssl_pool_mean(z, emb, 2, 3, 4);
  ssl_pool_mean_backward(demb, g, 2, 3, 4);
  double lhs = 0, rhs = 0;
  for (int i = 0; i < 6; i++) lhs += (double)z[i] * g[i];
  for (int i = 0; i < 24; i++) rhs += (double)emb[i] * demb[i];
  PS_CHECK_NEAR(lhs, rhs, 1e-5);
  PS_CHECK_NEAR(z[1], (emb[4] + emb[5] + emb[6] + emb[7]) / 4.0, 1e-6);
  /* u8 HWC -> f32 CHW */
  const uint8_t px[2 * 2 * 3] = {255, 0, 51, 1, 2, 3, 4, 5, 6, 7, 8, 9};
  float chw[12];
  ssl_u8_hwc_to_f32_chw(chw, px, 1, 2, 2, 3);
  PS_CHECK(chw[0] == 1.0f && chw[4] == 0.0f && fabsf(chw[8] - 0.2f) < 1e-7f &&
           chw[1] == 1.0f / 255.0f);
  g_free(s.za);
  g_free(s.zb);
  g_free(s.sa);
  g_free(s.sb);
}

/* ---- the variance guard -------------------------------------------------------- */

typedef struct {
  float *emb;
  int64_t B, C, HW;
} var_case;

static double var_objective(void *user) {
  var_case *v = user;
  double stats[9] = {0};
  ssl_variance_stats(stats, v->emb, v->B, v->C, v->HW);
  return ssl_variance_loss(NULL, v->emb, stats, v->B, v->C, v->HW, 0.8, 1.0, NULL);
}

static void test_variance_guard(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 17);
  enum { B = 4, C = 3, HW = 5, N = B * C * HW };
  const double scale[C] = {0.3, 0.6, 3.0}; /* channels 0, 1 under the target 1, channel 2 over */
  float emb[N];
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      for (int j = 0; j < HW; j++)
        emb[(b * C + c) * HW + j] = (float)(0.5 + scale[c] * ps_rng_normal(&rng));
  /* reference: two-pass unbiased variance in double */
  double ref = 0, ref_std = 0;
  for (int c = 0; c < C; c++) {
    double m = 0, ss = 0;
    for (int b = 0; b < B; b++)
      for (int j = 0; j < HW; j++) m += emb[(b * C + c) * HW + j];
    m /= B * HW;
    for (int b = 0; b < B; b++)
      for (int j = 0; j < HW; j++) ss += pow(emb[(b * C + c) * HW + j] - m, 2);
    double var = ss / (B * HW - 1);
    ref += fmax(0.0, 1.0 - sqrt(var + 1e-4));
    ref_std += sqrt(var);
  }
  ref *= 0.8 / C;
  double stats[3 * C] = {0}, std_mean = 0;
  float demb[N] = {0};
  ssl_variance_stats(stats, emb, B, C, HW);
  double got = ssl_variance_loss(demb, emb, stats, B, C, HW, 0.8, 1.0, &std_mean);
  PS_CHECK_NEAR(got, ref, 1e-9);
  PS_CHECK_NEAR(std_mean, ref_std / C, 1e-9);
  PS_CHECK(ref > 0.1);        /* channels 0 and 1 are in the hinge */
  for (int b = 0; b < B; b++) /* channel 2 is over the target: no gradient at all */
    for (int j = 0; j < HW; j++) PS_CHECK(demb[(b * C + 2) * HW + j] == 0.0f);
  var_case v = {emb, B, C, HW};
  check_grad("variance guard", emb, demb, N, var_objective, &v, &rng, 6, 1e-4);
  /* ranks: statistics of two halves of the batch, summed, give the whole
   * batch's loss, and each half's gradient is its slice of the whole's */
  double halves[3 * C] = {0};
  ssl_variance_stats(halves, emb, B / 2, C, HW);
  ssl_variance_stats(halves, emb + (B / 2) * C * HW, B / 2, C, HW);
  float d0[N / 2] = {0}, d1[N / 2] = {0};
  double l0 = ssl_variance_loss(d0, emb, halves, B / 2, C, HW, 0.8, 1.0, NULL);
  double l1 = ssl_variance_loss(d1, emb + N / 2, halves, B / 2, C, HW, 0.8, 1.0, NULL);
  PS_CHECK_NEAR(l0, got, 1e-12);
  PS_CHECK_NEAR(l1, got, 1e-12);
  for (int i = 0; i < N / 2; i++) {
    PS_CHECK_NEAR(d0[i], demb[i], 1e-7);
    PS_CHECK_NEAR(d1[i], demb[N / 2 + i], 1e-7);
  }
  /* a collapsed map (every token equal) is the guard's worst case: gamma */
  float flat[N];
  for (int i = 0; i < N; i++) flat[i] = 0.25f;
  double fs[3 * C] = {0};
  ssl_variance_stats(fs, flat, B, C, HW);
  PS_CHECK_NEAR(ssl_variance_loss(NULL, flat, fs, B, C, HW, 0.8, 1.0, NULL), 0.8 * (1 - 0.01),
                1e-9);
}

int main(void) {
  test_mae_model();
  test_variance_guard();
  test_decoder_component();
  test_stain();
  printf("worst |fd - analytic| / |grad|: %.3g\n", worst_rel);
  return ps_test_finish();
}
