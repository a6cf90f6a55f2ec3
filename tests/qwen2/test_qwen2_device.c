/* test_qwen2_device.c — llm.qwen2 with a CUDA context (the emulator of
 * kernels/emu, whose device memory faults when the host touches it and
 * whose table aborts on a host pointer) against a CPU context built from
 * the same config, seed and parameters:
 *   1. training mode, untied head, LoRA with dropout on all seven
 *      projections, a left-padded row with positions, every parameter
 *      training: logits, hidden, loss and every parameter gradient equal to
 *      the bit, for two steps (buffers reused, gradients accumulated; the
 *      second step's inputs and output gradients already on the device);
 *   2. inputs_embeds with a gradient, frozen base, LoRA (dropout) training;
 *   3. M-RoPE with image embeddings at placeholder tokens (gradient into
 *      image_embeds, the tied embedding table trains);
 *   4. KV-cached generation (left padding, greedy and top-p sampling, an
 *      M-RoPE image prompt, LoRA): the same tokens, log-probabilities,
 *      logits and hidden states within 1e-5 (1 + |x|). Not bitwise: the CPU
 *      decodes with its batch-invariant kernel (qwen2_gemv.c), the device
 *      through the table's linear_forward, which sums in another order
 *      (~1e-7 relative per product); weights N(0, 0.4) (peaked logits, so
 *      no argmax is near a tie) amplify that to up to 9e-6 after a few
 *      steps (seen with OpenBLAS's Prescott, Haswell and SapphireRapids
 *      kernels), while a wrong position, mask or cache row is off by
 *      O(0.1).
 * The device side's outputs and gradients must be device tensors, and its
 * parameters must live on the device. */
#include "emu_device.h"
#include "qw_harness.h"

typedef struct {
  qw_comp cpu, dev;
} qw_pair;

static gboolean all_params(const ps_param *p) {
  return TRUE;
}
static gboolean lora_only(const ps_param *p) {
  return p->role == PS_ROLE_LORA;
}

/* Both components with the same random parameters (drawn on the host for
 * the CPU one, copied into the device one's). */
static gboolean pair_init(qw_pair *p, const char *yaml, uint64_t seed, double std,
                          gboolean training) {
  if (!qw_init(&p->cpu, yaml, seed)) return FALSE;
  if (!qw_init_on(&p->dev, yaml, seed, PS_DEVICE_CUDA)) {
    qw_clear(&p->cpu);
    return FALSE;
  }
  ps_context_set_training(p->cpu.ctx, training);
  ps_context_set_training(p->dev.ctx, training);
  ps_rng rng;
  ps_rng_seed(&rng, seed + 1000);
  qw_randomize(&p->cpu, &rng, std);
  ps_param_list a = p->cpu.desc->vtable->params(p->cpu.self);
  ps_param_list b = p->dev.desc->vtable->params(p->dev.self);
  PS_CHECK(a.count == b.count && a.count > 0);
  gboolean ok = a.count == b.count;
  for (size_t i = 0; ok && i < a.count; i++) {
    PS_CHECK_MSG(b.items[i].value->device == PS_DEVICE_CUDA, "parameter %s is not on the device",
                 b.items[i].name);
    GError *err = NULL;
    PS_CHECK_OK(ps_tensor_copy_into(b.items[i].value, a.items[i].value, &err), err);
  }
  return ok;
}

static void pair_clear(qw_pair *p) {
  qw_clear(&p->cpu);
  qw_clear(&p->dev);
}

/* Gives the parameters for which pred() holds a zeroed gradient on their
 * value's device, as the core allocates them. */
static void train(qw_comp *c, gboolean (*pred)(const ps_param *p)) {
  ps_param_list pl = c->desc->vtable->params(c->self);
  for (size_t i = 0; i < pl.count; i++) {
    ps_param *q = &pl.items[i];
    g_clear_pointer(&q->grad, ps_tensor_free);
    if (pred(q))
      q->grad =
          ps_tensor_new_on(q->value->device, PS_DTYPE_F32, q->value->ndim, q->value->shape, NULL);
  }
}

