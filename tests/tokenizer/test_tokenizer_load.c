/* test_tokenizer_load.c — the tokenizer.json loader on small hand-written
 * files: both merge spellings ("a b" and ["a", "b"]), bytes without a token
 * (dropped, unk, byte fallback with the ByteFallback decoder), normalized
 * added tokens, and the errors for files it must refuse. Expected ids are
 * worked out by hand from each file's vocab and merges. */
#include "bpe.h"
#include "ps_test.h"

#include <pathseg/error.h>

/* The Qwen2 pre-tokenizer, spelled as in tokenizer.json. */
#define PRE                                                                                      \
  "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", "       \
  "\"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|" \
  "\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "  \
  "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", "                   \
  "\"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}]}"
#define BL "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"trim_offsets\": false, \"use_regex\": false}"

/* Vocab: a b c Ġ ab Ġab abc. Merges: a+b, Ġ+ab, ab+c. */
#define VOCAB "{\"a\": 0, \"b\": 1, \"c\": 2, \"\\u0120\": 3, \"ab\": 4, \"\\u0120ab\": 5, \"abc\": 6}"

static char *ids_of(ps_bpe *tok, const char *text) {
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  if (!ps_bpe_encode(tok, text, -1, ids, NULL)) return g_strdup("(error)");
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf(s, i ? " %d" : "%d", g_array_index(ids, int32_t, i));
  return g_string_free(s, FALSE);
}

static ps_bpe *load(const char *json, GError **error) {
  return ps_bpe_load_data(json, -1, "test.json", error);
}

