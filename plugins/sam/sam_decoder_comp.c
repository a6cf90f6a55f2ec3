/* sam_decoder_comp.c — the `decoder.sam` component: config schema, ports,
 * prompt-port parsing, mask post-processing (Sam.postprocess_masks, or
 * MedSAM's single resize) and the vtable around mask_decoder.c. */
#include <pathseg/error.h>

#include "mask_decoder.h"
#include "sam_plugin.h"
#include "sam_weights.h"

static const ps_config_key dec_config[] = {
    {"preset", PS_TYPE_ENUM, "tiny", PS_NO_RANGE, "tiny|base",
     "fills every size key left unset: base = SAM ViT-B decoder (256 wide), tiny = CPU default"},
    {"embed_dim", PS_TYPE_INT, "null", 8, 8192, NULL, "prompt / transformer width (256)"},
    {"image_embedding_size", PS_TYPE_INT, "null", 1, 4096, NULL,
     "side of the image embedding (64)"},
    {"input_image_size", PS_TYPE_INT, "null", 1, 65536, NULL,
     "side of the frame prompts are given in, and of the first post-processing resize (1024)"},
    {"mask_in_chans", PS_TYPE_INT, "null", 4, 4096, NULL,
     "mask_downscaling width (16; parameters only)"},
    {"transformer_depth", PS_TYPE_INT, "2", 1, TW_MAX_DEPTH, NULL, "two-way blocks"},
    {"num_heads", PS_TYPE_INT, "null", 1, 256, NULL, "attention heads (8)"},
    {"mlp_dim", PS_TYPE_INT, "null", 1, 65536, NULL, "two-way block MLP width (2048)"},
    {"attention_downsample_rate", PS_TYPE_INT, "2", 1, 64, NULL, "cross-attention width divisor"},
    {"num_multimask_outputs", PS_TYPE_INT, "3", 1, SAM_MAX_MASK_TOKENS - 1, NULL,
     "masks in multimask mode (mask tokens = this + 1)"},
    {"iou_head_depth", PS_TYPE_INT, "3", 1, SAM_MAX_MLP_DEPTH, NULL, "IoU head layers"},
    {"iou_head_hidden_dim", PS_TYPE_INT, "null", 1, 65536, NULL, "IoU head width (256)"},
    {"multimask_output", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "masks 1..3 (SAM ambiguity mode); false = mask 0 only, as LISA and MedSAM"},
    {"postprocess", PS_TYPE_ENUM, "sam", PS_NO_RANGE, "sam|direct",
     "sam: bilinear to input_image_size, crop to input_size, bilinear to the output size "
     "(Sam.postprocess_masks); direct: one bilinear resize (MedSAM)"},
    {"input_size", PS_TYPE_INT_LIST, "null", 1, 65536, NULL,
     "[h, w] of the image inside the input_image_size frame before padding (default: all of it)"},
    {"output_size", PS_TYPE_INT_LIST, "null", 1, 65536, NULL,
     "[H, W] of `masks` when the `image` input is unbound (default input_size)"},
    {"checkpoint", PS_TYPE_STRING, "null", PS_NO_RANGE, NULL,
     "safetensors with the prompt encoder and mask decoder weights, official (prompt_encoder.*, "
     "mask_decoder.*) or Hugging Face SamModel names, detected; the image encoder in a full SAM "
     "file is ignored"},
    {NULL},
};
static const ps_port_desc dec_inputs[] = {
    {"image_embeddings", "[B or 1, C, S, S] f32 from the image encoder", FALSE},
    {"text_embeds", "[B, 1, C] (or [B, C]) f32 LISA <SEG> embeddings: the sparse prompt", TRUE},
    {"boxes", "[B, 4] (or [B, 1, 4]) f32 x0, y0, x1, y1 in input_image_size pixels", TRUE},
    {"points", "[B, N, 2] f32 x, y in input_image_size pixels", TRUE},
    {"point_labels", "[B, N] 1 foreground, 0 background, -1 ignore (default all 1)", TRUE},
    {"image", "[B, 3, H, W]: only its size is read; masks come out at H x W", TRUE},
    {NULL}};
static const ps_port_desc dec_outputs[] = {
    {"low_res_masks", "[B, m, 4S, 4S] f32 mask logits (m = 1, or num_multimask_outputs)", FALSE},
    {"iou", "[B, m] f32 predicted IoU", FALSE},
    {"masks", "[B, m, H, W] f32 logits post-processed to the output size (> 0: inside)", FALSE},
    {NULL}};

