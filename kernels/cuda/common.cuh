/* common.cuh — what every CUDA kernel file shares: error checks, the cuBLAS
 * handle, launch sizes and warp/block reductions.
 *
 * All ops run on the legacy default stream, in order, asynchronously; a
 * caller that reads results on the host synchronises (cudaMemcpy does). A
 * CUDA or cuBLAS failure inside an op cannot be returned through the table's
 * void signatures, so it is reported with file:line and aborts (like llm.c):
 * it means a bad device pointer or a broken device, not bad user input. */
#pragma once

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <pathseg/kernels.h>

#define PS_CUDA_CHECK(call)                                                              \
  do {                                                                                   \
    cudaError_t e_ = (call);                                                             \
    if (e_ != cudaSuccess) {                                                             \
      fprintf(stderr, "pathseg-cuda: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,        \
              cudaGetErrorString(e_));                                                   \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

#define PS_CUBLAS_CHECK(call)                                                            \
  do {                                                                                   \
    cublasStatus_t s_ = (call);                                                          \
    if (s_ != CUBLAS_STATUS_SUCCESS) {                                                   \
      fprintf(stderr, "pathseg-cuda: %s:%d: %s: cuBLAS status %d\n", __FILE__, __LINE__, \
              #call, (int)s_);                                                           \
      abort();                                                                           \
    }                                                                                    \
  } while (0)

/* Checks the launch just made (configuration errors surface here). */
#define PS_CUDA_LAUNCHED() PS_CUDA_CHECK(cudaGetLastError())

/* ---- storage types ----
 * Kernels that serve both the f32 and the bf16 table entries are templates
 * over the storage type T (float or __nv_bfloat16). Every load goes through
 * ps_ld (to f32) and every store through ps_st<T> (one round-to-nearest-even
 * for bf16), so all arithmetic and every sum is f32; with T = float both are
 * the identity and the f32 kernels are unchanged. */
typedef __nv_bfloat16 ps_cuda_bf16;

__device__ __forceinline__ float ps_ld(float x) { return x; }
__device__ __forceinline__ float ps_ld(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T ps_st(float x);
template <> __device__ __forceinline__ float ps_st<float>(float x) { return x; }
template <> __device__ __forceinline__ __nv_bfloat16 ps_st<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

/* y += v for a gradient element of storage type T: f32 add, one rounding. */
template <typename T> __device__ __forceinline__ void ps_acc(T *y, float v) {
  *y = ps_st<T>(ps_ld(*y) + v);
}

/* The table's bf16 pointers (uint16_t bit patterns, see kernels.h) as device types. */
static inline ps_cuda_bf16 *ps_bf(ps_bf16 *p) { return reinterpret_cast<ps_cuda_bf16 *>(p); }
static inline const ps_cuda_bf16 *ps_bf(const ps_bf16 *p) {
  return reinterpret_cast<const ps_cuda_bf16 *>(p);
}

/* The process-wide cuBLAS handle, created by ps_cuda_kernels(). */
cublasHandle_t ps_cuda_cublas(void);

static const int PS_THREADS = 256;

/* Blocks for a grid-stride loop over n elements. */
static inline unsigned ps_blocks(int64_t n) {
  int64_t b = (n + PS_THREADS - 1) / PS_THREADS;
  if (b < 1) b = 1;
  return (unsigned)(b > 65535 * 8 ? 65535 * 8 : b);
}

#define PS_GRID_STRIDE(i, n)                                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);              \
       i += (int64_t)gridDim.x * blockDim.x)

__device__ __forceinline__ float ps_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float ps_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

/* Sum over the block (blockDim.x a multiple of 32, <= 1024); every thread gets
 * the result. `shared` holds 32 floats. */
__device__ __forceinline__ float ps_block_sum(float v, float *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = ps_warp_sum(v);
  __syncthreads(); /* shared may still be read by a previous call */
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : 0.0f;
  return ps_warp_sum(v);
}

__device__ __forceinline__ float ps_block_max(float v, float *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  v = ps_warp_max(v);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : -INFINITY;
  return ps_warp_max(v);
}

/* Column sums of a row-major (R, C) matrix: out[c] += scale * sum_r f(r, c).
 * Deterministic (no atomics): block (32, 32) owns 32 columns. */
template <typename F>
__global__ void ps_colsum_kernel(float *out, int64_t R, int64_t C, F f) {
  __shared__ float part[32][33];
  int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
  float s = 0.0f;
  if (c < C)
    for (int64_t r = threadIdx.y; r < R; r += 32) s += f(r, c);
  part[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < C) {
    float t = 0.0f;
    for (int y = 0; y < 32; y++) t += part[y][threadIdx.x];
    out[c] += t;
  }
}

template <typename F>
static void ps_colsum(float *out, int64_t R, int64_t C, F f) {
  if (C <= 0) return;
  dim3 block(32, 32), grid((unsigned)((C + 31) / 32));
  ps_colsum_kernel<<<grid, block>>>(out, R, C, f);
  PS_CUDA_LAUNCHED();
}
