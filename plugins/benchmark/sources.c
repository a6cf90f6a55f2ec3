/* sources.c — convert and manifest sources of stage.build_benchmark, and
 * the grid/resize tiling of their images (sources.h). */
#include "sources.h"

#include <pathseg/error.h>
#include <string.h>

#include "convert.h"
#include "manifest.h"

void bb_source_free(bb_source *s) {
  if (!s) return;
  g_free(s->format);
  g_free(s->path);
  g_free(s->spec);
  g_free(s);
}

static gboolean known_format(const char *f) {
  g_auto(GStrv) names = g_strsplit(conv_formats, "|", -1);
  return g_strv_contains((const char *const *)names, f);
}

GPtrArray *bb_sources_parse(const char *const *specs, GError **error) {
  g_autoptr(GPtrArray) out = g_ptr_array_new_with_free_func((GDestroyNotify)bb_source_free);
  for (size_t i = 0; specs && specs[i]; i++) {
    const char *spec = specs[i];
    bb_source *s = g_new0(bb_source, 1);
    s->spec = g_strdup(spec);
    g_ptr_array_add(out, s);
    if (strcmp(spec, "synthetic") == 0) {
      s->kind = BB_SOURCE_SYNTHETIC;
    } else if (g_str_has_prefix(spec, "manifest:") && spec[9]) {
      s->kind = BB_SOURCE_MANIFEST;
      s->path = g_strdup(spec + 9);
    } else if (g_str_has_prefix(spec, "convert:")) {
      const char *f = spec + 8, *colon = strchr(f, ':');
      s->kind = BB_SOURCE_CONVERT;
      s->format = colon ? g_strndup(f, (gsize)(colon - f)) : g_strdup(f);
      if (!colon || !colon[1] || !known_format(s->format)) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "sources[%zu] '%s': a converter source is convert:FORMAT:DIR with FORMAT one of %s", i, spec,
                    conv_formats);
        return NULL;
      }
      s->path = g_strdup(colon + 1);
    } else {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "sources[%zu] '%s': expected 'synthetic', 'convert:FORMAT:DIR' or 'manifest:PATH'", i, spec);
      return NULL;
    }
  }
  if (out->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "sources: the list is empty; name at least one source");
    return NULL;
  }
  return g_steal_pointer(&out);
}

GPtrArray *bb_source_rows(const bb_source *s, const char *work_dir, const bb_convert_options *o, char **base_dir,
                          GError **error) {
  if (s->kind == BB_SOURCE_MANIFEST) {
    GPtrArray *rows = ps_manifest_read(s->path, error);
    if (!rows) g_prefix_error(error, "source '%s': ", s->spec);
    if (rows) *base_dir = g_path_get_dirname(s->path);
    return rows;
  }
  g_return_val_if_fail(s->kind == BB_SOURCE_CONVERT, NULL);
  conv_options co;
  conv_options_init(&co);
  co.format = s->format;
  co.input_dir = s->path;
  co.out_dir = work_dir;
  co.seed = o->seed;
  co.threshold = o->threshold;
  co.min_component = o->min_component;
  co.negatives = o->negatives;
  co.downsample = o->downsample;
  co.log = o->log;
  co.cancelled = o->cancelled;
  co.log_user = o->user;
  conv_stats st;
  if (!ps_convert(&co, &st, error)) {
    g_prefix_error(error, "source '%s': ", s->spec);
    return NULL;
  }
  g_autofree char *manifest = g_build_filename(work_dir, "manifest.jsonl", NULL);
  GPtrArray *rows = ps_manifest_read(manifest, error);
  if (rows) *base_dir = g_strdup(work_dir);
  return rows;
}

const char *bb_source_organ(const char *source) {
  static const struct {
    const char *source, *organ;
  } organs[] = {
      {"glas", "colonic"},          {"crag", "colonic"},          {"digestpath", "colonic"},
      {"ebhi-seg", "colonic"},      {"camelyon16", "lymph node"}, {"camelyon17", "lymph node"},
      {"wsss4luad", "lung"},
  };
  for (size_t i = 0; source && i < G_N_ELEMENTS(organs); i++)
    if (strcmp(source, organs[i].source) == 0) return organs[i].organ;
  return NULL;
}

int bb_grid_count(int extent, int S) { return extent < S ? 0 : (extent + S - 1) / S; }

void bb_grid_starts(int extent, int S, int *starts) {
  int n = bb_grid_count(extent, S);
  for (int i = 0; i < n; i++) starts[i] = i * S + S <= extent ? i * S : extent - S;
}

void bb_crop(const uint8_t *src, int w, int bands, int x0, int y0, int S, uint8_t *dst) {
  for (int y = 0; y < S; y++)
    memcpy(dst + (size_t)y * S * bands, src + ((size_t)(y0 + y) * w + x0) * bands, (size_t)S * bands);
}

/* The source interval [*a, *b) that output pixel o of S covers in n pixels. */
static void footprint(int o, int n, int S, int *a, int *b) {
  *a = (int)((int64_t)o * n / S);
  *b = (int)((int64_t)(o + 1) * n / S);
  if (*b <= *a) *b = *a + 1;
}

void bb_resize_rgb(const uint8_t *src, int w, int h, int S, uint8_t *dst) {
  for (int oy = 0; oy < S; oy++) {
    int y0, y1;
    footprint(oy, h, S, &y0, &y1);
    for (int ox = 0; ox < S; ox++) {
      int x0, x1;
      footprint(ox, w, S, &x0, &x1);
      uint32_t sum[3] = {0, 0, 0}, n = (uint32_t)((y1 - y0) * (x1 - x0));
      for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
          for (int c = 0; c < 3; c++) sum[c] += src[((size_t)y * w + x) * 3 + c];
      for (int c = 0; c < 3; c++) dst[((size_t)oy * S + ox) * 3 + c] = (uint8_t)((sum[c] + n / 2) / n);
    }
  }
}

void bb_resize_mask(const uint8_t *src, int w, int h, int S, uint8_t *dst) {
  for (int oy = 0; oy < S; oy++) {
    int y0, y1;
    footprint(oy, h, S, &y0, &y1);
    for (int ox = 0; ox < S; ox++) {
      int x0, x1;
      footprint(ox, w, S, &x0, &x1);
      uint32_t on = 0, n = (uint32_t)((y1 - y0) * (x1 - x0));
      for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) on += src[(size_t)y * w + x] != 0;
      dst[(size_t)oy * S + ox] = 2 * on >= n ? 1 : 0;
    }
  }
}
