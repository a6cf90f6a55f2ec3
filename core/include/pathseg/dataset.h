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
} ps_dataset_iface;

G_END_DECLS
