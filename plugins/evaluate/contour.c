/* contour.c — mask outlines as polygons for GeoJSON (QuPath imports a
 * FeatureCollection of Polygons).
 *
 * Border following along pixel edges: every edge between an inside pixel
 * and an outside one (or the image border) is a directed edge with the
 * inside on its right (y down), so outer boundaries run one way (positive
 * shoelace area) and holes the other. Edges are linked at corners; where
 * two inside pixels touch only diagonally (a saddle) the walk turns right,
 * which keeps 4-connected pieces apart, so every ring bounds exactly one
 * 4-connected piece: its outer ring and its holes. */
#include <math.h>
#include <string.h>

#include "evaluate.h"

/* Directions: 0 +x, 1 +y, 2 -x, 3 -y. */
static const int DX[4] = {1, 0, -1, 0}, DY[4] = {0, 1, 0, -1};

static inline int inside(const uint8_t *m, int w, int h, int x, int y) {
  return x >= 0 && y >= 0 && x < w && y < h && m[(int64_t)y * w + x] != 0;
}

/* Does the directed edge leaving corner (x, y) in direction d exist? */
static int has_edge(const uint8_t *m, int w, int h, int x, int y, int d) {
  switch (d) {
  case 0:
    return inside(m, w, h, x, y) && !inside(m, w, h, x, y - 1);
  case 1:
    return inside(m, w, h, x - 1, y) && !inside(m, w, h, x, y);
  case 2:
    return inside(m, w, h, x - 1, y - 1) && !inside(m, w, h, x - 1, y);
  default:
    return inside(m, w, h, x, y - 1) && !inside(m, w, h, x - 1, y - 1);
  }
}

/* The inside pixel on the right of edge (x, y, d). */
static void right_pixel(int x, int y, int d, int *px, int *py) {
  static const int PX[4] = {0, -1, -1, 0}, PY[4] = {0, 0, -1, -1};
  *px = x + PX[d];
  *py = y + PY[d];
}

/* 4-connected labels of the mask (0 = outside, 1.. pieces). */
static int32_t *label4(const uint8_t *m, int w, int h) {
  int32_t *lab = g_new0(int32_t, (gsize)w * h);
  GArray *stack = g_array_new(FALSE, FALSE, sizeof(int64_t));
  int32_t next = 0;
  for (int64_t s = 0; s < (int64_t)w * h; s++) {
    if (!m[s] || lab[s]) continue;
    lab[s] = ++next;
    g_array_append_val(stack, s);
    while (stack->len) {
      int64_t p = g_array_index(stack, int64_t, stack->len - 1);
      g_array_set_size(stack, stack->len - 1);
      int x = (int)(p % w), y = (int)(p / w);
      for (int d = 0; d < 4; d++) {
        int nx = x + DX[d], ny = y + DY[d];
        if (!inside(m, w, h, nx, ny)) continue;
        int64_t q = (int64_t)ny * w + nx;
        if (lab[q]) continue;
        lab[q] = next;
        g_array_append_val(stack, q);
      }
    }
  }
  g_array_unref(stack);
  return lab;
}

static void ring_free(gpointer p) {
  ev_ring *r = p;
  g_array_unref(r->xy);
  g_free(r);
}

static void push(GArray *xy, double x, double y) {
  /* Merge collinear runs: drop the middle of three points on one line. */
  guint n = xy->len / 2;
  if (n >= 2) {
    double *v = (double *)xy->data;
    double ax = v[2 * n - 4], ay = v[2 * n - 3], bx = v[2 * n - 2], by = v[2 * n - 1];
    if ((bx - ax) * (y - by) - (by - ay) * (x - bx) == 0) g_array_set_size(xy, xy->len - 2);
  }
  double p[2] = {x, y};
  g_array_append_vals(xy, p, 2);
}

