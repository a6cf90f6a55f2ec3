/* slide_job.c — one slide of stage.preprocess_slides: magnification ->
 * pyramid level and resize factor, tissue mask (thumbnail saturation, Otsu
 * or a fixed threshold), the tile grid kept by `min_tissue`, then per tile:
 * read (libvips/OpenSlide), resize when the level is not the wanted
 * magnification, mask (annotation polygons or the tissue mask), descriptors,
 * template query and reasoning, PNGs written atomically (png_write.c,
 * through <stem>/.partial/). Finished tiles are read back instead of
 * recomputed (resume); the slide's manifest and then its `done` marker are
 * written last. A single-level slide is decoded once for both the
 * thumbnail and the tiles (level_cache_mb). */
#include <glib/gstdio.h>
#include <math.h>
#include <omp.h>
#include <pathseg/error.h>
#include <pathseg/rng.h>
#include <string.h>
#include <vips/vips.h>

#include "annotate.h"
#include "annotations.h"
#include "describe.h"
#include "manifest.h"
#include "png_io.h"
#include "preprocess.h"
#include "slide.h"

void pp_log(pp_shared *sh, const char *format, ...) {
  va_list ap;
  va_start(ap, format);
  g_autofree char *msg = g_strdup_vprintf(format, ap);
  va_end(ap);
  g_mutex_lock(&sh->lock);
  if (sh->rank > 0)
    g_printerr("rank %d: %s\n", sh->rank, msg);
  else
    ps_run_log(sh->run, "%s", msg);
  g_mutex_unlock(&sh->lock);
}

void pp_progress(pp_shared *sh, int64_t add_done, int64_t add_total, const char *stem) {
  g_mutex_lock(&sh->lock);
  sh->tiles_done += add_done;
  sh->tiles_total += add_total;
  if (add_done) ps_run_progress(sh->run, sh->tiles_done, MAX(sh->tiles_total, sh->tiles_done), "%s", stem);
  g_mutex_unlock(&sh->lock);
}

gboolean pp_slide_done(const pp_config *cfg, const char *stem) {
  g_autofree char *done = g_build_filename(cfg->out_dir, stem, "done", NULL);
  return g_file_test(done, G_FILE_TEST_IS_REGULAR);
}

/* The settings a slide's tiles depend on, recorded in its `done` marker so
 * that a rerun with other settings into the same out_dir is refused rather
 * than silently mixing tiles. */
static char *settings_line(const pp_config *cfg, const pp_slide_job *job) {
  return g_strdup_printf("settings: magnification=%d mpp=%g tile_size=%d overlap=%d min_tissue=%g thumb_factor=%d "
                         "tissue=%s/%g annotations=%s target=%s keep_empty=%d seed=%" G_GUINT64_FORMAT "\n",
                         cfg->magnification, cfg->mpp, cfg->tile_size, cfg->overlap, cfg->min_tissue,
                         cfg->thumb_factor, cfg->tissue, cfg->tissue_threshold,
                         job->annotations ? job->annotations : "", cfg->target, cfg->keep_empty, cfg->seed);
}

/* The level and geometry tiles are cut with. */
typedef struct {
  int level;
  double ds;        /* level downsample */
  double resize;    /* level pixels per output pixel; 1: read as is */
  double footprint; /* level-0 pixels per output pixel */
  int read_w;       /* level pixels read per tile side */
} geometry;

