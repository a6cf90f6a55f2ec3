/* test_heads_device.c — the heads plugin's components (projector,
 * adapter.seg, critic.value) on a CUDA context (the emulator of kernels/emu,
 * whose device memory faults when the host touches it) against the same
 * components on a CPU context: same config, seed and random parameters and
 * inputs, two training steps (dropout drawn from the context RNG, buffers
 * reused in the second) and a third with the inputs given as device
 * tensors; outputs, input gradients and every parameter gradient must be
 * bitwise equal (the emulator's kernels are the CPU kernels). Covers the
 * projector's block merge with a non-square grid, <SEG> positions at the
 * ends and absent (-1), and the value head's dropout; then an inference
 * forward. */
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/pipeline.h>
#include <string.h>

#include "emu_device.h"
#include "ps_test.h"

#define MAXP 4

/* One side of the comparison: a component on a context, with its ports. */
typedef struct {
  const ps_component_desc *desc;
  ps_context *ctx;
  void *self;
  ps_port in_i[MAXP], gin_i[MAXP], out_i[MAXP], gout_i[MAXP];
  ps_ports in, gin, out, gout;
  ps_tensor *owned[2 * MAXP]; /* device copies of inputs and output gradients */
} side;

/* An input: its host tensor and whether backward must give its gradient. */
typedef struct {
  const char *name;
  ps_tensor *host;
  gboolean needs_grad;
} input;

static ps_tensor *randn(ps_rng *rng, double std, int ndim, const int64_t *shape) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++) ps_f32(t)[i] = (float)(std * ps_rng_normal(rng));
  return t;
}

static void ports_from(ps_ports *p, ps_port *items, const ps_port_desc *d) {
  size_t n = 0;
  while (d[n].name && n < MAXP) {
    items[n] = (ps_port){d[n].name, NULL, FALSE};
    n++;
  }
  p->items = items;
  p->count = n;
}

