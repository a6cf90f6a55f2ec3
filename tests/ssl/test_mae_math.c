/* test_mae_math.c — MAE's maths (plugins/ssl/mae.c, mae_vit.c) against the
 * official implementation's fixture (tests/fixtures/mae_loss.safetensors)
 * and independent double-precision references written here:
 *   - the 2-D sin-cos tables equal the fixture's pos_embed/decoder_pos_embed;
 *   - masking from input.noise reproduces output.mask and output.ids_restore;
 *     len_keep truncates as Python's int();
 *   - patchify follows reshape(N,3,h,p,w,p) + einsum nchpwq->nhwpqc;
 *   - the loss of (input.imgs, output.pred, output.mask) is output.loss, and a
 *     biased-variance loss is not (the unbiased variance matters);
 *   - d loss / d pred against central differences;
 *   - the whole model reproduces trace.latent, pred and loss;
 *   - the decoder's output does not depend on the order of the kept tokens
 *     (what ssl.mae_decoder relies on), and ids from a mask;
 *   - the stage's pixel masking (mean of visible pixels / zeros). */
#include "ssl_test_util.h"

static ps_safetensors *st;

static void test_sincos(void) {
  g_autoptr(ps_tensor) pos = ps_safetensors_get_f32(st, "pos_embed", NULL);
  g_autoptr(ps_tensor) dpos = ps_safetensors_get_f32(st, "decoder_pos_embed", NULL);
  PS_CHECK(pos && dpos);
  if (!pos || !dpos) return;
  float mine[17 * 32], mine_d[17 * 16];
  mae_sincos_2d(mine, 32, 4, 4, TRUE);
  mae_sincos_2d(mine_d, 16, 4, 4, TRUE);
  double m1 = 0, m2 = 0;
  PS_CHECK(ssl_close(mine, ps_f32(pos), 17 * 32, 1e-6, 0, &m1));
  PS_CHECK(ssl_close(mine_d, ps_f32(dpos), 17 * 16, 1e-6, 0, &m2));
  PS_CHECK_MSG(m1 < 1e-6 && m2 < 1e-6, "sin-cos tables off by %g / %g", m1, m2);
  /* Independent spot check: token (row 1, col 2) = index 1 + 1*4 + 2; dim 0
   * is sin(col * omega_0) = sin(2), dim D/2 is sin(row) = sin(1). */
  PS_CHECK_NEAR(mine[(1 + 6) * 32 + 0], sin(2.0), 1e-6);
  PS_CHECK_NEAR(mine[(1 + 6) * 32 + 16], sin(1.0), 1e-6);
  PS_CHECK_NEAR(mine[(1 + 6) * 32 + 8], cos(2.0), 1e-6);
}

static void test_len_keep(void) {
  PS_CHECK(mae_len_keep(196, 0.75) == 49);
  PS_CHECK(mae_len_keep(16, 0.75) == 4);
  PS_CHECK(mae_len_keep(10, 0.75) == 2);  /* int(2.5) */
  PS_CHECK(mae_len_keep(7, 0.5) == 3);    /* int(3.5) */
  PS_CHECK(mae_len_keep(256, 0.9) == 25); /* int(25.59...) */
}

