/* test_ruipath_posembed.c — DINOv2's position-embedding interpolation
 * (plugins/ruipath/ruipath_posembed.c, compiled in):
 *   - the fixture's trace.interp.pos_embed (official code, float32 bicubic
 *     with scale factor (n + 0.1) / M) is reproduced, and the plausible
 *     mistake of mapping coordinates with M / out instead of 1 / scale is
 *     shown to miss it (so the check can tell them apart);
 *   - plain bicubic against a double-precision reference written from
 *     PyTorch's definition (source = (dst + 0.5) / scale - 0.5, Keys' cubic
 *     A = -0.75, clamped taps) on up- and down-sampled grids;
 *   - the antialiased path against weights derived by hand for a 2x
 *     reduction, constants preserved, same-size axes untouched;
 *   - backward is the exact adjoint of forward: <A x, y> = <x, A^T y>;
 *   - the planner: identity only for npatch == M*M and H == W, and the
 *     official assert on the output size. */
#include <math.h>

#include <pathseg/error.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"
#include "ruipath.h"

static double cubic_ref(double x, double A) {
  x = fabs(x);
  if (x <= 1) return ((A + 2) * x - (A + 3)) * x * x + 1;
  if (x < 2) return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A;
  return 0;
}

/* torch upsample_bicubic2d (align_corners False) in double; scale = input
 * pixels per output pixel as torch computes it (float). */
static void bicubic_ref(double *out, const float *inp, int64_t NC, int64_t H, int64_t W, int64_t OH,
                        int64_t OW, float sh, float sw) {
  for (int64_t p = 0; p < NC; p++)
    for (int64_t oy = 0; oy < OH; oy++)
      for (int64_t ox = 0; ox < OW; ox++) {
        double sy = (double)sh * (oy + 0.5) - 0.5, sx = (double)sw * (ox + 0.5) - 0.5;
        double fy = floor(sy), fx = floor(sx), ty = sy - fy, tx = sx - fx;
        double acc = 0;
        for (int a = 0; a < 4; a++) {
          int64_t y = (int64_t)fy - 1 + a;
          y = y < 0 ? 0 : (y > H - 1 ? H - 1 : y);
          double wy = cubic_ref(ty - (a - 1), -0.75);
          for (int c = 0; c < 4; c++) {
            int64_t x = (int64_t)fx - 1 + c;
            x = x < 0 ? 0 : (x > W - 1 ? W - 1 : x);
            acc += wy * cubic_ref(tx - (c - 1), -0.75) * inp[(p * H + y) * W + x];
          }
        }
        out[(p * OH + oy) * OW + ox] = acc;
      }
}

static void fill(float *x, int64_t n, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)ps_rng_normal(rng);
}

static void test_fixture_trace(const ps_kernels *k) {
  GError *err = NULL;
  g_autofree char *path = ps_test_source_path("tests/fixtures/dinov2_vit.safetensors");
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (!st) return;
  g_autoptr(ps_tensor) pos = ps_safetensors_get_f32(st, "pos_embed", &err);
  g_autoptr(ps_tensor) want = ps_safetensors_get_f32(st, "trace.interp.pos_embed", &err);
  g_autoptr(ps_tensor) native = ps_safetensors_get_f32(st, "trace.native.pos_embed", &err);
  PS_CHECK(pos && want && native);
  if (!pos || !want || !native) return;
  const int64_t D = pos->shape[2];
  /* native 56x56: the table is used as is */
  rp_pos_interp p;
  PS_CHECK_OK(rp_pos_interp_plan(&p, 4, 56, 56, 14, 0.1, FALSE, &err), err);
  PS_CHECK(p.identity);
  g_autofree float *out_n = g_new(float, 17 * D);
  g_autofree float *scr = g_new(float, 2 * D * 30);
  rp_pos_interp_forward(&p, k, out_n, ps_f32(pos), D, scr);
  PS_CHECK(memcmp(out_n, ps_f32(native), sizeof(float) * 17 * D) == 0);
  /* interp: 84x70 -> 6x5 patches */
  PS_CHECK_OK(rp_pos_interp_plan(&p, 4, 84, 70, 14, 0.1, FALSE, &err), err);
  PS_CHECK(!p.identity && p.gh == 6 && p.gw == 5);
  PS_CHECK(ps_tensor_numel(want) == 31 * D);
  g_autofree float *out = g_new(float, 31 * D);
  rp_pos_interp_forward(&p, k, out, ps_f32(pos), D, scr);
  double err_ours = 0;
  for (int64_t i = 0; i < 31 * D; i++) err_ours = MAX(err_ours, fabs(out[i] - ps_f32(want)[i]));
  PS_CHECK_MSG(err_ours <= 2e-6, "interpolated pos_embed differs from the fixture by %g", err_ours);
  /* the M / out mapping (a size-based call) lands elsewhere */
  rp_pos_interp q = p;
  q.scale_h = q.scale_w = 0.0f;
  rp_pos_interp_forward(&q, k, out, ps_f32(pos), D, scr);
  double err_size = 0;
  for (int64_t i = 0; i < 31 * D; i++) err_size = MAX(err_size, fabs(out[i] - ps_f32(want)[i]));
  PS_CHECK_MSG(err_size > 1e-3, "M/out mapping is indistinguishable (%g)", err_size);
  printf("fixture pos_embed: |ours - official| %.2g, with M/out instead of 1/scale %.2g\n",
         err_ours, err_size);
}

