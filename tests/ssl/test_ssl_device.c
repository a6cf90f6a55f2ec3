/* test_ssl_device.c — the ssl plugin on a device: every component and loss
 * part runs once with a CPU context and once with a PS_DEVICE_CUDA context
 * (the CUDA emulator, whose device memory faults when the host touches it
 * and whose kernels abort on a host pointer), on the same inputs, and must
 * give BITWISE equal results:
 *   - ssl.mae (encoder + decoder + normalised-pixel loss) in training mode:
 *     outputs (loss, pred, mask, ids_restore, latent), the image gradient
 *     and every parameter gradient; two steps (buffers reused), the first
 *     with host inputs and drawn noise, the second with device inputs;
 *   - ssl.mae_decoder: pred, the feature gradient, every parameter gradient,
 *     two steps (host, then device inputs with another mask);
 *   - the device maths the stage runs: patchify, the MAE loss, pooling,
 *     Eq. 1's stain term and the variance guard — also checked against the
 *     double-precision host references (mae.h, ssl_stain.h), so that the
 *     device versions are right, not only consistent. */
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>

#include "emu_device.h"
#include "mae_device.h"
#include "ps_test.h"
#include "ssl_plugin.h"
#include "ssl_stain.h"

/* ---- helpers ------------------------------------------------------------- */

/* Copies both tensors to the host and compares their bytes. */
static void check_same(const char *what, const ps_tensor *a, const ps_tensor *b) {
  PS_CHECK_MSG(a && b, "%s: missing tensor", what);
  if (!a || !b) return;
  PS_CHECK_MSG(a->dtype == b->dtype && a->nbytes == b->nbytes, "%s: dtype or size differs", what);
  if (a->nbytes != b->nbytes) return;
  g_autoptr(ps_tensor) ha = ps_tensor_copy(a, NULL), hb = ps_tensor_copy(b, NULL);
  PS_CHECK(ha && hb);
  if (!ha || !hb) return;
  size_t first = ha->nbytes;
  for (size_t i = 0; i < ha->nbytes; i++)
    if (((const uint8_t *)ha->data)[i] != ((const uint8_t *)hb->data)[i]) {
      first = i;
      break;
    }
  PS_CHECK_MSG(first == ha->nbytes, "%s: CPU and device differ from byte %zu of %zu", what, first,
               ha->nbytes);
}

/* The same for raw buffers of n floats in the memory of tables ka, kb. */
static void check_same_buf(const char *what, const ps_kernels *ka, const float *a,
                           const ps_kernels *kb, const float *b, int64_t n) {
  float *ha = g_new(float, n), *hb = g_new(float, n);
  ka->copy_to_host(ha, a, (size_t)n * sizeof(float));
  kb->copy_to_host(hb, b, (size_t)n * sizeof(float));
  PS_CHECK_MSG(memcmp(ha, hb, (size_t)n * sizeof(float)) == 0, "%s: CPU and device differ", what);
  g_free(ha);
  g_free(hb);
}

/* max |t| of a tensor on any device (so that a comparison is not of zeros). */
static double max_abs(const ps_tensor *t) {
  g_autoptr(ps_tensor) h = ps_tensor_to_f32(t, NULL);
  double m = 0;
  for (int64_t i = 0; h && i < ps_tensor_numel(h); i++) m = fmax(m, fabs(ps_f32(h)[i]));
  return m;
}

static ps_tensor *random_tensor(int ndim, const int64_t *shape, ps_rng *rng, double scale) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++)
    ps_f32(t)[i] = (float)(scale * ps_rng_normal(rng));
  return t;
}

/* One component instance on one device. */
typedef struct {
  ps_context *ctx;
  const ps_kernels *k;
  void *self;
  ps_param_list pl;
} inst;

static gboolean inst_make(inst *in, const ps_component_desc *desc, const ps_config *cfg,
                          ps_device device) {
  GError *error = NULL;
  memset(in, 0, sizeof *in);
  in->ctx = ps_context_new(device, 2, 1234); /* same seed: the same initial weights and noise */
  ps_context_set_training(in->ctx, TRUE);
  in->k = ps_kernels_get(device, &error);
  PS_CHECK_OK(in->k != NULL, error);
  in->self = desc->vtable->create(cfg, in->ctx, &error);
  PS_CHECK_OK(in->self != NULL, error);
  if (!in->self) return FALSE;
  in->pl = desc->vtable->params(in->self);
  /* gradients where the core would put them: on the value's device */
  for (size_t i = 0; i < in->pl.count; i++) {
    ps_tensor *v = in->pl.items[i].value;
    PS_CHECK_MSG(v->device == device, "%s is not on the context's device", in->pl.items[i].name);
    in->pl.items[i].grad = ps_tensor_new_on(v->device, PS_DTYPE_F32, v->ndim, v->shape, NULL);
  }
  return TRUE;
}