static gboolean side_init(side *s, ps_registry *reg, const char *name, ps_device device,
                          const char *yaml) {
  memset(s, 0, sizeof *s);
  GError *err = NULL;
  s->desc = ps_registry_find(reg, name);
  PS_CHECK_MSG(s->desc != NULL, "%s not registered", name);
  if (!s->desc) return FALSE;
  s->ctx = ps_context_new(device, 1, 4321);
  ps_context_set_training(s->ctx, TRUE);
  g_autoptr(ps_config) cfg = ps_config_parse(s->desc->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return FALSE;
  s->self = s->desc->vtable->create(cfg, s->ctx, &err);
  PS_CHECK_OK(s->self != NULL, err);
  if (!s->self) return FALSE;
  ports_from(&s->in, s->in_i, s->desc->inputs);
  ports_from(&s->gin, s->gin_i, s->desc->inputs);
  ports_from(&s->out, s->out_i, s->desc->outputs);
  ports_from(&s->gout, s->gout_i, s->desc->outputs);
  return TRUE;
}

static void side_clear(side *s) {
  if (s->self) {
    ps_param_list pl = s->desc->vtable->params(s->self);
    for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    s->desc->vtable->destroy(s->self);
  }
  for (int i = 0; i < 2 * MAXP; i++) ps_tensor_free(s->owned[i]);
  if (s->ctx) ps_context_free(s->ctx);
  memset(s, 0, sizeof *s);
}

/* A device copy of t kept by the side until the next one in `slot`. */
static ps_tensor *on_dev(side *s, int slot, const ps_tensor *t) {
  g_clear_pointer(&s->owned[slot], ps_tensor_free);
  s->owned[slot] = t ? ps_tensor_to_device(t, PS_DEVICE_CUDA, NULL) : NULL;
  return s->owned[slot];
}

/* Same random parameters on both sides; gradient buffers on each value's
 * device, as the core allocates them. */
static void set_params(side *a, side *b, ps_rng *rng) {
  ps_param_list pa = a->desc->vtable->params(a->self), pb = b->desc->vtable->params(b->self);
  PS_CHECK(pa.count == pb.count && pa.count > 0);
  GError *err = NULL;
  for (size_t i = 0; i < pa.count && i < pb.count; i++) {
    ps_tensor *v = pa.items[i].value;
    PS_CHECK_MSG(pb.items[i].value->device == PS_DEVICE_CUDA, "%s is not on the device",
                 pb.items[i].name);
    g_autoptr(ps_tensor) h = randn(rng, 0.3, v->ndim, v->shape);
    PS_CHECK_OK(ps_tensor_copy_into(pa.items[i].value, h, &err), err);
    PS_CHECK_OK(ps_tensor_copy_into(pb.items[i].value, h, &err), err);
    pa.items[i].grad = ps_tensor_new_on(PS_DEVICE_CPU, PS_DTYPE_F32, v->ndim, v->shape, NULL);
    pb.items[i].grad =
        ps_tensor_new_on(pb.items[i].value->device, PS_DTYPE_F32, v->ndim, v->shape, NULL);
  }
}

/* Forward on both sides and compare every output. The device side gets the
 * host inputs, or device copies of them with dev_inputs. */
static gboolean forward_both(side *a, side *b, const input *ins, int n_in, gboolean dev_inputs,
                             const char *label) {
  GError *err = NULL;
  for (int i = 0; i < n_in; i++) {
    ps_ports_find(&a->in, ins[i].name)->tensor = ins[i].host;
    ps_ports_find(&b->in, ins[i].name)->tensor =
        dev_inputs ? on_dev(b, i, ins[i].host) : ins[i].host;
  }
  gboolean ok = a->desc->vtable->forward(a->self, a->ctx, &a->in, &a->out, &err);
  PS_CHECK_OK(ok, err);
  ok = ok && b->desc->vtable->forward(b->self, b->ctx, &b->in, &b->out, &err);
  PS_CHECK_OK(ok, err);
  if (!ok) return FALSE;
  for (size_t o = 0; o < a->out.count; o++) {
    g_autofree char *what = g_strdup_printf("%s: output %s", label, a->out_i[o].name);
    ps_test_same_as_cpu(what, a->out_i[o].tensor, b->out_i[o].tensor, TRUE);
  }
  return TRUE;
}

/* Forward and backward with output gradients R (device copies on the
 * device side); gradients accumulate across steps. */
static void step(side *a, side *b, const input *ins, int n_in, gboolean dev_inputs,
                 ps_tensor *const *R, const char *label) {
  if (!forward_both(a, b, ins, n_in, dev_inputs, label)) return;
  GError *err = NULL;
  for (size_t o = 0; o < a->gout.count; o++) {
    a->gout_i[o].tensor = R[o];
    b->gout_i[o].tensor = on_dev(b, MAXP + (int)o, R[o]);
  }
  for (int i = 0; i < n_in; i++) {
    ps_port *ga = ps_ports_find(&a->gin, ins[i].name), *gb = ps_ports_find(&b->gin, ins[i].name);
    ga->needs_grad = gb->needs_grad = ins[i].needs_grad;
    ga->tensor = gb->tensor = NULL;
  }
  PS_CHECK_OK(a->desc->vtable->backward(a->self, a->ctx, &a->gout, &a->gin, &err), err);
  PS_CHECK_OK(b->desc->vtable->backward(b->self, b->ctx, &b->gout, &b->gin, &err), err);
  for (int i = 0; i < n_in; i++) {
    if (!ins[i].needs_grad) continue;
    g_autofree char *what = g_strdup_printf("%s: gradient of input %s", label, ins[i].name);
    ps_test_same_as_cpu(what, ps_ports_get(&a->gin, ins[i].name), ps_ports_get(&b->gin, ins[i].name), TRUE);
  }
  ps_param_list pa = a->desc->vtable->params(a->self), pb = b->desc->vtable->params(b->self);
  for (size_t i = 0; i < pa.count; i++) {
    g_autofree char *what = g_strdup_printf("%s: gradient of %s", label, pa.items[i].name);
    ps_test_same_as_cpu(what, pa.items[i].grad, pb.items[i].grad, TRUE);
  }
  printf("%s: outputs, input gradients and %zu parameter gradients equal\n", label, pa.count);
}

/* Two training steps with host inputs (ins1, then ins2: same shapes, other
 * values), a third with ins1 as device tensors, then an inference forward. */
static void compare(ps_registry *reg, const char *name, const char *yaml, const input *ins1,
                    const input *ins2, int n_in, ps_rng *rng) {
  side a, b;
  if (!side_init(&a, reg, name, PS_DEVICE_CPU, yaml) ||
      !side_init(&b, reg, name, PS_DEVICE_CUDA, yaml)) {
    side_clear(&a);
    side_clear(&b);
    return;
  }
  set_params(&a, &b, rng);
  ps_tensor *R[MAXP] = {NULL};
  if (forward_both(&a, &b, ins1, n_in, FALSE, name)) {
    for (size_t o = 0; o < a.out.count; o++)
      R[o] = randn(rng, 1.0, a.out_i[o].tensor->ndim, a.out_i[o].tensor->shape);
    g_autofree char *l1 = g_strdup_printf("%s, step 1", name);
    g_autofree char *l2 = g_strdup_printf("%s, step 2", name);
    g_autofree char *l3 = g_strdup_printf("%s, step 3 (device inputs)", name);
    g_autofree char *l4 = g_strdup_printf("%s, inference", name);
    step(&a, &b, ins1, n_in, FALSE, R, l1);
    step(&a, &b, ins2, n_in, FALSE, R, l2);
    step(&a, &b, ins1, n_in, TRUE, R, l3);
    ps_context_set_training(a.ctx, FALSE);
    ps_context_set_training(b.ctx, FALSE);
    forward_both(&a, &b, ins2, n_in, TRUE, l4);
  }
  for (int o = 0; o < MAXP; o++) ps_tensor_free(R[o]);
  side_clear(&a);
  side_clear(&b);
}

static ps_tensor *i32(int64_t n, const int32_t *v) {
  const int64_t s[] = {n};
  ps_tensor *t = ps_tensor_new(PS_DTYPE_I32, 1, s, NULL);
  memcpy(t->data, v, sizeof(int32_t) * (size_t)n);
  return t;
}

int main(void) {
  ps_test_use_cuda_emulator();
  g_autoptr(ps_registry) reg = ps_registry_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  ps_registry_scan(reg, NULL, problems);
  ps_rng rng;
  ps_rng_seed(&rng, 2026);

  /* projector: a 4x6 patch grid of width 8 merged 2x2 into width 12. */
  {
    const int64_t xs[] = {2, 24, 8};
    g_autoptr(ps_tensor) x1 = randn(&rng, 1.0, 3, xs);
    g_autoptr(ps_tensor) x2 = randn(&rng, 1.0, 3, xs);
    g_autoptr(ps_tensor) grid = i32(2, (const int32_t[]){4, 6});
    const input in1[] = {{"patches", x1, TRUE}, {"patch_grid", grid, FALSE}};
    const input in2[] = {{"patches", x2, TRUE}, {"patch_grid", grid, FALSE}};
    compare(reg, "projector", "{in_width: 8, llm_width: 12, merge_size: 2}", in1, in2, 2, &rng);
  }
  /* adapter.seg: <SEG> at the first usable position, at T (sampled, not fed
   * back), in the middle, and absent. */
  {
    const int64_t hs[] = {4, 5, 16};
    g_autoptr(ps_tensor) h1 = randn(&rng, 1.0, 3, hs);
    g_autoptr(ps_tensor) h2 = randn(&rng, 1.0, 3, hs);
    g_autoptr(ps_tensor) pos = i32(4, (const int32_t[]){1, 5, -1, 3});
    const input in1[] = {{"hidden", h1, TRUE}, {"seg_positions", pos, FALSE}};
    const input in2[] = {{"hidden", h2, TRUE}, {"seg_positions", pos, FALSE}};
    compare(reg, "adapter.seg", "{hidden: 16, out: 8}", in1, in2, 2, &rng);
  }
  /* critic.value with dropout 0.3 (training), and without. */
  {
    const int64_t hs[] = {2, 7, 16};
    g_autoptr(ps_tensor) h1 = randn(&rng, 1.0, 3, hs);
    g_autoptr(ps_tensor) h2 = randn(&rng, 1.0, 3, hs);
    const input in1[] = {{"hidden", h1, TRUE}};
    const input in2[] = {{"hidden", h2, TRUE}};
    compare(reg, "critic.value", "{hidden: 16, dropout: 0.3}", in1, in2, 1, &rng);
    compare(reg, "critic.value", "{hidden: 16, dropout: 0}", in1, in2, 1, &rng);
  }
  return ps_test_finish();
}
