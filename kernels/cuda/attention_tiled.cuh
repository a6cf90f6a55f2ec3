/* attention_tiled.cuh — the tiled (FlashAttention-2 style) attention
 * algorithm, written once for the CUDA kernels in attention_tiled.cu.
 *
 * Each kernel's body is a "block driver": a sequence of phases separated by
 * barriers. A phase is a lambda f(t, st) run by every thread t of the block
 * with its private registers st; the executor X runs a phase and then the
 * barrier (on the GPU: f(threadIdx.x, regs); __syncthreads()). Keeping the
 * barrier inside X::phase means every __syncthreads() is reached by the whole
 * block (phase sequencing depends only on block-uniform values), and lets the
 * same drivers run on the host with an executor that loops over the threads
 * of a phase — which is how this file was checked against the CPU kernels
 * before it ever ran on a GPU. No phase may read what another thread of the
 * same phase writes (shared-memory races); only atomics (att_atomic_add) mix.
 *
 * Tiles: BQ = 64 query rows x BK = 64 keys, NT = 256 threads seen as a 16 x
 * 16 grid (ty = t / 16, tx = t % 16). A thread owns rows ty + 16a (a < 4) and
 * columns tx + 16b of every BQ x BK or BQ x DP / BK x DP product, so that
 * shared-memory reads are broadcasts (rows) or consecutive (columns). Head
 * dims are padded with zeros to DP (a multiple of 16, DP <= 128); tiles in
 * shared memory have row stride DP + 1 (or BK + 1) against bank conflicts.
 *
 * The includer defines ps_ld(T) -> float, ps_st<T>(float) and ps_acc(T *,
 * float) (common.cuh under nvcc); elsewhere (the host test) also ATT_HD
 * (function qualifiers) and att_atomic_add(float *, float), which nvcc gets
 * here. geometry() and logit() serve the row kernels (attention.cu) too. */
#pragma once

#include <math.h>
#include <stdint.h>

#include <pathseg/kernels.h>

#ifdef __CUDACC__
#define ATT_HD __device__ __forceinline__
__device__ __forceinline__ void att_atomic_add(float *p, float v) { atomicAdd(p, v); }
#endif

