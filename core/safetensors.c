/* safetensors.c — reader and writer for the safetensors format.
 *
 * Reader: the file is memory-mapped (or a caller's buffer is used) and the
 * header is validated with every check of the reference implementation
 * (spec/anchors.md §5) before any tensor is handed out. The header JSON is
 * parsed by a small dedicated parser rather than json-glib because we need
 * what a generic DOM loses: duplicate keys must be rejected (JsonObject keeps
 * the last one silently), integers must be read from their digits as
 * unsigned values (no fractions, exponents or silent int64 wrap-around), and
 * nesting must be bounded so that hostile input cannot exhaust the stack.
 *
 * Writer: tensors are sorted by descending element size (so every tensor is
 * aligned when the header is) then by name, laid out contiguously after a
 * space-padded header whose length is a multiple of 8, and written to a
 * temporary file in the target directory that is fsynced and renamed over
 * the target. Writing in place would zero-fill any live mapping of the old
 * file (huggingface/safetensors #762). */
/* posix_memalign, fsync, O_CLOEXEC: POSIX.1-2008 under -std=c11; madvise
 * and MADV_DONTNEED (posix_madvise's POSIX_MADV_DONTNEED is a no-op in
 * glibc): _DEFAULT_SOURCE. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#ifndef _DEFAULT_SOURCE
#define _DEFAULT_SOURCE
#endif

#include <pathseg/error.h>
#include <pathseg/safetensors.h>

#include <errno.h>
#include <fcntl.h>
#include <glib/gstdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Integers in the header above this are refused: they cannot be byte
 * offsets of a real file and keep all later arithmetic far from overflow
 * (the official schema even caps them at 2^48 - 1). */
#define ST_MAX_INT ((guint64)1 << 53)
/* Deepest nesting accepted in values we skip (unknown fields). */
#define ST_MAX_DEPTH 64

/* ---------------------------------------------------------------------- */
/* Reader state */

typedef struct {
  char *name;
  ps_tensor view;       /* dtype/shape/nbytes set at open; data on first get */
  guint64 begin, end;   /* relative to the start of the data section */
  void *copy;           /* aligned copy when the mapped data is misaligned */
  gboolean resolved;    /* view.data has been set */
} st_entry;

struct ps_safetensors {
  char *label;          /* the path, or the caller's label for a buffer */
  GMappedFile *map;     /* NULL for a buffer */
  const guint8 *bytes;
  gsize size;
  const guint8 *data;   /* bytes + 8 + N */
  GPtrArray *entries;   /* st_entry*, sorted by data offset */
  GHashTable *index;    /* name -> st_entry* (borrowed) */
  GPtrArray *meta_keys; /* char*, in header order */
  GHashTable *meta;     /* key (borrowed from meta_keys) -> value */
  GMutex lock;          /* guards the lazy resolution of entries */
};

static void entry_free(gpointer p) {
  st_entry *e = p;
  g_free(e->name);
  free(e->copy);
  g_free(e);
}

/* ---------------------------------------------------------------------- */
/* The header parser */

typedef struct {
  const char *start, *p, *end;
  const char *label;
  GError **error;
  gboolean failed;
} jp;

G_GNUC_PRINTF(2, 3)
static gboolean jp_fail(jp *c, const char *fmt, ...) {
  if (c->failed)
    return FALSE;
  va_list ap;
  va_start(ap, fmt);
  g_autofree char *msg = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_set_error(c->error, PS_ERROR, PS_ERROR_PARSE, "%s: %s", c->label, msg);
  c->failed = TRUE;
  return FALSE;
}

static gboolean jp_syntax(jp *c, const char *expected) {
  if (c->p >= c->end)
    return jp_fail(c, "invalid JSON in header: unexpected end, expected %s", expected);
  return jp_fail(c, "invalid JSON in header at byte %td: expected %s, found '%c'",
                 c->p - c->start, expected, g_ascii_isprint(*c->p) ? *c->p : '?');
}

static void jp_ws(jp *c) {
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

/* Consumes `ch` after optional whitespace. */
static gboolean jp_expect(jp *c, char ch, const char *expected) {
  jp_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return TRUE;
  }
  return jp_syntax(c, expected);
}

/* Peeks the next non-space character; 0 at the end. */
static char jp_peek(jp *c) {
  jp_ws(c);
  return c->p < c->end ? *c->p : 0;
}

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

static gboolean jp_hex4(jp *c, guint32 *out) {
  if (c->end - c->p < 4)
    return jp_syntax(c, "four hex digits after \\u");
  guint32 v = 0;
  for (int i = 0; i < 4; i++) {
    int d = hex_digit(c->p[i]);
    if (d < 0)
      return jp_syntax(c, "four hex digits after \\u");
    v = v << 4 | (guint32)d;
  }
  c->p += 4;
  *out = v;
  return TRUE;
}

/* A JSON string; *out (may be NULL to skip) gets a NUL-free UTF-8 copy. The
 * whole header was checked to be UTF-8 before parsing. */
