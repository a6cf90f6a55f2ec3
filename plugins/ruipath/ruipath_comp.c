/* ruipath_comp.c — the `encoder.ruipath` component: config schema, ports and
 * vtable around the model in ruipath_encoder.c, on the context's device
 * (gradients that arrive on another device are copied over). */
#include <string.h>

#include <pathseg/error.h>

#include "ruipath.h"
#include "ruipath_plugin.h"

static const ps_config_key enc_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|vit-b16|vit-l14",
     "fills every size key left unset: tiny = width 64, 2 blocks, patch 16, 224 px, 4 registers; "
     "vit-b16 = 768/12/12 patch 16 224 px; vit-l14 = 1024/24/16 patch 14 518 px (DINOv2 hub)"},
    {"embed_dim", PS_TYPE_INT, "null", 1, 16384, NULL, "token width D"},
    {"depth", PS_TYPE_INT, "null", 1, RP_MAX_DEPTH, NULL, "number of blocks"},
    {"num_heads", PS_TYPE_INT, "null", 1, 1024, NULL, "attention heads (divides embed_dim)"},
    {"mlp_ratio", PS_TYPE_FLOAT, "null", 0.01, 64, NULL, "MLP width / embed_dim (DINOv2 4)"},
    {"patch_size", PS_TYPE_INT, "null", 1, 1024, NULL, "patch side in pixels"},
    {"img_size", PS_TYPE_INT, "null", 1, 65536, NULL,
     "training image side: pos_embed covers (img_size / patch_size)^2 patches; other input "
     "sizes interpolate it"},
    {"in_chans", PS_TYPE_INT, "null", 1, 64, NULL, "input channels (3)"},
    {"num_register_tokens", PS_TYPE_INT, "null", 0, 1024, NULL,
     "register tokens (DINOv2 *_reg models: 4); they get no position embedding"},
    {"layer_norm_eps", PS_TYPE_FLOAT, "null", 1e-30, 1, NULL, "LayerNorm eps (1e-6)"},
    {"init_values", PS_TYPE_FLOAT, "null", 0, 1e6, NULL,
     "LayerScale initial gamma (DINOv2 hub 1.0, UNI 1e-5); 0 = no LayerScale parameters"},
    {"qkv_bias", PS_TYPE_BOOL, "null", PS_NO_RANGE, NULL, "bias on attn.qkv (true)"},
    {"proj_bias", PS_TYPE_BOOL, "null", PS_NO_RANGE, NULL, "bias on attn.proj (true)"},
    {"ffn_bias", PS_TYPE_BOOL, "null", PS_NO_RANGE, NULL, "bias on mlp.fc1/fc2 (true)"},
    {"interpolate_offset", PS_TYPE_FLOAT, "null", 0, 10, NULL,
     "pos-embed interpolation: > 0 uses scale_factor (n + offset) / M (DINOv2 0.1); 0 gives "
     "the output size instead"},
    {"interpolate_antialias", PS_TYPE_BOOL, "null", PS_NO_RANGE, NULL,
     "antialiased bicubic (the *_reg hub models) instead of plain bicubic (false)"},
    {"lora.r", PS_TYPE_INT, "0", 0, 4096, NULL, "LoRA rank on the attention (0 = no LoRA)"},
    {"lora.alpha", PS_TYPE_FLOAT, "16", PS_NO_RANGE, NULL, "LoRA alpha (scaling alpha / r)"},
    {"lora.dropout", PS_TYPE_FLOAT, "0.1", 0, 0.99, NULL, "dropout on LoRA A's input (training)"},
    {"lora.targets", PS_TYPE_STRING_LIST, "[qkv]", PS_NO_RANGE, NULL,
     "which attention linears get LoRA: qkv and/or proj"},
    {"init_std", PS_TYPE_FLOAT, "0.02", 0, 10, NULL,
     "std of the N(0, std) initialisation of the linear layers (before loading weights)"},
    {NULL},
};

