/* dataset.c — `dataset.benchmark`: the rows of a manifest as training
 * batches. Images and masks are decoded once (libvips) and kept; the text
 * is tokenised once into the chat layout the LLM is trained on:
 *
 *   <|im_start|>user\n<|vision_start|><|image_pad|> x image_tokens <|vision_end|>QUERY<|im_end|>\n
 *   <|im_start|>assistant\nREASONING ... <SEG> ...<|im_end|>
 *
 * `labels` are the input ids on the assistant's part and -100 elsewhere (the
 * LLM shifts them itself); `seg_positions` is the index of the <SEG> token.
 * With `text: caption` the assistant answers a description request with the
 * reasoning chain minus its <SEG> sentence (for vlm_pretrain). When the
 * tokenizer file does not exist it is trained on the manifest's text (a
 * small byte-level BPE for the tiny preset) and saved there. */
#include <pathseg/dataset.h>
#include <string.h>

#include "annotate.h"
#include "benchmark.h"
#include "bpe.h"
#include "manifest.h"
#include "png_io.h"

static const char *const special_tokens[] = {"<|endoftext|>", "<|im_start|>", "<|im_end|>",
                                             "<|vision_start|>", "<|vision_end|>", "<|image_pad|>",
                                             PS_SEG_TOKEN, NULL};

typedef struct {
  int64_t row;      /* index into rows */
  int32_t *ids, *labels;
  int32_t len, seg;
} example;

typedef struct {
  char *manifest, *tok_path;
  int64_t vocab;
  gboolean caption, opened;
  GPtrArray *rows;
  GArray *splits[4];   /* int64 row indices: train, val, test, zeroshot */
  example *ex;         /* one per row */
  uint8_t **rgb, **mask;
  char *dir;
  int size, image_tokens, max_len;
  int32_t pad_id;
  ps_bpe *tok;
  /* batch buffers */
  ps_tensor *image, *maskf, *ids, *labels, *seg, *lens;
  ps_port fields[6];
  ps_ports batch;
} bench;

const ps_config_key ps_bench_config[] = {
    {"manifest", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "manifest.jsonl of the benchmark"},
    {"tokenizer", PS_TYPE_STRING, "", PS_NO_RANGE, NULL,
     "tokenizer.json; empty: tokenizer.json beside the manifest (trained there when missing)"},
    {"vocab_size", PS_TYPE_INT, "512", 300, 1000000, NULL, "size of a trained tokenizer"},
    {"image_tokens", PS_TYPE_INT, "16", 0, 100000, NULL, "<|image_pad|> placeholders (projector output count)"},
    {"max_length", PS_TYPE_INT, "320", 8, 1000000, NULL, "tokens per sequence (padded)"},
    {"text", PS_TYPE_ENUM, "sft", PS_NO_RANGE, "sft|caption", "what the assistant says"},
    {NULL},
};

static int split_index(const char *s) {
  return strcmp(s, "train") == 0 ? 0 : strcmp(s, "val") == 0 ? 1 : strcmp(s, "test") == 0 ? 2
         : strcmp(s, "zeroshot") == 0 ? 3 : -1;
}

void ps_bench_destroy(void *self) {
  bench *b = self;
  if (!b) return;
  for (guint i = 0; b->rows && i < b->rows->len; i++) {
    g_free(b->rgb[i]);
    g_free(b->mask[i]);
    g_free(b->ex[i].ids);
    g_free(b->ex[i].labels);
  }
  g_free(b->rgb);
  g_free(b->mask);
  g_free(b->ex);
  for (int s = 0; s < 4; s++)
    if (b->splits[s]) g_array_unref(b->splits[s]);
  if (b->rows) g_ptr_array_unref(b->rows);
  ps_tensor *t[] = {b->image, b->maskf, b->ids, b->labels, b->seg, b->lens};
  for (size_t i = 0; i < G_N_ELEMENTS(t); i++) ps_tensor_free(t[i]);
  if (b->tok) ps_bpe_free(b->tok);
  g_free(b->dir);
  g_free(b->manifest);
  g_free(b->tok_path);
  g_free(b);
}

/* Drops the sentence that carries <SEG> (for captions). */
static char *without_seg_sentence(const char *reasoning) {
  const char *seg = strstr(reasoning, PS_SEG_TOKEN);
  if (!seg) return g_strdup(reasoning);
  const char *start = seg;
  while (start > reasoning && !(start[-1] == ' ' && start > reasoning + 1 && start[-2] == '.')) start--;
  return g_strstrip(g_strndup(reasoning, (gsize)(start - reasoning)));
}

