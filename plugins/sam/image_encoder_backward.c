/* image_encoder_backward.c — the backward of SAM's ImageEncoderViT: neck,
 * blocks in reverse (down to the first block with something to train, so a
 * frozen backbone below the adapters costs nothing), patch embedding and
 * MedSAM's min-max normalisation. Gradients are added only into the
 * parameters whose grad buffer the core set. */
#include "image_encoder_internal.h"

#include <math.h>

#include <pathseg/error.h>

/* dx = dy / r, plus the gradient through min and max (at their positions).
 * dx (+=), dy, x: (B, n) host memory. */
static void minmax_backward(sam_encoder *e, float *dx, const float *dy, const float *x, int64_t B,
                            int64_t n) {
  for (int64_t b = 0; b < B; b++) {
    const float *g = dy + b * n, *xb = x + b * n;
    float *d = dx + b * n;
    double r = e->mm_r[b], lo = e->mm_lo[b], s0 = 0, s1 = 0;
    for (int64_t i = 0; i < n; i++) {
      d[i] += (float)(g[i] / r);
      s0 += g[i];
      s1 += g[i] * ((double)xb[i] - lo);
    }
    if (!e->mm_clipped[b]) {
      d[e->mm_amin[b]] += (float)(-s0 / r + s1 / (r * r));
      d[e->mm_amax[b]] += (float)(-s1 / (r * r));
    } else {
      d[e->mm_amin[b]] += (float)(-s0 / r);
    }
  }
}

/* dimage (+=, zero on entry) from dimg, both device memory, through the
 * min-max that the forward ran on the host (it kept the host raw image).
 * DEVICE: host round trip, needs a kernel (sums of dy and dy * (x - lo) per
 * image and the scatter to the extremes). */
static gboolean medsam_backward(sam_encoder *e, float *dimage, const float *dimg, int64_t B,
                                int64_t n, GError **error) {
  if (sam_on_host(e->dev)) {
    minmax_backward(e, dimage, dimg, e->img_raw, B, n);
    return TRUE;
  }
  const ps_kernels *k = e->k;
  size_t bytes = (size_t)(B * n) * sizeof(float);
  if (!sam_host_buf_ensure(&e->h_dimg, B * n, error) ||
      !sam_host_buf_ensure(&e->h_dout, B * n, error))
    return FALSE;
  k->copy_to_host(e->h_dimg.p, dimg, bytes);
  memset(e->h_dout.p, 0, bytes);
  minmax_backward(e, e->h_dout.p, e->h_dimg.p, e->img_raw, B, n);
  k->copy_to_device(dimage, e->h_dout.p, bytes);
  return TRUE;
}

static gboolean block_trains(const sam_encoder *e, const enc_block *b) {
  const pl_params *P = &e->P;
  if (pl_pg(P, b->n1w) || pl_pg(P, b->n1b) || pl_pg(P, b->n2w) || pl_pg(P, b->n2b) ||
      pl_pg(P, b->rph) || pl_pg(P, b->rpw) || pl_linear_trains(P, &b->qkv) ||
      pl_linear_trains(P, &b->proj) || pl_linear_trains(P, &b->lin1) ||
      pl_linear_trains(P, &b->lin2))
    return TRUE;
  return e->cfg.adapter && (pl_linear_trains(P, &b->down) || pl_linear_trains(P, &b->up));
}

