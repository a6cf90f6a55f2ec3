/* text_metric.h — text metrics of Table 6: corpus BLEU-4 exactly as
 * sacreBLEU computes it (13a tokenizer, exp smoothing, several references)
 * and SQuAD v1.1 token F1 (spec/algorithms.md §6a, §6c).
 *
 * Strings are UTF-8.  Where sacreBLEU / the SQuAD script use Python string
 * semantics (str.split, str.rstrip, \b), this code follows Python's
 * definitions of whitespace and word characters; lowercasing uses GLib's
 * g_utf8_strdown, which equals Python's str.lower() except for a few special
 * cases outside ASCII (invalid UTF-8 is lowercased in ASCII only and
 * otherwise passed through byte for byte).
 *
 * Two ways to use this code from another plugin: compile the .c files of
 * plugins/metric_text/ into it, or create a `metric.bleu` / `metric.token_f1`
 * component and ask it for the capability "text_metric" (below). */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ---------------------------------------------------------------------- */
/* sacreBLEU BLEU. */

#define PS_BLEU_MAX_ORDER 8

typedef enum {
  PS_BLEU_SMOOTH_NONE,
  PS_BLEU_SMOOTH_FLOOR, /* zero-match orders get 100 * value / total (value 0.1) */
  PS_BLEU_SMOOTH_ADD_K, /* add value (1) to correct and total for n > 1 */
  PS_BLEU_SMOOTH_EXP,   /* the k-th zero-match order gets 100 / (2^k total) (default) */
} ps_bleu_smooth;

typedef enum {
  PS_BLEU_TOKENIZE_13A,  /* sacreBLEU's default (mteval-v13a) */
  PS_BLEU_TOKENIZE_NONE, /* whitespace split only */
} ps_bleu_tokenize;

typedef struct ps_bleu_options {
  ps_bleu_tokenize tokenize;
  ps_bleu_smooth smooth;
  double smooth_value; /* < 0: the method's default (floor 0.1, add-k 1) */
  int max_order;       /* 1..PS_BLEU_MAX_ORDER, default 4 */
  gboolean lowercase;
  gboolean effective_order; /* average only up to the last order with n-grams */
} ps_bleu_options;

/* sacreBLEU BLEU() defaults: 13a, exp, order 4, case-sensitive, no effective order. */
void ps_bleu_options_default(ps_bleu_options *opt);

/* The 13a tokenization of one line (no rstrip / lowercase here): tokens joined
 * by single spaces. g_free the result. */
char *ps_bleu_tokenize_13a(const char *line);

/* Sufficient statistics; corpus statistics are the sums over sentences. */
typedef struct ps_bleu_stats {
  int64_t sys_len, ref_len;
  int64_t correct[PS_BLEU_MAX_ORDER], total[PS_BLEU_MAX_ORDER];
} ps_bleu_stats;

typedef struct ps_bleu_score {
  double score;                         /* 0..100 */
  double bp;                            /* brevity penalty */
  double precisions[PS_BLEU_MAX_ORDER]; /* percent, smoothed as sacreBLEU reports */
  ps_bleu_stats stats;
} ps_bleu_score;

/* Adds one segment's statistics to *acc: hyp and refs are rstrip()ed,
 * lowercased if asked, tokenized; NULL or "" references are skipped (as
 * sacreBLEU does for missing references); none left is an error. */
gboolean ps_bleu_add_segment(const ps_bleu_options *opt, const char *hyp, const char *const *refs,
                             size_t n_refs, ps_bleu_stats *acc, GError **error);

/* The score from statistics (sacreBLEU BLEU.compute_bleu). */
void ps_bleu_from_stats(const ps_bleu_options *opt, const ps_bleu_stats *stats, ps_bleu_score *out);

/* Corpus BLEU: hyps[n]; refs[r * n + i] is reference r of sentence i
 * (sacreBLEU's reference streams), r < n_refs. */
gboolean ps_bleu_corpus(const ps_bleu_options *opt, const char *const *hyps, size_t n,
                        const char *const *refs, size_t n_refs, ps_bleu_score *out, GError **error);

/* sacreBLEU sentence_score: one hypothesis against its references, with the
 * options as given (sacrebleu.sentence_bleu uses effective_order = TRUE). */
gboolean ps_bleu_sentence(const ps_bleu_options *opt, const char *hyp, const char *const *refs,
                          size_t n_refs, ps_bleu_score *out, GError **error);

/* ---------------------------------------------------------------------- */
/* SQuAD v1.1 token F1 and exact match. */

/* lower -> drop string.punctuation -> drop \b(a|an|the)\b -> collapse
 * whitespace.  g_free the result. */
char *ps_squad_normalize(const char *s);

/* Multiset-overlap F1 in [0, 1] of the normalized token lists; 0 when there is
 * no common token (so also for an empty prediction or reference). */
double ps_token_f1(const char *prediction, const char *ground_truth);
/* The max over the references (SQuAD metric_max_over_ground_truths); NULL
 * references are skipped; 0 when none. */
double ps_token_f1_max(const char *prediction, const char *const *refs, size_t n_refs);
gboolean ps_exact_match(const char *prediction, const char *ground_truth);

/* ---------------------------------------------------------------------- */
/* The "text_metric" capability of metric.bleu and metric.token_f1. */

#define PS_TEXT_METRIC_CAPABILITY "text_metric"

typedef struct ps_text_metric_iface {
  uint32_t struct_size; /* sizeof(ps_text_metric_iface) of the plugin */
  /* The corpus score on the metric's scale (BLEU 0..100; token F1 as 100 x
   * the mean of the per-sentence max-over-references F1, as SQuAD reports).
   * hyps[n]; refs[r * n + i] is reference r of sentence i. */
  gboolean (*corpus_score)(void *self, const char *const *hyps, size_t n, const char *const *refs,
                           size_t n_refs, double *score, GError **error);
  /* One sentence (BLEU: sentence BLEU with effective order unless configured
   * otherwise; F1: 100 x the max over references). */
  gboolean (*sentence_score)(void *self, const char *hyp, const char *const *refs, size_t n_refs,
                             double *score, GError **error);
  const char *name; /* "bleu" or "token_f1": the column name in reports */
} ps_text_metric_iface;

G_END_DECLS