static gboolean jp_string(jp *c, char **out) {
  if (!jp_expect(c, '"', "a string"))
    return FALSE;
  GString *s = out ? g_string_new(NULL) : NULL;
  for (;;) {
    if (c->p >= c->end) {
      jp_syntax(c, "the closing '\"' of a string");
      goto fail;
    }
    unsigned char ch = (unsigned char)*c->p;
    if (ch == '"') {
      c->p++;
      break;
    }
    if (ch < 0x20) {
      jp_syntax(c, "no raw control characters in a string");
      goto fail;
    }
    if (ch != '\\') {
      if (s)
        g_string_append_c(s, (char)ch);
      c->p++;
      continue;
    }
    c->p++;
    if (c->p >= c->end) {
      jp_syntax(c, "an escape character");
      goto fail;
    }
    char esc = *c->p++;
    gunichar u;
    switch (esc) {
    case '"': u = '"'; break;
    case '\\': u = '\\'; break;
    case '/': u = '/'; break;
    case 'b': u = '\b'; break;
    case 'f': u = '\f'; break;
    case 'n': u = '\n'; break;
    case 'r': u = '\r'; break;
    case 't': u = '\t'; break;
    case 'u': {
      guint32 hi;
      if (!jp_hex4(c, &hi))
        goto fail;
      if (hi >= 0xdc00 && hi <= 0xdfff) {
        jp_fail(c, "invalid JSON in header at byte %td: unpaired surrogate \\u%04x",
                c->p - c->start, hi);
        goto fail;
      }
      if (hi >= 0xd800 && hi <= 0xdbff) {
        guint32 lo;
        if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u') {
          jp_fail(c, "invalid JSON in header at byte %td: unpaired surrogate \\u%04x",
                  c->p - c->start, hi);
          goto fail;
        }
        c->p += 2;
        if (!jp_hex4(c, &lo))
          goto fail;
        if (lo < 0xdc00 || lo > 0xdfff) {
          jp_fail(c, "invalid JSON in header at byte %td: unpaired surrogate \\u%04x",
                  c->p - c->start, hi);
          goto fail;
        }
        u = 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
      } else {
        u = hi;
      }
      if (u == 0) {
        jp_fail(c, "string at byte %td of the header contains a NUL character",
                c->p - c->start);
        goto fail;
      }
      break;
    }
    default:
      c->p--;
      jp_syntax(c, "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\u)");
      goto fail;
    }
    if (s)
      g_string_append_unichar(s, u);
  }
  if (out)
    *out = g_string_free(s, FALSE);
  return TRUE;
fail:
  if (s)
    g_string_free(s, TRUE);
  return FALSE;
}

/* Skips a JSON number (any valid form). */
static gboolean jp_skip_number(jp *c) {
  if (c->p < c->end && *c->p == '-')
    c->p++;
  if (c->p >= c->end || !g_ascii_isdigit(*c->p))
    return jp_syntax(c, "a digit");
  if (*c->p == '0')
    c->p++;
  else
    while (c->p < c->end && g_ascii_isdigit(*c->p))
      c->p++;
  if (c->p < c->end && *c->p == '.') {
    c->p++;
    if (c->p >= c->end || !g_ascii_isdigit(*c->p))
      return jp_syntax(c, "a digit after '.'");
    while (c->p < c->end && g_ascii_isdigit(*c->p))
      c->p++;
  }
  if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
    c->p++;
    if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
      c->p++;
    if (c->p >= c->end || !g_ascii_isdigit(*c->p))
      return jp_syntax(c, "a digit in the exponent");
    while (c->p < c->end && g_ascii_isdigit(*c->p))
      c->p++;
  }
  return TRUE;
}

static gboolean jp_literal(jp *c, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(c->end - c->p) >= n && memcmp(c->p, word, n) == 0) {
    c->p += n;
    return TRUE;
  }
  return jp_syntax(c, "a JSON value");
}

/* Skips any JSON value, refusing nesting deeper than ST_MAX_DEPTH. */
static gboolean jp_skip_value(jp *c, int depth) {
  if (depth > ST_MAX_DEPTH)
    return jp_fail(c, "header nesting deeper than %d at byte %td", ST_MAX_DEPTH,
                   c->p - c->start);
  char ch = jp_peek(c);
  switch (ch) {
  case '"':
    return jp_string(c, NULL);
  case '{':
    c->p++;
    if (jp_peek(c) == '}') {
      c->p++;
      return TRUE;
    }
    for (;;) {
      if (!jp_string(c, NULL) || !jp_expect(c, ':', "':'") || !jp_skip_value(c, depth + 1))
        return FALSE;
      if (jp_peek(c) == ',') {
        c->p++;
        continue;
      }
      return jp_expect(c, '}', "',' or '}'");
    }
  case '[':
    c->p++;
    if (jp_peek(c) == ']') {
      c->p++;
      return TRUE;
    }
    for (;;) {
      if (!jp_skip_value(c, depth + 1))
        return FALSE;
      if (jp_peek(c) == ',') {
        c->p++;
        continue;
      }
      return jp_expect(c, ']', "',' or ']'");
    }
  case 't':
    return jp_literal(c, "true");
  case 'f':
    return jp_literal(c, "false");
  case 'n':
    return jp_literal(c, "null");
  default:
    if (ch == '-' || g_ascii_isdigit(ch))
      return jp_skip_number(c);
    return jp_syntax(c, "a JSON value");
  }
}

/* A non-negative integer without fraction or exponent, at most ST_MAX_INT.
 * `what` names the value in errors ("tensor 'w': shape"). */
static gboolean jp_uint(jp *c, const char *what, guint64 *out) {
  char ch = jp_peek(c);
  if (ch == '-') {
    const char *at = c->p;
    if (!jp_skip_number(c))
      return FALSE;
    return jp_fail(c, "%s: %.*s is negative", what, (int)MIN(c->p - at, 40), at);
  }
  if (!g_ascii_isdigit(ch)) {
    if (ch == '"' || ch == '{' || ch == '[' || ch == 't' || ch == 'f' || ch == 'n') {
      if (!jp_skip_value(c, 1))
        return FALSE;
      return jp_fail(c, "%s: expected an integer", what);
    }
    return jp_syntax(c, "an integer");
  }
  const char *at = c->p;
  guint64 v = 0;
  gboolean big = FALSE;
  if (*c->p == '0') {
    c->p++;
  } else {
    while (c->p < c->end && g_ascii_isdigit(*c->p)) {
      if (v > ST_MAX_INT)
        big = TRUE;
      else
        v = v * 10 + (guint64)(*c->p - '0');
      c->p++;
    }
  }
  if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E')) {
    c->p = at;
    if (!jp_skip_number(c))
      return FALSE;
    return jp_fail(c, "%s: %.*s is not an integer", what, (int)MIN(c->p - at, 40), at);
  }
  if (c->p < c->end && g_ascii_isdigit(*c->p))
    return jp_syntax(c, "no leading zeros in a number");
  if (big || v > ST_MAX_INT)
    return jp_fail(c, "%s: %.*s is too large (the limit is 2^53)", what,
                   (int)MIN(c->p - at, 40), at);
  *out = v;
  return TRUE;
}

