/* tensor.c — the ps_tensor type: dtypes, allocation, views, copies, dtype
 * conversion to f32, shape checks and the bf16/f16 <-> f32 conversions.
 *
 * Owned data is allocated 64-byte aligned (one cache line, and enough for any
 * SIMD load) with posix_memalign and released with free(), so a tensor whose
 * data came from g_malloc/malloc may also be marked owns_data. */
/* posix_memalign, fsync, O_CLOEXEC: POSIX.1-2008 under -std=c11. */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <pathseg/error.h>
#include <pathseg/kernels.h>
#include <pathseg/tensor.h>

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PS_TENSOR_ALIGN 64

/* Indexed by ps_dtype. */
static const struct {
  const char *name;
  size_t size;
} dtype_info[PS_DTYPE_COUNT] = {
    [PS_DTYPE_F32] = {"F32", 4}, [PS_DTYPE_F64] = {"F64", 8}, [PS_DTYPE_BF16] = {"BF16", 2},
    [PS_DTYPE_F16] = {"F16", 2}, [PS_DTYPE_I32] = {"I32", 4}, [PS_DTYPE_I64] = {"I64", 8},
    [PS_DTYPE_U8] = {"U8", 1},   [PS_DTYPE_BOOL] = {"BOOL", 1},
};

static gboolean dtype_valid(ps_dtype dtype) {
  return (int)dtype >= 0 && (int)dtype < PS_DTYPE_COUNT;
}

size_t ps_dtype_size(ps_dtype dtype) { return dtype_valid(dtype) ? dtype_info[dtype].size : 0; }

const char *ps_dtype_name(ps_dtype dtype) {
  return dtype_valid(dtype) ? dtype_info[dtype].name : "INVALID";
}

gboolean ps_dtype_from_name(const char *name, ps_dtype *out) {
  if (name == NULL)
    return FALSE;
  for (int i = 0; i < PS_DTYPE_COUNT; i++) {
    if (strcmp(name, dtype_info[i].name) == 0) {
      if (out)
        *out = (ps_dtype)i;
      return TRUE;
    }
  }
  return FALSE;
}

/* "[2, -1, 4]" for an explicit (ndim, shape); "[]" for a scalar. */
static char *format_dims(int32_t ndim, const int64_t *shape, char *buf, size_t size) {
  if (size == 0)
    return buf;
  size_t pos = 0;
  buf[0] = '\0';
#define APPEND(...)                                                                   \
  do {                                                                                \
    if (pos < size) {                                                                 \
      int n_ = snprintf(buf + pos, size - pos, __VA_ARGS__);                          \
      pos = n_ < 0 ? size : pos + (size_t)n_;                                         \
    }                                                                                 \
  } while (0)
  APPEND("[");
  for (int32_t i = 0; i < ndim; i++)
    APPEND(i ? ", %" G_GINT64_FORMAT : "%" G_GINT64_FORMAT, shape ? shape[i] : (int64_t)-1);
  APPEND("]");
#undef APPEND
  return buf;
}

char *ps_shape_format(const ps_tensor *t, char *buf, size_t size) {
  if (t == NULL) {
    g_strlcpy(buf, "(null)", size);
    return buf;
  }
  return format_dims(t->ndim, t->shape, buf, size);
}

/* numel and nbytes for (dtype, ndim, shape), or FALSE with an error when a
 * dimension is negative, ndim is out of range or the size overflows. */
static gboolean compute_size(ps_dtype dtype, int32_t ndim, const int64_t *shape, int64_t *numel,
                             size_t *nbytes, GError **error) {
  if (!dtype_valid(dtype)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "invalid dtype %d", (int)dtype);
    return FALSE;
  }
  if (ndim < 0 || ndim > PS_MAX_DIMS) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "tensor has %d dimensions, expected 0 to %d",
                (int)ndim, PS_MAX_DIMS);
    return FALSE;
  }
  if (ndim > 0 && shape == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "tensor has %d dimensions but no shape",
                (int)ndim);
    return FALSE;
  }
  char buf[128];
  int64_t n = 1;
  for (int32_t i = 0; i < ndim; i++) {
    if (shape[i] < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "negative dimension in shape %s",
                  format_dims(ndim, shape, buf, sizeof buf));
      return FALSE;
    }
    if (__builtin_mul_overflow(n, shape[i], &n)) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "shape %s %s has too many elements",
                  ps_dtype_name(dtype), format_dims(ndim, shape, buf, sizeof buf));
      return FALSE;
    }
  }
  int64_t bytes;
  if (__builtin_mul_overflow(n, (int64_t)ps_dtype_size(dtype), &bytes) ||
      (uint64_t)bytes > (uint64_t)(SIZE_MAX / 2)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "shape %s %s is too large",
                ps_dtype_name(dtype), format_dims(ndim, shape, buf, sizeof buf));
    return FALSE;
  }
  *numel = n;
  *nbytes = (size_t)bytes;
  return TRUE;
}

