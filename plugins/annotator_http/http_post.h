/* http_post.h — one JSON POST through libcurl with a total time limit.
 * Transport failures (connection refused, DNS, timeout) are errors naming
 * the URL; any HTTP status is a success of the transport and is returned
 * with the body for the caller to judge. */
#pragma once

#include <glib.h>

typedef struct ps_http_reply {
  long status;   /* HTTP status code */
  GString *body; /* the reply body */
} ps_http_reply;

/* `handle`: a CURL* reused between calls (keeps the connection); `bearer`:
 * the API key, or NULL for no Authorization header. timeout_s bounds the
 * whole exchange. On success fills `reply` (free reply->body). */
gboolean ps_http_post_json(void *handle, const char *url, const char *bearer, const char *body, double timeout_s,
                           ps_http_reply *reply, GError **error);
