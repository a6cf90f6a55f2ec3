/* chat_json.h — the JSON of an OpenAI-compatible chat completion (the
 * `/v1/chat/completions` of OpenAI, llama.cpp's server, vLLM, Ollama):
 * building the request for one annotator item, reading the reply, and
 * making the chain end with exactly one <SEG>. Pure functions (no I/O), so
 * that every bad reply can be tested without a server. */
#pragma once

#include <glib.h>
#include <pathseg/annotator.h>

typedef struct ps_chat_request {
  const char *model;
  const char *system_prompt;
  double temperature;
  int max_tokens;
} ps_chat_request;

/* The default system prompt: how to write a chain from the facts. */
extern const char ps_chat_default_system_prompt[];

/* The user message: the query and the item's descriptors as text. g_free. */
char *ps_chat_user_message(const ps_annotator_item *item);
/* The request body: {"model", "messages": [system, user], "temperature",
 * "max_tokens", "seed", "stream": false}. The seed is item->seed reduced to
 * 31 bits (servers take a non-negative 32-bit integer). g_free. */
char *ps_chat_request_body(const ps_chat_request *req, const ps_annotator_item *item);

/* The assistant's text of a reply body: choices[0].message.content. Errors
 * (PS_ERROR_PARSE, messages prefixed with `url`) for a body that is not
 * JSON, not an object, an {"error": ...} reply (its message quoted), no
 * or empty choices, no message or content, content that is not a string or
 * is blank, and finish_reason "length" (cut off by max_tokens). g_free. */
char *ps_chat_reply_content(const char *body, gssize length, const char *url, GError **error);

/* `text` with exactly one <SEG>, at its end: surrounding whitespace is
 * trimmed; when there are several, all but the last are removed; words
 * after the last are dropped (closing punctuation stays); when there is
 * none, " <SEG>" is appended if `append`, else PS_ERROR_INVALID. g_free. */
char *ps_chat_normalise_seg(const char *text, gboolean append, GError **error);