static void test_masking(void) {
  g_autoptr(ps_tensor) noise = ps_safetensors_get_f32(st, "input.noise", NULL);
  g_autoptr(ps_tensor) want_mask = ps_safetensors_get_f32(st, "output.mask", NULL);
  const ps_tensor *want_ids = ps_safetensors_get(st, "output.ids_restore", NULL);
  PS_CHECK(noise && want_mask && want_ids && want_ids->dtype == PS_DTYPE_I64);
  if (!noise || !want_mask || !want_ids) return;
  const int64_t N = noise->shape[0], L = noise->shape[1];
  int64_t shuf[64], rest[64];
  float mask[64];
  mae_masking_from_noise(shuf, rest, mask, ps_f32(noise), N, L, mae_len_keep(L, 0.75));
  PS_CHECK(memcmp(rest, want_ids->data, (size_t)(N * L) * sizeof(int64_t)) == 0);
  PS_CHECK(memcmp(mask, want_mask->data, (size_t)(N * L) * sizeof(float)) == 0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t r = 1; r < L; r++)
      PS_CHECK(ps_f32(noise)[n * L + shuf[n * L + r - 1]] <=
               ps_f32(noise)[n * L + shuf[n * L + r]]);
  /* ids from the mask: same kept set, kept first in ascending order. */
  int64_t s2[64], r2[64], lk = -1;
  GError *error = NULL;
  PS_CHECK_OK(mae_ids_from_mask(s2, r2, &lk, mask, N, L, &error), error);
  PS_CHECK(lk == 4);
  for (int64_t n = 0; n < N; n++)
    for (int64_t l = 0; l < L; l++) {
      PS_CHECK((r2[n * L + l] < lk) == (mask[n * L + l] == 0.0f));
      PS_CHECK(s2[n * L + r2[n * L + l]] == l);
    }
  float bad[4] = {0, 1, 0, 0}, bad2[4] = {0, 1, 1, 1};
  float uneven[8] = {0, 1, 1, 1, 0, 0, 1, 1};
  PS_CHECK_FAILS_WITH(mae_ids_from_mask(s2, r2, &lk, uneven, 2, 4, &error), error, "keeps");
  bad[1] = 0.5f;
  PS_CHECK_FAILS_WITH(mae_ids_from_mask(s2, r2, &lk, bad, 1, 4, &error), error, "expected 0");
  PS_CHECK_OK(mae_ids_from_mask(s2, r2, &lk, bad2, 1, 4, &error), error);
  PS_CHECK(lk == 1 && s2[0] == 0 && r2[0] == 0 && r2[3] == 3);
}

static void test_patchify(void) {
  const int64_t N = 2, C = 3, h = 3, w = 2, p = 4, H = h * p, W = w * p, P = p * p * C;
  float *img = g_new(float, N *C *H *W), *x = g_new(float, N *h *w *P);
  float *back = g_new0(float, N *C *H *W);
  for (int64_t i = 0; i < N * C * H * W; i++) img[i] = (float)i;
  mae_patchify(x, img, N, C, h, w, p);
  /* imgs.reshape(N, C, h, p, w, p)[n, c, i, a, j, b] -> out[n, i*w+j, (a*p+b)*C + c] */
  int bad = 0;
  for (int64_t n = 0; n < N; n++)
    for (int64_t c = 0; c < C; c++)
      for (int64_t i = 0; i < h; i++)
        for (int64_t a = 0; a < p; a++)
          for (int64_t j = 0; j < w; j++)
            for (int64_t b = 0; b < p; b++) {
              int64_t src = ((((n * C + c) * h + i) * p + a) * w + j) * p + b;
              int64_t dst = ((((n * h + i) * w + j) * p + a) * p + b) * C + c;
              bad += x[dst] != img[src];
            }
  PS_CHECK_MSG(bad == 0, "%d patchify elements differ from the einsum", bad);
  mae_unpatchify(back, x, N, C, h, w, p);
  PS_CHECK(memcmp(back, img, (size_t)(N * C * H * W) * sizeof(float)) == 0);
  g_free(img);
  g_free(x);
  g_free(back);
}

/* forward_loss in double, written from the spec. */
static double ref_loss(const float *imgs, const float *pred, const float *mask, int64_t N,
                       int64_t C, int64_t g, int64_t p, gboolean unbiased) {
  const int64_t L = g * g, P = p * p * C, H = g * p;
  double num = 0, den = 0;
  double *t = g_new(double, P);
  for (int64_t n = 0; n < N; n++)
    for (int64_t l = 0; l < L; l++) {
      int64_t i = l / g, j = l % g;
      for (int64_t a = 0; a < p; a++)
        for (int64_t b = 0; b < p; b++)
          for (int64_t c = 0; c < C; c++)
            t[(a * p + b) * C + c] = imgs[((n * C + c) * H + i * p + a) * H + j * p + b];
      double mean = 0, var = 0;
      for (int64_t d = 0; d < P; d++) mean += t[d];
      mean /= P;
      for (int64_t d = 0; d < P; d++) var += (t[d] - mean) * (t[d] - mean);
      var /= unbiased ? P - 1 : P;
      double se = 0;
      for (int64_t d = 0; d < P; d++) {
        double y = (t[d] - mean) / sqrt(var + 1e-6) - pred[(n * L + l) * P + d];
        se += y * y;
      }
      num += se / P * mask[n * L + l];
      den += mask[n * L + l];
    }
  g_free(t);
  return num / den;
}

