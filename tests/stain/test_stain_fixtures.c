/* test_stain_fixtures.c — the OpenCV Lab conversion and the RandStainNA
 * transform against the reference fixtures (tests/fixtures/lab_color,
 * randstainna_he_a, randstainna_he_b, randstainna_ihc), called directly
 * (the plugin-harness path is in test_stain_plugin.c).
 *
 * We require more than the fixtures' tolerances where our port allows it:
 * every uint8 output bit-exact (u8_atol 0), the float Lab within 1e-4. */
#include <json-glib/json-glib.h>
#include <math.h>
#include <pathseg/safetensors.h>

#include "lab_opencv.h"
#include "ps_test.h"
#include "randstainna.h"

static ps_safetensors *open_fixture(const char *name) {
  const char *dir = g_getenv("PATHSEG_FIXTURES");
  g_autofree char *path = g_build_filename(dir ? dir : "tests/fixtures", name, NULL);
  GError *err = NULL;
  ps_safetensors *st = ps_safetensors_open(path, &err);
  PS_CHECK_MSG(st != NULL, "%s: %s", path, err ? err->message : "?");
  g_clear_error(&err);
  return st;
}

static const ps_tensor *get(ps_safetensors *st, const char *name, ps_dtype dtype, int64_t numel) {
  GError *err = NULL;
  const ps_tensor *t = ps_safetensors_get(st, name, &err);
  PS_CHECK_MSG(t != NULL, "%s: %s", name, err ? err->message : "?");
  g_clear_error(&err);
  if (!t) return NULL;
  PS_CHECK_MSG(t->dtype == dtype && ps_tensor_numel(t) == numel, "%s: dtype %s numel %ld", name,
               ps_dtype_name(t->dtype), (long)ps_tensor_numel(t));
  return t->dtype == dtype && ps_tensor_numel(t) == numel ? t : NULL;
}

/* Number of differing bytes; the largest difference in *max_diff. */
static size_t u8_diff(const uint8_t *a, const uint8_t *b, size_t n, int *max_diff) {
  size_t bad = 0;
  *max_diff = 0;
  for (size_t i = 0; i < n; i++) {
    int d = abs((int)a[i] - (int)b[i]);
    if (d) bad++;
    if (d > *max_diff) *max_diff = d;
  }
  return bad;
}

static double f32_maxdiff(const float *a, const float *b, size_t n) {
  double m = 0.0;
  for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - (double)b[i]));
  return m;
}

