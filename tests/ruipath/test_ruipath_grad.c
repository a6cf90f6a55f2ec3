/* test_ruipath_grad.c — backward of encoder.ruipath against central finite
 * differences at a tiny size, through the plugin's vtable:
 *   - every parameter tensor (a few random entries each, more for pos_embed)
 *     and the image, with LoRA on qkv and proj, on an input whose size makes
 *     the position embedding go through the bicubic interpolation, and on the
 *     native size (no interpolation);
 *   - the antialiased interpolation (downsampled and upsampled grids);
 *   - LoRA-only training: only lora_A/lora_B get gradients, equal to those
 *     of full training, every other gradient stays NULL; LoRA dropout with
 *     the RNG pinned (the same masks in every forward);
 *   - the inference path (buffers reused in place) gives the training path's
 *     outputs; a layer-scale-free configuration; errors for bad input.
 *
 * Tolerances: the forward runs in float32; the loss L = sum <R, out> has
 * ~10^3 terms of order 1 accumulated in double, so its rounding noise is
 * ~10^-6 absolute. A step of 1e-2 turns that into ~10^-4 in the central
 * difference, and the truncation error eps^2 f''' / 6 is ~10^-5 relative
 * for these smooth functions (LayerNorm, softmax, erf GELU, bicubic). An
 * entry passes when |fd - an| <= 1e-3 + 1e-2 max(|fd|, |an|); a wrong
 * gradient (missing term, wrong index, transposed weight) is off by O(|an|). */
#include "grad_harness.h"

#include <pathseg/pipeline.h>

#define EPS 1e-2
#define GAIN 0.5
#define ATOL 1e-3
#define RTOL 1e-2

static const char *const CFG =
    "{embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2, patch_size: 8, img_size: 32, "
    "num_register_tokens: 2, lora: {r: 2, alpha: 2, dropout: 0, targets: [qkv, proj]}}";

static gboolean all_params(const ps_param *p) { return strcmp(p->name, "mask_token") != 0; }
static gboolean lora_only(const ps_param *p) { return p->role == PS_ROLE_LORA; }

static void loss_everywhere(gh_comp *c, ps_rng *rng) {
  gh_loss_on(c, "cls", rng);
  gh_loss_on(c, "registers", rng);
  gh_loss_on(c, "patches", rng);
}

/* Full training with an interpolated (40x48 -> 5x6 from 4x4) or native
 * (32x32) input: every parameter and the image. */
static void test_full(ps_registry *reg, ps_context *ctx, int64_t H, int64_t W) {
  ps_rng rng;
  ps_rng_seed(&rng, 100 + (uint64_t)H);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath", CFG)) return;
  gh_randomize(&c, &rng, 0.5, GAIN);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, H, W);
  gh_set_input(&c, "image", img, TRUE);
  gh_train(&c, all_params);
  loss_everywhere(&c, &rng);
  PS_CHECK(gh_backward(&c));
  double w = gh_check_params(&c, 3, EPS, ATOL, RTOL, &rng);
  ps_param *pos = gh_param(&c, "pos_embed");
  g_autoptr(ps_tensor) gpos = ps_tensor_copy(pos->grad, NULL);
  w = fmax(w, gh_check_entries(&c, pos->value, ps_f32(gpos), 16, EPS, ATOL, RTOL, &rng,
                               "pos_embed (through the interpolation)"));
  w = fmax(w, gh_check_input(&c, "image", 8, EPS, ATOL, RTOL, &rng));
  printf("full training, %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT " input: worst error/tolerance %.3f\n",
         H, W, w);
  /* The unused mask token never gets a gradient. */
  PS_CHECK(gh_param(&c, "mask_token")->grad == NULL);
  /* The grid output. */
  const ps_tensor *grid = ps_ports_get(&c.out, "patch_grid");
  PS_CHECK(grid && grid->dtype == PS_DTYPE_I32 && ((int32_t *)grid->data)[0] == H / 8 &&
           ((int32_t *)grid->data)[1] == W / 8);
  gh_clear(&c);
}

/* The antialiased bicubic interpolation (the *_reg hub models): pos_embed's
 * gradient through a downsampled and an upsampled grid. */
