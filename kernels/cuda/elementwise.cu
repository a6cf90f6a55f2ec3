/* elementwise.cu — activations (GELU erf, ReLU, SiLU, SwiGLU), LayerScale,
 * add / mul / axpy / scale / fill and the batched 2-D transpose on the GPU.
 * Same formulas as kernels/cpu/activation.c and elementwise.c; forwards may
 * run in place, backwards add into their gradients. */
#include "common.cuh"
#include "ops.cuh"

#define LAUNCH(kernel, n, ...)                                   \
  do {                                                           \
    if ((n) > 0) {                                               \
      kernel<<<ps_blocks(n), PS_THREADS>>>(__VA_ARGS__);         \
      PS_CUDA_LAUNCHED();                                        \
    }                                                            \
  } while (0)

__device__ __forceinline__ float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

/* ---- GELU (exact): x * Phi(x), Phi(x) = 0.5 erfc(-x / sqrt 2) ----
 * GELU, SiLU and SwiGLU are templates over the storage type T (f32 and bf16
 * entries; f32 arithmetic either way). */

template <typename T> __global__ static void gelu_fwd(T *out, const T *inp, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    float x = ps_ld(inp[i]);
    out[i] = ps_st<T>(0.5f * x * erfcf(-x * 0.70710678118654752f));
  }
}
template <typename T>
__global__ static void gelu_bwd(T *dinp, const T *inp, const T *dout, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    float x = ps_ld(inp[i]);
    float cdf = 0.5f * erfcf(-x * 0.70710678118654752f);
    float pdf = 0.39894228040143268f * expf(-0.5f * x * x);
    ps_acc(&dinp[i], (cdf + x * pdf) * ps_ld(dout[i]));
  }
}
void ps_cuda_gelu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
  LAUNCH(gelu_fwd<float>, n, out, inp, n);
}
void ps_cuda_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp, inp, dout: (n) */
  LAUNCH(gelu_bwd<float>, n, dinp, inp, dout, n);
}
void ps_cuda_gelu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n) {
  /* out, inp: (n) bf16 */
  LAUNCH(gelu_fwd<ps_cuda_bf16>, n, ps_bf(out), ps_bf(inp), n);
}
void ps_cuda_gelu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n) {
  /* dinp, inp, dout: (n) bf16 */
  LAUNCH(gelu_bwd<ps_cuda_bf16>, n, ps_bf(dinp), ps_bf(inp), ps_bf(dout), n);
}

/* ---- ReLU ---- */

__global__ static void relu_fwd(float *out, const float *inp, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}
__global__ static void relu_bwd(float *dinp, const float *inp, const float *dout, int64_t n) {
  PS_GRID_STRIDE(i, n) dinp[i] += inp[i] > 0.0f ? dout[i] : 0.0f;
}
void ps_cuda_relu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
  LAUNCH(relu_fwd, n, out, inp, n);
}
void ps_cuda_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp, inp, dout: (n) */
  LAUNCH(relu_bwd, n, dinp, inp, dout, n);
}

/* ---- SiLU: x sigmoid(x); d/dx = s (1 + x (1 - s)) ---- */

template <typename T> __global__ static void silu_fwd(T *out, const T *inp, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    float x = ps_ld(inp[i]);
    out[i] = ps_st<T>(x * sigmoidf_(x));
  }
}
template <typename T>
__global__ static void silu_bwd(T *dinp, const T *inp, const T *dout, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    float x = ps_ld(inp[i]), s = sigmoidf_(x);
    ps_acc(&dinp[i], s * (1.0f + x * (1.0f - s)) * ps_ld(dout[i]));
  }
}
void ps_cuda_silu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
  LAUNCH(silu_fwd<float>, n, out, inp, n);
}
void ps_cuda_silu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp, inp, dout: (n) */
  LAUNCH(silu_bwd<float>, n, dinp, inp, dout, n);
}
void ps_cuda_silu_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t n) {
  /* out, inp: (n) bf16 */
  LAUNCH(silu_fwd<ps_cuda_bf16>, n, ps_bf(out), ps_bf(inp), n);
}
void ps_cuda_silu_backward_bf16(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout, int64_t n) {
  /* dinp, inp, dout: (n) bf16 */
  LAUNCH(silu_bwd<ps_cuda_bf16>, n, ps_bf(dinp), ps_bf(inp), ps_bf(dout), n);
}

/* ---- SwiGLU: out = silu(gate) * up, rows of stride ld ---- */

