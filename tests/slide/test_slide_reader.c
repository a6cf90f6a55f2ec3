/* test_slide_reader.c — slide.c's two readers: libvips' tiffload (levels
 * slide_tiff.c admits) must give exactly OpenSlide's pixels, and everything
 * else must fall back to OpenSlide.
 *   - the real Aperio slide (tests/data/CMU-1-Small-Region.svs, JPEG tiles
 *     tagged RGB): read directly; the whole level, regions across its edges
 *     (transparent outside) and the block-mean thumbnail equal OpenSlide's
 *     byte for byte;
 *   - generic tiled pyramidal TIFFs written here (JPEG YCbCr 4:2:0 and
 *     4:4:4, LZW, deflate, uncompressed; partial edge tiles): every level
 *     read directly and equal to OpenSlide's; levels whose downsample is
 *     not a whole number (OpenSlide resamples those) left to OpenSlide;
 *   - fallbacks: an RGBA TIFF (read by OpenSlide, equal to the forced
 *     OpenSlide reader) and a TIFF with a missing tile (which OpenSlide
 *     draws transparent or fails on) are left to OpenSlide with the reason
 *     given; forcing the tiff reader on them is an error naming it. */
#include <glib/gstdio.h>
#include <string.h>
#include <vips/vips.h>
#ifdef PS_SLIDE_DIRECT_TIFF
#include <tiffio.h>
#endif

#include "ps_test.h"
#include "slide.h"

static const char *env_dir(const char *name, const char *fallback) {
  const char *v = g_getenv(name);
  return v && *v ? v : fallback;
}

static uint8_t pattern(int x, int y, int c) {
  /* Smooth with edges and noise, so that JPEG rounding and chroma
   * upsampling differ if the two decoders differ at all. */
  uint32_t h = (uint32_t)(x * 73856093u) ^ (uint32_t)(y * 19349663u) ^ (uint32_t)(c * 83492791u);
  h ^= h >> 13;
  return (uint8_t)((x * (2 + c) + y * (3 + c) + ((x / 23 + y / 17) % 2) * 80 + (h % 19)) % 256);
}

static uint8_t *make_pixels(int w, int h, int bands) {
  uint8_t *px = g_malloc((size_t)w * h * bands);
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int c = 0; c < bands; c++)
        px[((size_t)y * w + x) * bands + c] = c == 3 ? (uint8_t)(128 + (x + y) % 128) : pattern(x, y, c);
  return px;
}

/* A tiled pyramidal TIFF through libvips. */
static char *write_vips_tiff(const char *dir, const char *name, int w, int h, int bands,
                             VipsForeignTiffCompression compression, int q) {
  g_autofree uint8_t *px = make_pixels(w, h, bands);
  char *path = g_build_filename(dir, name, NULL);
  VipsImage *img = vips_image_new_from_memory_copy(px, (size_t)w * h * bands, w, h, bands, VIPS_FORMAT_UCHAR);
  int rc = img ? vips_tiffsave(img, path, "tile", TRUE, "tile_width", 128, "tile_height", 128, "pyramid", TRUE,
                               "compression", compression, "Q", q, NULL)
               : -1;
  PS_CHECK_MSG(rc == 0, "tiffsave %s: %s", name, vips_error_buffer());
  vips_error_clear();
  if (img) g_object_unref(img);
  return path;
}

#ifdef PS_SLIDE_DIRECT_TIFF
/* A tiled RGB TIFF through libtiff with tile `skip` never written (its byte
 * count stays 0: a missing tile). */
