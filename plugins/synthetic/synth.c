/* synth.c — ps_synth_tile(): one synthetic tile from (spec, seed).
 *
 * Draws the tile's choices (target, then a morphology that can show it,
 * stain style, magnification, artefacts) from a ps_rng seeded with `seed`,
 * paints tissue (synth_paint.c), renders colour (synth_stain.c), derives the
 * target mask from the label map and measures descriptors of the mask for
 * the text side. The scratch memory grows once and is reused. */
#include <math.h>
#include <pathseg/error.h>
#include <string.h>

#include "synth_internal.h"

#define BIT(x) (1u << (x))
#define SYNTH_MAX_REDRAWS 5

ps_synth_scratch *ps_synth_scratch_new(void) {
  return g_new0(ps_synth_scratch, 1);
}

void ps_synth_scratch_free(ps_synth_scratch *s) {
  if (!s) return;
  g_free(s->ch);
  g_free(s->ce);
  g_free(s->cd);
  g_free(s->region);
  g_free(s->labels);
  g_free(s->rgb_tmp);
  g_free(s->stack);
  g_free(s->glands);
  g_free(s->coarse);
  g_free(s);
}

static void scratch_reserve(ps_synth_scratch *s, size_t n, size_t coarse) {
  if (!s->glands) s->glands = g_new(synth_gland, SYNTH_MAX_GLANDS);
  if (s->coarse_cap < coarse) {
    s->coarse = g_renew(float, s->coarse, coarse);
    s->coarse_cap = coarse;
  }
  if (s->cap >= n) return;
  s->ch = g_renew(float, s->ch, n);
  s->ce = g_renew(float, s->ce, n);
  s->cd = g_renew(float, s->cd, n);
  s->region = g_renew(uint8_t, s->region, n);
  s->labels = g_renew(uint8_t, s->labels, n);
  s->rgb_tmp = g_renew(uint8_t, s->rgb_tmp, n * 3);
  s->stack = g_renew(int32_t, s->stack, n);
  s->cap = n;
}

/* Index of a uniformly chosen set bit of `set` (set != 0). */
static int pick_bit(ps_rng *r, uint32_t set) {
  int n = __builtin_popcount(set);
  int k = (int)ps_rng_below(r, (uint64_t)n);
  for (int b = 0; b < 32; b++)
    if ((set & BIT(b)) && k-- == 0) return b;
  return 0;
}

static gboolean check_set(uint32_t set, int count, const char *what, uint32_t *out,
                          GError **error) {
  uint32_t all = BIT(count) - 1;
  if (set & ~all) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "synthetic tile spec: %s has bits beyond the %d known values (0x%x)", what, count,
                set);
    return FALSE;
  }
  *out = set ? set : all;
  return TRUE;
}

/* Measures the mask: area, centroid, bounding box and 8-connected components
 * (flood fill with an explicit stack, so no recursion depth limit). */
static void describe(const uint8_t *mask, int w, int h, int32_t *stack, uint8_t *seen,
                     ps_synth_info *info) {
  size_t n = (size_t)w * h, area = 0;
  double sx = 0, sy = 0;
  int x0 = w, y0 = h, x1 = -1, y1 = -1;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      if (mask[(size_t)y * w + x]) {
        area++;
        sx += x;
        sy += y;
        x0 = MIN(x0, x);
        x1 = MAX(x1, x);
        y0 = MIN(y0, y);
        y1 = MAX(y1, y);
      }
  info->area_fraction = (double)area / (double)n;
  if (area) {
    info->centroid_x = (sx / (double)area + 0.5) / w;
    info->centroid_y = (sy / (double)area + 0.5) / h;
    info->bbox[0] = x0, info->bbox[1] = y0, info->bbox[2] = x1, info->bbox[3] = y1;
  } else {
    info->centroid_x = info->centroid_y = -1;
    info->bbox[0] = info->bbox[1] = info->bbox[2] = info->bbox[3] = -1;
  }
  memset(seen, 0, n);
  int comps = 0;
  for (size_t i = 0; i < n; i++) {
    if (!mask[i] || seen[i]) continue;
    comps++;
    size_t top = 0;
    stack[top++] = (int32_t)i;
    seen[i] = 1;
    while (top) {
      int32_t p = stack[--top];
      int px = p % w, py = p / w;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int qx = px + dx, qy = py + dy;
          if (qx < 0 || qy < 0 || qx >= w || qy >= h) continue;
          size_t q = (size_t)qy * w + qx;
          if (mask[q] && !seen[q]) {
            seen[q] = 1;
            stack[top++] = (int32_t)q;
          }
        }
    }
  }
  info->components = comps;
}

