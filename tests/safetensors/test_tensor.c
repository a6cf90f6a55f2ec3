/* test_tensor.c — ps_tensor: dtypes, allocation, views, copies, to_f32,
 * shape checks, and the bf16/f16 conversions against double-precision
 * references (exhaustive over all 65536 half values, plus every rounding
 * tie between neighbouring halves). */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif
#include <pathseg/error.h>
#include <pathseg/tensor.h>

#include "ps_test.h"

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}

static void test_dtypes(void) {
  const struct {
    ps_dtype d;
    const char *name;
    size_t size;
  } want[] = {{PS_DTYPE_F32, "F32", 4}, {PS_DTYPE_F64, "F64", 8}, {PS_DTYPE_BF16, "BF16", 2},
              {PS_DTYPE_F16, "F16", 2}, {PS_DTYPE_I32, "I32", 4}, {PS_DTYPE_I64, "I64", 8},
              {PS_DTYPE_U8, "U8", 1},   {PS_DTYPE_BOOL, "BOOL", 1}};
  for (size_t i = 0; i < G_N_ELEMENTS(want); i++) {
    PS_CHECK(ps_dtype_size(want[i].d) == want[i].size);
    PS_CHECK(strcmp(ps_dtype_name(want[i].d), want[i].name) == 0);
    ps_dtype d = PS_DTYPE_COUNT;
    PS_CHECK(ps_dtype_from_name(want[i].name, &d) && d == want[i].d);
  }
  ps_dtype d = PS_DTYPE_F32;
  PS_CHECK(!ps_dtype_from_name("f32", &d)); /* safetensors spellings are upper case */
  PS_CHECK(!ps_dtype_from_name("I8", &d));
  PS_CHECK(!ps_dtype_from_name(NULL, &d));
  PS_CHECK(ps_dtype_size(PS_DTYPE_COUNT) == 0);
  PS_CHECK(ps_dtype_size((ps_dtype)-1) == 0);
}

static void test_alloc(void) {
  GError *err = NULL;
  const int64_t shape[3] = {2, 3, 5};
  g_autoptr(ps_tensor) t = ps_tensor_new(PS_DTYPE_F64, 3, shape, &err);
  PS_CHECK_OK(t != NULL, err);
  PS_CHECK(t->nbytes == 240 && ps_tensor_numel(t) == 30 && t->owns_data);
  PS_CHECK((uintptr_t)t->data % 64 == 0);
  int zero = 1;
  for (int i = 0; i < 30; i++)
    zero &= ((double *)t->data)[i] == 0.0;
  PS_CHECK(zero);

  g_autoptr(ps_tensor) s = ps_tensor_new(PS_DTYPE_F32, 0, NULL, &err);
  PS_CHECK_OK(s != NULL, err);
  PS_CHECK(s->ndim == 0 && ps_tensor_numel(s) == 1 && s->nbytes == 4 && s->data != NULL);

  const int64_t empty_shape[2] = {0, 7};
  g_autoptr(ps_tensor) e = ps_tensor_new(PS_DTYPE_I64, 2, empty_shape, &err);
  PS_CHECK_OK(e != NULL, err);
  PS_CHECK(e->nbytes == 0 && ps_tensor_numel(e) == 0);

  const int64_t neg[2] = {3, -2};
  PS_CHECK_FAILS_WITH(ps_tensor_new(PS_DTYPE_F32, 2, neg, &err), err, "negative dimension");
  const int64_t huge[3] = {1LL << 31, 1LL << 31, 1LL << 31};
  PS_CHECK_FAILS_WITH(ps_tensor_new(PS_DTYPE_F32, 3, huge, &err), err, "too many elements");
  const int64_t big[2] = {1LL << 31, 1LL << 31}; /* 2^62 elements fit, the bytes do not */
  PS_CHECK_FAILS_WITH(ps_tensor_new(PS_DTYPE_F32, 2, big, &err), err, "too large");
  const int64_t seven[7] = {1, 1, 1, 1, 1, 1, 1};
  PS_CHECK_FAILS_WITH(ps_tensor_new(PS_DTYPE_F32, 7, seven, &err), err, "7 dimensions");
  PS_CHECK_FAILS_WITH(ps_tensor_new(PS_DTYPE_COUNT, 1, shape, &err), err, "invalid dtype");

  g_autoptr(ps_tensor) n4 = ps_tensor_new4(PS_DTYPE_U8, 4, 5, -1, -1, &err);
  PS_CHECK_OK(n4 != NULL, err);
  PS_CHECK(n4->ndim == 2 && n4->shape[0] == 4 && n4->shape[1] == 5 && n4->nbytes == 20);
  g_autoptr(ps_tensor) n4s = ps_tensor_new4(PS_DTYPE_U8, -1, -1, -1, -1, &err);
  PS_CHECK_OK(n4s != NULL && n4s->ndim == 0, err);
  g_autoptr(ps_tensor) n44 = ps_tensor_new4(PS_DTYPE_F32, 1, 2, 3, 4, &err);
  PS_CHECK_OK(n44 != NULL && n44->ndim == 4 && ps_tensor_numel(n44) == 24, err);
  PS_CHECK_FAILS_WITH(ps_tensor_new4(PS_DTYPE_U8, 2, -1, 3, -1, &err), err, "unused");
  PS_CHECK_FAILS_WITH(ps_tensor_new4(PS_DTYPE_U8, 2, -5, -1, -1, &err), err, "negative");
}

