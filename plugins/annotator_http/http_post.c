/* http_post.c — a JSON POST through libcurl (http_post.h). */
#include "http_post.h"

#include <curl/curl.h>
#include <pathseg/error.h>

static size_t collect(char *data, size_t size, size_t n, void *user) {
  g_string_append_len((GString *)user, data, (gssize)(size * n));
  return size * n;
}

gboolean ps_http_post_json(void *handle, const char *url, const char *bearer, const char *body, double timeout_s,
                           ps_http_reply *reply, GError **error) {
  CURL *curl = handle;
  curl_easy_reset(curl);
  struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Accept: application/json");
  /* No "Expect: 100-continue" wait before the body (servers rarely answer it). */
  headers = curl_slist_append(headers, "Expect:");
  g_autofree char *auth = bearer ? g_strdup_printf("Authorization: Bearer %s", bearer) : NULL;
  if (auth) headers = curl_slist_append(headers, auth);
  char errbuf[CURL_ERROR_SIZE] = "";
  GString *out = g_string_new(NULL);
  long ms = (long)(timeout_s * 1000 + 0.5);
  if (ms < 1) ms = 1;
  curl_easy_setopt(curl, CURLOPT_URL, url);
  curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, out);
  curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, ms);
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, ms);
  curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM: the host may run threads */
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "pathseg-annotator-http/0.1");
  CURLcode rc = curl_easy_perform(curl);
  curl_slist_free_all(headers);
  if (rc != CURLE_OK) {
    if (rc == CURLE_OPERATION_TIMEDOUT)
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "POST %s: no complete reply within timeout_s %g s", url, timeout_s);
    else
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "POST %s: %s", url, *errbuf ? errbuf : curl_easy_strerror(rc));
    g_string_free(out, TRUE);
    return FALSE;
  }
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
  reply->body = out;
  return TRUE;
}
