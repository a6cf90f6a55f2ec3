/* plugin.c — the `tokenizer.bpe` component (kind tokenizer).
 *
 * create() loads a tokenizer.json (`file`) or, when no file is given, trains
 * a byte-level BPE on `train_corpus` (one example per line) with
 * `vocab_size` ids, then adds `added_tokens` (e.g. "<SEG>") and optionally
 * writes the result to `save`. Other plugins use it through the
 * "tokenizer" capability (ps_tokenizer_iface in bpe.h) with the component
 * instance as `self`; `pipeline fixture` runs the `tokenizer.qwen2`
 * reference fixture through the "fixture" capability. */
#include <json-glib/json-glib.h>
#include <pathseg/plugin.h>
#include <string.h>

#include "bpe.h"

typedef struct {
  ps_bpe *tok;
} bpe_component;

static const ps_config_key bpe_config[] = {
    {"file", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "tokenizer.json to load (Hugging Face format); empty: train on train_corpus"},
    {"added_tokens", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "tokens matched whole and added after the largest id, e.g. [\"<SEG>\"]"},
    {"added_special", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "mark added_tokens special (decode with skip_special drops them)"},
    {"train_corpus", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "text file, one example per line, to train a byte-level BPE on when file is empty"},
    {"vocab_size", PS_TYPE_INT, "4096", 256, 1 << 24, NULL,
     "ids of a trained tokenizer: 256 bytes + merges + added tokens"},
    {"min_frequency", PS_TYPE_INT, "2", 0, 1e12, NULL, "a trained merge must occur this often"},
    {"save", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "write the tokenizer (after training and added tokens) to this tokenizer.json"},
    {NULL},
};
static const ps_port_desc no_ports[] = {{NULL}};

static void bpe_destroy(void *self) {
  bpe_component *c = self;
  if (!c) return;
  ps_bpe_free(c->tok);
  g_free(c);
}

/* Trains on a text file; the added tokens are cut out of the corpus and
 * count within vocab_size. */
static ps_bpe *train_from_file(const char *path, size_t vocab_size, uint64_t min_frequency,
                               const char *const *added, gboolean special, GError **error) {
  g_autofree char *text = NULL;
  gsize len = 0;
  if (!g_file_get_contents(path, &text, &len, error)) return NULL;
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  ps_bpe_train_options opts = {.vocab_size = vocab_size,
                               .min_frequency = min_frequency,
                               .added_tokens = added,
                               .added_special = special};
  g_autoptr(GError) err = NULL;
  ps_bpe *tok = ps_bpe_train((const char *const *)lines, g_strv_length(lines), &opts, &err);
  if (!tok) g_set_error(error, err->domain, err->code, "train_corpus %s: %s", path, err->message);
  return tok;
}

static void *bpe_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  g_autoptr(ps_bpe) tok = NULL;
  const char *file = ps_config_string(cfg, "file");
  const char *corpus = ps_config_string(cfg, "train_corpus");
  size_t n = 0;
  const char *const *added = ps_config_string_list(cfg, "added_tokens", &n);
  gboolean special = ps_config_bool(cfg, "added_special");
  /* A NULL-terminated copy of the list for the trainer. */
  g_autofree const char **added_z = g_new0(const char *, n + 1);
  for (size_t i = 0; i < n; i++) added_z[i] = added[i];
  if (file && *file) {
    tok = ps_bpe_load(file, error);
  } else if (corpus && *corpus) {
    tok = train_from_file(corpus, (size_t)ps_config_int(cfg, "vocab_size"),
                          (uint64_t)ps_config_int(cfg, "min_frequency"), added_z, special, error);
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "tokenizer.bpe: set `file` (a tokenizer.json) or `train_corpus`");
  }
  if (!tok) return NULL;
  for (size_t i = 0; i < n; i++)
    if (ps_bpe_add_token(tok, added[i], special, error) < 0) return NULL;
  const char *save = ps_config_string(cfg, "save");
  if (save && *save && !ps_bpe_save(tok, save, error)) return NULL;
  bpe_component *c = g_new0(bpe_component, 1);
  c->tok = g_steal_pointer(&tok);
  return c;
}

