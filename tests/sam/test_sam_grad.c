/* test_sam_grad.c — backward of encoder.medsam and decoder.sam against
 * finite differences at tiny sizes, through the plugin's vtables: every
 * parameter tensor (a few random entries each, plus the min/max pixels of
 * MedSAM's normalisation) and the differentiable inputs (image,
 * image_embeddings, text_embeds), AdaptFormer on and off, only-adapter
 * training (frozen backbone: no gradient buffers, adapter gradients equal to
 * full training's), the adapter's zero-initialised identity, single- and
 * multi-mask outputs with both post-processings, one image embedding shared
 * by two prompts, and the encoder -> decoder chain as SFT trains it.
 *
 * Parameters are drawn at a well-conditioned point (matrices N(0, 1/fan_in),
 * norm gains 1 + N(0, 0.3)); the decoder is >= 32 wide so that its
 * LayerNorm2d over embed_dim / 4 channels is smooth.
 *
 * Tolerances: the forward runs in float32, so the loss L = sum <R, out> (a
 * few hundred terms of order 1, accumulated in double) carries rounding
 * noise around 1e-5; with a step of 1e-2 the central difference has noise
 * ~1e-3 and a truncation error eps^2 f''' / 6 ~ 1e-4 relative. An entry
 * passes when |fd - an| <= 2e-3 + 2e-2 max(|fd|, |an|). ReLU kinks are
 * handled by the harness (gh_comp.kinks: a retry at eps / 4, one-sided
 * differences at a kink). A wrong gradient (a missing term, a wrong scale,
 * a transposed weight) is off by O(|an|): the suite was checked to fail when the adapter
 * scale, a PE gradient term, no_mask_embed's gradient or the min-max
 * gradient is removed from the backward. */
#include "grad_harness.h"

#include <pathseg/pipeline.h>

#define EPS 1e-2
#define ATOL 2e-3
#define RTOL 2e-2

static ps_registry *reg;

static gboolean all_params(const ps_param *p) {
  return TRUE;
}
static gboolean adapters_only(const ps_param *p) {
  return p->role == PS_ROLE_ADAPTER;
}
/* What a decoder can train: everything but the PE buffer and the unused mask prompt. */
static gboolean decoder_trainable(const ps_param *p) {
  return !strstr(p->name, "positional_encoding_gaussian_matrix") &&
         !strstr(p->name, "mask_downscaling");
}

/* A component with ReLUs (kinks) from the build tree's SAM plugin. */
static gboolean init(gh_comp *c, ps_context *ctx, const char *name, const char *yaml) {
  if (!gh_init(c, reg, ctx, name, yaml)) return FALSE;
  c->kinks = TRUE;
  return TRUE;
}

#define ENC_CFG(extra)                                                                             \
  "{embed_dim: 8, depth: 2, num_heads: 2, mlp_ratio: 2.0, patch_size: 8, img_size: 32, "           \
  "window_size: 3, global_attn_indexes: [1], out_chans: 8, adapter.dropout: 0.0, " extra "}"