namespace att {

constexpr int BQ = 64, BK = 64, NT = 256;

/* Row strides of q, k, v and out (a 0 in the descriptor means dense rows),
 * and how many query heads share a key/value head. */
struct geom {
  int64_t ldq, ldk, ldv, ldo, rep;
};

inline geom geometry(const ps_attention_desc &d) {
  geom g;
  g.ldq = d.ldq ? d.ldq : d.Hq * d.D;
  g.ldk = d.ldk ? d.ldk : d.Hkv * d.D;
  g.ldv = d.ldv ? d.ldv : d.Hkv * d.D;
  g.ldo = d.ldo ? d.ldo : d.Hq * d.D;
  g.rep = d.Hq / d.Hkv;
  return g;
}

/* What the kernels read: the descriptor, its strides, and the pointers. */
template <typename T> struct args : geom {
  ps_attention_desc d;
  T *out;
  float *lse; /* forward: may be NULL; backward: the forward's */
  const T *q, *k, *v;
  T *dq, *dk, *dv;
  const T *dout, *o;
  float *dbias, *drel_h, *drel_w;
  int rel_smem; /* dq kernel: sum drel_* per query tile in shared memory */
};

/* Floats of shared memory each kernel uses (see the drivers' layouts). */
template <int DP> constexpr int64_t fwd_smem_floats() {
  return (int64_t)BQ * (DP + 1) + 2 * (int64_t)BK * (DP + 1) + (int64_t)BQ * (BK + 1) + 4 * BQ +
         2 * NT;
}
template <int DP> constexpr int64_t dkv_smem_floats() {
  return 2 * (int64_t)BK * (DP + 1) + 2 * (int64_t)BQ * (DP + 1) + 2 * (int64_t)BQ * (BK + 1) +
         BQ + NT;
}
template <int DP> inline int64_t dq_smem_floats(int64_t rel_floats) {
  return 2 * (int64_t)BQ * (DP + 1) + 2 * (int64_t)BK * (DP + 1) + (int64_t)BQ * (BK + 1) + BQ +
         NT + rel_floats;
}

/* The logit of key j for query (b, h, i), both in range, from their dot
 * product; -inf if masked. The row kernels (attention.cu) use it too. */
ATT_HD float logit(const ps_attention_desc &d, float dot, int64_t b, int64_t h, int64_t i,
                   int64_t j) {
  float s = dot * d.scale;
  if (d.causal && j > i + (d.Tk - d.Tq)) return -INFINITY;
  if (d.bias) s += d.bias[b * d.bias_sb + h * d.bias_sh + i * d.Tk + j];
  if (d.rel_h) {
    int64_t row = (b * d.Hq + h) * d.Tq + i;
    s += d.rel_h[row * d.rel_kh + j / d.rel_kw] + d.rel_w[row * d.rel_kw + j % d.rel_kw];
  }
  return s;
}

/* Key tiles [0, end) that query rows [i0, i0 + BQ) can see. */
ATT_HD int64_t key_end(const ps_attention_desc &d, int64_t i0) {
  if (!d.causal) return d.Tk;
  int64_t e = i0 + BQ + d.Tk - d.Tq; /* last visible key + 1 */
  return e < 0 ? 0 : (e < d.Tk ? e : d.Tk);
}

/* rows x DP tile of a token-major tensor into shared memory (stride DP + 1),
 * rows n0.. of `base` (row stride ld), zero beyond n or D. */
template <typename T, int DP>
ATT_HD void load_tile(float *dst, int rows, const T *base, int64_t ld, int64_t n0, int64_t n,
                      int64_t D, int t) {
  for (int idx = t; idx < rows * DP; idx += NT) {
    int r = idx / DP, c = idx % DP;
    int64_t row = n0 + r;
    dst[r * (DP + 1) + c] = (row < n && c < D) ? ps_ld(base[row * ld + c]) : 0.0f;
  }
}

/* acc[u][w] += sum_{k < K} A[(ty + 16u) * a_row + k * a_k] * B[k * b_k + (tx + 16w) * b_col]:
 * this thread's 4 x W block of a product of two shared-memory tiles (rows
 * ty + 16u, columns tx + 16w), summed in k order. */
template <int W, int K>
ATT_HD void tile_mac(float (&acc)[4][W], const float *A, int a_row, int a_k, const float *B,
                     int b_k, int b_col, int ty, int tx) {
#pragma unroll 4
  for (int k = 0; k < K; k++) {
    float av[4], bv[W];
#pragma unroll
    for (int u = 0; u < 4; u++) av[u] = A[(ty + 16 * u) * a_row + k * a_k];
#pragma unroll
    for (int w = 0; w < W; w++) bv[w] = B[k * b_k + (tx + 16 * w) * b_col];
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int w = 0; w < W; w++) acc[u][w] += av[u] * bv[w];
  }
}

template <int DP> struct fwd_regs {
  float o[4][DP / 16];
};

