/* attention.cu — multi-head attention on the GPU (forward and backward) with
 * everything ps_attention_desc allows: causal, grouped-query, cross, additive
 * bias with broadcast strides, SAM decomposed relative positions.
 *
 * One block per (batch, head, query row). Forward: a warp per key computes
 * the logit (lanes split the head dim, coalesced), the row lives in shared
 * memory, softmax, then out = p @ V with threads split over (head dim, key
 * group). Backward recomputes p from the saved log-sum-exp (no Tq x Tk matrix
 * is stored), writes dq directly (one block owns the row) and adds dk, dv,
 * dbias and drel_* with atomics (several query rows and, for GQA, several
 * heads share them) — so backward sums are not bit-reproducible run to run.
 *
 * This is a straightforward, correct kernel, not a tiled flash-attention:
 * K and V are re-read (from L2) by every query row. Shared memory holds a row
 * of Tk logits: Tk up to ~50k keys on sm_80/sm_90. No scratch is needed.
 *
 * attention_tiled.cu has the fast tiled kernels; the entries below use them
 * unless PATHSEG_CUDA_ATTENTION=rows is set (read on every call, for tests
 * and comparisons) or they don't cover the shape (head dim > 128, shared
 * memory), and fall back to the row kernels here.
 *
 * The kernels are templates over the storage type T of q, k, v, out and
 * their gradients (f32 and bf16 entries). Shared rows, softmax and all sums
 * are f32. dk and dv are always summed in f32: in place for f32 storage; for
 * bf16 in f32 scratch that a last pass adds into the bf16 gradients (summing
 * many atomics in bf16 would lose most of the gradient's bits). */
#include <string.h>

#include "common.cuh"
#include "ops.cuh"

#include "attention_tiled.cuh" /* geometry, logit */

/* attention_tiled.cu: false when the tiled kernels don't cover d (nothing
 * launched). Callers have handled B, Hq > 65535, Tq == 0 and Tk == 0. */
bool ps_cuda_attention_tiled_forward(float *out, float *lse, const float *q, const float *k,
                                     const float *v, const ps_attention_desc *d);
bool ps_cuda_attention_tiled_forward(ps_cuda_bf16 *out, float *lse, const ps_cuda_bf16 *q,
                                     const ps_cuda_bf16 *k, const ps_cuda_bf16 *v,
                                     const ps_attention_desc *d);
bool ps_cuda_attention_tiled_backward(float *dq, float *dk, float *dv, float *dbias,
                                      float *drel_h, float *drel_w, const float *dout,
                                      const float *q, const float *k, const float *v,
                                      const float *out, const float *lse,
                                      const ps_attention_desc *d);
bool ps_cuda_attention_tiled_backward(ps_cuda_bf16 *dq, ps_cuda_bf16 *dk, ps_cuda_bf16 *dv,
                                      float *dbias, float *drel_h, float *drel_w,
                                      const ps_cuda_bf16 *dout, const ps_cuda_bf16 *q,
                                      const ps_cuda_bf16 *k, const ps_cuda_bf16 *v,
                                      const ps_cuda_bf16 *out, const float *lse,
                                      const ps_attention_desc *d);

/* PATHSEG_CUDA_ATTENTION=rows selects the row kernels (read on every call). */
static bool tiled_wanted(void) {
  const char *e = getenv("PATHSEG_CUDA_ATTENTION");
  return !(e && strcmp(e, "rows") == 0);
}

static const int ATT_THREADS = 128;
static const int ATT_WARPS = ATT_THREADS / 32;

/* The logit of key j for query row (b, h, i) before softmax; -inf if masked.
 * qs: the query row in shared memory. Called by a whole warp; all lanes get it. */
template <typename T>
__device__ __forceinline__ float logit(const ps_attention_desc &d, const att::geom &g,
                                       const float *qs, const T *kb, int64_t b, int64_t h,
                                       int64_t i, int64_t j, int lane) {
  const T *kr = kb + j * g.ldk;
  float s = 0.0f;
  for (int64_t c = lane; c < d.D; c += 32) s += qs[c] * ps_ld(kr[c]);
  return att::logit(d, ps_warp_sum(s), b, h, i, j); /* the tiled kernels' masking */
}

/* acc[c] = sum_j w[j] * rows[j * ld + c] for c < D, by all threads of the
 * block: thread t takes column c = t % D of key group t / D; partial sums are
 * reduced in shared memory `part` (ATT_THREADS floats). Returns through
 * `result` (D floats of shared memory). */
