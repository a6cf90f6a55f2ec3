/* image_io.h — reading the images and masks of the public datasets as they
 * are published: BMP (GlaS; a small reader of our own, because libvips has
 * no BMP loader without ImageMagick and palette indices must survive), PNG,
 * JPEG and TIFF through libvips, palette PNG indices through libpng
 * (WSSS4LUAD), and CPM-15's ASCII label maps. Every error names the file. */
#pragma once

#include <glib.h>
#include <stdint.h>

/* An uncompressed Windows BMP (1/4/8-bit indexed, 24-bit, 32-bit).
 * rgb: (h, w, 3); index: (h, w), only for indexed files (else NULL). */
typedef struct ps_bmp {
  int w, h, bits;
  uint8_t *rgb, *index;
} ps_bmp;
gboolean ps_bmp_load(const char *path, ps_bmp *out, GError **error);
void ps_bmp_clear(ps_bmp *b);

/* (h, w, 3) u8 RGB; alpha dropped. g_free. */
uint8_t *conv_load_rgb(const char *path, int *w, int *h, GError **error);
/* (h, w) u32 labels: a grey or indexed image gives its values (indices for
 * BMP palettes), a colour image its packed colour r | g << 8 | b << 16 (an
 * instance map drawn in colours); alpha dropped. g_free. */
uint32_t *conv_load_labels(const char *path, int *w, int *h, GError **error);
/* (h, w) u8 palette indices of a palette PNG; *is_palette FALSE (and NULL
 * returned, no error) when the PNG is not palette-typed. palette: 256 x RGB. */
uint8_t *conv_load_png_indices(const char *path, int *w, int *h, uint8_t palette[256][3], int *palette_size,
                               gboolean *is_palette, GError **error);
/* CPM-15 `imageXX_mask.txt`: "width height" then one integer per pixel, x
 * fastest. (h, w) i32. g_free. */
int32_t *conv_load_ascii_labels(const char *path, int *w, int *h, GError **error);
