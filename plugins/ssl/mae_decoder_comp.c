/* mae_decoder_comp.c — component `ssl.mae_decoder`: MAE's light decoder
 * (mae_vit.c, official parameter names decoder_embed.*, mask_token,
 * decoder_blocks.i.*, decoder_norm.*, decoder_pred.*) over the feature map of
 * ANOTHER encoder, for stage.ssl_pretrain.
 *
 * forward:  features [B, in_dim, h, w] f32 (e.g. encoder.medsam embeddings),
 *           mask [B, h*w] f32 (1 = removed, the MAE mask of the stage)
 *        -> pred [B, h*w, p*p*in_chans] f32, every patch's reconstruction.
 * The decoder sees what MAE's decoder sees: a cls slot followed by the KEPT
 * tokens only (masked positions of the feature map are dropped and replaced
 * by mask_token after unshuffling), so the encoder cannot pass hidden
 * content through its masked positions. An encoder without a cls token (SAM)
 * fills the cls slot with the mean of its kept tokens. Kept tokens enter in
 * ascending patch order; the output does not depend on that order
 * (attention is permutation-equivariant and positions are added after
 * unshuffling). decoder_pos_embed is the fixed 2-D sin-cos table of the h x w
 * grid, computed rather than stored (it is not trained).
 * backward: into the decoder's parameters and, when asked, the features.
 * Runs on the context's device: the mask is bookkeeping (host; copied there
 * when it arrives on the device), the kept tokens are a row gather and their
 * mean a batched product with a 1/Lk weight row. */
#include <string.h>

#include <pathseg/error.h>

#include "ssl_plugin.h"

static const ps_config_key dec_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base",
     "fills every size key left unset: base = MAE's decoder (512 wide, 8 blocks, 16 heads) over "
     "SAM ViT-B's 256-channel neck; tiny = 32 wide, 1 block, 2 heads over 32 channels"},
    {"in_dim", PS_TYPE_INT, "null", 1, 16384, NULL, "channels of the encoder feature map"},
    {"embed_dim", PS_TYPE_INT, "null", 4, 16384, NULL, "decoder width (multiple of 4 and heads)"},
    {"depth", PS_TYPE_INT, "null", 0, 256, NULL, "decoder blocks"},
    {"num_heads", PS_TYPE_INT, "null", 1, 256, NULL, "decoder attention heads"},
    {"patch_size", PS_TYPE_INT, "16", 1, 1024, NULL,
     "pixels per feature-map cell (the encoder's patch size)"},
    {"in_chans", PS_TYPE_INT, "3", 1, 64, NULL, "image channels to reconstruct"},
    {"mlp_ratio", PS_TYPE_FLOAT, "4.0", 0.01, 64, NULL, "MLP width / decoder width"},
    {"layer_norm_eps", PS_TYPE_FLOAT, "1e-6", 1e-12, 1, NULL, "LayerNorm eps"},
    {NULL},
};
static const ps_port_desc dec_inputs[] = {
    {"features", "[B, in_dim, h, w] f32: the encoder's feature map", FALSE},
    {"mask", "[B, h*w] f32: 1 = removed, 0 = kept (same count in every image)", FALSE},
    {NULL},
};
static const ps_port_desc dec_outputs[] = {
    {"pred", "[B, h*w, patch_size^2 * in_chans] f32: per-patch pixels, (row, col, channel) order",
     FALSE},
    {NULL},
};

typedef struct {
  pl_params P;
  mae_decoder d;
  ps_device device;
  const ps_kernels *k;
  int64_t patch, chans;
  /* forward state */
  int64_t B, C, gh, gw, L, Lk;
  int64_t *ids_shuffle, *ids_restore; /* (B, L), host */
  int64_t ids_cap;
  mae_ids rows;          /* (B, 1+Lk): token row of each latent row (-1: the cls slot) */
  pl_buf tokens, latent; /* (B, L, C), (B, 1+Lk, C) */
  pl_buf wmean, cls;     /* (Lk) of 1/Lk; (B, C) the cls slots */
  ps_tensor *pred, *dfeat;
  ps_tensor *cache_feat, *cache_mask, *cache_dpred; /* inputs moved to where they are needed */
} dec_comp;

static void dec_destroy(void *self) {
  dec_comp *c = self;
  if (!c) return;
  mae_decoder_clear(&c->d);
  pl_params_clear(&c->P);
  g_free(c->ids_shuffle);
  g_free(c->ids_restore);
  mae_ids_clear(&c->rows);
  pl_buf *bufs[] = {&c->tokens, &c->latent, &c->wmean, &c->cls};
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
  ps_tensor *ts[] = {c->pred, c->dfeat, c->cache_feat, c->cache_mask, c->cache_dpred};
  for (size_t i = 0; i < G_N_ELEMENTS(ts); i++) ps_tensor_free(ts[i]);
  g_free(c);
}

