/* slide_tiff.c — which levels of a slide libvips' tiffload may read instead
 * of OpenSlide (slide_tiff.h). OpenSlide 3.4's Aperio and generic-TIFF
 * readers decode each TIFF tile (JPEG through libjpeg with the colour space
 * the Photometric tag names, anything else through libtiff's RGBA reader)
 * and composite the tiles with cairo/pixman into premultiplied ARGB. For an
 * opaque 8-bit RGB tile that compositing is a copy, so tiffload, which
 * decodes the same tiles with the same libjpeg/libtiff, gives the same RGB
 * without it — provided OpenSlide paints the tiles at whole-pixel offsets,
 * i.e. the level's downsample is a whole number (level 0 always). The
 * rules below admit only that case; everything else (other vendors, levels
 * with fractional downsamples, JPEG 2000, alpha, 16-bit, planar or
 * YCbCr-without-JPEG data, missing tiles, which OpenSlide draws transparent
 * or fails on, rotated images, non-JPEG levels smaller than a tile, which
 * OpenSlide's libtiff path draws white) stays with OpenSlide. tests/slide/test_slide_reader.c checks the identity on
 * the real Aperio slide and on generic TIFFs written with several
 * compressions, and the fallbacks. */
#include "slide_tiff.h"

#include <math.h>
#include <string.h>
#include <tiffio.h>

/* libtiff reports through per-handle handlers here, so that nothing reaches
 * stderr and libvips' global handlers stay as they are. */
static int quiet(TIFF *tif, void *user_data, const char *module, const char *fmt, va_list ap) {
  (void)tif, (void)user_data, (void)module, (void)fmt, (void)ap;
  return 1;
}

/* Why directory `dir` (current in tif) cannot be read directly; NULL if it can. */
static char *unsuitable(TIFF *tif, int dir) {
  uint16_t bits = 8, spp = 1, planar = PLANARCONFIG_CONTIG, photometric = 0, compression = 1;
  uint16_t format = SAMPLEFORMAT_UINT, orientation = ORIENTATION_TOPLEFT;
  TIFFGetFieldDefaulted(tif, TIFFTAG_BITSPERSAMPLE, &bits);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLESPERPIXEL, &spp);
  TIFFGetFieldDefaulted(tif, TIFFTAG_PLANARCONFIG, &planar);
  TIFFGetFieldDefaulted(tif, TIFFTAG_SAMPLEFORMAT, &format);
  TIFFGetFieldDefaulted(tif, TIFFTAG_ORIENTATION, &orientation);
  TIFFGetFieldDefaulted(tif, TIFFTAG_COMPRESSION, &compression);
  if (!TIFFGetField(tif, TIFFTAG_PHOTOMETRIC, &photometric))
    return g_strdup_printf("directory %d has no Photometric tag", dir);
  if (bits != 8 || spp != 3 || planar != PLANARCONFIG_CONTIG || format != SAMPLEFORMAT_UINT)
    return g_strdup_printf("directory %d is not 8-bit RGB (bits %u, samples %u, planar %u, format %u)", dir,
                           bits, spp, planar, format);
  if (orientation != ORIENTATION_TOPLEFT)
    return g_strdup_printf("directory %d has orientation %u", dir, orientation);
  const gboolean jpeg = compression == COMPRESSION_JPEG;
  const gboolean lossless = compression == COMPRESSION_NONE || compression == COMPRESSION_LZW ||
                            compression == COMPRESSION_ADOBE_DEFLATE || compression == COMPRESSION_DEFLATE;
  /* JPEG in YCbCr, or in RGB as Aperio writes it ("JPEG/RGB"); lossless RGB. */
  if (!(jpeg && (photometric == PHOTOMETRIC_YCBCR || photometric == PHOTOMETRIC_RGB)) &&
      !(lossless && photometric == PHOTOMETRIC_RGB))
    return g_strdup_printf("directory %d has compression %u with photometric %u", dir, compression,
                           photometric);
  /* OpenSlide decodes non-JPEG tiles with libtiff's TIFFReadRGBATile, which
   * (libtiff 4.5) does not fill a tile larger than the whole image: such a
   * small level comes out white there. */
  uint32_t w = 0, h = 0, tw = 0, th = 0;
  TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
  TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
  TIFFGetField(tif, TIFFTAG_TILEWIDTH, &tw);
  TIFFGetField(tif, TIFFTAG_TILELENGTH, &th);
  if (!jpeg && (w < tw || h < th))
    return g_strdup_printf("directory %d (%u x %u, not JPEG) is smaller than a %u x %u tile", dir, w, h, tw, th);
  /* A tile without data is transparent in OpenSlide. */
  uint64_t *counts = NULL;
  const uint32_t tiles = TIFFNumberOfTiles(tif);
  if (!TIFFGetField(tif, TIFFTAG_TILEBYTECOUNTS, &counts) || !counts)
    return g_strdup_printf("directory %d has no tile byte counts", dir);
  for (uint32_t t = 0; t < tiles; t++)
    if (counts[t] == 0) return g_strdup_printf("directory %d has missing tiles", dir);
  return NULL;
}