template <typename T>
__global__ static void swiglu_fwd(T *out, const T *gate, const T *up, int64_t N, int64_t C,
                                  int64_t ld) {
  PS_GRID_STRIDE(i, N * C) {
    int64_t r = i / C, c = i % C;
    float g = ps_ld(gate[r * ld + c]);
    out[i] = ps_st<T>(g * sigmoidf_(g) * ps_ld(up[r * ld + c]));
  }
}
template <typename T>
__global__ static void swiglu_bwd(T *dgate, T *dup, const T *dout, const T *gate, const T *up,
                                  int64_t N, int64_t C, int64_t ld) {
  PS_GRID_STRIDE(i, N * C) {
    int64_t r = i / C, c = i % C, j = r * ld + c;
    float g = ps_ld(gate[j]), s = sigmoidf_(g), d = ps_ld(dout[i]);
    if (dgate) ps_acc(&dgate[j], d * ps_ld(up[j]) * s * (1.0f + g * (1.0f - s)));
    if (dup) ps_acc(&dup[j], d * g * s);
  }
}
template <typename T>
static void swiglu_forward(T *out, const T *gate, const T *up, int64_t N, int64_t C, int64_t ld) {
  if (ld == 0) ld = C;
  LAUNCH(swiglu_fwd<T>, N * C, out, gate, up, N, C, ld);
}
template <typename T>
static void swiglu_backward(T *dgate, T *dup, const T *dout, const T *gate, const T *up, int64_t N,
                            int64_t C, int64_t ld) {
  if (ld == 0) ld = C;
  if (!dgate && !dup) return;
  LAUNCH(swiglu_bwd<T>, N * C, dgate, dup, dout, gate, up, N, C, ld);
}
void ps_cuda_swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                            int64_t ld) {
  /* out: (N, C); gate, up: N rows of C, stride ld (0 = C) */
  swiglu_forward(out, gate, up, N, C, ld);
}
void ps_cuda_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                             const float *up, int64_t N, int64_t C, int64_t ld) {
  /* dgate, dup: like gate, up; dout: (N, C) */
  swiglu_backward(dgate, dup, dout, gate, up, N, C, ld);
}
void ps_cuda_swiglu_forward_bf16(ps_bf16 *out, const ps_bf16 *gate, const ps_bf16 *up, int64_t N,
                                 int64_t C, int64_t ld) {
  /* out: (N, C) bf16; gate, up: N rows of C, stride ld (0 = C), bf16 */
  swiglu_forward(ps_bf(out), ps_bf(gate), ps_bf(up), N, C, ld);
}
void ps_cuda_swiglu_backward_bf16(ps_bf16 *dgate, ps_bf16 *dup, const ps_bf16 *dout,
                                  const ps_bf16 *gate, const ps_bf16 *up, int64_t N, int64_t C,
                                  int64_t ld) {
  /* dgate, dup: like gate, up (bf16); dout: (N, C) bf16 */
  swiglu_backward(ps_bf(dgate), ps_bf(dup), ps_bf(dout), ps_bf(gate), ps_bf(up), N, C, ld);
}

/* ---- LayerScale ---- */

__global__ static void layerscale_fwd(float *out, const float *inp, const float *gamma, int64_t N,
                                      int64_t C) {
  PS_GRID_STRIDE(i, N * C) out[i] = inp[i] * gamma[i % C];
}
__global__ static void layerscale_bwd(float *dinp, const float *dout, const float *gamma, int64_t N,
                                      int64_t C) {
  PS_GRID_STRIDE(i, N * C) dinp[i] += dout[i] * gamma[i % C];
}
void ps_cuda_layerscale_forward(float *out, const float *inp, const float *gamma, int64_t N,
                                int64_t C) {
  /* out, inp: (N, C); gamma: (C) */
  LAUNCH(layerscale_fwd, N * C, out, inp, gamma, N, C);
}
void ps_cuda_layerscale_backward(float *dinp, float *dgamma, const float *dout, const float *inp,
                                 const float *gamma, int64_t N, int64_t C) {
  /* dinp: (N, C); dgamma: (C); dout, inp: (N, C) */
  if (dinp) LAUNCH(layerscale_bwd, N * C, dinp, dout, gamma, N, C);
  if (dgamma)
    ps_colsum(dgamma, N, C,
              [=] __device__(int64_t r, int64_t c) { return dout[r * C + c] * inp[r * C + c]; });
}

/* ---- arithmetic ---- */