static void *dec_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  const gboolean base = strcmp(ps_config_string(cfg, "preset"), "base") == 0;
  int64_t in_dim = base ? 256 : 32, dim = base ? 512 : 32, depth = base ? 8 : 1,
          heads = base ? 16 : 2;
  if (ps_config_has(cfg, "in_dim")) in_dim = ps_config_int(cfg, "in_dim");
  if (ps_config_has(cfg, "embed_dim")) dim = ps_config_int(cfg, "embed_dim");
  if (ps_config_has(cfg, "depth")) depth = ps_config_int(cfg, "depth");
  if (ps_config_has(cfg, "num_heads")) heads = ps_config_int(cfg, "num_heads");
  if (dim % heads || dim % 4) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "ssl.mae_decoder: embed_dim %" G_GINT64_FORMAT " must be a multiple of 4 and of "
                "num_heads %" G_GINT64_FORMAT,
                dim, heads);
    return NULL;
  }
  dec_comp *c = g_new0(dec_comp, 1);
  pl_params_init(&c->P);
  c->patch = ps_config_int(cfg, "patch_size");
  c->chans = ps_config_int(cfg, "in_chans");
  c->device = ps_context_device(ctx);
  c->k = ps_context_kernels(ctx, error); /* at the run's precision */
  /* initialised on the host (the same draws on every device), then moved */
  if (!c->k ||
      !mae_decoder_init(&c->d, &c->P, in_dim, dim, depth, heads, ps_config_float(cfg, "mlp_ratio"),
                        ps_config_float(cfg, "layer_norm_eps"), c->patch * c->patch * c->chans,
                        FALSE, 0, 0, PS_ROLE_FULL, ps_context_rng(ctx), error) ||
      !pl_params_move_to(&c->P, c->device, error)) {
    g_prefix_error(error, "ssl.mae_decoder: ");
    dec_destroy(c);
    return NULL;
  }
  return c;
}

static ps_param_list dec_params(void *self) {
  return pl_params_list(&((dec_comp *)self)->P);
}

static gboolean dec_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  dec_comp *c = self;
  const ps_tensor *feat = ps_ports_require(in, "ssl.mae_decoder", "features", error);
  const ps_tensor *mask = feat ? ps_ports_require(in, "ssl.mae_decoder", "mask", error) : NULL;
  if (!mask) return FALSE;
  const int64_t fshape[4] = {-1, c->d.in_dim, -1, -1};
  if (!ps_tensor_check(feat, "ssl.mae_decoder input features", PS_DTYPE_F32, 4, fshape, error))
    return FALSE;
  const int64_t B = feat->shape[0], C = feat->shape[1], gh = feat->shape[2], gw = feat->shape[3];
  const int64_t L = gh * gw, mshape[2] = {B, L};
  if (mask->dtype == PS_DTYPE_F32 && mask->ndim == 2 && mask->shape[0] == B &&
      mask->shape[1] != L) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "ssl.mae_decoder: the mask has %" G_GINT64_FORMAT " patches per image but the "
                "feature map has %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " cells; patch_size (%" G_GINT64_FORMAT ") must be the encoder's patch size",
                mask->shape[1], gh, gw, c->patch);
    return FALSE;
  }
  if (!ps_tensor_check(mask, "ssl.mae_decoder input mask", PS_DTYPE_F32, 2, mshape, error))
    return FALSE;
  if (B * L > G_MAXINT32) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "ssl.mae_decoder: %" G_GINT64_FORMAT " tokens exceed the int32 row ids", B * L);
    return FALSE;
  }
  /* the mask decides the bookkeeping on the host; the features are read by kernels */
  if (!(mask = ps_tensor_on_device(mask, PS_DEVICE_CPU, &c->cache_mask, error)) ||
      !(feat = ps_tensor_on_device(feat, c->device, &c->cache_feat, error)))
    return FALSE;
  if (c->ids_cap < B * L) {
    c->ids_shuffle = g_renew(int64_t, c->ids_shuffle, B * L);
    c->ids_restore = g_renew(int64_t, c->ids_restore, B * L);
    c->ids_cap = B * L;
  }
  int64_t Lk = 0;
  if (!mae_ids_from_mask(c->ids_shuffle, c->ids_restore, &Lk, ps_f32(mask), B, L, error)) {
    g_prefix_error(error, "ssl.mae_decoder: ");
    return FALSE;
  }
  if (Lk < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "ssl.mae_decoder: the mask removes every patch; at least one must be kept");
    return FALSE;
  }
  const ps_kernels *k = c->k;
  if (!pl_buf_ensure(&c->tokens, k, B * L * C, error) ||
      !pl_buf_ensure(&c->latent, k, B * (1 + Lk) * C, error) ||
      !pl_buf_ensure(&c->wmean, k, Lk, error) || !pl_buf_ensure(&c->cls, k, B * C, error))
    return FALSE;
  c->B = B;
  c->C = C;
  c->gh = gh;
  c->gw = gw;
  c->L = L;
  c->Lk = Lk;
  /* (B, C, L) -> (B, L, C); latent = [mean of kept; kept in ascending order]:
   * a row gather (the cls slots get id -1, a zero row), then for every image
   * the (1, Lk) row of 1/Lk times its (Lk, C) kept rows into its cls slot. */
  k->transpose_forward(c->tokens.p, ps_f32(feat), B, C, L);
  int32_t *rows = mae_ids_host(&c->rows, B * (1 + Lk));
  for (int64_t b = 0; b < B; b++) {
    rows[b * (1 + Lk)] = -1;
    for (int64_t r = 0; r < Lk; r++)
      rows[b * (1 + Lk) + 1 + r] = (int32_t)(b * L + c->ids_shuffle[b * L + r]);
  }
  const int32_t *drows = mae_ids_upload(&c->rows, k, B * (1 + Lk), error);
  if (!drows) return FALSE;
  k->embedding_forward(c->latent.p, drows, c->tokens.p, B * (1 + Lk), B * L, C);
  k->fill(c->wmean.p, 1.0f / (float)Lk, Lk);
  k->bmm_forward(c->cls.p, c->wmean.p, c->latent.p + C, B, 1, C, Lk, 0, 0, (1 + Lk) * C);
  k->copy_2d(c->latent.p, (1 + Lk) * C, c->cls.p, C, B, C, 0);
  const int64_t pshape[3] = {B, L, c->d.out_dim};
  if (!ps_tensor_ensure_on(&c->pred, c->device, PS_DTYPE_F32, 3, pshape, error)) return FALSE;
  if (!mae_decoder_forward(&c->d, k, &c->P, ctx, c->latent.p, c->ids_restore, B, gh, gw, Lk,
                           ps_f32(c->pred), error)) {
    g_prefix_error(error, "ssl.mae_decoder: ");
    return FALSE;
  }
  ps_ports_set(out, "pred", c->pred);
  return TRUE;
}

