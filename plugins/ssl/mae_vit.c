/* mae_vit.c — MAE's ViT encoder and decoder (timm 0.3.2 blocks) with forward
 * and backward over the kernel table; see mae_vit.h for the structure.
 *
 * Backward follows the forward in reverse, one op at a time, with every
 * temporary gradient in the context's scratch arena (zero-filled before the
 * kernels add into it), so a step allocates nothing once its sizes are known.
 * Nothing here reads or writes a tensor on the host: the masking's gathers
 * and scatters are embedding_forward/backward over int32 row ids built on the
 * host from the host-side masking bookkeeping, so the same code runs on any
 * device. */
#include "mae_vit.h"

#include <math.h>

#include <pathseg/error.h>

/* ---- the timm Block -------------------------------------------------------- */

gboolean mae_block_add(mae_block *b, pl_params *P, const char *prefix, int64_t dim, int64_t heads,
                       double mlp_ratio, double eps, ps_role role, ps_rng *rng, GError **error) {
  memset(b, 0, sizeof *b);
  b->dim = dim;
  b->heads = heads;
  b->hidden = (int64_t)((double)dim * mlp_ratio); /* timm: int(dim * mlp_ratio) */
  b->eps = eps;
  g_autofree char *qkv = g_strdup_printf("%s.attn.qkv", prefix);
  g_autofree char *proj = g_strdup_printf("%s.attn.proj", prefix);
  g_autofree char *fc1 = g_strdup_printf("%s.mlp.fc1", prefix);
  g_autofree char *fc2 = g_strdup_printf("%s.mlp.fc2", prefix);
  if ((b->n1w = pl_param_add(P, role, &dim, 1, error, "%s.norm1.weight", prefix)) < 0 ||
      (b->n1b = pl_param_add(P, role, &dim, 1, error, "%s.norm1.bias", prefix)) < 0 ||
      !pl_linear_add(P, &b->qkv, qkv, dim, 3 * dim, role, PL_INIT_XAVIER, rng, error) ||
      !pl_linear_add(P, &b->proj, proj, dim, dim, role, PL_INIT_XAVIER, rng, error) ||
      (b->n2w = pl_param_add(P, role, &dim, 1, error, "%s.norm2.weight", prefix)) < 0 ||
      (b->n2b = pl_param_add(P, role, &dim, 1, error, "%s.norm2.bias", prefix)) < 0 ||
      !pl_linear_add(P, &b->fc1, fc1, dim, b->hidden, role, PL_INIT_XAVIER, rng, error) ||
      !pl_linear_add(P, &b->fc2, fc2, b->hidden, dim, role, PL_INIT_XAVIER, rng, error))
    return FALSE;
  if (rng) {
    pl_init_const(pl_pv(P, b->n1w), dim, 1.0f);
    pl_init_const(pl_pv(P, b->n2w), dim, 1.0f);
  }
  return TRUE;
}

void mae_block_act_clear(mae_block_act *a) {
  pl_buf *bufs[] = {&a->ln1, &a->mean1, &a->rstd1, &a->qkv,   &a->ao, &a->lse,
                    &a->x1,  &a->ln2,   &a->mean2, &a->rstd2, &a->h,  &a->g};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
}

/* timm Attention over the packed qkv rows: q | k | v, head h at h*D. */
static ps_attention_desc attn_desc(const mae_block *b, int64_t B, int64_t T) {
  const int64_t D = b->dim / b->heads;
  ps_attention_desc d = {0};
  d.B = B;
  d.Hq = d.Hkv = b->heads;
  d.Tq = d.Tk = T;
  d.D = D;
  d.ldq = d.ldk = d.ldv = 3 * b->dim;
  d.ldo = b->dim;
  d.scale = (float)(1.0 / sqrt((double)D)); /* head_dim ** -0.5 */
  return d;
}