/* ---- forward: block (query tile qt, head h, batch b) ---- */
template <typename T, int DP, class X>
ATT_HD void fwd_block(X &x, const args<T> &a, int64_t qt, int64_t h, int64_t b, float *sm) {
  constexpr int LD = DP + 1, LS = BK + 1, NB = DP / 16;
  const ps_attention_desc &d = a.d;
  float *Qs = sm, *Ks = Qs + BQ * LD, *Vs = Ks + BK * LD, *Ss = Vs + BK * LD;
  float *mrow = Ss + BQ * LS, *lrow = mrow + BQ, *mnew = lrow + BQ, *alpha = mnew + BQ;
  float *red = alpha + BQ, *red2 = red + NT;
  const int64_t i0 = qt * BQ, kvh = h / a.rep;
  const T *qb = a.q + b * d.Tq * a.ldq + h * d.D;
  const T *kb = a.k + b * d.Tk * a.ldk + kvh * d.D;
  const T *vb = a.v + b * d.Tk * a.ldv + kvh * d.D;
  const int64_t kend = key_end(d, i0);

  x.phase([&](int t, fwd_regs<DP> &st) {
    load_tile<T, DP>(Qs, BQ, qb, a.ldq, i0, d.Tq, d.D, t);
    if (t < BQ) mrow[t] = -INFINITY, lrow[t] = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int w = 0; w < NB; w++) st.o[u][w] = 0.0f;
  });
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    x.phase([&](int t, fwd_regs<DP> &) {
      load_tile<T, DP>(Ks, BK, kb, a.ldk, j0, d.Tk, d.D, t);
      load_tile<T, DP>(Vs, BK, vb, a.ldv, j0, d.Tk, d.D, t);
    });
    /* S = logits of the tile */
    x.phase([&](int t, fwd_regs<DP> &) {
      int ty = t / 16, tx = t % 16;
      float acc[4][4];
#pragma unroll
      for (int u = 0; u < 4; u++)
#pragma unroll
        for (int w = 0; w < 4; w++) acc[u][w] = 0.0f;
      tile_mac<4, DP>(acc, Qs, LD, 1, Ks, 1, LD, ty, tx); /* Q K^T */
#pragma unroll
      for (int u = 0; u < 4; u++)
#pragma unroll
        for (int w = 0; w < 4; w++) {
          int r = ty + 16 * u, cc = tx + 16 * w;
          int64_t i = i0 + r, j = j0 + cc;
          Ss[r * LS + cc] = (i < d.Tq && j < d.Tk) ? logit(d, acc[u][w], b, h, i, j) : -INFINITY;
        }
    });
    /* online softmax: 4 threads per row; red = partial maxima */
    x.phase([&](int t, fwd_regs<DP> &) {
      int r = t >> 2, p = t & 3;
      float mx = -INFINITY;
      for (int n = 0; n < BK / 4; n++) mx = fmaxf(mx, Ss[r * LS + p + 4 * n]);
      red[t] = mx;
    });
    x.phase([&](int t, fwd_regs<DP> &) {
      int r = t >> 2, p = t & 3;
      float mo = mrow[r];
      float mn = fmaxf(mo, fmaxf(fmaxf(red[4 * r], red[4 * r + 1]), fmaxf(red[4 * r + 2], red[4 * r + 3])));
      float sum = 0.0f;
      for (int n = 0; n < BK / 4; n++) {
        float *s = &Ss[r * LS + p + 4 * n];
        float e = (mn == -INFINITY || *s == -INFINITY) ? 0.0f : expf(*s - mn);
        *s = e;
        sum += e;
      }
      red2[t] = sum;
      /* alpha rescales the old sums: exp(-inf) = 0 for a first visible tile;
       * nothing visible yet keeps everything 0 (alpha 1) */
      if (p == 0) mnew[r] = mn, alpha[r] = mn == -INFINITY ? 1.0f : expf(mo - mn);
    });
    /* O = alpha O + P V; row state update (rows t < BQ, read by nobody here) */
    x.phase([&](int t, fwd_regs<DP> &st) {
      if (t < BQ) {
        lrow[t] = alpha[t] * lrow[t] + ((red2[4 * t] + red2[4 * t + 1]) + (red2[4 * t + 2] + red2[4 * t + 3]));
        mrow[t] = mnew[t];
      }
      int ty = t / 16, tx = t % 16;
#pragma unroll
      for (int u = 0; u < 4; u++) {
        float al = alpha[ty + 16 * u];
#pragma unroll
        for (int w = 0; w < NB; w++) st.o[u][w] *= al;
      }
      tile_mac<NB, BK>(st.o, Ss, LS, 1, Vs, LD, 1, ty, tx); /* O += P V */
    });
  }
  /* out = O / l (0 for a fully masked row), lse = m + log l (-inf) */
  x.phase([&](int t, fwd_regs<DP> &st) {
    int ty = t / 16, tx = t % 16;
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int r = ty + 16 * u;
      int64_t i = i0 + r;
      if (i >= d.Tq) continue;
      float l = lrow[r], inv = l > 0.0f ? 1.0f / l : 0.0f;
      T *orow = a.out + (b * d.Tq + i) * a.ldo + h * d.D;
#pragma unroll
      for (int w = 0; w < NB; w++) {
        int c = tx + 16 * w;
        if (c < d.D) orow[c] = ps_st<T>(st.o[u][w] * inv);
      }
    }
    if (a.lse && t < BQ && i0 + t < d.Tq)
      a.lse[(b * d.Hq + h) * d.Tq + i0 + t] = lrow[t] > 0.0f ? mrow[t] + logf(lrow[t]) : -INFINITY;
  });
}

/* ---- backward, shared by both kernels ---- */

/* Q and dO tiles of query rows i0.. of head h, their lse (-inf beyond Tq),
 * and red[t] = a quarter of Delta_i = dO_i . O_i (row t / 4). */