static void test_antialias(ps_registry *reg, ps_context *ctx) {
  static const int64_t sizes[][2] = {{16, 24}, {48, 40}};
  for (int s = 0; s < 2; s++) {
    ps_rng rng;
    ps_rng_seed(&rng, 7 + (uint64_t)s);
    gh_comp c;
    if (!gh_init(&c, reg, ctx, "encoder.ruipath",
                 "{embed_dim: 8, depth: 1, num_heads: 2, patch_size: 8, img_size: 32, "
                 "num_register_tokens: 1, interpolate_antialias: true, interpolate_offset: 0}"))
      return;
    gh_randomize(&c, &rng, 0.5, GAIN);
    g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 1, 3, sizes[s][0], sizes[s][1]);
    gh_set_input(&c, "image", img, FALSE);
    gh_train(&c, all_params);
    loss_everywhere(&c, &rng);
    PS_CHECK(gh_backward(&c));
    ps_param *pos = gh_param(&c, "pos_embed");
    g_autoptr(ps_tensor) gpos = ps_tensor_copy(pos->grad, NULL);
    double w = gh_check_entries(&c, pos->value, ps_f32(gpos), 24, EPS, ATOL, RTOL, &rng,
                                "pos_embed (antialiased)");
    printf("antialiased interpolation to %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
           ": worst error/tolerance %.3f\n",
           sizes[s][0] / 8, sizes[s][1] / 8, w);
    gh_clear(&c);
  }
}

/* LoRA-only training: gradients reach lora_A/lora_B only, and equal the ones
 * full training computes for them. */
static void test_lora_only(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 42);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath", CFG)) return;
  gh_randomize(&c, &rng, 0.5, GAIN);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 40, 48);
  gh_set_input(&c, "image", img, FALSE);
  loss_everywhere(&c, &rng);

  gh_train(&c, all_params);
  PS_CHECK(gh_backward(&c));
  ps_param_list pl = c.desc->vtable->params(c.self);
  GPtrArray *full = g_ptr_array_new_with_free_func((GDestroyNotify)ps_tensor_free);
  for (size_t i = 0; i < pl.count; i++)
    g_ptr_array_add(full, pl.items[i].grad ? ps_tensor_copy(pl.items[i].grad, NULL) : NULL);

  gh_train(&c, lora_only);
  PS_CHECK(gh_backward(&c));
  int n_lora = 0;
  double max_diff = 0;
  for (size_t i = 0; i < pl.count; i++) {
    const ps_param *p = &pl.items[i];
    gboolean is_lora = strstr(p->name, ".lora_A.weight") != NULL || strstr(p->name, ".lora_B.weight") != NULL;
    PS_CHECK_MSG((p->role == PS_ROLE_LORA) == is_lora, "%s: role %s", p->name,
                 ps_role_name(p->role));
    if (p->role != PS_ROLE_LORA) {
      PS_CHECK_MSG(p->grad == NULL, "%s has a gradient in LoRA-only training", p->name);
      continue;
    }
    n_lora++;
    const ps_tensor *f = g_ptr_array_index(full, i);
    double norm = 0;
    for (int64_t j = 0; j < ps_tensor_numel(p->grad); j++) {
      max_diff = MAX(max_diff, fabs(ps_f32(p->grad)[j] - ps_f32(f)[j]));
      norm += fabs(ps_f32(p->grad)[j]);
    }
    PS_CHECK_MSG(norm > 0, "%s: zero LoRA gradient", p->name);
  }
  /* qkv and proj of 2 blocks, A and B each */
  PS_CHECK(n_lora == 8);
  PS_CHECK_MSG(max_diff <= 1e-5, "LoRA-only gradients differ from full training by %g", max_diff);
  /* The image gradient was not asked for. */
  PS_CHECK(ps_ports_get(&c.gin, "image") == NULL);
  double w = gh_check_params(&c, 4, EPS, ATOL, RTOL, &rng);
  printf("LoRA-only training: %d LoRA tensors, |lora - full| %.2g, worst error/tolerance %.3f\n",
         n_lora, max_diff, w);
  g_ptr_array_free(full, TRUE);
  gh_clear(&c);
}

/* LoRA dropout (training only): with the context RNG pinned so that every
 * forward draws the same masks, the LoRA matrices' and the image's
 * gradients through the dropout branch match finite differences; dropout
 * changes the training output and is off outside training. */
