/* mae_component.c — component `ssl.mae`: the whole official
 * MaskedAutoencoderViT (encoder, decoder and normalised-pixel loss) as a
 * graph component, so that `stage.fit` can pre-train a plain ViT with MAE
 * (loss: "mae.loss"), and the home of the `mae.loss` fixture capability.
 *
 * forward:  image [B, C, img, img] f32, noise [B, L] f32 (optional: drawn
 *           uniformly from the context's RNG when unbound, like torch.rand)
 *        -> loss [1], pred [B, L, p*p*C], mask [B, L] (1 = removed),
 *           ids_restore [B, L] i64, latent [B, 1+len_keep, D].
 * backward: from loss (and pred, when a gradient reaches it) into every
 *           training parameter and, when asked, the image.
 * Runs on the context's device: parameters move there once initialised,
 * outputs and gradients live there; the noise and the masking bookkeeping
 * (ids_restore) are made on the host and copied. */
#include <string.h>

#include <pathseg/error.h>

#include "ssl_plugin.h"

static const ps_config_key mae_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base",
     "fills every size key left unset: base = mae_vit_base_patch16_dec512d8b, tiny = CPU default"},
    {"img_size", PS_TYPE_INT, "null", 1, 16384, NULL, "input side in pixels (224)"},
    {"patch_size", PS_TYPE_INT, "null", 1, 1024, NULL, "patch side in pixels (16)"},
    {"in_chans", PS_TYPE_INT, "3", 1, 64, NULL, "image channels"},
    {"embed_dim", PS_TYPE_INT, "null", 4, 16384, NULL, "encoder width (768)"},
    {"depth", PS_TYPE_INT, "null", 0, 256, NULL, "encoder blocks (12)"},
    {"num_heads", PS_TYPE_INT, "null", 1, 256, NULL, "encoder heads (12)"},
    {"decoder_embed_dim", PS_TYPE_INT, "null", 4, 16384, NULL, "decoder width (512)"},
    {"decoder_depth", PS_TYPE_INT, "null", 0, 256, NULL, "decoder blocks (8)"},
    {"decoder_num_heads", PS_TYPE_INT, "null", 1, 256, NULL, "decoder heads (16)"},
    {"mlp_ratio", PS_TYPE_FLOAT, "4.0", 0.01, 64, NULL, "MLP width / block width"},
    {"layer_norm_eps", PS_TYPE_FLOAT, "1e-6", 1e-12, 1, NULL, "LayerNorm eps"},
    {"norm_pix_loss", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "target = per-patch normalised pixels (unbiased variance, eps 1e-6), as the MAE recipe"},
    {"mask_ratio", PS_TYPE_FLOAT, "0.75", 0, 0.999, NULL, "fraction of patches removed"},
    {NULL},
};

static const ps_port_desc mae_inputs[] = {
    {"image", "[B, in_chans, img_size, img_size] f32 (ImageNet-normalised in the MAE recipe)",
     FALSE},
    {"noise",
     "[B, L] f32: the masking noise (argsort ascending, smallest kept); drawn when unbound", TRUE},
    {NULL},
};
static const ps_port_desc mae_outputs[] = {
    {"loss", "[1] f32: mean normalised-pixel MSE over the removed patches of the batch", FALSE},
    {"pred", "[B, L, p*p*in_chans] f32: the decoder's reconstruction of every patch", FALSE},
    {"mask", "[B, L] f32: 1 = removed, 0 = kept, in patch order", FALSE},
    {"ids_restore", "[B, L] i64: argsort(argsort(noise))", FALSE},
    {"latent", "[B, 1+len_keep, embed_dim] f32: the encoder output after its norm", FALSE},
    {NULL},
};

typedef struct {
  mae_model m;
  ps_device device;
  const ps_kernels *k;
  float *noise; /* host (noise_cap), drawn when the input is unbound */
  int64_t noise_cap;
  ps_tensor *out[5]; /* loss, pred, mask, ids_restore, latent (on the device) */
  ps_tensor *dimage; /* [B, C, img, img] gradient of the input, when asked */
  /* inputs on the device they are needed on (when they arrive elsewhere) */
  ps_tensor *cache_image, *cache_noise, *cache_dloss, *cache_dpred;
} mae_comp;

