/* ops.cuh — the CUDA implementations behind the table in table.cu (internal).
 * Every pointer is a device pointer; shapes as in core/include/pathseg/kernels.h. */
#pragma once

#include <stdint.h>

#include <pathseg/kernels.h>

#include "cuda/gemm_plan.h"

/* Runs a gemm_plan.h plan on the op's pointers: ops0 = first operand (inp / a
 * / row-major A), ops1 = second (weight / m / row-major B), c = the output,
 * ops3 = dout. Defined in linear.cu. */
void ps_cuda_run_plan(const ps_gemm_plan &p, const float *ops0, const float *ops1, float *c,
                      const float *ops3);

#define PS_CUDA_ELEMENTWISE(name)                                                       \
  void ps_cuda_##name##_forward(float *out, const float *inp, int64_t n);               \
  void ps_cuda_##name##_backward(float *dinp, const float *inp, const float *dout, int64_t n);

void ps_cuda_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                            int64_t N, int64_t C, int64_t OC);
void ps_cuda_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, int64_t N, int64_t C,
                             int64_t OC);
void ps_cuda_bmm_forward(float *out, const float *a, const float *m, int64_t Bt, int64_t M,
                         int64_t N, int64_t K, int trans_m, int64_t sa, int64_t sm);
void ps_cuda_bmm_backward(float *da, float *dm, const float *dout, const float *a, const float *m,
                          int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                          int64_t sm);

void ps_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                               const float *weight, const float *bias, int64_t N, int64_t C,
                               float eps);
void ps_cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int64_t N, int64_t C);
void ps_cuda_layernorm2d_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t B, int64_t C,
                                 int64_t HW, float eps);
void ps_cuda_layernorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int64_t B, int64_t C, int64_t HW);
void ps_cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                             int64_t N, int64_t C, float eps);
void ps_cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, const float *rstd, int64_t N, int64_t C);

PS_CUDA_ELEMENTWISE(gelu)
PS_CUDA_ELEMENTWISE(relu)
PS_CUDA_ELEMENTWISE(silu)
void ps_cuda_swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                            int64_t ld);
void ps_cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                             const float *up, int64_t N, int64_t C, int64_t ld);
void ps_cuda_layerscale_forward(float *out, const float *inp, const float *gamma, int64_t N,
                                int64_t C);
void ps_cuda_layerscale_backward(float *dinp, float *dgamma, const float *dout, const float *inp,
                                 const float *gamma, int64_t N, int64_t C);
void ps_cuda_add_forward(float *out, const float *a, const float *b, int64_t n);
void ps_cuda_mul_forward(float *out, const float *a, const float *b, int64_t n);
void ps_cuda_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                          int64_t n);
void ps_cuda_axpy(float *y, float alpha, const float *x, int64_t n);
void ps_cuda_scale(float *out, const float *inp, float alpha, int64_t n);
void ps_cuda_fill(float *x, float value, int64_t n);
void ps_cuda_transpose_forward(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N);
void ps_cuda_transpose_backward(float *dinp, const float *dout, int64_t Bt, int64_t M, int64_t N);

void ps_cuda_softmax_forward(float *out, const float *inp, int64_t N, int64_t C);
void ps_cuda_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                              int64_t C);

int64_t ps_cuda_attention_scratch(const ps_attention_desc *d, int backward);
void ps_cuda_attention_forward(float *out, float *lse, const float *q, const float *k,
                               const float *v, const ps_attention_desc *d, float *scratch,
                               int64_t scratch_floats);
void ps_cuda_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                                float *drel_w, const float *dout, const float *q, const float *k,
                                const float *v, const float *out, const float *lse,
                                const ps_attention_desc *d, float *scratch,
                                int64_t scratch_floats);

void ps_cuda_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                               int64_t V, int64_t C);
void ps_cuda_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                                int64_t V, int64_t C);
float ps_cuda_crossentropy(float *dlogits, float *row_loss, const float *logits,
                           const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                           float denom, float dloss);
