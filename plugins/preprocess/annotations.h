/* annotations.h — polygon annotations of a whole slide (ASAP XML or a QuPath
 * GeoJSON FeatureCollection, level-0 pixel coordinates) and their
 * rasterisation into tile masks: pixels inside a positive polygon and
 * outside every exclusion polygon.
 *
 * A polygon is a list of rings (outer ring, then holes) filled with the
 * even-odd rule; a pixel is inside when its centre is. Groups (ASAP
 * PartOfGroup, QuPath classification name) named in `exclude` are exclusions,
 * all others positives. */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef struct pp_ring {
  double *xy; /* (n, 2) level-0 x, y */
  int n;
} pp_ring;

typedef struct pp_polygon {
  pp_ring *rings;
  int n_rings;
  gboolean exclusion;
  double x0, y0, x1, y1; /* bounding box */
  char *group;
} pp_polygon;

typedef struct pp_annotations {
  pp_polygon *polys;
  int n;
} pp_annotations;

void pp_annotations_free(pp_annotations *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(pp_annotations, pp_annotations_free)

/* Reads `path` (.xml: ASAP; .json/.geojson: GeoJSON; otherwise sniffed from
 * the first non-blank character). `exclude`: NULL-terminated group names
 * (case-insensitive). Errors name the file and what is wrong. */
pp_annotations *pp_annotations_load(const char *path, const char *const *exclude, GError **error);

/* Drops the polygons wholly outside the (width x height) level-0 image and
 * returns how many were dropped (each a logged skip for the caller). */
int pp_annotations_clip_to(pp_annotations *a, int64_t width, int64_t height);

/* Counts positive polygons. */
int pp_annotations_positives(const pp_annotations *a);

/* mask: (size, size) u8, 255 inside. Output pixel (i, j) has its centre at
 * level-0 (x0 + (i + 0.5) * scale, y0 + (j + 0.5) * scale). xs: scratch of at
 * least pp_annotations_max_vertices() doubles. */
void pp_annotations_rasterise(const pp_annotations *a, double x0, double y0, double scale, int size,
                              uint8_t *mask, double *xs);
int pp_annotations_max_vertices(const pp_annotations *a);
