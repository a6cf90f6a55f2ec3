/* emu_table.c — libpathseg-cudaemu.so: a stand-in for libpathseg-cuda.so that
 * runs on the CPU, for testing the code that drives a GPU on machines that
 * have none.
 *
 * It exports the same symbol, ps_cuda_kernels(), so setting
 * PATHSEG_CUDA_LIBRARY=/path/libpathseg-cudaemu.so makes `device: cuda` run
 * every CUDA code path of the core and the components against it. Its
 * "device memory" is one arena of its own that is mapped PROT_NONE except
 * while a table entry runs: host code that reads or writes a device tensor
 * directly (instead of through the table) faults at the offending line, as
 * it would be wrong on a GPU, and every pointer a table entry gets is
 * checked to be in the arena (a host pointer passed to a kernel aborts with
 * the entry and argument named). The entries themselves are the CPU table's,
 * with the bf16 entries emulated (bf16_emu.c), so results match the CPU
 * device bit for bit wherever the caller does the same operations. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <pathseg/kernels.h>

#include "emu/bf16_emu.h"

/* ---- the arena ------------------------------------------------------------ */

typedef struct {
  size_t offset, size; /* page multiples */
} emu_block;

static struct {
  pthread_mutex_t lock;
  unsigned char *base;
  size_t reserved, top; /* bytes reserved; bytes ever handed out (a page multiple) */
  emu_block *free_blocks;
  size_t n_free, cap_free;
  int depth; /* open count: the arena is readable while > 0 */
  size_t page;
} arena = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, NULL, 0, 0, 0, 0};

static ps_kernels emu_cpu; /* the stand-in table: CPU entries + emulated bf16 */

static void emu_fail(const char *fmt, const char *a, const char *b) {
  fprintf(stderr, "pathseg-cudaemu: ");
  fprintf(stderr, fmt, a, b);
  fprintf(stderr, "\n");
  abort();
}

static void emu_protect(int prot) {
  if (arena.top && mprotect(arena.base, arena.top, prot) != 0)
    emu_fail("mprotect of the device arena failed%s%s", "", "");
}

static void emu_open(void) {
  pthread_mutex_lock(&arena.lock);
  if (arena.depth++ == 0) emu_protect(PROT_READ | PROT_WRITE);
  pthread_mutex_unlock(&arena.lock);
}

static void emu_close(void) {
  pthread_mutex_lock(&arena.lock);
  if (--arena.depth == 0) emu_protect(PROT_NONE);
  pthread_mutex_unlock(&arena.lock);
}

static int emu_in_arena(const void *p) {
  const unsigned char *c = p;
  return c >= arena.base && c < arena.base + arena.top;
}

/* A pointer argument of a table entry: NULL or device memory. */
static void emu_dev(const void *p, const char *entry, const char *arg) {
  if (p && !emu_in_arena(p))
    emu_fail("%s: argument '%s' is not device memory (a host pointer given to a kernel)", entry,
             arg);
}

static void emu_dev_desc(const ps_attention_desc *d, const char *entry) {
  emu_dev(d->bias, entry, "desc->bias");
  emu_dev(d->rel_h, entry, "desc->rel_h");
  emu_dev(d->rel_w, entry, "desc->rel_w");
}

static size_t emu_round(size_t bytes) {
  size_t n = bytes ? bytes : 1;
  return (n + arena.page - 1) / arena.page * arena.page;
}

static void *emu_mem_alloc(size_t bytes) {
  size_t size = emu_round(bytes);
  pthread_mutex_lock(&arena.lock);
  size_t offset = (size_t)-1;
  for (size_t i = 0; i < arena.n_free; i++) { /* first fit */
    emu_block *b = &arena.free_blocks[i];
    if (b->size < size) continue;
    offset = b->offset;
    b->offset += size;
    b->size -= size;
    if (b->size == 0) arena.free_blocks[i] = arena.free_blocks[--arena.n_free];
    break;
  }
  if (offset == (size_t)-1) {
    if (arena.reserved - arena.top < size) {
      pthread_mutex_unlock(&arena.lock);
      return NULL; /* out of "device memory" */
    }
    offset = arena.top;
    arena.top += size;
    if (arena.depth > 0) mprotect(arena.base + offset, size, PROT_READ | PROT_WRITE);
  }
  unsigned char *p = arena.base + offset;
  if (arena.depth == 0) mprotect(p, size, PROT_READ | PROT_WRITE);
  memset(p, 0, size);
  if (arena.depth == 0) mprotect(p, size, PROT_NONE);
  pthread_mutex_unlock(&arena.lock);
  return p;
}

/* Allocation sizes, by page index of the block start, so that free knows them. */
static size_t *emu_sizes;

static void *emu_alloc_recorded(size_t bytes) {
  void *p = emu_mem_alloc(bytes);
  if (p) emu_sizes[((unsigned char *)p - arena.base) / arena.page] = emu_round(bytes);
  return p;
}

static void emu_mem_free(void *p) {
  if (!p) return;
  if (!emu_in_arena(p)) emu_fail("mem_free: %s%s is not device memory", "the pointer", "");
  pthread_mutex_lock(&arena.lock);
  size_t offset = (size_t)((unsigned char *)p - arena.base);
  size_t size = emu_sizes[offset / arena.page];
  if (size == 0 || offset % arena.page)
    emu_fail("mem_free: %s%s was not returned by mem_alloc (or is freed twice)", "the pointer", "");
  emu_sizes[offset / arena.page] = 0;
  if (arena.n_free == arena.cap_free) {
    arena.cap_free = arena.cap_free ? 2 * arena.cap_free : 256;
    arena.free_blocks = realloc(arena.free_blocks, arena.cap_free * sizeof(emu_block));
    if (!arena.free_blocks) abort();
  }
  arena.free_blocks[arena.n_free++] = (emu_block){offset, size};
  pthread_mutex_unlock(&arena.lock);
}

