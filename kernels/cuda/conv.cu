/* conv.cu — 2-D convolution (NCHW, im2col + cuBLAS SGEMM per image) and SAM's
 * 2x2 stride-2 transposed convolution (one SGEMM per image + pixel shuffle),
 * forward and backward, mirroring kernels/cpu/conv.c. The im2col / shuffle
 * matrix lives in caller-provided device scratch (same sizes as the CPU's);
 * with too little scratch the op does nothing, as on the CPU. col2im is a
 * gather (one writer per input pixel) so backward is deterministic.
 * With cuDNN configured (PS_HAVE_CUDNN), conv2d first offers the call to
 * conv_cudnn.cu (same scratch, same contract) and runs these kernels only
 * when cuDNN declines it. */
#include "common.cuh"
#include "conv_cudnn.cuh"
#include "ops.cuh"

static int64_t conv_oh(const ps_conv2d_desc *d) { return (d->H + 2 * d->pad - d->KH) / d->stride + 1; }
static int64_t conv_ow(const ps_conv2d_desc *d) { return (d->W + 2 * d->pad - d->KW) / d->stride + 1; }
static bool pointwise(const ps_conv2d_desc *d) {
  return d->KH == 1 && d->KW == 1 && d->stride == 1 && d->pad == 0;
}

/* col: (C*KH*KW, OH*OW) from x: (C, H, W). */
__global__ static void im2col_k(float *col, const float *x, ps_conv2d_desc d, int64_t OH,
                                int64_t OW) {
  int64_t P = OH * OW;
  PS_GRID_STRIDE(i, d.C * d.KH * d.KW * P) {
    int64_t p = i % P, r = i / P, ox = p % OW, oy = p / OW;
    int64_t c = r / (d.KH * d.KW), ky = (r / d.KW) % d.KH, kx = r % d.KW;
    int64_t iy = oy * d.stride - d.pad + ky, ix = ox * d.stride - d.pad + kx;
    col[i] = iy >= 0 && iy < d.H && ix >= 0 && ix < d.W ? x[(c * d.H + iy) * d.W + ix] : 0.0f;
  }
}

/* x: (C, H, W) += col2im(col): each input pixel gathers its taps. */
__global__ static void col2im_k(float *x, const float *col, ps_conv2d_desc d, int64_t OH,
                                int64_t OW) {
  int64_t P = OH * OW;
  PS_GRID_STRIDE(i, d.C * d.H * d.W) {
    int64_t ix = i % d.W, iy = (i / d.W) % d.H, c = i / (d.W * d.H);
    float s = 0.0f;
    for (int64_t ky = 0; ky < d.KH; ky++) {
      int64_t ty = iy + d.pad - ky;
      if (ty < 0 || ty % d.stride) continue;
      int64_t oy = ty / d.stride;
      if (oy >= OH) continue;
      for (int64_t kx = 0; kx < d.KW; kx++) {
        int64_t tx = ix + d.pad - kx;
        if (tx < 0 || tx % d.stride) continue;
        int64_t ox = tx / d.stride;
        if (ox >= OW) continue;
        s += col[((c * d.KH + ky) * d.KW + kx) * P + oy * OW + ox];
      }
    }
    x[i] += s;
  }
}

/* out: (OC, P) = bias[o] */
__global__ static void bias_planes(float *out, const float *bias, int64_t OC, int64_t P) {
  PS_GRID_STRIDE(i, OC * P) out[i] = bias[i / P];
}

/* dbias[o] += sum over batches and the o-th plane (of `group` consecutive planes). */
__global__ static void plane_sums(float *dbias, const float *g, int64_t B, int64_t OC,
                                  int64_t P) {
  __shared__ float red[32];
  int64_t o = blockIdx.x;
  float s = 0.0f;
  for (int64_t b = 0; b < B; b++)
    for (int64_t p = threadIdx.x; p < P; p += blockDim.x) s += g[(b * OC + o) * P + p];
  s = ps_block_sum(s, red);
  if (threadIdx.x == 0) dbias[o] += s;
}

