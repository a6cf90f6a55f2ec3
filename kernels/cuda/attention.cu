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
 * of Tk logits: Tk up to ~50k keys on sm_80/sm_90. No scratch is needed. */
#include "common.cuh"
#include "ops.cuh"

static const int ATT_THREADS = 128;
static const int ATT_WARPS = ATT_THREADS / 32;

struct att_geom {
  int64_t ldq, ldk, ldv, ldo, rep;
};

static att_geom geometry(const ps_attention_desc *d) {
  att_geom g;
  g.ldq = d->ldq ? d->ldq : d->Hq * d->D;
  g.ldk = d->ldk ? d->ldk : d->Hkv * d->D;
  g.ldv = d->ldv ? d->ldv : d->Hkv * d->D;
  g.ldo = d->ldo ? d->ldo : d->Hq * d->D;
  g.rep = d->Hq / d->Hkv;
  return g;
}

/* The logit of key j for query row (b, h, i) before softmax; -inf if masked.
 * qs: the query row in shared memory. Called by a whole warp; all lanes get it. */
__device__ __forceinline__ float logit(const ps_attention_desc &d, const att_geom &g,
                                       const float *qs, const float *kb, int64_t b, int64_t h,
                                       int64_t i, int64_t j, int lane) {
  const float *kr = kb + j * g.ldk;
  float s = 0.0f;
  for (int64_t c = lane; c < d.D; c += 32) s += qs[c] * kr[c];
  s = ps_warp_sum(s) * d.scale;
  if (d.causal && j > i + (d.Tk - d.Tq)) return -INFINITY;
  if (d.bias) s += d.bias[b * d.bias_sb + h * d.bias_sh + i * d.Tk + j];
  if (d.rel_h) {
    int64_t row = (b * d.Hq + h) * d.Tq + i;
    s += d.rel_h[row * d.rel_kh + j / d.rel_kw] + d.rel_w[row * d.rel_kw + j % d.rel_kw];
  }
  return s;
}

/* acc[c] = sum_j w[j] * rows[j * ld + c] for c < D, by all threads of the
 * block: thread t takes column c = t % D of key group t / D; partial sums are
 * reduced in shared memory `part` (ATT_THREADS floats). Returns through
 * `result` (D floats of shared memory). */
__device__ static void weighted_rows(float *result, float *part, const float *w,
                                     const float *rows, int64_t ld, int64_t Tk, int64_t D) {
  for (int64_t c0 = 0; c0 < D; c0 += ATT_THREADS) {
    int64_t width = D - c0 < ATT_THREADS ? D - c0 : ATT_THREADS;
    int groups = (int)(ATT_THREADS / width);
    int t = threadIdx.x, grp = (int)(t / width);
    int64_t c = c0 + t % width;
    float acc = 0.0f;
    if (grp < groups)
      for (int64_t j = grp; j < Tk; j += groups) acc += w[j] * rows[j * ld + c];
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

__global__ static void attention_fwd(float *out, float *lse, const float *q, const float *k,
                                     const float *v, ps_attention_desc d, att_geom g) {
  extern __shared__ float sm[];
  float *qs = sm;              /* (D) */
  float *part = qs + d.D;      /* (ATT_THREADS) */
  float *red = part + ATT_THREADS; /* (32) */
  float *row = red + 32;       /* (Tk) logits, then weights */
  float *acc = row + d.Tk;     /* (D) */
  int64_t i = blockIdx.x, h = blockIdx.y, b = blockIdx.z, kvh = h / g.rep;
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const float *qr = q + (b * d.Tq + i) * g.ldq + h * d.D;
  const float *kb = k + b * d.Tk * g.ldk + kvh * d.D;
  const float *vb = v + b * d.Tk * g.ldv + kvh * d.D;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) qs[c] = qr[c];
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
  float *orow = out + (b * d.Tq + i) * g.ldo + h * d.D;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) orow[c] = acc[c] * inv;
  if (lse && threadIdx.x == 0)
    lse[(b * d.Hq + h) * d.Tq + i] = sum > 0.0f ? mx + logf(sum) : -INFINITY;
}

