/* synth_paint.c — paints one synthetic tile's tissue: the label map and the
 * haematoxylin / eosin / DAB concentration planes (synth_internal.h).
 *
 * Passes, each overwriting the previous where it draws:
 *   1. regions and the ground: glass, stroma (fibrous anisotropic noise),
 *      desmoplastic tumour stroma, mucin pools;
 *   2. gland bodies (epithelium), then all lumina, so that overlapping
 *      tumour glands fuse into one epithelial mass with several lumina;
 *   3. goblet cells and nuclei of the glands, then signet-ring cells,
 *      fibroblasts and lymphocytes in the stroma (synth_cells.c);
 *   4. necrosis over everything in its region.
 * Sizes are in microns and scaled by the magnification. All randomness of
 * object placement comes from the scene's ps_rng; textures come from hash
 * noise keyed by the scene's seed. */
#include <math.h>
#include <string.h>

#include "synth_internal.h"
#include "synth_noise.h"

#define BIT(x) (1u << (x))

/* ---------------------------------------------------------------------- */
/* Regions */

void synth_scene_regions(synth_scene *sc) {
  ps_rng *r = &sc->rng;
  const float w = (float)sc->w, h = (float)sc->h, ext = fmaxf(w, h);
  const gboolean tumour_morph = sc->morph != PS_SYNTH_M_NORMAL;

  sc->edge = ps_rng_uniform(r) < 0.2f;
  float a = synth_u(r, 0, 2 * (float)G_PI);
  sc->edge_nx = cosf(a);
  sc->edge_ny = sinf(a);
  /* The glass covers between about 5% and 30% of the tile, on one side. */
  float half = 0.5f * (fabsf(sc->edge_nx) * w + fabsf(sc->edge_ny) * h);
  sc->edge_off =
      0.5f * w * sc->edge_nx + 0.5f * h * sc->edge_ny - half + synth_u(r, 0.1f, 0.6f) * half;

  sc->tumour = tumour_morph;
  /* A tumour query needs a border to be interesting: mostly a partial region. */
  sc->tumour_all =
      tumour_morph && ps_rng_uniform(r) < (sc->target == PS_SYNTH_T_TUMOUR ? 0.15f : 0.4f);
  sc->tum_cx = synth_u(r, 0.15f, 0.85f) * w;
  sc->tum_cy = synth_u(r, 0.15f, 0.85f) * h;
  sc->tum_r = synth_u(r, 0.35f, 0.85f) * ext;
  /* Cribriform and solid structures are large: give them room. */
  if (sc->morph == PS_SYNTH_M_CRIBRIFORM || sc->morph == PS_SYNTH_M_SOLID) sc->tum_r *= 1.4f;

  float pn = sc->target == PS_SYNTH_T_NECROSIS ? 1.0f
             : (sc->morph == PS_SYNTH_M_TUBULAR || sc->morph == PS_SYNTH_M_CRIBRIFORM ||
                sc->morph == PS_SYNTH_M_SOLID)
                 ? 0.2f
                 : 0.0f;
  sc->necrosis = ps_rng_uniform(r) < pn;
  if (tumour_morph && !sc->tumour_all) {
    sc->nec_cx = fminf(fmaxf(sc->tum_cx + synth_u(r, -0.3f, 0.3f) * sc->tum_r, 0.2f * w), 0.8f * w);
    sc->nec_cy = fminf(fmaxf(sc->tum_cy + synth_u(r, -0.3f, 0.3f) * sc->tum_r, 0.2f * h), 0.8f * h);
  } else {
    sc->nec_cx = synth_u(r, 0.2f, 0.8f) * w;
    sc->nec_cy = synth_u(r, 0.2f, 0.8f) * h;
  }
  sc->nec_r = synth_u(r, 0.12f, 0.3f) * ext;
  sc->mucin_thr = synth_u(r, 0.36f, 0.46f); /* mucinous: mucin is most of the tumour */
  float f = synth_u(r, 0, (float)G_PI);
  sc->fib_c = cosf(f);
  sc->fib_s = sinf(f);
}

