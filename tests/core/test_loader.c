/* test_loader.c — the batch loader: epochs are permutations, batches are a
 * pure function of (seed, step) with or without the worker thread, the
 * steady state reuses its buffers, and a dataset failure reaches the caller
 * at the step it belongs to. A fake dataset returns the indices it was asked
 * for, so the test sees exactly what was sampled. */
#include <pathseg/loader.h>

#include "ps_test.h"

typedef struct {
  int64_t n, fail_index;
  gulong sleep_us;
  ps_tensor *index;
  ps_port field;
  ps_ports batch;
  int calls;
} fake;

static int64_t fake_size(void *self, const char *split) { return ((fake *)self)->n; }

static const ps_ports *fake_batch(void *self, const char *split, const int64_t *indices, size_t n,
                                  ps_rng *rng, GError **error) {
  fake *f = self;
  f->calls++;
  ps_tensor_free(f->index);
  f->index = ps_tensor_new4(PS_DTYPE_I64, (int64_t)n, -1, -1, -1, error);
  for (size_t i = 0; i < n; i++) {
    if (f->sleep_us) g_usleep(f->sleep_us); /* widen any race window */
    if (indices[i] == f->fail_index) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "example %" G_GINT64_FORMAT ": corrupt image", indices[i]);
      return NULL;
    }
    ((int64_t *)f->index->data)[i] = indices[i];
  }
  f->field.name = "index";
  f->field.tensor = f->index;
  f->batch = (ps_ports){&f->field, 1};
  return &f->batch;
}

static const ps_dataset_iface fake_iface = {
    .struct_size = sizeof(ps_dataset_iface), .size = fake_size, .batch = fake_batch};

static const int64_t *ids(const ps_ports *b) { return (const int64_t *)ps_ports_get(b, "index")->data; }

