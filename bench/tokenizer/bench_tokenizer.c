/* bench_tokenizer.c — encode throughput of the BPE tokenizer (MB/s of UTF-8
 * input), line by line on one thread, on a JSON-lines corpus (one JSON
 * string per line, as make_corpus.mjs writes it). With --ids-out it also
 * writes the ids of every line (space-separated, one line each) so that
 * bench_hf.mjs can check them against Hugging Face tokenizers. `mb_s` is
 * wall-clock throughput, `cpu_mb_s` the same per second of process CPU time
 * (steadier on a loaded machine).
 *
 *   bench_tokenizer --tokenizer tokenizer.json --corpus corpus.jsonl
 *                   [--ids-out ids.txt] [--min-seconds 2] [--threads 1] */
#include "bpe.h"

#include <json-glib/json-glib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* Process CPU seconds: on a shared machine wall time counts other jobs too. */
static double cpu_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

static GPtrArray *read_corpus(const char *path, GError **error) {
  g_autofree char *text = NULL;
  gsize len;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  GPtrArray *lines = g_ptr_array_new_with_free_func(g_free);
  g_autoptr(JsonParser) parser = json_parser_new();
  char *save = NULL;
  for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
    if (!json_parser_load_from_data(parser, l, -1, error)) {
      g_ptr_array_unref(lines);
      return NULL;
    }
    JsonNode *root = json_parser_get_root(parser);
    if (!JSON_NODE_HOLDS_VALUE(root) || json_node_get_value_type(root) != G_TYPE_STRING) {
      g_set_error(error, G_FILE_ERROR, G_FILE_ERROR_INVAL, "%s: a line is not a JSON string", path);
      g_ptr_array_unref(lines);
      return NULL;
    }
    g_ptr_array_add(lines, g_strdup(json_node_get_string(root)));
  }
  return lines;
}

int main(int argc, char **argv) {
  g_autofree char *tok_path = NULL, *corpus = NULL, *ids_out = NULL;
  double min_seconds = 2.0;
  GOptionEntry entries[] = {
      {"tokenizer", 0, 0, G_OPTION_ARG_FILENAME, &tok_path, "tokenizer.json", "PATH"},
      {"corpus", 0, 0, G_OPTION_ARG_FILENAME, &corpus, "JSON-lines corpus", "PATH"},
      {"ids-out", 0, 0, G_OPTION_ARG_FILENAME, &ids_out, "write the ids of every line", "PATH"},
      {"min-seconds", 0, 0, G_OPTION_ARG_DOUBLE, &min_seconds, "time at least this long", "S"},
      {NULL}};
  g_autoptr(GOptionContext) ctx = g_option_context_new("- BPE encode throughput");
  g_option_context_add_main_entries(ctx, entries, NULL);
  GError *err = NULL;
  if (!g_option_context_parse(ctx, &argc, &argv, &err) || !tok_path || !corpus) {
    fprintf(stderr, "%s\n", err ? err->message : "--tokenizer and --corpus are required");
    return 2;
  }
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(ps_bpe) tok = ps_bpe_load(tok_path, &err);
  if (!tok) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  double load_s = (g_get_monotonic_time() - t0) / 1e6;
  g_autoptr(GPtrArray) lines = read_corpus(corpus, &err);
  if (!lines) {
    fprintf(stderr, "%s\n", err->message);
    return 1;
  }
  size_t bytes = 0;
  for (guint i = 0; i < lines->len; i++) bytes += strlen(g_ptr_array_index(lines, i));

  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  FILE *f = ids_out ? fopen(ids_out, "w") : NULL;
  if (ids_out && !f) {
    fprintf(stderr, "%s: cannot write\n", ids_out);
    return 1;
  }
  /* The first pass (cold word cache) is timed on its own and checked. */
  size_t n_tokens = 0;
  t0 = g_get_monotonic_time();
  for (guint i = 0; i < lines->len; i++) {
    g_array_set_size(ids, 0);
    if (!ps_bpe_encode(tok, g_ptr_array_index(lines, i), -1, ids, &err)) {
      fprintf(stderr, "line %u: %s\n", i, err->message);
      return 1;
    }
    n_tokens += ids->len;
    if (f) {
      for (guint k = 0; k < ids->len; k++)
        fprintf(f, k ? " %d" : "%d", g_array_index(ids, int32_t, k));
      fputc('\n', f);
    }
  }
  double cold_s = (g_get_monotonic_time() - t0) / 1e6;
  if (f) fclose(f);
  /* Then whole passes until min_seconds. */
  int passes = 0;
  t0 = g_get_monotonic_time();
  double c0 = cpu_seconds();
  double warm_s = 0;
  do {
    for (guint i = 0; i < lines->len; i++) {
      g_array_set_size(ids, 0);
      ps_bpe_encode(tok, g_ptr_array_index(lines, i), -1, ids, NULL);
    }
    passes++;
    warm_s = (g_get_monotonic_time() - t0) / 1e6;
  } while (warm_s < min_seconds);
  double cpu_s = cpu_seconds() - c0;
  printf("{\"impl\": \"pathseg-c\", \"corpus\": \"%s\", \"lines\": %u, \"bytes\": %zu, "
         "\"tokens\": %zu, \"load_s\": %.3f, \"first_pass_mb_s\": %.2f, \"mb_s\": %.2f, "
         "\"cpu_mb_s\": %.2f, \"passes\": %d}\n",
         corpus, lines->len, bytes, n_tokens, load_s, bytes / 1e6 / cold_s,
         bytes * (double)passes / 1e6 / warm_s, bytes * (double)passes / 1e6 / cpu_s, passes);
  return 0;
}