/* dcur: (N, E) gradient w.r.t. the block output in, w.r.t. its input out. */
static void block_backward(sam_encoder *e, int64_t l, float *dcur, int64_t B, float *scratch,
                           int64_t scratch_n) {
  const ps_kernels *k = e->k;
  const pl_params *P = &e->P;
  const enc_block *b = &e->blk[l];
  blk_act *a = &e->act[l];
  blk_geom g = sam_enc_geom(e, b, B);
  int64_t N = B * e->T, E = e->E, Nw = g.Bw * g.Tw;
  float *dx1 = e->d1.p;

  k->copy_on_device(dx1, dcur, (size_t)(N * E) * sizeof(float));
  /* MLP branch */
  k->mem_zero(e->dg.p, (size_t)(N * e->M) * sizeof(float));
  pl_linear_bwd(k, P, &b->lin2, e->dg.p, dcur, a->g.p, N);
  k->mem_zero(e->dh.p, (size_t)(N * e->M) * sizeof(float));
  k->gelu_backward(e->dh.p, a->h.p, e->dg.p, N * e->M);
  k->mem_zero(e->dln.p, (size_t)(N * E) * sizeof(float));
  pl_linear_bwd(k, P, &b->lin1, e->dln.p, e->dh.p, a->ln2.p, N);
  k->layernorm_backward(dx1, pl_pg(P, b->n2w), pl_pg(P, b->n2b), e->dln.p, a->x1.p,
                        pl_pv(P, b->n2w), a->mean2.p, a->rstd2.p, N, E);
  /* adapter branch: d(up out) = scale * dcur */
  if (e->cfg.adapter) {
    k->scale(e->tmp.p, dcur, (float)e->cfg.adapter_scale, N * E);
    k->mem_zero(e->dadr.p, (size_t)(N * e->A) * sizeof(float));
    pl_linear_bwd(k, P, &b->up, e->dadr.p, e->tmp.p, a->adr.p, N);
    if (e->adapter_dropout_used) k->mul_forward(e->dadr.p, e->dadr.p, a->admask.p, N * e->A);
    k->mem_zero(e->dadh.p, (size_t)(N * e->A) * sizeof(float));
    k->relu_backward(e->dadh.p, a->adh.p, e->dadr.p, N * e->A);
    pl_linear_bwd(k, P, &b->down, dx1, e->dadh.p, a->x1.p, N);
  }
  /* attention branch */
  k->copy_on_device(dcur, dx1, (size_t)(N * E) * sizeof(float));
  const float *dproj = dx1;
  if (!b->global) {
    k->mem_zero(e->dprojw.p, (size_t)(Nw * E) * sizeof(float));
    k->window_unpartition_backward(e->dprojw.p, dx1, B, e->G, e->G, E, g.side);
    dproj = e->dprojw.p;
  }
  k->mem_zero(e->dao.p, (size_t)(Nw * E) * sizeof(float));
  pl_linear_bwd(k, P, &b->proj, e->dao.p, dproj, a->ao.p, Nw);
  k->mem_zero(e->dqkv.p, (size_t)(Nw * 3 * E) * sizeof(float));
  int64_t nrel = g.Bw * e->nH * g.Tw * g.side;
  k->mem_zero(e->drelh.p, (size_t)nrel * sizeof(float));
  k->mem_zero(e->drelw.p, (size_t)nrel * sizeof(float));
  ps_attention_desc d = sam_enc_att_desc(e, &g, a);
  k->attention_backward(e->dqkv.p, e->dqkv.p + E, e->dqkv.p + 2 * E, NULL, e->drelh.p, e->drelw.p,
                        e->dao.p, a->qkv.p, a->qkv.p + E, a->qkv.p + 2 * E, a->ao.p, a->lse.p, &d,
                        scratch, scratch_n);
  k->rel_pos_backward(e->dqkv.p, pl_pg(P, b->rph), pl_pg(P, b->rpw), e->drelh.p, e->drelw.p,
                      a->qkv.p, pl_pv(P, b->rph), pl_pv(P, b->rpw), g.Bw, e->nH, g.side, g.side,
                      e->hd, 3 * E);
  const float *ain = b->global ? a->ln1.p : a->xw.p;
  float *dain = b->global ? e->dln.p : e->dxw.p;
  k->mem_zero(dain, (size_t)(Nw * E) * sizeof(float));
  pl_linear_bwd(k, P, &b->qkv, dain, e->dqkv.p, ain, Nw);
  if (!b->global) {
    k->mem_zero(e->dln.p, (size_t)(N * E) * sizeof(float));
    k->window_partition_backward(e->dln.p, e->dxw.p, B, e->G, e->G, E, g.side);
  }
  k->layernorm_backward(dcur, pl_pg(P, b->n1w), pl_pg(P, b->n1b), e->dln.p, e->xs[l].p,
                        pl_pv(P, b->n1w), a->mean1.p, a->rstd1.p, N, E);
}

