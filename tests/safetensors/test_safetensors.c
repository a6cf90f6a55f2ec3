/* test_safetensors.c — the safetensors reader and writer.
 *
 * Round trip of every dtype (with a scalar and a zero-size tensor), the real
 * gae fixture checked against relations its notes state, a table of corrupt
 * files built here byte by byte (each must fail with its own message),
 * misaligned tensors, and the writer's atomic replace. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pathseg/error.h>
#include <pathseg/safetensors.h>

#include <glib/gstdio.h>
#include <signal.h>
#include <sys/resource.h>

#include "ps_test.h"

/* ---------------------------------------------------------------------- */
/* Helpers */

/* An 8-byte length + `json` padded with spaces to `pad_to` (0: none) +
 * `data_len` bytes of data (byte i = i & 0xff). */
static GByteArray *make_file(const char *json, gsize pad_to, gsize data_len) {
  GString *h = g_string_new(json);
  while (pad_to && h->len % pad_to)
    g_string_append_c(h, ' ');
  GByteArray *b = g_byte_array_new();
  guint8 len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (guint8)((guint64)h->len >> (8 * i));
  g_byte_array_append(b, len, 8);
  g_byte_array_append(b, (const guint8 *)h->str, (guint)h->len);
  for (gsize i = 0; i < data_len; i++) {
    guint8 v = (guint8)(i & 0xff);
    g_byte_array_append(b, &v, 1);
  }
  g_string_free(h, TRUE);
  return b;
}

static guint64 read_u64le(const guint8 *p) {
  guint64 n = 0;
  for (int i = 7; i >= 0; i--)
    n = n << 8 | p[i];
  return n;
}

static int count_dir_entries(const char *dir) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  int n = 0;
  while (d && g_dir_read_name(d))
    n++;
  return n;
}

static ps_tensor *filled(ps_dtype dtype, int32_t ndim, const int64_t *shape, guint8 seed) {
  GError *err = NULL;
  ps_tensor *t = ps_tensor_new(dtype, ndim, shape, &err);
  g_assert_no_error(err);
  guint8 *p = t->data;
  for (size_t i = 0; i < t->nbytes; i++)
    p[i] = (guint8)(seed + 7 * i);
  if (dtype == PS_DTYPE_BOOL)
    for (size_t i = 0; i < t->nbytes; i++)
      p[i] &= 1;
  return t;
}

/* ---------------------------------------------------------------------- */
/* Round trip */

