/* mask_decoder.c — SAM's MaskDecoder (segment-anything
 * modeling/mask_decoder.py) behind the prompt encoder, forward and backward:
 *   tokens = [iou_token, mask_tokens, sparse prompts]      (B, 1+NM+Ns, C)
 *   src    = image_embeddings + no_mask_embed               (B, HW, C)
 *   Q, K   = TwoWayTransformer(src, dense PE, tokens)
 *   up     = GELU(ConvT(GELU(LN2d(ConvT(K)))))               (B, C/8, 4S, 4S)
 *   masks  = [MLP_i(Q[:, 1+i])]_i @ up                       (B, NM, 16 HW)
 *   iou    = MLP(Q[:, 0])                                    (B, NM)
 * then masks 1.. (multimask) or mask 0 only.
 *
 * Devices: parameters (after sam_decoder_to_device), activations and
 * gradients are memory of the decoder's device; token gathers and scatters
 * are copy_2d blocks. Only the random-Fourier encodings of the prompt encoder
 * are computed on the host (prompt_encoder.c). */
#include "mask_decoder_internal.h"

#include <math.h>

#include <pathseg/error.h>

void sam_dec_cfg_preset(sam_dec_cfg *c, const char *preset) {
  memset(c, 0, sizeof *c);
  c->depth = 2;
  c->downsample = 2;
  c->num_multimask_outputs = 3;
  c->iou_head_depth = 3;
  c->ln_eps = 1e-5;
  c->ln2d_eps = 1e-6;
  if (preset && strcmp(preset, "base") == 0) {
    c->embed_dim = 256;
    c->image_embedding_size = 64;
    c->input_image_size = 1024;
    c->mask_in_chans = 16;
    c->num_heads = 8;
    c->mlp_dim = 2048;
    c->iou_head_hidden_dim = 256;
  } else { /* tiny: matches the tiny encoder (out_chans 32, 16x16 grid, 256 px) */
    c->embed_dim = 32;
    c->image_embedding_size = 16;
    c->input_image_size = 256;
    c->mask_in_chans = 4;
    c->num_heads = 2;
    c->mlp_dim = 64;
    c->iou_head_hidden_dim = 32;
  }
}

pl_params *sam_decoder_params(sam_decoder *d) {
  return &d->P;
}
const sam_dec_cfg *sam_decoder_cfg(const sam_decoder *d) {
  return &d->cfg;
}
int64_t sam_decoder_mask_count(const sam_decoder *d) {
  return d->m;
}

void sam_decoder_set_multimask(sam_decoder *d, gboolean multimask) {
  d->cfg.multimask_output = multimask;
  d->m = multimask ? d->cfg.num_multimask_outputs : 1;
}

/* ---- SAM's MLP ----------------------------------------------------------- */

static gboolean mlp_add(pl_params *P, sam_mlp *m, const char *name, int64_t in, int64_t hidden,
                        int64_t out, int64_t layers, ps_role role, ps_rng *rng, GError **error) {
  if (layers < 1 || layers > SAM_MAX_MLP_DEPTH) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "decoder.sam: %s: depth %" G_GINT64_FORMAT " must be 1..%d", name, layers,
                SAM_MAX_MLP_DEPTH);
    return FALSE;
  }
  m->n = (int)layers;
  for (int i = 0; i < m->n; i++) {
    g_autofree char *ln = g_strdup_printf("%s.layers.%d", name, i);
    int64_t a = i == 0 ? in : hidden, b = i == m->n - 1 ? out : hidden;
    if (!pl_linear_add(P, &m->l[i], ln, a, b, role, PL_INIT_TORCH, rng, error)) return FALSE;
  }
  return TRUE;
}

static void mlp_free(sam_mlp *m) {
  for (int i = 0; i < SAM_MAX_MLP_DEPTH; i++) {
    pl_buf_free(&m->x[i]);
    pl_buf_free(&m->y[i]);
  }
  pl_buf_free(&m->dx);
  pl_buf_free(&m->dy);
}

static int64_t mlp_widest(const sam_mlp *m) {
  int64_t w = 0;
  for (int i = 0; i < m->n; i++) w = MAX(w, MAX(m->l[i].in, m->l[i].out));
  return w;
}