static void mae_comp_destroy(void *self) {
  mae_comp *c = self;
  if (!c) return;
  mae_model_clear(&c->m);
  g_free(c->noise);
  for (int i = 0; i < 5; i++) ps_tensor_free(c->out[i]);
  ps_tensor_free(c->dimage);
  ps_tensor *caches[] = {c->cache_image, c->cache_noise, c->cache_dloss, c->cache_dpred};
  for (size_t i = 0; i < G_N_ELEMENTS(caches); i++) ps_tensor_free(caches[i]);
  g_free(c);
}

static void *mae_comp_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  mae_cfg c;
  mae_cfg_base(&c);
  if (strcmp(ps_config_string(cfg, "preset"), "tiny") == 0) {
    c.img_size = 64;
    c.patch_size = 8;
    c.embed_dim = 64;
    c.depth = 2;
    c.num_heads = 2;
    c.dec_dim = 32;
    c.dec_depth = 1;
    c.dec_heads = 2;
  }
#define INT_KEY(key, field)                                                                        \
  if (ps_config_has(cfg, key)) c.field = ps_config_int(cfg, key)
  INT_KEY("img_size", img_size);
  INT_KEY("patch_size", patch_size);
  INT_KEY("in_chans", in_chans);
  INT_KEY("embed_dim", embed_dim);
  INT_KEY("depth", depth);
  INT_KEY("num_heads", num_heads);
  INT_KEY("decoder_embed_dim", dec_dim);
  INT_KEY("decoder_depth", dec_depth);
  INT_KEY("decoder_num_heads", dec_heads);
#undef INT_KEY
  c.mlp_ratio = ps_config_float(cfg, "mlp_ratio");
  c.eps = ps_config_float(cfg, "layer_norm_eps");
  c.norm_pix = ps_config_bool(cfg, "norm_pix_loss");
  c.mask_ratio = ps_config_float(cfg, "mask_ratio");
  mae_comp *self = g_new0(mae_comp, 1);
  self->device = ps_context_device(ctx);
  self->k = ps_context_kernels(ctx, error); /* at the run's precision */
  /* initialised on the host (the same draws on every device), then moved */
  if (!self->k || !mae_model_init(&self->m, &c, ps_context_rng(ctx), error) ||
      !pl_params_move_to(&self->m.P, self->device, error)) {
    g_prefix_error(error, "ssl.mae: ");
    mae_comp_destroy(self);
    return NULL;
  }
  return self;
}

static ps_param_list mae_comp_params(void *self) {
  return pl_params_list(&((mae_comp *)self)->m.P);
}

static gboolean mae_comp_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                                 GError **error) {
  mae_comp *s = self;
  const mae_cfg *c = &s->m.c;
  const ps_tensor *image = ps_ports_require(in, "ssl.mae", "image", error);
  if (!image) return FALSE;
  const int64_t ishape[4] = {-1, c->in_chans, c->img_size, c->img_size};
  if (!ps_tensor_check(image, "ssl.mae input image", PS_DTYPE_F32, 4, ishape, error)) return FALSE;
  const int64_t B = image->shape[0], g = c->img_size / c->patch_size, L = g * g;
  const ps_tensor *noise = ps_ports_get(in, "noise");
  const float *np;
  if (noise) {
    const int64_t nshape[2] = {B, L};
    if (!ps_tensor_check(noise, "ssl.mae input noise", PS_DTYPE_F32, 2, nshape, error))
      return FALSE;
    /* the masking is host bookkeeping: the noise is needed there */
    if (!(noise = ps_tensor_on_device(noise, PS_DEVICE_CPU, &s->cache_noise, error))) return FALSE;
    np = ps_f32(noise);
  } else {
    if (s->noise_cap < B * L) {
      s->noise = g_renew(float, s->noise, B *L);
      s->noise_cap = B * L;
    }
    for (int64_t i = 0; i < B * L; i++) s->noise[i] = ps_rng_uniform(ps_context_rng(ctx));
    np = s->noise;
  }
  if (!(image = ps_tensor_on_device(image, s->device, &s->cache_image, error)) ||
      !mae_model_forward(&s->m, s->k, ctx, ps_f32(image), np, B, error))
    return FALSE;
  const mae_model *m = &s->m;
  const int64_t one = 1, pshape[3] = {B, L, m->P_dim}, mshape[2] = {B, L},
                lshape[3] = {B, 1 + m->Lk, c->embed_dim};
  const ps_device dev = s->device;
  if (!ps_tensor_ensure_on(&s->out[0], dev, PS_DTYPE_F32, 1, &one, error) ||
      !ps_tensor_ensure_on(&s->out[1], dev, PS_DTYPE_F32, 3, pshape, error) ||
      !ps_tensor_ensure_on(&s->out[2], dev, PS_DTYPE_F32, 2, mshape, error) ||
      !ps_tensor_ensure_on(&s->out[3], dev, PS_DTYPE_I64, 2, mshape, error) ||
      !ps_tensor_ensure_on(&s->out[4], dev, PS_DTYPE_F32, 3, lshape, error))
    return FALSE;
  const ps_kernels *k = s->k;
  const float loss = (float)m->loss;
  k->copy_to_device(s->out[0]->data, &loss, sizeof loss);
  k->copy_on_device(s->out[1]->data, m->pred.p, s->out[1]->nbytes);
  k->copy_on_device(s->out[2]->data, m->mask.p, s->out[2]->nbytes);
  k->copy_to_device(s->out[3]->data, m->ids_restore, s->out[3]->nbytes);
  k->copy_on_device(s->out[4]->data, m->latent.p, s->out[4]->nbytes);
  static const char *const names[5] = {"loss", "pred", "mask", "ids_restore", "latent"};
  for (int i = 0; i < 5; i++) ps_ports_set(out, names[i], s->out[i]);
  return TRUE;
}

