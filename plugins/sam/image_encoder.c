/* image_encoder.c — SAM's ImageEncoderViT (segment-anything
 * modeling/image_encoder.py) with AdaptFormer adapters, forward and backward.
 *
 * Token layout is (B, H*W, C), i.e. SAM's NHWC. Per block:
 *   x1 = x + proj(attn(window?(LN1(x))))      windows zero-padded after LN1,
 *                                             padded tokens NOT masked
 *   x' = x1 + lin2(GELU(lin1(LN2(x1)))) + s * up(dropout(ReLU(down(x1))))
 * The adapter (AdaptFormer "parallel", adapter_layernorm "none") reads the
 * residual stream x1, not LN2(x1). Attention logits are
 * (q * hd^-0.5) k^T + rel_h + rel_w with rel terms from the UNSCALED q.
 * Neck: conv1x1 (no bias) -> LayerNorm2d -> conv3x3 pad 1 (no bias) -> LN2d.
 *
 * When training, every block keeps its activations (one buffer set per
 * block); in inference all blocks share one set. Buffers are reallocated only
 * when the batch size changes.
 *
 * Devices: parameters (after sam_encoder_to_device), activations, gradients
 * and scratch are memory of the encoder's device, and all arithmetic goes
 * through its kernel table. Only MedSAM's min-max and the dropout-mask draws
 * run on the host (sam_host.h staging; "DEVICE:" comments). */
#include "image_encoder_internal.h"

#include <math.h>

#include <pathseg/error.h>

void sam_enc_cfg_preset(sam_enc_cfg *c, const char *preset) {
  memset(c, 0, sizeof *c);
  c->eps = 1e-6;
  c->mlp_ratio = 4.0;
  c->patch_size = 16;
  c->adapter_dim = 64;
  c->adapter_scale = 0.1;
  c->adapter_dropout = 0.1;
  c->medsam_input = TRUE;
  if (preset && strcmp(preset, "base") == 0) {
    c->embed_dim = 768;
    c->depth = 12;
    c->num_heads = 12;
    c->img_size = 1024;
    c->window_size = 14;
    c->out_chans = 256;
    c->global_attn[2] = c->global_attn[5] = c->global_attn[8] = c->global_attn[11] = TRUE;
  } else { /* tiny: 16x16 tokens, windows of 7 (so the zero padding is exercised) */
    c->embed_dim = 64;
    c->depth = 4;
    c->num_heads = 2;
    c->img_size = 256;
    c->window_size = 7;
    c->out_chans = 32;
    c->adapter_dim = 16;
    c->global_attn[1] = c->global_attn[3] = TRUE;
  }
}

pl_params *sam_encoder_params(sam_encoder *e) {
  return &e->P;
}
const sam_enc_cfg *sam_encoder_cfg(const sam_encoder *e) {
  return &e->cfg;
}

static void act_free(blk_act *a) {
  pl_buf *bufs[] = {&a->ln1,   &a->mean1, &a->rstd1, &a->xw,  &a->qkv, &a->relh,
                    &a->relw,  &a->ao,    &a->lse,   &a->x1,  &a->ln2, &a->mean2,
                    &a->rstd2, &a->h,     &a->g,     &a->adh, &a->adr, &a->admask};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
}

void sam_encoder_free(sam_encoder *e) {
  if (!e) return;
  pl_params_clear(&e->P);
  for (int l = 0; l < SAM_MAX_DEPTH + 2; l++) act_free(&e->act[l]);
  for (int l = 0; l <= SAM_MAX_DEPTH; l++) pl_buf_free(&e->xs[l]);
  pl_buf *bufs[] = {&e->img_norm, &e->pe_out, &e->tmpw, &e->tmp,   &e->nchw,  &e->c1,  &e->c1n,
                    &e->m1,       &e->r1,     &e->c2,   &e->m2,    &e->r2,    &e->d0,  &e->d1,
                    &e->dln,      &e->dxw,    &e->dqkv, &e->drelh, &e->drelw, &e->dao, &e->dprojw,
                    &e->dh,       &e->dg,     &e->dadr, &e->dadh,  &e->dnchw, &e->dc1, &e->dc1n,
                    &e->dc2,      &e->dpe,    &e->dimg};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
  g_free(e->mm_lo);
  g_free(e->mm_r);
  g_free(e->mm_amin);
  g_free(e->mm_amax);
  g_free(e->mm_clipped);
  ps_tensor_free(e->img_cache);
  ps_tensor_free(e->dout_cache);
  sam_host_buf *hb[] = {&e->h_raw, &e->h_norm, &e->h_mask, &e->h_dimg, &e->h_dout};
  for (size_t i = 0; i < G_N_ELEMENTS(hb); i++) sam_host_buf_free(hb[i]);
  ps_tensor_free(e->out);
  ps_tensor_free(e->dimage);
  g_free(e);
}