/* x: (N, in) -> returns (N, out) owned by the MLP. */
static const float *mlp_fwd(const ps_kernels *k, const pl_params *P, sam_mlp *m, const float *x,
                            int64_t N, GError **error) {
  for (int i = 0; i < m->n; i++)
    if (!pl_buf_ensure(&m->x[i], k, N * m->l[i].in, error) ||
        !pl_buf_ensure(&m->y[i], k, N * m->l[i].out, error))
      return NULL;
  k->copy_on_device(m->x[0].p, x, (size_t)(N * m->l[0].in) * sizeof(float));
  for (int i = 0; i < m->n; i++) {
    pl_linear_fwd(k, P, &m->l[i], m->y[i].p, m->x[i].p, N);
    if (i < m->n - 1) k->relu_forward(m->x[i + 1].p, m->y[i].p, N * m->l[i].out);
  }
  return m->y[m->n - 1].p;
}

/* dout: (N, out) -> returns dx: (N, in) owned by the MLP. */
static const float *mlp_bwd(const ps_kernels *k, const pl_params *P, sam_mlp *m, const float *dout,
                            int64_t N, GError **error) {
  int64_t w = mlp_widest(m);
  if (!pl_buf_ensure(&m->dx, k, N * w, error) || !pl_buf_ensure(&m->dy, k, N * w, error))
    return NULL;
  const float *dy = dout;
  for (int i = m->n - 1; i >= 0; i--) {
    k->mem_zero(m->dx.p, (size_t)(N * m->l[i].in) * sizeof(float));
    pl_linear_bwd(k, P, &m->l[i], m->dx.p, dy, m->x[i].p, N);
    if (i > 0) {
      k->mem_zero(m->dy.p, (size_t)(N * m->l[i - 1].out) * sizeof(float));
      k->relu_backward(m->dy.p, m->y[i - 1].p, m->dx.p, N * m->l[i - 1].out);
      dy = m->dy.p;
    }
  }
  return m->dx.p;
}

/* ---- construction ------------------------------------------------------- */

static int vec_param(pl_params *P, ps_role role, const int64_t *shape, int nd, ps_rng *rng,
                     double std, GError **error, const char *name) {
  int i = pl_param_add(P, role, shape, nd, error, "%s", name);
  if (i >= 0 && rng) {
    ps_tensor *t = pl_param(P, i)->value;
    pl_init_normal(ps_f32(t), ps_tensor_numel(t), std, rng);
  }
  return i;
}

ps_device sam_decoder_device(const sam_decoder *d) {
  return d->dev;
}

gboolean sam_decoder_to_device(sam_decoder *d, GError **error) {
  if (!pl_params_move_to(&d->P, d->dev, error)) {
    g_prefix_error(error, "decoder.sam: ");
    return FALSE;
  }
  return TRUE;
}