static gboolean choose_geometry(const pp_config *cfg, ps_slide *s, geometry *g, GError **error) {
  double mpp = cfg->mpp;
  if (!(mpp > 0)) {
    double mx = 0, my = 0;
    GError *e = NULL;
    if (!ps_slide_mpp(s, &mx, &my, &e)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s; set the stage's `mpp` key to cut tiles at %dx",
                  e->message, cfg->magnification);
      g_error_free(e);
      return FALSE;
    }
    mpp = 0.5 * (mx + my);
  }
  const double want = 10.0 / cfg->magnification; /* 40x = 0.25 um/px */
  const double d = want / mpp;                   /* level-0 pixels per output pixel */
  if (d < 1.0 - cfg->mpp_tolerance) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "slide %s: %.4g um/px at level 0 is coarser than %dx (%.4g um/px); choose a lower magnification",
                ps_slide_path(s), mpp, cfg->magnification, want);
    return FALSE;
  }
  /* The nearest finer level: the largest downsample not above d (within the tolerance). */
  g->level = 0;
  for (int l = 1; l < ps_slide_level_count(s); l++) {
    double ds = ps_slide_level_downsample(s, l);
    if (ds <= d * (1.0 + cfg->mpp_tolerance) && ds > ps_slide_level_downsample(s, g->level)) g->level = l;
  }
  g->ds = ps_slide_level_downsample(s, g->level);
  g->resize = d / g->ds;
  if (fabs(g->resize - 1.0) <= cfg->mpp_tolerance) g->resize = 1.0;
  g->footprint = g->ds * g->resize;
  g->read_w = g->resize == 1.0 ? cfg->tile_size : (int)ceil(cfg->tile_size * g->resize - 1e-9);
  return TRUE;
}

/* The level the tissue thumbnail is computed at, and its block factor. */
static int thumb_level(const pp_config *cfg, ps_slide *s, int *factor) {
  int level = 0;
  for (int l = 1; l < ps_slide_level_count(s); l++)
    if (ps_slide_level_downsample(s, l) <= cfg->thumb_factor) level = l;
  *factor = MAX(1, (int)lround(cfg->thumb_factor / ps_slide_level_downsample(s, level)));
  return level;
}

/* Tissue mask at thumbnail scale; *cell: level-0 pixels per mask cell.
 * cached: the thumbnail level in memory ((H, W, 3) RGB) or NULL. */
static gboolean tissue_mask(const pp_config *cfg, ps_slide *s, const uint8_t *cached, uint8_t **mask, int64_t *mw,
                            int64_t *mh, double *cell, double *threshold, GError **error) {
  int factor = 1;
  int level = thumb_level(cfg, s, &factor);
  *cell = factor * ps_slide_level_downsample(s, level);
  g_autofree double *thumb = NULL;
  if (cached) {
    int64_t W = 0, H = 0;
    ps_slide_level_size(s, level, &W, &H);
    *mw = W / factor;
    *mh = H / factor;
    if (*mw < 1 || *mh < 1) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: level %d is smaller than one %d x %d block",
                  ps_slide_path(s), level, factor, factor);
      return FALSE;
    }
    thumb = g_new(double, (size_t)(*mw * *mh * 3));
    ps_rgb_thumbnail_mean(cached, W, H, factor, thumb);
  } else if (!ps_slide_thumbnail_mean(s, level, factor, &thumb, mw, mh, error)) {
    return FALSE;
  }
  size_t n = (size_t)(*mw * *mh);
  g_autofree double *sat = g_new(double, n);
  ps_saturation(thumb, n, sat);
  /* Otsu as ps_slide_tissue_mask computes it (skimage, 256 bins), or fixed. */
  *threshold = strcmp(cfg->tissue, "otsu") == 0 ? ps_otsu_threshold(sat, n, 256, NULL, NULL) : cfg->tissue_threshold;
  *mask = g_new(uint8_t, n);
  ps_threshold_mask(sat, n, *threshold, *mask);
  return TRUE;
}

static double tissue_fraction(const uint8_t *mask, int64_t mw, int64_t mh, double cell, double x, double y,
                              double size) {
  int64_t cx0 = MAX((int64_t)floor(x / cell), 0), cy0 = MAX((int64_t)floor(y / cell), 0);
  int64_t cx1 = MIN((int64_t)ceil((x + size) / cell), mw), cy1 = MIN((int64_t)ceil((y + size) / cell), mh);
  if (cx0 >= cx1 || cy0 >= cy1) return 0.0;
  int64_t on = 0;
  for (int64_t cy = cy0; cy < cy1; cy++)
    for (int64_t cx = cx0; cx < cx1; cx++) on += mask[cy * mw + cx];
  return (double)on / (double)((cx1 - cx0) * (cy1 - cy0));
}

