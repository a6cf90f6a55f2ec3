/* slide_plugin.c — the `slide` plugin: component dataset.slide.
 *
 * Opens one whole-slide image, finds tissue (block-mean thumbnail,
 * saturation, Otsu; slide.h) and serves, through the "dataset" capability
 * (dataset.h), the tiles of the grid whose tissue fraction is at least
 * `min_tissue`, in raster order, as examples of the split `split` (the other
 * splits are empty). A batch has the fields
 *   image  [n, T, T, 3] u8 RGB (alpha dropped; outside the slide: black)
 *   coords [n, 2] i64, level-0 (x, y) of each tile's top-left corner.
 * The reusable reading and tissue code is slide.c; the fixture capability
 * (slide.openslide_read_region) is slide_fixture.c. */
#include <string.h>

#include <pathseg/dataset.h>
#include <pathseg/plugin.h>

#include "slide.h"
#include "slide_plugin.h"

static const ps_config_key slide_keys[] = {
    {"path", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL,
     "the whole-slide image (any OpenSlide format)"},
    {"level", PS_TYPE_INT, "0", 0, 31, NULL, "pyramid level the tiles are read at"},
    {"tile_size", PS_TYPE_INT, "256", 1, 16384, NULL, "tile width and height in level pixels"},
    {"stride", PS_TYPE_INT, "0", 0, 16384, NULL, "tile step in level pixels; 0: tile_size"},
    {"thumb_factor", PS_TYPE_INT, "16", 1, 4096, NULL,
     "block size of the level-0 mean thumbnail the tissue mask is computed on"},
    {"min_tissue", PS_TYPE_FLOAT, "0.5", 0.0, 1.0, NULL,
     "keep tiles whose fraction of tissue-mask cells is at least this"},
    {"split", PS_TYPE_STRING, "train", PS_NO_RANGE, NULL,
     "the split this slide's tiles belong to (other splits are empty)"},
    {NULL},
};

static const ps_port_desc no_ports[] = {{NULL}};

typedef struct {
  ps_slide *slide;
  int level, tile;
  char *split;
  int64_t *tiles; /* [count, 2] level-0 x, y */
  size_t count;
  ps_tensor *image, *coords; /* the last batch */
  uint8_t *rgba;             /* [n, T, T, 4] read buffer */
  size_t rgba_size;
  ps_port fields[2];
  ps_ports batch;
} slide_dataset;

static void slide_destroy(void *p) {
  slide_dataset *self = p;
  if (!self) return;
  ps_slide_close(self->slide);
  g_free(self->tiles);
  ps_tensor_free(self->image);
  ps_tensor_free(self->coords);
  g_free(self->rgba);
  g_free(self->split);
  g_free(self);
}

/* Fraction of mask cells (thumbnail of block f at level 0) under a level-0 box. */
static double tissue_fraction(const uint8_t *mask, int64_t mw, int64_t mh, int f, int64_t x,
                              int64_t y, int64_t size) {
  int64_t cx0 = MAX(x / f, 0), cy0 = MAX(y / f, 0);
  int64_t cx1 = MIN((x + size + f - 1) / f, mw), cy1 = MIN((y + size + f - 1) / f, mh);
  if (cx0 >= cx1 || cy0 >= cy1) return 0.0;
  int64_t on = 0;
  for (int64_t cy = cy0; cy < cy1; cy++)
    for (int64_t cx = cx0; cx < cx1; cx++) on += mask[cy * mw + cx];
  return (double)on / (double)((cx1 - cx0) * (cy1 - cy0));
}

static void *slide_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  slide_dataset *self = g_new0(slide_dataset, 1);
  self->level = (int)ps_config_int(cfg, "level");
  self->tile = (int)ps_config_int(cfg, "tile_size");
  self->split = g_strdup(ps_config_string(cfg, "split"));
  self->fields[0].name = "image";
  self->fields[1].name = "coords";
  self->batch = (ps_ports){self->fields, 2};
  int stride = (int)ps_config_int(cfg, "stride");
  if (stride == 0) stride = self->tile;
  const int f = (int)ps_config_int(cfg, "thumb_factor");
  const double min_tissue = ps_config_float(cfg, "min_tissue");
  const char *path = ps_config_string(cfg, "path");
  self->slide = ps_slide_open(path, error);
  if (!self->slide) goto fail;
  int64_t lw, lh;
  if (!ps_slide_level_size(self->slide, self->level, &lw, &lh)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "dataset.slide: level %d out of range for %s (it has %d)", self->level, path,
                ps_slide_level_count(self->slide));
    goto fail;
  }
  uint8_t *mask = NULL;
  int64_t mw, mh;
  double thr;
  if (!ps_slide_tissue_mask(self->slide, 0, f, &mask, &mw, &mh, &thr, error)) goto fail;
  const double ds = ps_slide_level_downsample(self->slide, self->level);
  GArray *kept = g_array_new(FALSE, FALSE, sizeof(int64_t));
  for (int64_t ty = 0; ty + self->tile <= lh; ty += stride)
    for (int64_t tx = 0; tx + self->tile <= lw; tx += stride) {
      int64_t x0 = (int64_t)(tx * ds), y0 = (int64_t)(ty * ds);
      if (tissue_fraction(mask, mw, mh, f, x0, y0, (int64_t)(self->tile * ds)) >= min_tissue) {
        g_array_append_val(kept, x0);
        g_array_append_val(kept, y0);
      }
    }
  g_free(mask);
  self->count = kept->len / 2;
  self->tiles = (int64_t *)g_array_free(kept, FALSE);
  if (self->count == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "dataset.slide: no %d-pixel tile of %s has tissue fraction >= %g (Otsu threshold "
                "%g); lower min_tissue",
                self->tile, path, min_tissue, thr);
    goto fail;
  }
  return self;
