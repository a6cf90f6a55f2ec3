/* activation.c — GELU (exact erf form), ReLU, SiLU, SwiGLU and softmax on the
 * CPU. Each op is a span function over contiguous memory (vectorised with omp
 * simd, compiled per SIMD level via PS_SIMD_CLONES) that ps_parallel_spans
 * splits across threads, so they run near memory bandwidth. */
#include <float.h>
#include <math.h>
#include <omp.h>

#include "cpu/ops.h"
#include "cpu/vmath.h"

#define INV_SQRT2 0.70710678118654752f
#define INV_SQRT_2PI 0.39894228040143268f

typedef struct {
  float *out;
  const float *inp, *dout, *gate, *up;
  int64_t C, ld;
} act_args;

/* ---- GELU: 0.5 x (1 + erf(x / sqrt 2)) ---- */

PS_SIMD_CLONES static void gelu_fwd_span(const void *ctx, int64_t i0, int64_t i1) {
  const act_args *a = ctx;
  float *out = a->out;
  const float *inp = a->inp;
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) {
    float x = inp[i];
    out[i] = 0.5f * x * (1.0f + ps_verf(x * INV_SQRT2));
  }
}

PS_SIMD_CLONES static void gelu_bwd_span(const void *ctx, int64_t i0, int64_t i1) {
  const act_args *a = ctx;
  float *dinp = a->out;
  const float *inp = a->inp, *dout = a->dout;
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) {
    float x = inp[i];
    float cdf = 0.5f * (1.0f + ps_verf(x * INV_SQRT2));
    float pdf = INV_SQRT_2PI * ps_vexpf(-0.5f * x * x);
    dinp[i] += (cdf + x * pdf) * dout[i];
  }
}

void ps_cpu_gelu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
  act_args a = {.out = out, .inp = inp};
  ps_parallel_spans(n, 1, gelu_fwd_span, &a);
}

void ps_cpu_gelu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp += (Phi(x) + x phi(x)) * dout; dinp, inp, dout: (n) */
  act_args a = {.out = dinp, .inp = inp, .dout = dout};
  ps_parallel_spans(n, 1, gelu_bwd_span, &a);
}

/* ---- ReLU (memory bound: plain SSE is enough) ---- */

void ps_cpu_relu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
}

void ps_cpu_relu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp += (inp > 0) * dout; all (n) */
#pragma omp parallel for simd schedule(static) if (n > PS_OMP_MIN_WORK)
  for (int64_t i = 0; i < n; i++) {
    float g = dout[i]; /* loaded unconditionally so the select vectorises */
    dinp[i] += inp[i] > 0.0f ? g : 0.0f;
  }
}

/* ---- SiLU: x * sigmoid(x) ---- */

PS_SIMD_CLONES static void silu_fwd_span(const void *ctx, int64_t i0, int64_t i1) {
  const act_args *a = ctx;
  float *out = a->out;
  const float *inp = a->inp;
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) out[i] = inp[i] * ps_vsigmoid(inp[i]);
}

PS_SIMD_CLONES static void silu_bwd_span(const void *ctx, int64_t i0, int64_t i1) {
  const act_args *a = ctx;
  float *dinp = a->out;
  const float *inp = a->inp, *dout = a->dout;
#pragma omp simd
  for (int64_t i = i0; i < i1; i++) {
    float x = inp[i], s = ps_vsigmoid(x);
    dinp[i] += s * (1.0f + x * (1.0f - s)) * dout[i];
  }
}

void ps_cpu_silu_forward(float *out, const float *inp, int64_t n) {
  /* out, inp: (n) */
  act_args a = {.out = out, .inp = inp};
  ps_parallel_spans(n, 1, silu_fwd_span, &a);
}

void ps_cpu_silu_backward(float *dinp, const float *inp, const float *dout, int64_t n) {
  /* dinp += s (1 + x (1 - s)) * dout with s = sigmoid(x); all (n) */
  act_args a = {.out = dinp, .inp = inp, .dout = dout};
  ps_parallel_spans(n, 1, silu_bwd_span, &a);
}

