/* annotations.c — ASAP XML (through plugins/converters/asap_xml.c) and
 * QuPath GeoJSON polygons, and their scanline rasterisation into tile masks
 * (annotations.h). The rasteriser is our own because GeoJSON polygons have
 * holes (several rings filled together, even-odd), which asap_xml's
 * single-ring span filler does not cover. */
#include "annotations.h"

#include "asap_xml.h"

#include <json-glib/json-glib.h>
#include <math.h>
#include <pathseg/error.h>
#include <pathseg/json_depth.h>
#include <stdlib.h>
#include <string.h>

void pp_annotations_free(pp_annotations *a) {
  if (!a) return;
  for (int i = 0; i < a->n; i++) {
    for (int r = 0; r < a->polys[i].n_rings; r++) g_free(a->polys[i].rings[r].xy);
    g_free(a->polys[i].rings);
    g_free(a->polys[i].group);
  }
  g_free(a->polys);
  g_free(a);
}

static gboolean is_excluded(const char *group, const char *const *exclude) {
  for (size_t i = 0; group && exclude && exclude[i]; i++)
    if (g_ascii_strcasecmp(group, exclude[i]) == 0) return TRUE;
  return FALSE;
}

/* Appends a polygon (takes the rings) and computes its bounding box. */
static void add_polygon(GArray *polys, GArray *rings, const char *group, const char *const *exclude) {
  pp_polygon p = {0};
  p.n_rings = (int)rings->len;
  p.rings = (pp_ring *)g_array_free(rings, FALSE);
  p.group = g_strdup(group);
  p.exclusion = is_excluded(group, exclude);
  p.x0 = p.y0 = INFINITY;
  p.x1 = p.y1 = -INFINITY;
  for (int r = 0; r < p.n_rings; r++)
    for (int k = 0; k < p.rings[r].n; k++) {
      p.x0 = MIN(p.x0, p.rings[r].xy[2 * k]);
      p.x1 = MAX(p.x1, p.rings[r].xy[2 * k]);
      p.y0 = MIN(p.y0, p.rings[r].xy[2 * k + 1]);
      p.y1 = MAX(p.y1, p.rings[r].xy[2 * k + 1]);
    }
  g_array_append_val(polys, p);
}

static pp_annotations *finish(GArray *polys) {
  pp_annotations *a = g_new0(pp_annotations, 1);
  a->n = (int)polys->len;
  a->polys = (pp_polygon *)g_array_free(polys, FALSE);
  return a;
}

static void free_polys(GArray *polys) {
  pp_annotations *a = finish(polys);
  pp_annotations_free(a);
}

/* ---------------------------------------------------------------------- */
/* GeoJSON (QuPath export): FeatureCollection, a bare array of features, a
 * Feature or a geometry. */

/* Typed member access that never logs a json-glib critical on input of the
 * wrong type (json_object_get_*_member assert the type): NULL when absent,
 * null or of another type. */
static JsonObject *obj_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static const char *str_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING ? json_node_get_string(n)
                                                                                      : NULL;
}

/* Element i of a vertex as a number (JSON integer or real). */
static gboolean number_element(JsonArray *a, guint i, double *v) {
  JsonNode *n = json_array_get_element(a, i);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return FALSE;
  GType t = json_node_get_value_type(n);
  if (t != G_TYPE_INT64 && t != G_TYPE_DOUBLE) return FALSE;
  *v = json_node_get_double(n);
  return TRUE;
}

static gboolean read_ring(JsonArray *coords, pp_ring *ring, const char *path, GError **error) {
  guint n = json_array_get_length(coords);
  ring->xy = g_new(double, 2 * (size_t)MAX(n, 1));
  ring->n = 0;
  for (guint k = 0; k < n; k++) {
    JsonNode *pt = json_array_get_element(coords, k);
    JsonArray *xy = JSON_NODE_HOLDS_ARRAY(pt) ? json_node_get_array(pt) : NULL;
    double x = 0, y = 0;
    if (!xy || json_array_get_length(xy) < 2 || !number_element(xy, 0, &x) || !number_element(xy, 1, &y)) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a polygon vertex is not [x, y]", path);
      return FALSE;
    }
    if (!isfinite(x) || !isfinite(y)) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a polygon vertex is not finite", path);
      return FALSE;
    }
    ring->xy[2 * ring->n] = x;
    ring->xy[2 * ring->n + 1] = y;
    ring->n++;
  }
  return TRUE;
}