static ps_bpe *load_tokenizer(bench *b, const char *path, int64_t vocab, GError **error) {
  if (g_file_test(path, G_FILE_TEST_EXISTS)) {
    ps_bpe *tok = ps_bpe_load(path, error);
    if (!tok) return NULL;
    for (size_t i = 0; special_tokens[i]; i++)
      if (ps_bpe_token_to_id(tok, special_tokens[i]) < 0 &&
          ps_bpe_add_token(tok, special_tokens[i], strcmp(special_tokens[i], PS_SEG_TOKEN) != 0, error) < 0) {
        ps_bpe_free(tok);
        return NULL;
      }
    return tok;
  }
  g_autoptr(GPtrArray) lines = g_ptr_array_new();
  for (guint i = 0; i < b->rows->len; i++) {
    ps_manifest_row *r = g_ptr_array_index(b->rows, i);
    if (strcmp(r->split, "train") != 0) continue; /* nothing from held-out text */
    g_ptr_array_add(lines, r->query);
    g_ptr_array_add(lines, r->reasoning);
  }
  g_ptr_array_add(lines, "Describe the image.");
  ps_bpe_train_options opt = {(size_t)vocab, 2, special_tokens, TRUE};
  ps_bpe *tok = ps_bpe_train((const char *const *)lines->pdata, lines->len, &opt, error);
  if (tok && !ps_bpe_save(tok, path, error)) {
    ps_bpe_free(tok);
    return NULL;
  }
  return tok;
}

static gboolean encode(bench *b, const char *text, GArray *ids, GError **error) {
  return ps_bpe_encode(b->tok, text, -1, ids, error);
}

static gboolean tokenize_row(bench *b, int64_t i, gboolean caption, GError **error) {
  ps_manifest_row *r = g_ptr_array_index(b->rows, i);
  GString *prompt = g_string_new("<|im_start|>user\n<|vision_start|>");
  for (int k = 0; k < b->image_tokens; k++) g_string_append(prompt, "<|image_pad|>");
  g_string_append_printf(prompt, "<|vision_end|>%s<|im_end|>\n<|im_start|>assistant\n",
                         caption ? "Describe the image." : r->query);
  g_autofree char *answer_text = caption ? without_seg_sentence(r->reasoning) : g_strdup(r->reasoning);
  g_autofree char *answer = g_strconcat(answer_text, "<|im_end|>", NULL);
  g_autoptr(GArray) pids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  g_autoptr(GArray) aids = g_array_new(FALSE, FALSE, sizeof(int32_t));
  gboolean ok = encode(b, prompt->str, pids, error) && encode(b, answer, aids, error);
  g_string_free(prompt, TRUE);
  if (!ok) return FALSE;
  int32_t len = (int32_t)(pids->len + aids->len);
  if (len > b->max_len) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: %s is %d tokens, more than max_length %d", b->dir, r->image, len, b->max_len);
    return FALSE;
  }
  example *e = &b->ex[i];
  e->row = i;
  e->len = len;
  e->ids = g_new(int32_t, b->max_len);
  e->labels = g_new(int32_t, b->max_len);
  e->seg = -1;
  int32_t seg_id = ps_bpe_token_to_id(b->tok, PS_SEG_TOKEN);
  for (int32_t k = 0; k < b->max_len; k++) {
    gboolean in_prompt = k < (int32_t)pids->len, real = k < len;
    int32_t id = !real ? b->pad_id : in_prompt ? g_array_index(pids, int32_t, k)
                                               : g_array_index(aids, int32_t, k - pids->len);
    e->ids[k] = id;
    e->labels[k] = real && !in_prompt ? id : -100;
    if (real && id == seg_id && e->seg < 0) e->seg = k;
  }
  return TRUE;
}

void *ps_bench_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  if (!ps_png_init(error)) return NULL;
  bench *b = g_new0(bench, 1);
  b->manifest = g_strdup(ps_config_string(cfg, "manifest"));
  b->dir = g_path_get_dirname(b->manifest);
  b->image_tokens = (int)ps_config_int(cfg, "image_tokens");
  b->max_len = (int)ps_config_int(cfg, "max_length");
  b->caption = strcmp(ps_config_string(cfg, "text"), "caption") == 0;
  const char *tok_path = ps_config_string(cfg, "tokenizer");
  b->tok_path = tok_path && *tok_path ? g_strdup(tok_path) : g_build_filename(b->dir, "tokenizer.json", NULL);
  b->vocab = ps_config_int(cfg, "vocab_size");
  b->fields[0].name = "image";
  b->fields[1].name = "mask";
  b->fields[2].name = "input_ids";
  b->fields[3].name = "labels";
  b->fields[4].name = "seg_positions";
  b->fields[5].name = "lengths";
  b->batch = (ps_ports){b->fields, 6};
  return b;
}

/* Reads the manifest, decodes every tile and tokenises every row; run on
 * first use, because an earlier stage of the same run may write the files. */
