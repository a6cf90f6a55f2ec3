/* fuzz_chat_reply.c — libFuzzer target for the reply parser of the HTTP
 * annotator (plugins/annotator_http/chat_json.c): the raw bytes are a reply
 * body from an OpenAI-compatible endpoint, passed with their length (not
 * NUL-terminated, as curl hands them over).
 *
 * A rejected body must come with an error naming the URL. Accepted content
 * is non-empty, trimmed and valid UTF-8; it then goes through the <SEG> normalisation,
 * whose result must hold exactly one <SEG>, followed only by closing
 * punctuation. */
#include <string.h>

#include "chat_json.h"
#include "fuzz_common.h"

#define URL "http://fuzz.invalid/v1/chat/completions"

static void check_normalised(const char *text, gboolean append) {
  GError *err = NULL;
  char *out = ps_chat_normalise_seg(text, append, &err);
  if (!out) {
    fuzz_require(!append && err && err->message[0], "only a missing <SEG> without append fails");
    g_error_free(err);
    return;
  }
  const char *first = strstr(out, PS_SEG_TOKEN);
  fuzz_require(first != NULL, "the normalised chain has a <SEG>");
  fuzz_require(strstr(first + strlen(PS_SEG_TOKEN), PS_SEG_TOKEN) == NULL, "exactly one <SEG>");
  for (const char *p = first + strlen(PS_SEG_TOKEN); *p; p++)
    fuzz_require(strchr(".!?)\"'", *p) != NULL, "only closing punctuation after <SEG>");
  g_free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_setup();
  GError *err = NULL;
  char *text = ps_chat_reply_content((const char *)data, (gssize)size, URL, &err);
  if (!text) {
    fuzz_require(err && g_str_has_prefix(err->message, URL), "an error naming the URL");
    fuzz_require(g_utf8_validate(err->message, -1, NULL), "the error message is valid UTF-8");
    g_error_free(err);
    return 0;
  }
  fuzz_require(text[0] != '\0' && !g_ascii_isspace(text[0]) && !g_ascii_isspace(text[strlen(text) - 1]),
               "content is non-empty and trimmed");
  fuzz_require(g_utf8_validate(text, -1, NULL), "content is valid UTF-8");
  check_normalised(text, TRUE);
  check_normalised(text, FALSE);
  g_free(text);
  return 0;
}
