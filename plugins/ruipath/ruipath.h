/* ruipath.h — the RuiPath encoder (a DINOv2-style ViT) inside the plugin:
 * its configuration, the model object with forward and backward over raw
 * buffers, and the position-embedding interpolation it uses. The component
 * wrapper (ruipath_comp.c) and the fixture runner (ruipath_fixture.c) are
 * thin layers over this API.
 *
 * Model (facebookresearch/dinov2 vision_transformer.py, spec/model.md §5):
 *   x = patch_embed(img)                       conv k = s = patch -> (B, N, D)
 *   x = cat(cls, x) + interp(pos_embed)        (cls row of pos_embed as is)
 *   x = cat(x[:, :1], register_tokens, x[:, 1:])   registers get no pos embed
 *   block: x += ls1 * attn(norm1(x)); x += ls2 * mlp(norm2(x))
 *   out = norm(x): cls = out[:, 0], registers = out[:, 1:1+R], patches = out[:, 1+R:]
 * LayerNorm eps 1e-6 by default, exact-erf GELU MLP, optional LoRA on the
 * attention qkv (and proj) through the shared ps_linear. */
#pragma once

#include <pathseg/kernels.h>
#include <pathseg/layers.h>
#include <pathseg/plugin.h>

#define RP_MAX_DEPTH 64

typedef struct rp_cfg {
  int64_t embed_dim, depth, num_heads, patch_size, img_size, in_chans;
  double mlp_ratio;
  int64_t num_register_tokens;
  double layer_norm_eps;
  /* LayerScale gamma initial value; 0 = no LayerScale (timm init_values None). */
  double init_values;
  gboolean qkv_bias, proj_bias, ffn_bias;
  /* Pos-embed interpolation: offset > 0 uses scale_factor (n + offset) / M,
   * offset 0 uses the output size; antialias picks torch's _aa kernel. */
  double interpolate_offset;
  gboolean interpolate_antialias;
  /* LoRA on blocks.N.attn.qkv (and attn.proj when lora_proj); r 0 = none. */
  int64_t lora_r;
  double lora_alpha, lora_dropout;
  gboolean lora_qkv, lora_proj;
  double init_std; /* std of the truncated-normal-free N(0, std) init of matrices */
} rp_cfg;

/* Fills every field for a preset: "tiny", "vit-b16" or "vit-l14". FALSE for
 * an unknown name. */
gboolean rp_cfg_preset(rp_cfg *c, const char *preset);
/* Consistency checks that the schema's ranges cannot express. */
gboolean rp_cfg_validate(const rp_cfg *c, const char *what, GError **error);

typedef struct rp_encoder rp_encoder;

/* A model with freshly initialised weights drawn from `rng` (NULL: zeros, for
 * weights that will be loaded). */
rp_encoder *rp_encoder_new(const rp_cfg *c, const ps_kernels *k, ps_rng *rng, GError **error);
void rp_encoder_free(rp_encoder *e);
const rp_cfg *rp_encoder_cfg(const rp_encoder *e);
ps_param_list rp_encoder_params(rp_encoder *e);

/* Moves every parameter to `device` (after initialising or loading them on
 * the host); the kernel table given to rp_encoder_new must be that device's.
 * Activations and outputs are then made in that table's memory. */
gboolean rp_encoder_to_device(rp_encoder *e, ps_device device, GError **error);
/* Loads every parameter by its checkpoint name; `get` returns an f32 tensor
 * that the caller frees, or NULL with an error. LoRA matrices are loaded
 * only when `get` knows them (`has`). */
typedef ps_tensor *(*rp_getter)(void *user, const char *name, GError **error);
typedef gboolean (*rp_has)(void *user, const char *name);
gboolean rp_encoder_load(rp_encoder *e, rp_getter get, rp_has has, void *user, const char *what,
                         GError **error);

/* The outputs of one forward, owned by the encoder (valid until the next
 * forward or free). */