void ps_cuda_bce_logits_forward(float *losses, const float *logits, const float *targets,
                                int64_t M, int64_t P);
void ps_cuda_bce_logits_backward(float *dlogits, const float *dlosses, const float *logits,
                                 const float *targets, int64_t M, int64_t P);
void ps_cuda_dice_forward(float *losses, const float *logits, const float *targets, int64_t M,
                          int64_t P, const ps_dice_desc *d);
void ps_cuda_dice_backward(float *dlogits, const float *dlosses, const float *logits,
                           const float *targets, int64_t M, int64_t P, const ps_dice_desc *d);

void ps_cuda_window_partition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                      int64_t W, int64_t C, int64_t ws);
void ps_cuda_window_partition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                       int64_t W, int64_t C, int64_t ws);
void ps_cuda_window_unpartition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t ws);
void ps_cuda_window_unpartition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                         int64_t W, int64_t C, int64_t ws);
void ps_cuda_rel_pos_forward(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                             const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                             int64_t D, int64_t ldq);
void ps_cuda_rel_pos_backward(float *dq, float *drel_pos_h, float *drel_pos_w,
                              const float *drel_h, const float *drel_w, const float *q,
                              const float *rel_pos_h, const float *rel_pos_w, int64_t B,
                              int64_t H, int64_t gh, int64_t gw, int64_t D, int64_t ldq);
void ps_cuda_rope_forward(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d);
void ps_cuda_rope_backward(float *dinp, const float *dout, const int32_t *pos,
                           const ps_rope_desc *d);
void ps_cuda_resize_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float scale_h, float scale_w,
                            ps_resize_mode mode);
void ps_cuda_resize_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                             int64_t OH, int64_t OW, float scale_h, float scale_w,
                             ps_resize_mode mode);

int64_t ps_cuda_conv2d_scratch(const ps_conv2d_desc *d);
void ps_cuda_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                            const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats);
void ps_cuda_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const ps_conv2d_desc *d,
                             float *scratch, int64_t scratch_floats);
int64_t ps_cuda_convt2x2_scratch(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC);
void ps_cuda_convt2x2_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC,
                              float *scratch, int64_t scratch_floats);
void ps_cuda_convt2x2_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int64_t B, int64_t C,
                               int64_t H, int64_t W, int64_t OC, float *scratch,
                               int64_t scratch_floats);

/* ---- bf16 storage entries (kernels.h: "bf16 storage with f32 accumulation") ---- */
void ps_cuda_linear_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const ps_bf16 *weight,
                                 const ps_bf16 *bias, int64_t N, int64_t C, int64_t OC);
void ps_cuda_linear_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias,
                                  const ps_bf16 *dout, const ps_bf16 *inp, const ps_bf16 *weight,
                                  int64_t N, int64_t C, int64_t OC);
void ps_cuda_layernorm_forward_bf16(ps_bf16 *out, float *mean, float *rstd, const ps_bf16 *inp,
                                    const ps_bf16 *weight, const ps_bf16 *bias, int64_t N,
                                    int64_t C, float eps);
void ps_cuda_layernorm_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias,
                                     const ps_bf16 *dout, const ps_bf16 *inp,
                                     const ps_bf16 *weight, const float *mean, const float *rstd,
                                     int64_t N, int64_t C);
void ps_cuda_rmsnorm_forward_bf16(ps_bf16 *out, float *rstd, const ps_bf16 *inp,
                                  const ps_bf16 *weight, int64_t N, int64_t C, float eps);
void ps_cuda_rmsnorm_backward_bf16(ps_bf16 *dinp, float *dweight, const ps_bf16 *dout,
                                   const ps_bf16 *inp, const ps_bf16 *weight, const float *rstd,
                                   int64_t N, int64_t C);
