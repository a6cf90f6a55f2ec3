/* chat_json.c — request and reply JSON of an OpenAI-compatible chat
 * completion, and the <SEG> normalisation (chat_json.h). */
#include "chat_json.h"

#include <json-glib/json-glib.h>
#include <pathseg/error.h>
#include <pathseg/json_depth.h>
#include <string.h>

const char ps_chat_default_system_prompt[] =
    "You are a pathologist writing the reasoning that leads to a segmentation mask. You get a user's question "
    "about a histology tile and facts measured from the tile and its target mask. Write three to six sentences: "
    "the tissue, stain and magnification; the diagnostic features that identify the target; where the target "
    "lies, how much of the tile it covers, in how many pieces, with what outline and colour. Use only the facts "
    "given; do not invent numbers. End with a sentence such as \"So the mask of the glands is <SEG>.\" and write "
    "<SEG> nowhere else.";

char *ps_chat_user_message(const ps_annotator_item *item) {
  const ps_image_descriptors *d = item->descriptors;
  GString *s = g_string_new(NULL);
  g_string_append_printf(s, "Question: %s\n", item->query);
  g_string_append_printf(s, "Target: %s (%s noun)\n", item->target, item->target_plural ? "plural" : "singular or mass");
  if (item->morphology) g_string_append_printf(s, "Tissue class: %s\n", item->morphology);
  if (item->stain) g_string_append_printf(s, "Stain: %s\n", item->stain);
  if (item->organ) g_string_append_printf(s, "Organ: %s\n", item->organ);
  if (item->magnification > 0)
    g_string_append_printf(s, "Magnification: %dx\n", item->magnification);
  else
    g_string_append(s, "Magnification: unknown\n");
  g_string_append_printf(s, "Tile: %dx%d pixels\n", item->width, item->height);
  g_string_append_printf(s, "Area fraction of the target: %.3f (%s)\n", d->area_fraction, d->extent);
  if (d->area_fraction > 0) {
    g_string_append_printf(s, "Separate pieces: %d (largest %d pixels)\n", d->components, d->largest_component);
    g_string_append_printf(s, "Boundary irregularity (1 = disc): %.2f (%s outline)\n", d->irregularity, d->shape);
    g_string_append_printf(s, "Location: %s (centre of mass x %.2f, y %.2f of the tile)\n", d->location,
                           d->centroid_x, d->centroid_y);
    g_string_append_printf(s, "Colour: %s (mean RGB %.0f %.0f %.0f; background %.0f %.0f %.0f)\n", d->colour,
                           d->mean_rgb[0], d->mean_rgb[1], d->mean_rgb[2], d->background_rgb[0],
                           d->background_rgb[1], d->background_rgb[2]);
  } else {
    g_string_append(s, "The target is absent: the mask is empty.\n");
  }
  g_string_append(s, "Write the reasoning chain, ending with <SEG>.");
  return g_string_free(s, FALSE);
}

char *ps_chat_request_body(const ps_chat_request *req, const ps_annotator_item *item) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "model");
  json_builder_add_string_value(b, req->model);
  json_builder_set_member_name(b, "messages");
  json_builder_begin_array(b);
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "role");
  json_builder_add_string_value(b, "system");
  json_builder_set_member_name(b, "content");
  json_builder_add_string_value(b, req->system_prompt);
  json_builder_end_object(b);
  g_autofree char *user = ps_chat_user_message(item);
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "role");
  json_builder_add_string_value(b, "user");
  json_builder_set_member_name(b, "content");
  json_builder_add_string_value(b, user);
  json_builder_end_object(b);
  json_builder_end_array(b);
  json_builder_set_member_name(b, "temperature");
  json_builder_add_double_value(b, req->temperature);
  json_builder_set_member_name(b, "max_tokens");
  json_builder_add_int_value(b, req->max_tokens);
  json_builder_set_member_name(b, "seed");
  json_builder_add_int_value(b, (gint64)(item->seed & 0x7fffffffULL));
  json_builder_set_member_name(b, "stream");
  json_builder_add_boolean_value(b, FALSE);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, root);
  return json_generator_to_data(gen, NULL);
}

/* The first `max` bytes of `s` for a message, cut at a UTF-8 boundary. */
static char *excerpt(const char *s, gssize length, gsize max) {
  gsize n = length < 0 ? strlen(s) : (gsize)length;
  if (n <= max) return g_utf8_make_valid(s, (gssize)n);
  g_autofree char *valid = g_utf8_make_valid(s, (gssize)max);
  return g_strconcat(valid, "...", NULL);
}