/* A tensor header with dtype/shape/nbytes filled and no data. */
static ps_tensor *tensor_header(ps_dtype dtype, int32_t ndim, const int64_t *shape,
                                GError **error) {
  int64_t numel;
  size_t nbytes;
  if (!compute_size(dtype, ndim, shape, &numel, &nbytes, error))
    return NULL;
  ps_tensor *t = g_new0(ps_tensor, 1);
  t->dtype = dtype;
  t->device = PS_DEVICE_CPU;
  t->ndim = ndim;
  for (int32_t i = 0; i < ndim; i++)
    t->shape[i] = shape[i];
  t->nbytes = nbytes;
  return t;
}

/* Zeroed, 64-byte aligned memory for `nbytes` (> 0) bytes, or NULL. */
static void *aligned_zalloc(size_t nbytes) {
  /* Round up so that vectorised tails may read a whole cache line. */
  size_t padded = (nbytes + PS_TENSOR_ALIGN - 1) / PS_TENSOR_ALIGN * PS_TENSOR_ALIGN;
  void *p = NULL;
  if (posix_memalign(&p, PS_TENSOR_ALIGN, padded) != 0)
    return NULL;
  memset(p, 0, padded);
  return p;
}

static gboolean tensor_alloc(ps_tensor *t, GError **error) {
  t->owns_data = TRUE;
  if (t->nbytes == 0)
    return TRUE;
  t->data = aligned_zalloc(t->nbytes);
  if (t->data == NULL) {
    char buf[128];
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED, "out of memory allocating %zu bytes for %s %s",
                t->nbytes, ps_dtype_name(t->dtype), ps_shape_format(t, buf, sizeof buf));
    return FALSE;
  }
  return TRUE;
}

ps_tensor *ps_tensor_new(ps_dtype dtype, int32_t ndim, const int64_t *shape, GError **error) {
  ps_tensor *t = tensor_header(dtype, ndim, shape, error);
  if (t == NULL)
    return NULL;
  if (!tensor_alloc(t, error)) {
    g_free(t);
    return NULL;
  }
  return t;
}

ps_tensor *ps_tensor_new4(ps_dtype dtype, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                          GError **error) {
  const int64_t d[4] = {d0, d1, d2, d3};
  int32_t ndim = 0;
  while (ndim < 4 && d[ndim] != -1)
    ndim++;
  /* Everything after the first -1 must be -1 too: (2, -1, 3, -1) is a
   * caller mistake, not a 1-D tensor. */
  for (int i = ndim; i < 4; i++) {
    if (d[i] != -1) {
      char buf[128];
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "ps_tensor_new4: dimension %d is %" G_GINT64_FORMAT
                  " after an unused (-1) one in %s",
                  i, d[i], format_dims(4, d, buf, sizeof buf));
      return NULL;
    }
  }
  return ps_tensor_new(dtype, ndim, d, error);
}

ps_tensor *ps_tensor_new_view(ps_dtype dtype, int32_t ndim, const int64_t *shape, void *data,
                              GError **error) {
  ps_tensor *t = tensor_header(dtype, ndim, shape, error);
  if (t == NULL)
    return NULL;
  if (data == NULL && t->nbytes > 0) {
    char buf[128];
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "view of %s %s has no data",
                ps_dtype_name(dtype), ps_shape_format(t, buf, sizeof buf));
    g_free(t);
    return NULL;
  }
  t->data = data;
  t->owns_data = FALSE;
  return t;
}

