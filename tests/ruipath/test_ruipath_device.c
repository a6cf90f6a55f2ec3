/* test_ruipath_device.c — encoder.ruipath on a CUDA context (the emulator of
 * kernels/emu, whose device memory faults when the host touches it) against
 * the same component on a CPU context: built with the same config and seed,
 * given the same random parameters and inputs, trained for two steps (LoRA
 * with dropout drawn from the context RNG, buffers reused in the second),
 * the outputs, the image gradient and every parameter gradient must be
 * bitwise equal, with the image given as a host tensor and, in a third
 * step, as a device tensor. Configurations cover the bicubic position-
 * embedding interpolation, the antialiased one (a host round trip on the
 * device), the native size (no interpolation), no LayerScale / registers /
 * qkv bias, and an inference forward (the stream updated in place). The
 * emulator's kernels are the CPU kernels, so any difference means the
 * device path computes something else. */
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/pipeline.h>
#include <string.h>

#include "emu_device.h"
#include "ps_test.h"

/* One side of the comparison: a component on a context, with its ports. */
typedef struct {
  const ps_component_desc *desc;
  ps_context *ctx;
  void *self;
  ps_port in_i[1], gin_i[1], out_i[4], gout_i[3];
  ps_ports in, gin, out, gout;
  ps_tensor *gout_dev[3]; /* grad_out copies on the side's device */
} side;

static ps_tensor *randn(ps_rng *rng, double std, int ndim, const int64_t *shape) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++) ps_f32(t)[i] = (float)(std * ps_rng_normal(rng));
  return t;
}

