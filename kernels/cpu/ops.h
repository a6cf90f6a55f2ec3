/* cpu/ops.h — the CPU implementations behind the dispatch table (internal).
 * Each function's contract (shapes, accumulation) is documented on its table
 * entry in <pathseg/kernels.h>. */
#pragma once

#include <pathseg/kernels.h>
#include <stdint.h>

/* blas_threads.c: bracket OpenMP regions whose threads call BLAS */
void ps_cpu_blas_serial_begin(void);
void ps_cpu_blas_serial_end(void);

/* linear.c */
void ps_cpu_linear_forward(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t N, int64_t C, int64_t OC);
void ps_cpu_linear_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int64_t N, int64_t C,
                            int64_t OC);
void ps_cpu_bmm_forward(float *out, const float *a, const float *m, int64_t Bt, int64_t M,
                        int64_t N, int64_t K, int trans_m, int64_t sa, int64_t sm);
void ps_cpu_bmm_backward(float *da, float *dm, const float *dout, const float *a, const float *m,
                         int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                         int64_t sm);

/* conv.c */
int64_t ps_cpu_conv2d_scratch(const ps_conv2d_desc *d);
void ps_cpu_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                           const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats);
void ps_cpu_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, const ps_conv2d_desc *d,
                            float *scratch, int64_t scratch_floats);
int64_t ps_cpu_convt2x2_scratch(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC);
void ps_cpu_convt2x2_forward(float *out, const float *inp, const float *weight, const float *bias,
                             int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, float *scratch,
                             int64_t scratch_floats);
void ps_cpu_convt2x2_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                              const float *inp, const float *weight, int64_t B, int64_t C,
                              int64_t H, int64_t W, int64_t OC, float *scratch,
                              int64_t scratch_floats);

/* norm.c */
void ps_cpu_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int64_t N, int64_t C,
                              float eps);
void ps_cpu_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int64_t N, int64_t C);
void ps_cpu_layernorm2d_forward(float *out, float *mean, float *rstd, const float *inp,
                                const float *weight, const float *bias, int64_t B, int64_t C,
                                int64_t HW, float eps);
void ps_cpu_layernorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                 const float *inp, const float *weight, const float *mean,
                                 const float *rstd, int64_t B, int64_t C, int64_t HW);
void ps_cpu_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                            int64_t N, int64_t C, float eps);
void ps_cpu_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                             const float *weight, const float *rstd, int64_t N, int64_t C);

/* activation.c */
void ps_cpu_gelu_forward(float *out, const float *inp, int64_t n);
void ps_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
void ps_cpu_relu_forward(float *out, const float *inp, int64_t n);
void ps_cpu_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
void ps_cpu_silu_forward(float *out, const float *inp, int64_t n);
void ps_cpu_silu_backward(float *dinp, const float *inp, const float *dout, int64_t n);
void ps_cpu_swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                           int64_t ld);
void ps_cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t N, int64_t C, int64_t ld);
void ps_cpu_softmax_forward(float *out, const float *inp, int64_t N, int64_t C);
/* softmax_row.c: one row, exp-bound, FMA-contracted (see the file).
 * y = softmax(x) over n elements, in place allowed; *lse (if lse != NULL)
 * gets the row's log-sum-exp. A row of only -inf gives zeros and lse = -inf. */
void ps_cpu_softmax_row(float *y, const float *x, int64_t n, float *lse);
/* The same over `rows` contiguous rows of n (one call per span of rows, with
 * the rows ahead prefetched). y, x: (rows, n), in place allowed. */
void ps_cpu_softmax_rows(float *y, const float *x, int64_t rows, int64_t n);
/* y = exp(x - shift) over n elements (in place allowed; meant for x <= shift). */
void ps_cpu_exp_shifted_row(float *y, const float *x, float shift, int64_t n);
void ps_cpu_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                             int64_t C);

/* elementwise.c */
void ps_cpu_layerscale_forward(float *out, const float *inp, const float *gamma, int64_t N,
                               int64_t C);
void ps_cpu_layerscale_backward(float *dinp, float *dgamma, const float *dout, const float *inp,
                                const float *gamma, int64_t N, int64_t C);
