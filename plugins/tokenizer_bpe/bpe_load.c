/* bpe_load.c — reads a Hugging Face tokenizer.json with json-glib.
 *
 * Accepted: model BPE (vocab; merges as ["a", "b"] pairs or "a b" strings;
 * unk_token, byte_fallback, fuse_unk, ignore_merges; no dropout, no subword
 * prefix/suffix), added_tokens (id, content, special, normalized; lstrip,
 * rstrip and single_word must be false), normalizer NFC or none,
 * pre_tokenizer Sequence[Split(Qwen2 regex, Isolated), ByteLevel(no prefix
 * space, use_regex false)], decoder ByteLevel (optionally with ByteFallback)
 * and post_processor ByteLevel or none. Anything else is refused with an
 * error naming the file and key, rather than tokenised differently. */
#include "bpe_internal.h"

#include <json-glib/json-glib.h>
#include <pathseg/error.h>
#include <pathseg/json_depth.h>
#include <string.h>

/* Largest id a file may give (exclusive). The id tables are dense (17 bytes
 * per id up to the largest), so the core's limit of 2^30 would let a
 * 100-byte file allocate 18 GB; 2^24 is 64x the largest published
 * vocabulary (256k) and caps the tables at 285 MB. */
#define MAX_FILE_ID (1 << 24)

static gboolean fail(GError **error, const char *where, const char *fmt, ...) G_GNUC_PRINTF(3, 4);

static gboolean fail(GError **error, const char *where, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %s", where, msg);
  return FALSE;
}

/* A member's string value or NULL (absent, null or not a string). */
static const char *str_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_STRING) return NULL;
  return json_node_get_string(n);
}

static gboolean bool_member(JsonObject *o, const char *key, gboolean dflt) {
  JsonNode *n = json_object_get_member(o, key);
  if (!n || !JSON_NODE_HOLDS_VALUE(n) || json_node_get_value_type(n) != G_TYPE_BOOLEAN)
    return dflt;
  return json_node_get_boolean(n);
}

