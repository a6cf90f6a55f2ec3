/* softmax.cu — row softmax over the last dim (max-subtracted; a row of -inf
 * gives zeros, as on the CPU) and its backward, one warp per row. */
#include "common.cuh"
#include "ops.cuh"

static const int ROWS = 8;

__global__ static void softmax_fwd(float *out, const float *inp, int64_t N, int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS + threadIdx.y;
  if (r >= N) return;
  const float *x = inp + r * C;
  float *y = out + r * C;
  float mx = -INFINITY;
  for (int64_t c = threadIdx.x; c < C; c += 32) mx = fmaxf(mx, x[c]);
  mx = ps_warp_max(mx);
  if (mx == -INFINITY) mx = 0.0f;
  float s = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) s += expf(x[c] - mx);
  s = ps_warp_sum(s);
  float inv = s > 0.0f ? 1.0f / s : 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) y[c] = expf(x[c] - mx) * inv;
}

__global__ static void softmax_bwd(float *dinp, const float *dout, const float *out, int64_t N,
                                   int64_t C) {
  int64_t r = (int64_t)blockIdx.x * ROWS + threadIdx.y;
  if (r >= N) return;
  const float *y = out + r * C, *dy = dout + r * C;
  float dot = 0.0f;
  for (int64_t c = threadIdx.x; c < C; c += 32) dot += dy[c] * y[c];
  dot = ps_warp_sum(dot);
  float *dx = dinp + r * C;
  for (int64_t c = threadIdx.x; c < C; c += 32) dx[c] += y[c] * (dy[c] - dot);
}

void ps_cuda_softmax_forward(float *out, const float *inp, int64_t N, int64_t C) {
  /* out, inp: (N, C); in place allowed */
  if (N <= 0 || C <= 0) return;
  softmax_fwd<<<(unsigned)((N + ROWS - 1) / ROWS), dim3(32, ROWS)>>>(out, inp, N, C);
  PS_CUDA_LAUNCHED();
}

void ps_cuda_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                              int64_t C) {
  /* dinp, dout, out: (N, C) */
  if (N <= 0 || C <= 0) return;
  softmax_bwd<<<(unsigned)((N + ROWS - 1) / ROWS), dim3(32, ROWS)>>>(dinp, dout, out, N, C);
  PS_CUDA_LAUNCHED();
}
