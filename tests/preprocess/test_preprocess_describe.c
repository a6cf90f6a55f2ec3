/* test_preprocess_describe.c — ps_describe (plugins/benchmark/describe.c, run-based
 * component labelling and integer sums) against the straightforward
 * definition written out here: per-pixel perimeter edges, double sums, and
 * 8-connected components by flood fill. Every field must be equal (doubles
 * bit for bit, the same words), with and without caller scratch, on random
 * masks of several densities (many specks and diagonal contacts), blocky
 * tissue-like masks, empty and full masks, one-row and one-column images and
 * odd sizes, for several min_component values. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "describe.h"
#include "ps_test.h"

/* The definition: what the descriptors mean, pixel by pixel. */
static void reference(const uint8_t *rgb, const uint8_t *mask, int w, int h, int min_component,
                      ps_descriptors *out) {
  memset(out, 0, sizeof *out);
  int32_t *label = calloc((size_t)w * h + 1, sizeof(int32_t));
  int32_t *stack = malloc(sizeof(int32_t) * ((size_t)w * h + 1));
  int64_t area = 0, perimeter = 0;
  double sx = 0, sy = 0, in_rgb[3] = {0}, out_rgb[3] = {0};
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t i = (size_t)y * w + x;
      const uint8_t *p = rgb + 3 * i;
      if (mask[i]) {
        area++;
        sx += x + 0.5;
        sy += y + 0.5;
        for (int c = 0; c < 3; c++) in_rgb[c] += p[c];
        perimeter += (x == 0 || !mask[i - 1]) + (x == w - 1 || !mask[i + 1]) +
                     (y == 0 || !mask[i - w]) + (y == h - 1 || !mask[i + w]);
      } else {
        for (int c = 0; c < 3; c++) out_rgb[c] += p[c];
      }
    }
  int components = 0, largest = 0;
  for (int64_t start = 0; start < (int64_t)w * h; start++) {
    if (!mask[start] || label[start]) continue;
    int32_t id = components + 1, size = 0;
    int64_t top = 0;
    stack[top++] = (int32_t)start;
    label[start] = id;
    while (top > 0) {
      int32_t cur = stack[--top];
      size++;
      int cx = cur % w, cy = cur / w;
      for (int dy = -1; dy <= 1; dy++)
        for (int dx = -1; dx <= 1; dx++) {
          int nx = cx + dx, ny = cy + dy;
          if ((dx || dy) && nx >= 0 && ny >= 0 && nx < w && ny < h) {
            int32_t n = ny * w + nx;
            if (mask[n] && !label[n]) {
              label[n] = id;
              stack[top++] = n;
            }
          }
        }
    }
    if (size >= min_component) components++;
    if (size > largest) largest = size;
  }
  free(stack);
  free(label);
  int64_t total = (int64_t)w * h;
  out->area_fraction = total ? (double)area / (double)total : 0;
  out->components = components;
  out->largest_component = largest;
  if (area) {
    out->centroid_x = sx / (double)area / w;
    out->centroid_y = sy / (double)area / h;
    for (int c = 0; c < 3; c++) out->mean_rgb[c] = in_rgb[c] / (double)area;
    out->irregularity = (double)perimeter * perimeter / (4.0 * G_PI * (double)area);
  } else {
    out->centroid_x = out->centroid_y = -1;
  }
  if (total - area)
    for (int c = 0; c < 3; c++) out->background_rgb[c] = out_rgb[c] / (double)(total - area);
}

static uint32_t rng_state = 12345;
static uint32_t next(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 17, rng_state ^= rng_state << 5;
  return rng_state;
}

/* kind 0: random pixels with probability density/100; 1: 16 px cells
 * (a tissue mask upsampled); 2: random discs; 3: empty; 4: full;
 * 5: diagonal chains (components that only touch at corners). */