/* Reads one tile as (T, T, 3) RGB: a level region, resized with libvips when
 * the level is not at the wanted magnification. raw: (read_w, read_w, 3),
 * the region before resizing. cached: the whole level ((H, W, 3) RGB) or
 * NULL. */
static gboolean read_tile(ps_slide *s, const geometry *g, const uint8_t *cached, int T, int64_t x, int64_t y,
                          uint8_t *raw, uint8_t *rgb, GError **error) {
  const int R = g->read_w;
  uint8_t *dst = R == T ? rgb : raw;
  int64_t W = 0, H = 0;
  ps_slide_level_size(s, g->level, &W, &H);
  const int64_t lx = (int64_t)floor((double)x / g->ds), ly = (int64_t)floor((double)y / g->ds);
  if (cached && lx >= 0 && ly >= 0 && lx + R <= W && ly + R <= H) {
    /* The level is in memory: copy the rows. */
    for (int j = 0; j < R; j++)
      memcpy(dst + (size_t)j * R * 3, cached + ((size_t)(ly + j) * (size_t)W + (size_t)lx) * 3, (size_t)R * 3);
  } else if (!ps_slide_read_region_rgb(s, x, y, g->level, R, R, dst, error)) {
    return FALSE;
  }
  if (R == T) return TRUE;
  VipsImage *in = vips_image_new_from_memory(raw, (size_t)R * R * 3, R, R, 3, VIPS_FORMAT_UCHAR);
  VipsImage *out = NULL;
  int rc = !in || vips_resize(in, &out, (double)T / R, "vscale", (double)T / R, NULL);
  if (in) g_object_unref(in);
  size_t len = 0;
  uint8_t *mem = rc ? NULL : vips_image_write_to_memory(out, &len);
  if (out) g_object_unref(out);
  if (!mem || len != (size_t)T * T * 3) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "slide %s: cannot resize a tile to %d px: %s", ps_slide_path(s),
                T, vips_error_buffer());
    vips_error_clear();
    g_free(mem);
    return FALSE;
  }
  memcpy(rgb, mem, len);
  g_free(mem);
  return TRUE;
}

typedef struct {
  int64_t x, y;
} tile_pos;

static uint64_t tile_seed(uint64_t seed, const char *stem, int64_t x, int64_t y) {
  uint64_t h = seed * 0x9E3779B97F4A7C15ULL ^ ((uint64_t)g_str_hash(stem) << 17);
  h ^= (uint64_t)x * 0xBF58476D1CE4E5B9ULL;
  h ^= (uint64_t)y * 0x94D049BB133111EBULL;
  return h ^ (h >> 31);
}

static gboolean slide_job_run(const pp_config *cfg, const pp_slide_job *job, int threads, pp_shared *sh,
                              pp_job_result *result, GError **error);

gboolean pp_slide_job_run(const pp_config *cfg, const pp_slide_job *job, int threads, pp_shared *sh,
                          pp_job_result *result, GError **error) {
  /* The thumbnail and level reads use OpenMP's default team: `threads` too
   * (worker processes share the cores). */
  const int saved = omp_get_max_threads();
  omp_set_num_threads(MAX(threads, 1));
  gboolean ok = slide_job_run(cfg, job, threads, sh, result, error);
  omp_set_num_threads(saved);
  return ok;
}