static void inst_zero_grad(inst *in) {
  for (size_t i = 0; i < in->pl.count; i++)
    in->k->mem_zero(in->pl.items[i].grad->data, in->pl.items[i].grad->nbytes);
  ps_context_reset_scratch(in->ctx);
}

static void inst_free(inst *in, const ps_component_desc *desc) {
  for (size_t i = 0; i < in->pl.count; i++) g_clear_pointer(&in->pl.items[i].grad, ps_tensor_free);
  if (in->self) desc->vtable->destroy(in->self);
  ps_context_free(in->ctx);
}

/* Values before training and parameter gradients after a step, bitwise. */
static void check_params(const char *step, const inst *c, const inst *d, gboolean grads) {
  PS_CHECK(c->pl.count == d->pl.count && c->pl.count > 0);
  double gmax = 0;
  for (size_t i = 0; i < c->pl.count && i < d->pl.count; i++) {
    g_autofree char *what =
        g_strdup_printf("%s %s %s", step, grads ? "grad of" : "value of", c->pl.items[i].name);
    PS_CHECK(strcmp(c->pl.items[i].name, d->pl.items[i].name) == 0);
    check_same(what, grads ? c->pl.items[i].grad : c->pl.items[i].value,
               grads ? d->pl.items[i].grad : d->pl.items[i].value);
    if (grads) gmax = fmax(gmax, max_abs(c->pl.items[i].grad));
  }
  if (grads) PS_CHECK_MSG(gmax > 0, "%s: every parameter gradient is zero", step);
}

/* ---- ssl.mae ------------------------------------------------------------- */

static void mae_step(inst *in, const ps_tensor *image, const ps_tensor *noise,
                     const ps_tensor *dpred, ps_port out[5], ps_tensor **dimage) {
  GError *error = NULL;
  inst_zero_grad(in);
  ps_port ii[2] = {{"image", (ps_tensor *)image, FALSE}, {"noise", (ps_tensor *)noise, FALSE}};
  static const char *const names[5] = {"loss", "pred", "mask", "ids_restore", "latent"};
  for (int i = 0; i < 5; i++) out[i] = (ps_port){names[i], NULL, FALSE};
  ps_ports pin = {ii, noise ? 2 : 1}, pout = {out, 5};
  PS_CHECK_OK(ssl_mae_desc.vtable->forward(in->self, in->ctx, &pin, &pout, &error), error);
  /* d(loss) = 1 and a linear function of pred, both on the component's device */
  const int64_t one = 1;
  g_autoptr(ps_tensor) dl = ps_tensor_new(PS_DTYPE_F32, 1, &one, NULL);
  ps_f32(dl)[0] = 1.0f;
  g_autoptr(ps_tensor) dld = ps_tensor_to_device(dl, ps_context_device(in->ctx), NULL);
  g_autoptr(ps_tensor) dpd = ps_tensor_to_device(dpred, ps_context_device(in->ctx), NULL);
  ps_port go[2] = {{"loss", dld, FALSE}, {"pred", dpd, FALSE}};
  ps_port gi[2] = {{"image", NULL, TRUE}, {"noise", NULL, FALSE}};
  ps_ports pgo = {go, 2}, pgi = {gi, 2};
  PS_CHECK_OK(ssl_mae_desc.vtable->backward(in->self, in->ctx, &pgo, &pgi, &error), error);
  *dimage = gi[0].tensor;
}