static int add_vec(pl_params *P, ps_role role, int64_t n, float fill, GError **error,
                   const char *name) {
  int i = pl_param_add(P, role, &n, 1, error, "%s", name);
  if (i >= 0) pl_init_const(pl_pv(P, i), n, fill);
  return i;
}

ps_device sam_encoder_device(const sam_encoder *e) {
  return e->dev;
}

ps_tensor **sam_encoder_dout_cache(sam_encoder *e) {
  return &e->dout_cache;
}

gboolean sam_encoder_to_device(sam_encoder *e, GError **error) {
  if (!pl_params_move_to(&e->P, e->dev, error)) {
    g_prefix_error(error, "encoder.medsam: ");
    return FALSE;
  }
  return TRUE;
}

sam_encoder *sam_encoder_new(const sam_enc_cfg *cfg, ps_device device, int precision,
                             ps_rng *rng, GError **error) {
  const sam_enc_cfg *c = cfg;
  const ps_kernels *k = ps_kernels_get_precision(device, (ps_precision)precision, error);
  if (!k) return NULL;
  if (c->depth < 1 || c->depth > SAM_MAX_DEPTH || c->embed_dim < 1 || c->num_heads < 1 ||
      c->embed_dim % c->num_heads != 0 || c->patch_size < 1 || c->img_size % c->patch_size != 0 ||
      c->window_size < 0 || c->out_chans < 1 || (c->adapter && c->adapter_dim < 1)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "encoder.medsam: inconsistent configuration (depth %" G_GINT64_FORMAT
                " must be 1..%d, embed_dim %" G_GINT64_FORMAT
                " divisible by num_heads %" G_GINT64_FORMAT ", img_size %" G_GINT64_FORMAT
                " divisible by patch_size %" G_GINT64_FORMAT ")",
                c->depth, SAM_MAX_DEPTH, c->embed_dim, c->num_heads, c->img_size, c->patch_size);
    return NULL;
  }
  sam_encoder *e = g_new0(sam_encoder, 1);
  e->cfg = *cfg;
  e->dev = device;
  e->k = k;
  e->E = c->embed_dim;
  e->G = c->img_size / c->patch_size;
  e->T = e->G * e->G;
  e->nH = c->num_heads;
  e->hd = e->E / e->nH;
  e->M = (int64_t)(e->E * c->mlp_ratio);
  e->A = c->adapter_dim;
  e->OC = c->out_chans;
  pl_params_init(&e->P);
  pl_params *P = &e->P;
  const ps_role BK = PS_ROLE_BACKBONE;
  int64_t E = e->E, S;

  int64_t pw[4] = {E, 3, c->patch_size, c->patch_size};
  e->pe_w = pl_param_add(P, BK, pw, 4, error, "image_encoder.patch_embed.proj.weight");
  e->pe_b =
      e->pe_w < 0 ? -1 : pl_param_add(P, BK, &E, 1, error, "image_encoder.patch_embed.proj.bias");
  if (e->pe_b < 0) goto fail;
  if (rng) {
    double bound = 1.0 / sqrt(3.0 * c->patch_size * c->patch_size);
    pl_init_uniform(pl_pv(P, e->pe_w), E * 3 * c->patch_size * c->patch_size, bound, rng);
    pl_init_uniform(pl_pv(P, e->pe_b), E, bound, rng);
  }
  int64_t ps[4] = {1, e->G, e->G, E};
  e->pos = pl_param_add(P, BK, ps, 4, error, "image_encoder.pos_embed"); /* zeros, as SAM */
  if (e->pos < 0) goto fail;

  for (int64_t l = 0; l < c->depth; l++) {
    enc_block *b = &e->blk[l];
    b->global = c->window_size == 0 || c->global_attn[l];
    g_autofree char *pre = g_strdup_printf("image_encoder.blocks.%" G_GINT64_FORMAT, l);
    g_autofree char *n1w = g_strconcat(pre, ".norm1.weight", NULL);
    g_autofree char *n1b = g_strconcat(pre, ".norm1.bias", NULL);
    g_autofree char *n2w = g_strconcat(pre, ".norm2.weight", NULL);
    g_autofree char *n2b = g_strconcat(pre, ".norm2.bias", NULL);
    g_autofree char *qkv = g_strconcat(pre, ".attn.qkv", NULL);
    g_autofree char *proj = g_strconcat(pre, ".attn.proj", NULL);
    g_autofree char *lin1 = g_strconcat(pre, ".mlp.lin1", NULL);
    g_autofree char *lin2 = g_strconcat(pre, ".mlp.lin2", NULL);
    if ((b->n1w = add_vec(P, BK, E, 1.0f, error, n1w)) < 0 ||
        (b->n1b = add_vec(P, BK, E, 0.0f, error, n1b)) < 0 ||
        !pl_linear_add(P, &b->qkv, qkv, E, 3 * E, BK, PL_INIT_TORCH, rng, error))
      goto fail;
    S = b->global ? e->G : c->window_size;
    int64_t rs[2] = {2 * S - 1, e->hd};
    b->rph = pl_param_add(P, BK, rs, 2, error, "%s.attn.rel_pos_h", pre);
    b->rpw = b->rph < 0 ? -1 : pl_param_add(P, BK, rs, 2, error, "%s.attn.rel_pos_w", pre);
    if (b->rpw < 0 || !pl_linear_add(P, &b->proj, proj, E, E, BK, PL_INIT_TORCH, rng, error) ||
        (b->n2w = add_vec(P, BK, E, 1.0f, error, n2w)) < 0 ||
        (b->n2b = add_vec(P, BK, E, 0.0f, error, n2b)) < 0 ||
        !pl_linear_add(P, &b->lin1, lin1, E, e->M, BK, PL_INIT_TORCH, rng, error) ||
        !pl_linear_add(P, &b->lin2, lin2, e->M, E, BK, PL_INIT_TORCH, rng, error))
      goto fail;
    if (c->adapter) {
      /* AdaptFormer init "lora": kaiming_uniform(a=sqrt 5) down (= U(+-1/sqrt(in))),
       * zero up-projection and biases, so a fresh adapter is the identity. */
      g_autofree char *down = g_strconcat(pre, ".adaptmlp.down_proj", NULL);
      g_autofree char *up = g_strconcat(pre, ".adaptmlp.up_proj", NULL);
      if (!pl_linear_add(P, &b->down, down, E, e->A, PS_ROLE_ADAPTER, PL_INIT_TORCH, rng, error) ||
          !pl_linear_add(P, &b->up, up, e->A, E, PS_ROLE_ADAPTER, PL_INIT_TORCH, NULL, error))
        goto fail;
      pl_init_const(pl_pv(P, b->down.b), e->A, 0.0f);
    }
  }
  int64_t n0[4] = {e->OC, E, 1, 1}, n2[4] = {e->OC, e->OC, 3, 3};
  e->neck0 = pl_param_add(P, BK, n0, 4, error, "image_encoder.neck.0.weight");
  if (e->neck0 < 0 ||
      (e->nk1w = add_vec(P, BK, e->OC, 1.0f, error, "image_encoder.neck.1.weight")) < 0 ||
      (e->nk1b = add_vec(P, BK, e->OC, 0.0f, error, "image_encoder.neck.1.bias")) < 0)
    goto fail;
  e->neck2 = pl_param_add(P, BK, n2, 4, error, "image_encoder.neck.2.weight");
  if (e->neck2 < 0 ||
      (e->nk3w = add_vec(P, BK, e->OC, 1.0f, error, "image_encoder.neck.3.weight")) < 0 ||
      (e->nk3b = add_vec(P, BK, e->OC, 0.0f, error, "image_encoder.neck.3.bias")) < 0)
    goto fail;
  if (rng) {
    pl_init_uniform(pl_pv(P, e->neck0), e->OC * E, 1.0 / sqrt((double)E), rng);
    pl_init_uniform(pl_pv(P, e->neck2), e->OC * e->OC * 9, 1.0 / sqrt(9.0 * e->OC), rng);
  }
  return e;
fail:
  sam_encoder_free(e);
  return NULL;
}