gboolean ps_synth_tile(const ps_synth_spec *spec, uint64_t seed, ps_synth_scratch *scratch,
                       uint8_t *rgb, uint8_t *mask, uint8_t *labels, ps_synth_info *info,
                       GError **error) {
  if (spec->width < PS_SYNTH_MIN_SIZE || spec->width > PS_SYNTH_MAX_SIZE ||
      spec->height < PS_SYNTH_MIN_SIZE || spec->height > PS_SYNTH_MAX_SIZE) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "synthetic tile spec: size %dx%d is outside %d..%d", spec->width, spec->height,
                PS_SYNTH_MIN_SIZE, PS_SYNTH_MAX_SIZE);
    return FALSE;
  }
  if (!(spec->artefact_probability >= 0 && spec->artefact_probability <= 1)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "synthetic tile spec: artefact_probability %g is outside [0, 1]",
                spec->artefact_probability);
    return FALSE;
  }
  uint32_t targets, morphs, stains, mags;
  if (!check_set(spec->targets, PS_SYNTH_TARGET_COUNT, "targets", &targets, error) ||
      !check_set(spec->morphologies, PS_SYNTH_MORPHOLOGY_COUNT, "morphologies", &morphs, error) ||
      !check_set(spec->stains, PS_SYNTH_STAIN_COUNT, "stains", &stains, error) ||
      !check_set(spec->magnifications, PS_SYNTH_MAG_COUNT, "magnifications", &mags, error))
    return FALSE;
  if (!rgb) {
    g_set_error_literal(error, PS_ERROR, PS_ERROR_INVALID, "synthetic tile: rgb output is NULL");
    return FALSE;
  }
  g_autoptr(ps_synth_scratch) own = NULL;
  if (!scratch) scratch = own = ps_synth_scratch_new();
  const size_t n = (size_t)spec->width * spec->height;
  const int cw = spec->width / SYNTH_COARSE + 2, chh = spec->height / SYNTH_COARSE + 2;
  scratch_reserve(scratch, n, (size_t)cw * chh * F_COUNT);

  synth_scene sc;
  memset(&sc, 0, sizeof sc);
  sc.w = spec->width;
  sc.h = spec->height;
  sc.cw = cw;
  sc.chh = chh;
  ps_rng_seed(&sc.rng, seed);
  ps_rng *r = &sc.rng;
  sc.seed = (uint32_t)ps_rng_u64(r);
  sc.target = (ps_synth_target)pick_bit(r, targets);
  uint32_t fit = morphs & ps_synth_target_morphologies(sc.target);
  sc.morph = (ps_synth_morphology)pick_bit(r, fit ? fit : morphs);
  sc.stain = (ps_synth_stain)pick_bit(r, stains);
  sc.mag = ps_synth_magnification(pick_bit(r, mags));
  sc.upp = 10.0f / (float)sc.mag;
  sc.ppm = 1.0f / sc.upp;

  /* Frozen-section artefacts: at least one of the three when frozen. */
  sc.frozen = ps_rng_uniform_f64(r) < spec->artefact_probability;
  if (sc.frozen) {
    sc.holes = ps_rng_uniform(r) < 0.8f;
    sc.fold = ps_rng_uniform(r) < 0.4f;
    sc.blur = ps_rng_uniform(r) < 0.5f || (!sc.holes && !sc.fold);
  }
  sc.hole_cell = synth_u(r, 9, 16);
  sc.hole_p = synth_u(r, 0.25f, 0.6f);
  float fa = synth_u(r, 0, 2 * (float)G_PI);
  sc.fold_nx = cosf(fa);
  sc.fold_ny = sinf(fa);
  sc.fold_off = (0.5f * sc.w * sc.fold_nx + 0.5f * sc.h * sc.fold_ny) +
                synth_u(r, -0.3f, 0.3f) * (float)MIN(sc.w, sc.h);
  sc.fold_w = synth_u(r, 10, 30) * (sc.mag <= 10 ? 2.0f : 1.0f);
  sc.blur_r = 1 + (int)ps_rng_below(r, sc.w >= 256 ? 2 : 1);

  synth_stain_style(&sc);
  /* Lay the tissue out; when the target is not in view (a small tile at high
   * power can miss every lumen), lay it out again from where the stream
   * stands, a few times at most. Deterministic: the redraws are part of the
   * tile's random stream. */
  const uint32_t want = ps_synth_target_labels(sc.target);
  for (int attempt = 0;; attempt++) {
    sc.ox = synth_u(r, 0, 20000);
    sc.oy = synth_u(r, 0, 20000);
    synth_scene_regions(&sc);
    synth_fields(&sc, scratch);
    synth_paint(&sc, scratch);
    if (attempt == SYNTH_MAX_REDRAWS) break;
    size_t i = 0;
    while (i < n && !((want >> scratch->labels[i]) & 1u)) i++;
    if (i < n) break;
  }
  synth_render(&sc, scratch, rgb);

  uint8_t *m = mask ? mask : scratch->rgb_tmp; /* rgb_tmp is free after render */
  for (size_t i = 0; i < n; i++) m[i] = (uint8_t)((want >> scratch->labels[i]) & 1u);
  if (labels) memcpy(labels, scratch->labels, n);

  if (info) {
    memset(info, 0, sizeof *info);
    info->target = sc.target;
    info->morphology = sc.morph;
    info->stain = sc.stain;
    info->target_name = ps_synth_target_name(sc.target);
    info->morphology_name = ps_synth_morphology_name(sc.morph);
    info->stain_name = ps_synth_stain_name(sc.stain);
    info->magnification = sc.mag;
    info->microns_per_pixel = 10.0 / sc.mag;
    info->held_out_morphology = ps_synth_morphology_held_out(sc.morph);
    info->held_out_stain = ps_synth_stain_held_out(sc.stain);
    info->frozen = sc.frozen;
    info->ice_crystals = sc.holes;
    info->fold = sc.fold;
    info->blur = sc.blur;
    info->tissue_edge = sc.edge;
    info->glands = sc.nvisible;
    info->nuclei = sc.nnuclei;
    size_t counts[PS_SYNTH_LABEL_COUNT] = {0};
    for (size_t i = 0; i < n; i++) counts[scratch->labels[i]]++;
    for (int l = 0; l < PS_SYNTH_LABEL_COUNT; l++)
      info->label_fraction[l] = (double)counts[l] / (double)n;
    info->tissue_fraction = 1.0 - info->label_fraction[PS_SYNTH_BACKGROUND];
    /* The region plane is no longer needed: it serves as the visited map. */
    describe(m, sc.w, sc.h, scratch->stack, scratch->region, info);
  }
  return TRUE;
}
