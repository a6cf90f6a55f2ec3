/* dispatch.c — the per-device kernel tables. The CPU table is static; the CUDA
 * table comes from libpathseg-cuda.so, opened on first request only. */
#include <dlfcn.h>
#include <pathseg/error.h>
#include <pathseg/kernels.h>
#include <pathseg/registry.h>

#include "build_config.h"
#include "cpu/ops.h"

static const ps_kernels cpu_kernels = {
    .name = "cpu",
    .linear_forward = ps_cpu_linear_forward,
    .linear_backward = ps_cpu_linear_backward,
    .bmm_forward = ps_cpu_bmm_forward,
    .bmm_backward = ps_cpu_bmm_backward,
    .conv2d_scratch = ps_cpu_conv2d_scratch,
    .conv2d_forward = ps_cpu_conv2d_forward,
    .conv2d_backward = ps_cpu_conv2d_backward,
    .convt2x2_scratch = ps_cpu_convt2x2_scratch,
    .convt2x2_forward = ps_cpu_convt2x2_forward,
    .convt2x2_backward = ps_cpu_convt2x2_backward,
    .layernorm_forward = ps_cpu_layernorm_forward,
    .layernorm_backward = ps_cpu_layernorm_backward,
    .layernorm2d_forward = ps_cpu_layernorm2d_forward,
    .layernorm2d_backward = ps_cpu_layernorm2d_backward,
    .rmsnorm_forward = ps_cpu_rmsnorm_forward,
    .rmsnorm_backward = ps_cpu_rmsnorm_backward,
    .gelu_forward = ps_cpu_gelu_forward,
    .gelu_backward = ps_cpu_gelu_backward,
    .relu_forward = ps_cpu_relu_forward,
    .relu_backward = ps_cpu_relu_backward,
    .silu_forward = ps_cpu_silu_forward,
    .silu_backward = ps_cpu_silu_backward,
    .swiglu_forward = ps_cpu_swiglu_forward,
    .swiglu_backward = ps_cpu_swiglu_backward,
    .softmax_forward = ps_cpu_softmax_forward,
    .softmax_backward = ps_cpu_softmax_backward,
    .layerscale_forward = ps_cpu_layerscale_forward,
    .layerscale_backward = ps_cpu_layerscale_backward,
    .add_forward = ps_cpu_add_forward,
    .mul_forward = ps_cpu_mul_forward,
    .mul_backward = ps_cpu_mul_backward,
    .axpy = ps_cpu_axpy,
    .scale = ps_cpu_scale,
    .fill = ps_cpu_fill,
    .transpose_forward = ps_cpu_transpose_forward,
    .transpose_backward = ps_cpu_transpose_backward,
    .attention_scratch = ps_cpu_attention_scratch,
    .attention_forward = ps_cpu_attention_forward,
    .attention_backward = ps_cpu_attention_backward,
    .window_partition_forward = ps_cpu_window_partition_forward,
    .window_partition_backward = ps_cpu_window_partition_backward,
    .window_unpartition_forward = ps_cpu_window_unpartition_forward,
    .window_unpartition_backward = ps_cpu_window_unpartition_backward,
    .rel_pos_forward = ps_cpu_rel_pos_forward,
    .rel_pos_backward = ps_cpu_rel_pos_backward,
    .rope_forward = ps_cpu_rope_forward,
    .rope_backward = ps_cpu_rope_backward,
    .embedding_forward = ps_cpu_embedding_forward,
    .embedding_backward = ps_cpu_embedding_backward,
    .crossentropy = ps_cpu_crossentropy,
    .bce_logits_forward = ps_cpu_bce_logits_forward,
    .bce_logits_backward = ps_cpu_bce_logits_backward,
    .dice_forward = ps_cpu_dice_forward,
    .dice_backward = ps_cpu_dice_backward,
    .resize_forward = ps_cpu_resize_forward,
    .resize_backward = ps_cpu_resize_backward,
    .mem_alloc = ps_cpu_mem_alloc,
    .mem_free = ps_cpu_mem_free,
    .copy_to_device = ps_cpu_copy,
    .copy_to_host = ps_cpu_copy,
    .copy_on_device = ps_cpu_copy,
    .mem_zero = ps_cpu_mem_zero,
    .copy_2d = ps_cpu_copy_2d,
    .add_rows = ps_cpu_add_rows,
    .sum_rows = ps_cpu_sum_rows,
    .mask_counts = ps_cpu_mask_counts,
    .sum_squares = ps_cpu_sum_squares,
    .find_nonfinite = ps_cpu_find_nonfinite,
    .adamw_step = ps_cpu_adamw_step,
    .to_bf16 = ps_cpu_to_bf16,
    .from_bf16 = ps_cpu_from_bf16,
};

