/* synth_internal.h — what the generator's files share: the scratch memory,
 * the per-tile scene (every choice drawn for one tile) and the passes.
 *
 * A tile is drawn in passes over planes of the scratch: the label map,
 * region bits (tissue / tumour / necrosis / mucin), and three stain
 * concentration planes (haematoxylin, eosin, DAB) in optical-density units.
 * synth_paint.c fills labels and concentrations; synth_stain.c turns the
 * concentrations into RGB through the tile's stain style and adds the
 * frozen-section artefacts. */
#pragma once

#include "synth.h"
#include "synth_noise.h"

#define SYNTH_MAX_GLANDS 2048
#define SYNTH_MAX_HOLES 10

/* Region bits of scratch->region. */
enum { R_TISSUE = 1, R_TUMOUR = 2, R_NECROSIS = 4, R_MUCIN = 8 };

/* Low-frequency noise fields, sampled every SYNTH_COARSE pixels and
 * interpolated bilinearly: they vary over tens of microns, so this is exact
 * enough and saves most of the per-pixel noise. Labels are derived from the
 * interpolated values, so masks stay exact. */
#define SYNTH_COARSE 4
enum { F_EDGE, F_TUM, F_NEC, F_MUC, F_THICK, F_WX, F_WY, F_FOLD, F_LOOSE, F_COUNT };

/* How a gland's body is drawn. */
enum { GK_NORMAL, GK_TUBULAR, GK_CRIBRIFORM, GK_SOLID, GK_FLOATING };

/* A gland (or a solid nest): a capsule around a medial segment whose outer
 * boundary is perturbed by low-frequency noise; the lumen is the capsule
 * shrunk by the epithelium thickness. Lengths in pixels. */
typedef struct {
  float cx, cy;      /* centre */
  float ax, ay;      /* unit direction of the medial segment */
  float half_len;    /* half length of the medial segment */
  float radius;      /* outer radius */
  float thick;       /* epithelium thickness; >= radius: no lumen */
  float wobble;      /* relative amplitude of the boundary noise */
  float wobble_freq; /* of the boundary noise, per pixel */
  uint32_t nseed;
  uint8_t kind, tumour, dirty;
  int nholes;
  float holes[SYNTH_MAX_HOLES][3]; /* cribriform lumina: dx, dy, r */
} synth_gland;

struct ps_synth_scratch {
  size_t cap; /* pixels */
  float *ch, *ce, *cd;
  uint8_t *region, *labels, *rgb_tmp;
  int32_t *stack;
  synth_gland *glands;
  float *coarse; /* (ch, cw, F_COUNT) */
  size_t coarse_cap;
};

typedef struct {
  int w, h;
  float upp, ppm; /* microns per pixel, pixels per micron */
  float ox, oy;   /* where the tile sits in the (virtual) slide, microns */
  ps_rng rng;
  uint32_t seed; /* base of the noise seeds */
  ps_synth_target target;
  ps_synth_morphology morph;
  ps_synth_stain stain;
  int mag;

  /* regions (pixels) */
  gboolean edge;
  float edge_nx, edge_ny, edge_off;
  gboolean tumour, tumour_all;
  float tum_cx, tum_cy, tum_r;
  gboolean necrosis;
  float nec_cx, nec_cy, nec_r;
  float mucin_thr;
  float fib_c, fib_s;   /* the dominant fibre direction */
  gboolean normal_long; /* normal crypts cut along their length ... */
  float normal_hlf;     /* ... with this half length, in radii */

  /* frozen-section artefacts */
  gboolean frozen, holes, fold, blur;
  float hole_cell, hole_p; /* microns, probability per cell */
  float fold_nx, fold_ny, fold_off, fold_w;
  int blur_r;

  /* stain style, jittered per tile */
  float vh[3], ve[3], vd[3]; /* unit OD vectors */
  float hs, es, ds;          /* concentration scales */
  float i0[3];               /* incident light (glass colour) */

  int nglands, nnuclei;
  int nvisible; /* glands with pixels on the tile */
  int cw, chh;  /* coarse grid size */
} synth_scene;

