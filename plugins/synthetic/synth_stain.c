/* synth_stain.c — turns a tile's stain concentrations into RGB.
 *
 * Colour follows the Beer–Lambert law: each stain s has a unit optical-
 * density vector v_s (absorbance per RGB channel, as in Ruifrok & Johnston's
 * colour deconvolution) and a per-pixel concentration c_s; the transmitted
 * light is I_c = I0_c * 10^(-sum_s c_s v_s[c]). A stain style is a set of
 * vectors, concentration scales and a glass colour, jittered per tile, so
 * styles differ the way laboratories do (hue of eosin, haematoxylin
 * strength, fading) and an IHC style is the same tissue with a DAB chromogen
 * in the epithelium and a light haematoxylin counterstain.
 *
 * Frozen-section artefacts are applied here too: ice-crystal holes (tissue
 * removed: concentrations go to ~0), folds (tissue doubled: concentrations
 * ~x1.8), and out-of-focus blur of the final image. They change the picture,
 * never the labels: an annotator draws the tissue, not the artefact. */
#include <math.h>
#include <string.h>

#include "synth_internal.h"
#include "synth_noise.h"

typedef struct {
  float h[3], e[3], d[3];
  float hs, es, ds;
  float i0[3];
} palette;

static const palette palettes[PS_SYNTH_STAIN_COUNT] = {
    /* he_classic */
    {{0.58f, 0.76f, 0.30f},
     {0.10f, 0.80f, 0.56f},
     {0.27f, 0.57f, 0.78f},
     1.0f,
     1.0f,
     0,
     {243, 242, 246}},
    /* he_eosin_rich: hot pink, lighter nuclei */
    {{0.62f, 0.74f, 0.26f},
     {0.06f, 0.86f, 0.50f},
     {0.27f, 0.57f, 0.78f},
     0.9f,
     1.4f,
     0,
     {245, 243, 245}},
    /* he_haem_rich: blue-purple, dark nuclei, little eosin */
    {{0.64f, 0.72f, 0.27f},
     {0.12f, 0.80f, 0.58f},
     {0.27f, 0.57f, 0.78f},
     1.45f,
     0.8f,
     0,
     {240, 241, 247}},
    /* he_faded: old or thin section, low contrast, yellowish light */
    {{0.58f, 0.74f, 0.34f},
     {0.14f, 0.78f, 0.60f},
     {0.27f, 0.57f, 0.78f},
     0.65f,
     0.55f,
     0,
     {247, 245, 240}},
    /* he_warm: orange-red eosin (phloxine-like) */
    {{0.58f, 0.76f, 0.30f},
     {0.03f, 0.72f, 0.69f},
     {0.27f, 0.57f, 0.78f},
     0.95f,
     1.1f,
     0,
     {247, 243, 238}},
    /* ihc_dab: haematoxylin counterstain, DAB brown, almost no eosin */
    {{0.65f, 0.70f, 0.29f},
     {0.12f, 0.86f, 0.48f},
     {0.27f, 0.57f, 0.78f},
     0.6f,
     0.05f,
     1.0f,
     {244, 244, 244}},
};

static void jitter_vector(ps_rng *r, const float in[3], float out[3], float amount) {
  float n = 0;
  for (int c = 0; c < 3; c++) {
    out[c] = fmaxf(0.01f, in[c] + amount * (float)ps_rng_normal(r));
    n += out[c] * out[c];
  }
  n = sqrtf(n);
  for (int c = 0; c < 3; c++) out[c] /= n;
}

void synth_stain_style(synth_scene *sc) {
  ps_rng *r = &sc->rng;
  const palette *p = &palettes[sc->stain];
  jitter_vector(r, p->h, sc->vh, 0.03f);
  jitter_vector(r, p->e, sc->ve, 0.03f);
  jitter_vector(r, p->d, sc->vd, 0.03f);
  sc->hs = p->hs * expf(0.12f * (float)ps_rng_normal(r));
  sc->es = p->es * expf(0.12f * (float)ps_rng_normal(r));
  sc->ds = p->ds * expf(0.12f * (float)ps_rng_normal(r));
  float light = synth_u(r, -4, 4);
  for (int c = 0; c < 3; c++) sc->i0[c] = fminf(255.0f, p->i0[c] + light + synth_u(r, -2, 2));
}

/* Separable box blur of radius r along one axis, from src to dst (H, W, 3),
 * with the edge pixels repeated. */
static void box_blur(const uint8_t *src, uint8_t *dst, int w, int h, int r, gboolean vertical) {
  int len = vertical ? h : w, lines = vertical ? w : h;
  size_t step = vertical ? (size_t)w * 3 : 3, lstep = vertical ? 3 : (size_t)w * 3;
  int norm = 2 * r + 1;
  for (int l = 0; l < lines; l++) {
    const uint8_t *s = src + (size_t)l * lstep;
    uint8_t *d = dst + (size_t)l * lstep;
    for (int c = 0; c < 3; c++) {
      int sum = 0;
      for (int k = -r; k <= r; k++) sum += s[(size_t)CLAMP(k, 0, len - 1) * step + c];
      for (int k = 0; k < len; k++) {
        d[(size_t)k * step + c] = (uint8_t)((sum + norm / 2) / norm);
        int add = CLAMP(k + r + 1, 0, len - 1), sub = CLAMP(k - r, 0, len - 1);
        sum += s[(size_t)add * step + c] - s[(size_t)sub * step + c];
      }
    }
  }
}