gboolean mae_block_forward(const mae_block *b, const ps_kernels *k, const pl_params *P,
                           mae_block_act *a, ps_context *ctx, float *y, const float *x, int64_t B,
                           int64_t T, GError **error) {
  const int64_t N = B * T, C = b->dim, Hd = b->hidden;
  if (!pl_buf_ensure(&a->ln1, k, N * C, error) || !pl_buf_ensure(&a->mean1, k, N, error) ||
      !pl_buf_ensure(&a->rstd1, k, N, error) || !pl_buf_ensure(&a->qkv, k, N * 3 * C, error) ||
      !pl_buf_ensure(&a->ao, k, N * C, error) ||
      !pl_buf_ensure(&a->lse, k, B * b->heads * T, error) ||
      !pl_buf_ensure(&a->x1, k, N * C, error) || !pl_buf_ensure(&a->ln2, k, N * C, error) ||
      !pl_buf_ensure(&a->mean2, k, N, error) || !pl_buf_ensure(&a->rstd2, k, N, error) ||
      !pl_buf_ensure(&a->h, k, N * Hd, error) || !pl_buf_ensure(&a->g, k, N * Hd, error))
    return FALSE;
  const float eps = (float)b->eps;
  /* x1 = x + proj(attn(norm1(x))) */
  k->layernorm_forward(a->ln1.p, a->mean1.p, a->rstd1.p, x, pl_pv(P, b->n1w), pl_pv(P, b->n1b), N,
                       C, eps);
  pl_linear_fwd(k, P, &b->qkv, a->qkv.p, a->ln1.p, N);
  ps_attention_desc d = attn_desc(b, B, T);
  int64_t ns = k->attention_scratch(&d, 0);
  float *s = ps_context_scratch(ctx, (size_t)MAX(ns, 1) * sizeof(float));
  k->attention_forward(a->ao.p, a->lse.p, a->qkv.p, a->qkv.p + C, a->qkv.p + 2 * C, &d, s, ns);
  pl_linear_fwd(k, P, &b->proj, a->x1.p, a->ao.p, N);
  k->add_forward(a->x1.p, a->x1.p, x, N * C);
  /* y = x1 + fc2(gelu(fc1(norm2(x1)))) */
  k->layernorm_forward(a->ln2.p, a->mean2.p, a->rstd2.p, a->x1.p, pl_pv(P, b->n2w),
                       pl_pv(P, b->n2b), N, C, eps);
  pl_linear_fwd(k, P, &b->fc1, a->h.p, a->ln2.p, N);
  k->gelu_forward(a->g.p, a->h.p, N * Hd);
  pl_linear_fwd(k, P, &b->fc2, y, a->g.p, N);
  k->add_forward(y, y, a->x1.p, N * C);
  return TRUE;
}

void mae_block_backward(const mae_block *b, const ps_kernels *k, const pl_params *P,
                        mae_block_act *a, ps_context *ctx, float *dx, const float *dy,
                        const float *x, int64_t B, int64_t T) {
  const int64_t N = B * T, C = b->dim, Hd = b->hidden;
  /* MLP branch */
  float *dg = pl_scratch_zero(ctx, N * Hd), *dh = pl_scratch_zero(ctx, N * Hd);
  pl_linear_bwd(k, P, &b->fc2, dg, dy, a->g.p, N);
  k->gelu_backward(dh, a->h.p, dg, N * Hd);
  float *dln2 = pl_scratch_zero(ctx, N * C);
  pl_linear_bwd(k, P, &b->fc1, dln2, dh, a->ln2.p, N);
  float *dx1 = pl_scratch_zero(ctx, N * C);
  k->copy_on_device(dx1, dy, (size_t)(N * C) * sizeof(float)); /* the residual */
  k->layernorm_backward(dx1, pl_pg(P, b->n2w), pl_pg(P, b->n2b), dln2, a->x1.p, pl_pv(P, b->n2w),
                        a->mean2.p, a->rstd2.p, N, C);
  /* attention branch */
  float *dao = pl_scratch_zero(ctx, N * C);
  pl_linear_bwd(k, P, &b->proj, dao, dx1, a->ao.p, N);
  float *dqkv = pl_scratch_zero(ctx, N * 3 * C);
  ps_attention_desc d = attn_desc(b, B, T);
  int64_t ns = k->attention_scratch(&d, 1);
  float *s = ps_context_scratch(ctx, (size_t)MAX(ns, 1) * sizeof(float));
  k->attention_backward(dqkv, dqkv + C, dqkv + 2 * C, NULL, NULL, NULL, dao, a->qkv.p, a->qkv.p + C,
                        a->qkv.p + 2 * C, a->ao.p, a->lse.p, &d, s, ns);
  float *dln1 = pl_scratch_zero(ctx, N * C);
  pl_linear_bwd(k, P, &b->qkv, dln1, dqkv, a->ln1.p, N);
  k->axpy(dx, 1.0f, dx1, N * C);
  k->layernorm_backward(dx, pl_pg(P, b->n1w), pl_pg(P, b->n1b), dln1, x, pl_pv(P, b->n1w),
                        a->mean1.p, a->rstd1.p, N, C);
}