static inline float synth_u(ps_rng *r, float a, float b) {
  return a + (b - a) * ps_rng_uniform(r);
}

/* Noise coordinates (microns in the virtual slide) of pixel (x, y). */
static inline float synth_mx(const synth_scene *sc, float x) {
  return x * sc->upp + sc->ox;
}
static inline float synth_my(const synth_scene *sc, float y) {
  return y * sc->upp + sc->oy;
}

/* The fields at pixel (x, y), interpolated from the coarse grid. */
static inline void synth_fields_at(const synth_scene *sc, const ps_synth_scratch *s, int x, int y,
                                   float out[F_COUNT]) {
  int i = x / SYNTH_COARSE, j = y / SYNTH_COARSE;
  float fx = (float)(x - i * SYNTH_COARSE) / SYNTH_COARSE,
        fy = (float)(y - j * SYNTH_COARSE) / SYNTH_COARSE;
  const float *a = s->coarse + ((size_t)j * sc->cw + i) * F_COUNT, *b = a + F_COUNT;
  const float *c = a + (size_t)sc->cw * F_COUNT, *d = c + F_COUNT;
  float wa = (1 - fx) * (1 - fy), wb = fx * (1 - fy), wc = (1 - fx) * fy, wd = fx * fy;
  for (int f = 0; f < F_COUNT; f++) out[f] = wa * a[f] + wb * b[f] + wc * c[f] + wd * d[f];
}

/* Gland geometry, shared by the painters of bodies and of cells. */
/* Distance (pixels) from (x, y) to the gland's medial segment. */
static inline float gland_axis_dist(const synth_gland *g, float x, float y) {
  float dx = x - g->cx, dy = y - g->cy;
  float t = dx * g->ax + dy * g->ay;
  t = fminf(fmaxf(t, -g->half_len), g->half_len);
  float qx = dx - t * g->ax, qy = dy - t * g->ay;
  return sqrtf(qx * qx + qy * qy);
}

/* The perturbed outer radius at (x, y). */
static inline float gland_outer(const synth_gland *g, float x, float y) {
  /* Two octaves: the low one bends the whole outline, the second keeps the
   * straight sides of long capsules from looking ruled. */
  float f = g->wobble_freq;
  float wob = 1.2f * synth_vnoise(x * f, y * f, g->nseed) +
              0.8f * synth_vnoise(x * 4.1f * f, y * 4.1f * f, g->nseed + 7) - 1;
  return g->radius * (1 + g->wobble * wob);
}

static inline float gland_dist(const synth_gland *g, float x, float y, float *outer) {
  *outer = gland_outer(g, x, y);
  return gland_axis_dist(g, x, y);
}

/* The label under (x, y) rounded to a pixel; 255 off the tile. */
static inline uint8_t label_at(const synth_scene *sc, const ps_synth_scratch *s, float x, float y) {
  int ix = (int)lrintf(x), iy = (int)lrintf(y);
  if (ix < 0 || iy < 0 || ix >= sc->w || iy >= sc->h) return 255;
  return s->labels[(size_t)iy * sc->w + ix];
}

/* synth_paint.c */
void synth_fields(synth_scene *sc, ps_synth_scratch *s);
void synth_scene_regions(synth_scene *sc);
void synth_paint(synth_scene *sc, ps_synth_scratch *s);
/* synth_cells.c */
void synth_gland_cells(synth_scene *sc, ps_synth_scratch *s, const synth_gland *g);
void synth_stromal_cells(synth_scene *sc, ps_synth_scratch *s);
/* synth_stain.c */
void synth_stain_style(synth_scene *sc);
void synth_render(const synth_scene *sc, ps_synth_scratch *s, uint8_t *rgb);