typedef struct {
  sam_decoder *d;
  gboolean direct;
  int64_t crop_h, crop_w, out_h, out_w; /* configured (out_* 0: from input_size) */
  /* last forward */
  int64_t B, Bi, m, OH, OW, ch, cw;
  const ps_tensor *text_in;
  pl_buf full, crop, dlow, dfull, dcrop;
  sam_host_buf labels; /* point labels as floats, host memory */
  ps_tensor *low, *iou, *masks, *dimg, *dtext;
  /* inputs and output gradients from another device: copies on the
   * decoder's device (kernels read them) or on the host (prompt
   * coordinates and labels are read there) */
  ps_tensor *c_img, *c_text, *h_boxes, *h_points, *h_labels, *c_dlow, *c_diou, *c_dmasks;
} dec_comp;

static void dec_destroy(void *self) {
  dec_comp *c = self;
  if (!c) return;
  sam_decoder_free(c->d);
  pl_buf *b[] = {&c->full, &c->crop, &c->dlow, &c->dfull, &c->dcrop};
  for (size_t i = 0; i < G_N_ELEMENTS(b); i++) pl_buf_free(b[i]);
  sam_host_buf_free(&c->labels);
  ps_tensor *t[] = {c->low,    c->iou,    c->masks,   c->dimg,     c->dtext,
                    c->c_img,  c->c_text, c->h_boxes, c->h_points, c->h_labels,
                    c->c_dlow, c->c_diou, c->c_dmasks};
  for (size_t i = 0; i < G_N_ELEMENTS(t); i++) ps_tensor_free(t[i]);
  g_free(c);
}

static void *dec_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  sam_dec_cfg c;
  sam_dec_cfg_preset(&c, ps_config_string(cfg, "preset"));
#define INT_KEY(k, field)                                                                          \
  if (ps_config_has(cfg, k)) c.field = ps_config_int(cfg, k)
  INT_KEY("embed_dim", embed_dim);
  INT_KEY("image_embedding_size", image_embedding_size);
  INT_KEY("input_image_size", input_image_size);
  INT_KEY("mask_in_chans", mask_in_chans);
  INT_KEY("transformer_depth", depth);
  INT_KEY("num_heads", num_heads);
  INT_KEY("mlp_dim", mlp_dim);
  INT_KEY("attention_downsample_rate", downsample);
  INT_KEY("num_multimask_outputs", num_multimask_outputs);
  INT_KEY("iou_head_depth", iou_head_depth);
  INT_KEY("iou_head_hidden_dim", iou_head_hidden_dim);
#undef INT_KEY
  c.multimask_output = ps_config_bool(cfg, "multimask_output");
  dec_comp *dc = g_new0(dec_comp, 1);
  dc->direct = strcmp(ps_config_string(cfg, "postprocess"), "direct") == 0;
  dc->crop_h = dc->crop_w = c.input_image_size;
  size_t n = 0;
  if (ps_config_has(cfg, "input_size")) {
    const int64_t *v = ps_config_int_list(cfg, "input_size", &n);
    if (n != 2 || v[0] > c.input_image_size || v[1] > c.input_image_size) {
      g_set_error(
          error, PS_ERROR, PS_ERROR_INVALID,
          "decoder.sam: input_size must be [h, w] within input_image_size %" G_GINT64_FORMAT,
          c.input_image_size);
      dec_destroy(dc);
      return NULL;
    }
    dc->crop_h = v[0];
    dc->crop_w = v[1];
  }
  if (ps_config_has(cfg, "output_size")) {
    const int64_t *v = ps_config_int_list(cfg, "output_size", &n);
    if (n != 2) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "decoder.sam: output_size must be [H, W]");
      dec_destroy(dc);
      return NULL;
    }
    dc->out_h = v[0];
    dc->out_w = v[1];
  }
  /* initialised (same draws on every device) and loaded on the host, then moved */
  dc->d = sam_decoder_new(&c, ps_context_device(ctx), ps_context_precision(ctx),
                          ps_context_rng(ctx), error);
  static const char *const own[] = {"prompt_encoder.", "mask_decoder.", NULL};
  if (!dc->d ||
      (ps_config_has(cfg, "checkpoint") &&
       !sam_params_load_path(sam_decoder_params(dc->d), ps_config_string(cfg, "checkpoint"), own,
                             "decoder.sam", NULL, error)) ||
      !sam_decoder_to_device(dc->d, error)) {
    dec_destroy(dc);
    return NULL;
  }
  return dc;
}