/* ---- the decoder ----------------------------------------------------------- */

gboolean mae_decoder_init(mae_decoder *d, pl_params *P, int64_t in_dim, int64_t dim, int64_t depth,
                          int64_t heads, double mlp_ratio, double eps, int64_t out_dim,
                          gboolean pos_param, int64_t gh, int64_t gw, ps_role role, ps_rng *rng,
                          GError **error) {
  memset(d, 0, sizeof *d);
  d->in_dim = in_dim;
  d->dim = dim;
  d->depth = depth;
  d->heads = heads;
  d->out_dim = out_dim;
  d->eps = eps;
  d->pos = -1;
  if (!pl_linear_add(P, &d->embed, "decoder_embed", in_dim, dim, role, PL_INIT_XAVIER, rng, error))
    return FALSE;
  const int64_t tok[3] = {1, 1, dim};
  if ((d->mask_token = pl_param_add(P, role, tok, 3, error, "mask_token")) < 0) return FALSE;
  if (rng) pl_init_normal(pl_pv(P, d->mask_token), dim, 0.02, rng);
  if (pos_param) {
    const int64_t ps[3] = {1, 1 + gh * gw, dim};
    if ((d->pos = pl_param_add(P, PS_ROLE_FROZEN, ps, 3, error, "decoder_pos_embed")) < 0)
      return FALSE;
    mae_sincos_2d(pl_pv(P, d->pos), dim, gh, gw, TRUE);
  }
  d->blocks = g_new0(mae_block, depth);
  d->acts = g_new0(mae_block_act, depth);
  for (int64_t i = 0; i < depth; i++) {
    g_autofree char *prefix = g_strdup_printf("decoder_blocks.%" G_GINT64_FORMAT, i);
    if (!mae_block_add(&d->blocks[i], P, prefix, dim, heads, mlp_ratio, eps, role, rng, error))
      return FALSE;
  }
  if ((d->norm_w = pl_param_add(P, role, &dim, 1, error, "decoder_norm.weight")) < 0 ||
      (d->norm_b = pl_param_add(P, role, &dim, 1, error, "decoder_norm.bias")) < 0 ||
      !pl_linear_add(P, &d->pred, "decoder_pred", dim, out_dim, role, PL_INIT_XAVIER, rng, error))
    return FALSE;
  if (rng) pl_init_const(pl_pv(P, d->norm_w), dim, 1.0f);
  return TRUE;
}

void mae_decoder_clear(mae_decoder *d) {
  for (int64_t i = 0; d->acts && i < d->depth; i++) mae_block_act_clear(&d->acts[i]);
  g_free(d->acts);
  g_free(d->blocks);
  g_free(d->ids_restore);
  mae_ids_clear(&d->rows);
  pl_buf *bufs[] = {&d->table, &d->latent, &d->emb,   &d->xs,
                    &d->lnf,   &d->meanf,  &d->rstdf, &d->predfull};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
  memset(d, 0, sizeof *d);
}

/* The (1 + L, dim) position table in k's memory: the parameter, or the
 * decoder's own (computed on the host when the grid changes, then copied). */
