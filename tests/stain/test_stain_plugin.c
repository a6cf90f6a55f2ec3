/* test_stain_plugin.c — augmenter.randstainna as the host sees it: loaded
 * from the built plugin, created from YAML config, forward on a batch; and
 * its fixture capability through the harness (`pipeline fixture`). */
#include <string.h>

#include <pathseg/host.h>
#include <pathseg/safetensors.h>

#include "lab_opencv.h"
#include "ps_test.h"
#include "randstainna.h"

/* A directory from the environment ctest sets, or the source-tree default. */
static const char *env_dir(const char *name, const char *fallback) {
  const char *v = g_getenv(name);
  return v && *v ? v : fallback;
}

static const ps_component_desc *load(ps_registry *reg) {
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *path = g_build_filename(dir ? dir : "plugins", "pathseg-randstainna.so", NULL);
  GError *err = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, path, &err), err);
  return ps_registry_find(reg, "augmenter.randstainna");
}

static ps_component *make(const ps_component_desc *d, ps_context *ctx, const char *yaml) {
  GError *err = NULL;
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return NULL;
  ps_component *c = ps_component_new(d, cfg, "aug", ctx, &err);
  PS_CHECK_OK(c != NULL, err);
  return c;
}

typedef struct {
  ps_port in[2], out[2];
  ps_ports pin, pout;
} ports;

static gboolean forward(ps_component *c, ps_context *ctx, ps_tensor *image, ps_tensor *mask,
                        ps_tensor **out_image, ps_tensor **out_stain, GError **err) {
  ports p = {.in = {{"image", image, FALSE}, {"mask", mask, FALSE}},
             .out = {{"image", NULL, FALSE}, {"stain", NULL, FALSE}}};
  p.pin = (ps_ports){p.in, 2};
  p.pout = (ps_ports){p.out, 2};
  const ps_component_desc *d = ps_component_desc_of(c);
  if (!d->vtable->forward(ps_component_self(c), ctx, &p.pin, &p.pout, err)) return FALSE;
  *out_image = p.out[0].tensor;
  *out_stain = p.out[1].tensor;
  return TRUE;
}

/* A batch of the three fixture crops (256 x 256 RGB). */
static ps_tensor *batch_of_crops(void) {
  static const char *files[3] = {"randstainna_he_a.safetensors", "randstainna_he_b.safetensors",
                                 "randstainna_ihc.safetensors"};
  GError *err = NULL;
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_U8, 3, 256, 256, 3, &err);
  PS_CHECK_OK(t != NULL, err);
  for (int i = 0; t && i < 3; i++) {
    g_autofree char *path =
        g_build_filename(env_dir("PATHSEG_FIXTURES", "tests/fixtures"), files[i], NULL);
    g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
    PS_CHECK_OK(st != NULL, err);
    const ps_tensor *img = st ? ps_safetensors_get(st, "input.image_rgb", &err) : NULL;
    if (img && img->nbytes == 256 * 256 * 3)
      memcpy((uint8_t *)t->data + (size_t)i * 256 * 256 * 3, img->data, img->nbytes);
    else
      PS_CHECK_OK(FALSE, err);
  }
  return t;
}

