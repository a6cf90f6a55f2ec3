/* bpe_vocab.c — the tokenizer object: vocabulary, merge table, added tokens
 * (including ps_bpe_add_token for "<SEG>"), lookups and decoding. */
#include "bpe_internal.h"

#include <pathseg/error.h>
#include <stdio.h>
#include <string.h>

static void free_added(gpointer p) {
  ps_bpe_added *a = p;
  g_free(a->content);
  g_free(a);
}

ps_bpe *ps_bpe_new_empty(void) {
  ps_bpe_bytes_init();
  ps_bpe *tok = g_new0(ps_bpe, 1);
  tok->strings = g_string_chunk_new(1 << 20);
  tok->vocab = g_hash_table_new(g_str_hash, g_str_equal);
  tok->bytes = g_byte_array_new();
  tok->added = g_ptr_array_new_with_free_func(free_added);
  tok->added_by_content = g_hash_table_new(g_str_hash, g_str_equal);
  tok->unk_id = -1;
  for (int b = 0; b < 256; b++) tok->byte_id[b] = -1;
  ps_bpe_cache_init(&tok->cache);
  return tok;
}

void ps_bpe_free(ps_bpe *tok) {
  if (!tok) return;
  g_free(tok->id_token);
  g_free(tok->bytes_off);
  g_free(tok->bytes_len);
  g_byte_array_unref(tok->bytes);
  g_string_chunk_free(tok->strings);
  g_hash_table_unref(tok->vocab);
  g_free(tok->merges);
  g_free(tok->merge_pairs);
  g_ptr_array_unref(tok->added);
  g_hash_table_unref(tok->added_by_content);
  g_free(tok->is_added);
  ps_bpe_cache_clear(&tok->cache);
  ps_bpe_scratch_clear(&tok->scratch);
  g_free(tok);
}

/* Makes room for ids up to `id` (holes stay NULL). */
static void reserve_id(ps_bpe *tok, int32_t id) {
  if (id < tok->cap_ids) return;
  int32_t cap = MAX(id + 1, tok->cap_ids * 2);
  cap = MAX(cap, 1024);
  tok->id_token = g_renew(char *, tok->id_token, cap);
  tok->bytes_off = g_renew(uint32_t, tok->bytes_off, cap);
  tok->bytes_len = g_renew(uint32_t, tok->bytes_len, cap);
  tok->is_added = g_renew(guint8, tok->is_added, cap);
  for (int32_t i = tok->cap_ids; i < cap; i++) {
    tok->id_token[i] = NULL;
    tok->bytes_off[i] = tok->bytes_len[i] = 0;
    tok->is_added[i] = 0;
  }
  tok->cap_ids = cap;
}

/* The bytes a token decodes to, as tokenizers' ByteLevel decoder computes
 * them: the stand-in mapping when every character is a stand-in, else the
 * token's own UTF-8. */
static void set_decoded_bytes(ps_bpe *tok, int32_t id, const char *s) {
  guint start = tok->bytes->len;
  gboolean all = TRUE;
  for (const char *p = s; *p; p = g_utf8_next_char(p)) {
    int b = ps_bpe_cp_to_byte(g_utf8_get_char(p));
    if (b < 0) {
      all = FALSE;
      break;
    }
    guint8 byte = (guint8)b;
    g_byte_array_append(tok->bytes, &byte, 1);
  }
  if (!all) {
    g_byte_array_set_size(tok->bytes, start);
    g_byte_array_append(tok->bytes, (const guint8 *)s, (guint)strlen(s));
  }
  tok->bytes_off[id] = start;
  tok->bytes_len[id] = tok->bytes->len - start;
}

gboolean ps_bpe_set_vocab(ps_bpe *tok, const char *token, int32_t id, const char *where,
                          GError **error) {
  if (id < 0 || id >= (1 << 30)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: model.vocab: token \"%s\" has id %d",
                where, token, id);
    return FALSE;
  }
  reserve_id(tok, id);
  if (tok->id_token[id]) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: model.vocab: id %d is used twice (\"%s\" and \"%s\")", where, id,
                tok->id_token[id], token);
    return FALSE;
  }
  char *s = g_string_chunk_insert(tok->strings, token);
  tok->id_token[id] = s;
  g_hash_table_insert(tok->vocab, s, GINT_TO_POINTER(id + 1));
  tok->n_ids = MAX(tok->n_ids, id + 1);
  tok->model_vocab_size++;
  return TRUE;
}

