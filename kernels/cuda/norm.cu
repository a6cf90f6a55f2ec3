/* norm.cu — LayerNorm (last dim), SAM's LayerNorm2d (channels of NCHW) and
 * RMSNorm on the GPU, forward and backward, as in kernels/cpu/norm.c.
 * Row statistics use one warp per row (two passes over the row: mean, then
 * the centred variance, as the CPU does for rows with a large mean); weight
 * and bias gradients are deterministic column sums (no atomics). */
#include "common.cuh"
#include "ops.cuh"

static const int ROWS_PER_BLOCK = 8; /* warps per block, one row each */

static unsigned row_blocks(int64_t N) { return (unsigned)((N + ROWS_PER_BLOCK - 1) / ROWS_PER_BLOCK); }

/* ---- LayerNorm (templates over the storage type T: f32 and bf16 entries) ---- */

template <typename T>
__global__ static void layernorm_fwd(T *out, float *mean, float *rstd, const T *inp,
                                     const T *weight, const T *bias, int64_t N, int64_t C,
                                     float eps) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
  if (r >= N) return;
  int lane = threadIdx.x;
  const T *x = inp + r * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += ps_ld(x[c]);
  float m = ps_warp_sum(s) / (float)C;
  float v = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float d = ps_ld(x[c]) - m;
    v += d * d;
  }
  float rs = rsqrtf(ps_warp_sum(v) / (float)C + eps);
  T *y = out + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    float n = (ps_ld(x[c]) - m) * rs;
    y[c] = ps_st<T>(n * (weight ? ps_ld(weight[c]) : 1.0f) + (bias ? ps_ld(bias[c]) : 0.0f));
  }
  if (lane == 0) {
    if (mean) mean[r] = m;
    if (rstd) rstd[r] = rs;
  }
}

template <typename T>
__global__ static void layernorm_bwd_dinp(T *dinp, const T *dout, const T *inp, const T *weight,
                                          const float *mean, const float *rstd, int64_t N,
                                          int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
  if (r >= N) return;
  int lane = threadIdx.x;
  const T *x = inp + r * C, *dy = dout + r * C;
  float m = mean[r], rs = rstd[r];
  float sg = 0.0f, sgx = 0.0f;
  for (int64_t c = lane; c < C; c += 32) {
    float g = ps_ld(dy[c]) * (weight ? ps_ld(weight[c]) : 1.0f);
    sg += g;
    sgx += g * (ps_ld(x[c]) - m) * rs;
  }
  float mg = ps_warp_sum(sg) / (float)C, mgx = ps_warp_sum(sgx) / (float)C;
  T *dx = dinp + r * C;
  for (int64_t c = lane; c < C; c += 32) {
    float g = ps_ld(dy[c]) * (weight ? ps_ld(weight[c]) : 1.0f);
    ps_acc(&dx[c], rs * (g - mg - (ps_ld(x[c]) - m) * rs * mgx));
  }
}

template <typename T>
static void layernorm_forward(T *out, float *mean, float *rstd, const T *inp, const T *weight,
                              const T *bias, int64_t N, int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  layernorm_fwd<T><<<row_blocks(N), dim3(32, ROWS_PER_BLOCK)>>>(out, mean, rstd, inp, weight,
                                                               bias, N, C, eps);
  PS_CUDA_LAUNCHED();
}

template <typename T>
static void layernorm_backward(T *dinp, float *dweight, float *dbias, const T *dout,
                               const T *inp, const T *weight, const float *mean,
                               const float *rstd, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (dinp) {
    layernorm_bwd_dinp<T><<<row_blocks(N), dim3(32, ROWS_PER_BLOCK)>>>(dinp, dout, inp, weight,
                                                                      mean, rstd, N, C);
    PS_CUDA_LAUNCHED();
  }
  if (dweight)
    ps_colsum(dweight, N, C, [=] __device__(int64_t r, int64_t c) {
      return ps_ld(dout[r * C + c]) * (ps_ld(inp[r * C + c]) - mean[r]) * rstd[r];
    });
  if (dbias)
    ps_colsum(dbias, N, C, [=] __device__(int64_t r, int64_t c) { return ps_ld(dout[r * C + c]); });
}

void ps_cuda_layernorm_forward(float *out, float *mean, float *rstd, const float *inp,
                               const float *weight, const float *bias, int64_t N, int64_t C,
                               float eps) {
  /* out, inp: (N, C); mean, rstd: (N) or NULL; weight, bias: (C) or NULL */
  layernorm_forward(out, mean, rstd, inp, weight, bias, N, C, eps);
}

void ps_cuda_layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                const float *inp, const float *weight, const float *mean,
                                const float *rstd, int64_t N, int64_t C) {
  /* dinp: (N, C); dweight, dbias: (C); dout, inp: (N, C); mean, rstd: (N) */
  layernorm_backward(dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C);
}