static void test_forward(const ps_component_desc *d, ps_context *ctx) {
  g_autoptr(ps_tensor) x = batch_of_crops();
  const size_t n = 256 * 256;
  GError *err = NULL;
  ps_component *a = make(d, ctx, "{seed: 3, stream: 1, std_hyper: -0.3}");
  ps_component *a2 = make(d, ctx, "{seed: 3, stream: 1, std_hyper: -0.3}");
  ps_component *b = make(d, ctx, "{seed: 3, stream: 2, std_hyper: -0.3}");
  if (!a || !a2 || !b || !x) return;
  ps_tensor *ya, *sa, *ya2, *sa2, *yb, *sb;
  PS_CHECK_OK(forward(a, ctx, x, NULL, &ya, &sa, &err), err);
  PS_CHECK_OK(forward(a2, ctx, x, NULL, &ya2, &sa2, &err), err);
  PS_CHECK_OK(forward(b, ctx, x, NULL, &yb, &sb, &err), err);
  const int64_t img_shape[4] = {3, 256, 256, 3}, stain_shape[2] = {3, 6};
  PS_CHECK(ps_tensor_has_shape(ya, 4, img_shape) && ya->dtype == PS_DTYPE_U8);
  PS_CHECK(ps_tensor_has_shape(sa, 2, stain_shape) && sa->dtype == PS_DTYPE_F32);
  /* Same seed and stream: the same views; another stream: other views. */
  PS_CHECK(memcmp(ya->data, ya2->data, ya->nbytes) == 0);
  PS_CHECK(memcmp(sa->data, sa2->data, sa->nbytes) == 0);
  PS_CHECK(memcmp(ya->data, yb->data, ya->nbytes) != 0);
  PS_CHECK(memcmp(ya->data, x->data, ya->nbytes) != 0);

  /* The stain vector is the Lab mean/std of each output view, and the
   * views follow the sampled templates: each draw reproduced by hand. */
  uint8_t *lab = g_malloc(n * 3), *want = g_malloc(n * 3);
  ps_rng base, rng;
  ps_rng_seed(&base, 3);
  rng = ps_rng_fork(&base, 1);
  ps_stain_template t;
  ps_stain_template_crc(&t);
  for (int i = 0; i < 3; i++) {
    const uint8_t *yi = (const uint8_t *)ya->data + (size_t)i * n * 3;
    double m[3], s[3];
    ps_lab_from_rgb_u8(yi, lab, n, PS_LAB_RGB);
    PS_CHECK(ps_stain_lab_stats(lab, n, NULL, FALSE, m, s));
    const float *st = (const float *)sa->data + i * 6;
    for (int c = 0; c < 3; c++) {
      PS_CHECK_NEAR(st[c], m[c], 1e-4);
      PS_CHECK_NEAR(st[3 + c], s[c], 1e-4);
    }
    double tm[3], ts[3];
    PS_CHECK(ps_stain_sample(&t, -0.3, 1.0, PS_STAIN_NORMAL, &rng, tm, ts));
    PS_CHECK(ps_stain_augment_rgb((const uint8_t *)x->data + (size_t)i * n * 3, n, NULL, FALSE, tm,
                                  ts, 1e-4, lab, want));
    PS_CHECK_MSG(memcmp(want, yi, n * 3) == 0, "image %d differs from its sampled template", i);
  }

  /* probability 0: the input unchanged, its own stain vector. */
  ps_component *id = make(d, ctx, "{probability: 0.0}");
  ps_tensor *yi, *si;
  PS_CHECK_OK(id && forward(id, ctx, x, NULL, &yi, &si, &err), err);
  if (id) {
    PS_CHECK(memcmp(yi->data, x->data, x->nbytes) == 0);
    double m[3], s[3];
    ps_lab_from_rgb_u8(x->data, lab, n, PS_LAB_RGB);
    ps_stain_lab_stats(lab, n, NULL, FALSE, m, s);
    PS_CHECK_NEAR(((float *)si->data)[0], m[0], 1e-4);
    PS_CHECK_NEAR(((float *)si->data)[5], s[2], 1e-4);
  }

  /* RandStainNA++ with an all-foreground mask, one image: the foreground
   * view alone (the background's weights are all zero), drawn first. */
  g_autoptr(ps_tensor) x1 = ps_tensor_new4(PS_DTYPE_U8, 1, 256, 256, 3, &err);
  g_autoptr(ps_tensor) m1 = ps_tensor_new4(PS_DTYPE_F32, 1, 256, 256, -1, &err);
  memcpy(x1->data, x->data, n * 3);
  for (size_t i = 0; i < n; i++) ((float *)m1->data)[i] = 1.0f;
  ps_component *plain = make(d, ctx, "{seed: 11}");
  ps_component *fgbg = make(d, ctx, "{seed: 11, foreground_background: true}");
  ps_tensor *yp, *sp, *yf, *sf;
  PS_CHECK_OK(plain && forward(plain, ctx, x1, NULL, &yp, &sp, &err), err);
  PS_CHECK_OK(fgbg && forward(fgbg, ctx, x1, m1, &yf, &sf, &err), err);
  if (plain && fgbg) PS_CHECK(memcmp(yp->data, yf->data, n * 3) == 0);
  /* A half mask blends: left half from the foreground view. */
  for (size_t i = 0; i < n; i++) ((float *)m1->data)[i] = (i % 256) < 128 ? 1.0f : 0.0f;
  ps_component *fgbg2 = make(d, ctx, "{seed: 11, foreground_background: true}");
  PS_CHECK_OK(fgbg2 && forward(fgbg2, ctx, x1, m1, &yf, &sf, &err), err);
  if (fgbg2) {
    /* fg view = the image's own transform with stats over the left half */
    ps_rng r0, r1;
    ps_rng_seed(&r0, 11);
    r1 = ps_rng_fork(&r0, 0);
    double tm[3], ts[3];
    PS_CHECK(ps_stain_sample(&t, 0, 1.0, PS_STAIN_NORMAL, &r1, tm, ts));
    PS_CHECK(ps_stain_augment_rgb(x1->data, n, m1->data, FALSE, tm, ts, 1e-4, lab, want));
    size_t bad = 0;
    for (size_t i = 0; i < n; i++)
      if ((i % 256) < 128) bad += memcmp(want + i * 3, (uint8_t *)yf->data + i * 3, 3) != 0;
    PS_CHECK_MSG(bad == 0, "fg half: %zu pixels differ", bad);
  }
  /* Template keys from YAML: with zero spreads the targets are the means, so
   * the view is the transform onto exactly those; an all-background mask
   * gives the view of the bg.* template. */
  static const char *fixed = "{L: {avg: {mean: 100, std: 0}, std: {mean: 20, std: 0}},"
                             " A: {avg: {mean: 135, std: 0}, std: {mean: 5, std: 0}},"
                             " B: {avg: {mean: 120, std: 0}, std: {mean: 6, std: 0}},"
                             " bg: {L: {avg: {mean: 200, std: 0}, std: {mean: 10, std: 0}},"
                             "      A: {avg: {mean: 128, std: 0}, std: {mean: 3, std: 0}},"
                             "      B: {avg: {mean: 128, std: 0}, std: {mean: 3, std: 0}}},"
                             " foreground_background: %s}";
  const double fm[3] = {100, 135, 120}, fs[3] = {20, 5, 6};
  const double bm[3] = {200, 128, 128}, bs[3] = {10, 3, 3};
  g_autofree char *yf_cfg = g_strdup_printf(fixed, "false");
  g_autofree char *yb_cfg = g_strdup_printf(fixed, "true");
  ps_component *cf = make(d, ctx, yf_cfg), *cb = make(d, ctx, yb_cfg);
  for (size_t i = 0; i < n; i++) ((float *)m1->data)[i] = 0.0f;
  PS_CHECK_OK(cf && forward(cf, ctx, x1, NULL, &yp, &sp, &err), err);
  PS_CHECK(ps_stain_augment_rgb(x1->data, n, NULL, FALSE, fm, fs, 1e-4, lab, want));
  if (cf) PS_CHECK(memcmp(want, yp->data, n * 3) == 0);
  PS_CHECK_OK(cb && forward(cb, ctx, x1, m1, &yf, &sf, &err), err);
  PS_CHECK(ps_stain_augment_rgb(x1->data, n, NULL, FALSE, bm, bs, 1e-4, lab, want));
  if (cb) PS_CHECK(memcmp(want, yf->data, n * 3) == 0);
  ps_component_free(cf);
  ps_component_free(cb);

  /* Errors: a float image, a missing mask. */
  g_autoptr(ps_tensor) xf = ps_tensor_new4(PS_DTYPE_F32, 1, 8, 8, 3, &err);
  PS_CHECK_FAILS_WITH(forward(a, ctx, xf, NULL, &yp, &sp, &err), err, "input image");
  PS_CHECK_FAILS_WITH(forward(fgbg, ctx, x1, NULL, &yp, &sp, &err), err, "mask");
  g_free(lab);
  g_free(want);
  ps_component_free(a);
  ps_component_free(a2);
  ps_component_free(b);
  ps_component_free(id);
  ps_component_free(plain);
  ps_component_free(fgbg);
  ps_component_free(fgbg2);
}

