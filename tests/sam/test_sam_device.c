/* test_sam_device.c — encoder.medsam and decoder.sam with a PS_DEVICE_CUDA
 * context, run on the CUDA emulator (kernels/emu: its device memory faults
 * when the host touches it, and a host pointer given to a kernel aborts),
 * against the same components with a CPU context.
 *
 * Each component is built twice from the same config and seed (so the same
 * initial draws), its parameters are set to the same random values, and both
 * run forward in training mode (adapter dropout on: the masks are drawn on
 * the host from the context RNG, which starts from the same seed) and
 * backward with the same output gradients. The emulator's kernels are the
 * CPU kernels, so a component that does the same operations on both devices
 * gives the same bits: outputs, input gradients and every parameter gradient
 * must be bitwise equal. Two steps with new data (buffers reused, parameter
 * gradients accumulated), the first with host input tensors, the second with
 * inputs already on the device, then an inference forward.
 *
 * Encoder: AdaptFormer adapters with dropout, windows with zero padding,
 * MedSAM min-max input (and plain input). Decoder: text + box + point prompts
 * with multimask output and SAM post-processing; text + points with an
 * ignored label and a padding point, one image embedding shared by two
 * prompts, single mask, direct post-processing. */
#include <pathseg/host.h>
#include <pathseg/kernels.h>
#include <pathseg/pipeline.h>
#include <pathseg/registry.h>
#include <string.h>

#include "emu_device.h"
#include "ps_test.h"

#define MAX_PORTS 8

static ps_registry *reg;

/* One component on one device. */
typedef struct {
  const ps_component_desc *desc;
  void *self;
  ps_context *ctx;
  ps_device dev;
} side;

static gboolean side_init(side *s, ps_device dev, const char *name, const char *yaml) {
  GError *err = NULL;
  memset(s, 0, sizeof *s);
  s->dev = dev;
  s->ctx = ps_context_new(dev, 1, 4242);
  ps_context_set_training(s->ctx, TRUE);
  s->desc = ps_registry_find(reg, name);
  PS_CHECK_MSG(s->desc != NULL, "component %s not registered", name);
  if (!s->desc) return FALSE;
  g_autoptr(ps_config) cfg = ps_config_parse(s->desc->config, yaml, "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  if (!cfg) return FALSE;
  s->self = s->desc->vtable->create(cfg, s->ctx, &err);
  PS_CHECK_OK(s->self != NULL, err);
  if (!s->self) return FALSE;
  /* every parameter on the context's device; gradients where the core puts them */
  ps_param_list pl = s->desc->vtable->params(s->self);
  int on_dev = 1;
  for (size_t i = 0; i < pl.count; i++) {
    ps_tensor *v = pl.items[i].value;
    on_dev &= v->device == dev;
    pl.items[i].grad = ps_tensor_new_on(v->device, PS_DTYPE_F32, v->ndim, v->shape, NULL);
  }
  PS_CHECK_MSG(on_dev, "%s: a parameter is not on the context's device", name);
  return TRUE;
}

static void side_clear(side *s) {
  if (s->self) {
    ps_param_list pl = s->desc->vtable->params(s->self);
    for (size_t i = 0; i < pl.count; i++) g_clear_pointer(&pl.items[i].grad, ps_tensor_free);
    s->desc->vtable->destroy(s->self);
  }
  g_clear_pointer(&s->ctx, ps_context_free);
}

/* Sets the parameters of both sides to the same well-scaled random values
 * (matrices N(0, 1/fan_in), norm gains 1 + N(0, 0.1^2), the rest N(0, 0.1^2)),
 * so that zero-initialised parts (adapter up-projections, pos_embed) count. */
static void randomize(side *a, side *b, uint64_t seed) {
  ps_rng rng;
  ps_rng_seed(&rng, seed);
  ps_param_list pa = a->desc->vtable->params(a->self), pb = b->desc->vtable->params(b->self);
  g_assert(pa.count == pb.count);
  for (size_t i = 0; i < pa.count; i++) {
    ps_tensor *v = pa.items[i].value;
    g_autoptr(ps_tensor) h = ps_tensor_new(PS_DTYPE_F32, v->ndim, v->shape, NULL);
    int64_t n = ps_tensor_numel(h), fan = v->ndim >= 2 ? n / v->shape[0] : 0;
    gboolean gain = v->ndim == 1 && g_str_has_suffix(pa.items[i].name, ".weight");
    double sd = fan > 0 ? 1.0 / sqrt((double)fan) : 0.1;
    for (int64_t j = 0; j < n; j++)
      ps_f32(h)[j] = (float)((gain ? 1.0 : 0.0) + sd * ps_rng_normal(&rng));
    GError *err = NULL;
    PS_CHECK_OK(ps_tensor_copy_into(v, h, &err), err);
    PS_CHECK_OK(ps_tensor_copy_into(pb.items[i].value, h, &err), err);
  }
}

/* A host tensor of N(0, sd^2) + mean values. */
static ps_tensor *randn(ps_rng *rng, int32_t ndim, const int64_t *shape, double sd, double mean) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t j = 0; j < ps_tensor_numel(t); j++)
    ps_f32(t)[j] = (float)(mean + sd * ps_rng_normal(rng));
  return t;
}