sam_decoder *sam_decoder_new(const sam_dec_cfg *cfg, ps_device device, int precision,
                             ps_rng *rng, GError **error) {
  const sam_dec_cfg *c = cfg;
  const ps_kernels *k = ps_kernels_get_precision(device, (ps_precision)precision, error);
  if (!k) return NULL;
  if (c->embed_dim < 8 || c->embed_dim % 8 != 0 || c->num_heads < 1 ||
      c->num_multimask_outputs < 1 || c->num_multimask_outputs + 1 > SAM_MAX_MASK_TOKENS ||
      c->image_embedding_size < 1 || c->input_image_size < 1 || c->mask_in_chans < 4 ||
      c->mask_in_chans % 4 != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "decoder.sam: inconsistent configuration (embed_dim %" G_GINT64_FORMAT
                " must be a multiple of 8, num_multimask_outputs 1..%d, mask_in_chans a multiple "
                "of 4)",
                c->embed_dim, SAM_MAX_MASK_TOKENS - 1);
    return NULL;
  }
  sam_decoder *d = g_new0(sam_decoder, 1);
  d->cfg = *cfg;
  d->dev = device;
  d->k = k;
  d->C = c->embed_dim;
  d->S = c->image_embedding_size;
  d->HW = d->S * d->S;
  d->NM = c->num_multimask_outputs + 1;
  d->C4 = d->C / 4;
  d->C8 = d->C / 8;
  d->m = c->multimask_output ? c->num_multimask_outputs : 1;
  pl_params_init(&d->P);
  pl_params *P = &d->P;
  int64_t C = d->C;
  /* The prompt encoder is frozen in LISA and MedSAM: role frozen (YAML may override). */
  const ps_role PR = PS_ROLE_FROZEN, MD = PS_ROLE_FULL;
  int64_t gs[2] = {2, C / 2}, row[2] = {1, C};
  if ((d->gauss = vec_param(P, PR, gs, 2, rng, 1.0, error,
                            "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix")) < 0)
    goto fail;
  for (int i = 0; i < 4; i++) {
    g_autofree char *n = g_strdup_printf("prompt_encoder.point_embeddings.%d.weight", i);
    if ((d->pt[i] = vec_param(P, PR, row, 2, rng, 1.0, error, n)) < 0) goto fail;
  }
  if ((d->not_a_point = vec_param(P, PR, row, 2, rng, 1.0, error,
                                  "prompt_encoder.not_a_point_embed.weight")) < 0 ||
      (d->no_mask =
           vec_param(P, PR, row, 2, rng, 1.0, error, "prompt_encoder.no_mask_embed.weight")) < 0)
    goto fail;
  {
    /* mask_downscaling: in the checkpoint, unused here (no mask prompt) */
    int64_t mi = c->mask_in_chans, q = mi / 4;
    int64_t s0[4] = {q, 1, 2, 2}, s3[4] = {mi, q, 2, 2}, s6[4] = {C, mi, 1, 1};
    struct {
      const char *n;
      const int64_t *s;
      int nd;
    } md[] = {{"0.weight", s0, 4}, {"0.bias", &q, 1},  {"1.weight", &q, 1},  {"1.bias", &q, 1},
              {"3.weight", s3, 4}, {"3.bias", &mi, 1}, {"4.weight", &mi, 1}, {"4.bias", &mi, 1},
              {"6.weight", s6, 4}, {"6.bias", &C, 1}};
    for (size_t i = 0; i < G_N_ELEMENTS(md); i++)
      if (pl_param_add(P, PR, md[i].s, md[i].nd, error, "prompt_encoder.mask_downscaling.%s",
                       md[i].n) < 0)
        goto fail;
  }
  int64_t mt[2] = {d->NM, C};
  if ((d->iou_token = vec_param(P, MD, row, 2, rng, 1.0, error, "mask_decoder.iou_token.weight")) <
          0 ||
      (d->mask_tokens =
           vec_param(P, MD, mt, 2, rng, 1.0, error, "mask_decoder.mask_tokens.weight")) < 0)
    goto fail;
  if (!tw_transformer_init(&d->tw, P, "mask_decoder.transformer", C, c->depth, c->num_heads,
                           c->mlp_dim, c->downsample, c->ln_eps, MD, rng, error))
    goto fail;
  int64_t u0[4] = {C, d->C4, 2, 2}, u3[4] = {d->C4, d->C8, 2, 2};
  if ((d->up0w = pl_param_add(P, MD, u0, 4, error, "mask_decoder.output_upscaling.0.weight")) < 0 ||
      (d->up0b = pl_param_add(P, MD, &d->C4, 1, error, "mask_decoder.output_upscaling.0.bias")) <
          0 ||
      (d->up1w = pl_param_add(P, MD, &d->C4, 1, error, "mask_decoder.output_upscaling.1.weight")) <
          0 ||
      (d->up1b = pl_param_add(P, MD, &d->C4, 1, error, "mask_decoder.output_upscaling.1.bias")) <
          0 ||
      (d->up3w = pl_param_add(P, MD, u3, 4, error, "mask_decoder.output_upscaling.3.weight")) < 0 ||
      (d->up3b = pl_param_add(P, MD, &d->C8, 1, error, "mask_decoder.output_upscaling.3.bias")) < 0)
    goto fail;
  pl_init_const(pl_pv(P, d->up1w), d->C4, 1.0f);
  if (rng) {
    /* ConvTranspose2d's fan_in is computed from weight dim 1 (out channels) * 4 */
    double b0 = 1.0 / sqrt(4.0 * d->C4), b3 = 1.0 / sqrt(4.0 * d->C8);
    pl_init_uniform(pl_pv(P, d->up0w), C * d->C4 * 4, b0, rng);
    pl_init_uniform(pl_pv(P, d->up0b), d->C4, b0, rng);
    pl_init_uniform(pl_pv(P, d->up3w), d->C4 * d->C8 * 4, b3, rng);
    pl_init_uniform(pl_pv(P, d->up3b), d->C8, b3, rng);
  }
  for (int64_t i = 0; i < d->NM; i++) {
    g_autofree char *n =
        g_strdup_printf("mask_decoder.output_hypernetworks_mlps.%" G_GINT64_FORMAT, i);
    if (!mlp_add(P, &d->hyper[i], n, C, C, d->C8, 3, MD, rng, error)) goto fail;
  }
  if (!mlp_add(P, &d->iou_head, "mask_decoder.iou_prediction_head", C, c->iou_head_hidden_dim,
               d->NM, c->iou_head_depth, MD, rng, error))
    goto fail;
  return d;
