/* slide.c — whole-slide reading and tissue detection through libvips (see
 * slide.h). libvips' openslideload calls OpenSlide, which decodes the JPEG
 * tiles with libjpeg(-turbo) exactly as openslide-python does, so regions
 * are bit-identical to OpenSlide's read_region. Levels that libvips'
 * tiffload decodes to the same pixels (slide_tiff.c decides; built with
 * PS_SLIDE_DIRECT_TIFF) are read through tiffload: the same tiles decoded
 * by the same libjpeg/libtiff, without OpenSlide's cairo/pixman
 * compositing into premultiplied ARGB and libvips' conversion back. */
#include "slide.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include <pathseg/error.h>

#ifdef PS_SLIDE_DIRECT_TIFF
#include "slide_tiff.h"
#endif

#define PS_SLIDE_MAX_LEVELS 32

struct ps_slide {
  char *path;
  int levels;
  int64_t width[PS_SLIDE_MAX_LEVELS], height[PS_SLIDE_MAX_LEVELS];
  double downsample[PS_SLIDE_MAX_LEVELS];
  VipsImage *level_image[PS_SLIDE_MAX_LEVELS]; /* OpenSlide's, opened on first use */
  /* Levels read through tiffload: opened at ps_slide_open (RGB uchar,
   * checked); NULL where OpenSlide reads the level. */
  VipsImage *direct_image[PS_SLIDE_MAX_LEVELS];
  char *direct_why;  /* why some level is not direct; NULL when all are */
  GMutex lock;       /* guards level_image */
  GHashTable *props; /* name -> value, all strings */
};

/* ---------------------------------------------------------------------- */
/* libvips */

static gsize vips_ready = 0;
static gboolean vips_ok = FALSE;

gboolean ps_slide_init_vips(GError **error) {
  if (g_once_init_enter(&vips_ready)) {
    vips_ok = vips_init("pathseg") == 0;
    g_once_init_leave(&vips_ready, 1);
  }
  if (!vips_ok) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "libvips failed to initialise: %s",
                vips_error_buffer());
    vips_error_clear();
  }
  return vips_ok;
}

/* Turns the pending libvips error into a GError prefixed with `what`. */
static void set_vips_error(GError **error, int code, const char *path, const char *what) {
  g_autofree char *msg = g_strstrip(g_strdup(vips_error_buffer()));
  vips_error_clear();
  for (char *c = msg; *c; c++) /* one line: libvips separates messages with newlines */
    if (*c == '\n') *c = ';';
  g_set_error(error, PS_ERROR, code, "slide %s: %s%s%s", path, what, *msg ? ": " : "", msg);
}

static VipsImage *load_level(const char *path, int level, GError **error) {
  VipsImage *img = NULL;
  if (vips_openslideload(path, &img, "level", level, NULL) != 0) {
    set_vips_error(error, PS_ERROR_PARSE, path, "cannot open as a whole-slide image (OpenSlide)");
    return NULL;
  }
  if (img->Bands != 4 || img->BandFmt != VIPS_FORMAT_UCHAR) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "slide %s: level %d is not RGBA uchar (%d bands, format %d)", path, level,
                img->Bands, (int)img->BandFmt);
    g_object_unref(img);
    return NULL;
  }
  return img;
}

static VipsImage *level_image(ps_slide *s, int level, GError **error) {
  g_mutex_lock(&s->lock);
  VipsImage *img = s->level_image[level];
  if (!img) img = s->level_image[level] = load_level(s->path, level, error);
  g_mutex_unlock(&s->lock);
  return img;
}

/* ---------------------------------------------------------------------- */
/* Opening */

static gboolean parse_double(const char *text, double *out) {
  if (!text || !*text) return FALSE;
  char *end = NULL;
  double v = g_ascii_strtod(text, &end);
  while (end && g_ascii_isspace(*end)) end++;
  if (!end || *end || !isfinite(v)) return FALSE;
  *out = v;
  return TRUE;
}

static gboolean parse_int(const char *text, int64_t *out) {
  if (!text || !*text) return FALSE;
  char *end = NULL;
  gint64 v = g_ascii_strtoll(text, &end, 10);
  if (!end || *end) return FALSE;
  *out = v;
  return TRUE;
}