static const float *decoder_pos(mae_decoder *d, const ps_kernels *k, const pl_params *P, int64_t gh,
                                int64_t gw, GError **error) {
  const int64_t L = gh * gw;
  if (d->pos >= 0) {
    const ps_tensor *t = pl_param(P, d->pos)->value;
    if (t->shape[1] != 1 + L) {
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                  "MAE decoder: decoder_pos_embed has %" G_GINT64_FORMAT
                  " rows; this input needs %" G_GINT64_FORMAT " (1 + %" G_GINT64_FORMAT
                  "x%" G_GINT64_FORMAT ")",
                  t->shape[1], 1 + L, gh, gw);
      return NULL;
    }
    return ps_f32(t);
  }
  if (d->table_gh != gh || d->table_gw != gw || !d->table.p || d->table.k != k) {
    if (!pl_buf_ensure(&d->table, k, (1 + L) * d->dim, error)) return NULL;
    g_autofree float *host = g_new(float, (1 + L) * d->dim);
    mae_sincos_2d(host, d->dim, gh, gw, TRUE);
    k->copy_to_device(d->table.p, host, (size_t)((1 + L) * d->dim) * sizeof(float));
    d->table_gh = gh;
    d->table_gw = gw;
  }
  return d->table.p;
}

gboolean mae_decoder_forward(mae_decoder *d, const ps_kernels *k, const pl_params *P,
                             ps_context *ctx, const float *latent, const int64_t *ids_restore,
                             int64_t B, int64_t gh, int64_t gw, int64_t Lk, float *pred,
                             GError **error) {
  const int64_t L = gh * gw, T = 1 + L, E = d->dim, N0 = B * (1 + Lk);
  const float *pos = decoder_pos(d, k, P, gh, gw, error);
  if (!pos) return FALSE;
  if (!pl_buf_ensure(&d->latent, k, N0 * d->in_dim, error) ||
      !pl_buf_ensure(&d->emb, k, (N0 + 1) * E, error) ||
      !pl_buf_ensure(&d->xs, k, (d->depth + 1) * B * T * E, error) ||
      !pl_buf_ensure(&d->lnf, k, B * T * E, error) || !pl_buf_ensure(&d->meanf, k, B * T, error) ||
      !pl_buf_ensure(&d->rstdf, k, B * T, error) ||
      !pl_buf_ensure(&d->predfull, k, B * T * d->out_dim, error))
    return FALSE;
  if (d->ids_cap < B * L) {
    d->ids_restore = g_renew(int64_t, d->ids_restore, B * L);
    d->ids_cap = B * L;
  }
  memcpy(d->ids_restore, ids_restore, (size_t)(B * L) * sizeof(int64_t));
  k->copy_on_device(d->latent.p, latent, (size_t)(N0 * d->in_dim) * sizeof(float));
  d->B = B;
  d->L = L;
  d->Lk = Lk;

  /* x_ = gather(cat(x[:, 1:], mask_tokens), ids_restore); x = cat(x[:, :1], x_) + pos:
   * emb holds the embedded rows and, after them (row N0), the mask token; a
   * row gather puts each token's source in place, then pos is added to every
   * image's (1 + L, E) block. */
  pl_linear_fwd(k, P, &d->embed, d->emb.p, d->latent.p, N0);
  k->copy_on_device(d->emb.p + N0 * E, pl_pv(P, d->mask_token), (size_t)E * sizeof(float));
  int32_t *rows = mae_ids_host(&d->rows, B * T);
  for (int64_t b = 0; b < B; b++) {
    rows[b * T] = (int32_t)(b * (1 + Lk));
    for (int64_t l = 0; l < L; l++) {
      const int64_t j = d->ids_restore[b * L + l];
      rows[b * T + 1 + l] = (int32_t)(j < Lk ? b * (1 + Lk) + 1 + j : N0);
    }
  }
  const int32_t *drows = mae_ids_upload(&d->rows, k, B * T, error);
  if (!drows) return FALSE;
  k->embedding_forward(d->xs.p, drows, d->emb.p, B * T, N0 + 1, E);
  k->add_rows(d->xs.p, d->xs.p, pos, B, T * E);
  for (int64_t i = 0; i < d->depth; i++)
    if (!mae_block_forward(&d->blocks[i], k, P, &d->acts[i], ctx, d->xs.p + (i + 1) * B * T * E,
                           d->xs.p + i * B * T * E, B, T, error))
      return FALSE;
  k->layernorm_forward(d->lnf.p, d->meanf.p, d->rstdf.p, d->xs.p + d->depth * B * T * E,
                       pl_pv(P, d->norm_w), pl_pv(P, d->norm_b), B * T, E, (float)d->eps);
  pl_linear_fwd(k, P, &d->pred, d->predfull.p, d->lnf.p, B * T);
  const int64_t O = d->out_dim;
  k->copy_2d(pred, L * O, d->predfull.p + O, T * O, B, L * O, 0); /* drop the cls row */
  return TRUE;
}

