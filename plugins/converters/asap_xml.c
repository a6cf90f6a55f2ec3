/* asap_xml.c — ASAP annotation XML through GMarkupParser and an even-odd
 * scanline polygon rasteriser (asap_xml.h). GLib only. */
#include "asap_xml.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int ps_asap_group_sign(const char *group) {
  if (!group) return 0;
  if (strcmp(group, "_0") == 0 || strcmp(group, "_1") == 0 || g_ascii_strcasecmp(group, "tumor") == 0)
    return 1;
  if (strcmp(group, "_2") == 0 || g_ascii_strcasecmp(group, "exclusion") == 0) return -1;
  return 0;
}

static void polygon_free(ps_asap_polygon *p) {
  if (!p) return;
  g_free(p->name);
  g_free(p->group);
  g_free(p->type);
  g_free(p->xy);
  g_free(p);
}

void ps_asap_free(ps_asap_annotations *a) {
  if (!a) return;
  g_ptr_array_unref(a->polygons);
  g_free(a);
}

typedef struct {
  double order, x, y;
} coord;

typedef struct {
  const char *name;
  ps_asap_annotations *out;
  ps_asap_polygon *cur; /* inside <Annotation> */
  GArray *coords;       /* coord */
} parse_state;

/* A coordinate value; some exported files use a decimal comma. */
static gboolean parse_number(const char *s, double *v) {
  if (!s || !*s) return FALSE;
  char buf[64];
  if (strlen(s) >= sizeof buf) return FALSE;
  strcpy(buf, s);
  if (!strchr(buf, '.'))
    for (char *c = buf; *c; c++)
      if (*c == ',') *c = '.';
  char *end = NULL;
  *v = g_ascii_strtod(g_strstrip(buf), &end);
  return end && *end == '\0' && end != buf && isfinite(*v);
}

static const char *attr(const char **names, const char **values, const char *key) {
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], key) == 0) return values[i];
  return NULL;
}

static void start_element(GMarkupParseContext *ctx, const char *element, const char **names,
                          const char **values, gpointer user, GError **error) {
  parse_state *st = user;
  if (strcmp(element, "Annotation") == 0) {
    if (st->cur) {
      int line = 0;
      g_markup_parse_context_get_position(ctx, &line, NULL);
      g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "%s:%d: nested <Annotation>",
                  st->name, line);
      return;
    }
    st->cur = g_new0(ps_asap_polygon, 1);
    st->cur->name = g_strdup(attr(names, values, "Name"));
    st->cur->group = g_strdup(attr(names, values, "PartOfGroup"));
    st->cur->type = g_strdup(attr(names, values, "Type"));
    g_array_set_size(st->coords, 0);
  } else if (strcmp(element, "Coordinate") == 0 && st->cur) {
    coord c = {0, 0, 0};
    const char *order = attr(names, values, "Order");
    if (!parse_number(attr(names, values, "X"), &c.x) || !parse_number(attr(names, values, "Y"), &c.y) ||
        (order && !parse_number(order, &c.order))) {
      int line = 0;
      g_markup_parse_context_get_position(ctx, &line, NULL);
      g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT,
                  "%s:%d: <Coordinate> of annotation '%s' needs numeric X, Y (and Order)", st->name, line,
                  st->cur->name ? st->cur->name : "?");
      return;
    }
    if (!order) c.order = st->coords->len;
    g_array_append_val(st->coords, c);
  }
}

static int by_order(const void *a, const void *b) {
  double x = ((const coord *)a)->order, y = ((const coord *)b)->order;
  return (x > y) - (x < y);
}

static void end_element(GMarkupParseContext *ctx, const char *element, gpointer user, GError **error) {
  (void)ctx;
  (void)error;
  parse_state *st = user;
  if (strcmp(element, "Annotation") != 0 || !st->cur) return;
  ps_asap_polygon *p = g_steal_pointer(&st->cur);
  gboolean pointlike = p->type && (g_ascii_strcasecmp(p->type, "Dot") == 0 ||
                                   g_ascii_strcasecmp(p->type, "PointSet") == 0);
  if (pointlike || st->coords->len < 3) {
    st->out->dropped++;
    polygon_free(p);
    return;
  }
  /* Points are drawn in their Order attribute (files list them in order anyway). */
  g_array_sort(st->coords, by_order);
  p->n = (int)st->coords->len;
  p->xy = g_new(double, 2 * (size_t)p->n);
  for (int i = 0; i < p->n; i++) {
    coord c = g_array_index(st->coords, coord, i);
    p->xy[2 * i] = c.x;
    p->xy[2 * i + 1] = c.y;
  }
  p->sign = ps_asap_group_sign(p->group);
  g_ptr_array_add(st->out->polygons, p);
}

