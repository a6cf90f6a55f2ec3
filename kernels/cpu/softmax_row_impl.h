/* softmax_row_impl.h — the body of softmax_row.c for one vector width
 * (internal; included only by softmax_row.c, once per instruction set).
 *
 * Parameters, #defined by the includer and #undefined here at the end:
 *   SM_W    floats per vector: 16 (AVX-512), 8 (AVX2) or 4 (SSE2);
 *   SM_SUF  suffix of every name defined here (avx512, avx2, sse2, ...).
 * Defines static functions SM_F(softmax_row), SM_F(softmax_rows) and
 * SM_F(exp_shifted_row) with the contracts of ps_cpu_softmax_row,
 * ps_cpu_softmax_rows and ps_cpu_exp_shifted_row (see cpu/ops.h).
 *
 * Why one width per instruction set instead of one 16-float type compiled
 * for every target clone: GCC 12 lowers a vector wider than the target's
 * registers piece by piece for arithmetic, but element by element for
 * comparisons and shuffles (a 16-float compare became 16 vcomiss + cmov in
 * the AVX2 clone, 10x slower than scalar-looking code). At the native width
 * every operation here is one instruction. */

#define SM_CAT2(a, b) a##_##b
#define SM_CAT(a, b) SM_CAT2(a, b)
#define SM_F(name) SM_CAT(name, SM_SUF)

/* SM_W floats; loads and stores through it need only float alignment. */
typedef float SM_F(vf) __attribute__((vector_size(SM_W * 4), aligned(4), may_alias));
typedef int32_t SM_F(vi) __attribute__((vector_size(SM_W * 4), aligned(4), may_alias));
#define VF SM_F(vf)
#define VI SM_F(vi)

PS_VINLINE VF SM_F(v_splat)(float a) {
  VF z = {0};
  return z + a;
}
PS_VINLINE VF SM_F(v_load)(const float *p) {
  return *(const VF *)p;
}
PS_VINLINE void SM_F(v_store)(float *p, VF v) {
  *(VF *)p = v;
}
/* a where a > b, else b (so a NaN in a is skipped, as the scalar loop does) */
PS_VINLINE VF SM_F(v_max)(VF a, VF b) {
  VI m = a > b;
  return (VF)(((VI)a & m) | ((VI)b & ~m));
}

/* Horizontal max and sum: a log2 tree of lane swaps (halves, quarters, ...). */
#if SM_W != 16 && SM_W != 8 && SM_W != 4
#error "softmax_row_impl.h: SM_W must be 16, 8 or 4"
#endif

PS_VINLINE float SM_F(v_hmax)(VF v) {
#if SM_W == 16
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4,
                                             5, 6, 7));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9,
                                             10, 11));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15,
                                             12, 13));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12,
                                             15, 14));
#elif SM_W == 8
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6));
#else
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 2, 3, 0, 1));
  v = SM_F(v_max)(v, __builtin_shufflevector(v, v, 1, 0, 3, 2));
#endif
  return v[0];
}

PS_VINLINE float SM_F(v_hsum)(VF v) {
#if SM_W == 16
  v = v + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
  v = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11);
  v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5, 10, 11, 8, 9, 14, 15, 12, 13);
  v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6, 9, 8, 11, 10, 13, 12, 15, 14);
#elif SM_W == 8
  v = v + __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3);
  v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1, 6, 7, 4, 5);
  v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2, 5, 4, 7, 6);
#else
  v = v + __builtin_shufflevector(v, v, 2, 3, 0, 1);
  v = v + __builtin_shufflevector(v, v, 1, 0, 3, 2);
#endif
  return v[0];
}

/* exp on SM_W lanes: sm_exp1 (softmax_row.c) written for vectors, with the
 * same constants and the same operations in the same order. */
PS_VINLINE VF SM_F(v_exp)(VF x) {
  const VF magic = SM_F(v_splat)(SM_EXP_MAGIC);
  VF t = x * SM_F(v_splat)(1.44269504088896341f) + magic;
  VF n = t - magic;
  VI scale = (VI)t << 23;
  VF r = x - n * SM_F(v_splat)(0.693359375f);
  r = r + n * SM_F(v_splat)(2.12194440e-4f);
  VF p = SM_F(v_splat)(SM_EXP_C6);
  p = p * r + SM_F(v_splat)(SM_EXP_C5);
  p = p * r + SM_F(v_splat)(SM_EXP_C4);
  p = p * r + SM_F(v_splat)(SM_EXP_C3);
  p = p * r + SM_F(v_splat)(SM_EXP_C2);
  p = p * r + SM_F(v_splat)(1.0f);
  p = p * r + SM_F(v_splat)(1.0f);
  VI keep = ~(x < SM_F(v_splat)(SM_EXP_LO)); /* all ones except below the range (NaN kept) */
  return (VF)((VI)(p * (VF)scale) & keep);
}

/* One row: y = softmax(x) (in place allowed), *lse = its log-sum-exp if lse.
 * pf: the memory to prefetch while the exp runs (the rows ahead; NULL for
 * none), one 64-byte line per 16 floats of this row. */
