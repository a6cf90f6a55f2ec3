/* synth_plugin.c — the `synthetic` plugin: component dataset.synthetic, the
 * embedded default dataset (procedural H&E-like tiles with exact masks).
 *
 * Splits: train, val, test draw from the configured morphologies and stain
 * styles minus the held-out ones (when `held_out` is true); `zeroshot` shows
 * in every tile a held-out morphology, a held-out stain style, or both.
 * With `held_out: false` every split draws from everything and zeroshot is
 * empty. Example i of a split is a pure function of (seed, split, i).
 *
 * A batch ("dataset" capability) has the fields
 *   image      [B, 3, H, W] f32, RGB in [0, 1]
 *   image_rgb  [B, H, W, 3] u8, the same pixels (what augmenter.randstainna takes)
 *   mask       [B, 1, H, W] f32 in {0, 1}, the query target's pixels
 *   labels     [B, H, W] u8, fine tissue classes (ps_synth_label, synth.h)
 *   target     [B] i32, the query target (ps_synth_target)
 * and the "synthetic_info" capability (synth.h) describes each example.
 * batch() ignores its rng: a tile is a pure function of (seed, split, index),
 * and augmentation belongs to augmenter components downstream. */
#include <omp.h>
#include <string.h>

#include <pathseg/dataset.h>
#include <pathseg/plugin.h>

#include "synth.h"

static const ps_config_key synth_keys[] = {
    {"tile_size", PS_TYPE_INT, "256", 64, 512, NULL, "tile width and height in pixels"},
    {"train_size", PS_TYPE_INT, "1000", 0, 1e9, NULL, "examples in the train split"},
    {"val_size", PS_TYPE_INT, "100", 0, 1e9, NULL, "examples in the val split"},
    {"test_size", PS_TYPE_INT, "100", 0, 1e9, NULL, "examples in the test split"},
    {"zeroshot_size", PS_TYPE_INT, "200", 0, 1e9, NULL,
     "examples in the zeroshot split (held-out morphologies / stains); 0 without held_out"},
    {"seed", PS_TYPE_INT, "0", 0, 1e15, NULL, "seed of every tile"},
    {"targets", PS_TYPE_STRING_LIST, "[gland, tumour, nuclei, necrosis, lumen, stroma]",
     PS_NO_RANGE, NULL, "query targets to draw from"},
    {"morphologies", PS_TYPE_STRING_LIST,
     "[normal, tubular_adenocarcinoma, cribriform, mucinous, signet_ring, solid]", PS_NO_RANGE,
     NULL, "tissue morphologies to draw from"},
    {"stain_styles", PS_TYPE_STRING_LIST,
     "[he_classic, he_eosin_rich, he_haem_rich, he_faded, he_warm, ihc_dab]", PS_NO_RANGE, NULL,
     "stain styles to draw from"},
    {"magnifications", PS_TYPE_INT_LIST, "[5, 10, 20, 40]", PS_NO_RANGE, NULL,
     "nominal objective magnifications (5, 10, 20, 40) to draw from"},
    {"artefact_probability", PS_TYPE_FLOAT, "0.2", 0, 1, NULL,
     "chance that a tile looks like a frozen section (ice-crystal holes, folds, blur)"},
    {"held_out", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "keep the held-out morphologies and stain styles out of train/val/test and serve them "
     "as the zeroshot split"},
    {NULL},
};

static const ps_port_desc no_ports[] = {{NULL}};

enum { FIELD_IMAGE, FIELD_RGB, FIELD_MASK, FIELD_LABELS, FIELD_TARGET, FIELD_COUNT };

typedef struct {
  int size;
  int64_t n[4]; /* train, val, test, zeroshot */
  uint64_t seed;
  gboolean held_out;
  ps_synth_spec base;            /* targets, magnifications, artefacts */
  uint32_t morphs, stains;       /* configured */
  uint32_t ho_morphs, ho_stains; /* configured and held out */
  int threads;
  ps_synth_scratch **scratch; /* one per thread */
  ps_synth_scratch *describe_scratch;
  ps_tensor *t[FIELD_COUNT];
  ps_synth_info *infos;
  size_t ninfos, infos_cap;
  ps_port fields[FIELD_COUNT];
  ps_ports batch;
} synth_dataset;

static const char *const split_names[4] = {"train", "val", "test", "zeroshot"};

