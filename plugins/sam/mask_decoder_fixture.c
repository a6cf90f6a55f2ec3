/* mask_decoder_fixture.c — runs the sam.mask_decoder fixture: the dense PE,
 * the text-prompted (LISA: text embedding as the only sparse token, mask 0)
 * and the box-prompted (multimask: masks 1..3) decoder calls. */
#include <pathseg/error.h>

#include "mask_decoder_internal.h"
#include "sam_fixture.h"

static gboolean put_new(ps_fixture *fx, const char *name, int32_t ndim, const int64_t *shape,
                        const float *data, GError **error) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, error);
  if (!t) return FALSE;
  memcpy(t->data, data, t->nbytes);
  ps_fixture_put(fx, name, t);
  return TRUE;
}

static gboolean run_case(ps_fixture *fx, ps_context *ctx, sam_decoder *d, const ps_tensor *img,
                         const sam_prompts *pr, gboolean multimask, const char *suffix,
                         GError **error) {
  sam_decoder_set_multimask(d, multimask);
  const float *low, *iou;
  if (!sam_decoder_forward(d, ctx, ps_f32(img), img->shape[0], pr, &low, &iou, error)) return FALSE;
  int64_t m = sam_decoder_mask_count(d), L = 4 * sam_decoder_cfg(d)->image_embedding_size;
  int64_t ls[4] = {pr->B, m, L, L}, is[2] = {pr->B, m};
  g_autofree char *n1 = g_strconcat("low_res_masks_", suffix, NULL);
  g_autofree char *n2 = g_strconcat("iou_", suffix, NULL);
  return put_new(fx, n1, 4, ls, low, error) && put_new(fx, n2, 2, is, iou, error);
}

gboolean sam_decoder_run_fixture(ps_fixture *fx, ps_context *ctx, GError **error) {
  static const char *const known[] = {
      "dense_pe", "low_res_masks_text", "iou_text", "low_res_masks_box", "iou_box", NULL};
  if (!sam_fx_check_outputs(fx, known, error)) return FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonObject *o = sam_fx_config(fx, parser, error);
  if (!o) return FALSE;
  sam_dec_cfg c;
  sam_dec_cfg_preset(&c, "tiny");
  c.embed_dim = (int64_t)sam_fx_num(o, "embed_dim", 0);
  c.image_embedding_size = (int64_t)sam_fx_num(o, "image_embedding_size", 0);
  c.input_image_size = (int64_t)sam_fx_num(o, "input_image_size", 0);
  c.mask_in_chans = (int64_t)sam_fx_num(o, "mask_in_chans", 16);
  c.depth = (int64_t)sam_fx_num(o, "transformer_depth", 2);
  c.num_heads = (int64_t)sam_fx_num(o, "num_heads", 8);
  c.mlp_dim = (int64_t)sam_fx_num(o, "mlp_dim", 2048);
  c.downsample = (int64_t)sam_fx_num(o, "attention_downsample_rate", 2);
  c.num_multimask_outputs = (int64_t)sam_fx_num(o, "num_multimask_outputs", 3);
  c.iou_head_depth = (int64_t)sam_fx_num(o, "iou_head_depth", 3);
  c.iou_head_hidden_dim = (int64_t)sam_fx_num(o, "iou_head_hidden_dim", 256);
  c.ln_eps = sam_fx_num(o, "transformer_layer_norm_eps", 1e-5);
  c.ln2d_eps = sam_fx_num(o, "layer_norm2d_eps", 1e-6);
  /* the fixture runs on the host (its inputs and outputs are host tensors) */
  sam_decoder *d = sam_decoder_new(&c, PS_DEVICE_CPU, 0, NULL, error);
  if (!d) return FALSE;
  gboolean ok = FALSE;
  g_autoptr(ps_tensor) img = NULL;
  g_autoptr(ps_tensor) text = NULL;
  g_autoptr(ps_tensor) box = NULL;
  int64_t S = c.image_embedding_size, C = c.embed_dim;
  int64_t is[4] = {-1, C, S, S}, ts[3] = {-1, 1, C}, bs[2] = {-1, 4};
  if (!sam_fx_load(fx, sam_decoder_params(d), error) ||
      !(img = ps_fixture_get_f32(fx, "input.image_embeddings", error)) ||
      !ps_tensor_check(img, "sam.mask_decoder fixture input.image_embeddings", PS_DTYPE_F32, 4, is,
                       error))
    goto out;
  /* dense PE, checked against output.dense_pe (= the input.image_pe the reference used) */
  {
    g_autofree float *pe = g_new(float, C *S *S);
    sam_dense_pe(d, sam_gauss_host(d, NULL), pe); /* host parameters: no copy, no error */
    int64_t ps[4] = {1, C, S, S};
    if (!put_new(fx, "dense_pe", 4, ps, pe, error)) goto out;
  }
  if (ps_fixture_has(fx, "output.low_res_masks_text")) {
    if (!(text = ps_fixture_get_f32(fx, "input.text_embed", error)) ||
        !ps_tensor_check(text, "sam.mask_decoder fixture input.text_embed", PS_DTYPE_F32, 3, ts,
                         error))
      goto out;
    sam_prompts pr = {.B = text->shape[0], .text = ps_f32(text)};
    if (!run_case(fx, ctx, d, img, &pr, FALSE, "text", error)) goto out;
  }
  if (ps_fixture_has(fx, "output.low_res_masks_box")) {
    if (!(box = ps_fixture_get_f32(fx, "input.box", error)) ||
        !ps_tensor_check(box, "sam.mask_decoder fixture input.box", PS_DTYPE_F32, 2, bs, error))
      goto out;
    sam_prompts pr = {.B = box->shape[0], .boxes = ps_f32(box)};
    if (!run_case(fx, ctx, d, img, &pr, TRUE, "box", error)) goto out;
  }
  ok = TRUE;
out:
  sam_decoder_free(d);
  return ok;
}