int64_t ps_cuda_conv2d_scratch(const ps_conv2d_desc *d) {
  return pointwise(d) ? 0 : d->C * d->KH * d->KW * conv_oh(d) * conv_ow(d);
}

void ps_cuda_conv2d_forward(float *out, const float *inp, const float *weight, const float *bias,
                            const ps_conv2d_desc *d, float *scratch, int64_t scratch_floats) {
  /* out: (B, OC, OH, OW); inp: (B, C, H, W); weight: (OC, C, KH, KW); bias: (OC) or NULL */
  int64_t OH = conv_oh(d), OW = conv_ow(d), P = OH * OW, K = d->C * d->KH * d->KW;
  if (OH <= 0 || OW <= 0 || d->OC <= 0 || d->B <= 0) return;
  bool pw = pointwise(d);
  if (!pw && scratch_floats < K * P) return;
#ifdef PS_HAVE_CUDNN
  if (ps_cudnn_conv2d_forward(out, inp, weight, bias, d, scratch, scratch_floats)) return;
#endif
  for (int64_t b = 0; b < d->B; b++) {
    float *ob = out + b * d->OC * P;
    const float *xb = inp + b * d->C * d->H * d->W, *colb = xb;
    if (bias) {
      bias_planes<<<ps_blocks(d->OC * P), PS_THREADS>>>(ob, bias, d->OC, P);
      PS_CUDA_LAUNCHED();
    }
    if (!pw) {
      im2col_k<<<ps_blocks(K * P), PS_THREADS>>>(scratch, xb, *d, OH, OW);
      PS_CUDA_LAUNCHED();
      colb = scratch;
    }
    /* ob (OC, P) = W (OC, K) @ col (K, P) */
    ps_cuda_run_plan(ps_gemm_rowmajor(0, 0, d->OC, P, K, K, P, P, bias ? 1.0f : 0.0f), weight,
                     colb, ob, NULL);
  }
}

void ps_cuda_conv2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                             const float *inp, const float *weight, const ps_conv2d_desc *d,
                             float *scratch, int64_t scratch_floats) {
  /* dinp: (B, C, H, W); dweight: (OC, C, KH, KW); dbias: (OC); dout: (B, OC, OH, OW) */
  int64_t OH = conv_oh(d), OW = conv_ow(d), P = OH * OW, K = d->C * d->KH * d->KW;
  if (OH <= 0 || OW <= 0 || d->OC <= 0 || d->B <= 0) return;
  bool pw = pointwise(d);
  if (!pw && scratch_floats < K * P) return;
#ifdef PS_HAVE_CUDNN
  if (ps_cudnn_conv2d_backward(dinp, dweight, dbias, dout, inp, weight, d, scratch,
                               scratch_floats))
    return;
#endif
  if (dbias) {
    plane_sums<<<(unsigned)d->OC, PS_THREADS>>>(dbias, dout, d->B, d->OC, P);
    PS_CUDA_LAUNCHED();
  }
  for (int64_t b = 0; b < d->B; b++) {
    const float *gb = dout + b * d->OC * P, *xb = inp + b * d->C * d->H * d->W;
    if (dweight) {
      const float *colb = xb;
      if (!pw) {
        im2col_k<<<ps_blocks(K * P), PS_THREADS>>>(scratch, xb, *d, OH, OW);
        PS_CUDA_LAUNCHED();
        colb = scratch;
      }
      /* dW (OC, K) += dout_b (OC, P) @ col^T */
      ps_cuda_run_plan(ps_gemm_rowmajor(0, 1, d->OC, K, P, P, P, K, 1.0f), gb, colb, dweight, NULL);
    }
    if (dinp) {
      float *dxb = dinp + b * d->C * d->H * d->W;
      if (pw) {
        ps_cuda_run_plan(ps_gemm_rowmajor(1, 0, K, P, d->OC, K, P, P, 1.0f), weight, gb, dxb, NULL);
      } else {
        /* dcol (K, P) = W^T @ dout_b, then gather back into the image */
        ps_cuda_run_plan(ps_gemm_rowmajor(1, 0, K, P, d->OC, K, P, P, 0.0f), weight, gb, scratch,
                         NULL);
        col2im_k<<<ps_blocks(d->C * d->H * d->W), PS_THREADS>>>(dxb, scratch, *d, OH, OW);
        PS_CUDA_LAUNCHED();
      }
    }
  }
}