static void merges_insert(ps_bpe *tok, uint64_t key, uint32_t rank, int32_t new_id) {
  uint64_t h = key * 0x9E3779B97F4A7C15ull;
  size_t i = (size_t)(h >> 32) & tok->merge_mask;
  while (tok->merges[i].key != UINT64_MAX && tok->merges[i].key != key)
    i = (i + 1) & tok->merge_mask;
  if (tok->merges[i].key == key) return; /* a repeated merge keeps its first rank */
  tok->merges[i] = (ps_bpe_merge_slot){key, rank, new_id};
}

static void merges_grow(ps_bpe *tok) {
  size_t old_n = tok->merges ? tok->merge_mask + 1 : 0;
  ps_bpe_merge_slot *old = tok->merges;
  size_t n = MAX(1024, old_n * 2);
  tok->merges = g_new(ps_bpe_merge_slot, n);
  for (size_t i = 0; i < n; i++) tok->merges[i].key = UINT64_MAX;
  tok->merge_mask = n - 1;
  for (size_t i = 0; i < old_n; i++)
    if (old[i].key != UINT64_MAX) merges_insert(tok, old[i].key, old[i].rank, old[i].new_id);
  g_free(old);
}

gboolean ps_bpe_add_merge(ps_bpe *tok, int32_t left, int32_t right, const char *where,
                          GError **error) {
  const char *a = left >= 0 && left < tok->n_ids ? tok->id_token[left] : NULL;
  const char *b = right >= 0 && right < tok->n_ids ? tok->id_token[right] : NULL;
  if (!a || !b) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: model.merges[%zu]: unknown id %d", where,
                tok->n_merges, a ? right : left);
    return FALSE;
  }
  g_autofree char *joined = g_strconcat(a, b, NULL);
  gpointer v = g_hash_table_lookup(tok->vocab, joined);
  if (!v) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: model.merges[%zu]: merged token \"%s\" is not in model.vocab", where,
                tok->n_merges, joined);
    return FALSE;
  }
  /* Keep the load factor under 1/2. */
  if (!tok->merges || 2 * (tok->n_merges + 1) > tok->merge_mask + 1) merges_grow(tok);
  uint64_t key = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
  merges_insert(tok, key, (uint32_t)tok->n_merges, GPOINTER_TO_INT(v) - 1);
  if ((tok->n_merges & (tok->n_merges - 1)) == 0)
    tok->merge_pairs = g_renew(int32_t, tok->merge_pairs, 2 * MAX(1, 2 * tok->n_merges));
  tok->merge_pairs[2 * tok->n_merges] = left;
  tok->merge_pairs[2 * tok->n_merges + 1] = right;
  tok->n_merges++;
  return TRUE;
}

static void index_added(ps_bpe *tok) {
  memset(tok->added_first_byte, 0, sizeof tok->added_first_byte);
  tok->any_added[0] = tok->any_added[1] = FALSE;
  for (guint k = 0; k < tok->added->len; k++) {
    const ps_bpe_added *a = g_ptr_array_index(tok->added, k);
    tok->added_first_byte[a->normalized][(guint8)a->content[0]] = TRUE;
    tok->any_added[a->normalized] = TRUE;
  }
}

gboolean ps_bpe_set_added(ps_bpe *tok, const char *content, int32_t id, gboolean special,
                          gboolean normalized, const char *where, GError **error) {
  if (!content || !*content || !g_utf8_validate(content, -1, NULL)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: added token %d: content must be non-empty UTF-8", where, id);
    return FALSE;
  }
  if (id < 0 || id >= (1 << 30)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: added token \"%s\" has id %d", where,
                content, id);
    return FALSE;
  }
  if (g_hash_table_contains(tok->added_by_content, content)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: added token \"%s\" appears twice", where,
                content);
    return FALSE;
  }
  reserve_id(tok, id);
  if (tok->is_added[id]) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: added tokens \"%s\" and \"%s\" share id %d",
                where, tok->id_token[id], content, id);
    return FALSE;
  }
  if (tok->id_token[id] && strcmp(tok->id_token[id], content) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: added token \"%s\" has id %d, which model.vocab gives to \"%s\"", where,
                content, id, tok->id_token[id]);
    return FALSE;
  }
  ps_bpe_added *a = g_new0(ps_bpe_added, 1);
  a->content = g_strdup(content);
  a->len = strlen(content);
  a->id = id;
  a->special = special;
  a->normalized = normalized;
  g_ptr_array_add(tok->added, a);
  g_hash_table_insert(tok->added_by_content, a->content, a);
  if (!tok->id_token[id]) {
    tok->id_token[id] = g_string_chunk_insert(tok->strings, content);
    set_decoded_bytes(tok, id, content);
  }
  tok->is_added[id] = special ? 2 : 1;
  tok->n_ids = MAX(tok->n_ids, id + 1);
  index_added(tok);
  return TRUE;
}