int ps_slide_tiff_pages(const char *path, const char *vendor, int levels, const int64_t *width,
                        const int64_t *height, const double *downsample, int *pages, char **why) {
  for (int l = 0; l < levels; l++) pages[l] = -1;
  *why = NULL;
  if (!vendor || (strcmp(vendor, "aperio") != 0 && strcmp(vendor, "generic-tiff") != 0)) {
    *why = g_strdup_printf("OpenSlide format '%s' is not a TIFF one read directly (aperio, generic-tiff)",
                           vendor ? vendor : "?");
    return 0;
  }
  TIFFOpenOptions *opts = TIFFOpenOptionsAlloc();
  TIFFOpenOptionsSetErrorHandlerExtR(opts, quiet, NULL);
  TIFFOpenOptionsSetWarningHandlerExtR(opts, quiet, NULL);
  TIFF *tif = TIFFOpenExt(path, "r", opts);
  TIFFOpenOptionsFree(opts);
  if (!tif) {
    *why = g_strdup("libtiff cannot open it");
    return 0;
  }
  /* A level whose downsample is not a whole number is drawn by OpenSlide at
   * fractional offsets (libvips asks for level-0 coordinates x * downsample,
   * OpenSlide divides them back and cairo resamples the tiles), so its
   * pixels are not the TIFF's: OpenSlide keeps it. */
  for (int l = 0; l < levels; l++)
    if (downsample[l] != floor(downsample[l])) {
      pages[l] = -3;
      if (!*why)
        *why = g_strdup_printf("level %d: downsample %.17g is not a whole number (OpenSlide resamples it)", l,
                               downsample[l]);
    }
  /* Each level is the one tiled directory of its size (OpenSlide's levels
   * are the tiled directories; the thumbnail, label and macro are strips). */
  for (int dir = 0;; dir++) {
    if (TIFFIsTiled(tif)) {
      uint32_t w = 0, h = 0;
      TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, &w);
      TIFFGetField(tif, TIFFTAG_IMAGELENGTH, &h);
      for (int l = 0; l < levels; l++) {
        if (width[l] != (int64_t)w || height[l] != (int64_t)h || pages[l] == -3) continue;
        if (pages[l] != -1) {
          if (!*why) *why = g_strdup_printf("level %d matches directories %d and %d", l, pages[l], dir);
          pages[l] = -2;
          continue;
        }
        char *bad = unsuitable(tif, dir);
        if (bad) {
          if (!*why) *why = g_strdup_printf("level %d: %s", l, bad);
          g_free(bad);
          pages[l] = -2;
        } else {
          pages[l] = dir;
        }
      }
    }
    if (!TIFFReadDirectory(tif)) break;
  }
  TIFFClose(tif);
  int direct = 0;
  for (int l = 0; l < levels; l++) {
    if (pages[l] == -1 && !*why) *why = g_strdup_printf("level %d: no tiled directory of its size", l);
    if (pages[l] < -1) pages[l] = -1;
    direct += pages[l] >= 0;
  }
  return direct;
}
