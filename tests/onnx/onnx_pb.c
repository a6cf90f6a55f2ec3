/* onnx_pb.c — bounds-checked protobuf wire-format decoding of ONNX
 * TensorProto and ModelProto (see onnx_pb.h for what is kept).
 *
 * The wire format is a sequence of (key varint, value) pairs where the key is
 * field_number << 3 | wire_type. Every read goes through pb_reader, whose
 * cursor never moves past `end`; a length that points outside the buffer or a
 * varint longer than 10 bytes is an error. Unknown fields are skipped, so
 * newer ONNX files with extra fields still load. */
#include "onnx_pb.h"

#include <pathseg/error.h>
#include <string.h>

enum { WT_VARINT = 0, WT_I64 = 1, WT_LEN = 2, WT_I32 = 5 };

typedef struct {
  const uint8_t *p, *end;
  const char *what; /* file name for messages */
} pb_reader;

/* A sub-message or packed field: the bytes of one length-delimited value. */
typedef struct {
  const uint8_t *p;
  size_t len;
} pb_bytes;

static gboolean pb_fail(const pb_reader *r, GError **error, const char *msg) {
  g_set_error(error, PS_ERROR, PS_ERROR_PARSE, "%s: corrupt protobuf: %s", r->what, msg);
  return FALSE;
}

static gboolean pb_varint(pb_reader *r, uint64_t *out, GError **error) {
  uint64_t v = 0;
  for (int shift = 0; shift < 70; shift += 7) {
    if (r->p >= r->end) return pb_fail(r, error, "truncated varint");
    uint8_t b = *r->p++;
    v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *out = v;
      return TRUE;
    }
  }
  return pb_fail(r, error, "varint longer than 10 bytes");
}

static gboolean pb_fixed(pb_reader *r, void *out, size_t n, GError **error) {
  if ((size_t)(r->end - r->p) < n) return pb_fail(r, error, "truncated fixed-width value");
  memcpy(out, r->p, n); /* little-endian on every supported host */
  r->p += n;
  return TRUE;
}

static gboolean pb_len(pb_reader *r, pb_bytes *out, GError **error) {
  uint64_t n;
  if (!pb_varint(r, &n, error)) return FALSE;
  if (n > (uint64_t)(r->end - r->p)) return pb_fail(r, error, "length runs past the end");
  out->p = r->p;
  out->len = (size_t)n;
  r->p += n;
  return TRUE;
}

/* Reads a key; FALSE with *field = 0 at the clean end of the message. */
static gboolean pb_key(pb_reader *r, uint32_t *field, uint32_t *wt, GError **error) {
  uint64_t k;
  if (!pb_varint(r, &k, error)) return FALSE;
  if ((k >> 3) == 0 || (k >> 3) > 0x1fffffff) return pb_fail(r, error, "invalid field number");
  *field = (uint32_t)(k >> 3);
  *wt = (uint32_t)(k & 7);
  return TRUE;
}

static gboolean pb_skip(pb_reader *r, uint32_t wt, GError **error) {
  uint64_t v;
  pb_bytes b;
  switch (wt) {
  case WT_VARINT:
    return pb_varint(r, &v, error);
  case WT_I64:
    return pb_fixed(r, &v, 8, error);
  case WT_LEN:
    return pb_len(r, &b, error);
  case WT_I32:
    return pb_fixed(r, &v, 4, error);
  default:
    return pb_fail(r, error, "unsupported wire type (groups are not used by ONNX)");
  }
}

static pb_reader pb_sub(const pb_reader *parent, pb_bytes b) {
  return (pb_reader){b.p, b.p + b.len, parent->what};
}

static char *pb_string(pb_bytes b) { return g_strndup((const char *)b.p, b.len); }

static gboolean pb_expect(const pb_reader *r, uint32_t wt, uint32_t want, const char *field,
                          GError **error) {
  if (wt == want) return TRUE;
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: field %s has wire type %u, expected %u",
              r->what, field, wt, want);
  return FALSE;
}

/* Repeated int64 (or int32/enum) field, packed (WT_LEN) or not (WT_VARINT). */
static gboolean pb_repeated_varint(pb_reader *r, uint32_t wt, GArray *into, GError **error) {
  uint64_t v;
  if (wt == WT_VARINT) {
    if (!pb_varint(r, &v, error)) return FALSE;
    int64_t s = (int64_t)v;
    g_array_append_val(into, s);
    return TRUE;
  }
  if (wt != WT_LEN) return pb_fail(r, error, "repeated integer with a bad wire type");
  pb_bytes b;
  if (!pb_len(r, &b, error)) return FALSE;
  pb_reader sub = pb_sub(r, b);
  while (sub.p < sub.end) {
    if (!pb_varint(&sub, &v, error)) return FALSE;
    int64_t s = (int64_t)v;
    g_array_append_val(into, s);
  }
  return TRUE;
}