static const ps_port_desc enc_inputs[] = {
    {"image", "[B, in_chans, H, W] f32, H and W multiples of patch_size (normalised upstream)",
     FALSE},
    {NULL}};
static const ps_port_desc enc_outputs[] = {
    {"cls", "[B, D] f32 normalised cls token (x_norm_clstoken)", FALSE},
    {"registers", "[B, R, D] f32 normalised register tokens (x_norm_regtokens)", FALSE},
    {"patches", "[B, N, D] f32 normalised patch tokens, row-major grid (x_norm_patchtokens)", FALSE},
    {"patch_grid", "[2] i32: patch rows gh and columns gw (N = gh * gw)", FALSE},
    {NULL}};

static gboolean cfg_from_config(rp_cfg *c, const ps_config *cfg, GError **error) {
  rp_cfg_preset(c, ps_config_string(cfg, "preset"));
#define INT_KEY(key, field) \
  if (ps_config_has(cfg, key)) c->field = ps_config_int(cfg, key)
#define FLOAT_KEY(key, field) \
  if (ps_config_has(cfg, key)) c->field = ps_config_float(cfg, key)
#define BOOL_KEY(key, field) \
  if (ps_config_has(cfg, key)) c->field = ps_config_bool(cfg, key)
  INT_KEY("embed_dim", embed_dim);
  INT_KEY("depth", depth);
  INT_KEY("num_heads", num_heads);
  FLOAT_KEY("mlp_ratio", mlp_ratio);
  INT_KEY("patch_size", patch_size);
  INT_KEY("img_size", img_size);
  INT_KEY("in_chans", in_chans);
  INT_KEY("num_register_tokens", num_register_tokens);
  FLOAT_KEY("layer_norm_eps", layer_norm_eps);
  FLOAT_KEY("init_values", init_values);
  BOOL_KEY("qkv_bias", qkv_bias);
  BOOL_KEY("proj_bias", proj_bias);
  BOOL_KEY("ffn_bias", ffn_bias);
  FLOAT_KEY("interpolate_offset", interpolate_offset);
  BOOL_KEY("interpolate_antialias", interpolate_antialias);
  INT_KEY("lora.r", lora_r);
  FLOAT_KEY("lora.alpha", lora_alpha);
  FLOAT_KEY("lora.dropout", lora_dropout);
  FLOAT_KEY("init_std", init_std);
#undef INT_KEY
#undef FLOAT_KEY
#undef BOOL_KEY
  size_t n = 0;
  const char *const *targets = ps_config_string_list(cfg, "lora.targets", &n);
  c->lora_qkv = c->lora_proj = FALSE;
  for (size_t i = 0; i < n; i++) {
    if (strcmp(targets[i], "qkv") == 0) {
      c->lora_qkv = TRUE;
    } else if (strcmp(targets[i], "proj") == 0) {
      c->lora_proj = TRUE;
    } else {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "encoder.ruipath: lora.targets entry '%s' is not one of qkv, proj", targets[i]);
      return FALSE;
    }
  }
  return TRUE;
}

/* The component: the encoder and device copies of output gradients that
 * arrive on another device (freed with it). */
typedef struct {
  rp_encoder *e;
  ps_device device;
  ps_tensor *g_cache[3]; /* cls, registers, patches */
} enc_comp;

static void enc_destroy(void *self) {
  enc_comp *w = self;
  if (!w) return;
  rp_encoder_free(w->e);
  for (int i = 0; i < 3; i++) ps_tensor_free(w->g_cache[i]);
  g_free(w);
}

static void *enc_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  rp_cfg c;
  if (!cfg_from_config(&c, cfg, error)) return NULL;
  const ps_device device = ps_context_device(ctx);
  /* The device's table at the run's precision. */
  const ps_kernels *k = ps_context_kernels(ctx, error);
  if (!k) return NULL;
  enc_comp *w = g_new0(enc_comp, 1);
  w->device = device;
  /* Parameters are drawn on the host (the same RNG draws on every device),
   * then moved. */
  w->e = rp_encoder_new(&c, k, ps_context_rng(ctx), error);
  if (!w->e || !rp_encoder_to_device(w->e, device, error)) {
    enc_destroy(w);
    return NULL;
  }
  return w;
}

