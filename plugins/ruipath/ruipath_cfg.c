/* ruipath_cfg.c — presets and consistency checks of the RuiPath encoder's
 * configuration (rp_cfg, ruipath.h).
 *
 *   tiny     width 64, 2 blocks, 4 heads, patch 16, 224 px, 4 registers (CPU default)
 *   vit-b16  768/12/12, patch 16, 224 px (UNI / Phikon-sized pathology ViT-B)
 *   vit-l14  1024/24/16, patch 14, 518 px (the DINOv2 hub ViT-L/14 geometry)
 * All use DINOv2's defaults: LayerNorm eps 1e-6, qkv/proj/ffn biases,
 * LayerScale initialised to 1.0, interpolate_offset 0.1 without antialias. */
#include <string.h>

#include <pathseg/error.h>

#include "ruipath.h"

gboolean rp_cfg_preset(rp_cfg *c, const char *preset) {
  memset(c, 0, sizeof *c);
  c->in_chans = 3;
  c->mlp_ratio = 4.0;
  c->layer_norm_eps = 1e-6;
  c->init_values = 1.0;
  c->qkv_bias = c->proj_bias = c->ffn_bias = TRUE;
  c->interpolate_offset = 0.1;
  c->interpolate_antialias = FALSE;
  c->lora_r = 0;
  c->lora_alpha = 16;
  c->lora_dropout = 0.1;
  c->lora_qkv = TRUE;
  c->lora_proj = FALSE;
  c->init_std = 0.02;
  if (g_strcmp0(preset, "tiny") == 0) {
    c->embed_dim = 64;
    c->depth = 2;
    c->num_heads = 4;
    c->patch_size = 16;
    c->img_size = 224;
    c->num_register_tokens = 4;
  } else if (g_strcmp0(preset, "vit-b16") == 0) {
    c->embed_dim = 768;
    c->depth = 12;
    c->num_heads = 12;
    c->patch_size = 16;
    c->img_size = 224;
  } else if (g_strcmp0(preset, "vit-l14") == 0) {
    c->embed_dim = 1024;
    c->depth = 24;
    c->num_heads = 16;
    c->patch_size = 14;
    c->img_size = 518;
  } else {
    return FALSE;
  }
  return TRUE;
}

gboolean rp_cfg_validate(const rp_cfg *c, const char *what, GError **error) {
  if (c->embed_dim <= 0 || c->num_heads <= 0 || c->embed_dim % c->num_heads != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: embed_dim %" G_GINT64_FORMAT " must be a positive multiple of num_heads %" G_GINT64_FORMAT,
                what, c->embed_dim, c->num_heads);
    return FALSE;
  }
  if (c->depth < 1 || c->depth > RP_MAX_DEPTH) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: depth %" G_GINT64_FORMAT " outside [1, %d]",
                what, c->depth, RP_MAX_DEPTH);
    return FALSE;
  }
  if (c->patch_size <= 0 || c->img_size < c->patch_size || c->img_size % c->patch_size != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: img_size %" G_GINT64_FORMAT " must be a positive multiple of patch_size %" G_GINT64_FORMAT
                " (it fixes the %s position-embedding grid)",
                what, c->img_size, c->patch_size, "M x M");
    return FALSE;
  }
  if ((int64_t)(c->embed_dim * c->mlp_ratio) < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: mlp_ratio %g gives an empty MLP", what,
                c->mlp_ratio);
    return FALSE;
  }
  if (c->num_register_tokens < 0 || c->in_chans < 1 || c->layer_norm_eps <= 0 ||
      c->init_values < 0 || c->interpolate_offset < 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "%s: num_register_tokens, init_values and interpolate_offset must be >= 0, "
                "in_chans and layer_norm_eps > 0",
                what);
    return FALSE;
  }
  if (c->lora_r < 0 || (c->lora_r > 0 && (c->lora_dropout < 0 || c->lora_dropout >= 1))) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "%s: LoRA needs r >= 0 and dropout in [0, 1)",
                what);
    return FALSE;
  }
  return TRUE;
}
