/* bleu.c — sacreBLEU's BLEU (sacrebleu/metrics/bleu.py): per-segment n-gram
 * statistics against one or more references (max counts over references,
 * closest reference length with ties to the shorter), summed over the corpus,
 * and compute_bleu with its smoothing methods and effective order. */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>

#include "py_text.h"
#include "text_metric.h"

void ps_bleu_options_default(ps_bleu_options *opt) {
  memset(opt, 0, sizeof *opt);
  opt->tokenize = PS_BLEU_TOKENIZE_13A;
  opt->smooth = PS_BLEU_SMOOTH_EXP;
  opt->smooth_value = -1.0;
  opt->max_order = 4;
}

/* BLEU._preprocess_segment: rstrip, lowercase, tokenize. */
static char *preprocess(const ps_bleu_options *opt, const char *sent) {
  g_autofree char *s = ps_py_rstrip(sent);
  if (opt->lowercase) {
    char *low = ps_py_lower(s);
    g_free(s);
    s = low;
  }
  return opt->tokenize == PS_BLEU_TOKENIZE_13A ? ps_bleu_tokenize_13a(s) : ps_py_collapse(s);
}

/* The tokens of a preprocessed segment are separated by single spaces, so an
 * n-gram is the substring from the start of its first token to the end of its
 * last: that substring is the hash key.  starts/ends: (count) byte offsets. */
typedef struct segment {
  char *text;
  size_t count;
  size_t *starts, *ends;
} segment;

static void segment_init(segment *seg, char *text) {
  seg->text = text;
  seg->count = 0;
  const size_t len = strlen(text);
  seg->starts = g_new(size_t, len / 2 + 1);
  seg->ends = g_new(size_t, len / 2 + 1);
  size_t i = 0;
  while (i < len) {
    while (i < len && text[i] == ' ') i++;
    if (i >= len) break;
    seg->starts[seg->count] = i;
    while (i < len && text[i] != ' ') i++;
    seg->ends[seg->count++] = i;
  }
}

static void segment_clear(segment *seg) {
  g_free(seg->text);
  g_free(seg->starts);
  g_free(seg->ends);
}

/* Counts of every n-gram, n = 1..max_order: key (owned) -> count. */
static GHashTable *count_ngrams(const segment *seg, int max_order) {
  GHashTable *h = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  for (int n = 1; n <= max_order; n++) {
    for (size_t i = 0; i + (size_t)n <= seg->count; i++) {
      const size_t a = seg->starts[i], b = seg->ends[i + (size_t)n - 1];
      char *key = g_strndup(seg->text + a, b - a);
      gpointer old = NULL;
      if (g_hash_table_lookup_extended(h, key, NULL, &old)) {
        g_hash_table_insert(h, key, GSIZE_TO_POINTER(GPOINTER_TO_SIZE(old) + 1));
      } else {
        g_hash_table_insert(h, key, GSIZE_TO_POINTER(1));
      }
    }
  }
  return h;
}

/* The number of tokens of an n-gram key (tokens are space-separated). */
static int key_order(const char *key) {
  int n = 1;
  for (const char *p = key; *p; p++) n += *p == ' ';
  return n;
}

/* BLEU._get_closest_ref_len: ties go to the shorter reference. */
static int64_t closest_ref_len(int64_t hyp_len, const int64_t *lens, size_t n) {
  int64_t best_diff = -1, best = -1;
  for (size_t i = 0; i < n; i++) {
    const int64_t diff = hyp_len > lens[i] ? hyp_len - lens[i] : lens[i] - hyp_len;
    if (best_diff == -1 || diff < best_diff) {
      best_diff = diff;
      best = lens[i];
    } else if (diff == best_diff && lens[i] < best) {
      best = lens[i];
    }
  }
  return best;
}

static gboolean check_options(const ps_bleu_options *opt, GError **error) {
  if (opt->max_order < 1 || opt->max_order > PS_BLEU_MAX_ORDER) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "BLEU: max_ngram_order %d is not in 1..%d",
                opt->max_order, PS_BLEU_MAX_ORDER);
    return FALSE;
  }
  return TRUE;
}

