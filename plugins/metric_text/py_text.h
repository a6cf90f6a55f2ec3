/* py_text.h — the few Python string semantics the reference metrics rely on
 * (str.split / str.rstrip whitespace, the `\w` of Python's re module),
 * over UTF-8.  Not installed; used by bleu.c, tokenizer_13a.c and token_f1.c. */
#pragma once

#include <glib.h>

/* Python's str.isspace() for one code point (the whitespace of str.split()). */
gboolean ps_py_isspace(gunichar c);
/* Python re's \w for str patterns: letters, numbers (Nd, Nl, No) and '_'. */
gboolean ps_py_isword(gunichar c);

/* Bytes of the code point at s (1 for an invalid byte, which is then treated
 * as a non-space, non-word character); *c receives it (or (gunichar)-1). */
int ps_py_char(const char *s, const char *end, gunichar *c);

/* s.lower() as a new string (g_utf8_strdown; ASCII only when s is not
 * valid UTF-8, which g_utf8_strdown must not see). */
char *ps_py_lower(const char *s);
/* s.rstrip() as a new string. */
char *ps_py_rstrip(const char *s);
/* s.split(): the tokens in a new NULL-terminated array (g_strfreev). */
char **ps_py_split(const char *s, size_t *count);
/* ' '.join(s.split()) as a new string. */
char *ps_py_collapse(const char *s);
