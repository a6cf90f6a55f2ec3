/* build.c — `stage.build_benchmark`: sources -> tiles -> triplets -> splits
 * -> one manifest.
 *
 *   sources   `sources:` (sources.h): the synthetic generator, public datasets
 *             in their published layouts (the converters' code), manifests
 *             written by stage.preprocess_slides or stage.convert;
 *   tiles     synthetic tiles are made at tile_size; other images are cut
 *             into a grid of tile_size tiles or resized to it (`tiling`),
 *             and tiles with an empty mask are dropped unless `keep_empty`;
 *   triplets  descriptors measured from each tile and its mask, a query in
 *             template phrasing, and the reasoning chain from the annotator
 *             named by `annotator:` (a component instance with the
 *             "annotator" capability, pathseg/annotator.h; empty: the
 *             built-in template). An item the annotator fails on is skipped
 *             with the reason logged;
 *   splits    8:1:1 by a hash of the patient/slide group (no group in two
 *             splits); held-out morphologies and stains go to `zeroshot`;
 *   manifest  PNG tiles, PNG masks and manifest.jsonl in `out_dir`.
 *
 * Every synthetic tile is a pure function of (seed, index); synthetic tiles
 * already on disk are kept (the stage resumes). Each PNG and the manifest are
 * written atomically, and the manifest only when the build finished with at
 * least one row. */
#include <glib/gstdio.h>
#include <pathseg/run.h>
#include <stddef.h>
#include <string.h>

#include "annotate.h"
#include "benchmark.h"
#include "describe.h"
#include "manifest.h"
#include "png_io.h"
#include "sources.h"
#include "synth.h"

typedef struct {
  char *out_dir, *organ, *annotator;
  char **sources;
  int64_t tiles, zeroshot, patients, size;
  uint64_t seed;
  uint32_t targets;
  double artefacts;
  bb_tiling tiling;
  gboolean keep_empty;
  bb_convert_options conv;
} build;

/* What one run needs besides the configuration. */
typedef struct {
  build *b;
  ps_run *run;
  const ps_annotator_iface *ann;
  void *ann_self;
  GPtrArray *rows; /* ps_manifest_row* */
  int64_t written, skipped, empty;
  uint8_t *rgb, *mask, *mask255; /* (S, S, 3), (S, S), (S, S) */
  int32_t *cc;                   /* (S, S) component labels */
} job;

const ps_config_key ps_build_config[] = {
    {"out_dir", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "directory for images/, masks/ and manifest.jsonl"},
    {"sources", PS_TYPE_STRING_LIST, "[synthetic]", PS_NO_RANGE, NULL,
     "where images come from: synthetic | convert:FORMAT:DIR | manifest:PATH (see pipelines/build_benchmark.yaml)"},
    {"annotator", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "component instance (capability \"annotator\") that writes the reasoning chains; empty: the built-in template"},
    {"tiles", PS_TYPE_INT, "400", 1, 1e8, NULL, "synthetic tiles in train + val + test"},
    {"zeroshot_tiles", PS_TYPE_INT, "40", 0, 1e8, NULL, "extra synthetic tiles with held-out morphologies or stains"},
    {"patients", PS_TYPE_INT, "40", 1, 1e8, NULL, "synthetic patients the tiles are grouped into"},
    {"tile_size", PS_TYPE_INT, "128", 64, 512, NULL, "tile width and height in pixels"},
    {"seed", PS_TYPE_INT, "1", 0, 1e15, NULL, "seed of the whole benchmark"},
    {"targets", PS_TYPE_STRING_LIST, "[gland, tumour, nuclei, necrosis, lumen, stroma]", PS_NO_RANGE, NULL,
     "synthetic query targets to draw"},
    {"artefact_probability", PS_TYPE_FLOAT, "0.1", 0, 1, NULL, "share of frozen-section synthetic tiles"},
    {"organ", PS_TYPE_STRING, "colonic", PS_NO_RANGE, NULL,
     "organ word in reasoning chains (synthetic, and sources whose organ is not known)"},
    {"tiling", PS_TYPE_ENUM, "grid", PS_NO_RANGE, "grid|resize",
     "non-synthetic images: grid of tile_size tiles (smaller images skipped) or resized whole to tile_size"},
    {"keep_empty", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL, "keep non-synthetic tiles whose mask is empty"},
    {"convert.threshold", PS_TYPE_INT, "128", 1, 255, NULL, "converter sources: grey masks are foreground from this"},
    {"convert.min_component", PS_TYPE_INT, "4", 1, 1e9, NULL, "smallest mask piece the descriptors count (pixels)"},
    {"convert.negatives", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "converter sources: keep images without the target (then dropped as empty tiles unless keep_empty)"},
    {"convert.downsample", PS_TYPE_FLOAT, "1", 1e-6, 1e6, NULL,
     "converter sources: Camelyon level-0 pixels per tile pixel when a name has no _d<DS>"},
    {NULL},
};