gboolean ps_bpe_finish(ps_bpe *tok, const char *where, GError **error) {
  if (tok->model_vocab_size == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: model.vocab is empty", where);
    return FALSE;
  }
  for (int b = 0; b < 256; b++) {
    char s[8];
    s[g_unichar_to_utf8(ps_bpe_byte_to_cp[b], s)] = 0;
    gpointer v = g_hash_table_lookup(tok->vocab, s);
    tok->byte_id[b] = v ? GPOINTER_TO_INT(v) - 1 : -1;
    int n = (int)strlen(s);
    tok->byte_fallback_n[b] = (guint8)n;
    for (int k = 0; k < n; k++) {
      char fb[8];
      g_snprintf(fb, sizeof fb, "<0x%02X>", (guint8)s[k]);
      v = g_hash_table_lookup(tok->vocab, fb);
      if (!v) tok->byte_fallback_n[b] = 0;
      tok->byte_fallback_ids[b][k] = v ? GPOINTER_TO_INT(v) - 1 : -1;
    }
  }
  for (int32_t id = 0; id < tok->n_ids; id++)
    if (tok->id_token[id]) set_decoded_bytes(tok, id, tok->id_token[id]);
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Lookups. */

int32_t ps_bpe_token_to_id(const ps_bpe *tok, const char *token) {
  const ps_bpe_added *a = g_hash_table_lookup(tok->added_by_content, token);
  if (a) return a->id;
  gpointer v = g_hash_table_lookup(tok->vocab, token);
  return v ? GPOINTER_TO_INT(v) - 1 : -1;
}

const char *ps_bpe_id_to_token(const ps_bpe *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids ? tok->id_token[id] : NULL;
}

size_t ps_bpe_vocab_size(const ps_bpe *tok) { return (size_t)tok->n_ids; }
size_t ps_bpe_model_vocab_size(const ps_bpe *tok) { return tok->model_vocab_size; }
size_t ps_bpe_n_merges(const ps_bpe *tok) { return tok->n_merges; }

gboolean ps_bpe_is_special(const ps_bpe *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids && tok->is_added[id] == 2;
}

int32_t ps_bpe_add_token(ps_bpe *tok, const char *content, gboolean special, GError **error) {
  if (!content || !*content) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "tokenizer: cannot add an empty token");
    return -1;
  }
  const ps_bpe_added *a = g_hash_table_lookup(tok->added_by_content, content);
  if (a) return a->id;
  /* As tokenizers does: a string the model already has keeps its id and is
   * now matched whole; a new one takes the next free id. */
  gpointer v = g_hash_table_lookup(tok->vocab, content);
  int32_t id = v ? GPOINTER_TO_INT(v) - 1 : tok->n_ids;
  if (!ps_bpe_set_added(tok, content, id, special, FALSE, "tokenizer", error)) return -1;
  /* Cached pieces cannot contain the new token (it is matched before the
   * split), but clear anyway so a cache never outlives a vocabulary change. */
  ps_bpe_cache_reset(&tok->cache);
  return id;
}

/* ---------------------------------------------------------------------- */
/* Decoding. */

/* The byte of a "<0xNN>" token, or -1. */
static int fallback_byte(const ps_bpe *tok, int32_t id) {
  const char *t = tok->id_token[id];
  unsigned v;
  if (tok->is_added[id] || strlen(t) != 6 || sscanf(t, "<0x%2X>", &v) != 1) return -1;
  return (int)v;
}

/* tokenizers' ByteLevel decoder on one token: stand-ins back to bytes when
 * every character is one, else the token's own UTF-8. */