static void make_mask(uint8_t *m, int w, int h, int kind, int density) {
  memset(m, 0, (size_t)w * h);
  if (kind == 0)
    for (size_t i = 0; i < (size_t)w * h; i++) m[i] = next() % 100 < (uint32_t)density ? 255 : 0;
  if (kind == 1) {
    uint8_t cells[64][64];
    for (int j = 0; j < 64; j++)
      for (int i = 0; i < 64; i++) cells[j][i] = next() % 100 < (uint32_t)density;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) m[(size_t)y * w + x] = cells[(y / 16) % 64][(x / 16) % 64] ? 255 : 0;
  }
  if (kind == 2)
    for (int d = 0; d < 1 + density / 10; d++) {
      int cx = (int)(next() % (uint32_t)w), cy = (int)(next() % (uint32_t)h), r = 1 + (int)(next() % 40);
      for (int y = MAX(cy - r, 0); y < MIN(cy + r + 1, h); y++)
        for (int x = MAX(cx - r, 0); x < MIN(cx + r + 1, w); x++)
          if ((x - cx) * (x - cx) + (y - cy) * (y - cy) <= r * r) m[(size_t)y * w + x] = 1 + next() % 255;
    }
  if (kind == 4) memset(m, 255, (size_t)w * h);
  if (kind == 5)
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) m[(size_t)y * w + x] = ((x + y) % 3 == 0 || (x - y + 300) % 7 == 0) ? 255 : 0;
}

static gboolean same(const ps_descriptors *a, const ps_descriptors *b) {
  return memcmp(&a->area_fraction, &b->area_fraction, sizeof(double)) == 0 && a->components == b->components &&
         a->largest_component == b->largest_component &&
         memcmp(&a->irregularity, &b->irregularity, sizeof(double)) == 0 &&
         memcmp(&a->centroid_x, &b->centroid_x, sizeof(double)) == 0 &&
         memcmp(&a->centroid_y, &b->centroid_y, sizeof(double)) == 0 &&
         memcmp(a->mean_rgb, b->mean_rgb, sizeof a->mean_rgb) == 0 &&
         memcmp(a->background_rgb, b->background_rgb, sizeof a->background_rgb) == 0;
}

int main(void) {
  static const int sizes[][2] = {{256, 256}, {255, 17}, {1, 1}, {1, 40}, {40, 1}, {3, 3}, {2, 9}, {97, 64}};
  static const int mins[] = {1, 4, 64};
  int cases = 0, multi = 0;
  for (size_t si = 0; si < G_N_ELEMENTS(sizes); si++)
    for (int kind = 0; kind <= 5; kind++)
      for (int density = 5; density <= 95; density += 30) {
        const int w = sizes[si][0], h = sizes[si][1];
        g_autofree uint8_t *rgb = g_malloc((size_t)w * h * 3), *mask = g_malloc((size_t)w * h);
        for (size_t i = 0; i < (size_t)w * h * 3; i++) rgb[i] = (uint8_t)next();
        make_mask(mask, w, h, kind, density);
        g_autofree int32_t *scratch = g_new(int32_t, (size_t)w * h);
        for (size_t mi = 0; mi < G_N_ELEMENTS(mins); mi++) {
          ps_descriptors want, got, got_alloc;
          reference(rgb, mask, w, h, mins[mi], &want);
          ps_describe(rgb, mask, w, h, mins[mi], scratch, &got);
          ps_describe(rgb, mask, w, h, mins[mi], NULL, &got_alloc);
          if (!same(&want, &got) || !same(&want, &got_alloc))
            g_printerr("w %d h %d kind %d density %d min %d: components %d/%d largest %d/%d perimeter-based "
                       "irregularity %.17g/%.17g area %.17g/%.17g\n",
                       w, h, kind, density, mins[mi], want.components, got.components, want.largest_component,
                       got.largest_component, want.irregularity, got.irregularity, want.area_fraction,
                       got.area_fraction);
          PS_CHECK(same(&want, &got));
          PS_CHECK(same(&want, &got_alloc));
          /* The words follow from the numbers; they must agree as well. */
          PS_CHECK(!strcmp(got.location, got.area_fraction > 0 ? got.location : "nowhere"));
          multi += want.components > 1;
          cases++;
        }
      }
  g_print("%d cases, %d with several components\n", cases, multi);
  PS_CHECK(multi > 20); /* the cases exercise the merging of runs */
  return ps_test_finish();
}
