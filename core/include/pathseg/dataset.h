/* dataset.h — the "dataset" capability of components of kind `dataset`.
 *
 * A dataset component sits in the pipeline's `components:` like any other;
 * stages name it in their config and pull batches through this interface.
 * The fields of a batch are the `data.FIELD` names that other components'
 * inputs bind to. */
#pragma once

#include <pathseg/plugin.h>

G_BEGIN_DECLS

typedef struct ps_dataset_iface {
  uint32_t struct_size;
  /* Number of examples in a split ("train", "val", "test"); 0 when empty. */
  int64_t (*size)(void *self, const char *split);
  /* Decodes examples `indices` of `split` into a batch of named tensors
   * (leading dimension n) owned by the dataset and valid until the next
   * call. `rng` drives augmentation. */
  const ps_ports *(*batch)(void *self, const char *split, const int64_t *indices, size_t n,
                           ps_rng *rng, GError **error);
  /* Optional (NULL, or absent in a smaller struct_size): called before the
   * first size()/batch(), so a dataset can read files that an earlier stage
   * of the same run writes (its component is created when the run starts).
   * Idempotent. */
  gboolean (*open)(void *self, GError **error);
} ps_dataset_iface;

/* Calls iface->open when the dataset has one. */
gboolean ps_dataset_open(const ps_dataset_iface *iface, void *self, GError **error);

G_END_DECLS

G_BEGIN_DECLS

/* The "manifest_tools" capability of the component that owns the triplet
 * manifest format (dataset.benchmark). It needs no instance: the `pipeline
 * dataset` command calls it on the descriptor. */
typedef struct ps_manifest_tools {
  uint32_t struct_size;
  /* Appends one line per problem (missing file, size mismatch, empty mask,
   * duplicate image, patient in two splits, bad split) to `report`; sets
   * *problems. FALSE with an error only when the manifest cannot be read. */
  gboolean (*check)(const char *manifest, GString *report, int64_t *problems, GError **error);
  /* Appends the pending rows ("INDEX: image — query") to `report`. */
  gboolean (*pending)(const char *manifest, GString *report, GError **error);
  /* Marks row `index` (0-based) approved, or revised with a new reasoning
   * chain, by `reviewer`, now; rewrites the manifest atomically. */
  gboolean (*review)(const char *manifest, int64_t index, const char *reviewer,
                     const char *revised_reasoning, GError **error);
} ps_manifest_tools;

G_END_DECLS