void ps_build_destroy(void *self) {
  build *b = self;
  g_free(b->out_dir);
  g_free(b->organ);
  g_free(b->annotator);
  g_strfreev(b->sources);
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
  /* Parsed here so that a mistyped source fails before any stage runs. */
  g_autoptr(GPtrArray) parsed = bb_sources_parse(ps_config_string_list(cfg, "sources", NULL), error);
  if (!parsed) return NULL;
  b->sources = g_strdupv((char **)ps_config_string_list(cfg, "sources", NULL));
  b->out_dir = g_strdup(ps_config_string(cfg, "out_dir"));
  b->organ = g_strdup(ps_config_string(cfg, "organ"));
  b->annotator = g_strdup(ps_config_string(cfg, "annotator"));
  b->tiles = ps_config_int(cfg, "tiles");
  b->zeroshot = ps_config_int(cfg, "zeroshot_tiles");
  b->patients = ps_config_int(cfg, "patients");
  b->size = ps_config_int(cfg, "tile_size");
  b->seed = (uint64_t)ps_config_int(cfg, "seed");
  b->artefacts = ps_config_float(cfg, "artefact_probability");
  b->tiling = strcmp(ps_config_string(cfg, "tiling"), "resize") == 0 ? BB_TILING_RESIZE : BB_TILING_GRID;
  b->keep_empty = ps_config_bool(cfg, "keep_empty");
  b->conv.threshold = (int)ps_config_int(cfg, "convert.threshold");
  b->conv.min_component = (int)ps_config_int(cfg, "convert.min_component");
  b->conv.negatives = ps_config_bool(cfg, "convert.negatives");
  b->conv.downsample = ps_config_float(cfg, "convert.downsample");
  b->conv.seed = b->seed;
  return g_steal_pointer(&b);
}

/* ------------------------------------------------------------------ */
/* Triplets: query and reasoning chain of one tile. */

/* The chain holds <SEG> once, followed by closing punctuation at most. */
static gboolean check_chain(const char *chain, GError **error) {
  int count = 0;
  const char *last = NULL;
  for (const char *p = strstr(chain, PS_SEG_TOKEN); p; p = strstr(p + 1, PS_SEG_TOKEN)) {
    count++;
    last = p;
  }
  if (count != 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "the reasoning chain has %d %s tokens, not one", count,
                PS_SEG_TOKEN);
    return FALSE;
  }
  for (const char *p = last + strlen(PS_SEG_TOKEN); *p; p++)
    if (!strchr(".!?)\"' \t\r\n", *p)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "the reasoning chain goes on after %s: \"%s\"", PS_SEG_TOKEN,
                  last + strlen(PS_SEG_TOKEN));
      return FALSE;
    }
  return TRUE;
}

/* Sets row->query and row->reasoning; FALSE (the reason in `error`) when the
 * annotator fails or writes a chain the benchmark cannot use. */
