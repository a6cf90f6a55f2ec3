/* sam_encoder_comp.c — the `encoder.medsam` component: config schema, ports
 * and vtable around image_encoder.c. */
#include <pathseg/error.h>

#include "image_encoder.h"
#include "sam_plugin.h"
#include "sam_weights.h"

static const ps_config_key enc_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base",
     "fills every size key left unset: base = SAM/MedSAM ViT-B, tiny = CPU default"},
    {"embed_dim", PS_TYPE_INT, "null", 1, 8192, NULL, "token width (ViT-B 768)"},
    {"depth", PS_TYPE_INT, "null", 1, SAM_MAX_DEPTH, NULL, "number of blocks (ViT-B 12)"},
    {"num_heads", PS_TYPE_INT, "null", 1, 256, NULL, "attention heads (ViT-B 12)"},
    {"mlp_ratio", PS_TYPE_FLOAT, "null", 0.01, 64, NULL, "MLP width / embed_dim (4)"},
    {"patch_size", PS_TYPE_INT, "null", 1, 256, NULL, "patch side in pixels (16)"},
    {"img_size", PS_TYPE_INT, "null", 1, 16384, NULL, "input side in pixels (1024)"},
    {"window_size", PS_TYPE_INT, "null", 0, 1024, NULL,
     "window side in tokens for non-global blocks (14); 0 = all global"},
    {"global_attn_indexes", PS_TYPE_INT_LIST, "null", 0, SAM_MAX_DEPTH - 1, NULL,
     "blocks with global attention ([2, 5, 8, 11])"},
    {"out_chans", PS_TYPE_INT, "null", 1, 8192, NULL, "neck output channels (256)"},
    {"adapter", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "AdaptFormer adapters parallel to each block's MLP (parameters blocks.i.adaptmlp.*)"},
    {"adapter.dim", PS_TYPE_INT, "null", 1, 8192, NULL,
     "adapter bottleneck width (base 64, tiny 16)"},
    {"adapter.scale", PS_TYPE_FLOAT, "0.1", PS_NO_RANGE, NULL,
     "adapter output scale (AdaptFormer 0.1)"},
    {"adapter.dropout", PS_TYPE_FLOAT, "0.1", 0, 0.99, NULL,
     "dropout between the adapter's ReLU and up-projection (training only)"},
    {"medsam_input", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "MedSAM convention: per-image min-max to [0, 1] inside the encoder; false feeds the image "
     "to the patch embedding unchanged (SAM's pixel normalisation done upstream)"},
    {"checkpoint", PS_TYPE_STRING, "null", PS_NO_RANGE, NULL,
     "safetensors with the encoder weights, official (image_encoder.*) or Hugging Face "
     "SamModel (vision_encoder.*) names, detected; other parts of a full SAM file are ignored"},
    {NULL},
};
static const ps_port_desc enc_inputs[] = {
    {"image", "[B, 3, img_size, img_size] f32 (RGB; see medsam_input)", FALSE}, {NULL}};
static const ps_port_desc enc_outputs[] = {
    {"embeddings", "[B, out_chans, img_size/patch, img_size/patch] f32 image embeddings", FALSE},
    {NULL}};

void sam_enc_cfg_from_config(sam_enc_cfg *c, const ps_config *cfg) {
  sam_enc_cfg_preset(c, ps_config_string(cfg, "preset"));
#define INT_KEY(k, field)                                                                          \
  if (ps_config_has(cfg, k)) c->field = ps_config_int(cfg, k)
  INT_KEY("embed_dim", embed_dim);
  INT_KEY("depth", depth);
  INT_KEY("num_heads", num_heads);
  INT_KEY("patch_size", patch_size);
  INT_KEY("img_size", img_size);
  INT_KEY("window_size", window_size);
  INT_KEY("out_chans", out_chans);
  INT_KEY("adapter.dim", adapter_dim);
#undef INT_KEY
  if (ps_config_has(cfg, "mlp_ratio")) c->mlp_ratio = ps_config_float(cfg, "mlp_ratio");
  if (ps_config_has(cfg, "global_attn_indexes")) {
    size_t n = 0;
    const int64_t *idx = ps_config_int_list(cfg, "global_attn_indexes", &n);
    memset(c->global_attn, 0, sizeof c->global_attn);
    for (size_t i = 0; i < n; i++)
      if (idx[i] >= 0 && idx[i] < SAM_MAX_DEPTH) c->global_attn[idx[i]] = TRUE;
  }
  c->adapter = ps_config_bool(cfg, "adapter");
  c->adapter_scale = ps_config_float(cfg, "adapter.scale");
  c->adapter_dropout = ps_config_float(cfg, "adapter.dropout");
  c->medsam_input = ps_config_bool(cfg, "medsam_input");
}

