/* png_write.c — PNG encoding for stage.preprocess_slides (see png_write.h):
 * row filters, a zlib stream from libdeflate (or zlib), and the chunks. */
#include "png_write.h"

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <pathseg/error.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#ifdef PP_HAVE_LIBDEFLATE
#include <libdeflate.h>
#else
#include <zlib.h>
#endif

struct pp_png_encoder {
  int level;
  pp_png_filter filter;
#ifdef PP_HAVE_LIBDEFLATE
  struct libdeflate_compressor *compressor;
#endif
  uint8_t *filtered; /* (h, 1 + w * bands): filter byte + filtered row */
  size_t filtered_cap;
  uint8_t *cand; /* (3, w * bands): the up, sub and paeth rows being tried */
  size_t cand_cap;
  uint8_t *zero; /* (w * bands) zeros: the row above the first */
  size_t zero_cap;
  uint8_t *out; /* the PNG file */
  size_t out_cap;
};

pp_png_encoder *pp_png_encoder_new(int level, pp_png_filter filter) {
  pp_png_encoder *enc = g_new0(pp_png_encoder, 1);
  enc->level = CLAMP(level, 0, 9);
  enc->filter = filter;
  return enc;
}

void pp_png_encoder_free(pp_png_encoder *enc) {
  if (!enc) return;
#ifdef PP_HAVE_LIBDEFLATE
  if (enc->compressor) libdeflate_free_compressor(enc->compressor);
#endif
  g_free(enc->filtered);
  g_free(enc->cand);
  g_free(enc->zero);
  g_free(enc->out);
  g_free(enc);
}

gboolean pp_png_filter_from_name(const char *name, pp_png_filter *filter) {
  static const char *const names[] = {"none", "sub", "up", "paeth", "adaptive"};
  for (int i = 0; i < (int)G_N_ELEMENTS(names); i++)
    if (strcmp(name, names[i]) == 0) {
      *filter = (pp_png_filter)i;
      return TRUE;
    }
  return FALSE;
}

static void ensure(uint8_t **buf, size_t *cap, size_t need) {
  if (*cap >= need) return;
  g_free(*buf);
  *buf = g_malloc(need);
  *cap = need;
}

/* The filter loops run per byte of every row: AVX2 clones where the CPU
 * has it (chosen at load time), SSE2 otherwise. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PP_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PP_CLONES
#endif

/* Sum of |filtered byte| read as signed, the heuristic of libpng and Pillow.
 * 16-bit partial sums over 256 bytes (at most 256 * 128) let the loop
 * vectorise on 16-bit lanes. */
#define PP_CHUNK 256
PP_CLONES static uint64_t cost(const uint8_t *row, size_t n) {
  uint64_t s = 0;
  for (size_t i0 = 0; i0 < n; i0 += PP_CHUNK) {
    const size_t i1 = MIN(n, i0 + PP_CHUNK);
    uint16_t part = 0;
    for (size_t i = i0; i < i1; i++) {
      const int8_t v = (int8_t)row[i];
      part = (uint16_t)(part + (uint16_t)(v < 0 ? -v : v));
    }
    s += part;
  }
  return s;
}

PP_CLONES static void filter_up(const uint8_t *row, const uint8_t *up, size_t n, uint8_t *out) {
  for (size_t i = 0; i < n; i++) out[i] = (uint8_t)(row[i] - up[i]);
}

PP_CLONES static void filter_sub(const uint8_t *row, size_t n, int bpp, uint8_t *out) {
  for (size_t i = 0; i < (size_t)bpp && i < n; i++) out[i] = row[i];
  for (size_t i = (size_t)bpp; i < n; i++) out[i] = (uint8_t)(row[i] - row[i - bpp]);
}

/* Paeth: predict from left (a), above (b) and above-left (c), whichever is
 * closest to a + b - c (ties: a, then b). Left of the row, a = c = 0 and the
 * predictor is b. Written branch-free so that the compiler vectorises it. */
PP_CLONES static void filter_paeth(const uint8_t *row, const uint8_t *up, size_t n, int bpp,
                                   uint8_t *out) {
  for (size_t i = 0; i < (size_t)bpp && i < n; i++) out[i] = (uint8_t)(row[i] - up[i]);
  for (size_t i = (size_t)bpp; i < n; i++) {
    int a = row[i - bpp], b = up[i], c = up[i - bpp];
    int pa = abs(b - c), pb = abs(a - c), pc = abs(a + b - 2 * c);
    int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
    out[i] = (uint8_t)(row[i] - pred);
  }
}

/* The adaptive choice's candidates: the filtered row and its cost (as
 * cost() computes it) in one pass, so that each candidate is read once. */
