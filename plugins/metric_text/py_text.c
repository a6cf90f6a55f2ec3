/* py_text.c — Python's whitespace and word-character rules over UTF-8, so
 * that tokenization and normalisation split exactly where sacreBLEU and the
 * SQuAD script (both Python) split. */
#include "py_text.h"

#include <string.h>

gboolean ps_py_isspace(gunichar c) {
  /* Py_UNICODE_ISSPACE: bidirectional WS/B/S or category Zs. */
  return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 ||
         c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
         c == 0x205F || c == 0x3000;
}

gboolean ps_py_isword(gunichar c) {
  if (c == '_') return TRUE;
  if (c < 0x80) return g_ascii_isalnum((char)c);
  if (c == (gunichar)-1) return FALSE;
  switch (g_unichar_type(c)) {
  case G_UNICODE_UPPERCASE_LETTER:
  case G_UNICODE_LOWERCASE_LETTER:
  case G_UNICODE_TITLECASE_LETTER:
  case G_UNICODE_MODIFIER_LETTER:
  case G_UNICODE_OTHER_LETTER:
  case G_UNICODE_DECIMAL_NUMBER:
  case G_UNICODE_LETTER_NUMBER:
  case G_UNICODE_OTHER_NUMBER:
    return TRUE;
  default:
    return FALSE;
  }
}

int ps_py_char(const char *s, const char *end, gunichar *c) {
  const unsigned char b = (unsigned char)*s;
  if (b < 0x80) {
    *c = b;
    return 1;
  }
  const gunichar u = g_utf8_get_char_validated(s, end - s);
  if (u == (gunichar)-1 || u == (gunichar)-2) {
    *c = (gunichar)-1;
    return 1;
  }
  *c = u;
  return (int)(g_utf8_next_char(s) - s);
}

char *ps_py_lower(const char *s) {
  return g_utf8_validate(s, -1, NULL) ? g_utf8_strdown(s, -1) : g_ascii_strdown(s, -1);
}

char *ps_py_rstrip(const char *s) {
  const char *end = s + strlen(s), *p = s, *keep = s;
  while (p < end) {
    gunichar c;
    const int len = ps_py_char(p, end, &c);
    p += len;
    if (!ps_py_isspace(c)) keep = p;
  }
  return g_strndup(s, keep - s);
}

char **ps_py_split(const char *s, size_t *count) {
  GPtrArray *out = g_ptr_array_new();
  const char *end = s + strlen(s), *p = s, *start = NULL;
  while (p < end) {
    gunichar c;
    const int len = ps_py_char(p, end, &c);
    if (ps_py_isspace(c)) {
      if (start) g_ptr_array_add(out, g_strndup(start, p - start));
      start = NULL;
    } else if (!start) {
      start = p;
    }
    p += len;
  }
  if (start) g_ptr_array_add(out, g_strndup(start, end - start));
  if (count) *count = out->len;
  g_ptr_array_add(out, NULL);
  return (char **)g_ptr_array_free(out, FALSE);
}

char *ps_py_collapse(const char *s) {
  GString *out = g_string_sized_new(strlen(s));
  const char *end = s + strlen(s), *p = s, *start = NULL;
  while (p <= end) {
    gunichar c = ' ';
    const int len = p < end ? ps_py_char(p, end, &c) : 1;
    if (p == end || ps_py_isspace(c)) {
      if (start) {
        if (out->len) g_string_append_c(out, ' ');
        g_string_append_len(out, start, p - start);
      }
      start = NULL;
    } else if (!start) {
      start = p;
    }
    p += len;
  }
  return g_string_free(out, FALSE);
}
