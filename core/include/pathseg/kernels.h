/* kernels.h — forward and backward of every op, one dispatch table per device.
 *
 * Each op is a pair of plain functions over raw pointers with explicit sizes
 * (llm.c style). All tensors are float32, row-major and contiguous unless an
 * explicit row stride (`ld*`) says otherwise; integer inputs (token ids,
 * positions, targets) are int32. Pointers are host pointers in the CPU table
 * and device pointers in the CUDA table.
 *
 * Conventions that hold for every op unless its comment says otherwise:
 *  - Backward functions ADD into gradient buffers (so gradient accumulation is
 *    free); a NULL gradient pointer means "not needed" and costs nothing.
 *  - Elementwise forwards may run in place (out == inp).
 *  - Ops never allocate. Ops that need temporary memory take `scratch` plus its
 *    capacity in floats; the table's *_scratch function says how many floats
 *    to provide (it may depend on the thread count, so ask right before use).
 *    An op given less scratch than it asked for uses fewer threads, never more
 *    memory; with less than one thread's share it does nothing.
 *  - Shapes are commented on every argument; sizes are element counts.
 *  - Ops do not validate ids/targets/positions against their ranges beyond
 *    what is documented: callers check user input and raise GErrors. A
 *    descriptor that breaks its documented constraints (e.g. Hkv not dividing
 *    Hq) makes the op return without writing anything rather than read out
 *    of bounds.
 *
 * bf16 storage: the CUDA table also has *_bf16 entries (listed at the end of
 * ps_kernels) for the ops whose storage precision matters; the CPU table has
 * none (those entries are NULL there, and callers must check).
 *
 * ps_kernels_get(device) returns the table for a device. The CPU table is
 * built in; the CUDA table lives in a separate shared object that is loaded
 * only the first time a CUDA table is asked for, so a CPU-only machine never
 * loads CUDA libraries. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include <pathseg/tensor.h>

G_BEGIN_DECLS

/* ---- descriptors for the ops with many size parameters -------------------- */

/* Multi-head scaled-dot-product attention, general enough for causal (Qwen2),
 * full (ViT, SAM global), grouped-query (n_kv_heads divides n_heads), cross
 * (Tq != Tk: SAM two-way transformer) and windowed (SAM; windows are just the
 * batch after ps_kernels.window_partition_forward) attention.
 *
 * Layout is token-major, exactly what a linear layer produces, so q/k/v can be
 * sub-blocks of one packed qkv projection without copies:
 *   q element (b, t, h, d) is q[(b * Tq + t) * ldq + h * D + d], t < Tq, h < Hq
 *   k element (b, s, g, d) is k[(b * Tk + s) * ldk + g * D + d], s < Tk, g < Hkv
 *   v likewise with ldv; out (b, t, h, d) is out[(b * Tq + t) * ldo + h * D + d].
 * (Packed SAM/ViT qkv (B, T, 3, H, D): q = qkv, k = qkv + H*D, v = qkv + 2*H*D,
 *  ldq = ldk = ldv = 3*H*D.) A zero ld means the dense default H*D.
 * Query head h reads kv head h / (Hq / Hkv) (HF repeat_kv).
 *
 * Logits: s[i, j] = scale * q_i . k_j + bias[b, h, i, j]
 *                   + rel_h[b, h, i, j / rel_kw] + rel_w[b, h, i, j % rel_kw]
 * then causal masking, softmax over j, out_i = sum_j p_ij v_j. */
typedef struct ps_attention_desc {
  int64_t B;                  /* batch (windows count here) */
  int64_t Hq;                 /* query heads */
  int64_t Hkv;                /* key/value heads; divides Hq */
  int64_t Tq;                 /* query tokens */
  int64_t Tk;                 /* key/value tokens */
  int64_t D;                  /* head dim (q, k and v alike) */
  int64_t ldq, ldk, ldv, ldo; /* row strides in floats; 0 = Hq*D (q, out) or Hkv*D (k, v) */
  float scale;                /* usually 1/sqrt(D) */
  /* Causal: query i sees key j iff j <= i + (Tk - Tq) (queries are the last Tq
   * positions, as in KV-cached decoding). */
  int causal;
  /* Optional additive bias, NULL for none: element (b, h, i, j) is
   * bias[b * bias_sb + h * bias_sh + i * Tk + j]; a zero stride broadcasts
   * (e.g. a (Tq, Tk) mask shared by every batch and head: sb = sh = 0).
   * Use -INFINITY for masked entries. */
  const float *bias;
  int64_t bias_sb, bias_sh;
  /* Optional decomposed relative positions (SAM), NULL for none; both or
   * neither. rel_h: (B, Hq, Tq, rel_kh), rel_w: (B, Hq, Tq, rel_kw) as made by
   * rel_pos_forward; requires Tk == rel_kh * rel_kw (keys row-major on a
   * rel_kh x rel_kw grid). */
  const float *rel_h, *rel_w;
  int64_t rel_kh, rel_kw;
} ps_attention_desc;