static void test_loss(void) {
  g_autoptr(ps_tensor) imgs = ps_safetensors_get_f32(st, "input.imgs", NULL);
  g_autoptr(ps_tensor) pred = ps_safetensors_get_f32(st, "output.pred", NULL);
  g_autoptr(ps_tensor) mask = ps_safetensors_get_f32(st, "output.mask", NULL);
  g_autoptr(ps_tensor) want = ps_safetensors_get_f32(st, "output.loss", NULL);
  PS_CHECK(imgs && pred && mask && want);
  if (!imgs || !pred || !mask || !want) return;
  const int64_t N = 2, C = 3, g = 4, p = 8, L = 16, P = 192;
  float *target = g_new(float, N *L *P);
  mae_patchify(target, ps_f32(imgs), N, C, g, g, p);
  double mine = mae_loss(NULL, ps_f32(pred), target, ps_f32(mask), N, L, P, TRUE, 1e-6, 1.0);
  double unb = ref_loss(ps_f32(imgs), ps_f32(pred), ps_f32(mask), N, C, g, p, TRUE);
  double biased = ref_loss(ps_f32(imgs), ps_f32(pred), ps_f32(mask), N, C, g, p, FALSE);
  PS_CHECK_NEAR(mine, ps_f32(want)[0], 1e-6);
  PS_CHECK_NEAR(unb, ps_f32(want)[0], 1e-6);
  PS_CHECK_MSG(fabs(biased - ps_f32(want)[0]) > 1e-4,
               "biased variance is indistinguishable: %g vs %g", biased, ps_f32(want)[0]);

  /* d loss / d pred by central differences (the loss is quadratic in pred). */
  float *dpred = g_new0(float, N *L *P), *pp = g_memdup2(ps_f32(pred), (gsize)pred->nbytes);
  mae_patchify(target, ps_f32(imgs), N, C, g, g, p);
  mae_loss(dpred, pp, target, ps_f32(mask), N, L, P, TRUE, 1e-6, 1.0);
  mae_patchify(target, ps_f32(imgs), N, C, g, g, p);
  float *tnorm = g_memdup2(target, (gsize)(N * L * P) * sizeof(float));
  mae_loss(NULL, pp, tnorm, ps_f32(mask), N, L, P, TRUE, 1e-6, 1.0); /* normalises tnorm */
  double worst = 0;
  for (int64_t i = 0; i < N * L * P; i += 37) {
    const float h = 1e-2f, keep = pp[i];
    pp[i] = keep + h;
    double up = mae_loss(NULL, pp, tnorm, ps_f32(mask), N, L, P, FALSE, 1e-6, 1.0);
    pp[i] = keep - h;
    double dn = mae_loss(NULL, pp, tnorm, ps_f32(mask), N, L, P, FALSE, 1e-6, 1.0);
    pp[i] = keep;
    double fd = (up - dn) / (2.0 * ((double)(keep + h) - keep));
    worst = fmax(worst, fabs(fd - dpred[i]) / (fabs(fd) + 1e-6));
    if (ps_f32(mask)[i / (P)] == 0.0f) PS_CHECK(dpred[i] == 0.0f);
  }
  PS_CHECK_MSG(worst < 1e-3, "d loss / d pred: relative error %g", worst);
  g_free(dpred);
  g_free(pp);
  g_free(tnorm);
  g_free(target);
}

