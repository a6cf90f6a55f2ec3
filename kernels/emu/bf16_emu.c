/* bf16_emu.c — the bf16 table entries emulated on the CPU: widen the bf16
 * inputs, run the CPU f32 op, round the bf16 outputs once. No kernel is
 * tested by this; it gives a stand-in device (gpu_check --self, the CUDA
 * emulator of kernels/emu) every entry of the CUDA table, so the code that
 * calls the bf16 entries runs without a GPU. The emulation reads and writes
 * exactly the elements (rows x cols with row stride ld) that each op's
 * contract names. Host memory is allocated per call: this is for tests. */
#include <stdlib.h>

#include "emu/bf16_emu.h"

static const ps_kernels *cpu;

static float *emu_get(const ps_bf16 *x, int64_t rows, int64_t cols, int64_t ld) {
  if (!x) return NULL;
  int64_t extent = rows > 0 && cols > 0 ? (rows - 1) * ld + cols : 1;
  float *t = calloc((size_t)extent, sizeof(float));
  if (!t) abort();
  for (int64_t r = 0; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) t[r * ld + c] = ps_bf16_to_f32(x[r * ld + c]);
  return t;
}

/* Rounds t's elements back into y (when y is not NULL) and frees t. */
static void emu_put(ps_bf16 *y, float *t, int64_t rows, int64_t cols, int64_t ld) {
  if (y && t)
    for (int64_t r = 0; r < rows; r++)
      for (int64_t c = 0; c < cols; c++) y[r * ld + c] = ps_f32_to_bf16(t[r * ld + c]);
  free(t);
}

static float *emu_zeros(int64_t n) {
  float *t = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
  if (!t) abort();
  return t;
}

static void emu_linear_fwd(ps_bf16 *out, const ps_bf16 *inp, const ps_bf16 *w, const ps_bf16 *b,
                           int64_t N, int64_t C, int64_t OC) {
  float *o = emu_zeros(N * OC), *i = emu_get(inp, N, C, C), *wt = emu_get(w, OC, C, C),
        *bt = emu_get(b, 1, OC, OC);
  cpu->linear_forward(o, i, wt, bt, N, C, OC);
  emu_put(out, o, N, OC, OC), free(i), free(wt), free(bt);
}
static void emu_linear_bwd(ps_bf16 *dinp, float *dw, float *db, const ps_bf16 *dout,
                           const ps_bf16 *inp, const ps_bf16 *w, int64_t N, int64_t C, int64_t OC) {
  float *di = emu_get(dinp, N, C, C), *dy = emu_get(dout, N, OC, OC), *i = emu_get(inp, N, C, C),
        *wt = emu_get(w, OC, C, C);
  cpu->linear_backward(di, dw, db, dy, i, wt, N, C, OC);
  emu_put(dinp, di, N, C, C), free(dy), free(i), free(wt);
}
static void emu_ln_fwd(ps_bf16 *out, float *mean, float *rstd, const ps_bf16 *inp, const ps_bf16 *w,
                       const ps_bf16 *b, int64_t N, int64_t C, float eps) {
  float *o = emu_zeros(N * C), *x = emu_get(inp, N, C, C), *wt = emu_get(w, 1, C, C),
        *bt = emu_get(b, 1, C, C);
  cpu->layernorm_forward(o, mean, rstd, x, wt, bt, N, C, eps);
  emu_put(out, o, N, C, C), free(x), free(wt), free(bt);
}
static void emu_ln_bwd(ps_bf16 *dinp, float *dw, float *db, const ps_bf16 *dout, const ps_bf16 *inp,
                       const ps_bf16 *w, const float *mean, const float *rstd, int64_t N,
                       int64_t C) {
  float *di = emu_get(dinp, N, C, C), *dy = emu_get(dout, N, C, C), *x = emu_get(inp, N, C, C),
        *wt = emu_get(w, 1, C, C);
  cpu->layernorm_backward(di, dw, db, dy, x, wt, mean, rstd, N, C);
  emu_put(dinp, di, N, C, C), free(dy), free(x), free(wt);
}
static void emu_rms_fwd(ps_bf16 *out, float *rstd, const ps_bf16 *inp, const ps_bf16 *w, int64_t N,
                        int64_t C, float eps) {
  float *o = emu_zeros(N * C), *x = emu_get(inp, N, C, C), *wt = emu_get(w, 1, C, C);
  cpu->rmsnorm_forward(o, rstd, x, wt, N, C, eps);
  emu_put(out, o, N, C, C), free(x), free(wt);
}
static void emu_rms_bwd(ps_bf16 *dinp, float *dw, const ps_bf16 *dout, const ps_bf16 *inp,
                        const ps_bf16 *w, const float *rstd, int64_t N, int64_t C) {
  float *di = emu_get(dinp, N, C, C), *dy = emu_get(dout, N, C, C), *x = emu_get(inp, N, C, C),
        *wt = emu_get(w, 1, C, C);
  cpu->rmsnorm_backward(di, dw, dy, x, wt, rstd, N, C);
  emu_put(dinp, di, N, C, C), free(dy), free(x), free(wt);
}
#define EMU_ACT(name)                                                                              \
  static void emu_##name##_fwd(ps_bf16 *out, const ps_bf16 *inp, int64_t n) {                      \
    float *o = emu_zeros(n), *x = emu_get(inp, 1, n, n);                                           \
    cpu->name##_forward(o, x, n);                                                                  \
    emu_put(out, o, 1, n, n), free(x);                                                             \
  }                                                                                                \
  static void emu_##name##_bwd(ps_bf16 *dinp, const ps_bf16 *inp, const ps_bf16 *dout,             \
                               int64_t n) {                                                        \
    float *di = emu_get(dinp, 1, n, n), *x = emu_get(inp, 1, n, n), *dy = emu_get(dout, 1, n, n);  \
    cpu->name##_backward(di, x, dy, n);                                                            \
    emu_put(dinp, di, 1, n, n), free(x), free(dy);                                                 \
  }