static char *write_tiff_missing_tile(const char *dir, int w, int h, int skip) {
  char *path = g_build_filename(dir, "missing.tif", NULL);
  TIFF *t = TIFFOpen(path, "w");
  PS_CHECK(t != NULL);
  if (!t) return path;
  TIFFSetField(t, TIFFTAG_IMAGEWIDTH, (uint32_t)w);
  TIFFSetField(t, TIFFTAG_IMAGELENGTH, (uint32_t)h);
  TIFFSetField(t, TIFFTAG_BITSPERSAMPLE, 8);
  TIFFSetField(t, TIFFTAG_SAMPLESPERPIXEL, 3);
  TIFFSetField(t, TIFFTAG_PHOTOMETRIC, PHOTOMETRIC_RGB);
  TIFFSetField(t, TIFFTAG_PLANARCONFIG, PLANARCONFIG_CONTIG);
  TIFFSetField(t, TIFFTAG_COMPRESSION, COMPRESSION_LZW);
  TIFFSetField(t, TIFFTAG_TILEWIDTH, 64);
  TIFFSetField(t, TIFFTAG_TILELENGTH, 64);
  uint8_t tile[64 * 64 * 3];
  int k = 0;
  for (int ty = 0; ty < h; ty += 64)
    for (int tx = 0; tx < w; tx += 64, k++) {
      if (k == skip) continue;
      for (int y = 0; y < 64; y++)
        for (int x = 0; x < 64; x++)
          for (int c = 0; c < 3; c++) tile[(y * 64 + x) * 3 + c] = pattern(tx + x, ty + y, c);
      PS_CHECK(TIFFWriteTile(t, tile, (uint32_t)tx, (uint32_t)ty, 0, 0) > 0);
    }
  TIFFClose(t);
  return path;
}
#endif

/* Both readers on every level: whole levels (RGBA and RGB), regions across
 * the level's edges, and the block-mean thumbnail must be equal. */
static void check_fallback(const char *path, const char *why_part);

/* Levels below n_direct must be read directly (the rest by OpenSlide, for
 * a reason containing why_part), and their pixels must equal OpenSlide's. */
