/* image_encoder_forward.c — the forward of SAM's ImageEncoderViT (see
 * image_encoder.c for the block formulas): patch embedding (after MedSAM's
 * optional min-max normalisation), pos_embed, the blocks with windowed or
 * global attention and AdaptFormer adapters, and the neck. */
#include "image_encoder_internal.h"

#include <math.h>

#include <pathseg/error.h>

blk_geom sam_enc_geom(const sam_encoder *e, const enc_block *b, int64_t B) {
  blk_geom g;
  if (b->global) {
    g.side = e->G;
    g.Bw = B;
  } else {
    g.side = e->cfg.window_size;
    int64_t nw = ps_windows_per_dim(e->G, g.side);
    g.Bw = B * nw * nw;
  }
  g.Tw = g.side * g.side;
  return g;
}

ps_attention_desc sam_enc_att_desc(const sam_encoder *e, const blk_geom *g, const blk_act *a) {
  ps_attention_desc d = {0};
  d.B = g->Bw;
  d.Hq = d.Hkv = e->nH;
  d.Tq = d.Tk = g->Tw;
  d.D = e->hd;
  d.ldq = d.ldk = d.ldv = 3 * e->E;
  d.ldo = e->E;
  d.scale = (float)(1.0 / sqrt((double)e->hd));
  d.rel_h = a->relh.p;
  d.rel_w = a->relw.p;
  d.rel_kh = d.rel_kw = g->side;
  return d;
}

int64_t sam_enc_max_window_tokens(const sam_encoder *e, int64_t B) {
  int64_t m = B * e->T;
  for (int64_t l = 0; l < e->cfg.depth; l++) {
    blk_geom g = sam_enc_geom(e, &e->blk[l], B);
    m = MAX(m, g.Bw * g.Tw);
  }
  return m;
}

/* The most scratch any op of a forward (backward) needs, in floats. */
int64_t sam_enc_scratch_need(const sam_encoder *e, int64_t B, int backward) {
  const ps_kernels *k = e->k;
  ps_conv2d_desc pd = {B,
                       3,
                       e->cfg.img_size,
                       e->cfg.img_size,
                       e->E,
                       e->cfg.patch_size,
                       e->cfg.patch_size,
                       e->cfg.patch_size,
                       0};
  ps_conv2d_desc n2 = {B, e->OC, e->G, e->G, e->OC, 3, 3, 1, 1};
  int64_t need = MAX(k->conv2d_scratch(&pd), k->conv2d_scratch(&n2));
  for (int64_t l = 0; l < e->cfg.depth; l++) {
    blk_geom g = sam_enc_geom(e, &e->blk[l], B);
    blk_act dummy = {0};
    ps_attention_desc d = sam_enc_att_desc(e, &g, &dummy);
    need = MAX(need, k->attention_scratch(&d, backward));
  }
  return need;
}

/* Training keeps one activation set per block; inference shares one set
 * among the window blocks and one among the global blocks (same sizes), kept
 * apart from the training sets so that alternating train and eval steps
 * allocates nothing. */
static blk_act *act_of(sam_encoder *e, int64_t l, gboolean training) {
  return &e->act[training ? l : e->cfg.depth + (e->blk[l].global ? 1 : 0)];
}

static gboolean ensure_act(sam_encoder *e, int64_t l, blk_act *a, int64_t B, gboolean training,
                           GError **error) {
  const ps_kernels *k = e->k;
  const enc_block *b = &e->blk[l];
  blk_geom g = sam_enc_geom(e, b, B);
  int64_t N = B * e->T, Nw = g.Bw * g.Tw, E = e->E;
  gboolean adapter = e->cfg.adapter;
  return pl_buf_ensure(&a->ln1, k, N * E, error) && pl_buf_ensure(&a->mean1, k, N, error) &&
         pl_buf_ensure(&a->rstd1, k, N, error) &&
         pl_buf_ensure(&a->xw, k, b->global ? 0 : Nw * E, error) &&
         pl_buf_ensure(&a->qkv, k, Nw * 3 * E, error) &&
         pl_buf_ensure(&a->relh, k, g.Bw * e->nH * g.Tw * g.side, error) &&
         pl_buf_ensure(&a->relw, k, g.Bw * e->nH * g.Tw * g.side, error) &&
         pl_buf_ensure(&a->ao, k, Nw * E, error) &&
         pl_buf_ensure(&a->lse, k, g.Bw * e->nH * g.Tw, error) &&
         pl_buf_ensure(&a->x1, k, N * E, error) && pl_buf_ensure(&a->ln2, k, N * E, error) &&
         pl_buf_ensure(&a->mean2, k, N, error) && pl_buf_ensure(&a->rstd2, k, N, error) &&
         pl_buf_ensure(&a->h, k, N * e->M, error) && pl_buf_ensure(&a->g, k, N * e->M, error) &&
         pl_buf_ensure(&a->adh, k, adapter ? N * e->A : 0, error) &&
         pl_buf_ensure(&a->adr, k, adapter ? N * e->A : 0, error) &&
         pl_buf_ensure(&a->admask, k,
                       adapter && training && e->cfg.adapter_dropout > 0 ? N * e->A : 0, error);
}

