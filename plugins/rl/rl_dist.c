/* rl_dist.c — SO-GRPO / GRPO across the ranks of a data-parallel run.
 *
 * Every rank takes the same prompts and samples its share of each group: with
 * R ranks and group size G, rank r draws rows r*G/R .. (r+1)*G/R - 1 of every
 * prompt, each from its own seed (rl_sample_seed(seed, step, prompt, row)),
 * so the union over ranks is exactly the single-process rollout. Advantages
 * need whole groups (group normalisation) or the whole batch (GAE's
 * whitening), so the rows' scores, masks, values and log-probs are gathered,
 * every rank computes the advantages of the full batch in prompt-major order
 * — the same numbers a single process computes — and keeps its own rows.
 * Gradients are then averaged by the optimizer like any data-parallel step. */
#include <pathseg/comm.h>
#include <string.h>

#include "rl_dist.h"

gboolean rl_dist_advantages(ps_comm *comm, const ps_advantage_iface *adv, void *adv_self,
                            const ps_advantage_batch *local, int64_t prompts, float *advantages,
                            float *returns, GError **error) {
  const int64_t R = ps_comm_size(comm), T = local->T, Nl = local->B, Gl = local->group_size;
  const int64_t G = Gl * R, N = Nl * R;
  /* per local row: score, then mask, values, logps, ref_logps (T each) */
  const int64_t row = 1 + 4 * T;
  g_autofree double *send = g_new0(double, Nl * row);
  g_autofree double *recv = g_new0(double, N * row);
  for (int64_t n = 0; n < Nl; n++) {
    double *d = send + n * row;
    d[0] = local->scores[n];
    for (int64_t t = 0; t < T; t++) {
      d[1 + t] = local->mask[n * T + t];
      d[1 + T + t] = local->values ? local->values[n * T + t] : 0;
      d[1 + 2 * T + t] = local->logps ? local->logps[n * T + t] : 0;
      d[1 + 3 * T + t] = local->ref_logps ? local->ref_logps[n * T + t] : 0;
    }
  }
  if (!ps_comm_allgather_f64(comm, send, recv, (size_t)(Nl * row), error)) return FALSE;
  g_autofree float *scores = g_new(float, N), *mask = g_new(float, N * T), *values = g_new(float, N * T),
                   *logps = g_new(float, N * T), *ref = g_new(float, N * T), *a = g_new0(float, N * T),
                   *ret = g_new0(float, N * T);
  /* rank r's local row p*Gl + j is row p*G + r*Gl + j of the whole batch */
  for (int64_t r = 0; r < R; r++)
    for (int64_t p = 0; p < prompts; p++)
      for (int64_t j = 0; j < Gl; j++) {
        const double *d = recv + (r * Nl + p * Gl + j) * row;
        int64_t n = p * G + r * Gl + j;
        scores[n] = (float)d[0];
        for (int64_t t = 0; t < T; t++) {
          mask[n * T + t] = (float)d[1 + t];
          values[n * T + t] = (float)d[1 + T + t];
          logps[n * T + t] = (float)d[1 + 2 * T + t];
          ref[n * T + t] = (float)d[1 + 3 * T + t];
        }
      }
  ps_advantage_batch whole = {.B = N, .T = T, .scores = scores, .mask = mask,
                              .values = local->values ? values : NULL,
                              .logps = local->logps ? logps : NULL,
                              .ref_logps = local->ref_logps ? ref : NULL, .group_size = G};
  if (!adv->compute(adv_self, &whole, a, ret, error)) return FALSE;
  const int64_t me = ps_comm_rank(comm);
  for (int64_t p = 0; p < prompts; p++)
    for (int64_t j = 0; j < Gl; j++) {
      int64_t n = p * G + me * Gl + j, l = p * Gl + j;
      memcpy(advantages + l * T, a + n * T, (size_t)T * sizeof(float));
      if (returns) memcpy(returns + l * T, ret + n * T, (size_t)T * sizeof(float));
    }
  return TRUE;
}
