/* image_encoder.h — the SAM / MedSAM ViT image encoder (segment-anything
 * ImageEncoderViT) with optional AdaptFormer adapters, forward and backward
 * over raw buffers. The plugin glue (config, ports) is in sam_plugin.c. */
#pragma once

#include "../common/param_list.h"
#include "sam_host.h"

#define SAM_MAX_DEPTH 64

typedef struct {
  int64_t embed_dim, depth, num_heads, patch_size, img_size, window_size, out_chans;
  double mlp_ratio;
  gboolean global_attn[SAM_MAX_DEPTH]; /* block i uses global attention */
  gboolean adapter;                    /* AdaptFormer, parallel to the MLP */
  int64_t adapter_dim;
  double adapter_scale, adapter_dropout;
  gboolean medsam_input; /* per-image min-max to [0, 1] before the patch embedding */
  double eps;            /* LayerNorm / LayerNorm2d eps (1e-6 in SAM) */
} sam_enc_cfg;

/* The SAM ViT-B numbers (base) or the CPU default (tiny). */
void sam_enc_cfg_preset(sam_enc_cfg *c, const char *preset);

typedef struct sam_encoder sam_encoder;

/* An encoder that computes on `device`. Its parameters are host tensors until
 * sam_encoder_to_device: initialise (rng; NULL leaves every parameter zero,
 * e.g. before loading) and load them first. */
/* precision: a ps_precision (kernels.h) for the table the encoder computes with */
sam_encoder *sam_encoder_new(const sam_enc_cfg *cfg, ps_device device, int precision, ps_rng *rng,
                             GError **error);
/* Moves every parameter to the encoder's device (nothing to do on the CPU). */
gboolean sam_encoder_to_device(sam_encoder *e, GError **error);
ps_device sam_encoder_device(const sam_encoder *e);
/* Where the component keeps a device copy of an output gradient that came
 * from another device (ps_tensor_on_device's cache; freed with e). */
ps_tensor **sam_encoder_dout_cache(sam_encoder *e);
void sam_encoder_free(sam_encoder *e);
pl_params *sam_encoder_params(sam_encoder *e);
const sam_enc_cfg *sam_encoder_cfg(const sam_encoder *e);

/* image: (B, 3, img, img) on any device -> *out: (B, out_chans, img/patch,
 * img/patch) on the encoder's device, owned by the encoder. The image must
 * stay alive until the backward (MedSAM's min-max gradient reads it). `training` keeps every
 * block's activations for backward (and applies adapter dropout, drawn from rng). */
gboolean sam_encoder_forward(sam_encoder *e, ps_context *ctx, const ps_tensor *image,
                             gboolean training, ps_rng *rng, ps_tensor **out, GError **error);
/* dout: like the output, device memory. Adds into the gradients of the training parameters;
 * when `dimage` is non-NULL sets it to an encoder-owned (B, 3, H, W) gradient
 * on the encoder's device. */
gboolean sam_encoder_backward(sam_encoder *e, ps_context *ctx, const float *dout,
                              ps_tensor **dimage, GError **error);