static void smooth121(uint8_t *rgb, uint8_t *tmp, int w, int h) {
  const size_t row = (size_t)w * 3;
  for (int y = 0; y < h; y++) {
    const uint8_t *s = rgb + y * row;
    uint8_t *d = tmp + y * row;
    for (int x = 0; x < w; x++) {
      int l = x > 0 ? x - 1 : x, r = x < w - 1 ? x + 1 : x;
      for (int c = 0; c < 3; c++)
        d[x * 3 + c] = (uint8_t)((s[l * 3 + c] + 2 * s[x * 3 + c] + s[r * 3 + c] + 2) >> 2);
    }
  }
  for (int y = 0; y < h; y++) {
    const uint8_t *u = tmp + (y > 0 ? y - 1 : y) * row, *m = tmp + y * row,
                  *b = tmp + (y < h - 1 ? y + 1 : y) * row;
    uint8_t *d = rgb + y * row;
    for (size_t k = 0; k < row; k++) d[k] = (uint8_t)((u[k] + 2 * m[k] + b[k] + 2) >> 2);
  }
}

void synth_render(const synth_scene *sc, ps_synth_scratch *s, uint8_t *rgb) {
  const float ln10 = 2.302585093f;
  const float hole_p = sc->hole_p, cell = sc->hole_cell;
  for (int y = 0; y < sc->h; y++) {
    for (int x = 0; x < sc->w; x++) {
      size_t i = (size_t)y * sc->w + x;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y), f[F_COUNT];
      synth_fields_at(sc, s, x, y, f);
      /* Section thickness varies slowly. */
      float g = f[F_THICK];
      if (sc->fold) {
        float d = (x * sc->fold_nx + y * sc->fold_ny - sc->fold_off) * sc->upp + f[F_FOLD];
        float in = CLAMP(0.5f * sc->fold_w - fabsf(d), 0.0f, 1.5f) / 1.5f;
        g *= 1 + 0.8f * in;
      }
      if (sc->holes && (s->region[i] & R_TISSUE)) {
        float fx = X / cell, fy = Y / cell, ix = floorf(fx), iy = floorf(fy);
        uint32_t hh = synth_hash3((int32_t)ix, (int32_t)iy, sc->seed + 52);
        if (synth_unit(hh) < hole_p) {
          uint32_t h2 = synth_hash3((int32_t)ix, (int32_t)iy, sc->seed + 53);
          float rad = 0.12f + 0.22f * (float)(h2 & 0xff) / 255.0f;
          float px = rad + (1 - 2 * rad) * (float)((h2 >> 8) & 0xff) / 255.0f;
          float py = rad + (1 - 2 * rad) * (float)((h2 >> 16) & 0xff) / 255.0f;
          float sq = 0.7f + 0.6f * (float)(h2 >> 24) / 255.0f; /* elongation */
          float dx = (fx - ix - px) * sq, dy = (fy - iy - py) / sq;
          float d = sqrtf(dx * dx + dy * dy);
          float in = CLAMP((rad - d) * cell * sc->ppm + 0.5f, 0.0f, 1.0f);
          g *= 1 - 0.95f * in;
        }
      }
      /* Pixel-scale grain of the dye, and sensor noise. */
      uint32_t wn = synth_hash_fast(x, y, sc->seed + 54);
      g *= 0.93f + 0.14f * synth_unit(wn);
      float h = s->ch[i] * sc->hs * g, e = s->ce[i] * sc->es * g, dd = s->cd[i] * sc->ds * g;
      float nz = 4.0f * (synth_unit(wn * 0x9e3779b9u) - 0.5f);
      for (int c = 0; c < 3; c++) {
        float od = h * sc->vh[c] + e * sc->ve[c] + dd * sc->vd[c];
        float v = sc->i0[c] * expf(-ln10 * od) + nz;
        rgb[i * 3 + c] = (uint8_t)CLAMP(v + 0.5f, 0.0f, 255.0f);
      }
    }
  }
  /* Scanner optics: a [1 2 1] / 4 kernel each way softens the drawn edges
   * the way a real objective does (the labels keep the sharp edges). */
  smooth121(rgb, s->rgb_tmp, sc->w, sc->h);
  if (sc->blur && sc->blur_r > 0) {
    /* Two box passes per axis approximate a Gaussian. */
    for (int pass = 0; pass < 2; pass++) {
      box_blur(rgb, s->rgb_tmp, sc->w, sc->h, sc->blur_r, FALSE);
      box_blur(s->rgb_tmp, rgb, sc->w, sc->h, sc->blur_r, TRUE);
    }
  }
}