/* a and b (any devices) hold the same bits; returns whether any is nonzero. */
static gboolean check_same(const ps_tensor *a, const ps_tensor *b, const char *what, int step) {
  PS_CHECK_MSG(a && b, "step %d: %s missing (%p, %p)", step, what, (void *)a, (void *)b);
  if (!a || !b) return FALSE;
  g_autoptr(ps_tensor) ha = ps_tensor_copy(a, NULL);
  g_autoptr(ps_tensor) hb = ps_tensor_copy(b, NULL);
  gboolean same = ha->dtype == hb->dtype && ha->nbytes == hb->nbytes &&
                  memcmp(ha->data, hb->data, ha->nbytes) == 0;
  int64_t first = -1, n = ps_tensor_numel(ha);
  if (!same && ha->nbytes == hb->nbytes)
    for (int64_t j = 0; j < n && first < 0; j++)
      if (memcmp(ps_f32(ha) + j, ps_f32(hb) + j, sizeof(float)) != 0) first = j;
  PS_CHECK_MSG(same,
               "step %d: %s differs between the CPU and the device (first at %" G_GINT64_FORMAT
               ": %.9g vs %.9g)",
               step, what, first, first >= 0 ? ps_f32(ha)[first] : 0.0,
               first >= 0 ? ps_f32(hb)[first] : 0.0);
  gboolean nonzero = FALSE;
  for (int64_t j = 0; j < n && !nonzero; j++) nonzero = ps_f32(ha)[j] != 0.0f;
  return nonzero;
}

static void ports_from(ps_ports *p, ps_port *items, const ps_port_desc *d) {
  size_t n = 0;
  while (d[n].name && n < MAX_PORTS) {
    items[n] = (ps_port){d[n].name, NULL, FALSE};
    n++;
  }
  p->items = items;
  p->count = n;
}

/* The inputs of one step: names with host tensors, which get gradients. */
typedef struct {
  const char *name[MAX_PORTS];
  ps_tensor *host[MAX_PORTS];
  gboolean grad[MAX_PORTS];
  int n;
} inputs;

/* One training step (forward, backward with dL/dout = R) on both sides; the
 * device side gets device copies of its inputs when `device_inputs`. Then
 * outputs, input gradients and every parameter gradient must match. */
