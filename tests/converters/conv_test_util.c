/* conv_test_util.c — helpers of the converter tests (conv_test_util.h). */
#include "conv_test_util.h"

#include <glib/gstdio.h>
#include <png.h>
#include <stdio.h>
#include <string.h>
#include <vips/vips.h>

#include "png_io.h"
#include "ps_test.h"

void tu_mkdirs(const char *dir) { PS_CHECK(g_mkdir_with_parents(dir, 0755) == 0); }
char *tu_path(const char *a, const char *b) { return g_build_filename(a, b, NULL); }

uint8_t *tu_rgb(int w, int h, uint32_t seed) {
  uint8_t *p = g_malloc((size_t)w * h * 3);
  uint32_t s = seed * 2654435761u + 1;
  for (size_t i = 0; i < (size_t)w * h; i++) {
    s = s * 1664525u + 1013904223u;
    p[3 * i] = (uint8_t)(150 + (s >> 24) % 80);
    p[3 * i + 1] = (uint8_t)(60 + (s >> 16) % 90);
    p[3 * i + 2] = (uint8_t)(140 + (s >> 8) % 90);
  }
  return p;
}

static void put32(GByteArray *b, uint32_t v) {
  uint8_t x[4] = {v & 255, (v >> 8) & 255, (v >> 16) & 255, v >> 24};
  g_byte_array_append(b, x, 4);
}
static void put16(GByteArray *b, uint16_t v) {
  uint8_t x[2] = {v & 255, v >> 8};
  g_byte_array_append(b, x, 2);
}

/* A bottom-up BITMAPINFOHEADER BMP, as Windows/PIL write them. */
static void write_bmp(const char *path, const uint8_t *data, int w, int h, int bits) {
  int npal = bits == 8 ? 256 : 0;
  uint32_t stride = ((uint32_t)(bits * w + 31) / 32) * 4, offset = 14 + 40 + 4 * npal;
  g_autoptr(GByteArray) b = g_byte_array_new();
  g_byte_array_append(b, (const uint8_t *)"BM", 2);
  put32(b, offset + stride * h);
  put32(b, 0);
  put32(b, offset);
  put32(b, 40);
  put32(b, (uint32_t)w);
  put32(b, (uint32_t)h);
  put16(b, 1);
  put16(b, (uint16_t)bits);
  put32(b, 0);
  put32(b, stride * h);
  put32(b, 2835);
  put32(b, 2835);
  put32(b, npal);
  put32(b, 0);
  for (int i = 0; i < npal; i++) {
    uint8_t e[4] = {(uint8_t)i, (uint8_t)i, (uint8_t)i, 0};
    g_byte_array_append(b, e, 4);
  }
  g_autofree uint8_t *row = g_malloc0(stride);
  for (int y = h - 1; y >= 0; y--) {
    memset(row, 0, stride);
    for (int x = 0; x < w; x++) {
      if (bits == 8) {
        row[x] = data[(size_t)y * w + x];
      } else {
        const uint8_t *p = data + 3 * ((size_t)y * w + x);
        row[3 * x] = p[2];
        row[3 * x + 1] = p[1];
        row[3 * x + 2] = p[0];
      }
    }
    g_byte_array_append(b, row, stride);
  }
  PS_CHECK(g_file_set_contents(path, (const char *)b->data, b->len, NULL));
}

void tu_write_bmp8(const char *path, const uint8_t *index, int w, int h) { write_bmp(path, index, w, h, 8); }
void tu_write_bmp24(const char *path, const uint8_t *rgb, int w, int h) { write_bmp(path, rgb, w, h, 24); }

void tu_write_png(const char *path, const uint8_t *data, int w, int h, int bands) {
  GError *error = NULL;
  PS_CHECK_OK(ps_png_write(path, data, w, h, bands, &error), error);
}

void tu_write_palette_png(const char *path, const uint8_t *index, int w, int h, const uint8_t (*palette)[3], int n) {
  FILE *f = fopen(path, "wb");
  PS_CHECK(f != NULL);
  if (!f) return;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (setjmp(png_jmpbuf(png))) {
    PS_CHECK(!"libpng failed");
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, PNG_COLOR_TYPE_PALETTE, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_color pal[256];
  for (int i = 0; i < n; i++) pal[i] = (png_color){palette[i][0], palette[i][1], palette[i][2]};
  png_set_PLTE(png, info, pal, n);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) png_write_row(png, (png_const_bytep)(index + (size_t)y * w));
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
}

void tu_write_png16(const char *path, const uint16_t *values, int w, int h) {
  FILE *f = fopen(path, "wb");
  PS_CHECK(f != NULL);
  if (!f) return;
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  g_autofree uint8_t *row = g_malloc((size_t)w * 2);
  if (setjmp(png_jmpbuf(png))) {
    PS_CHECK(!"libpng failed");
    png_destroy_write_struct(&png, &info);
    fclose(f);
    return;
  }
  png_init_io(png, f);
  png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 16, PNG_COLOR_TYPE_GRAY, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int y = 0; y < h; y++) {
    for (int x = 0; x < w; x++) { /* PNG stores 16-bit samples big-endian */
      row[2 * x] = (uint8_t)(values[(size_t)y * w + x] >> 8);
      row[2 * x + 1] = (uint8_t)(values[(size_t)y * w + x] & 255);
    }
    png_write_row(png, row);
  }
  png_write_end(png, NULL);
  png_destroy_write_struct(&png, &info);
  fclose(f);
}

