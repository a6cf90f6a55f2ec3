/* test_tokenizer_plugin.c — the built tokenizer_bpe plugin as the host and
 * other plugins see it: tokenizer.bpe created from YAML config, used only
 * through the "tokenizer" capability (function pointers, as an LLM plugin
 * would): the fixture's ids for a line, <SEG> added at runtime, decode with
 * and without special tokens; then the training path (train_corpus,
 * vocab_size, added_tokens, save) and a config error. */
#include <glib/gstdio.h>
#include <pathseg/host.h>
#include <pathseg/pipeline.h>
#include <pathseg/safetensors.h>
#include <string.h>

#include "bpe.h"
#include "ps_test.h"

static void *create(const ps_component_desc *desc, ps_context *ctx, const char *yaml,
                    GError **error) {
  g_autoptr(ps_config) cfg = ps_config_parse(desc->config, yaml, "test", error);
  if (!cfg) return NULL;
  return desc->vtable->create(cfg, ctx, error);
}

static void test_qwen(const ps_component_desc *desc, ps_context *ctx) {
  g_autofree char *json = ps_test_source_path("tests/data/qwen2-tokenizer.json");
  g_autofree char *yaml = g_strdup_printf("file: \"%s\"\nadded_tokens: [\"<SEG>\"]\n", json);
  GError *err = NULL;
  void *self = create(desc, ctx, yaml, &err);
  PS_CHECK_MSG(self != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  if (!self) return;
  const ps_tokenizer_iface *t = desc->capability(PS_TOKENIZER_CAPABILITY);
  PS_CHECK(t && t->struct_size == sizeof(ps_tokenizer_iface));
  if (!t) return;
  PS_CHECK(t->vocab_size(self) == 151670);
  PS_CHECK(t->token_to_id(self, "<SEG>") == 151669);
  PS_CHECK(t->is_special(self, 151669));
  PS_CHECK(g_strcmp0(t->id_to_token(self, 151645), "<|im_end|>") == 0);

  /* Line 0 of the fixture through the capability: exact ids. */
  g_autofree char *fx = ps_test_source_path("tests/fixtures/tokenizer_qwen.safetensors");
  g_autoptr(ps_safetensors) st = ps_safetensors_open(fx, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st) {
    const ps_tensor *ids = ps_safetensors_get(st, "output.ids", NULL);
    const ps_tensor *off = ps_safetensors_get(st, "output.offsets", NULL);
    const char *line0 = "The keratinizing nests forms irregular, angulated nests in the "
                        "bottom-right corner, which is consistent with chronic active inflammation.";
    g_autoptr(GArray) got = g_array_new(FALSE, FALSE, sizeof(int32_t));
    PS_CHECK_OK(t->encode(self, line0, -1, got, &err), err);
    const int64_t *w = ids->data, *o = off->data;
    gboolean same = (int64_t)got->len == o[1] - o[0];
    for (guint k = 0; same && k < got->len; k++) same = g_array_index(got, int32_t, k) == w[k];
    PS_CHECK(same);
  }

  /* <SEG> is one token now (in the fixture, without it, it is plain text). */
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  const char *text = "<|im_start|>assistant\nThe gland is <SEG>.<|im_end|>";
  PS_CHECK_OK(t->encode(self, text, -1, ids, &err), err);
  int n_seg = 0;
  for (guint i = 0; i < ids->len; i++) n_seg += g_array_index(ids, int32_t, i) == 151669;
  PS_CHECK(n_seg == 1);
  g_autofree char *all = t->decode(self, (int32_t *)ids->data, ids->len, FALSE, &err);
  PS_CHECK(g_strcmp0(all, text) == 0);
  g_autofree char *plain = t->decode(self, (int32_t *)ids->data, ids->len, TRUE, &err);
  PS_CHECK(g_strcmp0(plain, "assistant\nThe gland is .") == 0);
  size_t nb = 0;
  g_autofree guint8 *raw = t->decode_bytes(self, (int32_t *)ids->data, ids->len, FALSE, &nb, &err);
  PS_CHECK(raw && nb == strlen(text) && memcmp(raw, text, nb) == 0);
  PS_CHECK(t->add_token(self, "<REF>", TRUE, &err) == 151670);
  desc->vtable->destroy(self);
}

static void test_train(const ps_component_desc *desc, ps_context *ctx) {
  g_autofree char *dir = g_dir_make_tmp("ps-tokplug-XXXXXX", NULL);
  g_autofree char *corpus = g_build_filename(dir, "corpus.txt", NULL);
  g_autofree char *out = g_build_filename(dir, "tokenizer.json", NULL);
  GString *text = g_string_new(NULL);
  for (int i = 0; i < 200; i++)
    g_string_append_printf(text, "The tumour region %s the %s margin <SEG>. Dice %d.\n",
                           i % 3 ? "touches" : "crosses", i % 2 ? "left" : "resection", i);
  PS_CHECK(g_file_set_contents(corpus, text->str, -1, NULL));
  g_string_free(text, TRUE);
  g_autofree char *yaml = g_strdup_printf(
      "train_corpus: \"%s\"\nvocab_size: 300\nmin_frequency: 1\nadded_tokens: [\"<SEG>\"]\n"
      "save: \"%s\"\n", corpus, out);
  GError *err = NULL;
  void *self = create(desc, ctx, yaml, &err);
  PS_CHECK_MSG(self != NULL, "%s", err ? err->message : "");
  g_clear_error(&err);
  const ps_tokenizer_iface *t = desc->capability(PS_TOKENIZER_CAPABILITY);
  if (self) {
    /* vocab_size counts the bytes, the merges and <SEG>, which comes last. */
    PS_CHECK(t->vocab_size(self) == 300);
    PS_CHECK(t->token_to_id(self, "<SEG>") == 299);
    g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
    const char *line = "The tumour region touches the left margin <SEG>. Dice 7.";
    PS_CHECK_OK(t->encode(self, line, -1, ids, &err), err);
    g_autofree char *back = t->decode(self, (int32_t *)ids->data, ids->len, FALSE, &err);
    PS_CHECK(g_strcmp0(back, line) == 0);
    PS_CHECK(ids->len < strlen(line) / 2);
    /* The saved file loads back through `file:` and gives the same ids. */
    g_autofree char *yaml2 = g_strdup_printf("file: \"%s\"\n", out);
    void *again = create(desc, ctx, yaml2, &err);
    PS_CHECK_MSG(again != NULL, "%s", err ? err->message : "");
    g_clear_error(&err);
    if (again) {
      g_autoptr(GArray) ids2 = g_array_new(FALSE, FALSE, sizeof(int32_t));
      PS_CHECK_OK(t->encode(again, line, -1, ids2, &err), err);
      PS_CHECK(ids2->len == ids->len && memcmp(ids->data, ids2->data, ids->len * 4) == 0);
      desc->vtable->destroy(again);
    }
    desc->vtable->destroy(self);
  }
  PS_CHECK_FAILS_WITH(create(desc, ctx, "vocab_size: 300\n", &err) != NULL, err, "train_corpus");
  g_unlink(out);
  g_unlink(corpus);
  g_rmdir(dir);
}

int main(void) {
  g_autoptr(ps_registry) reg = ps_registry_new();
  const char *dir = g_getenv("PATHSEG_PLUGIN_PATH");
  g_autofree char *path = g_build_filename(dir ? dir : "plugins", "pathseg-tokenizer_bpe.so", NULL);
  GError *err = NULL;
  PS_CHECK_OK(ps_registry_load_file(reg, path, &err), err);
  const ps_component_desc *desc = ps_registry_find(reg, "tokenizer.bpe");
  PS_CHECK(desc != NULL && desc->kind == PS_KIND_TOKENIZER);
  if (!desc) return ps_test_finish();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 0);
  test_qwen(desc, ctx);
  test_train(desc, ctx);
  return ps_test_finish();
}