typedef const ps_kernels *(*cuda_table_fn)(void);

/* Where libpathseg-cuda.so may be: beside libpathseg.so (installed), in the
 * build tree (a build-tree libpathseg), then the loader's own search path. */
static void *open_cuda_library(GString *tried) {
  /* PATHSEG_CUDA_LIBRARY names another implementation of the table: tests
   * set it to libpathseg-cudaemu.so, the CPU stand-in of kernels/emu. */
  const char *override = g_getenv("PATHSEG_CUDA_LIBRARY");
  if (override && *override) {
    void *handle = dlopen(override, RTLD_NOW | RTLD_LOCAL);
    if (!handle) g_string_append_printf(tried, "PATHSEG_CUDA_LIBRARY: %s", dlerror());
    return handle;
  }
  g_autofree char *beside = ps_install_dir(".");
  g_autofree char *installed = g_build_filename(beside, PS_CUDA_LIBRARY, NULL);
  g_autofree char *built = g_build_filename(PS_BUILD_DIR, PS_CUDA_LIBRARY, NULL);
  const char *candidates[] = {installed, ps_running_from_build_tree() ? built : NULL, PS_CUDA_LIBRARY};
  for (size_t i = 0; i < G_N_ELEMENTS(candidates); i++) {
    if (!candidates[i]) continue;
    void *handle = dlopen(candidates[i], RTLD_NOW | RTLD_LOCAL);
    if (handle) return handle;
    g_string_append_printf(tried, "%s%s", tried->len ? "; " : "", dlerror());
  }
  return NULL;
}

static void *cuda_handle = NULL; /* set once by load_cuda */

static const ps_kernels *load_cuda(GError **error) {
  static GMutex lock;
  static const ps_kernels *table = NULL;
  static char *failure = NULL;
  g_mutex_lock(&lock);
  if (!table && !failure) {
    GString *tried = g_string_new(NULL);
    void *handle = cuda_handle = open_cuda_library(tried);
    if (!handle) {
      failure = g_strdup_printf("cannot load the CUDA kernels (%s): %s", PS_CUDA_LIBRARY, tried->str);
    } else {
      cuda_table_fn fn = (cuda_table_fn)dlsym(handle, "ps_cuda_kernels");
      table = fn ? fn() : NULL;
      if (!table)
        failure = g_strdup_printf("%s has no usable ps_cuda_kernels (no CUDA device?)",
                                  g_getenv("PATHSEG_CUDA_LIBRARY") ? g_getenv("PATHSEG_CUDA_LIBRARY")
                                                                    : PS_CUDA_LIBRARY);
    }
    g_string_free(tried, TRUE);
  }
  g_mutex_unlock(&lock);
  if (!table) g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s", failure);
  return table;
}

const ps_kernels *ps_kernels_get(ps_device device, GError **error) {
  switch (device) {
  case PS_DEVICE_CPU:
    return &cpu_kernels;
  case PS_DEVICE_CUDA:
    return load_cuda(error);
  }
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "unknown device %d", (int)device);
  return NULL;
}

/* The CUDA library's second table, ps_cuda_kernels_bf16(): the f32 table
 * with bf16 tensor-core linear products (kernels.h: ps_precision). */
static const ps_kernels *load_cuda_bf16(GError **error) {
  static GMutex lock;
  static const ps_kernels *table = NULL;
  if (!load_cuda(error)) return NULL;
  g_mutex_lock(&lock);
  if (!table) {
    cuda_table_fn fn = (cuda_table_fn)dlsym(cuda_handle, "ps_cuda_kernels_bf16");
    table = fn ? fn() : NULL;
  }
  g_mutex_unlock(&lock);
  if (!table)
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "the CUDA kernels have no bf16 table (ps_cuda_kernels_bf16)");
  return table;
}

const ps_kernels *ps_kernels_get_precision(ps_device device, ps_precision precision,
                                           GError **error) {
  if (precision == PS_PRECISION_F32) return ps_kernels_get(device, error);
  if (precision != PS_PRECISION_BF16) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "unknown precision %d", (int)precision);
    return NULL;
  }
  if (device != PS_DEVICE_CUDA) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "precision bf16 needs device cuda (the CPU computes in f32)");
    return NULL;
  }
  return load_cuda_bf16(error);
}
