/* gpu_check.c — every op of the CUDA kernel table against the CPU op on fresh
 * random data, then the GPU benchmarks. Run by tools/gpu-check.sh on a machine
 * with a GPU; elsewhere it prints "no CUDA device" and exits 2.
 *
 * Accuracy: relative error norm ||gpu - cpu|| / ||cpu|| <= 1e-5 for every f32
 * output of the f32 entries; <= 1e-2 for the bf16 entries (*_bf16), checked
 * against the CPU f32 op on the same data rounded to bf16 (see "bf16
 * entries" below). Gradients start from random values on both sides, so the
 * "backward adds" contract is checked too. Ops whose CUDA entry is NULL are
 * listed as not implemented.
 *
 * Benchmarks (CUDA events, median of repeats): linear forward+backward GFLOP/s,
 * attention forward+backward, and layernorm / softmax / GELU bandwidth against
 * cudaMemcpy device-to-device of the same bytes.
 *
 * Usage: gpu_check [--no-bench] [--self]
 *   --self  runs the checks with the CPU table standing in for the GPU (its
 *           bf16 entries emulated by rounding around the f32 ops) and host
 *           memory for device memory (no CUDA calls): a test of this harness,
 *           run by ctest as test_gpu_check_self. */
#include <cuda_runtime_api.h>
#include <math.h>
#include <pathseg/kernels.h>
#include <pathseg/tensor.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "emu/bf16_emu.h"

static const ps_kernels *CPU, *GPU;
static int n_fail = 0, n_pass = 0, n_missing = 0;

#define CK(call)                                                                          \
  do {                                                                                    \
    cudaError_t e_ = (call);                                                              \
    if (e_ != cudaSuccess) {                                                              \
      fprintf(stderr, "gpu_check: %s:%d: %s: %s\n", __FILE__, __LINE__, #call,           \
              cudaGetErrorString(e_));                                                    \
      exit(1);                                                                            \
    }                                                                                     \
  } while (0)

/* --self: the "GPU" is the CPU table on host memory, which checks this
 * harness itself (argument order, buffer sizes under ASan) without a GPU. */
static int self_mode = 0;

static void *d_alloc(size_t bytes) {
  void *p = NULL;
  if (self_mode) {
    p = calloc(1, bytes);
    if (!p) exit(1);
  } else {
    CK(cudaMalloc(&p, bytes));
  }
  return p;
}
static void d_free(void *p) {
  if (self_mode) free(p);
  else cudaFree(p);
}
static void d_copy(void *dst, const void *src, size_t bytes, enum cudaMemcpyKind kind) {
  if (self_mode) memcpy(dst, src, bytes);
  else CK(cudaMemcpy(dst, src, bytes, kind));
}
/* Waits for the device and surfaces any error of the ops launched so far
 * (the table's ops are asynchronous and cannot return errors). */
static void d_sync(void) {
  if (!self_mode) CK(cudaDeviceSynchronize());
}

/* A host array and its device twin, filled with the same random values. */
typedef struct {
  float *h, *d;
  int64_t n;
} buf;

static uint64_t rng_state = 0x1234567;
static float frand(void) {
  rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
  return (float)((double)(rng_state >> 11) / 9007199254740992.0) * 2.0f - 1.0f;
}

static buf mk(int64_t n, float scale) {
  buf b = {malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)), NULL, n};
  for (int64_t i = 0; i < n; i++) b.h[i] = scale * frand();
  b.d = d_alloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  d_copy(b.d, b.h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice);
  return b;
}

static void rm(buf *b) {
  free(b->h);
  d_free(b->d);
  b->h = b->d = NULL;
}

/* Relative error norm of a device result `g` (already on the host) against
 * the host result h; prints a row of the table and counts it. */
static void judge(const char *op, const char *what, const float *h, const float *g, int64_t n,
                  double tol) {
  double num = 0, den = 0;
  int nonfinite = 0;
  for (int64_t i = 0; i < n; i++) {
    if (isfinite(h[i]) != isfinite(g[i]) || (!isfinite(h[i]) && h[i] != g[i])) {
      nonfinite++;
      continue;
    }
    if (!isfinite(h[i])) continue;
    num += ((double)g[i] - h[i]) * ((double)g[i] - h[i]);
    den += (double)h[i] * h[i];
  }
  double rel = sqrt(num / (den > 0 ? den : 1e-30));
  int ok = rel <= tol && !nonfinite;
  printf("  %-4s %-27s %-16s rel_err %.2e%s\n", ok ? "ok" : "FAIL", op, what, rel,
         nonfinite ? " (inf/nan mismatch)" : "");
  if (ok) n_pass++;
  else n_fail++;
}

/* Compares an f32 device result with the host result, within tol. */
static void cmp_tol(const char *op, const char *what, const buf *b, double tol) {
  float *g = malloc(sizeof(float) * (size_t)(b->n > 0 ? b->n : 1));
  d_copy(g, b->d, sizeof(float) * (size_t)b->n, cudaMemcpyDeviceToHost);
  judge(op, what, b->h, g, b->n, tol);
  free(g);
}

/* f32 outputs of f32 ops: relative error norm <= 1e-5. */
static void cmp(const char *op, const char *what, const buf *b) { cmp_tol(op, what, b, 1e-5); }

static int have(const char *op, const void *cpu_fn, const void *gpu_fn) {
  if (gpu_fn && cpu_fn) return 1;
  printf("  --   %-22s not implemented on %s\n", op, gpu_fn ? "CPU" : "CUDA");
  n_missing++;
  return 0;
}
#define HAVE(fn) have(#fn, (const void *)CPU->fn, (const void *)GPU->fn)

/* Pointer selectors: H(x) on the CPU side, D(x) on the GPU side. */
#define RUN(fn, ARGS)                                                                     \
  do {                                                                                    \
    {                                                                                     \
      enum { side = 0 };                                                                  \
      CPU->fn ARGS;                                                                       \
    }                                                                                     \
    {                                                                                     \
      enum { side = 1 };                                                                  \
      GPU->fn ARGS;                                                                       \
    }                                                                                     \
    d_sync();                                                          \
  } while (0)
#define P(b) (side ? (b).d : (b).h)

static void check_products(void) {
  int64_t N = 67, C = 45, OC = 33;
  if (HAVE(linear_forward)) {
    buf out = mk(N * OC, 1), inp = mk(N * C, 1), w = mk(OC * C, 1), b = mk(OC, 1);
    RUN(linear_forward, (P(out), P(inp), P(w), P(b), N, C, OC));
    cmp("linear_forward", "out", &out);
    RUN(linear_forward, (P(out), P(inp), P(w), NULL, N, C, OC));
    cmp("linear_forward", "out/nobias", &out);
    rm(&out), rm(&inp), rm(&w), rm(&b);
  }
  if (HAVE(linear_backward)) {
    buf dinp = mk(N * C, 1), dw = mk(OC * C, 1), db = mk(OC, 1), dout = mk(N * OC, 1),
        inp = mk(N * C, 1), w = mk(OC * C, 1);
    RUN(linear_backward, (P(dinp), P(dw), P(db), P(dout), P(inp), P(w), N, C, OC));
    cmp("linear_backward", "dinp", &dinp), cmp("linear_backward", "dweight", &dw);
    cmp("linear_backward", "dbias", &db);
    /* frozen weights: the input gradient only, and the weight gradient only */
    RUN(linear_backward, (P(dinp), NULL, NULL, P(dout), P(inp), P(w), N, C, OC));
    cmp("linear_backward", "dinp only", &dinp);
    RUN(linear_backward, (NULL, P(dw), NULL, P(dout), P(inp), P(w), N, C, OC));
    cmp("linear_backward", "dweight only", &dw);
    rm(&dinp), rm(&dw), rm(&db), rm(&dout), rm(&inp), rm(&w);
  }
  int64_t Bt = 3, M = 17, Nn = 12, K = 9;
  for (int trans = 0; trans < 2; trans++)
    for (int bc = 0; bc < 3; bc++) { /* 0: dense, 1: a broadcast, 2: m broadcast */
      if (!HAVE(bmm_forward) || !HAVE(bmm_backward)) return;
      int64_t sa = bc == 1 ? 0 : M * K, sm = bc == 2 ? 0 : K * Nn;
      buf out = mk(Bt * M * Nn, 1), a = mk(bc == 1 ? M * K : Bt * M * K, 1),
          m = mk(bc == 2 ? K * Nn : Bt * K * Nn, 1), dout = mk(Bt * M * Nn, 1);
      buf da = mk(a.n, 1), dm = mk(m.n, 1);
      char tag[32];
      snprintf(tag, sizeof tag, "t%d/b%d", trans, bc);
      RUN(bmm_forward, (P(out), P(a), P(m), Bt, M, Nn, K, trans, sa, sm));
      cmp("bmm_forward", tag, &out);
      RUN(bmm_backward, (P(da), P(dm), P(dout), P(a), P(m), Bt, M, Nn, K, trans, sa, sm));
      cmp("bmm_backward", tag, &da), cmp("bmm_backward", tag, &dm);
      RUN(bmm_backward, (P(da), NULL, P(dout), P(a), P(m), Bt, M, Nn, K, trans, sa, sm));
      cmp("bmm_backward da only", tag, &da);
      RUN(bmm_backward, (NULL, P(dm), P(dout), P(a), P(m), Bt, M, Nn, K, trans, sa, sm));
      cmp("bmm_backward dm only", tag, &dm);
      rm(&out), rm(&a), rm(&m), rm(&dout), rm(&da), rm(&dm);
    }
}

static void check_norms(void) {
  int64_t N = 70, C = 300;
  if (HAVE(layernorm_forward) && HAVE(layernorm_backward)) {
    buf out = mk(N * C, 1), mean = mk(N, 1), rstd = mk(N, 1), x = mk(N * C, 3), w = mk(C, 1),
        b = mk(C, 1), dx = mk(N * C, 1), dw = mk(C, 1), db = mk(C, 1), dy = mk(N * C, 1);
    for (int64_t i = 0; i < N * C; i++) x.h[i] += 5.0f; /* a large mean */
    d_copy(x.d, x.h, sizeof(float) * (size_t)x.n, cudaMemcpyHostToDevice);
    RUN(layernorm_forward, (P(out), P(mean), P(rstd), P(x), P(w), P(b), N, C, 1e-5f));
    cmp("layernorm_forward", "out", &out), cmp("layernorm_forward", "mean", &mean);
    cmp("layernorm_forward", "rstd", &rstd);
    RUN(layernorm_backward, (P(dx), P(dw), P(db), P(dy), P(x), P(w), P(mean), P(rstd), N, C));
    cmp("layernorm_backward", "dinp", &dx), cmp("layernorm_backward", "dweight", &dw);
    cmp("layernorm_backward", "dbias", &db);
    RUN(layernorm_backward, (P(dx), NULL, NULL, P(dy), P(x), P(w), P(mean), P(rstd), N, C));
    cmp("layernorm_backward", "dinp only", &dx); /* a frozen norm */
    /* inference (no saved statistics), no affine parameters (weight 1, bias 0) */
    RUN(layernorm_forward, (P(out), NULL, NULL, P(x), NULL, NULL, N, C, 1e-5f));
    cmp("layernorm_forward", "no w/b/stats", &out);
    rm(&out), rm(&mean), rm(&rstd), rm(&x), rm(&w), rm(&b), rm(&dx), rm(&dw), rm(&db), rm(&dy);
  }
  int64_t B = 2, Ch = 32, HW = 150;
  if (HAVE(layernorm2d_forward) && HAVE(layernorm2d_backward)) {
    buf out = mk(B * Ch * HW, 1), mean = mk(B * HW, 1), rstd = mk(B * HW, 1),
        x = mk(B * Ch * HW, 2), w = mk(Ch, 1), b = mk(Ch, 1), dx = mk(B * Ch * HW, 1),
        dw = mk(Ch, 1), db = mk(Ch, 1), dy = mk(B * Ch * HW, 1);
    RUN(layernorm2d_forward, (P(out), P(mean), P(rstd), P(x), P(w), P(b), B, Ch, HW, 1e-6f));
    cmp("layernorm2d_forward", "out", &out), cmp("layernorm2d_forward", "rstd", &rstd);
    RUN(layernorm2d_backward,
        (P(dx), P(dw), P(db), P(dy), P(x), P(w), P(mean), P(rstd), B, Ch, HW));
    cmp("layernorm2d_backward", "dinp", &dx), cmp("layernorm2d_backward", "dweight", &dw);
    cmp("layernorm2d_backward", "dbias", &db);
    RUN(layernorm2d_backward,
        (P(dx), NULL, NULL, P(dy), P(x), P(w), P(mean), P(rstd), B, Ch, HW));
    cmp("layernorm2d_backward", "dinp only", &dx);
    rm(&out), rm(&mean), rm(&rstd), rm(&x), rm(&w), rm(&b), rm(&dx), rm(&dw), rm(&db), rm(&dy);
  }
  if (HAVE(rmsnorm_forward) && HAVE(rmsnorm_backward)) {
    buf out = mk(N * C, 1), rstd = mk(N, 1), x = mk(N * C, 2), w = mk(C, 1), dx = mk(N * C, 1),
        dw = mk(C, 1), dy = mk(N * C, 1);
    RUN(rmsnorm_forward, (P(out), P(rstd), P(x), P(w), N, C, 1e-6f));
    cmp("rmsnorm_forward", "out", &out), cmp("rmsnorm_forward", "rstd", &rstd);
    RUN(rmsnorm_backward, (P(dx), P(dw), P(dy), P(x), P(w), P(rstd), N, C));
    cmp("rmsnorm_backward", "dinp", &dx), cmp("rmsnorm_backward", "dweight", &dw);
    RUN(rmsnorm_backward, (P(dx), NULL, P(dy), P(x), P(w), P(rstd), N, C));
    cmp("rmsnorm_backward", "dinp only", &dx);
    RUN(rmsnorm_forward, (P(out), NULL, P(x), NULL, N, C, 1e-6f));
    cmp("rmsnorm_forward", "no w/rstd", &out);
    rm(&out), rm(&rstd), rm(&x), rm(&w), rm(&dx), rm(&dw), rm(&dy);
  }
}