static void *enc_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  sam_enc_cfg c;
  sam_enc_cfg_from_config(&c, cfg);
  for (int64_t i = c.depth; i < SAM_MAX_DEPTH; i++)
    if (c.global_attn[i]) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "encoder.medsam: global_attn_indexes names block %" G_GINT64_FORMAT
                  " but depth is %" G_GINT64_FORMAT,
                  i, c.depth);
      return NULL;
    }
  /* parameters are initialised (same draws on every device) and loaded on
   * the host, then moved */
  sam_encoder *e = sam_encoder_new(&c, ps_context_device(ctx), ps_context_precision(ctx),
                                   ps_context_rng(ctx), error);
  if (e && ps_config_has(cfg, "checkpoint")) {
    static const char *const own[] = {"image_encoder.", NULL};
    if (!sam_params_load_path(sam_encoder_params(e), ps_config_string(cfg, "checkpoint"), own,
                              "encoder.medsam", NULL, error))
      g_clear_pointer(&e, sam_encoder_free);
  }
  if (e && !sam_encoder_to_device(e, error)) g_clear_pointer(&e, sam_encoder_free);
  return e;
}

/* The context a step runs with must be the one the encoder was made for
 * (its parameters and buffers live in that device's memory). */
static gboolean same_device(const sam_encoder *e, ps_context *ctx, GError **error) {
  if (ps_context_device(ctx) == sam_encoder_device(e)) return TRUE;
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
              "encoder.medsam: run with a context of another device than it was created with");
  return FALSE;
}

static void enc_destroy(void *self) {
  sam_encoder_free(self);
}

static ps_param_list enc_params(void *self) {
  return pl_params_list(sam_encoder_params(self));
}

static gboolean enc_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  const ps_tensor *image = ps_ports_require(in, "encoder.medsam", "image", error);
  if (!image || !same_device(self, ctx, error)) return FALSE;
  ps_tensor *emb = NULL;
  if (!sam_encoder_forward(self, ctx, image, ps_context_training(ctx), ps_context_rng(ctx), &emb,
                           error))
    return FALSE;
  ps_ports_set(out, "embeddings", emb);
  return TRUE;
}

static gboolean enc_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  const ps_tensor *d = ps_ports_get(grad_out, "embeddings");
  if (!d) return TRUE;
  sam_encoder *e = self;
  const sam_enc_cfg *c = sam_encoder_cfg(e);
  int64_t G = c->img_size / c->patch_size;
  int64_t shape[4] = {-1, c->out_chans, G, G};
  if (!ps_tensor_check(d, "encoder.medsam gradient of embeddings", PS_DTYPE_F32, 4, shape, error))
    return FALSE;
  if (!same_device(e, ctx, error)) return FALSE;
  /* normally already on the device (the next component's input gradient) */
  const ps_tensor *dd =
      ps_tensor_on_device(d, sam_encoder_device(e), sam_encoder_dout_cache(e), error);
  if (!dd) return FALSE;
  ps_port *ip = ps_ports_find(grad_in, "image");
  gboolean want = ip && ip->needs_grad;
  ps_tensor *dimg = NULL;
  if (!sam_encoder_backward(e, ctx, ps_f32(dd), want ? &dimg : NULL, error)) return FALSE;
  if (want) ip->tensor = dimg;
  return TRUE;
}

static const ps_component_vtable enc_vtable = {
    sizeof(ps_component_vtable), enc_create, enc_destroy, enc_params, enc_forward, enc_backward,
};

const ps_component_desc sam_encoder_desc = {
    sizeof(ps_component_desc),
    PS_KIND_ENCODER,
    "encoder.medsam",
    "SAM / MedSAM ViT image encoder (windowed attention with zero padding, decomposed relative "
    "positions, neck) with optional AdaptFormer adapters. Parameters are named as in the "
    "official checkpoint (image_encoder.*): role backbone, adapters role adapter.",
    enc_config,
    enc_inputs,
    enc_outputs,
    &enc_vtable,
    sam_capability,
};