PP_CLONES static uint64_t up_cost(const uint8_t *row, const uint8_t *up, size_t n, uint8_t *out) {
  uint64_t s = 0;
  for (size_t i0 = 0; i0 < n; i0 += PP_CHUNK) {
    const size_t i1 = MIN(n, i0 + PP_CHUNK);
    uint16_t part = 0;
    for (size_t i = i0; i < i1; i++) {
      const uint8_t f = (uint8_t)(row[i] - up[i]);
      const int8_t v = (int8_t)f;
      out[i] = f;
      part = (uint16_t)(part + (uint16_t)(v < 0 ? -v : v));
    }
    s += part;
  }
  return s;
}

PP_CLONES static uint64_t sub_cost(const uint8_t *row, size_t n, int bpp, uint8_t *out) {
  uint64_t s = 0;
  for (size_t i = 0; i < (size_t)bpp && i < n; i++) {
    out[i] = row[i];
    const int8_t v = (int8_t)row[i];
    s += (uint64_t)(v < 0 ? -v : v);
  }
  for (size_t i0 = (size_t)bpp; i0 < n; i0 += PP_CHUNK) {
    const size_t i1 = MIN(n, i0 + PP_CHUNK);
    uint16_t part = 0;
    for (size_t i = i0; i < i1; i++) {
      const uint8_t f = (uint8_t)(row[i] - row[i - bpp]);
      const int8_t v = (int8_t)f;
      out[i] = f;
      part = (uint16_t)(part + (uint16_t)(v < 0 ? -v : v));
    }
    s += part;
  }
  return s;
}

/* Paeth in 16-bit arithmetic (p = a + b - c and the distances fit), so
 * that it vectorises on 16-bit lanes: twice the 32-bit version's speed. */
PP_CLONES static uint64_t paeth_cost(const uint8_t *row, const uint8_t *up, size_t n, int bpp,
                                     uint8_t *out) {
  uint64_t s = 0;
  for (size_t i = 0; i < (size_t)bpp && i < n; i++) {
    out[i] = (uint8_t)(row[i] - up[i]);
    const int8_t v = (int8_t)out[i];
    s += (uint64_t)(v < 0 ? -v : v);
  }
  for (size_t i0 = (size_t)bpp; i0 < n; i0 += PP_CHUNK) {
    const size_t i1 = MIN(n, i0 + PP_CHUNK);
    uint16_t part = 0;
    for (size_t i = i0; i < i1; i++) {
      const int16_t a = row[i - bpp], b = up[i], c = up[i - bpp];
      const int16_t p = (int16_t)(a + b - c);
      const int16_t pa = (int16_t)abs(p - a), pb = (int16_t)abs(p - b), pc = (int16_t)abs(p - c);
      const int16_t pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
      const uint8_t f = (uint8_t)(row[i] - pred);
      const int8_t v = (int8_t)f;
      out[i] = f;
      part = (uint16_t)(part + (uint16_t)(v < 0 ? -v : v));
    }
    s += part;
  }
  return s;
}

/* Filters one row into out (filter byte first). The adaptive choice tries
 * none, up, sub and paeth in Pillow's order and keeps the first least cost;
 * a zero cost (a row equal to the one above) stops the search. Candidates
 * are filtered into the row's place in out or into scratch, swapping, so
 * that the best is never copied. */
static void filter_row(pp_png_encoder *enc, const uint8_t *row, const uint8_t *up, size_t n,
                       int bpp, uint8_t *out) {
  switch (enc->filter) {
  case PP_PNG_FILTER_NONE:
    out[0] = 0;
    memcpy(out + 1, row, n);
    return;
  case PP_PNG_FILTER_SUB:
    out[0] = 1;
    filter_sub(row, n, bpp, out + 1);
    return;
  case PP_PNG_FILTER_UP:
    out[0] = 2;
    filter_up(row, up, n, out + 1);
    return;
  case PP_PNG_FILTER_PAETH:
    out[0] = 4;
    filter_paeth(row, up, n, bpp, out + 1);
    return;
  case PP_PNG_FILTER_ADAPTIVE:
    break;
  }
  /* best: where the best filtered row is so far (NULL: the row itself);
   * spare: where the next candidate goes. */
  uint8_t *const dst = out + 1;
  const uint8_t *best = row;
  uint8_t *spare = dst, *other = enc->cand;
  uint8_t code = 0;
  uint64_t sum = cost(row, n);
  if (sum > 0) {
    uint64_t s = up_cost(row, up, n, spare);
    if (s < sum) {
      sum = s, best = spare, code = 2;
      spare = other;
    }
  }
  if (sum > 0) {
    uint64_t s = sub_cost(row, n, bpp, spare);
    if (s < sum) {
      sum = s, best = spare, code = 1;
      spare = best == dst ? enc->cand : dst;
    }
  }
  if (sum > 0) {
    uint64_t s = paeth_cost(row, up, n, bpp, spare);
    if (s < sum) sum = s, best = spare, code = 4;
  }
  out[0] = code;
  if (best != dst) memcpy(dst, best, n);
}

static uint32_t crc(const uint8_t *p, size_t n) {
#ifdef PP_HAVE_LIBDEFLATE
  return libdeflate_crc32(0, p, n);
#else
  return (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
#endif
}

static uint8_t *put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24);
  p[1] = (uint8_t)(v >> 16);
  p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
  return p + 4;
}