static gboolean annotate(job *j, ps_manifest_row *row, const ps_annotation_input *in, uint64_t seed,
                         GError **error) {
  ps_rng rng;
  ps_rng_seed(&rng, seed);
  row->query = ps_template_query(in, &rng);
  ps_annotator_item item = {
      .struct_size = sizeof(ps_annotator_item),
      .image = row->image,
      .query = row->query,
      .target = in->target,
      .target_plural = ps_template_target_plural(in->target),
      .morphology = in->morphology,
      .stain = in->stain,
      .organ = in->organ,
      .source = row->source,
      .magnification = in->magnification,
      .width = row->width,
      .height = row->height,
      .descriptors = in->d,
      .seed = seed,
  };
  row->reasoning = j->ann->annotate(j->ann_self, &item, error);
  if (!row->reasoning) {
    if (error && !*error) g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "the annotator gave no chain");
    return FALSE;
  }
  return check_chain(row->reasoning, error);
}

static void skip(job *j, const char *what, GError **error) {
  j->skipped++;
  ps_run_log(j->run, "skipped %s: %s", what, *error ? (*error)->message : "unknown reason");
  g_clear_error(error);
}

/* ------------------------------------------------------------------ */
/* Synthetic source. */

/* Targets that can be drawn with at least one morphology of `morphologies`. */
static uint32_t targets_with(uint32_t targets, uint32_t morphologies) {
  uint32_t out = 0;
  for (int t = 0; t < PS_SYNTH_TARGET_COUNT; t++)
    if ((targets & (1u << t)) && (ps_synth_target_morphologies((ps_synth_target)t) & morphologies))
      out |= 1u << t;
  return out;
}

static gboolean synthetic_rows(job *j, GError **error) {
  build *b = j->b;
  const uint32_t all_m = (1u << PS_SYNTH_MORPHOLOGY_COUNT) - 1, all_s = (1u << PS_SYNTH_STAIN_COUNT) - 1;
  const uint32_t seen_m = all_m & ~ps_synth_held_out_morphologies();
  const uint32_t seen_s = all_s & ~ps_synth_held_out_stains();
  g_autoptr(ps_synth_scratch) scratch = ps_synth_scratch_new();
  const int S = (int)b->size;
  int64_t total = b->tiles + b->zeroshot;
  for (int64_t i = 0; i < total; i++) {
    if (ps_run_cancelled(j->run)) return TRUE; /* the tiles so far stay; rerunning resumes */
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
    if (!ps_synth_tile(&spec, seed, scratch, j->rgb, j->mask, NULL, &info, error)) {
      g_prefix_error(error, "tile %" G_GINT64_FORMAT ": ", i);
      return FALSE;
    }
    ps_descriptors d;
    ps_describe(j->rgb, j->mask, S, S, 4, j->cc, &d);
    ps_annotation_input in = {info.target_name, info.morphology_name, info.stain_name, b->organ,
                              info.magnification, &d};
    g_autoptr(ps_manifest_row) r = g_new0(ps_manifest_row, 1);
    r->image = g_strdup_printf("images/%06" G_GINT64_FORMAT ".png", i);
    r->mask = g_strdup_printf("masks/%06" G_GINT64_FORMAT ".png", i);
    r->source = g_strdup("synthetic");
    r->width = r->height = S;
    if (!annotate(j, r, &in, seed ^ 0x7e47ULL, error)) {
      skip(j, r->image, error);
      continue;
    }
    r->group = zs ? g_strdup_printf("synth-zs-%04" G_GINT64_FORMAT, (i - b->tiles) % b->patients)
                  : g_strdup_printf("synth-%04" G_GINT64_FORMAT, i % b->patients);
    r->target = g_strdup(info.target_name);
    r->morphology = g_strdup(info.morphology_name);
    r->stain = g_strdup(info.stain_name);
    r->magnification = info.magnification;
    r->held_out = info.held_out_morphology || info.held_out_stain;
    r->split = g_strdup(zs ? "zeroshot" : ps_manifest_split_for(r->group, b->seed));
    r->review = g_strdup("pending");

    g_autofree char *img_path = g_build_filename(b->out_dir, r->image, NULL);
    g_autofree char *mask_path = g_build_filename(b->out_dir, r->mask, NULL);
    if (!g_file_test(img_path, G_FILE_TEST_EXISTS) || !g_file_test(mask_path, G_FILE_TEST_EXISTS)) {
      for (int k = 0; k < S * S; k++) j->mask255[k] = j->mask[k] ? 255 : 0;
      if (!ps_png_write(img_path, j->rgb, S, S, 3, error) || !ps_png_write(mask_path, j->mask255, S, S, 1, error))
        return FALSE;
      j->written++;
    }
    g_ptr_array_add(j->rows, g_steal_pointer(&r));
    ps_run_progress(j->run, i + 1, total, "%s", info.target_name);
  }
  return TRUE;
}

