/* bpe_internal.h — the tokenizer's data structures, shared by the loader,
 * the encoder, the decoder and the trainer (not part of the public API). */
#pragma once

#include "bpe.h"

#include <glib.h>
#include <stdint.h>

/* The Qwen2 split regex, as tokenizer.json spells it (after JSON unescaping). */
#define PS_BPE_QWEN2_REGEX                                                                      \
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|" \
  "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

/* ---------------------------------------------------------------------- */
/* Byte-level mapping (GPT-2 bytes_to_unicode). */

/* byte -> code point of its printable stand-in ('Ġ' for ' '). Filled by
 * ps_bpe_bytes_init(); read-only afterwards. */
extern gunichar ps_bpe_byte_to_cp[256];
/* The 256 bytes in the order GPT-2 lists them (printable ranges first):
 * the trainer gives byte ps_bpe_byte_order[i] the id i. */
extern guint8 ps_bpe_byte_order[256];
/* Fills the two tables once (thread-safe). */
void ps_bpe_bytes_init(void);
/* code point -> byte, or -1 when the code point is not a stand-in. */
int ps_bpe_cp_to_byte(gunichar cp);

/* ---------------------------------------------------------------------- */
/* Pre-tokenizer: the Qwen2 regex as a scanner. */

typedef struct ps_bpe_span {
  uint32_t start, len; /* bytes */
} ps_bpe_span;

/* Reusable buffers for one encode call (or one training pass). */
typedef struct ps_bpe_scratch {
  gunichar *cp;   /* (n_chars,) code points */
  guint8 *cls;    /* (n_chars,) character classes */
  uint32_t *off;  /* (n_chars + 1,) byte offsets */
  size_t cap_chars;
  ps_bpe_span *spans;
  size_t n_spans, cap_spans;
  /* BPE work area */
  struct ps_bpe_sym *syms;
  size_t cap_syms;
  struct ps_bpe_heap_item *heap;
  size_t cap_heap;
  gboolean use_cache; /* the holder has the tokenizer's cache lock */
} ps_bpe_scratch;

void ps_bpe_scratch_clear(ps_bpe_scratch *s);
/* Splits valid UTF-8 `text` into the regex's pieces (s->spans, offsets
 * relative to text). */
void ps_bpe_split(ps_bpe_scratch *s, const char *text, size_t len);

/* ---------------------------------------------------------------------- */
/* The tokenizer. */

typedef struct ps_bpe_added {
  char *content;
  size_t len;
  int32_t id;
  gboolean special;
  gboolean normalized; /* matched after normalisation (TRUE) or on the raw text */
} ps_bpe_added;

/* One slot of the merge table, keyed by the pair of ids. */
typedef struct ps_bpe_merge_slot {
  uint64_t key;   /* (left << 32) | right, UINT64_MAX = empty */
  uint32_t rank;
  int32_t new_id;
} ps_bpe_merge_slot;

/* The word cache: piece bytes -> ids, open addressing, cleared when full.
 * `lock` also guards the tokenizer's shared scratch (see ps_bpe_encode). */
typedef struct ps_bpe_cache {
  GMutex lock;
  struct ps_bpe_cache_slot *slots;
  size_t mask, used;
  GByteArray *keys;  /* concatenated piece bytes */
  GArray *ids;       /* concatenated ids (int32_t) */
} ps_bpe_cache;

struct ps_bpe {
  /* id -> token string (vocabulary spelling or added content); NULL = hole */
  char **id_token;
  /* id -> decoded bytes: [bytes_off[id], bytes_off[id] + bytes_len[id]) of bytes */
  uint32_t *bytes_off, *bytes_len;
  GByteArray *bytes;
  int32_t n_ids;          /* largest id + 1 */
  int32_t cap_ids;
  GStringChunk *strings;  /* owns the token strings */
  GHashTable *vocab;      /* model vocab: string -> GINT_TO_POINTER(id + 1) */
  size_t model_vocab_size;