gboolean mae_decoder_backward(mae_decoder *d, const ps_kernels *k, const pl_params *P,
                              ps_context *ctx, const float *dpred, float *dlatent, GError **error) {
  const int64_t B = d->B, L = d->L, Lk = d->Lk, T = 1 + L, E = d->dim, O = d->out_dim;
  const int64_t N = B * T, N0 = B * (1 + Lk);
  float *dpf = pl_scratch_zero(ctx, N * O);
  k->copy_2d(dpf + O, T * O, dpred, L * O, B, L * O, 0);
  float *dlnf = pl_scratch_zero(ctx, N * E);
  pl_linear_bwd(k, P, &d->pred, dlnf, dpf, d->lnf.p, N);
  float *dx = pl_scratch_zero(ctx, N * E);
  k->layernorm_backward(dx, pl_pg(P, d->norm_w), pl_pg(P, d->norm_b), dlnf,
                        d->xs.p + d->depth * N * E, pl_pv(P, d->norm_w), d->meanf.p, d->rstdf.p, N,
                        E);
  for (int64_t i = d->depth - 1; i >= 0; i--) {
    float *dprev = pl_scratch_zero(ctx, N * E);
    mae_block_backward(&d->blocks[i], k, P, &d->acts[i], ctx, dprev, dx, d->xs.p + i * N * E, B, T);
    dx = dprev;
  }
  /* Undo the unshuffle: the gather's scatter-add sends kept rows back to their
   * embedding and the others to the mask token's row N0. */
  float *demb = pl_scratch_zero(ctx, (N0 + 1) * E);
  k->embedding_backward(demb, (const int32_t *)d->rows.dev.p, dx, N, N0 + 1, E);
  float *dmt = pl_pg(P, d->mask_token);
  if (dmt) k->axpy(dmt, 1.0f, demb + N0 * E, E);
  float *dpos = d->pos >= 0 ? pl_pg(P, d->pos) : NULL;
  if (dpos) k->sum_rows(dpos, dx, B, T * E);
  pl_linear_bwd(k, P, &d->embed, dlatent, demb, d->latent.p, N0);
  (void)error;
  return TRUE;
}

/* ---- the whole MaskedAutoencoderViT ---------------------------------------- */

void mae_cfg_base(mae_cfg *c) {
  *c = (mae_cfg){.img_size = 224,
                 .patch_size = 16,
                 .in_chans = 3,
                 .embed_dim = 768,
                 .depth = 12,
                 .num_heads = 12,
                 .dec_dim = 512,
                 .dec_depth = 8,
                 .dec_heads = 16,
                 .mlp_ratio = 4.0,
                 .eps = 1e-6,
                 .mask_ratio = 0.75,
                 .norm_pix = TRUE};
}

gboolean mae_cfg_check(const mae_cfg *c, GError **error) {
  const char *bad = NULL;
  if (c->patch_size < 1 || c->img_size < c->patch_size || c->img_size % c->patch_size)
    bad = "img_size must be a positive multiple of patch_size";
  else if (c->in_chans < 1)
    bad = "in_chans must be positive";
  else if (c->num_heads < 1 || c->embed_dim % c->num_heads)
    bad = "embed_dim must be a multiple of num_heads";
  else if (c->embed_dim % 4)
    bad = "embed_dim must be a multiple of 4 (2-D sin-cos position table)";
  else if (c->dec_heads < 1 || c->dec_dim % c->dec_heads)
    bad = "decoder_embed_dim must be a multiple of decoder_num_heads";
  else if (c->dec_dim % 4)
    bad = "decoder_embed_dim must be a multiple of 4 (2-D sin-cos position table)";
  else if (c->depth < 0 || c->dec_depth < 0)
    bad = "depth and decoder_depth must not be negative";
  else if (!(c->mask_ratio >= 0.0 && c->mask_ratio < 1.0))
    bad = "mask_ratio must be in [0, 1)";
  else if (!(c->mlp_ratio > 0.0) || !(c->eps > 0.0))
    bad = "mlp_ratio and layer_norm_eps must be positive";
  if (bad) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "MAE config: %s", bad);
    return FALSE;
  }
  return TRUE;
}

