/* attention.c — multi-head scaled-dot-product attention on the CPU (forward
 * and backward), covering causal, full, grouped-query, cross and SAM's
 * windowed attention with decomposed relative positions (see
 * ps_attention_desc in <pathseg/kernels.h>).
 *
 * Work is split into (batch, head, chunk of query rows) units. Each unit
 * computes its logits with one GEMM (chunk x Tk x D), does the bias/mask and a
 * row softmax in its own scratch slice, and multiplies by V with a second
 * GEMM; only the row log-sum-exp is kept for backward, which recomputes the
 * probabilities (flash-attention style) instead of storing a Tq x Tk matrix
 * per head. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

/* Query rows per unit: the logits slice chunk x Tk stays around 1 MB (L2),
 * and chunks are at least 16 rows so that the GEMMs stay efficient. Causal
 * attention uses chunks of at most 64 rows: a chunk only computes the keys
 * its last row can see, so smaller chunks skip more of the masked half. */
static int64_t att_chunk(const ps_attention_desc *d) {
  int64_t c = 262144 / ps_max64(d->Tk, 1);
  c = ps_min64(ps_max64(c, 16), d->causal ? 64 : 256);
  return ps_min64(c, ps_max64(d->Tq, 1));
}

/* Forward: the logits/probabilities of one chunk. Backward: P and dS of one
 * chunk, the chunk's row sums, and private dK/dV partials (Tk x D each). */
static int64_t att_per_thread(const ps_attention_desc *d, int backward) {
  int64_t chunk = att_chunk(d), tk = ps_max64(d->Tk, 1);
  return backward ? 2 * chunk * tk + chunk + 2 * tk * d->D : chunk * tk;
}

int64_t ps_cpu_attention_scratch(const ps_attention_desc *d, int backward) {
  return att_per_thread(d, backward) * omp_get_max_threads();
}

/* Threads to use given the scratch the caller provided and the units of work. */
static int att_threads(int64_t scratch_floats, int64_t per, int64_t units) {
  int64_t nt = ps_min64(omp_get_max_threads(), scratch_floats / per);
  return (int)ps_min64(nt, units);
}

typedef struct {
  int64_t ldq, ldk, ldv, ldo, chunk, nch, rep;
} att_geom;

static att_geom att_geometry(const ps_attention_desc *d) {
  att_geom g;
  g.ldq = d->ldq ? d->ldq : d->Hq * d->D;
  g.ldk = d->ldk ? d->ldk : d->Hkv * d->D;
  g.ldv = d->ldv ? d->ldv : d->Hkv * d->D;
  g.ldo = d->ldo ? d->ldo : d->Hq * d->D;
  g.chunk = att_chunk(d);
  g.nch = (d->Tq + g.chunk - 1) / g.chunk;
  g.rep = d->Hq / d->Hkv;
  return g;
}

/* Keys visible to any row of the chunk starting at query i0 with m rows. */
static int64_t att_visible(const ps_attention_desc *d, int64_t i0, int64_t m) {
  if (!d->causal) return d->Tk;
  return ps_max64(0, ps_min64(d->Tk, i0 + m + d->Tk - d->Tq));
}

/* Fills S (m x nk, row stride nk) with the probabilities of query rows
 * i0..i0+m-1 of (b, h). Forward (lse_out != NULL): softmax, writes the rows'
 * log-sum-exp to lse_out[0..m). Backward (lse_in != NULL, the same m rows):
 * P = exp(logits - lse). */
