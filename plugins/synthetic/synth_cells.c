/* synth_cells.c — the cells of a synthetic tile: nuclei (with chromatin,
 * pleomorphism, vesicular or hyperchromatic), goblet cells, the nuclei of
 * each gland (a basal palisade walked along the outline of a normal crypt,
 * stratified crowded nuclei in tumour glands, sheets in cribriform and solid
 * nests), signet-ring cells, fibroblasts and lymphocytes. A nucleus only
 * paints over the labels its style allows, so cells never cross into
 * structures they do not belong to. */
#include <math.h>
#include <string.h>

#include "synth_internal.h"
#include "synth_noise.h"

#define BIT(x) (1u << (x))
/* ---------------------------------------------------------------------- */
/* Nuclei */

typedef struct {
  float h;            /* haematoxylin concentration */
  gboolean vesicular; /* open chromatin, dark rim, a nucleolus */
  float wob;          /* shape irregularity */
  uint32_t paint;     /* labels it may paint over */
  uint8_t label;
} nuc_style;

static void draw_nucleus(synth_scene *sc, ps_synth_scratch *s, float cx, float cy, float a, float b,
                         float ang, const nuc_style *st) {
  ps_rng *r = &sc->rng;
  a = fmaxf(a, 0.7f);
  b = fmaxf(b, 0.7f);
  float k2c = synth_u(r, -1, 1), k2s = synth_u(r, -1, 1), k3c = synth_u(r, -1, 1),
        k3s = synth_u(r, -1, 1);
  float nu = synth_u(r, -0.3f, 0.3f), nv = synth_u(r, -0.3f, 0.3f);
  float c = cosf(ang), sn = sinf(ang);
  float ext = a * (1 + st->wob) + 1.5f;
  int x0 = MAX(0, (int)floorf(cx - ext)), x1 = MIN(sc->w - 1, (int)ceilf(cx + ext));
  int y0 = MAX(0, (int)floorf(cy - ext)), y1 = MIN(sc->h - 1, (int)ceilf(cy + ext));
  float sharp = 1.2f * fminf(a, b);
  float lim = (1 + st->wob) + 0.5f / sharp + 0.05f;
  float nr2 = (0.22f * 0.22f);
  gboolean drawn = FALSE;
  for (int y = y0; y <= y1; y++) {
    for (int x = x0; x <= x1; x++) {
      float dx = x - cx, dy = y - cy;
      float u = (dx * c + dy * sn) / a, v = (-dx * sn + dy * c) / b;
      float r2 = u * u + v * v;
      if (r2 > lim * lim) continue;
      size_t i = (size_t)y * sc->w + x;
      if (!(st->paint & BIT(s->labels[i]))) continue;
      float rr = sqrtf(r2) + 1e-6f, cu = u / rr, sv = v / rr;
      float c2 = cu * cu - sv * sv, s2 = 2 * cu * sv;
      float c3 = c2 * cu - s2 * sv, s3 = s2 * cu + c2 * sv;
      float rb = 1 + 0.3f * st->wob * (k2c * c2 + k2s * s2 + k3c * c3 + k3s * s3);
      float rho = rr / rb;
      float alpha = fminf(1.0f, (1 - rho) * sharp + 0.5f);
      if (alpha <= 0) continue;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y);
      float chrom = 0.72f + 0.56f * synth_vnoise(X * 1.2f, Y * 1.2f, sc->seed + 40);
      float hv;
      if (st->vesicular) {
        float rim = rho * rho * rho * rho;
        hv = st->h * (0.55f + 0.6f * rim) * chrom;
        float ex = u - nu, ey = v - nv;
        if (ex * ex + ey * ey < nr2) hv += 0.8f;
      } else {
        hv = st->h * chrom * (1 + 0.2f * (rho > 0.8f ? (rho - 0.8f) * 5 : 0));
      }
      s->ch[i] += (hv - s->ch[i]) * alpha;
      s->ce[i] *= 1 - 0.8f * alpha;
      s->cd[i] *= 1 - alpha;
      if (rho < 1) {
        s->labels[i] = st->label;
        drawn = TRUE;
      }
    }
  }
  if (drawn) sc->nnuclei++;
}

/* A point on the gland's perimeter walk: the medial-axis point and the outward
 * normal at arc length `t` of a curve at distance `rb` from the axis. */
