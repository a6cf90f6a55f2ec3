/* fuzz_annotations.c — libFuzzer target for the slide annotation loader of
 * the preprocessing plugin (plugins/preprocess/annotations.c): QuPath
 * GeoJSON, or ASAP XML through plugins/converters/asap_xml.c.
 *
 * The input is written to a file without an extension in a private
 * temporary directory, so the loader sniffs the format from the first
 * non-blank byte (both parsers are reached). A rejected input must come with
 * an error naming the file; an accepted one has finite bounding boxes over
 * rings of at least 3 vertices, is clipped to an image and rasterised into a
 * small tile at a position and scale taken from the input. */
#include <math.h>
#include <string.h>

#include "annotations.h"
#include "fuzz_common.h"

#define SIZE 24

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *path = fuzz_write_temp("annotations", data, size);
  static const char *const exclude[] = {"Exclusion", "Other", NULL};
  GError *err = NULL;
  pp_annotations *a = pp_annotations_load(path, exclude, &err);
  if (!a) {
    fuzz_require(err && strstr(err->message, path), "an error naming the file");
    g_error_free(err);
    fuzz_tmp_end();
    return 0;
  }
  for (int i = 0; i < a->n; i++) {
    const pp_polygon *p = &a->polys[i];
    fuzz_require(p->n_rings >= 1, "polygons have a ring");
    for (int r = 0; r < p->n_rings; r++) fuzz_require(p->rings[r].n >= 3, "rings have at least 3 vertices");
    fuzz_require(isfinite(p->x0) && isfinite(p->y0) && p->x0 <= p->x1 && p->y0 <= p->y1, "finite bounding boxes");
  }
  int positives = pp_annotations_positives(a);
  fuzz_require(positives >= 0 && positives <= a->n, "positives counted");
  /* Position and scale from the input's first bytes: scale 2^-6 .. 2^25. */
  double scale = ldexp(1.0, size > 0 ? (int)(data[0] % 32) - 6 : 0);
  double x0 = size > 1 ? (data[1] - 128.0) * scale : 0, y0 = size > 2 ? (data[2] - 128.0) * scale : 0;
  static uint8_t mask[SIZE * SIZE];
  double *xs = g_new(double, (size_t)pp_annotations_max_vertices(a));
  pp_annotations_rasterise(a, x0, y0, scale, SIZE, mask, xs);
  for (int i = 0; i < SIZE * SIZE; i++) fuzz_require(mask[i] == 0 || mask[i] == 255, "mask values 0 or 255");
  int before = a->n;
  int dropped = pp_annotations_clip_to(a, 1000, 800);
  fuzz_require(dropped >= 0 && a->n == before - dropped, "clipping drops what it reports");
  pp_annotations_rasterise(a, 0, 0, 1000.0 / SIZE, SIZE, mask, xs);
  g_free(xs);
  pp_annotations_free(a);
  fuzz_tmp_end();
  return 0;
}
