/* describe.c — descriptors of a mask over its image (describe.h). One pass
 * over the rows: integer sums for area, perimeter, centroid and colours,
 * and 8-connected components labelled by runs (union-find over the runs of
 * each row against the row above) instead of a per-pixel flood fill, so
 * that a 256 px tile costs a few hundred microseconds less and allocates
 * nothing. */
#include "describe.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *location_words(double x, double y) {
  static const char *const grid[3][3] = {
      {"upper left", "upper centre", "upper right"},
      {"centre left", "centre", "centre right"},
      {"lower left", "lower centre", "lower right"},
  };
  int col = x < 1.0 / 3 ? 0 : x < 2.0 / 3 ? 1 : 2;
  int row = y < 1.0 / 3 ? 0 : y < 2.0 / 3 ? 1 : 2;
  return grid[row][col];
}

static const char *colour_words(const double rgb[3]) {
  double r = rgb[0], g = rgb[1], b = rgb[2];
  double bright = (r + g + b) / 3;
  if (bright > 215) return "pale";
  if (r > b + 25 && g > b + 5 && r > 100 && g < r - 20) return "brown (DAB-positive)";
  if (b > r - 10 && bright < 150) return "basophilic (purple)";
  if (r > b + 10 && r > g + 30) return "eosinophilic (pink)";
  if (b > r) return "bluish";
  return "amphophilic";
}

/* Union-find over run labels: parent[l] >= 0 links to the parent, a root
 * holds minus its component's size. Path halving keeps the trees flat. */
static int32_t uf_find(int32_t *parent, int32_t l) {
  while (parent[l] >= 0) {
    int32_t p = parent[l];
    if (parent[p] >= 0) parent[l] = parent[p];
    l = p;
  }
  return l;
}

/* Joins the trees of roots a and b (the larger absorbs the smaller); the new root. */
static int32_t uf_union(int32_t *parent, int32_t a, int32_t b) {
  if (a == b) return a;
  if (parent[a] > parent[b]) { /* sizes are negative: a is the smaller */
    int32_t t = a;
    a = b;
    b = t;
  }
  parent[a] += parent[b];
  parent[b] = a;
  return a;
}

/* A run of mask pixels in one row: columns [start, end] and its label. */
typedef struct {
  int32_t start, end, label;
} run;

/* The first column >= x whose mask byte is zero (want_set 0) or nonzero
 * (want_set 1), or w: eight bytes at a time over uniform stretches. */
static int next_edge(const uint8_t *m, int x, int w, int want_set) {
  const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
  for (; x + 8 <= w; x += 8) {
    uint64_t v;
    memcpy(&v, m + x, 8);
    if (want_set ? v != 0 : ((v - ones) & ~v & highs) != 0) break; /* a nonzero / a zero byte */
  }
  while (x < w && (m[x] != 0) != want_set) x++;
  return x;
}

/* The colour sums run over every byte of the tile: an AVX2 clone where the
 * CPU has it (chosen at load time). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define PS_DESCRIBE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define PS_DESCRIBE_CLONES
#endif

/* Adds the R, G and B bytes of n pixels to s. Blocks of 8 pixels are
 * summed in 24 lanes (byte j of a block is channel j % 3), which the
 * compiler vectorises (-O3); 2^16 blocks cannot overflow a 32-bit lane. */
PS_DESCRIBE_CLONES static void sum_rgb(const uint8_t *p, size_t n, uint64_t s[3]) {
  size_t i = 0;
  while (n - i >= 8) {
    const size_t blocks = MIN((n - i) / 8, (size_t)1 << 16);
    uint32_t acc[24] = {0};
    for (size_t b = 0; b < blocks; b++, i += 8)
      for (int j = 0; j < 24; j++) acc[j] += p[3 * i + (size_t)j];
    for (int j = 0; j < 24; j++) s[j % 3] += acc[j];
  }
  for (; i < n; i++) s[0] += p[3 * i], s[1] += p[3 * i + 1], s[2] += p[3 * i + 2];
}

/* Pixels that two rows' runs (sorted, disjoint) have in common. */
static int64_t runs_overlap(const run *a, size_t na, const run *b, size_t nb) {
  int64_t common = 0;
  for (size_t i = 0, j = 0; i < na && j < nb;) {
    const int32_t lo = MAX(a[i].start, b[j].start), hi = MIN(a[i].end, b[j].end);
    if (hi >= lo) common += hi - lo + 1;
    if (a[i].end < b[j].end)
      i++;
    else
      j++;
  }
  return common;
}