static gboolean bench_open(void *self, GError **error) {
  bench *b = self;
  if (b->opened) return TRUE;
  const char *manifest = b->manifest;
  b->rows = ps_manifest_read(manifest, error);
  if (!b->rows) return FALSE;
  if (b->rows->len == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s has no rows", manifest);
    return FALSE;
  }
  guint n = b->rows->len;
  b->rgb = g_new0(uint8_t *, n);
  b->mask = g_new0(uint8_t *, n);
  b->ex = g_new0(example, n);
  for (int s = 0; s < 4; s++) b->splits[s] = g_array_new(FALSE, FALSE, sizeof(int64_t));
  b->tok = load_tokenizer(b, b->tok_path, b->vocab, error);
  if (!b->tok) return FALSE;
  b->pad_id = ps_bpe_token_to_id(b->tok, "<|endoftext|>");
  for (guint i = 0; i < n; i++) {
    ps_manifest_row *r = g_ptr_array_index(b->rows, i);
    int s = split_index(r->split);
    if (s < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: row %u has unknown split '%s'", manifest, i + 1, r->split);
      return FALSE;
    }
    g_autofree char *ip = g_build_filename(b->dir, r->image, NULL);
    g_autofree char *mp = g_build_filename(b->dir, r->mask, NULL);
    int w = 0, h = 0, mw = 0, mh = 0;
    b->rgb[i] = ps_png_read(ip, 3, &w, &h, error);
    b->mask[i] = b->rgb[i] ? ps_png_read(mp, 1, &mw, &mh, error) : NULL;
    if (!b->mask[i]) return FALSE;
    if (i == 0) b->size = w;
    if (w != b->size || h != b->size || mw != w || mh != h) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                  "%s: %s is %dx%d and its mask %dx%d; every tile must be %dx%d", manifest, r->image, w,
                  h, mw, mh, b->size, b->size);
      return FALSE;
    }
    if (!tokenize_row(b, i, b->caption, error)) return FALSE;
    int64_t idx = i;
    g_array_append_val(b->splits[s], idx);
  }
  b->opened = TRUE;
  return TRUE;
}

/* The tokenizer in use (after open), for stages that decode text. */
ps_bpe *ps_bench_tokenizer(void *self) { return ((bench *)self)->tok; }

static int64_t bench_size(void *self, const char *split) {
  bench *b = self;
  int s = split_index(split);
  if (!b->opened) return 0;
  return s < 0 ? 0 : (int64_t)b->splits[s]->len;
}

static const ps_ports *bench_batch(void *self, const char *split, const int64_t *indices, size_t n,
                                   ps_rng *rng, GError **error) {
  bench *b = self;
  if (!bench_open(b, error)) return NULL;
  int s = split_index(split);
  const int64_t S = b->size, T = b->max_len, B = (int64_t)n;
  const int64_t is[4] = {B, 3, S, S}, ms[4] = {B, 1, S, S}, ts[2] = {B, T}, bs[1] = {B};
  if (s < 0 || !ps_tensor_ensure(&b->image, PS_DTYPE_F32, 4, is, error) || !ps_tensor_ensure(&b->maskf, PS_DTYPE_F32, 4, ms, error) ||
      !ps_tensor_ensure(&b->ids, PS_DTYPE_I32, 2, ts, error) || !ps_tensor_ensure(&b->labels, PS_DTYPE_I32, 2, ts, error) ||
      !ps_tensor_ensure(&b->seg, PS_DTYPE_I32, 1, bs, error) || !ps_tensor_ensure(&b->lens, PS_DTYPE_I32, 1, bs, error))
    return NULL;
  for (int64_t k = 0; k < B; k++) {
    if (indices[k] < 0 || indices[k] >= (int64_t)b->splits[s]->len) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "index %" G_GINT64_FORMAT " outside split %s", indices[k], split);
      return NULL;
    }
    int64_t row = g_array_index(b->splits[s], int64_t, indices[k]);
    const uint8_t *rgb = b->rgb[row], *m = b->mask[row];
    float *img = ps_f32(b->image) + k * 3 * S * S, *msk = ps_f32(b->maskf) + k * S * S;
    for (int64_t p = 0; p < S * S; p++) {
      for (int c = 0; c < 3; c++) img[c * S * S + p] = rgb[3 * p + c] * (1.0f / 255.0f);
      msk[p] = m[p] > 127 ? 1.0f : 0.0f;
    }
    const example *e = &b->ex[row];
    memcpy((int32_t *)b->ids->data + k * T, e->ids, sizeof(int32_t) * (size_t)T);
    memcpy((int32_t *)b->labels->data + k * T, e->labels, sizeof(int32_t) * (size_t)T);
    ((int32_t *)b->seg->data)[k] = e->seg;
    ((int32_t *)b->lens->data)[k] = e->len;
  }
  ps_tensor *t[] = {b->image, b->maskf, b->ids, b->labels, b->seg, b->lens};
  for (int i = 0; i < 6; i++) b->fields[i].tensor = t[i];
  return &b->batch;
}

const ps_dataset_iface ps_bench_dataset = {
    .struct_size = sizeof(ps_dataset_iface), .size = bench_size, .batch = bench_batch, .open = bench_open};

/* For evaluation and inference: the row behind an index of a split. */
const ps_manifest_row *ps_bench_row(void *self, const char *split, int64_t index) {
  bench *b = self;
  int s = split_index(split);
  if (!b->opened || s < 0 || index < 0 || index >= (int64_t)b->splits[s]->len) return NULL;
  return g_ptr_array_index(b->rows, g_array_index(b->splits[s], int64_t, index));
}
