/* bpe_encode.c — text -> ids: added-token matching, NFC, the split, and BPE
 * by merge rank (a replica of tokenizers' Word::merge_all), with a cache of
 * the ids of recently seen pieces. */
#include "bpe_internal.h"

#include <pathseg/error.h>
#include <string.h>

/* ---------------------------------------------------------------------- */
/* BPE of one piece. */

typedef struct ps_bpe_sym {
  int32_t id;
  int32_t prev, next; /* -1: none */
  uint32_t len;       /* bytes covered; 0 = merged into its left neighbour */
} ps_bpe_sym;

typedef struct ps_bpe_heap_item {
  uint32_t rank;
  uint32_t pos;
  int32_t new_id;
} ps_bpe_heap_item;

/* tokenizers orders its queue by rank, then position: a min-heap on both. */
static inline gboolean heap_less(const ps_bpe_heap_item *a, const ps_bpe_heap_item *b) {
  return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(ps_bpe_scratch *s, size_t *n, ps_bpe_heap_item it) {
  if (*n == s->cap_heap) {
    s->cap_heap = MAX(64, s->cap_heap * 2);
    s->heap = g_renew(ps_bpe_heap_item, s->heap, s->cap_heap);
  }
  ps_bpe_heap_item *h = s->heap;
  size_t i = (*n)++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!heap_less(&it, &h[parent])) break;
    h[i] = h[parent];
    i = parent;
  }
  h[i] = it;
}

static ps_bpe_heap_item heap_pop(ps_bpe_scratch *s, size_t *n) {
  ps_bpe_heap_item *h = s->heap;
  ps_bpe_heap_item top = h[0];
  ps_bpe_heap_item last = h[--(*n)];
  size_t i = 0, m = *n;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= m) break;
    size_t c = (l + 1 < m && heap_less(&h[l + 1], &h[l])) ? l + 1 : l;
    if (!heap_less(&h[c], &last)) break;
    h[i] = h[c];
    i = c;
  }
  if (m > 0) h[i] = last;
  return top;
}

static void push_pair(const ps_bpe *tok, ps_bpe_scratch *s, size_t *nh, int32_t pos) {
  const ps_bpe_sym *sy = s->syms;
  int32_t next = sy[pos].next;
  if (next < 0) return;
  uint32_t rank;
  int32_t new_id;
  if (ps_bpe_merge_find(tok, sy[pos].id, sy[next].id, &rank, &new_id))
    heap_push(s, nh, (ps_bpe_heap_item){rank, (uint32_t)pos, new_id});
}

/* Merges the symbols of s->syms[0..n) in place (tokenizers' merge_all
 * without dropout, including its check for expired queue entries). */
static void merge_all(const ps_bpe *tok, ps_bpe_scratch *s, size_t n) {
  size_t nh = 0;
  for (size_t i = 0; i + 1 < n; i++) push_pair(tok, s, &nh, (int32_t)i);
  ps_bpe_sym *sy = s->syms;
  while (nh > 0) {
    ps_bpe_heap_item top = heap_pop(s, &nh);
    ps_bpe_sym *cur = &sy[top.pos];
    if (cur->len == 0 || cur->next < 0) continue;
    int32_t next = cur->next;
    uint32_t rank;
    int32_t new_id;
    if (!ps_bpe_merge_find(tok, cur->id, sy[next].id, &rank, &new_id) || new_id != top.new_id)
      continue; /* expired entry */
    cur->id = top.new_id;
    cur->len += sy[next].len;
    cur->next = sy[next].next;
    sy[next].len = 0;
    if (cur->next >= 0) sy[cur->next].prev = (int32_t)top.pos;
    if (cur->prev >= 0) push_pair(tok, s, &nh, cur->prev);
    push_pair(tok, s, &nh, (int32_t)top.pos);
  }
}

/* ---------------------------------------------------------------------- */
/* The word cache. */

typedef struct ps_bpe_cache_slot {
  uint64_t hash; /* 0 = empty */
  uint32_t key_off, key_len, ids_off, ids_len;
} ps_bpe_cache_slot;