static void test_view_copy(void) {
  GError *err = NULL;
  float buf[6] = {1, 2, 3, 4, 5, 6};
  const int64_t shape[2] = {2, 3};
  g_autoptr(ps_tensor) v = ps_tensor_new_view(PS_DTYPE_F32, 2, shape, buf, &err);
  PS_CHECK_OK(v != NULL, err);
  PS_CHECK(v->data == buf && !v->owns_data && v->nbytes == 24);
  PS_CHECK_FAILS_WITH(ps_tensor_new_view(PS_DTYPE_F32, 2, shape, NULL, &err), err, "no data");

  g_autoptr(ps_tensor) c = ps_tensor_copy(v, &err);
  PS_CHECK_OK(c != NULL, err);
  PS_CHECK(c->data != buf && c->owns_data && memcmp(c->data, buf, 24) == 0);
  buf[0] = 100; /* a deep copy does not see later changes */
  PS_CHECK(ps_f32(c)[0] == 1.0f);
  ps_tensor_free(NULL);

  /* A device tensor is copied through its device's table: without a GPU
   * that is a clear error naming CUDA (test_device_emu covers the copies). */
  if (!g_file_test("/dev/nvidia0", G_FILE_TEST_EXISTS) && !g_getenv("PATHSEG_CUDA_LIBRARY")) {
    ps_tensor gpu = *v;
    gpu.device = PS_DEVICE_CUDA;
    PS_CHECK_FAILS_WITH(ps_tensor_copy(&gpu, &err), err, "CUDA");
    PS_CHECK_FAILS_WITH(ps_tensor_to_f32(&gpu, &err), err, "CUDA");
  }
}

static void test_to_f32(void) {
  GError *err = NULL;
  const int64_t n = 4;
  struct {
    ps_dtype d;
    const void *data;
  } cases[] = {
      {PS_DTYPE_F32, (const float[]){1.5f, -2.0f, 0.0f, 1e30f}},
      {PS_DTYPE_F64, (const double[]){1.5, -2.0, 0.0, 1e30}},
      {PS_DTYPE_I32, (const int32_t[]){3, -2, 0, 1 << 30}},
      {PS_DTYPE_I64, (const int64_t[]){3, -2, 0, 1LL << 40}},
      {PS_DTYPE_U8, (const uint8_t[]){3, 255, 0, 128}},
      {PS_DTYPE_BOOL, (const uint8_t[]){1, 0, 0, 1}},
      {PS_DTYPE_BF16, (const uint16_t[]){0x3fc0, 0xc000, 0x8000, 0x7f80}},
      {PS_DTYPE_F16, (const uint16_t[]){0x3e00, 0xc000, 0x0001, 0xfc00}},
  };
  const float want[][4] = {
      {1.5f, -2.0f, 0.0f, 1e30f},        {1.5f, -2.0f, 0.0f, 1e30f},
      {3, -2, 0, 1 << 30},               {3, -2, 0, 0x1p40f},
      {3, 255, 0, 128},                  {1, 0, 0, 1},
      {1.5f, -2.0f, -0.0f, INFINITY},    {1.5f, -2.0f, 0x1p-24f, -INFINITY},
  };
  for (size_t i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_autoptr(ps_tensor) v = ps_tensor_new_view(cases[i].d, 1, &n, (void *)cases[i].data, &err);
    PS_CHECK_OK(v != NULL, err);
    g_autoptr(ps_tensor) f = ps_tensor_to_f32(v, &err);
    PS_CHECK_OK(f != NULL, err);
    if (!f)
      continue;
    PS_CHECK(f->dtype == PS_DTYPE_F32 && f->ndim == 1 && f->shape[0] == 4);
    for (int k = 0; k < 4; k++)
      PS_CHECK_MSG(bits(ps_f32(f)[k]) == bits(want[i][k]), "%s[%d] = %g, want %g",
                   ps_dtype_name(cases[i].d), k, ps_f32(f)[k], want[i][k]);
  }
  /* A zero-size tensor converts to a zero-size tensor. */
  const int64_t zshape[2] = {3, 0};
  g_autoptr(ps_tensor) z = ps_tensor_new(PS_DTYPE_BF16, 2, zshape, &err);
  g_autoptr(ps_tensor) zf = ps_tensor_to_f32(z, &err);
  PS_CHECK_OK(zf != NULL && zf->nbytes == 0 && zf->ndim == 2, err);
}

