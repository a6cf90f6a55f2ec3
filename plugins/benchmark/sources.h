/* sources.h — where stage.build_benchmark gets its images from, besides the
 * synthetic generator: a public dataset in its published layout (run
 * through the converters' code) or an existing manifest (rows written by
 * stage.preprocess_slides or stage.convert); and cutting those images into
 * tiles of the benchmark's size.
 *
 * A source is one string of the stage's `sources:` list:
 *   synthetic                 the procedural generator (tiles, zeroshot_tiles, patients)
 *   convert:FORMAT:DIR        a dataset as published; FORMAT is one of the converters'
 *                             (glas, crag, camelyon16, ..., ebhi_seg, monuseg, cpm15)
 *   manifest:PATH             the rows of a manifest.jsonl; its paths are relative to PATH's folder */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef enum { BB_SOURCE_SYNTHETIC, BB_SOURCE_CONVERT, BB_SOURCE_MANIFEST } bb_source_kind;

typedef struct bb_source {
  bb_source_kind kind;
  char *format; /* convert: the converter's format name */
  char *path;   /* convert: the dataset folder; manifest: the manifest file */
  char *spec;   /* the string as written, for messages */
} bb_source;

void bb_source_free(bb_source *s);
/* Parses the `sources` strings (GPtrArray of bb_source*); the error names the
 * entry and what is wrong. */
GPtrArray *bb_sources_parse(const char *const *specs, GError **error);

/* Options of the converter sources (stage keys convert.*). */
typedef struct bb_convert_options {
  int threshold, min_component;
  gboolean negatives;
  double downsample;
  uint64_t seed;
  void (*log)(void *user, const char *message);
  gboolean (*cancelled)(void *user);
  void *user;
} bb_convert_options;

/* The rows of a convert or manifest source (GPtrArray of ps_manifest_row*)
 * and the folder their paths are relative to (*base_dir, g_free). A
 * converter writes its copy into `work_dir` (images/, masks/ and its own
 * manifest.jsonl). */
GPtrArray *bb_source_rows(const bb_source *s, const char *work_dir, const bb_convert_options *o,
                          char **base_dir, GError **error);

/* The organ word of a public dataset's rows ("glas" -> "colonic"), or NULL. */
const char *bb_source_organ(const char *source);

/* Tiling of an image (w x h) into S x S tiles. */
typedef enum { BB_TILING_GRID, BB_TILING_RESIZE } bb_tiling;

/* Top-left corners of the grid tiles: a stride of S, and the last tile of a
 * row or column moved back to the image edge so that all pixels are
 * covered (it then overlaps its neighbour). 0 tiles when w or h < S.
 * xs, ys: arrays of at least bb_grid_count(w, S) and (h, S). */
int bb_grid_count(int extent, int S);
void bb_grid_starts(int extent, int S, int *starts);

/* rgb_out: (S, S, 3) = the window at (x0, y0) of rgb (h, w, 3); the same for
 * a (h, w) mask. */
void bb_crop(const uint8_t *src, int w, int bands, int x0, int y0, int S, uint8_t *dst);
/* Box-filter resampling of (h, w, 3) RGB to (S, S, 3): every output pixel
 * is the mean of the source pixels its footprint covers (repeats when
 * enlarging). Masks (h, w) -> (S, S): nonzero when at least half of the
 * footprint is. */
void bb_resize_rgb(const uint8_t *src, int w, int h, int S, uint8_t *dst);
void bb_resize_mask(const uint8_t *src, int w, int h, int S, uint8_t *dst);