static void test_encoder(ps_context *ctx, gboolean adapter, gboolean medsam) {
  ps_rng rng;
  ps_rng_seed(&rng, 11 + adapter * 2 + medsam);
  gh_comp enc;
  g_autofree char *cfg = g_strdup_printf(ENC_CFG("adapter: %s, adapter.dim: 4, medsam_input: %s"),
                                         adapter ? "true" : "false", medsam ? "true" : "false");
  gboolean ok = init(&enc, ctx, "encoder.medsam", cfg);
  PS_CHECK(ok);
  if (!ok) return;
  gh_randomize_norm(&enc, &rng, 0.3, 1.0, 0.3);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 32, 32);
  if (medsam) /* 0..255-like values: min-max brings them back to [0, 1] */
    for (int64_t i = 0; i < ps_tensor_numel(img); i++) ps_f32(img)[i] = 128 + 40 * ps_f32(img)[i];
  gh_set_input(&enc, "image", img, TRUE);
  gh_train(&enc, all_params);
  PS_CHECK(!isnan(gh_loss(&enc)));
  gh_loss_on(&enc, "embeddings", &rng);
  PS_CHECK(gh_backward(&enc));
  double wp = gh_check_params(&enc, 3, EPS, ATOL, RTOL, &rng);
  double wi = gh_check_input(&enc, "image", 6, EPS, ATOL, RTOL, &rng);
  if (medsam) {
    /* min-max normalisation: the extremes of each image get the extra terms */
    g_autoptr(ps_tensor) g = ps_tensor_copy(ps_ports_get(&enc.gin, "image"), NULL);
    int64_t per = 3 * 32 * 32;
    for (int64_t b = 0; b < 2; b++) {
      int64_t lo = b * per, hi = b * per;
      for (int64_t i = b * per; i < (b + 1) * per; i++) {
        if (ps_f32(img)[i] < ps_f32(img)[lo]) lo = i;
        if (ps_f32(img)[i] > ps_f32(img)[hi]) hi = i;
      }
      wi = fmax(wi, gh_check_one(&enc, img, ps_f32(g), lo, EPS, ATOL, RTOL, "image (min)"));
      wi = fmax(wi, gh_check_one(&enc, img, ps_f32(g), hi, EPS, ATOL, RTOL, "image (max)"));
    }
  }
  printf("encoder adapter=%d medsam=%d: worst error/tolerance params %.3f, image %.3f\n", adapter,
         medsam, wp, wi);
  PS_CHECK(wp <= 1.0 && wi <= 1.0);
  /* adapter parameters exist exactly when asked for, with role adapter */
  ps_param_list pl = enc.desc->vtable->params(enc.self);
  int n_adapt = 0;
  for (size_t i = 0; i < pl.count; i++)
    if (strstr(pl.items[i].name, ".adaptmlp.")) {
      n_adapt++;
      PS_CHECK(pl.items[i].role == PS_ROLE_ADAPTER);
    } else {
      PS_CHECK(pl.items[i].role == PS_ROLE_BACKBONE);
    }
  PS_CHECK(n_adapt == (adapter ? 2 * 4 : 0));
  gh_clear(&enc);
}

/* Only the adapters train: the backbone has no gradient buffers, the adapter
 * gradients equal those of full training and the finite differences. */
static void test_encoder_adapter_only(ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 5);
  gh_comp enc;
  gboolean ok = init(&enc, ctx, "encoder.medsam", ENC_CFG("adapter: true, adapter.dim: 4"));
  PS_CHECK(ok);
  if (!ok) return;
  gh_randomize_norm(&enc, &rng, 0.3, 1.0, 0.3);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 1, 3, 32, 32);
  gh_set_input(&enc, "image", img, FALSE);
  gh_loss(&enc);
  gh_loss_on(&enc, "embeddings", &rng);
  ps_param_list pl = enc.desc->vtable->params(enc.self);
  gh_train(&enc, all_params);
  PS_CHECK(gh_backward(&enc));
  GPtrArray *full = g_ptr_array_new_with_free_func((GDestroyNotify)ps_tensor_free);
  for (size_t i = 0; i < pl.count; i++)
    g_ptr_array_add(full, ps_tensor_copy(pl.items[i].grad, NULL));
  gh_train(&enc, adapters_only);
  PS_CHECK(gh_backward(&enc));
  ps_port *gi = ps_ports_find(&enc.gin, "image");
  PS_CHECK(gi->tensor == NULL); /* not asked for */
  int n_train = 0;
  for (size_t i = 0; i < pl.count; i++) {
    if (pl.items[i].role != PS_ROLE_ADAPTER) {
      PS_CHECK(pl.items[i].grad == NULL);
      continue;
    }
    n_train++;
    const float *a = ps_f32(pl.items[i].grad), *b = ps_f32(g_ptr_array_index(full, i));
    double md = 0;
    for (int64_t j = 0; j < ps_tensor_numel(pl.items[i].value); j++)
      md = MAX(md, fabs(a[j] - b[j]));
    PS_CHECK_MSG(md < 1e-5, "%s: adapter-only gradient differs from full training by %g",
                 pl.items[i].name, md);
  }
  PS_CHECK(n_train == 8);
  double w = gh_check_params(&enc, 4, EPS, ATOL, RTOL, &rng);
  printf("encoder adapter-only: worst error/tolerance %.3f\n", w);
  PS_CHECK(w <= 1.0);
  g_ptr_array_free(full, TRUE);
  gh_clear(&enc);
}

