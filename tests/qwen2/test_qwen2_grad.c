/* test_qwen2_grad.c — backward of llm.qwen2 (through its vtable) against
 * central finite differences at tiny sizes, on random entries of every
 * parameter tensor that trains and of the differentiable inputs:
 *   1. everything trains (untied lm_head, LoRA on all seven projections),
 *      loss = shifted cross-entropy (with -100 labels) + <R, hidden> + <R, logits>;
 *   2. only LoRA trains (tied embeddings, frozen base: no gradient buffers),
 *      gradient into inputs_embeds, cross-entropy only, a left-padded row
 *      (attention_mask and position_ids);
 *   3. M-RoPE with three distinct position streams, image embeddings at
 *      placeholder tokens (gradient into image_embeds), embedding table
 *      training (tied, so lm_head and embedding gradients add).
 * The loss value is also checked against a double-precision cross-entropy
 * of the returned logits (shift and ignore_index).
 *
 * Tolerances: the forward runs in float32; L (a few hundred terms of order
 * 1, accumulated in double) carries rounding noise ~1e-6 relative. With
 * weights N(0, 0.2) and a step of 1e-2 the central difference has noise
 * ~1e-4 and a truncation error eps^2 f''' / 6 that reaches ~5e-3 relative on
 * layer-0 attention weights (it shrinks 10x with a step of 3e-3, so it is
 * truncation, not a wrong gradient). An entry passes when |fd - an| <= 1e-3
 * + 1e-2 max(|fd|, |an|) (worst seen 0.53 of that); a missing or transposed
 * term is off by O(|an|). QW_VERBOSE=1 prints the worst ratio per tensor. */
#include "qw_harness.h"

#define EPS 1e-2
#define ATOL 1e-3
#define RTOL 1e-2

static gboolean all_params(const ps_param *p) {
  return TRUE;
}
static gboolean lora_only(const ps_param *p) {
  return p->role == PS_ROLE_LORA;
}

/* FD check of `count` random entries of `value` against the analytic `grad`. */
static double check_entries(qw_comp *c, ps_tensor *value, const float *grad, int count, ps_rng *rng,
                            const char *what) {
  double worst = 0;
  int64_t n = ps_tensor_numel(value);
  for (int r = 0; r < count && r < n; r++) {
    int64_t j = (int64_t)ps_rng_below(rng, (uint64_t)n);
    float *x = ps_f32(value) + j, x0 = *x;
    *x = (float)(x0 + EPS);
    double lp = qw_loss(c);
    *x = (float)(x0 - EPS);
    double lm = qw_loss(c);
    *x = x0;
    double step = (double)(float)(x0 + EPS) - (double)(float)(x0 - EPS);
    double fd = (lp - lm) / step, an = grad ? grad[j] : 0.0;
    double ratio = fabs(fd - an) / (ATOL + RTOL * MAX(fabs(fd), fabs(an)));
    worst = MAX(worst, ratio);
    PS_CHECK_MSG(ratio <= 1.0, "%s[%" G_GINT64_FORMAT "]: analytic %.6g, finite difference %.6g",
                 what, j, an, fd);
  }
  return worst;
}

/* Checks every parameter with a grad buffer; returns the worst ratio and
 * counts the kinds covered. */
static double check_params(qw_comp *c, int count, ps_rng *rng, int *n_checked) {
  double worst = 0;
  ps_param_list pl = c->desc->vtable->params(c->self);
  *n_checked = 0;
  for (size_t i = 0; i < pl.count; i++) {
    if (!pl.items[i].grad) continue;
    g_autoptr(ps_tensor) g = ps_tensor_copy(pl.items[i].grad, NULL);
    double w = check_entries(c, pl.items[i].value, ps_f32(g), count, rng, pl.items[i].name);
    if (getenv("QW_VERBOSE")) printf("    %-50s %.3f\n", pl.items[i].name, w);
    worst = MAX(worst, w); /* MAX evaluates its arguments twice */
    (*n_checked)++;
  }
  return worst;
}

