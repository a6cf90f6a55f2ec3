/* slide_tiff.h — the levels of an Aperio or generic-TIFF slide that
 * libvips' tiffload decodes to exactly OpenSlide's pixels (opaque 8-bit
 * RGB tiles, JPEG or lossless, none missing, a whole-number downsample), so that slide.c can read them
 * without OpenSlide's tile compositing. Built where libtiff is linked
 * (PS_SLIDE_DIRECT_TIFF); slide.c reads everything through OpenSlide
 * otherwise. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* For each of `levels` OpenSlide levels (width, height, downsample:
 * (levels,), OpenSlide's), the TIFF
 * directory ("page" for tiffload) that holds it when it may be read
 * directly, else -1: pages (levels,). vendor: openslide.vendor. Returns how
 * many levels may; *why (g_free; NULL when all may): the first reason one
 * may not, for logs and for the error of a forced direct reader. */
int ps_slide_tiff_pages(const char *path, const char *vendor, int levels, const int64_t *width,
                        const int64_t *height, const double *downsample, int *pages, char **why);

G_END_DECLS
