/* qwen2_sample.c — picking the next token from one row of logits: greedy
 * argmax, or sampling from softmax(logits / temperature) restricted to the
 * top-p nucleus (HF TopPLogitsWarper: the most probable tokens whose mass
 * reaches top_p, at least one), with the log-probability a policy-gradient
 * stage needs (of the tempered, untruncated distribution, as TRL and verl
 * compute it). */
#include <math.h>
#include <stdlib.h>

#include "qwen2_plugin.h"

/* Descending probability; ties by index so the order is deterministic. */
static int by_prob_desc(const void *a, const void *b, void *user) {
  const float *p = user;
  int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
  if (p[i] != p[j]) return p[i] > p[j] ? -1 : 1;
  return (i > j) - (i < j);
}

int32_t qwen2_sample(const float *logits, int64_t V, double temperature, double top_p, ps_rng *rng,
                     float *logprob, float *work, int32_t *idx) {
  const gboolean greedy = temperature <= 0;
  const double inv_t = greedy ? 1.0 : 1.0 / temperature;
  int64_t best = 0;
  for (int64_t j = 1; j < V; j++)
    if (logits[j] > logits[best]) best = j;
  const double mx = logits[best] * inv_t;
  double sum = 0;
  for (int64_t j = 0; j < V; j++) sum += exp(logits[j] * inv_t - mx);
  const double lse = mx + log(sum);
  int64_t tok = best;
  if (!greedy) {
    for (int64_t j = 0; j < V; j++) work[j] = (float)exp(logits[j] * inv_t - lse);
    double u = ps_rng_uniform_f64(rng);
    if (top_p < 1.0) {
      for (int64_t j = 0; j < V; j++) idx[j] = (int32_t)j;
      qsort_r(idx, (size_t)V, sizeof(int32_t), by_prob_desc, work);
      double mass = 0;
      int64_t K = 0;
      while (K < V && (K == 0 || mass < top_p)) mass += work[idx[K++]];
      double target = u * mass, acc = 0;
      tok = idx[K - 1];
      for (int64_t r = 0; r < K; r++) {
        acc += work[idx[r]];
        if (target < acc) {
          tok = idx[r];
          break;
        }
      }
    } else {
      double acc = 0;
      tok = -1;
      for (int64_t j = 0; j < V; j++) {
        acc += work[j];
        if (u < acc) {
          tok = j;
          break;
        }
      }
      /* rounding left u above the total: the last token with mass */
      for (int64_t j = V - 1; tok < 0 && j >= 0; j--)
        if (work[j] > 0) tok = j;
      if (tok < 0) tok = best;
    }
  }
  *logprob = (float)(logits[tok] * inv_t - lse);
  return (int32_t)tok;
}
