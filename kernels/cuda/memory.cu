/* memory.cu — the CUDA table's memory and optimizer entries: device memory,
 * synchronous copies, the squared sum and finiteness scan that gradient
 * clipping needs, the AdamW update (optionally refreshing a bf16 compute
 * copy of f32 master weights) and the f32 <-> bf16 conversions. */
#include <mutex>

#include "common.cuh"
#include "ops.cuh"

void *ps_cuda_mem_alloc(size_t bytes) {
  void *p = nullptr;
  if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
    cudaGetLastError(); /* out of memory is reported as NULL, not kept as the sticky error */
    return nullptr;
  }
  PS_CUDA_CHECK(cudaMemset(p, 0, bytes ? bytes : 1));
  return p;
}

void ps_cuda_mem_free(void *p) {
  if (p) PS_CUDA_CHECK(cudaFree(p));
}

void ps_cuda_copy_to_device(void *dst, const void *src, size_t bytes) {
  if (bytes) PS_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyHostToDevice));
}

void ps_cuda_copy_to_host(void *dst, const void *src, size_t bytes) {
  if (bytes) PS_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToHost));
}

void ps_cuda_copy_on_device(void *dst, const void *src, size_t bytes) {
  if (bytes) PS_CUDA_CHECK(cudaMemcpy(dst, src, bytes, cudaMemcpyDeviceToDevice));
}

void ps_cuda_mem_zero(void *p, size_t bytes) {
  if (bytes) PS_CUDA_CHECK(cudaMemset(p, 0, bytes));
}

/* ---- reductions: a fixed grid, one double per block, summed on the host in
 * block order, so the result does not depend on scheduling. */
static const int SUM_BLOCKS = 1024;

__global__ static void sum_squares_k(double *partial, const float *x, int64_t n) {
  __shared__ double warp_sums[32];
  double s = 0;
  PS_GRID_STRIDE(i, n) s += (double)x[i] * (double)x[i];
  for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (lane == 0) warp_sums[warp] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0;
    for (int w = 0; w < (int)(blockDim.x >> 5); w++) t += warp_sums[w];
    partial[blockIdx.x] = t;
  }
}

__global__ static void find_nonfinite_k(unsigned long long *first, const float *x, int64_t n) {
  PS_GRID_STRIDE(i, n) {
    if (!isfinite(x[i])) atomicMin(first, (unsigned long long)i);
  }
}

/* Device buffers for the reductions' partial results, made once. */
static double *g_partial = nullptr;
static unsigned long long *g_first = nullptr;

static void reduction_buffers(void) {
  static std::once_flag once;
  std::call_once(once, [] {
    PS_CUDA_CHECK(cudaMalloc(&g_partial, SUM_BLOCKS * sizeof(double)));
    PS_CUDA_CHECK(cudaMalloc(&g_first, sizeof(unsigned long long)));
  });
}

double ps_cuda_sum_squares(const float *x, int64_t n) {
  if (n <= 0) return 0.0;
  reduction_buffers();
  sum_squares_k<<<SUM_BLOCKS, PS_THREADS>>>(g_partial, x, n);
  PS_CUDA_LAUNCHED();
  double host[SUM_BLOCKS];
  PS_CUDA_CHECK(cudaMemcpy(host, g_partial, sizeof host, cudaMemcpyDeviceToHost));
  double sum = 0;
  for (int b = 0; b < SUM_BLOCKS; b++) sum += host[b];
  return sum;
}

int64_t ps_cuda_find_nonfinite(const float *x, int64_t n) {
  if (n <= 0) return -1;
  reduction_buffers();
  unsigned long long none = ~0ull;
  PS_CUDA_CHECK(cudaMemcpy(g_first, &none, sizeof none, cudaMemcpyHostToDevice));
  find_nonfinite_k<<<ps_blocks(n), PS_THREADS>>>(g_first, x, n);
  PS_CUDA_LAUNCHED();
  unsigned long long first = 0;
  PS_CUDA_CHECK(cudaMemcpy(&first, g_first, sizeof first, cudaMemcpyDeviceToHost));
  return first == none ? -1 : (int64_t)first;
}

/* The CPU loop's arithmetic, one element per thread; __fmul_rn/__fadd_rn and
 * __fsqrt_rn keep nvcc from contracting to FMA so that CUDA and CPU steps
 * round alike. */
