/* rl_policy_loss_impl.h — the body of ps_policy_loss, written once and
 * included twice by rl_policy_loss.c: with REAL = float (the training path)
 * and REAL = double (finite-difference checks).  Not a public header.
 *
 * Before including, define REAL, FN (the function name) and BATCH (the batch
 * struct type).  All arithmetic is in double either way. */

gboolean FN(const ps_policy_loss_cfg *cfg, const BATCH *bt, ps_policy_loss_stats *stats,
            GError **error) {
  if (!policy_loss_check(cfg, bt->B, bt->T, bt->logps != NULL, bt->ref_logps != NULL,
                         bt->advantages != NULL, bt->mask != NULL, error))
    return FALSE;
  const int64_t B = bt->B, T = bt->T;

  /* Σ mask per row and in total: the aggregation weights need them first. */
  double total = 0.0;
  for (int64_t i = 0; i < B * T; i++) total += bt->mask[i] != 0 ? (double)bt->mask[i] : 0.0;

  double loss = 0.0, kl_sum = 0.0, clip_sum = 0.0, ratio_sum = 0.0;
  for (int64_t b = 0; b < B; b++) {
    const int64_t row = b * T;
    double row_count = 0.0;
    for (int64_t t = 0; t < T; t++)
      row_count += bt->mask[row + t] != 0 ? (double)bt->mask[row + t] : 0.0;
    /* d(aggregated)/d(per-token loss) for an unmasked token of this row. */
    const double w = policy_loss_weight(cfg, B, T, row_count, total);
    for (int64_t t = 0; t < T; t++) {
      const int64_t i = row + t;
      const double m = bt->mask[i] != 0 ? (double)bt->mask[i] : 0.0;
      const double adv = (double)bt->advantages[bt->adv_per_row ? b : i];
      const double logp = (double)bt->logps[i];
      const double old = bt->old_logps ? (double)bt->old_logps[i] : logp;
      const double ref = bt->ref_logps ? (double)bt->ref_logps[i] : logp;
      policy_token tok;
      policy_token_eval(cfg, logp, old, ref, adv, bt->ref_logps != NULL, &tok);
      if (bt->per_token_loss) bt->per_token_loss[i] = (REAL)tok.loss;
      if (bt->per_token_kl) bt->per_token_kl[i] = (REAL)tok.kl;
      if (bt->grad_logps) bt->grad_logps[i] = (REAL)(w * m * tok.dloss);
      loss += w * m * tok.loss;
      kl_sum += m * tok.kl;
      clip_sum += m * (tok.clipped ? 1.0 : 0.0);
      ratio_sum += m * tok.coef_1;
    }
  }
  if (stats) {
    stats->loss = loss;
    stats->tokens = total;
    const double denom = total > 0 ? total : 1.0;
    stats->kl = kl_sum / denom;
    stats->clip_frac = clip_sum / denom;
    stats->ratio_mean = ratio_sum / denom;
  }
  return TRUE;
}