static void test_mae_component(void) {
  GError *error = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(
      ssl_mae_desc.config,
      "{img_size: 16, patch_size: 4, embed_dim: 16, depth: 2, num_heads: 2, decoder_embed_dim: 8,"
      " decoder_depth: 1, decoder_num_heads: 2, mlp_ratio: 2.0, mask_ratio: 0.5}",
      "test", &error);
  PS_CHECK_OK(cfg != NULL, error);
  if (!cfg) return;
  inst c, d;
  if (!inst_make(&c, &ssl_mae_desc, cfg, PS_DEVICE_CPU) ||
      !inst_make(&d, &ssl_mae_desc, cfg, PS_DEVICE_CUDA))
    return;
  check_params("create", &c, &d, FALSE);
  ps_rng rng;
  ps_rng_seed(&rng, 3);
  const int64_t B = 2, L = 16, P = 48;
  const int64_t ishape[4] = {B, 3, 16, 16}, nshape[2] = {B, L}, pshape[3] = {B, L, P};
  g_autoptr(ps_tensor) image = random_tensor(4, ishape, &rng, 1.0);
  g_autoptr(ps_tensor) R = random_tensor(3, pshape, &rng, 0.1);
  static const char *const names[5] = {"loss", "pred", "mask", "ids_restore", "latent"};
  for (int step = 0; step < 2; step++) {
    /* step 0: host image, noise drawn from each context's RNG (same seed);
     * step 1: new image and given noise, as device tensors for the device run */
    g_autoptr(ps_tensor) noise = NULL, image_d = NULL, noise_d = NULL;
    if (step == 1) {
      for (int64_t i = 0; i < ps_tensor_numel(image); i++)
        ps_f32(image)[i] = (float)ps_rng_normal(&rng);
      noise = ps_tensor_new(PS_DTYPE_F32, 2, nshape, NULL);
      for (int64_t i = 0; i < B * L; i++) ps_f32(noise)[i] = ps_rng_uniform(&rng);
      image_d = ps_tensor_to_device(image, PS_DEVICE_CUDA, NULL);
      noise_d = ps_tensor_to_device(noise, PS_DEVICE_CUDA, NULL);
    }
    ps_port oc[5], od[5];
    ps_tensor *dic = NULL, *did = NULL;
    mae_step(&c, image, noise, R, oc, &dic);
    mae_step(&d, step ? image_d : image, step ? noise_d : NULL, R, od, &did);
    g_autofree char *label = g_strdup_printf("ssl.mae step %d", step + 1);
    for (int i = 0; i < 5; i++) {
      g_autofree char *what = g_strdup_printf("%s %s", label, names[i]);
      check_same(what, oc[i].tensor, od[i].tensor);
      PS_CHECK(od[i].tensor && od[i].tensor->device == PS_DEVICE_CUDA);
    }
    const float loss = ps_tensor_item(oc[0].tensor);
    PS_CHECK_MSG(isfinite(loss) && loss > 0, "%s: loss %g", label, (double)loss);
    check_same(label, dic, did);
    PS_CHECK(dic && max_abs(dic) > 0 && did && did->device == PS_DEVICE_CUDA);
    check_params(label, &c, &d, TRUE);
  }
  inst_free(&c, &ssl_mae_desc);
  inst_free(&d, &ssl_mae_desc);
}

/* ---- ssl.mae_decoder ----------------------------------------------------- */

static void dec_step(inst *in, const ps_tensor *feat, const ps_tensor *mask, const ps_tensor *dpred,
                     ps_tensor **pred, ps_tensor **dfeat) {
  GError *error = NULL;
  inst_zero_grad(in);
  ps_port ii[2] = {{"features", (ps_tensor *)feat, FALSE}, {"mask", (ps_tensor *)mask, FALSE}};
  ps_port oo[1] = {{"pred", NULL, FALSE}};
  ps_ports pin = {ii, 2}, pout = {oo, 1};
  PS_CHECK_OK(ssl_mae_decoder_desc.vtable->forward(in->self, in->ctx, &pin, &pout, &error), error);
  *pred = oo[0].tensor;
  g_autoptr(ps_tensor) dpd = ps_tensor_to_device(dpred, ps_context_device(in->ctx), NULL);
  ps_port go[1] = {{"pred", dpd, FALSE}};
  ps_port gi[2] = {{"features", NULL, TRUE}, {"mask", NULL, FALSE}};
  ps_ports pgo = {go, 1}, pgi = {gi, 2};
  PS_CHECK_OK(ssl_mae_decoder_desc.vtable->backward(in->self, in->ctx, &pgo, &pgi, &error), error);
  *dfeat = gi[0].tensor;
}