/* Sets an input of both: the host tensor for the CPU side and, when
 * on_device, a device copy (kept in *dcopy) for the device side. */
static void set_both(qw_pair *p, const char *port, ps_tensor *t, gboolean needs_grad,
                     gboolean on_device, ps_tensor **dcopy) {
  g_clear_pointer(dcopy, ps_tensor_free);
  if (t && on_device) *dcopy = ps_tensor_to_device(t, PS_DEVICE_CUDA, NULL);
  qw_set_input(&p->cpu, port, t, needs_grad);
  qw_set_input(&p->dev, port, on_device && t ? *dcopy : t, needs_grad);
}

/* Backward with these output gradients (any may be NULL). */
static gboolean backward(qw_comp *c, ps_tensor *g_hidden, ps_tensor *g_logits, ps_tensor *g_loss) {
  GError *err = NULL;
  ps_ports_set(&c->gout, "hidden", g_hidden);
  ps_ports_set(&c->gout, "logits", g_logits);
  ps_ports_set(&c->gout, "loss", g_loss);
  for (size_t i = 0; i < c->gin.count; i++) c->gin.items[i].tensor = NULL;
  gboolean ok = c->desc->vtable->backward(c->self, c->ctx, &c->gout, &c->gin, &err);
  PS_CHECK_OK(ok, err);
  return ok;
}

/* a (CPU) and b (device) hold the same bits; b must be a device tensor.
 * Returns the number of nonzero elements (a test on all zeros proves
 * little). */
static int64_t same_bits(const char *what, const ps_tensor *a, const ps_tensor *b) {
  PS_CHECK_MSG(a && b, "%s: missing on the %s side", what, a ? "device" : "CPU");
  if (!a || !b) return 0;
  PS_CHECK_MSG(b->device == PS_DEVICE_CUDA, "%s: the device side's tensor is on the host", what);
  g_autoptr(ps_tensor) ha = ps_tensor_copy(a, NULL);
  g_autoptr(ps_tensor) hb = ps_tensor_copy(b, NULL);
  PS_CHECK_MSG(ha && hb && ha->nbytes == hb->nbytes && ha->dtype == PS_DTYPE_F32,
               "%s: shapes differ", what);
  if (!ha || !hb || ha->nbytes != hb->nbytes) return 0;
  const int64_t n = ps_tensor_numel(ha);
  const float *x = ps_f32(ha), *y = ps_f32(hb);
  int64_t first = -1, nonzero = 0;
  for (int64_t i = 0; i < n; i++) {
    if (first < 0 && memcmp(x + i, y + i, sizeof(float)) != 0) first = i;
    nonzero += x[i] != 0.0f;
  }
  PS_CHECK_MSG(first < 0, "%s[%" G_GINT64_FORMAT "]: CPU %.9g, device %.9g", what, first,
               first < 0 ? 0.0 : x[first], first < 0 ? 0.0 : y[first]);
  return nonzero;
}

static void compare_outputs(qw_pair *p, const char *step) {
  const char *ports[] = {"logits", "hidden", "loss"};
  for (size_t i = 0; i < G_N_ELEMENTS(ports); i++) {
    ps_tensor *a = qw_output(&p->cpu, ports[i]), *b = qw_output(&p->dev, ports[i]);
    if (!a && !b) continue;
    g_autofree char *what = g_strdup_printf("%s output %s", step, ports[i]);
    PS_CHECK_MSG(same_bits(what, a, b) > 0, "%s is all zeros", what);
  }
}