#define CACHE_SLOTS (1u << 16)
#define CACHE_MAX_USED (CACHE_SLOTS / 2)
#define CACHE_MAX_KEY 128     /* longer pieces are not cached */
#define CACHE_MAX_BYTES (8u << 20)

static uint64_t hash_bytes(const guint8 *p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (n * 0xC2B2AE3D27D4EB4Full);
  while (n >= 8) {
    uint64_t v;
    memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  memcpy(&v, p, n);
  h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  return h | 1; /* never 0, which marks an empty slot */
}

void ps_bpe_cache_init(ps_bpe_cache *c) {
  g_mutex_init(&c->lock);
  c->slots = g_new0(ps_bpe_cache_slot, CACHE_SLOTS);
  c->mask = CACHE_SLOTS - 1;
  c->used = 0;
  c->keys = g_byte_array_new();
  c->ids = g_array_new(FALSE, FALSE, sizeof(int32_t));
}

void ps_bpe_cache_clear(ps_bpe_cache *c) {
  g_mutex_clear(&c->lock);
  g_clear_pointer(&c->slots, g_free);
  g_clear_pointer(&c->keys, g_byte_array_unref);
  g_clear_pointer(&c->ids, g_array_unref);
}

/* Drops every entry (called with the lock held, e.g. after add_token). */
static void cache_reset_locked(ps_bpe_cache *c) {
  memset(c->slots, 0, sizeof(ps_bpe_cache_slot) * (c->mask + 1));
  c->used = 0;
  g_byte_array_set_size(c->keys, 0);
  g_array_set_size(c->ids, 0);
}

void ps_bpe_cache_reset(ps_bpe_cache *c) {
  g_mutex_lock(&c->lock);
  cache_reset_locked(c);
  g_mutex_unlock(&c->lock);
}

/* cache_get and cache_put run with c->lock held by the encode call. */
static gboolean cache_get(ps_bpe_cache *c, uint64_t h, const guint8 *key, size_t len,
                          GArray *out) {
  gboolean found = FALSE;
  for (size_t i = (size_t)(h >> 32) & c->mask;; i = (i + 1) & c->mask) {
    const ps_bpe_cache_slot *s = &c->slots[i];
    if (s->hash == 0) break;
    if (s->hash == h && s->key_len == len && memcmp(c->keys->data + s->key_off, key, len) == 0) {
      g_array_append_vals(out, &g_array_index(c->ids, int32_t, s->ids_off), s->ids_len);
      found = TRUE;
      break;
    }
  }
  return found;
}

static void cache_put(ps_bpe_cache *c, uint64_t h, const guint8 *key, size_t len,
                      const int32_t *ids, size_t n_ids) {
  if (c->used >= CACHE_MAX_USED || c->keys->len + len > CACHE_MAX_BYTES) cache_reset_locked(c);
  size_t i = (size_t)(h >> 32) & c->mask;
  for (;; i = (i + 1) & c->mask) {
    const ps_bpe_cache_slot *s = &c->slots[i];
    if (s->hash == 0) break;
    if (s->hash == h && s->key_len == len && memcmp(c->keys->data + s->key_off, key, len) == 0)
      return; /* already there */
  }
  c->slots[i] = (ps_bpe_cache_slot){h, c->keys->len, (uint32_t)len, c->ids->len, (uint32_t)n_ids};
  g_byte_array_append(c->keys, key, (guint)len);
  g_array_append_vals(c->ids, ids, (guint)n_ids);
  c->used++;
}

/* ---------------------------------------------------------------------- */

static void reserve_syms(ps_bpe_scratch *s, size_t n) {
  if (n <= s->cap_syms) return;
  s->cap_syms = MAX(n, s->cap_syms * 2);
  s->syms = g_renew(ps_bpe_sym, s->syms, s->cap_syms);
}

void ps_bpe_word(ps_bpe *tok, ps_bpe_scratch *s, const guint8 *bytes, size_t len, GArray *out) {
  if (len == 0) return;
  if (tok->ignore_merges) {
    /* The whole piece as one token when the vocab has it. */
    GString *spelled = g_string_sized_new(len * 2);
    for (size_t i = 0; i < len; i++) g_string_append_unichar(spelled, ps_bpe_byte_to_cp[bytes[i]]);
    gpointer v = g_hash_table_lookup(tok->vocab, spelled->str);
    g_string_free(spelled, TRUE);
    if (v) {
      int32_t id = GPOINTER_TO_INT(v) - 1;
      g_array_append_val(out, id);
      return;
    }
  }
  uint64_t h = 0;
  const gboolean cached = s->use_cache && len <= CACHE_MAX_KEY;
  if (cached) {
    h = hash_bytes(bytes, len);
    if (cache_get(&tok->cache, h, bytes, len, out)) return;
  }
  /* One symbol per byte (a byte-level vocab has all 256). A byte without a
   * token becomes the <0xNN> tokens of its stand-in character's UTF-8
   * (byte_fallback), else the unk token (fused with a preceding unk when
   * fuse_unk), else nothing — as tokenizers' BPE::merge_word does. */
  reserve_syms(s, len);
  ps_bpe_sym *sy = s->syms;
  size_t n = 0;
  for (size_t i = 0; i < len; i++) {
    int32_t id = tok->byte_id[bytes[i]];
    if (id < 0 && tok->byte_fallback && tok->byte_fallback_n[bytes[i]]) {
      reserve_syms(s, n + 2 + (len - i));
      sy = s->syms;
      for (int k = 0; k < tok->byte_fallback_n[bytes[i]]; k++) {
        sy[n] = (ps_bpe_sym){tok->byte_fallback_ids[bytes[i]][k], (int32_t)n - 1, (int32_t)n + 1, 1};
        n++;
      }
      continue;
    }
    if (id < 0 && tok->unk_id >= 0) {
      if (tok->fuse_unk && n > 0 && sy[n - 1].id == tok->unk_id) {
        sy[n - 1].len++;
        continue;
      }
      id = tok->unk_id;
    }
    if (id < 0) continue;
    sy[n] = (ps_bpe_sym){id, (int32_t)n - 1, (int32_t)n + 1, 1};
    n++;
  }
  if (n == 0) return;
  sy[n - 1].next = -1;
  merge_all(tok, s, n);
  guint start = out->len;
  for (int32_t i = 0; i >= 0; i = sy[i].next) g_array_append_val(out, sy[i].id);
  if (cached)
    cache_put(&tok->cache, h, bytes, len, &g_array_index(out, int32_t, start), out->len - start);
}

/* ---------------------------------------------------------------------- */
/* NFC */

/* Code points below U+0300 are NFC-stable and compose with nothing that
 * precedes them, so text whose bytes are all < 0xCC is already NFC. */
static gboolean surely_nfc(const char *text, size_t len) {
  const guint8 *p = (const guint8 *)text;
  for (size_t i = 0; i < len; i++)
    if (p[i] >= 0xCC) return FALSE;
  return TRUE;
}

char *ps_bpe_nfc(const char *text, gssize len) {
  size_t n = len < 0 ? strlen(text) : (size_t)len;
  if (surely_nfc(text, n)) return g_strndup(text, n);
  char *r = g_utf8_normalize(text, (gssize)n, G_NORMALIZE_NFC);
  return r ? r : g_strndup(text, n);
}

/* ---------------------------------------------------------------------- */
/* Encoding. */

/* The longest added token of kind `normalized` that starts at text[i], or
 * NULL. Linear in the number of added tokens sharing the first byte, which
 * is small (tens) for the tokenizers we load. */
static const ps_bpe_added *added_at(const ps_bpe *tok, gboolean normalized, const char *text,
                                    size_t i, size_t len) {
  const ps_bpe_added *best = NULL;
  for (guint k = 0; k < tok->added->len; k++) {
    const ps_bpe_added *a = g_ptr_array_index(tok->added, k);
    if (a->normalized != normalized || a->len > len - i || (best && a->len <= best->len)) continue;
    if (memcmp(text + i, a->content, a->len) == 0) best = a;
  }
  return best;
}

/* Where the pieces and added tokens go: BPE into ids (encode), or counted
 * (training). */
typedef struct walk {
  ps_bpe *tok;
  ps_bpe_scratch *s;
  ps_bpe_piece_fn piece;
  ps_bpe_added_fn added;
  void *user;
} walk;

/* Normalised text: split it and hand over every piece. */
static void walk_plain(walk *w, const char *text, size_t len) {
  ps_bpe_split(w->s, text, len);
  /* The callback may reuse the scratch (BPE does), so copy the span out first. */
  for (size_t k = 0; k < w->s->n_spans; k++) {
    ps_bpe_span sp = w->s->spans[k];
    w->piece(w->user, (const guint8 *)text + sp.start, sp.len);
  }
}

static void walk_level(walk *w, gboolean normalized, const char *text, size_t len);

/* Text between added tokens: a raw segment is normalised (NFC) and then
 * searched for the added tokens that match normalised text. */
static void walk_between(walk *w, gboolean normalized, const char *text, size_t len) {
  if (len == 0) return;
  if (normalized) {
    walk_plain(w, text, len);
  } else if (!w->tok->nfc || surely_nfc(text, len)) {
    walk_level(w, TRUE, text, len);
  } else {
    g_autofree char *norm = g_utf8_normalize(text, (gssize)len, G_NORMALIZE_NFC);
    if (norm)
      walk_level(w, TRUE, norm, strlen(norm));
    else
      walk_level(w, TRUE, text, len);
  }
}

/* Splits `text` on the added tokens of kind `normalized` (leftmost, then
 * longest, as tokenizers' Aho-Corasick LeftmostLongest does). */
static void walk_level(walk *w, gboolean normalized, const char *text, size_t len) {
  const ps_bpe *tok = w->tok;
  if (!tok->any_added[normalized]) {
    walk_between(w, normalized, text, len);
    return;
  }
  const gboolean *first = tok->added_first_byte[normalized];
  size_t seg = 0;
  for (size_t i = 0; i < len;) {
    const ps_bpe_added *a = first[(guint8)text[i]] ? added_at(tok, normalized, text, i, len) : NULL;
    if (!a) {
      i++;
      continue;
    }
    walk_between(w, normalized, text + seg, i - seg);
    if (w->added) w->added(w->user, a->id);
    i += a->len;
    seg = i;
  }
  walk_between(w, normalized, text + seg, len - seg);
}

void ps_bpe_pretokenize(ps_bpe *tok, ps_bpe_scratch *s, const char *text, size_t len,
                        ps_bpe_piece_fn piece, ps_bpe_added_fn added, void *user) {
  walk w = {tok, s, piece, added, user};
  walk_level(&w, FALSE, text, len);
}

typedef struct encode_ctx {
  ps_bpe *tok;
  ps_bpe_scratch *s;
  GArray *ids;
} encode_ctx;

static void encode_piece(void *user, const guint8 *p, size_t n) {
  encode_ctx *e = user;
  ps_bpe_word(e->tok, e->s, p, n, e->ids);
}

static void encode_added(void *user, int32_t id) {
  encode_ctx *e = user;
  g_array_append_val(e->ids, id);
}

gboolean ps_bpe_encode(ps_bpe *tok, const char *text, gssize len, GArray *ids, GError **error) {
  g_return_val_if_fail(tok && ids && g_array_get_element_size(ids) == sizeof(int32_t), FALSE);
  size_t n = len < 0 ? strlen(text) : (size_t)len;
  const char *bad = NULL;
  if (!g_utf8_validate_len(text, n, &bad)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "tokenizer: input is not valid UTF-8 (byte %zu of %zu)",
                (size_t)(bad - text), n);
    return FALSE;
  }
  /* The first caller takes the tokenizer's scratch and word cache for the
   * whole call (one lock, not one per piece); a concurrent caller works
   * with its own scratch and without the cache: same ids, just slower. */
  if (g_mutex_trylock(&tok->cache.lock)) {
    tok->scratch.use_cache = TRUE;
    encode_ctx e = {tok, &tok->scratch, ids};
    ps_bpe_pretokenize(tok, &tok->scratch, text, n, encode_piece, encode_added, &e);
    g_mutex_unlock(&tok->cache.lock);
  } else {
    ps_bpe_scratch s = {0};
    encode_ctx e = {tok, &s, ids};
    ps_bpe_pretokenize(tok, &s, text, n, encode_piece, encode_added, &e);
    ps_bpe_scratch_clear(&s);
  }
  return TRUE;
}
