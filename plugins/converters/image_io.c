/* image_io.c — image and mask readers of the dataset converters (image_io.h). */
#include "image_io.h"

#include <errno.h>
#include <png.h>
#include <pathseg/error.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "png_io.h"

#define MAX_PIXELS (1LL << 30) /* refuse absurd headers before allocating */

/* ---------------------------------------------------------------- BMP --- */

static uint32_t le32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

void ps_bmp_clear(ps_bmp *b) {
  g_clear_pointer(&b->rgb, g_free);
  g_clear_pointer(&b->index, g_free);
}

gboolean ps_bmp_load(const char *path, ps_bmp *out, GError **error) {
  memset(out, 0, sizeof *out);
  g_autofree uint8_t *data = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, (char **)&data, &len, error)) return FALSE;
#define BAD(...)                                                                  \
  do {                                                                            \
    g_autofree char *why_ = g_strdup_printf(__VA_ARGS__);                         \
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not a usable BMP: %s", path, why_); \
    return FALSE;                                                                 \
  } while (0)
  if (len < 54 || data[0] != 'B' || data[1] != 'M') BAD("no 'BM' header");
  uint32_t offset = le32(data + 10), dib = le32(data + 14);
  if (dib < 40 || 14 + (gsize)dib > len) BAD("unsupported DIB header of %u bytes", dib);
  int32_t w = (int32_t)le32(data + 18), hh = (int32_t)le32(data + 22);
  int bits = le16(data + 28);
  uint32_t compression = le32(data + 30), colours = le32(data + 46);
  gboolean top_down = hh < 0;
  int64_t h = top_down ? -(int64_t)hh : hh;
  if (w <= 0 || h <= 0 || (int64_t)w * h > MAX_PIXELS) BAD("size %d x %" G_GINT64_FORMAT, w, h);
  if (bits != 1 && bits != 4 && bits != 8 && bits != 24 && bits != 32) BAD("%d bits per pixel", bits);
  if (!(compression == 0 || (compression == 3 && bits == 32))) BAD("compression %u (only uncompressed)", compression);
  size_t stride = (((size_t)bits * w + 31) / 32) * 4;
  if ((gsize)offset > len || (gsize)h * stride > len - offset) BAD("pixel data truncated");
  uint8_t pal[256][3] = {{0}};
  if (bits <= 8) {
    uint32_t n = colours ? colours : 1u << bits;
    if (n > 256u) BAD("%u palette entries", n);
    gsize pal_at = 14 + (gsize)dib;
    if (pal_at + 4 * (gsize)n > len) BAD("palette truncated");
    for (uint32_t i = 0; i < n; i++) {
      pal[i][0] = data[pal_at + 4 * i + 2];
      pal[i][1] = data[pal_at + 4 * i + 1];
      pal[i][2] = data[pal_at + 4 * i];
    }
  }
#undef BAD
  out->w = w;
  out->h = (int)h;
  out->bits = bits;
  out->rgb = g_malloc((size_t)w * h * 3);
  if (bits <= 8) out->index = g_malloc((size_t)w * h);
  for (int64_t y = 0; y < h; y++) {
    const uint8_t *row = data + offset + (size_t)(top_down ? y : h - 1 - y) * stride;
    uint8_t *rgb = out->rgb + (size_t)y * w * 3;
    for (int x = 0; x < w; x++) {
      if (bits <= 8) {
        int per = 8 / bits, shift = 8 - bits * (x % per + 1);
        uint8_t v = (uint8_t)((row[x / per] >> shift) & ((1 << bits) - 1));
        out->index[(size_t)y * w + x] = v;
        memcpy(rgb + 3 * x, pal[v], 3);
      } else {
        const uint8_t *p = row + (size_t)x * (bits / 8);
        rgb[3 * x] = p[2];
        rgb[3 * x + 1] = p[1];
        rgb[3 * x + 2] = p[0];
      }
    }
  }
  return TRUE;
}

static gboolean is_bmp(const char *path) {
  return g_str_has_suffix(path, ".bmp") || g_str_has_suffix(path, ".BMP");
}