static ps_param_list enc_params(void *self) { return rp_encoder_params(((enc_comp *)self)->e); }

static gboolean enc_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  enc_comp *w = self;
  const ps_tensor *image = ps_ports_require(in, "encoder.ruipath", "image", error);
  if (!image) return FALSE;
  rp_outputs o;
  if (!rp_encoder_forward(w->e, ctx, image, &o, error)) return FALSE;
  ps_ports_set(out, "cls", o.cls);
  ps_ports_set(out, "registers", o.registers);
  ps_ports_set(out, "patches", o.patches);
  ps_ports_set(out, "patch_grid", o.grid);
  return TRUE;
}

/* The gradient of output `name` on the encoder's device, checked against
 * the forward's output shape; *cache holds a copy when it is elsewhere. */
static gboolean grad_of(const ps_ports *grad_out, const char *name, const int64_t *shape, int ndim,
                        ps_device device, ps_tensor **cache, const float **g, GError **error) {
  const ps_tensor *t = ps_ports_get(grad_out, name);
  *g = NULL;
  if (!t) return TRUE;
  g_autofree char *what = g_strdup_printf("encoder.ruipath gradient of %s", name);
  if (!ps_tensor_check(t, what, PS_DTYPE_F32, ndim, shape, error)) return FALSE;
  t = ps_tensor_on_device(t, device, cache, error);
  if (!t) return FALSE;
  *g = ps_f32(t);
  return TRUE;
}

static gboolean enc_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  enc_comp *w = self;
  rp_encoder *e = w->e;
  /* Shapes come from the last forward. */
  const rp_cfg *c = rp_encoder_cfg(e);
  ps_port *ip = ps_ports_find(grad_in, "image");
  const gboolean want = ip && ip->needs_grad;
  const float *dcls, *dregs, *dpatches;
  int64_t B, N, R = c->num_register_tokens, D = c->embed_dim;
  if (!rp_encoder_last_geometry(e, &B, &N)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "encoder.ruipath: backward before forward");
    return FALSE;
  }
  const int64_t s_cls[] = {B, D}, s_regs[] = {B, R, D}, s_pat[] = {B, N, D};
  if (!grad_of(grad_out, "cls", s_cls, 2, w->device, &w->g_cache[0], &dcls, error) ||
      !grad_of(grad_out, "registers", s_regs, 3, w->device, &w->g_cache[1], &dregs, error) ||
      !grad_of(grad_out, "patches", s_pat, 3, w->device, &w->g_cache[2], &dpatches, error))
    return FALSE;
  ps_tensor *dimg = NULL;
  if (!rp_encoder_backward(e, ctx, dcls, dregs, dpatches, want ? &dimg : NULL, error)) return FALSE;
  if (want) ip->tensor = dimg;
  return TRUE;
}

static const ps_component_vtable enc_vtable = {
    sizeof(ps_component_vtable), enc_create, enc_destroy, enc_params, enc_forward, enc_backward,
};

const ps_component_desc rp_encoder_desc = {
    sizeof(ps_component_desc),
    PS_KIND_ENCODER,
    "encoder.ruipath",
    "RuiPath pathology encoder: a DINOv2-style ViT (cls and register tokens, LayerScale, "
    "bicubic position-embedding interpolation for other input sizes) with optional LoRA on the "
    "attention. Parameters are named as in the official DINOv2 checkpoint (cls_token, pos_embed, "
    "register_tokens, patch_embed.proj.*, blocks.N.*, norm.*): role backbone; LoRA role lora.",
    enc_config,
    enc_inputs,
    enc_outputs,
    &enc_vtable,
    rp_capability,
};