gboolean mae_model_init(mae_model *m, const mae_cfg *c, ps_rng *rng, GError **error) {
  memset(m, 0, sizeof *m);
  m->c = *c;
  pl_params_init(&m->P);
  if (!mae_cfg_check(c, error)) return FALSE;
  pl_params *P = &m->P;
  const int64_t D = c->embed_dim, p = c->patch_size, C = c->in_chans, g = c->img_size / p;
  const int64_t tok[3] = {1, 1, D}, pos[3] = {1, 1 + g * g, D}, pw[4] = {D, C, p, p};
  if ((m->cls = pl_param_add(P, PS_ROLE_FULL, tok, 3, error, "cls_token")) < 0 ||
      (m->pos = pl_param_add(P, PS_ROLE_FROZEN, pos, 3, error, "pos_embed")) < 0 ||
      (m->patch_w = pl_param_add(P, PS_ROLE_FULL, pw, 4, error, "patch_embed.proj.weight")) < 0 ||
      (m->patch_b = pl_param_add(P, PS_ROLE_FULL, &D, 1, error, "patch_embed.proj.bias")) < 0)
    return FALSE;
  mae_sincos_2d(pl_pv(P, m->pos), D, g, g, TRUE);
  if (rng) {
    /* xavier_uniform on the (D, C*p*p) view; the bias keeps nn.Conv2d's default. */
    pl_init_uniform_f64(pl_pv(P, m->patch_w), D * C * p * p, sqrt(6.0 / (double)(D + C * p * p)),
                        rng);
    pl_init_uniform_f64(pl_pv(P, m->patch_b), D, 1.0 / sqrt((double)(C * p * p)), rng);
    pl_init_normal(pl_pv(P, m->cls), D, 0.02, rng);
  }
  m->blocks = g_new0(mae_block, MAX(c->depth, 1));
  m->acts = g_new0(mae_block_act, MAX(c->depth, 1));
  for (int64_t i = 0; i < c->depth; i++) {
    g_autofree char *prefix = g_strdup_printf("blocks.%" G_GINT64_FORMAT, i);
    if (!mae_block_add(&m->blocks[i], P, prefix, D, c->num_heads, c->mlp_ratio, c->eps,
                       PS_ROLE_FULL, rng, error))
      return FALSE;
  }
  if ((m->norm_w = pl_param_add(P, PS_ROLE_FULL, &D, 1, error, "norm.weight")) < 0 ||
      (m->norm_b = pl_param_add(P, PS_ROLE_FULL, &D, 1, error, "norm.bias")) < 0)
    return FALSE;
  if (rng) pl_init_const(pl_pv(P, m->norm_w), D, 1.0f);
  return mae_decoder_init(&m->dec, P, D, c->dec_dim, c->dec_depth, c->dec_heads, c->mlp_ratio,
                          c->eps, p * p * C, TRUE, g, g, PS_ROLE_FULL, rng, error);
}

void mae_model_clear(mae_model *m) {
  for (int64_t i = 0; m->acts && i < m->c.depth; i++) mae_block_act_clear(&m->acts[i]);
  g_free(m->acts);
  g_free(m->blocks);
  mae_decoder_clear(&m->dec);
  g_free(m->ids_shuffle);
  g_free(m->ids_restore);
  g_free(m->mask_h);
  mae_ids_clear(&m->rows);
  mae_ids_clear(&m->loss_rows);
  pl_buf *bufs[] = {&m->imgs,  &m->conv, &m->xs,     &m->latent, &m->meanf,
                    &m->rstdf, &m->mask, &m->target, &m->pred,   &m->dpred1};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
  pl_params_clear(&m->P);
  memset(m, 0, sizeof *m);
}

static ps_conv2d_desc patch_desc(const mae_model *m, int64_t B) {
  const mae_cfg *c = &m->c;
  return (ps_conv2d_desc){.B = B,
                          .C = c->in_chans,
                          .H = c->img_size,
                          .W = c->img_size,
                          .OC = c->embed_dim,
                          .KH = c->patch_size,
                          .KW = c->patch_size,
                          .stride = c->patch_size,
                          .pad = 0};
}

