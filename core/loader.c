/* loader.c — a double-buffered batch loader with one worker thread (loader.h). */
#include <pathseg/loader.h>
#include <string.h>

typedef struct {
  int64_t step;       /* which step this slot holds, -1 when empty */
  ps_port *fields;    /* copies of the dataset's fields */
  size_t n_fields;
  ps_ports ports;
  GError *error;      /* the worker's failure for this step */
} slot;

struct ps_loader {
  const ps_dataset_iface *ds;
  void *self;
  ps_loader_options opt;
  char *split;
  int64_t n;
  int64_t *perm;      /* permutation of the current epoch */
  int64_t perm_epoch;
  int64_t *indices;   /* (batch_size) */
  slot slots[2];
  /* worker */
  GThread *thread;
  GMutex lock;
  GCond cond;
  int64_t want;       /* step the worker should prepare next, -1 idle */
  gboolean busy, quit;
};

static void slot_clear(slot *s) {
  for (size_t i = 0; i < s->n_fields; i++) {
    g_free((char *)s->fields[i].name);
    ps_tensor_free(s->fields[i].tensor);
  }
  g_free(s->fields);
  g_clear_error(&s->error);
  memset(s, 0, sizeof *s);
  s->step = -1;
}

/* The indices of step `step` into loader->indices: with sharding, slice
 * shard_index of the batch of size batch_size * shard_count. */
static void step_indices(ps_loader *l, int64_t step) {
  int64_t shards = l->opt.shard_count > 1 ? l->opt.shard_count : 1;
  int64_t first = (step * shards + (shards > 1 ? l->opt.shard_index : 0)) * l->opt.batch_size;
  for (int64_t i = 0; i < l->opt.batch_size; i++) {
    int64_t k = first + i, epoch = k / l->n, pos = k % l->n;
    if (!l->opt.shuffle) {
      l->indices[i] = pos;
      continue;
    }
    if (epoch != l->perm_epoch) {
      ps_rng base, rng;
      ps_rng_seed(&base, l->opt.seed);
      rng = ps_rng_fork(&base, (uint64_t)epoch);
      for (int64_t j = 0; j < l->n; j++) l->perm[j] = j;
      for (int64_t j = l->n - 1; j > 0; j--) { /* Fisher-Yates */
        int64_t r = (int64_t)ps_rng_below(&rng, (uint64_t)j + 1);
        int64_t t = l->perm[j];
        l->perm[j] = l->perm[r];
        l->perm[r] = t;
      }
      l->perm_epoch = epoch;
    }
    l->indices[i] = l->perm[pos];
  }
}

/* A dataset's batch() writes into buffers of its own, so two loaders over
 * one dataset (train prefetching while validation runs) must take turns:
 * one mutex per dataset instance, held from batch() until the copy is done. */
static GMutex *dataset_lock(void *self) {
  static GMutex table_lock;
  static GHashTable *locks = NULL;
  g_mutex_lock(&table_lock);
  if (!locks) locks = g_hash_table_new(g_direct_hash, g_direct_equal);
  GMutex *m = g_hash_table_lookup(locks, self);
  if (!m) {
    m = g_new0(GMutex, 1); /* lives as long as the process, like the plugin */
    g_mutex_init(m);
    g_hash_table_insert(locks, self, m);
  }
  g_mutex_unlock(&table_lock);
  return m;
}

static void copy_batch(ps_loader *l, slot *s, const ps_ports *b);

/* Decodes step `step` into slot `s` (on whichever thread calls it). */
static void fill(ps_loader *l, slot *s, int64_t step) {
  g_clear_error(&s->error);
  s->step = step;
  step_indices(l, step);
  ps_rng base;
  ps_rng_seed(&base, l->opt.seed ^ 0xa5a5a5a5ULL);
  ps_rng rng = ps_rng_fork(&base, (uint64_t)step); /* augmentation randomness */
  GMutex *lock = dataset_lock(l->self);
  g_mutex_lock(lock);
  const ps_ports *b = l->ds->batch(l->self, l->split, l->indices, (size_t)l->opt.batch_size, &rng, &s->error);
  if (b)
    copy_batch(l, s, b);
  else if (!s->error)
    g_set_error(&s->error, PS_ERROR, PS_ERROR_FAILED, "dataset returned no batch for step %" G_GINT64_FORMAT, step);
  g_mutex_unlock(lock);
}

