/* softmax.cu — row softmax over the last dim (max-subtracted; a row of -inf
 * gives zeros, as on the CPU) and its backward, one warp per row. Templates
 * over the storage type (f32 and bf16 entries; f32 arithmetic either way). */
#include "common.cuh"
#include "ops.cuh"

static const int ROWS = 8;

template <typename T>
__global__ static void softmax_fwd(T *out, const T *inp, int64_t N, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS + threadIdx.y;
  if (r >= N) return;
  const T *x = inp + r * C;
  T *y = out + r * C;
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += 32) mx = fmaxf(mx, ps_ld(x[c]));
  mx = ps_warp_max(mx);
  if (mx == -INFINITY) mx = 0.0f;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) s += expf(ps_ld(x[c]) - mx);
  s = ps_warp_sum(s);
  float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) y[c] = ps_st<T>(expf(ps_ld(x[c]) - mx) * inv);
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
  softmax_fwd<T><<<(unsigned)((N + ROWS - 1) / ROWS), dim3(32, ROWS)>>>(out, inp, N, C);
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
