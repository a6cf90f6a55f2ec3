/* mae_vit.h — the ViT parts of MAE's MaskedAutoencoderViT (models_mae.py)
 * with forward and backward over raw buffers:
 *   - the timm 0.3.2 Block that MAE uses: x += attn(norm1(x)); x += mlp(norm2(x))
 *     (LayerNorm eps from the config, qkv with bias, exact-erf GELU MLP);
 *   - mae_decoder: decoder_embed, mask tokens + unshuffle, decoder_pos_embed,
 *     decoder blocks, decoder_norm, decoder_pred (drops the cls row);
 *   - mae_model: patch embedding, pos_embed, masking from noise, cls token,
 *     encoder blocks and norm, the decoder and the normalised-pixel loss.
 * Parameters carry the official state_dict names (patch_embed.proj.weight,
 * blocks.0.attn.qkv.weight, decoder_pred.bias, ...), so the official MAE
 * checkpoints and the reference fixture load by name.
 *
 * Devices: every float pointer below (parameters, activations, gradients,
 * inputs, outputs) is memory of the kernel table `k` the functions are run
 * with, and the host never dereferences it; only the bookkeeping of the
 * masking (noise, ids, the mask copy in mask_h) is host memory. Models are
 * initialised on the host; the caller moves the parameters to the device
 * (pl_params_move_to) before the first forward. */
#pragma once

#include "mae.h"
#include "mae_device.h"
#include "../common/param_list.h"

/* ---- the timm Block -------------------------------------------------------- */

typedef struct {
  int64_t dim, heads, hidden; /* hidden = int(dim * mlp_ratio) */
  double eps;
  int n1w, n1b, n2w, n2b;
  pl_linear qkv, proj, fc1, fc2;
} mae_block;

/* What one block's forward keeps for its backward (N = B * T tokens). */
typedef struct {
  pl_buf ln1, mean1, rstd1, qkv, ao, lse, x1, ln2, mean2, rstd2, h, g;
} mae_block_act;

/* Registers "<prefix>.norm1.weight", "<prefix>.attn.qkv.weight", ... */
gboolean mae_block_add(mae_block *b, pl_params *P, const char *prefix, int64_t dim, int64_t heads,
                       double mlp_ratio, double eps, ps_role role, ps_rng *rng, GError **error);
void mae_block_act_clear(mae_block_act *a);
/* y: (B, T, dim) = block(x: (B, T, dim)); x must stay valid for backward. */
gboolean mae_block_forward(const mae_block *b, const ps_kernels *k, const pl_params *P,
                           mae_block_act *a, ps_context *ctx, float *y, const float *x, int64_t B,
                           int64_t T, GError **error);
/* dx: (B, T, dim) += d/dx given dy: (B, T, dim); parameter grads where they train. */
void mae_block_backward(const mae_block *b, const ps_kernels *k, const pl_params *P,
                        mae_block_act *a, ps_context *ctx, float *dx, const float *dy,
                        const float *x, int64_t B, int64_t T);

/* ---- the decoder ----------------------------------------------------------- */

typedef struct {
  int64_t in_dim, dim, depth, heads, out_dim;
  double eps;
  pl_linear embed, pred;
  int mask_token, norm_w, norm_b;
  int pos;      /* index of the decoder_pos_embed parameter, or -1: own table */
  pl_buf table; /* own sin-cos table (1 + gh*gw, dim) when pos < 0, in k's memory */
  int64_t table_gh, table_gw;
  mae_block *blocks;
  mae_block_act *acts;
  /* Forward state for backward. */
  int64_t B, L, Lk;
  int64_t *ids_restore; /* (B, L) host copy */
  int64_t ids_cap;
  mae_ids rows;             /* (B, 1+L): the row of emb each token of xs starts from */
  pl_buf latent;            /* (B, 1+Lk, in_dim) copy of the input */
  pl_buf emb;               /* (B*(1+Lk) + 1, dim): embedded latent, then the mask token */
  pl_buf xs;                /* (depth+1, B, 1+L, dim): block inputs, then the last output */
  pl_buf lnf, meanf, rstdf; /* decoder_norm */
  pl_buf predfull;          /* (B, 1+L, out_dim) */
} mae_decoder;