static void copy_batch(ps_loader *l, slot *s, const ps_ports *b) {  if (s->n_fields != b->count) {
    for (size_t i = 0; i < s->n_fields; i++) {
      g_free((char *)s->fields[i].name);
      ps_tensor_free(s->fields[i].tensor);
    }
    g_free(s->fields);
    s->n_fields = b->count;
    s->fields = g_new0(ps_port, b->count ? b->count : 1);
  }
  for (size_t i = 0; i < b->count; i++) {
    ps_port *dst = &s->fields[i];
    const ps_tensor *src = b->items[i].tensor;
    if (!dst->name || strcmp(dst->name, b->items[i].name) != 0) {
      g_free((char *)dst->name);
      dst->name = g_strdup(b->items[i].name);
    }
    if (!src) {
      g_clear_pointer(&dst->tensor, ps_tensor_free);
      continue;
    }
    /* Reuse the buffer when the size matches: steady state allocates nothing. */
    if (!dst->tensor || dst->tensor->nbytes != src->nbytes || dst->tensor->dtype != src->dtype) {
      ps_tensor_free(dst->tensor);
      dst->tensor = ps_tensor_new(src->dtype, src->ndim, src->shape, &s->error);
      if (!dst->tensor) return;
    }
    dst->tensor->ndim = src->ndim;
    memcpy(dst->tensor->shape, src->shape, sizeof src->shape);
    if (src->nbytes) memcpy(dst->tensor->data, src->data, src->nbytes);
  }
  s->ports.items = s->fields;
  s->ports.count = s->n_fields;
}

static gpointer worker(gpointer data) {
  ps_loader *l = data;
  g_mutex_lock(&l->lock);
  for (;;) {
    while (!l->quit && l->want < 0) g_cond_wait(&l->cond, &l->lock);
    if (l->quit) break;
    int64_t step = l->want;
    l->want = -1;
    l->busy = TRUE;
    slot *s = &l->slots[step & 1];
    g_mutex_unlock(&l->lock);
    fill(l, s, step);
    g_mutex_lock(&l->lock);
    l->busy = FALSE;
    g_cond_broadcast(&l->cond);
  }
  g_mutex_unlock(&l->lock);
  return NULL;
}

gboolean ps_dataset_open(const ps_dataset_iface *iface, void *self, GError **error) {
  if (iface->struct_size < offsetof(ps_dataset_iface, open) + sizeof(iface->open) || !iface->open)
    return TRUE;
  return iface->open(self, error);
}

ps_loader *ps_loader_new(const ps_dataset_iface *dataset, void *self,
                         const ps_loader_options *options, GError **error) {
  if (!ps_dataset_open(dataset, self, error)) return NULL;
  int64_t n = dataset->size(self, options->split);
  if (n <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "the dataset's '%s' split is empty", options->split);
    return NULL;
  }
  if (options->batch_size <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "batch size must be positive");
    return NULL;
  }
  if (options->shard_count > 1 && (options->shard_index < 0 || options->shard_index >= options->shard_count)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "shard %d of %d does not exist", options->shard_index,
                options->shard_count);
    return NULL;
  }
  ps_loader *l = g_new0(ps_loader, 1);
  l->ds = dataset;
  l->self = self;
  l->opt = *options;
  l->split = g_strdup(options->split);
  l->opt.split = l->split;
  l->n = n;
  l->perm = g_new(int64_t, n);
  l->perm_epoch = -1;
  l->indices = g_new(int64_t, options->batch_size);
  l->slots[0].step = l->slots[1].step = -1;
  l->want = -1;
  g_mutex_init(&l->lock);
  g_cond_init(&l->cond);
  if (options->prefetch) l->thread = g_thread_new("ps-loader", worker, l);
  return l;
}

void ps_loader_free(ps_loader *l) {
  if (!l) return;
  if (l->thread) {
    g_mutex_lock(&l->lock);
    l->quit = TRUE;
    g_cond_broadcast(&l->cond);
    g_mutex_unlock(&l->lock);
    g_thread_join(l->thread);
  }
  slot_clear(&l->slots[0]);
  slot_clear(&l->slots[1]);
  g_mutex_clear(&l->lock);
  g_cond_clear(&l->cond);
  g_free(l->perm);
  g_free(l->indices);
  g_free(l->split);
  g_free(l);
}

int64_t ps_loader_size(const ps_loader *l) { return l->n; }

const ps_ports *ps_loader_get(ps_loader *l, int64_t step, GError **error) {
  slot *s = &l->slots[step & 1];
  if (!l->thread) {
    if (s->step != step) fill(l, s, step);
  } else {
    g_mutex_lock(&l->lock);
    /* Wait for the worker to go idle, then make sure our step is (being) made. */
    while (l->busy || l->want >= 0) {
      if (l->want == step || s->step == step) break;
      g_cond_wait(&l->cond, &l->lock);
    }
    if (s->step != step && l->want != step) {
      l->want = step;
      g_cond_broadcast(&l->cond);
    }
    while (s->step != step || l->busy || l->want == step) g_cond_wait(&l->cond, &l->lock);
    /* Prefetch the next step into the other slot. */
    l->want = step + 1;
    g_cond_broadcast(&l->cond);
    g_mutex_unlock(&l->lock);
  }
  if (s->error) {
    g_propagate_error(error, g_error_copy(s->error));
    return NULL;
  }
  return &s->ports;
}