EMU_ACT(gelu)
EMU_ACT(silu)
static void emu_swiglu_fwd(ps_bf16 *out, const ps_bf16 *gate, const ps_bf16 *up, int64_t N,
                           int64_t C, int64_t ld) {
  if (ld == 0) ld = C;
  float *o = emu_zeros(N * C), *g = emu_get(gate, N, C, ld), *u = emu_get(up, N, C, ld);
  cpu->swiglu_forward(o, g, u, N, C, ld);
  emu_put(out, o, N, C, C), free(g), free(u);
}
static void emu_swiglu_bwd(ps_bf16 *dgate, ps_bf16 *dup, const ps_bf16 *dout, const ps_bf16 *gate,
                           const ps_bf16 *up, int64_t N, int64_t C, int64_t ld) {
  if (ld == 0) ld = C;
  float *dg = emu_get(dgate, N, C, ld), *du = emu_get(dup, N, C, ld), *dy = emu_get(dout, N, C, C),
        *g = emu_get(gate, N, C, ld), *u = emu_get(up, N, C, ld);
  cpu->swiglu_backward(dg, du, dy, g, u, N, C, ld);
  emu_put(dgate, dg, N, C, ld), emu_put(dup, du, N, C, ld), free(dy), free(g), free(u);
}
static void emu_softmax_fwd(ps_bf16 *out, const ps_bf16 *inp, int64_t N, int64_t C) {
  float *o = emu_zeros(N * C), *x = emu_get(inp, N, C, C);
  cpu->softmax_forward(o, x, N, C);
  emu_put(out, o, N, C, C), free(x);
}
static void emu_softmax_bwd(ps_bf16 *dinp, const ps_bf16 *dout, const ps_bf16 *out, int64_t N,
                            int64_t C) {
  float *di = emu_get(dinp, N, C, C), *dy = emu_get(dout, N, C, C), *y = emu_get(out, N, C, C);
  cpu->softmax_backward(di, dy, y, N, C);
  emu_put(dinp, di, N, C, C), free(dy), free(y);
}
static int64_t emu_att_scratch(const ps_attention_desc *d, int backward) {
  /* the CPU op's scratch, whichever direction needs more */
  int64_t a = cpu->attention_scratch(d, 0), b = cpu->attention_scratch(d, 1);
  return a > b ? a : b;
}
typedef struct {
  int64_t ldq, ldk, ldv, ldo;
} emu_ld;
static emu_ld emu_att_ld(const ps_attention_desc *d) {
  emu_ld l = {d->ldq ? d->ldq : d->Hq * d->D, d->ldk ? d->ldk : d->Hkv * d->D,
              d->ldv ? d->ldv : d->Hkv * d->D, d->ldo ? d->ldo : d->Hq * d->D};
  return l;
}
static void emu_att_fwd(ps_bf16 *out, float *lse, const ps_bf16 *q, const ps_bf16 *k,
                        const ps_bf16 *v, const ps_attention_desc *d, float *scratch, int64_t sf) {
  emu_ld l = emu_att_ld(d);
  int64_t rq = d->B * d->Tq, rk = d->B * d->Tk, wq = d->Hq * d->D, wk = d->Hkv * d->D;
  float *o = emu_get(out, rq, wq, l.ldo), *qf = emu_get(q, rq, wq, l.ldq),
        *kf = emu_get(k, rk, wk, l.ldk), *vf = emu_get(v, rk, wk, l.ldv);
  cpu->attention_forward(o, lse, qf, kf, vf, d, scratch, sf);
  emu_put(out, o, rq, wq, l.ldo), free(qf), free(kf), free(vf);
}
static void emu_att_bwd(ps_bf16 *dq, ps_bf16 *dk, ps_bf16 *dv, float *dbias, float *drel_h,
                        float *drel_w, const ps_bf16 *dout, const ps_bf16 *q, const ps_bf16 *k,
                        const ps_bf16 *v, const ps_bf16 *out, const float *lse,
                        const ps_attention_desc *d, float *scratch, int64_t sf) {
  emu_ld l = emu_att_ld(d);
  int64_t rq = d->B * d->Tq, rk = d->B * d->Tk, wq = d->Hq * d->D, wk = d->Hkv * d->D;
  float *dqf = emu_get(dq, rq, wq, l.ldq), *dkf = emu_get(dk, rk, wk, l.ldk),
        *dvf = emu_get(dv, rk, wk, l.ldv), *dy = emu_get(dout, rq, wq, l.ldo),
        *qf = emu_get(q, rq, wq, l.ldq), *kf = emu_get(k, rk, wk, l.ldk),
        *vf = emu_get(v, rk, wk, l.ldv), *o = emu_get(out, rq, wq, l.ldo);
  cpu->attention_backward(dqf, dkf, dvf, dbias, drel_h, drel_w, dy, qf, kf, vf, o, lse, d, scratch,
                          sf);
  emu_put(dq, dqf, rq, wq, l.ldq), emu_put(dk, dkf, rk, wk, l.ldk), emu_put(dv, dvf, rk, wk, l.ldv);
  free(dy), free(qf), free(kf), free(vf), free(o);
}
static void emu_rope_fwd(ps_bf16 *out, const ps_bf16 *inp, const int32_t *pos,
                         const ps_rope_desc *d) {
  int64_t ld = d->ld ? d->ld : d->H * d->D;
  float *o = emu_get(out, d->N, d->H * d->D, ld), *x = emu_get(inp, d->N, d->H * d->D, ld);
  cpu->rope_forward(o, x, pos, d);
  emu_put(out, o, d->N, d->H * d->D, ld), free(x);
}
static void emu_rope_bwd(ps_bf16 *dinp, const ps_bf16 *dout, const int32_t *pos,
                         const ps_rope_desc *d) {
  int64_t ld = d->ld ? d->ld : d->H * d->D;
  float *di = emu_get(dinp, d->N, d->H * d->D, ld), *dy = emu_get(dout, d->N, d->H * d->D, ld);
  cpu->rope_backward(di, dy, pos, d);
  emu_put(dinp, di, d->N, d->H * d->D, ld), free(dy);
}
static void emu_emb_fwd(ps_bf16 *out, const int32_t *ids, const ps_bf16 *table, int64_t N,
                        int64_t V, int64_t C) {
  float *o = emu_zeros(N * C), *t = emu_get(table, V, C, C);
  cpu->embedding_forward(o, ids, t, N, V, C);
  emu_put(out, o, N, C, C), free(t);
}
static void emu_emb_bwd(float *dtable, const int32_t *ids, const ps_bf16 *dout, int64_t N,
                        int64_t V, int64_t C) {
  float *dy = emu_get(dout, N, C, C);
  cpu->embedding_backward(dtable, ids, dy, N, V, C);
  free(dy);
}
static float emu_ce(ps_bf16 *dlogits, float *row_loss, const ps_bf16 *logits,
                    const int32_t *targets, int64_t N, int64_t V, int32_t ignore, float denom,
                    float dloss) {
  float *x = emu_get(logits, N, V, V), loss;
  if (dlogits && dlogits == logits) { /* in place */
    loss = cpu->crossentropy(x, row_loss, x, targets, N, V, ignore, denom, dloss);
    emu_put(dlogits, x, N, V, V);
    return loss;
  }
  float *dl = emu_get(dlogits, N, V, V);
  loss = cpu->crossentropy(dl, row_loss, x, targets, N, V, ignore, denom, dloss);
  emu_put(dlogits, dl, N, V, V), free(x);
  return loss;
}