/* Repeated fixed-width field (float: 4, double: 8), packed or not. */
static gboolean pb_repeated_fixed(pb_reader *r, uint32_t wt, size_t width, GArray *into,
                                  GError **error) {
  uint8_t tmp[8];
  uint32_t single = width == 4 ? WT_I32 : WT_I64;
  if (wt == single) {
    if (!pb_fixed(r, tmp, width, error)) return FALSE;
    g_array_append_vals(into, tmp, 1);
    return TRUE;
  }
  if (wt != WT_LEN) return pb_fail(r, error, "repeated fixed-width value with a bad wire type");
  pb_bytes b;
  if (!pb_len(r, &b, error)) return FALSE;
  if (b.len % width) return pb_fail(r, error, "packed fixed-width field of odd length");
  g_array_append_vals(into, b.p, (guint)(b.len / width));
  return TRUE;
}

/* ------------------------------------------------------------------ tensors */

void onnx_tensor_free(onnx_tensor *t) {
  if (!t) return;
  g_free(t->name);
  g_free(t->f);
  g_free(t->i);
  g_free(t);
}

static size_t raw_width(int32_t dt) {
  switch (dt) {
  case ONNX_FLOAT:
  case ONNX_INT32:
    return 4;
  case ONNX_DOUBLE:
  case ONNX_INT64:
    return 8;
  case ONNX_UINT8:
  case ONNX_INT8:
  case ONNX_BOOL:
    return 1;
  default:
    return 0;
  }
}

static gboolean is_float_type(int32_t dt) { return dt == ONNX_FLOAT || dt == ONNX_DOUBLE; }

static onnx_tensor *tensor_from_reader(pb_reader *r, GError **error) {
  g_autoptr(onnx_tensor) t = g_new0(onnx_tensor, 1);
  g_autoptr(GArray) dims = g_array_new(FALSE, FALSE, sizeof(int64_t));
  g_autoptr(GArray) floats = g_array_new(FALSE, FALSE, sizeof(float));
  g_autoptr(GArray) doubles = g_array_new(FALSE, FALSE, sizeof(double));
  g_autoptr(GArray) ints = g_array_new(FALSE, FALSE, sizeof(int64_t)); /* int32_data / int64_data */
  pb_bytes raw = {NULL, 0};
  gboolean have_raw = FALSE;
  uint64_t v;
  pb_bytes b;

  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) return NULL;
    switch (field) {
    case 1: /* dims */
      if (!pb_repeated_varint(r, wt, dims, error)) return NULL;
      break;
    case 2: /* data_type */
      if (!pb_expect(r, wt, WT_VARINT, "data_type", error) || !pb_varint(r, &v, error))
        return NULL;
      t->data_type = (int32_t)v;
      break;
    case 4: /* float_data */
      if (!pb_repeated_fixed(r, wt, 4, floats, error)) return NULL;
      break;
    case 5: /* int32_data (also holds uint8/int8/bool/float16 values) */
    case 7: /* int64_data */
      if (!pb_repeated_varint(r, wt, ints, error)) return NULL;
      break;
    case 8: /* name */
      if (!pb_expect(r, wt, WT_LEN, "name", error) || !pb_len(r, &b, error)) return NULL;
      g_free(t->name);
      t->name = pb_string(b);
      break;
    case 9: /* raw_data */
      if (!pb_expect(r, wt, WT_LEN, "raw_data", error) || !pb_len(r, &raw, error)) return NULL;
      have_raw = TRUE;
      break;
    case 10: /* double_data */
      if (!pb_repeated_fixed(r, wt, 8, doubles, error)) return NULL;
      break;
    case 14: /* data_location: EXTERNAL is not supported */
      if (!pb_expect(r, wt, WT_VARINT, "data_location", error) || !pb_varint(r, &v, error))
        return NULL;
      if (v != 0) {
        g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s: external tensor data", r->what);
        return NULL;
      }
      break;
    default:
      if (!pb_skip(r, wt, error)) return NULL;
    }
  }

  if (dims->len > ONNX_MAX_DIMS) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: %u dims (at most %d)", r->what, dims->len,
                ONNX_MAX_DIMS);
    return NULL;
  }
  t->ndim = (int32_t)dims->len;
  int64_t numel = 1;
  for (guint d = 0; d < dims->len; d++) {
    int64_t n = g_array_index(dims, int64_t, d);
    if (n < 0 || (n > 0 && numel > (INT64_C(1) << 32) / n)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: bad or huge dimension %" G_GINT64_FORMAT,
                  r->what, n);
      return NULL;
    }
    t->dims[d] = n;
    numel *= n;
  }
  t->numel = numel;

  size_t w = raw_width(t->data_type);
  if (w == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s: unsupported data_type %d", r->what,
                t->data_type);
    return NULL;
  }
  /* Check the value count against the dims before allocating anything, so a
   * corrupt header cannot ask for gigabytes. */
  int64_t have;
  if (have_raw)
    have = raw.len % w ? -1 : (int64_t)(raw.len / w);
  else if (t->data_type == ONNX_FLOAT)
    have = floats->len;
  else if (t->data_type == ONNX_DOUBLE)
    have = doubles->len;
  else
    have = ints->len;
  if (have != numel) goto count_mismatch;
  gboolean fl = is_float_type(t->data_type);
  if (fl)
    t->f = g_new0(float, numel > 0 ? numel : 1);
  else
    t->i = g_new0(int64_t, numel > 0 ? numel : 1);

  if (have_raw) {
    for (int64_t k = 0; k < numel; k++) {
      const uint8_t *p = raw.p + k * w;
      switch (t->data_type) {
      case ONNX_FLOAT: memcpy(&t->f[k], p, 4); break;
      case ONNX_DOUBLE: { double d; memcpy(&d, p, 8); t->f[k] = (float)d; } break;
      case ONNX_INT32: { int32_t x; memcpy(&x, p, 4); t->i[k] = x; } break;
      case ONNX_INT64: memcpy(&t->i[k], p, 8); break;
      case ONNX_INT8: t->i[k] = (int8_t)p[0]; break;
      default: t->i[k] = p[0]; break; /* uint8, bool */
      }
    }
  } else if (t->data_type == ONNX_FLOAT) {
    if (numel) memcpy(t->f, floats->data, numel * sizeof(float));
  } else if (t->data_type == ONNX_DOUBLE) {
    for (int64_t k = 0; k < numel; k++) t->f[k] = (float)g_array_index(doubles, double, k);
  } else {
    if (numel) memcpy(t->i, ints->data, numel * sizeof(int64_t));
  }
  return g_steal_pointer(&t);

