/* table.cu — the CUDA kernel table and its one exported symbol,
 * ps_cuda_kernels(), which kernels/cpu/dispatch.c looks up after dlopening
 * libpathseg-cuda.so. It returns NULL (the dispatcher then reports "no CUDA
 * device") when no device is usable, so a CPU-only machine fails cleanly.
 *
 * Entries left NULL are not implemented on the GPU yet (callers must check;
 * see kernels/cuda/README.md for the list). */
#include <mutex>

#include "common.cuh"
#include "ops.cuh"

static cublasHandle_t g_cublas = nullptr;

cublasHandle_t ps_cuda_cublas(void) { return g_cublas; }

static ps_kernels make_table(void) {
  ps_kernels t = {};
  t.name = "cuda";
  t.linear_forward = ps_cuda_linear_forward;
  t.linear_backward = ps_cuda_linear_backward;
  t.bmm_forward = ps_cuda_bmm_forward;
  t.bmm_backward = ps_cuda_bmm_backward;
  t.layernorm_forward = ps_cuda_layernorm_forward;
  t.layernorm_backward = ps_cuda_layernorm_backward;
  t.layernorm2d_forward = ps_cuda_layernorm2d_forward;
  t.layernorm2d_backward = ps_cuda_layernorm2d_backward;
  t.rmsnorm_forward = ps_cuda_rmsnorm_forward;
  t.rmsnorm_backward = ps_cuda_rmsnorm_backward;
  t.gelu_forward = ps_cuda_gelu_forward;
  t.gelu_backward = ps_cuda_gelu_backward;
  t.relu_forward = ps_cuda_relu_forward;
  t.relu_backward = ps_cuda_relu_backward;
  t.silu_forward = ps_cuda_silu_forward;
  t.silu_backward = ps_cuda_silu_backward;
  t.swiglu_forward = ps_cuda_swiglu_forward;
  t.swiglu_backward = ps_cuda_swiglu_backward;
  t.layerscale_forward = ps_cuda_layerscale_forward;
  t.layerscale_backward = ps_cuda_layerscale_backward;
  t.add_forward = ps_cuda_add_forward;
  t.mul_forward = ps_cuda_mul_forward;
  t.mul_backward = ps_cuda_mul_backward;
  t.axpy = ps_cuda_axpy;
  t.scale = ps_cuda_scale;
  t.fill = ps_cuda_fill;
  t.transpose_forward = ps_cuda_transpose_forward;
  t.transpose_backward = ps_cuda_transpose_backward;
  t.softmax_forward = ps_cuda_softmax_forward;
  t.softmax_backward = ps_cuda_softmax_backward;
  t.attention_scratch = ps_cuda_attention_scratch;
  t.attention_forward = ps_cuda_attention_forward;
  t.attention_backward = ps_cuda_attention_backward;
  t.embedding_forward = ps_cuda_embedding_forward;
  t.embedding_backward = ps_cuda_embedding_backward;
  t.crossentropy = ps_cuda_crossentropy;
  t.bce_logits_forward = ps_cuda_bce_logits_forward;
  t.bce_logits_backward = ps_cuda_bce_logits_backward;
  t.dice_forward = ps_cuda_dice_forward;
  t.dice_backward = ps_cuda_dice_backward;
  t.window_partition_forward = ps_cuda_window_partition_forward;
  t.window_partition_backward = ps_cuda_window_partition_backward;
  t.window_unpartition_forward = ps_cuda_window_unpartition_forward;
  t.window_unpartition_backward = ps_cuda_window_unpartition_backward;
  t.rel_pos_forward = ps_cuda_rel_pos_forward;
  t.rel_pos_backward = ps_cuda_rel_pos_backward;
  t.rope_forward = ps_cuda_rope_forward;
  t.rope_backward = ps_cuda_rope_backward;
  t.resize_forward = ps_cuda_resize_forward;
  t.resize_backward = ps_cuda_resize_backward;
  t.conv2d_scratch = ps_cuda_conv2d_scratch;
  t.conv2d_forward = ps_cuda_conv2d_forward;
  t.conv2d_backward = ps_cuda_conv2d_backward;
  t.convt2x2_scratch = ps_cuda_convt2x2_scratch;
  t.convt2x2_forward = ps_cuda_convt2x2_forward;
  t.convt2x2_backward = ps_cuda_convt2x2_backward;
  /* bf16 storage, f32 accumulation */
  t.linear_forward_bf16 = ps_cuda_linear_forward_bf16;
  t.linear_backward_bf16 = ps_cuda_linear_backward_bf16;
  t.layernorm_forward_bf16 = ps_cuda_layernorm_forward_bf16;
  t.layernorm_backward_bf16 = ps_cuda_layernorm_backward_bf16;
  t.rmsnorm_forward_bf16 = ps_cuda_rmsnorm_forward_bf16;
  t.rmsnorm_backward_bf16 = ps_cuda_rmsnorm_backward_bf16;
  t.gelu_forward_bf16 = ps_cuda_gelu_forward_bf16;
  t.gelu_backward_bf16 = ps_cuda_gelu_backward_bf16;
  t.silu_forward_bf16 = ps_cuda_silu_forward_bf16;
  t.silu_backward_bf16 = ps_cuda_silu_backward_bf16;
  t.swiglu_forward_bf16 = ps_cuda_swiglu_forward_bf16;
  t.swiglu_backward_bf16 = ps_cuda_swiglu_backward_bf16;
  t.softmax_forward_bf16 = ps_cuda_softmax_forward_bf16;
  t.softmax_backward_bf16 = ps_cuda_softmax_backward_bf16;
  t.attention_scratch_bf16 = ps_cuda_attention_scratch_bf16;
  t.attention_forward_bf16 = ps_cuda_attention_forward_bf16;
  t.attention_backward_bf16 = ps_cuda_attention_backward_bf16;
  t.rope_forward_bf16 = ps_cuda_rope_forward_bf16;
  t.rope_backward_bf16 = ps_cuda_rope_backward_bf16;
  t.embedding_forward_bf16 = ps_cuda_embedding_forward_bf16;
  t.embedding_backward_bf16 = ps_cuda_embedding_backward_bf16;
  t.crossentropy_bf16 = ps_cuda_crossentropy_bf16;
  /* memory and optimizer */
  t.mem_alloc = ps_cuda_mem_alloc;
  t.mem_free = ps_cuda_mem_free;
  t.copy_to_device = ps_cuda_copy_to_device;
  t.copy_to_host = ps_cuda_copy_to_host;
  t.copy_on_device = ps_cuda_copy_on_device;
  t.mem_zero = ps_cuda_mem_zero;
  t.copy_2d = ps_cuda_copy_2d;
  t.add_rows = ps_cuda_add_rows;
  t.sum_rows = ps_cuda_sum_rows;
  t.mask_counts = ps_cuda_mask_counts;
  t.sum_squares = ps_cuda_sum_squares;
  t.find_nonfinite = ps_cuda_find_nonfinite;
  t.adamw_step = ps_cuda_adamw_step;
  t.to_bf16 = ps_cuda_to_bf16;
  t.from_bf16 = ps_cuda_from_bf16;
  return t;
}

