/* imagescope_xml.c — Aperio ImageScope XML regions (imagescope_xml.h). */
#include "imagescope_xml.h"

#include <math.h>
#include <string.h>

#include "asap_xml.h"

static void region_free(ps_imagescope_region *r) {
  if (!r) return;
  g_free(r->xy);
  g_free(r);
}

void ps_imagescope_free(ps_imagescope *s) {
  if (!s) return;
  g_ptr_array_unref(s->regions);
  g_free(s);
}

typedef struct {
  const char *name;
  ps_imagescope *out;
  gboolean in_region, negative;
  GArray *xy; /* double pairs */
} state;

static const char *attr(const char **names, const char **values, const char *key) {
  for (int i = 0; names[i]; i++)
    if (strcmp(names[i], key) == 0) return values[i];
  return NULL;
}

static gboolean number(const char *s, double *v) {
  if (!s) return FALSE;
  char *end = NULL;
  *v = g_ascii_strtod(s, &end);
  while (end && g_ascii_isspace(*end)) end++;
  return end && end != s && *end == '\0' && isfinite(*v);
}

static void start_element(GMarkupParseContext *ctx, const char *element, const char **names,
                          const char **values, gpointer user, GError **error) {
  state *st = user;
  if (strcmp(element, "Annotations") == 0) {
    double mpp = 0;
    if (number(attr(names, values, "MicronsPerPixel"), &mpp)) st->out->microns_per_pixel = mpp;
  } else if (strcmp(element, "Region") == 0) {
    st->in_region = TRUE;
    const char *neg = attr(names, values, "NegativeROA");
    st->negative = neg && strcmp(neg, "1") == 0;
    g_array_set_size(st->xy, 0);
  } else if (strcmp(element, "Vertex") == 0 && st->in_region) {
    double x, y;
    if (!number(attr(names, values, "X"), &x) || !number(attr(names, values, "Y"), &y)) {
      int line = 0;
      g_markup_parse_context_get_position(ctx, &line, NULL);
      g_set_error(error, G_MARKUP_ERROR, G_MARKUP_ERROR_INVALID_CONTENT, "%s:%d: <Vertex> needs numeric X and Y",
                  st->name, line);
      return;
    }
    g_array_append_val(st->xy, x);
    g_array_append_val(st->xy, y);
  }
}

static void end_element(GMarkupParseContext *ctx, const char *element, gpointer user, GError **error) {
  (void)ctx;
  (void)error;
  state *st = user;
  if (strcmp(element, "Region") != 0 || !st->in_region) return;
  st->in_region = FALSE;
  int n = (int)(st->xy->len / 2);
  if (n < 3) {
    st->out->dropped++;
    return;
  }
  ps_imagescope_region *r = g_new0(ps_imagescope_region, 1);
  r->n = n;
  r->negative = st->negative;
  r->xy = g_memdup2(st->xy->data, sizeof(double) * 2 * (size_t)n);
  g_ptr_array_add(st->out->regions, r);
}

ps_imagescope *ps_imagescope_parse(const char *text, gssize len, const char *name, GError **error) {
  if (len < 0) len = (gssize)strlen(text);
  if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
    text += 3;
    len -= 3;
  }
  g_autoptr(ps_imagescope) s = g_new0(ps_imagescope, 1);
  s->regions = g_ptr_array_new_with_free_func((GDestroyNotify)region_free);
  state st = {name ? name : "ImageScope XML", s, FALSE, FALSE, g_array_new(FALSE, FALSE, sizeof(double))};
  static const GMarkupParser parser = {start_element, end_element, NULL, NULL, NULL};
  GMarkupParseContext *ctx = g_markup_parse_context_new(&parser, 0, &st, NULL);
  GError *local = NULL;
  gboolean ok = g_markup_parse_context_parse(ctx, text, len, &local) &&
                g_markup_parse_context_end_parse(ctx, &local);
  g_markup_parse_context_free(ctx);
  g_array_unref(st.xy);
  if (!ok) {
    gboolean named = local && g_str_has_prefix(local->message, st.name);
    g_set_error(error, G_MARKUP_ERROR, local ? local->code : G_MARKUP_ERROR_PARSE, "%s%s%s", named ? "" : st.name,
                named ? "" : ": ", local ? local->message : "malformed XML");
    g_clear_error(&local);
    return NULL;
  }
  return g_steal_pointer(&s);
}

ps_imagescope *ps_imagescope_read(const char *path, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  return ps_imagescope_parse(text, (gssize)len, path, error);
}

typedef struct {
  int32_t *labels;
  int w;
  int32_t value;
} fill_i32;

static void span_i32(void *user, int row, int c0, int c1) {
  fill_i32 *f = user;
  int32_t *p = f->labels + (size_t)row * f->w;
  for (int c = c0; c < c1; c++) p[c] = f->value;
}

int ps_imagescope_rasterise(const ps_imagescope *s, int32_t *labels, int w, int h, int *outside) {
  memset(labels, 0, sizeof(int32_t) * (size_t)w * h);
  int drawn = 0, out = 0;
  for (int pass = 0; pass < 2; pass++) {
    for (guint k = 0; k < s->regions->len; k++) {
      const ps_imagescope_region *r = g_ptr_array_index(s->regions, k);
      if (r->negative != (pass == 1)) continue;
      fill_i32 f = {labels, w, pass == 0 ? ++drawn : 0};
      if (pass == 0) {
        double x0 = r->xy[0], x1 = r->xy[0], y0 = r->xy[1], y1 = r->xy[1];
        for (int i = 1; i < r->n; i++) {
          x0 = MIN(x0, r->xy[2 * i]);
          x1 = MAX(x1, r->xy[2 * i]);
          y0 = MIN(y0, r->xy[2 * i + 1]);
          y1 = MAX(y1, r->xy[2 * i + 1]);
        }
        out += x1 < 0 || y1 < 0 || x0 > w || y0 > h;
      }
      ps_polygon_spans(r->xy, r->n, w, h, 0, 0, 1, span_i32, &f);
    }
  }
  if (outside) *outside = out;
  return drawn;
}