static void test_round_trip(const char *dir) {
  GError *err = NULL;
  g_autofree char *path = g_build_filename(dir, "rt.safetensors", NULL);
  struct {
    const char *name;
    ps_dtype dtype;
    int32_t ndim;
    int64_t shape[3];
  } specs[] = {
      {"w.f32", PS_DTYPE_F32, 2, {2, 3}}, {"w.f64", PS_DTYPE_F64, 1, {3}},
      {"w.bf16", PS_DTYPE_BF16, 2, {2, 2}}, {"w.f16", PS_DTYPE_F16, 1, {5}},
      {"i.i32", PS_DTYPE_I32, 1, {4}},     {"i.i64", PS_DTYPE_I64, 3, {1, 2, 1}},
      {"u.odd", PS_DTYPE_U8, 1, {3}},      {"b.mask", PS_DTYPE_BOOL, 1, {2}},
      {"scalar", PS_DTYPE_F32, 0, {0}},    {"empty", PS_DTYPE_F32, 2, {0, 4}},
      {"名前 \"q\"\n", PS_DTYPE_U8, 1, {1}},
  };
  const int n = G_N_ELEMENTS(specs);
  ps_tensor *ts[G_N_ELEMENTS(specs)];
  for (int i = 0; i < n; i++)
    ts[i] = filled(specs[i].dtype, specs[i].ndim, specs[i].shape, (guint8)(i * 31));
  /* Known values for the half types, checked through get_f32 below. */
  const float bf[4] = {1.5f, -2.0f, 0.15625f, 3.0e38f};
  for (int i = 0; i < 4; i++)
    ((uint16_t *)ts[2]->data)[i] = ps_f32_to_bf16(bf[i]);
  const float hf[5] = {1.0f, -0.5f, 65504.0f, 0x1p-24f, 0.0f};
  for (int i = 0; i < 5; i++)
    ((uint16_t *)ts[3]->data)[i] = ps_f32_to_f16(hf[i]);
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  for (int i = 0; i < n; i++)
    PS_CHECK_OK(ps_safetensors_writer_add(w, specs[i].name, ts[i], &err), err);
  PS_CHECK_FAILS_WITH(ps_safetensors_writer_add(w, "w.f32", ts[0], &err), err, "duplicate");
  PS_CHECK_FAILS_WITH(ps_safetensors_writer_add(w, "__metadata__", ts[0], &err), err,
                      "invalid tensor name");
  ps_safetensors_writer_set_metadata(w, "format", "pt");
  ps_safetensors_writer_set_metadata(w, "config", "{\"x\": [1, 2], \"s\": \"\\\\\"}");
  ps_safetensors_writer_set_metadata(w, "ünï", "ß\n\t\x01");
  ps_safetensors_writer_set_metadata(w, "format", "np"); /* replaces, keeps position */
  PS_CHECK_OK(ps_safetensors_writer_write(w, path, &err), err);

  /* The file's layout, checked on the raw bytes. */
  g_autofree char *raw = NULL;
  gsize raw_len = 0;
  PS_CHECK(g_file_get_contents(path, &raw, &raw_len, NULL));
  PS_CHECK(raw_len >= 8);
  guint64 hlen = read_u64le((const guint8 *)raw);
  PS_CHECK(hlen % 8 == 0);
  PS_CHECK(8 + hlen <= raw_len);
  g_autofree char *header = g_strndup(raw + 8, hlen);
  PS_CHECK(g_str_has_prefix(header, "{\"__metadata__\":{"));
  /* Sorted by descending element size, then name: the 8-byte dtypes first. */
  const char *order[] = {"\"i.i64\"", "\"w.f64\"", "\"empty\"", "\"i.i32\"", "\"scalar\"",
                         "\"w.f32\"",  "\"w.bf16\"", "\"w.f16\"", "\"b.mask\"", "\"u.odd\""};
  const char *prev = header;
  for (size_t i = 0; i < G_N_ELEMENTS(order); i++) {
    const char *at = strstr(header, order[i]);
    PS_CHECK_MSG(at != NULL && at > prev, "%s out of order in %s", order[i], header);
    if (at)
      prev = at;
  }

  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st != NULL) {
    PS_CHECK(ps_safetensors_count(st) == (size_t)n);
    PS_CHECK(strcmp(ps_safetensors_path(st), path) == 0);
    /* File order = offset order: i64 first, the odd U8 and the name last
     * (both 1-byte, "u.odd" < the UTF-8 name). */
    PS_CHECK(strcmp(ps_safetensors_name(st, 0), "i.i64") == 0);
    PS_CHECK(ps_safetensors_name(st, (size_t)n) == NULL);
    for (int i = 0; i < n; i++) {
      PS_CHECK(ps_safetensors_has(st, specs[i].name));
      const ps_tensor *t = ps_safetensors_get(st, specs[i].name, &err);
      PS_CHECK_OK(t != NULL, err);
      if (!t)
        continue;
      PS_CHECK_MSG(t->dtype == specs[i].dtype && t->ndim == specs[i].ndim, "%s", specs[i].name);
      PS_CHECK(ps_tensor_has_shape(t, ts[i]->ndim, ts[i]->shape));
      PS_CHECK(t->nbytes == ts[i]->nbytes);
      PS_CHECK(!t->owns_data);
      PS_CHECK_MSG(t->nbytes == 0 || memcmp(t->data, ts[i]->data, t->nbytes) == 0, "%s bytes",
                   specs[i].name);
      PS_CHECK(t->nbytes == 0 || (uintptr_t)t->data % ps_dtype_size(t->dtype) == 0);
    }
    PS_CHECK(ps_tensor_numel(ps_safetensors_get(st, "scalar", NULL)) == 1);
    PS_CHECK(ps_safetensors_get(st, "empty", NULL)->nbytes == 0);

    g_autoptr(ps_tensor) b32 = ps_safetensors_get_f32(st, "w.bf16", &err);
    PS_CHECK_OK(b32 != NULL, err);
    if (b32) {
      PS_CHECK(ps_f32(b32)[0] == 1.5f && ps_f32(b32)[1] == -2.0f && ps_f32(b32)[2] == 0.15625f);
      PS_CHECK_NEAR(ps_f32(b32)[3], 3.0e38, 3.0e38 / 128); /* bf16 has 8 significant bits */
    }
    g_autoptr(ps_tensor) h32 = ps_safetensors_get_f32(st, "w.f16", &err);
    PS_CHECK_OK(h32 != NULL, err);
    if (h32)
      for (int i = 0; i < 5; i++)
        PS_CHECK(ps_f32(h32)[i] == hf[i]);
    PS_CHECK_FAILS_WITH(ps_safetensors_get(st, "nope", &err), err, "no tensor 'nope'");
    PS_CHECK_FAILS_WITH(ps_safetensors_get_f32(st, "nope", &err), err, "rt.safetensors");

    PS_CHECK(g_strcmp0(ps_safetensors_metadata(st, "format"), "np") == 0);
    PS_CHECK(g_strcmp0(ps_safetensors_metadata(st, "config"), "{\"x\": [1, 2], \"s\": \"\\\\\"}") ==
             0);
    PS_CHECK(g_strcmp0(ps_safetensors_metadata(st, "ünï"), "ß\n\t\x01") == 0);
    PS_CHECK(ps_safetensors_metadata(st, "missing") == NULL);
    g_autofree const char **keys = ps_safetensors_metadata_keys(st);
    PS_CHECK(keys[0] && strcmp(keys[0], "format") == 0 && keys[1] &&
             strcmp(keys[1], "config") == 0 && keys[2] && strcmp(keys[2], "ünï") == 0 &&
             keys[3] == NULL);
  }
  for (int i = 0; i < n; i++)
    ps_tensor_free(ts[i]);
}

