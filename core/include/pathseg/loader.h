/* loader.h — batches from a dataset component, prepared on a worker thread.
 *
 * The loader walks a split in epochs: each epoch is a permutation of the
 * split's indices drawn from (seed, epoch) (or the identity without
 * shuffling), cut into consecutive batches. The batch of step s is therefore
 * a pure function of (seed, s): a run resumed at step s sees exactly the
 * batches it would have seen. While the stage computes step s, the worker
 * decodes and augments step s + 1 into the other of two buffers, so reading
 * images never stalls the compute. */
#pragma once

#include <glib.h>
#include <pathseg/dataset.h>

G_BEGIN_DECLS

typedef struct ps_loader ps_loader;

typedef struct ps_loader_options {
  const char *split;  /* "train", "val", ... */
  int64_t batch_size;
  uint64_t seed;
  gboolean shuffle;
  gboolean prefetch;  /* FALSE: decode on the caller's thread (tests, debugging) */
  /* Data-parallel sharding: with shard_count N > 1 the loader walks the
   * same epochs as a loader of batch_size * N and returns slice shard_index
   * of each of its batches, so N ranks together see exactly the batches of
   * one process with an N times larger batch. 0 or 1: no sharding. The
   * augmentation `rng` a dataset receives is the same on every shard (it is
   * drawn from (seed, step)): a dataset that augments should fork it by
   * example index for its augmentations to be shard-invariant. */
  int shard_index, shard_count;
} ps_loader_options;

/* `dataset` must stay alive; its batch() is only ever called from one thread. */
ps_loader *ps_loader_new(const ps_dataset_iface *dataset, void *self,
                         const ps_loader_options *options, GError **error);
void ps_loader_free(ps_loader *loader);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_loader, ps_loader_free)

/* The batch of `step` (copied into the loader's buffers; valid until the
 * next call). Starts preparing step + 1 before it returns. */
const ps_ports *ps_loader_get(ps_loader *loader, int64_t step, GError **error);
/* Examples in the split. */
int64_t ps_loader_size(const ps_loader *loader);

G_END_DECLS