gboolean mae_model_forward(mae_model *m, const ps_kernels *k, ps_context *ctx, const float *imgs,
                           const float *noise, int64_t B, GError **error) {
  const mae_cfg *c = &m->c;
  pl_params *P = &m->P;
  const int64_t p = c->patch_size, C = c->in_chans, g = c->img_size / p, L = g * g;
  const int64_t D = c->embed_dim, PD = p * p * C, Lk = mae_len_keep(L, c->mask_ratio);
  const int64_t T = 1 + Lk, HW = c->img_size * c->img_size;
  if (B < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "MAE: empty batch");
    return FALSE;
  }
  if (!pl_buf_ensure(&m->imgs, k, B * C * HW, error) ||
      !pl_buf_ensure(&m->conv, k, B * D * L, error) ||
      !pl_buf_ensure(&m->xs, k, (c->depth + 1) * B * T * D, error) ||
      !pl_buf_ensure(&m->latent, k, B * T * D, error) ||
      !pl_buf_ensure(&m->meanf, k, B * T, error) || !pl_buf_ensure(&m->rstdf, k, B * T, error) ||
      !pl_buf_ensure(&m->mask, k, B * L, error) ||
      !pl_buf_ensure(&m->target, k, B * L * PD, error) ||
      !pl_buf_ensure(&m->pred, k, B * L * PD, error) ||
      !pl_buf_ensure(&m->dpred1, k, B * L * PD, error))
    return FALSE;
  if (B * L + 1 > G_MAXINT32) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "MAE: %" G_GINT64_FORMAT " patches exceed the int32 row ids", B * L);
    return FALSE;
  }
  if (m->ids_cap < B * L) {
    m->ids_shuffle = g_renew(int64_t, m->ids_shuffle, B * L);
    m->ids_restore = g_renew(int64_t, m->ids_restore, B * L);
    m->mask_h = g_renew(float, m->mask_h, B *L);
    m->ids_cap = B * L;
  }
  m->B = B;
  m->gh = g;
  m->L = L;
  m->Lk = Lk;
  m->P_dim = PD;
  k->copy_on_device(m->imgs.p, imgs, (size_t)(B * C * HW) * sizeof(float));

  /* patch_embed (conv p x p, stride p) -> (B, L, D), + pos_embed[:, 1:] */
  ps_conv2d_desc cd = patch_desc(m, B);
  int64_t ns = k->conv2d_scratch(&cd);
  float *s = ps_context_scratch(ctx, (size_t)MAX(ns, 1) * sizeof(float));
  k->conv2d_forward(m->conv.p, m->imgs.p, pl_pv(P, m->patch_w), pl_pv(P, m->patch_b), &cd, s, ns);
  /* tok: the (B*L, D) patch tokens, then one row of cls_token + pos_embed[:, :1] */
  float *tok = pl_scratch_zero(ctx, B * L * D + D);
  k->transpose_forward(tok, m->conv.p, B, D, L);
  const float *pos = pl_pv(P, m->pos);
  k->add_rows(tok, tok, pos + D, B, L * D);
  k->add_forward(tok + B * L * D, pl_pv(P, m->cls), pos, D);

  /* random_masking on the host (noise, ids and mask are bookkeeping), then a
   * row gather puts the cls row and each image's kept tokens in place. */
  mae_masking_from_noise(m->ids_shuffle, m->ids_restore, m->mask_h, noise, B, L, Lk);
  k->copy_to_device(m->mask.p, m->mask_h, (size_t)(B * L) * sizeof(float));
  int32_t *rows = mae_ids_host(&m->rows, B * T);
  for (int64_t b = 0; b < B; b++) {
    rows[b * T] = (int32_t)(B * L);
    for (int64_t r = 0; r < Lk; r++)
      rows[b * T + 1 + r] = (int32_t)(b * L + m->ids_shuffle[b * L + r]);
  }
  const int32_t *drows = mae_ids_upload(&m->rows, k, B * T, error);
  if (!drows) return FALSE;
  k->embedding_forward(m->xs.p, drows, tok, B * T, B * L + 1, D);
  for (int64_t i = 0; i < c->depth; i++)
    if (!mae_block_forward(&m->blocks[i], k, P, &m->acts[i], ctx, m->xs.p + (i + 1) * B * T * D,
                           m->xs.p + i * B * T * D, B, T, error))
      return FALSE;
  k->layernorm_forward(m->latent.p, m->meanf.p, m->rstdf.p, m->xs.p + c->depth * B * T * D,
                       pl_pv(P, m->norm_w), pl_pv(P, m->norm_b), B * T, D, (float)c->eps);

  if (!mae_decoder_forward(&m->dec, k, P, ctx, m->latent.p, m->ids_restore, B, g, g, Lk, m->pred.p,
                           error))
    return FALSE;
  if (!mae_patchify_dev(k, ctx, m->target.p, m->imgs.p, B, C, g, g, p, error)) return FALSE;
  pl_buf_zero(&m->dpred1);
  return mae_loss_dev(k, ctx, &m->loss_rows, m->dpred1.p, m->pred.p, m->target.p, m->mask_h, B, L,
                      PD, c->norm_pix, 1e-6, 1.0, &m->loss, error);
}

