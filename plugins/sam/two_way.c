/* two_way.c — SAM's TwoWayTransformer, forward and backward (see two_way.h).
 *
 * Layer (segment-anything TwoWayAttentionBlock), with PE = the prompt tokens
 * and KPE = the dense image PE:
 *   layer 0:  Q = self_attn(Q, Q, Q)                 (skip_first_layer_pe: no residual)
 *   else:     Q = Q + self_attn(Q+PE, Q+PE, Q)
 *   Q = norm1(Q)
 *   Q = norm2(Q + t2i(Q+PE, K+KPE, K))
 *   Q = norm3(Q + lin2(ReLU(lin1(Q))))
 *   K = norm4(K + i2t(K+KPE, Q+PE, Q))
 * then Q = norm_final(Q + final(Q+PE, K+KPE, K)). LayerNorm eps 1e-5 here. */
#include "two_way.h"

#include <math.h>

#include <pathseg/error.h>

static gboolean attn_add(pl_params *P, tw_attn *a, const char *name, int64_t C, int64_t rate,
                         int64_t nH, ps_role role, ps_rng *rng, GError **error) {
  a->C = C;
  a->ci = C / rate;
  a->nH = nH;
  if (rate < 1 || C % rate != 0 || a->ci % nH != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "decoder.sam: %s: width %" G_GINT64_FORMAT " / downsample %" G_GINT64_FORMAT
                " must divide into %" G_GINT64_FORMAT " heads",
                name, C, rate, nH);
    return FALSE;
  }
  g_autofree char *q = g_strconcat(name, ".q_proj", NULL);
  g_autofree char *k = g_strconcat(name, ".k_proj", NULL);
  g_autofree char *v = g_strconcat(name, ".v_proj", NULL);
  g_autofree char *o = g_strconcat(name, ".out_proj", NULL);
  return pl_linear_add(P, &a->q, q, C, a->ci, role, PL_INIT_TORCH, rng, error) &&
         pl_linear_add(P, &a->k, k, C, a->ci, role, PL_INIT_TORCH, rng, error) &&
         pl_linear_add(P, &a->v, v, C, a->ci, role, PL_INIT_TORCH, rng, error) &&
         pl_linear_add(P, &a->o, o, a->ci, C, role, PL_INIT_TORCH, rng, error);
}

static ps_attention_desc attn_desc(const tw_attn *a, int64_t B, int64_t Tq, int64_t Tk) {
  ps_attention_desc d = {0};
  d.B = B;
  d.Hq = d.Hkv = a->nH;
  d.Tq = Tq;
  d.Tk = Tk;
  d.D = a->ci / a->nH;
  d.scale = (float)(1.0 / sqrt((double)d.D));
  return d;
}

static void attn_act_free(tw_attn_act *s) {
  pl_buf *b[] = {&s->q, &s->k, &s->v, &s->ao, &s->lse, &s->dq, &s->dk, &s->dv, &s->dao};
  for (size_t i = 0; i < G_N_ELEMENTS(b); i++) pl_buf_free(b[i]);
}

/* out: (B*Tq, C) = Attention(qin: (B*Tq, C), kin: (B*Tk, C), vin: (B*Tk, C)) */
static gboolean attn_fwd(const ps_kernels *k, const pl_params *P, const tw_attn *a, tw_attn_act *s,
                         float *out, const float *qin, const float *kin, const float *vin,
                         int64_t B, int64_t Tq, int64_t Tk, float *scratch, int64_t sn,
                         GError **error) {
  int64_t ci = a->ci;
  if (!pl_buf_ensure(&s->q, k, B * Tq * ci, error) ||
      !pl_buf_ensure(&s->k, k, B * Tk * ci, error) ||
      !pl_buf_ensure(&s->v, k, B * Tk * ci, error) ||
      !pl_buf_ensure(&s->ao, k, B * Tq * ci, error) ||
      !pl_buf_ensure(&s->lse, k, B * a->nH * Tq, error))
    return FALSE;
  s->qin = qin;
  s->kin = kin;
  s->vin = vin;
  s->B = B;
  s->Tq = Tq;
  s->Tk = Tk;
  pl_linear_fwd(k, P, &a->q, s->q.p, qin, B * Tq);
  pl_linear_fwd(k, P, &a->k, s->k.p, kin, B * Tk);
  pl_linear_fwd(k, P, &a->v, s->v.p, vin, B * Tk);
  ps_attention_desc d = attn_desc(a, B, Tq, Tk);
  k->attention_forward(s->ao.p, s->lse.p, s->q.p, s->k.p, s->v.p, &d, scratch, sn);
  pl_linear_fwd(k, P, &a->o, out, s->ao.p, B * Tq);
  return TRUE;
}

