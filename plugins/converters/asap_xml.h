/* asap_xml.h — ASAP annotation XML (Camelyon16/17 lesion annotations) and a
 * polygon rasteriser. Self-contained: GLib only (GMarkupParser), so the slide
 * preprocessing plugin compiles this file in as well.
 *
 *   <ASAP_Annotations><Annotations>
 *     <Annotation Name=".." Type="Polygon" PartOfGroup="_0">
 *       <Coordinates><Coordinate Order="0" X=".." Y=".."/>...</Coordinates>
 *     </Annotation>...
 *   </Annotations><AnnotationGroups>...</AnnotationGroups></ASAP_Annotations>
 *
 * Coordinates are level-0 pixels. Groups `_0`, `_1`, `Tumor` (and the
 * lower-case spellings) are tumour (positive); `_2` (Camelyon16) and
 * `Exclusion` (Camelyon17) are non-tumour holes carved out of the positives;
 * other groups are kept but ignored by the rasteriser. Annotations of Type
 * Dot / PointSet (or with fewer than 3 points) carry no area and are dropped;
 * Spline is drawn as the polygon of its control points.
 *
 * Pixel convention: a raster pixel (row i, column j) covers the level-0 box
 * [x0 + j*ds, x0 + (j+1)*ds) x [y0 + i*ds, y0 + (i+1)*ds) and is inside a
 * polygon when its centre is (even-odd rule). */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef struct ps_asap_polygon {
  char *name, *group, *type;
  int n;      /* points */
  double *xy; /* (n, 2): level-0 x, y in Order */
  int sign;   /* +1 positive, -1 carved out, 0 ignored (see ps_asap_group_sign) */
} ps_asap_polygon;

typedef struct ps_asap_annotations {
  GPtrArray *polygons; /* ps_asap_polygon* */
  int dropped;         /* annotations without area (Dot, PointSet, < 3 points) */
} ps_asap_annotations;

/* +1 for `_0`, `_1`, `Tumor`/`tumor`; -1 for `_2`, `Exclusion`/`exclusion`; 0 otherwise. */
int ps_asap_group_sign(const char *group);

/* `name` names the text in errors (a file name). */
ps_asap_annotations *ps_asap_parse(const char *text, gssize len, const char *name, GError **error);
ps_asap_annotations *ps_asap_read(const char *path, GError **error);
void ps_asap_free(ps_asap_annotations *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_asap_annotations, ps_asap_free)

/* Level-0 bounding box {xmin, ymin, xmax, ymax} of the polygons of `sign`
 * (0: all); FALSE when there are none. */
gboolean ps_asap_bounds(const ps_asap_annotations *a, int sign, double box[4]);

/* mask: (h, w) u8, overwritten with 1 inside a positive polygon and outside
 * every negative one, else 0. The raster's pixel (0, 0) starts at level-0
 * (x0, y0); one raster pixel is ds level-0 pixels. Returns the number of
 * positive pixels. */
int64_t ps_asap_rasterise(const ps_asap_annotations *a, uint8_t *mask, int w, int h, double x0, double y0,
                          double ds);

/* The scanline filler under the rasteriser, for other polygon formats:
 * calls span(user, row, col_begin, col_end) for each run [col_begin, col_end)
 * of raster pixels whose centres lie inside the polygon xy: (n, 2) (even-odd),
 * clipped to the w x h raster, with the same (x0, y0, ds) mapping as above. */
typedef void (*ps_polygon_span_fn)(void *user, int row, int col_begin, int col_end);
void ps_polygon_spans(const double *xy, int n, int w, int h, double x0, double y0, double ds,
                      ps_polygon_span_fn span, void *user);
