/* plugin.c — `annotator.http`: reasoning chains from an OpenAI-compatible
 * chat-completions endpoint (a local llama.cpp server, vLLM, Ollama, or a
 * hosted API), through the "annotator" capability (pathseg/annotator.h).
 *
 * Per item: one POST of {model, messages: [system prompt, the query and the
 * descriptors as text], temperature, max_tokens, seed} to
 * `url`/v1/chat/completions; the reply's choices[0].message.content, made to
 * end with exactly one <SEG> (chat_json.h). A failed attempt — transport
 * error, timeout, HTTP 5xx/408/429, a reply that is not usable — is retried
 * `retries` times with a delay that doubles from retry_delay_s; HTTP 4xx
 * otherwise is not retried (the request itself is wrong). When every attempt
 * fails the item's error names the URL and the last reason, and
 * stage.build_benchmark skips the item with that reason in its log; with
 * `fallback: template` the item gets the template chain instead and the
 * reason goes to stderr (g_message).
 *
 * The API key is never in the YAML: `api_key_env` names the environment
 * variable that holds it. */
#include <curl/curl.h>
#include <pathseg/annotator.h>
#include <pathseg/plugin.h>
#include <string.h>

#include "annotate.h"
#include "chat_json.h"
#include "http_post.h"

typedef struct {
  char *url, *model, *system_prompt, *api_key, *key_env;
  double timeout_s, retry_delay_s, temperature;
  int retries, max_tokens;
  gboolean append_seg, fallback_template;
  CURL *curl;
} http_annotator;

static const ps_config_key config[] = {
    {"url", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL,
     "server base URL (http://127.0.0.1:8080); /v1/chat/completions is appended unless the URL ends with "
     "/chat/completions (a URL ending in /v1 gets /chat/completions)"},
    {"model", PS_TYPE_STRING, "default", PS_NO_RANGE, NULL, "the request's model name (llama.cpp ignores it)"},
    {"api_key_env", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "name of the environment variable holding the API key (sent as a Bearer token); empty: no key"},
    {"timeout_s", PS_TYPE_FLOAT, "120", 0.001, 86400, NULL, "limit for one attempt (connect + reply), seconds"},
    {"retries", PS_TYPE_INT, "2", 0, 100, NULL, "attempts after the first when one fails"},
    {"retry_delay_s", PS_TYPE_FLOAT, "1", 0, 3600, NULL, "wait before the first retry; doubles after each"},
    {"temperature", PS_TYPE_FLOAT, "0.2", 0, 2, NULL, "sampling temperature"},
    {"max_tokens", PS_TYPE_INT, "400", 1, 1e6, NULL, "longest chain, in the server's tokens"},
    {"system_prompt", PS_TYPE_STRING, "", PS_NO_RANGE, NULL, "instructions for the model; empty: the built-in prompt"},
    {"missing_seg", PS_TYPE_ENUM, "append", PS_NO_RANGE, "append|error",
     "a reply without <SEG>: append \" <SEG>\", or count the attempt as failed"},
    {"fallback", PS_TYPE_ENUM, "none", PS_NO_RANGE, "none|template",
     "after the last failed attempt: fail the item (the stage skips it) or use the template chain"},
    {NULL},
};

static void destroy(void *self) {
  http_annotator *a = self;
  if (!a) return;
  if (a->curl) curl_easy_cleanup(a->curl);
  g_free(a->url);
  g_free(a->model);
  g_free(a->system_prompt);
  if (a->api_key) memset(a->api_key, 0, strlen(a->api_key));
  g_free(a->api_key);
  g_free(a->key_env);
  g_free(a);
}

static char *endpoint(const char *base) {
  g_autofree char *u = g_strdup(base);
  size_t n = strlen(u);
  while (n > 0 && u[n - 1] == '/') u[--n] = '\0';
  if (g_str_has_suffix(u, "/chat/completions")) return g_steal_pointer(&u);
  if (g_str_has_suffix(u, "/v1")) return g_strconcat(u, "/chat/completions", NULL);
  return g_strconcat(u, "/v1/chat/completions", NULL);
}