static void compare_readers(const char *path, int n_direct, const char *why_part) {
  GError *err = NULL;
  g_autoptr(ps_slide) a = ps_slide_open(path, &err);
  PS_CHECK_OK(a != NULL, err);
  g_autoptr(ps_slide) o = ps_slide_open_with(path, PS_SLIDE_READER_OPENSLIDE, &err);
  PS_CHECK_OK(o != NULL, err);
  if (!a || !o) return;
  PS_CHECK(ps_slide_level_count(a) == ps_slide_level_count(o));
  for (int l = 0; l < ps_slide_level_count(o); l++) {
    PS_CHECK(!ps_slide_level_direct(o, l));
#ifdef PS_SLIDE_DIRECT_TIFF
    const gboolean want = l < n_direct;
    PS_CHECK_MSG(ps_slide_level_direct(a, l) == want, "%s level %d: direct %d, expected %d (%s)", path, l,
                 ps_slide_level_direct(a, l), want, ps_slide_direct_why(a) ? ps_slide_direct_why(a) : "");
#endif
    /* A level OpenSlide reads on both sides compares OpenSlide with itself. */
    if (!ps_slide_level_direct(a, l)) continue;
    int64_t W, H, W2, H2;
    PS_CHECK(ps_slide_level_size(a, l, &W, &H) && ps_slide_level_size(o, l, &W2, &H2) && W == W2 && H == H2);
    g_autofree uint8_t *pa = g_malloc((size_t)W * H * 4), *po = g_malloc((size_t)W * H * 4);
    PS_CHECK_OK(ps_slide_read_level(a, l, 2, pa, &err), err);
    PS_CHECK_OK(ps_slide_read_level(o, l, 2, po, &err), err);
    size_t diff = 0;
    for (size_t i = 0; i < (size_t)W * H * 4; i++) diff += pa[i] != po[i];
    PS_CHECK_MSG(diff == 0, "%s level %d (%" G_GINT64_FORMAT " x %" G_GINT64_FORMAT "): %zu bytes differ", path, l, W,
                 H, diff);
    PS_CHECK_OK(ps_slide_read_level_rgb(a, l, 1, pa, &err), err);
    diff = 0;
    for (size_t i = 0; i < (size_t)W * H; i++)
      for (int c = 0; c < 3; c++) diff += pa[i * 3 + c] != po[i * 4 + c];
    PS_CHECK_MSG(diff == 0, "%s level %d RGB: %zu bytes differ", path, l, diff);
    /* Regions in level-0 coordinates, crossing the level's edges. */
    const double ds = ps_slide_level_downsample(a, l);
    const int64_t at[4][2] = {{-37, -11}, {(int64_t)((W - 50) * ds), (int64_t)((H - 70) * ds)}, {5, 3}, {(int64_t)(W * ds), 0}};
    const int rw = 131, rh = 97;
    g_autofree uint8_t *ra = g_malloc((size_t)rw * rh * 4), *ro = g_malloc((size_t)rw * rh * 4);
    g_autofree uint8_t *rgb = g_malloc((size_t)rw * rh * 3);
    for (int k = 0; k < 4; k++) {
      memset(ra, 7, (size_t)rw * rh * 4);
      PS_CHECK_OK(ps_slide_read_region(a, at[k][0], at[k][1], l, rw, rh, ra, &err), err);
      PS_CHECK_OK(ps_slide_read_region(o, at[k][0], at[k][1], l, rw, rh, ro, &err), err);
      PS_CHECK_MSG(memcmp(ra, ro, (size_t)rw * rh * 4) == 0, "%s level %d region %d differs", path, l, k);
      PS_CHECK_OK(ps_slide_read_region_rgb(a, at[k][0], at[k][1], l, rw, rh, rgb, &err), err);
      diff = 0;
      for (size_t i = 0; i < (size_t)rw * rh; i++)
        for (int c = 0; c < 3; c++) diff += rgb[i * 3 + c] != ro[i * 4 + c];
      PS_CHECK_MSG(diff == 0, "%s level %d RGB region %d differs", path, l, k);
    }
    if (W >= 8 && H >= 8) {
      g_autofree double *ta = NULL, *to = NULL;
      int64_t tw, th, tw2, th2;
      PS_CHECK_OK(ps_slide_thumbnail_mean(a, l, 8, &ta, &tw, &th, &err), err);
      PS_CHECK_OK(ps_slide_thumbnail_mean(o, l, 8, &to, &tw2, &th2, &err), err);
      PS_CHECK(ta && to && tw == tw2 && th == th2 && memcmp(ta, to, sizeof(double) * (size_t)(tw * th * 3)) == 0);
      /* And the in-memory version of the same. */
      g_autofree double *tm = g_new(double, (size_t)(tw * th * 3));
      PS_CHECK_OK(ps_slide_read_level_rgb(o, l, 1, pa, &err), err);
      ps_rgb_thumbnail_mean(pa, W, H, 8, tm);
      PS_CHECK(memcmp(tm, to, sizeof(double) * (size_t)(tw * th * 3)) == 0);
    }
  }
  if (n_direct >= ps_slide_level_count(o))
    PS_CHECK_MSG(ps_slide_direct_why(a) == NULL, "%s: %s", path, ps_slide_direct_why(a));
  else if (n_direct == 0)
    check_fallback(path, why_part);
  else
    PS_CHECK_MSG(ps_slide_direct_why(a) && strstr(ps_slide_direct_why(a), why_part), "%s: reason '%s' lacks '%s'",
                 path, ps_slide_direct_why(a) ? ps_slide_direct_why(a) : "(none)", why_part);
}

/* The slide is read by OpenSlide for a reason containing why_part, and
 * forcing tiffload is an error that says so. */
static void check_fallback(const char *path, const char *why_part) {
  GError *err = NULL;
  g_autoptr(ps_slide) a = ps_slide_open(path, &err);
  PS_CHECK_OK(a != NULL, err);
  if (!a) return;
  for (int l = 0; l < ps_slide_level_count(a); l++) PS_CHECK(!ps_slide_level_direct(a, l));
  {
    const char *why = ps_slide_direct_why(a);
    PS_CHECK_MSG(why && strstr(why, why_part), "%s: reason '%s' lacks '%s'", path, why ? why : "(none)", why_part);
    /* Forcing tiffload is an error that says why. */
    g_autoptr(ps_slide) t = ps_slide_open_with(path, PS_SLIDE_READER_TIFF, &err);
    PS_CHECK(t == NULL && err && strstr(err->message, why_part) && strstr(err->message, path));
    g_clear_error(&err);
  }
}