static gboolean require_cpu(const ps_tensor *t, const char *op, GError **error) {
  if (t == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: no tensor", op);
    return FALSE;
  }
  if (t->device != PS_DEVICE_CPU) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED, "%s: tensor is not on the CPU", op);
    return FALSE;
  }
  if (t->data == NULL && t->nbytes > 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: tensor has no data", op);
    return FALSE;
  }
  return TRUE;
}

ps_tensor *ps_tensor_copy(const ps_tensor *t, GError **error) {
  return ps_tensor_to_device(t, PS_DEVICE_CPU, error);
}

ps_tensor *ps_tensor_new_on(ps_device device, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                            GError **error) {
  if (device == PS_DEVICE_CPU) return ps_tensor_new(dtype, ndim, shape, error);
  const ps_kernels *k = ps_kernels_get(device, error);
  if (!k) return NULL;
  ps_tensor *t = tensor_header(dtype, ndim, shape, error);
  if (t == NULL) return NULL;
  t->device = device;
  t->owns_data = TRUE;
  if (t->nbytes == 0) return t;
  t->data = k->mem_alloc(t->nbytes);
  if (t->data == NULL) {
    char buf[128];
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "out of %s memory allocating %zu bytes for %s %s", k->name, t->nbytes,
                ps_dtype_name(dtype), ps_shape_format(t, buf, sizeof buf));
    g_free(t);
    return NULL;
  }
  return t;
}

gboolean ps_tensor_copy_into(ps_tensor *dst, const ps_tensor *src, GError **error) {
  if (!dst || !src || (src->data == NULL && src->nbytes > 0) ||
      (dst->data == NULL && dst->nbytes > 0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "ps_tensor_copy_into: missing tensor or data");
    return FALSE;
  }
  if (dst->dtype != src->dtype || dst->nbytes != src->nbytes) {
    char a[96], b[96];
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "ps_tensor_copy_into: %s %s cannot receive %s %s", ps_dtype_name(dst->dtype),
                ps_shape_format(dst, a, sizeof a), ps_dtype_name(src->dtype),
                ps_shape_format(src, b, sizeof b));
    return FALSE;
  }
  if (src->nbytes == 0) return TRUE;
  if (dst->device == PS_DEVICE_CPU && src->device == PS_DEVICE_CPU) {
    memcpy(dst->data, src->data, src->nbytes);
    return TRUE;
  }
  /* One side is a device: its table copies (the other side is the host, or
   * the same device). */
  ps_device dev = dst->device != PS_DEVICE_CPU ? dst->device : src->device;
  if (dst->device != PS_DEVICE_CPU && src->device != PS_DEVICE_CPU && dst->device != src->device) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "ps_tensor_copy_into: copies between two different devices");
    return FALSE;
  }
  const ps_kernels *k = ps_kernels_get(dev, error);
  if (!k) return FALSE;
  if (src->device == PS_DEVICE_CPU)
    k->copy_to_device(dst->data, src->data, src->nbytes);
  else if (dst->device == PS_DEVICE_CPU)
    k->copy_to_host(dst->data, src->data, src->nbytes);
  else
    k->copy_on_device(dst->data, src->data, src->nbytes);
  return TRUE;
}

ps_tensor *ps_tensor_to_device(const ps_tensor *t, ps_device device, GError **error) {
  if (t == NULL || (t->data == NULL && t->nbytes > 0)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "ps_tensor_to_device: no tensor or no data");
    return NULL;
  }
  ps_tensor *c = ps_tensor_new_on(device, t->dtype, t->ndim, t->shape, error);
  if (c == NULL) return NULL;
  if (!ps_tensor_copy_into(c, t, error)) {
    ps_tensor_free(c);
    return NULL;
  }
  return c;
}