/* ---- SwiGLU: silu(gate) * up, rows of C with stride ld ---- */

PS_SIMD_CLONES static void swiglu_fwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const act_args *a = ctx;
  for (int64_t r = r0; r < r1; r++) {
    const float *g = a->gate + r * a->ld, *u = a->up + r * a->ld;
    float *o = a->out + r * a->C;
#pragma omp simd
    for (int64_t c = 0; c < a->C; c++) o[c] = g[c] * ps_vsigmoid(g[c]) * u[c];
  }
}

typedef struct {
  float *dgate, *dup;
  const float *dout, *gate, *up;
  int64_t C, ld;
} swiglu_bwd_args;

PS_SIMD_CLONES static void swiglu_bwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const swiglu_bwd_args *a = ctx;
  for (int64_t r = r0; r < r1; r++) {
    const float *g = a->gate + r * a->ld, *u = a->up + r * a->ld, *d = a->dout + r * a->C;
    if (a->dgate) {
      float *dg = a->dgate + r * a->ld;
#pragma omp simd
      for (int64_t c = 0; c < a->C; c++) {
        float s = ps_vsigmoid(g[c]);
        dg[c] += d[c] * u[c] * s * (1.0f + g[c] * (1.0f - s));
      }
    }
    if (a->dup) {
      float *du = a->dup + r * a->ld;
#pragma omp simd
      for (int64_t c = 0; c < a->C; c++) du[c] += d[c] * g[c] * ps_vsigmoid(g[c]);
    }
  }
}

void ps_cpu_swiglu_forward(float *out, const float *gate, const float *up, int64_t N, int64_t C,
                           int64_t ld) {
  /* out: (N, C); gate, up: N rows of C with row stride ld */
  act_args a = {.out = out, .gate = gate, .up = up, .C = C, .ld = ld ? ld : C};
  ps_parallel_spans(N, C, swiglu_fwd_span, &a);
}

void ps_cpu_swiglu_backward(float *dgate, float *dup, const float *dout, const float *gate,
                            const float *up, int64_t N, int64_t C, int64_t ld) {
  /* dgate, dup: N rows of C with stride ld (either may be NULL); dout: (N, C) */
  swiglu_bwd_args a = {dgate, dup, dout, gate, up, C, ld ? ld : C};
  ps_parallel_spans(N, C, swiglu_bwd_span, &a);
}

/* ---- softmax over rows ---- */

/* The row work (max, exp + sum, scale) is in softmax_row.c: the 256-wide
 * rows of attention probabilities are bound by the exp, not by memory. One
 * call per span, so the ifunc dispatch is paid once per thread and the
 * rows ahead can be prefetched. */
static void softmax_fwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const act_args *a = ctx;
  int64_t C = a->C;
  ps_cpu_softmax_rows(a->out + r0 * C, a->inp + r0 * C, r1 - r0, C);
}

PS_SIMD_CLONES static void softmax_bwd_span(const void *ctx, int64_t r0, int64_t r1) {
  const act_args *a = ctx;
  int64_t C = a->C;
  for (int64_t r = r0; r < r1; r++) {
    const float *y = a->inp + r * C, *dy = a->dout + r * C;
    float *dx = a->out + r * C;
    float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
    for (int64_t c = 0; c < C; c++) dot += dy[c] * y[c];
#pragma omp simd
    for (int64_t c = 0; c < C; c++) dx[c] += y[c] * (dy[c] - dot);
  }
}

void ps_cpu_softmax_forward(float *out, const float *inp, int64_t N, int64_t C) {
  /* out, inp: (N, C); softmax over each row, max-subtracted. A row of -inf gives 0s. */
  act_args a = {.out = out, .inp = inp, .C = C};
  ps_parallel_spans(N, C, softmax_fwd_span, &a);
}

void ps_cpu_softmax_backward(float *dinp, const float *dout, const float *out, int64_t N,
                             int64_t C) {
  /* dinp += y * (dy - sum(dy * y)); all (N, C); y = out */
  act_args a = {.out = dinp, .inp = out, .dout = dout, .C = C};
  ps_parallel_spans(N, C, softmax_bwd_span, &a);
}