static void test_bicubic_reference(const ps_kernels *k) {
  ps_rng rng;
  ps_rng_seed(&rng, 3);
  /* (M, H, W pixels, patch, offset) */
  static const struct {
    int64_t M, H, W, patch;
    double offset;
  } cases[] = {{4, 84, 70, 14, 0.1}, {37, 224, 224, 14, 0.1}, {16, 112, 160, 16, 0.1},
               {6, 32, 48, 8, 0.0}, {5, 40, 40, 4, 0.1}};
  for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
    const int64_t D = 3, M = cases[c].M;
    GError *err = NULL;
    rp_pos_interp p;
    PS_CHECK_OK(rp_pos_interp_plan(&p, M, cases[c].H, cases[c].W, cases[c].patch, cases[c].offset,
                                   FALSE, &err),
                err);
    const int64_t N = p.gh * p.gw;
    g_autofree float *pos = g_new(float, (1 + M * M) * D);
    fill(pos, (1 + M * M) * D, &rng);
    g_autofree float *out = g_new(float, (1 + N) * D);
    g_autofree float *scr = g_new(float, 2 * D * MAX(M * M, N));
    rp_pos_interp_forward(&p, k, out, pos, D, scr);
    /* reference on the transposed planes */
    g_autofree float *planes = g_new(float, D * M * M);
    for (int64_t i = 0; i < M * M; i++)
      for (int64_t d = 0; d < D; d++) planes[d * M * M + i] = pos[(1 + i) * D + d];
    float sh = p.scale_h > 0 ? p.scale_h : (float)M / (float)p.gh;
    float sw = p.scale_w > 0 ? p.scale_w : (float)M / (float)p.gw;
    g_autofree double *ref = g_new(double, D * N);
    bicubic_ref(ref, planes, D, M, M, p.gh, p.gw, sh, sw);
    double worst = 0;
    for (int64_t d = 0; d < D; d++) worst = MAX(worst, fabs(out[d] - pos[d])); /* cls row */
    for (int64_t n = 0; n < N; n++)
      for (int64_t d = 0; d < D; d++)
        worst = MAX(worst, fabs(out[(1 + n) * D + d] - ref[d * N + n]));
    PS_CHECK_MSG(worst <= 1e-5, "case %zu (%" G_GINT64_FORMAT " -> %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                 "): bicubic differs from the reference by %g",
                 c, M, p.gh, p.gw, worst);
  }
}

/* <A x, y> against <x, A^T y> in double, for the plain and antialiased paths. */
static void test_adjoint(const ps_kernels *k) {
  ps_rng rng;
  ps_rng_seed(&rng, 11);
  static const struct {
    int64_t M, H, W;
    gboolean aa;
    double offset;
  } cases[] = {{4, 48, 40, FALSE, 0.1}, {6, 16, 40, FALSE, 0.1}, {4, 48, 40, TRUE, 0.0},
               {8, 16, 24, TRUE, 0.0},  {8, 64, 24, TRUE, 0.0},  {4, 32, 32, FALSE, 0.1}};
  for (size_t c = 0; c < G_N_ELEMENTS(cases); c++) {
    const int64_t D = 5, M = cases[c].M;
    GError *err = NULL;
    rp_pos_interp p;
    PS_CHECK_OK(rp_pos_interp_plan(&p, M, cases[c].H, cases[c].W, 8, cases[c].offset, cases[c].aa,
                                   &err),
                err);
    const int64_t N = p.gh * p.gw, nin = (1 + M * M) * D, nout = (1 + N) * D;
    g_autofree float *x = g_new(float, nin);
    g_autofree float *y = g_new(float, nout);
    g_autofree float *ax = g_new(float, nout);
    g_autofree float *aty = g_new0(float, nin);
    g_autofree float *scr = g_new(float, 2 * D * MAX(M * M, N));
    fill(x, nin, &rng);
    fill(y, nout, &rng);
    rp_pos_interp_forward(&p, k, ax, x, D, scr);
    rp_pos_interp_backward(&p, k, aty, y, D, scr);
    double l = 0, r = 0, s = 0;
    for (int64_t i = 0; i < nout; i++) {
      l += (double)ax[i] * y[i];
      s += fabs((double)ax[i] * y[i]);
    }
    for (int64_t i = 0; i < nin; i++) r += (double)x[i] * aty[i];
    PS_CHECK_MSG(fabs(l - r) <= 1e-6 * s, "case %zu: <Ax,y> %.9g vs <x,A^T y> %.9g", c, l, r);
  }
}