/* coordinates of one Polygon: [ring, hole, ...]. */
static gboolean add_geojson_polygon(GArray *polys, JsonArray *rings_json, const char *group,
                                    const char *const *exclude, const char *path, GError **error) {
  GArray *rings = g_array_new(FALSE, TRUE, sizeof(pp_ring));
  for (guint r = 0; r < json_array_get_length(rings_json); r++) {
    JsonNode *rn = json_array_get_element(rings_json, r);
    pp_ring ring = {0};
    if (!JSON_NODE_HOLDS_ARRAY(rn) || !read_ring(json_node_get_array(rn), &ring, path, error)) {
      if (error && !*error)
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a polygon ring is not an array", path);
      g_free(ring.xy);
      for (guint k = 0; k < rings->len; k++) g_free(g_array_index(rings, pp_ring, k).xy);
      g_array_free(rings, TRUE);
      return FALSE;
    }
    if (ring.n >= 3)
      g_array_append_val(rings, ring);
    else
      g_free(ring.xy);
  }
  if (rings->len == 0) {
    g_array_free(rings, TRUE);
    return TRUE;
  }
  add_polygon(polys, rings, group, exclude);
  return TRUE;
}

static const char *feature_group(JsonObject *feature) {
  JsonObject *props = obj_member(feature, "properties");
  if (!props) return NULL;
  JsonObject *cls_obj = obj_member(props, "classification");
  const char *name = cls_obj ? str_member(cls_obj, "name") : NULL;
  if (name) return name;
  const char *cls = str_member(props, "classification");
  return cls ? cls : str_member(props, "name");
}

static gboolean add_geometry(GArray *polys, JsonObject *geom, const char *group, const char *const *exclude,
                             const char *path, GError **error) {
  const char *type = str_member(geom, "type");
  if (!type) type = "";
  JsonNode *cn = json_object_get_member(geom, "coordinates");
  if (strcmp(type, "Polygon") != 0 && strcmp(type, "MultiPolygon") != 0) return TRUE; /* points, lines */
  if (!cn || !JSON_NODE_HOLDS_ARRAY(cn)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a %s without a coordinates array", path, type);
    return FALSE;
  }
  JsonArray *c = json_node_get_array(cn);
  if (strcmp(type, "Polygon") == 0) return add_geojson_polygon(polys, c, group, exclude, path, error);
  for (guint i = 0; i < json_array_get_length(c); i++) {
    JsonNode *pn = json_array_get_element(c, i);
    if (!JSON_NODE_HOLDS_ARRAY(pn)) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a MultiPolygon member is not an array", path);
      return FALSE;
    }
    if (!add_geojson_polygon(polys, json_node_get_array(pn), group, exclude, path, error)) return FALSE;
  }
  return TRUE;
}

static gboolean add_feature(GArray *polys, JsonNode *node, const char *const *exclude, const char *path,
                            GError **error) {
  if (!JSON_NODE_HOLDS_OBJECT(node)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a feature is not an object", path);
    return FALSE;
  }
  JsonObject *f = json_node_get_object(node);
  JsonNode *gn = json_object_get_member(f, "geometry");
  if (gn && !JSON_NODE_HOLDS_NULL(gn) && !JSON_NODE_HOLDS_OBJECT(gn)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: a feature's geometry is not an object", path);
    return FALSE;
  }
  JsonObject *geom = gn ? obj_member(f, "geometry") : f;
  if (!geom) return TRUE; /* a feature with a null geometry */
  JsonNode *gc = json_object_get_member(geom, "geometries"); /* GeometryCollection */
  if (gc && JSON_NODE_HOLDS_ARRAY(gc)) {
    JsonArray *arr = json_node_get_array(gc);
    for (guint i = 0; i < json_array_get_length(arr); i++) {
      JsonNode *g = json_array_get_element(arr, i);
      if (JSON_NODE_HOLDS_OBJECT(g) &&
          !add_geometry(polys, json_node_get_object(g), feature_group(f), exclude, path, error))
        return FALSE;
    }
    return TRUE;
  }
  return add_geometry(polys, geom, feature_group(f), exclude, path, error);
}