count_mismatch:
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
              "%s: tensor '%s' has %" G_GINT64_FORMAT " values for %" G_GINT64_FORMAT
              " elements",
              r->what, t->name ? t->name : "", have, numel);
  return NULL;
}

onnx_tensor *onnx_tensor_parse(const uint8_t *buf, size_t len, const char *what, GError **error) {
  pb_reader r = {buf, buf + len, what};
  return tensor_from_reader(&r, error);
}

static gboolean read_file(const char *path, gchar **data, gsize *len, GError **error) {
  if (!g_file_get_contents(path, data, len, error)) return FALSE;
  return TRUE;
}

onnx_tensor *onnx_tensor_load(const char *path, GError **error) {
  g_autofree gchar *data = NULL;
  gsize len = 0;
  if (!read_file(path, &data, &len, error)) return NULL;
  return onnx_tensor_parse((const uint8_t *)data, len, path, error);
}

/* ------------------------------------------------------------------- models */

static void attr_free(gpointer p) {
  onnx_attr *a = p;
  if (!a) return;
  g_free(a->name);
  g_free(a->s);
  if (a->floats) g_array_unref(a->floats);
  if (a->ints) g_array_unref(a->ints);
  onnx_tensor_free(a->t);
  g_free(a);
}

static void node_free(gpointer p) {
  onnx_node *n = p;
  if (!n) return;
  g_free(n->op_type);
  g_free(n->domain);
  g_ptr_array_unref(n->inputs);
  g_ptr_array_unref(n->outputs);
  g_ptr_array_unref(n->attrs);
  g_free(n);
}

void onnx_model_free(onnx_model *m) {
  if (!m) return;
  g_ptr_array_unref(m->nodes);
  g_ptr_array_unref(m->inputs);
  g_ptr_array_unref(m->outputs);
  g_ptr_array_unref(m->initializers);
  g_free(m);
}