static gboolean slide_job_run(const pp_config *cfg, const pp_slide_job *job, int threads, pp_shared *sh,
                              pp_job_result *result, GError **error) {
  memset(result, 0, sizeof *result);
  g_autofree char *settings = settings_line(cfg, job);
  if (pp_slide_done(cfg, job->stem)) {
    g_autofree char *done = g_build_filename(cfg->out_dir, job->stem, "done", NULL), *text = NULL;
    if (g_file_get_contents(done, &text, NULL, NULL) && !strstr(text, settings)) {
      g_strdelimit(g_strstrip(text), "\n", ' ');
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "slide %s: %s was made with other settings (%s); use another out_dir or remove it", job->path,
                  done, text);
      return FALSE;
    }
    result->done = TRUE;
    return TRUE;
  }
  g_autoptr(ps_slide) s = ps_slide_open_with(job->path, cfg->slide_reader, error);
  if (!s) return FALSE;
  geometry g;
  if (!choose_geometry(cfg, s, &g, error)) return FALSE;
  int64_t W0 = 0, H0 = 0;
  ps_slide_level_size(s, 0, &W0, &H0);

  g_autoptr(pp_annotations) ann = NULL;
  if (job->annotations && *job->annotations) {
    ann = pp_annotations_load(job->annotations, (const char *const *)cfg->exclude_groups, error);
    if (!ann) return FALSE;
    int dropped = pp_annotations_clip_to(ann, W0, H0);
    if (dropped)
      pp_log(sh, "slide %s: skipped %d annotation polygon(s) of %s lying outside the slide (%" G_GINT64_FORMAT
                 " x %" G_GINT64_FORMAT ")",
             job->path, dropped, job->annotations, W0, H0);
    if (pp_annotations_positives(ann) == 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: empty mask: no positive polygon of %s inside the slide",
                  job->path, job->annotations);
      return FALSE;
    }
  }

  /* A level that gives both the thumbnail and the tiles (a slide without a
   * coarser pyramid level) is decoded once, not once per pass. */
  g_autofree uint8_t *cached = NULL;
  int tfactor = 1;
  if (thumb_level(cfg, s, &tfactor) == g.level) {
    int64_t LW = 0, LH = 0;
    ps_slide_level_size(s, g.level, &LW, &LH);
    if ((double)LW * (double)LH * 3.0 <= (double)cfg->level_cache_mb * 1048576.0) {
      cached = g_try_malloc((size_t)LW * (size_t)LH * 3);
      if (cached && !ps_slide_read_level_rgb(s, g.level, threads, cached, error)) return FALSE;
    }
  }
  g_autofree uint8_t *tmask = NULL;
  int64_t mw = 0, mh = 0;
  double cell = 1, threshold = 0;
  if (!tissue_mask(cfg, s, cached, &tmask, &mw, &mh, &cell, &threshold, error)) return FALSE;

  /* The grid of whole tiles, kept where the tissue fraction is high enough. */
  const int T = cfg->tile_size;
  const double F = T * g.footprint, S = (T - cfg->overlap) * g.footprint;
  g_autoptr(GArray) tiles = g_array_new(FALSE, FALSE, sizeof(tile_pos));
  if ((double)W0 >= F && (double)H0 >= F) {
    int64_t nx = (int64_t)floor(((double)W0 - F) / S + 1e-9) + 1, ny = (int64_t)floor(((double)H0 - F) / S + 1e-9) + 1;
    for (int64_t j = 0; j < ny; j++)
      for (int64_t i = 0; i < nx; i++) {
        tile_pos p = {(int64_t)llround(i * S), (int64_t)llround(j * S)};
        if (tissue_fraction(tmask, mw, mh, cell, (double)p.x, (double)p.y, F) >= cfg->min_tissue)
          g_array_append_val(tiles, p);
      }
  }
  if (tiles->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "slide %s: no %d px tile at %dx has a tissue fraction of at least %g (threshold %.4g)", job->path, T,
                cfg->magnification, cfg->min_tissue, threshold);
    return FALSE;
  }
  pp_log(sh, "slide %s: level %d (downsample %.4g, read by %s), resize %.4g, %u tiles of %d px at %dx", job->path,
         g.level, g.ds, ps_slide_level_direct(s, g.level) ? "tiffload" : "OpenSlide", g.resize, tiles->len, T,
         cfg->magnification);
  pp_progress(sh, 0, tiles->len, job->stem);

  g_autofree char *dir = g_build_filename(cfg->out_dir, job->stem, NULL);
  g_autofree char *tdir = g_build_filename(dir, "tiles", NULL);
  g_autofree char *mdir = g_build_filename(dir, "masks", NULL);
  g_autofree char *xdir = g_build_filename(dir, ".partial", NULL); /* PNGs being written */
  if (g_mkdir_with_parents(tdir, 0755) != 0 || g_mkdir_with_parents(mdir, 0755) != 0 ||
      g_mkdir_with_parents(xdir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s/tiles, masks/ and .partial/", dir);
    return FALSE;
  }

  const int n = (int)tiles->len;
  ps_manifest_row **rows = g_new0(ps_manifest_row *, n);
  GError *first = NULL;
  int failed = 0;
  int64_t written = 0, empty = 0;
  const char *target = cfg->target && *cfg->target ? cfg->target : ann ? "tumour" : "tissue";
  const int maxv = ann ? pp_annotations_max_vertices(ann) : 1;
#pragma omp parallel num_threads(MAX(threads, 1)) reduction(+ : written, empty)
  {
    uint8_t *raw = g_malloc((size_t)g.read_w * g.read_w * 3);
    uint8_t *rgb = g_malloc((size_t)T * T * 3), *mask = g_malloc((size_t)T * T);
    int32_t *cc = g_malloc(sizeof(int32_t) * (size_t)T * T);
    double *xs = g_malloc(sizeof(double) * (size_t)maxv);
    pp_png_encoder *enc = pp_png_encoder_new(cfg->png_compression, cfg->png_filter);
    int64_t *cxs = g_new(int64_t, T);
#pragma omp for schedule(dynamic, 1)
    for (int k = 0; k < n; k++) {
      int stop;
#pragma omp atomic read
      stop = failed;
      if (stop || ps_run_cancelled(sh->run)) continue;
      const tile_pos p = g_array_index(tiles, tile_pos, k);
      g_autofree char *name = g_strdup_printf("%" G_GINT64_FORMAT "_%" G_GINT64_FORMAT ".png", p.x, p.y);
      g_autofree char *tpath = g_build_filename(tdir, name, NULL), *mpath = g_build_filename(mdir, name, NULL);
      GError *e = NULL;
      gboolean have = FALSE, ok = TRUE;
      if (g_file_test(tpath, G_FILE_TEST_IS_REGULAR) && g_file_test(mpath, G_FILE_TEST_IS_REGULAR)) {
        /* Resume: a finished tile (both PNGs were renamed into place) is read back. */
        int w1 = 0, h1 = 0, w2 = 0, h2 = 0;
        g_autofree uint8_t *a = ps_png_read(tpath, 3, &w1, &h1, NULL), *b = ps_png_read(mpath, 1, &w2, &h2, NULL);
        if (a && b && w1 == T && h1 == T && w2 == T && h2 == T) {
          memcpy(rgb, a, (size_t)T * T * 3);
          memcpy(mask, b, (size_t)T * T);
          have = TRUE;
        }
      }
      if (!have) {
        ok = read_tile(s, &g, cached, T, p.x, p.y, raw, rgb, &e);
        if (ok && ann) {
          pp_annotations_rasterise(ann, (double)p.x, (double)p.y, g.footprint, T, mask, xs);
        } else if (ok) {
          /* The tissue mask cell of each pixel centre, columns computed once. */
          for (int i = 0; i < T; i++) cxs[i] = (int64_t)floor((p.x + (i + 0.5) * g.footprint) / cell);
          int64_t prev_cy = -1;
          for (int j = 0; j < T; j++) {
            int64_t cy = (int64_t)floor((p.y + (j + 0.5) * g.footprint) / cell);
            if (j > 0 && cy == prev_cy) { /* the same cell row as the row above */
              memcpy(mask + (size_t)j * T, mask + (size_t)(j - 1) * T, (size_t)T);
              continue;
            }
            prev_cy = cy;
            for (int i = 0; i < T; i++)
              mask[j * T + i] = cxs[i] < mw && cy < mh && tmask[cy * mw + cxs[i]] ? 255 : 0;
          }
        }
      }
      gboolean is_empty = FALSE;
      if (ok) {
        is_empty = TRUE;
        for (size_t i = 0; i < (size_t)T * T && is_empty; i++) is_empty = mask[i] == 0;
      }
      if (ok && is_empty && !cfg->keep_empty) {
        empty++;
      } else if (ok) {
        if (!have)
          ok = pp_png_write(enc, tpath, xdir, rgb, T, T, 3, &e) && pp_png_write(enc, mpath, xdir, mask, T, T, 1, &e);
        written += ok && !have;
      }
      if (ok && (!is_empty || cfg->keep_empty)) {
        ps_descriptors d;
        ps_describe(rgb, mask, T, T, cfg->min_component, cc, &d);
        ps_rng rng;
        ps_rng_seed(&rng, tile_seed(cfg->seed, job->stem, p.x, p.y));
        ps_annotation_input in = {target, NULL, NULL, *cfg->organ ? cfg->organ : NULL, cfg->magnification, &d};
        ps_manifest_row *r = g_new0(ps_manifest_row, 1);
        ps_template_annotate(&in, &rng, &r->query, &r->reasoning);
        r->image = g_strdup_printf("tiles/%s", name);
        r->mask = g_strdup_printf("masks/%s", name);
        r->source = g_strdup("wsi");
        r->group = g_strdup(job->stem);
        r->target = g_strdup(target);
        r->magnification = cfg->magnification;
        r->split = g_strdup(ps_manifest_split_for(job->stem, cfg->seed));
        r->width = r->height = T;
        r->review = g_strdup("pending");
        rows[k] = r;
      }
      if (!ok) {
#pragma omp critical(pp_first_error)
        {
          if (!first) first = e;
          else g_error_free(e);
#pragma omp atomic write
          failed = 1;
        }
      }
      pp_progress(sh, 1, 0, job->stem);
    }
    g_free(raw);
    g_free(rgb);
    g_free(mask);
    g_free(cc);
    g_free(xs);
    pp_png_encoder_free(enc);
    g_free(cxs);
  }
  g_autoptr(GPtrArray) out_rows = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  for (int k = 0; k < n; k++)
    if (rows[k]) g_ptr_array_add(out_rows, rows[k]);
  g_free(rows);
  result->tiles = out_rows->len;
  result->written = written;
  result->skipped_empty = empty;
  if (first) {
    g_propagate_prefixed_error(error, first, "slide %s: ", job->path);
    return FALSE;
  }
  if (ps_run_cancelled(sh->run)) {
    g_set_error(error, PS_ERROR, PS_ERROR_CANCELLED, "slide %s: cancelled (rerun to resume)", job->path);
    return FALSE;
  }
  if (out_rows->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: empty mask: all %d tissue tiles have an empty mask",
                job->path, n);
    return FALSE;
  }
  g_autofree char *manifest = g_build_filename(dir, "manifest.jsonl", NULL);
  g_autofree char *done = g_build_filename(dir, "done", NULL);
  g_autofree char *stamp = g_strdup_printf("tiles: %u\n%s", out_rows->len, settings);
  if (!ps_manifest_write(manifest, out_rows, error) || !g_file_set_contents(done, stamp, -1, error)) return FALSE;
  /* Leftovers of a killed run's writes go with the slide's completion. */
  g_autoptr(GDir) partial = g_dir_open(xdir, 0, NULL);
  for (const char *name; partial && (name = g_dir_read_name(partial));) {
    g_autofree char *p = g_build_filename(xdir, name, NULL);
    g_unlink(p);
  }
  g_rmdir(xdir);
  result->done = TRUE;
  return TRUE;
}