static void *create(const ps_config *cfg, ps_context *ctx, GError **error) {
  (void)ctx;
  const char *url = ps_config_string(cfg, "url");
  if (!g_str_has_prefix(url, "http://") && !g_str_has_prefix(url, "https://")) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "url: '%s' is not an http:// or https:// URL", url);
    return NULL;
  }
  http_annotator *a = g_new0(http_annotator, 1);
  a->url = endpoint(url);
  a->model = g_strdup(ps_config_string(cfg, "model"));
  const char *sp = ps_config_string(cfg, "system_prompt");
  a->system_prompt = g_strdup(sp && *sp ? sp : ps_chat_default_system_prompt);
  const char *env = ps_config_string(cfg, "api_key_env");
  if (env && *env) {
    const char *key = g_getenv(env);
    if (!key || !*key) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "api_key_env: the environment variable %s (the API key for %s) is not set", env, a->url);
      destroy(a);
      return NULL;
    }
    a->api_key = g_strdup(key);
    a->key_env = g_strdup(env);
  }
  a->timeout_s = ps_config_float(cfg, "timeout_s");
  a->retries = (int)ps_config_int(cfg, "retries");
  a->retry_delay_s = ps_config_float(cfg, "retry_delay_s");
  a->temperature = ps_config_float(cfg, "temperature");
  a->max_tokens = (int)ps_config_int(cfg, "max_tokens");
  a->append_seg = strcmp(ps_config_string(cfg, "missing_seg"), "append") == 0;
  a->fallback_template = strcmp(ps_config_string(cfg, "fallback"), "template") == 0;
  a->curl = curl_easy_init();
  if (!a->curl) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "cannot start libcurl for %s", a->url);
    destroy(a);
    return NULL;
  }
  return a;
}

/* One attempt; *retryable says whether another could succeed. */
static char *attempt(http_annotator *a, const char *body, gboolean *retryable, GError **error) {
  *retryable = TRUE;
  ps_http_reply reply = {0, NULL};
  if (!ps_http_post_json(a->curl, a->url, a->api_key, body, a->timeout_s, &reply, error)) return NULL;
  g_autoptr(GString) text = reply.body;
  if (reply.status != 200) {
    *retryable = reply.status >= 500 || reply.status == 408 || reply.status == 429;
    g_autofree char *valid = g_utf8_make_valid(text->str, (gssize)MIN(text->len, 200));
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "POST %s: HTTP %ld%s%s", a->url, reply.status, *valid ? ": " : "",
                valid);
    return NULL;
  }
  g_autofree char *content = ps_chat_reply_content(text->str, (gssize)text->len, a->url, error);
  if (!content) return NULL;
  char *chain = ps_chat_normalise_seg(content, a->append_seg, error);
  if (!chain) g_prefix_error(error, "%s: ", a->url);
  return chain;
}

static char *annotate(void *self, const ps_annotator_item *item, GError **error) {
  http_annotator *a = self;
  ps_chat_request req = {a->model, a->system_prompt, a->temperature, a->max_tokens};
  g_autofree char *body = ps_chat_request_body(&req, item);
  double delay = a->retry_delay_s;
  GError *last = NULL;
  int tries = 0;
  for (; tries <= a->retries; tries++) {
    if (tries > 0) {
      g_usleep((gulong)(delay * G_USEC_PER_SEC));
      delay *= 2;
    }
    g_clear_error(&last);
    gboolean retryable = TRUE;
    char *chain = attempt(a, body, &retryable, &last);
    if (chain) return chain;
    if (!retryable) {
      tries++;
      break;
    }
  }
  if (a->fallback_template) {
    g_message("annotator.http: %s: using the template chain after %d failed attempt%s: %s", item->image, tries,
              tries == 1 ? "" : "s", last->message);
    g_clear_error(&last);
    return ps_template_chain(item);
  }
  g_propagate_prefixed_error(error, last, "%d attempt%s failed; last: ", tries, tries == 1 ? "" : "s");
  return NULL;
}

static gboolean init(GError **error) {
  CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "curl_global_init: %s", curl_easy_strerror(rc));
    return FALSE;
  }
  return TRUE;
}

static const ps_annotator_iface iface = {sizeof(ps_annotator_iface), annotate};
static const void *capability(const char *name) { return strcmp(name, "annotator") == 0 ? &iface : NULL; }
static const ps_port_desc no_ports[] = {{NULL}};
static const ps_component_vtable vtable = {sizeof(ps_component_vtable), create, destroy, NULL, NULL, NULL};
static const ps_component_desc desc = {
    sizeof(ps_component_desc), PS_KIND_ANNOTATOR, "annotator.http",
    "Reasoning chains from an OpenAI-compatible /v1/chat/completions endpoint (llama.cpp server, vLLM, "
    "Ollama, hosted APIs): the query and descriptors as the user message, the reply made to end with "
    "exactly one <SEG>; retries with backoff; failed items skipped or given the template chain (fallback).",
    config, no_ports, no_ports, &vtable, capability,
};
static const ps_component_desc *const components[] = {&desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "annotator_http",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Reasoning-chain annotator over HTTP (OpenAI-compatible chat completions, libcurl).",
    .components = components,
    .init = init,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