static void test_lora_dropout(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 77);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath",
               "{embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2, patch_size: 8, "
               "img_size: 32, num_register_tokens: 2, "
               "lora: {r: 2, alpha: 2, dropout: 0.3, targets: [qkv, proj]}}"))
    return;
  gh_randomize(&c, &rng, 0.5, GAIN);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 40, 48);
  gh_set_input(&c, "image", img, TRUE);
  gh_pin_rng(&c);
  loss_everywhere(&c, &rng);
  gh_train(&c, lora_only);
  PS_CHECK(gh_backward(&c));
  double w = gh_check_params(&c, 4, EPS, ATOL, RTOL, &rng);
  w = fmax(w, gh_check_input(&c, "image", 8, EPS, ATOL, RTOL, &rng));
  const double Lt = gh_loss(&c);
  c.pinned = FALSE;
  ps_context_set_training(ctx, FALSE);
  const double Le = gh_loss(&c);
  ps_context_set_training(ctx, TRUE);
  PS_CHECK_MSG(fabs(Lt - Le) > 1e-3, "LoRA dropout changes nothing (%g vs %g)", Lt, Le);
  printf("LoRA dropout 0.3 (pinned masks): worst error/tolerance %.3f\n", w);
  gh_clear(&c);
}

/* Without LayerScale (init_values 0) there are no ls*.gamma parameters and
 * the gradients still check; qkv without bias. */
static void test_no_layerscale(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 9);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath",
               "{embed_dim: 8, depth: 1, num_heads: 1, patch_size: 4, img_size: 8, "
               "num_register_tokens: 0, init_values: 0, qkv_bias: false}"))
    return;
  PS_CHECK(gh_param(&c, "blocks.0.ls1.gamma") == NULL);
  PS_CHECK(gh_param(&c, "blocks.0.attn.qkv.bias") == NULL);
  PS_CHECK(gh_param(&c, "register_tokens") == NULL);
  gh_randomize(&c, &rng, 0.5, GAIN);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 12, 8);
  gh_set_input(&c, "image", img, TRUE);
  gh_train(&c, all_params);
  gh_loss_on(&c, "cls", &rng);
  gh_loss_on(&c, "patches", &rng);
  PS_CHECK(gh_backward(&c));
  double w = gh_check_params(&c, 3, EPS, ATOL, RTOL, &rng);
  w = fmax(w, gh_check_input(&c, "image", 6, EPS, ATOL, RTOL, &rng));
  printf("no LayerScale, no registers: worst error/tolerance %.3f\n", w);
  gh_clear(&c);
}

/* Inference reuses one block's buffers and updates the stream in place: the
 * outputs must equal the training path's; backward after it is refused;
 * wrong image sizes are refused with a message. */