/* A fresh adapter (zero up-projection) leaves the encoder's output unchanged. */
static void test_adapter_identity(ps_context *ctx) {
  gh_comp a, b;
  gboolean ok = init(&a, ctx, "encoder.medsam", ENC_CFG("adapter: true, adapter.dim: 4")) &&
                init(&b, ctx, "encoder.medsam", ENC_CFG("adapter: false"));
  PS_CHECK(ok);
  if (!ok) return;
  ps_param_list pa = a.desc->vtable->params(a.self), pb = b.desc->vtable->params(b.self);
  int up_zero = 1;
  for (size_t i = 0; i < pa.count; i++) {
    if (strstr(pa.items[i].name, "adaptmlp.up_proj"))
      for (int64_t j = 0; j < ps_tensor_numel(pa.items[i].value); j++)
        up_zero &= ps_f32(pa.items[i].value)[j] == 0.0f;
    for (size_t k = 0; k < pb.count; k++)
      if (strcmp(pa.items[i].name, pb.items[k].name) == 0)
        memcpy(pa.items[i].value->data, pb.items[k].value->data, pb.items[k].value->nbytes);
  }
  PS_CHECK(up_zero);
  ps_rng rng;
  ps_rng_seed(&rng, 9);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 1, 3, 32, 32);
  gh_set_input(&a, "image", img, FALSE);
  gh_set_input(&b, "image", img, FALSE);
  gh_loss(&a);
  gh_loss(&b);
  ps_tensor *oa = ps_ports_get(&a.out, "embeddings"), *ob = ps_ports_get(&b.out, "embeddings");
  PS_CHECK(oa && ob && oa->nbytes == ob->nbytes && memcmp(oa->data, ob->data, oa->nbytes) == 0);
  gh_clear(&a);
  gh_clear(&b);
}

#define DEC_CFG(extra)                                                                             \
  "{embed_dim: 32, image_embedding_size: 4, input_image_size: 32, mask_in_chans: 4, "              \
  "num_heads: 2, mlp_dim: 16, iou_head_hidden_dim: 16, " extra "}"

