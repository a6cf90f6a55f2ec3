/* bpe_split.c — the Qwen2 pre-tokenizer regex as a hand-written scanner.
 *
 *   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|
 *    ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *
 * tokenizers runs it with Oniguruma, a backtracking engine: at each position
 * the alternatives are tried in order and the first that matches wins; the
 * matches are consecutive because every character is covered by some
 * alternative (Split "Isolated" therefore yields exactly the matches).
 * Each alternative's backtracking is resolved by hand below.
 *
 * Character classes follow Oniguruma's Unicode definitions: \p{L} = Lu Ll
 * Lt Lm Lo, \p{N} = Nd Nl No (GLib's g_unichar_type), \s = the White_Space
 * property (which, unlike g_unichar_isspace, includes U+0085 and, like it,
 * excludes U+FEFF and U+200B). */
#include "bpe_internal.h"

#include <string.h>

enum { C_L = 1, C_N, C_WS, C_NL /* \r or \n: also whitespace */, C_OTHER };

static guint8 classify(gunichar c) {
  if (c < 128) {
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_L;
    if (c >= '0' && c <= '9') return C_N;
    if (c == '\r' || c == '\n') return C_NL;
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) return C_WS;
    return C_OTHER;
  }
  switch (c) {
    case 0x85: case 0xA0: case 0x1680: case 0x2028: case 0x2029: case 0x202F: case 0x205F:
    case 0x3000:
      return C_WS;
    default:
      break;
  }
  if (c >= 0x2000 && c <= 0x200A) return C_WS;
  switch (g_unichar_type(c)) {
    case G_UNICODE_LOWERCASE_LETTER:
    case G_UNICODE_MODIFIER_LETTER:
    case G_UNICODE_OTHER_LETTER:
    case G_UNICODE_TITLECASE_LETTER:
    case G_UNICODE_UPPERCASE_LETTER:
      return C_L;
    case G_UNICODE_DECIMAL_NUMBER:
    case G_UNICODE_LETTER_NUMBER:
    case G_UNICODE_OTHER_NUMBER:
      return C_N;
    default:
      return C_OTHER;
  }
}

static inline gboolean is_ws(guint8 c) { return c == C_WS || c == C_NL; }

/* Case-insensitive ASCII letter for the contractions. Oniguruma's case
 * folding also folds U+017F LATIN SMALL LETTER LONG S to 's' (and U+212A
 * KELVIN SIGN to 'k', which no contraction uses). */
static inline gunichar fold(gunichar c) {
  if (c == 0x17F) return 's';
  if (c < 128) return c | 0x20;
  return 0;
}

/* Length in characters of the contraction at i, or 0. */
static size_t contraction(const gunichar *cp, size_t i, size_t n) {
  if (cp[i] != '\'' || i + 1 >= n) return 0;
  gunichar a = fold(cp[i + 1]);
  if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
  if (i + 2 >= n) return 0;
  gunichar b = fold(cp[i + 2]);
  if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
  return 0;
}

/* End (exclusive) of the run of class `c` starting at i. */
static inline size_t run(const guint8 *cls, size_t i, size_t n, guint8 c) {
  while (i < n && cls[i] == c) i++;
  return i;
}

static size_t match_at(const gunichar *cp, const guint8 *cls, size_t i, size_t n) {
  guint8 c = cls[i];
  /* 1: (?i:'s|'t|'re|'ve|'m|'ll|'d) */
  size_t k = contraction(cp, i, n);
  if (k) return i + k;
  /* 2: [^\r\n\p{L}\p{N}]?\p{L}+ — the optional char is taken when it can
   * be, and dropped on backtracking, which only helps if cls[i] is L. */
  if (c == C_L) return run(cls, i, n, C_L);
  if ((c == C_WS || c == C_OTHER) && i + 1 < n && cls[i + 1] == C_L)
    return run(cls, i + 1, n, C_L);
  /* 3: \p{N} — one digit at a time */
  if (c == C_N) return i + 1;
  /* 4: ' '?[^\s\p{L}\p{N}]+[\r\n]* */
  if (c == C_OTHER || (cp[i] == ' ' && i + 1 < n && cls[i + 1] == C_OTHER)) {
    size_t j = run(cls, c == C_OTHER ? i : i + 1, n, C_OTHER);
    return run(cls, j, n, C_NL);
  }
  /* Only whitespace is left: c is C_WS or C_NL. */
  size_t j = i;
  while (j < n && is_ws(cls[j])) j++;
  /* 5: \s*[\r\n]+ — \s* backs off to the last \r or \n of the run. */
  for (size_t m = j; m > i; m--)
    if (cls[m - 1] == C_NL) return m;
  /* 6: \s+(?!\S) — the whole run at the end of the text, else the run but
   * its last character (which joins the next word). */
  if (j == n) return j;
  if (j - i >= 2) return j - 1;
  /* 7: \s+ */
  return j;
}

static void reserve_chars(ps_bpe_scratch *s, size_t n) {
  if (n <= s->cap_chars) return;
  size_t cap = MAX(n, s->cap_chars * 2);
  s->cp = g_renew(gunichar, s->cp, cap);
  s->cls = g_renew(guint8, s->cls, cap);
  s->off = g_renew(uint32_t, s->off, cap + 1);
  s->cap_chars = cap;
}

static void push_span(ps_bpe_scratch *s, uint32_t start, uint32_t len) {
  if (s->n_spans == s->cap_spans) {
    s->cap_spans = MAX(64, s->cap_spans * 2);
    s->spans = g_renew(ps_bpe_span, s->spans, s->cap_spans);
  }
  s->spans[s->n_spans++] = (ps_bpe_span){start, len};
}

void ps_bpe_split(ps_bpe_scratch *s, const char *text, size_t len) {
  s->n_spans = 0;
  /* Decode once: code points, classes and byte offsets (len chars at most). */
  reserve_chars(s, len);
  size_t n = 0;
  const guint8 *p = (const guint8 *)text;
  for (size_t b = 0; b < len;) {
    gunichar c;
    size_t w;
    if (p[b] < 0x80) {
      c = p[b];
      w = 1;
    } else {
      c = g_utf8_get_char((const char *)p + b);
      w = (size_t)(g_utf8_next_char((const char *)p + b) - (const char *)(p + b));
    }
    s->cp[n] = c;
    s->cls[n] = classify(c);
    s->off[n] = (uint32_t)b;
    n++;
    b += w;
  }
  s->off[n] = (uint32_t)len;
  for (size_t i = 0; i < n;) {
    size_t j = match_at(s->cp, s->cls, i, n);
    push_span(s, s->off[i], s->off[j] - s->off[i]);
    i = j;
  }
}

void ps_bpe_scratch_clear(ps_bpe_scratch *s) {
  g_free(s->cp);
  g_free(s->cls);
  g_free(s->off);
  g_free(s->spans);
  g_free(s->syms);
  g_free(s->heap);
  memset(s, 0, sizeof *s);
}
