/* build.c — `stage.build_benchmark`: synthetic tiles -> descriptors -> query
 * and reasoning chain -> grouped 8:1:1 splits -> PNG tiles, PNG masks and
 * manifest.jsonl in `out_dir`. Every tile is a pure function of (seed, index);
 * tiles already on disk are kept (the stage resumes), each PNG and the
 * manifest are written atomically. */
#include <glib/gstdio.h>
#include <pathseg/run.h>
#include <string.h>

#include "annotate.h"
#include "benchmark.h"
#include "describe.h"
#include "manifest.h"
#include "png_io.h"
#include "synth.h"

typedef struct {
  char *out_dir, *organ;
  int64_t tiles, zeroshot, patients, size;
  uint64_t seed;
  uint32_t targets;
  double artefacts;
} build;

const ps_config_key ps_build_config[] = {
    {"out_dir", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "directory for images/, masks/ and manifest.jsonl"},
    {"source", PS_TYPE_ENUM, "synthetic", PS_NO_RANGE, "synthetic", "where tiles come from"},
    {"tiles", PS_TYPE_INT, "400", 1, 1e8, NULL, "tiles in train + val + test"},
    {"zeroshot_tiles", PS_TYPE_INT, "40", 0, 1e8, NULL, "extra tiles with held-out morphologies or stains"},
    {"patients", PS_TYPE_INT, "40", 1, 1e8, NULL, "synthetic patients the tiles are grouped into"},
    {"tile_size", PS_TYPE_INT, "128", 64, 512, NULL, "tile width and height in pixels"},
    {"seed", PS_TYPE_INT, "1", 0, 1e15, NULL, "seed of the whole benchmark"},
    {"targets", PS_TYPE_STRING_LIST, "[gland, tumour, nuclei, necrosis, lumen, stroma]", PS_NO_RANGE, NULL,
     "query targets to draw"},
    {"artefact_probability", PS_TYPE_FLOAT, "0.1", 0, 1, NULL, "share of frozen-section tiles"},
    {"organ", PS_TYPE_STRING, "colonic", PS_NO_RANGE, NULL, "organ word used in reasoning chains"},
    {NULL},
};

void ps_build_destroy(void *self) {
  build *b = self;
  g_free(b->out_dir);
  g_free(b->organ);
  g_free(b);
}

void *ps_build_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  if (!ps_png_init(error)) return NULL;
  g_autofree build *b = g_new0(build, 1);
  size_t n = 0;
  const char *const *names = ps_config_string_list(cfg, "targets", &n);
  for (size_t i = 0; i < n; i++) {
    int t = ps_synth_target_from_name(names[i]);
    if (t < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "targets: unknown target '%s'", names[i]);
      return NULL;
    }
    b->targets |= 1u << t;
  }
  b->out_dir = g_strdup(ps_config_string(cfg, "out_dir"));
  b->organ = g_strdup(ps_config_string(cfg, "organ"));
  b->tiles = ps_config_int(cfg, "tiles");
  b->zeroshot = ps_config_int(cfg, "zeroshot_tiles");
  b->patients = ps_config_int(cfg, "patients");
  b->size = ps_config_int(cfg, "tile_size");
  b->seed = (uint64_t)ps_config_int(cfg, "seed");
  b->artefacts = ps_config_float(cfg, "artefact_probability");
  return g_steal_pointer(&b);
}

/* Targets that can be drawn with at least one morphology of `morphologies`. */
static uint32_t targets_with(uint32_t targets, uint32_t morphologies) {
  uint32_t out = 0;
  for (int t = 0; t < PS_SYNTH_TARGET_COUNT; t++)
    if ((targets & (1u << t)) && (ps_synth_target_morphologies((ps_synth_target)t) & morphologies))
      out |= 1u << t;
  return out;
}