/* dqin/dkin/dvin (+=, may alias each other, may be NULL) from dout: (B*Tq, C). */
static gboolean attn_bwd(const ps_kernels *k, const pl_params *P, const tw_attn *a, tw_attn_act *s,
                         const float *dout, float *dqin, float *dkin, float *dvin, float *scratch,
                         int64_t sn, GError **error) {
  int64_t ci = a->ci, B = s->B, Tq = s->Tq, Tk = s->Tk;
  if (!pl_buf_ensure(&s->dq, k, B * Tq * ci, error) ||
      !pl_buf_ensure(&s->dk, k, B * Tk * ci, error) ||
      !pl_buf_ensure(&s->dv, k, B * Tk * ci, error) ||
      !pl_buf_ensure(&s->dao, k, B * Tq * ci, error))
    return FALSE;
  pl_buf_zero(&s->dao);
  pl_buf_zero(&s->dq);
  pl_buf_zero(&s->dk);
  pl_buf_zero(&s->dv);
  pl_linear_bwd(k, P, &a->o, s->dao.p, dout, s->ao.p, B * Tq);
  ps_attention_desc d = attn_desc(a, B, Tq, Tk);
  k->attention_backward(s->dq.p, s->dk.p, s->dv.p, NULL, NULL, NULL, s->dao.p, s->q.p, s->k.p,
                        s->v.p, s->ao.p, s->lse.p, &d, scratch, sn);
  pl_linear_bwd(k, P, &a->q, dqin, s->dq.p, s->qin, B * Tq);
  pl_linear_bwd(k, P, &a->k, dkin, s->dk.p, s->kin, B * Tk);
  pl_linear_bwd(k, P, &a->v, dvin, s->dv.p, s->vin, B * Tk);
  return TRUE;
}

static int norm_add(pl_params *P, const char *name, const char *what, int64_t C, float fill,
                    ps_role role, GError **error) {
  int i = pl_param_add(P, role, &C, 1, error, "%s.%s", name, what);
  if (i >= 0) pl_init_const(pl_pv(P, i), C, fill);
  return i;
}