static void test_check(void) {
  GError *err = NULL;
  const int64_t shape[2] = {3, 4};
  g_autoptr(ps_tensor) t = ps_tensor_new(PS_DTYPE_F32, 2, shape, &err);
  char buf[96];
  PS_CHECK(strcmp(ps_shape_format(t, buf, sizeof buf), "[3, 4]") == 0);
  g_autoptr(ps_tensor) s = ps_tensor_new(PS_DTYPE_F32, 0, NULL, &err);
  PS_CHECK(strcmp(ps_shape_format(s, buf, sizeof buf), "[]") == 0);
  char tiny[4];
  PS_CHECK(strlen(ps_shape_format(t, tiny, sizeof tiny)) == 3); /* truncated, terminated */

  const int64_t any_rows[2] = {-1, 4}, bad[2] = {2, -1}, exact[2] = {3, 4};
  PS_CHECK(ps_tensor_has_shape(t, 2, any_rows));
  PS_CHECK(ps_tensor_has_shape(t, 2, exact));
  PS_CHECK(!ps_tensor_has_shape(t, 2, bad));
  PS_CHECK(!ps_tensor_has_shape(t, 3, NULL));
  PS_CHECK(!ps_tensor_has_shape(NULL, 2, exact));
  PS_CHECK_OK(ps_tensor_check(t, "x", PS_DTYPE_F32, 2, any_rows, &err), err);
  PS_CHECK_FAILS_WITH(ps_tensor_check(t, "x", PS_DTYPE_F32, 2, bad, &err), err,
                      "tensor 'x': expected F32 [2, -1], got F32 [3, 4]");
  PS_CHECK_FAILS_WITH(ps_tensor_check(t, "y", PS_DTYPE_BF16, 2, exact, &err), err,
                      "tensor 'y': expected BF16 [3, 4], got F32 [3, 4]");
  PS_CHECK_FAILS_WITH(ps_tensor_check(t, "z", PS_DTYPE_F32, 1, exact, &err), err,
                      "tensor 'z': expected F32 [3], got F32 [3, 4]");
  PS_CHECK_FAILS_WITH(ps_tensor_check(NULL, "w", PS_DTYPE_F32, 1, exact, &err), err,
                      "tensor 'w': expected F32 [3], got nothing");
  GError *e2 = NULL;
  ps_tensor_check(t, "x", PS_DTYPE_F32, 2, bad, &e2);
  PS_CHECK(e2 && e2->domain == PS_ERROR && e2->code == PS_ERROR_SHAPE);
  g_clear_error(&e2);
  /* An out-of-range dtype matches any dtype. */
  PS_CHECK_OK(ps_tensor_check(t, "x", PS_DTYPE_COUNT, 2, exact, &err), err);
}

/* ---------------------------------------------------------------------- */
/* Half precision against double references */

static double f16_value(uint16_t h) {
  const int e = (h >> 10) & 0x1f, m = h & 0x3ff;
  const double sign = (h & 0x8000) ? -1.0 : 1.0;
  if (e == 0)
    return sign * ldexp(m, -24);
  return sign * ldexp(1024 + m, e - 25);
}

/* Round-to-nearest-even of |x| onto the finite positive halves 0..0x7bff
 * (monotonic in their bit patterns), by search and double distances. */
static uint16_t f16_reference(float x) {
  const double ax = fabs((double)x);
  const uint16_t sign = signbit(x) ? 0x8000 : 0;
  if (ax >= 65520.0) /* half-way above 65504 ties to the even Inf */
    return sign | 0x7c00;
  int lo = 0, hi = 0x7bff;
  while (lo < hi) { /* largest h with value(h) <= ax */
    int mid = (lo + hi + 1) / 2;
    if (f16_value((uint16_t)mid) <= ax)
      lo = mid;
    else
      hi = mid - 1;
  }
  uint16_t h = (uint16_t)lo;
  if (h < 0x7bff) {
    double d0 = ax - f16_value(h), d1 = f16_value((uint16_t)(h + 1)) - ax;
    if (d1 < d0 || (d1 == d0 && (h & 1)))
      h++;
  }
  return sign | h;
}