template <typename T>
__device__ static void weighted_rows(float *result, float *part, const float *w, const T *rows,
                                     int64_t ld, int64_t Tk, int64_t D) {
  for (int64_t c0 = 0; c0 < D; c0 += ATT_THREADS) {
    int64_t width = D - c0 < ATT_THREADS ? D - c0 : ATT_THREADS;
    int groups = (int)(ATT_THREADS / width);
    int t = threadIdx.x, grp = (int)(t / width);
    int64_t c = c0 + t % width;
    float acc = 0.0f;
    if (grp < groups)
      for (int64_t j = grp; j < Tk; j += groups) acc += w[j] * ps_ld(rows[j * ld + c]);
    __syncthreads();
    part[t] = grp < groups ? acc : 0.0f;
    __syncthreads();
    if (t < width) {
      float s = 0.0f;
      for (int q = 0; q < groups; q++) s += part[q * width + t];
      result[c0 + t] = s;
    }
    __syncthreads();
  }
}

template <typename T>
__global__ static void attention_fwd(T *out, float *lse, const T *q, const T *k, const T *v,
                                     ps_attention_desc d, att::geom g) {
  extern __shared__ float sm[];
  float *qs = sm;              /* (D) */
  float *part = qs + d.D;      /* (ATT_THREADS) */
  float *red = part + ATT_THREADS; /* (32) */
  float *row = red + 32;       /* (Tk) logits, then weights */
  float *acc = row + d.Tk;     /* (D) */
  int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / g.rep;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const T *qr = q + (b * d.Tq + i) * g.ldq + h * d.D;
  const T *kb = k + b * d.Tk * g.ldk + kvh * d.D;
  const T *vb = v + b * d.Tk * g.ldv + kvh * d.D;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) qs[c] = ps_ld(qr[c]);
  __syncthreads();

  float mx = -INFINITY;
  for (int64_t j = warp; j < d.Tk; j += ATT_WARPS) {
    float s = logit(d, g, qs, kb, b, h, i, j, lane);
    if (lane == 0) row[j] = s;
    mx = fmaxf(mx, s);
  }
  mx = ps_block_max(mx, red);
  float sum = 0.0f;
  if (mx != -INFINITY)
    for (int64_t j = threadIdx.x; j < d.Tk; j += ATT_THREADS) {
      float p = expf(row[j] - mx);
      row[j] = p;
      sum += p;
    }
  else
    for (int64_t j = threadIdx.x; j < d.Tk; j += ATT_THREADS) row[j] = 0.0f;
  sum = ps_block_sum(sum, red);
  float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
  weighted_rows(acc, part, row, vb, g.ldv, d.Tk, d.D);
  T *orow = out + (b * d.Tq + i) * g.ldo + h * d.D;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) orow[c] = ps_st<T>(acc[c] * inv);
  if (lse && threadIdx.x == 0)
    lse[(b * d.Hq + h) * d.Tq + i] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

/* dk, dv: f32 sums with row strides ldgk, ldgv (the gradients themselves for
 * f32 storage, f32 scratch for bf16). */
template <typename T>
__global__ static void attention_bwd(T *dq, float *dk, float *dv, int64_t ldgk, int64_t ldgv,
                                     float *dbias, float *drel_h, float *drel_w, const T *dout,
                                     const T *q, const T *k, const T *v, const T *out,
                                     const float *lse, ps_attention_desc d, att::geom g) {
  extern __shared__ float sm[];
  float *qs = sm;                  /* (D) */
  float *dos = qs + d.D;           /* (D) */
  float *part = dos + d.D;         /* (ATT_THREADS) */
  float *red = part + ATT_THREADS; /* (32) */
  float *ds = red + 32;            /* (Tk) */
  float *acc = ds + d.Tk;          /* (D) */
  int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / g.rep;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int64_t bhi = (b * d.Hq + h) * d.Tq + i;
  float L = lse[bhi];
  if (L == -INFINITY) return; /* every key masked: p = 0, no gradient */
  const T *qr = q + (b * d.Tq + i) * g.ldq + h * d.D;
  const T *dor = dout + (b * d.Tq + i) * g.ldo + h * d.D;
  const T *orow = out + (b * d.Tq + i) * g.ldo + h * d.D;
  const T *kb = k + b * d.Tk * g.ldk + kvh * d.D;
  const T *vb = v + b * d.Tk * g.ldv + kvh * d.D;
  float di = 0.0f;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) {
    qs[c] = ps_ld(qr[c]);
    dos[c] = ps_ld(dor[c]);
    di += dos[c] * ps_ld(orow[c]);
  }
  di = ps_block_sum(di, red); /* also a barrier for qs, dos */

  for (int64_t j = warp; j < d.Tk; j += ATT_WARPS) {
    float s = logit(d, g, qs, kb, b, h, i, j, lane);
    float p = s == -INFINITY ? 0.0f : expf(s - L);
    const T *vr = vb + j * g.ldv;
    float dp = 0.0f;
    for (int64_t c = lane; c < d.D; c += 32) dp += dos[c] * ps_ld(vr[c]);
    dp = ps_warp_sum(dp);
    float dsj = p * (dp - di);
    if (lane == 0) ds[j] = dsj;
    if (p != 0.0f) {
      int64_t kvrow = b * d.Tk + j;
      if (dv)
        for (int64_t c = lane; c < d.D; c += 32) atomicAdd(&dv[kvrow * ldgv + kvh * d.D + c], p * dos[c]);
      if (dk)
        for (int64_t c = lane; c < d.D; c += 32)
          atomicAdd(&dk[kvrow * ldgk + kvh * d.D + c], d.scale * dsj * qs[c]);
      if (lane == 0) {
        if (dbias) atomicAdd(&dbias[b * d.bias_sb + h * d.bias_sh + i * d.Tk + j], dsj);
        if (drel_h) atomicAdd(&drel_h[bhi * d.rel_kh + j / d.rel_kw], dsj);
        if (drel_w) atomicAdd(&drel_w[bhi * d.rel_kw + j % d.rel_kw], dsj);
      }
    }
  }
  __syncthreads();
  if (dq) {
    weighted_rows(acc, part, ds, kb, g.ldk, d.Tk, d.D);
    T *dqr = dq + (b * d.Tq + i) * g.ldq + h * d.D;
    for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) ps_acc(&dqr[c], d.scale * acc[c]);
  }
}