int main(void) {
  GError *error = NULL;
  fake f = {.n = 10, .fail_index = -1};
  /* 10 examples, batches of 4: an epoch spans 2.5 steps. */
  ps_loader_options opt = {.split = "train", .batch_size = 4, .seed = 42, .shuffle = TRUE, .prefetch = TRUE};
  g_autoptr(ps_loader) threaded = ps_loader_new(&fake_iface, &f, &opt, &error);
  opt.prefetch = FALSE;
  fake g = {.n = 10, .fail_index = -1};
  g_autoptr(ps_loader) inline_ = ps_loader_new(&fake_iface, &g, &opt, &error);
  PS_CHECK(threaded && inline_);

  int64_t seen[40];
  for (int64_t step = 0; step < 10; step++) {
    const ps_ports *a = ps_loader_get(threaded, step, &error);
    const ps_ports *b = ps_loader_get(inline_, step, &error);
    PS_CHECK(a && b);
    if (!a || !b) break;
    PS_CHECK(memcmp(ids(a), ids(b), 4 * sizeof(int64_t)) == 0);
    memcpy(seen + 4 * step, ids(a), 4 * sizeof(int64_t));
  }
  /* Each epoch (10 consecutive draws) is a permutation of 0..9, and the epochs differ. */
  for (int e = 0; e < 4; e++) {
    int count[10] = {0};
    for (int i = 0; i < 10; i++) count[seen[10 * e + i]]++;
    gboolean perm = TRUE;
    for (int i = 0; i < 10; i++) perm = perm && count[i] == 1;
    PS_CHECK_MSG(perm, "epoch %d is not a permutation", e);
  }
  PS_CHECK(memcmp(seen, seen + 10, 10 * sizeof(int64_t)) != 0);

  /* Random access (a resumed run) gives the same batch as the sequential walk. */
  const ps_ports *again = ps_loader_get(threaded, 7, &error);
  PS_CHECK(again && memcmp(ids(again), seen + 28, 4 * sizeof(int64_t)) == 0);
  const ps_ports *back = ps_loader_get(threaded, 2, &error);
  PS_CHECK(back && memcmp(ids(back), seen + 8, 4 * sizeof(int64_t)) == 0);

  /* Without shuffling, the split is walked in order and wraps around. */
  fake h = {.n = 10, .fail_index = -1};
  ps_loader_options plain = {.split = "train", .batch_size = 4, .seed = 42, .shuffle = FALSE, .prefetch = TRUE};
  g_autoptr(ps_loader) ordered = ps_loader_new(&fake_iface, &h, &plain, &error);
  const ps_ports *third = ps_loader_get(ordered, 2, &error);
  PS_CHECK(third && ids(third)[0] == 8 && ids(third)[1] == 9 && ids(third)[2] == 0 && ids(third)[3] == 1);

  /* A failure in a prefetched step surfaces at that step, with the dataset's message. */
  fake bad = {.n = 10, .fail_index = 5};
  ps_loader_options seq = {.split = "train", .batch_size = 2, .seed = 1, .shuffle = FALSE, .prefetch = TRUE};
  g_autoptr(ps_loader) failing = ps_loader_new(&fake_iface, &bad, &seq, &error);
  PS_CHECK_OK(ps_loader_get(failing, 0, &error) != NULL, error);
  PS_CHECK_OK(ps_loader_get(failing, 1, &error) != NULL, error);
  PS_CHECK_FAILS_WITH(ps_loader_get(failing, 2, &error), error, "example 5: corrupt image");

  /* Two loaders over one dataset (training prefetches on its worker while
   * validation reads on the caller's thread) must not see each other's
   * batches: the dataset's buffers are shared. */
  fake shared = {.n = 10, .fail_index = -1, .sleep_us = 200};
  ps_loader_options tr = {.split = "train", .batch_size = 4, .seed = 42, .shuffle = TRUE, .prefetch = TRUE}, va = {.split = "val", .batch_size = 4, .seed = 0, .shuffle = FALSE, .prefetch = FALSE};
  g_autoptr(ps_loader) train = ps_loader_new(&fake_iface, &shared, &tr, &error);
  g_autoptr(ps_loader) val = ps_loader_new(&fake_iface, &shared, &va, &error);
  gboolean clean = TRUE;
  for (int64_t step = 0; step < 10 && train && val; step++) {
    const ps_ports *a = ps_loader_get(train, step, &error); /* starts prefetching step + 1 */
    clean = clean && a && memcmp(ids(a), seen + 4 * step, 4 * sizeof(int64_t)) == 0;
    for (int64_t v = 0; v < 3; v++) {
      const ps_ports *b = ps_loader_get(val, v, &error);
      for (int i = 0; b && i < 4; i++) clean = clean && ids(b)[i] == (4 * v + i) % 10;
    }
  }
  PS_CHECK_MSG(clean, "batches of two loaders over one dataset got mixed");
  g_clear_pointer(&train, ps_loader_free);
  g_clear_pointer(&val, ps_loader_free);
  ps_tensor_free(shared.index);

  /* Data-parallel shards: two loaders of batch 2 (shards 0 and 1 of 2) give,
   * side by side, the batches of batch 4 above (seen[]), across epochs. */
  fake s0 = {.n = 10, .fail_index = -1}, s1 = {.n = 10, .fail_index = -1};
  ps_loader_options half = {.split = "train", .batch_size = 2, .seed = 42, .shuffle = TRUE, .prefetch = TRUE,
                            .shard_index = 0, .shard_count = 2};
  g_autoptr(ps_loader) shard0 = ps_loader_new(&fake_iface, &s0, &half, &error);
  half.shard_index = 1;
  g_autoptr(ps_loader) shard1 = ps_loader_new(&fake_iface, &s1, &half, &error);
  PS_CHECK(shard0 && shard1);
  gboolean sharded = TRUE;
  for (int64_t step = 0; step < 10 && shard0 && shard1; step++) {
    const ps_ports *a = ps_loader_get(shard0, step, &error);
    sharded = sharded && a && memcmp(ids(a), seen + 4 * step, 2 * sizeof(int64_t)) == 0;
    const ps_ports *b = ps_loader_get(shard1, step, &error);
    sharded = sharded && b && memcmp(ids(b), seen + 4 * step + 2, 2 * sizeof(int64_t)) == 0;
  }
  PS_CHECK_MSG(sharded, "two shards of batch 2 are not the halves of the batches of 4");
  g_clear_pointer(&shard0, ps_loader_free);
  g_clear_pointer(&shard1, ps_loader_free);
  ps_tensor_free(s0.index);
  ps_tensor_free(s1.index);
  half.shard_index = 2;
  PS_CHECK_FAILS_WITH(ps_loader_new(&fake_iface, &s0, &half, &error), error, "shard 2 of 2");

  /* An empty split is refused up front. */
  fake empty = {.n = 0, .fail_index = -1};
  PS_CHECK_FAILS_WITH(ps_loader_new(&fake_iface, &empty, &opt, &error), error, "split is empty");

  g_clear_pointer(&threaded, ps_loader_free);
  g_clear_pointer(&failing, ps_loader_free);
  g_clear_pointer(&ordered, ps_loader_free);
  ps_tensor_free(f.index);
  ps_tensor_free(g.index);
  ps_tensor_free(h.index);
  ps_tensor_free(bad.index);
  return ps_test_finish();
}