gboolean tw_transformer_init(tw_transformer *t, pl_params *P, const char *prefix, int64_t C,
                             int64_t depth, int64_t nH, int64_t mlp_dim, int64_t rate, double eps,
                             ps_role role, ps_rng *rng, GError **error) {
  if (depth < 1 || depth > TW_MAX_DEPTH) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "decoder.sam: transformer_depth %" G_GINT64_FORMAT " must be 1..%d", depth,
                TW_MAX_DEPTH);
    return FALSE;
  }
  t->C = C;
  t->depth = depth;
  t->nH = nH;
  t->mlp_dim = mlp_dim;
  t->rate = rate;
  t->eps = (float)eps;
  for (int64_t l = 0; l < depth; l++) {
    tw_layer *L = &t->layers[l];
    L->skip_first_layer_pe = l == 0;
    g_autofree char *pre = g_strdup_printf("%s.layers.%" G_GINT64_FORMAT, prefix, l);
    g_autofree char *sa = g_strconcat(pre, ".self_attn", NULL);
    g_autofree char *t2i = g_strconcat(pre, ".cross_attn_token_to_image", NULL);
    g_autofree char *i2t = g_strconcat(pre, ".cross_attn_image_to_token", NULL);
    g_autofree char *l1 = g_strconcat(pre, ".mlp.lin1", NULL);
    g_autofree char *l2 = g_strconcat(pre, ".mlp.lin2", NULL);
    if (!attn_add(P, &L->self_attn, sa, C, 1, nH, role, rng, error) ||
        (L->n1w = norm_add(P, pre, "norm1.weight", C, 1, role, error)) < 0 ||
        (L->n1b = norm_add(P, pre, "norm1.bias", C, 0, role, error)) < 0 ||
        !attn_add(P, &L->t2i, t2i, C, rate, nH, role, rng, error) ||
        (L->n2w = norm_add(P, pre, "norm2.weight", C, 1, role, error)) < 0 ||
        (L->n2b = norm_add(P, pre, "norm2.bias", C, 0, role, error)) < 0 ||
        !pl_linear_add(P, &L->lin1, l1, C, mlp_dim, role, PL_INIT_TORCH, rng, error) ||
        !pl_linear_add(P, &L->lin2, l2, mlp_dim, C, role, PL_INIT_TORCH, rng, error) ||
        (L->n3w = norm_add(P, pre, "norm3.weight", C, 1, role, error)) < 0 ||
        (L->n3b = norm_add(P, pre, "norm3.bias", C, 0, role, error)) < 0 ||
        (L->n4w = norm_add(P, pre, "norm4.weight", C, 1, role, error)) < 0 ||
        (L->n4b = norm_add(P, pre, "norm4.bias", C, 0, role, error)) < 0 ||
        !attn_add(P, &L->i2t, i2t, C, rate, nH, role, rng, error))
      return FALSE;
  }
  g_autofree char *fa = g_strconcat(prefix, ".final_attn_token_to_image", NULL);
  if (!attn_add(P, &t->final_attn, fa, C, rate, nH, role, rng, error) ||
      (t->nfw = norm_add(P, prefix, "norm_final_attn.weight", C, 1, role, error)) < 0 ||
      (t->nfb = norm_add(P, prefix, "norm_final_attn.bias", C, 0, role, error)) < 0)
    return FALSE;
  return TRUE;
}

void tw_transformer_clear(tw_transformer *t) {
  for (int l = 0; l < TW_MAX_DEPTH; l++) {
    tw_layer_act *a = &t->act[l];
    pl_buf *b[] = {&a->qpe1, &a->sa,    &a->Q1pre, &a->Q1, &a->m1, &a->r1, &a->qpe2,
                   &a->kpe,  &a->ca,    &a->Q2pre, &a->Q2, &a->m2, &a->r2, &a->h,
                   &a->hr,   &a->mo,    &a->Q3pre, &a->Q3, &a->m3, &a->r3, &a->qpe3,
                   &a->ia,   &a->K1pre, &a->K1,    &a->m4, &a->r4};
    for (size_t i = 0; i < G_N_ELEMENTS(b); i++) pl_buf_free(b[i]);
    attn_act_free(&a->a_sa);
    attn_act_free(&a->a_ca);
    attn_act_free(&a->a_ia);
  }
  pl_buf *b[] = {&t->fq,  &t->fk,  &t->fa, &t->Qfpre, &t->Qf,  &t->mf,  &t->rf,  &t->dQa,
                 &t->dKa, &t->dPE, &t->t1, &t->t2,    &t->tk1, &t->tk2, &t->dh1, &t->dh2};
  for (size_t i = 0; i < G_N_ELEMENTS(b); i++) pl_buf_free(b[i]);
  attn_act_free(&t->a_f);
}

int64_t tw_scratch(const tw_transformer *t, const ps_kernels *k, int64_t B, int64_t Nq, int64_t HW,
                   int backward) {
  int64_t need = 0;
  for (int64_t l = 0; l < t->depth; l++) {
    const tw_layer *L = &t->layers[l];
    ps_attention_desc d1 = attn_desc(&L->self_attn, B, Nq, Nq);
    ps_attention_desc d2 = attn_desc(&L->t2i, B, Nq, HW);
    ps_attention_desc d3 = attn_desc(&L->i2t, B, HW, Nq);
    need = MAX(need, k->attention_scratch(&d1, backward));
    need = MAX(need, k->attention_scratch(&d2, backward));
    need = MAX(need, k->attention_scratch(&d3, backward));
  }
  ps_attention_desc df = attn_desc(&t->final_attn, B, Nq, HW);
  return MAX(need, k->attention_scratch(&df, backward));
}