static void test_inference_and_errors(ps_registry *reg, ps_context *ctx) {
  ps_rng rng;
  ps_rng_seed(&rng, 5);
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath", CFG)) return;
  gh_randomize(&c, &rng, 0.5, GAIN);
  g_autoptr(ps_tensor) img = gh_randn(&rng, 1.0, 2, 3, 40, 48);
  gh_set_input(&c, "image", img, FALSE);
  GError *err = NULL;
  PS_CHECK_OK(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err);
  g_autoptr(ps_tensor) train_patches = ps_tensor_copy(ps_ports_get(&c.out, "patches"), NULL);
  g_autoptr(ps_tensor) train_cls = ps_tensor_copy(ps_ports_get(&c.out, "cls"), NULL);
  ps_context_set_training(ctx, FALSE);
  PS_CHECK_OK(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err);
  const ps_tensor *p = ps_ports_get(&c.out, "patches"), *cl = ps_ports_get(&c.out, "cls");
  double d = 0;
  for (int64_t j = 0; j < ps_tensor_numel(p); j++)
    d = MAX(d, fabs(ps_f32(p)[j] - ps_f32(train_patches)[j]));
  for (int64_t j = 0; j < ps_tensor_numel(cl); j++)
    d = MAX(d, fabs(ps_f32(cl)[j] - ps_f32(train_cls)[j]));
  PS_CHECK_MSG(d == 0.0, "inference and training outputs differ by %g", d);
  g_autoptr(ps_tensor) R = gh_randn(&rng, 1.0, 2, 30, 16, -1);
  ps_ports_find(&c.gout, "patches")->tensor = R;
  PS_CHECK_FAILS_WITH(c.desc->vtable->backward(c.self, ctx, &c.gout, &c.gin, &err), err,
                      "training mode");
  ps_ports_find(&c.gout, "patches")->tensor = NULL;
  ps_context_set_training(ctx, TRUE);

  g_autoptr(ps_tensor) bad = gh_randn(&rng, 1.0, 1, 3, 36, 40);
  gh_set_input(&c, "image", bad, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err,
                      "multiple of the patch size");
  g_autoptr(ps_tensor) chans = gh_randn(&rng, 1.0, 1, 1, 32, 32);
  gh_set_input(&c, "image", chans, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, ctx, &c.in, &c.out, &err), err, "image");
  gh_clear(&c);

  /* Config errors name the key. */
  const ps_component_desc *desc = ps_registry_find(reg, "encoder.ruipath");
  g_autoptr(ps_config) cfg = ps_config_parse(desc->config, "{embed_dim: 10, num_heads: 4}", "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (cfg) PS_CHECK_FAILS_WITH(desc->vtable->create(cfg, ctx, &err) != NULL, err, "num_heads");
  g_autoptr(ps_config) cfg2 =
      ps_config_parse(desc->config, "{lora: {r: 2, targets: [qkv, fc1]}}", "test", &err);
  PS_CHECK_OK(cfg2 != NULL, err);
  if (cfg2) PS_CHECK_FAILS_WITH(desc->vtable->create(cfg2, ctx, &err) != NULL, err, "fc1");
}

/* The presets have the documented sizes and checkpoint names. */
static void test_presets(ps_registry *reg, ps_context *ctx) {
  gh_comp c;
  if (!gh_init(&c, reg, ctx, "encoder.ruipath", "{preset: vit-b16, init_std: 0}")) return;
  ps_param *qkv = gh_param(&c, "blocks.11.attn.qkv.weight");
  PS_CHECK(qkv && qkv->value->shape[0] == 3 * 768 && qkv->value->shape[1] == 768 &&
           qkv->role == PS_ROLE_BACKBONE);
  ps_param *pos = gh_param(&c, "pos_embed");
  PS_CHECK(pos && pos->value->shape[1] == 1 + 14 * 14);
  PS_CHECK(gh_param(&c, "blocks.12.norm1.weight") == NULL);
  PS_CHECK(gh_param(&c, "blocks.0.ls2.gamma") && gh_param(&c, "mask_token") &&
           gh_param(&c, "norm.bias") && gh_param(&c, "blocks.3.mlp.fc2.weight"));
  PS_CHECK(gh_param(&c, "register_tokens") == NULL);
  PS_CHECK(gh_param(&c, "blocks.0.attn.qkv.lora_A.weight") == NULL);
  gh_clear(&c);
  if (!gh_init(&c, reg, ctx, "encoder.ruipath", "{preset: tiny, lora: {r: 4}}")) return;
  ps_param *pe = gh_param(&c, "patch_embed.proj.weight");
  PS_CHECK(pe && pe->value->shape[0] == 64 && pe->value->shape[2] == 16);
  ps_param *la = gh_param(&c, "blocks.1.attn.qkv.lora_A.weight");
  PS_CHECK(la && la->role == PS_ROLE_LORA && la->value->shape[0] == 4);
  PS_CHECK(gh_param(&c, "blocks.1.attn.proj.lora_A.weight") == NULL);
  ps_param *rt = gh_param(&c, "register_tokens");
  PS_CHECK(rt && rt->value->shape[1] == 4);
  gh_clear(&c);
}

int main(void) {
  g_autoptr(ps_registry) reg = gh_registry();
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 0, 1);
  ps_context_set_training(ctx, TRUE);
  test_full(reg, ctx, 40, 48);
  test_full(reg, ctx, 32, 32);
  test_antialias(reg, ctx);
  test_lora_only(reg, ctx);
  test_lora_dropout(reg, ctx);
  test_no_layerscale(reg, ctx);
  test_inference_and_errors(reg, ctx);
  test_presets(reg, ctx);
  return gh_finish();
}