extern "C" __attribute__((visibility("default"))) const ps_kernels *ps_cuda_kernels(void) {
  static std::once_flag once;
  static ps_kernels table;
  static bool ok = false;
  std::call_once(once, [] {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
      cudaGetLastError(); /* clear the sticky "no device" error */
      return;
    }
    if (cublasCreate(&g_cublas) != CUBLAS_STATUS_SUCCESS) return;
    /* Plain FP32 GEMMs (no TF32): the table promises CPU-equivalent f32. */
    cublasSetMathMode(g_cublas, CUBLAS_DEFAULT_MATH);
    table = make_table();
    ok = true;
  });
  return ok ? &table : nullptr;
}

/* The bf16-precision table (kernels.h: ps_precision): the f32 table with the
 * linear products on bf16 tensor cores. */
extern "C" __attribute__((visibility("default"))) const ps_kernels *ps_cuda_kernels_bf16(void) {
  static std::once_flag once;
  static ps_kernels table;
  static const ps_kernels *ok = nullptr;
  std::call_once(once, [] {
    const ps_kernels *f32 = ps_cuda_kernels();
    if (!f32) return;
    table = *f32;
    table.name = "cuda-bf16";
    table.linear_forward = ps_cuda_linear_forward_ac;
    table.linear_backward = ps_cuda_linear_backward_ac;
    ok = &table;
  });
  return ok;
}
