/* convert.h — converters from the published layouts of public pathology
 * datasets into the benchmark's triplet manifest (plugins/benchmark/
 * manifest.h): normalised PNG copies of each image (RGB, as published, no
 * resizing) and of its binary target mask (0/255), a query and reasoning
 * chain from the template annotator, the patient/slide group, and the 8:1:1
 * split of that group. `out_dir/manifest.jsonl` is written atomically, and
 * only when at least one row was made; unusable items (corrupt image, mask
 * missing or of another size, annotation outside the image) are skipped
 * with the reason logged.
 *
 * Each format's file (fmt_*.c) documents the layout it reads, how it groups
 * images into patients/slides and what it knows about magnification. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "manifest.h"

typedef void (*conv_log_fn)(void *user, const char *message);

typedef struct conv_options {
  const char *format;    /* glas|crag|camelyon16|camelyon17|digestpath|wsss4luad|ebhi_seg|monuseg|cpm15 */
  const char *input_dir; /* the dataset as published (or the folder above it) */
  const char *out_dir;
  uint64_t seed;         /* splits and annotator phrasing */
  int threshold;         /* grey masks (JPEG/soft edges): foreground when >= threshold (128) */
  int min_component;     /* descriptor components smaller than this are ignored (4) */
  gboolean negatives;    /* keep images without any target (DigestPath negatives, normal Camelyon tiles) */
  double downsample;     /* Camelyon tiles: level-0 pixels per tile pixel when the name has no _d<ds> (1) */
  conv_log_fn log;
  void *log_user;
  gboolean (*cancelled)(void *user); /* may be NULL; user = log_user */
} conv_options;

typedef struct conv_stats {
  int images, rows, skipped;
} conv_stats;

/* Fills defaults for the numeric options (threshold 128, min_component 4,
 * negatives TRUE, downsample 1). */
void conv_options_init(conv_options *o);
gboolean ps_convert(const conv_options *o, conv_stats *stats, GError **error);
/* The names ps_convert accepts, '|'-separated. */
extern const char conv_formats[];

/* ------------------------------------------------------------------ */
/* Shared by the fmt_*.c files. */

typedef struct conv_ctx {
  const conv_options *o;
  GPtrArray *rows;      /* ps_manifest_row* */
  GHashTable *names;    /* output stems already used */
  int images, skipped;
  char *first_skip;     /* reason of the first skip, for the "nothing usable" error */
} conv_ctx;

void conv_log(conv_ctx *c, const char *format, ...) G_GNUC_PRINTF(2, 3);
/* Logs "skipped <path>: <reason>" and counts it. */
void conv_skip(conv_ctx *c, const char *path, const char *format, ...) G_GNUC_PRINTF(3, 4);
/* Same with a GError's message as the reason (clears it). */
void conv_skip_error(conv_ctx *c, const char *path, GError **error);
gboolean conv_cancelled(conv_ctx *c);

/* What a row knows besides its pixels. */
typedef struct conv_item {
  const char *source;     /* "glas", ... */
  const char *group;      /* patient or slide id (prefixed with the source) */
  const char *target;     /* "gland", "tumour", ... */
  const char *morphology; /* or NULL */
  const char *organ;      /* word for the reasoning chain, or NULL */
  int magnification;      /* 0 unknown */
} conv_item;

/* Writes images/<source>/<stem>.png once and returns its manifest path
 * (relative to out_dir; g_free). `stem` is made unique and file-name safe. */
char *conv_write_image(conv_ctx *c, const conv_item *it, const char *stem, const uint8_t *rgb, int w, int h,
                       GError **error);
/* Writes masks/<source>/<image stem>[_suffix].png (0/255) and adds the row
 * with descriptors, query and reasoning. rgb: (h, w, 3); mask: (h, w) with
 * 0 = background, nonzero = target. */
gboolean conv_add_row(conv_ctx *c, const conv_item *it, const char *image_rel, const char *suffix,
                      const uint8_t *rgb, const uint8_t *mask, int w, int h, GError **error);

/* Sorted full paths of the regular files in `dir` whose names end with one
 * of the '|'-separated suffixes (case-insensitive); recursive when asked. */
GPtrArray *conv_list(const char *dir, const char *suffixes, gboolean recursive);
/* The first of `names` ('|'-separated) that is a directory under `dir`
 * (or under one of its subdirectories); NULL when none. g_free. */
char *conv_find_dir(const char *dir, const char *names);
/* Orders a GPtrArray of strings (g_ptr_array_sort). */
int conv_cmp_str(gconstpointer a, gconstpointer b);
/* File name without directory and without the last extension. g_free. */
char *conv_stem(const char *path);
/* Path relative to the input dir, for log lines. */
const char *conv_rel(conv_ctx *c, const char *path);

gboolean conv_glas(conv_ctx *c, GError **error);
gboolean conv_crag(conv_ctx *c, GError **error);
gboolean conv_camelyon(conv_ctx *c, gboolean c17, GError **error);
gboolean conv_digestpath(conv_ctx *c, GError **error);
gboolean conv_wsss4luad(conv_ctx *c, GError **error);
gboolean conv_ebhi_seg(conv_ctx *c, GError **error);
gboolean conv_monuseg(conv_ctx *c, GError **error);
gboolean conv_cpm15(conv_ctx *c, GError **error);

/* One image with its mask file: reads both, checks they have the same size,
 * binarises the mask (label != 0, or grey >= threshold when `grey`; no mask
 * file: all background) and adds the row; `stem` names the output files
 * (NULL: the image's own name). Unusable pairs are skipped (TRUE);
 * FALSE only when writing fails. */
gboolean conv_pair(conv_ctx *c, const conv_item *it, const char *image_path, const char *mask_path,
                   const char *stem, gboolean grey, GError **error);
