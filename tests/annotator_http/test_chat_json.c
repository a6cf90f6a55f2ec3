/* test_chat_json.c — the chat-completions JSON of annotator.http without a
 * server: the request carries the model, both messages with the
 * descriptors, temperature, max_tokens and the 31-bit seed; every kind of
 * bad reply is an error that names the URL and what is wrong; <SEG> ends
 * up exactly once at the end of the chain. */
#include <json-glib/json-glib.h>

#include "chat_json.h"
#include "ps_test.h"

static const char *URL = "http://127.0.0.1:9/v1/chat/completions";

static void test_request(void) {
  ps_image_descriptors d = {0.25, 3, 900, 1.8, 0.2, 0.25, {200, 120, 180}, {230, 220, 230},
                            "upper left", "extensive", "eosinophilic (pink)", "slightly irregular"};
  ps_annotator_item item = {sizeof item, "images/000001.png", "Where are the glands?", "gland", TRUE, "tubular",
                            "he_classic", "colonic", "synthetic", 20, 128, 128, &d, 0x123456789abcULL};
  ps_chat_request req = {"stub-model", "SYSTEM", 0.5, 77};
  g_autofree char *body = ps_chat_request_body(&req, &item);
  g_autoptr(JsonParser) p = json_parser_new();
  PS_CHECK(json_parser_load_from_data(p, body, -1, NULL));
  JsonObject *o = json_node_get_object(json_parser_get_root(p));
  PS_CHECK(strcmp(json_object_get_string_member(o, "model"), "stub-model") == 0);
  PS_CHECK(json_object_get_double_member(o, "temperature") == 0.5);
  PS_CHECK(json_object_get_int_member(o, "max_tokens") == 77);
  PS_CHECK(json_object_get_int_member(o, "seed") == (gint64)(0x123456789abcULL & 0x7fffffff));
  PS_CHECK(!json_object_get_boolean_member(o, "stream"));
  JsonArray *m = json_object_get_array_member(o, "messages");
  PS_CHECK(json_array_get_length(m) == 2);
  JsonObject *sys = json_array_get_object_element(m, 0), *user = json_array_get_object_element(m, 1);
  PS_CHECK(strcmp(json_object_get_string_member(sys, "role"), "system") == 0);
  PS_CHECK(strcmp(json_object_get_string_member(sys, "content"), "SYSTEM") == 0);
  PS_CHECK(strcmp(json_object_get_string_member(user, "role"), "user") == 0);
  const char *u = json_object_get_string_member(user, "content");
  const char *expect[] = {"Question: Where are the glands?", "Target: gland (plural noun)", "Tissue class: tubular",
                          "Stain: he_classic", "Magnification: 20x", "Area fraction of the target: 0.250 (extensive)",
                          "Separate pieces: 3 (largest 900 pixels)", "(slightly irregular outline)",
                          "Location: upper left (centre of mass x 0.20, y 0.25", "Colour: eosinophilic (pink)"};
  for (size_t i = 0; i < G_N_ELEMENTS(expect); i++) PS_CHECK_MSG(strstr(u, expect[i]), "missing '%s' in:\n%s", expect[i], u);
}

static void test_replies(void) {
  GError *error = NULL;
  g_autofree char *ok = ps_chat_reply_content(
      "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"  A chain <SEG>. \"},"
      "\"finish_reason\":\"stop\"}]}",
      -1, URL, &error);
  PS_CHECK_OK(ok != NULL, error);
  PS_CHECK(ok && strcmp(ok, "A chain <SEG>.") == 0);
  /* Every bad body: the error names the URL and the problem. */
  static const struct {
    const char *body, *needle;
  } bad[] = {
      {"", "empty reply"},
      {"not json at all", "not JSON"},
      {"{\"choices\": [{\"message\": ", "not JSON"},
      {"\xff\xfe{}", "not JSON"},
      {"[1, 2]", "not a JSON object"},
      {"\"text\"", "not a JSON object"},
      {"{}", "no choices"},
      {"{\"choices\": []}", "no choices"},
      {"{\"choices\": {}}", "no choices"},
      {"{\"choices\": [1]}", "choices[0] is not an object"},
      {"{\"choices\": [{}]}", "no message object"},
      {"{\"choices\": [{\"message\": \"hi\"}]}", "no message object"},
      {"{\"choices\": [{\"message\": {}}]}", "content is missing"},
      {"{\"choices\": [{\"message\": {\"content\": null}}]}", "content is null"},
      {"{\"choices\": [{\"message\": {\"content\": 5}}]}", "content is of another type"},
      {"{\"choices\": [{\"message\": {\"content\": [\"a\"]}}]}", "content is of another type"},
      {"{\"choices\": [{\"message\": {\"content\": \"   \"}}]}", "content is empty"},
      {"{\"choices\": [{\"message\": {\"content\": \"cut\"}, \"finish_reason\": \"length\"}]}", "max_tokens"},
      {"{\"error\": {\"message\": \"model not loaded\"}}", "model not loaded"},
      {"{\"error\": \"overloaded\"}", "overloaded"},
      {"{\"error\": {\"code\": 3}}", "(no message)"},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(bad); i++) {
    char *got = ps_chat_reply_content(bad[i].body, -1, URL, &error);
    PS_CHECK_MSG(!got && error && strstr(error->message, bad[i].needle) && strstr(error->message, URL),
                 "body %zu '%s': %s", i, bad[i].body, got ? got : error ? error->message : "no error");
    g_free(got);
    g_clear_error(&error);
  }
  /* A body with an explicit length that stops inside the JSON. */
  const char *full = "{\"choices\":[{\"message\":{\"content\":\"x <SEG>\"}}]}";
  char *cut = ps_chat_reply_content(full, 20, URL, &error);
  PS_CHECK(!cut && error && strstr(error->message, "not JSON"));
  g_free(cut);
  g_clear_error(&error);
}

static void check_norm(const char *in, gboolean append, const char *want) {
  GError *error = NULL;
  g_autofree char *got = ps_chat_normalise_seg(in, append, &error);
  PS_CHECK_MSG(got && strcmp(got, want) == 0, "'%s' -> '%s', want '%s'%s%s", in, got ? got : "(null)", want,
               error ? ": " : "", error ? error->message : "");
  g_clear_error(&error);
}

static void test_seg(void) {
  check_norm("So the mask is <SEG>.", TRUE, "So the mask is <SEG>.");
  check_norm("  The glands are here.  ", TRUE, "The glands are here. <SEG>");
  check_norm("A <SEG> then B: <SEG>. And more words.", TRUE, "A then B: <SEG>.");
  check_norm("<SEG> <SEG> <SEG>", TRUE, "<SEG>");
  check_norm("Mask: <SEG>!) trailing", TRUE, "Mask: <SEG>!)");
  check_norm("", TRUE, "<SEG>");
  GError *error = NULL;
  char *none = ps_chat_normalise_seg("No token here.", FALSE, &error);
  PS_CHECK(!none && error && strstr(error->message, "no <SEG>"));
  g_free(none);
  g_clear_error(&error);
}

int main(void) {
  test_request();
  test_replies();
  test_seg();
  return ps_test_finish();
}