void ps_describe(const uint8_t *rgb, const uint8_t *mask, int w, int h, int min_component,
                 int32_t *scratch, ps_descriptors *out) {
  memset(out, 0, sizeof *out);
  /* Scratch: one union-find slot per run (at most ceil(w / 2) runs a row)
   * and the runs of the previous and the current row. A tile's h * w
   * labels are more than that, so the stage's per-thread scratch serves
   * and nothing is allocated per tile. */
  const size_t per_row = ((size_t)w + 1) / 2;
  const size_t need = per_row * (size_t)h + 2 * per_row * (sizeof(run) / sizeof(int32_t));
  int32_t *mem = scratch && need <= (size_t)w * h ? scratch : malloc(need * sizeof(int32_t));
  int32_t *parent = mem;
  run *prev = (run *)(mem + per_row * (size_t)h), *cur = prev + per_row;
  size_t n_prev = 0;
  int32_t labels = 0;

  /* Everything follows from the runs of mask pixels of each row. The
   * perimeter counts the edges between a mask pixel and a non-mask pixel or
   * the border: two per run across the row, and between two rows the pixels
   * set in exactly one of them (|A| + |B| - 2 |A and B|), the border
   * counting as an empty row. Sums are exact integers (the double sums of
   * the pixel-by-pixel definition are exact too, so the results are the
   * same bits). */
  int64_t area = 0, perimeter = 0, sum_x = 0, sum_y = 0, prev_area = 0;
  uint64_t in_rgb[3] = {0}, out_rgb[3] = {0};
  for (int y = 0; y < h; y++) {
    const uint8_t *m = mask + (size_t)y * w, *p = rgb + (size_t)y * w * 3;
    int64_t row_area = 0;
    size_t n_cur = 0, j0 = 0;
    int gap = 0; /* where the stretch of non-mask pixels before the next run starts */
    for (int x = next_edge(m, 0, w, 1); x < w; x = next_edge(m, x, w, 1)) {
      const int s = x;
      sum_rgb(p + 3 * (size_t)gap, (size_t)(s - gap), out_rgb);
      x = next_edge(m, x, w, 0);
      gap = x;
      run r = {s, x - 1, -1};
      const int64_t len = x - s;
      row_area += len;
      sum_x += (int64_t)(s + x - 1) * len / 2;
      sum_rgb(p + 3 * (size_t)s, (size_t)len, in_rgb);
      /* 8-connected components: the run joins every run of the row above
       * that touches it, diagonals included. */
      while (j0 < n_prev && prev[j0].end < s - 1) j0++;
      for (size_t j = j0; j < n_prev && prev[j].start <= r.end + 1; j++) {
        int32_t root = uf_find(parent, prev[j].label);
        r.label = r.label < 0 ? root : uf_union(parent, r.label, root);
      }
      if (r.label < 0) {
        r.label = labels++;
        parent[r.label] = 0;
      }
      parent[r.label] -= (int32_t)len;
      cur[n_cur++] = r;
    }
    sum_rgb(p + 3 * (size_t)gap, (size_t)(w - gap), out_rgb);
    perimeter += 2 * (int64_t)n_cur + prev_area + row_area - 2 * runs_overlap(prev, n_prev, cur, n_cur);
    area += row_area;
    sum_y += row_area * y;
    prev_area = row_area;
    run *t = prev;
    prev = cur;
    cur = t;
    n_prev = n_cur;
  }
  perimeter += prev_area; /* the bottom border */
  /* Small specks do not count as components but can be the largest. */
  int components = 0, largest = 0;
  for (int32_t l = 0; l < labels; l++)
    if (parent[l] < 0) {
      int size = -parent[l];
      if (size >= min_component) components++;
      if (size > largest) largest = size;
    }
  if (mem != scratch) free(mem);
  const double sx = (double)sum_x + 0.5 * (double)area, sy = (double)sum_y + 0.5 * (double)area;
  double in_d[3], out_d[3];
  for (int c = 0; c < 3; c++) {
    in_d[c] = (double)in_rgb[c];
    out_d[c] = (double)out_rgb[c];
  }

  int64_t total = (int64_t)w * h;
  out->area_fraction = total ? (double)area / (double)total : 0;
  out->components = components;
  out->largest_component = largest;
  if (area) {
    out->centroid_x = sx / (double)area / w;
    out->centroid_y = sy / (double)area / h;
    for (int c = 0; c < 3; c++) out->mean_rgb[c] = in_d[c] / (double)area;
    out->irregularity = (double)perimeter * perimeter / (4.0 * G_PI * (double)area);
  } else {
    out->centroid_x = out->centroid_y = -1;
  }
  if (total - area)
    for (int c = 0; c < 3; c++) out->background_rgb[c] = out_d[c] / (double)(total - area);
  out->location = area ? location_words(out->centroid_x, out->centroid_y) : "nowhere";
  double f = out->area_fraction;
  out->extent = area == 0 ? "absent" : f < 0.05 ? "focal" : f < 0.25 ? "patchy" : f < 0.6 ? "extensive" : "diffuse";
  out->colour = area ? colour_words(out->mean_rgb) : "none";
  /* The pixel-edge perimeter overestimates a digital disc by about 4/pi, so
   * normalise by the irregularity of a per-piece disc. */
  double per_piece = components > 0 ? out->irregularity / components : out->irregularity;
  double rel = per_piece / (16.0 / G_PI / G_PI * 1.0);
  out->shape = area == 0 ? "none" : rel < 1.3 ? "smooth" : rel < 2.0 ? "slightly irregular" : rel < 3.5 ? "irregular" : "highly irregular";
}