static gboolean ensure_layer(const ps_kernels *k, tw_layer_act *a, int64_t nq, int64_t nk,
                             int64_t nh, int64_t rows_q, int64_t rows_k, GError **error) {
  pl_buf *q[] = {&a->qpe1,  &a->sa, &a->Q1pre, &a->Q1,    &a->qpe2, &a->ca,
                 &a->Q2pre, &a->Q2, &a->mo,    &a->Q3pre, &a->Q3,   &a->qpe3};
  pl_buf *kb[] = {&a->kpe, &a->ia, &a->K1pre, &a->K1};
  pl_buf *sq[] = {&a->m1, &a->r1, &a->m2, &a->r2, &a->m3, &a->r3};
  for (size_t i = 0; i < G_N_ELEMENTS(q); i++)
    if (!pl_buf_ensure(q[i], k, nq, error)) return FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS(kb); i++)
    if (!pl_buf_ensure(kb[i], k, nk, error)) return FALSE;
  for (size_t i = 0; i < G_N_ELEMENTS(sq); i++)
    if (!pl_buf_ensure(sq[i], k, rows_q, error)) return FALSE;
  return pl_buf_ensure(&a->m4, k, rows_k, error) && pl_buf_ensure(&a->r4, k, rows_k, error) &&
         pl_buf_ensure(&a->h, k, nh, error) && pl_buf_ensure(&a->hr, k, nh, error);
}

gboolean tw_transformer_forward(tw_transformer *t, const ps_kernels *k, const pl_params *P,
                                const float *tokens, const float *src, const float *kpe, int64_t B,
                                int64_t Nq, int64_t HW, float *scratch, int64_t sn,
                                const float **Qout, const float **Kout, GError **error) {
  int64_t C = t->C, nq = B * Nq * C, nk = B * HW * C;
  float eps = t->eps;
  t->B = B;
  t->Nq = Nq;
  t->HW = HW;
  t->PE = tokens;
  t->KPE = kpe;
  const float *Q = tokens, *K = src;
  for (int64_t l = 0; l < t->depth; l++) {
    const tw_layer *L = &t->layers[l];
    tw_layer_act *a = &t->act[l];
    if (!ensure_layer(k, a, nq, nk, B * Nq * t->mlp_dim, B * Nq, B * HW, error)) return FALSE;
    a->Q0 = Q;
    a->K0 = K;
    if (L->skip_first_layer_pe) {
      if (!attn_fwd(k, P, &L->self_attn, &a->a_sa, a->Q1pre.p, Q, Q, Q, B, Nq, Nq, scratch, sn,
                    error))
        return FALSE;
    } else {
      k->add_forward(a->qpe1.p, Q, tokens, nq);
      if (!attn_fwd(k, P, &L->self_attn, &a->a_sa, a->sa.p, a->qpe1.p, a->qpe1.p, Q, B, Nq, Nq,
                    scratch, sn, error))
        return FALSE;
      k->add_forward(a->Q1pre.p, Q, a->sa.p, nq);
    }
    k->layernorm_forward(a->Q1.p, a->m1.p, a->r1.p, a->Q1pre.p, pl_pv(P, L->n1w), pl_pv(P, L->n1b),
                         B * Nq, C, eps);
    k->add_forward(a->qpe2.p, a->Q1.p, tokens, nq);
    k->add_rows(a->kpe.p, K, kpe, B, HW * C); /* + the image PE, shared by the batch */
    if (!attn_fwd(k, P, &L->t2i, &a->a_ca, a->ca.p, a->qpe2.p, a->kpe.p, K, B, Nq, HW, scratch, sn,
                  error))
      return FALSE;
    k->add_forward(a->Q2pre.p, a->Q1.p, a->ca.p, nq);
    k->layernorm_forward(a->Q2.p, a->m2.p, a->r2.p, a->Q2pre.p, pl_pv(P, L->n2w), pl_pv(P, L->n2b),
                         B * Nq, C, eps);
    pl_linear_fwd(k, P, &L->lin1, a->h.p, a->Q2.p, B * Nq);
    k->relu_forward(a->hr.p, a->h.p, B * Nq * t->mlp_dim);
    pl_linear_fwd(k, P, &L->lin2, a->mo.p, a->hr.p, B * Nq);
    k->add_forward(a->Q3pre.p, a->Q2.p, a->mo.p, nq);
    k->layernorm_forward(a->Q3.p, a->m3.p, a->r3.p, a->Q3pre.p, pl_pv(P, L->n3w), pl_pv(P, L->n3b),
                         B * Nq, C, eps);
    k->add_forward(a->qpe3.p, a->Q3.p, tokens, nq);
    if (!attn_fwd(k, P, &L->i2t, &a->a_ia, a->ia.p, a->kpe.p, a->qpe3.p, a->Q3.p, B, HW, Nq,
                  scratch, sn, error))
      return FALSE;
    k->add_forward(a->K1pre.p, K, a->ia.p, nk);
    k->layernorm_forward(a->K1.p, a->m4.p, a->r4.p, a->K1pre.p, pl_pv(P, L->n4w), pl_pv(P, L->n4b),
                         B * HW, C, eps);
    Q = a->Q3.p;
    K = a->K1.p;
  }
  if (!pl_buf_ensure(&t->fq, k, nq, error) || !pl_buf_ensure(&t->fk, k, nk, error) ||
      !pl_buf_ensure(&t->fa, k, nq, error) || !pl_buf_ensure(&t->Qfpre, k, nq, error) ||
      !pl_buf_ensure(&t->Qf, k, nq, error) || !pl_buf_ensure(&t->mf, k, B * Nq, error) ||
      !pl_buf_ensure(&t->rf, k, B * Nq, error))
    return FALSE;
  k->add_forward(t->fq.p, Q, tokens, nq);
  k->add_rows(t->fk.p, K, kpe, B, HW * C);
  if (!attn_fwd(k, P, &t->final_attn, &t->a_f, t->fa.p, t->fq.p, t->fk.p, K, B, Nq, HW, scratch, sn,
                error))
    return FALSE;
  k->add_forward(t->Qfpre.p, Q, t->fa.p, nq);
  k->layernorm_forward(t->Qf.p, t->mf.p, t->rf.p, t->Qfpre.p, pl_pv(P, t->nfw), pl_pv(P, t->nfb),
                       B * Nq, C, eps);
  t->Kfin = K;
  *Qout = t->Qf.p;
  *Kout = K;
  return TRUE;
}