static void step(side s[2], const inputs *in, gboolean device_inputs, ps_rng *rng, int no,
                 size_t zero_grads) {
  ps_port in_items[2][MAX_PORTS], out_items[2][MAX_PORTS], gin_items[2][MAX_PORTS],
      gout_items[2][MAX_PORTS];
  ps_ports pin[2], pout[2], pgin[2], pgout[2];
  ps_tensor *dev_in[MAX_PORTS] = {NULL}, *R[MAX_PORTS] = {NULL}, *dev_R[MAX_PORTS] = {NULL};
  GError *err = NULL;
  for (int i = 0; i < in->n; i++)
    if (device_inputs) dev_in[i] = ps_tensor_to_device(in->host[i], s[1].dev, NULL);
  gboolean ok = TRUE;
  for (int k = 0; k < 2 && ok; k++) {
    ports_from(&pin[k], in_items[k], s[k].desc->inputs);
    ports_from(&pout[k], out_items[k], s[k].desc->outputs);
    ports_from(&pgin[k], gin_items[k], s[k].desc->inputs);
    ports_from(&pgout[k], gout_items[k], s[k].desc->outputs);
    for (int i = 0; i < in->n; i++) {
      ps_port *p = ps_ports_find(&pin[k], in->name[i]);
      g_assert(p);
      p->tensor = k == 1 && device_inputs ? dev_in[i] : in->host[i];
      ps_ports_find(&pgin[k], in->name[i])->needs_grad = in->grad[i];
    }
    PS_CHECK_OK((ok = s[k].desc->vtable->forward(s[k].self, s[k].ctx, &pin[k], &pout[k], &err)),
                err);
  }
  if (!ok) goto out;
  for (size_t o = 0; o < pout[0].count; o++) {
    const ps_tensor *y = pout[0].items[o].tensor;
    PS_CHECK(y && y->device == PS_DEVICE_CPU);
    PS_CHECK(pout[1].items[o].tensor && pout[1].items[o].tensor->device == s[1].dev);
    g_autofree char *what = g_strdup_printf("output %s", pout[0].items[o].name);
    PS_CHECK_MSG(check_same(y, pout[1].items[o].tensor, what, no), "%s is all zero", what);
    R[o] = randn(rng, y->ndim, y->shape, 1.0, 0.0);
    dev_R[o] = ps_tensor_to_device(R[o], s[1].dev, NULL);
    pgout[0].items[o].tensor = R[o];
    pgout[1].items[o].tensor = dev_R[o];
  }
  for (int k = 0; k < 2 && ok; k++)
    PS_CHECK_OK((ok = s[k].desc->vtable->backward(s[k].self, s[k].ctx, &pgout[k], &pgin[k], &err)),
                err);
  if (!ok) goto out;
  for (int i = 0; i < in->n; i++) {
    if (!in->grad[i]) continue;
    const ps_tensor *g1 = ps_ports_get(&pgin[1], in->name[i]);
    PS_CHECK(g1 && g1->device == s[1].dev);
    g_autofree char *what = g_strdup_printf("gradient of input %s", in->name[i]);
    PS_CHECK_MSG(check_same(ps_ports_get(&pgin[0], in->name[i]), g1, what, no), "%s is all zero",
                 what);
  }
  ps_param_list p0 = s[0].desc->vtable->params(s[0].self);
  ps_param_list p1 = s[1].desc->vtable->params(s[1].self);
  size_t nonzero = 0;
  for (size_t i = 0; i < p0.count; i++) {
    g_autofree char *what = g_strdup_printf("gradient of %s", p0.items[i].name);
    nonzero += check_same(p0.items[i].grad, p1.items[i].grad, what, no);
  }
  /* the parameters a configuration does not use keep zero gradients */
  PS_CHECK_MSG(nonzero + zero_grads == p0.count,
               "step %d: %zu of %zu parameter gradients are zero, expected %zu", no,
               p0.count - nonzero, p0.count, zero_grads);
out:
  for (int i = 0; i < MAX_PORTS; i++) {
    ps_tensor_free(dev_in[i]);
    ps_tensor_free(R[i]);
    ps_tensor_free(dev_R[i]);
  }
}