/* An array of at most `max` integers; *n gets the count. Too many entries is
 * reported as "has more than max". */
static gboolean jp_uint_array(jp *c, const char *what, guint64 *vals, int max, int *n) {
  if (jp_peek(c) != '[') {
    if (!jp_skip_value(c, 1))
      return FALSE;
    return jp_fail(c, "%s is not an array of integers", what);
  }
  c->p++;
  *n = 0;
  if (jp_peek(c) == ']') {
    c->p++;
    return TRUE;
  }
  for (;;) {
    guint64 v = 0;
    if (!jp_uint(c, what, &v))
      return FALSE;
    if (*n >= max)
      return jp_fail(c, "%s has more than %d entries", what, max);
    vals[(*n)++] = v;
    if (jp_peek(c) == ',') {
      c->p++;
      continue;
    }
    return jp_expect(c, ']', "',' or ']'");
  }
}

/* One tensor's {"dtype", "shape", "data_offsets"} object. */
static gboolean jp_tensor_info(jp *c, st_entry *e) {
  g_autofree char *ctx_shape = g_strdup_printf("tensor '%s': shape", e->name);
  g_autofree char *ctx_off = g_strdup_printf("tensor '%s': data_offsets", e->name);
  if (jp_peek(c) != '{') {
    if (!jp_skip_value(c, 1))
      return FALSE;
    return jp_fail(c, "tensor '%s': entry is not a JSON object", e->name);
  }
  c->p++;
  gboolean have_dtype = FALSE, have_shape = FALSE, have_offsets = FALSE;
  if (jp_peek(c) != '}') {
    for (;;) {
      g_autofree char *key = NULL;
      if (!jp_string(c, &key) || !jp_expect(c, ':', "':'"))
        return FALSE;
      gboolean *seen = NULL;
      if (strcmp(key, "dtype") == 0)
        seen = &have_dtype;
      else if (strcmp(key, "shape") == 0)
        seen = &have_shape;
      else if (strcmp(key, "data_offsets") == 0)
        seen = &have_offsets;
      if (seen && *seen)
        return jp_fail(c, "tensor '%s': duplicate key '%s'", e->name, key);
      if (seen)
        *seen = TRUE;
      if (seen == &have_dtype) {
        if (jp_peek(c) != '"') {
          if (!jp_skip_value(c, 1))
            return FALSE;
          return jp_fail(c, "tensor '%s': dtype is not a string", e->name);
        }
        g_autofree char *dtype = NULL;
        if (!jp_string(c, &dtype))
          return FALSE;
        if (!ps_dtype_from_name(dtype, &e->view.dtype))
          return jp_fail(c, "tensor '%s': unknown or unsupported dtype '%s'", e->name, dtype);
      } else if (seen == &have_shape) {
        guint64 dims[PS_MAX_DIMS];
        int n;
        if (!jp_uint_array(c, ctx_shape, dims, PS_MAX_DIMS, &n))
          return FALSE;
        e->view.ndim = n;
        for (int i = 0; i < n; i++)
          e->view.shape[i] = (int64_t)dims[i];
      } else if (seen == &have_offsets) {
        guint64 off[2];
        int n;
        if (!jp_uint_array(c, ctx_off, off, 2, &n))
          return FALSE;
        if (n != 2)
          return jp_fail(c, "tensor '%s': data_offsets has %d entries, expected [BEGIN, END]",
                         e->name, n);
        e->begin = off[0];
        e->end = off[1];
      } else if (!jp_skip_value(c, 1)) {
        /* Unknown fields are ignored, as the reference (serde) does. */
        return FALSE;
      }
      if (jp_peek(c) == ',') {
        c->p++;
        continue;
      }
      if (!jp_expect(c, '}', "',' or '}'"))
        return FALSE;
      break;
    }
  } else {
    c->p++;
  }
  if (!have_dtype)
    return jp_fail(c, "tensor '%s': missing 'dtype'", e->name);
  if (!have_shape)
    return jp_fail(c, "tensor '%s': missing 'shape'", e->name);
  if (!have_offsets)
    return jp_fail(c, "tensor '%s': missing 'data_offsets'", e->name);
  return TRUE;
}

/* The `__metadata__` value: a string -> string object (or null). */
static gboolean jp_metadata(jp *c, ps_safetensors *st) {
  char ch = jp_peek(c);
  if (ch == 'n')
    return jp_literal(c, "null");
  if (ch != '{') {
    if (!jp_skip_value(c, 1))
      return FALSE;
    return jp_fail(c, "__metadata__ is not an object of strings");
  }
  c->p++;
  if (jp_peek(c) == '}') {
    c->p++;
    return TRUE;
  }
  for (;;) {
    g_autofree char *key = NULL;
    if (!jp_string(c, &key) || !jp_expect(c, ':', "':'"))
      return FALSE;
    if (g_hash_table_contains(st->meta, key))
      return jp_fail(c, "__metadata__: duplicate key '%s'", key);
    if (jp_peek(c) != '"') {
      if (!jp_skip_value(c, 1))
        return FALSE;
      return jp_fail(c, "__metadata__: value of '%s' is not a string", key);
    }
    char *value = NULL;
    if (!jp_string(c, &value))
      return FALSE;
    char *k = g_steal_pointer(&key);
    g_ptr_array_add(st->meta_keys, k);
    g_hash_table_insert(st->meta, k, value);
    if (jp_peek(c) == ',') {
      c->p++;
      continue;
    }
    return jp_expect(c, '}', "',' or '}'");
  }
}