GPtrArray *ev_trace_rings(const uint8_t *mask, int w, int h) {
  GPtrArray *rings = g_ptr_array_new_with_free_func(ring_free);
  const int64_t VW = w + 1, NV = (int64_t)(w + 1) * (h + 1);
  uint8_t *used = g_new0(uint8_t, NV);
  int32_t *lab = label4(mask, w, h);
  for (int64_t v = 0; v < NV; v++) {
    int sx = (int)(v % VW), sy = (int)(v / VW);
    for (int sd = 0; sd < 4; sd++) {
      if ((used[v] >> sd & 1) || !has_edge(mask, w, h, sx, sy, sd)) continue;
      ev_ring *r = g_new0(ev_ring, 1);
      r->xy = g_array_new(FALSE, FALSE, sizeof(double));
      int px, py;
      right_pixel(sx, sy, sd, &px, &py);
      r->component = lab[(int64_t)py * w + px];
      int x = sx, y = sy, d = sd;
      push(r->xy, x, y);
      for (;;) {
        used[(int64_t)y * VW + x] |= (uint8_t)(1 << d);
        x += DX[d];
        y += DY[d];
        /* right turn first (keeps diagonal neighbours apart), then straight, then left */
        int nd = -1;
        const int order[3] = {(d + 1) & 3, d, (d + 3) & 3};
        for (int k = 0; k < 3 && nd < 0; k++)
          if (has_edge(mask, w, h, x, y, order[k])) nd = order[k];
        if (nd < 0 || (x == sx && y == sy && nd == sd)) break;
        if (nd != d) push(r->xy, x, y);
        d = nd;
      }
      /* close the ring */
      double *pts = (double *)r->xy->data;
      push(r->xy, pts[0], pts[1]);
      double a = 0;
      guint n = r->xy->len / 2;
      pts = (double *)r->xy->data;
      for (guint i = 0; i + 1 < n; i++)
        a += pts[2 * i] * pts[2 * i + 3] - pts[2 * i + 2] * pts[2 * i + 1];
      r->area = a / 2;
      g_ptr_array_add(rings, r);
    }
  }
  g_free(used);
  g_free(lab);
  return rings;
}

static void append_ring(GString *s, const ev_ring *r, double scale, double ox, double oy) {
  const double *p = (const double *)r->xy->data;
  guint n = r->xy->len / 2;
  g_string_append_c(s, '[');
  for (guint i = 0; i < n; i++) {
    char bx[G_ASCII_DTOSTR_BUF_SIZE], by[G_ASCII_DTOSTR_BUF_SIZE];
    g_ascii_formatd(bx, sizeof bx, "%.10g", p[2 * i] * scale + ox);
    g_ascii_formatd(by, sizeof by, "%.10g", p[2 * i + 1] * scale + oy);
    g_string_append_printf(s, "%s[%s, %s]", i ? ", " : "", bx, by);
  }
  g_string_append_c(s, ']');
}

char *ev_geojson(const uint8_t *mask, int w, int h, double scale, double ox, double oy,
                 const char *name) {
  g_autoptr(GPtrArray) rings = ev_trace_rings(mask, w, h);
  GString *s = g_string_new("{\"type\": \"FeatureCollection\", \"features\": [");
  int n_feat = 0;
  for (guint i = 0; i < rings->len; i++) {
    const ev_ring *outer = g_ptr_array_index(rings, i);
    if (outer->area <= 0) continue;
    g_string_append_printf(
        s,
        "%s\n  {\"type\": \"Feature\", \"properties\": {\"objectType\": \"annotation\", "
        "\"name\": \"%s\", \"classification\": {\"name\": \"%s\", \"color\": [255, 0, 0]}}, "
        "\"geometry\": {\"type\": \"Polygon\", \"coordinates\": [",
        n_feat ? "," : "", name, name);
    append_ring(s, outer, scale, ox, oy);
    for (guint j = 0; j < rings->len; j++) {
      const ev_ring *hole = g_ptr_array_index(rings, j);
      if (hole->area >= 0 || hole->component != outer->component) continue;
      g_string_append(s, ", ");
      append_ring(s, hole, scale, ox, oy);
    }
    g_string_append(s, "]}}");
    n_feat++;
  }
  g_string_append(s, "\n]}\n");
  return g_string_free(s, FALSE);
}
