/* tokenizer_13a.c — sacreBLEU's 13a tokenizer (tokenizers/tokenizer_13a.py
 * and tokenizer_re.py) without a regex engine.  Each of the four regexes of
 * TokenizerRegexp is a left-to-right scan with non-overlapping matches, as
 * re.sub does them:
 *   1. ([\{-\~\[-\` -\&\(-\+\:-\@\/])  -> ' \1 '
 *   2. ([^0-9])([\.,])                  -> '\1 \2 '
 *   3. ([\.,])([^0-9])                  -> ' \1 \2'
 *   4. ([0-9])(-)                       -> '\1 \2 '
 * then ' '.join(line.split()).  Working on UTF-8 bytes gives the same result
 * as Python's code points: every class above is ASCII except [^0-9], and a
 * multi-byte character can neither start nor be split by a match in a way
 * that changes the output (no continuation byte is '.', ',', '-' or a digit). */
#include <string.h>

#include "py_text.h"
#include "text_metric.h"

/* s.replace(from, to), always a new string. */
static char *replace_all(const char *s, const char *from, const char *to) {
  GString *out = g_string_sized_new(strlen(s));
  const size_t flen = strlen(from);
  const char *p = s, *hit;
  while ((hit = strstr(p, from)) != NULL) {
    g_string_append_len(out, p, hit - p);
    g_string_append(out, to);
    p = hit + flen;
  }
  g_string_append(out, p);
  return g_string_free(out, FALSE);
}

static void replace_in_place(char **s, const char *from, const char *to) {
  char *r = replace_all(*s, from, to);
  g_free(*s);
  *s = r;
}

/* Regex 1's class: { | } ~  [ \ ] ^ _ `  space ! " # $ % &  ( ) * +  : ; < = > ? @  / */
static inline gboolean isolated(unsigned char c) {
  return (c >= 0x7B && c <= 0x7E) || (c >= 0x5B && c <= 0x60) || (c >= 0x20 && c <= 0x26) ||
         (c >= 0x28 && c <= 0x2B) || (c >= 0x3A && c <= 0x40) || c == '/';
}

static inline gboolean digit(unsigned char c) {
  return c >= '0' && c <= '9';
}
static inline gboolean dot_comma(unsigned char c) {
  return c == '.' || c == ',';
}

char *ps_bleu_tokenize_13a(const char *line) {
  char *s = replace_all(line, "<skipped>", "");
  replace_in_place(&s, "-\n", "");
  replace_in_place(&s, "\n", " ");
  if (strchr(s, '&')) {
    replace_in_place(&s, "&quot;", "\"");
    replace_in_place(&s, "&amp;", "&");
    replace_in_place(&s, "&lt;", "<");
    replace_in_place(&s, "&gt;", ">");
  }

  /* f' {line} ' then regex 1. */
  GString *a = g_string_sized_new(3 * strlen(s) + 8);
  g_string_append_c(a, ' ');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (isolated(*p)) {
      g_string_append_c(a, ' ');
      g_string_append_c(a, (char)*p);
      g_string_append_c(a, ' ');
    } else {
      g_string_append_c(a, (char)*p);
    }
  }
  g_string_append_c(a, ' ');
  g_free(s);

  /* Regexes 2-4: two-character patterns; a match consumes both characters. */
  for (int rule = 2; rule <= 4; rule++) {
    GString *b = g_string_sized_new(a->len * 2 + 8);
    const unsigned char *p = (const unsigned char *)a->str;
    const size_t n = a->len;
    size_t i = 0;
    while (i < n) {
      const unsigned char c0 = p[i], c1 = i + 1 < n ? p[i + 1] : 0;
      const gboolean has1 = i + 1 < n;
      if (rule == 2 && has1 && !digit(c0) && dot_comma(c1)) {
        g_string_append_c(b, (char)c0);
        g_string_append_c(b, ' ');
        g_string_append_c(b, (char)c1);
        g_string_append_c(b, ' ');
        i += 2;
      } else if (rule == 3 && has1 && dot_comma(c0) && !digit(c1)) {
        g_string_append_c(b, ' ');
        g_string_append_c(b, (char)c0);
        g_string_append_c(b, ' ');
        g_string_append_c(b, (char)c1);
        i += 2;
      } else if (rule == 4 && has1 && digit(c0) && c1 == '-') {
        g_string_append_c(b, (char)c0);
        g_string_append(b, " - ");
        i += 2;
      } else {
        g_string_append_c(b, (char)c0);
        i += 1;
      }
    }
    g_string_free(a, TRUE);
    a = b;
  }
  char *out = ps_py_collapse(a->str);
  g_string_free(a, TRUE);
  return out;
}
