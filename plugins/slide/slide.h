/* slide.h — whole-slide images through libvips (OpenSlide inside) and the
 * tissue detection of the slide preprocessing: the reusable part of the
 * `slide` plugin, compiled into any plugin that needs it (the
 * preprocess_slides stage adds ../slide/slide.c to its SOURCES and includes
 * this header).
 *
 *   ps_slide_open / read_region    OpenSlide read_region semantics: RGBA u8,
 *                                  level-0 coordinates, transparent outside
 *   ps_slide_read_level_rgb        a whole level as RGB
 *   ps_slide_mpp                   microns per pixel from the properties
 *   ps_slide_thumbnail_mean        exact block mean of level-0 RGB
 *   ps_saturation, ps_otsu_threshold, ps_tissue_mask
 *                                  HSV saturation, skimage's Otsu (256 bins),
 *                                  mask = saturation > threshold
 *
 * Pixels: OpenSlide's, always. Where libvips' tiffload decodes a level to
 * exactly OpenSlide's pixels (Aperio and generic tiled TIFF, opaque 8-bit
 * RGB, see slide_tiff.c) the level is read through tiffload, which skips
 * OpenSlide's tile compositing (about 4x faster); OpenSlide still gives the
 * levels, their sizes and the properties (mpp). ps_slide_reader forces one
 * reader.
 *
 * A ps_slide may be read from several threads at once. */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

typedef struct ps_slide ps_slide;

/* How pixels are read: AUTO takes tiffload for the levels where it gives
 * OpenSlide's pixels and OpenSlide for the rest; OPENSLIDE always
 * OpenSlide; TIFF requires tiffload for every level (an error naming the
 * reason when a level does not qualify). */
typedef enum {
  PS_SLIDE_READER_AUTO,
  PS_SLIDE_READER_OPENSLIDE,
  PS_SLIDE_READER_TIFF,
} ps_slide_reader;

/* Parses "auto", "openslide" or "tiff". */
gboolean ps_slide_reader_from_name(const char *name, ps_slide_reader *reader);

/* Initialises libvips once (thread-safe); FALSE with an error if it cannot. */
gboolean ps_slide_init_vips(GError **error);

/* Opens a slide in any format OpenSlide reads (level 0 checked readable).
 * Errors name the file: missing, not a slide, corrupt. */
ps_slide *ps_slide_open(const char *path, GError **error);
/* ps_slide_open with a choice of reader (ps_slide_open: AUTO). */
ps_slide *ps_slide_open_with(const char *path, ps_slide_reader reader, GError **error);
void ps_slide_close(ps_slide *slide);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_slide, ps_slide_close)

const char *ps_slide_path(const ps_slide *slide);
int ps_slide_level_count(const ps_slide *slide);
/* Level size in pixels; FALSE for a level out of range. */
gboolean ps_slide_level_size(const ps_slide *slide, int level, int64_t *width, int64_t *height);
/* openslide.level[N].downsample; 1.0 for level 0, 0.0 for a level out of range. */
double ps_slide_level_downsample(const ps_slide *slide, int level);
/* TRUE when `level` is read through tiffload rather than OpenSlide. */
gboolean ps_slide_level_direct(const ps_slide *slide, int level);
/* Why some level is read through OpenSlide (for logs); NULL when none is. */
const char *ps_slide_direct_why(const ps_slide *slide);
/* A slide property ("openslide.mpp-x", "aperio.AppMag", ...) or NULL. */
const char *ps_slide_property(const ps_slide *slide, const char *name);

/* Microns per pixel at level 0: openslide.mpp-x/-y, else aperio.MPP (both
 * axes). FALSE with an error naming the slide and the properties tried when
 * none is present or the value is not a positive number. */
gboolean ps_slide_mpp(const ps_slide *slide, double *mpp_x, double *mpp_y, GError **error);

/* OpenSlide read_region: the (width x height) region whose top-left corner is
 * (x, y) in LEVEL-0 pixel coordinates, read at `level` (level coordinates
 * floor(x / downsample)). out: (height, width, 4) u8 RGBA, un-premultiplied;
 * pixels outside the level are transparent black (0, 0, 0, 0). */
gboolean ps_slide_read_region(ps_slide *slide, int64_t x, int64_t y, int level, int width,
                              int height, uint8_t *out, GError **error);

/* ps_slide_read_region as RGB (the alpha dropped: transparent pixels are
 * black). out: (height, width, 3) u8. */
gboolean ps_slide_read_region_rgb(ps_slide *slide, int64_t x, int64_t y, int level, int width,
                                  int height, uint8_t *out, GError **error);

/* Mean over non-overlapping factor x factor blocks of the level's RGB (the
 * image cropped to whole blocks), computed exactly (integer sums) in double,
 * reading the level in strips. *out: (th, tw, 3) f64 in 0..255, g_free it. */
gboolean ps_slide_thumbnail_mean(ps_slide *slide, int level, int factor, double **out, int64_t *tw,
                                 int64_t *th, GError **error);

/* A whole level read into memory (the preprocessing reads a single-level
 * slide once for both its thumbnail and its tiles). out: (H, W, 4) u8 RGBA
 * of the level's size; read in strips by `threads` OpenMP threads. */
gboolean ps_slide_read_level(ps_slide *slide, int level, int threads, uint8_t *out, GError **error);
/* The same as RGB (the alpha dropped; OpenSlide's transparent pixels are
 * black). out: (H, W, 3) u8. */
gboolean ps_slide_read_level_rgb(ps_slide *slide, int level, int threads, uint8_t *out,
                                 GError **error);

/* ps_slide_thumbnail_mean of an image in memory. rgba: (height, width, 4)
 * u8; out: (height / factor, width / factor, 3) f64, exactly as the slide
 * version computes it. */
void ps_rgba_thumbnail_mean(const uint8_t *rgba, int64_t width, int64_t height, int factor,
                            double *out);
/* The same of an RGB image. rgb: (height, width, 3) u8. */
void ps_rgb_thumbnail_mean(const uint8_t *rgb, int64_t width, int64_t height, int factor,
                           double *out);

/* skimage rgb2hsv S of rgb / 255: (max - min) / max, 0 where max == min.
 * rgb: (n, 3) f64 in 0..255; sat: (n,). */
void ps_saturation(const double *rgb, size_t n, double *sat);

/* skimage.filters.threshold_otsu(x, nbins) for float data: numpy histogram
 * with nbins equal bins over [min, max], bin centers, between-class variance,
 * first maximum. hist: (nbins,) or NULL; centers: (nbins,) or NULL. A
 * constant input returns that value (and leaves hist/centers zero). n > 0. */
double ps_otsu_threshold(const double *x, size_t n, int nbins, int64_t *hist, double *centers);

/* mask[i] = x[i] > threshold (0/1). */
void ps_threshold_mask(const double *x, size_t n, double threshold, uint8_t *mask);

/* The whole tissue detection: thumbnail mean (factor), saturation, Otsu,
 * mask. *mask: (th, tw) u8 0/1 (g_free); *threshold: the Otsu threshold. */
gboolean ps_slide_tissue_mask(ps_slide *slide, int level, int factor, uint8_t **mask, int64_t *tw,
                              int64_t *th, double *threshold, GError **error);

G_END_DECLS