fail:
  sam_decoder_free(d);
  return NULL;
}

void sam_decoder_free(sam_decoder *d) {
  if (!d) return;
  pl_params_clear(&d->P);
  tw_transformer_clear(&d->tw);
  for (int i = 0; i < SAM_MAX_MASK_TOKENS; i++) mlp_free(&d->hyper[i]);
  mlp_free(&d->iou_head);
  pl_buf *b[] = {&d->pe,       &d->kpe,  &d->sparse, &d->tokens,   &d->imgT,  &d->src,
                 &d->kf_nchw,  &d->u1,   &d->u1n,    &d->u1m,      &d->u1r,   &d->u1g,
                 &d->u2,       &d->up,   &d->mt,     &d->hyper_in, &d->masks, &d->iou_all,
                 &d->low,      &d->iou,  &d->dmasks, &d->dhyper,   &d->dup,   &d->du2,
                 &d->du1g,     &d->du1n, &d->du1,    &d->dkf_nchw, &d->dKf,   &d->dQf,
                 &d->diou_all, &d->dmt,  &d->dimg,   &d->dtext};
  for (size_t i = 0; i < G_N_ELEMENTS(b); i++) pl_buf_free(b[i]);
  sam_host_buf *hb[] = {&d->pe_gauss, &d->h_gauss, &d->h_pe, &d->h_sparse};
  for (size_t i = 0; i < G_N_ELEMENTS(hb); i++) sam_host_buf_free(hb[i]);
  g_free(d);
}

/* ---- forward ------------------------------------------------------------- */

static int64_t scratch_need(const sam_decoder *d, int64_t B, int backward) {
  const ps_kernels *k = d->k;
  int64_t need = tw_scratch(&d->tw, k, B, d->Nq, d->HW, backward);
  need = MAX(need, k->convt2x2_scratch(B, d->C, d->S, d->S, d->C4));
  return MAX(need, k->convt2x2_scratch(B, d->C4, 2 * d->S, 2 * d->S, d->C8));
}

/* Index of the mask token that output j of a prompt is. */
static int64_t selected(const sam_decoder *d, int64_t j) {
  return d->cfg.multimask_output ? 1 + j : 0;
}

/* get_dense_pe() into pe: (C, HW) and its token-major copy kpe: (HW, C).
 * The encoding depends only on the (frozen) gaussian matrix, so it is remade
 * only when the matrix differs from the one it was made from. */
static gboolean dense_pe(sam_decoder *d, GError **error) {
  const ps_kernels *k = d->k;
  int64_t C = d->C, HW = d->HW;
  const float *gauss = sam_gauss_host(d, error);
  if (!gauss) return FALSE;
  size_t gbytes = (size_t)C * sizeof(float);
  if (d->pe_ready && memcmp(d->pe_gauss.p, gauss, gbytes) == 0) return TRUE;
  if (!sam_host_buf_ensure(&d->pe_gauss, C, error)) return FALSE;
  if (sam_on_host(d->dev)) {
    sam_dense_pe(d, gauss, d->pe.p);
  } else {
    /* DEVICE: host round trip, needs a kernel (random-Fourier sin/cos encoding) */
    if (!sam_host_buf_ensure(&d->h_pe, C * HW, error)) return FALSE;
    sam_dense_pe(d, gauss, d->h_pe.p);
    k->copy_to_device(d->pe.p, d->h_pe.p, (size_t)(C * HW) * sizeof(float));
  }
  k->transpose_forward(d->kpe.p, d->pe.p, 1, C, HW);
  memcpy(d->pe_gauss.p, gauss, gbytes);
  d->pe_ready = TRUE;
  return TRUE;
}