static float next_up(float f) { return nextafterf(f, INFINITY); }
static float next_down(float f) { return nextafterf(f, -INFINITY); }

static void test_f16(void) {
  int bad_up = 0, bad_round = 0, bad_nan = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    const int e = (h >> 10) & 0x1f;
    float f = ps_f16_to_f32((uint16_t)h);
    if (e == 0x1f) {
      if ((h & 0x3ff) == 0) {
        bad_up += !(isinf(f) && (signbit(f) != 0) == ((h & 0x8000) != 0));
        bad_round += ps_f32_to_f16(f) != h;
      } else {
        bad_up += !isnan(f);
        uint16_t back = ps_f32_to_f16(f);
        bad_nan += ((back & 0x7c00) != 0x7c00 || (back & 0x3ff) == 0 ||
                    (back & 0x8000) != (h & 0x8000));
      }
      continue;
    }
    bad_up += (double)f != f16_value((uint16_t)h) || (signbit(f) != 0) != ((h & 0x8000) != 0);
    bad_round += ps_f32_to_f16(f) != h; /* exact values round-trip */
    /* The tie with the next half up, and one float either side of it. */
    if ((h & 0x7fff) < 0x7bff) {
      const double mid = (f16_value((uint16_t)h) + f16_value((uint16_t)(h + 1))) / 2;
      const float m = (float)mid; /* exact: halves have 11 significant bits */
      const float probes[3] = {m, next_up(m), next_down(m)};
      for (int k = 0; k < 3; k++) {
        uint16_t got = ps_f32_to_f16(probes[k]), want = f16_reference(probes[k]);
        if (got != want && bad_round++ < 5)
          fprintf(stderr, "f16(%a) = %04x, want %04x\n", probes[k], got, want);
      }
    }
  }
  PS_CHECK_MSG(bad_up == 0, "%d f16 -> f32 mismatches", bad_up);
  PS_CHECK_MSG(bad_round == 0, "%d f32 -> f16 mismatches", bad_round);
  PS_CHECK_MSG(bad_nan == 0, "%d NaNs not kept", bad_nan);
  /* Edges: overflow threshold, underflow to zero, f32 subnormals, -0. */
  PS_CHECK(ps_f32_to_f16(65519.996f) == 0x7bff);
  PS_CHECK(ps_f32_to_f16(65520.0f) == 0x7c00);
  PS_CHECK(ps_f32_to_f16(-1e10f) == 0xfc00);
  PS_CHECK(ps_f32_to_f16(0x1p-25f) == 0x0000);          /* tie to even zero */
  PS_CHECK(ps_f32_to_f16(next_up(0x1p-25f)) == 0x0001);
  PS_CHECK(ps_f32_to_f16(0x1.8p-24f) == 0x0002);        /* tie 1.5 -> 2 */
  PS_CHECK(ps_f32_to_f16(0x1p-149f) == 0x0000);
  PS_CHECK(ps_f32_to_f16(-0.0f) == 0x8000);
  PS_CHECK(ps_f32_to_f16(0x1.ffcp-15f) == 0x0400); /* largest subnormal + half rounds up */
  PS_CHECK(isnan(ps_f16_to_f32(ps_f32_to_f16(NAN))));
  /* Random floats over the whole range against the reference. */
  GRand *r = g_rand_new_with_seed(42);
  int bad = 0;
  for (int i = 0; i < 200000; i++) {
    uint32_t u = g_rand_int(r);
    float f;
    memcpy(&f, &u, 4);
    if (isnan(f))
      continue;
    if (i % 2) /* half of them in the f16 range */
      f = (float)ldexp(g_rand_double_range(r, -1, 1), g_rand_int_range(r, -26, 17));
    bad += ps_f32_to_f16(f) != f16_reference(f);
  }
  g_rand_free(r);
  PS_CHECK_MSG(bad == 0, "%d random f32 -> f16 mismatches", bad);
}