gboolean ps_bleu_add_segment(const ps_bleu_options *opt, const char *hyp, const char *const *refs,
                             size_t n_refs, ps_bleu_stats *acc, GError **error) {
  if (!check_options(opt, error)) return FALSE;
  const int N = opt->max_order;
  GHashTable *ref_max = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  int64_t *ref_lens = g_new(int64_t, n_refs + 1);
  size_t used = 0;
  for (size_t r = 0; r < n_refs; r++) {
    if (!refs[r] || !refs[r][0]) continue; /* sacreBLEU drops missing references */
    segment seg;
    segment_init(&seg, preprocess(opt, refs[r]));
    ref_lens[used++] = (int64_t)seg.count;
    GHashTable *counts = count_ngrams(&seg, N);
    GHashTableIter it;
    gpointer key, value;
    g_hash_table_iter_init(&it, counts);
    while (g_hash_table_iter_next(&it, &key, &value)) {
      const gsize c = GPOINTER_TO_SIZE(value);
      gpointer have = g_hash_table_lookup(ref_max, key);
      if (!have || GPOINTER_TO_SIZE(have) < c)
        g_hash_table_insert(ref_max, g_strdup(key), GSIZE_TO_POINTER(c));
    }
    g_hash_table_destroy(counts);
    segment_clear(&seg);
  }
  if (used == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "BLEU: a segment has no reference (all are empty or missing)");
    g_hash_table_destroy(ref_max);
    g_free(ref_lens);
    return FALSE;
  }

  segment h;
  segment_init(&h, preprocess(opt, hyp ? hyp : ""));
  GHashTable *hyp_counts = count_ngrams(&h, N);
  GHashTableIter it;
  gpointer key, value;
  g_hash_table_iter_init(&it, hyp_counts);
  while (g_hash_table_iter_next(&it, &key, &value)) {
    const int n = key_order(key) - 1;
    const gsize c = GPOINTER_TO_SIZE(value);
    acc->total[n] += (int64_t)c;
    const gsize rc = GPOINTER_TO_SIZE(g_hash_table_lookup(ref_max, key));
    acc->correct[n] += (int64_t)(c < rc ? c : rc);
  }
  acc->sys_len += (int64_t)h.count;
  acc->ref_len += closest_ref_len((int64_t)h.count, ref_lens, used);

  g_hash_table_destroy(hyp_counts);
  segment_clear(&h);
  g_hash_table_destroy(ref_max);
  g_free(ref_lens);
  return TRUE;
}

/* sacreBLEU's my_log: log(0) is a large negative number, not -inf. */
static double my_log(double x) {
  return x == 0.0 ? -9999999999.0 : log(x);
}

void ps_bleu_from_stats(const ps_bleu_options *opt, const ps_bleu_stats *stats,
                        ps_bleu_score *out) {
  memset(out, 0, sizeof *out);
  out->stats = *stats;
  const int N = opt->max_order < 1
                    ? 1
                    : (opt->max_order > PS_BLEU_MAX_ORDER ? PS_BLEU_MAX_ORDER : opt->max_order);
  double smooth_value = opt->smooth_value;
  if (smooth_value < 0)
    smooth_value = opt->smooth == PS_BLEU_SMOOTH_FLOOR   ? 0.1
                   : opt->smooth == PS_BLEU_SMOOTH_ADD_K ? 1.0
                                                         : 0.0;
  const double sys_len = (double)stats->sys_len, ref_len = (double)stats->ref_len;
  if (sys_len < ref_len)
    out->bp = sys_len > 0 ? exp(1.0 - ref_len / sys_len) : 0.0;
  else
    out->bp = 1.0;

  gboolean any = FALSE;
  for (int n = 0; n < N; n++) any |= stats->correct[n] != 0;
  if (!any) return; /* sacreBLEU #141: no match at all is BLEU 0, precisions 0 */

  double correct[PS_BLEU_MAX_ORDER], total[PS_BLEU_MAX_ORDER];
  for (int n = 0; n < N; n++) {
    correct[n] = (double)stats->correct[n];
    total[n] = (double)stats->total[n];
  }
  double smooth_mteval = 1.0;
  int eff_order = N;
  for (int n = 1; n <= N; n++) {
    if (opt->smooth == PS_BLEU_SMOOTH_ADD_K && n > 1) {
      correct[n - 1] += smooth_value;
      total[n - 1] += smooth_value;
    }
    if (total[n - 1] == 0) break;
    if (opt->effective_order) eff_order = n;
    if (correct[n - 1] == 0) {
      if (opt->smooth == PS_BLEU_SMOOTH_EXP) {
        smooth_mteval *= 2;
        out->precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
      } else if (opt->smooth == PS_BLEU_SMOOTH_FLOOR) {
        out->precisions[n - 1] = 100.0 * smooth_value / total[n - 1];
      }
    } else {
      out->precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
    }
  }
  /* Python's sum() adds left to right; so does this loop. */
  double s = 0.0;
  for (int n = 0; n < eff_order; n++) s += my_log(out->precisions[n]);
  out->score = out->bp * exp(s / eff_order);
}

gboolean ps_bleu_corpus(const ps_bleu_options *opt, const char *const *hyps, size_t n,
                        const char *const *refs, size_t n_refs, ps_bleu_score *out,
                        GError **error) {
  ps_bleu_stats acc;
  memset(&acc, 0, sizeof acc);
  const char **seg_refs = g_new0(const char *, n_refs + 1);
  for (size_t i = 0; i < n; i++) {
    for (size_t r = 0; r < n_refs; r++) seg_refs[r] = refs[r * n + i];
    if (!ps_bleu_add_segment(opt, hyps[i], seg_refs, n_refs, &acc, error)) {
      g_prefix_error(error, "sentence %zu: ", i);
      g_free(seg_refs);
      return FALSE;
    }
  }
  g_free(seg_refs);
  ps_bleu_from_stats(opt, &acc, out);
  return TRUE;
}

gboolean ps_bleu_sentence(const ps_bleu_options *opt, const char *hyp, const char *const *refs,
                          size_t n_refs, ps_bleu_score *out, GError **error) {
  ps_bleu_stats acc;
  memset(&acc, 0, sizeof acc);
  if (!ps_bleu_add_segment(opt, hyp, refs, n_refs, &acc, error)) return FALSE;
  ps_bleu_from_stats(opt, &acc, out);
  return TRUE;
}