gboolean sam_decoder_forward(sam_decoder *d, ps_context *ctx, const float *image, int64_t Bi,
                             const sam_prompts *pr, const float **low_res, const float **iou,
                             GError **error) {
  const ps_kernels *k = d->k;
  const pl_params *P = &d->P;
  int64_t B = pr->B, C = d->C, HW = d->HW, S = d->S, NM = d->NM, P4 = 16 * HW;
  if (B < 1 || (Bi != B && Bi != 1)) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "decoder.sam: %" G_GINT64_FORMAT " image embeddings for %" G_GINT64_FORMAT
                " prompts (need one per prompt, or one shared)",
                Bi, B);
    return FALSE;
  }
  d->pr = *pr;
  d->B = B;
  d->Bi = Bi;
  d->Ns = sam_sparse_count(pr);
  d->Nq = 1 + NM + d->Ns;
  int64_t Nq = d->Nq, nq = B * Nq * C;
  if (!pl_buf_ensure(&d->pe, k, C * HW, error) || !pl_buf_ensure(&d->kpe, k, HW * C, error) ||
      !pl_buf_ensure(&d->sparse, k, B * d->Ns * C, error) ||
      !pl_buf_ensure(&d->tokens, k, nq, error) || !pl_buf_ensure(&d->imgT, k, Bi * HW * C, error) ||
      !pl_buf_ensure(&d->src, k, B * HW * C, error) ||
      !pl_buf_ensure(&d->kf_nchw, k, B * C * HW, error) ||
      !pl_buf_ensure(&d->u1, k, B * d->C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->u1n, k, B * d->C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->u1m, k, B * 4 * HW, error) ||
      !pl_buf_ensure(&d->u1r, k, B * 4 * HW, error) ||
      !pl_buf_ensure(&d->u1g, k, B * d->C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->u2, k, B * d->C8 * P4, error) ||
      !pl_buf_ensure(&d->up, k, B * d->C8 * P4, error) || !pl_buf_ensure(&d->mt, k, B * C, error) ||
      !pl_buf_ensure(&d->hyper_in, k, B * NM * d->C8, error) ||
      !pl_buf_ensure(&d->masks, k, B * NM * P4, error) ||
      !pl_buf_ensure(&d->iou_all, k, B * NM, error) ||
      !pl_buf_ensure(&d->low, k, B * d->m * P4, error) ||
      !pl_buf_ensure(&d->iou, k, B * d->m, error))
    return FALSE;
  int64_t sn = scratch_need(d, B, 0);
  float *scratch = pl_scratch(ctx, sn, error);
  if (!scratch) return FALSE;

  /* prompt encoder */
  if (!dense_pe(d, error) || !sam_sparse_embed(d, pr, d->sparse.p, error)) return FALSE;
  for (int64_t b = 0; b < B; b++) {
    float *t = d->tokens.p + b * Nq * C;
    k->copy_on_device(t, pl_pv(P, d->iou_token), (size_t)C * sizeof(float));
    k->copy_on_device(t + C, pl_pv(P, d->mask_tokens), (size_t)(NM * C) * sizeof(float));
  }
  if (d->Ns > 0)
    k->copy_2d(d->tokens.p + (1 + NM) * C, Nq * C, d->sparse.p, d->Ns * C, B, d->Ns * C, 0);
  k->transpose_forward(d->imgT.p, image, Bi, C, HW);
  const float *nm = pl_pv(P, d->no_mask);
  for (int64_t b = 0; b < B; b++)
    k->add_rows(d->src.p + b * HW * C, d->imgT.p + (Bi == 1 ? 0 : b) * HW * C, nm, HW, C);

  /* two-way transformer */
  const float *Qf, *Kf;
  if (!tw_transformer_forward(&d->tw, k, P, d->tokens.p, d->src.p, d->kpe.p, B, Nq, HW, scratch, sn,
                              &Qf, &Kf, error))
    return FALSE;

  /* output upscaling */
  k->transpose_forward(d->kf_nchw.p, Kf, B, HW, C);
  k->convt2x2_forward(d->u1.p, d->kf_nchw.p, pl_pv(P, d->up0w), pl_pv(P, d->up0b), B, C, S, S,
                      d->C4, scratch, sn);
  k->layernorm2d_forward(d->u1n.p, d->u1m.p, d->u1r.p, d->u1.p, pl_pv(P, d->up1w),
                         pl_pv(P, d->up1b), B, d->C4, 4 * HW, (float)d->cfg.ln2d_eps);
  k->gelu_forward(d->u1g.p, d->u1n.p, B * d->C4 * 4 * HW);
  k->convt2x2_forward(d->u2.p, d->u1g.p, pl_pv(P, d->up3w), pl_pv(P, d->up3b), B, d->C4, 2 * S,
                      2 * S, d->C8, scratch, sn);
  k->gelu_forward(d->up.p, d->u2.p, B * d->C8 * P4);

  /* hypernetworks, masks, IoU head */
  int64_t C8 = d->C8, m = d->m;
  for (int64_t i = 0; i < NM; i++) {
    k->copy_2d(d->mt.p, C, Qf + (1 + i) * C, Nq * C, B, C, 0);
    const float *h = mlp_fwd(k, P, &d->hyper[i], d->mt.p, B, error);
    if (!h) return FALSE;
    k->copy_2d(d->hyper_in.p + i * C8, NM * C8, h, C8, B, C8, 0);
  }
  k->bmm_forward(d->masks.p, d->hyper_in.p, d->up.p, B, NM, P4, C8, 0, NM * C8, C8 * P4);
  k->copy_2d(d->mt.p, C, Qf, Nq * C, B, C, 0);
  const float *io = mlp_fwd(k, P, &d->iou_head, d->mt.p, B, error);
  if (!io) return FALSE;
  k->copy_on_device(d->iou_all.p, io, (size_t)(B * NM) * sizeof(float));
  for (int64_t j = 0; j < m; j++) {
    int64_t s = selected(d, j);
    k->copy_2d(d->low.p + j * P4, m * P4, d->masks.p + s * P4, NM * P4, B, P4, 0);
    k->copy_2d(d->iou.p + j, m, d->iou_all.p + s, NM, B, 1, 0);
  }
  *low_res = d->low.p;
  *iou = d->iou.p;
  return TRUE;
}