static void zero(const ps_kernels *k, float *x, int64_t n) {
  k->mem_zero(x, (size_t)n * sizeof(float));
}

gboolean tw_transformer_backward(tw_transformer *t, const ps_kernels *k, const pl_params *P,
                                 const float *dQin, const float *dKin, float *scratch, int64_t sn,
                                 const float **dtokens, const float **dsrc, GError **error) {
  int64_t C = t->C, B = t->B, Nq = t->Nq, HW = t->HW, nq = B * Nq * C, nk = B * HW * C;
  int64_t nh = B * Nq * t->mlp_dim;
  if (!pl_buf_ensure(&t->dQa, k, nq, error) || !pl_buf_ensure(&t->dKa, k, nk, error) ||
      !pl_buf_ensure(&t->dPE, k, nq, error) || !pl_buf_ensure(&t->t1, k, nq, error) ||
      !pl_buf_ensure(&t->t2, k, nq, error) || !pl_buf_ensure(&t->tk1, k, nk, error) ||
      !pl_buf_ensure(&t->tk2, k, nk, error) || !pl_buf_ensure(&t->dh1, k, nh, error) ||
      !pl_buf_ensure(&t->dh2, k, nh, error))
    return FALSE;
  float *dQ = t->dQa.p, *dK = t->dKa.p, *dPE = t->dPE.p, *t1 = t->t1.p, *t2 = t->t2.p;
  float *tk1 = t->tk1.p, *tk2 = t->tk2.p;
  zero(k, dPE, nq);
  if (dKin)
    k->copy_on_device(dK, dKin, (size_t)nk * sizeof(float));
  else
    zero(k, dK, nk);

  /* final attention + norm_final_attn */
  zero(k, t1, nq);
  if (dQin)
    k->layernorm_backward(t1, pl_pg(P, t->nfw), pl_pg(P, t->nfb), dQin, t->Qfpre.p,
                          pl_pv(P, t->nfw), t->mf.p, t->rf.p, B * Nq, C);
  k->copy_on_device(dQ, t1, (size_t)nq * sizeof(float));
  zero(k, t2, nq);
  zero(k, tk1, nk);
  if (!attn_bwd(k, P, &t->final_attn, &t->a_f, t1, t2, tk1, dK, scratch, sn, error)) return FALSE;
  k->axpy(dQ, 1.0f, t2, nq);
  k->axpy(dPE, 1.0f, t2, nq);
  k->axpy(dK, 1.0f, tk1, nk);

  for (int64_t l = t->depth - 1; l >= 0; l--) {
    const tw_layer *L = &t->layers[l];
    tw_layer_act *a = &t->act[l];
    /* K = norm4(K0 + i2t(K0+KPE, Q3+PE, Q3)) */
    zero(k, tk2, nk);
    k->layernorm_backward(tk2, pl_pg(P, L->n4w), pl_pg(P, L->n4b), dK, a->K1pre.p, pl_pv(P, L->n4w),
                          a->m4.p, a->r4.p, B * HW, C);
    k->copy_on_device(dK, tk2, (size_t)nk * sizeof(float));
    zero(k, tk1, nk);
    zero(k, t2, nq);
    if (!attn_bwd(k, P, &L->i2t, &a->a_ia, tk2, tk1, t2, dQ, scratch, sn, error)) return FALSE;
    k->axpy(dK, 1.0f, tk1, nk);
    k->axpy(dQ, 1.0f, t2, nq);
    k->axpy(dPE, 1.0f, t2, nq);
    /* Q3 = norm3(Q2 + mlp(Q2)) */
    zero(k, t1, nq);
    k->layernorm_backward(t1, pl_pg(P, L->n3w), pl_pg(P, L->n3b), dQ, a->Q3pre.p, pl_pv(P, L->n3w),
                          a->m3.p, a->r3.p, B * Nq, C);
    k->copy_on_device(dQ, t1, (size_t)nq * sizeof(float));
    zero(k, t->dh1.p, nh);
    pl_linear_bwd(k, P, &L->lin2, t->dh1.p, t1, a->hr.p, B * Nq);
    zero(k, t->dh2.p, nh);
    k->relu_backward(t->dh2.p, a->h.p, t->dh1.p, nh);
    pl_linear_bwd(k, P, &L->lin1, dQ, t->dh2.p, a->Q2.p, B * Nq);
    /* Q2 = norm2(Q1 + t2i(Q1+PE, K0+KPE, K0)) */
    zero(k, t1, nq);
    k->layernorm_backward(t1, pl_pg(P, L->n2w), pl_pg(P, L->n2b), dQ, a->Q2pre.p, pl_pv(P, L->n2w),
                          a->m2.p, a->r2.p, B * Nq, C);
    k->copy_on_device(dQ, t1, (size_t)nq * sizeof(float));
    zero(k, t2, nq);
    zero(k, tk1, nk);
    if (!attn_bwd(k, P, &L->t2i, &a->a_ca, t1, t2, tk1, dK, scratch, sn, error)) return FALSE;
    k->axpy(dQ, 1.0f, t2, nq);
    k->axpy(dPE, 1.0f, t2, nq);
    k->axpy(dK, 1.0f, tk1, nk);
    /* Q1 = norm1(self-attention part) */
    zero(k, t1, nq);
    k->layernorm_backward(t1, pl_pg(P, L->n1w), pl_pg(P, L->n1b), dQ, a->Q1pre.p, pl_pv(P, L->n1w),
                          a->m1.p, a->r1.p, B * Nq, C);
    if (L->skip_first_layer_pe) {
      zero(k, dQ, nq);
      if (!attn_bwd(k, P, &L->self_attn, &a->a_sa, t1, dQ, dQ, dQ, scratch, sn, error))
        return FALSE;
    } else {
      k->copy_on_device(dQ, t1, (size_t)nq * sizeof(float));
      zero(k, t2, nq);
      if (!attn_bwd(k, P, &L->self_attn, &a->a_sa, t1, t2, t2, dQ, scratch, sn, error))
        return FALSE;
      k->axpy(dQ, 1.0f, t2, nq);
      k->axpy(dPE, 1.0f, t2, nq);
    }
  }
  /* the tokens are both the first queries and the query PE of every layer */
  k->axpy(dQ, 1.0f, dPE, nq);
  *dtokens = dQ;
  *dsrc = dK;
  return TRUE;
}
