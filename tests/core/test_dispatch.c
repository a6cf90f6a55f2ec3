/* test_dispatch.c — the kernel tables: the CPU table is complete, running
 * on the CPU never maps a CUDA library into the process, and asking for the
 * CUDA table on a machine without a GPU (or without a CUDA build) is a clear
 * error rather than a crash. */
#include <stddef.h>

#include <pathseg/error.h>
#include <pathseg/kernels.h>

#include "ps_test.h"

static gboolean cuda_mapped(void) {
  g_autofree char *maps = NULL;
  if (!g_file_get_contents("/proc/self/maps", &maps, NULL, NULL)) return FALSE;
  return strstr(maps, "libcudart") || strstr(maps, "libcublas") || strstr(maps, "libpathseg-cuda");
}

int main(void) {
  GError *error = NULL;
  const ps_kernels *cpu = ps_kernels_get(PS_DEVICE_CPU, &error);
  PS_CHECK(cpu && strcmp(cpu->name, "cpu") == 0);
  /* Every f32 entry of the CPU table is filled, and so is every entry of
   * ABI 1.2 (memory, layout, optimizer: from mem_alloc to the end); the bf16
   * entries (CUDA only, linear_forward_bf16 up to mem_alloc) are all NULL on
   * the CPU. */
  const void *const *slots = (const void *const *)((const char *)cpu + sizeof(const char *));
  size_t n = (offsetof(ps_kernels, linear_forward_bf16) - sizeof(const char *)) / sizeof(void *);
  size_t n_bf16_end = (offsetof(ps_kernels, mem_alloc) - sizeof(const char *)) / sizeof(void *);
  size_t n_all = (sizeof(ps_kernels) - sizeof(const char *)) / sizeof(void *);
  size_t missing = 0, bf16 = 0;
  for (size_t i = 0; i < n; i++) missing += slots[i] == NULL;
  for (size_t i = n; i < n_bf16_end; i++) bf16 += slots[i] != NULL;
  for (size_t i = n_bf16_end; i < n_all; i++) missing += slots[i] == NULL;
  PS_CHECK_MSG(missing == 0, "%zu CPU kernels are NULL", missing);
  PS_CHECK_MSG(bf16 == 0 && n_bf16_end > n && n_all > n_bf16_end, "%zu CPU bf16 kernels are set",
               bf16);

  /* A CPU forward pass loads nothing of CUDA. */
  float x[6] = {1, 2, 3, 4, 5, 6}, w[6] = {1, 0, 0, 1, 1, 1}, y[4];
  cpu->linear_forward(y, x, w, NULL, 2, 3, 2);
  PS_CHECK(y[0] == 1 && y[1] == 6 && y[2] == 4 && y[3] == 15);
  PS_CHECK(!cuda_mapped());

  /* On this machine there is no GPU: a clear error (and a second call says the same). */
  if (!g_file_test("/dev/nvidia0", G_FILE_TEST_EXISTS)) {
    const ps_kernels *cuda = ps_kernels_get(PS_DEVICE_CUDA, &error);
    PS_CHECK(cuda == NULL);
    PS_CHECK_MSG(error && error->code == PS_ERROR_UNSUPPORTED && strstr(error->message, "CUDA"), "%s",
                 error ? error->message : "no error");
    g_autofree char *first = error ? g_strdup(error->message) : NULL;
    g_clear_error(&error);
    PS_CHECK(ps_kernels_get(PS_DEVICE_CUDA, &error) == NULL && error && g_strcmp0(first, error->message) == 0);
    g_clear_error(&error);
  }
  return ps_test_finish();
}