void ps_emu_bf16_entries(ps_kernels *t, const ps_kernels *cpu_table) {
  cpu = cpu_table;
  t->linear_forward_bf16 = emu_linear_fwd, t->linear_backward_bf16 = emu_linear_bwd;
  t->layernorm_forward_bf16 = emu_ln_fwd, t->layernorm_backward_bf16 = emu_ln_bwd;
  t->rmsnorm_forward_bf16 = emu_rms_fwd, t->rmsnorm_backward_bf16 = emu_rms_bwd;
  t->gelu_forward_bf16 = emu_gelu_fwd, t->gelu_backward_bf16 = emu_gelu_bwd;
  t->silu_forward_bf16 = emu_silu_fwd, t->silu_backward_bf16 = emu_silu_bwd;
  t->swiglu_forward_bf16 = emu_swiglu_fwd, t->swiglu_backward_bf16 = emu_swiglu_bwd;
  t->softmax_forward_bf16 = emu_softmax_fwd, t->softmax_backward_bf16 = emu_softmax_bwd;
  t->attention_scratch_bf16 = emu_att_scratch;
  t->attention_forward_bf16 = emu_att_fwd, t->attention_backward_bf16 = emu_att_bwd;
  t->rope_forward_bf16 = emu_rope_fwd, t->rope_backward_bf16 = emu_rope_bwd;
  t->embedding_forward_bf16 = emu_emb_fwd, t->embedding_backward_bf16 = emu_emb_bwd;
  t->crossentropy_bf16 = emu_ce;
}

