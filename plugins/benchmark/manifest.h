/* manifest.h — the benchmark's triplet manifest: JSON Lines, one row per
 * (image, mask, query, reasoning chain) with where it came from and which
 * split it belongs to. Paths are relative to the manifest's directory.
 *
 * Splits are 8:1:1 (train/val/test) by a hash of the row's group (patient or
 * slide), so no patient is ever in two splits; rows whose morphology or stain
 * is held out go to the `zeroshot` split instead. */
#pragma once

#include <glib.h>
#include <stdint.h>

typedef struct ps_manifest_row {
  char *image, *mask;
  char *query, *reasoning;
  char *source;      /* "synthetic", "glas", "ebhi-seg", ... */
  char *group;       /* patient or slide id */
  char *target, *morphology, *stain;
  int magnification; /* 0 unknown */
  char *split;       /* train | val | test | zeroshot */
  gboolean held_out;
  int width, height;
  char *review;      /* pending | approved | revised */
  char *reviewer, *reviewed_at;
} ps_manifest_row;

void ps_manifest_row_free(ps_manifest_row *row);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_manifest_row, ps_manifest_row_free)

/* Rows of `path` (GPtrArray of ps_manifest_row*); errors name file:line and the key. */
GPtrArray *ps_manifest_read(const char *path, GError **error);
/* Writes all rows atomically (temporary file + rename). */
gboolean ps_manifest_write(const char *path, GPtrArray *rows, GError **error);
/* "train", "val" or "test" for a group, 8:1:1 by a stable hash. */
const char *ps_manifest_split_for(const char *group, uint64_t seed);
