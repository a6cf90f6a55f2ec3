/* png_write.h — the tile and mask PNG encoder of stage.preprocess_slides.
 *
 * PNG encoding was half of the stage's time through libvips' pngsave (zlib);
 * this encoder writes the same format (8-bit grey, RGB or RGBA, one IDAT,
 * no interlace) with libdeflate, which deflates these tiles about twice as
 * fast as zlib at the same level and no larger, and with the row filter
 * chosen as Pillow and libpng choose it (minimum sum of absolute filtered
 * bytes), so the files are those a Python pipeline would write. One encoder
 * per thread: it owns its buffers and compressor, so encoding a tile
 * allocates nothing once the first tile has sized them. Without libdeflate
 * at build time it falls back to zlib's compress2 (same output format). */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef enum {
  PP_PNG_FILTER_NONE,
  PP_PNG_FILTER_SUB,
  PP_PNG_FILTER_UP,
  PP_PNG_FILTER_PAETH,
  PP_PNG_FILTER_ADAPTIVE, /* per row the least of none, sub, up, paeth (as Pillow) */
} pp_png_filter;

typedef struct pp_png_encoder pp_png_encoder;

/* level: deflate level 0..9 (libdeflate levels 0..9 where it is used). */
pp_png_encoder *pp_png_encoder_new(int level, pp_png_filter filter);
void pp_png_encoder_free(pp_png_encoder *enc);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(pp_png_encoder, pp_png_encoder_free)

/* Encodes data: (h, w, bands) u8, bands 1 (grey), 3 (RGB) or 4 (RGBA), into
 * the encoder's buffer; *png, *len stay valid until the next call. */
gboolean pp_png_encode(pp_png_encoder *enc, const uint8_t *data, int w, int h, int bands,
                       const uint8_t **png, size_t *len, GError **error);

/* Encodes and writes `path` atomically: a temporary file in tmp_dir (on the
 * same file system; NULL: next to path) renamed into place. */
gboolean pp_png_write(pp_png_encoder *enc, const char *path, const char *tmp_dir,
                      const uint8_t *data, int w, int h, int bands, GError **error);

/* Parses a `png_filter` value ("none", "sub", "up", "paeth", "adaptive"). */
gboolean pp_png_filter_from_name(const char *name, pp_png_filter *filter);
