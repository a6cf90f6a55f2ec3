/* bpe_train.c — trains a byte-level BPE vocabulary on a corpus.
 *
 * The corpus is pre-tokenized exactly as encoding does (added tokens cut
 * out, NFC, the Qwen2 split), distinct pieces are counted, and merges are
 * learned the way tokenizers' BpeTrainer does: a max-heap of pair counts
 * with lazy updates (a popped pair whose count has dropped is pushed back
 * with its current count), ties broken by the smaller (left, right) ids;
 * each merge is applied to every word that holds the pair, left to right.
 * Counts of pairs not involving the new symbol only ever decrease, which is
 * what makes the lazy heap exact. */
#include "bpe_internal.h"

#include <pathseg/error.h>
#include <string.h>

typedef struct word {
  uint32_t off, len; /* symbols[off .. off + len) */
  int64_t count;
} word;

typedef struct pair_entry {
  int32_t left, right;
  int64_t count;
  GArray *where; /* word indices (uint32_t) that held the pair at some point */
} pair_entry;

typedef struct heap_item {
  int64_t count;
  uint32_t pair; /* index into pairs */
} heap_item;

typedef struct trainer {
  GArray *words;   /* word */
  GArray *symbols; /* int32_t */
  GArray *pairs;   /* pair_entry */
  uint32_t *slots; /* open addressing: pair index + 1, 0 = empty */
  size_t mask;
  GArray *heap;    /* heap_item */
  GPtrArray *tokens; /* id -> GByteArray of raw bytes */
  GHashTable *token_ids; /* GBytes (raw) -> id + 1 */
} trainer;

/* ---------------------------------------------------------------------- */
/* Pair table. */

static uint64_t pair_key(int32_t a, int32_t b) { return ((uint64_t)(uint32_t)a << 32) | (uint32_t)b; }

static size_t pair_slot(const trainer *t, uint64_t key) {
  return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 32) & t->mask;
}

static void pairs_rehash(trainer *t) {
  size_t n = t->mask ? (t->mask + 1) * 2 : 1024;
  g_free(t->slots);
  t->slots = g_new0(uint32_t, n);
  t->mask = n - 1;
  for (guint i = 0; i < t->pairs->len; i++) {
    const pair_entry *p = &g_array_index(t->pairs, pair_entry, i);
    size_t s = pair_slot(t, pair_key(p->left, p->right));
    while (t->slots[s]) s = (s + 1) & t->mask;
    t->slots[s] = i + 1;
  }
}

/* Index of the pair, created with count 0 when new. */
static uint32_t pair_get(trainer *t, int32_t a, int32_t b) {
  uint64_t key = pair_key(a, b);
  size_t s = pair_slot(t, key);
  while (t->slots[s]) {
    const pair_entry *p = &g_array_index(t->pairs, pair_entry, t->slots[s] - 1);
    if (p->left == a && p->right == b) return t->slots[s] - 1;
    s = (s + 1) & t->mask;
  }
  pair_entry e = {a, b, 0, g_array_new(FALSE, FALSE, sizeof(uint32_t))};
  g_array_append_val(t->pairs, e);
  t->slots[s] = t->pairs->len;
  uint32_t idx = t->pairs->len - 1;
  if (2 * t->pairs->len > t->mask + 1) pairs_rehash(t);
  return idx;
}

/* ---------------------------------------------------------------------- */
/* Heap: largest count first, then the smallest (left, right). */

static gboolean item_before(const trainer *t, const heap_item *x, const heap_item *y) {
  if (x->count != y->count) return x->count > y->count;
  const pair_entry *a = &g_array_index(t->pairs, pair_entry, x->pair);
  const pair_entry *b = &g_array_index(t->pairs, pair_entry, y->pair);
  if (a->left != b->left) return a->left < b->left;
  return a->right < b->right;
}

static void heap_push(trainer *t, heap_item it) {
  g_array_append_val(t->heap, it);
  heap_item *h = (heap_item *)t->heap->data;
  size_t i = t->heap->len - 1;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!item_before(t, &it, &h[parent])) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = it;
}

