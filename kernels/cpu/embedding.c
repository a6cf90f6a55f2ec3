/* embedding.c — token embedding lookup (and its scatter-add backward) and the
 * vocabulary cross-entropy with ignore_index on the CPU. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

void ps_cpu_embedding_forward(float *out, const int32_t *ids, const float *table, int64_t N,
                              int64_t V, int64_t C) {
  /* out: (N, C); ids: (N); table: (V, C) */
#pragma omp parallel for schedule(static) if (N * C > PS_OMP_MIN_WORK)
  for (int64_t n = 0; n < N; n++) {
    int64_t id = ids[n];
    if (id >= 0 && id < V)
      memcpy(out + n * C, table + id * C, (size_t)C * sizeof(float));
    else
      memset(out + n * C, 0, (size_t)C * sizeof(float));
  }
}

void ps_cpu_embedding_backward(float *dtable, const int32_t *ids, const float *dout, int64_t N,
                               int64_t V, int64_t C) {
  /* dtable: (V, C) += scatter of dout: (N, C). Repeated ids make rows collide,
   * so threads split the columns instead of the rows. */
#pragma omp parallel if (N * C > PS_OMP_MIN_WORK)
  {
    int nt = omp_get_num_threads(), tid = omp_get_thread_num();
    int64_t c0 = C * tid / nt, c1 = C * (tid + 1) / nt;
    for (int64_t n = 0; n < N; n++) {
      int64_t id = ids[n];
      if (id < 0 || id >= V) continue;
      float *row = dtable + id * C;
      const float *g = dout + n * C;
#pragma omp simd
      for (int64_t c = c0; c < c1; c++) row[c] += g[c];
    }
  }
}

typedef struct {
  float *dlogits, *row_loss;
  const float *logits;
  const int32_t *targets;
  int64_t V;
  int32_t ignore_index;
  float gscale;
  int inplace;
} ce_args;

/* Rows r0..r1; returns their loss sum. */
PS_SIMD_CLONES static double ce_rows(const ce_args *a, int64_t r0, int64_t r1) {
  int64_t V = a->V;
  double total = 0.0;
  for (int64_t n = r0; n < r1; n++) {
    const float *x = a->logits + n * V;
    int32_t t = a->targets[n];
    if (t == a->ignore_index || t < 0 || t >= V) {
      if (a->row_loss) a->row_loss[n] = 0.0f;
      if (a->inplace) memset(a->dlogits + n * V, 0, (size_t)V * sizeof(float));
      continue;
    }
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t j = 0; j < V; j++) mx = x[j] > mx ? x[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t j = 0; j < V; j++) sum += ps_vexpf(x[j] - mx);
    float lse = mx + logf(sum);
    float loss = lse - x[t];
    if (a->row_loss) a->row_loss[n] = loss;
    total += loss;
    if (a->dlogits) {
      float *g = a->dlogits + n * V;
      float k = a->gscale;
      if (a->inplace) { /* g aliases x: each element is read before it is written */
#pragma omp simd
        for (int64_t j = 0; j < V; j++) g[j] = k * ps_vexpf(x[j] - lse);
      } else {
#pragma omp simd
        for (int64_t j = 0; j < V; j++) g[j] += k * ps_vexpf(x[j] - lse);
      }
      g[t] -= k;
    }
  }
  return total;
}

/* Rows are cut into at most CE_CHUNKS fixed chunks whose sums are added in
 * order, so the loss does not depend on the thread count. */
#define CE_CHUNKS 64

float ps_cpu_crossentropy(float *dlogits, float *row_loss, const float *logits,
                          const int32_t *targets, int64_t N, int64_t V, int32_t ignore_index,
                          float denom, float dloss) {
  /* dlogits: (N, V) or NULL (+=, or = when it aliases logits); row_loss: (N) or NULL;
   * logits: (N, V); targets: (N). Returns sum of valid row losses / denom.
   * The row sum of exps is a float reduction with vector-width partial sums:
   * for V = 152k its relative error is ~1e-6, far below what matters here. */
  int64_t valid = 0;
  for (int64_t n = 0; n < N; n++)
    if (targets[n] != ignore_index && targets[n] >= 0 && targets[n] < V) valid++;
  double den = denom > 0.0f ? (double)denom : (double)valid;
  ce_args a = {dlogits,
               row_loss,
               logits,
               targets,
               V,
               ignore_index,
               den > 0.0 ? (float)(dloss / den) : 0.0f,
               dlogits == logits};
  int64_t nchunk = ps_min64(CE_CHUNKS, N);
  double part[CE_CHUNKS];
#pragma omp parallel for schedule(dynamic, 1) if (N * V > PS_OMP_MIN_WORK)
  for (int64_t k = 0; k < nchunk; k++) part[k] = ce_rows(&a, N * k / nchunk, N * (k + 1) / nchunk);
  double total = 0.0;
  for (int64_t k = 0; k < nchunk; k++) total += part[k];
  return den > 0.0 ? (float)(total / den) : 0.0f;
}