PS_SIMD_CLONES static void att_probs(float *S, const float *q, const float *k,
                                     const ps_attention_desc *d, const att_geom *g, int64_t b,
                                     int64_t h, int64_t i0, int64_t m, int64_t nk, float *lse_out,
                                     const float *lse_in) {
  const float *qp = q + (b * d->Tq + i0) * g->ldq + h * d->D;
  const float *kp = k + b * d->Tk * g->ldk + (h / g->rep) * d->D;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)d->D, d->scale, qp,
              (int)g->ldq, kp, (int)g->ldk, 0.0f, S, (int)nk);
  int64_t bh = b * d->Hq + h;
  for (int64_t r = 0; r < m; r++) {
    int64_t i = i0 + r;
    float *s = S + r * nk;
    if (d->bias) {
      const float *bp = d->bias + b * d->bias_sb + h * d->bias_sh + i * d->Tk;
#pragma omp simd
      for (int64_t j = 0; j < nk; j++) s[j] += bp[j];
    }
    if (d->rel_h) {
      const float *rh = d->rel_h + (bh * d->Tq + i) * d->rel_kh;
      const float *rw = d->rel_w + (bh * d->Tq + i) * d->rel_kw;
      for (int64_t ky = 0; ky < d->rel_kh; ky++) {
        int64_t j0 = ky * d->rel_kw, n = ps_min64(d->rel_kw, nk - j0);
        if (n <= 0) break;
        float add = rh[ky];
#pragma omp simd
        for (int64_t kx = 0; kx < n; kx++) s[j0 + kx] += add + rw[kx];
      }
    }
    if (d->causal) {
      for (int64_t j = ps_max64(0, i + d->Tk - d->Tq + 1); j < nk; j++) s[j] = -INFINITY;
    }
    if (lse_out) {
      ps_cpu_softmax_row(s, s, nk, &lse_out[r]); /* a fully masked row: zeros, lse -inf */
    } else {
      float l = lse_in[r];
      if (l == -INFINITY) {
        memset(s, 0, (size_t)nk * sizeof(float));
        continue;
      }
      ps_cpu_exp_shifted_row(s, s, l, nk);
    }
  }
}

/* Shapes the kernels can run; anything else is a caller bug that must not
 * turn into out-of-bounds reads (callers validate and report). */
static int att_valid(const ps_attention_desc *d) {
  if (d->B <= 0 || d->Hq <= 0 || d->Tq <= 0 || d->D <= 0 || d->Hkv <= 0 || d->Tk < 0) return 0;
  if (d->Hq % d->Hkv != 0) return 0;
  if ((d->rel_h == NULL) != (d->rel_w == NULL)) return 0;
  if (d->rel_h && (d->rel_kh <= 0 || d->rel_kw <= 0 || d->rel_kh * d->rel_kw != d->Tk)) return 0;
  return 1;
}

void ps_cpu_attention_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, const ps_attention_desc *d, float *scratch,
                              int64_t scratch_floats) {
  /* out: (B, Tq, Hq, D) rows of stride ldo; lse: (B, Hq, Tq) or NULL;
   * q, k, v: see ps_attention_desc; scratch: attention_scratch(d, 0) floats */
  if (!att_valid(d)) return;
  att_geom g = att_geometry(d);
  int64_t per = att_per_thread(d, 0), units = d->B * d->Hq * g.nch;
  int nt = att_threads(scratch_floats, per, units);
  if (nt < 1) return;
  if (nt > 1) ps_cpu_blas_serial_begin();
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
  for (int64_t u = 0; u < units; u++) {
    float *S = scratch + (int64_t)omp_get_thread_num() * per;
    int64_t b = u / (d->Hq * g.nch), h = (u / g.nch) % d->Hq, c = u % g.nch;
    int64_t i0 = c * g.chunk, m = ps_min64(g.chunk, d->Tq - i0);
    int64_t nk = att_visible(d, i0, m);
    float *op = out + (b * d->Tq + i0) * g.ldo + h * d->D;
    int64_t bh = b * d->Hq + h;
    if (nk <= 0) {
      for (int64_t r = 0; r < m; r++) {
        memset(op + r * g.ldo, 0, (size_t)d->D * sizeof(float));
        if (lse) lse[bh * d->Tq + i0 + r] = -INFINITY;
      }
      continue;
    }
    float lse_local[256]; /* att_chunk() <= 256 */
    att_probs(S, q, k, d, &g, b, h, i0, m, nk, lse ? lse + bh * d->Tq + i0 : lse_local, NULL);
    const float *vp = v + b * d->Tk * g.ldv + (h / g.rep) * d->D;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d->D, (int)nk, 1.0f, S,
                (int)nk, vp, (int)g.ldv, 0.0f, op, (int)g.ldo);
  }
  if (nt > 1) ps_cpu_blas_serial_end();
}

/* Gradient buffers of one backward call. */
typedef struct {
  float *dq, *dbias, *drel_h, *drel_w;
  const float *dout, *q, *k, *v, *out, *lse;
} att_grads;