/* bf16 is the top half of an f32: the reference rounds in double. */
static uint16_t bf16_reference(float x) {
  uint32_t u = bits(x);
  uint16_t lo = (uint16_t)(u >> 16);
  float flo, fhi;
  uint32_t a = (uint32_t)lo << 16, b = ((uint32_t)lo + 1) << 16;
  memcpy(&flo, &a, 4);
  memcpy(&fhi, &b, 4);
  if ((lo & 0x7fff) == 0x7f7f) { /* next is Inf: compare against 2^128 */
    double top = ldexp(1.0, 128) * (x < 0 ? -1 : 1);
    double d0 = fabs((double)x - flo), d1 = fabs(top - (double)x);
    return (d1 < d0 || (d1 == d0 && (lo & 1))) ? (uint16_t)(lo + 1) : lo;
  }
  double d0 = fabs((double)x - flo), d1 = fabs((double)fhi - (double)x);
  return (d1 < d0 || (d1 == d0 && (lo & 1))) ? (uint16_t)(lo + 1) : lo;
}

static void test_bf16(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 0x10000; h++) {
    float f = ps_bf16_to_f32((uint16_t)h);
    if (bits(f) != h << 16)
      bad++;
    uint16_t back = ps_f32_to_bf16(f);
    if (isnan(f))
      bad += !isnan(ps_bf16_to_f32(back)) || (back & 0x8000) != (h & 0x8000);
    else
      bad += back != h;
  }
  PS_CHECK_MSG(bad == 0, "%d bf16 round trips failed", bad);
  GRand *r = g_rand_new_with_seed(7);
  int bad_r = 0;
  for (int i = 0; i < 300000; i++) {
    uint32_t u = g_rand_int(r);
    if (i % 3 == 0) /* exact ties */
      u = (u & 0xffff0000u) | 0x8000u;
    else if (i % 3 == 1) /* around ties */
      u = (u & 0xffff0000u) | (0x8000u + (uint32_t)g_rand_int_range(r, -2, 3));
    float f;
    memcpy(&f, &u, 4);
    if (isnan(f) || isinf(f))
      continue;
    uint16_t got = ps_f32_to_bf16(f), want = bf16_reference(f);
    if (got != want && bad_r++ < 5)
      fprintf(stderr, "bf16(%a) = %04x, want %04x\n", f, got, want);
  }
  g_rand_free(r);
  PS_CHECK_MSG(bad_r == 0, "%d f32 -> bf16 mismatches", bad_r);
  PS_CHECK(ps_f32_to_bf16(1.0f) == 0x3f80);
  PS_CHECK(ps_f32_to_bf16(0x1.01p0f) == 0x3f80);  /* tie to even (down) */
  PS_CHECK(ps_f32_to_bf16(0x1.03p0f) == 0x3f82);  /* tie to even (up) */
  PS_CHECK(ps_f32_to_bf16(3.4028235e38f) == 0x7f80); /* FLT_MAX rounds to Inf */
  PS_CHECK(ps_f32_to_bf16(-INFINITY) == 0xff80);
  PS_CHECK(ps_f32_to_bf16(0x1p-149f) == 0x0000);  /* smallest subnormal rounds to 0 */
  PS_CHECK(ps_f32_to_bf16(0x1p-133f) == 0x0001);  /* smallest bf16 subnormal */
  uint32_t snan_bits = 0x7f800001u; /* a NaN whose payload is only in the low half */
  float snan;
  memcpy(&snan, &snan_bits, 4);
  PS_CHECK(isnan(ps_bf16_to_f32(ps_f32_to_bf16(snan))));
}

int main(void) {
  test_dtypes();
  test_alloc();
  test_view_copy();
  test_to_f32();
  test_check();
  test_f16();
  test_bf16();
  /* ps_tensor_ensure keeps a tensor of the right dtype and shape, replaces any other. */
  {
    ps_tensor *t = NULL;
    const int64_t a[2] = {3, 4}, b[2] = {4, 3};
    PS_CHECK(ps_tensor_ensure(&t, PS_DTYPE_F32, 2, a, NULL) && t && t->nbytes == 48);
    ps_f32(t)[0] = 7.0f;
    ps_tensor *first = t;
    PS_CHECK(ps_tensor_ensure(&t, PS_DTYPE_F32, 2, a, NULL) && t == first && ps_f32(t)[0] == 7.0f);
    PS_CHECK(ps_tensor_ensure(&t, PS_DTYPE_F32, 2, b, NULL) && t->shape[0] == 4 && t->shape[1] == 3);
    PS_CHECK(ps_tensor_ensure(&t, PS_DTYPE_I32, 2, b, NULL) && t->dtype == PS_DTYPE_I32);
    const int64_t bad[1] = {-2};
    GError *error = NULL;
    PS_CHECK(!ps_tensor_ensure(&t, PS_DTYPE_F32, 1, bad, &error) && t == NULL && error);
    g_clear_error(&error);
  }
  return ps_test_finish();
}