char *ps_chat_reply_content(const char *body, gssize length, const char *url, GError **error) {
  if (!body || length == 0 || (length < 0 && !*body)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: empty reply body", url);
    return NULL;
  }
  if (!ps_json_depth_ok(body, length, PS_JSON_MAX_DEPTH)) { /* json-glib would overflow the stack */
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: reply is not JSON (nested deeper than %d)", url,
                PS_JSON_MAX_DEPTH);
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new();
  GError *local = NULL;
  if (!json_parser_load_from_data(parser, body, length, &local)) {
    g_autofree char *ex = excerpt(body, length, 80);
    /* json-glib quotes the offending token raw: a lone surrogate escape (\ud800) comes back as invalid UTF-8. */
    g_autofree char *why = g_utf8_make_valid(local->message, -1);
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: reply is not JSON (%s): %s", url, why, ex);
    g_clear_error(&local);
    return NULL;
  }
  JsonNode *root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: reply is not a JSON object", url);
    return NULL;
  }
  JsonObject *o = json_node_get_object(root);
  JsonNode *err = json_object_get_member(o, "error");
  if (err && !JSON_NODE_HOLDS_NULL(err)) {
    const char *msg = NULL;
    if (JSON_NODE_HOLDS_OBJECT(err)) {
      JsonNode *m = json_object_get_member(json_node_get_object(err), "message");
      if (m && JSON_NODE_HOLDS_VALUE(m) && json_node_get_value_type(m) == G_TYPE_STRING) msg = json_node_get_string(m);
    } else if (JSON_NODE_HOLDS_VALUE(err) && json_node_get_value_type(err) == G_TYPE_STRING) {
      msg = json_node_get_string(err);
    }
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "%s: the endpoint replied with an error: %s", url,
                msg ? msg : "(no message)");
    return NULL;
  }
  JsonNode *choices = json_object_get_member(o, "choices");
  if (!choices || !JSON_NODE_HOLDS_ARRAY(choices) || json_array_get_length(json_node_get_array(choices)) == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: reply has no choices", url);
    return NULL;
  }
  JsonNode *c0 = json_array_get_element(json_node_get_array(choices), 0);
  if (!JSON_NODE_HOLDS_OBJECT(c0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: choices[0] is not an object", url);
    return NULL;
  }
  JsonObject *choice = json_node_get_object(c0);
  JsonNode *msg = json_object_get_member(choice, "message");
  if (!msg || !JSON_NODE_HOLDS_OBJECT(msg)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: choices[0] has no message object", url);
    return NULL;
  }
  JsonNode *content = json_object_get_member(json_node_get_object(msg), "content");
  if (!content || !JSON_NODE_HOLDS_VALUE(content) || json_node_get_value_type(content) != G_TYPE_STRING) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: choices[0].message.content is %s, not a string", url,
                !content ? "missing" : JSON_NODE_HOLDS_NULL(content) ? "null" : "of another type");
    return NULL;
  }
  JsonNode *finish = json_object_get_member(choice, "finish_reason");
  if (finish && JSON_NODE_HOLDS_VALUE(finish) && json_node_get_value_type(finish) == G_TYPE_STRING &&
      strcmp(json_node_get_string(finish), "length") == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: the chain was cut off by max_tokens (finish_reason \"length\"); raise max_tokens", url);
    return NULL;
  }
  /* json-glib decodes a lone surrogate escape (\ud800) to invalid UTF-8; the
   * chain goes into the manifest and the tokenizer, so it is made valid (U+FFFD). */
  char *text = g_strstrip(g_utf8_make_valid(json_node_get_string(content), -1));
  if (!*text) {
    g_free(text);
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: choices[0].message.content is empty", url);
    return NULL;
  }
  return text;
}

char *ps_chat_normalise_seg(const char *text, gboolean append, GError **error) {
  const size_t tl = strlen(PS_SEG_TOKEN);
  g_autofree char *t = g_strstrip(g_strdup(text));
  const char *last = NULL;
  for (const char *p = strstr(t, PS_SEG_TOKEN); p; p = strstr(p + tl, PS_SEG_TOKEN)) last = p;
  if (!last) {
    if (!append) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "the reply has no %s (missing_seg: error)", PS_SEG_TOKEN);
      return NULL;
    }
    return *t ? g_strconcat(t, " " PS_SEG_TOKEN, NULL) : g_strdup(PS_SEG_TOKEN);
  }
  /* Everything before the last <SEG>, without the earlier ones, with the
   * runs of spaces their removal leaves collapsed. Removing one can join its
   * neighbours into another ("<SE<SEG>G>"), so until none is left. */
  g_autoptr(GString) before = g_string_new_len(t, last - t);
  while (g_string_replace(before, PS_SEG_TOKEN, "", 0) > 0) {
  }
  GString *out = g_string_new(NULL);
  for (const char *p = before->str; *p; p++) {
    if (*p == ' ' && (out->len == 0 || out->str[out->len - 1] == ' ')) continue;
    g_string_append_c(out, *p);
  }
  g_string_append(out, PS_SEG_TOKEN);
  for (const char *p = last + tl; *p && strchr(".!?)\"'", *p); p++) g_string_append_c(out, *p);
  return g_string_free(out, FALSE);
}