ps_asap_annotations *ps_asap_parse(const char *text, gssize len, const char *name, GError **error) {
  if (len < 0) len = (gssize)strlen(text);
  /* A UTF-8 byte order mark is not XML GMarkup accepts. */
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
    text += 3;
    len -= 3;
  }
  g_autoptr(ps_asap_annotations) a = g_new0(ps_asap_annotations, 1);
  a->polygons = g_ptr_array_new_with_free_func((GDestroyNotify)polygon_free);
  parse_state st = {name ? name : "ASAP XML", a, NULL, g_array_new(FALSE, FALSE, sizeof(coord))};
  static const GMarkupParser parser = {start_element, end_element, NULL, NULL, NULL};
  GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
  GError *local = NULL;
  gboolean ok = g_markup_parse_context_parse(ctx, text, len, &local) &&
                g_markup_parse_context_end_parse(ctx, &local);
  g_markup_parse_context_free(ctx);
  g_array_unref(st.coords);
  polygon_free(st.cur);
  if (!ok) {
    g_set_error(error, G_MARKUP_ERROR, local ? local->code : G_MARKUP_ERROR_PARSE, "%s%s%s",
                g_str_has_prefix(local ? local->message : "", st.name) ? "" : st.name,
                g_str_has_prefix(local ? local->message : "", st.name) ? "" : ": ",
                local ? local->message : "malformed XML");
    g_clear_error(&local);
    return NULL;
  }
  return g_steal_pointer(&a);
}

ps_asap_annotations *ps_asap_read(const char *path, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  return ps_asap_parse(text, (gssize)len, path, error);
}

gboolean ps_asap_bounds(const ps_asap_annotations *a, int sign, double box[4]) {
  gboolean any = FALSE;
  for (guint k = 0; k < a->polygons->len; k++) {
    const ps_asap_polygon *p = g_ptr_array_index(a->polygons, k);
    if (sign != 0 && p->sign != sign) continue;
    for (int i = 0; i < p->n; i++) {
      double x = p->xy[2 * i], y = p->xy[2 * i + 1];
      if (!any) {
        box[0] = box[2] = x;
        box[1] = box[3] = y;
        any = TRUE;
      }
      box[0] = MIN(box[0], x);
      box[1] = MIN(box[1], y);
      box[2] = MAX(box[2], x);
      box[3] = MAX(box[3], y);
    }
  }
  return any;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* The first column in [0, w] whose centre is >= x (w when none): exactly
 * the comparison the even-odd rule makes, not just its rounded algebraic
 * form, and bounded however far outside the raster x lies. */
static int first_col_at_or_after(double x, double x0, double ds, int w) {
  double g = ceil((x - x0) / ds - 0.5);
  int j = !(g > 0) ? 0 : g >= w ? w : (int)g;
  while (j > 0 && x0 + (j - 1 + 0.5) * ds >= x) j--;
  while (j < w && x0 + (j + 0.5) * ds < x) j++;
  return j;
}

void ps_polygon_spans(const double *xy, int n, int w, int h, double x0, double y0, double ds,
                      ps_polygon_span_fn span, void *user) {
  if (n < 3 || w <= 0 || h <= 0 || !(ds > 0) || !isfinite(x0) || !isfinite(y0)) return;
  double ymin = xy[1], ymax = xy[1];
  for (int i = 0; i < n; i++) {
    if (!isfinite(xy[2 * i]) || !isfinite(xy[2 * i + 1])) return;
    ymin = MIN(ymin, xy[2 * i + 1]);
    ymax = MAX(ymax, xy[2 * i + 1]);
  }
  /* Rows whose centres can lie within [ymin, ymax], one spare each side, clipped before any cast. */
  double r0 = MAX(0.0, floor((ymin - y0) / ds - 0.5) - 1), r1 = MIN((double)h, ceil((ymax - y0) / ds) + 1);
  if (!(r0 < r1)) return;
  int row_begin = (int)r0, row_end = (int)r1;
  double *cross = g_new(double, (size_t)n + 1);
  for (int i = row_begin; i < row_end; i++) {
    double yc = y0 + (i + 0.5) * ds;
    int m = 0;
    for (int k = 0; k < n; k++) {
      const double *a = xy + 2 * k, *b = xy + 2 * ((k + 1) % n);
      if ((a[1] > yc) != (b[1] > yc)) cross[m++] = a[0] + (yc - a[1]) * (b[0] - a[0]) / (b[1] - a[1]);
    }
    if (m < 2) continue;
    qsort(cross, (size_t)m, sizeof(double), cmp_double);
    for (int k = 0; k + 1 < m; k += 2) {
      int c0 = first_col_at_or_after(cross[k], x0, ds, w), c1 = first_col_at_or_after(cross[k + 1], x0, ds, w);
      if (c0 < c1) span(user, i, c0, c1);
    }
  }
  g_free(cross);
}

typedef struct {
  uint8_t *mask;
  int w;
  uint8_t value;
} fill_u8;

static void span_u8(void *user, int row, int c0, int c1) {
  fill_u8 *f = user;
  memset(f->mask + (size_t)row * f->w + c0, f->value, (size_t)(c1 - c0));
}

int64_t ps_asap_rasterise(const ps_asap_annotations *a, uint8_t *mask, int w, int h, double x0, double y0,
                          double ds) {
  memset(mask, 0, (size_t)w * h);
  /* Positives first, then every negative carved out of their union. */
  for (int pass = 0; pass < 2; pass++) {
    fill_u8 f = {mask, w, pass == 0 ? 1 : 0};
    for (guint k = 0; k < a->polygons->len; k++) {
      const ps_asap_polygon *p = g_ptr_array_index(a->polygons, k);
      if (p->sign == (pass == 0 ? 1 : -1)) ps_polygon_spans(p->xy, p->n, w, h, x0, y0, ds, span_u8, &f);
    }
  }
  int64_t on = 0;
  for (size_t i = 0; i < (size_t)w * h; i++) on += mask[i];
  return on;
}
