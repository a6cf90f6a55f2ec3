/* test_tokenizer_train.c — training a byte-level BPE: merges worked out by
 * hand on a tiny corpus (frequency order and the tie-break), the vocabulary
 * size asked for, exact encode/decode round trips, save -> load giving the
 * same ids, and determinism. */
#include "bpe.h"
#include "ps_test.h"

#include <glib/gstdio.h>
#include <pathseg/error.h>

/* The ids of `text` as a space-separated string (g_free). */
static char *ids_of(ps_bpe *tok, const char *text) {
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  GError *err = NULL;
  if (!ps_bpe_encode(tok, text, -1, ids, &err)) {
    g_clear_error(&err);
    return g_strdup("(error)");
  }
  GString *s = g_string_new(NULL);
  for (guint i = 0; i < ids->len; i++)
    g_string_append_printf(s, i ? " %d" : "%d", g_array_index(ids, int32_t, i));
  return g_string_free(s, FALSE);
}

/* "ab ab ab cd" splits into "ab", " ab", " ab", " cd". Pair counts:
 * (a,b) 3, (Ġ,a) 2, (Ġ,c) 1, (c,d) 1. Merges by hand:
 *   1. a b     (count 3)
 *   2. Ġ ab    (count 2)
 *   3. c d     (count 1, tie with (Ġ, c): 'c' has the smaller id, 66 < 220:
 *               ids follow GPT-2's byte order, printable bytes first)
 *   4. Ġ cd    (count 1)
 * after which no pair is left. */
static void test_hand_merges(void) {
  const char *lines[] = {"ab ab ab cd"};
  ps_bpe_train_options opts = {.vocab_size = 300};
  GError *err = NULL;
  g_autoptr(ps_bpe) tok = ps_bpe_train(lines, 1, &opts, &err);
  PS_CHECK_MSG(tok != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (!tok) return;
  /* Stops when no pair is left: 256 + 4 ids, fewer than asked. */
  PS_CHECK(ps_bpe_n_merges(tok) == 4);
  PS_CHECK(ps_bpe_vocab_size(tok) == 260);
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 0), "!") == 0);
  PS_CHECK(ps_bpe_token_to_id(tok, "c") == 66);
  PS_CHECK(ps_bpe_token_to_id(tok, "\xC4\xA0") == 220); /* Ġ */
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 256), "ab") == 0);
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 257), "\xC4\xA0" "ab") == 0);
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 258), "cd") == 0);
  PS_CHECK(g_strcmp0(ps_bpe_id_to_token(tok, 259), "\xC4\xA0" "cd") == 0);
  g_autofree char *ids = ids_of(tok, "ab cd ab");
  PS_CHECK_MSG(g_strcmp0(ids, "256 259 257") == 0, "got %s", ids);

  /* Asking for fewer ids stops early: 258 = bytes + 2 merges. */
  opts.vocab_size = 258;
  g_autoptr(ps_bpe) small = ps_bpe_train(lines, 1, &opts, &err);
  PS_CHECK(small && ps_bpe_vocab_size(small) == 258 && ps_bpe_n_merges(small) == 2);
  /* min_frequency 2 keeps only the merges seen at least twice. */
  opts.vocab_size = 300;
  opts.min_frequency = 2;
  g_autoptr(ps_bpe) freq = ps_bpe_train(lines, 1, &opts, &err);
  PS_CHECK(freq && ps_bpe_n_merges(freq) == 2);
  opts.vocab_size = 100;
  PS_CHECK_FAILS_WITH(ps_bpe_train(lines, 1, &opts, &err) != NULL, err, "vocab_size");
}

/* A deterministic pathology corpus (fixed LCG). */
static GPtrArray *make_corpus(guint n, guint32 seed) {
  static const char *subj[] = {"The glandular epithelium", "A dense lymphocytic infiltrate",
                               "Scattered plasma cells", "The ductal lining", "Atypical glands",
                               "The necrotic core"};
  static const char *verb[] = {"shows", "contains", "displays", "is infiltrated by", "lacks"};
  static const char *obj[] = {"nuclear pleomorphism", "a cribriform architecture",
                              "prominent nucleoli", "comedo-type necrosis", "psammoma bodies"};
  static const char *place[] = {"in the upper-left quadrant", "near the resection margin",
                                "at the invasive front", "around the central lumen"};
  GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
  guint32 s = seed;
  for (guint i = 0; i < n; i++) {
    guint32 r[8];
    for (int k = 0; k < 8; k++) r[k] = (s = s * 1664525u + 1013904223u) >> 8;
    char *line = g_strdup_printf("%s %s %s %s (Ki-67 %u%%; %ux, 0.%03u \xC2\xB5m/px)%s",
                                 subj[r[0] % 6], verb[r[1] % 5], obj[r[2] % 5], place[r[3] % 4],
                                 r[4] % 100, 5u << (r[5] % 4), r[6] % 1000,
                                 r[7] % 4 == 0 ? " <SEG>." : ".");
    g_ptr_array_add(lines, line);
  }
  g_ptr_array_add(lines, NULL);
  return lines;
}

