/* context.c — the execution context: device, threads, RNG and a scratch arena.
 *
 * The arena is a list of blocks. ps_context_reset_scratch() makes all of it
 * free again; when the previous step needed more than one block, the blocks
 * are merged into one of the total size, so from the second step on a step
 * is served from a single block and nothing is allocated. On a device other
 * than the CPU the blocks are that device's memory (its kernel table's
 * mem_alloc), since scratch is handed to its kernels. */
#include <cblas.h>
#include <omp.h>
#include <pathseg/kernels.h>
#include <pathseg/plugin.h>
#include <stdlib.h>
#include <string.h>

#include "context_internal.h"

#define SCRATCH_ALIGN 64

struct scratch_block {
  guint8 *data;
  size_t size, used;
};

ps_context *ps_context_new(ps_device device, int threads, uint64_t seed) {
  ps_context *ctx = g_new0(ps_context, 1);
  ctx->device = device;
  /* `threads` > 0 fixes the thread count of OpenMP and OpenBLAS for the
   * process (0 leaves their defaults: all cores, or OMP_NUM_THREADS). */
  if (threads > 0) {
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
  }
  ctx->threads = threads > 0 ? threads : omp_get_max_threads();
  ps_rng_seed(&ctx->rng, seed);
  ctx->blocks = g_array_new(FALSE, TRUE, sizeof(struct scratch_block));
  if (device != PS_DEVICE_CPU) ctx->mem = ps_kernels_get(device, NULL);
  return ctx;
}

/* A scratch block of `size` bytes: host memory, or the device's. */
static guint8 *block_alloc(ps_context *ctx, size_t size) {
  void *p = NULL;
  if (ctx->device == PS_DEVICE_CPU) {
    if (posix_memalign(&p, SCRATCH_ALIGN, size) != 0) p = NULL;
  } else if (ctx->mem) {
    p = ctx->mem->mem_alloc(size);
  }
  if (!p) g_error("out of memory: scratch block of %zu bytes", size);
  return p;
}

static void block_free(ps_context *ctx, guint8 *p) {
  if (ctx->device == PS_DEVICE_CPU)
    free(p);
  else if (ctx->mem)
    ctx->mem->mem_free(p);
}

void ps_context_free(ps_context *ctx) {
  if (!ctx) return;
  for (guint i = 0; i < ctx->blocks->len; i++)
    block_free(ctx, g_array_index(ctx->blocks, struct scratch_block, i).data);
  g_array_free(ctx->blocks, TRUE);
  g_free(ctx);
}

ps_device ps_context_device(const ps_context *ctx) { return ctx->device; }
void ps_context_set_precision(ps_context *ctx, int precision) { ctx->precision = precision; }
int ps_context_precision(const ps_context *ctx) { return ctx->precision; }

const ps_kernels *ps_context_kernels(const ps_context *ctx, GError **error) {
  return ps_kernels_get_precision(ctx->device, (ps_precision)ctx->precision, error);
}
int ps_context_threads(const ps_context *ctx) { return ctx->threads; }
gboolean ps_context_training(const ps_context *ctx) { return ctx->training; }
void ps_context_set_training(ps_context *ctx, gboolean training) { ctx->training = training; }
ps_rng *ps_context_rng(ps_context *ctx) { return &ctx->rng; }

static size_t round_up(size_t n) { return (n + SCRATCH_ALIGN - 1) & ~(size_t)(SCRATCH_ALIGN - 1); }

void *ps_context_scratch(ps_context *ctx, size_t bytes) {
  bytes = round_up(bytes ? bytes : 1);
  for (guint i = 0; i < ctx->blocks->len; i++) {
    struct scratch_block *b = &g_array_index(ctx->blocks, struct scratch_block, i);
    if (b->size - b->used >= bytes) {
      void *p = b->data + b->used;
      b->used += bytes;
      return p;
    }
  }
  struct scratch_block nb = {0};
  nb.size = bytes > ((size_t)1 << 20) ? bytes : ((size_t)1 << 20);
  nb.data = block_alloc(ctx, nb.size);
  nb.used = bytes;
  g_array_append_val(ctx->blocks, nb);
  ctx->scratch_grows++;
  return nb.data;
}

void ps_context_reset_scratch(ps_context *ctx) {
  size_t total = 0;
  for (guint i = 0; i < ctx->blocks->len; i++) {
    struct scratch_block *b = &g_array_index(ctx->blocks, struct scratch_block, i);
    total += b->size;
    b->used = 0;
  }
  if (ctx->blocks->len > 1) {
    /* Consolidate: one block big enough for everything the last step used. */
    for (guint i = 0; i < ctx->blocks->len; i++)
      block_free(ctx, g_array_index(ctx->blocks, struct scratch_block, i).data);
    g_array_set_size(ctx->blocks, 0);
    struct scratch_block nb = {0};
    nb.size = total;
    nb.data = block_alloc(ctx, nb.size);
    g_array_append_val(ctx->blocks, nb);
  }
}

size_t ps_context_scratch_grows(const ps_context *ctx) { return ctx->scratch_grows; }