static ps_param_list dec_params(void *self) {
  dec_comp *c = self;
  return pl_params_list(sam_decoder_params(c->d));
}

/* The batch of an optional prompt tensor (FALSE with an error on a mismatch). */
static gboolean prompt_batch(const ps_tensor *t, const char *what, int64_t *B, GError **error) {
  if (!t) return TRUE;
  if (*B >= 0 && t->shape[0] != *B) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "decoder.sam: %s has batch %" G_GINT64_FORMAT ", other prompts %" G_GINT64_FORMAT,
                what, t->shape[0], *B);
    return FALSE;
  }
  *B = t->shape[0];
  return TRUE;
}

static gboolean check_f32(const ps_tensor *t, const char *what, int64_t numel_per_b,
                          GError **error) {
  if (t->dtype != PS_DTYPE_F32 || t->ndim < 1 || ps_tensor_numel(t) != t->shape[0] * numel_per_b) {
    char buf[96];
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "decoder.sam: %s must be f32 with %" G_GINT64_FORMAT
                " values per prompt, got %s %s",
                what, numel_per_b, ps_dtype_name(t->dtype), ps_shape_format(t, buf, sizeof buf));
    return FALSE;
  }
  return TRUE;
}

/* The decoder's kernel table, checking that the step's context is of the
 * device the decoder was made for (its parameters and buffers live there). */
static const ps_kernels *kernels_of(const sam_decoder *d, ps_context *ctx, GError **error) {
  if (ps_context_device(ctx) != sam_decoder_device(d)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "decoder.sam: run with a context of another device than it was created with");
    return NULL;
  }
  return ps_context_kernels(ctx, error); /* the table the decoder was made with */
}

