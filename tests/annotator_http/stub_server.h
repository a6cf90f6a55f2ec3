/* stub_server.h — a tiny OpenAI-style chat-completions server for tests,
 * on 127.0.0.1 at a free port, one thread per connection, one request per
 * connection (Connection: close). The first path segment picks the reply:
 *
 *   /ok/...       200, content "STUB seed=<request seed>: <reasoning> So the mask is <SEG>."
 *   /noseg/...    200, a chain without <SEG>
 *   /twoseg/...   200, "<SEG>" twice and words after the last
 *   /e500/...     500 every time
 *   /flaky/...    500 on the first request to it, then like /ok
 *   /alt/...      500 on every second request to it (the 2nd, 4th, ...), else like /ok
 *   /e401/...     401 with an OpenAI error object
 *   /badjson/...  200 with a body that is not JSON
 *   /errobj/...   200 with {"error": {"message": "model not loaded"}}
 *   /length/...   200 cut off at max_tokens (finish_reason "length")
 *   /slow/...     waits 1.5 s, then like /ok
 *
 * Requests are counted per mode; the last request's body and Authorization
 * header are kept. */
#pragma once

#include <glib.h>

typedef struct stub_server stub_server;

stub_server *stub_start(GError **error);
/* Stops accepting, waits for the connections in flight, frees. */
void stub_stop(stub_server *s);
int stub_port(const stub_server *s);
/* Requests so far to /MODE/... */
int stub_count(stub_server *s, const char *mode);
/* Copies of the last request's body and Authorization header ("" if none); g_free. */
char *stub_last_body(stub_server *s);
char *stub_last_auth(stub_server *s);