/* An empty writer gives "{}" padded to 8, which must read back. */
static void test_empty_file(const char *dir) {
  GError *err = NULL;
  g_autofree char *path = g_build_filename(dir, "empty.safetensors", NULL);
  g_autoptr(ps_safetensors_writer) w = ps_safetensors_writer_new();
  PS_CHECK_OK(ps_safetensors_writer_write(w, path, &err), err);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st) {
    PS_CHECK(ps_safetensors_count(st) == 0);
    g_autofree const char **keys = ps_safetensors_metadata_keys(st);
    PS_CHECK(keys[0] == NULL);
  }
  struct stat sb;
  PS_CHECK(g_stat(path, &sb) == 0 && sb.st_size == 16);
}

/* ---------------------------------------------------------------------- */
/* The real fixture */

static void test_fixture(void) {
  GError *err = NULL;
  g_autofree char *path = ps_test_source_path("tests/fixtures/gae.safetensors");
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st == NULL)
    return;
  /* FORMAT.md: inputs, outputs and traces, in data-offset order. */
  const struct {
    const char *name;
    ps_dtype dtype;
    int32_t ndim;
    int64_t shape[2];
  } want[] = {
      {"input.mask", PS_DTYPE_I64, 2, {6, 16}},
      {"input.rewards", PS_DTYPE_F32, 2, {6, 16}},
      {"input.seq_len", PS_DTYPE_I64, 1, {6}},
      {"input.values", PS_DTYPE_F32, 2, {6, 16}},
      {"output.advantages", PS_DTYPE_F32, 2, {6, 16}},
      {"output.advantages_whitened", PS_DTYPE_F32, 2, {6, 16}},
      {"output.returns", PS_DTYPE_F32, 2, {6, 16}},
      {"trace.scores", PS_DTYPE_F32, 1, {6}},
  };
  PS_CHECK(ps_safetensors_count(st) == G_N_ELEMENTS(want));
  for (size_t i = 0; i < G_N_ELEMENTS(want) && i < ps_safetensors_count(st); i++) {
    PS_CHECK_MSG(strcmp(ps_safetensors_name(st, i), want[i].name) == 0, "%zu: %s", i,
                 ps_safetensors_name(st, i));
    const ps_tensor *t = ps_safetensors_get(st, want[i].name, &err);
    PS_CHECK_OK(t != NULL, err);
    PS_CHECK_OK(ps_tensor_check(t, want[i].name, want[i].dtype, want[i].ndim, want[i].shape, &err),
                err);
  }
  /* FORMAT.md's metadata keys. */
  const char *keys[] = {"component", "config", "source", "tolerance", "notes"};
  for (size_t i = 0; i < G_N_ELEMENTS(keys); i++)
    PS_CHECK_MSG(ps_safetensors_metadata(st, keys[i]) != NULL, "metadata %s", keys[i]);
  PS_CHECK(g_strcmp0(ps_safetensors_metadata(st, "component"), "rl.gae") == 0);
  g_autofree const char **all = ps_safetensors_metadata_keys(st);
  PS_CHECK(g_strv_length((char **)all) == G_N_ELEMENTS(keys));
  PS_CHECK(strstr(ps_safetensors_metadata(st, "config"), "\"gamma\": 0.99") != NULL);

  /* The data, checked against what the notes say about it: returns =
   * advantages + values; mask[b, t] = (t <= seq_len[b]). */
  g_autoptr(ps_tensor) adv = ps_safetensors_get_f32(st, "output.advantages", &err);
  g_autoptr(ps_tensor) val = ps_safetensors_get_f32(st, "input.values", &err);
  g_autoptr(ps_tensor) ret = ps_safetensors_get_f32(st, "output.returns", &err);
  const ps_tensor *mask = ps_safetensors_get(st, "input.mask", &err);
  const ps_tensor *len = ps_safetensors_get(st, "input.seq_len", &err);
  PS_CHECK_OK(adv && val && ret && mask && len, err);
  if (!(adv && val && ret && mask && len))
    return;
  double max_diff = 0;
  int mask_bad = 0, nonzero = 0;
  for (int b = 0; b < 6; b++) {
    for (int t = 0; t < 16; t++) {
      int i = b * 16 + t;
      max_diff = fmax(max_diff, fabs((double)ps_f32(ret)[i] -
                                     ((double)ps_f32(adv)[i] + (double)ps_f32(val)[i])));
      int64_t m = ((const int64_t *)mask->data)[i];
      mask_bad += m != (t <= ((const int64_t *)len->data)[b]);
      nonzero += ps_f32(adv)[i] != 0;
    }
  }
  PS_CHECK_MSG(max_diff < 1e-5, "returns - (adv + values) = %g", max_diff);
  PS_CHECK(mask_bad == 0);
  PS_CHECK(nonzero > 48);
  /* Row 0 is full length, row 1 one token (notes). */
  PS_CHECK(((const int64_t *)len->data)[0] == 15 && ((const int64_t *)len->data)[1] == 0);
}