static onnx_attr *parse_attr(pb_reader *r, GError **error) {
  onnx_attr *a = g_new0(onnx_attr, 1);
  a->floats = g_array_new(FALSE, FALSE, sizeof(float));
  a->ints = g_array_new(FALSE, FALSE, sizeof(int64_t));
  uint64_t v;
  pb_bytes b;
  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) goto fail;
    switch (field) {
    case 1: /* name */
      if (!pb_expect(r, wt, WT_LEN, "AttributeProto.name", error) || !pb_len(r, &b, error))
        goto fail;
      g_free(a->name);
      a->name = pb_string(b);
      break;
    case 2: /* f */
      if (!pb_expect(r, wt, WT_I32, "AttributeProto.f", error) || !pb_fixed(r, &a->f, 4, error))
        goto fail;
      break;
    case 3: /* i */
      if (!pb_expect(r, wt, WT_VARINT, "AttributeProto.i", error) || !pb_varint(r, &v, error))
        goto fail;
      a->i = (int64_t)v;
      break;
    case 4: /* s */
      if (!pb_expect(r, wt, WT_LEN, "AttributeProto.s", error) || !pb_len(r, &b, error))
        goto fail;
      g_free(a->s);
      a->s = pb_string(b);
      break;
    case 5: { /* t */
      if (!pb_expect(r, wt, WT_LEN, "AttributeProto.t", error) || !pb_len(r, &b, error))
        goto fail;
      pb_reader sub = pb_sub(r, b);
      onnx_tensor_free(a->t);
      if (!(a->t = tensor_from_reader(&sub, error))) goto fail;
      break;
    }
    case 7: /* floats */
      if (!pb_repeated_fixed(r, wt, 4, a->floats, error)) goto fail;
      break;
    case 8: /* ints */
      if (!pb_repeated_varint(r, wt, a->ints, error)) goto fail;
      break;
    case 20: /* type */
      if (!pb_expect(r, wt, WT_VARINT, "AttributeProto.type", error) || !pb_varint(r, &v, error))
        goto fail;
      a->type = (int32_t)v;
      break;
    default:
      if (!pb_skip(r, wt, error)) goto fail;
    }
  }
  if (!a->name) {
    pb_fail(r, error, "attribute without a name");
    goto fail;
  }
  return a;
fail:
  attr_free(a);
  return NULL;
}

static onnx_node *parse_node(pb_reader *r, GError **error) {
  onnx_node *n = g_new0(onnx_node, 1);
  n->inputs = g_ptr_array_new_with_free_func(g_free);
  n->outputs = g_ptr_array_new_with_free_func(g_free);
  n->attrs = g_ptr_array_new_with_free_func(attr_free);
  pb_bytes b;
  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) goto fail;
    if (field == 1 || field == 2 || field == 4 || field == 7) {
      if (!pb_expect(r, wt, WT_LEN, "NodeProto string", error) || !pb_len(r, &b, error))
        goto fail;
      char *s = pb_string(b);
      if (field == 1)
        g_ptr_array_add(n->inputs, s);
      else if (field == 2)
        g_ptr_array_add(n->outputs, s);
      else if (field == 4)
        g_free(n->op_type), n->op_type = s;
      else
        g_free(n->domain), n->domain = s;
    } else if (field == 5) {
      if (!pb_expect(r, wt, WT_LEN, "NodeProto.attribute", error) || !pb_len(r, &b, error))
        goto fail;
      pb_reader sub = pb_sub(r, b);
      onnx_attr *a = parse_attr(&sub, error);
      if (!a) goto fail;
      g_ptr_array_add(n->attrs, a);
    } else if (!pb_skip(r, wt, error)) {
      goto fail;
    }
  }
  if (!n->op_type) {
    pb_fail(r, error, "node without op_type");
    goto fail;
  }
  return n;
fail:
  node_free(n);
  return NULL;
}

/* ValueInfoProto: only the name (field 1) is kept. */
static char *parse_value_info_name(pb_reader *r, GError **error) {
  char *name = NULL;
  pb_bytes b;
  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) goto fail;
    if (field == 1) {
      if (!pb_expect(r, wt, WT_LEN, "ValueInfoProto.name", error) || !pb_len(r, &b, error))
        goto fail;
      g_free(name);
      name = pb_string(b);
    } else if (!pb_skip(r, wt, error)) {
      goto fail;
    }
  }
  if (!name) name = g_strdup("");
  return name;
fail:
  g_free(name);
  return NULL;
}