/* The whole header: an object of tensor entries and `__metadata__`. */
static gboolean jp_header(jp *c, ps_safetensors *st) {
  if (c->p >= c->end || *c->p != '{')
    return jp_fail(c, "header is not a JSON object (does not start with '{')");
  c->p++;
  gboolean have_meta = FALSE;
  if (jp_peek(c) == '}') {
    c->p++;
  } else {
    for (;;) {
      g_autofree char *key = NULL;
      if (!jp_string(c, &key) || !jp_expect(c, ':', "':'"))
        return FALSE;
      if (strcmp(key, "__metadata__") == 0) {
        if (have_meta)
          return jp_fail(c, "duplicate key '__metadata__' in header");
        have_meta = TRUE;
        if (!jp_metadata(c, st))
          return FALSE;
      } else {
        if (g_hash_table_contains(st->index, key))
          return jp_fail(c, "duplicate tensor '%s' in header", key);
        st_entry *e = g_new0(st_entry, 1);
        e->name = g_steal_pointer(&key);
        e->view.device = PS_DEVICE_CPU;
        g_ptr_array_add(st->entries, e);
        g_hash_table_insert(st->index, e->name, e);
        if (!jp_tensor_info(c, e))
          return FALSE;
      }
      if (jp_peek(c) == ',') {
        c->p++;
        continue;
      }
      if (!jp_expect(c, '}', "',' or '}'"))
        return FALSE;
      break;
    }
  }
  /* Only whitespace may follow (writers pad the header with spaces). */
  jp_ws(c);
  if (c->p != c->end)
    return jp_fail(c, "unexpected data after the header's JSON object at byte %td",
                   c->p - c->start);
  return TRUE;
}

/* ---------------------------------------------------------------------- */
/* Validation of the parsed entries against the data section */

static char *entry_desc(const st_entry *e, char *buf, size_t size) {
  char dims[128];
  g_snprintf(buf, size, "%s %s", ps_dtype_name(e->view.dtype),
             ps_shape_format(&e->view, dims, sizeof dims));
  return buf;
}

/* Element count and byte size with checked multiplication, in shape order
 * as the reference does; then the byte range must match exactly. */
static gboolean check_sizes(ps_safetensors *st, st_entry *e, GError **error) {
  char desc[192];
  guint64 numel = 1;
  for (int i = 0; i < e->view.ndim; i++) {
    if (__builtin_mul_overflow(numel, (guint64)e->view.shape[i], &numel)) {
      g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                  "%s: tensor '%s': element count of %s overflows", st->label, e->name,
                  entry_desc(e, desc, sizeof desc));
      return FALSE;
    }
  }
  guint64 nbytes;
  if (__builtin_mul_overflow(numel, (guint64)ps_dtype_size(e->view.dtype), &nbytes) ||
      nbytes > G_MAXSIZE / 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: tensor '%s': byte size of %s overflows",
                st->label, e->name, entry_desc(e, desc, sizeof desc));
    return FALSE;
  }
  if (e->end < e->begin) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                "] end before they begin",
                st->label, e->name, e->begin, e->end);
    return FALSE;
  }
  if (e->end - e->begin != nbytes) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                "] span %" G_GUINT64_FORMAT " bytes but %s needs %" G_GUINT64_FORMAT,
                st->label, e->name, e->begin, e->end, e->end - e->begin,
                entry_desc(e, desc, sizeof desc), nbytes);
    return FALSE;
  }
  e->view.nbytes = (size_t)nbytes;
  return TRUE;
}

static gint entry_cmp(gconstpointer a, gconstpointer b) {
  const st_entry *x = *(st_entry *const *)a, *y = *(st_entry *const *)b;
  if (x->begin != y->begin)
    return x->begin < y->begin ? -1 : 1;
  if (x->end != y->end)
    return x->end < y->end ? -1 : 1;
  return strcmp(x->name, y->name);
}

/* Sorted by offset, the tensors must tile [0, data size) exactly. */
static gboolean check_layout(ps_safetensors *st, guint64 header_len, GError **error) {
  g_ptr_array_sort(st->entries, entry_cmp);
  guint64 pos = 0;
  const st_entry *prev = NULL;
  for (guint i = 0; i < st->entries->len; i++) {
    const st_entry *e = g_ptr_array_index(st->entries, i);
    if (e->begin != pos) {
      if (prev == NULL)
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                    "%s: tensor '%s': data_offsets begin at %" G_GUINT64_FORMAT
                    " but the first tensor must begin at 0",
                    st->label, e->name, e->begin);
      else if (e->begin < pos)
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                    "%s: tensor '%s': data_offsets [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT
                    "] overlap tensor '%s' [%" G_GUINT64_FORMAT ", %" G_GUINT64_FORMAT "]",
                    st->label, e->name, e->begin, e->end, prev->name, prev->begin, prev->end);
      else
        g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                    "%s: tensor '%s': gap of %" G_GUINT64_FORMAT
                    " bytes after tensor '%s' (ends at %" G_GUINT64_FORMAT
                    ", this begins at %" G_GUINT64_FORMAT ")",
                    st->label, e->name, e->begin - pos, prev->name, pos, e->begin);
      return FALSE;
    }
    pos = e->end;
    prev = e;
  }
  /* header_len <= 1e8 and pos <= 2^53 + ..., so this cannot overflow. */
  const guint64 expected = 8 + header_len + pos;
  if (expected > st->size) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: tensor data ends at byte %" G_GUINT64_FORMAT
                " but the file has only %" G_GSIZE_FORMAT " bytes (truncated?)",
                st->label, expected, st->size);
    return FALSE;
  }
  if (expected < st->size) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: %" G_GUINT64_FORMAT " trailing bytes after the tensor data (which ends at "
                "byte %" G_GUINT64_FORMAT ")",
                st->label, (guint64)st->size - expected, expected);
    return FALSE;
  }
  return TRUE;
}