/* ------------------------------------------------------------------ */
/* Converter and manifest sources. */

static uint64_t fnv(uint64_t h, const char *s) {
  for (const char *p = s; p && *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
  return h;
}

/* "sub/dir/name.png" -> "sub_dir_name", safe for a file name. */
static char *flat_stem(const char *rel) {
  char *s = g_strdup(rel);
  char *dot = strrchr(s, '.');
  if (dot && !strchr(dot, '/')) *dot = '\0';
  for (char *p = s; *p; p++)
    if (!g_ascii_isalnum(*p) && *p != '-' && *p != '_') *p = '_';
  return s;
}

/* One S x S tile (j->rgb, j->mask as 0/1) of source row `src`. */
static gboolean add_tile(job *j, const ps_manifest_row *src, const char *dir, const char *stem, int x, int y,
                         int magnification, GError **error) {
  build *b = j->b;
  const int S = (int)b->size;
  int64_t on = 0;
  for (int k = 0; k < S * S; k++) on += j->mask[k] != 0;
  if (!on && !b->keep_empty) {
    j->empty++;
    return TRUE;
  }
  g_autoptr(ps_manifest_row) r = g_new0(ps_manifest_row, 1);
  r->image = x < 0 ? g_strdup_printf("images/%s/%s.png", dir, stem)
                   : g_strdup_printf("images/%s/%s_%d_%d.png", dir, stem, x, y);
  r->mask = x < 0 ? g_strdup_printf("masks/%s/%s.png", dir, stem)
                  : g_strdup_printf("masks/%s/%s_%d_%d.png", dir, stem, x, y);
  r->source = g_strdup(src->source ? src->source : "manifest");
  r->width = r->height = S;
  ps_descriptors d;
  ps_describe(j->rgb, j->mask, S, S, b->conv.min_component, j->cc, &d);
  const char *organ = bb_source_organ(src->source);
  ps_annotation_input in = {src->target ? src->target : "target", src->morphology, src->stain,
                            organ ? organ : b->organ, magnification, &d};
  if (!annotate(j, r, &in, fnv(b->seed ^ 0x7e47ULL, r->image), error)) {
    skip(j, r->image, error);
    return TRUE;
  }
  g_autofree char *fallback_group = g_strdup_printf("%s-%s", r->source, stem);
  r->group = g_strdup(src->group ? src->group : fallback_group);
  r->target = g_strdup(src->target);
  r->morphology = g_strdup(src->morphology);
  r->stain = g_strdup(src->stain);
  r->magnification = magnification;
  r->held_out = src->held_out;
  r->split = g_strdup(r->held_out ? "zeroshot" : ps_manifest_split_for(r->group, b->seed));
  r->review = g_strdup("pending");
  g_autofree char *img_path = g_build_filename(b->out_dir, r->image, NULL);
  g_autofree char *mask_path = g_build_filename(b->out_dir, r->mask, NULL);
  for (int k = 0; k < S * S; k++) j->mask255[k] = j->mask[k] ? 255 : 0;
  if (!ps_png_write(img_path, j->rgb, S, S, 3, error) || !ps_png_write(mask_path, j->mask255, S, S, 1, error))
    return FALSE;
  j->written++;
  g_ptr_array_add(j->rows, g_steal_pointer(&r));
  return TRUE;
}

/* The tiles of one source row; unusable rows are skipped with the reason. */
static gboolean row_tiles(job *j, const ps_manifest_row *src, const char *base, const char *dir, GError **error) {
  build *b = j->b;
  const int S = (int)b->size;
  g_autofree char *ip = g_build_filename(base, src->image, NULL);
  g_autofree char *mp = g_build_filename(base, src->mask, NULL);
  int w = 0, h = 0, mw = 0, mh = 0;
  g_autofree uint8_t *rgb = ps_png_read(ip, 3, &w, &h, error);
  if (!rgb) {
    skip(j, ip, error);
    return TRUE;
  }
  g_autofree uint8_t *mask = ps_png_read(mp, 1, &mw, &mh, error);
  if (!mask) {
    skip(j, ip, error);
    return TRUE;
  }
  if (mw != w || mh != h) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "mask %s is %dx%d, the image %dx%d", mp, mw, mh, w, h);
    skip(j, ip, error);
    return TRUE;
  }
  for (size_t k = 0; k < (size_t)w * h; k++) mask[k] = mask[k] > 127;
  g_autofree char *stem = flat_stem(src->image);
  if (b->tiling == BB_TILING_RESIZE) {
    bb_resize_rgb(rgb, w, h, S, j->rgb);
    bb_resize_mask(mask, w, h, S, j->mask);
    /* The nominal magnification scales with the image. */
    int mag = src->magnification > 0 ? (int)(src->magnification * (double)S / w + 0.5) : 0;
    return add_tile(j, src, dir, stem, -1, -1, mag > 0 ? mag : 0, error);
  }
  int nx = bb_grid_count(w, S), ny = bb_grid_count(h, S);
  if (!nx || !ny) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "%dx%d is smaller than tile_size %d (tiling: resize fits it)", w,
                h, S);
    skip(j, ip, error);
    return TRUE;
  }
  g_autofree int *xs = g_new(int, nx);
  g_autofree int *ys = g_new(int, ny);
  bb_grid_starts(w, S, xs);
  bb_grid_starts(h, S, ys);
  for (int ty = 0; ty < ny; ty++)
    for (int tx = 0; tx < nx; tx++) {
      bb_crop(rgb, w, 3, xs[tx], ys[ty], S, j->rgb);
      bb_crop(mask, w, 1, xs[tx], ys[ty], S, j->mask);
      if (!add_tile(j, src, dir, stem, xs[tx], ys[ty], src->magnification, error)) return FALSE;
    }
  return TRUE;
}