static pp_annotations *load_geojson(const char *path, const char *const *exclude, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  if (!ps_json_depth_ok(text, (gssize)len, PS_JSON_MAX_DEPTH)) { /* json-glib would overflow the stack */
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not JSON: nested deeper than %d", path, PS_JSON_MAX_DEPTH);
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new();
  GError *e = NULL;
  if (!json_parser_load_from_data(parser, text, (gssize)len, &e)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not JSON: %s", path, e->message);
    g_error_free(e);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  GArray *polys = g_array_new(FALSE, TRUE, sizeof(pp_polygon));
  JsonArray *features = NULL;
  if (root && JSON_NODE_HOLDS_ARRAY(root)) {
    features = json_node_get_array(root);
  } else if (root && JSON_NODE_HOLDS_OBJECT(root)) {
    JsonObject *o = json_node_get_object(root);
    JsonNode *fn = json_object_get_member(o, "features");
    if (fn && JSON_NODE_HOLDS_ARRAY(fn)) {
      features = json_node_get_array(fn);
    } else if (!add_feature(polys, root, exclude, path, error)) {
      free_polys(polys);
      return NULL;
    }
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: not a GeoJSON FeatureCollection", path);
    free_polys(polys);
    return NULL;
  }
  for (guint i = 0; features && i < json_array_get_length(features); i++)
    if (!add_feature(polys, json_array_get_element(features, i), exclude, path, error)) {
      free_polys(polys);
      return NULL;
    }
  return finish(polys);
}

/* ---------------------------------------------------------------------- */
/* ASAP XML: parsed by plugins/converters/asap_xml.c (compiled in). Its
 * group convention decides first (`_2`, `Exclusion`: carved out; `_0`, `_1`,
 * `Tumor`: positive); groups it does not know are positive unless named in
 * `exclude_groups`. */

static pp_annotations *load_asap(const char *path, const char *const *exclude, GError **error) {
  g_autoptr(ps_asap_annotations) asap = ps_asap_read(path, error);
  if (!asap) return NULL;
  GArray *polys = g_array_new(FALSE, TRUE, sizeof(pp_polygon));
  for (guint i = 0; i < asap->polygons->len; i++) {
    const ps_asap_polygon *q = g_ptr_array_index(asap->polygons, i);
    if (q->n < 3) continue;
    pp_ring ring = {g_memdup2(q->xy, sizeof(double) * 2 * (size_t)q->n), q->n};
    GArray *rings = g_array_new(FALSE, TRUE, sizeof(pp_ring));
    g_array_append_val(rings, ring);
    add_polygon(polys, rings, q->group, exclude);
    if (ps_asap_group_sign(q->group) < 0) g_array_index(polys, pp_polygon, polys->len - 1).exclusion = TRUE;
    if (ps_asap_group_sign(q->group) > 0) g_array_index(polys, pp_polygon, polys->len - 1).exclusion = FALSE;
  }
  return finish(polys);
}

pp_annotations *pp_annotations_load(const char *path, const char *const *exclude, GError **error) {
  if (!g_file_test(path, G_FILE_TEST_IS_REGULAR)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "annotations %s: no such file", path);
    return NULL;
  }
  if (g_str_has_suffix(path, ".xml") || g_str_has_suffix(path, ".XML")) return load_asap(path, exclude, error);
  if (g_str_has_suffix(path, ".json") || g_str_has_suffix(path, ".geojson")) return load_geojson(path, exclude, error);
  g_autofree char *head = NULL;
  if (!g_file_get_contents(path, &head, NULL, error)) return NULL;
  const char *c = head;
  while (*c && g_ascii_isspace(*c)) c++;
  return *c == '<' ? load_asap(path, exclude, error) : load_geojson(path, exclude, error);
}

int pp_annotations_clip_to(pp_annotations *a, int64_t width, int64_t height) {
  int kept = 0, dropped = 0;
  for (int i = 0; i < a->n; i++) {
    pp_polygon *p = &a->polys[i];
    if (p->x1 <= 0 || p->y1 <= 0 || p->x0 >= (double)width || p->y0 >= (double)height) {
      for (int r = 0; r < p->n_rings; r++) g_free(p->rings[r].xy);
      g_free(p->rings);
      g_free(p->group);
      dropped++;
    } else {
      a->polys[kept++] = *p;
    }
  }
  a->n = kept;
  return dropped;
}

int pp_annotations_positives(const pp_annotations *a) {
  int n = 0;
  for (int i = 0; i < a->n; i++) n += !a->polys[i].exclusion;
  return n;
}

int pp_annotations_max_vertices(const pp_annotations *a) {
  int m = 1;
  for (int i = 0; i < a->n; i++) {
    int v = 0;
    for (int r = 0; r < a->polys[i].n_rings; r++) v += a->polys[i].rings[r].n;
    m = MAX(m, v);
  }
  return m;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Sets row pixels whose centre lies inside polygon p on the line y to value. */
static void fill_row(const pp_polygon *p, double y, double x0, double scale, int size, uint8_t *row,
                     uint8_t value, double *xs) {
  int n = 0;
  for (int r = 0; r < p->n_rings; r++) {
    const double *v = p->rings[r].xy;
    int m = p->rings[r].n;
    for (int k = 0, j = m - 1; k < m; j = k++) {
      double ya = v[2 * j + 1], yb = v[2 * k + 1];
      if ((ya <= y) != (yb <= y)) /* half-open: a vertex on the line counts once */
        xs[n++] = v[2 * j] + (y - ya) * (v[2 * k] - v[2 * j]) / (yb - ya);
    }
  }
  if (n < 2) return;
  qsort(xs, (size_t)n, sizeof(double), cmp_double);
  for (int k = 0; k + 1 < n; k += 2) {
    /* pixel i is inside when xs[k] <= x0 + (i + 0.5) scale < xs[k + 1] */
    double a = ceil((xs[k] - x0) / scale - 0.5), b = ceil((xs[k + 1] - x0) / scale - 0.5);
    /* Clamped to [0, size] before the cast: crossings far outside the tile
     * (another ring of the polygon, huge coordinates) do not fit an int. */
    int i0 = !(a > 0) ? 0 : a >= size ? size : (int)a, i1 = !(b > 0) ? 0 : b >= size ? size : (int)b;
    if (i1 > i0) memset(row + i0, value, (size_t)(i1 - i0));
  }
}

void pp_annotations_rasterise(const pp_annotations *a, double x0, double y0, double scale, int size,
                              uint8_t *mask, double *xs) {
  memset(mask, 0, (size_t)size * size);
  const double x1 = x0 + size * scale, y1 = y0 + size * scale;
  for (int pass = 0; pass < 2; pass++) /* positives, then exclusions cut out */
    for (int i = 0; i < a->n; i++) {
      const pp_polygon *p = &a->polys[i];
      if (p->exclusion != (pass == 1) || p->x1 < x0 || p->x0 > x1 || p->y1 < y0 || p->y0 > y1) continue;
      for (int j = 0; j < size; j++) {
        double y = y0 + (j + 0.5) * scale;
        if (y < p->y0 || y > p->y1) continue;
        fill_row(p, y, x0, scale, size, mask + (size_t)j * size, pass == 0 ? 255 : 0, xs);
      }
    }
}