void ps_cuda_gelu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n);
void ps_cuda_gelu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n);
void ps_cuda_silu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n);
void ps_cuda_silu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n);
void ps_cuda_swiglu_forward_bf16(ps_bf16 *out, const ps_bf16 *gate, const ps_bf16 *up, int64_t N,
                                 int64_t C, int64_t ld);
void ps_cuda_swiglu_backward_bf16(ps_bf16 *dgate, ps_bf16 *dup, const ps_bf16 *dout,
                                  const ps_bf16 *gate, const ps_bf16 *up, int64_t N, int64_t C,
                                  int64_t ld);
void ps_cuda_softmax_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t N, int64_t C);
void ps_cuda_softmax_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const ps_bf16 *out,
                                   int64_t N, int64_t C);
int64_t ps_cuda_attention_scratch_bf16(const ps_attention_desc *d, int backward);
void ps_cuda_attention_forward_bf16(ps_bf16 *out, float *lse, const ps_bf16 *q, const ps_bf16 *k,
                                    const ps_bf16 *v, const ps_attention_desc *d, float *scratch,
                                    int64_t scratch_floats);
void ps_cuda_attention_backward_bf16(ps_bf16 *dq, ps_bf16 *dk, ps_bf16 *dv, float *dbias,
                                     float *drel_h, float *drel_w, const ps_bf16 *dout,
                                     const ps_bf16 *q, const ps_bf16 *k, const ps_bf16 *v,
                                     const ps_bf16 *out, const float *lse,
                                     const ps_attention_desc *d, float *scratch,
                                     int64_t scratch_floats);
void ps_cuda_rope_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, const int32_t *pos,
                               const ps_rope_desc *d);
void ps_cuda_rope_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const int32_t *pos,
                                const ps_rope_desc *d);
void ps_cuda_embedding_forward_bf16(ps_bf16 *out, const int32_t *ids, const ps_bf16 *table,
                                    int64_t N, int64_t V, int64_t C);
void ps_cuda_embedding_backward_bf16(float *dtable, const int32_t *ids, const ps_bf16 *dout,
                                     int64_t N, int64_t V, int64_t C);
float ps_cuda_crossentropy_bf16(ps_bf16 *dlogits, float *row_loss, const ps_bf16 *logits,
                                const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                                float denom, float dloss);

/* memory.cu */
void *ps_cuda_mem_alloc(size_t bytes);
void ps_cuda_mem_free(void *p);
void ps_cuda_copy_to_device(void *dst, const void *src, size_t bytes);
void ps_cuda_copy_to_host(void *dst, const void *src, size_t bytes);
void ps_cuda_copy_on_device(void *dst, const void *src, size_t bytes);
void ps_cuda_mem_zero(void *p, size_t bytes);
double ps_cuda_sum_squares(const float *x, int64_t n);
int64_t ps_cuda_find_nonfinite(const float *x, int64_t n);
void ps_cuda_adamw_step(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16,
                        int64_t n, float clip, float beta1, float beta2, float wd,
                        float step_size, float inv_sqrt_c2, float eps);
void ps_cuda_to_bf16(ps_bf16 *out, const float *inp, int64_t n);
void ps_cuda_from_bf16(float *out, const ps_bf16 *inp, int64_t n);
void ps_cuda_copy_2d(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                     int64_t cols, int accumulate);
void ps_cuda_add_rows(float *out, const float *inp, const float *row, int64_t N, int64_t C);
void ps_cuda_sum_rows(float *drow, const float *dout, int64_t N, int64_t C);

/* linear.cu: the bf16-precision table's linear products (f32 in and out) */
void ps_cuda_linear_forward_ac(float *out, const float *inp, const float *weight,
                               const float *bias, int64_t N, int64_t C, int64_t OC);
void ps_cuda_linear_backward_ac(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, int64_t N, int64_t C,
                                int64_t OC);
/* losses.cu */
void ps_cuda_mask_counts(int64_t *counts, const float *logits, const float *targets, int64_t M,
                         int64_t P);