void ps_slide_close(ps_slide *s) {
  if (!s) return;
  for (int i = 0; i < PS_SLIDE_MAX_LEVELS; i++) {
    if (s->level_image[i]) g_object_unref(s->level_image[i]);
    if (s->direct_image[i]) g_object_unref(s->direct_image[i]);
  }
  g_free(s->direct_why);
  g_clear_pointer(&s->props, g_hash_table_unref);
  g_mutex_clear(&s->lock);
  g_free(s->path);
  g_free(s);
}

gboolean ps_slide_reader_from_name(const char *name, ps_slide_reader *reader) {
  static const char *const names[] = {"auto", "openslide", "tiff"};
  for (int i = 0; i < (int)G_N_ELEMENTS(names); i++)
    if (name && strcmp(name, names[i]) == 0) {
      *reader = (ps_slide_reader)i;
      return TRUE;
    }
  return FALSE;
}

/* Opens the levels tiffload may read (slide_tiff.c) unless `reader` says
 * OpenSlide; FALSE only when TIFF is forced and some level does not
 * qualify. */
static gboolean open_direct(ps_slide *s, ps_slide_reader reader, GError **error) {
  if (reader == PS_SLIDE_READER_OPENSLIDE) {
    s->direct_why = g_strdup("the OpenSlide reader was chosen");
    return TRUE;
  }
#ifdef PS_SLIDE_DIRECT_TIFF
  int pages[PS_SLIDE_MAX_LEVELS];
  ps_slide_tiff_pages(s->path, ps_slide_property(s, "openslide.vendor"), s->levels, s->width,
                      s->height, s->downsample, pages, &s->direct_why);
  for (int l = 0; l < s->levels; l++) {
    if (pages[l] < 0) continue;
    VipsImage *img = NULL;
    if (vips_tiffload(s->path, &img, "page", pages[l], NULL) != 0) {
      g_autofree char *msg = g_strstrip(g_strdup(vips_error_buffer()));
      vips_error_clear();
      if (!s->direct_why)
        s->direct_why = g_strdup_printf("level %d: tiffload cannot open page %d: %s", l, pages[l], msg);
      continue;
    }
    if (img->Bands != 3 || img->BandFmt != VIPS_FORMAT_UCHAR || img->Xsize != s->width[l] ||
        img->Ysize != s->height[l]) {
      if (!s->direct_why)
        s->direct_why = g_strdup_printf("level %d: tiffload gives %d x %d x %d (format %d)", l,
                                        img->Xsize, img->Ysize, img->Bands, (int)img->BandFmt);
      g_object_unref(img);
      continue;
    }
    s->direct_image[l] = img;
  }
#else
  s->direct_why = g_strdup("built without libtiff (PS_SLIDE_DIRECT_TIFF)");
#endif
  if (reader == PS_SLIDE_READER_TIFF && s->direct_why) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "slide %s: the tiff reader cannot read it as OpenSlide does: %s", s->path,
                s->direct_why);
    return FALSE;
  }
  return TRUE;
}

ps_slide *ps_slide_open(const char *path, GError **error) {
  return ps_slide_open_with(path, PS_SLIDE_READER_AUTO, error);
}

ps_slide *ps_slide_open_with(const char *path, ps_slide_reader reader, GError **error) {
  if (!ps_slide_init_vips(error)) return NULL;
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "slide %s: no such file", path);
    return NULL;
  }
  VipsImage *img = load_level(path, 0, error);
  if (!img) return NULL;
  ps_slide *s = g_new0(ps_slide, 1);
  g_mutex_init(&s->lock);
  s->path = g_strdup(path);
  s->level_image[0] = img;
  s->props = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, g_free);
  gchar **fields = vips_image_get_fields(img);
  for (int i = 0; fields && fields[i]; i++) {
    /* Strings only (a copy: vips_image_get_string's pointer does not
     * outlive its call for plain G_TYPE_STRING fields). */
    GType t = vips_image_get_typeof(img, fields[i]);
    char *v = NULL;
    if ((t == G_TYPE_STRING || t == VIPS_TYPE_REF_STRING) &&
        vips_image_get_as_string(img, fields[i], &v) == 0 && v)
      g_hash_table_replace(s->props, g_strdup(fields[i]), v);
    else
      g_free(v);
  }
  g_strfreev(fields);
  vips_error_clear();

  int64_t count = 1;
  if (!parse_int(ps_slide_property(s, "openslide.level-count"), &count) || count < 1) count = 1;
  s->levels = (int)MIN(count, PS_SLIDE_MAX_LEVELS);
  for (int l = 0; l < s->levels; l++) {
    char key[64];
    int64_t w = 0, h = 0;
    double ds = 0.0;
    g_snprintf(key, sizeof key, "openslide.level[%d].width", l);
    gboolean ok = parse_int(ps_slide_property(s, key), &w);
    g_snprintf(key, sizeof key, "openslide.level[%d].height", l);
    ok = ok && parse_int(ps_slide_property(s, key), &h);
    g_snprintf(key, sizeof key, "openslide.level[%d].downsample", l);
    ok = ok && parse_double(ps_slide_property(s, key), &ds);
    if (l == 0) { /* the image itself is authoritative for level 0 */
      w = img->Xsize;
      h = img->Ysize;
      ds = 1.0;
      ok = TRUE;
    }
    if (!ok || w <= 0 || h <= 0 || !(ds > 0.0)) {
      s->levels = l; /* keep the levels we can describe */
      break;
    }
    s->width[l] = w;
    s->height[l] = h;
    s->downsample[l] = ds;
  }
  if (!open_direct(s, reader, error)) {
    ps_slide_close(s);
    return NULL;
  }
  return s;
}