/* 2-D convolution, NCHW, no groups, no dilation, symmetric stride/padding.
 * OH = (H + 2*pad - KH) / stride + 1, OW likewise. */
typedef struct ps_conv2d_desc {
  int64_t B, C, H, W; /* input (B, C, H, W) */
  int64_t OC;         /* output channels */
  int64_t KH, KW;     /* kernel size */
  int64_t stride, pad;
} ps_conv2d_desc;

/* Rotary position embedding, rotate-half form (element d pairs with d + D/2).
 * inv_freq[j] = theta^(-2j/D) for j < D/2 (computed in float32 as PyTorch
 * does); the angle of frequency j for token n is pos[stream(j) * N + n] *
 * inv_freq[j]; out_d = x_d cos - x_{d+D/2} sin, out_{d+D/2} = x_{d+D/2} cos +
 * x_d sin.
 * n_sections = 0: one position stream, pos (N).
 * n_sections = 2 or 3: multimodal (Qwen2-VL M-RoPE), pos (n_sections, N);
 *   frequencies [0, sections[0]) use stream 0 (t), the next sections[1] use
 *   stream 1 (h), the next sections[2] stream 2 (w); sum(sections) == D/2.
 * section_local != 0 (Qwen2.5-VL vision 2-D RoPE): within section s the
 *   frequency index restarts, inv_freq = theta^(-2j'/(2*sections[s])). */
typedef struct ps_rope_desc {
  int64_t N;  /* tokens */
  int64_t H;  /* heads */
  int64_t D;  /* head dim, even */
  int64_t ld; /* row stride between tokens in floats; 0 = H*D */
  float theta;
  int32_t n_sections;
  int32_t sections[3];
  int32_t section_local;
} ps_rope_desc;

/* Soft Dice on sigmoid(logits) per mask:
 *   loss = 1 - (2 * sum(p*t) / scale + smooth_nr) / ((sum(p^k) + sum(t^k)) / scale + smooth_dr)
 * with k = 2 if squared else 1.
 * LISA dice_loss: scale 1000, smooth 1e-6 / 1e-6, squared 0.
 * MONAI DiceLoss(sigmoid=True): scale 1, smooth 1e-5 / 1e-5, squared_pred as configured
 * (MedSAM: squared 1). */
typedef struct ps_dice_desc {
  float scale;
  float smooth_nr, smooth_dr;
  int squared;
} ps_dice_desc;

typedef enum { PS_RESIZE_BILINEAR = 0, PS_RESIZE_BICUBIC = 1 } ps_resize_mode;

/* A bfloat16 value as its bit pattern: the upper 16 bits of a float32
 * (ps_f32_to_bf16 in tensor.h rounds to nearest even, ps_bf16_to_f32 widens). */
typedef uint16_t ps_bf16;

/* ---- the table ------------------------------------------------------------- */