static gboolean side_init(side *s, ps_registry *reg, ps_device device, const char *yaml) {
  memset(s, 0, sizeof *s);
  GError *err = NULL;
  s->desc = ps_registry_find(reg, "encoder.ruipath");
  PS_CHECK(s->desc != NULL);
  if (!s->desc) return FALSE;
  s->ctx = ps_context_new(device, 1, 1234);
  ps_context_set_training(s->ctx, TRUE);
  g_autoptr(ps_config) cfg = ps_config_parse(s->desc->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return FALSE;
  s->self = s->desc->vtable->create(cfg, s->ctx, &err);
  PS_CHECK_OK(s->self != NULL, err);
  if (!s->self) return FALSE;
  s->in_i[0] = (ps_port){"image", NULL, FALSE};
  s->gin_i[0] = (ps_port){"image", NULL, TRUE};
  static const char *const outs[] = {"cls", "registers", "patches", "patch_grid"};
  for (int i = 0; i < 4; i++) s->out_i[i] = (ps_port){outs[i], NULL, FALSE};
  for (int i = 0; i < 3; i++) s->gout_i[i] = (ps_port){outs[i], NULL, FALSE};
  s->in = (ps_ports){s->in_i, 1};
  s->gin = (ps_ports){s->gin_i, 1};
  s->out = (ps_ports){s->out_i, 4};
  s->gout = (ps_ports){s->gout_i, 3};
  return TRUE;
}

static void side_clear(side *s) {
  if (s->self) {
    ps_param_list pl = s->desc->vtable->params(s->self);
    for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    s->desc->vtable->destroy(s->self);
  }
  for (int i = 0; i < 3; i++) ps_tensor_free(s->gout_dev[i]);
  if (s->ctx) ps_context_free(s->ctx);
  memset(s, 0, sizeof *s);
}

/* Same random parameter values on both sides (the LoRA B matrices start at
 * zero otherwise, which would hide A's gradient), and gradient buffers on
 * each value's device, as the core allocates them. */
static void set_params(side *a, side *b, ps_rng *rng) {
  ps_param_list pa = a->desc->vtable->params(a->self), pb = b->desc->vtable->params(b->self);
  PS_CHECK(pa.count == pb.count);
  GError *err = NULL;
  for (size_t i = 0; i < pa.count && i < pb.count; i++) {
    ps_tensor *v = pa.items[i].value;
    PS_CHECK_MSG(pb.items[i].value->device == PS_DEVICE_CUDA, "%s is not on the device",
                 pb.items[i].name);
    const gboolean gain = strstr(pa.items[i].name, "norm") && v->ndim == 1 &&
                          g_str_has_suffix(pa.items[i].name, ".weight");
    g_autoptr(ps_tensor) h = randn(
        rng, v->ndim >= 2 && strstr(pa.items[i].name, "weight") ? 0.2 : 0.3, v->ndim, v->shape);
    if (gain)
      for (int64_t j = 0; j < ps_tensor_numel(h); j++) ps_f32(h)[j] += 1.0f;
    PS_CHECK_OK(ps_tensor_copy_into(pa.items[i].value, h, &err), err);
    PS_CHECK_OK(ps_tensor_copy_into(pb.items[i].value, h, &err), err);
    if (strcmp(pa.items[i].name, "mask_token") == 0) continue; /* never gets a gradient */
    pa.items[i].grad = ps_tensor_new_on(PS_DEVICE_CPU, PS_DTYPE_F32, v->ndim, v->shape, NULL);
    pb.items[i].grad =
        ps_tensor_new_on(pb.items[i].value->device, PS_DTYPE_F32, v->ndim, v->shape, NULL);
  }
}

/* Forward on both sides; the device side gets `img` itself (a host tensor)
 * or, with dev_input, a device copy of it. */
static gboolean forward_both(side *a, side *b, ps_tensor *img, gboolean dev_input,
                             ps_tensor **img_dev) {
  GError *err = NULL;
  a->in_i[0].tensor = img;
  if (dev_input) {
    g_clear_pointer(img_dev, ps_tensor_free);
    *img_dev = ps_tensor_to_device(img, PS_DEVICE_CUDA, NULL);
    b->in_i[0].tensor = *img_dev;
  } else {
    b->in_i[0].tensor = img;
  }
  gboolean ok = a->desc->vtable->forward(a->self, a->ctx, &a->in, &a->out, &err);
  PS_CHECK_OK(ok, err);
  gboolean okb = ok && b->desc->vtable->forward(b->self, b->ctx, &b->in, &b->out, &err);
  PS_CHECK_OK(okb, err);
  if (!okb) return FALSE;
  static const char *const outs[] = {"cls", "registers", "patches", "patch_grid"};
  for (int i = 0; i < 4; i++) {
    const ps_tensor *tb = ps_ports_get(&b->out, outs[i]);
    if (i < 3)
      PS_CHECK_MSG(tb && tb->device == PS_DEVICE_CUDA, "output %s is not on the device", outs[i]);
    ps_test_same_as_cpu(outs[i], ps_ports_get(&a->out, outs[i]), tb, FALSE);
  }
  return TRUE;
}

/* One training step on both sides with output gradients R (host on the CPU
 * side, device copies on the device side); gradients accumulate. */
static void step(side *a, side *b, ps_tensor *img, gboolean dev_input, ps_tensor **img_dev,
                 ps_tensor *const R[3], const char *label) {
  if (!forward_both(a, b, img, dev_input, img_dev)) return;
  GError *err = NULL;
  for (int i = 0; i < 3; i++) {
    a->gout_i[i].tensor = R[i];
    g_clear_pointer(&b->gout_dev[i], ps_tensor_free);
    if (R[i]) b->gout_dev[i] = ps_tensor_to_device(R[i], PS_DEVICE_CUDA, NULL);
    b->gout_i[i].tensor = b->gout_dev[i];
  }
  a->gin_i[0].tensor = b->gin_i[0].tensor = NULL;
  PS_CHECK_OK(a->desc->vtable->backward(a->self, a->ctx, &a->gout, &a->gin, &err), err);
  PS_CHECK_OK(b->desc->vtable->backward(b->self, b->ctx, &b->gout, &b->gin, &err), err);
  PS_CHECK_MSG(b->gin_i[0].tensor && b->gin_i[0].tensor->device == PS_DEVICE_CUDA,
               "%s: the image gradient is not on the device", label);
  g_autofree char *w = g_strdup_printf("%s: image gradient", label);
  ps_test_same_as_cpu(w, a->gin_i[0].tensor, b->gin_i[0].tensor, FALSE);
  ps_param_list pa = a->desc->vtable->params(a->self), pb = b->desc->vtable->params(b->self);
  int n = 0;
  for (size_t i = 0; i < pa.count; i++) {
    if (!pa.items[i].grad) continue;
    g_autofree char *what = g_strdup_printf("%s: gradient of %s", label, pa.items[i].name);
    ps_test_same_as_cpu(what, pa.items[i].grad, pb.items[i].grad, FALSE);
    n++;
  }
  printf("%s: outputs, image gradient and %d parameter gradients compared\n", label, n);
}

static void run_config(ps_registry *reg, const char *yaml, int64_t B, int64_t H, int64_t W,
                       gboolean registers, const char *name) {
  side a, b;
  if (!side_init(&a, reg, PS_DEVICE_CPU, yaml) || !side_init(&b, reg, PS_DEVICE_CUDA, yaml)) {
    side_clear(&a);
    side_clear(&b);
    return;
  }
  ps_rng rng;
  ps_rng_seed(&rng, 99 + (uint64_t)H * 7 + (uint64_t)W);
  set_params(&a, &b, &rng);
  const int64_t is[] = {B, 3, H, W};
  g_autoptr(ps_tensor) img1 = randn(&rng, 1.0, 4, is);
  g_autoptr(ps_tensor) img2 = randn(&rng, 1.0, 4, is);
  /* Output gradients from the first forward's shapes. */
  ps_tensor *img_dev = NULL;
  if (!forward_both(&a, &b, img1, FALSE, &img_dev)) {
    side_clear(&a);
    side_clear(&b);
    return;
  }
  ps_tensor *R[3] = {NULL, NULL, NULL};
  static const char *const outs[] = {"cls", "registers", "patches"};
  for (int i = 0; i < 3; i++) {
    if (i == 1 && !registers) continue;
    const ps_tensor *o = ps_ports_get(&a.out, outs[i]);
    R[i] = randn(&rng, 1.0, o->ndim, o->shape);
  }
  g_autofree char *l1 = g_strdup_printf("%s, step 1", name);
  g_autofree char *l2 = g_strdup_printf("%s, step 2", name);
  g_autofree char *l3 = g_strdup_printf("%s, step 3 (device image)", name);
  step(&a, &b, img1, FALSE, &img_dev, R, l1);
  step(&a, &b, img2, FALSE, &img_dev, R, l2);
  step(&a, &b, img1, TRUE, &img_dev, R, l3);
  /* Inference: one block's buffers, the stream updated in place. */
  ps_context_set_training(a.ctx, FALSE);
  ps_context_set_training(b.ctx, FALSE);
  forward_both(&a, &b, img2, TRUE, &img_dev);
  for (int i = 0; i < 3; i++) ps_tensor_free(R[i]);
  ps_tensor_free(img_dev);
  side_clear(&a);
  side_clear(&b);
}

int main(void) {
  ps_test_use_cuda_emulator();
  g_autoptr(ps_registry) reg = ps_registry_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  ps_registry_scan(reg, NULL, problems);
  /* LoRA on qkv and proj with dropout; 40x48 pixels: the 4x4 position grid
   * is interpolated (bicubic) to 5x6. */
  run_config(reg,
             "{embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2, patch_size: 8, img_size: 32, "
             "num_register_tokens: 2, lora: {r: 2, alpha: 4, dropout: 0.3, targets: [qkv, proj]}}",
             2, 40, 48, TRUE, "LoRA + dropout, bicubic interpolation");
  /* Native size: the position embedding as is. */
  run_config(reg,
             "{embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2, patch_size: 8, img_size: 32, "
             "num_register_tokens: 2, lora: {r: 2, dropout: 0.1}}",
             2, 32, 32, TRUE, "native size");
  /* Antialiased interpolation (a host round trip on the device), down and up. */
  run_config(reg,
             "{embed_dim: 8, depth: 1, num_heads: 2, patch_size: 8, img_size: 32, "
             "num_register_tokens: 1, interpolate_antialias: true, interpolate_offset: 0}",
             1, 16, 24, TRUE, "antialiased, downsampled");
  run_config(reg,
             "{embed_dim: 8, depth: 1, num_heads: 2, patch_size: 8, img_size: 32, "
             "num_register_tokens: 1, interpolate_antialias: true, interpolate_offset: 0}",
             2, 48, 40, TRUE, "antialiased, upsampled");
  /* No LayerScale, no registers, no qkv bias. */
  run_config(reg,
             "{embed_dim: 8, depth: 1, num_heads: 1, patch_size: 4, img_size: 8, "
             "num_register_tokens: 0, init_values: 0, qkv_bias: false}",
             2, 12, 8, FALSE, "no LayerScale, no registers");
  return ps_test_finish();
}