/* The noise fields at slide position (X, Y) microns (see F_* in synth_internal.h). */
static void fields_exact(const synth_scene *sc, float X, float Y, float f[F_COUNT]) {
  f[F_EDGE] =
      sc->edge ? 60.0f * (synth_fbm(X * (1 / 70.0f), Y * (1 / 70.0f), sc->seed + 1, 3) - 0.5f) : 0;
  f[F_TUM] = sc->tumour && !sc->tumour_all
                 ? 0.9f * (synth_fbm(X * (1 / 90.0f), Y * (1 / 90.0f), sc->seed + 2, 3) - 0.5f)
                 : 0;
  f[F_NEC] = sc->necrosis
                 ? 1.4f * (synth_fbm(X * (1 / 30.0f), Y * (1 / 30.0f), sc->seed + 3, 3) - 0.5f)
                 : 0;
  f[F_MUC] = sc->morph == PS_SYNTH_M_MUCINOUS
                 ? synth_fbm(X * (1 / 45.0f), Y * (1 / 45.0f), sc->seed + 4, 3)
                 : 0;
  f[F_THICK] = 0.85f + 0.3f * synth_fbm(X / 150.0f, Y / 150.0f, sc->seed + 50, 2);
  f[F_WX] = 40.0f * (synth_fbm(X * (1 / 65.0f), Y * (1 / 65.0f), sc->seed + 11, 2) - 0.5f);
  f[F_WY] = 40.0f * (synth_fbm(X * (1 / 65.0f) + 5.3f, Y * (1 / 65.0f), sc->seed + 12, 2) - 0.5f);
  f[F_FOLD] = sc->fold ? 24.0f * (synth_vnoise(X / 40.0f, Y / 40.0f, sc->seed + 51) - 0.5f) : 0;
  f[F_LOOSE] = synth_fbm(X * (1 / 25.0f), Y * (1 / 25.0f), sc->seed + 15, 2);
}

void synth_fields(synth_scene *sc, ps_synth_scratch *s) {
  for (int j = 0; j < sc->chh; j++)
    for (int i = 0; i < sc->cw; i++)
      fields_exact(sc, synth_mx(sc, (float)(i * SYNTH_COARSE)),
                   synth_my(sc, (float)(j * SYNTH_COARSE)),
                   s->coarse + ((size_t)j * sc->cw + i) * F_COUNT);
}

/* Region bits of pixel (x, y) from its noise fields and the region geometry. */
static inline uint8_t region_from(const synth_scene *sc, float x, float y, const float *f) {
  if (sc->edge) {
    float d = (x * sc->edge_nx + y * sc->edge_ny - sc->edge_off) * sc->upp + f[F_EDGE];
    if (d <= 0) return 0;
  }
  uint8_t reg = R_TISSUE;
  if (sc->tumour) {
    if (sc->tumour_all) {
      reg |= R_TUMOUR;
    } else {
      float dx = x - sc->tum_cx, dy = y - sc->tum_cy;
      if (1 - sqrtf(dx * dx + dy * dy) / sc->tum_r + f[F_TUM] > 0) reg |= R_TUMOUR;
    }
  }
  if (sc->necrosis) {
    float dx = x - sc->nec_cx, dy = y - sc->nec_cy;
    if (1 - sqrtf(dx * dx + dy * dy) / sc->nec_r + f[F_NEC] > 0) reg |= R_NECROSIS;
  }
  if (sc->morph == PS_SYNTH_M_MUCINOUS && (reg & R_TUMOUR) && f[F_MUC] > sc->mucin_thr)
    reg |= R_MUCIN;
  return reg;
}

/* ---------------------------------------------------------------------- */
/* Colours of the ground (concentrations in OD units before the style). */