/* ------------------------------------------------------------ images --- */

uint8_t *conv_load_rgb(const char *path, int *w, int *h, GError **error) {
  if (is_bmp(path)) {
    ps_bmp b;
    if (!ps_bmp_load(path, &b, error)) return NULL;
    *w = b.w;
    *h = b.h;
    g_free(b.index);
    return b.rgb;
  }
  return ps_png_read(path, 3, w, h, error);
}

static void vips_fail(GError **error, const char *path) {
  g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "cannot read %s: %s", path, vips_error_buffer());
  vips_error_clear();
}

uint32_t *conv_load_labels(const char *path, int *w, int *h, GError **error) {
  if (is_bmp(path)) {
    ps_bmp b;
    if (!ps_bmp_load(path, &b, error)) return NULL;
    size_t n = (size_t)b.w * b.h;
    uint32_t *out = g_new(uint32_t, n);
    for (size_t i = 0; i < n; i++)
      out[i] = b.index ? b.index[i]
                       : (uint32_t)b.rgb[3 * i] | (uint32_t)b.rgb[3 * i + 1] << 8 | (uint32_t)b.rgb[3 * i + 2] << 16;
    *w = b.w;
    *h = b.h;
    ps_bmp_clear(&b);
    return out;
  }
  VipsImage *img = vips_image_new_from_file(path, "access", VIPS_ACCESS_SEQUENTIAL, NULL);
  if (!img) {
    vips_fail(error, path);
    return NULL;
  }
  VipsImage *t = NULL;
  if (img->Bands == 2 || img->Bands == 4) { /* drop alpha */
    if (vips_extract_band(img, &t, 0, "n", img->Bands - 1, NULL) != 0) goto fail;
    g_object_unref(img);
    img = t;
  }
  if (img->Bands != 1 && img->Bands != 3) {
    vips_error("conv", "%d bands", img->Bands);
    goto fail;
  }
  if (vips_cast(img, &t, VIPS_FORMAT_UINT, NULL) != 0) goto fail;
  g_object_unref(img);
  img = t;
  size_t len = 0;
  uint32_t *mem = vips_image_write_to_memory(img, &len);
  size_t n = (size_t)img->Xsize * img->Ysize;
  if (!mem || len != n * img->Bands * sizeof(uint32_t)) {
    g_free(mem);
    goto fail;
  }
  uint32_t *out = mem;
  if (img->Bands == 3) {
    out = g_new(uint32_t, n);
    for (size_t i = 0; i < n; i++)
      out[i] = MIN(mem[3 * i], 255u) | MIN(mem[3 * i + 1], 255u) << 8 | MIN(mem[3 * i + 2], 255u) << 16;
    g_free(mem);
  }
  *w = img->Xsize;
  *h = img->Ysize;
  g_object_unref(img);
  return out;
fail:
  vips_fail(error, path);
  g_object_unref(img);
  return NULL;
}

/* ----------------------------------------------------- palette PNG --- */

typedef struct {
  jmp_buf jmp;
  char message[256];
} png_err;

static void png_error_fn(png_structp png, png_const_charp msg) {
  png_err *e = png_get_error_ptr(png);
  g_strlcpy(e->message, msg, sizeof e->message);
  longjmp(e->jmp, 1);
}
static void png_warning_fn(png_structp png, png_const_charp msg) {
  (void)png;
  (void)msg;
}

