/* randstainna_plugin.c — the `randstainna` plugin: component augmenter.randstainna.
 *
 * forward: image [B, H, W, 3] u8 RGB (uint8 keeps the OpenCV Lab path exact)
 *          -> image [B, H, W, 3] u8 RGB, the augmented view,
 *             stain [B, 6] f32, [mean_L, mean_A, mean_B, std_L, std_A, std_B]
 *             of the OUTPUT view on the uint8 OpenCV Lab scale (the `s` of
 *             the stain-invariant term of Eq. 1; for an image left unchanged
 *             by the probability test, the input's statistics).
 * Per image: one uniform for the probability test, then the virtual template
 * (L, A, B; mean then std), from a private stream seeded by `seed` and
 * `stream`, so two instances with different streams give two independent
 * views. Images are drawn in batch order, then transformed in parallel.
 *
 * foreground_background (RandStainNA++): an input `mask` [B, H, W] f32 in
 * [0, 1] (e.g. a CAM / tissue mask); the foreground view uses the template
 * keys L.*, A.*, B.* with image statistics weighted by mask, the background
 * view the bg.* keys with weights 1 - mask (each with its own probability
 * test and draws, foreground first); out = trunc(fg * m + bg * (1 - m)).
 * No backward: the augmenter is a leaf. */
#include <string.h>

#include <pathseg/plugin.h>

#include "lab_opencv.h"
#include "randstainna.h"
#include "randstainna_plugin.h"

/* ---------------------------------------------------------------------- */
/* Config: the template keys mirror RandStainNA's YAML (L: {avg: {mean, std,
 * distribution}, std: {...}}, ...); defaults are its CRC template. */

#define STAT_KEYS(prefix, ch, am, as, ad, sm, ss, sd)                                              \
  {prefix ch ".avg.mean",                                                                          \
   PS_TYPE_FLOAT,                                                                                  \
   am,                                                                                             \
   PS_NO_RANGE,                                                                                    \
   NULL,                                                                                           \
   "mean over the dataset of the image means of channel " ch " (uint8 Lab scale)"},                \
      {prefix ch ".avg.std",                                                                       \
       PS_TYPE_FLOAT,                                                                              \
       as,                                                                                         \
       0,                                                                                          \
       1e6,                                                                                        \
       NULL,                                                                                       \
       "std over the dataset of the image means of channel " ch},                                  \
      {prefix ch ".avg.distribution",                                                              \
       PS_TYPE_ENUM,                                                                               \
       ad,                                                                                         \
       PS_NO_RANGE,                                                                                \
       "norm|laplace",                                                                             \
       "fitted distribution of the image means (used when distribution: fitted)"},                 \
      {prefix ch ".std.mean",                                                                      \
       PS_TYPE_FLOAT,                                                                              \
       sm,                                                                                         \
       PS_NO_RANGE,                                                                                \
       NULL,                                                                                       \
       "mean over the dataset of the image stds of channel " ch},                                  \
      {prefix ch ".std.std",                                                                       \
       PS_TYPE_FLOAT,                                                                              \
       ss,                                                                                         \
       0,                                                                                          \
       1e6,                                                                                        \
       NULL,                                                                                       \
       "std over the dataset of the image stds of channel " ch},                                   \
  {                                                                                                \
    prefix ch ".std.distribution", PS_TYPE_ENUM, sd, PS_NO_RANGE, "norm|laplace",                  \
        "fitted distribution of the image stds (used when distribution: fitted)"                   \
  }

#define TEMPLATE_KEYS(prefix)                                                                      \
  STAT_KEYS(prefix, "L", "158.033", "48.792", "norm", "36.899", "14.383", "norm"),                 \
      STAT_KEYS(prefix, "A", "151.187", "10.958", "laplace", "8.134", "2.822", "laplace"),         \
      STAT_KEYS(prefix, "B", "116.812", "6.643", "norm", "6.129", "2.013", "norm")

