/* describe.c — descriptors of a mask over its image (describe.h). */
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

void ps_describe(const uint8_t *rgb, const uint8_t *mask, int w, int h, int min_component,
                 int32_t *scratch, ps_descriptors *out) {
  memset(out, 0, sizeof *out);
  int32_t *label = scratch ? scratch : malloc(sizeof(int32_t) * (size_t)w * h);
  int32_t *stack = malloc(sizeof(int32_t) * (size_t)w * h);
  memset(label, 0, sizeof(int32_t) * (size_t)w * h);
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
        /* Edges between a mask pixel and a non-mask pixel (or the border). */
        perimeter += (x == 0 || !mask[i - 1]) + (x == w - 1 || !mask[i + 1]) +
                     (y == 0 || !mask[i - w]) + (y == h - 1 || !mask[i + w]);
      } else {
        for (int c = 0; c < 3; c++) out_rgb[c] += p[c];
      }
    }
  /* 8-connected components by flood fill (explicit stack, no recursion). */
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
    /* Small specks keep their label but do not count. */
    if (size > largest) largest = size;
  }
  free(stack);
  if (!scratch) free(label);

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