/* An inference forward on both sides: equal outputs. */
static void infer(side s[2], const inputs *in) {
  ps_port in_items[2][MAX_PORTS], out_items[2][MAX_PORTS];
  ps_ports pin[2], pout[2];
  GError *err = NULL;
  gboolean ok = TRUE;
  for (int k = 0; k < 2 && ok; k++) {
    ps_context_set_training(s[k].ctx, FALSE);
    ports_from(&pin[k], in_items[k], s[k].desc->inputs);
    ports_from(&pout[k], out_items[k], s[k].desc->outputs);
    for (int i = 0; i < in->n; i++) ps_ports_find(&pin[k], in->name[i])->tensor = in->host[i];
    PS_CHECK_OK((ok = s[k].desc->vtable->forward(s[k].self, s[k].ctx, &pin[k], &pout[k], &err)),
                err);
    ps_context_set_training(s[k].ctx, TRUE);
  }
  if (!ok) return;
  for (size_t o = 0; o < pout[0].count; o++) {
    g_autofree char *what = g_strdup_printf("inference output %s", pout[0].items[o].name);
    check_same(pout[0].items[o].tensor, pout[1].items[o].tensor, what, 3);
  }
}

/* Builds the pair, randomises it, runs two training steps (host inputs, then
 * device inputs, new data each time) and an inference forward. make_inputs
 * fills `in` with fresh host tensors for a step. */
typedef void (*input_fn)(inputs *in, ps_rng *rng, int step);

static void run_pair(const char *name, const char *yaml, input_fn make_inputs, uint64_t seed,
                     size_t zero_grads) {
  side s[2];
  if (side_init(&s[0], PS_DEVICE_CPU, name, yaml) && side_init(&s[1], PS_DEVICE_CUDA, name, yaml)) {
    randomize(&s[0], &s[1], seed);
    ps_rng rng;
    ps_rng_seed(&rng, seed + 1);
    for (int no = 1; no <= 2; no++) {
      inputs in = {0};
      make_inputs(&in, &rng, no);
      step(s, &in, no == 2, &rng, no, zero_grads);
      if (no == 2) infer(s, &in);
      for (int i = 0; i < in.n; i++) ps_tensor_free(in.host[i]);
    }
  }
  side_clear(&s[0]);
  side_clear(&s[1]);
}

/* ---- encoder.medsam ---------------------------------------------------------- */

/* 32 px, patches of 8: a 4 x 4 grid, windows of 3 (zero padding to 6 x 6). */
#define ENC_CFG(extra)                                                                             \
  "{embed_dim: 16, depth: 2, num_heads: 2, mlp_ratio: 2.0, patch_size: 8, img_size: 32, "          \
  "window_size: 3, global_attn_indexes: [1], out_chans: 8, " extra "}"

static void enc_inputs(inputs *in, ps_rng *rng, int no) {
  int64_t shape[4] = {2, 3, 32, 32};
  in->name[0] = "image";
  in->host[0] = randn(rng, 4, shape, 40.0, 100.0 + 10 * no); /* 0..255-like pixels */
  in->grad[0] = TRUE;
  in->n = 1;
}

static void test_encoder(void) {
  run_pair("encoder.medsam",
           ENC_CFG("adapter: true, adapter.dim: 4, adapter.dropout: 0.25, medsam_input: true"),
           enc_inputs, 11, 0);
  run_pair("encoder.medsam", ENC_CFG("adapter: false, medsam_input: false"), enc_inputs, 12, 0);
}

/* ---- decoder.sam ------------------------------------------------------------- */

/* 32 wide, 4 x 4 embeddings (16 x 16 low-res masks), prompts in a 32 px frame */
#define DEC_CFG(extra)                                                                             \
  "{embed_dim: 32, image_embedding_size: 4, input_image_size: 32, mask_in_chans: 4, "              \
  "num_heads: 2, mlp_dim: 16, iou_head_hidden_dim: 16, " extra "}"