static void test_decoder_component(void) {
  GError *error = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(
      ssl_mae_decoder_desc.config,
      "{in_dim: 6, embed_dim: 8, depth: 2, num_heads: 2, patch_size: 2, mlp_ratio: 2.0}", "test",
      &error);
  PS_CHECK_OK(cfg != NULL, error);
  if (!cfg) return;
  inst c, d;
  if (!inst_make(&c, &ssl_mae_decoder_desc, cfg, PS_DEVICE_CPU) ||
      !inst_make(&d, &ssl_mae_decoder_desc, cfg, PS_DEVICE_CUDA))
    return;
  check_params("create", &c, &d, FALSE);
  ps_rng rng;
  ps_rng_seed(&rng, 13);
  const int64_t B = 2, C = 6, L = 6, P = 12;
  const int64_t fshape[4] = {B, C, 3, 2}, mshape[2] = {B, L}, pshape[3] = {B, L, P};
  const float masks[2][12] = {{1, 0, 1, 1, 0, 1, /**/ 0, 1, 1, 0, 1, 1},
                              {0, 0, 1, 1, 1, 0, /**/ 1, 0, 0, 1, 0, 1}};
  for (int step = 0; step < 2; step++) {
    g_autoptr(ps_tensor) feat = random_tensor(4, fshape, &rng, 1.0);
    g_autoptr(ps_tensor) R = random_tensor(3, pshape, &rng, 1.0);
    g_autoptr(ps_tensor) mask = ps_tensor_new(PS_DTYPE_F32, 2, mshape, NULL);
    memcpy(mask->data, masks[step], sizeof masks[step]);
    g_autoptr(ps_tensor) feat_d = ps_tensor_to_device(feat, PS_DEVICE_CUDA, NULL);
    g_autoptr(ps_tensor) mask_d = ps_tensor_to_device(mask, PS_DEVICE_CUDA, NULL);
    ps_tensor *pc = NULL, *pd = NULL, *dc = NULL, *dd = NULL;
    dec_step(&c, feat, mask, R, &pc, &dc);
    dec_step(&d, step ? feat_d : feat, step ? mask_d : mask, R, &pd, &dd);
    g_autofree char *label = g_strdup_printf("ssl.mae_decoder step %d", step + 1);
    g_autofree char *lp = g_strdup_printf("%s pred", label);
    g_autofree char *lf = g_strdup_printf("%s d features", label);
    check_same(lp, pc, pd);
    check_same(lf, dc, dd);
    PS_CHECK(pc && max_abs(pc) > 0 && dc && max_abs(dc) > 0);
    PS_CHECK(pd && pd->device == PS_DEVICE_CUDA && dd && dd->device == PS_DEVICE_CUDA);
    check_params(label, &c, &d, TRUE);
  }
  inst_free(&c, &ssl_mae_decoder_desc);
  inst_free(&d, &ssl_mae_decoder_desc);
}

/* ---- the stage's device maths -------------------------------------------- */

/* A float buffer with host contents h in k's memory. */
static float *upload(const ps_kernels *k, const float *h, int64_t n) {
  float *p = k->mem_alloc((size_t)n * sizeof(float));
  k->copy_to_device(p, h, (size_t)n * sizeof(float));
  return p;
}

static float *download(const ps_kernels *k, const float *p, int64_t n) {
  float *h = g_new(float, n);
  k->copy_to_host(h, p, (size_t)n * sizeof(float));
  return h;
}

/* max |a - b| / (|b| + 1e-3) */
static double rel_err(const float *a, const float *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]) / (fabs(b[i]) + 1e-3));
  return m;
}