static gboolean roundtrips(ps_bpe *tok, const char *text) {
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  GError *err = NULL;
  if (!ps_bpe_encode(tok, text, -1, ids, &err)) {
    g_clear_error(&err);
    return FALSE;
  }
  g_autofree char *back = ps_bpe_decode(tok, (int32_t *)ids->data, ids->len, FALSE, &err);
  g_clear_error(&err);
  g_autofree char *nfc = ps_bpe_nfc(text, -1);
  return back && strcmp(back, nfc) == 0;
}

static void test_corpus(void) {
  g_autoptr(GPtrArray) corpus = make_corpus(400, 7);
  const char *added[] = {"<|endoftext|>", "<SEG>", NULL};
  ps_bpe_train_options opts = {.vocab_size = 400, .added_tokens = added, .added_special = TRUE};
  GError *err = NULL;
  const char *const *lines = (const char *const *)corpus->pdata;
  g_autoptr(ps_bpe) tok = ps_bpe_train(lines, corpus->len - 1, &opts, &err);
  PS_CHECK_MSG(tok != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (!tok) return;
  PS_CHECK_MSG(ps_bpe_vocab_size(tok) == 400, "%zu", ps_bpe_vocab_size(tok));
  PS_CHECK(ps_bpe_model_vocab_size(tok) == 398);
  PS_CHECK(ps_bpe_token_to_id(tok, "<|endoftext|>") == 398);
  PS_CHECK(ps_bpe_token_to_id(tok, "<SEG>") == 399);
  PS_CHECK(ps_bpe_is_special(tok, 399));
  /* <SEG> is matched whole, never learned as merges of its letters. */
  PS_CHECK(ps_bpe_token_to_id(tok, "<SEG") == -1);

  size_t n_bytes = 0, n_ids = 0;
  int ok = 0;
  for (guint i = 0; i + 1 < corpus->len; i++) {
    const char *line = lines[i];
    ok += roundtrips(tok, line);
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    ps_bpe_encode(tok, line, -1, ids, NULL);
    n_ids += ids->len;
    n_bytes += strlen(line);
  }
  PS_CHECK_MSG(ok == (int)corpus->len - 1, "%d lines round-trip", ok);
  /* The merges compress the text they were learned on. */
  PS_CHECK_MSG(n_ids * 2 < n_bytes, "%zu ids for %zu bytes", n_ids, n_bytes);
  /* Unseen text, scripts and bytes round-trip too (every byte has an id). */
  const char *unseen[] = {"Caf\xC3\xA9 na\xC3\xAFve \xC3\x85ngstr\xC3\xB6m", "cafe\xCC\x81",
                          "\xE7\xBB\x84\xE7\xBB\x87\xE7\x97\x85\xE7\x90\x86", "\xF0\x9F\x94\xAC x",
                          "  \n\t\r\n  tail  ", "<|endoftext|><SEG>x<SEG", "", NULL};
  for (int i = 0; unseen[i]; i++) PS_CHECK_MSG(roundtrips(tok, unseen[i]), "unseen[%d]", i);

  /* save -> load: same ids on every line, and saving again gives the same bytes. */
  g_autofree char *dir = g_dir_make_tmp("ps-tok-XXXXXX", NULL);
  g_autofree char *p1 = g_build_filename(dir, "a.json", NULL);
  g_autofree char *p2 = g_build_filename(dir, "b.json", NULL);
  PS_CHECK_OK(ps_bpe_save(tok, p1, &err), err);
  g_autoptr(ps_bpe) back = ps_bpe_load(p1, &err);
  PS_CHECK_MSG(back != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (back) {
    int same = 0;
    for (guint i = 0; i + 1 < corpus->len; i++) {
      g_autofree char *a = ids_of(tok, lines[i]);
      g_autofree char *b = ids_of(back, lines[i]);
      same += strcmp(a, b) == 0;
    }
    PS_CHECK(same == (int)corpus->len - 1);
    PS_CHECK(ps_bpe_vocab_size(back) == 400 && ps_bpe_n_merges(back) == ps_bpe_n_merges(tok));
    PS_CHECK(ps_bpe_is_special(back, 399));
    PS_CHECK_OK(ps_bpe_save(back, p2, &err), err);
    g_autofree char *t1 = NULL, *t2 = NULL;
    g_file_get_contents(p1, &t1, NULL, NULL);
    g_file_get_contents(p2, &t2, NULL, NULL);
    PS_CHECK(t1 && t2 && strcmp(t1, t2) == 0);
  }
  /* Training is deterministic. */
  g_autoptr(ps_bpe) again = ps_bpe_train(lines, corpus->len - 1, &opts, &err);
  if (again) {
    g_autofree char *p3 = g_build_filename(dir, "c.json", NULL);
    PS_CHECK_OK(ps_bpe_save(again, p3, &err), err);
    g_autofree char *t1 = NULL, *t3 = NULL;
    g_file_get_contents(p1, &t1, NULL, NULL);
    g_file_get_contents(p3, &t3, NULL, NULL);
    PS_CHECK(t1 && t3 && strcmp(t1, t3) == 0);
    g_unlink(p3);
  }
  g_unlink(p1);
  g_unlink(p2);
  g_rmdir(dir);
}

int main(void) {
  test_hand_merges();
  test_corpus();
  return ps_test_finish();
}
