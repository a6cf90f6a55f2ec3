/* losses.cu — embedding lookup / scatter-add, vocabulary cross-entropy with
 * ignore_index, and the mask losses (BCE with logits, soft Dice) on the GPU,
 * with the semantics of kernels/cpu/embedding.c and loss.c.
 *
 * crossentropy returns its loss to the host, so it synchronises; its running
 * sums live in static __device__ variables (the op allocates nothing), which
 * makes concurrent crossentropy calls from several host threads unsafe.
 * Mask-loss sums accumulate in double, as on the CPU. Embedding backward and
 * cross-entropy totals use atomics (not bit-reproducible run to run). */
#include "common.cuh"
#include "ops.cuh"

/* ---- embedding (templates over the table/activation storage type T; the
 * table gradient is f32 in both entries) ---- */

template <typename T>
__global__ static void embedding_fwd(T *out, const int32_t *ids, const T *table, int64_t N,
                                     int64_t V, int64_t C) {
  PS_GRID_STRIDE(i, N * C) {
    int64_t n = i / C, c = i % C, id = ids[n];
    out[i] = id >= 0 && id < V ? table[id * C + c] : ps_st<T>(0.0f);
  }
}
template <typename T>
__global__ static void embedding_bwd(float *dtable, const int32_t *ids, const T *dout, int64_t N,
                                     int64_t V, int64_t C) {
  PS_GRID_STRIDE(i, N * C) {
    int64_t n = i / C, c = i % C, id = ids[n];
    if (id >= 0 && id < V) atomicAdd(&dtable[id * C + c], ps_ld(dout[i]));
  }
}
void ps_cuda_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                               int64_t V, int64_t C) {
  /* out: (N, C); ids: (N); table: (V, C) */
  if (N * C <= 0) return;
  embedding_fwd<float><<<ps_blocks(N * C), PS_THREADS>>>(out, ids, table, N, V, C);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                                int64_t V, int64_t C) {
  /* dtable: (V, C) += scatter of dout: (N, C) */
  if (N * C <= 0) return;
  embedding_bwd<float><<<ps_blocks(N * C), PS_THREADS>>>(dtable, ids, dout, N, V, C);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_embedding_forward_bf16(ps_bf16 *out, const int32_t *ids, const ps_bf16 *table,
                                    int64_t N, int64_t V, int64_t C) {
  /* out: (N, C) bf16; ids: (N); table: (V, C) bf16 */
  if (N * C <= 0) return;
  embedding_fwd<ps_cuda_bf16><<<ps_blocks(N * C), PS_THREADS>>>(ps_bf(out), ids, ps_bf(table), N,
                                                               V, C);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_embedding_backward_bf16(float *dtable, const int32_t *ids, const ps_bf16 *dout,
                                     int64_t N, int64_t V, int64_t C) {
  /* dtable: (V, C) f32 += scatter of dout: (N, C) bf16 */
  if (N * C <= 0) return;
  embedding_bwd<ps_cuda_bf16><<<ps_blocks(N * C), PS_THREADS>>>(dtable, ids, ps_bf(dout), N, V,
                                                               C);
  PS_CUDA_LAUNCHED();
}

/* ---- cross-entropy ---- */

__device__ static double g_ce_total;
__device__ static unsigned long long g_ce_valid;

__global__ static void ce_count(const int32_t *targets, int64_t N, int64_t V, int32_t ignore) {
  unsigned long long local = 0;
  PS_GRID_STRIDE(n, N) {
    int32_t t = targets[n];
    local += t != ignore && t >= 0 && t < V;
  }
  if (local) atomicAdd(&g_ce_valid, local);
}

/* One block per row; T is the storage type of logits and dlogits. */
template <typename T>
__global__ static void ce_rows(T *dlogits, float *row_loss, const T *logits,
                               const int32_t *targets, int64_t N, int64_t V, int32_t ignore,
                               float denom, float dloss) {
  __shared__ float red[32];
  int64_t n = blockIdx.x;
  const T *x = logits + n * V;
  int32_t t = targets[n];
  bool inplace = dlogits == logits;
  if (t == ignore || t < 0 || t >= V) {
    if (threadIdx.x == 0 && row_loss) row_loss[n] = 0.0f;
    if (inplace)
      for (int64_t j = threadIdx.x; j < V; j += blockDim.x) dlogits[n * V + j] = ps_st<T>(0.0f);
    return;
  }
  double den = denom > 0.0f ? (double)denom : (double)g_ce_valid;
  float gscale = den > 0.0 ? (float)(dloss / den) : 0.0f;
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) mx = fmaxf(mx, ps_ld(x[j]));
  mx = ps_block_max(mx, red);
  float s = 0.0f;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) s += expf(ps_ld(x[j]) - mx);
  s = ps_block_sum(s, red);
  float lse = mx + logf(s);
  float xt = ps_ld(x[t]); /* read before an in-place gradient overwrites it */
  __syncthreads();
  if (dlogits) {
    T *g = dlogits + n * V;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float p = gscale * expf(ps_ld(x[j]) - lse) - (j == t ? gscale : 0.0f);
      g[j] = ps_st<T>(inplace ? p : ps_ld(g[j]) + p);
    }
  }
  if (threadIdx.x == 0) {
    float loss = lse - xt;
    if (row_loss) row_loss[n] = loss;
    atomicAdd(&g_ce_total, (double)loss);
  }
}

