/* attention_tiled.cu — tiled (FlashAttention-2 style) attention kernels for
 * the CUDA table's attention entries, f32 and bf16 storage; attention.cu
 * dispatches here unless PATHSEG_CUDA_ATTENTION=rows (or the head dim or the
 * shared memory rules the tiles out, then its row kernels run).
 *
 * The algorithm (tiles, phases, index arithmetic) is in attention_tiled.cuh;
 * this file supplies the GPU executor (a phase, then __syncthreads) and the
 * launches:
 *   forward   block per (64-query tile, head, batch), 256 threads: Q tile in
 *             shared memory, loop over 64-key tiles of K and V (online
 *             softmax, f32 accumulators of O in registers).
 *   dK, dV    block per (64-key tile, kv head, batch): loops over the heads
 *             of its group and all query tiles (recomputes P from lse), so it
 *             owns its dk/dv rows: no atomics and, for bf16, no f32 scratch
 *             (the sums stay in f32 registers; one rounding on the add).
 *   dQ        block per (64-query tile, head, batch): loops over key tiles;
 *             also adds dbias (atomics: it may be broadcast) and drel_h,
 *             drel_w (summed per tile in shared memory, then added; atomics
 *             into global memory when the rel grid is too large).
 * Head dims are padded to DP in {16, 32, 48, 64, 80, 128}; D > 128 is not
 * handled here. Shared memory: (3 * 64 * (DP + 1) + 64 * 65 + 768) floats
 * forward (66 KB at DP = 64), about 2x that in backward (163 KB at DP = 128),
 * raised past 48 KB with cudaFuncSetAttribute; the launch is refused (row
 * kernels instead) when the device does not allow it. */
#include <string.h>

#include "common.cuh" /* before the algorithm: ps_ld, ps_st, ps_acc */

#include "attention_tiled.cuh"

/* Runs a phase on this thread with its registers, then the block barrier. */
template <class S> struct dev_exec {
  S s;
  template <class F> __device__ __forceinline__ void phase(F f) {
    f((int)threadIdx.x, s);
    __syncthreads();
  }
};

template <typename T, int DP>
__global__ void __launch_bounds__(att::NT, 2) att_fwd_kernel(att::args<T> a) {
  extern __shared__ float att_sm[];
  dev_exec<att::fwd_regs<DP>> x;
  att::fwd_block<T, DP>(x, a, blockIdx.x, blockIdx.y, blockIdx.z, att_sm);
}

template <typename T, int DP>
__global__ void __launch_bounds__(att::NT, 1) att_dkv_kernel(att::args<T> a) {
  extern __shared__ float att_sm[];
  dev_exec<att::dkv_regs<DP>> x;
  att::dkv_block<T, DP>(x, a, blockIdx.x, blockIdx.y, blockIdx.z, att_sm);
}

template <typename T, int DP>
__global__ void __launch_bounds__(att::NT, 1) att_dq_kernel(att::args<T> a) {
  extern __shared__ float att_sm[];
  dev_exec<att::dq_regs<DP>> x;
  att::dq_block<T, DP>(x, a, blockIdx.x, blockIdx.y, blockIdx.z, att_sm);
}

/* The padded head dim, 0 if unsupported. */
static int padded_dim(int64_t D) {
  static const int dps[] = {16, 32, 48, 64, 80, 128};
  for (int dp : dps)
    if (D >= 1 && D <= dp) return dp;
  return 0;
}