/* MedSAM: (x - min) / clip(max - min, 1e-8) per image (MedSAM_Inference.py).
 * x: (B, n) raw images -> y: (B, n) normalised, both host memory. */
static void minmax_forward(sam_encoder *e, float *y, const float *x, int64_t B, int64_t n) {
  for (int64_t b = 0; b < B; b++) {
    const float *xb = x + b * n;
    int64_t amin = 0, amax = 0;
    for (int64_t i = 1; i < n; i++) {
      if (xb[i] < xb[amin]) amin = i;
      if (xb[i] > xb[amax]) amax = i;
    }
    double lo = xb[amin], r = (double)xb[amax] - lo;
    e->mm_clipped[b] = r < 1e-8;
    if (r < 1e-8) r = 1e-8;
    e->mm_lo[b] = (float)lo;
    e->mm_r[b] = (float)r;
    e->mm_amin[b] = amin;
    e->mm_amax[b] = amax;
    float *yb = y + b * n;
    for (int64_t i = 0; i < n; i++) yb[i] = (float)((xb[i] - lo) / r);
  }
}

/* MedSAM's min-max of `image` into e->img_norm. The arg-min/max and the
 * affine map run on the host (no table entry finds extremes): on a host
 * image that is the host preprocessing of an input before its one upload;
 * an image already on the device makes a round trip.
 * DEVICE: host round trip for a device image, needs a kernel (per-image
 * min/max + affine normalisation). */
static gboolean medsam_normalise(sam_encoder *e, const ps_tensor *image, int64_t B, int64_t n,
                                 GError **error) {
  const ps_kernels *k = e->k;
  const float *raw = ps_f32(image);
  if (!sam_on_host(image->device)) {
    if (!sam_host_buf_ensure(&e->h_raw, B * n, error)) return FALSE;
    ps_kernels_get(image->device, NULL)
        ->copy_to_host(e->h_raw.p, raw, (size_t)(B * n) * sizeof(float));
    raw = e->h_raw.p;
  }
  e->img_raw = raw;
  if (sam_on_host(e->dev)) {
    minmax_forward(e, e->img_norm.p, raw, B, n);
    return TRUE;
  }
  if (!sam_host_buf_ensure(&e->h_norm, B * n, error)) return FALSE;
  minmax_forward(e, e->h_norm.p, raw, B, n);
  k->copy_to_device(e->img_norm.p, e->h_norm.p, (size_t)(B * n) * sizeof(float));
  return TRUE;
}

static gboolean ensure_shared(sam_encoder *e, int64_t B, GError **error) {
  const ps_kernels *k = e->k;
  int64_t N = B * e->T, E = e->E, GG = e->T;
  int64_t img = 3 * e->cfg.img_size * e->cfg.img_size;
  if (B != e->B) {
    e->mm_lo = g_renew(float, e->mm_lo, B);
    e->mm_r = g_renew(float, e->mm_r, B);
    e->mm_amin = g_renew(int64_t, e->mm_amin, B);
    e->mm_amax = g_renew(int64_t, e->mm_amax, B);
    e->mm_clipped = g_renew(gboolean, e->mm_clipped, B);
    e->B = B;
  }
  int64_t shape[4] = {B, e->OC, e->G, e->G};
  return pl_buf_ensure(&e->img_norm, k, e->cfg.medsam_input ? B * img : 0, error) &&
         pl_buf_ensure(&e->pe_out, k, N * E, error) &&
         pl_buf_ensure(&e->tmpw, k, sam_enc_max_window_tokens(e, B) * E, error) &&
         pl_buf_ensure(&e->tmp, k, N * E, error) && pl_buf_ensure(&e->nchw, k, N * E, error) &&
         pl_buf_ensure(&e->c1, k, B * e->OC * GG, error) &&
         pl_buf_ensure(&e->c1n, k, B * e->OC * GG, error) && pl_buf_ensure(&e->m1, k, N, error) &&
         pl_buf_ensure(&e->r1, k, N, error) && pl_buf_ensure(&e->c2, k, B * e->OC * GG, error) &&
         pl_buf_ensure(&e->m2, k, N, error) && pl_buf_ensure(&e->r2, k, N, error) &&
         ps_tensor_ensure_on(&e->out, e->dev, PS_DTYPE_F32, 4, shape, error);
}

