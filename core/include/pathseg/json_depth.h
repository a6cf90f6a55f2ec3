/* json_depth.h — a nesting-depth guard to run on untrusted JSON before
 * json-glib parses it.
 *
 * json-glib (1.6) parses arrays and objects recursively with no depth
 * limit, so a reply body or file of a few hundred kilobytes of '[' overflows
 * the stack and kills the process. Every parser of JSON from outside (an
 * HTTP reply, a manifest, a GeoJSON or tokenizer.json file) checks the depth
 * first. Header-only, so that plugins need nothing new to link. */
#pragma once

#include <glib.h>
#include <string.h>

/* Far above any real document (tokenizer.json, GeoJSON, chat replies nest
 * less than 10 deep), far below what overflows a thread's stack. */
#define PS_JSON_MAX_DEPTH 512

/* TRUE when the brackets of `text` (`len` bytes, -1: NUL-terminated) nest at
 * most `max_depth` deep, strings skipped. A lexical scan only: whether the
 * text is JSON at all is left to the parser. */
static inline gboolean ps_json_depth_ok(const char *text, gssize len, int max_depth) {
  const gsize n = len < 0 ? strlen(text) : (gsize)len;
  int depth = 0;
  gboolean in_string = FALSE;
  for (gsize i = 0; i < n; i++) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\')
        i++; /* the escaped character cannot end the string */
      else if (c == '"')
        in_string = FALSE;
    } else if (c == '"') {
      in_string = TRUE;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return FALSE;
    } else if ((c == ']' || c == '}') && depth > 0) {
      depth--;
    }
  }
  return TRUE;
}