static void walk(const synth_gland *g, float t, float rb, float *bx, float *by, float *nx,
                 float *ny) {
  float L = 2 * g->half_len, arc = (float)G_PI * rb;
  float px = -g->ay, py = g->ax, along;
  if (t < L) {
    along = -g->half_len + t;
    *nx = px;
    *ny = py;
  } else if (t < L + arc) {
    float th = (t - L) / rb;
    along = g->half_len;
    *nx = px * cosf(th) + g->ax * sinf(th);
    *ny = py * cosf(th) + g->ay * sinf(th);
  } else if (t < 2 * L + arc) {
    along = g->half_len - (t - L - arc);
    *nx = -px;
    *ny = -py;
  } else {
    float th = (t - 2 * L - arc) / rb;
    along = -g->half_len;
    *nx = -px * cosf(th) - g->ax * sinf(th);
    *ny = -py * cosf(th) - g->ay * sinf(th);
  }
  *bx = g->cx + along * g->ax;
  *by = g->cy + along * g->ay;
}

/* A pale goblet-cell vacuole (stays epithelium in the label map). */
static void draw_goblet(synth_scene *sc, ps_synth_scratch *s, float cx, float cy, float rad) {
  int x0 = MAX(0, (int)floorf(cx - rad - 1)), x1 = MIN(sc->w - 1, (int)ceilf(cx + rad + 1));
  int y0 = MAX(0, (int)floorf(cy - rad - 1)), y1 = MIN(sc->h - 1, (int)ceilf(cy + rad + 1));
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      size_t i = (size_t)y * sc->w + x;
      if (s->labels[i] != PS_SYNTH_EPITHELIUM) continue;
      float dx = x - cx, dy = y - cy, d = sqrtf(dx * dx + dy * dy);
      float alpha = fminf(1.0f, fmaxf(0.0f, rad - d + 0.5f));
      if (alpha <= 0) continue;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y);
      float g = synth_vnoise(X * 0.8f, Y * 0.8f, sc->seed + 41);
      s->ch[i] += (0.07f + 0.05f * g - s->ch[i]) * alpha;
      s->ce[i] += (0.04f + 0.03f * g - s->ce[i]) * alpha;
      s->cd[i] *= 1 - 0.6f * alpha;
    }
}

static void tumour_nucleus_style(ps_rng *r, nuc_style *st, uint32_t paint) {
  st->vesicular = ps_rng_uniform(r) < 0.2f;
  st->h = st->vesicular ? synth_u(r, 0.8f, 1.0f) : synth_u(r, 0.9f, 1.25f);
  st->wob = synth_u(r, 0.08f, 0.3f);
  st->paint = paint;
  st->label = PS_SYNTH_TUMOUR_NUCLEUS;
}