typedef struct ps_kernels {
  const char *name; /* "cpu", "cuda" */

  /* ---- products ---- */

  /* out[N, OC] = inp[N, C] @ weight[OC, C]^T + bias[OC] (bias may be NULL) */
  void (*linear_forward)(float *out, const float *inp, const float *weight, const float *bias,
                         int64_t N, int64_t C, int64_t OC);
  /* dinp[N, C] += dout[N, OC] @ weight[OC, C]; dweight[OC, C] += dout^T @ inp;
   * dbias[OC] += sum_n dout[n, :]. Any of dinp, dweight, dbias may be NULL. */
  void (*linear_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, int64_t N, int64_t C, int64_t OC);

  /* Batched matrix product: out[b] = a[b] @ op(m[b]) for b < Bt.
   * out: (Bt, M, N); a: (Bt, M, K); m: (Bt, K, N), or (Bt, N, K) when trans_m.
   * A batch stride of 0 for a or m broadcasts it (sa, sm: floats between
   * batches; pass M*K and K*N for dense). */
  void (*bmm_forward)(float *out, const float *a, const float *m, int64_t Bt, int64_t M, int64_t N,
                      int64_t K, int trans_m, int64_t sa, int64_t sm);
  /* da += dout @ op(m)^T; dm += (op-adjusted) a^T @ dout. da, dm may be NULL.
   * With a zero batch stride the matching gradient sums over the batch. */
  void (*bmm_backward)(float *da, float *dm, const float *dout, const float *a, const float *m,
                       int64_t Bt, int64_t M, int64_t N, int64_t K, int trans_m, int64_t sa,
                       int64_t sm);

  /* ---- convolutions ---- */

  /* Floats of scratch conv2d_forward/backward need (0 for 1x1 stride 1 pad 0). */
  int64_t (*conv2d_scratch)(const ps_conv2d_desc *d);
  /* out: (B, OC, OH, OW); inp: (B, C, H, W); weight: (OC, C, KH, KW); bias: (OC) or NULL. */
  void (*conv2d_forward)(float *out, const float *inp, const float *weight, const float *bias,
                         const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats);
  /* dinp: (B, C, H, W); dweight: (OC, C, KH, KW); dbias: (OC); dout: (B, OC, OH, OW). */
  void (*conv2d_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                          const float *inp, const float *weight, const ps_conv2d_desc *d,
                          float *scratch, int64_t scratch_floats);

  /* ConvTranspose2d kernel 2 stride 2 (SAM output upscaling):
   * out[b, o, 2i+a, 2j+c] = bias[o] + sum_ch inp[b, ch, i, j] * weight[ch, o, a, c].
   * out: (B, OC, 2H, 2W); inp: (B, C, H, W); weight: (C, OC, 2, 2); bias: (OC) or NULL.
   * Scratch: convt2x2_scratch floats (4*OC*H*W). */
  int64_t (*convt2x2_scratch)(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC);
  void (*convt2x2_forward)(float *out, const float *inp, const float *weight, const float *bias,
                           int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC, float *scratch,
                           int64_t scratch_floats);
  void (*convt2x2_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                            const float *inp, const float *weight, int64_t B, int64_t C, int64_t H,
                            int64_t W, int64_t OC, float *scratch, int64_t scratch_floats);

  /* ---- normalisation ---- */

  /* LayerNorm over the last dim (biased variance):
   * out: (N, C); mean, rstd: (N) saved for backward (may be NULL in inference);
   * inp: (N, C); weight, bias: (C) (either may be NULL: 1 / 0). */
  void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *inp,
                            const float *weight, const float *bias, int64_t N, int64_t C,
                            float eps);
  /* dinp: (N, C); dweight, dbias: (C); dout, inp: (N, C); mean, rstd: (N) from forward. */
  void (*layernorm_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const float *mean,
                             const float *rstd, int64_t N, int64_t C);

  /* SAM LayerNorm2d: normalise over channels at every pixel of an NCHW map.
   * out, inp: (B, C, HW); weight, bias: (C); mean, rstd: (B, HW) or NULL. */
  void (*layernorm2d_forward)(float *out, float *mean, float *rstd, const float *inp,
                              const float *weight, const float *bias, int64_t B, int64_t C,
                              int64_t HW, float eps);
  void (*layernorm2d_backward)(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, const float *mean,
                               const float *rstd, int64_t B, int64_t C, int64_t HW);

  /* RMSNorm (Qwen2): out = weight * x * rsqrt(mean(x^2) + eps) (no 1 + w).
   * out, inp: (N, C); weight: (C) or NULL; rstd: (N) saved, or NULL. */
  void (*rmsnorm_forward)(float *out, float *rstd, const float *inp, const float *weight, int64_t N,
                          int64_t C, float eps);
  void (*rmsnorm_backward)(float *dinp, float *dweight, const float *dout, const float *inp,
                           const float *weight, const float *rstd, int64_t N, int64_t C);

  /* ---- elementwise ---- */

  /* out, inp: (n). GELU is the exact erf form. Backward: dinp += f'(inp) * dout. */
  void (*gelu_forward)(float *out, const float *inp, int64_t n);
  void (*gelu_backward)(float *dinp, const float *inp, const float *dout, int64_t n);
  void (*relu_forward)(float *out, const float *inp, int64_t n);
  void (*relu_backward)(float *dinp, const float *inp, const float *dout, int64_t n);
  void (*silu_forward)(float *out, const float *inp, int64_t n);
  void (*silu_backward)(float *dinp, const float *inp, const float *dout, int64_t n);

  /* SwiGLU: out[n, c] = silu(gate[n*ld + c]) * up[n*ld + c].
   * out: (N, C); gate, up: N rows with stride ld (0 = C). Separate projections:
   * ld = C. Packed [x1 | x2] rows (DINOv2 w12, timm SwiGLUPacked): gate = h,
   * up = h + C, ld = 2C. dgate/dup use the same layout. */
  void (*swiglu_forward)(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                         int64_t ld);
  void (*swiglu_backward)(float *dgate, float *dup, const float *dout, const float *gate,
                          const float *up, int64_t N, int64_t C, int64_t ld);

  /* LayerScale: out[n, c] = inp[n, c] * gamma[c]. out, inp: (N, C); gamma: (C). */
  void (*layerscale_forward)(float *out, const float *inp, const float *gamma, int64_t N,
                             int64_t C);
  void (*layerscale_backward)(float *dinp, float *dgamma, const float *dout, const float *inp,
                              const float *gamma, int64_t N, int64_t C);

  /* out = a + b; out = a * b (e.g. dropout masks); all (n). */
  void (*add_forward)(float *out, const float *a, const float *b, int64_t n);
  void (*mul_forward)(float *out, const float *a, const float *b, int64_t n);
  /* da += dout * b; db += dout * a. da or db may be NULL (not computed); a is
   * read only for db and b only for da, so a may be NULL when db is, b when da is. */
  void (*mul_backward)(float *da, float *db, const float *dout, const float *a, const float *b,
                       int64_t n);
  /* y += alpha * x (also add's backward); out = alpha * inp; x[i] = value. All (n). */
  void (*axpy)(float *y, float alpha, const float *x, int64_t n);
  void (*scale)(float *out, const float *inp, float alpha, int64_t n);
  void (*fill)(float *x, float value, int64_t n);

  /* Batched 2-D transpose: out[b, j, i] = inp[b, i, j]. out: (Bt, N, M); inp: (Bt, M, N).
   * NCHW -> NHWC is (B, C, HW) -> (B, HW, C). Its backward is the reverse transpose
   * (use transpose_backward, which adds). Not in place. */
  void (*transpose_forward)(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N);
  void (*transpose_backward)(float *dinp, const float *dout, int64_t Bt, int64_t M, int64_t N);

  /* Softmax over the last dim, max-subtracted. out, inp: (N, C).
   * Backward: dinp += out * (dout - sum(dout * out)). */
  void (*softmax_forward)(float *out, const float *inp, int64_t N, int64_t C);
  void (*softmax_backward)(float *dinp, const float *dout, const float *out, int64_t N, int64_t C);

  /* ---- attention ---- */

  /* Floats of scratch attention_forward (backward = 0) or attention_backward (1) need. */
  int64_t (*attention_scratch)(const ps_attention_desc *d, int backward);
  /* out: see ps_attention_desc; lse: (B, Hq, Tq) log-sum-exp of each row of
   * logits, saved for backward (NULL in inference). A row with every key masked
   * gives out = 0 and lse = -inf. */
  void (*attention_forward)(float *out, float *lse, const float *q, const float *k, const float *v,
                            const ps_attention_desc *d, float *scratch, int64_t scratch_floats);
  /* dq, dk, dv: same layouts/strides as q, k, v (may be NULL). dout: like out,
   * with stride ldo. dbias: like d->bias with the same strides (sums over
   * broadcast dims; NULL when the bias needs no gradient). drel_h, drel_w:
   * like rel_h, rel_w (NULL if not needed). out and lse are the forward's. */
  void (*attention_backward)(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                             float *drel_w, const float *dout, const float *q, const float *k,
                             const float *v, const float *out, const float *lse,
                             const ps_attention_desc *d, float *scratch, int64_t scratch_floats);

  /* SAM window partition: zero-pad the (H, W) grid bottom/right to multiples of
   * ws, cut ws x ws windows, row-major over windows.
   * out: (B * nh * nw, ws, ws, C) with nh = ceil(H/ws), nw = ceil(W/ws); inp: (B, H, W, C). */
  void (*window_partition_forward)(float *out, const float *inp, int64_t B, int64_t H, int64_t W,
                                   int64_t C, int64_t ws);
  /* dinp: (B, H, W, C) += the non-padding part of dout: (B * nh * nw, ws, ws, C). */
  void (*window_partition_backward)(float *dinp, const float *dout, int64_t B, int64_t H, int64_t W,
                                    int64_t C, int64_t ws);
  /* Inverse: reassemble windows and crop the padding.
   * out: (B, H, W, C); inp: (B * nh * nw, ws, ws, C). */
  void (*window_unpartition_forward)(float *out, const float *inp, int64_t B, int64_t H, int64_t W,
                                     int64_t C, int64_t ws);
  /* dinp: (B * nh * nw, ws, ws, C) += dout: (B, H, W, C) placed in windows (padding gets 0). */
  void (*window_unpartition_backward)(float *dinp, const float *dout, int64_t B, int64_t H,
                                      int64_t W, int64_t C, int64_t ws);

  /* SAM decomposed relative positions (q size == k size, no interpolation),
   * computed from the UNSCALED q:
   *   rel_h[b, h, (y, x), ky] = sum_c q[b, (y, x), h, c] * rel_pos_h[y - ky + gh - 1, c]
   *   rel_w[b, h, (y, x), kx] = sum_c q[b, (y, x), h, c] * rel_pos_w[x - kx + gw - 1, c]
   * q: token-major (B, gh*gw, H, D) with row stride ldq (0 = H*D), as in
   * ps_attention_desc; rel_pos_h: (2*gh - 1, D); rel_pos_w: (2*gw - 1, D);
   * rel_h: (B, H, gh*gw, gh); rel_w: (B, H, gh*gw, gw). Feed rel_h/rel_w to
   * attention with rel_kh = gh, rel_kw = gw. */
  void (*rel_pos_forward)(float *rel_h, float *rel_w, const float *q, const float *rel_pos_h,
                          const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                          int64_t D, int64_t ldq);
  /* dq (stride ldq), drel_pos_h, drel_pos_w (any may be NULL) += the gradients
   * from drel_h: (B, H, gh*gw, gh) and drel_w: (B, H, gh*gw, gw). */
  void (*rel_pos_backward)(float *dq, float *drel_pos_h, float *drel_pos_w, const float *drel_h,
                           const float *drel_w, const float *q, const float *rel_pos_h,
                           const float *rel_pos_w, int64_t B, int64_t H, int64_t gh, int64_t gw,
                           int64_t D, int64_t ldq);

  /* Rotary embedding (see ps_rope_desc). out, inp: (N, H, D) with row stride
   * ld (in place allowed); pos: (N) or (n_sections, N). Applied to q and k
   * separately (call twice with their H). */
  void (*rope_forward)(float *out, const float *inp, const int32_t *pos, const ps_rope_desc *d);
  /* dinp += R^T dout (the inverse rotation); dinp and dout use stride ld. */
  void (*rope_backward)(float *dinp, const float *dout, const int32_t *pos, const ps_rope_desc *d);

  /* ---- embedding and losses ---- */

  /* out[n, :] = table[ids[n], :]. out: (N, C); ids: (N) in [0, V); table: (V, C).
   * An id outside [0, V) gives a zero row (callers validate ids). */
  void (*embedding_forward)(float *out, const int32_t *ids, const float *table, int64_t N,
                            int64_t V, int64_t C);
  /* dtable[ids[n], :] += dout[n, :] (scatter-add; out-of-range ids are skipped). */
  void (*embedding_backward)(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                             int64_t V, int64_t C);

  /* Cross-entropy of logits (N, V) against targets (N); rows whose target is
   * ignore_index (-100) are skipped (as are targets outside [0, V)).
   * Returns the loss sum over valid rows divided by `denom` (denom <= 0: the
   * number of valid rows, i.e. PyTorch's mean; 0 if there are none).
   * row_loss: (N) per-row -log p(target) (0 for skipped rows), or NULL.
   * dlogits: (N, V) or NULL: dlogits += dloss * (softmax - onehot) / denom for
   * valid rows. If dlogits == logits the logits are replaced by that gradient
   * (llm.c's in-place trick; skipped rows become 0). */
  float (*crossentropy)(float *dlogits, float *row_loss, const float *logits,
                        const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                        float denom, float dloss);

  /* BCE with logits, stable form max(x,0) - x*t + log1p(exp(-|x|)), mean per mask.
   * losses: (M); logits, targets: (M, P). */
  void (*bce_logits_forward)(float *losses, const float *logits, const float *targets, int64_t M,
                             int64_t P);
  /* dlogits: (M, P) += dlosses[m] * (sigmoid(x) - t) / P. */
  void (*bce_logits_backward)(float *dlogits, const float *dlosses, const float *logits,
                              const float *targets, int64_t M, int64_t P);

  /* Soft Dice per mask (see ps_dice_desc). losses: (M); logits, targets: (M, P). */
  void (*dice_forward)(float *losses, const float *logits, const float *targets, int64_t M,
                       int64_t P, const ps_dice_desc *d);
  /* dlogits: (M, P) += dlosses[m] * dloss_m / dlogits. */
  void (*dice_backward)(float *dlogits, const float *dlosses, const float *logits,
                        const float *targets, int64_t M, int64_t P, const ps_dice_desc *d);

  /* ---- resampling ---- */

  /* PyTorch F.interpolate, align_corners=False, no antialias, over NC planes.
   * out: (NC, OH, OW); inp: (NC, H, W). scale_h/scale_w are input pixels per
   * output pixel as PyTorch uses them: pass 1/scale_factor when the caller
   * used scale_factor (DINOv2 pos-embed), or <= 0 for H/OH and W/OW.
   * Bilinear clamps negative source coordinates to 0; bicubic uses A = -0.75
   * and clamps tap indices to the border. */
  void (*resize_forward)(float *out, const float *inp, int64_t NC, int64_t H, int64_t W, int64_t OH,
                         int64_t OW, float scale_h, float scale_w, ps_resize_mode mode);
  /* The adjoint: dinp: (NC, H, W) += resize^T dout: (NC, OH, OW). */
  void (*resize_backward)(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                          int64_t OH, int64_t OW, float scale_h, float scale_w,
                          ps_resize_mode mode);

  /* ---- bf16 storage with f32 accumulation (CUDA table only) ----------------
   * Entries for: linear, layernorm, rmsnorm, GELU, SiLU, SwiGLU, softmax,
   * attention, rotary embedding, embedding and cross-entropy (forward and
   * backward; cross-entropy is one entry). They are NULL in the CPU table:
   * check before calling. Each takes the same sizes and
   * keeps the contract of its f32 entry above, with these storage types:
   *  - bf16 (ps_bf16): activations, their gradients (dinp, dq, dk, dv,
   *    dgate, dup, dlogits) and parameters (weight, bias, embedding table);
   *  - f32: saved statistics (mean, rstd, lse), parameter gradients (dweight,
   *    dbias, dtable: accumulation buffers, e.g. f32 master gradients),
   *    scratch, losses, and the attention descriptor's bias / rel_h / rel_w
   *    tensors and their gradients (dbias, drel_h, drel_w).
   * All arithmetic and every sum is f32 (GEMMs: cublasGemmEx with bf16
   * inputs and CUBLAS_COMPUTE_32F); each bf16 output element is rounded to
   * nearest even once, and a bf16 gradient that is added into is read,
   * added in f32 and rounded once. */
  void (*linear_forward_bf16)(ps_bf16 *out, const ps_bf16 *inp, const ps_bf16 *weight,
                              const ps_bf16 *bias, int64_t N, int64_t C, int64_t OC);
  void (*linear_backward_bf16)(ps_bf16 *dinp, float *dweight, float *dbias, const ps_bf16 *dout,
                               const ps_bf16 *inp, const ps_bf16 *weight, int64_t N, int64_t C,
                               int64_t OC);
  void (*layernorm_forward_bf16)(ps_bf16 *out, float *mean, float *rstd, const ps_bf16 *inp,
                                 const ps_bf16 *weight, const ps_bf16 *bias, int64_t N, int64_t C,
                                 float eps);
  void (*layernorm_backward_bf16)(ps_bf16 *dinp, float *dweight, float *dbias,
                                  const ps_bf16 *dout, const ps_bf16 *inp, const ps_bf16 *weight,
                                  const float *mean, const float *rstd, int64_t N, int64_t C);
  void (*rmsnorm_forward_bf16)(ps_bf16 *out, float *rstd, const ps_bf16 *inp,
                               const ps_bf16 *weight, int64_t N, int64_t C, float eps);
  void (*rmsnorm_backward_bf16)(ps_bf16 *dinp, float *dweight, const ps_bf16 *dout,
                                const ps_bf16 *inp, const ps_bf16 *weight, const float *rstd,
                                int64_t N, int64_t C);
  void (*gelu_forward_bf16)(ps_bf16 *out, const ps_bf16 *inp, int64_t n);
  void (*gelu_backward_bf16)(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n);
  void (*silu_forward_bf16)(ps_bf16 *out, const ps_bf16 *inp, int64_t n);
  void (*silu_backward_bf16)(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n);
  void (*swiglu_forward_bf16)(ps_bf16 *out, const ps_bf16 *gate, const ps_bf16 *up, int64_t N,
                              int64_t C, int64_t ld);
  void (*swiglu_backward_bf16)(ps_bf16 *dgate, ps_bf16 *dup, const ps_bf16 *dout,
                               const ps_bf16 *gate, const ps_bf16 *up, int64_t N, int64_t C,
                               int64_t ld);
  void (*softmax_forward_bf16)(ps_bf16 *out, const ps_bf16 *inp, int64_t N, int64_t C);
  void (*softmax_backward_bf16)(ps_bf16 *dinp, const ps_bf16 *dout, const ps_bf16 *out, int64_t N,
                                int64_t C);
  /* Attention: q, k, v, out, dout, dq, dk, dv are bf16 with the strides of
   * ps_attention_desc (in elements); lse is f32. Backward sums dk and dv over
   * query rows (and GQA heads) in f32 scratch, so it needs
   * attention_scratch_bf16(d, 1) floats; given less it writes nothing. */
  int64_t (*attention_scratch_bf16)(const ps_attention_desc *d, int backward);
  void (*attention_forward_bf16)(ps_bf16 *out, float *lse, const ps_bf16 *q, const ps_bf16 *k,
                                 const ps_bf16 *v, const ps_attention_desc *d, float *scratch,
                                 int64_t scratch_floats);
  void (*attention_backward_bf16)(ps_bf16 *dq, ps_bf16 *dk, ps_bf16 *dv, float *dbias,
                                  float *drel_h, float *drel_w, const ps_bf16 *dout,
                                  const ps_bf16 *q, const ps_bf16 *k, const ps_bf16 *v,
                                  const ps_bf16 *out, const float *lse,
                                  const ps_attention_desc *d, float *scratch,
                                  int64_t scratch_floats);
  void (*rope_forward_bf16)(ps_bf16 *out, const ps_bf16 *inp, const int32_t *pos,
                            const ps_rope_desc *d);
  void (*rope_backward_bf16)(ps_bf16 *dinp, const ps_bf16 *dout, const int32_t *pos,
                             const ps_rope_desc *d);
  void (*embedding_forward_bf16)(ps_bf16 *out, const int32_t *ids, const ps_bf16 *table,
                                 int64_t N, int64_t V, int64_t C);
  void (*embedding_backward_bf16)(float *dtable, const int32_t *ids, const ps_bf16 *dout,
                                  int64_t N, int64_t V, int64_t C);
  float (*crossentropy_bf16)(ps_bf16 *dlogits, float *row_loss, const ps_bf16 *logits,
                             const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                             float denom, float dloss);

  /* ---- memory (ABI 1.2; every table) ----------------------------------------
   * Where this device's tensors live: ps_tensor_new_on() and the components
   * allocate parameters, activations and gradients with these, so one code
   * path serves the CPU (malloc, memcpy) and CUDA (cudaMalloc, cudaMemcpy).
   * Copies are synchronous: when one returns, every kernel queued before it
   * has finished and dst holds the bytes. */
  /* Zero-filled, aligned for any element type; NULL when out of memory. */
  void *(*mem_alloc)(size_t bytes);
  void (*mem_free)(void *p); /* NULL: nothing */
  void (*copy_to_device)(void *dst, const void *host_src, size_t bytes);
  void (*copy_to_host)(void *host_dst, const void *src, size_t bytes);
  void (*copy_on_device)(void *dst, const void *src, size_t bytes); /* not overlapping */
  void (*mem_zero)(void *p, size_t bytes);

  /* ---- layout (ABI 1.2; every table) ---------------------------------------- */

  /* dst[r * ldd + c] = src[r * lds + c] for r < rows, c < cols (accumulate:
   * +=): a block copy between row-strided matrices, for concatenating,
   * slicing and splitting token blocks. dst and src do not overlap. */
  void (*copy_2d)(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                  int64_t cols, int accumulate);
  /* out[n, c] = inp[n, c] + row[c]: out, inp: (N, C); row: (C) broadcast over
   * the N rows (positional embeddings, per-channel offsets). In place allowed. */
  void (*add_rows)(float *out, const float *inp, const float *row, int64_t N, int64_t C);
  /* drow[c] += sum_n dout[n, c] (add_rows' gradient for row). dout: (N, C);
   * drow: (C). Summed in n order. */
  void (*sum_rows)(float *drow, const float *dout, int64_t N, int64_t C);

  /* Hard overlap counts of masks (Dice/IoU metrics): for mask m of M,
   * counts[3m] = #(logits > 0), counts[3m + 1] = #(targets > 0.5) and
   * counts[3m + 2] = #(both), over its P pixels. counts: (M, 3) int64;
   * logits, targets: (M, P). */
  void (*mask_counts)(int64_t *counts, const float *logits, const float *targets, int64_t M,
                      int64_t P);

  /* ---- optimizer (ABI 1.2; every table) ------------------------------------- */

  /* sum_i x[i]^2, summed in double in an order fixed for a given thread count;
   * the result is returned to the host. x: (n). */
  double (*sum_squares)(const float *x, int64_t n);
  /* The index of the first element of x: (n) that is NaN or infinite, or -1. */
  int64_t (*find_nonfinite)(const float *x, int64_t n);
  /* One AdamW step (decoupled weight decay, bias correction), in float:
   *   g = grad * clip; m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g g;
   *   p -= wd * p; p -= step_size * m / (sqrt(v) * inv_sqrt_c2 + eps)
   * where the caller passes wd = lr * weight_decay (0: no decay), step_size =
   * lr / (1 - b1^t) and inv_sqrt_c2 = 1 / sqrt(1 - b2^t). p, grad, m, v: (n).
   * p_bf16: (n) or NULL: receives the updated p rounded to bf16 (the compute
   * copy of f32 master weights). */
  void (*adamw_step)(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16, int64_t n,
                     float clip, float beta1, float beta2, float wd, float step_size,
                     float inv_sqrt_c2, float eps);
  /* out[i] = bf16(inp[i]) rounded to nearest even; out[i] = float(inp[i]). (n) */
  void (*to_bf16)(ps_bf16 *out, const float *inp, int64_t n);
  void (*from_bf16)(float *out, const ps_bf16 *inp, int64_t n);
} ps_kernels;