static int split_index(const char *split) {
  for (int i = 0; i < 4; i++)
    if (strcmp(split, split_names[i]) == 0) return i;
  return -1;
}

static void synth_destroy(void *p) {
  synth_dataset *self = p;
  if (!self) return;
  for (int i = 0; self->scratch && i < self->threads; i++) ps_synth_scratch_free(self->scratch[i]);
  g_free(self->scratch);
  ps_synth_scratch_free(self->describe_scratch);
  for (int f = 0; f < FIELD_COUNT; f++) ps_tensor_free(self->t[f]);
  g_free(self->infos);
  g_free(self);
}

/* A string list of names into a bit set; an unknown name is an error that
 * lists the known ones. */
static gboolean name_set(const ps_config *cfg, const char *key, int (*from)(const char *),
                         const char *(*name)(int), int count, uint32_t *out, GError **error) {
  size_t n;
  const char *const *items = ps_config_string_list(cfg, key, &n);
  uint32_t set = 0;
  for (size_t i = 0; i < n; i++) {
    int v = from(items[i]);
    if (v < 0) {
      g_autoptr(GString) known = g_string_new(NULL);
      for (int k = 0; k < count; k++) g_string_append_printf(known, "%s%s", k ? ", " : "", name(k));
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "dataset.synthetic: %s: unknown name '%s' (known: %s)", key, items[i],
                  known->str);
      return FALSE;
    }
    set |= 1u << v;
  }
  if (!set) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "dataset.synthetic: %s is empty", key);
    return FALSE;
  }
  *out = set;
  return TRUE;
}

static const char *target_name(int v) {
  return ps_synth_target_name((ps_synth_target)v);
}
static const char *morph_name(int v) {
  return ps_synth_morphology_name((ps_synth_morphology)v);
}
static const char *stain_name(int v) {
  return ps_synth_stain_name((ps_synth_stain)v);
}

static void *synth_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  g_autoptr(GError) err = NULL;
  synth_dataset *self = g_new0(synth_dataset, 1);
  self->size = (int)ps_config_int(cfg, "tile_size");
  self->n[0] = ps_config_int(cfg, "train_size");
  self->n[1] = ps_config_int(cfg, "val_size");
  self->n[2] = ps_config_int(cfg, "test_size");
  self->n[3] = ps_config_int(cfg, "zeroshot_size");
  self->seed = (uint64_t)ps_config_int(cfg, "seed");
  self->held_out = ps_config_bool(cfg, "held_out");
  self->base.width = self->base.height = self->size;
  self->base.artefact_probability = ps_config_float(cfg, "artefact_probability");
  if (!name_set(cfg, "targets", ps_synth_target_from_name, target_name, PS_SYNTH_TARGET_COUNT,
                &self->base.targets, error) ||
      !name_set(cfg, "morphologies", ps_synth_morphology_from_name, morph_name,
                PS_SYNTH_MORPHOLOGY_COUNT, &self->morphs, error) ||
      !name_set(cfg, "stain_styles", ps_synth_stain_from_name, stain_name, PS_SYNTH_STAIN_COUNT,
                &self->stains, error)) {
    synth_destroy(self);
    return NULL;
  }
  size_t nm;
  const int64_t *mags = ps_config_int_list(cfg, "magnifications", &nm);
  for (size_t i = 0; i < nm; i++) {
    int k = mags[i] > 0 && mags[i] < 1000 ? ps_synth_magnification_index((int)mags[i]) : -1;
    if (k < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "dataset.synthetic: magnifications: %" G_GINT64_FORMAT
                  " is not one of 5, 10, 20, 40",
                  mags[i]);
      synth_destroy(self);
      return NULL;
    }
    self->base.magnifications |= 1u << k;
  }
  if (!self->base.magnifications) {
    g_set_error_literal(error, PS_ERROR, PS_ERROR_INVALID,
                        "dataset.synthetic: magnifications is empty");
    synth_destroy(self);
    return NULL;
  }
  if (self->held_out) {
    self->ho_morphs = self->morphs & ps_synth_held_out_morphologies();
    self->ho_stains = self->stains & ps_synth_held_out_stains();
    if (!(self->morphs & ~self->ho_morphs) || !(self->stains & ~self->ho_stains)) {
      g_set_error(
          error, PS_ERROR, PS_ERROR_INVALID,
          "dataset.synthetic: every listed %s is held out, so train/val/test would be empty; "
          "list one that is not or set held_out: false",
          !(self->morphs & ~self->ho_morphs) ? "morphology" : "stain style");
      synth_destroy(self);
      return NULL;
    }
    if (!self->ho_morphs && !self->ho_stains) self->n[3] = 0; /* nothing to hold out */
  } else {
    self->n[3] = 0;
  }
  self->threads = MAX(1, ps_context_threads(ctx));
  self->scratch = g_new0(ps_synth_scratch *, self->threads);
  for (int i = 0; i < self->threads; i++) self->scratch[i] = ps_synth_scratch_new();
  self->describe_scratch = ps_synth_scratch_new();
  static const char *const names[FIELD_COUNT] = {"image", "image_rgb", "mask", "labels", "target"};
  for (int f = 0; f < FIELD_COUNT; f++) self->fields[f].name = names[f];
  self->batch = (ps_ports){self->fields, FIELD_COUNT};
  return self;
}