  int32_t byte_id[256];   /* id of each byte's stand-in token, -1 when absent */
  /* byte_fallback: tokenizers falls back on the UTF-8 bytes of the byte's
   * stand-in character (1 or 2 bytes), each as "<0xNN>"; n = 0 when one of
   * them is not in the vocab. */
  int32_t byte_fallback_ids[256][2];
  guint8 byte_fallback_n[256];
  gboolean byte_fallback;
  gboolean decoder_byte_fallback; /* decoder turns <0xNN> back into bytes */
  gboolean ignore_merges;
  int32_t unk_id;         /* -1: none */
  gboolean fuse_unk;

  ps_bpe_merge_slot *merges;
  size_t merge_mask;
  int32_t *merge_pairs;   /* (n_merges, 2) left, right ids in rank order, for saving */
  size_t n_merges;

  GPtrArray *added;       /* ps_bpe_added*, in file order */
  GHashTable *added_by_content; /* content -> ps_bpe_added* */
  guint8 *is_added;       /* (cap_ids,) 0 none, 1 added, 2 added and special */
  gboolean added_first_byte[2][256]; /* [normalized][first byte] may start a token */
  gboolean any_added[2];

  gboolean nfc;           /* normalizer NFC (else none) */
  gboolean split_qwen2;   /* pre-tokenizer splits with the Qwen2 regex */

  ps_bpe_cache cache;
  ps_bpe_scratch scratch; /* used by the encode call that holds cache.lock */
};

/* Allocation helpers used by the loader and the trainer. */
ps_bpe *ps_bpe_new_empty(void);
/* Registers `token` (vocabulary spelling) under `id` in the model vocab. */
gboolean ps_bpe_set_vocab(ps_bpe *tok, const char *token, int32_t id, const char *where,
                          GError **error);
/* Adds merge number `rank` of ids (left, right); the merged token must be in
 * the vocab. */
gboolean ps_bpe_add_merge(ps_bpe *tok, int32_t left, int32_t right, const char *where,
                          GError **error);
/* Registers an added token with a fixed id. */
gboolean ps_bpe_set_added(ps_bpe *tok, const char *content, int32_t id, gboolean special,
                          gboolean normalized, const char *where, GError **error);
/* After the vocab and merges are in: byte tables, decode bytes. */
gboolean ps_bpe_finish(ps_bpe *tok, const char *where, GError **error);

/* Merge lookup: rank and new id of the pair, FALSE when it does not merge. */
static inline gboolean ps_bpe_merge_find(const ps_bpe *tok, int32_t left, int32_t right,
                                         uint32_t *rank, int32_t *new_id) {
  if (tok->merges == NULL) return FALSE;
  uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  uint64_t h = key * 0x9E3779B97F4A7C15ull;
  size_t i = (size_t)(h >> 32) & tok->merge_mask;
  for (;;) {
    const ps_bpe_merge_slot *s = &tok->merges[i];
    if (s->key == key) {
      *rank = s->rank;
      *new_id = s->new_id;
      return TRUE;
    }
    if (s->key == UINT64_MAX) return FALSE;
    i = (i + 1) & tok->merge_mask;
  }
}

/* The pre-tokenization of valid UTF-8 text: added tokens first (raw, then
 * after NFC), NFC, the Qwen2 split. Calls `piece` for every piece (raw bytes
 * of the normalised text) and `added` (may be NULL) for every added token,
 * in text order. */
typedef void (*ps_bpe_piece_fn)(void *user, const guint8 *bytes, size_t len);
typedef void (*ps_bpe_added_fn)(void *user, int32_t id);
void ps_bpe_pretokenize(ps_bpe *tok, ps_bpe_scratch *s, const char *text, size_t len,
                        ps_bpe_piece_fn piece, ps_bpe_added_fn added, void *user);

/* BPE of one piece of raw bytes; appends ids to `out`. */
void ps_bpe_word(ps_bpe *tok, ps_bpe_scratch *s, const guint8 *bytes, size_t len, GArray *out);

void ps_bpe_cache_init(ps_bpe_cache *c);
void ps_bpe_cache_clear(ps_bpe_cache *c);
/* Drops every entry (takes the lock). */
void ps_bpe_cache_reset(ps_bpe_cache *c);