/* Finishes the chunk whose length field is at `start`: length and CRC
 * (over type and data); returns the end. */
static uint8_t *end_chunk(uint8_t *start, size_t data_len) {
  put32(start, (uint32_t)data_len);
  uint32_t c = crc(start + 4, 4 + data_len);
  return put32(start + 8 + data_len, c);
}

gboolean pp_png_encode(pp_png_encoder *enc, const uint8_t *data, int w, int h, int bands,
                       const uint8_t **png, size_t *len, GError **error) {
  static const uint8_t colour_type[5] = {0, 0, 4, 2, 6}; /* by bands: grey, grey+alpha, RGB, RGBA */
  if (w <= 0 || h <= 0 || bands < 1 || bands > 4 || (size_t)w * bands > (1u << 28) / (size_t)h) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "PNG: cannot encode %d x %d x %d", w, h, bands);
    return FALSE;
  }
  const size_t n = (size_t)w * bands, raw = (n + 1) * (size_t)h;
  ensure(&enc->filtered, &enc->filtered_cap, raw);
  ensure(&enc->cand, &enc->cand_cap, 3 * n);
  if (enc->zero_cap < n) {
    g_free(enc->zero);
    enc->zero = g_malloc0(n);
    enc->zero_cap = n;
  }
  for (int y = 0; y < h; y++)
    filter_row(enc, data + (size_t)y * n, y ? data + (size_t)(y - 1) * n : enc->zero, n, bands,
               enc->filtered + (size_t)y * (n + 1));

#ifdef PP_HAVE_LIBDEFLATE
  if (!enc->compressor) enc->compressor = libdeflate_alloc_compressor(enc->level);
  if (!enc->compressor) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "PNG: libdeflate cannot allocate a level %d compressor", enc->level);
    return FALSE;
  }
  const size_t bound = libdeflate_zlib_compress_bound(enc->compressor, raw);
#else
  const size_t bound = compressBound((uLong)raw);
#endif
  /* signature 8, IHDR 25, IDAT 12 + data, IEND 12 */
  ensure(&enc->out, &enc->out_cap, 8 + 25 + 12 + bound + 12);
  static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  uint8_t *p = enc->out;
  memcpy(p, signature, 8);
  p += 8;
  uint8_t *ihdr = p;
  memcpy(ihdr + 4, "IHDR", 4);
  uint8_t *q = put32(put32(ihdr + 8, (uint32_t)w), (uint32_t)h);
  q[0] = 8; /* bit depth */
  q[1] = colour_type[bands];
  q[2] = q[3] = q[4] = 0; /* deflate, adaptive filtering method 0, no interlace */
  p = end_chunk(ihdr, 13);

  uint8_t *idat = p;
  memcpy(idat + 4, "IDAT", 4);
#ifdef PP_HAVE_LIBDEFLATE
  size_t z = libdeflate_zlib_compress(enc->compressor, enc->filtered, raw, idat + 8, bound);
#else
  uLongf zl = (uLongf)bound;
  size_t z =
      compress2(idat + 8, &zl, enc->filtered, (uLong)raw, enc->level) == Z_OK ? (size_t)zl : 0;
#endif
  if (z == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "PNG: deflate failed on %d x %d x %d", w, h,
                bands);
    return FALSE;
  }
  p = end_chunk(idat, z);
  memcpy(p + 4, "IEND", 4);
  p = end_chunk(p, 0);
  *png = enc->out;
  *len = (size_t)(p - enc->out);
  return TRUE;
}

gboolean pp_png_write(pp_png_encoder *enc, const char *path, const char *tmp_dir,
                      const uint8_t *data, int w, int h, int bands, GError **error) {
  const uint8_t *png = NULL;
  size_t len = 0;
  if (!pp_png_encode(enc, data, w, h, bands, &png, &len, error)) {
    g_prefix_error(error, "%s: ", path);
    return FALSE;
  }
  if (!tmp_dir) return g_file_set_contents(path, (const char *)png, (gssize)len, error);
  /* The temporary file lives in tmp_dir, so that a killed write never
   * leaves anything but whole PNGs next to the tiles. */
  g_autofree char *base = g_path_get_basename(path);
  g_autofree char *tmp = g_strdup_printf("%s/%s.XXXXXX", tmp_dir, base);
  int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0644);
  if (fd < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s: %s", tmp, g_strerror(errno));
    return FALSE;
  }
  for (size_t off = 0; off < len;) {
    ssize_t n = write(fd, png + off, len - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot write %s: %s", tmp,
                  g_strerror(n < 0 ? errno : ENOSPC));
      close(fd);
      g_unlink(tmp);
      return FALSE;
    }
    off += (size_t)n;
  }
  if (close(fd) != 0 || g_rename(tmp, path) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot write %s: %s", path, g_strerror(errno));
    g_unlink(tmp);
    return FALSE;
  }
  return TRUE;
}