static int64_t synth_size(void *p, const char *split) {
  synth_dataset *self = p;
  int s = split_index(split);
  return s < 0 ? 0 : self->n[s];
}

/* The spec of example `index` of split `s`: zeroshot tiles pick which of
 * morphology / stain / both is held out from their own seed. */
static ps_synth_spec spec_for(const synth_dataset *self, int s, uint64_t tile_seed) {
  ps_synth_spec spec = self->base;
  spec.morphologies = self->morphs & ~self->ho_morphs;
  spec.stains = self->stains & ~self->ho_stains;
  if (s == 3) {
    ps_rng r;
    ps_rng_seed(&r, tile_seed ^ 0x5a5a5a5a5a5a5a5aull);
    int modes[3], nmodes = 0;
    if (self->ho_morphs) modes[nmodes++] = 0;
    if (self->ho_stains) modes[nmodes++] = 1;
    if (self->ho_morphs && self->ho_stains) modes[nmodes++] = 2;
    int mode = modes[ps_rng_below(&r, (uint64_t)nmodes)];
    if (mode != 1) spec.morphologies = self->ho_morphs;
    if (mode != 0) spec.stains = self->ho_stains;
  }
  return spec;
}

static gboolean ensure(ps_tensor **t, ps_dtype dtype, int64_t d0, int64_t d1, int64_t d2,
                       int64_t d3, GError **error) {
  if (*t && (*t)->shape[0] == d0) return TRUE;
  ps_tensor_free(*t);
  *t = ps_tensor_new4(dtype, d0, d1, d2, d3, error);
  return *t != NULL;
}

static gboolean check_index(const synth_dataset *self, const char *split, int s, int64_t index,
                            GError **error) {
  if (s < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "dataset.synthetic: unknown split '%s' (train, val, test, zeroshot)", split);
    return FALSE;
  }
  if (index < 0 || index >= self->n[s]) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "dataset.synthetic: index %" G_GINT64_FORMAT
                " is outside split '%s' of size %" G_GINT64_FORMAT,
                index, split, self->n[s]);
    return FALSE;
  }
  return TRUE;
}