/* ---- the bf16-precision table's linear products (kernels.h: ps_precision) ----
 * f32 tensors; the f32 product of the bf16-rounded operands, which is what
 * bf16 tensor cores with f32 accumulation compute up to summation order. The
 * bias gradient is f32 from the unrounded dout. */

static float *emu_rounded(const float *x, int64_t n) {
  if (!x) return NULL;
  float *r = malloc(sizeof(float) * (size_t)(n > 0 ? n : 1));
  if (!r) abort();
  for (int64_t i = 0; i < n; i++) r[i] = ps_bf16_to_f32(ps_f32_to_bf16(x[i]));
  return r;
}

void ps_emu_linear_forward_bf16p(float *out, const float *inp, const float *weight,
                                 const float *bias, int64_t N, int64_t C, int64_t OC) {
  float *x = emu_rounded(inp, N * C), *w = emu_rounded(weight, OC * C);
  cpu->linear_forward(out, x, w, bias, N, C, OC);
  free(x), free(w);
}

void ps_emu_linear_backward_bf16p(float *dinp, float *dweight, float *dbias, const float *dout,
                                  const float *inp, const float *weight, int64_t N, int64_t C,
                                  int64_t OC) {
  float *dy = emu_rounded(dout, N * OC), *x = dweight ? emu_rounded(inp, N * C) : NULL,
        *w = dinp ? emu_rounded(weight, OC * C) : NULL;
  cpu->linear_backward(dinp, dweight, NULL, dy, x, w, N, C, OC);
  if (dbias) cpu->linear_backward(NULL, NULL, dbias, dout, NULL, NULL, N, C, OC);
  free(dy), free(x), free(w);
}