static void test_harness(ps_registry *reg) {
  static const char *files[] = {"lab_color.safetensors", "randstainna_he_a.safetensors",
                                "randstainna_he_b.safetensors", "randstainna_ihc.safetensors"};
  for (size_t i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *path =
        g_build_filename(env_dir("PATHSEG_FIXTURES", "tests/fixtures"), files[i], NULL);
    g_autoptr(GPtrArray) results =
        g_ptr_array_new_with_free_func((GDestroyNotify)ps_fixture_result_free);
    GError *err = NULL;
    gboolean ok = ps_fixture_run_file(reg, path, NULL, results, &err);
    PS_CHECK_MSG(ok, "%s: %s", files[i], err ? err->message : "an output failed");
    g_clear_error(&err);
    for (guint k = 0; k < results->len; k++) {
      ps_fixture_result *r = results->pdata[k];
      printf("%s %s: max abs err %g%s%s\n", files[i], r->output, r->max_abs_err,
             r->passed ? "" : " FAILED ", r->problem ? r->problem : "");
      PS_CHECK(r->passed);
      /* our port is exact on every uint8 output and within 1e-4 on floats */
      PS_CHECK_MSG(r->max_abs_err <= 1e-4, "%s: %g", r->output, r->max_abs_err);
    }
    PS_CHECK(results->len >= 3);
  }
}

int main(void) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  const ps_component_desc *d = load(reg);
  PS_CHECK(d && d->kind == PS_KIND_AUGMENTER && d->vtable->backward == NULL);
  if (!d) return ps_test_finish();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 2, 1);
  test_forward(d, ctx);
  test_harness(reg);
  return ps_test_finish();
}