static ps_safetensors *st_new(const char *label) {
  ps_safetensors *st = g_new0(ps_safetensors, 1);
  st->label = g_strdup(label ? label : "(buffer)");
  st->entries = g_ptr_array_new_with_free_func(entry_free);
  st->index = g_hash_table_new(g_str_hash, g_str_equal);
  st->meta_keys = g_ptr_array_new_with_free_func(g_free);
  st->meta = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  g_mutex_init(&st->lock);
  return st;
}

/* Validates st->bytes/st->size; FALSE with an error naming st->label. */
static gboolean st_validate(ps_safetensors *st, GError **error) {
  if (st->size < 8) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: file is %" G_GSIZE_FORMAT " bytes, too small for the 8-byte header length",
                st->label, st->size);
    return FALSE;
  }
  guint64 n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | st->bytes[i];
  if (n > PS_SAFETENSORS_MAX_HEADER) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: header length %" G_GUINT64_FORMAT " exceeds the limit of %" G_GUINT64_FORMAT
                " bytes",
                st->label, n, PS_SAFETENSORS_MAX_HEADER);
    return FALSE;
  }
  if (n > st->size - 8) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: header length %" G_GUINT64_FORMAT
                " runs past the end of the file (%" G_GSIZE_FORMAT " bytes)",
                st->label, n, st->size);
    return FALSE;
  }
  const char *header = (const char *)st->bytes + 8;
  if (n == 0 || header[0] != '{') {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE,
                "%s: header is not a JSON object (does not start with '{')", st->label);
    return FALSE;
  }
  if (!g_utf8_validate_len(header, (gsize)n, NULL)) {
    g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: header is not valid UTF-8", st->label);
    return FALSE;
  }
  jp c = {.start = header, .p = header, .end = header + n, .label = st->label, .error = error};
  if (!jp_header(&c, st))
    return FALSE;
  for (guint i = 0; i < st->entries->len; i++)
    if (!check_sizes(st, g_ptr_array_index(st->entries, i), error))
      return FALSE;
  if (!check_layout(st, n, error))
    return FALSE;
  st->data = st->bytes + 8 + n;
  return TRUE;
}

ps_safetensors *ps_safetensors_open(const char *path, GError **error) {
  g_return_val_if_fail(path != NULL, NULL);
  GError *local = NULL;
  GMappedFile *map = g_mapped_file_new(path, FALSE, &local);
  if (map == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: cannot open: %s", path, local->message);
    g_error_free(local);
    return NULL;
  }
  ps_safetensors *st = st_new(path);
  st->map = map;
  st->bytes = (const guint8 *)g_mapped_file_get_contents(map);
  st->size = g_mapped_file_get_length(map);
  if (!st_validate(st, error)) {
    ps_safetensors_close(st);
    return NULL;
  }
  return st;
}

ps_safetensors *ps_safetensors_open_buffer(const guint8 *data, gsize size, const char *label,
                                           GError **error) {
  ps_safetensors *st = st_new(label);
  st->bytes = data;
  st->size = data ? size : 0;
  if (!st_validate(st, error)) {
    ps_safetensors_close(st);
    return NULL;
  }
  return st;
}

void ps_safetensors_close(ps_safetensors *st) {
  if (st == NULL)
    return;
  g_hash_table_destroy(st->index);
  g_ptr_array_free(st->entries, TRUE);
  g_hash_table_destroy(st->meta);
  g_ptr_array_free(st->meta_keys, TRUE);
  g_clear_pointer(&st->map, g_mapped_file_unref);
  g_mutex_clear(&st->lock);
  g_free(st->label);
  g_free(st);
}

const char *ps_safetensors_path(const ps_safetensors *st) { return st->label; }

size_t ps_safetensors_count(const ps_safetensors *st) { return st->entries->len; }

const char *ps_safetensors_name(const ps_safetensors *st, size_t index) {
  if (index >= st->entries->len)
    return NULL;
  return ((const st_entry *)g_ptr_array_index(st->entries, index))->name;
}

gboolean ps_safetensors_has(const ps_safetensors *st, const char *name) {
  return name != NULL && g_hash_table_contains(st->index, name);
}

/* Points e->view.data at the tensor's bytes, copying them to an aligned
 * buffer when the file leaves them misaligned for their element size (or
 * byte-swapping on a big-endian host). Called with st->lock held. */
static gboolean entry_resolve(ps_safetensors *st, st_entry *e, GError **error) {
  if (e->resolved)
    return TRUE;
  if (e->view.nbytes == 0) {
    e->view.data = NULL;
    e->resolved = TRUE;
    return TRUE;
  }
  const guint8 *src = st->data + e->begin;
  const size_t esize = ps_dtype_size(e->view.dtype);
  const gboolean swap = G_BYTE_ORDER == G_BIG_ENDIAN && esize > 1;
  if ((uintptr_t)src % esize == 0 && !swap) {
    e->view.data = (void *)src; /* read-only mapping: the view is const */
    e->resolved = TRUE;
    return TRUE;
  }
  void *copy = NULL;
  if (posix_memalign(&copy, 64, e->view.nbytes) != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "%s: tensor '%s': out of memory copying %zu bytes", st->label, e->name,
                e->view.nbytes);
    return FALSE;
  }
  memcpy(copy, src, e->view.nbytes);
  if (swap) {
    guint8 *b = copy;
    for (size_t i = 0; i < e->view.nbytes; i += esize)
      for (size_t j = 0; j < esize / 2; j++) {
        guint8 t = b[i + j];
        b[i + j] = b[i + esize - 1 - j];
        b[i + esize - 1 - j] = t;
      }
  }
  e->copy = copy;
  e->view.data = copy;
  e->resolved = TRUE;
  return TRUE;
}