template <typename T>
static float crossentropy(T *dlogits, float *row_loss, const T *logits, const int32_t *targets,
                          int64_t N, int64_t V, int32_t ignore_index, float denom, float dloss) {
  double zero = 0.0;
  unsigned long long zc = 0;
  PS_CUDA_CHECK(cudaMemcpyToSymbol(g_ce_total, &zero, sizeof zero));
  PS_CUDA_CHECK(cudaMemcpyToSymbol(g_ce_valid, &zc, sizeof zc));
  if (N <= 0) return 0.0f;
  ce_count<<<ps_blocks(N), PS_THREADS>>>(targets, N, V, ignore_index);
  PS_CUDA_LAUNCHED();
  for (int64_t n0 = 0; n0 < N; n0 += 2147483647LL) {
    int64_t rows = N - n0 < 2147483647LL ? N - n0 : 2147483647LL;
    ce_rows<T><<<(unsigned)rows, 256>>>(dlogits ? dlogits + n0 * V : NULL,
                                        row_loss ? row_loss + n0 : NULL, logits + n0 * V,
                                        targets + n0, rows, V, ignore_index, denom, dloss);
    PS_CUDA_LAUNCHED();
  }
  double total = 0.0;
  unsigned long long valid = 0;
  PS_CUDA_CHECK(cudaMemcpyFromSymbol(&total, g_ce_total, sizeof total));
  PS_CUDA_CHECK(cudaMemcpyFromSymbol(&valid, g_ce_valid, sizeof valid));
  double den = denom > 0.0f ? (double)denom : (double)valid;
  return den > 0.0 ? (float)(total / den) : 0.0f;
}

float ps_cuda_crossentropy(float *dlogits, float *row_loss, const float *logits,
                           const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                           float denom, float dloss) {
  /* dlogits: (N, V) or NULL; row_loss: (N) or NULL; logits: (N, V); targets: (N) */
  return crossentropy(dlogits, row_loss, logits, targets, N, V, ignore_index, denom, dloss);
}

float ps_cuda_crossentropy_bf16(ps_bf16 *dlogits, float *row_loss, const ps_bf16 *logits,
                                const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                                float denom, float dloss) {
  /* dlogits: (N, V) bf16 or NULL; row_loss: (N) f32 or NULL; logits: (N, V) bf16; targets: (N) */
  return crossentropy(ps_bf(dlogits), row_loss, ps_bf(logits), targets, N, V, ignore_index, denom,
                      dloss);
}

/* ---- mask losses: one block per mask ---- */

