/* token_f1.c — SQuAD v1.1 token F1 and exact match (huggingface/evaluate
 * metrics/squad/compute_score.py): normalize_answer, f1_score over token
 * multisets, and the max over ground truths. */
#include <string.h>

#include "py_text.h"
#include "text_metric.h"

/* string.punctuation: the 32 ASCII punctuation characters. */
static inline gboolean squad_punct(unsigned char c) {
  return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
         (c >= 0x7B && c <= 0x7E);
}

/* The code point before byte offset `at` (a character boundary) in s, or
 * (gunichar)-1 at the start. */
static gunichar char_before(const char *s, size_t at) {
  if (at == 0) return (gunichar)-1;
  const char *p = s + at - 1;
  while (p > s && ((unsigned char)*p & 0xC0) == 0x80) p--;
  gunichar c;
  const int len = ps_py_char(p, s + at, &c);
  return p + len == s + at ? c : (gunichar)-1; /* an invalid tail is no word character */
}

/* re.sub(r"\b(a|an|the)\b", " ", s): scanning the original string, a match
 * needs a non-word character (or the start) before and after the article. */
static char *remove_articles(const char *s) {
  static const char *const articles[] = {"a", "an", "the"}; /* alternation order */
  const size_t len = strlen(s);
  GString *out = g_string_sized_new(len);
  size_t i = 0;
  while (i < len) {
    gboolean matched = FALSE;
    if (!ps_py_isword(char_before(s, i))) {
      for (size_t k = 0; k < G_N_ELEMENTS(articles) && !matched; k++) {
        const size_t alen = strlen(articles[k]);
        if (strncmp(s + i, articles[k], alen) != 0) continue;
        gunichar next = (gunichar)-1;
        if (i + alen < len) ps_py_char(s + i + alen, s + len, &next);
        if (!ps_py_isword(next)) {
          g_string_append_c(out, ' ');
          i += alen;
          matched = TRUE;
        }
      }
    }
    if (!matched) {
      gunichar c;
      const int clen = ps_py_char(s + i, s + len, &c);
      g_string_append_len(out, s + i, clen);
      i += (size_t)clen;
    }
  }
  return g_string_free(out, FALSE);
}

char *ps_squad_normalize(const char *s) {
  g_autofree char *low = ps_py_lower(s ? s : "");
  GString *nopunct = g_string_sized_new(strlen(low));
  for (const unsigned char *p = (const unsigned char *)low; *p; p++)
    if (!squad_punct(*p)) g_string_append_c(nopunct, (char)*p);
  g_autofree char *noart = remove_articles(nopunct->str);
  g_string_free(nopunct, TRUE);
  return ps_py_collapse(noart);
}

double ps_token_f1(const char *prediction, const char *ground_truth) {
  g_autofree char *p = ps_squad_normalize(prediction);
  g_autofree char *g = ps_squad_normalize(ground_truth);
  size_t np = 0, ng = 0;
  g_auto(GStrv) pt = ps_py_split(p, &np);
  g_auto(GStrv) gt = ps_py_split(g, &ng);
  /* Counter(pred) & Counter(gt): the multiset intersection. */
  GHashTable *counts = g_hash_table_new(g_str_hash, g_str_equal);
  for (size_t i = 0; i < ng; i++)
    g_hash_table_insert(counts, gt[i],
                        GSIZE_TO_POINTER(GPOINTER_TO_SIZE(g_hash_table_lookup(counts, gt[i])) + 1));
  size_t same = 0;
  for (size_t i = 0; i < np; i++) {
    const gsize c = GPOINTER_TO_SIZE(g_hash_table_lookup(counts, pt[i]));
    if (c > 0) {
      same++;
      g_hash_table_insert(counts, pt[i], GSIZE_TO_POINTER(c - 1));
    }
  }
  g_hash_table_destroy(counts);
  if (same == 0) return 0.0;
  const double precision = (double)same / (double)np, recall = (double)same / (double)ng;
  return 2.0 * precision * recall / (precision + recall);
}

double ps_token_f1_max(const char *prediction, const char *const *refs, size_t n_refs) {
  double best = 0.0;
  for (size_t r = 0; r < n_refs; r++) {
    if (!refs[r]) continue;
    const double f = ps_token_f1(prediction, refs[r]);
    if (f > best) best = f;
  }
  return best;
}

gboolean ps_exact_match(const char *prediction, const char *ground_truth) {
  g_autofree char *p = ps_squad_normalize(prediction);
  g_autofree char *g = ps_squad_normalize(ground_truth);
  return strcmp(p, g) == 0;
}