static inline void stroma_colour(const synth_scene *sc, float X, float Y, const float *f,
                                 gboolean tumour, float *h, float *e) {
  /* Fibres: value noise stretched along the fibre direction, domain-warped
   * so the bundles wave, and folded into ridges. The wavelengths never go
   * below about a pixel, so low magnifications show smooth stroma instead of
   * aliasing. */
  float u = X * sc->fib_c + Y * sc->fib_s + f[F_WX], v = -X * sc->fib_s + Y * sc->fib_c + f[F_WY];
  float lu = fmaxf(18.0f, 8 * sc->upp), lv = fmaxf(2.4f, 1.3f * sc->upp);
  float n = 0.6f * synth_vnoise(u / lu, v / lv, sc->seed + 13) +
            0.4f * synth_vnoise(1.7f * u / lu + 3.1f, 2.3f * v / lv, sc->seed + 14);
  float ridge = 1 - fabsf(2 * n - 1);
  float loose = f[F_LOOSE];
  /* Pale clefts between the bundles, more of them where the stroma is loose. */
  float cleft = synth_vnoise(u / 30.0f, v / fmaxf(5.0f, 2 * sc->upp), sc->seed + 18);
  float open = fminf(1.0f, fmaxf(0.0f, (cleft - 0.55f * (1 - loose)) * 4));
  *e = 0.24f * (0.2f + 0.9f * ridge * ridge) * (0.7f + 0.6f * loose) * (0.35f + 0.65f * open);
  *h = 0.012f + 0.02f * loose;
  if (sc->upp < 0.6f) { /* 20x and 40x resolve single fibrils */
    float fine = synth_vnoise(u / 7.0f + 11.3f, v / fmaxf(0.9f, 2.5f * sc->upp), sc->seed + 19);
    float fr = 1 - fabsf(2 * fine - 1);
    *e *= 0.7f + 0.6f * fr * fr;
  }
  if (tumour) { /* desmoplasia: looser, paler, more basophilic */
    *e *= 0.72f;
    *h += 0.045f;
  }
}

static inline void mucin_colour(const synth_scene *sc, float X, float Y, float *h, float *e) {
  float u = X * sc->fib_c + Y * sc->fib_s, v = -X * sc->fib_s + Y * sc->fib_c;
  float wisp = synth_vnoise(u / 24.0f, v / fmaxf(7.0f, 2 * sc->upp), sc->seed + 16);
  float blot = synth_vnoise(X / 15.0f, Y / 15.0f, sc->seed + 17);
  /* Pale grey-blue, streaming: weakly basophilic, hardly eosinophilic. */
  *h = 0.1f + 0.1f * wisp * (0.4f + blot);
  *e = 0.012f + 0.02f * wisp;
}

static inline void necrosis_colour(const synth_scene *sc, float X, float Y, float *h, float *e) {
  /* Granular eosinophilic debris, patchy, with smudged basophilic dust. */
  float g = synth_fbm(X / 2.5f, Y / 2.5f, sc->seed + 30, 2);
  float patch = synth_fbm(X / 18.0f, Y / 18.0f, sc->seed + 33, 2);
  *e = 0.36f * (0.35f + 0.75f * g) * (0.5f + 0.8f * patch);
  float smudge = synth_fbm(X / 6.0f, Y / 6.0f, sc->seed + 31, 2);
  *h = 0.06f + 0.3f * smudge * smudge * (1.3f - patch);
  /* Karyorrhectic dust: at most one nuclear fragment per 4.5 micron cell. */
  const float cs = 4.5f;
  float fx = X / cs, fy = Y / cs, ix = floorf(fx), iy = floorf(fy);
  uint32_t hh = synth_hash3((int32_t)ix, (int32_t)iy, sc->seed + 32);
  if ((hh & 0xff) < 150) {
    float px = 0.2f + 0.6f * (float)((hh >> 8) & 0xff) / 255.0f;
    float py = 0.2f + 0.6f * (float)((hh >> 16) & 0xff) / 255.0f;
    float u = (float)(hh >> 24) / 255.0f;
    float rad = 0.25f + 0.9f * u * u; /* microns: mostly dust, a few larger fragments */
    float dx = (fx - ix - px) * cs, dy = (fy - iy - py) * cs;
    float r2 = rad * rad, d2 = dx * dx + dy * dy;
    float soft = fmaxf(r2, sc->upp * sc->upp);
    if (d2 < soft) *h += (0.45f + 0.5f * u) * r2 / soft * (1 - d2 / soft * 0.5f);
  }
}

static inline void epi_colour(const synth_scene *sc, float X, float Y, gboolean tumour, float *h,
                              float *e, float *d) {
  float g = synth_vnoise(X / 1.8f, Y / 1.8f, sc->seed + 20);
  if (tumour) {
    *e = 0.26f * (0.8f + 0.4f * g);
    *h = 0.20f * (0.8f + 0.4f * g);
    *d = 0.75f * (0.7f + 0.6f * g);
  } else {
    *e = 0.27f * (0.8f + 0.4f * g);
    *h = 0.09f * (0.8f + 0.4f * g);
    *d = 0.45f * (0.7f + 0.6f * g);
  }
}