static void test_mae_maths(const ps_kernels *kc, ps_context *cc, const ps_kernels *kd,
                           ps_context *cd) {
  GError *error = NULL;
  ps_rng rng;
  ps_rng_seed(&rng, 21);
  const int64_t N = 2, C = 3, h = 3, w = 2, p = 4, L = h * w, P = p * p * C;
  const int64_t ni = N * C * h * p * w * p, nx = N * L * P;
  float *img = g_new(float, ni), *pred = g_new(float, nx), mask[12];
  for (int64_t i = 0; i < ni; i++) img[i] = (float)(0.5 + 0.2 * ps_rng_normal(&rng));
  for (int64_t i = 0; i < nx; i++) pred[i] = (float)ps_rng_normal(&rng);
  for (int64_t i = 0; i < N * L; i++) mask[i] = (float)(i % 3 != 0);
  /* host references: patchify, then the loss and its gradient in double */
  float *want_x = g_new(float, nx), *want_d = g_new0(float, nx);
  mae_patchify(want_x, img, N, C, h, w, p);
  double want = mae_loss(want_d, pred, want_x, mask, N, L, P, TRUE, 1e-6, 0.7);
  const ps_kernels *ks[2] = {kc, kd};
  ps_context *cs[2] = {cc, cd};
  float *x[2], *dp[2];
  double got[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    const ps_kernels *k = ks[i];
    float *di = upload(k, img, ni), *dpr = upload(k, pred, nx);
    x[i] = k->mem_alloc((size_t)nx * sizeof(float));
    dp[i] = k->mem_alloc((size_t)nx * sizeof(float));
    mae_ids ids = {0};
    PS_CHECK_OK(mae_patchify_dev(k, cs[i], x[i], di, N, C, h, w, p, &error), error);
    if (i == 0) { /* patchify is data movement: exact */
      g_autofree float *hx = download(k, x[i], nx);
      float *t = g_new(float, nx); /* (want_x is normalised in place by mae_loss) */
      mae_patchify(t, img, N, C, h, w, p);
      PS_CHECK(memcmp(hx, t, (size_t)nx * sizeof(float)) == 0);
      g_free(t);
    }
    PS_CHECK_OK(mae_loss_dev(k, cs[i], &ids, dp[i], dpr, x[i], mask, N, L, P, TRUE, 1e-6, 0.7,
                             &got[i], &error),
                error);
    mae_ids_clear(&ids);
    k->mem_free(di);
    k->mem_free(dpr);
    ps_context_reset_scratch(cs[i]);
  }
  PS_CHECK_MSG(got[0] == got[1], "MAE loss: CPU %.17g, device %.17g", got[0], got[1]);
  check_same_buf("MAE normalised target", kc, x[0], kd, x[1], nx);
  check_same_buf("MAE d loss / d pred", kc, dp[0], kd, dp[1], nx);
  /* against the double reference (float LayerNorm vs double normalisation) */
  PS_CHECK_NEAR(got[0], want, 1e-5 * want);
  g_autofree float *hx = download(kc, x[0], nx), *hd = download(kc, dp[0], nx);
  double ex = rel_err(hx, want_x, nx), ed = rel_err(hd, want_d, nx);
  PS_CHECK_MSG(ex < 1e-4 && ed < 1e-4, "normalised target rel err %.3g, gradient %.3g", ex, ed);
  for (int i = 0; i < 2; i++) {
    ks[i]->mem_free(x[i]);
    ks[i]->mem_free(dp[i]);
  }
  g_free(img);
  g_free(pred);
  g_free(want_x);
  g_free(want_d);
}