static gboolean dec_forward(void *self, ps_context *ctx, const ps_ports *in, ps_ports *out,
                            GError **error) {
  dec_comp *c = self;
  sam_decoder *d = c->d;
  const sam_dec_cfg *cfg = sam_decoder_cfg(d);
  ps_device dev = sam_decoder_device(d);
  const ps_kernels *k = kernels_of(d, ctx, error);
  if (!k) return FALSE;
  int64_t C = cfg->embed_dim, S = cfg->image_embedding_size, L = 4 * S;
  const ps_tensor *img = ps_ports_require(in, "decoder.sam", "image_embeddings", error);
  int64_t is[4] = {-1, C, S, S};
  if (!img ||
      !ps_tensor_check(img, "decoder.sam input image_embeddings", PS_DTYPE_F32, 4, is, error))
    return FALSE;
  const ps_tensor *text = ps_ports_get(in, "text_embeds"), *boxes = ps_ports_get(in, "boxes");
  const ps_tensor *points = ps_ports_get(in, "points"), *labels = ps_ports_get(in, "point_labels");
  const ps_tensor *image = ps_ports_get(in, "image");
  int64_t B = -1;
  if (!prompt_batch(text, "text_embeds", &B, error) || !prompt_batch(boxes, "boxes", &B, error) ||
      !prompt_batch(points, "points", &B, error))
    return FALSE;
  if (B < 0) B = img->shape[0];
  sam_prompts pr = {.B = B};
  if (text) {
    const ps_tensor *t;
    if (!check_f32(text, "text_embeds", C, error) ||
        !(t = ps_tensor_on_device(text, dev, &c->c_text, error)))
      return FALSE;
    pr.text = ps_f32(t);
  }
  if (boxes) {
    const ps_tensor *t;
    if (!check_f32(boxes, "boxes", 4, error) ||
        !(t = ps_tensor_on_device(boxes, PS_DEVICE_CPU, &c->h_boxes, error)))
      return FALSE;
    pr.boxes = ps_f32(t);
  }
  if (points) {
    if (points->ndim != 3 || points->shape[2] != 2 ||
        !check_f32(points, "points", points->shape[1] * 2, error)) {
      if (error && !*error)
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "decoder.sam: points must be [B, N, 2] f32");
      return FALSE;
    }
    const ps_tensor *hp = ps_tensor_on_device(points, PS_DEVICE_CPU, &c->h_points, error);
    if (!hp) return FALSE;
    pr.points = ps_f32(hp);
    pr.Np = points->shape[1];
    if (labels) {
      if (ps_tensor_numel(labels) != B * pr.Np) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                    "decoder.sam: point_labels must be [B, N] like points");
        return FALSE;
      }
      if (!(labels = ps_tensor_on_device(labels, PS_DEVICE_CPU, &c->h_labels, error)) ||
          !sam_host_buf_ensure(&c->labels, B * pr.Np, error))
        return FALSE;
      for (int64_t i = 0; i < B * pr.Np; i++) {
        switch (labels->dtype) {
        case PS_DTYPE_F32:
          c->labels.p[i] = ((const float *)labels->data)[i];
          break;
        case PS_DTYPE_I32:
          c->labels.p[i] = (float)((const int32_t *)labels->data)[i];
          break;
        case PS_DTYPE_I64:
          c->labels.p[i] = (float)((const int64_t *)labels->data)[i];
          break;
        default:
          g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                      "decoder.sam: point_labels must be f32, i32 or i64, not %s",
                      ps_dtype_name(labels->dtype));
          return FALSE;
        }
      }
      pr.labels = c->labels.p;
    }
  }
  const ps_tensor *imgd = ps_tensor_on_device(img, dev, &c->c_img, error);
  const float *low, *iou;
  if (!imgd || !sam_decoder_forward(d, ctx, ps_f32(imgd), img->shape[0], &pr, &low, &iou, error))
    return FALSE;
  int64_t m = sam_decoder_mask_count(d);
  c->B = B;
  c->Bi = img->shape[0];
  c->m = m;
  c->text_in = text;
  int64_t ls[4] = {B, m, L, L}, ios[2] = {B, m};
  if (!ps_tensor_ensure_on(&c->low, dev, PS_DTYPE_F32, 4, ls, error) ||
      !ps_tensor_ensure_on(&c->iou, dev, PS_DTYPE_F32, 2, ios, error))
    return FALSE;
  k->copy_on_device(c->low->data, low, c->low->nbytes);
  k->copy_on_device(c->iou->data, iou, c->iou->nbytes);

  /* post-processing */
  int64_t Sin = cfg->input_image_size;
  c->ch = c->crop_h;
  c->cw = c->crop_w;
  if (image && image->ndim == 4) {
    c->OH = image->shape[2];
    c->OW = image->shape[3];
  } else if (c->out_h > 0) {
    c->OH = c->out_h;
    c->OW = c->out_w;
  } else {
    c->OH = c->ch;
    c->OW = c->cw;
  }
  int64_t ms[4] = {B, m, c->OH, c->OW}, NC = B * m;
  if (!ps_tensor_ensure_on(&c->masks, dev, PS_DTYPE_F32, 4, ms, error)) return FALSE;
  if (c->direct) {
    k->resize_forward(ps_f32(c->masks), low, NC, L, L, c->OH, c->OW, 0, 0, PS_RESIZE_BILINEAR);
  } else {
    if (!pl_buf_ensure(&c->full, k, NC * Sin * Sin, error) ||
        !pl_buf_ensure(&c->crop, k, NC * c->ch * c->cw, error))
      return FALSE;
    k->resize_forward(c->full.p, low, NC, L, L, Sin, Sin, 0, 0, PS_RESIZE_BILINEAR);
    for (int64_t p = 0; p < NC; p++) /* the top-left ch x cw of each plane */
      k->copy_2d(c->crop.p + p * c->ch * c->cw, c->cw, c->full.p + p * Sin * Sin, Sin, c->ch, c->cw,
                 0);
    k->resize_forward(ps_f32(c->masks), c->crop.p, NC, c->ch, c->cw, c->OH, c->OW, 0, 0,
                      PS_RESIZE_BILINEAR);
  }
  ps_ports_set(out, "low_res_masks", c->low);
  ps_ports_set(out, "iou", c->iou);
  ps_ports_set(out, "masks", c->masks);
  return TRUE;
}