PS_VINLINE void SM_F(row)(float *y, const float *x, int64_t n, float *lse, const float *pf) {
  const int64_t W = SM_W;
  int64_t j = 0;
  float mx = -INFINITY;
  if (n >= W) {
    /* four independent chains: a max has a 4-cycle latency */
    VF m0 = SM_F(v_splat)(-INFINITY), m1 = m0, m2 = m0, m3 = m0;
    for (; j + 4 * W <= n; j += 4 * W) {
      m0 = SM_F(v_max)(SM_F(v_load)(x + j), m0);
      m1 = SM_F(v_max)(SM_F(v_load)(x + j + W), m1);
      m2 = SM_F(v_max)(SM_F(v_load)(x + j + 2 * W), m2);
      m3 = SM_F(v_max)(SM_F(v_load)(x + j + 3 * W), m3);
    }
    for (; j + W <= n; j += W) m0 = SM_F(v_max)(SM_F(v_load)(x + j), m0);
    mx = SM_F(v_hmax)(SM_F(v_max)(SM_F(v_max)(m0, m1), SM_F(v_max)(m2, m3)));
  }
  for (; j < n; j++) mx = x[j] > mx ? x[j] : mx;
  if (mx == -INFINITY) { /* nothing to attend to: zeros, lse = -inf */
    memset(y, 0, (size_t)n * sizeof(float));
    if (lse) *lse = -INFINITY;
    return;
  }
  /* x - mx <= 0 (or NaN), so the exp needs no upper clamp here */
  const VF vmx = SM_F(v_splat)(mx);
  VF s0 = SM_F(v_splat)(0.0f), s1 = s0;
  j = 0;
  for (; j + 2 * W <= n; j += 2 * W) {
    if (pf) /* one line per 16 floats: every other step at W = 8, ... */
      for (int64_t l = j; l < j + 2 * W; l += 16) __builtin_prefetch(pf + l, 0, 3);
    VF e0 = SM_F(v_exp)(SM_F(v_load)(x + j) - vmx);
    VF e1 = SM_F(v_exp)(SM_F(v_load)(x + j + W) - vmx);
    SM_F(v_store)(y + j, e0);
    SM_F(v_store)(y + j + W, e1);
    s0 += e0;
    s1 += e1;
  }
  if (j + W <= n) {
    VF e0 = SM_F(v_exp)(SM_F(v_load)(x + j) - vmx);
    SM_F(v_store)(y + j, e0);
    s0 += e0;
    j += W;
  }
  float sum = SM_F(v_hsum)(s0 + s1);
  for (; j < n; j++) {
    y[j] = sm_exp1(x[j] - mx);
    sum += y[j];
  }
  float inv = 1.0f / sum; /* sum >= 1: the max element contributes exp(0) */
  const VF vinv = SM_F(v_splat)(inv);
  for (j = 0; j + W <= n; j += W) SM_F(v_store)(y + j, SM_F(v_load)(y + j) * vinv);
  for (; j < n; j++) y[j] *= inv;
  if (lse) *lse = mx + logf(sum);
}

static void SM_F(softmax_row)(float *y, const float *x, int64_t n, float *lse) {
  SM_F(row)(y, x, n, lse, NULL);
}

static void SM_F(softmax_rows)(float *y, const float *x, int64_t rows, int64_t n) {
  /* The prefetch runs at least 512 floats (2 KiB, two 256-wide rows) ahead
   * so that the lines arrive before the max pass of a later row asks for
   * them; the last rows prefetch nothing (never an address past the tensor). */
  int64_t ahead = n >= 512 ? n : 512;
  for (int64_t r = 0; r < rows; r++) {
    const float *xr = x + r * n;
    const float *pf = (r + 1) * n + ahead <= rows * n ? xr + ahead : NULL;
    SM_F(row)(y + r * n, xr, n, NULL, pf);
  }
}

static void SM_F(exp_shifted_row)(float *y, const float *x, float shift, int64_t n) {
  /* x - shift is capped at 88 (exp(88) = 1.65e38) so that a stray large
   * argument cannot overflow the exponent bits */
  const VF vs = SM_F(v_splat)(shift), hi = SM_F(v_splat)(SM_EXP_HI);
  int64_t j = 0;
  for (; j + SM_W <= n; j += SM_W) {
    VF a = SM_F(v_load)(x + j) - vs;
    VI big = a > hi; /* false for NaN, which stays NaN */
    a = (VF)(((VI)hi & big) | ((VI)a & ~big));
    SM_F(v_store)(y + j, SM_F(v_exp)(a));
  }
  for (; j < n; j++) {
    float a = x[j] - shift;
    y[j] = sm_exp1(a > SM_EXP_HI ? SM_EXP_HI : a);
  }
}

#undef VF
#undef VI
#undef SM_F
#undef SM_CAT
#undef SM_CAT2
#undef SM_W
#undef SM_SUF
