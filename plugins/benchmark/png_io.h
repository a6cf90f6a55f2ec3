/* png_io.h — reading and writing the benchmark's PNG tiles with libvips.
 * Writes are atomic (temporary file + rename); reads name the file on error,
 * and a truncated file is an error, not an image with grey rows. */
#pragma once

#include <glib.h>
#include <stdint.h>

gboolean ps_png_init(GError **error);
/* data: (h, w, bands) u8. */
gboolean ps_png_write(const char *path, const uint8_t *data, int w, int h, int bands, GError **error);
/* Returns (h, w, bands) u8 (g_free); bands is forced to `want_bands` (3 RGB or 1 grey). */
uint8_t *ps_png_read(const char *path, int want_bands, int *w, int *h, GError **error);