__global__ static void adamw_k(float *p, const float *grad, float *m, float *v,
                               ps_cuda_bf16 *p_bf16, int64_t n, float clip, float beta1,
                               float beta2, float wd, float step_size, float inv_sqrt_c2,
                               float eps) {
  PS_GRID_STRIDE(k, n) {
    float g = __fmul_rn(grad[k], clip);
    float mk = __fadd_rn(__fmul_rn(beta1, m[k]), __fmul_rn(1.0f - beta1, g));
    float vk = __fadd_rn(__fmul_rn(beta2, v[k]), __fmul_rn(__fmul_rn(1.0f - beta2, g), g));
    float pk = p[k];
    pk = __fsub_rn(pk, __fmul_rn(wd, pk));
    float den = __fadd_rn(__fmul_rn(__fsqrt_rn(vk), inv_sqrt_c2), eps);
    pk = __fsub_rn(pk, __fdiv_rn(__fmul_rn(step_size, mk), den));
    m[k] = mk;
    v[k] = vk;
    p[k] = pk;
    if (p_bf16) p_bf16[k] = __float2bfloat16_rn(pk);
  }
}

void ps_cuda_adamw_step(float *p, const float *grad, float *m, float *v, ps_bf16 *p_bf16,
                        int64_t n, float clip, float beta1, float beta2, float wd,
                        float step_size, float inv_sqrt_c2, float eps) {
  if (n <= 0) return;
  adamw_k<<<ps_blocks(n), PS_THREADS>>>(p, grad, m, v, p_bf16 ? ps_bf(p_bf16) : nullptr, n, clip,
                                        beta1, beta2, wd, step_size, inv_sqrt_c2, eps);
  PS_CUDA_LAUNCHED();
}

__global__ static void to_bf16_k(ps_cuda_bf16 *out, const float *inp, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = __float2bfloat16_rn(inp[i]);
}

__global__ static void from_bf16_k(float *out, const ps_cuda_bf16 *inp, int64_t n) {
  PS_GRID_STRIDE(i, n) out[i] = __bfloat162float(inp[i]);
}

void ps_cuda_to_bf16(ps_bf16 *out, const float *inp, int64_t n) {
  if (n <= 0) return;
  to_bf16_k<<<ps_blocks(n), PS_THREADS>>>(ps_bf(out), inp, n);
  PS_CUDA_LAUNCHED();
}

void ps_cuda_from_bf16(float *out, const ps_bf16 *inp, int64_t n) {
  if (n <= 0) return;
  from_bf16_k<<<ps_blocks(n), PS_THREADS>>>(out, ps_bf(inp), n);
  PS_CUDA_LAUNCHED();
}

/* ---- layout ---- */

__global__ static void copy_2d_k(float *dst, int64_t ldd, const float *src, int64_t lds,
                                 int64_t rows, int64_t cols, int accumulate) {
  PS_GRID_STRIDE(i, rows * cols) {
    int64_t r = i / cols, c = i % cols;
    float v = src[r * lds + c];
    if (accumulate)
      dst[r * ldd + c] += v;
    else
      dst[r * ldd + c] = v;
  }
}

void ps_cuda_copy_2d(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows,
                     int64_t cols, int accumulate) {
  if (rows <= 0 || cols <= 0) return;
  if (!accumulate) { /* a strided memcpy is what the copy engine does best */
    PS_CUDA_CHECK(cudaMemcpy2D(dst, (size_t)ldd * sizeof(float), src, (size_t)lds * sizeof(float),
                               (size_t)cols * sizeof(float), (size_t)rows,
                               cudaMemcpyDeviceToDevice));
    return;
  }
  copy_2d_k<<<ps_blocks(rows * cols), PS_THREADS>>>(dst, ldd, src, lds, rows, cols, accumulate);
  PS_CUDA_LAUNCHED();
}

__global__ static void add_rows_k(float *out, const float *inp, const float *row, int64_t N,
                                  int64_t C) {
  PS_GRID_STRIDE(i, N * C) out[i] = inp[i] + row[i % C];
}

void ps_cuda_add_rows(float *out, const float *inp, const float *row, int64_t N, int64_t C) {
  if (N <= 0 || C <= 0) return;
  add_rows_k<<<ps_blocks(N * C), PS_THREADS>>>(out, inp, row, N, C);
  PS_CUDA_LAUNCHED();
}

void ps_cuda_sum_rows(float *drow, const float *dout, int64_t N, int64_t C) {
  ps_colsum(drow, N, C, [=] __device__(int64_t r, int64_t c) { return dout[r * C + c]; });
}
