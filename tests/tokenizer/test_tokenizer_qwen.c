/* test_tokenizer_qwen.c — the Qwen2 tokenizer against the Hugging Face
 * tokenizers fixture (tests/fixtures/tokenizer_qwen.safetensors): exact ids
 * on all 154 lines, decode == the fixture's `decoded`, the round-trip flags,
 * plus added tokens at runtime (<SEG>), skip_special_tokens and errors. */
#include "bpe.h"
#include "ps_test.h"

#include <json-glib/json-glib.h>
#include <pathseg/error.h>
#include <pathseg/safetensors.h>

static char *env_path(const char *var, const char *fallback_rel, const char *name) {
  const char *dir = g_getenv(var);
  if (dir) return g_build_filename(dir, name, NULL);
  g_autofree char *rel = g_build_filename(fallback_rel, name, NULL);
  return ps_test_source_path(rel);
}

static JsonArray *metadata_array(ps_safetensors *st, const char *key, JsonParser *parser) {
  const char *text = ps_safetensors_metadata(st, key);
  if (!text || !json_parser_load_from_data(parser, text, -1, NULL)) return NULL;
  JsonNode *root = json_parser_get_root(parser);
  return JSON_NODE_HOLDS_ARRAY(root) ? json_node_get_array(root) : NULL;
}

static const int64_t *i64_tensor(ps_safetensors *st, const char *name, int64_t *n) {
  GError *err = NULL;
  const ps_tensor *t = ps_safetensors_get(st, name, &err);
  if (!t || t->dtype != PS_DTYPE_I64 || t->ndim != 1) {
    fprintf(stderr, "fixture tensor %s: %s\n", name, err ? err->message : "not 1-D I64");
    g_clear_error(&err);
    return NULL;
  }
  *n = t->shape[0];
  return t->data;
}

static void test_fixture(ps_bpe *tok) {
  g_autofree char *fx_path = env_path("PATHSEG_FIXTURES", "tests/fixtures",
                                      "tokenizer_qwen.safetensors");
  GError *err = NULL;
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fx_path, &err);
  PS_CHECK_MSG(st != NULL, "%s", err ? err->message : "");
  if (!st) {
    g_clear_error(&err);
    return;
  }
  g_autoptr(JsonParser) pl = json_parser_new();
  g_autoptr(JsonParser) pd = json_parser_new();
  JsonArray *lines = metadata_array(st, "lines", pl);
  JsonArray *decoded = metadata_array(st, "decoded", pd);
  int64_t n_ids = 0, n_off = 0, n_rt = 0, n_rtn = 0;
  const int64_t *ids = i64_tensor(st, "output.ids", &n_ids);
  const int64_t *off = i64_tensor(st, "output.offsets", &n_off);
  const int64_t *rt = i64_tensor(st, "output.roundtrip_equal", &n_rt);
  const int64_t *rtn = i64_tensor(st, "output.roundtrip_equal_nfc", &n_rtn);
  PS_CHECK(lines && decoded && ids && off && rt && rtn);
  if (!lines || !decoded || !ids || !off || !rt || !rtn) return;
  guint n = json_array_get_length(lines);
  PS_CHECK(n == 154);
  PS_CHECK((int64_t)n + 1 == n_off && n == json_array_get_length(decoded));
  PS_CHECK(n_rt == n && n_rtn == n && off[n] == n_ids);

  g_autoptr(GArray) all = g_array_new(FALSE, FALSE, sizeof(int32_t));
  int ids_ok = 0, dec_ok = 0, flags_ok = 0;
  for (guint i = 0; i < n; i++) {
    const char *line = json_array_get_string_element(lines, i);
    const char *want_dec = json_array_get_string_element(decoded, i);
    g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(int32_t));
    gboolean ok = ps_bpe_encode(tok, line, -1, got, &err);
    PS_CHECK_OK(ok, err);
    g_array_append_vals(all, got->data, got->len);
    int64_t want_n = off[i + 1] - off[i];
    gboolean same = (int64_t)got->len == want_n;
    for (guint k = 0; same && k < got->len; k++)
      same = g_array_index(got, int32_t, k) == ids[off[i] + k];
    if (same) {
      ids_ok++;
    } else {
      GString *msg = g_string_new(NULL);
      g_string_append_printf(msg, "line %u: got %u ids, want %" G_GINT64_FORMAT "\n  got :", i,
                             got->len, want_n);
      for (guint k = 0; k < got->len && k < 40; k++)
        g_string_append_printf(msg, " %d", g_array_index(got, int32_t, k));
      g_string_append(msg, "\n  want:");
      for (int64_t k = 0; k < want_n && k < 40; k++)
        g_string_append_printf(msg, " %" G_GINT64_FORMAT, ids[off[i] + k]);
      fprintf(stderr, "%s\n", msg->str);
      g_string_free(msg, TRUE);
    }
    /* Decode the fixture's ids (not ours), so decode is checked on its own. */
    g_autofree int32_t *want_ids = g_new(int32_t, want_n + 1);
    for (int64_t k = 0; k < want_n; k++) want_ids[k] = (int32_t)ids[off[i] + k];
    g_autofree char *dec = ps_bpe_decode(tok, want_ids, (size_t)want_n, FALSE, &err);
    PS_CHECK_OK(dec != NULL, err);
    if (dec && strcmp(dec, want_dec) == 0)
      dec_ok++;
    else
      fprintf(stderr, "line %u: decode differs: \"%s\"\n", i, dec ? dec : "(null)");
    g_autofree char *nfc = ps_bpe_nfc(line, -1);
    int64_t eq = dec && strcmp(dec, line) == 0, eq_nfc = dec && strcmp(dec, nfc) == 0;
    if (eq == rt[i] && eq_nfc == rtn[i])
      flags_ok++;
    else
      fprintf(stderr, "line %u: roundtrip flags %d/%d, fixture %d/%d\n", i, (int)eq, (int)eq_nfc,
              (int)rt[i], (int)rtn[i]);
  }
  PS_CHECK_MSG(ids_ok == (int)n, "%d of %u lines give the exact ids", ids_ok, n);
  PS_CHECK_MSG(dec_ok == (int)n, "%d of %u lines decode to `decoded`", dec_ok, n);
  PS_CHECK_MSG(flags_ok == (int)n, "%d of %u round-trip flags agree", flags_ok, n);
  /* The concatenation is what the fixture capability puts as output.ids. */
  PS_CHECK(all->len == (guint)n_ids);
}