static void test_lab_color(void) {
  g_autoptr(ps_safetensors) st = open_fixture("lab_color.safetensors");
  if (!st) return;
  const size_t nb = 80 * 64, nl = 64 * 64;
  const ps_tensor *bgr = get(st, "input.bgr_u8", PS_DTYPE_U8, nb * 3);
  const ps_tensor *labin = get(st, "input.lab_u8", PS_DTYPE_U8, nl * 3);
  const ps_tensor *bgrf = get(st, "input.bgr_f32", PS_DTYPE_F32, nl * 3);
  const ps_tensor *labf = get(st, "input.lab_f32", PS_DTYPE_F32, nl * 3);
  const ps_tensor *w_lab = get(st, "output.lab_from_bgr_u8", PS_DTYPE_U8, nb * 3);
  const ps_tensor *w_bgr = get(st, "output.bgr_from_lab_u8", PS_DTYPE_U8, nl * 3);
  const ps_tensor *w_rt = get(st, "output.bgr_roundtrip_u8", PS_DTYPE_U8, nb * 3);
  const ps_tensor *w_labf = get(st, "output.lab_from_bgr_f32", PS_DTYPE_F32, nl * 3);
  const ps_tensor *w_bgrf = get(st, "output.bgr_from_lab_f32", PS_DTYPE_F32, nl * 3);
  if (!bgr || !labin || !bgrf || !labf || !w_lab || !w_bgr || !w_rt || !w_labf || !w_bgrf) return;

  uint8_t *lab = g_malloc(nb * 3), *rt = g_malloc(nb * 3), *out = g_malloc(nl * 3);
  int md;
  ps_lab_from_rgb_u8(bgr->data, lab, nb, PS_LAB_BGR);
  size_t bad = u8_diff(lab, w_lab->data, nb * 3, &md);
  PS_CHECK_MSG(bad == 0, "BGR2LAB u8: %zu bytes differ, max %d", bad, md);
  ps_lab_to_rgb_u8(lab, rt, nb, PS_LAB_BGR);
  bad = u8_diff(rt, w_rt->data, nb * 3, &md);
  PS_CHECK_MSG(bad == 0, "LAB2BGR(BGR2LAB) u8: %zu bytes differ, max %d", bad, md);
  ps_lab_to_rgb_u8(labin->data, out, nl, PS_LAB_BGR);
  bad = u8_diff(out, w_bgr->data, nl * 3, &md);
  PS_CHECK_MSG(bad == 0, "LAB2BGR u8: %zu bytes differ, max %d", bad, md);

  /* Rows 64..79 are ramps; the gray one must come out neutral (a = b = 128). */
  const uint8_t *want = w_lab->data;
  for (int x = 0; x < 64; x++) {
    const uint8_t *px = bgr->data;
    px += (64 * 64 + x) * 3;
    if (px[0] == px[1] && px[1] == px[2]) {
      PS_CHECK(want[(64 * 64 + x) * 3 + 1] == 128 && want[(64 * 64 + x) * 3 + 2] == 128);
    }
  }

  float *f = g_malloc(nl * 3 * sizeof(float));
  ps_lab_from_rgb_f32(bgrf->data, f, nl, PS_LAB_BGR);
  double e = f32_maxdiff(f, w_labf->data, nl * 3);
  PS_CHECK_MSG(e <= 1e-4, "BGR2LAB f32 (trilinear LUT): max error %g", e);
  ps_lab_to_rgb_f32(labf->data, f, nl, PS_LAB_BGR);
  e = f32_maxdiff(f, w_bgrf->data, nl * 3);
  PS_CHECK_MSG(e <= 1e-4, "LAB2BGR f32: max error %g", e);
  printf("lab_color: u8 outputs exact; f32 errors within 1e-4\n");

  /* The analytic formula is NOT what OpenCV computes for floats: a plain
   * double-precision evaluation must differ from the fixture by more than
   * our port does, or the fixture would not pin the LUT down. */
  const float *src = bgrf->data, *wl = w_labf->data;
  double formula_err = 0.0;
  for (size_t i = 0; i < nl; i++) {
    double c[3];
    for (int k = 0; k < 3; k++) {
      double v = fmin(fmax(src[i * 3 + 2 - k], 0.0), 1.0); /* R, G, B */
      c[k] = v <= 0.04045 ? v / 12.92 : pow((v + 0.055) / 1.055, 2.4);
    }
    double X = (0.412453 * c[0] + 0.357580 * c[1] + 0.180423 * c[2]) / 0.950456;
    double Y = 0.212671 * c[0] + 0.715160 * c[1] + 0.072169 * c[2];
    double Z = (0.019334 * c[0] + 0.119193 * c[1] + 0.950227 * c[2]) / 1.088754;
#define FN(t) ((t) > 0.008856 ? cbrt(t) : 7.787 * (t) + 16.0 / 116.0)
    double L = Y > 0.008856 ? 116.0 * FN(Y) - 16.0 : 903.3 * Y;
    double a = 500.0 * (FN(X) - FN(Y)), b = 200.0 * (FN(Y) - FN(Z));
    formula_err = fmax(formula_err, fabs(L - wl[i * 3]));
    formula_err = fmax(formula_err, fabs(a - wl[i * 3 + 1]));
    formula_err = fmax(formula_err, fabs(b - wl[i * 3 + 2]));
#undef FN
  }
  PS_CHECK_MSG(formula_err > 1e-3 && formula_err < 0.6, "formula vs LUT: %g", formula_err);
  g_free(lab);
  g_free(rt);
  g_free(out);
  g_free(f);
}

static gboolean config_vec3(const char *json, const char *key, double out[3]) {
  g_autoptr(JsonParser) p = json_parser_new();
  if (!json_parser_load_from_data(p, json, -1, NULL)) return FALSE;
  JsonObject *o = json_node_get_object(json_parser_get_root(p));
  JsonArray *a = json_object_get_array_member(o, key);
  if (!a || json_array_get_length(a) != 3) return FALSE;
  for (int i = 0; i < 3; i++) out[i] = json_array_get_double_element(a, i);
  return TRUE;
}