int64_t ps_cuda_attention_scratch(const ps_attention_desc *d, int backward) { return 0; }

/* Dynamic shared memory for a block, raising the kernel's limit past the
 * default 48 KB when the row of logits needs it. */
template <typename K>
static size_t prepare_smem(K kernel, const ps_attention_desc *d, int extra_d) {
  size_t bytes = sizeof(float) * (size_t)(d->Tk + (2 + extra_d) * d->D + ATT_THREADS + 32);
  if (bytes > 48 * 1024) {
    int dev = 0, max_optin = 0;
    PS_CUDA_CHECK(cudaGetDevice(&dev));
    PS_CUDA_CHECK(cudaDeviceGetAttribute(&max_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev));
    if (bytes > (size_t)max_optin) {
      fprintf(stderr, "pathseg-cuda: attention with Tk = %lld keys needs %zu bytes of shared "
              "memory per block; this device allows %d\n", (long long)d->Tk, bytes, max_optin);
      abort();
    }
    PS_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
  }
  return bytes;
}

static bool launchable(const ps_attention_desc *d) {
  return d->B > 0 && d->Hq > 0 && d->Tq > 0 && d->D > 0 && d->Hkv > 0 && d->Hq <= 65535 &&
         d->B <= 65535;
}

template <typename T>
static void attention_forward(T *out, float *lse, const T *q, const T *k, const T *v,
                              const ps_attention_desc *d) {
  if (!launchable(d)) return;
  if (d->Tk == 0) { /* no keys: every row is fully masked */
    att::geom g = att::geometry(*d);
    PS_CUDA_CHECK(cudaMemset2DAsync(out, g.ldo * sizeof(T), 0, d->Hq * d->D * sizeof(T),
                                    d->B * d->Tq));
    if (lse) ps_cuda_fill(lse, -INFINITY, d->B * d->Hq * d->Tq);
    return;
  }
  if (tiled_wanted() && ps_cuda_attention_tiled_forward(out, lse, q, k, v, d)) return;
  size_t smem = prepare_smem(attention_fwd<T>, d, 0);
  dim3 grid((unsigned)d->Tq, (unsigned)d->Hq, (unsigned)d->B);
  attention_fwd<T><<<grid, ATT_THREADS, smem>>>(out, lse, q, k, v, *d, att::geometry(*d));
  PS_CUDA_LAUNCHED();
}

template <typename T>
static void attention_backward(T *dq, float *dk, float *dv, int64_t ldgk, int64_t ldgv,
                               float *dbias, float *drel_h, float *drel_w, const T *dout,
                               const T *q, const T *k, const T *v, const T *out, const float *lse,
                               const ps_attention_desc *d) {
  size_t smem = prepare_smem(attention_bwd<T>, d, 1);
  dim3 grid((unsigned)d->Tq, (unsigned)d->Hq, (unsigned)d->B);
  attention_bwd<T><<<grid, ATT_THREADS, smem>>>(dq, dk, dv, ldgk, ldgv, dbias, drel_h, drel_w,
                                                dout, q, k, v, out, lse, *d, att::geometry(*d));
  PS_CUDA_LAUNCHED();
}

void ps_cuda_attention_forward(float *out, float *lse, const float *q, const float *k,
                               const float *v, const ps_attention_desc *d, float *scratch,
                               int64_t scratch_floats) {
  /* out, q, k, v: see ps_attention_desc; lse: (B, Hq, Tq) or NULL */
  attention_forward(out, lse, q, k, v, d);
}