static void test_decoder(ps_context *ctx, gboolean multimask, const char *post) {
  ps_rng rng;
  ps_rng_seed(&rng, 21 + multimask);
  gh_comp dec;
  g_autofree char *cfg =
      g_strdup_printf(DEC_CFG("multimask_output: %s, postprocess: %s, input_size: [24, 28]"),
                      multimask ? "true" : "false", post);
  gboolean ok = init(&dec, ctx, "decoder.sam", cfg);
  PS_CHECK(ok);
  if (!ok) return;
  gh_randomize_norm(&dec, &rng, 0.3, 1.0, 0.3);
  /* one image embedding shared by two prompts (SAM's repeat_interleave) */
  g_autoptr(ps_tensor) emb = gh_randn(&rng, 1.0, 1, 32, 4, 4);
  g_autoptr(ps_tensor) text = gh_randn(&rng, 1.0, 2, 1, 32, -1);
  g_autoptr(ps_tensor) boxes = ps_tensor_new4(PS_DTYPE_F32, 2, 4, -1, -1, NULL);
  g_autoptr(ps_tensor) points = ps_tensor_new4(PS_DTYPE_F32, 2, 2, 2, -1, NULL);
  g_autoptr(ps_tensor) labels = ps_tensor_new4(PS_DTYPE_I32, 2, 2, -1, -1, NULL);
  g_autoptr(ps_tensor) image = ps_tensor_new4(PS_DTYPE_F32, 2, 3, 20, 30, NULL);
  const float bx[8] = {3, 4, 20, 25, 0, 1, 31, 30}, pts[8] = {5, 6, 10, 12, 20, 3, 7, 7};
  const int32_t lab[4] = {1, 0, -1, 1};
  memcpy(boxes->data, bx, sizeof bx);
  memcpy(points->data, pts, sizeof pts);
  memcpy(labels->data, lab, sizeof lab);
  gh_set_input(&dec, "image_embeddings", emb, TRUE);
  gh_set_input(&dec, "text_embeds", text, TRUE);
  gh_set_input(&dec, "boxes", boxes, FALSE);
  gh_set_input(&dec, "points", points, FALSE);
  gh_set_input(&dec, "point_labels", labels, FALSE);
  gh_set_input(&dec, "image", image, FALSE);
  gh_train(&dec, decoder_trainable);
  PS_CHECK(!isnan(gh_loss(&dec)));
  ps_tensor *masks = ps_ports_get(&dec.out, "masks"),
            *low = ps_ports_get(&dec.out, "low_res_masks");
  int64_t m = multimask ? 3 : 1;
  PS_CHECK(masks && masks->shape[0] == 2 && masks->shape[1] == m && masks->shape[2] == 20 &&
           masks->shape[3] == 30);
  PS_CHECK(low && low->shape[1] == m && low->shape[2] == 16 && low->shape[3] == 16);
  gh_loss_on(&dec, "low_res_masks", &rng);
  gh_loss_on(&dec, "iou", &rng);
  gh_loss_on(&dec, "masks", &rng);
  PS_CHECK(gh_backward(&dec));
  double wp = gh_check_params(&dec, 4, EPS, ATOL, RTOL, &rng);
  double wi = gh_check_input(&dec, "image_embeddings", 6, EPS, ATOL, RTOL, &rng);
  double wt = gh_check_input(&dec, "text_embeds", 64, EPS, ATOL, RTOL, &rng);
  printf("decoder multimask=%d %s: worst error/tolerance params %.3f, image_embeddings %.3f, "
         "text_embeds %.3f\n",
         multimask, post, wp, wi, wt);
  PS_CHECK(wp <= 1.0 && wi <= 1.0 && wt <= 1.0);
  ps_param_list pl = dec.desc->vtable->params(dec.self);
  for (size_t i = 0; i < pl.count; i++)
    PS_CHECK(pl.items[i].role ==
             (g_str_has_prefix(pl.items[i].name, "mask_decoder.") ? PS_ROLE_FULL : PS_ROLE_FROZEN));
  gh_clear(&dec);
}

/* SFT's setting: encoder adapters + full decoder, LISA text prompt, loss on masks. */
static void test_chain(ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 33);
  gh_comp enc, dec;
  /* width 32 so that the upscaling's LayerNorm2d (embed_dim / 4 channels) is smooth */
  gboolean ok = init(&enc, ctx, "encoder.medsam",
                     "{embed_dim: 8, depth: 2, num_heads: 2, mlp_ratio: 2.0, patch_size: 8,"
                     " img_size: 32, window_size: 3, global_attn_indexes: [1], out_chans: 32,"
                     " adapter: true, adapter.dim: 4, adapter.dropout: 0.0}") &&
                init(&dec, ctx, "decoder.sam",
                     "{embed_dim: 32, image_embedding_size: 4, input_image_size: 32,"
                     " mask_in_chans: 4, num_heads: 2, mlp_dim: 16, iou_head_hidden_dim: 8}");
  PS_CHECK(ok);
  if (!ok) return;
  gh_randomize_norm(&enc, &rng, 0.3, 1.0, 0.3);
  gh_randomize_norm(&dec, &rng, 0.3, 1.0, 0.3);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 32, 32);
  g_autoptr(ps_tensor) text = gh_randn(&rng, 1.0, 2, 1, 32, -1);
  gh_set_input(&enc, "image", img, FALSE);
  gh_set_input(&dec, "text_embeds", text, TRUE);
  gh_train(&enc, adapters_only);
  gh_train(&dec, decoder_trainable);
  gh_link(&enc, "embeddings", &dec, "image_embeddings");
  gh_loss(&enc);
  gh_loss_on(&dec, "masks", &rng);
  PS_CHECK(gh_backward(&enc));
  /* the steady state allocates no scratch: a second step reuses the arena */
  size_t grows = ps_context_scratch_grows(ctx);
  ps_tensor *masks = ps_ports_get(&dec.out, "masks");
  PS_CHECK(gh_backward(&enc));
  PS_CHECK(ps_context_scratch_grows(ctx) == grows);
  PS_CHECK(ps_ports_get(&dec.out, "masks") == masks); /* same output tensor */
  double we = gh_check_params(&enc, 4, EPS, ATOL, RTOL, &rng);
  double wd = gh_check_params(&dec, 1, EPS, ATOL, RTOL, &rng);
  double wt = gh_check_input(&dec, "text_embeds", 4, EPS, ATOL, RTOL, &rng);
  printf("encoder->decoder: worst error/tolerance adapters %.3f, decoder %.3f, text %.3f\n", we, wd,
         wt);
  PS_CHECK(we <= 1.0 && wd <= 1.0 && wt <= 1.0);
  gh_clear(&dec);
  gh_clear(&enc);
}