/* Every parameter gradient; returns how many were compared. */
static int compare_grads(qw_pair *p, const char *step) {
  ps_param_list a = p->cpu.desc->vtable->params(p->cpu.self);
  ps_param_list b = p->dev.desc->vtable->params(p->dev.self);
  int n = 0;
  for (size_t i = 0; i < a.count && i < b.count; i++) {
    if (!a.items[i].grad && !b.items[i].grad) continue;
    g_autofree char *what = g_strdup_printf("%s gradient of %s", step, a.items[i].name);
    PS_CHECK_MSG(same_bits(what, a.items[i].grad, b.items[i].grad) > 0, "%s is all zeros", what);
    n++;
  }
  return n;
}

static void compare_input_grad(qw_pair *p, const char *port, const char *step) {
  g_autofree char *what = g_strdup_printf("%s gradient of input %s", step, port);
  PS_CHECK_MSG(same_bits(what, qw_input_grad(&p->cpu, port), qw_input_grad(&p->dev, port)) > 0,
               "%s is all zeros", what);
}

/* Output gradients for both sides: host tensors for the CPU, device copies
 * (or the host tensors themselves, on the first step) for the device. */
typedef struct {
  ps_tensor *h[3], *d[3]; /* hidden, logits, loss */
} qw_grads;

static void grads_make(qw_grads *g, ps_rng *rng, int64_t B, int64_t T, int64_t D, int64_t V,
                       gboolean want_hidden, gboolean want_logits, float w_loss) {
  memset(g, 0, sizeof *g);
  if (want_hidden) g->h[0] = qw_randn(rng, 0.5, B, T, D);
  if (want_logits) g->h[1] = qw_randn(rng, 0.2, B, T, V);
  if (w_loss != 0.0f) {
    g->h[2] = ps_tensor_new4(PS_DTYPE_F32, 1, -1, -1, -1, NULL);
    ps_f32(g->h[2])[0] = w_loss;
  }
  for (int i = 0; i < 3; i++)
    if (g->h[i]) g->d[i] = ps_tensor_to_device(g->h[i], PS_DEVICE_CUDA, NULL);
}

static void grads_free(qw_grads *g) {
  for (int i = 0; i < 3; i++) {
    ps_tensor_free(g->h[i]);
    ps_tensor_free(g->d[i]);
  }
}

/* One forward + backward of both sides and the comparisons. */
static int step_both(qw_pair *p, const qw_grads *g, gboolean dev_grads, const char *step) {
  if (!qw_forward(&p->cpu) || !qw_forward(&p->dev)) return 0;
  compare_outputs(p, step);
  ps_tensor *const *gd = dev_grads ? g->d : g->h;
  if (!backward(&p->cpu, g->h[0], g->h[1], g->h[2]) || !backward(&p->dev, gd[0], gd[1], gd[2]))
    return 0;
  return compare_grads(p, step);
}

#define CFG_BASE "hidden: 16, layers: 2, heads: 4, kv_heads: 2, intermediate: 24, vocab: 29, "
#define LORA_ALL                                                                                   \
  "lora: {r: 2, alpha: 4, dropout: 0.25, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, "    \
  "up_proj, down_proj]}"