static void test_model(void) {
  GError *error = NULL;
  mae_cfg c;
  mae_model m;
  PS_CHECK_OK(ssl_fixture_cfg(st, &c, &error), error);
  gboolean ok = mae_model_init(&m, &c, NULL, &error);
  PS_CHECK_OK(ok, error);
  if (!ok) return;
  PS_CHECK_OK(pl_params_load(&m.P, ssl_st_get, st, "mae fixture", &error), error);
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, NULL);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 0);
  g_autoptr(ps_tensor) imgs = ps_safetensors_get_f32(st, "input.imgs", NULL);
  g_autoptr(ps_tensor) noise = ps_safetensors_get_f32(st, "input.noise", NULL);
  g_autoptr(ps_tensor) latent = ps_safetensors_get_f32(st, "trace.latent", NULL);
  g_autoptr(ps_tensor) pred = ps_safetensors_get_f32(st, "output.pred", NULL);
  g_autoptr(ps_tensor) loss = ps_safetensors_get_f32(st, "output.loss", NULL);
  PS_CHECK_OK(mae_model_forward(&m, k, ctx, ps_f32(imgs), ps_f32(noise), 2, &error), error);
  double e1 = 0, e2 = 0;
  PS_CHECK(ssl_close(m.latent.p, ps_f32(latent), ps_tensor_numel(latent), 1e-4, 1e-3, &e1));
  PS_CHECK(ssl_close(m.pred.p, ps_f32(pred), ps_tensor_numel(pred), 1e-4, 1e-3, &e2));
  PS_CHECK_NEAR(m.loss, ps_f32(loss)[0], 1e-4 + 1e-3 * ps_f32(loss)[0]);
  printf("fixture: latent max abs err %.3g, pred %.3g, loss %.9g vs %.9g\n", e1, e2, m.loss,
         (double)ps_f32(loss)[0]);

  /* The decoder fed the kept tokens in ascending patch order (ids from the
   * mask) gives the same prediction as in noise order. */
  const int64_t B = 2, L = m.L, Lk = m.Lk, D = c.embed_dim;
  float *lat2 = g_new(float, B *(1 + Lk) * D), *pred2 = g_new(float, B *L *m.P_dim);
  int64_t *s2 = g_new(int64_t, B * L), *r2 = g_new(int64_t, B * L), lk = 0;
  PS_CHECK_OK(mae_ids_from_mask(s2, r2, &lk, m.mask.p, B, L, &error), error);
  for (int64_t b = 0; b < B; b++) {
    memcpy(lat2 + b * (1 + Lk) * D, m.latent.p + b * (1 + Lk) * D, (size_t)D * sizeof(float));
    for (int64_t r = 0; r < Lk; r++) {
      /* the row of patch s2[r] in the noise order is ids_restore[s2[r]] */
      int64_t src = m.ids_restore[b * L + s2[b * L + r]];
      memcpy(lat2 + (b * (1 + Lk) + 1 + r) * D, m.latent.p + (b * (1 + Lk) + 1 + src) * D,
             (size_t)D * sizeof(float));
    }
  }
  float *pred1 = g_memdup2(m.pred.p, (gsize)(B * L * m.P_dim) * sizeof(float));
  PS_CHECK_OK(mae_decoder_forward(&m.dec, k, &m.P, ctx, lat2, r2, B, 4, 4, Lk, pred2, &error),
              error);
  double e3 = 0;
  PS_CHECK(ssl_close(pred2, pred1, B * L * m.P_dim, 1e-5, 1e-5, &e3));
  printf("kept-order invariance: max abs diff %.3g\n", e3);
  g_free(lat2);
  g_free(pred1);
  g_free(pred2);
  g_free(s2);
  g_free(r2);
  mae_model_clear(&m);
}

static void test_mask_image(void) {
  const int64_t N = 1, C = 2, h = 2, w = 2, p = 2, H = 4, W = 4;
  float img[32], out[32];
  for (int i = 0; i < 32; i++) img[i] = (float)(i * i % 7);
  float mask[4] = {0, 1, 1, 0}; /* patches (0,1) and (1,0) removed */
  mae_mask_image(out, img, mask, N, C, h, w, p, MAE_FILL_MEAN);
  for (int64_t c = 0; c < C; c++) {
    double sum = 0;
    int cnt = 0;
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++)
        if ((y < 2) == (x < 2)) {
          sum += img[c * 16 + y * 4 + x];
          cnt++;
        }
    for (int64_t y = 0; y < H; y++)
      for (int64_t x = 0; x < W; x++) {
        float got = out[c * 16 + y * 4 + x];
        if ((y < 2) == (x < 2))
          PS_CHECK(got == img[c * 16 + y * 4 + x]);
        else
          PS_CHECK_NEAR(got, sum / cnt, 1e-6);
      }
  }
  mae_mask_image(out, img, mask, N, C, h, w, p, MAE_FILL_ZERO);
  PS_CHECK(out[2] == 0.0f && out[8] == 0.0f && out[0] == img[0] && out[15] == img[15]);
}

int main(void) {
  g_autofree char *path = ssl_fixture_path("mae_loss.safetensors");
  GError *error = NULL;
  st = ps_safetensors_open(path, &error);
  PS_CHECK_OK(st != NULL, error);
  if (!st) return ps_test_finish();
  test_sincos();
  test_len_keep();
  test_masking();
  test_patchify();
  test_loss();
  test_model();
  test_mask_image();
  ps_safetensors_close(st);
  return ps_test_finish();
}