const char *ps_slide_path(const ps_slide *s) {
  return s->path;
}
int ps_slide_level_count(const ps_slide *s) {
  return s->levels;
}

gboolean ps_slide_level_size(const ps_slide *s, int level, int64_t *width, int64_t *height) {
  if (level < 0 || level >= s->levels) return FALSE;
  *width = s->width[level];
  *height = s->height[level];
  return TRUE;
}

double ps_slide_level_downsample(const ps_slide *s, int level) {
  return level >= 0 && level < s->levels ? s->downsample[level] : 0.0;
}

gboolean ps_slide_level_direct(const ps_slide *s, int level) {
  return level >= 0 && level < s->levels && s->direct_image[level] != NULL;
}

const char *ps_slide_direct_why(const ps_slide *s) {
  return s->direct_why;
}

const char *ps_slide_property(const ps_slide *s, const char *name) {
  return g_hash_table_lookup(s->props, name);
}

gboolean ps_slide_mpp(const ps_slide *s, double *mpp_x, double *mpp_y, GError **error) {
  double x, y;
  const char *sx = ps_slide_property(s, "openslide.mpp-x");
  const char *sy = ps_slide_property(s, "openslide.mpp-y");
  const char *aperio = ps_slide_property(s, "aperio.MPP");
  if (sx && sy) {
    if (!parse_double(sx, &x) || !parse_double(sy, &y) || !(x > 0.0) || !(y > 0.0)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "slide %s: openslide.mpp-x/-y are not positive numbers ('%s', '%s')", s->path, sx,
                  sy);
      return FALSE;
    }
  } else if (aperio) {
    if (!parse_double(aperio, &x) || !(x > 0.0)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "slide %s: aperio.MPP is not a positive number ('%s')", s->path, aperio);
      return FALSE;
    }
    y = x;
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "slide %s: no microns-per-pixel (neither openslide.mpp-x/-y nor aperio.MPP is "
                "set); give the magnification explicitly",
                s->path);
    return FALSE;
  }
  *mpp_x = x;
  *mpp_y = y;
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Regions */

/* Copies the level rectangle (lx, ly, w, h), which lies inside the level,
 * into dst: rows of dst_stride bytes of `bands` 4 (RGBA) or 3 (RGB) per
 * pixel. tiffload's RGB gets an opaque alpha, OpenSlide's RGBA loses it. */
static gboolean read_rect(ps_slide *s, int level, int lx, int ly, int w, int h, uint8_t *dst,
                          size_t dst_stride, int bands, GError **error) {
  VipsImage *img = s->direct_image[level];
  if (!img && !(img = level_image(s, level, error))) return FALSE;
  VipsRegion *region = vips_region_new(img);
  VipsRect r = {lx, ly, w, h};
  if (vips_region_prepare(region, &r) != 0) {
    g_object_unref(region);
    set_vips_error(error, PS_ERROR_IO, s->path, "cannot read pixels (corrupt or truncated?)");
    return FALSE;
  }
  const int src_bands = img->Bands;
  for (int row = 0; row < h; row++) {
    const uint8_t *src = (const uint8_t *)VIPS_REGION_ADDR(region, lx, ly + row);
    uint8_t *d = dst + (size_t)row * dst_stride;
    if (src_bands == bands) {
      memcpy(d, src, (size_t)w * bands);
    } else if (bands == 4) {
      for (int i = 0; i < w; i++, d += 4, src += 3) d[0] = src[0], d[1] = src[1], d[2] = src[2], d[3] = 255;
    } else {
      for (int i = 0; i < w; i++, d += 3, src += 4) d[0] = src[0], d[1] = src[1], d[2] = src[2];
    }
  }
  g_object_unref(region);
  return TRUE;
}