static const ps_config_key randstainna_keys[] = {
    TEMPLATE_KEYS(""),
    TEMPLATE_KEYS("bg."),
    {"std_hyper", PS_TYPE_FLOAT, "0.0", -1.0, 1e3, NULL,
     "draw scales are std * (1 + std_hyper) (reference default 0; README -0.3)"},
    {"probability", PS_TYPE_FLOAT, "1.0", 0.0, 1.0, NULL, "chance that an image is augmented"},
    {"distribution", PS_TYPE_ENUM, "normal", PS_NO_RANGE, "normal|laplace|uniform|fitted",
     "distribution of all six draws; fitted: each its template's (timm variant)"},
    {"std_min", PS_TYPE_FLOAT, "1e-4", 0.0, 255.0, NULL,
     "lower clip of the image std (randstainna.py 1e-4; its timm copy 1e-3)"},
    {"seed", PS_TYPE_INT, "0", 0, 9.2e18, NULL, "seed of this augmenter's random stream"},
    {"stream", PS_TYPE_INT, "0", 0, 9.2e18, NULL,
     "stream number (give two views of the same image different streams)"},
    {"foreground_background", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "RandStainNA++: separate fg (L/A/B keys) and bg (bg.* keys) views blended by input mask"},
    {NULL},
};

static const ps_port_desc randstainna_inputs[] = {
    {"image", "[B, H, W, 3] u8 RGB", FALSE},
    {"mask", "[B, H, W] f32 in [0, 1]: foreground weight (foreground_background only)", TRUE},
    {NULL},
};

static const ps_port_desc randstainna_outputs[] = {
    {"image", "[B, H, W, 3] u8 RGB, the augmented view", FALSE},
    {"stain", "[B, 6] f32: Lab mean L, A, B then std L, A, B of the output (uint8 Lab scale)",
     FALSE},
    {NULL},
};

/* ---------------------------------------------------------------------- */
/* Instances. */

typedef struct {
  ps_stain_template fg, bg;
  double std_hyper, probability, std_min;
  ps_stain_dist dist;
  gboolean fg_bg;
  ps_rng rng;
  ps_tensor *out_image; /* [B, H, W, 3] u8 */
  ps_tensor *out_stain; /* [B, 6] f32 */
  uint8_t *scratch;     /* per image: Lab (n*3) + background view (n*3) */
  size_t scratch_size;
  /* Draws of the current batch: per image, fg then bg. */
  double *draws;     /* [B, 2, 6] */
  gboolean *augment; /* [B, 2] */
  size_t draws_cap;
} randstainna;

/* The value of "<prefix><channel>.<what>", e.g. "bg.A.std.mean". */
static const char *template_key(char *buf, size_t size, const char *prefix, const char *ch,
                                const char *what) {
  g_snprintf(buf, size, "%s%s.%s", prefix, ch, what);
  return buf;
}

static void read_template(const ps_config *cfg, const char *prefix, ps_stain_template *t) {
  static const char *ch[3] = {"L", "A", "B"};
  char k[64];
  for (int c = 0; c < 3; c++) {
    t->avg_mean[c] = ps_config_float(cfg, template_key(k, sizeof k, prefix, ch[c], "avg.mean"));
    t->avg_std[c] = ps_config_float(cfg, template_key(k, sizeof k, prefix, ch[c], "avg.std"));
    t->std_mean[c] = ps_config_float(cfg, template_key(k, sizeof k, prefix, ch[c], "std.mean"));
    t->std_std[c] = ps_config_float(cfg, template_key(k, sizeof k, prefix, ch[c], "std.std"));
    /* The schema allows only norm|laplace, which ps_stain_dist_from_name knows. */
    ps_stain_dist_from_name(
        ps_config_string(cfg, template_key(k, sizeof k, prefix, ch[c], "avg.distribution")),
        &t->avg_dist[c]);
    ps_stain_dist_from_name(
        ps_config_string(cfg, template_key(k, sizeof k, prefix, ch[c], "std.distribution")),
        &t->std_dist[c]);
  }
}