const ps_tensor *ps_safetensors_get(ps_safetensors *st, const char *name, GError **error) {
  st_entry *e = name ? g_hash_table_lookup(st->index, name) : NULL;
  if (e == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no tensor '%s'", st->label,
                name ? name : "(null)");
    return NULL;
  }
  g_mutex_lock(&st->lock);
  gboolean ok = entry_resolve(st, e, error);
  g_mutex_unlock(&st->lock);
  return ok ? &e->view : NULL;
}

/* Drops the mapped pages under [p, p + n) from this process's resident set.
 * The mapping is a private, read-only file mapping, so this is always safe:
 * a later access faults the same bytes back in from the page cache (the
 * borrowed views of ps_safetensors_get stay valid). Without it, copying a
 * whole checkpoint out of the mapping keeps every file page resident until
 * close, and a load peaks near twice the weights. Pages shared with a
 * neighbouring tensor are dropped too (they come back on demand). Caller
 * buffers (open_buffer) are left alone: their memory is not ours. */
static void release_range(const ps_safetensors *st, const guint8 *p, size_t n) {
  if (st->map == NULL || n == 0)
    return;
  static gsize page = 0;
  if (g_once_init_enter(&page)) {
    long ps = sysconf(_SC_PAGESIZE);
    g_once_init_leave(&page, ps > 0 ? (gsize)ps : 4096);
  }
  uintptr_t lo = (uintptr_t)p & ~(uintptr_t)(page - 1);
  uintptr_t hi = ((uintptr_t)p + n + page - 1) & ~(uintptr_t)(page - 1);
  /* The mapping starts on a page and mmap maps its last partial page whole,
   * so [lo, hi) stays inside it. Failure only means the pages stay. */
  (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

/* dst[0..n) = src converted to f32 (src may be misaligned: memcpy per
 * element, as ps_tensor_to_f32). FALSE for a dtype with no conversion. */
static gboolean convert_f32(float *dst, const guint8 *src, ps_dtype dtype, size_t n) {
  switch (dtype) {
  case PS_DTYPE_F32:
    memcpy(dst, src, n * 4);
    return TRUE;
  case PS_DTYPE_F64:
    for (size_t i = 0; i < n; i++) {
      double v;
      memcpy(&v, src + i * 8, 8);
      dst[i] = (float)v;
    }
    return TRUE;
  case PS_DTYPE_BF16:
    for (size_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + i * 2, 2);
      dst[i] = ps_bf16_to_f32(v);
    }
    return TRUE;
  case PS_DTYPE_F16:
    for (size_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + i * 2, 2);
      dst[i] = ps_f16_to_f32(v);
    }
    return TRUE;
  case PS_DTYPE_I32:
    for (size_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, src + i * 4, 4);
      dst[i] = (float)v;
    }
    return TRUE;
  case PS_DTYPE_I64:
    for (size_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, src + i * 8, 8);
      dst[i] = (float)v;
    }
    return TRUE;
  case PS_DTYPE_U8:
    for (size_t i = 0; i < n; i++)
      dst[i] = (float)src[i];
    return TRUE;
  case PS_DTYPE_BOOL:
    for (size_t i = 0; i < n; i++)
      dst[i] = src[i] ? 1.0f : 0.0f;
    return TRUE;
  default:
    return FALSE;
  }
}

/* Elements converted per step of ps_safetensors_read_f32: the file pages of
 * one step are released before the next, so even a 0.5 GB embedding never
 * has more than a few MB of its file pages resident on top of the copy. */
#define ST_READ_CHUNK ((size_t)1 << 20)

gboolean ps_safetensors_read_f32(ps_safetensors *st, const char *name, ps_tensor *dst,
                                 GError **error) {
  st_entry *e = name ? g_hash_table_lookup(st->index, name) : NULL;
  if (e == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no tensor '%s'", st->label,
                name ? name : "(null)");
    return FALSE;
  }
  const int64_t n = ps_tensor_numel(&e->view);
  if (dst == NULL || dst->dtype != PS_DTYPE_F32 || dst->device != PS_DEVICE_CPU ||
      ps_tensor_numel(dst) != n) {
    char a[96], b[96];
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "%s: tensor '%s' is %s %s, the destination %s %s", st->label, name,
                ps_dtype_name(e->view.dtype), ps_shape_format(&e->view, a, sizeof a),
                dst ? ps_dtype_name(dst->dtype) : "(none)",
                dst ? ps_shape_format(dst, b, sizeof b) : "");
    return FALSE;
  }
  if (n == 0)
    return TRUE;
  const size_t esize = ps_dtype_size(e->view.dtype);
  const guint8 *src = st->data + e->begin;
  if (G_BYTE_ORDER == G_BIG_ENDIAN && esize > 1) {
    /* The byte-swapped aligned copy of entry_resolve, then convert. */
    const ps_tensor *t = ps_safetensors_get(st, name, error);
    if (t == NULL)
      return FALSE;
    src = t->data;
  }
  float *out = dst->data;
  for (size_t i = 0; i < (size_t)n; i += ST_READ_CHUNK) {
    size_t k = MIN(ST_READ_CHUNK, (size_t)n - i);
    if (!convert_f32(out + i, src + i * esize, e->view.dtype, k)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: tensor '%s': no f32 conversion from %s",
                  st->label, name, ps_dtype_name(e->view.dtype));
      return FALSE;
    }
    if (src == st->data + e->begin)
      release_range(st, src + i * esize, k * esize);
  }
  return TRUE;
}