/* Backward of query rows i0..i0+m-1 of (b, h): dq rows, dbias, drel_h/drel_w
 * directly; dK/dV of kv head h / rep added into dkp/dvp (row strides ldk2,
 * ldv2: the real gradients or a thread's private partials). P, dS: chunk x Tk
 * floats of scratch; Dr: chunk floats. */
static void att_bwd_chunk(const ps_attention_desc *d, const att_geom *g, const att_grads *a,
                          int64_t b, int64_t h, int64_t c, float *dkp, int64_t ldk2, float *dvp,
                          int64_t ldv2, float *P, float *dS, float *Dr) {
  int64_t i0 = c * g->chunk, m = ps_min64(g->chunk, d->Tq - i0);
  int64_t nk = att_visible(d, i0, m);
  if (nk <= 0) return;
  int64_t bh = b * d->Hq + h, kvh = h / g->rep;
  const float *kp = a->k + b * d->Tk * g->ldk + kvh * d->D;
  const float *vp = a->v + b * d->Tk * g->ldv + kvh * d->D;
  att_probs(P, a->q, a->k, d, g, b, h, i0, m, nk, NULL, a->lse + bh * d->Tq + i0);
  const float *qp = a->q + (b * d->Tq + i0) * g->ldq + h * d->D;
  const float *dop = a->dout + (b * d->Tq + i0) * g->ldo + h * d->D;
  const float *op = a->out + (b * d->Tq + i0) * g->ldo + h * d->D;
  for (int64_t r = 0; r < m; r++) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t e = 0; e < d->D; e++) s += dop[r * g->ldo + e] * op[r * g->ldo + e];
    Dr[r] = s;
  }
  /* dP = dO V^T, then dS = P * (dP - rowsum(dO * O)) in place */
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)m, (int)nk, (int)d->D, 1.0f, dop,
              (int)g->ldo, vp, (int)g->ldv, 0.0f, dS, (int)nk);
  for (int64_t r = 0; r < m; r++) {
    float *ds = dS + r * nk;
    const float *p = P + r * nk;
    float dr = Dr[r];
#pragma omp simd
    for (int64_t j = 0; j < nk; j++) ds[j] = p[j] * (ds[j] - dr);
  }
  if (dvp)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)d->D, (int)m, 1.0f, P,
                (int)nk, dop, (int)g->ldo, 1.0f, dvp, (int)ldv2);
  if (a->dbias) {
    for (int64_t r = 0; r < m; r++) {
      float *db = a->dbias + b * d->bias_sb + h * d->bias_sh + (i0 + r) * d->Tk;
      const float *ds = dS + r * nk;
#pragma omp simd
      for (int64_t j = 0; j < nk; j++) db[j] += ds[j];
    }
  }
  if (d->rel_h && (a->drel_h || a->drel_w)) {
    for (int64_t r = 0; r < m; r++) {
      const float *ds = dS + r * nk;
      float *dh = a->drel_h ? a->drel_h + (bh * d->Tq + i0 + r) * d->rel_kh : NULL;
      float *dw = a->drel_w ? a->drel_w + (bh * d->Tq + i0 + r) * d->rel_kw : NULL;
      for (int64_t ky = 0; ky < d->rel_kh; ky++) {
        int64_t j0 = ky * d->rel_kw, n = ps_min64(d->rel_kw, nk - j0);
        if (n <= 0) break;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t kx = 0; kx < n; kx++) s += ds[j0 + kx];
        if (dh) dh[ky] += s;
        if (dw) {
#pragma omp simd
          for (int64_t kx = 0; kx < n; kx++) dw[kx] += ds[j0 + kx];
        }
      }
    }
  }
  if (a->dq)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)m, (int)d->D, (int)nk, d->scale, dS,
                (int)nk, kp, (int)g->ldk, 1.0f, a->dq + (b * d->Tq + i0) * g->ldq + h * d->D,
                (int)g->ldq);
  if (dkp)
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)nk, (int)d->D, (int)m, d->scale, dS,
                (int)nk, qp, (int)g->ldq, 1.0f, dkp, (int)ldk2);
}