/* Bad inputs give errors that name the component and the tensor. */
static void test_errors(ps_context *ctx) {
  gh_comp enc, dec;
  gboolean ok = init(&enc, ctx, "encoder.medsam", ENC_CFG("adapter: false")) &&
                init(&dec, ctx, "decoder.sam", DEC_CFG("multimask_output: false"));
  PS_CHECK(ok);
  if (!ok) return;
  GError *err = NULL;
  g_autoptr(ps_tensor) img = ps_tensor_new4(PS_DTYPE_F32, 1, 3, 30, 32, NULL);
  gh_set_input(&enc, "image", img, FALSE);
  PS_CHECK_FAILS_WITH(enc.desc->vtable->forward(enc.self, ctx, &enc.in, &enc.out, &err), err,
                      "encoder.medsam input image");
  /* two image embeddings for three prompts */
  g_autoptr(ps_tensor) emb = ps_tensor_new4(PS_DTYPE_F32, 2, 32, 4, 4, NULL);
  g_autoptr(ps_tensor) text = ps_tensor_new4(PS_DTYPE_F32, 3, 1, 32, -1, NULL);
  gh_set_input(&dec, "image_embeddings", emb, FALSE);
  gh_set_input(&dec, "text_embeds", text, FALSE);
  PS_CHECK_FAILS_WITH(dec.desc->vtable->forward(dec.self, ctx, &dec.in, &dec.out, &err), err,
                      "2 image embeddings for 3 prompts");
  g_autoptr(ps_tensor) emb16 = ps_tensor_new4(PS_DTYPE_F32, 3, 16, 4, 4, NULL);
  gh_set_input(&dec, "image_embeddings", emb16, FALSE);
  PS_CHECK_FAILS_WITH(dec.desc->vtable->forward(dec.self, ctx, &dec.in, &dec.out, &err), err,
                      "decoder.sam input image_embeddings");
  /* backward without a training-mode forward */
  g_autoptr(ps_tensor) good = ps_tensor_new4(PS_DTYPE_F32, 1, 3, 32, 32, NULL);
  gh_set_input(&enc, "image", good, FALSE);
  ps_context_set_training(ctx, FALSE);
  gh_loss(&enc);
  gh_loss_on(&enc, "embeddings", &(ps_rng){{1, 2, 3, 4}});
  ps_ports_find(&enc.gout, "embeddings")->tensor = enc.R[0];
  PS_CHECK_FAILS_WITH(enc.desc->vtable->backward(enc.self, ctx, &enc.gout, &enc.gin, &err), err,
                      "training mode");
  ps_context_set_training(ctx, TRUE);
  gh_clear(&enc);
  gh_clear(&dec);
}

int main(void) {
  reg = gh_registry();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1234);
  ps_context_set_training(ctx, TRUE);
  test_encoder(ctx, TRUE, TRUE);
  test_encoder(ctx, FALSE, FALSE);
  test_encoder_adapter_only(ctx);
  test_adapter_identity(ctx);
  test_decoder(ctx, FALSE, "sam");
  test_decoder(ctx, TRUE, "direct");
  test_decoder(ctx, FALSE, "direct");
  test_decoder(ctx, TRUE, "sam");
  test_chain(ctx);
  test_errors(ctx);
  ps_registry_free(reg);
  return gh_finish();
}
