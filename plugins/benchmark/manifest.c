/* manifest.c — reading and writing the JSON Lines manifest (manifest.h). */
#include "manifest.h"

#include <glib/gstdio.h>
#include <limits.h>
#include <json-glib/json-glib.h>
#include <pathseg/error.h>
#include <pathseg/json_depth.h>
#include <string.h>

void ps_manifest_row_free(ps_manifest_row *r) {
  if (!r) return;
  char **fields[] = {&r->image, &r->mask, &r->query, &r->reasoning, &r->source, &r->group,
                     &r->target, &r->morphology, &r->stain, &r->split, &r->review, &r->reviewer,
                     &r->reviewed_at};
  for (size_t i = 0; i < G_N_ELEMENTS(fields); i++) g_free(*fields[i]);
  g_free(r);
}

const char *ps_manifest_split_for(const char *group, uint64_t seed) {
  /* FNV-1a over the group id, mixed with the seed: stable across runs and machines. */
  uint64_t h = 1469598103934665603ULL ^ seed;
  for (const char *p = group; p && *p; p++) h = (h ^ (uint8_t)*p) * 1099511628211ULL;
  h ^= h >> 33;
  int bucket = (int)(h % 10);
  return bucket < 8 ? "train" : bucket == 8 ? "val" : "test";
}

static const char *str_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n) : NULL;
}

/* A copy of a string member (NULL when absent). json-glib decodes a lone
 * surrogate escape (\ud800) to invalid UTF-8, which it then refuses to read
 * back: made valid (U+FFFD) so that a manifest written from the rows loads. */
static char *dup_member(JsonObject *o, const char *key) {
  const char *s = str_member(o, key);
  return s ? g_utf8_make_valid(s, -1) : NULL;
}

/* An integer member, 0 when absent, null or not a number (json-glib's
 * get_int_member asserts a value node and logs criticals otherwise); reals
 * are truncated when they fit an int. */
static int int_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return 0;
  GType t = json_node_get_value_type(n);
  if (t == G_TYPE_INT64) return (int)json_node_get_int(n);
  double d = t == G_TYPE_DOUBLE ? json_node_get_double(n) : 0;
  return d >= INT_MIN && d <= INT_MAX ? (int)d : 0;
}

/* A boolean member (an integer counts as its truth value), FALSE otherwise. */
static gboolean bool_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n)) return FALSE;
  GType t = json_node_get_value_type(n);
  return t == G_TYPE_BOOLEAN ? json_node_get_boolean(n) : t == G_TYPE_INT64 ? json_node_get_int(n) != 0 : FALSE;
}

GPtrArray *ps_manifest_read(const char *path, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  GPtrArray *rows = g_ptr_array_new_with_free_func((GDestroyNotify)ps_manifest_row_free);
  g_autoptr(JsonParser) parser = json_parser_new();
  int line_no = 0;
  char *saveptr = NULL;
  for (char *line = strtok_r(text, "\n", &saveptr); line; line = strtok_r(NULL, "\n", &saveptr)) {
    line_no++;
    if (!*g_strstrip(line)) continue;
    if (!ps_json_depth_ok(line, -1, PS_JSON_MAX_DEPTH)) { /* json-glib would overflow the stack */
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s:%d: not a JSON object: nested deeper than %d", path,
                  line_no, PS_JSON_MAX_DEPTH);
      g_ptr_array_unref(rows);
      return NULL;
    }
    GError *local = NULL;
    /* A line of only a comment (json-glib skips them) loads with no root. */
    if (!json_parser_load_from_data(parser, line, -1, &local) || !json_parser_get_root(parser) ||
        !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser))) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s:%d: not a JSON object%s%s", path, line_no,
                  local ? ": " : "", local ? local->message : "");
      g_clear_error(&local);
      g_ptr_array_unref(rows);
      return NULL;
    }
    JsonObject *o = json_node_get_object(json_parser_get_root(parser));
    const char *required[] = {"image", "mask", "query", "reasoning", "split"};
    for (size_t k = 0; k < G_N_ELEMENTS(required); k++) {
      if (!str_member(o, required[k])) {
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s:%d: missing string '%s'", path, line_no,
                    required[k]);
        g_ptr_array_unref(rows);
        return NULL;
      }
    }
    ps_manifest_row *r = g_new0(ps_manifest_row, 1);
    r->image = dup_member(o, "image");
    r->mask = dup_member(o, "mask");
    r->query = dup_member(o, "query");
    r->reasoning = dup_member(o, "reasoning");
    r->split = dup_member(o, "split");
    r->source = dup_member(o, "source");
    r->group = dup_member(o, "patient");
    r->target = dup_member(o, "target");
    r->morphology = dup_member(o, "morphology");
    r->stain = dup_member(o, "stain");
    r->review = dup_member(o, "review");
    r->reviewer = dup_member(o, "reviewer");
    r->reviewed_at = dup_member(o, "reviewed_at");
    r->magnification = int_member(o, "magnification");
    r->width = int_member(o, "width");
    r->height = int_member(o, "height");
    r->held_out = bool_member(o, "held_out");
    g_ptr_array_add(rows, r);
  }
  return rows;
}

static void add_str(JsonBuilder *b, const char *key, const char *value) {
  json_builder_set_member_name(b, key);
  if (value)
    json_builder_add_string_value(b, value);
  else
    json_builder_add_null_value(b);
}

gboolean ps_manifest_write(const char *path, GPtrArray *rows, GError **error) {
  GString *out = g_string_new(NULL);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  for (guint i = 0; i < rows->len; i++) {
    const ps_manifest_row *r = g_ptr_array_index(rows, i);
    g_autoptr(JsonBuilder) b = json_builder_new();
    json_builder_begin_object(b);
    add_str(b, "image", r->image);
    add_str(b, "mask", r->mask);
    add_str(b, "query", r->query);
    add_str(b, "reasoning", r->reasoning);
    add_str(b, "source", r->source);
    add_str(b, "patient", r->group);
    add_str(b, "target", r->target);
    add_str(b, "morphology", r->morphology);
    add_str(b, "stain", r->stain);
    json_builder_set_member_name(b, "magnification");
    json_builder_add_int_value(b, r->magnification);
    add_str(b, "split", r->split);
    json_builder_set_member_name(b, "held_out");
    json_builder_add_boolean_value(b, r->held_out);
    json_builder_set_member_name(b, "width");
    json_builder_add_int_value(b, r->width);
    json_builder_set_member_name(b, "height");
    json_builder_add_int_value(b, r->height);
    add_str(b, "review", r->review ? r->review : "pending");
    add_str(b, "reviewer", r->reviewer);
    add_str(b, "reviewed_at", r->reviewed_at);
    json_builder_end_object(b);
    g_autoptr(JsonNode) root = json_builder_get_root(b);
    json_generator_set_root(gen, root);
    g_autofree char *line = json_generator_to_data(gen, NULL);
    g_string_append(out, line);
    g_string_append_c(out, '\n');
  }
  /* g_file_set_contents writes a temporary file, fsyncs and renames. */
  gboolean ok = g_file_set_contents(path, out->str, (gssize)out->len, error);
  g_string_free(out, TRUE);
  return ok;
}
