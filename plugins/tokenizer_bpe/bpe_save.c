/* bpe_save.c — writes a tokenizer as a Hugging Face tokenizer.json (the
 * layout Qwen2's file uses: merges as [left, right] pairs, NFC, the Qwen2
 * split + ByteLevel), which ps_bpe_load and tokenizers' Tokenizer.fromFile
 * both read. Written to a temporary file and renamed. */
#include "bpe_internal.h"

#include <json-glib/json-glib.h>
#include <pathseg/error.h>

static void byte_level(JsonBuilder *b) {
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "type");
  json_builder_add_string_value(b, "ByteLevel");
  json_builder_set_member_name(b, "add_prefix_space");
  json_builder_add_boolean_value(b, FALSE);
  json_builder_set_member_name(b, "trim_offsets");
  json_builder_add_boolean_value(b, FALSE);
  json_builder_set_member_name(b, "use_regex");
  json_builder_add_boolean_value(b, FALSE);
  json_builder_end_object(b);
}

static void member_bool(JsonBuilder *b, const char *key, gboolean v) {
  json_builder_set_member_name(b, key);
  json_builder_add_boolean_value(b, v);
}

static void member_str(JsonBuilder *b, const char *key, const char *v) {
  json_builder_set_member_name(b, key);
  if (v)
    json_builder_add_string_value(b, v);
  else
    json_builder_add_null_value(b);
}

static gboolean in_model_vocab(const ps_bpe *tok, int32_t id) {
  const char *s = tok->id_token[id];
  return s && GPOINTER_TO_INT(g_hash_table_lookup(tok->vocab, s)) == id + 1;
}

static void build(const ps_bpe *tok, JsonBuilder *b) {
  json_builder_begin_object(b);
  member_str(b, "version", "1.0");
  member_str(b, "truncation", NULL);
  member_str(b, "padding", NULL);

  json_builder_set_member_name(b, "added_tokens");
  json_builder_begin_array(b);
  for (guint k = 0; k < tok->added->len; k++) {
    const ps_bpe_added *a = g_ptr_array_index(tok->added, k);
    json_builder_begin_object(b);
    json_builder_set_member_name(b, "id");
    json_builder_add_int_value(b, a->id);
    member_str(b, "content", a->content);
    member_bool(b, "single_word", FALSE);
    member_bool(b, "lstrip", FALSE);
    member_bool(b, "rstrip", FALSE);
    member_bool(b, "normalized", a->normalized);
    member_bool(b, "special", a->special);
    json_builder_end_object(b);
  }
  json_builder_end_array(b);

  json_builder_set_member_name(b, "normalizer");
  if (tok->nfc) {
    json_builder_begin_object(b);
    member_str(b, "type", "NFC");
    json_builder_end_object(b);
  } else {
    json_builder_add_null_value(b);
  }

  json_builder_set_member_name(b, "pre_tokenizer");
  json_builder_begin_object(b);
  member_str(b, "type", "Sequence");
  json_builder_set_member_name(b, "pretokenizers");
  json_builder_begin_array(b);
  json_builder_begin_object(b);
  member_str(b, "type", "Split");
  json_builder_set_member_name(b, "pattern");
  json_builder_begin_object(b);
  member_str(b, "Regex", PS_BPE_QWEN2_REGEX);
  json_builder_end_object(b);
  member_str(b, "behavior", "Isolated");
  member_bool(b, "invert", FALSE);
  json_builder_end_object(b);
  byte_level(b);
  json_builder_end_array(b);
  json_builder_end_object(b);

  json_builder_set_member_name(b, "post_processor");
  byte_level(b);
  json_builder_set_member_name(b, "decoder");
  if (tok->decoder_byte_fallback) {
    json_builder_begin_object(b);
    member_str(b, "type", "Sequence");
    json_builder_set_member_name(b, "decoders");
    json_builder_begin_array(b);
    json_builder_begin_object(b);
    member_str(b, "type", "ByteFallback");
    json_builder_end_object(b);
    byte_level(b);
    json_builder_end_array(b);
    json_builder_end_object(b);
  } else {
    byte_level(b);
  }

  json_builder_set_member_name(b, "model");
  json_builder_begin_object(b);
  member_str(b, "type", "BPE");
  member_str(b, "dropout", NULL);
  member_str(b, "unk_token", tok->unk_id >= 0 ? tok->id_token[tok->unk_id] : NULL);
  member_str(b, "continuing_subword_prefix", "");
  member_str(b, "end_of_word_suffix", "");
  member_bool(b, "fuse_unk", tok->fuse_unk);
  member_bool(b, "byte_fallback", tok->byte_fallback);
  member_bool(b, "ignore_merges", tok->ignore_merges);
  json_builder_set_member_name(b, "vocab");
  json_builder_begin_object(b);
  for (int32_t id = 0; id < tok->n_ids; id++) {
    if (!in_model_vocab(tok, id)) continue;
    json_builder_set_member_name(b, tok->id_token[id]);
    json_builder_add_int_value(b, id);
  }
  json_builder_end_object(b);
  json_builder_set_member_name(b, "merges");
  json_builder_begin_array(b);
  for (size_t k = 0; k < tok->n_merges; k++) {
    json_builder_begin_array(b);
    json_builder_add_string_value(b, tok->id_token[tok->merge_pairs[2 * k]]);
    json_builder_add_string_value(b, tok->id_token[tok->merge_pairs[2 * k + 1]]);
    json_builder_end_array(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);

  json_builder_end_object(b);
}

gboolean ps_bpe_save(const ps_bpe *tok, const char *path, GError **error) {
  g_autoptr(JsonBuilder) b = json_builder_new();
  build(tok, b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autoptr(JsonGenerator) gen = json_generator_new();
  json_generator_set_root(gen, root);
  gsize len = 0;
  g_autofree char *text = json_generator_to_data(gen, &len);
  GError *err = NULL;
  if (!g_file_set_contents_full(path, text, (gssize)len, G_FILE_SET_CONTENTS_CONSISTENT, 0644,
                                &err)) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "tokenizer: cannot write %s: %s", path,
                err->message);
    g_error_free(err);
    return FALSE;
  }
  return TRUE;
}