/* Adapter dropout: the mask is drawn on the host (the same draws on every
 * device) and copied to a->admask. */
static gboolean dropout_mask(sam_encoder *e, blk_act *a, int64_t n, ps_rng *rng, GError **error) {
  float *m = a->admask.p;
  if (!sam_on_host(e->dev)) {
    if (!sam_host_buf_ensure(&e->h_mask, n, error)) return FALSE;
    m = e->h_mask.p;
  }
  float p = (float)e->cfg.adapter_dropout, keep = 1.0f / (1.0f - p);
  for (int64_t i = 0; i < n; i++) m[i] = ps_rng_uniform(rng) < p ? 0.0f : keep;
  if (m != a->admask.p) e->k->copy_to_device(a->admask.p, m, (size_t)n * sizeof(float));
  return TRUE;
}

static gboolean block_forward(sam_encoder *e, int64_t l, blk_act *a, const float *x, float *xo,
                              int64_t B, gboolean training, ps_rng *rng, float *scratch,
                              int64_t scratch_n, GError **error) {
  const ps_kernels *k = e->k;
  const pl_params *P = &e->P;
  const enc_block *b = &e->blk[l];
  blk_geom g = sam_enc_geom(e, b, B);
  int64_t N = B * e->T, E = e->E, Nw = g.Bw * g.Tw;
  float eps = (float)e->cfg.eps;

  k->layernorm_forward(a->ln1.p, a->mean1.p, a->rstd1.p, x, pl_pv(P, b->n1w), pl_pv(P, b->n1b), N,
                       E, eps);
  const float *ain = a->ln1.p;
  if (!b->global) {
    k->window_partition_forward(a->xw.p, a->ln1.p, B, e->G, e->G, E, g.side);
    ain = a->xw.p;
  }
  pl_linear_fwd(k, P, &b->qkv, a->qkv.p, ain, Nw);
  k->rel_pos_forward(a->relh.p, a->relw.p, a->qkv.p, pl_pv(P, b->rph), pl_pv(P, b->rpw), g.Bw,
                     e->nH, g.side, g.side, e->hd, 3 * E);
  ps_attention_desc d = sam_enc_att_desc(e, &g, a);
  k->attention_forward(a->ao.p, a->lse.p, a->qkv.p, a->qkv.p + E, a->qkv.p + 2 * E, &d, scratch,
                       scratch_n);
  pl_linear_fwd(k, P, &b->proj, e->tmpw.p, a->ao.p, Nw);
  const float *attn = e->tmpw.p;
  if (!b->global) {
    k->window_unpartition_forward(e->tmp.p, e->tmpw.p, B, e->G, e->G, E, g.side);
    attn = e->tmp.p;
  }
  k->add_forward(a->x1.p, x, attn, N * E);
  k->layernorm_forward(a->ln2.p, a->mean2.p, a->rstd2.p, a->x1.p, pl_pv(P, b->n2w),
                       pl_pv(P, b->n2b), N, E, eps);
  pl_linear_fwd(k, P, &b->lin1, a->h.p, a->ln2.p, N);
  k->gelu_forward(a->g.p, a->h.p, N * e->M);
  pl_linear_fwd(k, P, &b->lin2, e->tmp.p, a->g.p, N);
  k->add_forward(xo, a->x1.p, e->tmp.p, N * E);
  if (e->cfg.adapter) {
    pl_linear_fwd(k, P, &b->down, a->adh.p, a->x1.p, N);
    k->relu_forward(a->adr.p, a->adh.p, N * e->A);
    if (training && e->cfg.adapter_dropout > 0) {
      if (!dropout_mask(e, a, N * e->A, rng, error)) return FALSE;
      k->mul_forward(a->adr.p, a->adr.p, a->admask.p, N * e->A);
    }
    pl_linear_fwd(k, P, &b->up, e->tmp.p, a->adr.p, N);
    k->axpy(xo, (float)e->cfg.adapter_scale, e->tmp.p, N * E);
  }
  return TRUE;
}