/* ---------------------------------------------------------------------- */
/* Corrupt inputs */

typedef struct {
  const char *what;
  const char *json;  /* NULL: `raw` is the whole file */
  gsize data_len;
  gssize adjust;     /* bytes removed (<0) or appended (>0) at the end */
  const char *needle;
} corrupt_case;

static const corrupt_case corrupt_cases[] = {
    {"valid", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 0, NULL},
    {"truncated", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, -3,
     "truncated"},
    {"trailing bytes", "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, 3,
     "3 trailing bytes"},
    {"not an object", "[1, 2]", 0, 0, "not a JSON object"},
    {"empty header", "", 0, 0, "does not start with '{'"},
    {"invalid json", "{\"a\":", 0, 0, "invalid JSON"},
    {"invalid json colon", "{\"a\" 1}", 0, 0, "invalid JSON in header at byte 5: expected ':'"},
    {"invalid json comma", "{\"a\":{\"dtype\":\"F32\" \"shape\":[]}}", 0, 0, "invalid JSON"},
    {"garbage after", "{} x", 0, 0, "unexpected data after"},
    {"invalid utf-8", "{\"\xff\":1}", 0, 0, "not valid UTF-8"},
    {"nul escape", "{\"a\\u0000b\":{}}", 0, 0, "NUL character"},
    {"lone surrogate", "{\"\\udc00\":{}}", 0, 0, "unpaired surrogate"},
    {"unknown dtype", "{\"a\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1,
     0, "tensor 'a': unknown or unsupported dtype 'F8_E4M3'"},
    {"dtype not string", "{\"a\":{\"dtype\":4,\"shape\":[1],\"data_offsets\":[0,4]}}", 4, 0,
     "dtype is not a string"},
    {"size mismatch", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}", 12,
     0, "tensor 'w': data_offsets [0, 12] span 12 bytes but F32 [2, 2] needs 16"},
    {"overlap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
     12, 0, "tensor 'b': data_offsets [4, 12] overlap tensor 'a'"},
    {"gap",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
     "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[8,12]}}",
     12, 0, "gap of 4 bytes after tensor 'a'"},
    {"not at 0", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", 8, 0,
     "the first tensor must begin at 0"},
    {"end before begin", "{\"a\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,0]}}", 4, 0,
     "end before they begin"},
    {"negative shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, 0,
     "tensor 'a': shape: -1 is negative"},
    {"negative offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 4, 0,
     "data_offsets: -4 is negative"},
    {"fractional offset", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4.0]}}", 4,
     0, "data_offsets: 4.0 is not an integer"},
    {"exponent shape", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1e0],\"data_offsets\":[0,4]}}", 4, 0,
     "shape: 1e0 is not an integer"},
    {"huge integer",
     "{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,18446744073709551620]}}", 4, 0,
     "is too large"},
    {"leading zero", "{\"a\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,4]}}", 4, 0,
     "leading zeros"},
    {"shape not array", "{\"a\":{\"dtype\":\"F32\",\"shape\":4,\"data_offsets\":[0,4]}}", 4, 0,
     "shape is not an array"},
    {"count overflow",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[67108864,67108864,67108864],\"data_offsets\":[0,4]}}", 4,
     0, "element count of U8 [67108864, 67108864, 67108864] overflows"},
    {"byte overflow",
     "{\"a\":{\"dtype\":\"F64\",\"shape\":[2147483648,2147483648,2],\"data_offsets\":[0,4]}}", 4,
     0, "byte size of F64"},
    {"too many dims",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1,1,1,1,1,1,1],\"data_offsets\":[0,1]}}", 1, 0,
     "has more than 6 entries"},
    {"offsets one entry", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0]}}", 1, 0,
     "data_offsets has 1 entries"},
    {"offsets three entries", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1,2]}}",
     1, 0, "data_offsets has more than 2 entries"},
    {"offsets not array", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":\"0-1\"}}", 1, 0,
     "data_offsets is not an array"},
    {"missing dtype", "{\"a\":{\"shape\":[1],\"data_offsets\":[0,1]}}", 1, 0,
     "tensor 'a': missing 'dtype'"},
    {"missing offsets", "{\"a\":{\"dtype\":\"U8\",\"shape\":[1]}}", 1, 0,
     "missing 'data_offsets'"},
    {"entry not object", "{\"a\":[1,2]}", 0, 0, "tensor 'a': entry is not a JSON object"},
    {"duplicate tensor",
     "{\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
     "\"a\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
     2, 0, "duplicate tensor 'a'"},
    {"duplicate field", "{\"a\":{\"dtype\":\"U8\",\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]}}",
     1, 0, "tensor 'a': duplicate key 'dtype'"},
    {"metadata not string", "{\"__metadata__\":{\"k\":1}}", 0, 0,
     "__metadata__: value of 'k' is not a string"},
    {"metadata nested", "{\"__metadata__\":{\"k\":{\"x\":\"y\"}}}", 0, 0,
     "value of 'k' is not a string"},
    {"metadata not object", "{\"__metadata__\":\"x\"}", 0, 0, "__metadata__ is not an object"},
    {"metadata duplicate key", "{\"__metadata__\":{\"k\":\"1\",\"k\":\"2\"}}", 0, 0,
     "__metadata__: duplicate key 'k'"},
    {"metadata twice", "{\"__metadata__\":{},\"__metadata__\":{}}", 0, 0,
     "duplicate key '__metadata__'"},
    {"deep nesting",
     "{\"a\":{\"x\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["
     "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]],"
     "\"dtype\":\"U8\",\"shape\":[],\"data_offsets\":[0,1]}}",
     1, 0, "nesting deeper than 64"},
    /* Accepted oddities: unknown fields are ignored, null metadata, padding
     * with spaces and other JSON whitespace, escapes in names. */
    {"unknown field and null metadata",
     "{\"__metadata__\":null,\"a\\n\\u00e9\\ud83d\\ude00\":{\"x\":[1,{\"y\":null}],\"dtype\":"
     "\"BOOL\",\"shape\":[],\"data_offsets\":[0,1]}} \t\r\n   ",
     1, 0, NULL},
};