gboolean sam_encoder_backward(sam_encoder *e, ps_context *ctx, const float *dout,
                              ps_tensor **dimage, GError **error) {
  const ps_kernels *k = e->k;
  const pl_params *P = &e->P;
  if (!e->acts_for_training) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "encoder.medsam: backward needs a forward in training mode (activations are "
                "kept only then)");
    return FALSE;
  }
  int64_t B = e->B, N = B * e->T, E = e->E, GG = e->T, S = e->cfg.img_size;
  int64_t nw_max = sam_enc_max_window_tokens(e, B), relmax = 0, M = e->M, A = e->A;
  for (int64_t l = 0; l < e->cfg.depth; l++) {
    blk_geom g = sam_enc_geom(e, &e->blk[l], B);
    relmax = MAX(relmax, g.Bw * e->nH * g.Tw * g.side);
  }
  if (!pl_buf_ensure(&e->d0, k, N * E, error) || !pl_buf_ensure(&e->d1, k, N * E, error) ||
      !pl_buf_ensure(&e->dln, k, N * E, error) || !pl_buf_ensure(&e->dxw, k, nw_max * E, error) ||
      !pl_buf_ensure(&e->dqkv, k, nw_max * 3 * E, error) ||
      !pl_buf_ensure(&e->drelh, k, relmax, error) || !pl_buf_ensure(&e->drelw, k, relmax, error) ||
      !pl_buf_ensure(&e->dao, k, nw_max * E, error) ||
      !pl_buf_ensure(&e->dprojw, k, nw_max * E, error) || !pl_buf_ensure(&e->dh, k, N * M, error) ||
      !pl_buf_ensure(&e->dg, k, N * M, error) ||
      !pl_buf_ensure(&e->dadr, k, e->cfg.adapter ? N * A : 0, error) ||
      !pl_buf_ensure(&e->dadh, k, e->cfg.adapter ? N * A : 0, error) ||
      !pl_buf_ensure(&e->dnchw, k, N * E, error) ||
      !pl_buf_ensure(&e->dc1, k, B * e->OC * GG, error) ||
      !pl_buf_ensure(&e->dc1n, k, B * e->OC * GG, error) ||
      !pl_buf_ensure(&e->dc2, k, B * e->OC * GG, error) || !pl_buf_ensure(&e->dpe, k, N * E, error))
    return FALSE;
  int64_t sn = sam_enc_scratch_need(e, B, 1);
  float *scratch = pl_scratch(ctx, sn, error);
  if (!scratch) return FALSE;

  /* Where the backward can stop: below the first block with something to train. */
  gboolean stem = dimage || pl_pg(P, e->pe_w) || pl_pg(P, e->pe_b) || pl_pg(P, e->pos);
  int64_t lo = e->cfg.depth;
  for (int64_t l = 0; l < e->cfg.depth && lo == e->cfg.depth; l++)
    if (stem || block_trains(e, &e->blk[l])) lo = l;

  /* neck */
  pl_buf_zero(&e->dc2);
  k->layernorm2d_backward(e->dc2.p, pl_pg(P, e->nk3w), pl_pg(P, e->nk3b), dout, e->c2.p,
                          pl_pv(P, e->nk3w), e->m2.p, e->r2.p, B, e->OC, GG);
  gboolean below = lo < e->cfg.depth || stem;
  pl_buf_zero(&e->dc1n);
  ps_conv2d_desc n2 = {B, e->OC, e->G, e->G, e->OC, 3, 3, 1, 1};
  k->conv2d_backward(e->dc1n.p, pl_pg(P, e->neck2), NULL, e->dc2.p, e->c1n.p, pl_pv(P, e->neck2),
                     &n2, scratch, sn);
  pl_buf_zero(&e->dc1);
  k->layernorm2d_backward(e->dc1.p, pl_pg(P, e->nk1w), pl_pg(P, e->nk1b), e->dc1n.p, e->c1.p,
                          pl_pv(P, e->nk1w), e->m1.p, e->r1.p, B, e->OC, GG);
  ps_conv2d_desc n0 = {B, E, e->G, e->G, e->OC, 1, 1, 1, 0};
  pl_buf_zero(&e->dnchw);
  k->conv2d_backward(below ? e->dnchw.p : NULL, pl_pg(P, e->neck0), NULL, e->dc1.p, e->nchw.p,
                     pl_pv(P, e->neck0), &n0, scratch, sn);
  if (!below) {
    if (dimage) *dimage = NULL;
    return TRUE;
  }
  float *dcur = e->d0.p;
  pl_buf_zero(&e->d0);
  k->transpose_backward(dcur, e->dnchw.p, B, GG, E);

  for (int64_t l = e->cfg.depth - 1; l >= lo; l--) block_backward(e, l, dcur, B, scratch, sn);
  if (!stem) {
    if (dimage) *dimage = NULL;
    return TRUE;
  }
  float *gpos = pl_pg(P, e->pos);
  if (gpos)
    for (int64_t b = 0; b < B; b++) k->axpy(gpos, 1.0f, dcur + b * GG * E, GG * E);
  float *gw = pl_pg(P, e->pe_w), *gb = pl_pg(P, e->pe_b);
  if (gw || gb || dimage) {
    pl_buf_zero(&e->dpe);
    k->transpose_backward(e->dpe.p, dcur, B, E, GG);
    float *dimg = NULL;
    if (dimage) {
      int64_t ishape[4] = {B, 3, S, S};
      if (!ps_tensor_ensure_on(&e->dimage, e->dev, PS_DTYPE_F32, 4, ishape, error) ||
          !pl_buf_ensure(&e->dimg, k, e->cfg.medsam_input ? B * 3 * S * S : 0, error))
        return FALSE;
      k->mem_zero(e->dimage->data, e->dimage->nbytes);
      dimg = e->cfg.medsam_input ? e->dimg.p : ps_f32(e->dimage);
      if (e->cfg.medsam_input) pl_buf_zero(&e->dimg);
    }
    ps_conv2d_desc pd = {B, 3, S, S, E, e->cfg.patch_size, e->cfg.patch_size, e->cfg.patch_size, 0};
    k->conv2d_backward(dimg, gw, gb, e->dpe.p, e->img_in, pl_pv(P, e->pe_w), &pd, scratch, sn);
    if (dimage) {
      if (e->cfg.medsam_input &&
          !medsam_backward(e, ps_f32(e->dimage), e->dimg.p, B, 3 * S * S, error))
        return FALSE;
      *dimage = e->dimage;
    }
  }
  return TRUE;
}