gboolean sam_encoder_forward(sam_encoder *e, ps_context *ctx, const ps_tensor *image,
                             gboolean training, ps_rng *rng, ps_tensor **out, GError **error) {
  const ps_kernels *k = e->k;
  const pl_params *P = &e->P;
  int64_t S = e->cfg.img_size;
  int64_t want[4] = {-1, 3, S, S};
  if (!ps_tensor_check(image, "encoder.medsam input image", PS_DTYPE_F32, 4, want, error))
    return FALSE;
  int64_t B = image->shape[0], N = B * e->T, E = e->E, GG = e->T;
  if (B < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "encoder.medsam: empty batch");
    return FALSE;
  }
  if (!ensure_shared(e, B, error)) return FALSE;
  for (int64_t l = 0; l <= e->cfg.depth; l++)
    if (!pl_buf_ensure(&e->xs[training ? l : l % 2], k, N * E, error)) return FALSE;
  for (int64_t l = 0; l < e->cfg.depth; l++)
    if (!ensure_act(e, l, act_of(e, l, training), B, training, error)) return FALSE;
  int64_t sn = sam_enc_scratch_need(e, B, 0);
  float *scratch = pl_scratch(ctx, sn, error);
  if (!scratch) return FALSE;

  /* patch embedding (+ MedSAM normalisation), NCHW -> tokens, + pos_embed */
  const float *img;
  if (e->cfg.medsam_input) {
    if (!medsam_normalise(e, image, B, 3 * S * S, error)) return FALSE;
    img = e->img_norm.p;
  } else {
    const ps_tensor *on = ps_tensor_on_device(image, e->dev, &e->img_cache, error);
    if (!on) return FALSE;
    img = ps_f32(on);
    e->img_raw = NULL;
  }
  e->img_in = img;
  ps_conv2d_desc pd = {B, 3, S, S, E, e->cfg.patch_size, e->cfg.patch_size, e->cfg.patch_size, 0};
  k->conv2d_forward(e->pe_out.p, img, pl_pv(P, e->pe_w), pl_pv(P, e->pe_b), &pd, scratch, sn);
  float *x0 = e->xs[0].p;
  k->transpose_forward(x0, e->pe_out.p, B, E, GG);
  for (int64_t b = 0; b < B; b++) k->axpy(x0 + b * GG * E, 1.0f, pl_pv(P, e->pos), GG * E);

  for (int64_t l = 0; l < e->cfg.depth; l++) {
    float *xi = e->xs[training ? l : l % 2].p, *xo = e->xs[training ? l + 1 : (l + 1) % 2].p;
    if (!block_forward(e, l, act_of(e, l, training), xi, xo, B, training, rng, scratch, sn, error))
      return FALSE;
  }
  const float *xf = e->xs[training ? e->cfg.depth : e->cfg.depth % 2].p;

  /* neck */
  k->transpose_forward(e->nchw.p, xf, B, GG, E);
  ps_conv2d_desc n0 = {B, E, e->G, e->G, e->OC, 1, 1, 1, 0};
  k->conv2d_forward(e->c1.p, e->nchw.p, pl_pv(P, e->neck0), NULL, &n0, scratch, sn);
  float eps = (float)e->cfg.eps;
  k->layernorm2d_forward(e->c1n.p, e->m1.p, e->r1.p, e->c1.p, pl_pv(P, e->nk1w), pl_pv(P, e->nk1b),
                         B, e->OC, GG, eps);
  ps_conv2d_desc n2 = {B, e->OC, e->G, e->G, e->OC, 3, 3, 1, 1};
  k->conv2d_forward(e->c2.p, e->c1n.p, pl_pv(P, e->neck2), NULL, &n2, scratch, sn);
  k->layernorm2d_forward(ps_f32(e->out), e->m2.p, e->r2.p, e->c2.p, pl_pv(P, e->nk3w),
                         pl_pv(P, e->nk3b), B, e->OC, GG, eps);
  e->acts_for_training = training;
  e->adapter_dropout_used = training && e->cfg.adapter && e->cfg.adapter_dropout > 0;
  *out = e->out;
  return TRUE;
}