int main(void) {
  PS_CHECK(VIPS_INIT("test_slide_reader") == 0);
  ps_slide_reader r;
  PS_CHECK(ps_slide_reader_from_name("tiff", &r) && r == PS_SLIDE_READER_TIFF);
  PS_CHECK(ps_slide_reader_from_name("openslide", &r) && r == PS_SLIDE_READER_OPENSLIDE);
  PS_CHECK(ps_slide_reader_from_name("auto", &r) && r == PS_SLIDE_READER_AUTO);
  PS_CHECK(!ps_slide_reader_from_name("jpeg", &r));

  g_autofree char *svs =
      g_build_filename(env_dir("PATHSEG_TEST_DATA", "tests/data"), "CMU-1-Small-Region.svs", NULL);
#ifdef PS_SLIDE_DIRECT_TIFF
  const gboolean direct = TRUE;
#else
  const gboolean direct = FALSE;
#endif
  /* The real slide: Aperio, JPEG tiles tagged RGB. */
  compare_readers(svs, direct, "libtiff");
  {
    GError *err = NULL;
    g_autoptr(ps_slide) t = ps_slide_open_with(svs, PS_SLIDE_READER_TIFF, &err);
    PS_CHECK_OK((t != NULL) == direct, err);
    g_clear_error(&err);
  }

  g_autofree char *tmp = g_dir_make_tmp("ps-slide-reader-XXXXXX", NULL);
  struct {
    const char *name;
    VipsForeignTiffCompression compression;
    int q;
    int direct; /* levels read directly */
  } kinds[] = {
      {"jpeg420.tif", VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, 75, 4}, /* YCbCr, chroma subsampled */
      {"jpeg444.tif", VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, 95, 4}, /* YCbCr, full chroma */
      /* Lossless: levels 2 and 3 (150 x 90, 75 x 45) are smaller than a
       * 128 px tile, which OpenSlide's libtiff path draws white. */
      {"lzw.tif", VIPS_FOREIGN_TIFF_COMPRESSION_LZW, 75, 2},
      {"deflate.tif", VIPS_FOREIGN_TIFF_COMPRESSION_DEFLATE, 75, 2},
      {"none.tif", VIPS_FOREIGN_TIFF_COMPRESSION_NONE, 75, 2},
  };
  for (size_t k = 0; k < G_N_ELEMENTS(kinds); k++) {
    /* 600 x 360 halves exactly down to 75 x 45: downsamples 2, 4, 8; edge
     * tiles are partial at every level. */
    g_autofree char *path = write_vips_tiff(tmp, kinds[k].name, 600, 360, 3, kinds[k].compression, kinds[k].q);
    compare_readers(path, direct ? kinds[k].direct : 0, kinds[k].direct < 4 ? "smaller than a" : "");
  }
  {
    /* 613 x 389: the levels' downsamples are not whole numbers, OpenSlide
     * resamples them (their pixels are not the TIFF's), so only level 0
     * is read directly. */
    g_autofree char *path = write_vips_tiff(tmp, "odd.tif", 613, 389, 3, VIPS_FOREIGN_TIFF_COMPRESSION_JPEG, 75);
    compare_readers(path, direct ? 1 : 0, direct ? "not a whole number" : "libtiff");
  }
#ifdef PS_SLIDE_DIRECT_TIFF
  /* Fallbacks, each for its reason. */
  g_autofree char *rgba = write_vips_tiff(tmp, "rgba.tif", 300, 200, 4, VIPS_FOREIGN_TIFF_COMPRESSION_LZW, 75);
  compare_readers(rgba, 0, "not 8-bit RGB");
  g_autofree char *missing = write_tiff_missing_tile(tmp, 300, 200, 3);
  /* OpenSlide 3.4's generic-TIFF reader fails on a missing tile (its Aperio
   * reader draws it transparent); either way OpenSlide's answer is kept. */
  check_fallback(missing, "missing tiles");
  {
    GError *err = NULL;
    g_autoptr(ps_slide) s = ps_slide_open(missing, &err);
    PS_CHECK_OK(s != NULL, err);
    uint8_t px[4 * 4];
    PS_CHECK_OK(s && ps_slide_read_region(s, 10, 10, 0, 4, 1, px, &err), err);
    PS_CHECK(px[3] == 255 && px[0] == pattern(10, 10, 0) && px[1] == pattern(10, 10, 1));
  }
#endif
  ps_test_rm_tree(tmp);
  PS_CHECK(!g_file_test(tmp, G_FILE_TEST_EXISTS));
  return ps_test_finish();
}