template <typename T, int DP>
ATT_HD void bwd_load_q(const args<T> &a, float *Qs, float *dOs, float *lse_s, float *red, int64_t b,
                       int64_t h, int64_t i0, int t) {
  const ps_attention_desc &d = a.d;
  const T *qb = a.q + b * d.Tq * a.ldq + h * d.D;
  const T *db = a.dout + b * d.Tq * a.ldo + h * d.D;
  const T *ob = a.o + b * d.Tq * a.ldo + h * d.D;
  load_tile<T, DP>(Qs, BQ, qb, a.ldq, i0, d.Tq, d.D, t);
  load_tile<T, DP>(dOs, BQ, db, a.ldo, i0, d.Tq, d.D, t);
  if (t < BQ) lse_s[t] = i0 + t < d.Tq ? a.lse[(b * d.Hq + h) * d.Tq + i0 + t] : -INFINITY;
  int r = t >> 2, p = t & 3;
  int64_t i = i0 + r;
  float s = 0.0f;
  if (i < d.Tq)
    for (int64_t c = p; c < d.D; c += 4) s += ps_ld(db[i * a.ldo + c]) * ps_ld(ob[i * a.ldo + c]);
  red[t] = s;
}

/* p_ij and dS_ij = p_ij (dP_ij - Delta_i) for this thread's 4 x 4 block of
 * the tile (rows ty + 16u, keys tx + 16w); 0 where masked or out of range. */
template <int DP>
ATT_HD void bwd_scores(const ps_attention_desc &d, const float *Qs, const float *dOs,
                       const float *Ks, const float *Vs, const float *lse_s, const float *red,
                       int64_t b, int64_t h, int64_t i0, int64_t j0, int t, float (&P)[4][4],
                       float (&dS)[4][4]) {
  constexpr int LD = DP + 1;
  int ty = t / 16, tx = t % 16;
  float s[4][4], dp[4][4];
#pragma unroll
  for (int u = 0; u < 4; u++)
#pragma unroll
    for (int w = 0; w < 4; w++) s[u][w] = 0.0f, dp[u][w] = 0.0f;
  /* two tile_mac products in one loop (S = Q K^T, dP = dO V^T): their
   * independent multiply-adds interleave */
#pragma unroll 2
  for (int c = 0; c < DP; c++) {
    float qa[4], da[4], ka[4], va[4];
#pragma unroll
    for (int u = 0; u < 4; u++) {
      qa[u] = Qs[(ty + 16 * u) * LD + c], da[u] = dOs[(ty + 16 * u) * LD + c];
      ka[u] = Ks[(tx + 16 * u) * LD + c], va[u] = Vs[(tx + 16 * u) * LD + c];
    }
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int w = 0; w < 4; w++) s[u][w] += qa[u] * ka[w], dp[u][w] += da[u] * va[w];
  }
#pragma unroll
  for (int u = 0; u < 4; u++) {
    int r = ty + 16 * u;
    float L = lse_s[r];
    float delta = (red[4 * r] + red[4 * r + 1]) + (red[4 * r + 2] + red[4 * r + 3]);
#pragma unroll
    for (int w = 0; w < 4; w++) {
      int64_t i = i0 + r, j = j0 + tx + 16 * w;
      float p = 0.0f, ds = 0.0f;
      if (L != -INFINITY && j < d.Tk) { /* L finite implies i < Tq */
        float l = logit(d, s[u][w], b, h, i, j);
        if (l != -INFINITY) {
          p = expf(l - L);
          ds = p * (dp[u][w] - delta);
        }
      }
      P[u][w] = p, dS[u][w] = ds;
    }
  }
}

template <int DP> struct dkv_regs {
  float dk[4][DP / 16], dv[4][DP / 16];
};

/* ---- backward dK, dV: block (key tile kt, kv head g, batch b); it loops over
 * every query head of the group and every query tile, so it owns its dk/dv
 * elements (plain read-add-write, no atomics, no scratch). ---- */