static const ps_ports *synth_batch(void *p, const char *split, const int64_t *indices, size_t n,
                                   ps_rng *rng, GError **error) {
  synth_dataset *self = p;
  int s = split_index(split);
  for (size_t r = 0; r < n; r++)
    if (!check_index(self, split, s, indices[r], error)) return NULL;
  const int64_t B = (int64_t)n, T = self->size;
  if (!ensure(&self->t[FIELD_IMAGE], PS_DTYPE_F32, B, 3, T, T, error) ||
      !ensure(&self->t[FIELD_RGB], PS_DTYPE_U8, B, T, T, 3, error) ||
      !ensure(&self->t[FIELD_MASK], PS_DTYPE_F32, B, 1, T, T, error) ||
      !ensure(&self->t[FIELD_LABELS], PS_DTYPE_U8, B, T, T, -1, error) ||
      !ensure(&self->t[FIELD_TARGET], PS_DTYPE_I32, B, -1, -1, -1, error))
    return NULL;
  if (self->infos_cap < n) {
    self->infos = g_renew(ps_synth_info, self->infos, n);
    self->infos_cap = n;
  }
  self->ninfos = n;
  const size_t px = (size_t)(T * T);
  gboolean ok = TRUE;
  GError *first = NULL;
#pragma omp parallel for schedule(dynamic, 1) num_threads(self->threads)
  for (size_t r = 0; r < n; r++) {
    uint64_t ts = ps_synth_tile_seed(self->seed, split, indices[r]);
    ps_synth_spec spec = spec_for(self, s, ts);
    uint8_t *rgb = (uint8_t *)self->t[FIELD_RGB]->data + r * px * 3;
    uint8_t *labels = (uint8_t *)self->t[FIELD_LABELS]->data + r * px;
    ps_synth_info *info = &self->infos[r];
    GError *err = NULL;
    int th = omp_get_thread_num();
    if (!ps_synth_tile(&spec, ts, self->scratch[th < self->threads ? th : 0], rgb, NULL, labels,
                       info, &err)) {
#pragma omp critical(ps_synth_batch_error)
      {
        if (!first)
          first = err;
        else
          g_error_free(err);
        ok = FALSE;
      }
      continue;
    }
    /* The mask is the target's labels, exactly as ps_synth_tile defines it. */
    const uint32_t want = ps_synth_target_labels(info->target);
    float *img = ps_f32(self->t[FIELD_IMAGE]) + r * px * 3,
          *mask = ps_f32(self->t[FIELD_MASK]) + r * px;
    for (size_t i = 0; i < px; i++) {
      for (int c = 0; c < 3; c++) img[c * px + i] = rgb[i * 3 + c] * (1.0f / 255.0f);
      mask[i] = (float)((want >> labels[i]) & 1u);
    }
    ((int32_t *)self->t[FIELD_TARGET]->data)[r] = (int32_t)info->target;
  }
  if (!ok) {
    g_propagate_error(error, first);
    return NULL;
  }
  for (int f = 0; f < FIELD_COUNT; f++) self->fields[f].tensor = self->t[f];
  return &self->batch;
}

static gboolean synth_describe(void *p, const char *split, int64_t index, ps_synth_info *out,
                               GError **error) {
  synth_dataset *self = p;
  int s = split_index(split);
  if (!check_index(self, split, s, index, error)) return FALSE;
  uint64_t ts = ps_synth_tile_seed(self->seed, split, index);
  ps_synth_spec spec = spec_for(self, s, ts);
  size_t px = (size_t)self->size * self->size;
  g_autofree uint8_t *rgb = g_malloc(px * 3);
  return ps_synth_tile(&spec, ts, self->describe_scratch, rgb, NULL, NULL, out, error);
}

static const ps_synth_info *synth_last_batch(void *p, size_t *n) {
  synth_dataset *self = p;
  *n = self->ninfos;
  return self->ninfos ? self->infos : NULL;
}

static const ps_dataset_iface synth_dataset_iface = {
    .struct_size = sizeof(ps_dataset_iface),
    .size = synth_size,
    .batch = synth_batch,
};

static const ps_synth_info_iface synth_info_iface = {
    .struct_size = sizeof(ps_synth_info_iface),
    .describe = synth_describe,
    .last_batch = synth_last_batch,
};

static const void *synth_capability(const char *name) {
  if (strcmp(name, "dataset") == 0) return &synth_dataset_iface;
  if (strcmp(name, "synthetic_info") == 0) return &synth_info_iface;
  return NULL;
}

static const ps_component_vtable synth_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = synth_create,
    .destroy = synth_destroy,
};

static const ps_component_desc synth_component = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_DATASET,
    .name = "dataset.synthetic",
    .doc = "Procedural H&E-like tiles with exact masks, deterministic from a seed: glands, tumour "
           "(tubular, cribriform, mucinous, signet-ring, solid), nuclei, stroma, necrosis, lumen; "
           "five H&E styles and an IHC-like one; frozen-section artefacts; 5x-40x. Fields image, "
           "image_rgb, mask, labels, target; capability synthetic_info describes each tile.",
    .config = synth_keys,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &synth_vtable,
    .capability = synth_capability,
};

static const ps_component_desc *const synth_components[] = {&synth_component, NULL};

static const ps_plugin_desc synth_plugin = {
    PS_PLUGIN_HEADER,
    .name = "synthetic",
    .version = "0.1.0",
    .license = "MIT",
    .description = "The embedded default dataset: synthetic H&E-like tiles with exact masks",
    .components = synth_components,
    .init = NULL,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) {
  return &synth_plugin;
}