/* Number of windows per dimension for window partition. */
static inline int64_t ps_windows_per_dim(int64_t size, int64_t ws) {
  return (size + ws - 1) / ws;
}

/* The table for `device`; NULL with an error when the device's kernels cannot
 * be loaded (no CUDA build, no driver). */
const ps_kernels *ps_kernels_get(ps_device device, GError **error);

/* Compute precision of a run (the pipeline's `precision:`).
 * PS_PRECISION_BF16 is mixed precision in the manner of torch.autocast: the
 * parameters (master weights), activations, gradients and optimizer state
 * stay f32 and every op keeps its f32 contract, but the table's linear
 * products (linear_forward / linear_backward) round their operands to bf16
 * and multiply on the GPU's bf16 tensor cores with f32 accumulation and f32
 * results (a bf16 x bf16 product is exact in f32, so the result is the f32
 * product of the rounded operands up to summation order). The bias and its
 * gradient stay f32. Only CUDA has it. */
typedef enum { PS_PRECISION_F32 = 0, PS_PRECISION_BF16 = 1 } ps_precision;

/* The table for `device` computing at `precision`; NULL with an error when
 * the combination is not available (bf16 on the CPU). */
const ps_kernels *ps_kernels_get_precision(ps_device device, ps_precision precision,
                                           GError **error);

G_END_DECLS