static void test_corrupt_table(void) {
  for (size_t i = 0; i < G_N_ELEMENTS(corrupt_cases); i++) {
    const corrupt_case *c = &corrupt_cases[i];
    g_autoptr(GByteArray) b = make_file(c->json, 0, c->data_len);
    if (c->adjust < 0)
      g_byte_array_set_size(b, b->len - (guint)(-c->adjust));
    for (gssize k = 0; k < c->adjust; k++) {
      guint8 z = 0;
      g_byte_array_append(b, &z, 1);
    }
    GError *err = NULL;
    ps_safetensors *st = ps_safetensors_open_buffer(b->data, b->len, c->what, &err);
    if (c->needle == NULL) {
      PS_CHECK_MSG(st != NULL, "case '%s' should be accepted: %s", c->what,
                   err ? err->message : "?");
    } else {
      g_autofree char *label = g_strdup_printf("%s: ", c->what);
      PS_CHECK_MSG(st == NULL && err && strstr(err->message, c->needle) &&
                       g_str_has_prefix(err->message, label) && err->domain == PS_ERROR,
                   "case '%s': expected \"%s\", got %s", c->what, c->needle,
                   err ? err->message : "success");
    }
    g_clear_error(&err);
    ps_safetensors_close(st);
  }
}

/* Checks on the first 8 bytes, which the table cannot express as JSON. */
static void test_corrupt_length(const char *dir) {
  GError *err = NULL;
  const guint8 tiny[5] = {1, 0, 0, 0, 0};
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(tiny, sizeof tiny, "tiny", &err), err,
                      "tiny: file is 5 bytes, too small");
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(NULL, 0, "null", &err), err, "too small");
  guint8 huge[16] = {0, 0, 0, 0, 0, 1, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(huge, sizeof huge, "huge", &err), err,
                      "header length 1099511627776 exceeds the limit");
  guint8 all_ones[16];
  memset(all_ones, 0xff, sizeof all_ones);
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(all_ones, sizeof all_ones, "ff", &err), err,
                      "exceeds the limit");
  guint8 beyond[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(beyond, sizeof beyond, "beyond", &err), err,
                      "header length 100 runs past the end of the file (16 bytes)");
  /* Exactly at the limit but beyond the file: the length check, not a read. */
  guint8 limit[16] = {0x00, 0xe1, 0xf5, 0x05, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
  PS_CHECK_FAILS_WITH(ps_safetensors_open_buffer(limit, sizeof limit, "limit", &err), err,
                      "runs past the end");

  /* Through the file API: a missing file and a truncated one name the path. */
  g_autofree char *missing = g_build_filename(dir, "missing.safetensors", NULL);
  PS_CHECK_FAILS_WITH(ps_safetensors_open(missing, &err), err, "missing.safetensors: cannot open");
  g_autofree char *small = g_build_filename(dir, "small.safetensors", NULL);
  PS_CHECK(g_file_set_contents(small, "abc", 3, NULL));
  PS_CHECK_FAILS_WITH(ps_safetensors_open(small, &err), err, "small.safetensors: file is 3 bytes");
  g_autofree char *empty = g_build_filename(dir, "zero.safetensors", NULL);
  PS_CHECK(g_file_set_contents(empty, "", 0, NULL));
  PS_CHECK_FAILS_WITH(ps_safetensors_open(empty, &err), err, "too small");
  g_unlink(small);
  g_unlink(empty);
}