static gboolean dec_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  dec_comp *c = self;
  const ps_tensor *dpred = ps_ports_get(grad_out, "pred");
  if (!dpred) return TRUE;
  const int64_t B = c->B, C = c->C, L = c->L, Lk = c->Lk;
  if (!c->pred || ps_tensor_numel(dpred) != ps_tensor_numel(c->pred)) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "ssl.mae_decoder: the gradient of pred does not match the last forward");
    return FALSE;
  }
  if (!(dpred = ps_tensor_on_device(dpred, c->device, &c->cache_dpred, error))) return FALSE;
  const ps_kernels *k = c->k;
  ps_port *fp = ps_ports_find(grad_in, "features");
  const gboolean want = fp && fp->needs_grad;
  float *dlatent = want ? pl_scratch_zero(ctx, B * (1 + Lk) * C) : NULL;
  if (!mae_decoder_backward(&c->d, k, &c->P, ctx, ps_f32(dpred), dlatent, error)) return FALSE;
  if (!want) return TRUE;
  /* the mean in the cls slot: every kept row gets 1/Lk of its slot's gradient
   * (the batched product's backward), then the gather's scatter-add */
  float *dcls = pl_scratch(ctx, B * C, error);
  if (!dcls) return FALSE;
  k->copy_2d(dcls, C, dlatent, (1 + Lk) * C, B, C, 0);
  k->bmm_backward(NULL, dlatent + C, dcls, c->wmean.p, c->latent.p + C, B, 1, C, Lk, 0, 0,
                  (1 + Lk) * C);
  float *dtok = pl_scratch_zero(ctx, B * L * C);
  k->embedding_backward(dtok, (const int32_t *)c->rows.dev.p, dlatent, B * (1 + Lk), B * L, C);
  const int64_t fshape[4] = {B, C, c->gh, c->gw};
  if (!ps_tensor_ensure_on(&c->dfeat, c->device, PS_DTYPE_F32, 4, fshape, error)) return FALSE;
  k->transpose_forward(ps_f32(c->dfeat), dtok, B, L, C);
  fp->tensor = c->dfeat;
  return TRUE;
}

static const ps_component_vtable dec_vtable = {
    sizeof(ps_component_vtable), dec_create, dec_destroy, dec_params, dec_forward, dec_backward,
};

const ps_component_desc ssl_mae_decoder_desc = {
    sizeof(ps_component_desc),
    PS_KIND_DECODER,
    "ssl.mae_decoder",
    "MAE's light decoder (official parameter names) reconstructing every patch from another "
    "encoder's feature map and the MAE mask: kept tokens plus mask tokens, 2-D sin-cos "
    "positions, ViT blocks, per-patch pixel prediction. Used by stage.ssl_pretrain.",
    dec_config,
    dec_inputs,
    dec_outputs,
    &dec_vtable,
    NULL,
};
