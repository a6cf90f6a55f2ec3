/* train_tokenizer.c — trains a byte-level BPE on a JSON-lines corpus (one
 * JSON string per line) and writes its tokenizer.json; prints the training
 * time. bench_hf.mjs --check then confirms that Hugging Face tokenizers
 * loads the file and gives the same ids as bench_tokenizer.
 *
 *   train_tokenizer --corpus synthetic.jsonl --vocab-size 4096 --out tok.json
 *                   [--added "<|endoftext|>" --added "<SEG>"] */
#include "bpe.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
  g_autofree char *corpus = NULL, *out = NULL;
  gint vocab = 4096, min_freq = 2;
  g_auto(GStrv) added = NULL;
  GOptionEntry entries[] = {
      {"corpus", 0, 0, G_OPTION_ARG_FILENAME, &corpus, "JSON-lines corpus", "PATH"},
      {"vocab-size", 0, 0, G_OPTION_ARG_INT, &vocab, "ids wanted", "N"},
      {"min-frequency", 0, 0, G_OPTION_ARG_INT, &min_freq, "minimum pair count", "N"},
      {"added", 0, 0, G_OPTION_ARG_STRING_ARRAY, &added, "an added (special) token", "TOKEN"},
      {"out", 0, 0, G_OPTION_ARG_FILENAME, &out, "tokenizer.json to write", "PATH"},
      {NULL}};
  g_autoptr(GOptionContext) ctx = g_option_context_new("- train a byte-level BPE");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *err = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &err) || !corpus || !out || vocab < 256) {
    fprintf(stderr, "%s\n", err ? err->message : "--corpus, --out and --vocab-size >= 256 needed");
    return 2;
  }
  g_autofree char *text = NULL;
  if (!g_file_get_contents(corpus, &text, NULL, &err)) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(JsonParser) parser = json_parser_new();
  char *save = NULL;
  for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (!json_parser_load_from_data(parser, l, -1, &err)) {
      fprintf(stderr, "%s: %s\n", corpus, err->message);
      return 1;
    }
    const char *s = json_node_get_string(json_parser_get_root(parser));
    g_ptr_array_add(lines, g_strdup(s ? s : ""));
  }
  ps_bpe_train_options opts = {.vocab_size = (size_t)vocab,
                               .min_frequency = (uint64_t)min_freq,
                               .added_tokens = (const char *const *)added,
                               .added_special = TRUE};
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(ps_bpe) tok =
      ps_bpe_train((const char *const *)lines->pdata, lines->len, &opts, &err);
  double train_s = (g_get_monotonic_time() - t0) / 1e6;
  if (!tok || !ps_bpe_save(tok, out, &err)) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  printf("{\"corpus\": \"%s\", \"lines\": %u, \"vocab_size\": %zu, \"merges\": %zu, "
         "\"train_s\": %.3f}\n",
         corpus, lines->len, ps_bpe_vocab_size(tok), ps_bpe_n_merges(tok), train_s);
  return 0;
}