static double check_input(qw_comp *c, const char *port, int count, ps_rng *rng) {
  ps_tensor *x = ps_ports_get(&c->in, port);
  ps_tensor *g = qw_input_grad(c, port);
  PS_CHECK_MSG(g != NULL, "no gradient for input %s", port);
  if (!g) return INFINITY;
  g_autoptr(ps_tensor) gc = ps_tensor_copy(g, NULL);
  return check_entries(c, x, ps_f32(gc), count, rng, port);
}

/* Mean over valid targets of -log softmax(logits[b, t])[labels[b, t + 1]]. */
static double reference_ce(const ps_tensor *logits, const int32_t *labels) {
  const int64_t B = logits->shape[0], T = logits->shape[1], V = logits->shape[2];
  double sum = 0;
  int64_t n = 0;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t + 1 < T; t++) {
      int32_t y = labels[b * T + t + 1];
      if (y == -100) continue;
      const float *x = ps_f32(logits) + (b * T + t) * V;
      double mx = -INFINITY, s = 0;
      for (int64_t v = 0; v < V; v++) mx = MAX(mx, x[v]);
      for (int64_t v = 0; v < V; v++) s += exp(x[v] - mx);
      sum += mx + log(s) - x[y];
      n++;
    }
  return sum / (double)n;
}

#define CFG_BASE "hidden: 16, layers: 2, heads: 4, kv_heads: 2, intermediate: 24, vocab: 29, "
#define LORA_ALL                                                                                   \
  "lora: {r: 2, alpha: 4, dropout: 0.0, targets: [q_proj, k_proj, v_proj, o_proj, gate_proj, "     \
  "up_proj, down_proj]}"

static const int32_t ids_2x6[] = {1, 7, 3, 28, 0, 5, 9, 9, 14, 2, 21, 6};
static const int32_t labels_2x6[] = {-100, -100, 3, 28, 0, 5, -100, 9, 14, -100, 21, 6};

static void test_full_training(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 101);
  qw_comp c;
  if (!qw_init(&c, "{" CFG_BASE "tied: false, " LORA_ALL "}", 1)) return;
  qw_randomize(&c, &rng, 0.2);
  g_autoptr(ps_tensor) ids = qw_ids(2, 6, ids_2x6);
  g_autoptr(ps_tensor) labels = qw_ids(2, 6, labels_2x6);
  qw_set_input(&c, "input_ids", ids, FALSE);
  qw_set_input(&c, "labels", labels, FALSE);
  c.w_loss = 1.0;
  c.r_hidden = qw_randn(&rng, 0.5, 2, 6, 16);
  c.r_logits = qw_randn(&rng, 0.2, 2, 6, 29);
  qw_train(&c, all_params);
  PS_CHECK(qw_forward(&c));
  double ce = reference_ce(qw_output(&c, "logits"), labels_2x6);
  PS_CHECK_NEAR(ps_f32(qw_output(&c, "loss"))[0], ce, 1e-5 * (1 + ce));
  PS_CHECK(qw_backward(&c));
  int n = 0;
  double w = check_params(&c, 3, &rng, &n);
  /* embed + 2 x (2 norms + q,k,v (w, b, A, B) + o, gate, up, down (w, A, B)) + norm + lm_head */
  PS_CHECK_MSG(n == 1 + 2 * (2 + 3 * 4 + 4 * 3) + 2, "checked %d parameter tensors", n);
  printf("full training (untied, LoRA everywhere): %d tensors, worst error/tolerance %.3f\n", n, w);
  qw_clear(&c);
}

/* Sequences of one token (T = 1) in training with LoRA: the decode-step path
 * must not take them (it keeps no per-row activations for backward). */