/* ---- ConvTranspose 2x2 stride 2 ---- */

/* out[o, 2i+a, 2j+c] = Y[o*4 + a*2 + c, i*W + j] + bias[o] (to_out) or the reverse gather. */
__global__ static void shuffle_k(float *out, float *Y, const float *bias, int64_t OC, int64_t H,
                                 int64_t W, int to_out) {
  int64_t P = H * W;
  PS_GRID_STRIDE(i, OC * 4 * P) {
    int64_t ox = i % (2 * W), oy = (i / (2 * W)) % (2 * H), o = i / (4 * P);
    int64_t a = oy & 1, c = ox & 1, y = ((o * 4 + a * 2 + c) * P) + (oy >> 1) * W + (ox >> 1);
    if (to_out) out[i] = Y[y] + (bias ? bias[o] : 0.0f);
    else Y[y] = out[i];
  }
}

int64_t ps_cuda_convt2x2_scratch(int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC) {
  return 4 * OC * H * W;
}

void ps_cuda_convt2x2_forward(float *out, const float *inp, const float *weight, const float *bias,
                              int64_t B, int64_t C, int64_t H, int64_t W, int64_t OC,
                              float *scratch, int64_t scratch_floats) {
  /* out: (B, OC, 2H, 2W); inp: (B, C, H, W); weight: (C, OC, 2, 2); bias: (OC) or NULL */
  int64_t P = H * W;
  if (scratch_floats < 4 * OC * P || P == 0 || OC <= 0) return;
  for (int64_t b = 0; b < B; b++) {
    /* Y (4OC, P) = W^T (4OC, C) @ x_b (C, P) */
    ps_cuda_run_plan(ps_gemm_rowmajor(1, 0, 4 * OC, P, C, 4 * OC, P, P, 0.0f), weight,
                     inp + b * C * P, scratch, NULL);
    shuffle_k<<<ps_blocks(4 * OC * P), PS_THREADS>>>(out + b * OC * 4 * P, scratch, bias, OC, H, W,
                                                    1);
    PS_CUDA_LAUNCHED();
  }
}

void ps_cuda_convt2x2_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                               const float *inp, const float *weight, int64_t B, int64_t C,
                               int64_t H, int64_t W, int64_t OC, float *scratch,
                               int64_t scratch_floats) {
  /* dinp: (B, C, H, W); dweight: (C, OC, 2, 2); dbias: (OC); dout: (B, OC, 2H, 2W) */
  int64_t P = H * W;
  if (scratch_floats < 4 * OC * P || P == 0 || OC <= 0) return;
  if (dbias) {
    plane_sums<<<(unsigned)OC, PS_THREADS>>>(dbias, dout, B, OC, 4 * P);
    PS_CUDA_LAUNCHED();
  }
  for (int64_t b = 0; b < B; b++) {
    shuffle_k<<<ps_blocks(4 * OC * P), PS_THREADS>>>((float *)dout + b * OC * 4 * P, scratch, NULL,
                                                    OC, H, W, 0);
    PS_CUDA_LAUNCHED();
    if (dinp) /* dx_b (C, P) += W (C, 4OC) @ dY (4OC, P) */
      ps_cuda_run_plan(ps_gemm_rowmajor(0, 0, C, P, 4 * OC, 4 * OC, P, P, 1.0f), weight, scratch,
                       dinp + b * C * P, NULL);
    if (dweight) /* dW (C, 4OC) += x_b (C, P) @ dY^T */
      ps_cuda_run_plan(ps_gemm_rowmajor(0, 1, C, 4 * OC, P, P, P, 4 * OC, 1.0f), inp + b * C * P,
                       scratch, dweight, NULL);
  }
}
