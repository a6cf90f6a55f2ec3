/* stub_server.c — the chat-completions stub of the annotator tests
 * (stub_server.h): plain POSIX sockets, GLib threads, json-glib for the
 * request's seed. */
#include "stub_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <json-glib/json-glib.h>
#include <netinet/in.h>
#include <pathseg/error.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct stub_server {
  int fd, port;
  gint stop;
  GThread *acceptor;
  GMutex lock;
  GPtrArray *handlers; /* GThread* */
  GHashTable *counts;  /* mode -> count */
  char *last_body, *last_auth;
};

typedef struct {
  stub_server *s;
  int fd;
} conn;

static void send_all(int fd, const char *data, size_t n) {
  while (n > 0) {
    ssize_t k = send(fd, data, n, MSG_NOSIGNAL); /* the client may have timed out and gone */
    if (k <= 0) return;
    data += k;
    n -= (size_t)k;
  }
}

static void reply(int fd, int status, const char *body) {
  const char *reason = status == 200 ? "OK" : status == 401 ? "Unauthorized" : "Internal Server Error";
  g_autofree char *head = g_strdup_printf("HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: "
                                          "%zu\r\nConnection: close\r\n\r\n",
                                          status, reason, strlen(body));
  send_all(fd, head, strlen(head));
  send_all(fd, body, strlen(body));
}

static char *chat_reply(const char *content, const char *finish) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "id");
  json_builder_add_string_value(b, "chatcmpl-stub");
  json_builder_set_member_name(b, "object");
  json_builder_add_string_value(b, "chat.completion");
  json_builder_set_member_name(b, "choices");
  json_builder_begin_array(b);
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "index");
  json_builder_add_int_value(b, 0);
  json_builder_set_member_name(b, "message");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "role");
  json_builder_add_string_value(b, "assistant");
  json_builder_set_member_name(b, "content");
  json_builder_add_string_value(b, content);
  json_builder_end_object(b);
  json_builder_set_member_name(b, "finish_reason");
  json_builder_add_string_value(b, finish);
  json_builder_end_object(b);
  json_builder_end_array(b);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, root);
  return json_generator_to_data(gen, NULL);
}

static gint64 request_seed(const char *body) {
  g_autoptr(JsonParser) p = json_parser_new();
  if (!json_parser_load_from_data(p, body, -1, NULL) || !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(p))) return -1;
  return json_object_get_int_member_with_default(json_node_get_object(json_parser_get_root(p)), "seed", -1);
}

static void serve(stub_server *s, int fd, GString *in, gssize header_end, size_t content_length) {
  /* "POST /mode/v1/chat/completions HTTP/1.1" */
  char mode[32] = "";
  sscanf(in->str, "POST /%31[^/ ]", mode);
  g_autofree char *body = g_strndup(in->str + header_end, content_length);
  g_autofree char *headers = g_strndup(in->str, header_end);
  g_autofree char *lower = g_ascii_strdown(headers, -1);
  char *auth = strstr(lower, "\r\nauthorization:");
  g_autofree char *auth_value = auth ? g_strndup(headers + (auth - lower) + 16, strcspn(auth + 16, "\r")) : g_strdup("");
  int n;
  g_mutex_lock(&s->lock);
  n = GPOINTER_TO_INT(g_hash_table_lookup(s->counts, mode)) + 1;
  g_hash_table_replace(s->counts, g_strdup(mode), GINT_TO_POINTER(n));
  g_free(s->last_body);
  s->last_body = g_strdup(body);
  g_free(s->last_auth);
  s->last_auth = g_strdup(g_strstrip(auth_value));
  g_mutex_unlock(&s->lock);

  g_autofree char *ok_text = g_strdup_printf(
      "STUB seed=%" G_GINT64_FORMAT ": the tile shows the target as described. So the mask is <SEG>.",
      request_seed(body));
  if (strcmp(mode, "slow") == 0) g_usleep(1500000);
  if (strcmp(mode, "ok") == 0 || strcmp(mode, "slow") == 0 || (strcmp(mode, "flaky") == 0 && n > 1) ||
      (strcmp(mode, "alt") == 0 && n % 2 == 1)) {
    g_autofree char *r = chat_reply(ok_text, "stop");
    reply(fd, 200, r);
  } else if (strcmp(mode, "noseg") == 0) {
    g_autofree char *r = chat_reply("  The glands are crowded and irregular.  ", "stop");
    reply(fd, 200, r);
  } else if (strcmp(mode, "twoseg") == 0) {
    g_autofree char *r = chat_reply("First <SEG> then the glands: <SEG>. And more words.", "stop");
    reply(fd, 200, r);
  } else if (strcmp(mode, "e401") == 0) {
    reply(fd, 401, "{\"error\": {\"message\": \"Incorrect API key\", \"type\": \"invalid_request_error\"}}");
  } else if (strcmp(mode, "badjson") == 0) {
    reply(fd, 200, "{\"choices\": [{\"message\": ");
  } else if (strcmp(mode, "errobj") == 0) {
    reply(fd, 200, "{\"error\": {\"message\": \"model not loaded\"}}");
  } else if (strcmp(mode, "length") == 0) {
    g_autofree char *r = chat_reply("The glands are crowded and", "length");
    reply(fd, 200, r);
  } else {
    reply(fd, 500, "{\"error\": {\"message\": \"internal error\"}}");
  }
}