template <typename T, int DP, class X>
ATT_HD void dkv_block(X &x, const args<T> &a, int64_t kt, int64_t g, int64_t b, float *sm) {
  constexpr int LD = DP + 1, LS = BK + 1, NB = DP / 16;
  const ps_attention_desc &d = a.d;
  float *Ks = sm, *Vs = Ks + BK * LD, *Qs = Vs + BK * LD, *dOs = Qs + BQ * LD;
  float *Ps = dOs + BQ * LD, *dSs = Ps + BQ * LS, *lse_s = dSs + BQ * LS, *red = lse_s + BQ;
  const int64_t j0 = kt * BK;
  const T *kb = a.k + b * d.Tk * a.ldk + g * d.D;
  const T *vb = a.v + b * d.Tk * a.ldv + g * d.D;
  /* causal: query i sees key j0 iff i >= j0 - (Tk - Tq) */
  int64_t istart = 0;
  if (d.causal) istart = j0 - (d.Tk - d.Tq) > 0 ? j0 - (d.Tk - d.Tq) : 0;

  x.phase([&](int t, dkv_regs<DP> &st) {
    load_tile<T, DP>(Ks, BK, kb, a.ldk, j0, d.Tk, d.D, t);
    load_tile<T, DP>(Vs, BK, vb, a.ldv, j0, d.Tk, d.D, t);
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int w = 0; w < NB; w++) st.dk[u][w] = 0.0f, st.dv[u][w] = 0.0f;
  });
  for (int64_t hr = 0; hr < a.rep; hr++) {
    const int64_t h = g * a.rep + hr;
    for (int64_t i0 = istart; i0 < d.Tq; i0 += BQ) {
      x.phase([&](int t, dkv_regs<DP> &) { bwd_load_q<T, DP>(a, Qs, dOs, lse_s, red, b, h, i0, t); });
      x.phase([&](int t, dkv_regs<DP> &) {
        float P[4][4], dS[4][4];
        bwd_scores<DP>(d, Qs, dOs, Ks, Vs, lse_s, red, b, h, i0, j0, t, P, dS);
        int ty = t / 16, tx = t % 16;
#pragma unroll
        for (int u = 0; u < 4; u++)
#pragma unroll
          for (int w = 0; w < 4; w++)
            Ps[(ty + 16 * u) * LS + tx + 16 * w] = P[u][w], dSs[(ty + 16 * u) * LS + tx + 16 * w] = dS[u][w];
      });
      /* dV += P^T dO, dK += dS^T Q: key rows ty + 16u, columns tx + 16w */
      x.phase([&](int t, dkv_regs<DP> &st) {
        int ty = t / 16, tx = t % 16;
        /* two tile_mac products in one loop, interleaved as above */
#pragma unroll 2
        for (int r = 0; r < BQ; r++) {
          float pa[4], sa[4], oa[NB], qa[NB];
#pragma unroll
          for (int u = 0; u < 4; u++) pa[u] = Ps[r * LS + ty + 16 * u], sa[u] = dSs[r * LS + ty + 16 * u];
#pragma unroll
          for (int w = 0; w < NB; w++) oa[w] = dOs[r * LD + tx + 16 * w], qa[w] = Qs[r * LD + tx + 16 * w];
#pragma unroll
          for (int u = 0; u < 4; u++)
#pragma unroll
            for (int w = 0; w < NB; w++) st.dv[u][w] += pa[u] * oa[w], st.dk[u][w] += sa[u] * qa[w];
        }
      });
    }
  }
  x.phase([&](int t, dkv_regs<DP> &st) {
    int ty = t / 16, tx = t % 16;
#pragma unroll
    for (int u = 0; u < 4; u++) {
      int64_t j = j0 + ty + 16 * u;
      if (j >= d.Tk) continue;
#pragma unroll
      for (int w = 0; w < NB; w++) {
        int c = tx + 16 * w;
        if (c >= d.D) continue;
        if (a.dk) ps_acc(&a.dk[(b * d.Tk + j) * a.ldk + g * d.D + c], d.scale * st.dk[u][w]);
        if (a.dv) ps_acc(&a.dv[(b * d.Tk + j) * a.ldv + g * d.D + c], st.dv[u][w]);
      }
    }
  });
}

template <int DP> struct dq_regs {
  float dq[4][DP / 16];
};

/* ---- backward dQ, dbias, drel_*: block (query tile qt, head h, batch b); it
 * owns its dq rows and drel rows (plain read-add-write); dbias may be
 * broadcast over (b, h) and takes atomics. ---- */