void ps_cuda_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                                float *drel_w, const float *dout, const float *q, const float *k,
                                const float *v, const float *out, const float *lse,
                                const ps_attention_desc *d, float *scratch,
                                int64_t scratch_floats) {
  /* dq, dk, dv: like q, k, v; dbias: like d->bias; drel_h, drel_w: like rel_h, rel_w */
  if (!launchable(d) || d->Tk == 0) return;
  if (tiled_wanted() && ps_cuda_attention_tiled_backward(dq, dk, dv, dbias, drel_h, drel_w, dout,
                                                         q, k, v, out, lse, d))
    return;
  att::geom g = att::geometry(*d);
  attention_backward(dq, dk, dv, g.ldk, g.ldv, dbias, drel_h, drel_w, dout, q, k, v, out, lse, d);
}

/* ---- bf16 storage ---- */

/* dk, dv (bf16, row strides ldk, ldv) += their f32 sums (dense rows of Hkv*D). */
__global__ static void add_kv_grads(ps_cuda_bf16 *dk, ps_cuda_bf16 *dv, const float *sk,
                                    const float *sv, int64_t rows, int64_t width, int64_t ldk,
                                    int64_t ldv) {
  PS_GRID_STRIDE(i, rows * width) {
    int64_t r = i / width, c = i % width;
    if (dk) ps_acc(&dk[r * ldk + c], sk[i]);
    if (dv) ps_acc(&dv[r * ldv + c], sv[i]);
  }
}

int64_t ps_cuda_attention_scratch_bf16(const ps_attention_desc *d, int backward) {
  /* backward: f32 sums of dk and dv, (B, Tk, Hkv, D) each */
  if (!backward || d->B <= 0 || d->Tk <= 0 || d->Hkv <= 0 || d->D <= 0) return 0;
  return 2 * d->B * d->Tk * d->Hkv * d->D;
}

void ps_cuda_attention_forward_bf16(ps_bf16 *out, float *lse, const ps_bf16 *q, const ps_bf16 *k,
                                    const ps_bf16 *v, const ps_attention_desc *d, float *scratch,
                                    int64_t scratch_floats) {
  /* out, q, k, v: bf16, see ps_attention_desc; lse: (B, Hq, Tq) f32 or NULL */
  attention_forward(ps_bf(out), lse, ps_bf(q), ps_bf(k), ps_bf(v), d);
}

void ps_cuda_attention_backward_bf16(ps_bf16 *dq, ps_bf16 *dk, ps_bf16 *dv, float *dbias,
                                     float *drel_h, float *drel_w, const ps_bf16 *dout,
                                     const ps_bf16 *q, const ps_bf16 *k, const ps_bf16 *v,
                                     const ps_bf16 *out, const float *lse,
                                     const ps_attention_desc *d, float *scratch,
                                     int64_t scratch_floats) {
  /* dq, dk, dv, dout, q, k, v, out: bf16 like q, k, v, out; lse, dbias, drel_*: f32;
   * scratch: attention_scratch_bf16(d, 1) floats for the f32 sums of dk, dv */
  if (!launchable(d) || d->Tk == 0) return;
  /* the tiled dK/dV blocks own their rows and sum in f32 registers: no scratch */
  if (tiled_wanted() &&
      ps_cuda_attention_tiled_backward(ps_bf(dq), ps_bf(dk), ps_bf(dv), dbias, drel_h, drel_w,
                                       ps_bf(dout), ps_bf(q), ps_bf(k), ps_bf(v), ps_bf(out), lse,
                                       d))
    return;
  att::geom g = att::geometry(*d);
  int64_t width = d->Hkv * d->D, rows = d->B * d->Tk, nkv = rows * width;
  float *sk = NULL, *sv = NULL;
  if (dk || dv) {
    if (!scratch || scratch_floats < 2 * nkv) return; /* documented: writes nothing */
    sk = scratch, sv = scratch + nkv;
    PS_CUDA_CHECK(cudaMemsetAsync(scratch, 0, (size_t)(2 * nkv) * sizeof(float)));
  }
  attention_backward(ps_bf(dq), dk ? sk : NULL, dv ? sv : NULL, width, width, dbias, drel_h,
                     drel_w, ps_bf(dout), ps_bf(q), ps_bf(k), ps_bf(v), ps_bf(out), lse, d);
  if (dk || dv) {
    add_kv_grads<<<ps_blocks(nkv), PS_THREADS>>>(ps_bf(dk), ps_bf(dv), sk, sv, rows, width, g.ldk,
                                                 g.ldv);
    PS_CUDA_LAUNCHED();
  }
}