static heap_item heap_pop(trainer *t) {
  heap_item *h = (heap_item *)t->heap->data;
  heap_item top = h[0], last = h[t->heap->len - 1];
  g_array_set_size(t->heap, t->heap->len - 1);
  size_t n = t->heap->len, i = 0;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= n) break;
    size_t c = (l + 1 < n && item_before(t, &h[l + 1], &h[l])) ? l + 1 : l;
    if (!item_before(t, &h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (n > 0) h[i] = last;
  return top;
}

/* ---------------------------------------------------------------------- */
/* Counting the corpus. */

typedef struct count_ctx {
  GHashTable *counts; /* GBytes -> count (gint64 in a pointer-sized box) */
} count_ctx;

static void count_piece(void *user, const guint8 *p, size_t n) {
  count_ctx *c = user;
  if (n == 0) return;
  GBytes *key = g_bytes_new(p, n);
  gint64 *v = g_hash_table_lookup(c->counts, key);
  if (v) {
    (*v)++;
    g_bytes_unref(key);
  } else {
    v = g_new(gint64, 1);
    *v = 1;
    g_hash_table_insert(c->counts, key, v);
  }
}

/* Sorts the distinct pieces so that training does not depend on hash order. */
static gint bytes_cmp(gconstpointer a, gconstpointer b) {
  return g_bytes_compare(*(GBytes *const *)a, *(GBytes *const *)b);
}

/* ---------------------------------------------------------------------- */

static void word_pairs(trainer *t, uint32_t w, int sign, int32_t only_with) {
  const word *wd = &g_array_index(t->words, word, w);
  const int32_t *sy = &g_array_index(t->symbols, int32_t, wd->off);
  for (uint32_t i = 0; i + 1 < wd->len; i++) {
    uint32_t pi = pair_get(t, sy[i], sy[i + 1]);
    pair_entry *p = &g_array_index(t->pairs, pair_entry, pi);
    p->count += sign * wd->count;
    if (sign > 0 && (only_with < 0 || sy[i] == only_with || sy[i + 1] == only_with))
      g_array_append_val(p->where, w);
  }
}

static void trainer_clear(trainer *t) {
  if (t->words) g_array_unref(t->words);
  if (t->symbols) g_array_unref(t->symbols);
  if (t->pairs) {
    for (guint i = 0; i < t->pairs->len; i++)
      g_array_unref(g_array_index(t->pairs, pair_entry, i).where);
    g_array_unref(t->pairs);
  }
  g_free(t->slots);
  if (t->heap) g_array_unref(t->heap);
  if (t->tokens) g_ptr_array_unref(t->tokens);
  if (t->token_ids) g_hash_table_unref(t->token_ids);
}

static int32_t add_symbol(trainer *t, const guint8 *bytes, size_t len) {
  GBytes *key = g_bytes_new(bytes, len);
  gpointer v = g_hash_table_lookup(t->token_ids, key);
  if (v) {
    g_bytes_unref(key);
    return GPOINTER_TO_INT(v) - 1;
  }
  int32_t id = (int32_t)t->tokens->len;
  GByteArray *b = g_byte_array_new();
  g_byte_array_append(b, bytes, (guint)len);
  g_ptr_array_add(t->tokens, b);
  g_hash_table_insert(t->token_ids, key, GINT_TO_POINTER(id + 1));
  return id;
}

static char *spelled(const GByteArray *raw) {
  GString *s = g_string_sized_new(raw->len * 2);
  for (guint i = 0; i < raw->len; i++) g_string_append_unichar(s, ps_bpe_byte_to_cp[raw->data[i]]);
  return g_string_free(s, FALSE);
}

ps_bpe *ps_bpe_train(const char *const *lines, size_t n_lines, const ps_bpe_train_options *opts,
                     GError **error) {
  ps_bpe_bytes_init();
  size_t n_added = 0;
  if (opts->added_tokens)
    while (opts->added_tokens[n_added]) n_added++;
  if (opts->vocab_size < 256 + n_added || opts->vocab_size > (1u << 30)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "tokenizer training: vocab_size %zu must be at least 256 + %zu added tokens",
                opts->vocab_size, n_added);
    return NULL;
  }
  size_t model_target = opts->vocab_size - n_added;

  /* A tokenizer with only the added tokens, to cut them out of the corpus
   * the way encoding will. */
  g_autoptr(ps_bpe) pre = ps_bpe_new_empty();
  pre->nfc = TRUE;
  pre->split_qwen2 = TRUE;
  for (size_t i = 0; i < n_added; i++)
    if (!ps_bpe_set_added(pre, opts->added_tokens[i], (int32_t)i, opts->added_special, FALSE,
                          "tokenizer training", error))
      return NULL;

  g_autoptr(GHashTable) counts =
      g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, g_free);
  count_ctx cc = {counts};
  ps_bpe_scratch s = {0};
  for (size_t i = 0; i < n_lines; i++) {
    size_t len = strlen(lines[i]);
    if (!g_utf8_validate_len(lines[i], len, NULL)) {
      ps_bpe_scratch_clear(&s);
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "tokenizer training: corpus line %zu is not valid UTF-8", i);
      return NULL;
    }
    ps_bpe_pretokenize(pre, &s, lines[i], len, count_piece, NULL, &cc);
  }
  ps_bpe_scratch_clear(&s);

  trainer t = {0};
  t.words = g_array_new(FALSE, FALSE, sizeof(word));
  t.symbols = g_array_new(FALSE, FALSE, sizeof(int32_t));
  t.pairs = g_array_new(FALSE, FALSE, sizeof(pair_entry));
  t.heap = g_array_new(FALSE, FALSE, sizeof(heap_item));
  t.tokens = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
  t.token_ids = g_hash_table_new_full(g_bytes_hash, g_bytes_equal, (GDestroyNotify)g_bytes_unref, NULL);
  pairs_rehash(&t);
  /* Ids 0..255: the bytes in GPT-2 order. */
  int32_t byte_sym[256];
  for (int i = 0; i < 256; i++) {
    guint8 b = ps_bpe_byte_order[i];
    byte_sym[b] = add_symbol(&t, &b, 1);
  }
  /* Words, in sorted order. */
  guint n_keys = 0;
  gpointer *key_list = g_hash_table_get_keys_as_array(counts, &n_keys);
  g_autoptr(GPtrArray) keys = g_ptr_array_new_full(n_keys, NULL);
  for (guint k = 0; k < n_keys; k++) g_ptr_array_add(keys, key_list[k]);
  g_free(key_list);
  g_ptr_array_sort(keys, bytes_cmp);
  for (guint k = 0; k < keys->len; k++) {
    GBytes *key = g_ptr_array_index(keys, k);
    gsize n;
    const guint8 *p = g_bytes_get_data(key, &n);
    word w = {t.symbols->len, (uint32_t)n, *(gint64 *)g_hash_table_lookup(counts, key)};
    for (gsize i = 0; i < n; i++) g_array_append_val(t.symbols, byte_sym[p[i]]);
    g_array_append_val(t.words, w);
    word_pairs(&t, t.words->len - 1, +1, -1);
  }
  for (guint i = 0; i < t.pairs->len; i++) {
    const pair_entry *p = &g_array_index(t.pairs, pair_entry, i);
    if (p->count > 0) heap_push(&t, (heap_item){p->count, i});
  }

  GArray *merges = g_array_new(FALSE, FALSE, sizeof(int32_t) * 2);
  uint64_t min_freq = MAX(opts->min_frequency, 1);
  g_autofree uint32_t *stamp = g_new0(uint32_t, MAX(t.words->len, 1));
  uint32_t round = 0;
  while (t.tokens->len < model_target && t.heap->len > 0) {
    heap_item top = heap_pop(&t);
    pair_entry *p = &g_array_index(t.pairs, pair_entry, top.pair);
    if (p->count != top.count) { /* stale: it only ever decreases */
      if (p->count > 0) heap_push(&t, (heap_item){p->count, top.pair});
      continue;
    }
    if ((uint64_t)top.count < min_freq) break;
    int32_t a = p->left, b = p->right;
    /* The merged token: its raw bytes are the concatenation. */
    GByteArray *ra = g_ptr_array_index(t.tokens, a), *rb = g_ptr_array_index(t.tokens, b);
    g_autoptr(GByteArray) joined = g_byte_array_sized_new(ra->len + rb->len);
    g_byte_array_append(joined, ra->data, ra->len);
    g_byte_array_append(joined, rb->data, rb->len);
    int32_t nid = add_symbol(&t, joined->data, joined->len);
    int32_t m[2] = {a, b};
    g_array_append_vals(merges, m, 1);
    /* Apply to every word that held the pair (each word once). */
    round++;
    g_autoptr(GArray) where = g_array_copy(p->where); /* pair_get may move p */
    g_autoptr(GArray) touched = g_array_new(FALSE, FALSE, sizeof(uint32_t));
    for (guint k = 0; k < where->len; k++) {
      uint32_t w = g_array_index(where, uint32_t, k);
      if (stamp[w] == round) continue;
      stamp[w] = round;
      word *wd = &g_array_index(t.words, word, w);
      int32_t *sy = &g_array_index(t.symbols, int32_t, wd->off);
      gboolean has = FALSE;
      for (uint32_t i = 0; i + 1 < wd->len && !has; i++) has = sy[i] == a && sy[i + 1] == b;
      if (!has) continue;
      word_pairs(&t, w, -1, -1);
      uint32_t o = 0;
      for (uint32_t i = 0; i < wd->len;) {
        if (i + 1 < wd->len && sy[i] == a && sy[i + 1] == b) {
          sy[o++] = nid;
          i += 2;
        } else {
          sy[o++] = sy[i++];
        }
      }
      wd->len = o;
      word_pairs(&t, w, +1, nid);
      g_array_append_val(touched, w);
    }
    /* Push the pairs that gained counts: those with the new symbol. */
    for (guint k = 0; k < touched->len; k++) {
      const word *wd = &g_array_index(t.words, word, g_array_index(touched, uint32_t, k));
      const int32_t *sy = &g_array_index(t.symbols, int32_t, wd->off);
      for (uint32_t i = 0; i + 1 < wd->len; i++) {
        if (sy[i] != nid && sy[i + 1] != nid) continue;
        uint32_t pi = pair_get(&t, sy[i], sy[i + 1]);
        const pair_entry *q = &g_array_index(t.pairs, pair_entry, pi);
        if (q->count > 0) heap_push(&t, (heap_item){q->count, pi});
      }
    }
  }

  /* Build the tokenizer: vocab, merges, added tokens after the vocab. */
  g_autoptr(ps_bpe) tok = ps_bpe_new_empty();
  tok->nfc = TRUE;
  tok->split_qwen2 = TRUE;
  gboolean ok = TRUE;
  for (guint id = 0; ok && id < t.tokens->len; id++) {
    g_autofree char *sp = spelled(g_ptr_array_index(t.tokens, id));
    ok = ps_bpe_set_vocab(tok, sp, (int32_t)id, "tokenizer training", error);
  }
  for (guint k = 0; ok && k < merges->len; k++) {
    const int32_t *m = &g_array_index(merges, int32_t, 2 * k);
    ok = ps_bpe_add_merge(tok, m[0], m[1], "tokenizer training", error);
  }
  for (size_t i = 0; ok && i < n_added; i++)
    ok = ps_bpe_set_added(tok, opts->added_tokens[i], (int32_t)(t.tokens->len + i),
                          opts->added_special, FALSE, "tokenizer training", error);
  ok = ok && ps_bpe_finish(tok, "tokenizer training", error);
  g_array_unref(merges);
  trainer_clear(&t);
  return ok ? g_steal_pointer(&tok) : NULL;
}