fail:
  slide_destroy(self);
  return NULL;
}

static int64_t slide_size(void *p, const char *split) {
  slide_dataset *self = p;
  return g_strcmp0(split, self->split) == 0 ? (int64_t)self->count : 0;
}

static const ps_ports *slide_batch(void *p, const char *split, const int64_t *indices, size_t n,
                                   ps_rng *rng, GError **error) {
  slide_dataset *self = p;
  const int64_t size = slide_size(self, split);
  for (size_t r = 0; r < n; r++) {
    if (indices[r] < 0 || indices[r] >= size) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "dataset.slide (%s): example %" G_GINT64_FORMAT
                  " out of range for split '%s' (%" G_GINT64_FORMAT " tiles)",
                  ps_slide_path(self->slide), indices[r], split, size);
      return NULL;
    }
  }
  const int64_t T = self->tile;
  if (!self->image || self->image->shape[0] != (int64_t)n) {
    ps_tensor_free(self->image);
    ps_tensor_free(self->coords);
    self->image = ps_tensor_new4(PS_DTYPE_U8, (int64_t)n, T, T, 3, error);
    self->coords = self->image ? ps_tensor_new4(PS_DTYPE_I64, (int64_t)n, 2, -1, -1, error) : NULL;
    if (!self->image || !self->coords) return NULL;
  }
  const size_t px = (size_t)(T * T);
  if (self->rgba_size < n * px * 4) {
    g_free(self->rgba);
    self->rgba = g_malloc(n * px * 4);
    self->rgba_size = n * px * 4;
  }
  uint8_t *img = self->image->data;
  int64_t *xy = self->coords->data;
  gboolean ok = TRUE;
  GError *first = NULL;
  /* Tiles decode independently: ps_slide_read_region is thread-safe. */
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t r = 0; r < n; r++) {
    const int64_t *t = self->tiles + 2 * indices[r];
    uint8_t *rgba = self->rgba + r * px * 4;
    GError *err = NULL;
    if (!ps_slide_read_region(self->slide, t[0], t[1], self->level, (int)T, (int)T, rgba, &err)) {
#pragma omp critical(ps_slide_batch_error)
      {
        if (!first)
          first = err;
        else
          g_error_free(err);
        ok = FALSE;
      }
      continue;
    }
    uint8_t *dst = img + r * px * 3;
    for (size_t i = 0; i < px; i++) memcpy(dst + i * 3, rgba + i * 4, 3);
    xy[2 * r] = t[0];
    xy[2 * r + 1] = t[1];
  }
  if (!ok) {
    g_propagate_error(error, first);
    return NULL;
  }
  self->fields[0].tensor = self->image;
  self->fields[1].tensor = self->coords;
  return &self->batch;
}

static const ps_dataset_iface slide_dataset_iface = {
    .struct_size = sizeof(ps_dataset_iface),
    .size = slide_size,
    .batch = slide_batch,
};

static const ps_component_vtable slide_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = slide_create,
    .destroy = slide_destroy,
    .params = NULL,
    .forward = NULL,
    .backward = NULL,
};

static const void *slide_capability(const char *name) {
  if (strcmp(name, "fixture") == 0) return &ps_slide_fixture_iface;
  if (strcmp(name, "dataset") == 0) return &slide_dataset_iface;
  return NULL;
}

static const ps_component_desc slide_component = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_DATASET,
    .name = "dataset.slide",
    .doc = "Tissue tiles of one whole-slide image read with libvips/OpenSlide (regions "
           "bit-identical to OpenSlide read_region); tissue = Otsu on the saturation of an "
           "exact block-mean thumbnail.",
    .config = slide_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &slide_vtable,
    .capability = slide_capability,
};

static const ps_component_desc *const slide_components[] = {&slide_component, NULL};

static gboolean slide_init(GError **error) {
  return ps_slide_init_vips(error);
}

static const ps_plugin_desc slide_plugin = {
    PS_PLUGIN_HEADER,
    .name = "slide",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Whole-slide images through libvips: regions, tissue detection, tiles",
    .components = slide_components,
    .init = slide_init,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &slide_plugin;
}