static void test_merge_forms(void) {
  GError *err = NULL;
  const char *pairs = "{\"model\": {\"type\": \"BPE\", \"vocab\": " VOCAB
                      ", \"merges\": [[\"a\", \"b\"], [\"\\u0120\", \"ab\"], [\"ab\", \"c\"]]}, "
                      "\"normalizer\": {\"type\": \"NFC\"}, " PRE ", \"decoder\": " BL "}";
  const char *strings = "{\"model\": {\"type\": \"BPE\", \"vocab\": " VOCAB
                        ", \"merges\": [\"a b\", \"\\u0120 ab\", \"ab c\"]}, "
                        "\"normalizer\": {\"type\": \"NFC\"}, " PRE ", \"decoder\": " BL "}";
  g_autoptr(ps_bpe) a = load(pairs, &err);
  PS_CHECK_MSG(a != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  g_autoptr(ps_bpe) b = load(strings, &err);
  PS_CHECK_MSG(b != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (!a || !b) return;
  /* "abc ab": pieces "abc", " ab"; abc: a+b (rank 0) then ab+c (rank 2). */
  g_autofree char *ia = ids_of(a, "abc ab");
  g_autofree char *ib = ids_of(b, "abc ab");
  PS_CHECK_MSG(g_strcmp0(ia, "6 5") == 0, "got %s", ia);
  PS_CHECK(g_strcmp0(ia, ib) == 0);
  /* No unk, no byte fallback: 'd' has no token and is dropped, as
   * tokenizers does. " c" has no merge: Ġ, c. */
  g_autofree char *id = ids_of(a, "abd c");
  PS_CHECK_MSG(g_strcmp0(id, "4 3 2") == 0, "got %s", id);
  PS_CHECK(ps_bpe_n_merges(a) == 3 && ps_bpe_vocab_size(a) == 7);
}

static void test_unk_and_fallback(void) {
  GError *err = NULL;
  const char *unk = "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"fuse_unk\": true, "
                    "\"vocab\": {\"a\": 0, \"<unk>\": 1}, \"merges\": []}, " PRE "}";
  g_autoptr(ps_bpe) u = load(unk, &err);
  PS_CHECK_MSG(u != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (u) {
    g_autofree char *ids = ids_of(u, "axxa"); /* one piece: a, unk x2 fused, a */
    PS_CHECK_MSG(g_strcmp0(ids, "0 1 0") == 0, "got %s", ids);
  }
  /* byte_fallback works on the UTF-8 of each byte's stand-in character, as
   * tokenizers does: 'x' is itself (<0x78>); the bytes of "é" (C3 A9) are
   * the stand-ins U+00C3 and U+00A9, whose UTF-8 is C3 83 and C2 A9. */
  const char *fb = "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, "
                   "\"vocab\": {\"a\": 0, \"<0x78>\": 1, \"<0xC3>\": 2, \"<0x83>\": 3, "
                   "\"<0xC2>\": 4, \"<0xA9>\": 5}, \"merges\": []}, "
                   PRE ", \"decoder\": {\"type\": \"Sequence\", \"decoders\": "
                   "[{\"type\": \"ByteFallback\"}, " BL "]}}";
  g_autoptr(ps_bpe) f = load(fb, &err);
  PS_CHECK_MSG(f != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (f) {
    g_autofree char *ids = ids_of(f, "ax\xC3\xA9");
    PS_CHECK_MSG(g_strcmp0(ids, "0 1 2 3 4 5") == 0, "got %s", ids);
    int32_t v[6] = {0, 1, 2, 3, 4, 5};
    g_autofree char *back = ps_bpe_decode(f, v, 6, FALSE, &err);
    PS_CHECK_MSG(g_strcmp0(back, "ax\xC3\xA9") == 0, "got %s", back);
    /* A lone <0xC3> is invalid UTF-8: U+FFFD, kept as its own UTF-8. */
    int32_t lone[2] = {2, 0};
    g_autofree char *rep = ps_bpe_decode(f, lone, 2, FALSE, &err);
    PS_CHECK_MSG(g_strcmp0(rep, "\xEF\xBF\xBD" "a") == 0, "got %s", rep);
  }
}

static void test_normalized_added(void) {
  GError *err = NULL;
  /* A normalized added token is matched after NFC: "é" written decomposed
   * (e + U+0301) still matches the added token "é" (precomposed). A
   * non-normalized one matches the raw text only. */
  const char *json = "{\"model\": {\"type\": \"BPE\", \"vocab\": " VOCAB ", \"merges\": []}, "
                     "\"added_tokens\": [{\"id\": 7, \"content\": \"\\u00e9\", \"special\": false, "
                     "\"normalized\": true}, {\"id\": 8, \"content\": \"<x>\", \"special\": true, "
                     "\"normalized\": false}], \"normalizer\": {\"type\": \"NFC\"}, " PRE "}";
  g_autoptr(ps_bpe) t = load(json, &err);
  PS_CHECK_MSG(t != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (!t) return;
  g_autofree char *ids = ids_of(t, "ae\xCC\x81<x>b");
  PS_CHECK_MSG(g_strcmp0(ids, "0 7 8 1") == 0, "got %s", ids);
  PS_CHECK(ps_bpe_is_special(t, 8) && !ps_bpe_is_special(t, 7));
  /* Runtime add: next id after the largest (8). */
  PS_CHECK(ps_bpe_add_token(t, "<SEG>", TRUE, &err) == 9);
}

static void test_errors(void) {
  GError *err = NULL;
  PS_CHECK_FAILS_WITH(ps_bpe_load("/nonexistent/tok.json", &err) != NULL, err, "/nonexistent/tok.json");
  PS_CHECK_FAILS_WITH(load("{not json", &err) != NULL, err, "test.json");
  PS_CHECK_FAILS_WITH(load("[1, 2]", &err) != NULL, err, "not a JSON object");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", &err) != NULL,
                      err, "model.type");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"type\": \"BPE\"}}", &err) != NULL, err, "model.vocab");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": {\"a\": \"x\"}}}", &err) != NULL, err,
                      "not an integer");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": {\"a\": 0, \"b\": 0}}}", &err) != NULL, err,
                      "used twice");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB ", \"merges\": [[\"a\", \"zz\"]]}, " PRE "}",
                           &err) != NULL, err, "model.merges[0]");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB ", \"merges\": [\"a b c\"]}, " PRE "}",
                           &err) != NULL, err, "model.merges[0]");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB ", \"merges\": [[\"b\", \"c\"]]}, " PRE "}",
                           &err) != NULL, err, "\"bc\" is not in model.vocab");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, \"pre_tokenizer\": {\"type\": "
                           "\"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": true}}", &err) != NULL,
                      err, "pre_tokenizer");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
                           "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\s+\"}, "
                           "\"behavior\": \"Isolated\"}, " BL "]}}", &err) != NULL,
                      err, "only the Qwen2 regex");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, \"normalizer\": {\"type\": \"NFKC\"}, " PRE "}",
                           &err) != NULL, err, "normalizer");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, \"added_tokens\": [{\"id\": 9, "
                           "\"content\": \"<s>\", \"lstrip\": true}], " PRE "}", &err) != NULL,
                      err, "lstrip");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, \"added_tokens\": [{\"id\": 0, "
                           "\"content\": \"<s>\"}], " PRE "}", &err) != NULL, err, "model.vocab gives");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB ", \"dropout\": 0.1}, " PRE "}", &err) != NULL,
                      err, "dropout");
  PS_CHECK_FAILS_WITH(load("{\"model\": {\"vocab\": " VOCAB "}, " PRE ", \"post_processor\": "
                           "{\"type\": \"TemplateProcessing\"}}", &err) != NULL, err, "post_processor");
}

int main(void) {
  test_merge_forms();
  test_unk_and_fallback();
  test_normalized_added();
  test_errors();
  return ps_test_finish();
}