static void byte_level_token(GByteArray *out, const char *s, size_t len) {
  guint start = out->len;
  for (const char *p = s; p < s + len; p = g_utf8_next_char(p)) {
    int b = ps_bpe_cp_to_byte(g_utf8_get_char(p));
    if (b < 0) {
      g_byte_array_set_size(out, start);
      g_byte_array_append(out, (const guint8 *)s, (guint)len);
      return;
    }
    guint8 byte = (guint8)b;
    g_byte_array_append(out, &byte, 1);
  }
}

guint8 *ps_bpe_decode_bytes(const ps_bpe *tok, const int32_t *ids, size_t n,
                            gboolean skip_special, size_t *n_bytes, GError **error) {
  GByteArray *out = g_byte_array_sized_new((guint)(n * 4 + 1));
  g_autoptr(GByteArray) run = g_byte_array_new();
  for (size_t i = 0; i < n; i++) {
    int32_t id = ids[i];
    if (id < 0 || id >= tok->n_ids || !tok->id_token[id]) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "tokenizer: cannot decode id %d at position %zu (vocabulary has %d ids)", id, i,
                  tok->n_ids);
      g_byte_array_unref(out);
      return NULL;
    }
    if (skip_special && tok->is_added[id] == 2) continue;
    if (tok->decoder_byte_fallback) {
      /* ByteFallback first: a run of <0xNN> becomes its UTF-8 text (or one
       * U+FFFD per byte when invalid), which ByteLevel then decodes. */
      int b = fallback_byte(tok, id);
      if (b >= 0) {
        guint8 byte = (guint8)b;
        g_byte_array_append(run, &byte, 1);
        if (i + 1 < n && ids[i + 1] >= 0 && ids[i + 1] < tok->n_ids && tok->id_token[ids[i + 1]] &&
            !(skip_special && tok->is_added[ids[i + 1]] == 2) && fallback_byte(tok, ids[i + 1]) >= 0)
          continue;
        if (g_utf8_validate_len((const char *)run->data, run->len, NULL)) {
          byte_level_token(out, (const char *)run->data, run->len);
        } else {
          GString *rep = g_string_new(NULL);
          for (guint k = 0; k < run->len; k++) g_string_append(rep, "\xEF\xBF\xBD");
          byte_level_token(out, rep->str, rep->len);
          g_string_free(rep, TRUE);
        }
        g_byte_array_set_size(run, 0);
        continue;
      }
    }
    g_byte_array_append(out, tok->bytes->data + tok->bytes_off[id], tok->bytes_len[id]);
  }
  *n_bytes = out->len;
  return g_byte_array_free(out, FALSE);
}

/* Length of the valid UTF-8 sequence at p (at most n bytes), or 0; on 0,
 * *bad gets the length of the maximal invalid subpart to replace with one
 * U+FFFD (the rule Rust's from_utf8_lossy follows). */
static size_t utf8_seq(const guint8 *p, size_t n, size_t *bad) {
  guint8 c = p[0];
  size_t need;
  guint8 lo = 0x80, hi = 0xBF;
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) need = 1;
  else if (c == 0xE0) need = 2, lo = 0xA0;
  else if (c >= 0xE1 && c <= 0xEC) need = 2;
  else if (c == 0xED) need = 2, hi = 0x9F;
  else if (c >= 0xEE && c <= 0xEF) need = 2;
  else if (c == 0xF0) need = 3, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) need = 3;
  else if (c == 0xF4) need = 3, hi = 0x8F;
  else {
    *bad = 1;
    return 0;
  }
  size_t k = 1;
  for (; k <= need; k++) {
    if (k >= n) break;
    guint8 b = p[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) break;
  }
  if (k == need + 1) return k;
  *bad = k;
  return 0;
}

char *ps_bpe_decode(const ps_bpe *tok, const int32_t *ids, size_t n, gboolean skip_special,
                    GError **error) {
  size_t nb;
  g_autofree guint8 *raw = ps_bpe_decode_bytes(tok, ids, n, skip_special, &nb, error);
  if (!raw) return NULL;
  GString *s = g_string_sized_new(nb + 1);
  for (size_t i = 0; i < nb;) {
    size_t bad = 0, k = utf8_seq(raw + i, nb - i, &bad);
    if (k) {
      g_string_append_len(s, (const char *)raw + i, (gssize)k);
      i += k;
    } else {
      g_string_append(s, "\xEF\xBF\xBD");
      i += bad;
    }
  }
  return g_string_free(s, FALSE);
}