void ps_cuda_layernorm_forward_bf16(ps_bf16 *out, float *mean, float *rstd, const ps_bf16 *inp,
                                    const ps_bf16 *weight, const ps_bf16 *bias, int64_t N,
                                    int64_t C, float eps) {
  /* out, inp: (N, C) bf16; mean, rstd: (N) f32 or NULL; weight, bias: (C) bf16 or NULL */
  layernorm_forward(ps_bf(out), mean, rstd, ps_bf(inp), ps_bf(weight), ps_bf(bias), N, C, eps);
}

void ps_cuda_layernorm_backward_bf16(ps_bf16 *dinp, float *dweight, float *dbias,
                                     const ps_bf16 *dout, const ps_bf16 *inp,
                                     const ps_bf16 *weight, const float *mean, const float *rstd,
                                     int64_t N, int64_t C) {
  /* dinp, dout, inp: (N, C) bf16; dweight, dbias: (C) f32; mean, rstd: (N) f32 */
  layernorm_backward(ps_bf(dinp), dweight, dbias, ps_bf(dout), ps_bf(inp), ps_bf(weight), mean,
                     rstd, N, C);
}

/* ---- LayerNorm2d: (B, C, HW), normalise over C at each pixel ----
 * One thread per (b, p): reads down the channel column, coalesced across p. */

__global__ static void layernorm2d_fwd(float *out, float *mean, float *rstd, const float *inp,
                                       const float *weight, const float *bias, int64_t B,
                                       int64_t C, int64_t HW, float eps) {
  PS_GRID_STRIDE(i, B * HW) {
    int64_t b = i / HW, p = i % HW;
    const float *x = inp + b * C * HW + p;
    float s = 0.0f;
    for (int64_t c = 0; c < C; c++) s += x[c * HW];
    float m = s / (float)C, v = 0.0f;
    for (int64_t c = 0; c < C; c++) {
      float d = x[c * HW] - m;
      v += d * d;
    }
    float rs = rsqrtf(v / (float)C + eps);
    float *y = out + b * C * HW + p;
    for (int64_t c = 0; c < C; c++)
      y[c * HW] = (x[c * HW] - m) * rs * (weight ? weight[c] : 1.0f) + (bias ? bias[c] : 0.0f);
    if (mean) mean[i] = m;
    if (rstd) rstd[i] = rs;
  }
}

__global__ static void layernorm2d_bwd_dinp(float *dinp, const float *dout, const float *inp,
                                            const float *weight, const float *mean,
                                            const float *rstd, int64_t B, int64_t C, int64_t HW) {
  PS_GRID_STRIDE(i, B * HW) {
    int64_t b = i / HW, p = i % HW, off = b * C * HW + p;
    float m = mean[i], rs = rstd[i], sg = 0.0f, sgx = 0.0f;
    for (int64_t c = 0; c < C; c++) {
      float g = dout[off + c * HW] * (weight ? weight[c] : 1.0f);
      sg += g;
      sgx += g * (inp[off + c * HW] - m) * rs;
    }
    float mg = sg / (float)C, mgx = sgx / (float)C;
    for (int64_t c = 0; c < C; c++) {
      float g = dout[off + c * HW] * (weight ? weight[c] : 1.0f);
      dinp[off + c * HW] += rs * (g - mg - (inp[off + c * HW] - m) * rs * mgx);
    }
  }
}

/* dweight[c] += sum_{b,p} dout * xhat; dbias[c] += sum_{b,p} dout: one block per channel. */
__global__ static void layernorm2d_bwd_params(float *dweight, float *dbias, const float *dout,
                                              const float *inp, const float *mean,
                                              const float *rstd, int64_t B, int64_t C,
                                              int64_t HW) {
  __shared__ float shared[32];
  int64_t c = blockIdx.x;
  float sw = 0.0f, sb = 0.0f;
  for (int64_t i = threadIdx.x; i < B * HW; i += blockDim.x) {
    int64_t b = i / HW, p = i % HW, j = (b * C + c) * HW + p;
    float d = dout[j];
    sb += d;
    sw += d * (inp[j] - mean[i]) * rstd[i];
  }
  sw = ps_block_sum(sw, shared);
  sb = ps_block_sum(sb, shared);
  if (threadIdx.x == 0) {
    if (dweight) dweight[c] += sw;
    if (dbias) dbias[c] += sb;
  }
}

void ps_cuda_layernorm2d_forward(float *out, float *mean, float *rstd, const float *inp,
                                 const float *weight, const float *bias, int64_t B, int64_t C,
                                 int64_t HW, float eps) {
  /* out, inp: (B, C, HW); mean, rstd: (B, HW) or NULL; weight, bias: (C) or NULL */
  if (B * HW <= 0 || C <= 0) return;
  layernorm2d_fwd<<<ps_blocks(B * HW), PS_THREADS>>>(out, mean, rstd, inp, weight, bias, B, C, HW,
                                                     eps);
  PS_CUDA_LAUNCHED();
}