void synth_gland_cells(synth_scene *sc, ps_synth_scratch *s, const synth_gland *g) {
  ps_rng *r = &sc->rng;
  const float p = sc->ppm;
  const uint32_t epi_paint = BIT(PS_SYNTH_EPITHELIUM) | BIT(PS_SYNTH_EPI_NUCLEUS);
  const uint32_t tum_paint = BIT(PS_SYNTH_TUMOUR_EPITHELIUM) | BIT(PS_SYNTH_TUMOUR_NUCLEUS);
  if (g->kind == GK_CRIBRIFORM || g->kind == GK_SOLID) {
    /* Sheets: nuclei anywhere in the epithelium, densely. */
    float area = (float)G_PI * g->radius * g->radius + 4 * g->half_len * g->radius;
    float spacing = synth_u(r, 5.5f, 7.0f) * p;
    int n = (int)(area / (spacing * spacing));
    float ex = g->radius * (1 + g->wobble) + g->half_len;
    for (int k = 0; k < n; k++) {
      float x = g->cx + synth_u(r, -ex, ex), y = g->cy + synth_u(r, -ex, ex);
      if (label_at(sc, s, x, y) != PS_SYNTH_TUMOUR_EPITHELIUM) continue;
      nuc_style st;
      tumour_nucleus_style(r, &st, tum_paint);
      float a = synth_u(r, 3.0f, 5.5f) * p, b = a * synth_u(r, 0.6f, 0.95f);
      draw_nucleus(sc, s, x, y, a, b, synth_u(r, 0, (float)G_PI), &st);
    }
    return;
  }
  const gboolean tumour = g->tumour;
  /* Goblet cells first so nuclei sit on top of them. */
  if (!tumour) {
    float rb = g->radius - 0.62f * g->thick;
    if (rb > 0) {
      float per = 4 * g->half_len + 2 * (float)G_PI * rb, step = synth_u(r, 8, 10) * p;
      for (float t = synth_u(r, 0, step); t < per; t += step * synth_u(r, 0.8f, 1.2f)) {
        float bx, by, nx, ny;
        walk(g, t, rb, &bx, &by, &nx, &ny);
        float outer;
        gland_dist(g, bx + nx * rb, by + ny * rb, &outer);
        float d = outer - synth_u(r, 0.55f, 0.7f) * g->thick;
        draw_goblet(sc, s, bx + nx * d, by + ny * d, synth_u(r, 2.5f, 3.6f) * p);
      }
    }
  }
  float rb = g->radius - 0.3f * g->thick;
  if (rb <= 0) rb = 0.5f * g->radius;
  float per = 4 * g->half_len + 2 * (float)G_PI * rb;
  float step = (tumour ? synth_u(r, 3.0f, 3.6f) : synth_u(r, 4.0f, 4.6f)) * p;
  for (float t = synth_u(r, 0, step); t < per; t += step) {
    float bx, by, nx, ny;
    walk(g, t, rb, &bx, &by, &nx, &ny);
    float outer;
    gland_dist(g, bx + nx * rb, by + ny * rb, &outer);
    int count = tumour ? 1 + (ps_rng_uniform(r) < 0.45f) : 1;
    for (int k = 0; k < count; k++) {
      nuc_style st;
      float a, b, depth, ang = atan2f(ny, nx);
      if (tumour) {
        tumour_nucleus_style(r, &st, tum_paint);
        a = synth_u(r, 3.2f, 5.5f) * p;
        b = synth_u(r, 1.8f, 3.0f) * p;
        depth = synth_u(r, 0.15f, 0.7f) * g->thick;
        ang += synth_u(r, -0.5f, 0.5f);
      } else {
        st = (nuc_style){synth_u(r, 0.8f, 0.95f), FALSE, synth_u(r, 0.03f, 0.1f), epi_paint,
                         PS_SYNTH_EPI_NUCLEUS};
        a = synth_u(r, 3.4f, 4.4f) * p;
        b = synth_u(r, 1.3f, 1.8f) * p;
        depth = synth_u(r, 0.18f, 0.3f) * g->thick;
        ang += synth_u(r, -0.15f, 0.15f);
      }
      float d = outer - depth;
      float x = bx + nx * d, y = by + ny * d;
      uint8_t l = label_at(sc, s, x, y);
      if (l != (tumour ? PS_SYNTH_TUMOUR_EPITHELIUM : PS_SYNTH_EPITHELIUM) &&
          l != (tumour ? PS_SYNTH_TUMOUR_NUCLEUS : PS_SYNTH_EPI_NUCLEUS))
        continue;
      draw_nucleus(sc, s, x, y, a, b, ang, &st);
    }
  }
}

/* ---------------------------------------------------------------------- */
/* Stromal cells */

static void signet_cell(synth_scene *sc, ps_synth_scratch *s, float cx, float cy) {
  ps_rng *r = &sc->rng;
  float rad = synth_u(r, 6, 9) * sc->ppm;
  int x0 = MAX(0, (int)floorf(cx - rad - 1)), x1 = MIN(sc->w - 1, (int)ceilf(cx + rad + 1));
  int y0 = MAX(0, (int)floorf(cy - rad - 1)), y1 = MIN(sc->h - 1, (int)ceilf(cy + rad + 1));
  for (int y = y0; y <= y1; y++)
    for (int x = x0; x <= x1; x++) {
      size_t i = (size_t)y * sc->w + x;
      if (s->labels[i] != PS_SYNTH_TUMOUR_STROMA) continue;
      float dx = x - cx, dy = y - cy, d = sqrtf(dx * dx + dy * dy);
      if (d >= rad) continue;
      float X = synth_mx(sc, (float)x), Y = synth_my(sc, (float)y);
      float g = synth_vnoise(X * 0.7f, Y * 0.7f, sc->seed + 42);
      s->labels[i] = PS_SYNTH_TUMOUR_EPITHELIUM;
      /* A grey-blue mucin vacuole with a thin rim of pink cytoplasm. */
      float rim = fminf(1.0f, fmaxf(0.0f, d - (rad - fmaxf(1.0f, 1.0f * sc->ppm)) + 0.5f));
      float vh = 0.09f + 0.06f * g, ve = 0.05f + 0.05f * g;
      s->ch[i] = vh + (0.14f - vh) * rim;
      s->ce[i] = ve + (0.30f - ve) * rim;
      s->cd[i] = 0.25f * g + 0.45f * rim;
    }
  /* The crescent nucleus pressed against the membrane. */
  float a = synth_u(r, 0, 2 * (float)G_PI), off = rad - synth_u(r, 1.6f, 2.2f) * sc->ppm;
  nuc_style st;
  tumour_nucleus_style(r, &st, BIT(PS_SYNTH_TUMOUR_EPITHELIUM) | BIT(PS_SYNTH_TUMOUR_NUCLEUS));
  st.vesicular = FALSE;
  draw_nucleus(sc, s, cx + off * cosf(a), cy + off * sinf(a), synth_u(r, 0.5f, 0.7f) * rad,
               synth_u(r, 1.4f, 2.0f) * sc->ppm, a + (float)G_PI / 2, &st);
}