typedef struct rp_outputs {
  ps_tensor *cls;       /* (B, D) */
  ps_tensor *registers; /* (B, R, D) */
  ps_tensor *patches;   /* (B, N, D), N = gh * gw, row-major */
  ps_tensor *grid;      /* i32 (2): gh, gw */
  ps_tensor *pos_embed; /* (1, 1 + N, D): the (interpolated) position embedding used */
  ps_tensor *tokens;    /* (B, 1 + R + N, D): tokens entering block 0 */
  ps_tensor *prenorm;   /* (B, 1 + R + N, D): the last block's output */
} rp_outputs;

/* Batch and patch count of the last forward; FALSE before any. */
gboolean rp_encoder_last_geometry(const rp_encoder *e, int64_t *B, int64_t *N);

/* image: (B, in_chans, H, W), H and W multiples of patch_size, on any device
 * (copied to the encoder's when elsewhere). With `training`, activations of
 * every block are kept for backward (and LoRA dropout is on); otherwise one
 * block's worth of buffers is reused. Outputs are on the encoder's device,
 * except the patch grid (a host tensor: control data). */
gboolean rp_encoder_forward(rp_encoder *e, ps_context *ctx, const ps_tensor *image,
                            rp_outputs *out, GError **error);
/* Gradients of the loss w.r.t. the outputs of the last (training) forward:
 * dcls (B, D), dregs (B, R, D), dpatches (B, N, D), each may be NULL, all
 * memory of the encoder's device.
 * Parameter gradients are added where a parameter has a grad buffer; when
 * dimage is non-NULL it receives a tensor (owned by the encoder) with the
 * gradient w.r.t. the image. No work is done below the lowest block that
 * needs it. */
gboolean rp_encoder_backward(rp_encoder *e, ps_context *ctx, const float *dcls, const float *dregs,
                             const float *dpatches, ps_tensor **dimage, GError **error);

/* ---- position-embedding interpolation (ruipath_posembed.c) ------------------ */

/* The resampling of the M x M patch position grid to gh x gw, as
 * DinoVisionTransformer.interpolate_pos_encoding does it. */
typedef struct rp_pos_interp {
  int64_t M, gh, gw;
  gboolean identity; /* no interpolation: npatch == M*M and H == W */
  gboolean antialias;
  float scale_h, scale_w; /* input pixels per output pixel as torch uses them (<= 0: M / out) */
} rp_pos_interp;

/* Plans the interpolation for an image of H x W pixels; errors when torch's
 * output size would differ from the patch grid (the official assert). */
gboolean rp_pos_interp_plan(rp_pos_interp *p, int64_t M, int64_t H, int64_t W, int64_t patch,
                            double offset, gboolean antialias, GError **error);
/* out: (1 + gh*gw, D) from pos: (1 + M*M, D); scratch: 2 * D * max(M*M, gh*gw) floats.
 * Every pointer is memory of k's device. */
void rp_pos_interp_forward(const rp_pos_interp *p, const ps_kernels *k, float *out,
                           const float *pos, int64_t D, float *scratch);
/* dpos: (1 + M*M, D) += the adjoint applied to dout: (1 + gh*gw, D); same scratch. */
void rp_pos_interp_backward(const rp_pos_interp *p, const ps_kernels *k, float *dpos,
                            const float *dout, int64_t D, float *scratch);
/* The antialiased bicubic resampling of torch (_upsample_bicubic2d_aa: A = -0.5,
 * PIL-style support widened by the downscale factor, normalised weights,
 * separable, width first, an axis whose size does not change is skipped),
 * which the kernel table lacks: out (NC, OH, OW) from inp (NC, H, W);
 * scale_* as in ps_kernels.resize_forward. Backward adds the adjoint. */
void rp_resize_aa_forward(float *out, const float *inp, int64_t NC, int64_t H, int64_t W,
                          int64_t OH, int64_t OW, float scale_h, float scale_w);
void rp_resize_aa_backward(float *dinp, const float *dout, int64_t NC, int64_t H, int64_t W,
                           int64_t OH, int64_t OW, float scale_h, float scale_w);