ps_tensor *ps_tensor_to_f32(const ps_tensor *t, GError **error) {
  if (t != NULL && t->device != PS_DEVICE_CPU) {
    g_autoptr(ps_tensor) host = ps_tensor_copy(t, error);
    return host ? ps_tensor_to_f32(host, error) : NULL;
  }
  if (!require_cpu(t, "ps_tensor_to_f32", error))
    return NULL;
  ps_tensor *c = ps_tensor_new(PS_DTYPE_F32, t->ndim, t->shape, error);
  if (c == NULL)
    return NULL;
  const int64_t n = ps_tensor_numel(t);
  float *dst = ps_f32(c);
  /* memcpy per element: the source may be a view into a file buffer whose
   * alignment the caller did not check. */
  const uint8_t *src = t->data;
  switch (t->dtype) {
  case PS_DTYPE_F32:
    if (n > 0)
      memcpy(dst, src, (size_t)n * 4);
    break;
  case PS_DTYPE_F64:
    for (int64_t i = 0; i < n; i++) {
      double v;
      memcpy(&v, src + i * 8, 8);
      dst[i] = (float)v;
    }
    break;
  case PS_DTYPE_BF16:
    for (int64_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + i * 2, 2);
      dst[i] = ps_bf16_to_f32(v);
    }
    break;
  case PS_DTYPE_F16:
    for (int64_t i = 0; i < n; i++) {
      uint16_t v;
      memcpy(&v, src + i * 2, 2);
      dst[i] = ps_f16_to_f32(v);
    }
    break;
  case PS_DTYPE_I32:
    for (int64_t i = 0; i < n; i++) {
      int32_t v;
      memcpy(&v, src + i * 4, 4);
      dst[i] = (float)v;
    }
    break;
  case PS_DTYPE_I64:
    for (int64_t i = 0; i < n; i++) {
      int64_t v;
      memcpy(&v, src + i * 8, 8);
      dst[i] = (float)v;
    }
    break;
  case PS_DTYPE_U8:
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)src[i];
    break;
  case PS_DTYPE_BOOL:
    for (int64_t i = 0; i < n; i++)
      dst[i] = src[i] ? 1.0f : 0.0f;
    break;
  default:
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "ps_tensor_to_f32: invalid dtype %d",
                (int)t->dtype);
    ps_tensor_free(c);
    return NULL;
  }
  return c;
}

void ps_tensor_free(ps_tensor *t) {
  if (t == NULL)
    return;
  if (t->owns_data && t->device == PS_DEVICE_CPU) {
    free(t->data);
  } else if (t->owns_data && t->data) {
    /* The table exists: the tensor was allocated through it. */
    const ps_kernels *k = ps_kernels_get(t->device, NULL);
    if (k) k->mem_free(t->data);
  }
  g_free(t);
}

int64_t ps_tensor_numel(const ps_tensor *t) {
  if (t == NULL)
    return 0;
  int64_t n = 1;
  for (int32_t i = 0; i < t->ndim && i < PS_MAX_DIMS; i++)
    n *= t->shape[i];
  return n;
}

gboolean ps_tensor_has_shape(const ps_tensor *t, int32_t ndim, const int64_t *shape) {
  if (t == NULL || t->ndim != ndim)
    return FALSE;
  if (shape == NULL)
    return TRUE;
  for (int32_t i = 0; i < ndim; i++)
    if (shape[i] != -1 && shape[i] != t->shape[i])
      return FALSE;
  return TRUE;
}

gboolean ps_tensor_check(const ps_tensor *t, const char *what, ps_dtype dtype, int32_t ndim,
                         const int64_t *shape, GError **error) {
  /* An out-of-range dtype (e.g. PS_DTYPE_COUNT) accepts any dtype. */
  const gboolean any_dtype = !dtype_valid(dtype);
  if (t != NULL && (any_dtype || t->dtype == dtype) && ps_tensor_has_shape(t, ndim, shape))
    return TRUE;
  char want[128], got[128];
  format_dims(ndim, shape, want, sizeof want);
  if (t == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "tensor '%s': expected %s %s, got nothing",
                what ? what : "?", any_dtype ? "any" : ps_dtype_name(dtype), want);
  } else {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "tensor '%s': expected %s %s, got %s %s",
                what ? what : "?", any_dtype ? "any" : ps_dtype_name(dtype), want,
                ps_dtype_name(t->dtype), ps_shape_format(t, got, sizeof got));
  }
  return FALSE;
}

/* ---------------------------------------------------------------------- */
/* bf16 / f16 */

static uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

float ps_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ps_f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) /* NaN: keep sign and top payload, force quiet */
    return (uint16_t)((u >> 16) | 0x0040u);
  /* Round to nearest, ties to even; a carry out of the mantissa correctly
   * bumps the exponent, and the largest finite values round to Inf. */
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float ps_f16_to_f32(uint16_t h) {
  const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) /* Inf or NaN, payload kept */
    return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    /* Zero or subnormal: mant * 2^-24, exact in f32. */
    float v = (float)mant * 0x1p-24f;
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112u) << 23) | (mant << 13));
}