gboolean mae_model_backward(mae_model *m, const ps_kernels *k, ps_context *ctx, double dloss,
                            const float *dpred_extra, float *dimgs, GError **error) {
  const mae_cfg *c = &m->c;
  pl_params *P = &m->P;
  const int64_t B = m->B, L = m->L, Lk = m->Lk, T = 1 + Lk, D = c->embed_dim, PD = m->P_dim;
  const int64_t N = B * T;
  if (B < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "MAE: backward before forward");
    return FALSE;
  }
  float *dpred = pl_scratch_zero(ctx, B * L * PD);
  k->axpy(dpred, (float)dloss, m->dpred1.p, B * L * PD);
  if (dpred_extra) k->axpy(dpred, 1.0f, dpred_extra, B * L * PD);
  float *dlatent = pl_scratch_zero(ctx, N * D);
  if (!mae_decoder_backward(&m->dec, k, P, ctx, dpred, dlatent, error)) return FALSE;
  float *dx = pl_scratch_zero(ctx, N * D);
  k->layernorm_backward(dx, pl_pg(P, m->norm_w), pl_pg(P, m->norm_b), dlatent,
                        m->xs.p + c->depth * N * D, pl_pv(P, m->norm_w), m->meanf.p, m->rstdf.p, N,
                        D);
  for (int64_t i = c->depth - 1; i >= 0; i--) {
    float *dprev = pl_scratch_zero(ctx, N * D);
    mae_block_backward(&m->blocks[i], k, P, &m->acts[i], ctx, dprev, dx, m->xs.p + i * N * D, B, T);
    dx = dprev;
  }
  /* The gather's scatter-add: kept rows back to their patch tokens, every
   * image's cls row into the extra row B*L (cls_token and pos_embed[:, :1]);
   * pos_embed (when someone trains it) also gets the column sums of the tokens. */
  float *dcls = pl_pg(P, m->cls), *dpos = pl_pg(P, m->pos);
  float *dtok = pl_scratch_zero(ctx, B * L * D + D);
  k->embedding_backward(dtok, (const int32_t *)m->rows.dev.p, dx, N, B * L + 1, D);
  if (dcls) k->axpy(dcls, 1.0f, dtok + B * L * D, D);
  if (dpos) {
    k->axpy(dpos, 1.0f, dtok + B * L * D, D);
    k->sum_rows(dpos + D, dtok, B, L * D);
  }
  float *dw = pl_pg(P, m->patch_w), *db = pl_pg(P, m->patch_b);
  if (!dw && !db && !dimgs) return TRUE;
  float *dconv = pl_scratch_zero(ctx, B * D * L);
  k->transpose_backward(dconv, dtok, B, D, L);
  ps_conv2d_desc cd = patch_desc(m, B);
  int64_t ns = k->conv2d_scratch(&cd);
  float *s = ps_context_scratch(ctx, (size_t)MAX(ns, 1) * sizeof(float));
  k->conv2d_backward(dimgs, dw, db, dconv, m->imgs.p, pl_pv(P, m->patch_w), &cd, s, ns);
  return TRUE;
}