/* Several threads encoding at once: one holds the shared scratch and word
 * cache, the others work without them; all must give the fixture's ids. */
typedef struct {
  ps_bpe *tok;
  JsonArray *lines;
  const int64_t *ids, *off;
  int bad;
} thread_job;

static gpointer encode_thread(gpointer p) {
  thread_job *j = p;
  g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(int32_t));
  for (int rep = 0; rep < 3; rep++)
    for (guint i = 0; i < json_array_get_length(j->lines); i++) {
      g_array_set_size(got, 0);
      if (!ps_bpe_encode(j->tok, json_array_get_string_element(j->lines, i), -1, got, NULL)) {
        j->bad++;
        continue;
      }
      gboolean same = (int64_t)got->len == j->off[i + 1] - j->off[i];
      for (guint k = 0; same && k < got->len; k++)
        same = g_array_index(got, int32_t, k) == j->ids[j->off[i] + k];
      j->bad += !same;
    }
  return NULL;
}

static void test_threads(ps_bpe *tok) {
  g_autofree char *fx_path = env_path("PATHSEG_FIXTURES", "tests/fixtures",
                                      "tokenizer_qwen.safetensors");
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fx_path, NULL);
  if (!st) return;
  g_autoptr(JsonParser) pl = json_parser_new();
  int64_t n_ids, n_off;
  JsonArray *lines = metadata_array(st, "lines", pl);
  const int64_t *ids = i64_tensor(st, "output.ids", &n_ids);
  const int64_t *off = i64_tensor(st, "output.offsets", &n_off);
  PS_CHECK(lines && ids && off);
  if (!lines || !ids || !off) return;
  thread_job jobs[4];
  GThread *threads[4];
  for (int t = 0; t < 4; t++) {
    jobs[t] = (thread_job){tok, lines, ids, off, 0};
    threads[t] = g_thread_new("encode", encode_thread, &jobs[t]);
  }
  int bad = 0;
  for (int t = 0; t < 4; t++) {
    g_thread_join(threads[t]);
    bad += jobs[t].bad;
  }
  PS_CHECK_MSG(bad == 0, "%d lines differ when encoded from 4 threads", bad);
}

static void test_vocab(ps_bpe *tok) {
  PS_CHECK(ps_bpe_model_vocab_size(tok) == 151643);
  PS_CHECK(ps_bpe_n_merges(tok) == 151387);
  PS_CHECK(ps_bpe_vocab_size(tok) == 151669); /* 26 added tokens, ids up to 151668 */
  PS_CHECK(ps_bpe_token_to_id(tok, "<|endoftext|>") == 151643);
  PS_CHECK(ps_bpe_token_to_id(tok, "<|im_end|>") == 151645);
  PS_CHECK(ps_bpe_token_to_id(tok, "!") == 0);
  PS_CHECK(ps_bpe_token_to_id(tok, "\xC4\xA0the") >= 0); /* "Ġthe" */
  PS_CHECK(ps_bpe_token_to_id(tok, "<SEG>") == -1);
  PS_CHECK(ps_bpe_is_special(tok, 151645));
  PS_CHECK(!ps_bpe_is_special(tok, 0));
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 151644), "<|im_start|>") == 0);
  PS_CHECK(ps_bpe_id_to_token(tok, 10000000) == NULL);
}

