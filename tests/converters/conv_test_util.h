/* conv_test_util.h — what the converter tests share: writers for the
 * published file formats (BMP, palette PNG, JPEG, grey PNG), running a
 * converter with its log captured, and checks every manifest must pass. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "convert.h"
#include "manifest.h"

void tu_mkdirs(const char *dir);
char *tu_path(const char *a, const char *b); /* g_build_filename(a, b) */
/* A random H&E-ish RGB tile: (h, w, 3). */
uint8_t *tu_rgb(int w, int h, uint32_t seed);
void tu_write_bmp8(const char *path, const uint8_t *index, int w, int h);   /* grey palette */
void tu_write_bmp24(const char *path, const uint8_t *rgb, int w, int h);
void tu_write_png(const char *path, const uint8_t *data, int w, int h, int bands);
void tu_write_palette_png(const char *path, const uint8_t *index, int w, int h, const uint8_t (*palette)[3], int n);
/* 16-bit grey PNG (values: (h, w) u16). */
void tu_write_png16(const char *path, const uint16_t *values, int w, int h);
void tu_write_jpeg(const char *path, const uint8_t *data, int w, int h, int bands);
void tu_write_text(const char *path, const char *text);
/* Draws the filled axis-aligned rectangle [x0,x1) x [y0,y1) with value v. */
void tu_rect(uint8_t *img, int w, int x0, int y0, int x1, int y1, uint8_t v);

/* Runs ps_convert; the log goes into *log (g_free). */
gboolean tu_convert(const char *format, const char *input, const char *out, uint64_t seed, conv_stats *stats,
                    char **log, GError **error);
/* The rows of out/manifest.jsonl (NULL, with a failed check, when unreadable). */
GPtrArray *tu_rows(const char *out);
/* The checks every manifest passes: files exist; the mask PNG is 0/255 and
 * has the row's size as does the image; the query is non-empty and the
 * reasoning holds <SEG>; a patient is in one split only, the one
 * ps_manifest_split_for gives; the source is `source`. */
void tu_check_rows(GPtrArray *rows, const char *out, const char *source, uint64_t seed);
/* The row whose image (or mask when `mask`) path contains `needle`; NULL if none. */
const ps_manifest_row *tu_find(GPtrArray *rows, const char *needle, gboolean mask);
int tu_count(GPtrArray *rows, const char *needle, gboolean mask);
/* The row's mask as 0/1, (h, w). */
uint8_t *tu_mask(const char *out, const ps_manifest_row *r, int *w, int *h);
/* Pixels where the row's mask differs from expected (0/nonzero): -1 when
 * the sizes differ or the mask is unreadable. */
int64_t tu_mask_diff(const char *out, const ps_manifest_row *r, const uint8_t *expected, int w, int h);
/* Point-in-polygon, even-odd, at pixel centres: the independent reference
 * for rasterised polygons. */
gboolean tu_inside(const double *xy, int n, double x, double y);