static void *randstainna_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  randstainna *self = g_new0(randstainna, 1);
  read_template(cfg, "", &self->fg);
  read_template(cfg, "bg.", &self->bg);
  self->std_hyper = ps_config_float(cfg, "std_hyper");
  self->probability = ps_config_float(cfg, "probability");
  self->std_min = ps_config_float(cfg, "std_min");
  ps_stain_dist_from_name(ps_config_string(cfg, "distribution"), &self->dist);
  self->fg_bg = ps_config_bool(cfg, "foreground_background");
  ps_rng base;
  ps_rng_seed(&base, (uint64_t)ps_config_int(cfg, "seed"));
  self->rng = ps_rng_fork(&base, (uint64_t)ps_config_int(cfg, "stream"));
  return self;
}

static void randstainna_destroy(void *p) {
  randstainna *self = p;
  if (!self) return;
  ps_tensor_free(self->out_image);
  ps_tensor_free(self->out_stain);
  g_free(self->scratch);
  g_free(self->draws);
  g_free(self->augment);
  g_free(self);
}

/* Keeps *t a tensor of exactly this shape, reallocating only on a change. */
static gboolean ensure_tensor(ps_tensor **t, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                              GError **error) {
  if (*t && ps_tensor_has_shape(*t, ndim, shape) && (*t)->dtype == dtype) return TRUE;
  ps_tensor_free(*t);
  *t = ps_tensor_new(dtype, ndim, shape, error);
  return *t != NULL;
}