static void test_training(void) {
  qw_pair p;
  if (!pair_init(&p, "{" CFG_BASE "tied: false, " LORA_ALL "}", 11, 0.2, TRUE)) return;
  train(&p.cpu, all_params);
  train(&p.dev, all_params);
  ps_rng rng;
  ps_rng_seed(&rng, 5);
  static const int32_t ids1[] = {0, 0, 3, 28, 0, 5, 9, 9, 14, 2, 21, 6};
  static const int32_t lab1[] = {-100, -100, 3, 28, 0, 5, -100, 9, 14, -100, 21, 6};
  static const int32_t mask1[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  static const int32_t pos1[] = {1, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5};
  static const int32_t ids2[] = {4, 8, 15, 16, 23, 4, 2, 7, 1, 8, 2, 8};
  static const int32_t lab2[] = {4, 8, 15, -100, 23, 4, 2, 7, 1, 8, -100, 8};
  g_autoptr(ps_tensor) tids = qw_ids(2, 6, ids1), tlab = qw_ids(2, 6, lab1);
  g_autoptr(ps_tensor) tmask = qw_ids(2, 6, mask1), tpos = qw_ids(2, 6, pos1);
  ps_tensor *d_ids = NULL, *d_lab = NULL, *d_mask = NULL, *d_pos = NULL;
  set_both(&p, "input_ids", tids, FALSE, FALSE, &d_ids);
  set_both(&p, "labels", tlab, FALSE, FALSE, &d_lab);
  set_both(&p, "attention_mask", tmask, FALSE, FALSE, &d_mask);
  set_both(&p, "position_ids", tpos, FALSE, FALSE, &d_pos);
  qw_grads g;
  grads_make(&g, &rng, 2, 6, 16, 29, TRUE, TRUE, 1.0f);
  /* step 1: host inputs and host output gradients for the device side too */
  int n1 = step_both(&p, &g, FALSE, "step 1");
  /* step 2: other tokens, no padding, everything already on the device;
   * the gradients accumulate */
  g_autoptr(ps_tensor) tids2 = qw_ids(2, 6, ids2), tlab2 = qw_ids(2, 6, lab2);
  set_both(&p, "input_ids", tids2, FALSE, TRUE, &d_ids);
  set_both(&p, "labels", tlab2, FALSE, TRUE, &d_lab);
  set_both(&p, "attention_mask", NULL, FALSE, FALSE, &d_mask);
  set_both(&p, "position_ids", NULL, FALSE, FALSE, &d_pos);
  int n2 = step_both(&p, &g, TRUE, "step 2");
  /* embed + 2 x (2 norms + q,k,v (w, b, A, B) + o, gate, up, down (w, A, B)) + norm + lm_head */
  const int want = 1 + 2 * (2 + 3 * 4 + 4 * 3) + 2;
  PS_CHECK_MSG(n1 == want && n2 == want, "compared %d and %d parameter gradients of %d", n1, n2,
               want);
  printf("training (LoRA + dropout everywhere, padding): outputs and %d parameter gradients "
         "bitwise equal, 2 steps\n",
         n2);
  grads_free(&g);
  ps_tensor *dl[] = {d_ids, d_lab, d_mask, d_pos};
  for (size_t i = 0; i < G_N_ELEMENTS(dl); i++) ps_tensor_free(dl[i]);
  pair_clear(&p);
}

static void test_inputs_embeds(void) {
  qw_pair p;
  if (!pair_init(&p, "{" CFG_BASE "tied: true, lora: {r: 4, alpha: 8, dropout: 0.2}}", 12, 0.2,
                 TRUE))
    return;
  train(&p.cpu, lora_only);
  train(&p.dev, lora_only);
  ps_rng rng;
  ps_rng_seed(&rng, 6);
  static const int32_t lab[] = {-100, 4, 3, 28, 0, 5, -100, 9, 14, -100, 21, 6};
  g_autoptr(ps_tensor) emb1 = qw_randn(&rng, 1.0, 2, 6, 16);
  g_autoptr(ps_tensor) emb2 = qw_randn(&rng, 1.0, 2, 6, 16);
  g_autoptr(ps_tensor) tlab = qw_ids(2, 6, lab);
  ps_tensor *d_emb = NULL, *d_lab = NULL;
  set_both(&p, "inputs_embeds", emb1, TRUE, FALSE, &d_emb);
  set_both(&p, "labels", tlab, FALSE, FALSE, &d_lab);
  qw_grads g;
  grads_make(&g, &rng, 2, 6, 16, 29, TRUE, FALSE, 0.5f);
  int n1 = step_both(&p, &g, FALSE, "embeds step 1");
  compare_input_grad(&p, "inputs_embeds", "embeds step 1");
  set_both(&p, "inputs_embeds", emb2, TRUE, TRUE, &d_emb);
  set_both(&p, "labels", tlab, FALSE, TRUE, &d_lab);
  int n2 = step_both(&p, &g, TRUE, "embeds step 2");
  compare_input_grad(&p, "inputs_embeds", "embeds step 2");
  PS_CHECK_MSG(n1 == 8 && n2 == 8, "compared %d and %d LoRA gradients of 8", n1, n2);
  printf("inputs_embeds (frozen base, LoRA + dropout): outputs, %d LoRA gradients and "
         "d inputs_embeds bitwise equal, 2 steps\n",
         n2);
  grads_free(&g);
  ps_tensor_free(d_emb);
  ps_tensor_free(d_lab);
  pair_clear(&p);
}

static void test_mrope_image(void) {
  qw_pair p;
  if (!pair_init(&p,
                 "{hidden: 16, layers: 2, heads: 2, kv_heads: 1, intermediate: 24, vocab: 29, "
                 "tied: true, mrope_section: [2, 1, 1], image_token_id: 3, rope_theta: 100.0, "
                 "lora: {r: 2, alpha: 4, dropout: 0.1, targets: [q_proj, up_proj]}}",
                 13, 0.2, TRUE))
    return;
  train(&p.cpu, all_params);
  train(&p.dev, all_params);
  ps_rng rng;
  ps_rng_seed(&rng, 7);
  static const int32_t ids[] = {1, 3, 3, 28, 0, 5, 9, 9, 3, 3, 21, 6};
  static const int32_t pos[3][12] = {{0, 1, 1, 3, 4, 5, 0, 1, 2, 2, 4, 5},
                                     {0, 1, 1, 3, 4, 5, 0, 1, 2, 2, 4, 5},
                                     {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}};
  static const int32_t lab[] = {-100, -100, -100, 28, 0, 5, 9, 9, -100, -100, 21, 6};
  g_autoptr(ps_tensor) tids = qw_ids(2, 6, ids), tlab = qw_ids(2, 6, lab);
  g_autoptr(ps_tensor) tpos = ps_tensor_new4(PS_DTYPE_I32, 3, 2, 6, -1, NULL);
  memcpy(tpos->data, pos, sizeof pos);
  g_autoptr(ps_tensor) img1 = qw_randn(&rng, 1.0, 2, 2, 16);
  g_autoptr(ps_tensor) img2 = qw_randn(&rng, 1.0, 2, 2, 16);
  ps_tensor *d_ids = NULL, *d_lab = NULL, *d_pos = NULL, *d_img = NULL;
  set_both(&p, "input_ids", tids, FALSE, FALSE, &d_ids);
  set_both(&p, "labels", tlab, FALSE, FALSE, &d_lab);
  set_both(&p, "position_ids", tpos, FALSE, FALSE, &d_pos);
  set_both(&p, "image_embeds", img1, TRUE, FALSE, &d_img);
  qw_grads g;
  grads_make(&g, &rng, 2, 6, 16, 29, TRUE, FALSE, 1.0f);
  int n1 = step_both(&p, &g, FALSE, "M-RoPE step 1");
  compare_input_grad(&p, "image_embeds", "M-RoPE step 1");
  set_both(&p, "input_ids", tids, FALSE, TRUE, &d_ids);
  set_both(&p, "labels", tlab, FALSE, TRUE, &d_lab);
  set_both(&p, "position_ids", tpos, FALSE, TRUE, &d_pos);
  set_both(&p, "image_embeds", img2, TRUE, TRUE, &d_img);
  int n2 = step_both(&p, &g, TRUE, "M-RoPE step 2");
  compare_input_grad(&p, "image_embeds", "M-RoPE step 2");
  /* embed + 2 x (2 norms + q (w, b, A, B), k, v (w, b), o, gate, down (w), up (w, A, B)) + norm */
  const int want = 1 + 2 * (2 + 4 + 2 * 2 + 3 + 3) + 1;
  PS_CHECK_MSG(n1 == want && n2 == want, "compared %d and %d parameter gradients of %d", n1, n2,
               want);
  printf("M-RoPE + image embeddings: outputs, %d parameter gradients and d image_embeds bitwise "
         "equal, 2 steps\n",
         n2);
  grads_free(&g);
  ps_tensor *dl[] = {d_ids, d_lab, d_pos, d_img};
  for (size_t i = 0; i < G_N_ELEMENTS(dl); i++) ps_tensor_free(dl[i]);
  pair_clear(&p);
}

/* ---- generation ----------------------------------------------------------- */

#define GEN_TOL 1e-5

/* max |a - b| / (GEN_TOL (1 + |a|)): <= 1 passes. */
static double max_diff(const float *a, const float *b, int64_t n) {
  double w = 0;
  for (int64_t i = 0; i < n; i++)
    w = MAX(w, fabs((double)a[i] - b[i]) / (GEN_TOL * (1.0 + fabs((double)a[i]))));
  return w;
}

/* Generates with both sides and compares; returns the worst log-prob
 * difference over its tolerance. */
static double generate_both(qw_pair *p, const ps_llm_prompt *pr, ps_llm_sampling *sp,
                            uint64_t rng_seed, const char *what) {
  const ps_llm_generate_iface *g = p->cpu.desc->capability(PS_LLM_GENERATE_CAPABILITY);
  PS_CHECK(g != NULL);
  if (!g) return INFINITY;
  ps_llm_generation a = {0}, b = {0};
  ps_rng ra, rb;
  ps_rng_seed(&ra, rng_seed);
  ps_rng_seed(&rb, rng_seed);
  GError *err = NULL;
  sp->rng = &ra;
  PS_CHECK_OK(g->generate(p->cpu.self, p->cpu.ctx, pr, sp, &a, &err), err);
  sp->rng = &rb;
  PS_CHECK_OK(g->generate(p->dev.self, p->dev.ctx, pr, sp, &b, &err), err);
  double wl = INFINITY, wh = INFINITY;
  if (a.tokens && b.tokens) {
    const int64_t n = pr->B * sp->max_new_tokens;
    PS_CHECK_MSG(memcmp(a.lengths, b.lengths, sizeof(int64_t) * (size_t)pr->B) == 0 &&
                     memcmp(a.tokens, b.tokens, sizeof(int32_t) * (size_t)n) == 0,
                 "%s: the device generated other tokens", what);
    wl = max_diff(a.logprobs, b.logprobs, n);
    wh = max_diff(a.hidden, b.hidden, n * a.D);
    PS_CHECK_MSG(wl <= 1.0 && wh <= 1.0, "%s: log-probs off by %g, hidden by %g of the tolerance",
                 what, wl, wh);
    printf("%s: same %" G_GINT64_FORMAT " tokens; worst |dlogprob| %.2f, |dhidden| %.2f of "
           "the tolerance\n",
           what, n, wl, wh);
  }
  g->generation_clear(&a);
  g->generation_clear(&b);
  return wl;
}

#define GEN_CFG                                                                                    \
  "{hidden: 32, layers: 2, heads: 4, kv_heads: 2, intermediate: 48, vocab: 40, tied: true, "

static void test_generation(void) {
  qw_pair p;
  if (!pair_init(&p,
                 GEN_CFG "lora: {r: 4, alpha: 8, dropout: 0.1, "
                         "targets: [q_proj, v_proj, o_proj, down_proj]}}",
                 14, 0.4, FALSE))
    return;
  enum { T = 6, M = 8, V = 40, D = 32 };
  static const int32_t batch[2][T] = {{0, 0, 0, 12, 5, 9}, {4, 8, 15, 16, 23, 4}};
  static const int32_t mask[2][T] = {{0, 0, 0, 1, 1, 1}, {1, 1, 1, 1, 1, 1}};
  ps_llm_prompt pr = {.B = 2, .T = T, .input_ids = &batch[0][0], .attention_mask = &mask[0][0]};
  ps_llm_sampling sp = {.max_new_tokens = M, .temperature = 0, .top_p = 1, .pad_id = -1};
  generate_both(&p, &pr, &sp, 1, "greedy, left padding, LoRA");
  sp.temperature = 0.8;
  sp.top_p = 0.9;
  generate_both(&p, &pr, &sp, 2, "top-p sampling");
  /* the prefill / step / logits / hidden interface directly */
  const ps_llm_generate_iface *g = p.cpu.desc->capability(PS_LLM_GENERATE_CAPABILITY);
  GError *err = NULL;
  PS_CHECK_OK(g->prefill(p.cpu.self, p.cpu.ctx, &pr, 2, &err), err);
  PS_CHECK_OK(g->prefill(p.dev.self, p.dev.ctx, &pr, 2, &err), err);
  double wl = max_diff(g->logits(p.cpu.self), g->logits(p.dev.self), 2 * V);
  double wh = max_diff(g->hidden(p.cpu.self), g->hidden(p.dev.self), 2 * D);
  static const int32_t next[2] = {7, 39};
  PS_CHECK_OK(g->step(p.cpu.self, p.cpu.ctx, next, &err), err);
  PS_CHECK_OK(g->step(p.dev.self, p.dev.ctx, next, &err), err);
  wl = MAX(wl, max_diff(g->logits(p.cpu.self), g->logits(p.dev.self), 2 * V));
  wh = MAX(wh, max_diff(g->hidden(p.cpu.self), g->hidden(p.dev.self), 2 * D));
  PS_CHECK_MSG(wl <= 1.0 && wh <= 1.0,
               "prefill/step: logits off by %g, hidden by %g of the tolerance", wl, wh);
  printf("prefill + step: worst |dlogits| %.2f, |dhidden| %.2f of the tolerance\n", wl, wh);
  /* a bad token is refused on the device too */
  static const int32_t bad[2] = {7, 40};
  PS_CHECK_FAILS_WITH(g->step(p.dev.self, p.dev.ctx, bad, &err), err, "outside the vocabulary");
  /* training still works on the device after generation */
  g_autoptr(ps_tensor) t = qw_ids(2, T, &batch[0][0]);
  qw_set_input(&p.dev, "input_ids", t, FALSE);
  PS_CHECK(qw_forward(&p.dev));
  pair_clear(&p);
}

static void test_generation_image(void) {
  qw_pair p;
  if (!pair_init(&p, GEN_CFG "mrope_section: [1, 2, 1], image_token_id: 2}", 15, 0.4, FALSE))
    return;
  enum { T = 6, NI = 3, D = 32 };
  static const int32_t ids[2][T] = {{1, 2, 2, 2, 9, 11}, {5, 6, 2, 2, 2, 30}};
  static const int32_t pos[3][2][T] = {{{0, 1, 1, 1, 3, 4}, {0, 1, 2, 2, 2, 4}},
                                       {{0, 1, 1, 2, 3, 4}, {0, 1, 2, 2, 3, 4}},
                                       {{0, 1, 2, 1, 3, 4}, {0, 1, 2, 3, 2, 4}}};
  ps_rng rng;
  ps_rng_seed(&rng, 8);
  g_autoptr(ps_tensor) img = qw_randn(&rng, 1.0, 2, NI, D);
  ps_llm_prompt pr = {.B = 2,
                      .T = T,
                      .input_ids = &ids[0][0],
                      .image_embeds = ps_f32(img),
                      .n_image = NI,
                      .position_ids = &pos[0][0][0]};
  ps_llm_sampling sp = {.max_new_tokens = 6, .temperature = 0, .top_p = 1, .pad_id = -1};
  generate_both(&p, &pr, &sp, 3, "M-RoPE image prompt, greedy");
  pair_clear(&p);
}

int main(void) {
  ps_test_use_cuda_emulator();
  test_training();
  test_inputs_embeds();
  test_mrope_image();
  test_generation();
  test_generation_image();
  return ps_test_finish();
}