ps_tensor *ps_safetensors_get_f32(ps_safetensors *st, const char *name, GError **error) {
  st_entry *e = name ? g_hash_table_lookup(st->index, name) : NULL;
  if (e == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no tensor '%s'", st->label,
                name ? name : "(null)");
    return NULL;
  }
  GError *local = NULL;
  ps_tensor *f = ps_tensor_new(PS_DTYPE_F32, e->view.ndim, e->view.shape, &local);
  if (f == NULL) {
    g_set_error(error, PS_ERROR, local->code, "%s: tensor '%s': %s", st->label, name,
                local->message);
    g_error_free(local);
    return NULL;
  }
  if (!ps_safetensors_read_f32(st, name, f, error)) {
    ps_tensor_free(f);
    return NULL;
  }
  return f;
}

const char *ps_safetensors_metadata(const ps_safetensors *st, const char *key) {
  return key ? g_hash_table_lookup(st->meta, key) : NULL;
}

const char **ps_safetensors_metadata_keys(const ps_safetensors *st) {
  const char **keys = g_new0(const char *, st->meta_keys->len + 1);
  for (guint i = 0; i < st->meta_keys->len; i++)
    keys[i] = g_ptr_array_index(st->meta_keys, i);
  return keys;
}

/* ---------------------------------------------------------------------- */
/* Writer */

typedef struct {
  char *name;
  ps_dtype dtype;
  int32_t ndim;
  int64_t shape[PS_MAX_DIMS];
  void *data; /* g_malloc'd copy, NULL when empty */
  size_t nbytes;
  guint64 begin; /* set while writing */
} w_entry;

struct ps_safetensors_writer {
  GPtrArray *entries;   /* w_entry* */
  GHashTable *names;    /* name -> w_entry* (borrowed) */
  GPtrArray *meta_keys; /* char*, in insertion order */
  GHashTable *meta;     /* key (borrowed) -> value */
};

static void w_entry_free(gpointer p) {
  w_entry *e = p;
  g_free(e->name);
  g_free(e->data);
  g_free(e);
}

ps_safetensors_writer *ps_safetensors_writer_new(void) {
  ps_safetensors_writer *w = g_new0(ps_safetensors_writer, 1);
  w->entries = g_ptr_array_new_with_free_func(w_entry_free);
  w->names = g_hash_table_new(g_str_hash, g_str_equal);
  w->meta_keys = g_ptr_array_new_with_free_func(g_free);
  w->meta = g_hash_table_new_full(g_str_hash, g_str_equal, NULL, g_free);
  return w;
}

void ps_safetensors_writer_free(ps_safetensors_writer *w) {
  if (w == NULL)
    return;
  g_hash_table_destroy(w->names);
  g_ptr_array_free(w->entries, TRUE);
  g_hash_table_destroy(w->meta);
  g_ptr_array_free(w->meta_keys, TRUE);
  g_free(w);
}

gboolean ps_safetensors_writer_add(ps_safetensors_writer *w, const char *name, const ps_tensor *t,
                                   GError **error) {
  g_return_val_if_fail(w != NULL, FALSE);
  if (name == NULL || !g_utf8_validate(name, -1, NULL) || strcmp(name, "__metadata__") == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "safetensors writer: invalid tensor name '%s'",
                name ? name : "(null)");
    return FALSE;
  }
  if (g_hash_table_contains(w->names, name)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "safetensors writer: duplicate tensor '%s'",
                name);
    return FALSE;
  }
  if (t == NULL || (int)t->dtype < 0 ||
      t->dtype >= PS_DTYPE_COUNT || t->ndim < 0 || t->ndim > PS_MAX_DIMS ||
      (t->data == NULL && t->nbytes > 0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "safetensors writer: tensor '%s' is not a valid tensor", name);
    return FALSE;
  }
  int64_t numel = 1;
  for (int32_t i = 0; i < t->ndim; i++) {
    if (t->shape[i] < 0 || __builtin_mul_overflow(numel, t->shape[i], &numel)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "safetensors writer: tensor '%s' has a bad shape",
                  name);
      return FALSE;
    }
  }
  if ((uint64_t)numel * ps_dtype_size(t->dtype) != t->nbytes) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "safetensors writer: tensor '%s': nbytes %zu does not match its shape", name,
                t->nbytes);
    return FALSE;
  }
  /* The writer keeps its own host copy (a device tensor's comes back here). */
  g_autoptr(ps_tensor) host = t->device != PS_DEVICE_CPU ? ps_tensor_copy(t, error) : NULL;
  if (t->device != PS_DEVICE_CPU && !host) {
    g_prefix_error(error, "safetensors writer: tensor '%s': ", name);
    return FALSE;
  }
  if (host) t = host;
  w_entry *e = g_new0(w_entry, 1);
  e->name = g_strdup(name);
  e->dtype = t->dtype;
  e->ndim = t->ndim;
  memcpy(e->shape, t->shape, sizeof e->shape);
  e->nbytes = t->nbytes;
  e->data = t->nbytes ? g_memdup2(t->data, t->nbytes) : NULL;
  g_ptr_array_add(w->entries, e);
  g_hash_table_insert(w->names, e->name, e);
  return TRUE;
}

void ps_safetensors_writer_set_metadata(ps_safetensors_writer *w, const char *key,
                                        const char *value) {
  g_return_if_fail(w != NULL && key != NULL && value != NULL);
  /* Setting a key again replaces its value but keeps its position. */
  for (guint i = 0; i < w->meta_keys->len; i++) {
    char *k = g_ptr_array_index(w->meta_keys, i);
    if (strcmp(k, key) == 0) {
      g_hash_table_insert(w->meta, k, g_strdup(value));
      return;
    }
  }
  char *k = g_strdup(key);
  g_ptr_array_add(w->meta_keys, k);
  g_hash_table_insert(w->meta, k, g_strdup(value));
}

