/* tensor.h — the one tensor type that crosses the plugin ABI.
 *
 * A ps_tensor is a row-major contiguous block with a dtype, a device and up
 * to PS_MAX_DIMS dimensions. There are no strides and no autograd: every op
 * in kernels/ takes raw pointers and explicit sizes, like llm.c. A tensor
 * either owns its data (freed by ps_tensor_free) or borrows it (a view of
 * memory that someone else keeps alive, e.g. an mmapped checkpoint). */
#pragma once

#include <glib.h>
#include <stddef.h>
#include <stdint.h>

G_BEGIN_DECLS

/* DESIGN.md says 4 dims; checkpoints hold a few 5-D weights (Qwen2.5-VL's
 * Conv3d patch embedding), so the type carries 6 and kernels use <= 4. */
#define PS_MAX_DIMS 6

typedef enum {
  PS_DTYPE_F32,
  PS_DTYPE_F64,
  PS_DTYPE_BF16,
  PS_DTYPE_F16,
  PS_DTYPE_I32,
  PS_DTYPE_I64,
  PS_DTYPE_U8,
  PS_DTYPE_BOOL,
  PS_DTYPE_COUNT
} ps_dtype;

typedef enum { PS_DEVICE_CPU, PS_DEVICE_CUDA } ps_device;

typedef struct ps_tensor {
  ps_dtype dtype;
  ps_device device;
  int32_t ndim;
  int64_t shape[PS_MAX_DIMS]; /* shape[0] is the slowest dimension */
  void *data;                 /* NULL only when numel == 0 */
  size_t nbytes;              /* numel * ps_dtype_size(dtype) */
  gboolean owns_data;         /* ps_tensor_free releases data when TRUE */
} ps_tensor;

/* Bytes per element; 0 for an invalid dtype. */
size_t ps_dtype_size(ps_dtype dtype);
/* safetensors spelling: "F32", "BF16", "I64", ... */
const char *ps_dtype_name(ps_dtype dtype);
/* Parses a safetensors dtype name; FALSE for an unknown one. */
gboolean ps_dtype_from_name(const char *name, ps_dtype *out);

/* A new zero-filled CPU tensor. Fails (does not abort) on a negative
 * dimension, ndim out of range or a size that overflows. */
ps_tensor *ps_tensor_new(ps_dtype dtype, int32_t ndim, const int64_t *shape, GError **error);
/* Convenience for 1-4 dims; pass -1 for the unused trailing ones. */
ps_tensor *ps_tensor_new4(ps_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                          GError **error);
/* A tensor header over memory the caller keeps alive. */
ps_tensor *ps_tensor_new_view(ps_dtype dtype, int32_t ndim, const int64_t *shape, void *data,
                              GError **error);
/* Keeps *t when it already has this dtype and shape; otherwise frees it and
 * allocates a zeroed one. Components keep their outputs and activations in
 * tensors like this, so after the first step with a given batch shape
 * nothing is allocated. */
gboolean ps_tensor_ensure(ps_tensor **t, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                          GError **error);
/* ---- devices ----
 * A tensor whose device is not the CPU holds memory of that device's kernel
 * table (kernels.h: mem_alloc); its data pointer must not be dereferenced on
 * the host. ps_tensor_free releases it through the same table. */

/* A new zero-filled tensor on `device` (ps_tensor_new for the CPU). */
ps_tensor *ps_tensor_new_on(ps_device device, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                            GError **error);
/* ps_tensor_ensure on `device`: a tensor on another device is replaced. */
gboolean ps_tensor_ensure_on(ps_tensor **t, ps_device device, ps_dtype dtype, int32_t ndim,
                             const int64_t *shape, GError **error);
/* Copies src's bytes into dst (same dtype and size; any devices: host to
 * device, device to host, within one device). */
gboolean ps_tensor_copy_into(ps_tensor *dst, const ps_tensor *src, GError **error);
/* A new tensor on `device` holding a copy of t (from any device). */
ps_tensor *ps_tensor_to_device(const ps_tensor *t, ps_device device, GError **error);
/* Moves t's data to `device` in place (the header, and so every pointer to
 * it, stays): how a component moves its parameters once they are
 * initialised or loaded. A view becomes an owning tensor. Nothing happens
 * when t is already there. */
gboolean ps_tensor_move_to(ps_tensor *t, ps_device device, GError **error);
/* An input on the device a component computes on: t itself when it is
 * there, otherwise a copy in *cache (kept between calls and reused while
 * dtype and shape stay; the caller frees it with the component). */
const ps_tensor *ps_tensor_on_device(const ps_tensor *t, ps_device device, ps_tensor **cache,
                                     GError **error);
/* Element 0 of an F32 tensor on any device (NaN when t is not F32 or is empty):
 * how the host reads a loss. */
float ps_tensor_item(const ps_tensor *t);
/* A deep copy on the CPU (same dtype; t may be on any device). */
ps_tensor *ps_tensor_copy(const ps_tensor *t, GError **error);
/* A CPU f32 copy of an f32/f64/bf16/f16/integer tensor (on any device). */
ps_tensor *ps_tensor_to_f32(const ps_tensor *t, GError **error);
void ps_tensor_free(ps_tensor *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(ps_tensor, ps_tensor_free)

int64_t ps_tensor_numel(const ps_tensor *t);
/* TRUE when dtype, ndim and every dim match; -1 in `shape` matches any size. */
gboolean ps_tensor_has_shape(const ps_tensor *t, int32_t ndim, const int64_t *shape);
/* As ps_tensor_has_shape, with an error naming `what` and both shapes. */
gboolean ps_tensor_check(const ps_tensor *t, const char *what, ps_dtype dtype, int32_t ndim,
                         const int64_t *shape, GError **error);
/* "[2, 3, 4]" into buf (at least 96 bytes); returns buf. */
char *ps_shape_format(const ps_tensor *t, char *buf, size_t size);

static inline float *ps_f32(const ps_tensor *t) { return (float *)t->data; }

/* bf16/f16 <-> f32, round-to-nearest-even on the way down. */
float ps_bf16_to_f32(uint16_t h);
uint16_t ps_f32_to_bf16(float f);
float ps_f16_to_f32(uint16_t h);
uint16_t ps_f32_to_f16(float f);

G_END_DECLS