void ps_cuda_layernorm2d_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, const float *mean,
                                  const float *rstd, int64_t B, int64_t C, int64_t HW) {
  /* dinp, dout, inp: (B, C, HW); dweight, dbias: (C); mean, rstd: (B, HW) */
  if (B * HW <= 0 || C <= 0) return;
  if (dinp) {
    layernorm2d_bwd_dinp<<<ps_blocks(B * HW), PS_THREADS>>>(dinp, dout, inp, weight, mean, rstd, B,
                                                           C, HW);
    PS_CUDA_LAUNCHED();
  }
  if (dweight || dbias) {
    layernorm2d_bwd_params<<<(unsigned)C, PS_THREADS>>>(dweight, dbias, dout, inp, mean, rstd, B,
                                                        C, HW);
    PS_CUDA_LAUNCHED();
  }
}

/* ---- RMSNorm: y = w * x * r, r = rsqrt(mean(x^2) + eps) ----
 * dx_j += r w_j dy_j - x_j r^3 / C * sum_i w_i dy_i x_i. Templates over T. */

template <typename T>
__global__ static void rmsnorm_fwd(T *out, float *rstd, const T *inp, const T *weight, int64_t N,
                                   int64_t C, float eps) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
  if (r >= N) return;
  int lane = threadIdx.x;
  const T *x = inp + r * C;
  float s = 0.0f;
  for (int64_t c = lane; c < C; c += 32) s += ps_ld(x[c]) * ps_ld(x[c]);
  float rs = rsqrtf(ps_warp_sum(s) / (float)C + eps);
  T *y = out + r * C;
  for (int64_t c = lane; c < C; c += 32)
    y[c] = ps_st<T>(ps_ld(x[c]) * rs * (weight ? ps_ld(weight[c]) : 1.0f));
  if (lane == 0 && rstd) rstd[r] = rs;
}

template <typename T>
__global__ static void rmsnorm_bwd_dinp(T *dinp, const T *dout, const T *inp, const T *weight,
                                        const float *rstd, int64_t N, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS_PER_BLOCK + threadIdx.y;
  if (r >= N) return;
  int lane = threadIdx.x;
  const T *x = inp + r * C, *dy = dout + r * C;
  float rs = rstd[r], s = 0.0f;
  for (int64_t c = lane; c < C; c += 32)
    s += ps_ld(dy[c]) * (weight ? ps_ld(weight[c]) : 1.0f) * ps_ld(x[c]);
  float k = ps_warp_sum(s) * rs * rs * rs / (float)C;
  T *dx = dinp + r * C;
  for (int64_t c = lane; c < C; c += 32)
    ps_acc(&dx[c], rs * ps_ld(dy[c]) * (weight ? ps_ld(weight[c]) : 1.0f) - ps_ld(x[c]) * k);
}

template <typename T>
static void rmsnorm_forward(T *out, float *rstd, const T *inp, const T *weight, int64_t N,
                            int64_t C, float eps) {
  if (N <= 0 || C <= 0) return;
  rmsnorm_fwd<T><<<row_blocks(N), dim3(32, ROWS_PER_BLOCK)>>>(out, rstd, inp, weight, N, C, eps);
  PS_CUDA_LAUNCHED();
}

template <typename T>
static void rmsnorm_backward(T *dinp, float *dweight, const T *dout, const T *inp,
                             const T *weight, const float *rstd, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (dinp) {
    rmsnorm_bwd_dinp<T><<<row_blocks(N), dim3(32, ROWS_PER_BLOCK)>>>(dinp, dout, inp, weight,
                                                                    rstd, N, C);
    PS_CUDA_LAUNCHED();
  }
  if (dweight)
    ps_colsum(dweight, N, C, [=] __device__(int64_t r, int64_t c) {
      return ps_ld(dout[r * C + c]) * ps_ld(inp[r * C + c]) * rstd[r];
    });
}

void ps_cuda_rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight,
                             int64_t N, int64_t C, float eps) {
  /* out, inp: (N, C); rstd: (N) or NULL; weight: (C) or NULL */
  rmsnorm_forward(out, rstd, inp, weight, N, C, eps);
}

void ps_cuda_rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                              const float *weight, const float *rstd, int64_t N, int64_t C) {
  /* dinp: (N, C); dweight: (C); dout, inp: (N, C); rstd: (N) */
  rmsnorm_backward(dinp, dweight, dout, inp, weight, rstd, N, C);
}

void ps_cuda_rmsnorm_forward_bf16(ps_bf16 *out, float *rstd, const ps_bf16 *inp,
                                  const ps_bf16 *weight, int64_t N, int64_t C, float eps) {
  /* out, inp: (N, C) bf16; rstd: (N) f32 or NULL; weight: (C) bf16 or NULL */
  rmsnorm_forward(ps_bf(out), rstd, ps_bf(inp), ps_bf(weight), N, C, eps);
}

void ps_cuda_rmsnorm_backward_bf16(ps_bf16 *dinp, float *dweight, const ps_bf16 *dout,
                                   const ps_bf16 *inp, const ps_bf16 *weight, const float *rstd,
                                   int64_t N, int64_t C) {
  /* dinp, dout, inp: (N, C) bf16; dweight: (C) f32; rstd: (N) f32 */
  rmsnorm_backward(ps_bf(dinp), dweight, ps_bf(dout), ps_bf(inp), ps_bf(weight), rstd, N, C);
}