static void test_antialias(void) {
  /* 1 x 4 -> 1 x 2 (width halved, height unchanged): by hand, with A = -0.5,
   * support 4 and taps at distances (j - 0.5) / 2 from the centre 1.0:
   * w = [W(.25), W(.25), W(.75), W(1.25)] / total =
   *     [0.8671875, 0.8671875, 0.2265625, -0.0703125] / 1.890625. */
  const float e0[4] = {1, 0, 0, 0}, e2[4] = {0, 0, 1, 0};
  float out[2];
  rp_resize_aa_forward(out, e0, 1, 1, 4, 1, 2, 0, 0);
  PS_CHECK_NEAR(out[0], 0.8671875 / 1.890625, 1e-6);
  PS_CHECK_NEAR(out[1], -0.0703125 / 1.890625, 1e-6); /* mirrored for the second output */
  rp_resize_aa_forward(out, e2, 1, 1, 4, 1, 2, 0, 0);
  PS_CHECK_NEAR(out[0], 0.2265625 / 1.890625, 1e-6);
  PS_CHECK_NEAR(out[1], 0.8671875 / 1.890625, 1e-6);
  /* constants survive up- and down-sampling; a same-size axis is untouched */
  float c[6 * 7], o[9 * 3];
  for (int i = 0; i < 42; i++) c[i] = 2.5f;
  rp_resize_aa_forward(o, c, 1, 6, 7, 9, 3, 0, 0);
  double worst = 0;
  for (int i = 0; i < 27; i++) worst = MAX(worst, fabs(o[i] - 2.5));
  PS_CHECK_MSG(worst <= 1e-6, "constant not preserved: %g", worst);
  float r[3 * 4], q[3 * 4];
  for (int i = 0; i < 12; i++) r[i] = (float)(i * i % 7);
  rp_resize_aa_forward(q, r, 1, 3, 4, 3, 4, 0, 0);
  PS_CHECK(memcmp(q, r, sizeof r) == 0);
}

static void test_plan(void) {
  GError *err = NULL;
  rp_pos_interp p;
  /* same patch count but H != W: the official code interpolates */
  PS_CHECK_OK(rp_pos_interp_plan(&p, 4, 56, 60, 14, 0.1, FALSE, &err), err);
  PS_CHECK(!p.identity && p.gh == 4 && p.gw == 4);
  PS_CHECK_NEAR(p.scale_h, 1.0 / (4.1 / 4.0), 1e-7);
  /* square and equal count: as is */
  PS_CHECK_OK(rp_pos_interp_plan(&p, 4, 60, 60, 14, 0.1, FALSE, &err), err);
  PS_CHECK(p.identity);
  /* offset 0: size-based (the kernel maps with M / out) */
  PS_CHECK_OK(rp_pos_interp_plan(&p, 4, 84, 70, 14, 0.0, TRUE, &err), err);
  PS_CHECK(!p.identity && p.scale_h <= 0 && p.antialias);
  /* an offset that moves floor(M * scale) off the grid: the official assert */
  PS_CHECK_FAILS_WITH(rp_pos_interp_plan(&p, 4, 84, 70, 14, 1.5, FALSE, &err), err,
                      "official code asserts");
}

int main(void) {
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CPU, &err);
  PS_CHECK_OK(k != NULL, err);
  if (!k) return ps_test_finish();
  test_fixture_trace(k);
  test_bicubic_reference(k);
  test_adjoint(k);
  test_antialias();
  test_plan();
  return ps_test_finish();
}