static ps_tensor *coords(ps_rng *rng, int32_t ndim, const int64_t *shape) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, NULL);
  for (int64_t j = 0; j < ps_tensor_numel(t); j++) ps_f32(t)[j] = 32.0f * ps_rng_uniform(rng);
  return t;
}

/* Text, boxes and two labelled points per prompt; an embedding per prompt. */
static void dec_inputs_box(inputs *in, ps_rng *rng, int no) {
  (void)no;
  int64_t is[4] = {2, 32, 4, 4}, ts[3] = {2, 1, 32}, bs[2] = {2, 4}, ps[3] = {2, 2, 2},
          ls[2] = {2, 2};
  in->name[0] = "image_embeddings", in->host[0] = randn(rng, 4, is, 1.0, 0.0), in->grad[0] = TRUE;
  in->name[1] = "text_embeds", in->host[1] = randn(rng, 3, ts, 1.0, 0.0), in->grad[1] = TRUE;
  in->name[2] = "boxes", in->host[2] = coords(rng, 2, bs);
  in->name[3] = "points", in->host[3] = coords(rng, 3, ps);
  in->name[4] = "point_labels", in->host[4] = ps_tensor_new(PS_DTYPE_F32, 2, ls, NULL);
  float lab[4] = {1, 0, 0, 1};
  memcpy(in->host[4]->data, lab, sizeof lab);
  in->n = 5;
}

/* Text and three points with i32 labels (one ignored: -1, plus SAM's padding
 * point as there is no box); one embedding shared by both prompts. */
static void dec_inputs_points(inputs *in, ps_rng *rng, int no) {
  (void)no;
  int64_t is[4] = {1, 32, 4, 4}, ts[3] = {2, 1, 32}, ps[3] = {2, 3, 2}, ls[2] = {2, 3};
  in->name[0] = "image_embeddings", in->host[0] = randn(rng, 4, is, 1.0, 0.0), in->grad[0] = TRUE;
  in->name[1] = "text_embeds", in->host[1] = randn(rng, 3, ts, 1.0, 0.0), in->grad[1] = TRUE;
  in->name[2] = "points", in->host[2] = coords(rng, 3, ps);
  in->name[3] = "point_labels", in->host[3] = ps_tensor_new(PS_DTYPE_I32, 2, ls, NULL);
  int32_t lab[6] = {1, -1, 0, 0, 1, 1};
  memcpy(in->host[3]->data, lab, sizeof lab);
  in->n = 4;
}

/* Zero gradients in every configuration: the PE matrix and mask_downscaling
 * (1 + 10 tensors), which the decoder never trains or uses. */
#define DEC_UNUSED 11

static void test_decoder(void) {
  /* + not_a_point_embed (boxes: no padding point) and mask token 0's
   * hypernetwork MLP (3 layers, multimask returns masks 1..3) */
  run_pair("decoder.sam",
           DEC_CFG("multimask_output: true, postprocess: sam, input_size: [24, 28], "
                   "output_size: [20, 18]"),
           dec_inputs_box, 21, DEC_UNUSED + 1 + 6);
  /* + the box-corner embeddings and the hypernetworks of masks 1..3 */
  run_pair("decoder.sam", DEC_CFG("multimask_output: false, postprocess: direct"),
           dec_inputs_points, 22, DEC_UNUSED + 2 + 18);
}

int main(void) {
  ps_test_use_cuda_emulator();
  GError *err = NULL;
  const ps_kernels *k = ps_kernels_get(PS_DEVICE_CUDA, &err);
  PS_CHECK_OK(k != NULL, err);
  if (!k) return ps_test_finish();
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  test_encoder();
  test_decoder();
  ps_registry_free(reg);
  return ps_test_finish();
}