/* q + 1 when the dropped remainder r (out of 2*half) rounds up under
 * round-to-nearest-even. */
static uint32_t round_rne(uint32_t q, uint32_t r, uint32_t half) {
  return (r > half || (r == half && (q & 1u))) ? q + 1u : q;
}

uint16_t ps_f32_to_f16(float f) {
  const uint32_t u = f32_bits(f);
  const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  const uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) /* NaN: keep the top payload bits, force quiet */
    return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  if (a >= 0x477ff000u) /* >= 65520 (half-way past 65504, tie to even) and Inf */
    return (uint16_t)(sign | 0x7c00u);
  const uint32_t e = a >> 23;
  const uint32_t m = a & 0x7fffffu;
  if (e >= 113) {
    /* Normal f16: rebias the exponent, drop 13 mantissa bits; a carry from
     * rounding moves into the exponent, which is what we want. */
    uint32_t q = ((e - 112u) << 10) | (m >> 13);
    return (uint16_t)(sign | round_rne(q, m & 0x1fffu, 0x1000u));
  }
  /* Subnormal f16 (or zero): the value is (m | implicit) * 2^(e - 150) and
   * the result counts units of 2^-24, so shift right by 126 - e. Rounding
   * up from the largest subnormal gives 0x400, the smallest normal. */
  if (e == 0)
    return sign; /* f32 subnormals are far below 2^-25 */
  const uint32_t s = 126u - e; /* >= 14 */
  if (s > 24)
    return sign; /* below 2^-25: rounds to zero */
  const uint32_t mm = m | 0x800000u;
  const uint32_t q = mm >> s;
  const uint32_t r = mm & ((1u << s) - 1u);
  return (uint16_t)(sign | round_rne(q, r, 1u << (s - 1)));
}

gboolean ps_tensor_ensure(ps_tensor **t, ps_dtype dtype, int32_t ndim, const int64_t *shape,
                          GError **error) {
  return ps_tensor_ensure_on(t, PS_DEVICE_CPU, dtype, ndim, shape, error);
}

gboolean ps_tensor_ensure_on(ps_tensor **t, ps_device device, ps_dtype dtype, int32_t ndim,
                             const int64_t *shape, GError **error) {
  if (*t && (*t)->device == device && (*t)->dtype == dtype && ps_tensor_has_shape(*t, ndim, shape))
    return TRUE;
  ps_tensor_free(*t);
  *t = ps_tensor_new_on(device, dtype, ndim, shape, error);
  return *t != NULL;
}

gboolean ps_tensor_move_to(ps_tensor *t, ps_device device, GError **error) {
  if (t == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "ps_tensor_move_to: no tensor");
    return FALSE;
  }
  if (t->device == device) return TRUE;
  ps_tensor *moved = ps_tensor_to_device(t, device, error);
  if (moved == NULL) return FALSE;
  /* Swap the data: `moved` takes the old storage and frees it. */
  ps_tensor old = *t;
  t->data = moved->data;
  t->device = moved->device;
  t->owns_data = TRUE;
  moved->data = old.data;
  moved->device = old.device;
  moved->owns_data = old.owns_data;
  ps_tensor_free(moved);
  return TRUE;
}

const ps_tensor *ps_tensor_on_device(const ps_tensor *t, ps_device device, ps_tensor **cache,
                                     GError **error) {
  if (t == NULL) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "ps_tensor_on_device: no tensor");
    return NULL;
  }
  if (t->device == device) return t;
  if (!ps_tensor_ensure_on(cache, device, t->dtype, t->ndim, t->shape, error)) return NULL;
  if (!ps_tensor_copy_into(*cache, t, error)) return NULL;
  return *cache;
}

float ps_tensor_item(const ps_tensor *t) {
  if (t == NULL || t->dtype != PS_DTYPE_F32 || t->nbytes < sizeof(float) || t->data == NULL)
    return NAN;
  if (t->device == PS_DEVICE_CPU) return ps_f32(t)[0];
  const ps_kernels *k = ps_kernels_get(t->device, NULL);
  float v = NAN;
  if (k) k->copy_to_host(&v, t->data, sizeof v);
  return v;
}
