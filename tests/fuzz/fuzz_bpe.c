/* fuzz_bpe.c — libFuzzer target for the BPE tokenizer's tokenizer.json
 * loader (plugins/tokenizer_bpe/bpe_load.c) and, when a file loads, for the
 * tokenizer it builds (vocabulary, merges, added tokens).
 *
 * The raw bytes are the JSON (with their length). A rejected input must come
 * with an error naming the buffer. A loaded tokenizer encodes a few fixed
 * texts, every id it returns must be in the vocabulary, and they decode to
 * valid UTF-8; every id below the vocabulary size decodes without a crash;
 * adding <SEG> gives an id that maps back to it. */
#include <string.h>

#include "bpe.h"
#include "fuzz_common.h"

static const char *const texts[] = {
    "abc ab",
    "Segment the glands. <SEG>",
    "  Hello,\tworld!\r\n123 4567 it's ",
    "e\xCC\x81t\xC3\xA9 \xE4\xB8\xAD\xE6\x96\x87 \xF0\x9F\x98\x80",
    "<x><s></s>ab<|endoftext|>",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fuzz_setup();
  GError *err = NULL;
  ps_bpe *tok = ps_bpe_load_data((const char *)data, (gssize)size, "fuzz.json", &err);
  if (!tok) {
    fuzz_require(err && strstr(err->message, "fuzz.json"), "an error naming the buffer");
    g_error_free(err);
    return 0;
  }
  size_t vocab = ps_bpe_vocab_size(tok);
  GArray *ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  for (size_t t = 0; t < G_N_ELEMENTS(texts); t++) {
    g_array_set_size(ids, 0);
    if (!ps_bpe_encode(tok, texts[t], -1, ids, &err)) {
      fuzz_require(err && err->message[0], "encode errors have a message");
      g_clear_error(&err);
      continue;
    }
    for (guint i = 0; i < ids->len; i++) {
      int32_t id = g_array_index(ids, int32_t, i);
      fuzz_require(id >= 0 && (size_t)id < vocab, "encoded ids are in the vocabulary");
    }
    char *back = ps_bpe_decode(tok, (const int32_t *)ids->data, ids->len, FALSE, &err);
    fuzz_require(back && g_utf8_validate(back, -1, NULL), "decode gives valid UTF-8");
    g_free(back);
  }
  /* Every id, one at a time (bounded: a fuzzed vocabulary may be large). */
  for (size_t id = 0; id < vocab && id < 4096; id++) {
    int32_t one = (int32_t)id;
    size_t n = 0;
    guint8 *bytes = ps_bpe_decode_bytes(tok, &one, 1, FALSE, &n, &err);
    if (!bytes) g_clear_error(&err);
    g_free(bytes);
    const char *s = ps_bpe_id_to_token(tok, one);
    if (s) (void)ps_bpe_token_to_id(tok, s);
  }
  int32_t seg = ps_bpe_add_token(tok, "<SEG>", TRUE, &err);
  if (seg >= 0)
    fuzz_require(g_strcmp0(ps_bpe_id_to_token(tok, seg), "<SEG>") == 0, "an added token maps back");
  else
    g_clear_error(&err);
  g_array_unref(ids);
  ps_bpe_free(tok);
  return 0;
}