static gpointer handle(gpointer data) {
  conn *c = data;
  stub_server *s = c->s;
  GString *in = g_string_new(NULL);
  char buf[4096];
  gssize header_end = -1;
  size_t content_length = 0;
  for (;;) {
    ssize_t k = recv(c->fd, buf, sizeof buf, 0);
    if (k <= 0) break;
    g_string_append_len(in, buf, k);
    if (header_end < 0) {
      char *e = strstr(in->str, "\r\n\r\n");
      if (e) {
        header_end = e - in->str + 4;
        g_autofree char *lower = g_ascii_strdown(in->str, header_end);
        char *cl = strstr(lower, "content-length:");
        content_length = cl ? (size_t)g_ascii_strtoull(cl + 15, NULL, 10) : 0;
      }
    }
    if (header_end >= 0 && in->len >= (size_t)header_end + content_length) break;
  }
  if (header_end >= 0) serve(s, c->fd, in, header_end, content_length);
  g_string_free(in, TRUE);
  close(c->fd);
  g_free(c);
  return NULL;
}

static gpointer accept_loop(gpointer data) {
  stub_server *s = data;
  while (!g_atomic_int_get(&s->stop)) {
    struct pollfd p = {s->fd, POLLIN, 0};
    if (poll(&p, 1, 50) <= 0) continue;
    int fd = accept(s->fd, NULL, NULL);
    if (fd < 0) continue;
    conn *c = g_new(conn, 1);
    c->s = s;
    c->fd = fd;
    GThread *t = g_thread_new("stub-conn", handle, c);
    g_mutex_lock(&s->lock);
    g_ptr_array_add(s->handlers, t);
    g_mutex_unlock(&s->lock);
  }
  return NULL;
}

stub_server *stub_start(GError **error) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(fd, 16) != 0 ||
      getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "stub server: %s", g_strerror(errno));
    if (fd >= 0) close(fd);
    return NULL;
  }
  stub_server *s = g_new0(stub_server, 1);
  s->fd = fd;
  s->port = ntohs(a.sin_port);
  g_mutex_init(&s->lock);
  s->handlers = g_ptr_array_new();
  s->counts = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  s->acceptor = g_thread_new("stub-accept", accept_loop, s);
  return s;
}

void stub_stop(stub_server *s) {
  if (!s) return;
  g_atomic_int_set(&s->stop, 1);
  g_thread_join(s->acceptor);
  close(s->fd);
  for (guint i = 0; i < s->handlers->len; i++) g_thread_join(g_ptr_array_index(s->handlers, i));
  g_ptr_array_unref(s->handlers);
  g_hash_table_unref(s->counts);
  g_mutex_clear(&s->lock);
  g_free(s->last_body);
  g_free(s->last_auth);
  g_free(s);
}

int stub_port(const stub_server *s) { return s->port; }

int stub_count(stub_server *s, const char *mode) {
  g_mutex_lock(&s->lock);
  int n = GPOINTER_TO_INT(g_hash_table_lookup(s->counts, mode));
  g_mutex_unlock(&s->lock);
  return n;
}

char *stub_last_body(stub_server *s) {
  g_mutex_lock(&s->lock);
  char *b = g_strdup(s->last_body ? s->last_body : "");
  g_mutex_unlock(&s->lock);
  return b;
}

char *stub_last_auth(stub_server *s) {
  g_mutex_lock(&s->lock);
  char *b = g_strdup(s->last_auth ? s->last_auth : "");
  g_mutex_unlock(&s->lock);
  return b;
}