static void json_string(GString *out, const char *s) {
  g_string_append_c(out, '"');
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    switch (*p) {
    case '"': g_string_append(out, "\\\""); break;
    case '\\': g_string_append(out, "\\\\"); break;
    case '\n': g_string_append(out, "\\n"); break;
    case '\r': g_string_append(out, "\\r"); break;
    case '\t': g_string_append(out, "\\t"); break;
    default:
      if (*p < 0x20)
        g_string_append_printf(out, "\\u%04x", *p);
      else
        g_string_append_c(out, (char)*p);
    }
  }
  g_string_append_c(out, '"');
}

/* Larger elements first (so each tensor stays aligned), then by name. */
static gint w_entry_cmp(gconstpointer a, gconstpointer b) {
  const w_entry *x = *(w_entry *const *)a, *y = *(w_entry *const *)b;
  size_t sx = ps_dtype_size(x->dtype), sy = ps_dtype_size(y->dtype);
  if (sx != sy)
    return sx > sy ? -1 : 1;
  return strcmp(x->name, y->name);
}

static GString *build_header(ps_safetensors_writer *w, const char *path, GError **error) {
  GString *h = g_string_new("{");
  gboolean first = TRUE;
  if (w->meta_keys->len > 0) {
    g_string_append(h, "\"__metadata__\":{");
    for (guint i = 0; i < w->meta_keys->len; i++) {
      const char *k = g_ptr_array_index(w->meta_keys, i);
      const char *v = g_hash_table_lookup(w->meta, k);
      if (!g_utf8_validate(k, -1, NULL) || !g_utf8_validate(v, -1, NULL)) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "%s: metadata key or value for '%s' is not valid UTF-8", path, k);
        g_string_free(h, TRUE);
        return NULL;
      }
      if (i)
        g_string_append_c(h, ',');
      json_string(h, k);
      g_string_append_c(h, ':');
      json_string(h, v);
    }
    g_string_append_c(h, '}');
    first = FALSE;
  }
  guint64 pos = 0;
  for (guint i = 0; i < w->entries->len; i++) {
    w_entry *e = g_ptr_array_index(w->entries, i);
    if (!first)
      g_string_append_c(h, ',');
    first = FALSE;
    json_string(h, e->name);
    g_string_append_printf(h, ":{\"dtype\":\"%s\",\"shape\":[", ps_dtype_name(e->dtype));
    for (int32_t d = 0; d < e->ndim; d++)
      g_string_append_printf(h, d ? ",%" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, e->shape[d]);
    e->begin = pos;
    pos += e->nbytes;
    g_string_append_printf(h, "],\"data_offsets\":[%" G_GUINT64_FORMAT ",%" G_GUINT64_FORMAT "]}",
                           e->begin, pos);
  }
  g_string_append_c(h, '}');
  while (h->len % 8 != 0)
    g_string_append_c(h, ' ');
  if (h->len > PS_SAFETENSORS_MAX_HEADER) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: header of %" G_GSIZE_FORMAT " bytes exceeds the safetensors limit", path,
                h->len);
    g_string_free(h, TRUE);
    return NULL;
  }
  return h;
}

static gboolean write_all(int fd, const void *buf, size_t n, const char *tmp, GError **error) {
  const guint8 *p = buf;
  while (n > 0) {
    ssize_t k = write(fd, p, MIN(n, (size_t)1 << 30));
    if (k < 0 && errno == EINTR)
      continue;
    if (k <= 0) {
      int err = k < 0 ? errno : ENOSPC;
      g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: write failed: %s", tmp, g_strerror(err));
      return FALSE;
    }
    p += k;
    n -= (size_t)k;
  }
  return TRUE;
}

/* Best effort: make the rename itself durable. */
static void fsync_dir(const char *path) {
  g_autofree char *dir = g_path_get_dirname(path);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    (void)fsync(fd);
    close(fd);
  }
}

gboolean ps_safetensors_writer_write(ps_safetensors_writer *w, const char *path, GError **error) {
  g_return_val_if_fail(w != NULL && path != NULL, FALSE);
  g_ptr_array_sort(w->entries, w_entry_cmp);
  GString *header = build_header(w, path, error);
  if (header == NULL)
    return FALSE;
  g_autofree char *tmp = g_strdup_printf("%s.tmp-XXXXXX", path);
  int fd = g_mkstemp_full(tmp, O_WRONLY | O_CLOEXEC, 0666);
  if (fd < 0) {
    int err = errno;
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: cannot create a temporary file: %s", path,
                g_strerror(err));
    g_string_free(header, TRUE);
    return FALSE;
  }
  guint8 len[8];
  guint64 n = header->len;
  for (int i = 0; i < 8; i++)
    len[i] = (guint8)(n >> (8 * i));
  gboolean ok = write_all(fd, len, 8, tmp, error) &&
                write_all(fd, header->str, header->len, tmp, error);
  g_string_free(header, TRUE);
  for (guint i = 0; ok && i < w->entries->len; i++) {
    w_entry *e = g_ptr_array_index(w->entries, i);
    if (e->nbytes > 0)
      ok = write_all(fd, e->data, e->nbytes, tmp, error);
  }
  if (ok && fsync(fd) != 0) {
    int err = errno;
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: fsync failed: %s", tmp, g_strerror(err));
    ok = FALSE;
  }
  if (close(fd) != 0 && ok) {
    int err = errno;
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: close failed: %s", tmp, g_strerror(err));
    ok = FALSE;
  }
  if (ok && rename(tmp, path) != 0) {
    int err = errno;
    g_set_error(error, PS_ERROR, PS_ERROR_IO, "%s: cannot rename %s over it: %s", path, tmp,
                g_strerror(err));
    ok = FALSE;
  }
  if (!ok) {
    g_unlink(tmp);
    return FALSE;
  }
  fsync_dir(path);
  return TRUE;
}