static void emu_copy_to_device(void *dst, const void *src, size_t bytes) {
  emu_dev(dst, "copy_to_device", "dst");
  if (bytes && emu_in_arena(src)) emu_fail("copy_to_device: %s%s is device memory", "src", "");
  emu_open();
  if (bytes) memcpy(dst, src, bytes);
  emu_close();
}

static void emu_copy_to_host(void *dst, const void *src, size_t bytes) {
  emu_dev(src, "copy_to_host", "src");
  if (bytes && emu_in_arena(dst)) emu_fail("copy_to_host: %s%s is device memory", "dst", "");
  emu_open();
  if (bytes) memcpy(dst, src, bytes);
  emu_close();
}

static void emu_copy_on_device(void *dst, const void *src, size_t bytes) {
  emu_dev(dst, "copy_on_device", "dst");
  emu_dev(src, "copy_on_device", "src");
  emu_open();
  if (bytes) memmove(dst, src, bytes);
  emu_close();
}

static void emu_mem_zero(void *p, size_t bytes) {
  emu_dev(p, "mem_zero", "p");
  emu_open();
  if (bytes) memset(p, 0, bytes);
  emu_close();
}

#include "emu_wrappers.c"

/* ---- bf16 precision --------------------------------------------------------- */

/* The bf16 table's linear products (bf16_emu.c), guarded like the rest. */
static void ac_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int64_t N, int64_t C, int64_t OC) {
  emu_dev(out, "linear_forward", "out");
  emu_dev(inp, "linear_forward", "inp");
  emu_dev(weight, "linear_forward", "weight");
  emu_dev(bias, "linear_forward", "bias");
  emu_open();
  ps_emu_linear_forward_bf16p(out, inp, weight, bias, N, C, OC);
  emu_close();
}

static void ac_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int64_t N, int64_t C,
                               int64_t OC) {
  emu_dev(dinp, "linear_backward", "dinp");
  emu_dev(dweight, "linear_backward", "dweight");
  emu_dev(dbias, "linear_backward", "dbias");
  emu_dev(dout, "linear_backward", "dout");
  emu_dev(inp, "linear_backward", "inp");
  emu_dev(weight, "linear_backward", "weight");
  emu_open();
  ps_emu_linear_backward_bf16p(dinp, dweight, dbias, dout, inp, weight, N, C, OC);
  emu_close();
}

/* ---- the exported table ----------------------------------------------------- */

static ps_kernels emu_table;

static void emu_init(void) {
  const ps_kernels *cpu = ps_kernels_get(PS_DEVICE_CPU, NULL);
  if (!cpu) return;
  emu_cpu = *cpu;
  ps_emu_bf16_entries(&emu_cpu, cpu);
  size_t mb = 4096;
  const char *env = getenv("PATHSEG_EMU_DEVICE_MB");
  if (env && atol(env) > 0) mb = (size_t)atol(env);
  arena.page = (size_t)sysconf(_SC_PAGESIZE);
  arena.reserved = mb << 20;
  void *base =
      mmap(NULL, arena.reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  /* Huge pages: every table call changes the protection of the whole used
   * arena, and its cost grows with the page-table entries it rewrites. */
  if (base != MAP_FAILED) madvise(base, arena.reserved, MADV_HUGEPAGE);
  emu_sizes = calloc(arena.reserved / arena.page, sizeof(size_t));
  if (base == MAP_FAILED || !emu_sizes) return;
  arena.base = base;
  emu_table.name = "cuda-emulator";
  emu_fill_table(&emu_table);
  emu_table.mem_alloc = emu_alloc_recorded;
  emu_table.mem_free = emu_mem_free;
  emu_table.copy_to_device = emu_copy_to_device;
  emu_table.copy_to_host = emu_copy_to_host;
  emu_table.copy_on_device = emu_copy_on_device;
  emu_table.mem_zero = emu_mem_zero;
  /* Every entry after the name is a function pointer: none may be missing
   * (a table entry added to kernels.h without a wrapper in emu_wrappers.c). */
  const void *const *fn = (const void *const *)((const char *)&emu_table + sizeof(const char *));
  size_t n_fn = (sizeof emu_table - sizeof(const char *)) / sizeof(void *);
  for (size_t i = 0; i < n_fn; i++)
    if (!fn[i]) {
      fprintf(stderr,
              "pathseg-cudaemu: table entry %zu has no wrapper (regenerate emu_wrappers.c)\n", i);
      emu_table.name = NULL;
      return;
    }
}

__attribute__((visibility("default"))) const ps_kernels *ps_cuda_kernels(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  pthread_once(&once, emu_init);
  return emu_table.name ? &emu_table : NULL;
}

static ps_kernels bf16_table;

static void bf16_init(void) {
  bf16_table = emu_table;
  bf16_table.name = "cuda-emulator-bf16";
  bf16_table.linear_forward = ac_linear_forward;
  bf16_table.linear_backward = ac_linear_backward;
}

/* The bf16-precision table, like libpathseg-cuda.so's ps_cuda_kernels_bf16(). */
__attribute__((visibility("default"))) const ps_kernels *ps_cuda_kernels_bf16(void) {
  static pthread_once_t once = PTHREAD_ONCE_INIT;
  if (!ps_cuda_kernels()) return NULL;
  pthread_once(&once, bf16_init);
  return &bf16_table;
}