static gboolean randstainna_forward(void *p, ps_context *ctx, const ps_ports *in, ps_ports *out,
                                    GError **error) {
  randstainna *self = p;
  const char *me = "augmenter.randstainna";
  ps_tensor *image = ps_ports_require(in, me, "image", error);
  if (!image) return FALSE;
  const int64_t img_shape[4] = {-1, -1, -1, 3};
  if (!ps_tensor_check(image, "augmenter.randstainna input image", PS_DTYPE_U8, 4, img_shape,
                       error))
    return FALSE;
  if (image->device != PS_DEVICE_CPU) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "%s: input image must be on the CPU (augmentation runs in the data path)", me);
    return FALSE;
  }
  const int64_t B = image->shape[0], H = image->shape[1], W = image->shape[2];
  const size_t n = (size_t)(H * W);
  ps_tensor *mask = NULL;
  if (self->fg_bg) {
    mask = ps_ports_require(in, me, "mask", error);
    if (!mask) return FALSE;
    const int64_t mshape[3] = {B, H, W};
    if (!ps_tensor_check(mask, "augmenter.randstainna input mask", PS_DTYPE_F32, 3, mshape, error))
      return FALSE;
  }
  const int64_t stain_shape[2] = {B, 6};
  if (!ensure_tensor(&self->out_image, PS_DTYPE_U8, 4, image->shape, error) ||
      !ensure_tensor(&self->out_stain, PS_DTYPE_F32, 2, stain_shape, error))
    return FALSE;
  size_t per_image = n * 3 * 2;
  if (self->scratch_size < per_image * (size_t)B) {
    g_free(self->scratch);
    self->scratch = g_malloc(per_image * (size_t)B);
    self->scratch_size = per_image * (size_t)B;
  }
  if (self->draws_cap < (size_t)B) {
    self->draws = g_renew(double, self->draws, (size_t)B * 12);
    self->augment = g_renew(gboolean, self->augment, (size_t)B * 2);
    self->draws_cap = (size_t)B;
  }

  /* Draws first, in batch order, so the stream does not depend on threads. */
  for (int64_t b = 0; b < B; b++) {
    double *d = self->draws + b * 12;
    self->augment[b * 2] = ps_stain_sample(&self->fg, self->std_hyper, self->probability,
                                           self->dist, &self->rng, d, d + 3);
    self->augment[b * 2 + 1] =
        self->fg_bg && ps_stain_sample(&self->bg, self->std_hyper, self->probability, self->dist,
                                       &self->rng, d + 6, d + 9);
  }

  const uint8_t *src = image->data;
  uint8_t *dst = self->out_image->data;
  float *stain = self->out_stain->data;
  const float *mk = mask ? mask->data : NULL;
  const int threads = ps_context_threads(ctx) > 0 ? ps_context_threads(ctx) : 1;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t b = 0; b < B; b++) {
    const uint8_t *x = src + (size_t)b * n * 3;
    uint8_t *y = dst + (size_t)b * n * 3;
    uint8_t *lab = self->scratch + (size_t)b * per_image;
    uint8_t *bgv = lab + n * 3;
    const double *d = self->draws + b * 12;
    if (!self->fg_bg) {
      if (!self->augment[b * 2] ||
          !ps_stain_augment_rgb(x, n, NULL, FALSE, d, d + 3, self->std_min, lab, y))
        memcpy(y, x, n * 3);
    } else {
      const float *m = mk + (size_t)b * n;
      /* Foreground view into y, background view into bgv; an undefined
       * weighted view (empty side of the mask) contributes nothing to the
       * blend, so it stays the input. */
      if (!self->augment[b * 2] ||
          !ps_stain_augment_rgb(x, n, m, FALSE, d, d + 3, self->std_min, lab, y))
        memcpy(y, x, n * 3);
      if (!self->augment[b * 2 + 1] ||
          !ps_stain_augment_rgb(x, n, m, TRUE, d + 6, d + 9, self->std_min, lab, bgv))
        memcpy(bgv, x, n * 3);
      ps_stain_blend(y, bgv, m, n, y);
    }
    double mean[3], std[3];
    ps_lab_from_rgb_u8(y, lab, n, PS_LAB_RGB);
    if (!ps_stain_lab_stats(lab, n, NULL, FALSE, mean, std)) {
      mean[0] = mean[1] = mean[2] = std[0] = std[1] = std[2] = 0.0; /* empty image */
    }
    for (int c = 0; c < 3; c++) {
      stain[b * 6 + c] = (float)mean[c];
      stain[b * 6 + 3 + c] = (float)std[c];
    }
  }
  ps_ports_set(out, "image", self->out_image);
  ps_ports_set(out, "stain", self->out_stain);
  return TRUE;
}

static const ps_component_vtable randstainna_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = randstainna_create,
    .destroy = randstainna_destroy,
    .params = NULL,
    .forward = randstainna_forward,
    .backward = NULL,
};

static const void *randstainna_capability(const char *name) {
  if (strcmp(name, "fixture") == 0) return &ps_randstainna_fixture_iface;
  return NULL;
}

static const ps_component_desc randstainna_component = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_AUGMENTER,
    .name = "augmenter.randstainna",
    .doc = "RandStainNA stain augmentation in OpenCV's 8-bit Lab (bit-exact with OpenCV 4.6): "
           "per image a virtual stain template is drawn and the image's Lab mean/std are "
           "mapped onto it; outputs the view and its Lab stain vector. Optional RandStainNA++ "
           "foreground/background blend.",
    .config = randstainna_keys,
    .inputs = randstainna_inputs,
    .outputs = randstainna_outputs,
    .vtable = &randstainna_vtable,
    .capability = randstainna_capability,
};

static const ps_component_desc *const randstainna_components[] = {&randstainna_component, NULL};

static const ps_plugin_desc randstainna_plugin = {
    PS_PLUGIN_HEADER,
    .name = "randstainna",
    .version = "0.1.0",
    .license = "MIT",
    .description = "RandStainNA / RandStainNA++ stain augmentation with OpenCV-exact Lab",
    .components = randstainna_components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &randstainna_plugin;
}