static gboolean dec_backward(void *self, ps_context *ctx, const ps_ports *grad_out,
                             ps_ports *grad_in, GError **error) {
  dec_comp *c = self;
  sam_decoder *d = c->d;
  const sam_dec_cfg *cfg = sam_decoder_cfg(d);
  ps_device dev = sam_decoder_device(d);
  const ps_kernels *k = kernels_of(d, ctx, error);
  if (!k) return FALSE;
  const ps_tensor *dl = ps_ports_get(grad_out, "low_res_masks");
  const ps_tensor *di = ps_ports_get(grad_out, "iou");
  const ps_tensor *dm = ps_ports_get(grad_out, "masks");
  if (!dl && !di && !dm) return TRUE;
  if ((dl && ps_tensor_numel(dl) != ps_tensor_numel(c->low)) ||
      (di && ps_tensor_numel(di) != ps_tensor_numel(c->iou)) ||
      (dm && ps_tensor_numel(dm) != ps_tensor_numel(c->masks))) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "decoder.sam: an output gradient does not match its output's size");
    return FALSE;
  }
  /* normally on the decoder's device already (the loss's input gradients) */
  if ((dl && !(dl = ps_tensor_on_device(dl, dev, &c->c_dlow, error))) ||
      (di && !(di = ps_tensor_on_device(di, dev, &c->c_diou, error))) ||
      (dm && !(dm = ps_tensor_on_device(dm, dev, &c->c_dmasks, error))))
    return FALSE;
  int64_t L = 4 * cfg->image_embedding_size, NC = c->B * c->m, Sin = cfg->input_image_size;
  if (!pl_buf_ensure(&c->dlow, k, NC * L * L, error)) return FALSE;
  if (dl)
    k->copy_on_device(c->dlow.p, dl->data, dl->nbytes);
  else
    pl_buf_zero(&c->dlow);
  if (dm) {
    if (c->direct) {
      k->resize_backward(c->dlow.p, ps_f32(dm), NC, L, L, c->OH, c->OW, 0, 0, PS_RESIZE_BILINEAR);
    } else {
      if (!pl_buf_ensure(&c->dcrop, k, NC * c->ch * c->cw, error) ||
          !pl_buf_ensure(&c->dfull, k, NC * Sin * Sin, error))
        return FALSE;
      pl_buf_zero(&c->dcrop);
      k->resize_backward(c->dcrop.p, ps_f32(dm), NC, c->ch, c->cw, c->OH, c->OW, 0, 0,
                         PS_RESIZE_BILINEAR);
      pl_buf_zero(&c->dfull);
      for (int64_t p = 0; p < NC; p++)
        k->copy_2d(c->dfull.p + p * Sin * Sin, Sin, c->dcrop.p + p * c->ch * c->cw, c->cw, c->ch,
                   c->cw, 0);
      k->resize_backward(c->dlow.p, c->dfull.p, NC, L, L, Sin, Sin, 0, 0, PS_RESIZE_BILINEAR);
    }
  }
  ps_port *pi = ps_ports_find(grad_in, "image_embeddings");
  ps_port *pt = ps_ports_find(grad_in, "text_embeds");
  const float *dimg = NULL, *dtext = NULL;
  if (!sam_decoder_backward(d, ctx, c->dlow.p, di ? ps_f32(di) : NULL, &dimg, &dtext, error))
    return FALSE;
  if (pi && pi->needs_grad) {
    int64_t S = cfg->image_embedding_size, s[4] = {c->Bi, cfg->embed_dim, S, S};
    if (!ps_tensor_ensure_on(&c->dimg, dev, PS_DTYPE_F32, 4, s, error)) return FALSE;
    k->copy_on_device(c->dimg->data, dimg, c->dimg->nbytes);
    pi->tensor = c->dimg;
  }
  if (pt && pt->needs_grad && c->text_in && dtext) {
    if (!ps_tensor_ensure_on(&c->dtext, dev, PS_DTYPE_F32, c->text_in->ndim, c->text_in->shape,
                             error))
      return FALSE;
    k->copy_on_device(c->dtext->data, dtext, c->dtext->nbytes);
    pt->tensor = c->dtext;
  }
  return TRUE;
}

static const ps_component_vtable dec_vtable = {
    sizeof(ps_component_vtable), dec_create, dec_destroy, dec_params, dec_forward, dec_backward,
};

const ps_component_desc sam_decoder_desc = {
    sizeof(ps_component_desc),
    PS_KIND_DECODER,
    "decoder.sam",
    "SAM prompt encoder (random-Fourier PE, point/box/no-mask embeddings, LISA's text-embedding "
    "prompt) and mask decoder (two-way transformer, upscaling, hypernetwork MLPs, IoU head), "
    "with post-processing to the output size. Parameters as in the official checkpoint: "
    "mask_decoder.* role full, prompt_encoder.* role frozen (as LISA and MedSAM train).",
    dec_config,
    dec_inputs,
    dec_outputs,
    &dec_vtable,
    sam_capability,
};