gboolean ps_build_run(void *self, ps_run *run, GError **error) {
  build *b = self;
  g_autofree char *images = g_build_filename(b->out_dir, "images", NULL);
  g_autofree char *masks = g_build_filename(b->out_dir, "masks", NULL);
  if (g_mkdir_with_parents(images, 0755) != 0 || g_mkdir_with_parents(masks, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s/images and masks/", b->out_dir);
    return FALSE;
  }
  const uint32_t all_m = (1u << PS_SYNTH_MORPHOLOGY_COUNT) - 1, all_s = (1u << PS_SYNTH_STAIN_COUNT) - 1;
  const uint32_t seen_m = all_m & ~ps_synth_held_out_morphologies();
  const uint32_t seen_s = all_s & ~ps_synth_held_out_stains();
  g_autoptr(ps_synth_scratch) scratch = ps_synth_scratch_new();
  const int S = (int)b->size;
  g_autofree uint8_t *rgb = g_malloc((size_t)S * S * 3);
  g_autofree uint8_t *mask = g_malloc((size_t)S * S);
  g_autofree uint8_t *mask255 = g_malloc((size_t)S * S);
  g_autofree int32_t *cc = g_malloc(sizeof(int32_t) * (size_t)S * S);
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  int64_t total = b->tiles + b->zeroshot, written = 0;
  for (int64_t i = 0; i < total; i++) {
    if (ps_run_cancelled(run)) return TRUE; /* the tiles so far stay; rerunning resumes */
    gboolean zs = i >= b->tiles;
    ps_synth_spec spec = {S, S, b->targets, seen_m, seen_s, 0, b->artefacts};
    if (zs && (i % 2 == 0)) {
      spec.stains = ps_synth_held_out_stains();
    } else if (zs) {
      spec.morphologies = ps_synth_held_out_morphologies();
      spec.targets = targets_with(b->targets, spec.morphologies);
    }
    ps_synth_info info;
    uint64_t seed = ps_synth_tile_seed(b->seed, zs ? "zeroshot" : "benchmark", i);
    if (!ps_synth_tile(&spec, seed, scratch, rgb, mask, NULL, &info, error)) {
      g_prefix_error(error, "tile %" G_GINT64_FORMAT ": ", i);
      return FALSE;
    }
    ps_descriptors d;
    ps_describe(rgb, mask, S, S, 4, cc, &d);
    ps_rng rng;
    ps_rng_seed(&rng, seed ^ 0x7e47ULL);
    ps_annotation_input in = {info.target_name, info.morphology_name, info.stain_name, b->organ,
                              info.magnification, &d};
    ps_manifest_row *r = g_new0(ps_manifest_row, 1);
    ps_template_annotate(&in, &rng, &r->query, &r->reasoning);
    r->image = g_strdup_printf("images/%06" G_GINT64_FORMAT ".png", i);
    r->mask = g_strdup_printf("masks/%06" G_GINT64_FORMAT ".png", i);
    r->source = g_strdup("synthetic");
    r->group = zs ? g_strdup_printf("synth-zs-%04" G_GINT64_FORMAT, (i - b->tiles) % b->patients)
                  : g_strdup_printf("synth-%04" G_GINT64_FORMAT, i % b->patients);
    r->target = g_strdup(info.target_name);
    r->morphology = g_strdup(info.morphology_name);
    r->stain = g_strdup(info.stain_name);
    r->magnification = info.magnification;
    r->held_out = info.held_out_morphology || info.held_out_stain;
    r->split = g_strdup(zs ? "zeroshot" : ps_manifest_split_for(r->group, b->seed));
    r->width = r->height = S;
    r->review = g_strdup("pending");
    g_ptr_array_add(rows, r);

    g_autofree char *img_path = g_build_filename(b->out_dir, r->image, NULL);
    g_autofree char *mask_path = g_build_filename(b->out_dir, r->mask, NULL);
    if (!g_file_test(img_path, G_FILE_TEST_EXISTS) || !g_file_test(mask_path, G_FILE_TEST_EXISTS)) {
      for (int k = 0; k < S * S; k++) mask255[k] = mask[k] ? 255 : 0;
      if (!ps_png_write(img_path, rgb, S, S, 3, error) || !ps_png_write(mask_path, mask255, S, S, 1, error))
        return FALSE;
      written++;
    }
    ps_run_progress(run, i + 1, total, "%s", info.target_name);
  }
  g_autofree char *manifest = g_build_filename(b->out_dir, "manifest.jsonl", NULL);
  if (!ps_manifest_write(manifest, rows, error)) return FALSE;
  int64_t per_split[4] = {0};
  for (guint i = 0; i < rows->len; i++) {
    const char *s = ((ps_manifest_row *)g_ptr_array_index(rows, i))->split;
    per_split[strcmp(s, "train") == 0 ? 0 : strcmp(s, "val") == 0 ? 1 : strcmp(s, "test") == 0 ? 2 : 3]++;
  }
  ps_run_log(run, "%s: %u rows (train %" G_GINT64_FORMAT ", val %" G_GINT64_FORMAT ", test %" G_GINT64_FORMAT
             ", zeroshot %" G_GINT64_FORMAT "), %" G_GINT64_FORMAT " tiles written",
             manifest, rows->len, per_split[0], per_split[1], per_split[2], per_split[3], written);
  return TRUE;
}
