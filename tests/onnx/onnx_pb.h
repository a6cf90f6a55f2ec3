/* onnx_pb.h — a small, bounds-checked reader for the parts of the ONNX
 * protobuf format that the conformance test needs: TensorProto (the
 * input_N.pb / output_N.pb files) and ModelProto -> GraphProto -> NodeProto ->
 * AttributeProto (the op type, its attributes and its input/output names).
 *
 * Everything else in the files (doc strings, value-info types, metadata) is
 * skipped field by field, so the reader does not depend on the ONNX version.
 * Every length and varint is checked against the end of the buffer: a
 * truncated or corrupt file gives a GError naming the file, never a crash. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define ONNX_MAX_DIMS 8

/* onnx.TensorProto.DataType values the reader converts. */
enum {
  ONNX_FLOAT = 1,
  ONNX_UINT8 = 2,
  ONNX_INT8 = 3,
  ONNX_INT32 = 6,
  ONNX_INT64 = 7,
  ONNX_BOOL = 9,
  ONNX_DOUBLE = 11,
};

/* A tensor read from a TensorProto. Float-like types (float, double) are in
 * `f`; integer types (int64, int32, uint8, int8, bool) are in `i`. Exactly one
 * of f / i is non-NULL unless numel == 0. */
typedef struct onnx_tensor {
  char *name;
  int32_t data_type;
  int32_t ndim;
  int64_t dims[ONNX_MAX_DIMS];
  int64_t numel;
  float *f;   /* (numel) */
  int64_t *i; /* (numel) */
} onnx_tensor;

typedef enum {
  ONNX_ATTR_FLOAT = 1,
  ONNX_ATTR_INT = 2,
  ONNX_ATTR_STRING = 3,
  ONNX_ATTR_TENSOR = 4,
  ONNX_ATTR_FLOATS = 6,
  ONNX_ATTR_INTS = 7,
  ONNX_ATTR_STRINGS = 8,
} onnx_attr_type;

typedef struct onnx_attr {
  char *name;
  int32_t type; /* onnx_attr_type; 0 when the file did not say */
  float f;
  int64_t i;
  char *s;              /* NUL-terminated copy of the bytes */
  GArray *floats;       /* float */
  GArray *ints;         /* int64_t */
  onnx_tensor *t;       /* ONNX_ATTR_TENSOR */
} onnx_attr;

typedef struct onnx_node {
  char *op_type;
  char *domain;
  GPtrArray *inputs;  /* char*, "" for an omitted optional input */
  GPtrArray *outputs; /* char* */
  GPtrArray *attrs;   /* onnx_attr* */
} onnx_node;

typedef struct onnx_model {
  int64_t ir_version;
  int64_t opset; /* version of the default ("" / "ai.onnx") domain; 0 if absent */
  GPtrArray *nodes;        /* onnx_node* */
  GPtrArray *inputs;       /* char*: graph input names, in order */
  GPtrArray *outputs;      /* char*: graph output names, in order */
  GPtrArray *initializers; /* onnx_tensor* */
} onnx_model;

/* Parse a serialized TensorProto. */
onnx_tensor *onnx_tensor_parse(const uint8_t *buf, size_t len, const char *what, GError **error);
/* Read and parse a .pb file holding one TensorProto. */
onnx_tensor *onnx_tensor_load(const char *path, GError **error);
void onnx_tensor_free(onnx_tensor *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(onnx_tensor, onnx_tensor_free)

/* Parse a serialized ModelProto. */
onnx_model *onnx_model_parse(const uint8_t *buf, size_t len, const char *what, GError **error);
onnx_model *onnx_model_load(const char *path, GError **error);
void onnx_model_free(onnx_model *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(onnx_model, onnx_model_free)

/* The attribute called `name`, or NULL. */
const onnx_attr *onnx_node_attr(const onnx_node *node, const char *name);
/* Attribute getters with a default for an absent attribute. */
int64_t onnx_attr_int(const onnx_node *node, const char *name, int64_t dflt);
float onnx_attr_float(const onnx_node *node, const char *name, float dflt);
const char *onnx_attr_string(const onnx_node *node, const char *name, const char *dflt);
/* The ints of a list attribute; *n = 0 and NULL when absent. */
const int64_t *onnx_attr_ints(const onnx_node *node, const char *name, guint *n);

G_END_DECLS