uint8_t *conv_load_png_indices(const char *path, int *w, int *h, uint8_t palette[256][3], int *palette_size,
                               gboolean *is_palette, GError **error) {
  *is_palette = FALSE;
  FILE *f = fopen(path, "rb");
  if (!f) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot open %s: %s", path, g_strerror(errno));
    return NULL;
  }
  png_err e = {.message = ""};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &e, png_error_fn, png_warning_fn);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  uint8_t *volatile out = NULL;
  png_bytep *volatile rows = NULL;
  if (!png || !info || setjmp(e.jmp)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "cannot decode PNG %s: %s", path,
                e.message[0] ? e.message : "out of memory");
    g_free(out);
    g_free(rows);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return NULL;
  }
  png_init_io(png, f);
  png_read_info(png, info);
  png_uint_32 pw = 0, ph = 0;
  int depth = 0, colour = 0;
  png_get_IHDR(png, info, &pw, &ph, &depth, &colour, NULL, NULL, NULL);
  if (colour == PNG_COLOR_TYPE_PALETTE) {
    if ((int64_t)pw * ph > MAX_PIXELS) png_error(png, "image too large");
    if (depth < 8) png_set_packing(png);
    png_read_update_info(png, info);
    out = g_malloc((size_t)pw * ph);
    rows = g_new(png_bytep, ph);
    for (png_uint_32 y = 0; y < ph; y++) rows[y] = out + (size_t)y * pw;
    png_read_image(png, rows);
    png_colorp plte = NULL;
    int n = 0;
    memset(palette, 0, 256 * 3);
    if (png_get_PLTE(png, info, &plte, &n) & PNG_INFO_PLTE)
      for (int i = 0; i < n && i < 256; i++) {
        palette[i][0] = plte[i].red;
        palette[i][1] = plte[i].green;
        palette[i][2] = plte[i].blue;
      }
    *palette_size = n;
    *is_palette = TRUE;
    *w = (int)pw;
    *h = (int)ph;
  }
  g_free(rows);
  png_destroy_read_struct(&png, &info, NULL);
  fclose(f);
  return out;
}

/* ------------------------------------------------ CPM-15 ASCII maps --- */

/* The next label of a map: optional whitespace, an optional sign, decimal
 * digits (strtol's grammar for these files). Returns the value, -1 when
 * there is no number (*next unchanged) and -2 when it is negative or above
 * INT32_MAX. A hand parser rather than strtol, which under ASan's
 * strict_string_checks measures the rest of the file on every call: O(n^2)
 * over a megapixel map. */
static int64_t next_label(const char *p, const char **next) {
  while (g_ascii_isspace(*p)) p++;
  gboolean negative = *p == '-';
  if (*p == '-' || *p == '+') p++;
  if (!g_ascii_isdigit(*p)) return -1;
  int64_t v = 0;
  while (g_ascii_isdigit(*p)) {
    if (v <= INT32_MAX) v = v * 10 + (*p - '0');
    p++;
  }
  *next = p;
  return negative && v > 0 ? -2 : v > INT32_MAX ? -2 : v;
}

int32_t *conv_load_ascii_labels(const char *path, int *w, int *h, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  char *p = text, *end = NULL;
  long W = strtol(p, &end, 10);
  long H = end != p ? strtol(p = end, &end, 10) : 0;
  /* Each side bounded first, so that the product cannot overflow. */
  if (end == p || W <= 0 || H <= 0 || W > MAX_PIXELS || H > MAX_PIXELS || (int64_t)W * H > MAX_PIXELS) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: the first line must be 'width height'", path);
    return NULL;
  }
  size_t n = (size_t)W * H;
  /* Every value takes at least one byte: refuse before allocating 4 bytes per promised pixel. */
  if (n > len) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: %ld x %ld values cannot fit in %zu bytes", path, W, H,
                (size_t)len);
    return NULL;
  }
  g_autofree int32_t *out = g_new(int32_t, n);
  const char *at = end;
  for (size_t i = 0; i < n; i++) {
    int64_t v = next_label(at, &at);
    if (v < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: value %zu of %zu (pixel %zu, %zu) is %s", path, i + 1, n,
                  i % (size_t)W, i / (size_t)W, v == -1 ? "missing" : "not a label >= 0");
      return NULL;
    }
    out[i] = (int32_t)v;
  }
  end = (char *)at;
  while (g_ascii_isspace(*end)) end++;
  if (*end) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: more than %ld x %ld values", path, W, H);
    return NULL;
  }
  *w = (int)W;
  *h = (int)H;
  return g_steal_pointer(&out);
}