void ps_cpu_add_forward(float *out, const float *a, const float *b, int64_t n);
void ps_cpu_mul_forward(float *out, const float *a, const float *b, int64_t n);
void ps_cpu_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                         int64_t n);
void ps_cpu_axpy(float *y, float alpha, const float *x, int64_t n);
void ps_cpu_scale(float *out, const float *inp, float alpha, int64_t n);
void ps_cpu_fill(float *x, float value, int64_t n);
void ps_cpu_transpose_forward(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N);
void ps_cpu_transpose_backward(float *dinp, const float *dout, int64_t Bt, int64_t M, int64_t N);

/* attention.c */
int64_t ps_cpu_attention_scratch(const ps_attention_desc *d, int backward);
void ps_cpu_attention_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, const ps_attention_desc *d, float *scratch,
                              int64_t scratch_floats);
void ps_cpu_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                               float *drel_w, const float *dout, const float *q, const float *k,
                               const float *v, const float *out, const float *lse,
                               const ps_attention_desc *d, float *scratch, int64_t scratch_floats);

/* window.c */
void ps_cpu_window_partition_forward(float *out, const float *inp, int64_t B, int64_t H, int64_t W,
                                     int64_t C, int64_t ws);
void ps_cpu_window_partition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                      int64_t W, int64_t C, int64_t ws);
void ps_cpu_window_unpartition_forward(float *out, const float *inp, int64_t B, int64_t H,
                                       int64_t W, int64_t C, int64_t ws);
void ps_cpu_window_unpartition_backward(float *dinp, const float *dout, int64_t B, int64_t H,
                                        int64_t W, int64_t C, int64_t ws);

/* relpos.c */
void ps_cpu_rel_pos_forward(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                            const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                            int64_t D, int64_t ldq);
void ps_cpu_rel_pos_backward(float *dq, float *drel_pos_h, float *drel_pos_w, const float *drel_h,
                             const float *drel_w, const float *q, const float *rel_pos_h,
                             const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                             int64_t D, int64_t ldq);

/* rope.c */
void ps_cpu_rope_forward(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d);
void ps_cpu_rope_backward(float *dinp, const float *dout, const int32_t *pos,
                          const ps_rope_desc *d);

/* embedding.c */
void ps_cpu_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                              int64_t V, int64_t C);
void ps_cpu_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                               int64_t V, int64_t C);
float ps_cpu_crossentropy(float *dlogits, float *row_loss, const float *logits,
                          const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                          float denom, float dloss);

/* loss.c */
void ps_cpu_bce_logits_forward(float *losses, const float *logits, const float *targets, int64_t M,
                               int64_t P);
void ps_cpu_bce_logits_backward(float *dlogits, const float *dlosses, const float *logits,
                                const float *targets, int64_t M, int64_t P);
void ps_cpu_dice_forward(float *losses, const float *logits, const float *targets, int64_t M,
                         int64_t P, const ps_dice_desc *d);
void ps_cpu_dice_backward(float *dlogits, const float *dlosses, const float *logits,
                          const float *targets, int64_t M, int64_t P, const ps_dice_desc *d);
void ps_cpu_mask_counts(int64_t *counts, const float *logits, const float *targets, int64_t M,
                        int64_t P);

/* resize.c */
void ps_cpu_resize_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float scale_h, float scale_w,
                           ps_resize_mode mode);
void ps_cpu_resize_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                            int64_t OH, int64_t OW, float scale_h, float scale_w,
                            ps_resize_mode mode);

/* memory.c */
void *ps_cpu_mem_alloc(size_t bytes);
void ps_cpu_mem_free(void *p);
void ps_cpu_copy(void *dst, const void *src, size_t bytes);
void ps_cpu_mem_zero(void *p, size_t bytes);
double ps_cpu_sum_squares(const float *x, int64_t n);
int64_t ps_cpu_find_nonfinite(const float *x, int64_t n);
void ps_cpu_adamw_step(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16, int64_t n,
                       float clip, float beta1, float beta2, float wd, float step_size,
                       float inv_sqrt_c2, float eps);
void ps_cpu_to_bf16(ps_bf16 *out, const float *inp, int64_t n);
void ps_cpu_from_bf16(float *out, const ps_bf16 *inp, int64_t n);
void ps_cpu_copy_2d(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                    int64_t cols, int accumulate);
void ps_cpu_add_rows(float *out, const float *inp, const float *row, int64_t N, int64_t C);
void ps_cpu_sum_rows(float *drow, const float *dout, int64_t N, int64_t C);