static inline void lumen_colour(const synth_scene *sc, float X, float Y, float *h, float *e) {
  float g = synth_vnoise(X / 9.0f, Y / 9.0f, sc->seed + 21);
  *e = 0.01f + 0.07f * g * g;
  *h = 0.01f;
}

/* ---------------------------------------------------------------------- */
/* Pass 1: regions and ground. */

static void paint_ground(synth_scene *sc, ps_synth_scratch *s) {
  for (int y = 0; y < sc->h; y++) {
    for (int x = 0; x < sc->w; x++) {
      size_t i = (size_t)y * sc->w + x;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y), f[F_COUNT];
      synth_fields_at(sc, s, x, y, f);
      uint8_t reg = region_from(sc, (float)x, (float)y, f);
      s->region[i] = reg;
      s->cd[i] = 0;
      if (!(reg & R_TISSUE)) {
        s->labels[i] = PS_SYNTH_BACKGROUND;
        s->ch[i] = s->ce[i] = 0;
      } else if (reg & R_MUCIN) {
        s->labels[i] = PS_SYNTH_MUCIN;
        mucin_colour(sc, X, Y, &s->ch[i], &s->ce[i]);
      } else {
        gboolean t = (reg & R_TUMOUR) != 0;
        s->labels[i] = t ? PS_SYNTH_TUMOUR_STROMA : PS_SYNTH_STROMA;
        stroma_colour(sc, X, Y, f, t, &s->ch[i], &s->ce[i]);
      }
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Glands: placement */

/* Region of an object's centre, anywhere (also off the tile). */
static uint8_t region_px(const synth_scene *sc, float x, float y) {
  float f[F_COUNT];
  fields_exact(sc, synth_mx(sc, x), synth_my(sc, y), f);
  return region_from(sc, x, y, f);
}

static synth_gland *new_gland(synth_scene *sc, ps_synth_scratch *s, int kind, float x, float y,
                              float radius_um, float thick_um, float half_len_um, float angle,
                              float wobble) {
  if (sc->nglands >= SYNTH_MAX_GLANDS) return NULL;
  synth_gland *g = &s->glands[sc->nglands++];
  memset(g, 0, sizeof *g);
  g->kind = (uint8_t)kind;
  g->tumour = kind != GK_NORMAL;
  g->cx = x;
  g->cy = y;
  g->ax = cosf(angle);
  g->ay = sinf(angle);
  g->radius = radius_um * sc->ppm;
  g->thick = thick_um * sc->ppm;
  g->half_len = half_len_um * sc->ppm;
  g->wobble = wobble;
  g->wobble_freq = 1.0f / (0.9f * g->radius);
  g->nseed = (uint32_t)ps_rng_u64(&sc->rng);
  return g;
}

/* Candidate centres on a staggered, jittered grid rotated by `angle` that
 * covers the tile plus a margin (cells in pixels). */
typedef void (*place_fn)(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle);

static void place_grid(synth_scene *sc, ps_synth_scratch *s, float angle, float cell_u,
                       float cell_v, float margin, float jitter, place_fn fn) {
  float c = cosf(angle), sn = sinf(angle);
  float cx = 0.5f * sc->w, cy = 0.5f * sc->h;
  float reach = 0.5f * sqrtf((float)sc->w * sc->w + (float)sc->h * sc->h) + margin;
  int nu = (int)ceilf(reach / cell_u), nv = (int)ceilf(reach / cell_v);
  float ou = synth_u(&sc->rng, 0, cell_u), ov = synth_u(&sc->rng, 0, cell_v);
  for (int j = -nv; j <= nv; j++) {
    for (int i = -nu; i <= nu; i++) {
      float ju = synth_u(&sc->rng, -0.5f, 0.5f) * jitter,
            jv = synth_u(&sc->rng, -0.5f, 0.5f) * jitter;
      float u = (i + 0.5f * (j & 1) + ju) * cell_u + ou, v = (j + jv) * cell_v + ov;
      float x = cx + u * c - v * sn, y = cy + u * sn + v * c;
      if (x < -margin || y < -margin || x > sc->w + margin || y > sc->h + margin) continue;
      fn(sc, s, x, y, angle);
    }
  }
}

static void place_normal(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle) {
  ps_rng *r = &sc->rng;
  /* Tall columnar cells around a narrow lumen. */
  float radius = synth_u(r, 22, 32), thick = radius * synth_u(r, 0.55f, 0.72f);
  float hl, a;
  if (sc->normal_long) {
    hl = sc->normal_hlf * 27.0f * synth_u(r, 0.8f, 1.1f);
    a = angle + synth_u(r, -0.08f, 0.08f);
  } else {
    hl = synth_u(r, 0, 0.3f) * radius;
    a = synth_u(r, 0, (float)G_PI);
  }
  if (sc->tumour && (region_px(sc, x, y) & R_TUMOUR)) return;
  new_gland(sc, s, GK_NORMAL, x, y, radius, thick, hl, a, synth_u(r, 0.04f, 0.09f));
}

static void place_tubular(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle) {
  ps_rng *r = &sc->rng;
  int n = ps_rng_uniform(r) < 0.35f ? 2 : 1; /* crowding: sometimes a second gland in the cell */
  for (int k = 0; k < n; k++) {
    float gx = x + (k ? synth_u(r, -30, 30) * sc->ppm : 0),
          gy = y + (k ? synth_u(r, -30, 30) * sc->ppm : 0);
    float radius = k ? synth_u(r, 12, 20) : synth_u(r, 17, 38);
    float thick = fminf(synth_u(r, 13, 20), 0.8f * radius);
    float hl = synth_u(r, 0, 1.3f) * radius;
    synth_gland *g = NULL;
    if (region_px(sc, gx, gy) & R_TUMOUR)
      g = new_gland(sc, s, GK_TUBULAR, gx, gy, radius, thick, hl, synth_u(r, 0, (float)G_PI),
                    synth_u(r, 0.18f, 0.32f));
    if (g) g->dirty = ps_rng_uniform(r) < 0.25f;
  }
}

static void place_cribriform(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle) {
  ps_rng *r = &sc->rng;
  float radius = synth_u(r, 55, 110);
  if (!(region_px(sc, x, y) & R_TUMOUR)) return;
  synth_gland *g =
      new_gland(sc, s, GK_CRIBRIFORM, x, y, radius, radius, synth_u(r, 0, 0.4f) * radius,
                synth_u(r, 0, (float)G_PI), synth_u(r, 0.08f, 0.16f));
  if (!g) return;
  g->dirty = ps_rng_uniform(r) < 0.35f; /* comedo necrosis in the centre */
  int want = 3 + (int)(radius / 12);
  for (int tries = 0; tries < 60 && g->nholes < SYNTH_MAX_HOLES && g->nholes < want; tries++) {
    float hr = synth_u(r, 5, 12) * sc->ppm;
    float lim = 0.78f * g->radius - hr;
    if (lim <= 0) break;
    float a = synth_u(r, 0, 2 * (float)G_PI), d = sqrtf(ps_rng_uniform(r)) * lim;
    float hx = d * cosf(a), hy = d * sinf(a);
    gboolean ok = TRUE;
    for (int k = 0; k < g->nholes && ok; k++) {
      float ex = hx - g->holes[k][0], ey = hy - g->holes[k][1],
            rr = hr + g->holes[k][2] + 3 * sc->ppm;
      ok = ex * ex + ey * ey > rr * rr;
    }
    if (g->dirty && d < 0.4f * g->radius + hr) ok = FALSE;
    if (!ok) continue;
    g->holes[g->nholes][0] = hx;
    g->holes[g->nholes][1] = hy;
    g->holes[g->nholes][2] = hr;
    g->nholes++;
  }
}

static void place_solid(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle) {
  ps_rng *r = &sc->rng;
  float radius = synth_u(r, 30, 70);
  if (!(region_px(sc, x, y) & R_TUMOUR)) return;
  synth_gland *g = new_gland(sc, s, GK_SOLID, x, y, radius, radius, synth_u(r, 0, 0.8f) * radius,
                             synth_u(r, 0, (float)G_PI), synth_u(r, 0.25f, 0.4f));
  if (g) g->dirty = ps_rng_uniform(r) < 0.15f;
}

static void place_floating(synth_scene *sc, ps_synth_scratch *s, float x, float y, float angle) {
  ps_rng *r = &sc->rng;
  float radius = synth_u(r, 10, 24);
  float thick = fminf(synth_u(r, 7, 11), 0.8f * radius);
  float hl = synth_u(r, 0, 1.5f) * radius, a = synth_u(r, 0, (float)G_PI);
  if (!(region_px(sc, x, y) & R_MUCIN)) return;
  new_gland(sc, s, GK_FLOATING, x, y, radius, thick, hl, a, synth_u(r, 0.25f, 0.4f));
}

static void place_glands(synth_scene *sc, ps_synth_scratch *s) {
  ps_rng *r = &sc->rng;
  float p = sc->ppm;
  /* Normal crypts everywhere outside the tumour (all of a normal tile). */
  if (!sc->tumour_all) {
    sc->normal_long = ps_rng_uniform(r) < 0.35f;
    sc->normal_hlf = synth_u(r, 1.2f, 2.4f);
    float angle = synth_u(r, 0, (float)G_PI);
    float cu = sc->normal_long ? 2 * (sc->normal_hlf * 27 + 27) + 10 : 2 * 27 + 14;
    float cv = 2 * 27 + 14;
    place_grid(sc, s, angle, cu * p, cv * p, 90 * p, 0.35f, place_normal);
  }
  if (!sc->tumour) return;
  float angle = synth_u(r, 0, (float)G_PI);
  switch (sc->morph) {
  case PS_SYNTH_M_TUBULAR:
    place_grid(sc, s, angle, 78 * p, 78 * p, 100 * p, 0.9f, place_tubular);
    break;
  case PS_SYNTH_M_CRIBRIFORM:
    place_grid(sc, s, angle, 190 * p, 190 * p, 140 * p, 0.6f, place_cribriform);
    break;
  case PS_SYNTH_M_SOLID:
    place_grid(sc, s, angle, 115 * p, 115 * p, 100 * p, 0.7f, place_solid);
    break;
  case PS_SYNTH_M_MUCINOUS:
    place_grid(sc, s, angle, 55 * p, 55 * p, 50 * p, 1.0f, place_floating);
    place_grid(sc, s, angle + 0.7f, 130 * p, 130 * p, 100 * p, 1.0f, place_tubular);
    break;
  default:
    break;
  }
}

/* ---------------------------------------------------------------------- */
/* Glands: bodies and lumina */

static void gland_bbox(const synth_scene *sc, const synth_gland *g, int *x0, int *y0, int *x1,
                       int *y1) {
  float ext = g->radius * (1 + g->wobble) + 1;
  float ex = fabsf(g->ax) * g->half_len + ext, ey = fabsf(g->ay) * g->half_len + ext;
  *x0 = MAX(0, (int)floorf(g->cx - ex));
  *y0 = MAX(0, (int)floorf(g->cy - ey));
  *x1 = MIN(sc->w - 1, (int)ceilf(g->cx + ex));
  *y1 = MIN(sc->h - 1, (int)ceilf(g->cy + ey));
}

/* Paints the epithelium; TRUE when any of it is on the tile. */
static gboolean paint_gland_body(synth_scene *sc, ps_synth_scratch *s, const synth_gland *g) {
  gboolean drawn = FALSE;
  int x0, y0, x1, y1;
  gland_bbox(sc, g, &x0, &y0, &x1, &y1);
  uint8_t label = g->tumour ? PS_SYNTH_TUMOUR_EPITHELIUM : PS_SYNTH_EPITHELIUM;
  for (int y = y0; y <= y1; y++) {
    for (int x = x0; x <= x1; x++) {
      size_t i = (size_t)y * sc->w + x;
      if (!(s->region[i] & R_TISSUE)) continue;
      float d = gland_axis_dist(g, (float)x, (float)y);
      if (d >= g->radius * (1 + g->wobble)) continue; /* outside whatever the noise */
      float outer = gland_outer(g, (float)x, (float)y);
      if (d >= outer) continue;
      drawn = TRUE;
      s->labels[i] = label;
      epi_colour(sc, synth_mx(sc, (float)x), synth_my(sc, (float)y), g->tumour, &s->ch[i],
                 &s->ce[i], &s->cd[i]);
      /* The basal edge is a little denser (basement membrane, basal cytoplasm). */
      float edge = outer - d;
      if (edge < 1.2f) s->ce[i] *= 1.25f;
    }
  }
  return drawn;
}

static void paint_gland_lumen(synth_scene *sc, ps_synth_scratch *s, const synth_gland *g) {
  if (g->thick >= g->radius && g->nholes == 0 && !g->dirty) return;
  int x0, y0, x1, y1;
  gland_bbox(sc, g, &x0, &y0, &x1, &y1);
  uint8_t lumen = g->tumour ? PS_SYNTH_TUMOUR_LUMEN : PS_SYNTH_LUMEN;
  gboolean solid = g->thick >= g->radius;
  for (int y = y0; y <= y1; y++) {
    for (int x = x0; x <= x1; x++) {
      size_t i = (size_t)y * sc->w + x;
      if (!(s->region[i] & R_TISSUE)) continue;
      float d = gland_axis_dist(g, (float)x, (float)y);
      if (d >= g->radius * (1 + g->wobble)) continue;
      float outer = gland_outer(g, (float)x, (float)y);
      if (d >= outer) continue;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y);
      float inner = outer - g->thick;
      if (g->tumour) /* irregular luminal border */
        inner += g->thick * 0.35f * (synth_vnoise(X / 6.0f, Y / 6.0f, g->nseed + 1) - 0.5f);
      gboolean in_lumen = !solid && d < inner;
      gboolean in_necrosis = g->dirty && (solid ? d < 0.38f * outer : d < 0.7f * inner);
      for (int k = 0; k < g->nholes && !in_lumen; k++) {
        float hx = x - g->cx - g->holes[k][0], hy = y - g->cy - g->holes[k][1], hr = g->holes[k][2];
        if (hx * hx + hy * hy > 1.69f * hr * hr) continue;
        hr *= 0.8f + 0.45f * synth_vnoise(X / 4.0f, Y / 4.0f, g->nseed + 2 + (uint32_t)k);
        in_lumen = hx * hx + hy * hy < hr * hr;
      }
      if (in_necrosis) {
        s->labels[i] = PS_SYNTH_TUMOUR_NECROSIS; /* only tumour glands are dirty */
        necrosis_colour(sc, X, Y, &s->ch[i], &s->ce[i]);
        s->cd[i] = 0;
      } else if (in_lumen) {
        s->labels[i] = lumen;
        lumen_colour(sc, X, Y, &s->ch[i], &s->ce[i]);
        s->cd[i] = 0;
      }
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Necrosis */

static void paint_necrosis(synth_scene *sc, ps_synth_scratch *s) {
  size_t n = (size_t)sc->w * sc->h;
  for (size_t i = 0; i < n; i++) {
    if ((s->region[i] & (R_TISSUE | R_NECROSIS)) != (R_TISSUE | R_NECROSIS)) continue;
    int x = (int)(i % (size_t)sc->w), y = (int)(i / (size_t)sc->w);
    s->labels[i] = (s->region[i] & R_TUMOUR) ? PS_SYNTH_TUMOUR_NECROSIS : PS_SYNTH_NECROSIS;
    necrosis_colour(sc, synth_mx(sc, (float)x), synth_my(sc, (float)y), &s->ch[i], &s->ce[i]);
    s->cd[i] = 0;
  }
}

void synth_paint(synth_scene *sc, ps_synth_scratch *s) {
  paint_ground(sc, s);
  sc->nglands = 0;
  sc->nnuclei = 0;
  place_glands(sc, s);
  sc->nvisible = 0;
  for (int k = 0; k < sc->nglands; k++) sc->nvisible += paint_gland_body(sc, s, &s->glands[k]);
  for (int k = 0; k < sc->nglands; k++) paint_gland_lumen(sc, s, &s->glands[k]);
  for (int k = 0; k < sc->nglands; k++) synth_gland_cells(sc, s, &s->glands[k]);
  synth_stromal_cells(sc, s);
  if (sc->necrosis) paint_necrosis(sc, s);
}