static void log_to_run(void *user, const char *message) { ps_run_log(((job *)user)->run, "%s", message); }
static gboolean run_cancelled(void *user) { return ps_run_cancelled(((job *)user)->run); }

static gboolean external_rows(job *j, const bb_source *s, size_t index, GError **error) {
  build *b = j->b;
  /* Each source has its own folders, so equal names in two sources never collide. */
  g_autofree char *tag = g_strdup_printf("%zu-%s", index, s->kind == BB_SOURCE_CONVERT ? s->format : "manifest");
  g_autofree char *work = g_build_filename(b->out_dir, "sources", tag, NULL);
  bb_convert_options o = b->conv;
  o.log = log_to_run;
  o.cancelled = run_cancelled;
  o.user = j;
  g_autofree char *base = NULL;
  g_autoptr(GPtrArray) rows = bb_source_rows(s, work, &o, &base, error);
  if (!rows) return FALSE;
  g_autofree char *img_dir = g_build_filename(b->out_dir, "images", tag, NULL);
  g_autofree char *mask_dir = g_build_filename(b->out_dir, "masks", tag, NULL);
  if (g_mkdir_with_parents(img_dir, 0755) != 0 || g_mkdir_with_parents(mask_dir, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s and %s", img_dir, mask_dir);
    return FALSE;
  }
  int64_t before = j->rows->len;
  for (guint i = 0; i < rows->len && !ps_run_cancelled(j->run); i++) {
    if (!row_tiles(j, g_ptr_array_index(rows, i), base, tag, error)) return FALSE;
    ps_run_progress(j->run, i + 1, rows->len, "%s", s->spec);
  }
  ps_run_log(j->run, "source %s: %u images -> %" G_GINT64_FORMAT " tiles", s->spec, rows->len,
             (int64_t)j->rows->len - before);
  return TRUE;
}

/* ------------------------------------------------------------------ */

/* The annotator named by `annotator:`, or the built-in template. */
static gboolean find_annotator(job *j, GError **error) {
  const char *name = j->b->annotator;
  if (!name || !*name) {
    j->ann = &ps_template_annotator;
    j->ann_self = NULL;
    return TRUE;
  }
  ps_graph *g = ps_run_graph(j->run);
  const ps_component_desc *desc = NULL;
  void *self = g ? ps_graph_self(g, name, &desc) : NULL;
  if (!desc) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "annotator: there is no component '%s' under components: (an annotator.* component)", name);
    return FALSE;
  }
  const ps_annotator_iface *ann = ps_graph_capability(g, name, "annotator");
  if (!ann || ann->struct_size < offsetof(ps_annotator_iface, annotate) + sizeof(ann->annotate) || !ann->annotate) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "annotator: component '%s' (%s) is not an annotator", name,
                desc->name);
    return FALSE;
  }
  j->ann = ann;
  j->ann_self = self;
  return TRUE;
}