static void test_single_token_rows(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 303);
  qw_comp c;
  if (!qw_init(&c, "{" CFG_BASE "tied: false, " LORA_ALL "}", 3)) return;
  qw_randomize(&c, &rng, 0.2);
  static const int32_t ids_3x1[] = {4, 11, 20};
  g_autoptr(ps_tensor) ids = qw_ids(3, 1, ids_3x1);
  qw_set_input(&c, "input_ids", ids, FALSE);
  c.w_loss = 0.0; /* no next token to predict: random projections of the outputs instead */
  c.r_hidden = qw_randn(&rng, 0.5, 3, 1, 16);
  c.r_logits = qw_randn(&rng, 0.2, 3, 1, 29);
  qw_train(&c, all_params);
  PS_CHECK(qw_forward(&c));
  PS_CHECK(qw_backward(&c));
  int n = 0;
  double w = check_params(&c, 3, &rng, &n);
  printf("one token per sequence (LoRA everywhere): %d tensors, worst error/tolerance %.3f\n", n,
         w);
  qw_clear(&c);
}

static void test_lora_only(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 202);
  qw_comp c;
  if (!qw_init(&c, "{" CFG_BASE "tied: true, lora: {r: 4, alpha: 8, dropout: 0.0}}", 2)) return;
  qw_randomize(&c, &rng, 0.2);
  g_autoptr(ps_tensor) emb = qw_randn(&rng, 1.0, 2, 6, 16);
  g_autoptr(ps_tensor) labels = qw_ids(2, 6, labels_2x6);
  qw_set_input(&c, "inputs_embeds", emb, TRUE);
  qw_set_input(&c, "labels", labels, FALSE);
  /* left padding in row 0 (its labels there are -100): the mask's bias path */
  static const int32_t mask[] = {0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  static const int32_t pos[] = {1, 1, 0, 1, 2, 3, 0, 1, 2, 3, 4, 5};
  g_autoptr(ps_tensor) tmask = qw_ids(2, 6, mask);
  g_autoptr(ps_tensor) tpos = qw_ids(2, 6, pos);
  qw_set_input(&c, "attention_mask", tmask, FALSE);
  qw_set_input(&c, "position_ids", tpos, FALSE);
  c.w_loss = 1.0;
  qw_train(&c, lora_only);
  PS_CHECK(qw_forward(&c));
  PS_CHECK(qw_backward(&c));
  int n = 0;
  double w = check_params(&c, 4, &rng, &n);
  PS_CHECK_MSG(n == 2 * 2 * 2, "checked %d LoRA tensors (q_proj, v_proj by default)", n);
  double wi = check_input(&c, "inputs_embeds", 12, &rng);
  printf("LoRA only (tied, inputs_embeds, padding): %d tensors, worst %.3f, inputs_embeds %.3f\n",
         n, w, wi);
  /* the default targets are q_proj and v_proj */
  PS_CHECK(qw_param(&c, "model.layers.1.self_attn.v_proj.lora_B.weight") != NULL);
  PS_CHECK(qw_param(&c, "model.layers.1.self_attn.k_proj.lora_A.weight") == NULL);
  PS_CHECK(qw_param(&c, "lm_head.weight") == NULL); /* tied */
  qw_clear(&c);
}