/* ---------------------------------------------------------------------- */
/* The "tokenizer" capability. */

static ps_bpe *T(void *self) { return ((bpe_component *)self)->tok; }

static gboolean iface_encode(void *self, const char *text, gssize len, GArray *ids,
                             GError **error) {
  return ps_bpe_encode(T(self), text, len, ids, error);
}
static char *iface_decode(void *self, const int32_t *ids, size_t n, gboolean skip_special,
                          GError **error) {
  return ps_bpe_decode(T(self), ids, n, skip_special, error);
}
static int32_t iface_token_to_id(void *self, const char *token) {
  return ps_bpe_token_to_id(T(self), token);
}
static size_t iface_vocab_size(void *self) { return ps_bpe_vocab_size(T(self)); }
static int32_t iface_add_token(void *self, const char *content, gboolean special,
                               GError **error) {
  return ps_bpe_add_token(T(self), content, special, error);
}
static const char *iface_id_to_token(void *self, int32_t id) {
  return ps_bpe_id_to_token(T(self), id);
}
static guint8 *iface_decode_bytes(void *self, const int32_t *ids, size_t n,
                                  gboolean skip_special, size_t *n_bytes, GError **error) {
  return ps_bpe_decode_bytes(T(self), ids, n, skip_special, n_bytes, error);
}
static gboolean iface_is_special(void *self, int32_t id) { return ps_bpe_is_special(T(self), id); }

static const ps_tokenizer_iface tokenizer_iface = {
    .struct_size = sizeof(ps_tokenizer_iface),
    .encode = iface_encode,
    .decode = iface_decode,
    .token_to_id = iface_token_to_id,
    .vocab_size = iface_vocab_size,
    .add_token = iface_add_token,
    .id_to_token = iface_id_to_token,
    .decode_bytes = iface_decode_bytes,
    .is_special = iface_is_special,
};

/* ---------------------------------------------------------------------- */
/* The "fixture" capability: tokenizer.qwen2 (FORMAT.md). */

static ps_tensor *i64_vector(const int64_t *v, int64_t n, GError **error) {
  ps_tensor *t = ps_tensor_new4(PS_DTYPE_I64, n, -1, -1, -1, error);
  if (t && n > 0) memcpy(t->data, v, (size_t)n * sizeof(int64_t));
  return t;
}

static JsonArray *metadata_strings(ps_fixture *fx, const char *key, JsonParser *parser,
                                   GError **error) {
  const char *text = ps_fixture_metadata(fx, key);
  JsonNode *root = NULL;
  if (text && json_parser_load_from_data(parser, text, -1, NULL)) root = json_parser_get_root(parser);
  if (!root || !JSON_NODE_HOLDS_ARRAY(root)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "tokenizer.qwen2 fixture: metadata `%s` is missing or not a JSON array", key);
    return NULL;
  }
  return json_node_get_array(root);
}