void ps_cpu_attention_backward(float *dq, float *dk, float *dv, float *dbias, float *drel_h,
                               float *drel_w, const float *dout, const float *q, const float *k,
                               const float *v, const float *out, const float *lse,
                               const ps_attention_desc *d, float *scratch, int64_t scratch_floats) {
  /* dq, dk, dv: like q, k, v; dbias: like bias; drel_h/drel_w: like rel_h/rel_w;
   * dout, out: (B, Tq, Hq, D) with stride ldo; lse: (B, Hq, Tq) from forward.
   *
   * With at least as many (batch, kv head) pairs as threads, each pair is one
   * unit: all query heads sharing a kv head run in it, so dk/dv have one
   * writer. With fewer pairs (one long sequence, 2 kv heads) the pairs run in
   * turn and their (head, query chunk) units are split across threads, each
   * adding dK/dV into private partials (per-thread scratch) that are then
   * summed in thread order. */
  if (!att_valid(d)) return;
  att_geom g = att_geometry(d);
  att_grads a = {dq, dbias, drel_h, drel_w, dout, q, k, v, out, lse};
  int64_t per = att_per_thread(d, 1), pairs = d->B * d->Hkv;
  int nt = att_threads(scratch_floats, per, d->B * d->Hq * g.nch);
  if (nt < 1) return;
  /* A broadcast bias gradient sums over units: keep those to one thread. */
  if (dbias && (d->bias_sb == 0 || d->bias_sh == 0)) nt = 1;
  int64_t chunk_tk = g.chunk * ps_max64(d->Tk, 1), tkd = d->Tk * d->D;
  if (nt > 1) ps_cpu_blas_serial_begin();
  if (pairs >= nt) {
#pragma omp parallel for num_threads(nt) schedule(dynamic, 1)
    for (int64_t u = 0; u < pairs; u++) {
      float *P = scratch + (int64_t)omp_get_thread_num() * per;
      int64_t b = u / d->Hkv, kvh = u % d->Hkv;
      float *dkp = dk ? dk + b * d->Tk * g.ldk + kvh * d->D : NULL;
      float *dvp = dv ? dv + b * d->Tk * g.ldv + kvh * d->D : NULL;
      for (int64_t h = kvh * g.rep; h < (kvh + 1) * g.rep; h++)
        for (int64_t c = 0; c < g.nch; c++)
          att_bwd_chunk(d, &g, &a, b, h, c, dkp, g.ldk, dvp, g.ldv, P, P + chunk_tk,
                        P + 2 * chunk_tk);
    }
  } else {
    int64_t inner = g.rep * g.nch;
    for (int64_t u = 0; u < pairs; u++) {
      int64_t b = u / d->Hkv, kvh = u % d->Hkv;
      float *dkp = dk ? dk + b * d->Tk * g.ldk + kvh * d->D : NULL;
      float *dvp = dv ? dv + b * d->Tk * g.ldv + kvh * d->D : NULL;
#pragma omp parallel num_threads(nt)
      {
        int t = omp_get_thread_num(), tn = omp_get_num_threads();
        float *P = scratch + (int64_t)t * per, *pk = P + 2 * chunk_tk + g.chunk, *pv = pk + tkd;
        memset(pk, 0, (size_t)(2 * tkd) * sizeof(float));
#pragma omp for schedule(static, 1)
        for (int64_t w = 0; w < inner; w++)
          att_bwd_chunk(d, &g, &a, b, kvh * g.rep + w / g.nch, w % g.nch, dkp ? pk : NULL, d->D,
                        dvp ? pv : NULL, d->D, P, P + chunk_tk, P + 2 * chunk_tk);
#pragma omp for ordered schedule(static, 1)
        for (int i = 0; i < tn; i++) {
#pragma omp ordered
          {
            for (int64_t s = 0; s < d->Tk; s++) {
              if (dkp) {
#pragma omp simd
                for (int64_t e = 0; e < d->D; e++) dkp[s * g.ldk + e] += pk[s * d->D + e];
              }
              if (dvp) {
#pragma omp simd
                for (int64_t e = 0; e < d->D; e++) dvp[s * g.ldv + e] += pv[s * d->D + e];
              }
            }
          }
        }
      }
    }
  }
  if (nt > 1) ps_cpu_blas_serial_end();
}