static void test_mrope_image(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 303);
  qw_comp c;
  if (!qw_init(&c,
               "{hidden: 16, layers: 2, heads: 2, kv_heads: 1, intermediate: 24, vocab: 29, "
               "tied: true, mrope_section: [2, 1, 1], image_token_id: 3, rope_theta: 100.0}",
               3))
    return;
  qw_randomize(&c, &rng, 0.2);
  /* two image tokens per row, Qwen2.5-VL style positions: text 0..k, the
   * image block on a 1 x 2 grid, text continuing after the largest one */
  static const int32_t ids[] = {1, 3, 3, 28, 0, 5, 9, 9, 3, 3, 21, 6};
  static const int32_t pos[3][12] = {{0, 1, 1, 3, 4, 5, 0, 1, 2, 2, 4, 5},
                                     {0, 1, 1, 3, 4, 5, 0, 1, 2, 2, 4, 5},
                                     {0, 1, 2, 3, 4, 5, 0, 1, 2, 3, 4, 5}};
  g_autoptr(ps_tensor) tids = qw_ids(2, 6, ids);
  g_autoptr(ps_tensor) tpos = ps_tensor_new4(PS_DTYPE_I32, 3, 2, 6, -1, NULL);
  memcpy(tpos->data, pos, sizeof pos);
  g_autoptr(ps_tensor) img = qw_randn(&rng, 1.0, 2, 2, 16);
  g_autoptr(ps_tensor) labels = qw_ids(2, 6, labels_2x6);
  qw_set_input(&c, "input_ids", tids, FALSE);
  qw_set_input(&c, "position_ids", tpos, FALSE);
  qw_set_input(&c, "image_embeds", img, TRUE);
  qw_set_input(&c, "labels", labels, FALSE);
  c.w_loss = 1.0;
  c.r_hidden = qw_randn(&rng, 0.5, 2, 6, 16);
  qw_train(&c, all_params);
  PS_CHECK(qw_forward(&c));
  PS_CHECK(qw_backward(&c));
  int n = 0;
  double w = check_params(&c, 3, &rng, &n);
  double wi = check_input(&c, "image_embeds", 12, &rng);
  printf("M-RoPE + image embeddings: %d tensors, worst %.3f, image_embeds %.3f\n", n, w, wi);
  /* image_embeds rows must be placed in order: swapping two rows changes the output */
  double L0 = qw_loss(&c);
  for (int d = 0; d < 16; d++) {
    float t = ps_f32(img)[d];
    ps_f32(img)[d] = ps_f32(img)[16 + d];
    ps_f32(img)[16 + d] = t;
  }
  PS_CHECK(fabs(qw_loss(&c) - L0) > 1e-4);
  qw_clear(&c);
}

static void test_errors(void) {
  qw_comp c;
  if (!qw_init(&c, "{" CFG_BASE "tied: true}", 4)) return;
  GError *err = NULL;
  static const int32_t bad[] = {1, 2, 29, 4, 5, 6};
  g_autoptr(ps_tensor) ids = qw_ids(1, 6, bad);
  qw_set_input(&c, "input_ids", ids, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, c.ctx, &c.in, &c.out, &err), err,
                      "outside the vocabulary");
  g_autoptr(ps_tensor) emb = ps_tensor_new4(PS_DTYPE_F32, 1, 6, 16, -1, NULL);
  qw_set_input(&c, "inputs_embeds", emb, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, c.ctx, &c.in, &c.out, &err), err,
                      "exactly one of input_ids and inputs_embeds");
  qw_set_input(&c, "input_ids", NULL, FALSE);
  static const int32_t lab[] = {1, 2, 3, -5, 5, 6};
  g_autoptr(ps_tensor) labels = qw_ids(1, 6, lab);
  qw_set_input(&c, "labels", labels, FALSE);
  PS_CHECK_FAILS_WITH(c.desc->vtable->forward(c.self, c.ctx, &c.in, &c.out, &err), err,
                      "labels[0, 3]");
  qw_clear(&c);
  /* inconsistent sizes are refused at creation */
  const ps_component_desc *d = ps_registry_find(qw_registry(), "llm.qwen2");
  g_autoptr(ps_config) cfg = ps_config_parse(d->config, "{heads: 4, kv_heads: 3}", "test", &err);
  PS_CHECK_OK(cfg != NULL, err);
  g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
  PS_CHECK_FAILS_WITH(d->vtable->create(cfg, ctx, &err) != NULL, err, "must divide heads");
  g_autoptr(ps_config) cfg2 =
      ps_config_parse(d->config, "{lora: {r: 2, targets: [qkv]}}", "test", &err);
  PS_CHECK_OK(cfg2 != NULL, err);
  PS_CHECK_FAILS_WITH(d->vtable->create(cfg2, ctx, &err) != NULL, err, "unknown LoRA target 'qkv'");
}

int main(void) {
  test_full_training();
  test_lora_only();
  test_single_token_rows();
  test_mrope_image();
  test_errors();
  return ps_test_finish();
}