/* ---------------------------------------------------------------------- */
/* Misalignment */

static void test_misaligned(const char *dir) {
  GError *err = NULL;
  /* U8 [3] at [0, 3] then F32 [2] at [3, 11]: with 8 + N a multiple of 8
   * the F32 data sits at an odd address. */
  g_autoptr(GByteArray) b = make_file("{\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[0,3]},"
                                      "\"f\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[3,11]},"
                                      "\"z\":{\"dtype\":\"I64\",\"shape\":[0],\"data_offsets\":[11,11]}}",
                                      8, 11);
  const guint64 hlen = read_u64le(b->data);
  const float want[2] = {1.25f, -3.5f};
  memcpy(b->data + 8 + hlen + 3, want, 8);
  /* A 64-byte aligned copy so the buffer's own alignment is known. */
  void *buf = NULL;
  PS_CHECK(posix_memalign(&buf, 64, b->len) == 0);
  memcpy(buf, b->data, b->len);
  const guint8 *base = (const guint8 *)buf + 8 + hlen;
  g_autoptr(ps_safetensors) st = ps_safetensors_open_buffer(buf, b->len, "misaligned", &err);
  PS_CHECK_OK(st != NULL, err);
  if (st) {
    const ps_tensor *f = ps_safetensors_get(st, "f", &err);
    PS_CHECK_OK(f != NULL, err);
    if (f) {
      PS_CHECK((uintptr_t)f->data % 4 == 0);
      PS_CHECK((const guint8 *)f->data != base + 3); /* a copy */
      PS_CHECK(ps_f32(f)[0] == 1.25f && ps_f32(f)[1] == -3.5f);
      /* The same view again (no second copy). */
      PS_CHECK(ps_safetensors_get(st, "f", NULL) == f && f->data == ps_safetensors_get(st, "f", NULL)->data);
    }
    const ps_tensor *a = ps_safetensors_get(st, "a", &err);
    PS_CHECK_OK(a != NULL, err);
    if (a) /* U8 is always aligned: a zero-copy view into the buffer */
      PS_CHECK((const guint8 *)a->data == base && ((const guint8 *)a->data)[2] == 2);
    const ps_tensor *z = ps_safetensors_get(st, "z", &err);
    PS_CHECK_OK(z != NULL && z->nbytes == 0 && ps_tensor_numel(z) == 0, err);
    g_autoptr(ps_tensor) f32 = ps_safetensors_get_f32(st, "f", &err);
    PS_CHECK_OK(f32 != NULL, err);
    if (f32)
      PS_CHECK(ps_f32(f32)[0] == 1.25f && ps_f32(f32)[1] == -3.5f);
  }
  g_clear_pointer(&st, ps_safetensors_close);

  /* The same through mmap (page-aligned base). */
  g_autofree char *path = g_build_filename(dir, "misaligned.safetensors", NULL);
  PS_CHECK(g_file_set_contents(path, (const char *)b->data, b->len, NULL));
  st = ps_safetensors_open(path, &err);
  PS_CHECK_OK(st != NULL, err);
  if (st) {
    const ps_tensor *f = ps_safetensors_get(st, "f", &err);
    PS_CHECK_OK(f != NULL, err);
    if (f)
      PS_CHECK((uintptr_t)f->data % 4 == 0 && ps_f32(f)[0] == 1.25f && ps_f32(f)[1] == -3.5f);
  }
  free(buf);
  g_unlink(path);
}