static gboolean run_qwen2(ps_fixture *fx, ps_context *ctx, GError **error) {
  /* config.tokenizer_json names the file; it is looked up by base name. */
  g_autoptr(JsonParser) cp = json_parser_new();
  if (!json_parser_load_from_data(cp, ps_fixture_config(fx), -1, error)) return FALSE;
  JsonNode *root = json_parser_get_root(cp);
  JsonObject *cfg = root && JSON_NODE_HOLDS_OBJECT(root) ? json_node_get_object(root) : NULL;
  const char *json = cfg && json_object_has_member(cfg, "tokenizer_json")
                         ? json_object_get_string_member(cfg, "tokenizer_json")
                         : NULL;
  if (!json) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "tokenizer.qwen2 fixture: config has no `tokenizer_json`");
    return FALSE;
  }
  g_autofree char *path = ps_fixture_find_data(fx, json, error);
  if (!path) return FALSE;
  g_autoptr(ps_bpe) tok = ps_bpe_load(path, error);
  if (!tok) return FALSE;

  g_autoptr(JsonParser) lp = json_parser_new();
  JsonArray *lines = metadata_strings(fx, "lines", lp, error);
  if (!lines) return FALSE;
  guint n = json_array_get_length(lines);
  g_autoptr(GArray) ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  g_autoptr(GArray) line_ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  g_autofree int64_t *offsets = g_new0(int64_t, n + 1);
  g_autofree int64_t *rt = g_new0(int64_t, MAX(n, 1));
  g_autofree int64_t *rt_nfc = g_new0(int64_t, MAX(n, 1));
  for (guint i = 0; i < n; i++) {
    const char *line = json_array_get_string_element(lines, i);
    g_array_set_size(line_ids, 0);
    if (!line || !ps_bpe_encode(tok, line, -1, line_ids, error)) {
      if (!line)
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "tokenizer.qwen2 fixture: lines[%u] is not a string", i);
      return FALSE;
    }
    g_array_append_vals(ids, line_ids->data, line_ids->len);
    offsets[i + 1] = ids->len;
    /* decode(ids, skip_special_tokens=false) against the line and its NFC. */
    g_autofree char *dec =
        ps_bpe_decode(tok, (const int32_t *)line_ids->data, line_ids->len, FALSE, error);
    if (!dec) return FALSE;
    g_autofree char *nfc = ps_bpe_nfc(line, -1);
    rt[i] = strcmp(dec, line) == 0;
    rt_nfc[i] = strcmp(dec, nfc) == 0;
  }
  g_autofree int64_t *ids64 = g_new(int64_t, MAX(ids->len, 1));
  for (guint k = 0; k < ids->len; k++) ids64[k] = g_array_index(ids, int32_t, k);
  ps_tensor *t_ids = i64_vector(ids64, ids->len, error);
  if (!t_ids) return FALSE;
  ps_fixture_put(fx, "ids", t_ids);
  ps_tensor *t_off = i64_vector(offsets, n + 1, error);
  if (!t_off) return FALSE;
  ps_fixture_put(fx, "offsets", t_off);
  ps_tensor *t_rt = i64_vector(rt, n, error);
  if (!t_rt) return FALSE;
  ps_fixture_put(fx, "roundtrip_equal", t_rt);
  ps_tensor *t_rtn = i64_vector(rt_nfc, n, error);
  if (!t_rtn) return FALSE;
  ps_fixture_put(fx, "roundtrip_equal_nfc", t_rtn);
  return TRUE;
}

static const char *const fixture_components[] = {"tokenizer.qwen2", NULL};
static const ps_fixture_iface fixture_iface = {
    .struct_size = sizeof(ps_fixture_iface),
    .components = fixture_components,
    .run = run_qwen2,
};

static const void *bpe_capability(const char *name) {
  if (strcmp(name, PS_TOKENIZER_CAPABILITY) == 0) return &tokenizer_iface;
  if (strcmp(name, "fixture") == 0) return &fixture_iface;
  return NULL;
}

/* ---------------------------------------------------------------------- */

static const ps_component_vtable bpe_vtable = {
    .struct_size = sizeof(ps_component_vtable),
    .create = bpe_create,
    .destroy = bpe_destroy,
};

static const ps_component_desc bpe_desc = {
    .struct_size = sizeof(ps_component_desc),
    .kind = PS_KIND_TOKENIZER,
    .name = "tokenizer.bpe",
    .doc = "Byte-level BPE with Hugging Face tokenizers semantics (the Qwen2 tokenizer.json: "
           "added tokens first, NFC, the Qwen2 split, merges by rank), or one trained on a "
           "corpus. Used through the \"tokenizer\" capability (bpe.h).",
    .config = bpe_config,
    .inputs = no_ports,
    .outputs = no_ports,
    .vtable = &bpe_vtable,
    .capability = bpe_capability,
};

static const ps_component_desc *const components[] = {&bpe_desc, NULL};

static const ps_plugin_desc plugin = {
    PS_PLUGIN_HEADER,
    .name = "tokenizer_bpe",
    .version = "0.1.0",
    .license = "MIT",
    .description = "Byte-level BPE tokenizer (Qwen2 tokenizer.json) and BPE training.",
    .components = components,
};

PS_PLUGIN_EXPORT const ps_plugin_desc *ps_plugin_query(void) { return &plugin; }