static gboolean mae_comp_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                                  ps_ports *grad_in, GError **error) {
  mae_comp *s = self;
  const ps_tensor *dl = ps_ports_get(grad_out, "loss");
  const ps_tensor *dp = ps_ports_get(grad_out, "pred");
  if (ps_ports_get(grad_out, "latent")) {
    g_set_error(error, PS_ERROR, PS_ERROR_UNSUPPORTED,
                "ssl.mae: a gradient reached 'latent'; only loss and pred are differentiable "
                "outputs (use a graph that consumes pred or loss)");
    return FALSE;
  }
  if (dp && ps_tensor_numel(dp) != s->m.B * s->m.L * s->m.P_dim) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "ssl.mae: gradient of pred has the wrong size");
    return FALSE;
  }
  /* the loss's gradient is a scalar the host needs; pred's is read by kernels */
  if (dl && !(dl = ps_tensor_on_device(dl, PS_DEVICE_CPU, &s->cache_dloss, error))) return FALSE;
  if (dp && !(dp = ps_tensor_on_device(dp, s->device, &s->cache_dpred, error))) return FALSE;
  ps_port *ip = ps_ports_find(grad_in, "image");
  float *dimg = NULL;
  if (ip && ip->needs_grad) {
    const int64_t shape[4] = {s->m.B, s->m.c.in_chans, s->m.c.img_size, s->m.c.img_size};
    if (!ps_tensor_ensure_on(&s->dimage, s->device, PS_DTYPE_F32, 4, shape, error)) return FALSE;
    s->k->mem_zero(s->dimage->data, s->dimage->nbytes);
    dimg = ps_f32(s->dimage);
  }
  if (!mae_model_backward(&s->m, s->k, ctx, dl ? ps_f32(dl)[0] : 0.0, dp ? ps_f32(dp) : NULL, dimg,
                          error))
    return FALSE;
  if (dimg) ip->tensor = s->dimage;
  return TRUE;
}

static const void *mae_comp_capability(const char *name) {
  return strcmp(name, "fixture") == 0 ? &ssl_mae_fixture_iface : NULL;
}

static const ps_component_vtable mae_vtable = {
    sizeof(ps_component_vtable),
    mae_comp_create,
    mae_comp_destroy,
    mae_comp_params,
    mae_comp_forward,
    mae_comp_backward,
};

const ps_component_desc ssl_mae_desc = {
    sizeof(ps_component_desc),
    PS_KIND_ENCODER,
    "ssl.mae",
    "MAE's MaskedAutoencoderViT (facebookresearch/mae): patch embedding, random masking from "
    "noise, ViT encoder, light decoder and the normalised-pixel loss over the removed patches. "
    "Parameters carry the official state_dict names; runs the mae.loss fixture.",
    mae_config,
    mae_inputs,
    mae_outputs,
    &mae_vtable,
    mae_comp_capability,
};
