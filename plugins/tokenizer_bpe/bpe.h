/* bpe.h — byte-level BPE tokenizer (Hugging Face `tokenizers` semantics for
 * the Qwen2 tokenizer.json), its trainer, and the "tokenizer" capability
 * through which other plugins use it.
 *
 * Two audiences:
 *   - code linked with the tokenizer (this plugin, its tests, the benchmark)
 *     calls the ps_bpe_* functions directly;
 *   - other plugins (LLM, stages) cannot see those symbols (plugins are
 *     loaded RTLD_LOCAL with hidden visibility). They ask the component
 *     "tokenizer.bpe" for the capability PS_TOKENIZER_CAPABILITY and call
 *     the function pointers of ps_tokenizer_iface with the component
 *     instance as `self`. Include this header for the struct only.
 *
 * Encoding, exactly as tokenizers 0.23 runs the Qwen2 file: added tokens
 * (special or not) are matched first as whole strings (leftmost, longest);
 * the text between them is NFC-normalised, split by the Qwen2 regex
 * (implemented as a hand-written scanner), mapped to bytes and merged by
 * merge rank. No BOS/EOS is added. Decoding maps ids back to bytes and
 * returns valid UTF-8 (invalid sequences become U+FFFD, as Rust's
 * from_utf8_lossy does); it does not normalise — ids that came from
 * encode() already stand for the NFC text. */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ---------------------------------------------------------------------- */
/* The capability other plugins use. */

#define PS_TOKENIZER_CAPABILITY "tokenizer"

typedef struct ps_tokenizer_iface {
  uint32_t struct_size; /* sizeof(ps_tokenizer_iface) the plugin was built with */
  /* Appends the ids (int32_t) of UTF-8 `text` (`len` bytes, or -1 for
   * NUL-terminated) to `ids`, a GArray of int32_t. */
  gboolean (*encode)(void *self, const char *text, gssize len, GArray *ids, GError **error);
  /* ids: (n,) int32. Valid UTF-8, g_free it. skip_special drops added
   * tokens marked special. */
  char *(*decode)(void *self, const int32_t *ids, size_t n, gboolean skip_special,
                  GError **error);
  /* Id of a token (an added token's content, or a vocabulary string in its
   * byte-level spelling, e.g. "Ġthe"); -1 when absent. */
  int32_t (*token_to_id)(void *self, const char *token);
  /* Largest id + 1, added tokens included. */
  size_t (*vocab_size)(void *self);
  /* Adds a whole-string token at runtime (e.g. "<SEG>"); returns its id:
   * the existing id when the content is already a token, otherwise the
   * largest id + 1. -1 with an error on bad input. */
  int32_t (*add_token)(void *self, const char *content, gboolean special, GError **error);
  /* The token's string (vocabulary spelling or added content), or NULL.
   * Valid until the tokenizer is destroyed. */
  const char *(*id_to_token)(void *self, int32_t id);
  /* As decode, but the raw bytes (possibly a partial UTF-8 sequence at the
   * end, for streaming generation); *n_bytes gets the length. g_free it. */
  guint8 *(*decode_bytes)(void *self, const int32_t *ids, size_t n, gboolean skip_special,
                          size_t *n_bytes, GError **error);
  /* TRUE when `id` is an added token marked special. */
  gboolean (*is_special)(void *self, int32_t id);
} ps_tokenizer_iface;

/* ---------------------------------------------------------------------- */
/* Direct API (inside this plugin, its tests and benchmarks). */

typedef struct ps_bpe ps_bpe;

/* Loads a Hugging Face tokenizer.json (model BPE; normalizer NFC or none;
 * pre_tokenizer Sequence[Split(Qwen2 regex, Isolated), ByteLevel(no prefix
 * space, use_regex false)] or that ByteLevel alone with the same split done
 * by the Split). Errors name the file and the key. */
ps_bpe *ps_bpe_load(const char *path, GError **error);
/* The same from memory; `label` names the buffer in errors. */
ps_bpe *ps_bpe_load_data(const char *json, gssize len, const char *label, GError **error);
void ps_bpe_free(ps_bpe *tok);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_bpe, ps_bpe_free)

/* Appends the ids of `text` (UTF-8; len -1 = NUL-terminated) to `ids`
 * (GArray of int32_t). Fails on invalid UTF-8 (including NUL bytes within
 * `len`). Thread-safe with other encode/decode calls: the call that gets the
 * tokenizer's lock uses its shared scratch and word cache, concurrent calls
 * work without them (same ids, slower). Not thread-safe with
 * ps_bpe_add_token. */
gboolean ps_bpe_encode(ps_bpe *tok, const char *text, gssize len, GArray *ids, GError **error);
/* ids: (n,) int32 -> valid UTF-8 (NUL-terminated), g_free it. */
char *ps_bpe_decode(const ps_bpe *tok, const int32_t *ids, size_t n, gboolean skip_special,
                    GError **error);
/* ids: (n,) int32 -> raw bytes (not NUL-terminated), g_free it. */
guint8 *ps_bpe_decode_bytes(const ps_bpe *tok, const int32_t *ids, size_t n,
                            gboolean skip_special, size_t *n_bytes, GError **error);

int32_t ps_bpe_token_to_id(const ps_bpe *tok, const char *token);
const char *ps_bpe_id_to_token(const ps_bpe *tok, int32_t id);
/* Largest id + 1 (added tokens included). */
size_t ps_bpe_vocab_size(const ps_bpe *tok);
/* Number of entries in model.vocab (151643 for Qwen2). */
size_t ps_bpe_model_vocab_size(const ps_bpe *tok);
size_t ps_bpe_n_merges(const ps_bpe *tok);
gboolean ps_bpe_is_special(const ps_bpe *tok, int32_t id);
/* See ps_tokenizer_iface.add_token. Not thread-safe with encode. */
int32_t ps_bpe_add_token(ps_bpe *tok, const char *content, gboolean special, GError **error);

/* NFC of UTF-8 text as the tokenizer's normaliser computes it (g_free). */
char *ps_bpe_nfc(const char *text, gssize len);

/* ---------------------------------------------------------------------- */
/* Training and saving. */

typedef struct ps_bpe_train_options {
  size_t vocab_size;          /* total ids wanted: 256 bytes + merges + added tokens */
  uint64_t min_frequency;     /* a pair must occur at least this often (0 or 1: any) */
  const char *const *added_tokens; /* NULL-terminated contents (e.g. "<|endoftext|>"), or NULL */
  gboolean added_special;     /* mark the added tokens special */
} ps_bpe_train_options;

/* Trains a byte-level BPE on `lines` (n_lines UTF-8 strings) with the same
 * normaliser and pre-tokenizer as Qwen2: ids 0..255 are the 256 byte
 * symbols (in GPT-2 bytes_to_unicode order), then one id per merge, the
 * most frequent pair first (ties: the smaller left id, then the smaller
 * right id), then the added tokens. Stops early (fewer ids than asked) only
 * when no pair is left; check ps_bpe_vocab_size. */
ps_bpe *ps_bpe_train(const char *const *lines, size_t n_lines, const ps_bpe_train_options *opts,
                     GError **error);
/* Writes a tokenizer.json that this loader and Hugging Face tokenizers read
 * (temporary file, then rename). */
gboolean ps_bpe_save(const ps_bpe *tok, const char *path, GError **error);

G_END_DECLS