__device__ __forceinline__ double block_sum_d(double v, double *shared) {
  int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  __syncthreads();
  if (lane == 0) shared[warp] = v;
  __syncthreads();
  v = lane < nwarps ? shared[lane] : 0.0;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

__device__ __forceinline__ float sigm(float x) { return 1.0f / (1.0f + expf(-x)); }

__global__ static void bce_fwd(float *losses, const float *logits, const float *targets,
                               int64_t P) {
  __shared__ double red[32];
  const float *x = logits + blockIdx.x * P, *t = targets + blockIdx.x * P;
  double s = 0.0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x)
    s += (double)(fmaxf(x[i], 0.0f) - x[i] * t[i] + log1pf(expf(-fabsf(x[i]))));
  s = block_sum_d(s, red);
  if (threadIdx.x == 0) losses[blockIdx.x] = P > 0 ? (float)(s / (double)P) : 0.0f;
}
__global__ static void bce_bwd(float *dlogits, const float *dlosses, const float *logits,
                               const float *targets, int64_t M, int64_t P) {
  PS_GRID_STRIDE(i, M * P) {
    int64_t m = i / P;
    dlogits[i] += dlosses[m] / (float)P * (sigm(logits[i]) - targets[i]);
  }
}
void ps_cuda_bce_logits_forward(float *losses, const float *logits, const float *targets,
                                int64_t M, int64_t P) {
  /* losses: (M); logits, targets: (M, P) */
  if (M <= 0) return;
  bce_fwd<<<(unsigned)M, 256>>>(losses, logits, targets, P);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_bce_logits_backward(float *dlogits, const float *dlosses, const float *logits,
                                 const float *targets, int64_t M, int64_t P) {
  /* dlogits: (M, P) += dlosses[m] * (sigmoid(x) - t) / P */
  if (M * P <= 0) return;
  bce_bwd<<<ps_blocks(M * P), PS_THREADS>>>(dlogits, dlosses, logits, targets, M, P);
  PS_CUDA_LAUNCHED();
}

/* Dice sums for the block's mask; every thread gets num and den. */
__device__ static void dice_sums(const float *x, const float *t, int64_t P, ps_dice_desc d,
                                 double *red, double *num, double *den) {
  double spt = 0.0, sp = 0.0, st = 0.0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    float p = sigm(x[i]);
    spt += (double)(p * t[i]);
    sp += (double)(d.squared ? p * p : p);
    st += (double)(d.squared ? t[i] * t[i] : t[i]);
  }
  spt = block_sum_d(spt, red);
  sp = block_sum_d(sp, red);
  st = block_sum_d(st, red);
  *num = 2.0 * spt / d.scale + d.smooth_nr;
  *den = (sp + st) / d.scale + d.smooth_dr;
}
__global__ static void dice_fwd(float *losses, const float *logits, const float *targets,
                                int64_t P, ps_dice_desc d) {
  __shared__ double red[32];
  double num, den;
  dice_sums(logits + blockIdx.x * P, targets + blockIdx.x * P, P, d, red, &num, &den);
  if (threadIdx.x == 0) losses[blockIdx.x] = (float)(1.0 - num / den);
}
__global__ static void dice_bwd(float *dlogits, const float *dlosses, const float *logits,
                                const float *targets, int64_t P, ps_dice_desc d) {
  __shared__ double red[32];
  int64_t m = blockIdx.x;
  const float *x = logits + m * P, *t = targets + m * P;
  double num, den;
  dice_sums(x, t, P, d, red, &num, &den);
  float a = (float)(-2.0 / (d.scale * den)) * dlosses[m];
  float b = (float)(num / (den * den * d.scale)) * dlosses[m];
  float *g = dlogits + m * P;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    float p = sigm(x[i]);
    float dp = a * t[i] + b * (d.squared ? 2.0f * p : 1.0f);
    g[i] += dp * p * (1.0f - p);
  }
}
void ps_cuda_dice_forward(float *losses, const float *logits, const float *targets, int64_t M,
                          int64_t P, const ps_dice_desc *d) {
  /* losses: (M); logits, targets: (M, P) */
  if (M <= 0) return;
  dice_fwd<<<(unsigned)M, 512>>>(losses, logits, targets, P, *d);
  PS_CUDA_LAUNCHED();
}
void ps_cuda_dice_backward(float *dlogits, const float *dlosses, const float *logits,
                           const float *targets, int64_t M, int64_t P, const ps_dice_desc *d) {
  /* dlogits: (M, P) += dlosses[m] * dloss_m / dlogits */
  if (M <= 0) return;
  dice_bwd<<<(unsigned)M, 512>>>(dlogits, dlosses, logits, targets, P, *d);
  PS_CUDA_LAUNCHED();
}

/* Hard overlap counts: one block per mask, integer partial counts per thread,
 * a shared-memory tree (integers: exact in any order). */
__global__ static void mask_counts_k(int64_t *counts, const float *logits, const float *targets,
                                     int64_t P) {
  __shared__ unsigned long long red[3][512];
  int64_t m = blockIdx.x;
  const float *x = logits + m * P, *t = targets + m * P;
  unsigned long long np = 0, nt = 0, both = 0;
  for (int64_t i = threadIdx.x; i < P; i += blockDim.x) {
    int pi = x[i] > 0.0f, ti = t[i] > 0.5f;
    np += pi;
    nt += ti;
    both += pi & ti;
  }
  red[0][threadIdx.x] = np, red[1][threadIdx.x] = nt, red[2][threadIdx.x] = both;
  __syncthreads();
  for (int s = blockDim.x / 2; s > 0; s >>= 1) {
    if ((int)threadIdx.x < s)
      for (int j = 0; j < 3; j++) red[j][threadIdx.x] += red[j][threadIdx.x + s];
    __syncthreads();
  }
  if (threadIdx.x < 3) counts[3 * m + threadIdx.x] = (int64_t)red[threadIdx.x][0];
}

void ps_cuda_mask_counts(int64_t *counts, const float *logits, const float *targets, int64_t M,
                         int64_t P) {
  /* counts: (M, 3); logits, targets: (M, P) */
  if (M <= 0) return;
  mask_counts_k<<<(unsigned)M, 512>>>(counts, logits, targets, P);
  PS_CUDA_LAUNCHED();
}
