/* test_kernels_fixtures.c — the kernels against outputs of the official
 * PyTorch code (tests/fixtures, see /work/shared/fixtures/FORMAT.md):
 *  - DINOv2's bicubic position-embedding interpolation (scale-factor path,
 *    float32, 4x4 -> 6x5) == trace.interp.pos_embed;
 *  - Qwen2 RoPE angles (theta 1e6, head dim 16) == trace.rope_cos/sin;
 *  - one SAM windowed block (LayerNorm, 8x8 grid padded to 9x9 for window 3,
 *    packed qkv, decomposed rel-pos from the unscaled q, attention, proj,
 *    crop, residual, MLP with erf GELU) == trace.block0.
 * Tolerances are the fixture's own (atol 1e-4, rtol 1e-3) or tighter. */
#include <pathseg/safetensors.h>

#include "kcheck.h"

static const ps_kernels *K;

static ps_safetensors *open_fixture(const char *name) {
  const char *dir = g_getenv("PATHSEG_FIXTURES");
  g_autofree char *fallback = ps_test_source_path("tests/fixtures");
  g_autofree char *path = g_build_filename(dir ? dir : fallback, name, NULL);
  GError *error = NULL;
  ps_safetensors *st = ps_safetensors_open(path, &error);
  if (!st) {
    fprintf(stderr, "%s\n", error->message);
    g_clear_error(&error);
  }
  return st;
}

static ps_tensor *get(ps_safetensors *st, const char *name) {
  GError *error = NULL;
  ps_tensor *t = ps_safetensors_get_f32(st, name, &error);
  if (!t) {
    fprintf(stderr, "%s\n", error->message);
    g_clear_error(&error);
  }
  return t;
}

static int64_t numel(const ps_tensor *t) {
  int64_t n = 1;
  for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
  return n;
}

/* max over elements of |got - want| / (atol + rtol |want|); <= 1 passes */
static double tol_ratio(const float *got, const float *want, int64_t n, double atol, double rtol) {
  double worst = 0.0;
  for (int64_t i = 0; i < n; i++) {
    double r = fabs((double)got[i] - want[i]) / (atol + rtol * fabs(want[i]));
    if (!(r <= worst)) worst = r;
  }
  return worst;
}

static void test_dinov2_pos_embed(void) {
  g_autoptr(ps_safetensors) st = open_fixture("dinov2_vit.safetensors");
  PS_CHECK(st != NULL);
  if (!st) return;
  g_autoptr(ps_tensor) pos = get(st, "pos_embed");               /* (1, 17, 32) */
  g_autoptr(ps_tensor) want = get(st, "trace.interp.pos_embed"); /* (1, 31, 32) */
  PS_CHECK(pos && want);
  if (!pos || !want) return;
  enum { M = 4, D = 32, OH = 6, OW = 5 };
  const float *pp = (const float *)pos->data + D; /* patch rows, (M*M, D) */
  float chw[D * M * M], out[D * OH * OW], tok[OH * OW * D];
  K->transpose_forward(chw, pp, 1, M * M, D); /* (HW, C) -> (C, HW) */
  /* image 84 x 70 -> 6 x 5 patches; scale_factor ((6 + 0.1)/4, (5 + 0.1)/4) */
  float sh = (float)(1.0 / ((6 + 0.1) / M)), sw = (float)(1.0 / ((5 + 0.1) / M));
  K->resize_forward(out, chw, D, M, M, OH, OW, sh, sw, PS_RESIZE_BICUBIC);
  K->transpose_forward(tok, out, 1, D, OH * OW);
  const float *w = (const float *)want->data;
  PS_CHECK(memcmp(w, pos->data, sizeof(float) * D) == 0); /* cls row untouched */
  double r = tol_ratio(tok, w + D, OH * OW * D, 1e-6, 1e-5);
  PS_CHECK_MSG(r <= 1.0, "dinov2 bicubic pos embed: %.3g of (1e-6 + 1e-5|x|)", r);
}

static void test_qwen_rope(void) {
  g_autoptr(ps_safetensors) st = open_fixture("qwen2_decoder.safetensors");
  PS_CHECK(st != NULL);
  if (!st) return;
  g_autoptr(ps_tensor) cosT = get(st, "trace.rope_cos"); /* (12, 16) */
  g_autoptr(ps_tensor) sinT = get(st, "trace.rope_sin");
  PS_CHECK(cosT && sinT);
  if (!cosT || !sinT) return;
  enum { T = 12, HD = 16, HALF = 8 };
  /* head j of every token is the unit vector e_j: RoPE maps it to
   * cos_j e_j + sin_j e_{j + 8} */
  float x[T * HALF * HD] = {0}, y[T * HALF * HD];
  int32_t pos[T];
  for (int t = 0; t < T; t++) {
    pos[t] = t;
    for (int j = 0; j < HALF; j++) x[(t * HALF + j) * HD + j] = 1.0f;
  }
  ps_rope_desc d = {.N = T, .H = HALF, .D = HD, .theta = 1e6f};
  K->rope_forward(y, x, pos, &d);
  const float *c = cosT->data, *s = sinT->data;
  double worst = 0.0;
  for (int t = 0; t < T; t++)
    for (int j = 0; j < HALF; j++) {
      const float *v = y + (t * HALF + j) * HD;
      worst = fmax(worst, fabs(v[j] - c[t * HD + j]));
      worst = fmax(worst, fabs(v[j + HALF] - s[t * HD + j]));
      worst = fmax(worst, fabs(c[t * HD + j] - c[t * HD + j + HALF])); /* cat(freqs, freqs) */
    }
  PS_CHECK_MSG(worst <= 1e-6, "qwen2 rope cos/sin: max error %.3g", worst);
}