static JsonObject *obj_member(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return n && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static gboolean is_null(JsonObject *o, const char *key) {
  JsonNode *n = json_object_get_member(o, key);
  return !n || JSON_NODE_HOLDS_NULL(n);
}

static gboolean type_is(JsonObject *o, const char *type) {
  const char *t = str_member(o, "type");
  return t && strcmp(t, type) == 0;
}

static gboolean load_normalizer(ps_bpe *tok, JsonObject *root, const char *where, GError **error) {
  if (is_null(root, "normalizer")) return TRUE;
  JsonObject *n = obj_member(root, "normalizer");
  if (n && type_is(n, "NFC")) {
    tok->nfc = TRUE;
    return TRUE;
  }
  if (n && type_is(n, "Sequence")) {
    JsonNode *arr = json_object_get_member(n, "normalizers");
    if (arr && JSON_NODE_HOLDS_ARRAY(arr)) {
      JsonArray *a = json_node_get_array(arr);
      gboolean ok = TRUE;
      for (guint i = 0; i < json_array_get_length(a); i++) {
        JsonNode *e = json_array_get_element(a, i);
        ok = ok && JSON_NODE_HOLDS_OBJECT(e) && type_is(json_node_get_object(e), "NFC");
      }
      if (ok) {
        tok->nfc = json_array_get_length(a) > 0;
        return TRUE;
      }
    }
  }
  return fail(error, where, "normalizer: only NFC (or none) is supported");
}

static gboolean byte_level_ok(JsonObject *o) {
  return type_is(o, "ByteLevel") && !bool_member(o, "add_prefix_space", FALSE);
}

static gboolean load_pre_tokenizer(ps_bpe *tok, JsonObject *root, const char *where,
                                   GError **error) {
  JsonObject *p = obj_member(root, "pre_tokenizer");
  JsonArray *seq = NULL;
  if (p && type_is(p, "Sequence")) {
    JsonNode *a = json_object_get_member(p, "pretokenizers");
    if (a && JSON_NODE_HOLDS_ARRAY(a)) seq = json_node_get_array(a);
  }
  if (!seq || json_array_get_length(seq) != 2)
    return fail(error, where,
                "pre_tokenizer: expected Sequence[Split(Qwen2 regex), ByteLevel] as in Qwen2");
  JsonNode *n0 = json_array_get_element(seq, 0), *n1 = json_array_get_element(seq, 1);
  JsonObject *split = JSON_NODE_HOLDS_OBJECT(n0) ? json_node_get_object(n0) : NULL;
  JsonObject *bl = JSON_NODE_HOLDS_OBJECT(n1) ? json_node_get_object(n1) : NULL;
  if (!split || !type_is(split, "Split"))
    return fail(error, where, "pre_tokenizer.pretokenizers[0]: expected a Split");
  JsonObject *pat = obj_member(split, "pattern");
  const char *re = pat ? str_member(pat, "Regex") : NULL;
  if (!re || strcmp(re, PS_BPE_QWEN2_REGEX) != 0)
    return fail(error, where,
                "pre_tokenizer.pretokenizers[0].pattern: only the Qwen2 regex is implemented "
                "(got %s)", re ? re : "no Regex");
  const char *behavior = str_member(split, "behavior");
  if (!behavior || strcmp(behavior, "Isolated") != 0 || bool_member(split, "invert", FALSE))
    return fail(error, where,
                "pre_tokenizer.pretokenizers[0]: behavior must be Isolated, invert false");
  if (!bl || !byte_level_ok(bl) || bool_member(bl, "use_regex", TRUE))
    return fail(error, where,
                "pre_tokenizer.pretokenizers[1]: expected ByteLevel(add_prefix_space false, "
                "use_regex false)");
  tok->split_qwen2 = TRUE;
  return TRUE;
}

static gboolean load_decoder(ps_bpe *tok, JsonObject *root, const char *where, GError **error) {
  if (is_null(root, "decoder")) return TRUE;
  JsonObject *d = obj_member(root, "decoder");
  if (d && byte_level_ok(d)) return TRUE;
  if (d && type_is(d, "Sequence")) {
    JsonNode *a = json_object_get_member(d, "decoders");
    if (a && JSON_NODE_HOLDS_ARRAY(a)) {
      JsonArray *arr = json_node_get_array(a);
      gboolean ok = TRUE;
      for (guint i = 0; i < json_array_get_length(arr); i++) {
        JsonNode *e = json_array_get_element(arr, i);
        JsonObject *eo = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
        if (eo && type_is(eo, "ByteFallback"))
          tok->decoder_byte_fallback = TRUE;
        else if (!eo || !byte_level_ok(eo))
          ok = FALSE;
      }
      if (ok) return TRUE;
    }
  }
  return fail(error, where, "decoder: only ByteLevel (optionally with ByteFallback) is supported");
}

static gboolean load_post_processor(JsonObject *root, const char *where, GError **error) {
  if (is_null(root, "post_processor")) return TRUE;
  JsonObject *p = obj_member(root, "post_processor");
  if (p && type_is(p, "ByteLevel")) return TRUE; /* offsets only: ids unchanged */
  return fail(error, where, "post_processor: only ByteLevel (or none) is supported");
}

static gboolean load_vocab(ps_bpe *tok, JsonObject *model, const char *where, GError **error) {
  JsonObject *vocab = obj_member(model, "vocab");
  if (!vocab) return fail(error, where, "model.vocab: missing or not an object");
  JsonObjectIter it;
  const char *key;
  JsonNode *val;
  json_object_iter_init(&it, vocab);
  while (json_object_iter_next(&it, &key, &val)) {
    if (!JSON_NODE_HOLDS_VALUE(val) || json_node_get_value_type(val) != G_TYPE_INT64)
      return fail(error, where, "model.vocab: the id of \"%s\" is not an integer", key);
    gint64 id = json_node_get_int(val);
    if (id < 0 || id >= MAX_FILE_ID)
      return fail(error, where, "model.vocab: the id of \"%s\" is out of range (%" G_GINT64_FORMAT ")",
                  key, id);
    if (!ps_bpe_set_vocab(tok, key, (int32_t)id, where, error)) return FALSE;
  }
  return TRUE;
}

static int32_t vocab_id(ps_bpe *tok, const char *s) {
  gpointer v = g_hash_table_lookup(tok->vocab, s);
  return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

static gboolean load_merges(ps_bpe *tok, JsonObject *model, const char *where, GError **error) {
  JsonNode *mn = json_object_get_member(model, "merges");
  if (!mn || JSON_NODE_HOLDS_NULL(mn)) return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY(mn)) return fail(error, where, "model.merges: not an array");
  JsonArray *merges = json_node_get_array(mn);
  guint n = json_array_get_length(merges);
  for (guint i = 0; i < n; i++) {
    JsonNode *e = json_array_get_element(merges, i);
    const char *a = NULL, *b = NULL;
    g_autofree char *copy = NULL;
    if (JSON_NODE_HOLDS_ARRAY(e)) {
      JsonArray *pair = json_node_get_array(e);
      if (json_array_get_length(pair) == 2) {
        JsonNode *x = json_array_get_element(pair, 0), *y = json_array_get_element(pair, 1);
        if (JSON_NODE_HOLDS_VALUE(x) && json_node_get_value_type(x) == G_TYPE_STRING &&
            JSON_NODE_HOLDS_VALUE(y) && json_node_get_value_type(y) == G_TYPE_STRING) {
          a = json_node_get_string(x);
          b = json_node_get_string(y);
        }
      }
    } else if (JSON_NODE_HOLDS_VALUE(e) && json_node_get_value_type(e) == G_TYPE_STRING) {
      /* The older "a b" form: exactly one space. */
      copy = g_strdup(json_node_get_string(e));
      char *sp = strchr(copy, ' ');
      if (sp && !strchr(sp + 1, ' ')) {
        *sp = 0;
        a = copy;
        b = sp + 1;
      }
    }
    if (!a || !b)
      return fail(error, where, "model.merges[%u]: expected [\"left\", \"right\"] or \"left right\"",
                  i);
    int32_t ia = vocab_id(tok, a), ib = vocab_id(tok, b);
    if (ia < 0 || ib < 0)
      return fail(error, where, "model.merges[%u]: \"%s\" is not in model.vocab", i,
                  ia < 0 ? a : b);
    if (!ps_bpe_add_merge(tok, ia, ib, where, error)) return FALSE;
  }
  return TRUE;
}

static gboolean load_model(ps_bpe *tok, JsonObject *root, const char *where, GError **error) {
  JsonObject *model = obj_member(root, "model");
  if (!model) return fail(error, where, "model: missing or not an object");
  if (json_object_has_member(model, "type") && !type_is(model, "BPE"))
    return fail(error, where, "model.type: only BPE is supported (got %s)",
                str_member(model, "type") ? str_member(model, "type") : "?");
  if (!is_null(model, "dropout")) {
    JsonNode *d = json_object_get_member(model, "dropout");
    if (!JSON_NODE_HOLDS_VALUE(d) || json_node_get_double(d) != 0.0)
      return fail(error, where, "model.dropout: BPE dropout is not supported");
  }
  const char *pre = str_member(model, "continuing_subword_prefix");
  const char *suf = str_member(model, "end_of_word_suffix");
  if ((pre && *pre) || (suf && *suf))
    return fail(error, where,
                "model: continuing_subword_prefix/end_of_word_suffix are not supported");
  tok->byte_fallback = bool_member(model, "byte_fallback", FALSE);
  tok->fuse_unk = bool_member(model, "fuse_unk", FALSE);
  tok->ignore_merges = bool_member(model, "ignore_merges", FALSE);
  if (!load_vocab(tok, model, where, error)) return FALSE;
  const char *unk = str_member(model, "unk_token");
  if (unk) {
    tok->unk_id = vocab_id(tok, unk);
    if (tok->unk_id < 0)
      return fail(error, where, "model.unk_token: \"%s\" is not in model.vocab", unk);
  }
  return load_merges(tok, model, where, error);
}

static gboolean load_added(ps_bpe *tok, JsonObject *root, const char *where, GError **error) {
  JsonNode *an = json_object_get_member(root, "added_tokens");
  if (!an || JSON_NODE_HOLDS_NULL(an)) return TRUE;
  if (!JSON_NODE_HOLDS_ARRAY(an)) return fail(error, where, "added_tokens: not an array");
  JsonArray *arr = json_node_get_array(an);
  for (guint i = 0; i < json_array_get_length(arr); i++) {
    JsonNode *e = json_array_get_element(arr, i);
    JsonObject *o = JSON_NODE_HOLDS_OBJECT(e) ? json_node_get_object(e) : NULL;
    const char *content = o ? str_member(o, "content") : NULL;
    JsonNode *idn = o ? json_object_get_member(o, "id") : NULL;
    if (!content || !idn || !JSON_NODE_HOLDS_VALUE(idn) ||
        json_node_get_value_type(idn) != G_TYPE_INT64)
      return fail(error, where, "added_tokens[%u]: needs \"id\" (integer) and \"content\"", i);
    if (bool_member(o, "lstrip", FALSE) || bool_member(o, "rstrip", FALSE) ||
        bool_member(o, "single_word", FALSE))
      return fail(error, where, "added_tokens[%u] (\"%s\"): lstrip/rstrip/single_word are not "
                  "supported", i, content);
    gint64 id = json_node_get_int(idn);
    if (id < 0 || id >= MAX_FILE_ID)
      return fail(error, where, "added_tokens[%u]: id %" G_GINT64_FORMAT " out of range", i, id);
    gboolean special = bool_member(o, "special", FALSE);
    /* tokenizers' AddedToken defaults normalized to !special. */
    gboolean normalized = bool_member(o, "normalized", !special);
    if (!ps_bpe_set_added(tok, content, (int32_t)id, special, normalized, where, error))
      return FALSE;
  }
  return TRUE;
}

static ps_bpe *load_root(JsonNode *node, const char *where, GError **error) {
  if (!node || !JSON_NODE_HOLDS_OBJECT(node)) {
    fail(error, where, "not a JSON object");
    return NULL;
  }
  JsonObject *root = json_node_get_object(node);
  g_autoptr(ps_bpe) tok = ps_bpe_new_empty();
  if (!load_model(tok, root, where, error) || !load_added(tok, root, where, error) ||
      !load_normalizer(tok, root, where, error) || !load_pre_tokenizer(tok, root, where, error) ||
      !load_decoder(tok, root, where, error) || !load_post_processor(root, where, error) ||
      !ps_bpe_finish(tok, where, error))
    return NULL;
  return g_steal_pointer(&tok);
}

ps_bpe *ps_bpe_load_data(const char *json, gssize len, const char *label, GError **error) {
  if (!ps_json_depth_ok(json, len, PS_JSON_MAX_DEPTH)) { /* json-glib would overflow the stack */
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: JSON nested deeper than %d", label, PS_JSON_MAX_DEPTH);
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  GError *err = NULL;
  if (!json_parser_load_from_data(parser, json, len, &err)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: %s", label, err->message);
    g_error_free(err);
    return NULL;
  }
  return load_root(json_parser_get_root(parser), label, error);
}

ps_bpe *ps_bpe_load(const char *path, GError **error) {
  /* Mapped (the Qwen2 file is 11 MB), depth-checked, then parsed in place:
   * what json_parser_load_from_mapped_file does, with the guard between. */
  GError *err = NULL;
  g_autoptr(GMappedFile) map = g_mapped_file_new(path, FALSE, &err);
  if (!map) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: %s", path, err->message);
    g_error_free(err);
    return NULL;
  }
  const char *json = g_mapped_file_get_contents(map);
  gssize len = (gssize)g_mapped_file_get_length(map);
  if (!ps_json_depth_ok(json ? json : "", json ? len : 0, PS_JSON_MAX_DEPTH)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: JSON nested deeper than %d", path, PS_JSON_MAX_DEPTH);
    return NULL;
  }
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  if (!json_parser_load_from_data(parser, json ? json : "", json ? len : 0, &err)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: %s", path, err->message);
    g_error_free(err);
    return NULL;
  }
  return load_root(json_parser_get_root(parser), path, error);
}