static gboolean read_region(ps_slide *s, int64_t x, int64_t y, int level, int width, int height,
                            int bands, uint8_t *out, GError **error) {
  if (level < 0 || level >= s->levels) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: level %d out of range (0..%d)",
                s->path, level, s->levels - 1);
    return FALSE;
  }
  if (width <= 0 || height <= 0 || width > (1 << 20) || height > (1 << 20)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: bad region size %d x %d", s->path,
                width, height);
    return FALSE;
  }
  const double ds = s->downsample[level];
  const int64_t lx = (int64_t)floor((double)x / ds), ly = (int64_t)floor((double)y / ds);
  const int64_t W = s->width[level], H = s->height[level];
  const size_t stride = (size_t)width * bands;
  /* Intersect with the level; the rest is transparent as in OpenSlide. */
  int64_t x0 = MAX(lx, 0), y0 = MAX(ly, 0);
  int64_t x1 = MIN(lx + width, W), y1 = MIN(ly + height, H);
  if (x0 >= x1 || y0 >= y1) {
    memset(out, 0, stride * (size_t)height);
    return TRUE;
  }
  if (x0 != lx || y0 != ly || x1 != lx + width || y1 != ly + height)
    memset(out, 0, stride * (size_t)height);
  uint8_t *dst = out + (size_t)(y0 - ly) * stride + (size_t)(x0 - lx) * bands;
  return read_rect(s, level, (int)x0, (int)y0, (int)(x1 - x0), (int)(y1 - y0), dst, stride, bands,
                   error);
}

gboolean ps_slide_read_region(ps_slide *s, int64_t x, int64_t y, int level, int width, int height,
                              uint8_t *out, GError **error) {
  return read_region(s, x, y, level, width, height, 4, out, error);
}

gboolean ps_slide_read_region_rgb(ps_slide *s, int64_t x, int64_t y, int level, int width,
                                  int height, uint8_t *out, GError **error) {
  return read_region(s, x, y, level, width, height, 3, out, error);
}

/* ---------------------------------------------------------------------- */
/* Tissue detection */

/* One row of blocks: strip is `factor` rows of `bands` (3 or 4) bytes per
 * pixel (row stride `stride` bytes, at least w * factor pixels wide); out:
 * (w, 3) block means. The integer sum is exact; one division, as numpy's
 * float64 mean. */
static void block_row_mean(const uint8_t *strip, size_t stride, int bands, int64_t w, int factor,
                           uint64_t *sums, double *out) {
  const double count = (double)factor * (double)factor;
  memset(sums, 0, (size_t)w * 3 * sizeof *sums);
  for (int r = 0; r < factor; r++) {
    const uint8_t *row = strip + (size_t)r * stride;
    for (int64_t bx = 0; bx < w; bx++) {
      uint32_t s0 = 0, s1 = 0, s2 = 0; /* 255 * factor fits for factor < 2^24 */
      const uint8_t *px = row + (size_t)bx * factor * bands;
      for (int k = 0; k < factor; k++, px += bands) s0 += px[0], s1 += px[1], s2 += px[2];
      sums[bx * 3] += s0;
      sums[bx * 3 + 1] += s1;
      sums[bx * 3 + 2] += s2;
    }
  }
  for (int64_t i = 0; i < w * 3; i++) out[i] = (double)sums[i] / count;
}

static void thumbnail_mean(const uint8_t *px, int bands, int64_t W, int64_t H, int factor,
                           double *out) {
  const int64_t w = W / factor, h = H / factor;
  const size_t row = (size_t)W * bands;
#pragma omp parallel
  {
    uint64_t *sums = g_new(uint64_t, (size_t)MAX(w, 1) * 3);
#pragma omp for schedule(static)
    for (int64_t by = 0; by < h; by++)
      block_row_mean(px + (size_t)(by * factor) * row, row, bands, w, factor, sums,
                     out + by * w * 3);
    g_free(sums);
  }
}

