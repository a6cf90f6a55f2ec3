/* test_onnx_pb.c — the ONNX protobuf reader on hand-assembled messages:
 * packed and unpacked repeated fields, raw_data, int64 data, attributes, and
 * every truncation / byte corruption of a valid message failing cleanly
 * (under ASan this also proves the reader never reads out of bounds). */
#include <string.h>

#include "onnx_pb.h"
#include "ps_test.h"

/* TensorProto: dims=[2,3] packed, data_type=FLOAT, name="x", float_data packed. */
static GByteArray *tensor_packed(void) {
  GByteArray *b = g_byte_array_new();
  const uint8_t head[] = {0x0a, 0x02, 0x02, 0x03, /* dims packed [2, 3] */
                          0x10, 0x01,             /* data_type 1 */
                          0x42, 0x01, 'x',        /* name "x" */
                          0x22, 24};              /* float_data, 24 bytes */
  g_byte_array_append(b, head, sizeof head);
  for (int k = 0; k < 6; k++) {
    float v = (float)k - 2.5f;
    g_byte_array_append(b, (const uint8_t *)&v, 4);
  }
  return b;
}

static void test_packed(void) {
  g_autoptr(GByteArray) b = tensor_packed();
  GError *err = NULL;
  g_autoptr(onnx_tensor) t = onnx_tensor_parse(b->data, b->len, "packed", &err);
  PS_CHECK_OK(t != NULL, err);
  if (!t) return;
  PS_CHECK(t->ndim == 2 && t->dims[0] == 2 && t->dims[1] == 3 && t->numel == 6);
  PS_CHECK(g_str_equal(t->name, "x"));
  PS_CHECK(t->f && t->f[0] == -2.5f && t->f[5] == 2.5f);
}

/* Unpacked dims, raw_data int64, an unknown field (doc_string=12) skipped. */
static void test_raw_int64(void) {
  GByteArray *b = g_byte_array_new();
  const uint8_t head[] = {0x08, 0x03,             /* dims 3 (unpacked) */
                          0x10, 0x07,             /* INT64 */
                          0x62, 0x02, 'h', 'i',   /* doc_string (skipped) */
                          0x4a, 24};              /* raw_data 24 bytes */
  g_byte_array_append(b, head, sizeof head);
  for (int64_t k = 0; k < 3; k++) {
    int64_t v = k * 1000000000000LL - 7;
    g_byte_array_append(b, (const uint8_t *)&v, 8);
  }
  GError *err = NULL;
  g_autoptr(onnx_tensor) t = onnx_tensor_parse(b->data, b->len, "raw", &err);
  PS_CHECK_OK(t != NULL, err);
  if (t) PS_CHECK(t->i && t->numel == 3 && t->i[0] == -7 && t->i[2] == 2000000000000LL - 7);
  g_byte_array_unref(b);
}

/* A model with one Gemm node whose attributes are alpha (float), transB (int)
 * and ints (packed list), a graph input and an output. */