/* Registers decoder_embed.*, mask_token, [decoder_pos_embed,] decoder_blocks.i.*,
 * decoder_norm.*, decoder_pred.*. With pos_param the fixed sin-cos table of a
 * gh x gw grid is a frozen parameter (as in the official state_dict);
 * otherwise the decoder computes it for the grid of each forward. rng NULL
 * leaves weights zero (to be loaded); else MAE's initialisation. */
gboolean mae_decoder_init(mae_decoder *d, pl_params *P, int64_t in_dim, int64_t dim, int64_t depth,
                          int64_t heads, double mlp_ratio, double eps, int64_t out_dim,
                          gboolean pos_param, int64_t gh, int64_t gw, ps_role role, ps_rng *rng,
                          GError **error);
void mae_decoder_clear(mae_decoder *d);
/* latent: (B, 1+Lk, in_dim) (cls first, then the kept tokens in ids_shuffle
 * order); ids_restore: (B, L) for a gh x gw grid (L = gh*gw), on the host;
 * pred: (B, L, out_dim). */
gboolean mae_decoder_forward(mae_decoder *d, const ps_kernels *k, const pl_params *P,
                             ps_context *ctx, const float *latent, const int64_t *ids_restore,
                             int64_t B, int64_t gh, int64_t gw, int64_t Lk, float *pred,
                             GError **error);
/* dpred: (B, L, out_dim); dlatent: (B, 1+Lk, in_dim) += d/dlatent (may be NULL). */
gboolean mae_decoder_backward(mae_decoder *d, const ps_kernels *k, const pl_params *P,
                              ps_context *ctx, const float *dpred, float *dlatent, GError **error);

/* ---- the whole MaskedAutoencoderViT ---------------------------------------- */

typedef struct {
  int64_t img_size, patch_size, in_chans, embed_dim, depth, num_heads;
  int64_t dec_dim, dec_depth, dec_heads;
  double mlp_ratio, eps, mask_ratio;
  gboolean norm_pix;
} mae_cfg;

/* mae_vit_base_patch16_dec512d8b with norm_pix_loss (the recipe). */
void mae_cfg_base(mae_cfg *c);
/* Checks divisibility and ranges; the error names the key. */
gboolean mae_cfg_check(const mae_cfg *c, GError **error);

typedef struct {
  mae_cfg c;
  pl_params P;
  int cls, pos, patch_w, patch_b, norm_w, norm_b;
  mae_block *blocks;
  mae_block_act *acts;
  mae_decoder dec;
  /* Forward state. */
  int64_t B, gh, L, Lk, P_dim;
  int64_t *ids_shuffle, *ids_restore; /* (B, L), host */
  float *mask_h;                      /* (B, L), host copy of mask */
  int64_t ids_cap;
  mae_ids rows;                /* (B, 1+Lk): the row of the token table each xs row copies */
  mae_ids loss_rows;           /* the removed patches (mae_loss_dev) */
  pl_buf imgs;                 /* (B, C, H, W) copy of the input */
  pl_buf conv;                 /* (B, D, L) patch embedding */
  pl_buf xs;                   /* (depth+1, B, 1+Lk, D) */
  pl_buf latent, meanf, rstdf; /* (B, 1+Lk, D) after norm */
  pl_buf mask;                 /* (B, L) */
  pl_buf target;               /* (B, L, P) normalised pixels */
  pl_buf pred;                 /* (B, L, P) */
  pl_buf dpred1;               /* (B, L, P) d loss / d pred */
  double loss;
} mae_model;

/* rng NULL: zeros (weights to be loaded), else MAE's initialize_weights. */
gboolean mae_model_init(mae_model *m, const mae_cfg *c, ps_rng *rng, GError **error);
void mae_model_clear(mae_model *m);
/* model(imgs, mask_ratio) with torch.rand replaced by `noise`:
 * imgs: (B, C, img, img) in k's memory; noise: (B, L) on the host. Results in
 * m->loss (host), m->pred, m->mask (and m->mask_h), m->ids_restore (host),
 * m->latent. */
gboolean mae_model_forward(mae_model *m, const ps_kernels *k, ps_context *ctx, const float *imgs,
                           const float *noise, int64_t B, GError **error);
/* Backward of dloss * loss + sum(dpred_extra * pred) (dpred_extra (B, L, P)
 * or NULL); dimgs: (B, C, img, img) += d/dimgs (may be NULL). Both in k's memory. */
gboolean mae_model_backward(mae_model *m, const ps_kernels *k, ps_context *ctx, double dloss,
                            const float *dpred_extra, float *dimgs, GError **error);