static void test_added_and_special(ps_bpe *tok) {
  GError *err = NULL;
  /* <SEG> takes the next id after the largest one (151668). */
  int32_t seg = ps_bpe_add_token(tok, "<SEG>", TRUE, &err);
  PS_CHECK_MSG(seg == 151669, "<SEG> got id %d", seg);
  g_clear_error(&err);
  PS_CHECK(ps_bpe_add_token(tok, "<SEG>", TRUE, &err) == seg); /* idempotent */
  PS_CHECK(ps_bpe_vocab_size(tok) == 151670);
  PS_CHECK(ps_bpe_token_to_id(tok, "<SEG>") == seg);
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  const char *text = "<|im_start|>assistant\nThe tumour is <SEG>.<|im_end|>";
  PS_CHECK_OK(ps_bpe_encode(tok, text, -1, ids, &err), err);
  int n_seg = 0;
  for (guint i = 0; i < ids->len; i++) n_seg += g_array_index(ids, int32_t, i) == seg;
  PS_CHECK(n_seg == 1);
  PS_CHECK(ids->len > 0 && g_array_index(ids, int32_t, 0) == 151644);
  PS_CHECK(g_array_index(ids, int32_t, ids->len - 1) == 151645);
  g_autofree char *back = ps_bpe_decode(tok, (int32_t *)ids->data, ids->len, FALSE, &err);
  PS_CHECK(g_strcmp0(back, text) == 0);
  g_autofree char *plain = ps_bpe_decode(tok, (int32_t *)ids->data, ids->len, TRUE, &err);
  PS_CHECK_MSG(g_strcmp0(plain, "assistant\nThe tumour is .") == 0, "got \"%s\"", plain);
  /* A non-special added token survives skip_special. */
  int32_t box = ps_bpe_add_token(tok, "<BOX>", FALSE, &err);
  PS_CHECK(box == 151670);
  int32_t two[2] = {box, seg};
  g_autofree char *kept = ps_bpe_decode(tok, two, 2, TRUE, &err);
  PS_CHECK(g_strcmp0(kept, "<BOX>") == 0);
  /* A string the model already has keeps its id. */
  PS_CHECK(ps_bpe_add_token(tok, "hello", FALSE, &err) == ps_bpe_token_to_id(tok, "hello"));
  PS_CHECK_FAILS_WITH(ps_bpe_add_token(tok, "", TRUE, &err) >= 0, err, "empty");
}

static void test_decode_edges(ps_bpe *tok) {
  GError *err = NULL;
  /* "\xE4" alone is an incomplete sequence: U+FFFD, as from_utf8_lossy. */
  int32_t bytes[2] = {ps_bpe_token_to_id(tok, "\xC3\xA4"), ps_bpe_token_to_id(tok, "a")};
  PS_CHECK(bytes[0] >= 0); /* 'ä' is the stand-in of byte 0xE4 */
  g_autofree char *s = ps_bpe_decode(tok, bytes, 2, FALSE, &err);
  PS_CHECK(g_strcmp0(s, "\xEF\xBF\xBD" "a") == 0);
  size_t nb = 0;
  g_autofree guint8 *raw = ps_bpe_decode_bytes(tok, bytes, 2, FALSE, &nb, &err);
  PS_CHECK(raw && nb == 2 && raw[0] == 0xE4 && raw[1] == 'a');
  int32_t bad = 99999999;
  PS_CHECK_FAILS_WITH(ps_bpe_decode(tok, &bad, 1, FALSE, &err) != NULL, err, "99999999");
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  PS_CHECK_FAILS_WITH(ps_bpe_encode(tok, "ab\xFF", -1, ids, &err), err, "UTF-8");
  /* Empty text gives no ids. */
  PS_CHECK_OK(ps_bpe_encode(tok, "", 0, ids, &err), err);
  PS_CHECK(ids->len == 0);
}

int main(void) {
  g_autofree char *json = env_path("PATHSEG_TEST_DATA", "tests/data", "qwen2-tokenizer.json");
  GError *err = NULL;
  g_autoptr(ps_bpe) tok = ps_bpe_load(json, &err);
  PS_CHECK_MSG(tok != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (tok) {
    test_vocab(tok);
    test_fixture(tok);
    test_threads(tok);
    test_decode_edges(tok);
    test_added_and_special(tok);
  }
  return ps_test_finish();
}