static void test_sam_block0(void) {
  g_autoptr(ps_safetensors) st = open_fixture("sam_image_encoder.safetensors");
  PS_CHECK(st != NULL);
  if (!st) return;
  enum { G = 8, C = 32, NH = 2, HD = 16, WS = 3, HID = 128 };
  const char *names[] = {"trace.patch_embed",
                         "image_encoder.pos_embed",
                         "trace.block0",
                         "image_encoder.blocks.0.norm1.weight",
                         "image_encoder.blocks.0.norm1.bias",
                         "image_encoder.blocks.0.attn.qkv.weight",
                         "image_encoder.blocks.0.attn.qkv.bias",
                         "image_encoder.blocks.0.attn.rel_pos_h",
                         "image_encoder.blocks.0.attn.rel_pos_w",
                         "image_encoder.blocks.0.attn.proj.weight",
                         "image_encoder.blocks.0.attn.proj.bias",
                         "image_encoder.blocks.0.norm2.weight",
                         "image_encoder.blocks.0.norm2.bias",
                         "image_encoder.blocks.0.mlp.lin1.weight",
                         "image_encoder.blocks.0.mlp.lin1.bias",
                         "image_encoder.blocks.0.mlp.lin2.weight",
                         "image_encoder.blocks.0.mlp.lin2.bias"};
  enum { N_T = sizeof names / sizeof names[0] };
  ps_tensor *t[N_T];
  int ok = 1;
  for (int i = 0; i < N_T; i++) ok &= (t[i] = get(st, names[i])) != NULL;
  PS_CHECK(ok);
  if (ok) {
    PS_CHECK(numel(t[0]) == G * G * C && numel(t[7]) == (2 * WS - 1) * HD);
    const float *pe = t[0]->data, *pos = t[1]->data, *want = t[2]->data;
    int64_t nw = ps_windows_per_dim(G, WS), nwin = nw * nw, T = WS * WS, P = nwin * T;
    float x[G * G * C], h[G * G * C], win[P * C], qkv[P * 3 * C], att[P * C], proj[P * C];
    float rel_h[nwin * NH * T * WS], rel_w[nwin * NH * T * WS], mlp[G * G * HID];
    float y[G * G * C];
    K->add_forward(x, pe, pos, G * G * C); /* x = patch_embed + pos_embed */
    K->layernorm_forward(h, NULL, NULL, x, t[3]->data, t[4]->data, G * G, C, 1e-6f);
    K->window_partition_forward(win, h, 1, G, G, C, WS); /* 8x8 -> 9x9 zero padded */
    K->linear_forward(qkv, win, t[5]->data, t[6]->data, P, C, 3 * C);
    K->rel_pos_forward(rel_h, rel_w, qkv, t[7]->data, t[8]->data, nwin, NH, WS, WS, HD, 3 * C);
    ps_attention_desc d = {.B = nwin,
                           .Hq = NH,
                           .Hkv = NH,
                           .Tq = T,
                           .Tk = T,
                           .D = HD,
                           .ldq = 3 * C,
                           .ldk = 3 * C,
                           .ldv = 3 * C,
                           .scale = 0.25f,
                           .rel_h = rel_h,
                           .rel_w = rel_w,
                           .rel_kh = WS,
                           .rel_kw = WS};
    int64_t ns = K->attention_scratch(&d, 0);
    g_autofree float *scratch = kc_fzeros(ns);
    K->attention_forward(att, NULL, qkv, qkv + C, qkv + 2 * C, &d, scratch, ns);
    K->linear_forward(proj, att, t[9]->data, t[10]->data, P, C, C);
    K->window_unpartition_forward(y, proj, 1, G, G, C, WS); /* crop */
    K->add_forward(x, x, y, G * G * C);                     /* residual */
    K->layernorm_forward(h, NULL, NULL, x, t[11]->data, t[12]->data, G * G, C, 1e-6f);
    K->linear_forward(mlp, h, t[13]->data, t[14]->data, G * G, C, HID);
    K->gelu_forward(mlp, mlp, G * G * HID);
    K->linear_forward(y, mlp, t[15]->data, t[16]->data, G * G, HID, C);
    K->add_forward(y, x, y, G * G * C);
    double r = tol_ratio(y, want, G * G * C, 1e-4, 1e-3);
    PS_CHECK_MSG(r <= 0.1, "sam block0: %.3g of the fixture tolerance (want <= 0.1)", r);
  }
  for (int i = 0; i < N_T; i++) ps_tensor_free(t[i]);
}

int main(void) {
  K = kc_cpu();
  test_dinov2_pos_embed();
  test_qwen_rope();
  test_sam_block0();
  return ps_test_finish();
}