void tu_write_jpeg(const char *path, const uint8_t *data, int w, int h, int bands) {
  VipsImage *img = vips_image_new_from_memory(data, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
  PS_CHECK(img && vips_jpegsave(img, path, "Q", 90, NULL) == 0);
  if (img) g_object_unref(img);
}

void tu_write_text(const char *path, const char *text) { PS_CHECK(g_file_set_contents(path, text, -1, NULL)); }

void tu_rect(uint8_t *img, int w, int x0, int y0, int x1, int y1, uint8_t v) {
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) img[(size_t)y * w + x] = v;
}

typedef struct {
  GString *s;
} log_sink;
static void collect(void *user, const char *msg) {
  g_string_append(((log_sink *)user)->s, msg);
  g_string_append_c(((log_sink *)user)->s, '\n');
}

gboolean tu_convert(const char *format, const char *input, const char *out, uint64_t seed, conv_stats *stats,
                    char **log, GError **error) {
  conv_options o;
  conv_options_init(&o);
  o.format = format;
  o.input_dir = input;
  o.out_dir = out;
  o.seed = seed;
  log_sink sink = {g_string_new(NULL)};
  o.log = collect;
  o.log_user = &sink;
  conv_stats st;
  gboolean ok = ps_convert(&o, stats ? stats : &st, error);
  if (log)
    *log = g_string_free(sink.s, FALSE);
  else
    g_string_free(sink.s, TRUE);
  return ok;
}

GPtrArray *tu_rows(const char *out) {
  g_autofree char *path = tu_path(out, "manifest.jsonl");
  GError *error = NULL;
  GPtrArray *rows = ps_manifest_read(path, &error);
  PS_CHECK_OK(rows != NULL, error);
  return rows;
}

uint8_t *tu_mask(const char *out, const ps_manifest_row *r, int *w, int *h) {
  g_autofree char *path = tu_path(out, r->mask);
  GError *error = NULL;
  uint8_t *m = ps_png_read(path, 1, w, h, &error);
  PS_CHECK_OK(m != NULL, error);
  return m;
}

void tu_check_rows(GPtrArray *rows, const char *out, const char *source, uint64_t seed) {
  g_autoptr(GHashTable) split_of = g_hash_table_new(g_str_hash, g_str_equal);
  int bad_files = 0, bad_mask = 0, bad_text = 0, bad_split = 0, bad_meta = 0;
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(rows, i);
    g_autofree char *img = tu_path(out, r->image);
    int w = 0, h = 0, mw = 0, mh = 0;
    GError *error = NULL;
    g_autofree uint8_t *rgb = ps_png_read(img, 3, &w, &h, &error);
    g_clear_error(&error);
    g_autofree uint8_t *m = NULL;
    g_autofree char *mp = tu_path(out, r->mask);
    m = ps_png_read(mp, 1, &mw, &mh, &error);
    g_clear_error(&error);
    if (!rgb || !m) {
      bad_files++;
      continue;
    }
    if (w != r->width || h != r->height || mw != w || mh != h) bad_mask++;
    for (size_t p = 0; p < (size_t)mw * mh; p++)
      if (m[p] != 0 && m[p] != 255) {
        bad_mask++;
        break;
      }
    if (!r->query || !*r->query || !r->reasoning || !strstr(r->reasoning, "<SEG>")) bad_text++;
    if (!r->group || g_strcmp0(r->source, source) != 0 || !r->target || g_strcmp0(r->review, "pending") != 0)
      bad_meta++;
    if (!r->group) continue;
    const char *before = g_hash_table_lookup(split_of, r->group);
    if ((before && strcmp(before, r->split) != 0) || strcmp(r->split, ps_manifest_split_for(r->group, seed)) != 0)
      bad_split++;
    g_hash_table_insert(split_of, r->group, r->split);
  }
  PS_CHECK_MSG(rows->len > 0, "no rows");
  PS_CHECK_MSG(bad_files == 0, "%s: %d rows with unreadable image/mask", source, bad_files);
  PS_CHECK_MSG(bad_mask == 0, "%s: %d rows with a mask of the wrong size or values", source, bad_mask);
  PS_CHECK_MSG(bad_text == 0, "%s: %d rows without query or <SEG> reasoning", source, bad_text);
  PS_CHECK_MSG(bad_meta == 0, "%s: %d rows with wrong source/group/target/review", source, bad_meta);
  PS_CHECK_MSG(bad_split == 0, "%s: %d rows in a split other than their patient's", source, bad_split);
}

const ps_manifest_row *tu_find(GPtrArray *rows, const char *needle, gboolean mask) {
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(rows, i);
    if (strstr(mask ? r->mask : r->image, needle)) return r;
  }
  return NULL;
}

int tu_count(GPtrArray *rows, const char *needle, gboolean mask) {
  int n = 0;
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(rows, i);
    n += strstr(mask ? r->mask : r->image, needle) != NULL;
  }
  return n;
}

int64_t tu_mask_diff(const char *out, const ps_manifest_row *r, const uint8_t *expected, int w, int h) {
  if (!r) return -1;
  int mw = 0, mh = 0;
  g_autofree uint8_t *m = tu_mask(out, r, &mw, &mh);
  if (!m || mw != w || mh != h) return -1;
  int64_t d = 0;
  for (size_t i = 0; i < (size_t)w * h; i++) d += (m[i] != 0) != (expected[i] != 0);
  return d;
}

gboolean tu_inside(const double *xy, int n, double x, double y) {
  gboolean in = FALSE;
  for (int k = 0; k < n; k++) {
    const double *a = xy + 2 * k, *b = xy + 2 * ((k + 1) % n);
    if ((a[1] > y) != (b[1] > y)) {
      double xi = a[0] + (y - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
      if (xi > x) in = !in;
    }
  }
  return in;
}