void synth_stromal_cells(synth_scene *sc, ps_synth_scratch *s) {
  ps_rng *r = &sc->rng;
  const float p = sc->ppm;
  const double area_um = (double)sc->w * sc->h * sc->upp * sc->upp;
  const uint32_t stroma = BIT(PS_SYNTH_STROMA) | BIT(PS_SYNTH_TUMOUR_STROMA);
  const gboolean normal = sc->morph == PS_SYNTH_M_NORMAL;

  if (sc->morph == PS_SYNTH_M_SIGNET_RING) {
    /* Discohesive cells, in loose sheets and cords where a noise field is high. */
    float cell = synth_u(r, 11, 15);
    int n = (int)(area_um / (cell * cell));
    for (int k = 0; k < n; k++) {
      float x = synth_u(r, 0, (float)sc->w), y = synth_u(r, 0, (float)sc->h);
      float dens = synth_vnoise(synth_mx(sc, x) / 50.0f, synth_my(sc, y) / 50.0f, sc->seed + 44);
      if (ps_rng_uniform(r) > dens * 1.6f - 0.2f) continue;
      if (label_at(sc, s, x, y) == PS_SYNTH_TUMOUR_STROMA) signet_cell(sc, s, x, y);
    }
  }
  /* Fibroblasts follow the fibres. */
  float fcell = normal ? synth_u(r, 22, 30) : synth_u(r, 14, 20);
  int n = (int)(area_um / (fcell * fcell));
  float fang = atan2f(sc->fib_s, sc->fib_c);
  for (int k = 0; k < n; k++) {
    float x = synth_u(r, 0, (float)sc->w), y = synth_u(r, 0, (float)sc->h);
    uint8_t l = label_at(sc, s, x, y);
    if (l != PS_SYNTH_STROMA && l != PS_SYNTH_TUMOUR_STROMA) continue;
    /* A cell in the tumour region belongs to the tumour (its own labels). */
    nuc_style st = {synth_u(r, 0.8f, 1.0f), FALSE, 0.15f, stroma,
                    l == PS_SYNTH_STROMA ? PS_SYNTH_STROMA_NUCLEUS
                                         : PS_SYNTH_TUMOUR_STROMA_NUCLEUS};
    draw_nucleus(sc, s, x, y, synth_u(r, 3.5f, 6.0f) * p, synth_u(r, 0.8f, 1.3f) * p,
                 fang + synth_u(r, -0.35f, 0.35f), &st);
  }
  /* Lymphocytes: dense in normal lamina propria, in clusters elsewhere. */
  float lcell = normal ? synth_u(r, 9, 13) : synth_u(r, 14, 24);
  n = (int)(area_um / (lcell * lcell));
  for (int k = 0; k < n; k++) {
    float x = synth_u(r, 0, (float)sc->w), y = synth_u(r, 0, (float)sc->h);
    uint8_t l = label_at(sc, s, x, y);
    if (l != PS_SYNTH_STROMA && l != PS_SYNTH_TUMOUR_STROMA) continue;
    float cluster = synth_vnoise(synth_mx(sc, x) / 60.0f, synth_my(sc, y) / 60.0f, sc->seed + 43);
    float keep = ps_rng_uniform(r);
    if (keep > cluster * 1.4f) continue;
    float rad = synth_u(r, 1.9f, 2.5f) * p;
    nuc_style st = {synth_u(r, 1.0f, 1.25f), FALSE, 0.08f, stroma,
                    l == PS_SYNTH_STROMA ? PS_SYNTH_LYMPHOCYTE : PS_SYNTH_TUMOUR_LYMPHOCYTE};
    draw_nucleus(sc, s, x, y, rad, rad * synth_u(r, 0.85f, 1.0f), synth_u(r, 0, (float)G_PI), &st);
  }
}