__global__ static void add_fwd(float *out, const float *a, const float *b, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}
__global__ static void mul_fwd(float *out, const float *a, const float *b, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = a[i] * b[i];
}
__global__ static void mul_bwd(float *da, float *db, const float *dout, const float *a,
                               const float *b, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    /* a is read only for db and b only for da: the one not needed may be NULL
     * (LoRA dropout's backward passes a = NULL). Both are read before either
     * gradient is written (da may alias a). */
    float d = dout[i], av = db ? a[i] : 0.0f, bv = da ? b[i] : 0.0f;
    if (da) da[i] += d * bv;
    if (db) db[i] += d * av;
  }
}
__global__ static void axpy_k(float *y, float alpha, const float *x, int64_t n) {
  PS_GRID_STRIDE(i, n) y[i] += alpha * x[i];
}
__global__ static void scale_k(float *out, const float *inp, float alpha, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = alpha * inp[i];
}
__global__ static void fill_k(float *x, float value, int64_t n) {
  PS_GRID_STRIDE(i, n) x[i] = value;
}
void ps_cuda_add_forward(float *out, const float *a, const float *b, int64_t n) {
  /* out, a, b: (n) */
  LAUNCH(add_fwd, n, out, a, b, n);
}
void ps_cuda_mul_forward(float *out, const float *a, const float *b, int64_t n) {
  /* out, a, b: (n) */
  LAUNCH(mul_fwd, n, out, a, b, n);
}
void ps_cuda_mul_backward(float *da, float *db, const float *dout, const float *a, const float *b,
                          int64_t n) {
  /* da, db, dout, a, b: (n) */
  if (!da && !db) return;
  LAUNCH(mul_bwd, n, da, db, dout, a, b, n);
}
void ps_cuda_axpy(float *y, float alpha, const float *x, int64_t n) {
  /* y, x: (n) */
  LAUNCH(axpy_k, n, y, alpha, x, n);
}
void ps_cuda_scale(float *out, const float *inp, float alpha, int64_t n) {
  /* out, inp: (n) */
  LAUNCH(scale_k, n, out, inp, alpha, n);
}
void ps_cuda_fill(float *x, float value, int64_t n) {
  /* x: (n) */
  LAUNCH(fill_k, n, x, value, n);
}

/* ---- batched transpose: out[b, j, i] (+)= inp[b, i, j], 32x32 shared tiles ---- */

template <bool ACCUMULATE>
__global__ static void transpose_k(float *out, const float *inp, int64_t M, int64_t N) {
  __shared__ float tile[32][33];
  int64_t b = blockIdx.z;
  const float *src = inp + b * M * N;
  float *dst = out + b * M * N;
  int64_t i0 = (int64_t)blockIdx.y * 32, j0 = (int64_t)blockIdx.x * 32;
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    int64_t i = i0 + y, j = j0 + threadIdx.x;
    if (i < M && j < N) tile[y][threadIdx.x] = src[i * N + j];
  }
  __syncthreads();
  for (int y = threadIdx.y; y < 32; y += blockDim.y) {
    int64_t j = j0 + y, i = i0 + threadIdx.x;
    if (i < M && j < N) {
      if (ACCUMULATE) dst[j * M + i] += tile[threadIdx.x][y];
      else dst[j * M + i] = tile[threadIdx.x][y];
    }
  }
}
template <bool ACCUMULATE>
static void transpose(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N) {
  if (Bt <= 0 || M <= 0 || N <= 0) return;
  dim3 block(32, 8);
  for (int64_t b0 = 0; b0 < Bt; b0 += 65535) { /* gridDim.z is at most 65535 */
    int64_t nb = Bt - b0 < 65535 ? Bt - b0 : 65535;
    dim3 grid((unsigned)((N + 31) / 32), (unsigned)((M + 31) / 32), (unsigned)nb);
    transpose_k<ACCUMULATE><<<grid, block>>>(out + b0 * M * N, inp + b0 * M * N, M, N);
    PS_CUDA_LAUNCHED();
  }
}
void ps_cuda_transpose_forward(float *out, const float *inp, int64_t Bt, int64_t M, int64_t N) {
  /* out: (Bt, N, M); inp: (Bt, M, N) */
  transpose<false>(out, inp, Bt, M, N);
}
void ps_cuda_transpose_backward(float *dinp, const float *dout, int64_t Bt, int64_t M,
                                int64_t N) {
  /* dinp: (Bt, M, N) += transpose of dout: (Bt, N, M) */
  transpose<true>(dinp, dout, Bt, N, M);
}