__global__ static void attention_bwd(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                                     float *drel_w, const float *dout, const float *q,
                                     const float *k, const float *v, const float *out,
                                     const float *lse, ps_attention_desc d, att_geom g) {
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
  const float *qr = q + (b * d.Tq + i) * g.ldq + h * d.D;
  const float *dor = dout + (b * d.Tq + i) * g.ldo + h * d.D;
  const float *orow = out + (b * d.Tq + i) * g.ldo + h * d.D;
  const float *kb = k + b * d.Tk * g.ldk + kvh * d.D;
  const float *vb = v + b * d.Tk * g.ldv + kvh * d.D;
  float di = 0.0f;
  for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) {
    qs[c] = qr[c];
    dos[c] = dor[c];
    di += dor[c] * orow[c];
  }
  di = ps_block_sum(di, red); /* also a barrier for qs, dos */

  for (int64_t j = warp; j < d.Tk; j += ATT_WARPS) {
    float s = logit(d, g, qs, kb, b, h, i, j, lane);
    float p = s == -INFINITY ? 0.0f : expf(s - L);
    const float *vr = vb + j * g.ldv;
    float dp = 0.0f;
    for (int64_t c = lane; c < d.D; c += 32) dp += dos[c] * vr[c];
    dp = ps_warp_sum(dp);
    float dsj = p * (dp - di);
    if (lane == 0) ds[j] = dsj;
    if (p != 0.0f) {
      int64_t kvrow = b * d.Tk + j;
      if (dv)
        for (int64_t c = lane; c < d.D; c += 32) atomicAdd(&dv[kvrow * g.ldv + kvh * d.D + c], p * dos[c]);
      if (dk)
        for (int64_t c = lane; c < d.D; c += 32)
          atomicAdd(&dk[kvrow * g.ldk + kvh * d.D + c], d.scale * dsj * qs[c]);
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
    float *dqr = dq + (b * d.Tq + i) * g.ldq + h * d.D;
    for (int64_t c = threadIdx.x; c < d.D; c += ATT_THREADS) dqr[c] += d.scale * acc[c];
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

void ps_cuda_attention_forward(float *out, float *lse, const float *q, const float *k,
                               const float *v, const ps_attention_desc *d, float *scratch,
                               int64_t scratch_floats) {
  /* out, q, k, v: see ps_attention_desc; lse: (B, Hq, Tq) or NULL */
  if (!launchable(d)) return;
  if (d->Tk == 0) { /* no keys: every row is fully masked */
    att_geom g = geometry(d);
    PS_CUDA_CHECK(cudaMemset2DAsync(out, g.ldo * sizeof(float), 0, d->Hq * d->D * sizeof(float),
                                    d->B * d->Tq));
    if (lse) ps_cuda_fill(lse, -INFINITY, d->B * d->Hq * d->Tq);
    return;
  }
  size_t smem = prepare_smem(attention_fwd, d, 0);
  dim3 grid((unsigned)d->Tq, (unsigned)d->Hq, (unsigned)d->B);
  attention_fwd<<<grid, ATT_THREADS, smem>>>(out, lse, q, k, v, *d, geometry(d));
  PS_CUDA_LAUNCHED();
}

void ps_cuda_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                                float *drel_w, const float *dout, const float *q, const float *k,
                                const float *v, const float *out, const float *lse,
                                const ps_attention_desc *d, float *scratch,
                                int64_t scratch_floats) {
  /* dq, dk, dv: like q, k, v; dbias: like d->bias; drel_h, drel_w: like rel_h, rel_w */
  if (!launchable(d) || d->Tk == 0) return;
  size_t smem = prepare_smem(attention_bwd, d, 1);
  dim3 grid((unsigned)d->Tq, (unsigned)d->Hq, (unsigned)d->B);
  attention_bwd<<<grid, ATT_THREADS, smem>>>(dq, dk, dv, dbias, drel_h, drel_w, dout, q, k, v, out,
                                             lse, *d, geometry(d));
  PS_CUDA_LAUNCHED();
}