void ps_rgba_thumbnail_mean(const uint8_t *rgba, int64_t W, int64_t H, int factor, double *out) {
  thumbnail_mean(rgba, 4, W, H, factor, out);
}

void ps_rgb_thumbnail_mean(const uint8_t *rgb, int64_t W, int64_t H, int factor, double *out) {
  thumbnail_mean(rgb, 3, W, H, factor, out);
}

/* The level can be read: its tiffload image, or OpenSlide's opened now (so
 * that an error comes before any parallel loop). */
static gboolean level_ready(ps_slide *s, int level, GError **error) {
  return s->direct_image[level] || level_image(s, level, error);
}

static gboolean read_level(ps_slide *s, int level, int threads, int bands, uint8_t *out,
                           GError **error) {
  int64_t W, H;
  if (!ps_slide_level_size(s, level, &W, &H)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: level %d out of range", s->path,
                level);
    return FALSE;
  }
  if (!level_ready(s, level, error)) return FALSE;
  const int strip = 256;
  const size_t row = (size_t)W * bands;
  gboolean ok = TRUE;
  GError *first = NULL;
#pragma omp parallel for schedule(dynamic, 1) num_threads(MAX(threads, 1))
  for (int64_t y = 0; y < H; y += strip) {
    if (!g_atomic_int_get(&ok)) continue;
    GError *err = NULL;
    if (!read_rect(s, level, 0, (int)y, (int)W, (int)MIN(strip, H - y), out + (size_t)y * row, row,
                   bands, &err)) {
#pragma omp critical(ps_slide_level_error)
      {
        if (!first)
          first = err;
        else
          g_error_free(err);
        g_atomic_int_set(&ok, FALSE);
      }
    }
  }
  if (!ok) g_propagate_error(error, first);
  return ok;
}

gboolean ps_slide_read_level(ps_slide *s, int level, int threads, uint8_t *out, GError **error) {
  return read_level(s, level, threads, 4, out, error);
}

gboolean ps_slide_read_level_rgb(ps_slide *s, int level, int threads, uint8_t *out,
                                 GError **error) {
  return read_level(s, level, threads, 3, out, error);
}

gboolean ps_slide_thumbnail_mean(ps_slide *s, int level, int factor, double **out, int64_t *tw,
                                 int64_t *th, GError **error) {
  if (factor < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: thumbnail factor %d < 1", s->path,
                factor);
    return FALSE;
  }
  int64_t W, H;
  if (!ps_slide_level_size(s, level, &W, &H)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "slide %s: level %d out of range", s->path,
                level);
    return FALSE;
  }
  if (!level_ready(s, level, error)) return FALSE;
  const int64_t w = W / factor, h = H / factor;
  if (w < 1 || h < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "slide %s: level %d (%" G_GINT64_FORMAT " x %" G_GINT64_FORMAT
                ") is smaller than one %d x %d block",
                s->path, level, W, H, factor, factor);
    return FALSE;
  }
  double *thumb = g_new(double, (size_t)(w * h * 3));
  const size_t strip_w = (size_t)(w * factor);
  gboolean ok = TRUE;
  GError *first = NULL;
#pragma omp parallel
  {
    /* One strip of `factor` rows per block row; buffers per thread. */
    uint8_t *strip = g_malloc(strip_w * 3 * (size_t)factor);
    uint64_t *sums = g_new(uint64_t, (size_t)w * 3);
#pragma omp for schedule(dynamic, 1)
    for (int64_t by = 0; by < h; by++) {
      if (!g_atomic_int_get(&ok)) continue;
      GError *err = NULL;
      if (!read_rect(s, level, 0, (int)(by * factor), (int)strip_w, factor, strip, strip_w * 3, 3,
                     &err)) {
#pragma omp critical(ps_slide_thumb_error)
        {
          if (!first)
            first = err;
          else
            g_error_free(err);
          g_atomic_int_set(&ok, FALSE);
        }
        continue;
      }
      block_row_mean(strip, strip_w * 3, 3, w, factor, sums, thumb + by * w * 3);
    }
    g_free(strip);
    g_free(sums);
  }
  if (!ok) {
    g_free(thumb);
    g_propagate_error(error, first);
    return FALSE;
  }
  *out = thumb;
  *tw = w;
  *th = h;
  return TRUE;
}

