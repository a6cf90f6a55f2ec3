/* softmax.cu — row softmax over the last dim (max-subtracted; a row of -inf
 * gives zeros, as on the CPU) and its backward. Templates over the storage
 * type (f32 and bf16 entries; f32 arithmetic either way).
 *
 * Forward reads a row twice, not three times: the first pass keeps a running
 * (max, sum of exp(x - max)) pair ("online softmax"), rescaling the sum when
 * the max grows; the second writes exp(x - max) / sum. Rows of up to
 * WARP_MAX_C columns take one warp each (8 rows per block); wider rows take
 * a block of 256 threads each, so that a 4096-wide row is not one warp's
 * 128 serial loads. */
#include "common.cuh"
#include "ops.cuh"

static const int ROWS = 8;
static const int64_t WARP_MAX_C = 1024;
static const int ROW_THREADS = 256;

/* The running (max, sum) pair: sum = sum_k exp(x_k - max) over what it has
 * seen; an empty or all -inf pair is (-inf, 0). */
struct max_sum {
  float m, s;
};

__device__ __forceinline__ max_sum ms_add(max_sum a, float x) {
  if (x == -INFINITY) return a;
  if (x > a.m) return {x, a.s * expf(a.m - x) + 1.0f}; /* expf(-inf) = 0 when a is empty */
  return {a.m, a.s + expf(x - a.m)};
}

__device__ __forceinline__ max_sum ms_merge(max_sum a, max_sum b) {
  float m = fmaxf(a.m, b.m);
  if (m == -INFINITY) return {m, 0.0f};
  return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ max_sum ms_warp(max_sum v) {
  for (int o = 16; o > 0; o >>= 1) {
    max_sum w = {__shfl_xor_sync(0xffffffffu, v.m, o), __shfl_xor_sync(0xffffffffu, v.s, o)};
    v = ms_merge(v, w);
  }
  return v;
}

/* y = exp(x - m) / s for the lanes' columns; an all -inf row (m = -inf)
 * writes zeros. */
template <typename T>
__device__ __forceinline__ void write_row(T *y, const T *x, max_sum t, int64_t C, int64_t first,
                                          int64_t step) {
  float mx = t.m == -INFINITY ? 0.0f : t.m;
  float inv = t.s > 0.0f ? 1.0f / t.s : 0.0f;
  for (int64_t c = first; c < C; c += step) y[c] = ps_st<T>(expf(ps_ld(x[c]) - mx) * inv);
}

/* A warp per row. */
template <typename T>
__global__ static void softmax_fwd_warp(T *out, const T *inp, int64_t N, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS + threadIdx.y;
  if (r >= N) return;
  const T *x = inp + r * C;
  max_sum t = {-INFINITY, 0.0f};
  for (int64_t c = threadIdx.x; c < C; c += 32) t = ms_add(t, ps_ld(x[c]));
  write_row(out + r * C, x, ms_warp(t), C, threadIdx.x, 32);
}

/* A block per row (C > WARP_MAX_C). */
template <typename T>
__global__ static void softmax_fwd_block(T *out, const T *inp, int64_t N, int64_t C) {
  __shared__ float sm[32], ss[32];
  int64_t r = blockIdx.x;
  const T *x = inp + r * C;
  max_sum t = {-INFINITY, 0.0f};
  for (int64_t c = threadIdx.x; c < C; c += blockDim.x) t = ms_add(t, ps_ld(x[c]));
  t = ms_warp(t);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  if (lane == 0) sm[warp] = t.m, ss[warp] = t.s;
  __syncthreads();
  t = lane < nwarps ? max_sum{sm[lane], ss[lane]} : max_sum{-INFINITY, 0.0f};
  t = ms_warp(t);
  write_row(out + r * C, x, t, C, threadIdx.x, blockDim.x);
}

template <typename T>
__global__ static void softmax_bwd(T *dinp, const T *dout, const T *out, int64_t N, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS + threadIdx.y;
  if (r >= N) return;
  const T *y = out + r * C, *dy = dout + r * C;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) dot += ps_ld(dy[c]) * ps_ld(y[c]);
  dot = ps_warp_sum(dot);
  T *dx = dinp + r * C;
  for (int64_t c = threadIdx.x; c < C; c += 32) ps_acc(&dx[c], ps_ld(y[c]) * (ps_ld(dy[c]) - dot));
}

template <typename T> static void softmax_forward(T *out, const T *inp, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  if (C <= WARP_MAX_C) {
    softmax_fwd_warp<T><<<(unsigned)((N + ROWS - 1) / ROWS), dim3(32, ROWS)>>>(out, inp, N, C);
  } else {
    if (N > INT32_MAX) abort(); /* one block per row */
    softmax_fwd_block<T><<<(unsigned)N, ROW_THREADS>>>(out, inp, N, C);
  }
  PS_CUDA_LAUNCHED();
}

template <typename T>
static void softmax_backward(T *dinp, const T *dout, const T *out, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  softmax_bwd<T><<<(unsigned)((N + ROWS - 1) / ROWS), dim3(32, ROWS)>>>(dinp, dout, out, N, C);
  PS_CUDA_LAUNCHED();
}

void ps_cuda_softmax_forward(float *out, const float *inp, int64_t N, int64_t C) {
  /* out, inp: (N, C); in place allowed */
  softmax_forward(out, inp, N, C);
}
void ps_cuda_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                              int64_t C) {
  /* dinp, dout, out: (N, C) */
  softmax_backward(dinp, dout, out, N, C);
}
void ps_cuda_softmax_forward_bf16(ps_bf16 *out, const ps_bf16 *inp, int64_t N, int64_t C) {
  /* out, inp: (N, C) bf16 */
  softmax_forward(ps_bf(out), ps_bf(inp), N, C);
}
void ps_cuda_softmax_backward_bf16(ps_bf16 *dinp, const ps_bf16 *dout, const ps_bf16 *out,
                                   int64_t N, int64_t C) {
  /* dinp, dout, out: (N, C) bf16 */
  softmax_backward(ps_bf(dinp), ps_bf(dout), ps_bf(out), N, C);
}