static size_t max_smem_optin(void) {
  int dev = 0, v = 0;
  PS_CUDA_CHECK(cudaGetDevice(&dev));
  PS_CUDA_CHECK(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
  return (size_t)v;
}

/* Allows `bytes` of dynamic shared memory for kernel; false if the device can't. */
template <typename K> static bool allow_smem(K kernel, size_t bytes) {
  if (bytes <= 48 * 1024) return true;
  if (bytes > max_smem_optin()) return false;
  PS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  return true;
}

template <typename T> static att::args<T> make_args(const ps_attention_desc *d) {
  att::args<T> a;
  memset(&a, 0, sizeof a);
  static_cast<att::geom &>(a) = att::geometry(*d);
  a.d = *d;
  return a;
}

static unsigned tiles(int64_t n, int size) { return (unsigned)((n + size - 1) / size); }

template <typename T, int DP> static bool fwd_launch(const att::args<T> &a) {
  size_t bytes = sizeof(float) * (size_t)att::fwd_smem_floats<DP>();
  if (!allow_smem(att_fwd_kernel<T, DP>, bytes)) return false;
  dim3 grid(tiles(a.d.Tq, att::BQ), (unsigned)a.d.Hq, (unsigned)a.d.B);
  att_fwd_kernel<T, DP><<<grid, att::NT, bytes>>>(a);
  PS_CUDA_LAUNCHED();
  return true;
}

template <typename T, int DP> static bool bwd_launch(att::args<T> a) {
  const ps_attention_desc &d = a.d;
  bool need_kv = a.dk || a.dv;
  bool need_q = a.dq || a.dbias || (d.rel_h && (a.drel_h || a.drel_w));
  size_t kv_bytes = sizeof(float) * (size_t)att::dkv_smem_floats<DP>();
  /* drel sums in shared memory when the rel grid is small enough */
  int64_t rel_floats = d.rel_h ? (int64_t)att::BQ * (d.rel_kh + d.rel_kw) : 0;
  size_t q_bytes = sizeof(float) * (size_t)att::dq_smem_floats<DP>(rel_floats);
  a.rel_smem = rel_floats > 0 && d.rel_kh + d.rel_kw <= 512;
  if (need_q && a.rel_smem && !allow_smem(att_dq_kernel<T, DP>, q_bytes)) a.rel_smem = 0;
  if (!a.rel_smem) q_bytes = sizeof(float) * (size_t)att::dq_smem_floats<DP>(0);
  /* decide both before launching either: all tiled or all rows */
  if (need_kv && !allow_smem(att_dkv_kernel<T, DP>, kv_bytes)) return false;
  if (need_q && !allow_smem(att_dq_kernel<T, DP>, q_bytes)) return false;
  if (need_kv) {
    dim3 grid(tiles(d.Tk, att::BK), (unsigned)d.Hkv, (unsigned)d.B);
    att_dkv_kernel<T, DP><<<grid, att::NT, kv_bytes>>>(a);
    PS_CUDA_LAUNCHED();
  }
  if (need_q) {
    dim3 grid(tiles(d.Tq, att::BQ), (unsigned)d.Hq, (unsigned)d.B);
    att_dq_kernel<T, DP><<<grid, att::NT, q_bytes>>>(a);
    PS_CUDA_LAUNCHED();
  }
  return true;
}

/* Sizes the caller (attention.cu) has not already ruled out: B, Hq <= 65535,
 * Tq, Tk > 0. */
template <typename T>
static bool tiled_forward(T *out, float *lse, const T *q, const T *k, const T *v,
                          const ps_attention_desc *d) {
  att::args<T> a = make_args<T>(d);
  a.out = out, a.lse = lse, a.q = q, a.k = k, a.v = v;
  switch (padded_dim(d->D)) {
  case 16: return fwd_launch<T, 16>(a);
  case 32: return fwd_launch<T, 32>(a);
  case 48: return fwd_launch<T, 48>(a);
  case 64: return fwd_launch<T, 64>(a);
  case 80: return fwd_launch<T, 80>(a);
  case 128: return fwd_launch<T, 128>(a);
  default: return false;
  }
}

template <typename T>
static bool tiled_backward(T *dq, T *dk, T *dv, float *dbias, float *drel_h, float *drel_w,
                           const T *dout, const T *q, const T *k, const T *v, const T *out,
                           const float *lse, const ps_attention_desc *d) {
  att::args<T> a = make_args<T>(d);
  a.dq = dq, a.dk = dk, a.dv = dv, a.dbias = dbias; /* as the CPU and row kernels */
  a.drel_h = d->rel_h ? drel_h : NULL, a.drel_w = d->rel_h ? drel_w : NULL;
  a.dout = dout, a.q = q, a.k = k, a.v = v, a.o = out, a.lse = (float *)lse;
  switch (padded_dim(d->D)) {
  case 16: return bwd_launch<T, 16>(a);
  case 32: return bwd_launch<T, 32>(a);
  case 48: return bwd_launch<T, 48>(a);
  case 64: return bwd_launch<T, 64>(a);
  case 80: return bwd_launch<T, 80>(a);
  case 128: return bwd_launch<T, 128>(a);
  default: return false;
  }
}

bool ps_cuda_attention_tiled_forward(float *out, float *lse, const float *q, const float *k,
                                     const float *v, const ps_attention_desc *d) {
  return tiled_forward(out, lse, q, k, v, d);
}

bool ps_cuda_attention_tiled_forward(ps_cuda_bf16 *out, float *lse, const ps_cuda_bf16 *q,
                                     const ps_cuda_bf16 *k, const ps_cuda_bf16 *v,
                                     const ps_attention_desc *d) {
  return tiled_forward(out, lse, q, k, v, d);
}

bool ps_cuda_attention_tiled_backward(float *dq, float *dk, float *dv, float *dbias,
                                      float *drel_h, float *drel_w, const float *dout,
                                      const float *q, const float *k, const float *v,
                                      const float *out, const float *lse,
                                      const ps_attention_desc *d) {
  return tiled_backward(dq, dk, dv, dbias, drel_h, drel_w, dout, q, k, v, out, lse, d);
}

bool ps_cuda_attention_tiled_backward(ps_cuda_bf16 *dq, ps_cuda_bf16 *dk, ps_cuda_bf16 *dv,
                                      float *dbias, float *drel_h, float *drel_w,
                                      const ps_cuda_bf16 *dout, const ps_cuda_bf16 *q,
                                      const ps_cuda_bf16 *k, const ps_cuda_bf16 *v,
                                      const ps_cuda_bf16 *out, const float *lse,
                                      const ps_attention_desc *d) {
  return tiled_backward(dq, dk, dv, dbias, drel_h, drel_w, dout, q, k, v, out, lse, d);
}