void ps_saturation(const double *rgb, size_t n, double *sat) {
  for (size_t i = 0; i < n; i++) {
    double r = rgb[i * 3] / 255.0, g = rgb[i * 3 + 1] / 255.0, b = rgb[i * 3 + 2] / 255.0;
    double mx = fmax(r, fmax(g, b)), mn = fmin(r, fmin(g, b));
    double delta = mx - mn;
    sat[i] = delta == 0.0 ? 0.0 : delta / mx;
  }
}

double ps_otsu_threshold(const double *x, size_t n, int nbins, int64_t *hist, double *centers) {
  if (hist) memset(hist, 0, (size_t)nbins * sizeof *hist);
  if (centers) memset(centers, 0, (size_t)nbins * sizeof *centers);
  double lo = x[0], hi = x[0];
  for (size_t i = 1; i < n; i++) {
    lo = fmin(lo, x[i]);
    hi = fmax(hi, x[i]);
  }
  if (!(hi > lo)) return x[0]; /* skimage: a single value is its own threshold */

  /* numpy.histogram's equal bins: edges = linspace(lo, hi, nbins + 1), index
   * by (x - lo) * nbins / (hi - lo), corrected against the edges. */
  double *edges = g_new(double, (size_t)nbins + 1);
  const double step = (hi - lo) / nbins;
  for (int i = 0; i <= nbins; i++) edges[i] = (double)i * step + lo;
  edges[nbins] = hi;
  int64_t *counts = g_new0(int64_t, (size_t)nbins);
  const double norm = nbins / (hi - lo);
  for (size_t i = 0; i < n; i++) {
    long k = (long)((x[i] - lo) * norm);
    if (k >= nbins) k = nbins - 1;
    if (k < 0) k = 0;
    if (x[i] < edges[k] && k > 0)
      k--;
    else if (k != nbins - 1 && x[i] >= edges[k + 1])
      k++;
    counts[k]++;
  }
  double *c = g_new(double, (size_t)nbins);
  for (int i = 0; i < nbins; i++) c[i] = (edges[i] + edges[i + 1]) / 2.0;

  /* Class weights and means for every split, as skimage computes them
   * (sequential cumulative sums from the left and from the right). */
  int64_t *w1 = g_new(int64_t, (size_t)nbins), *w2 = g_new(int64_t, (size_t)nbins);
  double *m1 = g_new(double, (size_t)nbins), *m2 = g_new(double, (size_t)nbins);
  int64_t cw = 0;
  double cs = 0.0;
  for (int i = 0; i < nbins; i++) {
    cw += counts[i];
    cs += (double)counts[i] * c[i];
    w1[i] = cw;
    m1[i] = cs / (double)cw;
  }
  cw = 0;
  cs = 0.0;
  for (int i = nbins - 1; i >= 0; i--) {
    cw += counts[i];
    cs += (double)counts[i] * c[i];
    w2[i] = cw;
    m2[i] = cs / (double)cw;
  }
  int best = 0;
  double best_v = -1.0;
  for (int i = 0; i < nbins - 1; i++) {
    double d = m1[i] - m2[i + 1];
    double v = (double)(w1[i] * w2[i + 1]) * (d * d);
    if (v > best_v) { /* first maximum, as np.argmax */
      best_v = v;
      best = i;
    }
  }
  double thr = c[best];
  if (hist) memcpy(hist, counts, (size_t)nbins * sizeof *hist);
  if (centers) memcpy(centers, c, (size_t)nbins * sizeof *centers);
  g_free(edges);
  g_free(counts);
  g_free(c);
  g_free(w1);
  g_free(w2);
  g_free(m1);
  g_free(m2);
  return thr;
}

void ps_threshold_mask(const double *x, size_t n, double threshold, uint8_t *mask) {
  for (size_t i = 0; i < n; i++) mask[i] = x[i] > threshold;
}

gboolean ps_slide_tissue_mask(ps_slide *s, int level, int factor, uint8_t **mask, int64_t *tw,
                              int64_t *th, double *threshold, GError **error) {
  double *thumb = NULL;
  if (!ps_slide_thumbnail_mean(s, level, factor, &thumb, tw, th, error)) return FALSE;
  size_t n = (size_t)(*tw * *th);
  double *sat = g_new(double, n);
  ps_saturation(thumb, n, sat);
  *threshold = ps_otsu_threshold(sat, n, 256, NULL, NULL);
  *mask = g_new(uint8_t, n);
  ps_threshold_mask(sat, n, *threshold, *mask);
  g_free(sat);
  g_free(thumb);
  return TRUE;
}