static void test_randstainna(const char *file) {
  g_autoptr(ps_safetensors) st = open_fixture(file);
  if (!st) return;
  const size_t n = 256 * 256;
  const ps_tensor *img = get(st, "input.image_rgb", PS_DTYPE_U8, n * 3);
  const ps_tensor *w_lab = get(st, "output.lab", PS_DTYPE_U8, n * 3);
  const ps_tensor *w_norm = get(st, "trace.lab_normalized", PS_DTYPE_U8, n * 3);
  const ps_tensor *w_out = get(st, "output.image_rgb", PS_DTYPE_U8, n * 3);
  const ps_tensor *w_labf = get(st, "output.lab_float", PS_DTYPE_F32, n * 3);
  const char *cfg = ps_safetensors_metadata(st, "config");
  double tm[3], ts[3], im[3], is[3];
  PS_CHECK(cfg && config_vec3(cfg, "target_mean_f64", tm) &&
           config_vec3(cfg, "target_std_f64", ts) && config_vec3(cfg, "img_mean_f64", im) &&
           config_vec3(cfg, "img_std_f64", is));
  if (!img || !w_lab || !w_norm || !w_out || !w_labf || !cfg) return;

  uint8_t *lab = g_malloc(n * 3), *norm = g_malloc(n * 3), *out = g_malloc(n * 3);
  int md;
  ps_lab_from_rgb_u8(img->data, lab, n, PS_LAB_RGB);
  size_t bad = u8_diff(lab, w_lab->data, n * 3, &md);
  PS_CHECK_MSG(bad == 0, "%s output.lab: %zu bytes differ, max %d", file, bad, md);

  double m[3], s[3];
  PS_CHECK(ps_stain_lab_stats(lab, n, NULL, FALSE, m, s));
  for (int c = 0; c < 3; c++) {
    PS_CHECK_NEAR(m[c], im[c], 1e-12 * fabs(im[c]));
    PS_CHECK_NEAR(s[c], is[c], 1e-12 * fabs(is[c]));
  }
  ps_stain_transform_lab(lab, n, m, s, tm, ts, 1e-4, norm);
  bad = u8_diff(norm, w_norm->data, n * 3, &md);
  PS_CHECK_MSG(bad == 0, "%s trace.lab_normalized: %zu bytes differ, max %d", file, bad, md);

  PS_CHECK(ps_stain_augment_rgb(img->data, n, NULL, FALSE, tm, ts, 1e-4, norm, out));
  bad = u8_diff(out, w_out->data, n * 3, &md);
  PS_CHECK_MSG(bad == 0, "%s output.image_rgb: %zu bytes differ, max %d", file, bad, md);

  float *f = g_malloc(n * 3 * sizeof(float));
  const uint8_t *px = img->data;
  for (size_t i = 0; i < n * 3; i++) f[i] = (float)px[i] / 255.0f;
  ps_lab_from_rgb_f32(f, f, n, PS_LAB_RGB);
  double e = f32_maxdiff(f, w_labf->data, n * 3);
  PS_CHECK_MSG(e <= 1e-4, "%s output.lab_float: max error %g", file, e);
  printf("%s: lab, lab_normalized, image_rgb exact; lab_float max error %g\n", file, e);

  /* Truncation, not rounding: rounding the same transform must disagree
   * somewhere, or this fixture would not test it. */
  size_t differ = 0;
  const uint8_t *wn = w_norm->data;
  for (size_t i = 0; i < n * 3; i++) {
    int c = (int)(i % 3);
    double sc = s[c] < 1e-4 ? 1e-4 : s[c];
    double x = (lab[i] - m[c]) * (ts[c] / sc) + tm[c];
    x = fmin(fmax(x, 0.0), 255.0);
    if ((uint8_t)nearbyint(x) != wn[i]) differ++;
  }
  PS_CHECK_MSG(differ > 0, "%s: rounding would also match (%zu)", file, differ);
  g_free(lab);
  g_free(norm);
  g_free(out);
  g_free(f);
}

/* A template fitted over the three crops: each image's statistics are the
 * reference's (config img_mean_f64 / img_std_f64), the template is their
 * mean and population std rounded to 3 decimals. */
static void test_fit_over_crops(void) {
  static const char *files[3] = {"randstainna_he_a.safetensors", "randstainna_he_b.safetensors",
                                 "randstainna_ihc.safetensors"};
  double means[9], stds[9], want_m[9], want_s[9];
  const size_t n = 256 * 256;
  uint8_t *scratch = g_malloc(n * 3);
  for (int i = 0; i < 3; i++) {
    g_autoptr(ps_safetensors) st = open_fixture(files[i]);
    if (!st) return;
    const ps_tensor *img = get(st, "input.image_rgb", PS_DTYPE_U8, n * 3);
    const char *cfg = ps_safetensors_metadata(st, "config");
    PS_CHECK(img && cfg && config_vec3(cfg, "img_mean_f64", want_m + 3 * i) &&
             config_vec3(cfg, "img_std_f64", want_s + 3 * i));
    if (!img) return;
    PS_CHECK(ps_stain_rgb_stats(img->data, n, scratch, means + 3 * i, stds + 3 * i));
  }
  g_free(scratch);
  for (int k = 0; k < 9; k++) {
    PS_CHECK_NEAR(means[k], want_m[k], 1e-12 * want_m[k]);
    PS_CHECK_NEAR(stds[k], want_s[k], 1e-12 * want_s[k]);
  }
  ps_stain_template t;
  GError *err = NULL;
  PS_CHECK_OK(ps_stain_template_fit(means, stds, 3, &t, &err), err);
  for (int c = 0; c < 3; c++) {
    double m = (want_m[c] + want_m[3 + c] + want_m[6 + c]) / 3.0, v = 0;
    for (int i = 0; i < 3; i++) v += pow(want_m[3 * i + c] - m, 2) / 3.0;
    PS_CHECK_NEAR(t.avg_mean[c], nearbyint(m * 1000) / 1000, 1e-9);
    PS_CHECK_NEAR(t.avg_std[c], nearbyint(sqrt(v) * 1000) / 1000, 1e-9);
  }
}

int main(void) {
  test_lab_color();
  test_randstainna("randstainna_he_a.safetensors");
  test_randstainna("randstainna_he_b.safetensors");
  test_randstainna("randstainna_ihc.safetensors");
  test_fit_over_crops();
  return ps_test_finish();
}