gboolean ps_build_run(void *self, ps_run *run, GError **error) {
  build *b = self;
  g_autofree char *images = g_build_filename(b->out_dir, "images", NULL);
  g_autofree char *masks = g_build_filename(b->out_dir, "masks", NULL);
  if (g_mkdir_with_parents(images, 0755) != 0 || g_mkdir_with_parents(masks, 0755) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "cannot create %s/images and masks/", b->out_dir);
    return FALSE;
  }
  g_autoptr(GPtrArray) sources = bb_sources_parse((const char *const *)b->sources, error);
  if (!sources) return FALSE;
  const size_t S = (size_t)b->size;
  g_autofree uint8_t *rgb = g_malloc(S * S * 3);
  g_autofree uint8_t *mask = g_malloc(S * S);
  g_autofree uint8_t *mask255 = g_malloc(S * S);
  g_autofree int32_t *cc = g_malloc(sizeof(int32_t) * S * S);
  g_autoptr(GPtrArray) rows = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  job j = {b, run, NULL, NULL, rows, 0, 0, 0, rgb, mask, mask255, cc};
  if (!find_annotator(&j, error)) return FALSE;
  for (guint k = 0; k < sources->len; k++) {
    const bb_source *s = g_ptr_array_index(sources, k);
    gboolean ok = s->kind == BB_SOURCE_SYNTHETIC ? synthetic_rows(&j, error) : external_rows(&j, s, k, error);
    if (!ok) return FALSE;
    if (ps_run_cancelled(run)) return TRUE; /* no manifest: it would be partial */
  }
  g_autofree char *manifest = g_build_filename(b->out_dir, "manifest.jsonl", NULL);
  if (rows->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "build_benchmark: no usable tiles (%" G_GINT64_FORMAT " skipped, %" G_GINT64_FORMAT
                " empty); %s not written",
                j.skipped, j.empty, manifest);
    return FALSE;
  }
  if (!ps_manifest_write(manifest, rows, error)) return FALSE;
  int64_t per_split[4] = {0};
  for (guint i = 0; i < rows->len; i++) {
    const char *s = ((ps_manifest_row *)g_ptr_array_index(rows, i))->split;
    per_split[strcmp(s, "train") == 0 ? 0 : strcmp(s, "val") == 0 ? 1 : strcmp(s, "test") == 0 ? 2 : 3]++;
  }
  ps_run_log(run, "%s: %u rows (train %" G_GINT64_FORMAT ", val %" G_GINT64_FORMAT ", test %" G_GINT64_FORMAT
             ", zeroshot %" G_GINT64_FORMAT "), %" G_GINT64_FORMAT " tiles written, %" G_GINT64_FORMAT
             " skipped, %" G_GINT64_FORMAT " empty tiles dropped",
             manifest, rows->len, per_split[0], per_split[1], per_split[2], per_split[3], j.written, j.skipped,
             j.empty);
  return TRUE;
}