static void test_stain_maths(const ps_kernels *kc, ps_context *cc, const ps_kernels *kd,
                             ps_context *cd) {
  GError *error = NULL;
  ps_rng rng;
  ps_rng_seed(&rng, 31);
  enum { B = 3, E = 5, HW = 6, S = 6 };
  const int64_t ne = 2 * B * E * HW;
  /* channels 0-2 under the variance target, 3-4 over it; a large mean on
   * channel 1 (the centring must keep its small variance exact) */
  const double scale[E] = {0.3, 0.05, 0.6, 2.0, 3.0}, offset[E] = {0.5, 40.0, -1.0, 0.0, 2.0};
  float emb[2 * B * E * HW], sa[B * S], sb[B * S];
  for (int b = 0; b < 2 * B; b++)
    for (int c = 0; c < E; c++)
      for (int j = 0; j < HW; j++)
        emb[(b * E + c) * HW + j] = (float)(offset[c] + scale[c] * ps_rng_normal(&rng));
  for (int i = 0; i < B * S; i++) {
    sa[i] = (float)(100 + 60 * ps_rng_uniform(&rng));
    sb[i] = (float)(100 + 60 * ps_rng_uniform(&rng));
  }
  /* host references */
  float zr[2 * B * E], dzr[2 * B * E] = {0}, dembr[2 * B * E * HW];
  ssl_pool_mean(zr, emb, 2 * B, E, HW);
  double dist_r = 0;
  const double stain_r =
      ssl_stain_loss(dzr, dzr + B * E, zr, zr + B * E, sa, sb, B, E, S, 0.7, 1.0, &dist_r);
  ssl_pool_mean_backward(dembr, dzr, 2 * B, E, HW);
  double stats_r[3 * E] = {0}, std_r = 0;
  ssl_variance_stats(stats_r, emb, 2 * B, E, HW);
  const double var_r = ssl_variance_loss(dembr, emb, stats_r, 2 * B, E, HW, 0.8, 1.0, &std_r);

  const ps_kernels *ks[2] = {kc, kd};
  ps_context *cs[2] = {cc, cd};
  float *z[2], *dz[2], *demb[2];
  double stain[2], dist[2], var[2], stdm[2], stats[2][3 * E];
  for (int i = 0; i < 2; i++) {
    const ps_kernels *k = ks[i];
    float *de = upload(k, emb, ne);
    z[i] = k->mem_alloc(2 * B * E * sizeof(float));
    dz[i] = k->mem_alloc(2 * B * E * sizeof(float));
    demb[i] = k->mem_alloc((size_t)ne * sizeof(float));
    ssl_var_dev v = {0};
    memset(stats[i], 0, sizeof stats[i]);
    PS_CHECK_OK(ssl_pool_mean_dev(k, cs[i], z[i], de, 2 * B, E, HW, &error), error);
    PS_CHECK_OK(ssl_stain_loss_dev(k, cs[i], dz[i], dz[i] + B * E, z[i], z[i] + B * E, sa, sb, B, E,
                                   S, 0.7, 1.0, &stain[i], &dist[i], &error),
                error);
    PS_CHECK_OK(ssl_pool_mean_backward_dev(k, cs[i], demb[i], dz[i], 2 * B, E, HW, &error), error);
    PS_CHECK_OK(ssl_variance_stats_dev(&v, k, cs[i], stats[i], de, 2 * B, E, HW, &error), error);
    PS_CHECK_OK(ssl_variance_loss_dev(&v, k, demb[i], stats[i], 2 * B, E, HW, 0.8, 1.0, &var[i],
                                      &stdm[i], &error),
                error);
    ssl_var_dev_clear(&v);
    k->mem_free(de);
    ps_context_reset_scratch(cs[i]);
  }
  /* CPU table == device table, bit for bit */
  PS_CHECK(stain[0] == stain[1] && dist[0] == dist[1] && var[0] == var[1] && stdm[0] == stdm[1]);
  PS_CHECK(memcmp(stats[0], stats[1], sizeof stats[0]) == 0);
  check_same_buf("pooled z", kc, z[0], kd, z[1], 2 * B * E);
  check_same_buf("d z", kc, dz[0], kd, dz[1], 2 * B * E);
  check_same_buf("d emb (stain + variance)", kc, demb[0], kd, demb[1], ne);
  /* and right: against the double-precision host versions */
  PS_CHECK_NEAR(stain[0], stain_r, 1e-5 * stain_r);
  PS_CHECK_NEAR(dist[0], dist_r, 1e-5 * dist_r);
  PS_CHECK_NEAR(var[0], var_r, 1e-5 * var_r);
  PS_CHECK_NEAR(stdm[0], std_r, 1e-5 * std_r);
  PS_CHECK(var_r > 0.1 && stain_r > 0);
  g_autofree float *hz = download(kc, z[0], 2 * B * E), *hdz = download(kc, dz[0], 2 * B * E);
  g_autofree float *hde = download(kc, demb[0], ne);
  double e1 = rel_err(hz, zr, 2 * B * E), e2 = rel_err(hdz, dzr, 2 * B * E),
         e3 = rel_err(hde, dembr, ne);
  PS_CHECK_MSG(e1 < 1e-5 && e2 < 1e-4 && e3 < 1e-3, "pool %.3g, dz %.3g, demb %.3g", e1, e2, e3);
  for (int i = 0; i < 2; i++) {
    ks[i]->mem_free(z[i]);
    ks[i]->mem_free(dz[i]);
    ks[i]->mem_free(demb[i]);
  }
}

int main(void) {
  ps_test_use_cuda_emulator();
  GError *error = NULL;
  const ps_kernels *kd = ps_kernels_get(PS_DEVICE_CUDA, &error);
  PS_CHECK_OK(kd != NULL, error);
  if (!kd) return ps_test_finish();
  const ps_kernels *kc = ps_kernels_get(PS_DEVICE_CPU, NULL);
  test_mae_component();
  test_decoder_component();
  g_autoptr(ps_context) cc = ps_context_new(PS_DEVICE_CPU, 2, 0);
  g_autoptr(ps_context) cd = ps_context_new(PS_DEVICE_CUDA, 2, 0);
  test_mae_maths(kc, cc, kd, cd);
  test_stain_maths(kc, cc, kd, cd);
  return ps_test_finish();
}