#define CHECK_ACT(name)                                                                   \
  if (HAVE(name##_forward) && HAVE(name##_backward)) {                                    \
    buf out = mk(n, 1), x = mk(n, 4), dx = mk(n, 1), dy = mk(n, 1);                      \
    RUN(name##_forward, (P(out), P(x), n));                                               \
    cmp(#name "_forward", "out", &out);                                                   \
    RUN(name##_backward, (P(dx), P(x), P(dy), n));                                        \
    cmp(#name "_backward", "dinp", &dx);                                                  \
    rm(&out), rm(&x), rm(&dx), rm(&dy);                                                   \
  }

static void check_elementwise(void) {
  int64_t n = 100003, N = 37, C = 129;
  CHECK_ACT(gelu)
  CHECK_ACT(relu)
  CHECK_ACT(silu)
  if (HAVE(swiglu_forward) && HAVE(swiglu_backward)) {
    buf out = mk(N * C, 1), h = mk(N * 2 * C, 3), dh = mk(N * 2 * C, 1), dy = mk(N * C, 1);
    RUN(swiglu_forward, (P(out), P(h), P(h) + C, N, C, 2 * C));
    cmp("swiglu_forward", "out", &out);
    RUN(swiglu_backward, (P(dh), P(dh) + C, P(dy), P(h), P(h) + C, N, C, 2 * C));
    cmp("swiglu_backward", "dgate|dup", &dh);
    RUN(swiglu_backward, (P(dh), NULL, P(dy), P(h), P(h) + C, N, C, 2 * C));
    cmp("swiglu_backward", "dgate only", &dh);
    RUN(swiglu_backward, (NULL, P(dh) + C, P(dy), P(h), P(h) + C, N, C, 2 * C));
    cmp("swiglu_backward", "dup only", &dh);
    rm(&out), rm(&h), rm(&dh), rm(&dy);
  }
  if (HAVE(layerscale_forward) && HAVE(layerscale_backward)) {
    buf out = mk(N * C, 1), x = mk(N * C, 1), g = mk(C, 1), dx = mk(N * C, 1), dg = mk(C, 1),
        dy = mk(N * C, 1);
    RUN(layerscale_forward, (P(out), P(x), P(g), N, C));
    cmp("layerscale_forward", "out", &out);
    RUN(layerscale_backward, (P(dx), P(dg), P(dy), P(x), P(g), N, C));
    cmp("layerscale_backward", "dinp", &dx), cmp("layerscale_backward", "dgamma", &dg);
    RUN(layerscale_backward, (P(dx), NULL, P(dy), P(x), P(g), N, C));
    cmp("layerscale_backward", "dinp only", &dx);
    rm(&out), rm(&x), rm(&g), rm(&dx), rm(&dg), rm(&dy);
  }
  buf out = mk(n, 1), a = mk(n, 1), b = mk(n, 1), da = mk(n, 1), db = mk(n, 1), dy = mk(n, 1);
  if (HAVE(add_forward)) {
    RUN(add_forward, (P(out), P(a), P(b), n));
    cmp("add_forward", "out", &out);
  }
  if (HAVE(mul_forward)) {
    RUN(mul_forward, (P(out), P(a), P(b), n));
    cmp("mul_forward", "out", &out);
  }
  if (HAVE(mul_backward)) {
    RUN(mul_backward, (P(da), P(db), P(dy), P(a), P(b), n));
    cmp("mul_backward", "da", &da), cmp("mul_backward", "db", &db);
    /* one gradient only, the input it does not need NULL (as LoRA dropout calls it) */
    RUN(mul_backward, (P(da), NULL, P(dy), NULL, P(b), n));
    cmp("mul_backward", "da/a=NULL", &da);
    RUN(mul_backward, (NULL, P(db), P(dy), P(a), NULL, n));
    cmp("mul_backward", "db/b=NULL", &db);
  }
  if (HAVE(axpy)) {
    RUN(axpy, (P(out), 0.37f, P(a), n));
    cmp("axpy", "y", &out);
  }
  if (HAVE(scale)) {
    RUN(scale, (P(out), P(a), -1.5f, n));
    cmp("scale", "out", &out);
  }
  if (HAVE(fill)) {
    RUN(fill, (P(out), 0.25f, n));
    cmp("fill", "x", &out);
  }
  if (HAVE(transpose_forward) && HAVE(transpose_backward)) {
    int64_t Bt = 3, M = 70, Nn = 45;
    buf t = mk(Bt * M * Nn, 1), x = mk(Bt * M * Nn, 1), dx = mk(Bt * M * Nn, 1);
    RUN(transpose_forward, (P(t), P(x), Bt, M, Nn));
    cmp("transpose_forward", "out", &t);
    RUN(transpose_backward, (P(dx), P(t), Bt, M, Nn));
    cmp("transpose_backward", "dinp", &dx);
    rm(&t), rm(&x), rm(&dx);
  }
  rm(&out), rm(&a), rm(&b), rm(&da), rm(&db), rm(&dy);
  /* a warp per row up to 1024 columns, a block per row above */
  static const int64_t sm_shapes[][2] = {{50, 1000}, {9, 3000}};
  for (int s = 0; s < 2 && HAVE(softmax_forward) && HAVE(softmax_backward); s++) {
    int64_t R = sm_shapes[s][0], K = sm_shapes[s][1];
    buf y = mk(R * K, 1), x = mk(R * K, 8), dx = mk(R * K, 1), dyy = mk(R * K, 1);
    for (int64_t j = 0; j < K; j++) x.h[j] = -INFINITY; /* a fully masked row */
    for (int64_t j = 0; j < K; j += 3) x.h[K + j] = -INFINITY; /* a partly masked one */
    d_copy(x.d, x.h, sizeof(float) * (size_t)x.n, cudaMemcpyHostToDevice);
    char tag[32];
    snprintf(tag, sizeof tag, "out %lldx%lld", (long long)R, (long long)K);
    RUN(softmax_forward, (P(y), P(x), R, K));
    cmp("softmax_forward", tag, &y);
    RUN(softmax_backward, (P(dx), P(dyy), P(y), R, K));
    cmp("softmax_backward", "dinp", &dx);
    rm(&y), rm(&x), rm(&dx), rm(&dyy);
  }
}

/* The memory, layout and optimizer entries (ABI 1.2): device memory through
 * the table's own allocator and copies (exact), the layout ops, the squared
 * sum, the finiteness scan, AdamW with its bf16 copy, and the conversions. */
static void check_memory_optim(void) {
  if (!HAVE(mem_alloc) || !HAVE(copy_to_device) || !HAVE(copy_to_host)) return;
  const int64_t n = 100003;
  const size_t bytes = sizeof(float) * (size_t)n;
  float *h = malloc(bytes), *back = malloc(bytes);
  for (int64_t i = 0; i < n; i++) h[i] = frand();
  float *d1 = GPU->mem_alloc(bytes), *d2 = GPU->mem_alloc(bytes);
  int zero = 1;
  GPU->copy_to_host(back, d1, bytes);
  for (int64_t i = 0; i < n; i++) zero = zero && back[i] == 0.0f;
  GPU->copy_to_device(d1, h, bytes);
  GPU->copy_on_device(d2, d1, bytes);
  GPU->copy_to_host(back, d2, bytes);
  int same = memcmp(back, h, bytes) == 0;
  GPU->mem_zero(d2, bytes);
  GPU->copy_to_host(back, d2, bytes);
  for (int64_t i = 0; i < n; i++) same = same && back[i] == 0.0f;
  printf("  %-4s %-27s %-16s %s\n", zero && same ? "ok" : "FAIL", "mem_alloc/copies/mem_zero",
         "bytes", zero && same ? "exact" : "differ");
  zero && same ? n_pass++ : n_fail++;
  GPU->mem_free(d1), GPU->mem_free(d2);
  free(h), free(back);

  const int64_t R = 67, C = 300, lds = 311, ldd = 305;
  if (HAVE(copy_2d)) {
    buf src = mk(R * lds, 1), dst = mk(R * ldd, 1);
    RUN(copy_2d, (P(dst), ldd, P(src), lds, R, C, 1));
    cmp("copy_2d accumulate", "dst", &dst);
    RUN(copy_2d, (P(dst), ldd, P(src), lds, R, C, 0));
    cmp("copy_2d", "dst", &dst);
    rm(&src), rm(&dst);
  }
  if (HAVE(add_rows) && HAVE(sum_rows)) {
    buf out = mk(R * C, 1), x = mk(R * C, 1), row = mk(C, 1), drow = mk(C, 1);
    RUN(add_rows, (P(out), P(x), P(row), R, C));
    cmp("add_rows", "out", &out);
    RUN(sum_rows, (P(drow), P(x), R, C));
    cmp("sum_rows", "drow", &drow);
    rm(&out), rm(&x), rm(&row), rm(&drow);
  }
  if (HAVE(mask_counts)) {
    const int64_t M = 5, P = 300007;
    buf x = mk(M * P, 1), t = mk(M * P, 1);
    int64_t hc[15], gc[15], *dc = d_alloc(sizeof gc);
    CPU->mask_counts(hc, x.h, t.h, M, P);
    GPU->mask_counts(dc, x.d, t.d, M, P);
    d_copy(gc, dc, sizeof gc, cudaMemcpyDeviceToHost);
    int ok = memcmp(hc, gc, sizeof hc) == 0;
    printf("  %-4s %-27s %-16s %s\n", ok ? "ok" : "FAIL", "mask_counts", "counts",
           ok ? "exact" : "differ");
    ok ? n_pass++ : n_fail++;
    d_free(dc), rm(&x), rm(&t);
  }
  if (HAVE(sum_squares) && HAVE(find_nonfinite)) {
    buf x = mk(n, 1);
    double hs = CPU->sum_squares(x.h, n), gs = GPU->sum_squares(x.d, n);
    int ok = fabs(hs - gs) <= 1e-12 * hs;
    x.h[77777] = NAN;
    x.h[90001] = INFINITY;
    d_copy(x.d, x.h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice);
    ok = ok && GPU->find_nonfinite(x.d, n) == 77777 && CPU->find_nonfinite(x.h, n) == 77777;
    printf("  %-4s %-27s %-16s rel_err %.2e\n", ok ? "ok" : "FAIL", "sum_squares/find_nonfinite",
           "sum, index", fabs(hs - gs) / hs);
    ok ? n_pass++ : n_fail++;
    rm(&x);
  }
  if (HAVE(adamw_step)) {
    buf p = mk(n, 1), g = mk(n, 2), m = mk(n, 0.1f), v = mk(n, 0.01f);
    for (int64_t i = 0; i < n; i++) v.h[i] = fabsf(v.h[i]);
    d_copy(v.d, v.h, sizeof(float) * (size_t)n, cudaMemcpyHostToDevice);
    ps_bf16 *hb = calloc((size_t)n, 2), *db = d_alloc((size_t)n * 2), *gb = calloc((size_t)n, 2);
    RUN(adamw_step, (P(p), P(g), P(m), P(v), side ? db : hb, n, 0.7f, 0.9f, 0.999f, 1e-4f,
                     0.01f, 1.2f, 1e-8f));
    cmp("adamw_step", "p", &p), cmp("adamw_step", "m", &m), cmp("adamw_step", "v", &v);
    d_copy(gb, db, (size_t)n * 2, cudaMemcpyDeviceToHost);
    int ok = memcmp(gb, hb, (size_t)n * 2) == 0;
    printf("  %-4s %-27s %-16s %s\n", ok ? "ok" : "FAIL", "adamw_step", "p_bf16",
           ok ? "exact" : "differ");
    ok ? n_pass++ : n_fail++;
    if (HAVE(to_bf16) && HAVE(from_bf16)) {
      RUN(to_bf16, (side ? db : hb, P(p), n));
      d_copy(gb, db, (size_t)n * 2, cudaMemcpyDeviceToHost);
      RUN(from_bf16, (P(g), side ? db : hb, n));
      int ok2 = memcmp(gb, hb, (size_t)n * 2) == 0;
      printf("  %-4s %-27s %-16s %s\n", ok2 ? "ok" : "FAIL", "to_bf16", "out", ok2 ? "exact" : "differ");
      ok2 ? n_pass++ : n_fail++;
      cmp_tol("from_bf16", "out", &g, 0.0);
    }
    free(hb), free(gb), d_free(db);
    rm(&p), rm(&g), rm(&m), rm(&v);
  }
}

/* The bf16-precision table's linear products (f32 tensors, bf16 tensor
 * cores): against the CPU's f32 products of the bf16-rounded operands, which
 * they equal up to summation order (bf16 x bf16 products are exact in f32). */
static void check_precision_bf16(void) {
  GError *err = NULL;
  static ps_kernels self_ac; /* --self: the emulated bf16-precision table */
  if (self_mode) {
    self_ac = *GPU;
    self_ac.linear_forward = ps_emu_linear_forward_bf16p;
    self_ac.linear_backward = ps_emu_linear_backward_bf16p;
  }
  const ps_kernels *ac =
      self_mode ? &self_ac : ps_kernels_get_precision(PS_DEVICE_CUDA, PS_PRECISION_BF16, &err);
  if (!ac) {
    printf("  FAIL bf16 precision table: %s\n", err ? err->message : "?");
    g_clear_error(&err);
    n_fail++;
    return;
  }
  const int64_t N = 67, C = 129, OC = 96;
  buf x = mk(N * C, 1), w = mk(OC * C, 1), b = mk(OC, 1), y = mk(N * OC, 1), dy = mk(N * OC, 1),
      dx = mk(N * C, 1), dw = mk(OC * C, 1), db = mk(OC, 1);
  /* the reference: rounded copies on the host */
  float *xr = malloc(sizeof(float) * N * C), *wr = malloc(sizeof(float) * OC * C),
        *dyr = malloc(sizeof(float) * N * OC);
  for (int64_t i = 0; i < N * C; i++) xr[i] = ps_bf16_to_f32(ps_f32_to_bf16(x.h[i]));
  for (int64_t i = 0; i < OC * C; i++) wr[i] = ps_bf16_to_f32(ps_f32_to_bf16(w.h[i]));
  for (int64_t i = 0; i < N * OC; i++) dyr[i] = ps_bf16_to_f32(ps_f32_to_bf16(dy.h[i]));
  CPU->linear_forward(y.h, xr, wr, b.h, N, C, OC);
  ac->linear_forward(y.d, x.d, w.d, b.d, N, C, OC);
  d_sync();
  cmp("bf16 table linear_forward", "out", &y);
  CPU->linear_backward(dx.h, dw.h, NULL, dyr, xr, wr, N, C, OC);
  CPU->linear_backward(NULL, NULL, db.h, dy.h, NULL, NULL, N, C, OC);
  ac->linear_backward(dx.d, dw.d, db.d, dy.d, x.d, w.d, N, C, OC);
  d_sync();
  cmp("bf16 table linear_backward", "dinp", &dx), cmp("bf16 table linear_backward", "dweight", &dw);
  cmp("bf16 table linear_backward", "dbias", &db);
  free(xr), free(wr), free(dyr);
  rm(&x), rm(&w), rm(&b), rm(&y), rm(&dy), rm(&dx), rm(&dw), rm(&db);
}

/* The attention accuracy cases, f32 and bf16 alike, run through both CUDA
 * paths (att_paths). bias: 0 none, 1 one (Tq, Tk) bias broadcast over batch
 * and heads (sb = sh = 0), 2 one per (batch, head); bias cases mask a few
 * entries and one whole query row (row 1) with -inf. flags: gradients or lse
 * passed as NULL (on both sides; not compared). The later cases exercise the
 * tiled kernels' edges: lengths not multiples of the 64-row tiles, decode
 * (Tq = 1 < Tk, causal), causal Tq > Tk (rows with no visible key), head dims
 * 8, 16, 80, 100 (padded) and 128, relpos grids larger than one key tile. */
enum { ATT_NO_DQ = 1, ATT_NO_DKV = 2, ATT_NO_LSE = 4 };
typedef struct {
  const char *tag;
  ps_attention_desc d;
  int bias, rel, flags;
} att_case;
static const att_case att_cases[] = {
    {"causal-gqa", {.B = 2, .Hq = 4, .Hkv = 2, .Tq = 33, .Tk = 33, .D = 32, .scale = 0.17677669f,
                    .causal = 1}, 0, 0, 0},
    {"cross+bias", {.B = 2, .Hq = 3, .Hkv = 3, .Tq = 9, .Tk = 41, .D = 40, .scale = 0.3f}, 1, 0, 0},
    {"packed+relpos", {.B = 3, .Hq = 2, .Hkv = 2, .Tq = 49, .Tk = 49, .D = 16, .ldq = 3 * 2 * 16,
                       .ldk = 3 * 2 * 16, .ldv = 3 * 2 * 16, .scale = 0.25f, .rel_kh = 7,
                       .rel_kw = 7}, 0, 1, 0},
    {"decode 1x130 causal gqa", {.B = 2, .Hq = 6, .Hkv = 2, .Tq = 1, .Tk = 130, .D = 64,
                                 .scale = 0.125f, .causal = 1}, 0, 0, 0},
    {"causal 37x130 D80", {.B = 1, .Hq = 2, .Hkv = 1, .Tq = 37, .Tk = 130, .D = 80, .scale = 0.11f,
                           .causal = 1}, 0, 0, 0},
    {"causal 130x37 D16 masked", {.B = 2, .Hq = 2, .Hkv = 2, .Tq = 130, .Tk = 37, .D = 16,
                                  .scale = 0.25f, .causal = 1}, 0, 0, 0},
    {"cross 130x37 D128 bias/bh", {.B = 2, .Hq = 2, .Hkv = 1, .Tq = 130, .Tk = 37, .D = 128,
                                   .scale = 0.09f}, 2, 0, 0},
    {"gqa 37x37 D64 no dq", {.B = 1, .Hq = 4, .Hkv = 2, .Tq = 37, .Tk = 37, .D = 64,
                             .scale = 0.125f}, 1, 0, ATT_NO_DQ},
    {"window 196 rel+bias no dkv", {.B = 2, .Hq = 2, .Hkv = 2, .Tq = 196, .Tk = 196, .D = 64,
                                    .ldq = 3 * 2 * 64, .ldk = 3 * 2 * 64, .ldv = 3 * 2 * 64,
                                    .scale = 0.125f, .rel_kh = 14, .rel_kw = 14},
     1, 1, ATT_NO_DKV | ATT_NO_LSE},
    {"cross 65x256 rel16 D100", {.B = 1, .Hq = 2, .Hkv = 2, .Tq = 65, .Tk = 256, .D = 100,
                                 .scale = 0.1f, .rel_kh = 16, .rel_kw = 16}, 0, 1, 0},
    {"global 1024 rel32 D64", {.B = 1, .Hq = 2, .Hkv = 2, .Tq = 1024, .Tk = 1024, .D = 64,
                               .scale = 0.125f, .rel_kh = 32, .rel_kw = 32}, 0, 1, 0},
    {"1x1 D8", {.B = 1, .Hq = 3, .Hkv = 3, .Tq = 1, .Tk = 1, .D = 8, .scale = 0.3f}, 0, 0, 0},
    {"no keys Tk=0", {.B = 2, .Hq = 2, .Hkv = 1, .Tq = 5, .Tk = 0, .D = 32, .scale = 0.2f}, 0, 0,
     0},
};

/* Runs the attention checks through the tiled kernels (the default) and
 * again through the row kernels (PATHSEG_CUDA_ATTENTION=rows, " (rows)" in
 * the names), then restores the variable. */
static void att_paths(void (*one)(const char *tag, const att_case *c)) {
  const char *was = getenv("PATHSEG_CUDA_ATTENTION");
  char *saved = was ? strdup(was) : NULL;
  for (int rows = 0; rows < 2; rows++) {
    if (rows) setenv("PATHSEG_CUDA_ATTENTION", "rows", 1);
    else unsetenv("PATHSEG_CUDA_ATTENTION");
    for (size_t i = 0; i < sizeof att_cases / sizeof att_cases[0]; i++) {
      char tag[64];
      snprintf(tag, sizeof tag, "%s%s", att_cases[i].tag, rows ? " (rows)" : "");
      one(tag, &att_cases[i]);
    }
  }
  if (saved) setenv("PATHSEG_CUDA_ATTENTION", saved, 1);
  else unsetenv("PATHSEG_CUDA_ATTENTION");
  free(saved);
}

/* Sets the bias of case c on both sides: masked entries as described above. */
static void att_bias(ps_attention_desc *dh, ps_attention_desc *dd, buf *bb, int bias) {
  const ps_attention_desc *d = dh;
  for (int64_t i = 0; i < bb->n; i++)
    if (i % 7 == 3 || (i / d->Tk) % d->Tq == 1) bb->h[i] = -INFINITY;
  d_copy(bb->d, bb->h, sizeof(float) * (size_t)bb->n, cudaMemcpyHostToDevice);
  int64_t sb = bias == 2 ? d->Hq * d->Tq * d->Tk : 0, sh = bias == 2 ? d->Tq * d->Tk : 0;
  dh->bias = bb->h, dd->bias = bb->d;
  dh->bias_sb = dd->bias_sb = sb, dh->bias_sh = dd->bias_sh = sh;
}

static int64_t att_bias_n(const att_case *c) {
  const ps_attention_desc *d = &c->d;
  return c->bias == 2 ? d->B * d->Hq * d->Tq * d->Tk : c->bias ? d->Tq * d->Tk : 1;
}

/* One attention configuration: forward (out, lse) and backward (all grads). */
static void check_attention_case(const char *tag, const att_case *c) {
  ps_attention_desc d = c->d;
  int bias = c->bias, rel = c->rel, fl = c->flags;
  int64_t ldq = d.ldq ? d.ldq : d.Hq * d.D, ldk = d.ldk ? d.ldk : d.Hkv * d.D;
  int64_t ldv = d.ldv ? d.ldv : d.Hkv * d.D, ldo = d.Hq * d.D;
  buf q = mk(d.B * d.Tq * ldq, 1), k = mk(d.B * d.Tk * ldk, 1), v = mk(d.B * d.Tk * ldv, 1);
  buf out = mk(d.B * d.Tq * ldo, 1), lse = mk(d.B * d.Hq * d.Tq, 1), dout = mk(out.n, 1);
  buf dq = mk(q.n, 1), dk = mk(k.n, 1), dv = mk(v.n, 1);
  buf bb = mk(att_bias_n(c), 1), dbb = mk(bb.n, 1);
  int64_t gh = rel ? d.rel_kh : 1, gw = rel ? d.rel_kw : 1;
  buf rh = mk(d.B * d.Hq * d.Tq * gh, 1), rw = mk(d.B * d.Hq * d.Tq * gw, 1), drh = mk(rh.n, 1),
      drw = mk(rw.n, 1);
  ps_attention_desc dh = d, dd = d;
  if (bias) att_bias(&dh, &dd, &bb, bias);
  if (rel) dh.rel_h = rh.h, dh.rel_w = rw.h, dd.rel_h = rh.d, dd.rel_w = rw.d;
  int64_t sf = CPU->attention_scratch(&dh, 1), sf0 = CPU->attention_scratch(&dh, 0);
  sf = sf > sf0 ? sf : sf0;
  float *scr = malloc(sizeof(float) * (size_t)(sf > 0 ? sf : 1));
  int64_t gsf = GPU->attention_scratch(&dd, 1), gsf0 = GPU->attention_scratch(&dd, 0);
  gsf = gsf > gsf0 ? gsf : gsf0;
  float *gscr = d_alloc(sizeof(float) * (size_t)(gsf > 0 ? gsf : 1));

  CPU->attention_forward(out.h, lse.h, q.h, k.h, v.h, &dh, scr, sf);
  GPU->attention_forward(out.d, fl & ATT_NO_LSE ? NULL : lse.d, q.d, k.d, v.d, &dd, gscr, gsf);
  d_sync();
  char what[80];
  snprintf(what, sizeof what, "%s out", tag), cmp("attention_forward", what, &out);
  if (!(fl & ATT_NO_LSE)) snprintf(what, sizeof what, "%s lse", tag), cmp("attention_forward", what, &lse);
  /* Backward from the CPU's forward on both sides, so only backward differs. */
  d_copy(out.d, out.h, sizeof(float) * (size_t)out.n, cudaMemcpyHostToDevice);
  d_copy(lse.d, lse.h, sizeof(float) * (size_t)lse.n, cudaMemcpyHostToDevice);
  int ndq = fl & ATT_NO_DQ, ndkv = fl & ATT_NO_DKV;
  CPU->attention_backward(ndq ? NULL : dq.h, ndkv ? NULL : dk.h, ndkv ? NULL : dv.h,
                          bias ? dbb.h : NULL, rel ? drh.h : NULL, rel ? drw.h : NULL, dout.h, q.h,
                          k.h, v.h, out.h, lse.h, &dh, scr, sf);
  GPU->attention_backward(ndq ? NULL : dq.d, ndkv ? NULL : dk.d, ndkv ? NULL : dv.d,
                          bias ? dbb.d : NULL, rel ? drh.d : NULL, rel ? drw.d : NULL, dout.d, q.d,
                          k.d, v.d, out.d, lse.d, &dd, gscr, gsf);
  d_sync();
  /* gradients are added (+=) to the random initial values on both sides */
  if (!ndq) snprintf(what, sizeof what, "%s dq", tag), cmp("attention_backward", what, &dq);
  if (!ndkv) {
    snprintf(what, sizeof what, "%s dk", tag), cmp("attention_backward", what, &dk);
    snprintf(what, sizeof what, "%s dv", tag), cmp("attention_backward", what, &dv);
  }
  if (bias) snprintf(what, sizeof what, "%s dbias", tag), cmp("attention_backward", what, &dbb);
  if (rel) {
    snprintf(what, sizeof what, "%s drel_h", tag), cmp("attention_backward", what, &drh);
    snprintf(what, sizeof what, "%s drel_w", tag), cmp("attention_backward", what, &drw);
  }
  free(scr);
  d_free(gscr);
  rm(&q), rm(&k), rm(&v), rm(&out), rm(&lse), rm(&dout), rm(&dq), rm(&dk), rm(&dv), rm(&bb),
      rm(&dbb), rm(&rh), rm(&rw), rm(&drh), rm(&drw);
}

static void check_attention(void) {
  if (!HAVE(attention_forward) || !HAVE(attention_backward) || !HAVE(attention_scratch)) return;
  att_paths(check_attention_case);
}

/* Host int32 array and its device twin. */
typedef struct {
  int32_t *h, *d;
  int64_t n;
} ibuf;

static ibuf mki(int64_t n, int32_t lo, int32_t hi) {
  ibuf b = {malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1)), NULL, n};
  for (int64_t i = 0; i < n; i++) b.h[i] = lo + (int32_t)((frand() * 0.5f + 0.5f) * (float)(hi - lo));
  b.d = d_alloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
  d_copy(b.d, b.h, sizeof(int32_t) * (size_t)n, cudaMemcpyHostToDevice);
  return b;
}
static void rmi(ibuf *b) {
  free(b->h);
  d_free(b->d);
}
#define PI(b) (side ? (b).d : (b).h)

static void check_embedding_losses(void) {
  int64_t N = 50, V = 37, C = 24;
  if (HAVE(embedding_forward) && HAVE(embedding_backward)) {
    ibuf ids = mki(N, -2, (int32_t)V + 2); /* a few out-of-range ids */
    buf out = mk(N * C, 1), tab = mk(V * C, 1), dtab = mk(V * C, 1), dy = mk(N * C, 1);
    RUN(embedding_forward, (P(out), PI(ids), P(tab), N, V, C));
    cmp("embedding_forward", "out", &out);
    RUN(embedding_backward, (P(dtab), PI(ids), P(dy), N, V, C));
    cmp("embedding_backward", "dtable", &dtab);
    rmi(&ids), rm(&out), rm(&tab), rm(&dtab), rm(&dy);
  }
  if (HAVE(crossentropy)) {
    int64_t R = 40, VV = 3000;
    ibuf tg = mki(R, 0, (int32_t)VV);
    tg.h[3] = -100, tg.h[7] = -100; /* ignore_index rows */
    d_copy(tg.d, tg.h, sizeof(int32_t) * (size_t)R, cudaMemcpyHostToDevice);
    buf x = mk(R * VV, 6), dx = mk(R * VV, 1), rl = mk(R, 1), loss = mk(1, 0);
    float lc = 0, lg = 0;
    {
      enum { side = 0 };
      lc = CPU->crossentropy(P(dx), P(rl), P(x), PI(tg), R, VV, -100, 0.0f, 1.0f);
    }
    {
      enum { side = 1 };
      lg = GPU->crossentropy(P(dx), P(rl), P(x), PI(tg), R, VV, -100, 0.0f, 1.0f);
    }
    loss.h[0] = lc;
    d_copy(loss.d, &lg, sizeof(float), cudaMemcpyHostToDevice);
    cmp("crossentropy", "loss", &loss), cmp("crossentropy", "row_loss", &rl);
    cmp("crossentropy", "dlogits", &dx);
    /* in place (dlogits == logits), sum reduction */
    {
      enum { side = 0 };
      lc = CPU->crossentropy(P(x), NULL, P(x), PI(tg), R, VV, -100, 7.0f, 0.5f);
    }
    {
      enum { side = 1 };
      lg = GPU->crossentropy(P(x), NULL, P(x), PI(tg), R, VV, -100, 7.0f, 0.5f);
    }
    loss.h[0] = lc;
    d_copy(loss.d, &lg, sizeof(float), cudaMemcpyHostToDevice);
    cmp("crossentropy", "loss/inpl", &loss), cmp("crossentropy", "dlog/inpl", &x);
    rmi(&tg), rm(&x), rm(&dx), rm(&rl), rm(&loss);
  }
  int64_t M = 3, Pn = 5000;
  buf lg = mk(M * Pn, 4), tg = mk(M * Pn, 1), los = mk(M, 1), dl = mk(M, 1), dlg = mk(M * Pn, 1);
  for (int64_t i = 0; i < tg.n; i++) tg.h[i] = tg.h[i] > 0.2f ? 1.0f : 0.0f;
  d_copy(tg.d, tg.h, sizeof(float) * (size_t)tg.n, cudaMemcpyHostToDevice);
  if (HAVE(bce_logits_forward) && HAVE(bce_logits_backward)) {
    RUN(bce_logits_forward, (P(los), P(lg), P(tg), M, Pn));
    cmp("bce_logits_forward", "losses", &los);
    RUN(bce_logits_backward, (P(dlg), P(dl), P(lg), P(tg), M, Pn));
    cmp("bce_logits_backward", "dlogits", &dlg);
  }
  if (HAVE(dice_forward) && HAVE(dice_backward)) {
    ps_dice_desc lisa = {1000.0f, 1e-6f, 1e-6f, 0}, monai = {1.0f, 1e-5f, 1e-5f, 1};
    RUN(dice_forward, (P(los), P(lg), P(tg), M, Pn, &lisa));
    cmp("dice_forward", "lisa", &los);
    RUN(dice_backward, (P(dlg), P(dl), P(lg), P(tg), M, Pn, &lisa));
    cmp("dice_backward", "lisa", &dlg);
    RUN(dice_forward, (P(los), P(lg), P(tg), M, Pn, &monai));
    cmp("dice_forward", "monai", &los);
    RUN(dice_backward, (P(dlg), P(dl), P(lg), P(tg), M, Pn, &monai));
    cmp("dice_backward", "monai", &dlg);
  }
  rm(&lg), rm(&tg), rm(&los), rm(&dl), rm(&dlg);
}

static void check_spatial(void) {
  int64_t B = 2, H = 17, W = 13, C = 8, ws = 7;
  int64_t nwin = B * ps_windows_per_dim(H, ws) * ps_windows_per_dim(W, ws);
  if (HAVE(window_partition_forward) && HAVE(window_partition_backward) &&
      HAVE(window_unpartition_forward) && HAVE(window_unpartition_backward)) {
    buf grid = mk(B * H * W * C, 1), win = mk(nwin * ws * ws * C, 1), dgrid = mk(grid.n, 1),
        dwin = mk(win.n, 1);
    RUN(window_partition_forward, (P(win), P(grid), B, H, W, C, ws));
    cmp("window_partition_fwd", "out", &win);
    RUN(window_partition_backward, (P(dgrid), P(win), B, H, W, C, ws));
    cmp("window_partition_bwd", "dinp", &dgrid);
    RUN(window_unpartition_forward, (P(grid), P(win), B, H, W, C, ws));
    cmp("window_unpartition_fwd", "out", &grid);
    RUN(window_unpartition_backward, (P(dwin), P(grid), B, H, W, C, ws));
    cmp("window_unpartition_bwd", "dinp", &dwin);
    rm(&grid), rm(&win), rm(&dgrid), rm(&dwin);
  }
  if (HAVE(rel_pos_forward) && HAVE(rel_pos_backward)) {
    int64_t Bq = 2, Hh = 3, gh = 5, gw = 4, D = 16, ldq = 3 * Hh * D, T = gh * gw;
    buf q = mk(Bq * T * ldq, 1), rph = mk((2 * gh - 1) * D, 1), rpw = mk((2 * gw - 1) * D, 1);
    buf rh = mk(Bq * Hh * T * gh, 1), rw = mk(Bq * Hh * T * gw, 1), dq = mk(q.n, 1),
        drph = mk(rph.n, 1), drpw = mk(rpw.n, 1);
    RUN(rel_pos_forward, (P(rh), P(rw), P(q), P(rph), P(rpw), Bq, Hh, gh, gw, D, ldq));
    cmp("rel_pos_forward", "rel_h", &rh), cmp("rel_pos_forward", "rel_w", &rw);
    RUN(rel_pos_backward, (P(dq), P(drph), P(drpw), P(rh), P(rw), P(q), P(rph), P(rpw), Bq, Hh, gh,
                           gw, D, ldq));
    cmp("rel_pos_backward", "dq", &dq), cmp("rel_pos_backward", "drel_pos_h", &drph);
    cmp("rel_pos_backward", "drel_pos_w", &drpw);
    rm(&q), rm(&rph), rm(&rpw), rm(&rh), rm(&rw), rm(&dq), rm(&drph), rm(&drpw);
  }
  if (HAVE(rope_forward) && HAVE(rope_backward)) {
    ps_rope_desc d1 = {.N = 40, .H = 3, .D = 64, .theta = 10000.0f};
    ps_rope_desc d3 = {.N = 40, .H = 2, .D = 32, .ld = 3 * 2 * 32, .theta = 1e6f, .n_sections = 3,
                       .sections = {4, 6, 6}};
    ps_rope_desc dv = {.N = 40, .H = 2, .D = 32, .theta = 1e4f, .n_sections = 2,
                       .sections = {8, 8}, .section_local = 1};
    const ps_rope_desc *ds[3] = {&d1, &d3, &dv};
    const char *tags[3] = {"1d", "mrope", "vision2d"};
    for (int k = 0; k < 3; k++) {
      const ps_rope_desc *d = ds[k];
      int64_t ld = d->ld ? d->ld : d->H * d->D;
      ibuf pos = mki(3 * d->N, 0, 4000);
      buf x = mk(d->N * ld, 1), y = mk(d->N * ld, 1), dx = mk(d->N * ld, 1);
      RUN(rope_forward, (P(y), P(x), PI(pos), d));
      cmp("rope_forward", tags[k], &y);
      RUN(rope_backward, (P(dx), P(y), PI(pos), d));
      cmp("rope_backward", tags[k], &dx);
      rmi(&pos), rm(&x), rm(&y), rm(&dx);
    }
  }
  if (HAVE(resize_forward) && HAVE(resize_backward)) {
    int64_t NC = 3, Hi = 19, Wi = 23;
    static const int64_t outs[][2] = {{64, 40}, {7, 9}};
    for (int mode = 0; mode < 2; mode++)
      for (int s = 0; s < 2; s++) {
        int64_t OH = outs[s][0], OW = outs[s][1];
        buf x = mk(NC * Hi * Wi, 1), y = mk(NC * OH * OW, 1), dx = mk(x.n, 1);
        char tag[32];
        snprintf(tag, sizeof tag, "%s %lldx%lld", mode ? "cubic" : "linear", (long long)OH,
                 (long long)OW);
        RUN(resize_forward, (P(y), P(x), NC, Hi, Wi, OH, OW, 0.0f, 0.0f, (ps_resize_mode)mode));
        cmp("resize_forward", tag, &y);
        RUN(resize_backward, (P(dx), P(y), NC, Hi, Wi, OH, OW, 0.0f, 0.0f, (ps_resize_mode)mode));
        cmp("resize_backward", tag, &dx);
        rm(&x), rm(&y), rm(&dx);
      }
  }
}

/* conv2d runs through cuDNN when the CUDA library was built with it and
 * through its own im2col kernels otherwise (or with PATHSEG_NO_CUDNN=1):
 * main runs this twice, `path` naming the run. */
static void check_conv(const char *path) {
  if (HAVE(conv2d_forward) && HAVE(conv2d_backward) && HAVE(conv2d_scratch)) {
    static const ps_conv2d_desc ds[] = {
        {.B = 2, .C = 3, .H = 32, .W = 32, .OC = 16, .KH = 16, .KW = 16, .stride = 16}, /* patch */
        {.B = 2, .C = 8, .H = 15, .W = 13, .OC = 12, .KH = 3, .KW = 3, .stride = 1, .pad = 1},
        {.B = 2, .C = 8, .H = 15, .W = 13, .OC = 12, .KH = 3, .KW = 3, .stride = 2, .pad = 1},
        {.B = 2, .C = 16, .H = 9, .W = 11, .OC = 8, .KH = 1, .KW = 1, .stride = 1}};
    for (size_t s = 0; s < sizeof ds / sizeof ds[0]; s++) {
      const ps_conv2d_desc *d = &ds[s];
      int64_t OH = (d->H + 2 * d->pad - d->KH) / d->stride + 1;
      int64_t OW = (d->W + 2 * d->pad - d->KW) / d->stride + 1;
      int64_t sf = CPU->conv2d_scratch(d), gsf = GPU->conv2d_scratch(d);
      buf scr = mk(sf > gsf ? sf : gsf, 0);
      buf x = mk(d->B * d->C * d->H * d->W, 1), w = mk(d->OC * d->C * d->KH * d->KW, 1),
          b = mk(d->OC, 1), y = mk(d->B * d->OC * OH * OW, 1), dx = mk(x.n, 1), dw = mk(w.n, 1),
          db = mk(d->OC, 1), dy = mk(y.n, 1);
      char tag[32];
      snprintf(tag, sizeof tag, "%s case %zu", path, s);
      RUN(conv2d_forward, (P(y), P(x), P(w), P(b), d, P(scr), side ? gsf : sf));
      cmp("conv2d_forward", tag, &y);
      RUN(conv2d_backward, (P(dx), P(dw), P(db), P(dy), P(x), P(w), d, P(scr), side ? gsf : sf));
      cmp("conv2d_backward dinp", tag, &dx), cmp("conv2d_backward dW", tag, &dw);
      cmp("conv2d_backward db", tag, &db);
      /* a frozen convolution (dinp only) and a first layer (no dinp) */
      RUN(conv2d_backward, (P(dx), NULL, NULL, P(dy), P(x), P(w), d, P(scr), side ? gsf : sf));
      cmp("conv2d_backward dinp only", tag, &dx);
      RUN(conv2d_backward, (NULL, P(dw), P(db), P(dy), P(x), P(w), d, P(scr), side ? gsf : sf));
      cmp("conv2d_backward no dinp", tag, &dw), cmp("conv2d_backward no dinp db", tag, &db);
      rm(&scr), rm(&x), rm(&w), rm(&b), rm(&y), rm(&dx), rm(&dw), rm(&db), rm(&dy);
    }
  }
  if (HAVE(convt2x2_forward) && HAVE(convt2x2_backward) && HAVE(convt2x2_scratch)) {
    int64_t B = 2, C = 16, H = 9, W = 7, OC = 8;
    int64_t sf = CPU->convt2x2_scratch(B, C, H, W, OC), gsf = GPU->convt2x2_scratch(B, C, H, W, OC);
    buf scr = mk(sf > gsf ? sf : gsf, 0);
    buf x = mk(B * C * H * W, 1), w = mk(C * OC * 4, 1), b = mk(OC, 1), y = mk(B * OC * 4 * H * W, 1),
        dx = mk(x.n, 1), dw = mk(w.n, 1), db = mk(OC, 1), dy = mk(y.n, 1);
    RUN(convt2x2_forward, (P(y), P(x), P(w), P(b), B, C, H, W, OC, P(scr), side ? gsf : sf));
    cmp("convt2x2_forward", path, &y);
    RUN(convt2x2_backward,
        (P(dx), P(dw), P(db), P(dy), P(x), P(w), B, C, H, W, OC, P(scr), side ? gsf : sf));
    cmp("convt2x2_backward dinp", path, &dx), cmp("convt2x2_backward dW", path, &dw);
    cmp("convt2x2_backward db", path, &db);
    RUN(convt2x2_backward,
        (P(dx), NULL, NULL, P(dy), P(x), P(w), B, C, H, W, OC, P(scr), side ? gsf : sf));
    cmp("convt2x2_backward dinp only", path, &dx);
    RUN(convt2x2_backward,
        (NULL, P(dw), NULL, P(dy), P(x), P(w), B, C, H, W, OC, P(scr), side ? gsf : sf));
    cmp("convt2x2_backward dW only", path, &dw);
    rm(&scr), rm(&x), rm(&w), rm(&b), rm(&y), rm(&dx), rm(&dw), rm(&db), rm(&dy);
  }
}

/* Both conv2d paths: cuDNN (where built in) and the own kernels. */
static void check_convs(void) {
  check_conv("default");
  const char *was = getenv("PATHSEG_NO_CUDNN");
  char *saved = was ? strdup(was) : NULL;
  setenv("PATHSEG_NO_CUDNN", "1", 1);
  check_conv("no-cudnn");
  if (saved) setenv("PATHSEG_NO_CUDNN", saved, 1);
  else unsetenv("PATHSEG_NO_CUDNN");
  free(saved);
}

/* ------------------------------------------------------------ bf16 entries
 *
 * Each bf16 entry of the CUDA table against the CPU f32 op on the same data:
 * the inputs are drawn, rounded to bf16, and the CPU gets those rounded
 * values as f32, so the only differences are the GPU's bf16 outputs (one
 * rounding each, ~2^-9 relative) and f32 summation order. Bound: relative
 * error norm <= 1e-2, for bf16 outputs and for the f32 outputs of bf16 ops
 * (statistics, parameter gradients, losses) alike. Backward runs from the
 * CPU's forward state, rounded to the storage type, on both sides. */

static const double BF16_TOL = 1e-2;

/* Host values (f32, exactly representable in bf16) and their bf16 device twin. */
typedef struct {
  float *h;
  ps_bf16 *d;
  int64_t n;
} bbuf;

static void upload_bf16(bbuf *b) {
  ps_bf16 *t = malloc(sizeof(ps_bf16) * (size_t)(b->n > 0 ? b->n : 1));
  for (int64_t i = 0; i < b->n; i++) t[i] = ps_f32_to_bf16(b->h[i]);
  d_copy(b->d, t, sizeof(ps_bf16) * (size_t)b->n, cudaMemcpyHostToDevice);
  free(t);
}

/* Rounds the host values to bf16 in place and uploads them. */
static void round_upload(bbuf *b) {
  for (int64_t i = 0; i < b->n; i++) b->h[i] = ps_bf16_to_f32(ps_f32_to_bf16(b->h[i]));
  upload_bf16(b);
}

static bbuf mkb(int64_t n, float scale) {
  bbuf b = {malloc(sizeof(float) * (size_t)(n > 0 ? n : 1)), NULL, n};
  for (int64_t i = 0; i < n; i++) b.h[i] = scale * frand();
  b.d = d_alloc(sizeof(ps_bf16) * (size_t)(n > 0 ? n : 1));
  round_upload(&b);
  return b;
}

static void rmb(bbuf *b) {
  free(b->h);
  d_free(b->d);
  b->h = NULL, b->d = NULL;
}

static void cmpb(const char *op, const char *what, const bbuf *b) {
  ps_bf16 *t = malloc(sizeof(ps_bf16) * (size_t)(b->n > 0 ? b->n : 1));
  float *g = malloc(sizeof(float) * (size_t)(b->n > 0 ? b->n : 1));
  d_copy(t, b->d, sizeof(ps_bf16) * (size_t)b->n, cudaMemcpyDeviceToHost);
  for (int64_t i = 0; i < b->n; i++) g[i] = ps_bf16_to_f32(t[i]);
  judge(op, what, b->h, g, b->n, BF16_TOL);
  free(t), free(g);
}

/* f32 host buffer -> device, for the f32 state a backward reads (mean, lse). */
static void upload(buf *b) { d_copy(b->d, b->h, sizeof(float) * (size_t)b->n, cudaMemcpyHostToDevice); }

/* The CPU's f32 op against the GPU's bf16 op. PB passes a bbuf (host f32
 * values / device bf16), P an f32 buf; void * converts to either pointer type. */
#define RUNB(fn, ARGS)                                                                    \
  do {                                                                                    \
    {                                                                                     \
      enum { side = 0 };                                                                  \
      CPU->fn ARGS;                                                                       \
    }                                                                                     \
    {                                                                                     \
      enum { side = 1 };                                                                  \
      GPU->fn##_bf16 ARGS;                                                                \
    }                                                                                     \
    d_sync();                                                                             \
  } while (0)
#define PB(b) (side ? (void *)(b).d : (void *)(b).h)
#define HAVEB(fn) have(#fn "_bf16", (const void *)CPU->fn, (const void *)GPU->fn##_bf16)

static void check_bf16_dense(void) {
  int64_t N = 67, C = 45, OC = 33;
  if (HAVEB(linear_forward) && HAVEB(linear_backward)) {
    bbuf out = mkb(N * OC, 1), inp = mkb(N * C, 1), w = mkb(OC * C, 1), b = mkb(OC, 1);
    bbuf dinp = mkb(N * C, 1), dout = mkb(N * OC, 1);
    buf dw = mk(OC * C, 1), db = mk(OC, 1);
    RUNB(linear_forward, (PB(out), PB(inp), PB(w), PB(b), N, C, OC));
    cmpb("linear_forward_bf16", "out", &out);
    RUNB(linear_forward, (PB(out), PB(inp), PB(w), NULL, N, C, OC));
    cmpb("linear_forward_bf16", "out/nobias", &out);
    RUNB(linear_backward, (PB(dinp), P(dw), P(db), PB(dout), PB(inp), PB(w), N, C, OC));
    cmpb("linear_backward_bf16", "dinp", &dinp);
    cmp_tol("linear_backward_bf16", "dweight f32", &dw, BF16_TOL);
    cmp_tol("linear_backward_bf16", "dbias f32", &db, BF16_TOL);
    rmb(&out), rmb(&inp), rmb(&w), rmb(&b), rmb(&dinp), rmb(&dout), rm(&dw), rm(&db);
  }
  N = 70, C = 300;
  if (HAVEB(layernorm_forward) && HAVEB(layernorm_backward)) {
    bbuf out = mkb(N * C, 1), x = mkb(N * C, 3), w = mkb(C, 1), b = mkb(C, 1), dx = mkb(N * C, 1),
         dy = mkb(N * C, 1);
    buf mean = mk(N, 1), rstd = mk(N, 1), dw = mk(C, 1), db = mk(C, 1);
    for (int64_t i = 0; i < x.n; i++) x.h[i] += 5.0f; /* a large mean */
    round_upload(&x);
    RUNB(layernorm_forward, (PB(out), P(mean), P(rstd), PB(x), PB(w), PB(b), N, C, 1e-5f));
    cmpb("layernorm_forward_bf16", "out", &out);
    cmp_tol("layernorm_forward_bf16", "mean f32", &mean, BF16_TOL);
    cmp_tol("layernorm_forward_bf16", "rstd f32", &rstd, BF16_TOL);
    upload(&mean), upload(&rstd);
    RUNB(layernorm_backward,
         (PB(dx), P(dw), P(db), PB(dy), PB(x), PB(w), P(mean), P(rstd), N, C));
    cmpb("layernorm_backward_bf16", "dinp", &dx);
    cmp_tol("layernorm_backward_bf16", "dweight f32", &dw, BF16_TOL);
    cmp_tol("layernorm_backward_bf16", "dbias f32", &db, BF16_TOL);
    rmb(&out), rmb(&x), rmb(&w), rmb(&b), rmb(&dx), rmb(&dy);
    rm(&mean), rm(&rstd), rm(&dw), rm(&db);
  }
  if (HAVEB(rmsnorm_forward) && HAVEB(rmsnorm_backward)) {
    bbuf out = mkb(N * C, 1), x = mkb(N * C, 2), w = mkb(C, 1), dx = mkb(N * C, 1),
         dy = mkb(N * C, 1);
    buf rstd = mk(N, 1), dw = mk(C, 1);
    RUNB(rmsnorm_forward, (PB(out), P(rstd), PB(x), PB(w), N, C, 1e-6f));
    cmpb("rmsnorm_forward_bf16", "out", &out);
    cmp_tol("rmsnorm_forward_bf16", "rstd f32", &rstd, BF16_TOL);
    upload(&rstd);
    RUNB(rmsnorm_backward, (PB(dx), P(dw), PB(dy), PB(x), PB(w), P(rstd), N, C));
    cmpb("rmsnorm_backward_bf16", "dinp", &dx);
    cmp_tol("rmsnorm_backward_bf16", "dweight f32", &dw, BF16_TOL);
    rmb(&out), rmb(&x), rmb(&w), rmb(&dx), rmb(&dy), rm(&rstd), rm(&dw);
  }
}

#define CHECK_ACT_BF16(name)                                                              \
  if (HAVEB(name##_forward) && HAVEB(name##_backward)) {                                  \
    bbuf out = mkb(n, 1), x = mkb(n, 4), dx = mkb(n, 1), dy = mkb(n, 1);                  \
    RUNB(name##_forward, (PB(out), PB(x), n));                                            \
    cmpb(#name "_forward_bf16", "out", &out);                                             \
    RUNB(name##_backward, (PB(dx), PB(x), PB(dy), n));                                    \
    cmpb(#name "_backward_bf16", "dinp", &dx);                                            \
    rmb(&out), rmb(&x), rmb(&dx), rmb(&dy);                                               \
  }

static void check_bf16_elementwise(void) {
  int64_t n = 100003, N = 37, C = 129;
  CHECK_ACT_BF16(gelu)
  CHECK_ACT_BF16(silu)
  if (HAVEB(swiglu_forward) && HAVEB(swiglu_backward)) {
    /* packed [gate | up] rows (ld = 2C), as DINOv2's w12 */
    bbuf out = mkb(N * C, 1), h = mkb(N * 2 * C, 3), dh = mkb(N * 2 * C, 1), dy = mkb(N * C, 1);
    RUNB(swiglu_forward, (PB(out), PB(h), side ? (void *)(h.d + C) : (void *)(h.h + C), N, C, 2 * C));
    cmpb("swiglu_forward_bf16", "out", &out);
    RUNB(swiglu_backward, (PB(dh), side ? (void *)(dh.d + C) : (void *)(dh.h + C), PB(dy), PB(h),
                           side ? (void *)(h.d + C) : (void *)(h.h + C), N, C, 2 * C));
    cmpb("swiglu_backward_bf16", "dgate|dup", &dh);
    rmb(&out), rmb(&h), rmb(&dh), rmb(&dy);
  }
  if (HAVEB(softmax_forward) && HAVEB(softmax_backward)) {
    static const int64_t shapes[][2] = {{50, 1000}, {64, 256}, {3, 7}, {5, 2000}};
    for (int s = 0; s < 4; s++) {
      int64_t R = shapes[s][0], K = shapes[s][1];
      bbuf y = mkb(R * K, 1), x = mkb(R * K, 8), dx = mkb(R * K, 1), dyy = mkb(R * K, 1);
      for (int64_t j = 0; j < K; j++) x.h[j] = -INFINITY; /* a fully masked row */
      upload_bf16(&x);
      char tag[32];
      snprintf(tag, sizeof tag, "%lldx%lld", (long long)R, (long long)K);
      RUNB(softmax_forward, (PB(y), PB(x), R, K));
      cmpb("softmax_forward_bf16", tag, &y);
      round_upload(&y); /* backward from the CPU's probabilities */
      RUNB(softmax_backward, (PB(dx), PB(dyy), PB(y), R, K));
      cmpb("softmax_backward_bf16", tag, &dx);
      rmb(&y), rmb(&x), rmb(&dx), rmb(&dyy);
    }
  }
}

static void check_bf16_attention_case(const char *tag, const att_case *c) {
  ps_attention_desc d = c->d;
  int bias = c->bias, rel = c->rel, fl = c->flags;
  int64_t ldq = d.ldq ? d.ldq : d.Hq * d.D, ldk = d.ldk ? d.ldk : d.Hkv * d.D;
  int64_t ldv = d.ldv ? d.ldv : d.Hkv * d.D, ldo = d.Hq * d.D;
  bbuf q = mkb(d.B * d.Tq * ldq, 1), k = mkb(d.B * d.Tk * ldk, 1), v = mkb(d.B * d.Tk * ldv, 1);
  bbuf out = mkb(d.B * d.Tq * ldo, 1), dout = mkb(out.n, 1);
  bbuf dq = mkb(q.n, 1), dk = mkb(k.n, 1), dv = mkb(v.n, 1);
  buf lse = mk(d.B * d.Hq * d.Tq, 1);
  buf bb = mk(att_bias_n(c), 1), dbb = mk(bb.n, 1);
  int64_t gh = rel ? d.rel_kh : 1, gw = rel ? d.rel_kw : 1;
  buf rh = mk(d.B * d.Hq * d.Tq * gh, 1), rw = mk(d.B * d.Hq * d.Tq * gw, 1), drh = mk(rh.n, 1),
      drw = mk(rw.n, 1);
  ps_attention_desc dh = d, dd = d;
  if (bias) att_bias(&dh, &dd, &bb, bias);
  if (rel) dh.rel_h = rh.h, dh.rel_w = rw.h, dd.rel_h = rh.d, dd.rel_w = rw.d;
  int64_t sf = CPU->attention_scratch(&dh, 1), sf0 = CPU->attention_scratch(&dh, 0);
  sf = sf > sf0 ? sf : sf0;
  float *scr = malloc(sizeof(float) * (size_t)(sf > 0 ? sf : 1));
  int64_t gsf = GPU->attention_scratch_bf16(&dd, 1), gsf0 = GPU->attention_scratch_bf16(&dd, 0);
  gsf = gsf > gsf0 ? gsf : gsf0;
  float *gscr = d_alloc(sizeof(float) * (size_t)(gsf > 0 ? gsf : 1));

  CPU->attention_forward(out.h, lse.h, q.h, k.h, v.h, &dh, scr, sf);
  GPU->attention_forward_bf16(out.d, fl & ATT_NO_LSE ? NULL : lse.d, q.d, k.d, v.d, &dd, gscr, gsf);
  d_sync();
  char what[80];
  snprintf(what, sizeof what, "%s out", tag), cmpb("attention_forward_bf16", what, &out);
  if (!(fl & ATT_NO_LSE)) {
    snprintf(what, sizeof what, "%s lse f32", tag);
    cmp_tol("attention_forward_bf16", what, &lse, BF16_TOL);
  }
  round_upload(&out), upload(&lse);
  int ndq = fl & ATT_NO_DQ, ndkv = fl & ATT_NO_DKV;
  CPU->attention_backward(ndq ? NULL : dq.h, ndkv ? NULL : dk.h, ndkv ? NULL : dv.h,
                          bias ? dbb.h : NULL, rel ? drh.h : NULL, rel ? drw.h : NULL, dout.h, q.h,
                          k.h, v.h, out.h, lse.h, &dh, scr, sf);
  GPU->attention_backward_bf16(ndq ? NULL : dq.d, ndkv ? NULL : dk.d, ndkv ? NULL : dv.d,
                               bias ? dbb.d : NULL, rel ? drh.d : NULL, rel ? drw.d : NULL, dout.d,
                               q.d, k.d, v.d, out.d, lse.d, &dd, gscr, gsf);
  d_sync();
  if (!ndq) snprintf(what, sizeof what, "%s dq", tag), cmpb("attention_backward_bf16", what, &dq);
  if (!ndkv) {
    snprintf(what, sizeof what, "%s dk", tag), cmpb("attention_backward_bf16", what, &dk);
    snprintf(what, sizeof what, "%s dv", tag), cmpb("attention_backward_bf16", what, &dv);
  }
  if (bias) {
    snprintf(what, sizeof what, "%s dbias f32", tag);
    cmp_tol("attention_backward_bf16", what, &dbb, BF16_TOL);
  }
  if (rel) {
    snprintf(what, sizeof what, "%s drel_h f32", tag);
    cmp_tol("attention_backward_bf16", what, &drh, BF16_TOL);
    snprintf(what, sizeof what, "%s drel_w f32", tag);
    cmp_tol("attention_backward_bf16", what, &drw, BF16_TOL);
  }
  free(scr);
  d_free(gscr);
  rmb(&q), rmb(&k), rmb(&v), rmb(&out), rmb(&dout), rmb(&dq), rmb(&dk), rmb(&dv);
  rm(&lse), rm(&bb), rm(&dbb), rm(&rh), rm(&rw), rm(&drh), rm(&drw);
}

static void check_bf16_attention(void) {
  if (!HAVEB(attention_forward) || !HAVEB(attention_backward) || !HAVEB(attention_scratch)) return;
  att_paths(check_bf16_attention_case);
}

static void check_bf16_tokens(void) {
  int64_t N = 50, V = 37, C = 24;
  if (HAVEB(embedding_forward) && HAVEB(embedding_backward)) {
    ibuf ids = mki(N, -2, (int32_t)V + 2); /* a few out-of-range ids */
    bbuf out = mkb(N * C, 1), tab = mkb(V * C, 1), dy = mkb(N * C, 1);
    buf dtab = mk(V * C, 1);
    RUNB(embedding_forward, (PB(out), PI(ids), PB(tab), N, V, C));
    cmpb("embedding_forward_bf16", "out", &out);
    RUNB(embedding_backward, (P(dtab), PI(ids), PB(dy), N, V, C));
    cmp_tol("embedding_backward_bf16", "dtable f32", &dtab, BF16_TOL);
    rmi(&ids), rmb(&out), rmb(&tab), rmb(&dy), rm(&dtab);
  }
  if (HAVEB(crossentropy)) {
    int64_t R = 40, VV = 3000;
    ibuf tg = mki(R, 0, (int32_t)VV);
    tg.h[3] = -100, tg.h[7] = -100; /* ignore_index rows */
    d_copy(tg.d, tg.h, sizeof(int32_t) * (size_t)R, cudaMemcpyHostToDevice);
    bbuf x = mkb(R * VV, 6), dx = mkb(R * VV, 1);
    buf rl = mk(R, 1), loss = mk(1, 0);
    float lc = CPU->crossentropy(dx.h, rl.h, x.h, tg.h, R, VV, -100, 0.0f, 1.0f);
    float lg = GPU->crossentropy_bf16(dx.d, rl.d, x.d, tg.d, R, VV, -100, 0.0f, 1.0f);
    loss.h[0] = lc;
    d_copy(loss.d, &lg, sizeof(float), cudaMemcpyHostToDevice);
    cmp_tol("crossentropy_bf16", "loss", &loss, BF16_TOL);
    cmp_tol("crossentropy_bf16", "row_loss", &rl, BF16_TOL);
    cmpb("crossentropy_bf16", "dlogits", &dx);
    /* in place (dlogits == logits), sum reduction */
    lc = CPU->crossentropy(x.h, NULL, x.h, tg.h, R, VV, -100, 7.0f, 0.5f);
    lg = GPU->crossentropy_bf16(x.d, NULL, x.d, tg.d, R, VV, -100, 7.0f, 0.5f);
    loss.h[0] = lc;
    d_copy(loss.d, &lg, sizeof(float), cudaMemcpyHostToDevice);
    cmp_tol("crossentropy_bf16", "loss/inpl", &loss, BF16_TOL);
    cmpb("crossentropy_bf16", "dlog/inpl", &x);
    rmi(&tg), rmb(&x), rmb(&dx), rm(&rl), rm(&loss);
  }
  if (HAVEB(rope_forward) && HAVEB(rope_backward)) {
    ps_rope_desc d1 = {.N = 40, .H = 3, .D = 64, .theta = 10000.0f};
    ps_rope_desc d3 = {.N = 40, .H = 2, .D = 32, .ld = 3 * 2 * 32, .theta = 1e6f, .n_sections = 3,
                       .sections = {4, 6, 6}};
    const ps_rope_desc *ds[2] = {&d1, &d3};
    const char *tags[2] = {"1d", "mrope"};
    for (int k = 0; k < 2; k++) {
      const ps_rope_desc *d = ds[k];
      int64_t ld = d->ld ? d->ld : d->H * d->D;
      ibuf pos = mki(3 * d->N, 0, 4000);
      bbuf x = mkb(d->N * ld, 1), y = mkb(d->N * ld, 1), dx = mkb(d->N * ld, 1);
      RUNB(rope_forward, (PB(y), PB(x), PI(pos), d));
      cmpb("rope_forward_bf16", tags[k], &y);
      round_upload(&y);
      RUNB(rope_backward, (PB(dx), PB(y), PI(pos), d));
      cmpb("rope_backward_bf16", tags[k], &dx);
      rmi(&pos), rmb(&x), rmb(&y), rmb(&dx);
    }
  }
}

static void check_bf16(void) {
  printf("bf16 entries vs the CPU f32 ops on bf16-rounded data (rel err <= 1e-2)\n");
  check_bf16_dense();
  check_bf16_elementwise();
  check_bf16_attention();
  check_bf16_tokens();
}

/* The CPU table with the bf16 entries emulated: --self's stand-in GPU. */
static ps_kernels emu_table(void) {
  ps_kernels t = *CPU;
  t.name = "cpu+bf16-emulation";
  ps_emu_bf16_entries(&t, CPU);
  return t;
}

/* ------------------------------------------------------------ benchmarks */

typedef void (*gpu_fn)(void *);

static double time_ms(gpu_fn fn, void *ctx, int reps) {
  cudaEvent_t a, b;
  CK(cudaEventCreate(&a));
  CK(cudaEventCreate(&b));
  fn(ctx); /* warm-up */
  float best = 1e30f;
  for (int r = 0; r < reps; r++) {
    CK(cudaEventRecord(a, 0));
    fn(ctx);
    CK(cudaEventRecord(b, 0));
    CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    if (ms < best) best = ms;
  }
  cudaEventDestroy(a), cudaEventDestroy(b);
  return best;
}

typedef struct {
  int64_t N, C, OC;
  float *inp, *w, *b, *out, *dout, *dinp, *dw, *db;
} lin_ctx;
static void lin_run(void *p) {
  lin_ctx *c = p;
  GPU->linear_forward(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
  GPU->linear_backward(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC);
}

typedef struct {
  ps_attention_desc d;
  float *q, *k, *v, *out, *lse, *dout, *dq, *dk, *dv;
} att_ctx;
static void att_run(void *p) {
  att_ctx *c = p;
  GPU->attention_forward(c->out, c->lse, c->q, c->k, c->v, &c->d, NULL, 0);
  GPU->attention_backward(c->dq, c->dk, c->dv, NULL, NULL, NULL, c->dout, c->q, c->k, c->v, c->out,
                          c->lse, &c->d, NULL, 0);
}

typedef struct {
  int op;
  int64_t N, C;
  float *x, *y, *w, *b, *mean, *rstd, *dst;
} mem_ctx;
static void mem_run(void *p) {
  mem_ctx *c = p;
  if (c->op == 0) GPU->layernorm_forward(c->y, c->mean, c->rstd, c->x, c->w, c->b, c->N, c->C, 1e-5f);
  else if (c->op == 1) GPU->softmax_forward(c->y, c->x, c->N, c->C);
  else if (c->op == 2) GPU->gelu_forward(c->y, c->x, c->N * c->C);
  else CK(cudaMemcpyAsync(c->dst, c->x, sizeof(float) * (size_t)(c->N * c->C), cudaMemcpyDeviceToDevice, 0));
}

typedef struct {
  int64_t N, C, OC;
  ps_bf16 *inp, *w, *b, *out, *dout, *dinp;
  float *dw, *db;
} lin16_ctx;
static void lin16_run(void *p) {
  lin16_ctx *c = p;
  GPU->linear_forward_bf16(c->out, c->inp, c->w, c->b, c->N, c->C, c->OC);
  GPU->linear_backward_bf16(c->dinp, c->dw, c->db, c->dout, c->inp, c->w, c->N, c->C, c->OC);
}

typedef struct {
  ps_attention_desc d;
  ps_bf16 *q, *k, *v, *out, *dout, *dq, *dk, *dv;
  float *lse, *scr;
  int64_t sf;
} att16_ctx;
static void att16_run(void *p) {
  att16_ctx *c = p;
  GPU->attention_forward_bf16(c->out, c->lse, c->q, c->k, c->v, &c->d, NULL, 0);
  GPU->attention_backward_bf16(c->dq, c->dk, c->dv, NULL, NULL, NULL, c->dout, c->q, c->k, c->v,
                               c->out, c->lse, &c->d, c->scr, c->sf);
}

static ps_bf16 *dalloc16(int64_t n) {
  ps_bf16 *p;
  CK(cudaMalloc((void **)&p, sizeof(ps_bf16) * (size_t)n));
  CK(cudaMemset(p, 0, sizeof(ps_bf16) * (size_t)n));
  return p;
}

typedef struct {
  ps_conv2d_desc d;
  float *x, *w, *b, *y, *dx, *dw, *db, *dy, *scr;
  int64_t sf;
} conv_ctx;
static void conv_run(void *p) {
  conv_ctx *c = p;
  GPU->conv2d_forward(c->y, c->x, c->w, c->b, &c->d, c->scr, c->sf);
  GPU->conv2d_backward(c->dx, c->dw, c->db, c->dy, c->x, c->w, &c->d, c->scr, c->sf);
}

static float *dalloc(int64_t n) {
  float *p;
  CK(cudaMalloc((void **)&p, sizeof(float) * (size_t)n));
  CK(cudaMemset(p, 0, sizeof(float) * (size_t)n));
  return p;
}

static void benchmarks(void) {
  printf("\nGPU benchmarks (best of 20, CUDA events)\n");
  printf("  %-34s %10s %12s\n", "case", "ms", "rate");
  static const int64_t lin[][3] = {{4096, 768, 3072}, {4096, 3072, 768}, {2048, 896, 4864}};
  for (int s = 0; s < 3 && GPU->linear_forward && GPU->linear_backward; s++) {
    lin_ctx c = {.N = lin[s][0], .C = lin[s][1], .OC = lin[s][2]};
    c.inp = dalloc(c.N * c.C), c.dinp = dalloc(c.N * c.C), c.w = dalloc(c.OC * c.C),
    c.dw = dalloc(c.OC * c.C), c.b = dalloc(c.OC), c.db = dalloc(c.OC),
    c.out = dalloc(c.N * c.OC), c.dout = dalloc(c.N * c.OC);
    double ms = time_ms(lin_run, &c, 20);
    char name[64];
    snprintf(name, sizeof name, "linear fwd+bwd %lldx%lldx%lld", (long long)c.N, (long long)c.C,
             (long long)c.OC);
    printf("  %-34s %10.3f %9.1f TFLOP/s\n", name, ms, 6.0 * c.N * c.C * c.OC / ms * 1e-9);
    cudaFree(c.inp), cudaFree(c.dinp), cudaFree(c.w), cudaFree(c.dw), cudaFree(c.b),
        cudaFree(c.db), cudaFree(c.out), cudaFree(c.dout);
  }
  for (int s = 0; s < 3 && GPU->linear_forward_bf16 && GPU->linear_backward_bf16; s++) {
    lin16_ctx c = {.N = lin[s][0], .C = lin[s][1], .OC = lin[s][2]};
    c.inp = dalloc16(c.N * c.C), c.dinp = dalloc16(c.N * c.C), c.w = dalloc16(c.OC * c.C),
    c.b = dalloc16(c.OC), c.out = dalloc16(c.N * c.OC), c.dout = dalloc16(c.N * c.OC);
    c.dw = dalloc(c.OC * c.C), c.db = dalloc(c.OC);
    double ms = time_ms(lin16_run, &c, 20);
    char name[64];
    snprintf(name, sizeof name, "linear bf16 fwd+bwd %lldx%lldx%lld", (long long)c.N,
             (long long)c.C, (long long)c.OC);
    printf("  %-34s %10.3f %9.1f TFLOP/s\n", name, ms, 6.0 * c.N * c.C * c.OC / ms * 1e-9);
    cudaFree(c.inp), cudaFree(c.dinp), cudaFree(c.w), cudaFree(c.b), cudaFree(c.out),
        cudaFree(c.dout), cudaFree(c.dw), cudaFree(c.db);
  }
  if (GPU->attention_forward && GPU->attention_backward) {
    static const int64_t at[][4] = {{8, 4, 256, 32}, {25, 12, 196, 64}, {1, 12, 4096, 64}};
    static const char *names[] = {"attention mha 8x4x256x32", "attention sam window 25x12x196x64",
                                  "attention sam global 1x12x4096x64"};
    for (int s = 0; s < 3; s++)
    for (int rows = 0; rows < 2; rows++) { /* tiled kernels, then the row kernels */
      if (rows) setenv("PATHSEG_CUDA_ATTENTION", "rows", 1);
      else unsetenv("PATHSEG_CUDA_ATTENTION");
      att_ctx c = {.d = {.B = at[s][0], .Hq = at[s][1], .Hkv = at[s][1], .Tq = at[s][2],
                         .Tk = at[s][2], .D = at[s][3]}};
      c.d.scale = 1.0f / sqrtf((float)c.d.D);
      int64_t n = c.d.B * c.d.Tq * c.d.Hq * c.d.D;
      c.q = dalloc(n), c.k = dalloc(n), c.v = dalloc(n), c.out = dalloc(n), c.dout = dalloc(n),
      c.dq = dalloc(n), c.dk = dalloc(n), c.dv = dalloc(n), c.lse = dalloc(c.d.B * c.d.Hq * c.d.Tq);
      double ms = time_ms(att_run, &c, s == 2 && rows ? 3 : 20);
      if (rows) unsetenv("PATHSEG_CUDA_ATTENTION");
      double flops = 6.0 * 2.0 * c.d.B * c.d.Hq * (double)c.d.Tq * c.d.Tk * c.d.D;
      char name[64];
      snprintf(name, sizeof name, "%s%s", names[s], rows ? " (rows)" : "");
      printf("  %-34s %10.3f %9.2f TFLOP/s\n", name, ms, flops / ms * 1e-9);
      cudaFree(c.q), cudaFree(c.k), cudaFree(c.v), cudaFree(c.out), cudaFree(c.dout),
          cudaFree(c.dq), cudaFree(c.dk), cudaFree(c.dv), cudaFree(c.lse);
    }
  }
  if (GPU->attention_forward_bf16 && GPU->attention_backward_bf16) {
    static const int64_t at[][4] = {{8, 4, 256, 32}, {25, 12, 196, 64}};
    static const char *names[] = {"attention bf16 mha 8x4x256x32",
                                  "attention bf16 window 25x12x196x64"};
    for (int s = 0; s < 2; s++)
    for (int rows = 0; rows < 2; rows++) { /* tiled kernels, then the row kernels */
      if (rows) setenv("PATHSEG_CUDA_ATTENTION", "rows", 1);
      else unsetenv("PATHSEG_CUDA_ATTENTION");
      att16_ctx c = {.d = {.B = at[s][0], .Hq = at[s][1], .Hkv = at[s][1], .Tq = at[s][2],
                           .Tk = at[s][2], .D = at[s][3]}};
      c.d.scale = 1.0f / sqrtf((float)c.d.D);
      int64_t n = c.d.B * c.d.Tq * c.d.Hq * c.d.D;
      c.q = dalloc16(n), c.k = dalloc16(n), c.v = dalloc16(n), c.out = dalloc16(n),
      c.dout = dalloc16(n), c.dq = dalloc16(n), c.dk = dalloc16(n), c.dv = dalloc16(n);
      c.lse = dalloc(c.d.B * c.d.Hq * c.d.Tq);
      c.sf = GPU->attention_scratch_bf16(&c.d, 1);
      c.scr = dalloc(c.sf > 0 ? c.sf : 1);
      double ms = time_ms(att16_run, &c, 20);
      if (rows) unsetenv("PATHSEG_CUDA_ATTENTION");
      double flops = 6.0 * 2.0 * c.d.B * c.d.Hq * (double)c.d.Tq * c.d.Tk * c.d.D;
      char name[64];
      snprintf(name, sizeof name, "%s%s", names[s], rows ? " (rows)" : "");
      printf("  %-34s %10.3f %9.2f TFLOP/s\n", name, ms, flops / ms * 1e-9);
      cudaFree(c.q), cudaFree(c.k), cudaFree(c.v), cudaFree(c.out), cudaFree(c.dout),
          cudaFree(c.dq), cudaFree(c.dk), cudaFree(c.dv), cudaFree(c.lse), cudaFree(c.scr);
    }
  }
  /* conv2d fwd+bwd: SAM ViT-B patch embedding at 1024 px and a 3x3 neck conv,
   * through cuDNN (where built in) and through the own kernels */
  static const ps_conv2d_desc convs[] = {
      {.B = 1, .C = 3, .H = 1024, .W = 1024, .OC = 768, .KH = 16, .KW = 16, .stride = 16},
      {.B = 1, .C = 256, .H = 64, .W = 64, .OC = 256, .KH = 3, .KW = 3, .stride = 1, .pad = 1}};
  static const char *conv_names[] = {"conv2d patch16 3->768 1024px", "conv2d 3x3 256->256 64x64"};
  for (int s = 0; s < 2 && GPU->conv2d_forward && GPU->conv2d_backward; s++)
    for (int own = 0; own < 2; own++) {
      conv_ctx c = {.d = convs[s]};
      const ps_conv2d_desc *d = &c.d;
      int64_t OH = (d->H + 2 * d->pad - d->KH) / d->stride + 1;
      int64_t OW = (d->W + 2 * d->pad - d->KW) / d->stride + 1;
      int64_t nx = d->B * d->C * d->H * d->W, nw = d->OC * d->C * d->KH * d->KW;
      int64_t ny = d->B * d->OC * OH * OW;
      c.sf = GPU->conv2d_scratch(d);
      c.x = dalloc(nx), c.dx = dalloc(nx), c.w = dalloc(nw), c.dw = dalloc(nw), c.b = dalloc(d->OC),
      c.db = dalloc(d->OC), c.y = dalloc(ny), c.dy = dalloc(ny), c.scr = dalloc(c.sf > 0 ? c.sf : 1);
      if (own) setenv("PATHSEG_NO_CUDNN", "1", 1);
      double ms = time_ms(conv_run, &c, 20);
      if (own) unsetenv("PATHSEG_NO_CUDNN");
      double flops = 6.0 * ny * d->C * d->KH * d->KW;
      char name[80];
      snprintf(name, sizeof name, "%s%s", conv_names[s], own ? " (own)" : "");
      printf("  %-34s %10.3f %9.2f TFLOP/s\n", name, ms, flops / ms * 1e-9);
      cudaFree(c.x), cudaFree(c.dx), cudaFree(c.w), cudaFree(c.dw), cudaFree(c.b), cudaFree(c.db),
          cudaFree(c.y), cudaFree(c.dy), cudaFree(c.scr);
    }
  static const struct {
    int op;
    const char *name;
    int64_t N, C;
  } mem[] = {{3, "memcpy d2d (reference)", 16384, 768}, {0, "layernorm fwd 16384x768", 16384, 768},
             {1, "softmax fwd 8192x256", 8192, 256}, {1, "softmax fwd 4096x4096", 4096, 4096},
             {2, "gelu fwd 4096x3072", 4096, 3072}};
  double ref = 0;
  for (int s = 0; s < 5; s++) {
    mem_ctx c = {.op = mem[s].op, .N = mem[s].N, .C = mem[s].C};
    if ((c.op == 0 && !GPU->layernorm_forward) || (c.op == 1 && !GPU->softmax_forward) ||
        (c.op == 2 && !GPU->gelu_forward))
      continue;
    int64_t n = c.N * c.C;
    c.x = dalloc(n), c.y = dalloc(n), c.dst = dalloc(n), c.w = dalloc(c.C), c.b = dalloc(c.C),
    c.mean = dalloc(c.N), c.rstd = dalloc(c.N);
    double ms = time_ms(mem_run, &c, 20);
    double gbps = 2.0 * n * sizeof(float) / ms * 1e-6;
    if (s == 0) ref = gbps;
    printf("  %-34s %10.3f %8.0f GB/s (%.2f of memcpy)\n", mem[s].name, ms, gbps, gbps / ref);
    cudaFree(c.x), cudaFree(c.y), cudaFree(c.dst), cudaFree(c.w), cudaFree(c.b), cudaFree(c.mean),
        cudaFree(c.rstd);
  }
}

int main(int argc, char **argv) {
  /* Line-buffered even into a pipe (gpu-check.sh tees it): an op that aborts
   * (a CUDA error) must not take the rows already printed with it. */
  setvbuf(stdout, NULL, _IOLBF, 0);
  int bench = 1;
  for (int a = 1; a < argc; a++) {
    if (strcmp(argv[a], "--no-bench") == 0) bench = 0;
    else if (strcmp(argv[a], "--self") == 0) self_mode = 1, bench = 0;
  }
  GError *err = NULL;
  CPU = ps_kernels_get(PS_DEVICE_CPU, &err);
  if (self_mode) {
    static ps_kernels emu;
    emu = emu_table();
    GPU = &emu;
    printf("gpu_check --self: the harness with the CPU table on both sides "
           "(bf16 entries: CPU emulation)\n");
    check_products();
    check_norms();
    check_elementwise();
    check_attention();
    check_embedding_losses();
    check_spatial();
    check_convs();
    check_bf16();
    check_memory_optim();
    check_precision_bf16();
    /* The comparison must notice a wrong element: plant one. */
    buf probe = mk(1000, 1);
    probe.d[500] += 0.5f;
    int before = n_fail;
    printf("  (a planted error must FAIL:)\n");
    cmp("planted", "probe", &probe);
    int caught = n_fail == before + 1;
    n_fail = before;
    rm(&probe);
    printf("gpu_check --self: %d outputs ok, %d FAILED%s\n", n_pass, n_fail,
           caught ? "" : ", and a planted error went unnoticed");
    return n_fail || !caught ? 1 : 0;
  }
  GPU = CPU ? ps_kernels_get(PS_DEVICE_CUDA, &err) : NULL;
  if (!GPU) {
    printf("gpu_check: no CUDA device: %s\n", err ? err->message : "(unknown)");
    g_clear_error(&err);
    return 2;
  }
  struct cudaDeviceProp prop;
  CK(cudaGetDeviceProperties(&prop, 0));
  printf("gpu_check: %s (sm_%d%d, %.0f GiB); CUDA table vs CPU table, f32 rel err <= 1e-5\n",
         prop.name, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0);
  check_products();
  check_norms();
  check_elementwise();
  check_attention();
  check_embedding_losses();
  check_spatial();
  check_convs();
  check_bf16();
  check_memory_optim();
  check_precision_bf16();
  printf("gpu_check: %d outputs ok, %d FAILED, %d ops not implemented on CUDA\n", n_pass, n_fail,
         n_missing);
  if (bench) benchmarks();
  return n_fail ? 1 : 0;
}
