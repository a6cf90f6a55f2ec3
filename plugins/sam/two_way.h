/* two_way.h — SAM's TwoWayTransformer (segment-anything
 * modeling/transformer.py): the attention module with down-projected width,
 * the two-way layers and the final token-to-image attention, forward and
 * backward over raw buffers in the memory of the kernel table k they are
 * given (device memory on a device), all arithmetic through k. */
#pragma once

#include "../common/param_list.h"

#define TW_MAX_DEPTH 8

/* Attention(embedding_dim, num_heads, downsample_rate): q/k/v projections to
 * ci = C / rate, heads of ci / nH, softmax(q k^T / sqrt(ci / nH)) v, out_proj. */
typedef struct {
  pl_linear q, k, v, o;
  int64_t C, ci, nH;
} tw_attn;

/* One call's saved state (buffers sized for B, Tq, Tk). */
typedef struct {
  const float *qin, *kin, *vin; /* (B*Tq, C), (B*Tk, C), (B*Tk, C): caller-owned */
  pl_buf q, k, v, ao, lse;      /* projections (B*T, ci), attention output, (B, nH, Tq) */
  pl_buf dq, dk, dv, dao;       /* backward temporaries */
  int64_t B, Tq, Tk;
} tw_attn_act;

typedef struct {
  tw_attn self_attn, t2i, i2t;
  int n1w, n1b, n2w, n2b, n3w, n3b, n4w, n4b;
  pl_linear lin1, lin2;
  gboolean skip_first_layer_pe;
} tw_layer;

typedef struct {
  const float *Q0, *K0; /* layer inputs (B, Nq, C), (B, HW, C) */
  pl_buf qpe1, sa, Q1pre, Q1, m1, r1;
  pl_buf qpe2, kpe, ca, Q2pre, Q2, m2, r2;
  pl_buf h, hr, mo, Q3pre, Q3, m3, r3;
  pl_buf qpe3, ia, K1pre, K1, m4, r4;
  tw_attn_act a_sa, a_ca, a_ia;
} tw_layer_act;

typedef struct {
  int64_t C, depth, nH, mlp_dim, rate;
  float eps;
  tw_layer layers[TW_MAX_DEPTH];
  tw_attn final_attn;
  int nfw, nfb;
  /* activations of the last forward */
  int64_t B, Nq, HW;
  tw_layer_act act[TW_MAX_DEPTH];
  pl_buf fq, fk, fa, Qfpre, Qf, mf, rf;
  tw_attn_act a_f;
  const float *PE, *KPE;
  const float *Kfin;
  /* backward */
  pl_buf dQa, dKa, dPE, t1, t2, tk1, tk2, dh1, dh2;
} tw_transformer;

gboolean tw_transformer_init(tw_transformer *t, pl_params *P, const char *prefix, int64_t C,
                             int64_t depth, int64_t nH, int64_t mlp_dim, int64_t rate, double eps,
                             ps_role role, ps_rng *rng, GError **error);
void tw_transformer_clear(tw_transformer *t);
/* Floats of attention scratch one forward (backward) needs. */
int64_t tw_scratch(const tw_transformer *t, const ps_kernels *k, int64_t B, int64_t Nq, int64_t HW,
                   int backward);
/* tokens: (B, Nq, C) queries and query PE; src: (B, HW, C) keys; kpe: (HW, C)
 * key PE shared by the batch. On return *Qout: (B, Nq, C), *Kout: (B, HW, C),
 * both owned by the transformer. */
gboolean tw_transformer_forward(tw_transformer *t, const ps_kernels *k, const pl_params *P,
                                const float *tokens, const float *src, const float *kpe, int64_t B,
                                int64_t Nq, int64_t HW, float *scratch, int64_t sn,
                                const float **Qout, const float **Kout, GError **error);
/* dQ: (B, Nq, C), dK: (B, HW, C) (either may be NULL) -> *dtokens, *dsrc
 * (transformer-owned, overwritten). Parameter gradients are added. */
gboolean tw_transformer_backward(tw_transformer *t, const ps_kernels *k, const pl_params *P,
                                 const float *dQ, const float *dK, float *scratch, int64_t sn,
                                 const float **dtokens, const float **dsrc, GError **error);