/* ---------------------------------------------------------------------- */
/* Writer atomicity */

static ps_safetensors_writer *writer_with(float value, int64_t n) {
  ps_safetensors_writer *w = ps_safetensors_writer_new();
  g_autoptr(ps_tensor) t = ps_tensor_new(PS_DTYPE_F32, 1, &n, NULL);
  for (int64_t i = 0; i < n; i++)
    ps_f32(t)[i] = value;
  ps_safetensors_writer_add(w, "x", t, NULL);
  return w;
}

static void test_atomic(const char *dir) {
  GError *err = NULL;
  g_autofree char *bad = g_build_filename(dir, "no-such-dir", "a.safetensors", NULL);
  g_autoptr(ps_safetensors_writer) w1 = writer_with(1.0f, 4);
  PS_CHECK_FAILS_WITH(ps_safetensors_writer_write(w1, bad, &err), err, "no-such-dir/a.safetensors");
  g_autofree char *bad_dir = g_path_get_dirname(bad);
  PS_CHECK(!g_file_test(bad_dir, G_FILE_TEST_EXISTS));

  /* Replace a file that is open (mmapped): the old mapping keeps the old
   * contents, a new open sees the new ones. */
  g_autofree char *sub = g_build_filename(dir, "atomic", NULL);
  PS_CHECK(g_mkdir(sub, 0700) == 0);
  g_autofree char *path = g_build_filename(sub, "m.safetensors", NULL);
  PS_CHECK_OK(ps_safetensors_writer_write(w1, path, &err), err);
  g_autoptr(ps_safetensors) old = ps_safetensors_open(path, &err);
  PS_CHECK_OK(old != NULL, err);
  g_autoptr(ps_safetensors_writer) w2 = writer_with(2.0f, 6);
  PS_CHECK_OK(ps_safetensors_writer_write(w2, path, &err), err);
  if (old) {
    const ps_tensor *x = ps_safetensors_get(old, "x", NULL);
    PS_CHECK(x && ps_tensor_numel(x) == 4 && ps_f32(x)[3] == 1.0f);
  }
  g_autoptr(ps_safetensors) now = ps_safetensors_open(path, &err);
  PS_CHECK_OK(now != NULL, err);
  if (now) {
    const ps_tensor *x = ps_safetensors_get(now, "x", NULL);
    PS_CHECK(x && ps_tensor_numel(x) == 6 && ps_f32(x)[5] == 2.0f);
  }
  PS_CHECK(count_dir_entries(sub) == 1); /* no temp files left */

  /* A failing write (the file size limit stands in for a full disk): an
   * error, the old file untouched, no temp file left. */
  g_autofree char *before = NULL;
  gsize before_len = 0;
  PS_CHECK(g_file_get_contents(path, &before, &before_len, NULL));
  struct rlimit saved;
  PS_CHECK(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
  g_autoptr(ps_safetensors_writer) big = writer_with(3.0f, 100000);
  if (setrlimit(RLIMIT_FSIZE, &small) == 0) {
    PS_CHECK_FAILS_WITH(ps_safetensors_writer_write(big, path, &err), err, "write failed");
    PS_CHECK(setrlimit(RLIMIT_FSIZE, &saved) == 0);
    g_autofree char *after = NULL;
    gsize after_len = 0;
    PS_CHECK(g_file_get_contents(path, &after, &after_len, NULL));
    PS_CHECK(after_len == before_len && memcmp(before, after, after_len) == 0);
    PS_CHECK(count_dir_entries(sub) == 1);
  }
  signal(SIGXFSZ, prev);
  /* And once the limit is gone the same writer succeeds. */
  PS_CHECK_OK(ps_safetensors_writer_write(big, path, &err), err);
  g_clear_pointer(&now, ps_safetensors_close);
  now = ps_safetensors_open(path, &err);
  PS_CHECK_OK(now != NULL && ps_tensor_numel(ps_safetensors_get(now, "x", NULL)) == 100000, err);
  PS_CHECK(count_dir_entries(sub) == 1);

  /* Writing over a directory fails (rename) and cleans up its temp file. */
  g_autofree char *dpath = g_build_filename(sub, "adir", NULL);
  PS_CHECK(g_mkdir(dpath, 0700) == 0);
  g_autofree char *inner = g_build_filename(dpath, "keep", NULL);
  PS_CHECK(g_file_set_contents(inner, "k", 1, NULL));
  PS_CHECK_FAILS_WITH(ps_safetensors_writer_write(w1, dpath, &err), err, "cannot rename");
  PS_CHECK(count_dir_entries(sub) == 2);
  g_unlink(inner);
  g_rmdir(dpath);
  g_unlink(path);
  g_rmdir(sub);
}

static void rm_rf(const char *dir) {
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;
  while (d && (name = g_dir_read_name(d))) {
    g_autofree char *p = g_build_filename(dir, name, NULL);
    if (g_file_test(p, G_FILE_TEST_IS_DIR))
      rm_rf(p);
    else
      g_unlink(p);
  }
  g_rmdir(dir);
}

int main(void) {
  g_autofree char *dir = g_dir_make_tmp("pathseg-st-XXXXXX", NULL);
  g_assert(dir != NULL);
  test_round_trip(dir);
  test_empty_file(dir);
  test_fixture();
  test_corrupt_table();
  test_corrupt_length(dir);
  test_misaligned(dir);
  test_atomic(dir);
  rm_rf(dir);
  return ps_test_finish();
}