/* ---- backward ------------------------------------------------------------ */

gboolean sam_decoder_backward(sam_decoder *d, ps_context *ctx, const float *dlow, const float *diou,
                              const float **dimage, const float **dtext, GError **error) {
  const ps_kernels *k = d->k;
  const pl_params *P = &d->P;
  int64_t B = d->B, Bi = d->Bi, C = d->C, HW = d->HW, S = d->S, NM = d->NM, P4 = 16 * HW;
  int64_t Nq = d->Nq, C4 = d->C4, C8 = d->C8;
  if (!pl_buf_ensure(&d->dmasks, k, B * NM * P4, error) ||
      !pl_buf_ensure(&d->dhyper, k, B * NM * C8, error) ||
      !pl_buf_ensure(&d->dup, k, B * C8 * P4, error) ||
      !pl_buf_ensure(&d->du2, k, B * C8 * P4, error) ||
      !pl_buf_ensure(&d->du1g, k, B * C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->du1n, k, B * C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->du1, k, B * C4 * 4 * HW, error) ||
      !pl_buf_ensure(&d->dkf_nchw, k, B * C * HW, error) ||
      !pl_buf_ensure(&d->dKf, k, B * HW * C, error) ||
      !pl_buf_ensure(&d->dQf, k, B * Nq * C, error) ||
      !pl_buf_ensure(&d->diou_all, k, B * NM, error) ||
      !pl_buf_ensure(&d->dmt, k, B * MAX(C8, NM), error) ||
      !pl_buf_ensure(&d->dimg, k, Bi * C * HW, error) || !pl_buf_ensure(&d->dtext, k, B * C, error))
    return FALSE;
  int64_t sn = scratch_need(d, B, 1);
  float *scratch = pl_scratch(ctx, sn, error);
  if (!scratch) return FALSE;

  pl_buf_zero(&d->dmasks);
  pl_buf_zero(&d->diou_all);
  for (int64_t j = 0; j < d->m; j++) {
    int64_t s = selected(d, j);
    if (dlow) k->copy_2d(d->dmasks.p + s * P4, NM * P4, dlow + j * P4, d->m * P4, B, P4, 0);
    if (diou) k->copy_2d(d->diou_all.p + s, NM, diou + j, d->m, B, 1, 0);
  }
  pl_buf_zero(&d->dhyper);
  pl_buf_zero(&d->dup);
  k->bmm_backward(d->dhyper.p, d->dup.p, d->dmasks.p, d->hyper_in.p, d->up.p, B, NM, P4, C8, 0,
                  NM * C8, C8 * P4);
  pl_buf_zero(&d->dQf);
  for (int64_t i = 0; i < NM; i++) {
    k->copy_2d(d->dmt.p, C8, d->dhyper.p + i * C8, NM * C8, B, C8, 0);
    const float *dx = mlp_bwd(k, P, &d->hyper[i], d->dmt.p, B, error);
    if (!dx) return FALSE;
    k->copy_2d(d->dQf.p + (1 + i) * C, Nq * C, dx, C, B, C, 1);
  }
  const float *dx = mlp_bwd(k, P, &d->iou_head, d->diou_all.p, B, error);
  if (!dx) return FALSE;
  k->copy_2d(d->dQf.p, Nq * C, dx, C, B, C, 1);

  /* output upscaling */
  pl_buf_zero(&d->du2);
  k->gelu_backward(d->du2.p, d->u2.p, d->dup.p, B * C8 * P4);
  pl_buf_zero(&d->du1g);
  k->convt2x2_backward(d->du1g.p, pl_pg(P, d->up3w), pl_pg(P, d->up3b), d->du2.p, d->u1g.p,
                       pl_pv(P, d->up3w), B, C4, 2 * S, 2 * S, C8, scratch, sn);
  pl_buf_zero(&d->du1n);
  k->gelu_backward(d->du1n.p, d->u1n.p, d->du1g.p, B * C4 * 4 * HW);
  pl_buf_zero(&d->du1);
  k->layernorm2d_backward(d->du1.p, pl_pg(P, d->up1w), pl_pg(P, d->up1b), d->du1n.p, d->u1.p,
                          pl_pv(P, d->up1w), d->u1m.p, d->u1r.p, B, C4, 4 * HW);
  pl_buf_zero(&d->dkf_nchw);
  k->convt2x2_backward(d->dkf_nchw.p, pl_pg(P, d->up0w), pl_pg(P, d->up0b), d->du1.p, d->kf_nchw.p,
                       pl_pv(P, d->up0w), B, C, S, S, C4, scratch, sn);
  pl_buf_zero(&d->dKf);
  k->transpose_backward(d->dKf.p, d->dkf_nchw.p, B, HW, C);

  const float *dtok, *dsrc;
  if (!tw_transformer_backward(&d->tw, k, P, d->dQf.p, d->dKf.p, scratch, sn, &dtok, &dsrc, error))
    return FALSE;

  /* tokens -> iou/mask token parameters and the sparse prompts */
  float *giou = pl_pg(P, d->iou_token), *gmask = pl_pg(P, d->mask_tokens);
  for (int64_t b = 0; b < B; b++) {
    if (giou) k->axpy(giou, 1.0f, dtok + b * Nq * C, C);
    if (gmask) k->axpy(gmask, 1.0f, dtok + (b * Nq + 1) * C, NM * C);
  }
  pl_buf_zero(&d->dtext);
  sam_sparse_backward(d, dtok + (1 + NM) * C, Nq * C, d->dtext.p);
  /* src -> image embeddings (summed over prompts sharing one) and no_mask_embed */
  pl_buf_zero(&d->dimg);
  for (int64_t b = 0; b < B; b++)
    k->transpose_backward(d->dimg.p + (Bi == 1 ? 0 : b) * C * HW, dsrc + b * HW * C, 1, C, HW);
  float *gnm = pl_pg(P, d->no_mask);
  if (gnm) k->sum_rows(gnm, dsrc, B * HW, C);
  if (dimage) *dimage = d->dimg.p;
  if (dtext) *dtext = d->pr.text ? d->dtext.p : NULL;
  return TRUE;
}