static gboolean parse_graph(pb_reader *r, onnx_model *m, GError **error) {
  pb_bytes b;
  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) return FALSE;
    if (field == 1 || field == 5 || field == 11 || field == 12) {
      if (!pb_expect(r, wt, WT_LEN, "GraphProto field", error) || !pb_len(r, &b, error))
        return FALSE;
      pb_reader sub = pb_sub(r, b);
      if (field == 1) {
        onnx_node *n = parse_node(&sub, error);
        if (!n) return FALSE;
        g_ptr_array_add(m->nodes, n);
      } else if (field == 5) {
        onnx_tensor *t = tensor_from_reader(&sub, error);
        if (!t) return FALSE;
        g_ptr_array_add(m->initializers, t);
      } else {
        char *name = parse_value_info_name(&sub, error);
        if (!name) return FALSE;
        g_ptr_array_add(field == 11 ? m->inputs : m->outputs, name);
      }
    } else if (!pb_skip(r, wt, error)) {
      return FALSE;
    }
  }
  return TRUE;
}

/* OperatorSetIdProto: domain=1, version=2. */
static gboolean parse_opset(pb_reader *r, onnx_model *m, GError **error) {
  g_autofree char *domain = NULL;
  int64_t version = 0;
  uint64_t v;
  pb_bytes b;
  while (r->p < r->end) {
    uint32_t field, wt;
    if (!pb_key(r, &field, &wt, error)) return FALSE;
    if (field == 1 && wt == WT_LEN) {
      if (!pb_len(r, &b, error)) return FALSE;
      g_free(domain);
      domain = pb_string(b);
    } else if (field == 2 && wt == WT_VARINT) {
      if (!pb_varint(r, &v, error)) return FALSE;
      version = (int64_t)v;
    } else if (!pb_skip(r, wt, error)) {
      return FALSE;
    }
  }
  if (!domain || !*domain || g_str_equal(domain, "ai.onnx")) m->opset = version;
  return TRUE;
}

onnx_model *onnx_model_parse(const uint8_t *buf, size_t len, const char *what, GError **error) {
  pb_reader r = {buf, buf + len, what};
  onnx_model *m = g_new0(onnx_model, 1);
  m->nodes = g_ptr_array_new_with_free_func(node_free);
  m->inputs = g_ptr_array_new_with_free_func(g_free);
  m->outputs = g_ptr_array_new_with_free_func(g_free);
  m->initializers = g_ptr_array_new_with_free_func((GDestroyNotify)onnx_tensor_free);
  gboolean have_graph = FALSE;
  uint64_t v;
  pb_bytes b;
  while (r.p < r.end) {
    uint32_t field, wt;
    if (!pb_key(&r, &field, &wt, error)) goto fail;
    if (field == 1 && wt == WT_VARINT) {
      if (!pb_varint(&r, &v, error)) goto fail;
      m->ir_version = (int64_t)v;
    } else if ((field == 7 || field == 8) && wt == WT_LEN) {
      if (!pb_len(&r, &b, error)) goto fail;
      pb_reader sub = pb_sub(&r, b);
      if (field == 7) {
        if (!parse_graph(&sub, m, error)) goto fail;
        have_graph = TRUE;
      } else if (!parse_opset(&sub, m, error)) {
        goto fail;
      }
    } else if (!pb_skip(&r, wt, error)) {
      goto fail;
    }
  }
  if (!have_graph) {
    pb_fail(&r, error, "model without a graph");
    goto fail;
  }
  return m;
fail:
  onnx_model_free(m);
  return NULL;
}

onnx_model *onnx_model_load(const char *path, GError **error) {
  g_autofree gchar *data = NULL;
  gsize len = 0;
  if (!read_file(path, &data, &len, error)) return NULL;
  return onnx_model_parse((const uint8_t *)data, len, path, error);
}

/* --------------------------------------------------------------- attributes */

const onnx_attr *onnx_node_attr(const onnx_node *node, const char *name) {
  for (guint k = 0; k < node->attrs->len; k++) {
    const onnx_attr *a = g_ptr_array_index(node->attrs, k);
    if (g_str_equal(a->name, name)) return a;
  }
  return NULL;
}

int64_t onnx_attr_int(const onnx_node *node, const char *name, int64_t dflt) {
  const onnx_attr *a = onnx_node_attr(node, name);
  return a ? a->i : dflt;
}

float onnx_attr_float(const onnx_node *node, const char *name, float dflt) {
  const onnx_attr *a = onnx_node_attr(node, name);
  return a ? a->f : dflt;
}

const char *onnx_attr_string(const onnx_node *node, const char *name, const char *dflt) {
  const onnx_attr *a = onnx_node_attr(node, name);
  return a && a->s ? a->s : dflt;
}

const int64_t *onnx_attr_ints(const onnx_node *node, const char *name, guint *n) {
  const onnx_attr *a = onnx_node_attr(node, name);
  if (!a || !a->ints->len) {
    *n = 0;
    return NULL;
  }
  *n = a->ints->len;
  return (const int64_t *)a->ints->data;
}
