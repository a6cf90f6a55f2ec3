/* test_losses_device.c — loss.segmentation and loss.weighted_sum on a CUDA
 * context (the emulator of kernels/emu, whose device memory faults when the
 * host touches it) against the same components on a CPU context: the
 * one-element loss and metric outputs and the input gradients must be
 * bitwise equal and on the device, over two steps (buffers reused) with
 * host inputs and a third with device inputs. Covers LISA's Dice with
 * bilinear upsampling, MONAI's squared Dice at the logits' size, and
 * pos_weight != 1 (the BCE the host computes: a round trip on the device).
 * The emulator's kernels are the CPU kernels, so any difference means the
 * device path computes something else. */
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/pipeline.h>
#include <string.h>

#include "emu_device.h"
#include "ps_test.h"

#define MAXP 4

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

/* A {0, 1} mask with about half the pixels set. */
static ps_tensor *mask(ps_rng *rng, int ndim, const int64_t *shape) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t i = 0; i < ps_tensor_numel(t); i++) ps_f32(t)[i] = ps_rng_uniform(rng) < 0.5f;
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
  s->ctx = ps_context_new(device, 1, 77);
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
  if (s->self) s->desc->vtable->destroy(s->self);
  for (int i = 0; i < 2 * MAXP; i++) ps_tensor_free(s->owned[i]);
  if (s->ctx) ps_context_free(s->ctx);
  memset(s, 0, sizeof *s);
}

static ps_tensor *on_dev(side *s, int slot, const ps_tensor *t) {
  g_clear_pointer(&s->owned[slot], ps_tensor_free);
  s->owned[slot] = t ? ps_tensor_to_device(t, PS_DEVICE_CUDA, NULL) : NULL;
  return s->owned[slot];
}

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

/* Forward, then backward with d loss = dloss (a device copy on the device side). */
static void step(side *a, side *b, const input *ins, int n_in, gboolean dev_inputs,
                 ps_tensor *dloss, const char *label) {
  if (!forward_both(a, b, ins, n_in, dev_inputs, label)) return;
  GError *err = NULL;
  ps_ports_find(&a->gout, "loss")->tensor = dloss;
  ps_ports_find(&b->gout, "loss")->tensor = on_dev(b, MAXP, dloss);
  for (int i = 0; i < n_in; i++) {
    ps_port *ga = ps_ports_find(&a->gin, ins[i].name), *gb = ps_ports_find(&b->gin, ins[i].name);
    ga->needs_grad = gb->needs_grad = ins[i].needs_grad;
    ga->tensor = gb->tensor = NULL;
  }
  PS_CHECK_OK(a->desc->vtable->backward(a->self, a->ctx, &a->gout, &a->gin, &err), err);
  PS_CHECK_OK(b->desc->vtable->backward(b->self, b->ctx, &b->gout, &b->gin, &err), err);
  int n = 0;
  for (int i = 0; i < n_in; i++) {
    if (!ins[i].needs_grad) continue;
    g_autofree char *what = g_strdup_printf("%s: gradient of input %s", label, ins[i].name);
    ps_test_same_as_cpu(what, ps_ports_get(&a->gin, ins[i].name), ps_ports_get(&b->gin, ins[i].name), TRUE);
    n++;
  }
  printf("%s: loss = %.6f; outputs and %d input gradients equal\n", label,
         ps_tensor_item(ps_ports_get(&a->out, "loss")), n);
}

static void compare(ps_registry *reg, const char *name, const char *yaml, const input *ins1,
                    const input *ins2, int n_in) {
  side a, b;
  if (!side_init(&a, reg, name, PS_DEVICE_CPU, yaml) ||
      !side_init(&b, reg, name, PS_DEVICE_CUDA, yaml)) {
    side_clear(&a);
    side_clear(&b);
    return;
  }
  const int64_t one[] = {1};
  g_autoptr(ps_tensor) dloss = ps_tensor_new(PS_DTYPE_F32, 1, one, NULL);
  ps_f32(dloss)[0] = 0.75f;
  g_autofree char *l1 = g_strdup_printf("%s %s, step 1", name, yaml);
  g_autofree char *l2 = g_strdup_printf("%s %s, step 2", name, yaml);
  g_autofree char *l3 = g_strdup_printf("%s %s, step 3 (device inputs)", name, yaml);
  step(&a, &b, ins1, n_in, FALSE, dloss, l1);
  step(&a, &b, ins2, n_in, FALSE, dloss, l2);
  step(&a, &b, ins1, n_in, TRUE, dloss, l3);
  side_clear(&a);
  side_clear(&b);
}

int main(void) {
  ps_test_use_cuda_emulator();
  g_autoptr(ps_registry) reg = ps_registry_new();
  g_autoptr(GPtrArray) problems = g_ptr_array_new_with_free_func(g_free);
  ps_registry_scan(reg, NULL, problems);
  ps_rng rng;
  ps_rng_seed(&rng, 5);

  /* Logits at 6x5, targets at 12x10 (upsampled) or 6x5. */
  const int64_t ls[] = {3, 1, 6, 5}, ts[] = {3, 1, 12, 10};
  g_autoptr(ps_tensor) z1 = randn(&rng, 2.0, 4, ls);
  g_autoptr(ps_tensor) z2 = randn(&rng, 2.0, 4, ls);
  g_autoptr(ps_tensor) t1 = mask(&rng, 4, ts);
  g_autoptr(ps_tensor) t2 = mask(&rng, 4, ts);
  g_autoptr(ps_tensor) s1 = mask(&rng, 4, ls);
  g_autoptr(ps_tensor) s2 = mask(&rng, 4, ls);
  const input up1[] = {{"logits", z1, TRUE}, {"target", t1, FALSE}};
  const input up2[] = {{"logits", z2, TRUE}, {"target", t2, FALSE}};
  const input at1[] = {{"logits", z1, TRUE}, {"target", s1, FALSE}};
  const input at2[] = {{"logits", z2, TRUE}, {"target", s2, FALSE}};
  compare(reg, "loss.segmentation", "{dice: lisa}", up1, up2, 2);
  compare(reg, "loss.segmentation", "{dice: lisa, pos_weight: 3, bce_weight: 2}", up1, up2, 2);
  compare(reg, "loss.segmentation", "{dice: monai_squared, upsample: false}", at1, at2, 2);
  compare(reg, "loss.segmentation", "{dice: monai, upsample: false, pos_weight: 0.5}", at1, at2, 2);

  /* loss.weighted_sum of three one-element terms (d unbound). */
  const int64_t one[] = {1};
  ps_tensor *terms[6];
  for (int i = 0; i < 6; i++) terms[i] = randn(&rng, 1.0, 1, one);
  const input w1[] = {{"a", terms[0], TRUE}, {"b", terms[1], TRUE}, {"c", terms[2], FALSE}};
  const input w2[] = {{"a", terms[3], TRUE}, {"b", terms[4], TRUE}, {"c", terms[5], FALSE}};
  compare(reg, "loss.weighted_sum", "{weights: [0.5, 1.5, 0.25]}", w1, w2, 3);
  for (int i = 0; i < 6; i++) ps_tensor_free(terms[i]);
  return ps_test_finish();
}