static void test_model(void) {
  const uint8_t node[] = {
      0x0a, 0x01, 'a', 0x0a, 0x00,              /* inputs "a", "" */
      0x12, 0x01, 'y',                          /* output "y" */
      0x22, 0x04, 'G', 'e', 'm', 'm',           /* op_type */
      0x2a, 0x0f, 0x0a, 0x05, 'a', 'l', 'p', 'h', 'a', 0x15, 0x00, 0x00, 0x00, 0x3f,
      0xa0, 0x01, 0x01,                         /* alpha = 0.5, type FLOAT */
      0x2a, 0x0b, 0x0a, 0x01, 'p', 0x42, 0x03, 0x01, 0x7f, 0x02, 0xa0, 0x01, 0x07,
      /* ints "p" = [1, 127, 2] packed, type INTS */
  };
  GByteArray *b = g_byte_array_new();
  const uint8_t ir[] = {0x08, 0x07};
  g_byte_array_append(b, ir, sizeof ir);
  /* graph: node + input ValueInfo "a" + output "y" */
  const uint8_t in_vi[] = {0x5a, 0x03, 0x0a, 0x01, 'a', 0x62, 0x03, 0x0a, 0x01, 'y'};
  uint8_t graph_head[] = {0x3a, (uint8_t)(2 + sizeof node + sizeof in_vi), 0x0a, (uint8_t)sizeof node};
  g_byte_array_append(b, graph_head, sizeof graph_head);
  g_byte_array_append(b, node, sizeof node);
  g_byte_array_append(b, in_vi, sizeof in_vi);
  const uint8_t opset[] = {0x42, 0x02, 0x10, 0x0d};
  g_byte_array_append(b, opset, sizeof opset);

  GError *err = NULL;
  g_autoptr(onnx_model) m = onnx_model_parse(b->data, b->len, "model", &err);
  PS_CHECK_OK(m != NULL, err);
  if (m) {
    PS_CHECK(m->ir_version == 7 && m->opset == 13);
    PS_CHECK(m->nodes->len == 1 && m->inputs->len == 1 && m->outputs->len == 1);
    const onnx_node *n = g_ptr_array_index(m->nodes, 0);
    PS_CHECK(g_str_equal(n->op_type, "Gemm") && n->inputs->len == 2);
    PS_CHECK(g_str_equal(g_ptr_array_index(n->inputs, 1), ""));
    PS_CHECK(onnx_attr_float(n, "alpha", 1.0f) == 0.5f);
    PS_CHECK(onnx_attr_int(n, "transB", 42) == 42);
    guint np = 0;
    const int64_t *p = onnx_attr_ints(n, "p", &np);
    PS_CHECK(np == 3 && p && p[1] == 127);
  }

  /* Every strict prefix and every single-byte corruption: no crash, and a
   * prefix that cuts a field fails with a message naming the input. */
  int failures = 0;
  for (guint len = 0; len < b->len; len++) {
    onnx_model *pm = onnx_model_parse(b->data, len, "prefix", &err);
    if (!pm) {
      failures++;
      PS_CHECK(err && strstr(err->message, "prefix"));
    }
    g_clear_error(&err);
    onnx_model_free(pm);
  }
  PS_CHECK(failures > (int)b->len / 2);
  for (guint pos = 0; pos < b->len; pos++) {
    for (int v = 0; v < 256; v += 37) {
      g_autoptr(GByteArray) c = g_byte_array_new();
      g_byte_array_append(c, b->data, b->len);
      c->data[pos] = (uint8_t)v;
      onnx_model *pm = onnx_model_parse(c->data, c->len, "corrupt", &err);
      g_clear_error(&err);
      onnx_model_free(pm);
    }
  }
  g_byte_array_unref(b);
}

static void test_bad_tensors(void) {
  g_autoptr(GByteArray) b = tensor_packed();
  GError *err = NULL;
  /* Claim 8 elements for 6 values. */
  b->data[3] = 0x04; /* dims [2, 4] = 8 elements */
  onnx_tensor *t = onnx_tensor_parse(b->data, b->len, "count", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "6 values for 8 elements");
  onnx_tensor_free(t);
  const uint8_t huge_len[] = {0x4a, 0xff, 0xff, 0xff, 0xff, 0x0f};
  t = onnx_tensor_parse(huge_len, sizeof huge_len, "huge", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "past the end");
  onnx_tensor_free(t);
  const uint8_t long_varint[] = {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
  t = onnx_tensor_parse(long_varint, sizeof long_varint, "varint", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "varint");
  onnx_tensor_free(t);
  const uint8_t group[] = {0x0b};
  t = onnx_tensor_parse(group, sizeof group, "group", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "wire type");
  onnx_tensor_free(t);
  /* 2^31 elements declared, none present: refused before any allocation. */
  const uint8_t huge_dims[] = {0x08, 0x80, 0x80, 0x80, 0x80, 0x08, 0x10, 0x01};
  t = onnx_tensor_parse(huge_dims, sizeof huge_dims, "dims", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "0 values for 2147483648 elements");
  onnx_tensor_free(t);
  t = onnx_tensor_load("/nonexistent/input_0.pb", &err);
  PS_CHECK_FAILS_WITH(t != NULL, err, "/nonexistent/input_0.pb");
  onnx_tensor_free(t);
}

int main(void) {
  test_packed();
  test_raw_int64();
  test_model();
  test_bad_tensors();
  return ps_test_finish();
}