template <typename T, int DP, class X>
ATT_HD void dq_block(X &x, const args<T> &a, int64_t qt, int64_t h, int64_t b, float *sm) {
  constexpr int LD = DP + 1, LS = BK + 1, NB = DP / 16;
  const ps_attention_desc &d = a.d;
  float *Qs = sm, *dOs = Qs + BQ * LD, *Ks = dOs + BQ * LD, *Vs = Ks + BK * LD;
  float *dSs = Vs + BK * LD, *lse_s = dSs + BQ * LS, *red = lse_s + BQ, *rel = red + NT;
  const int64_t i0 = qt * BQ, kvh = h / a.rep;
  const T *kb = a.k + b * d.Tk * a.ldk + kvh * d.D;
  const T *vb = a.v + b * d.Tk * a.ldv + kvh * d.D;
  const int64_t kend = key_end(d, i0);
  const bool relg = d.rel_h && (a.drel_h || a.drel_w);
  const int64_t kh = d.rel_kh, kw = d.rel_kw;
  const bool rels = relg && a.rel_smem; /* rel: (BQ, kh) then (BQ, kw) */

  x.phase([&](int t, dq_regs<DP> &st) {
    bwd_load_q<T, DP>(a, Qs, dOs, lse_s, red, b, h, i0, t);
    if (rels)
      for (int64_t idx = t; idx < BQ * (kh + kw); idx += NT) rel[idx] = 0.0f;
#pragma unroll
    for (int u = 0; u < 4; u++)
#pragma unroll
      for (int w = 0; w < NB; w++) st.dq[u][w] = 0.0f;
  });
  for (int64_t j0 = 0; j0 < kend; j0 += BK) {
    x.phase([&](int t, dq_regs<DP> &) {
      load_tile<T, DP>(Ks, BK, kb, a.ldk, j0, d.Tk, d.D, t);
      load_tile<T, DP>(Vs, BK, vb, a.ldv, j0, d.Tk, d.D, t);
    });
    x.phase([&](int t, dq_regs<DP> &) {
      float P[4][4], dS[4][4];
      bwd_scores<DP>(d, Qs, dOs, Ks, Vs, lse_s, red, b, h, i0, j0, t, P, dS);
      int ty = t / 16, tx = t % 16;
#pragma unroll
      for (int u = 0; u < 4; u++)
#pragma unroll
        for (int w = 0; w < 4; w++) {
          int r = ty + 16 * u, cc = tx + 16 * w;
          dSs[r * LS + cc] = dS[u][w];
          if (P[u][w] == 0.0f) continue; /* as the row kernel: only visible keys */
          int64_t i = i0 + r, j = j0 + cc;
          if (a.dbias) att_atomic_add(&a.dbias[b * d.bias_sb + h * d.bias_sh + i * d.Tk + j], dS[u][w]);
          if (rels) {
            if (a.drel_h) att_atomic_add(&rel[r * kh + j / kw], dS[u][w]);
            if (a.drel_w) att_atomic_add(&rel[BQ * kh + r * kw + j % kw], dS[u][w]);
          } else if (relg) {
            int64_t row = (b * d.Hq + h) * d.Tq + i;
            if (a.drel_h) att_atomic_add(&a.drel_h[row * kh + j / kw], dS[u][w]);
            if (a.drel_w) att_atomic_add(&a.drel_w[row * kw + j % kw], dS[u][w]);
          }
        }
    });
    if (a.dq)
      x.phase([&](int t, dq_regs<DP> &st) {
        tile_mac<NB, BK>(st.dq, dSs, LS, 1, Ks, LD, 1, t / 16, t % 16); /* dQ += dS K */
      });
  }
  x.phase([&](int t, dq_regs<DP> &st) {
    int ty = t / 16, tx = t % 16;
    if (a.dq)
#pragma unroll
      for (int u = 0; u < 4; u++) {
        int64_t i = i0 + ty + 16 * u;
        if (i >= d.Tq) continue;
        T *dqr = a.dq + (b * d.Tq + i) * a.ldq + h * d.D;
#pragma unroll
        for (int w = 0; w < NB; w++) {
          int c = tx + 16 * w;
          if (c < d.D) ps_acc(&dqr[c], d.scale * st.dq[u][w]);
        }
      }
    if (rels) {
      int64_t row0 = (b * d.Hq + h) * d.Tq + i0;
      for (int64_t idx = t; idx < BQ * kh; idx += NT)
        if (a.drel_h && i0 + idx / kh < d.Tq) a.drel_h[row0 * kh + idx] += rel[idx];
      for (int64_t idx = t; idx < BQ * kw; idx += NT)
        if (a.drel_w && i0 + idx / kw < d.Tq) a.drel_w[row0 * kw + idx] += rel[BQ * kh + idx];
    }
  });
}

} /* namespace att */
