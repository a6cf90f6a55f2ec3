/* test_qwen2_generate.c — the "generate" capability of llm.qwen2:
 *   - greedy decoding with the KV cache gives the same tokens as re-running
 *     the full forward on prompt + generated tokens at every step, and its
 *     log-probs and hidden states equal those of the full forward at the
 *     producing positions;
 *     (also with LoRA on, which the decode step runs as sgemv);
 *   - batch rows are independent (B = 2 equals two B = 1 runs, to the bit);
 *   - stop ids end a row (kept, then pad_id), max_new_tokens bounds it;
 *   - sampling: seeded runs repeat, a tiny top-p is greedy, log-probs are
 *     log softmax(logits / temperature), and draws from qwen2_sample follow
 *     the tempered, nucleus-truncated distribution (chi-square);
 *   - M-RoPE: after an image-style prompt, decoding continues at max + 1.
 * Tolerances: cached and full forwards run the same float32 kernels over
 * different row groupings, so they agree to ~1e-6; 1e-4 is used. */
#include "qw_harness.h"
#include "qwen2_plugin.h"

#define CFG "{hidden: 32, layers: 2, heads: 4, kv_heads: 2, intermediate: 48, vocab: 40, tied: true"

static const ps_llm_generate_iface *gen_of(qw_comp *c) {
  const ps_llm_generate_iface *g = c->desc->capability(PS_LLM_GENERATE_CAPABILITY);
  PS_CHECK(g != NULL && g->struct_size >= sizeof(ps_llm_generate_iface));
  return g;
}

/* Full forward of ids (1, T): logits (T, V) and hidden (T, D) of the last row into out. */
static gboolean full_last(qw_comp *c, const int32_t *ids, int64_t T, const int32_t *pos3,
                          float *logits, float *hidden, int64_t V, int64_t D) {
  g_autoptr(ps_tensor) t = qw_ids(1, T, ids);
  g_autoptr(ps_tensor) p = NULL;
  qw_set_input(c, "input_ids", t, FALSE);
  if (pos3) {
    p = ps_tensor_new4(PS_DTYPE_I32, 3, 1, T, -1, NULL);
    memcpy(p->data, pos3, sizeof(int32_t) * (size_t)(3 * T));
  }
  qw_set_input(c, "position_ids", p, FALSE);
  if (!qw_forward(c)) return FALSE;
  memcpy(logits, ps_f32(qw_output(c, "logits")) + (T - 1) * V, sizeof(float) * (size_t)V);
  memcpy(hidden, ps_f32(qw_output(c, "hidden")) + (T - 1) * D, sizeof(float) * (size_t)D);
  qw_set_input(c, "input_ids", NULL, FALSE);
  qw_set_input(c, "position_ids", NULL, FALSE);
  return TRUE;
}

static double log_softmax_at(const float *x, int64_t V, int32_t tok, double temp) {
  double mx = -INFINITY, s = 0;
  for (int64_t v = 0; v < V; v++) mx = MAX(mx, x[v] / temp);
  for (int64_t v = 0; v < V; v++) s += exp(x[v] / temp - mx);
  return x[tok] / temp - mx - log(s);
}

static int32_t argmax(const float *x, int64_t V) {
  int32_t b = 0;
  for (int64_t v = 1; v < V; v++)
    if (x[v] > x[b]) b = (int32_t)v;
  return b;
}

/* cfg: the component config (with LoRA it checks the decode step's sgemv
 * LoRA path, qwen2_gemv.c, against the full forward's). */
static void test_greedy_matches_full(const char *cfg) {
  ps_rng rng;
  ps_rng_seed(&rng, 9);
  qw_comp c;
  if (!qw_init(&c, cfg, 1)) return;
  /* a larger std gives peaked logits, so argmax ties cannot flip */
  qw_randomize(&c, &rng, 0.4);
  const ps_llm_generate_iface *g = gen_of(&c);
  enum { T = 5, M = 8, V = 40, D = 32 };
  static const int32_t prompt[2][T] = {{1, 5, 9, 2, 30}, {7, 7, 3, 11, 0}};
  ps_llm_prompt pr = {.B = 2, .T = T, .input_ids = &prompt[0][0]};
  ps_llm_sampling sp = {.max_new_tokens = M, .temperature = 0, .top_p = 1, .pad_id = -1};
  ps_llm_generation out = {0};
  GError *err = NULL;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &out, &err), err);
  if (!out.tokens) return;
  for (int b = 0; b < 2; b++) {
    PS_CHECK(out.lengths[b] == M);
    int32_t seq[T + M];
    memcpy(seq, prompt[b], sizeof prompt[b]);
    double worst_lp = 0, worst_h = 0;
    for (int i = 0; i < M; i++) {
      float logits[V], hidden[D];
      if (!full_last(&c, seq, T + i, NULL, logits, hidden, V, D)) break;
      int32_t want = argmax(logits, V);
      PS_CHECK_MSG(out.tokens[b * M + i] == want, "row %d step %d: cached %d, full %d", b, i,
                   out.tokens[b * M + i], want);
      worst_lp = MAX(worst_lp, fabs(out.logprobs[b * M + i] - log_softmax_at(logits, V, want, 1)));
      for (int d = 0; d < D; d++)
        worst_h = MAX(worst_h, fabs(out.hidden[(b * M + i) * D + d] - hidden[d]));
      seq[T + i] = want;
    }
    printf("greedy row %d: tokens match the full forward; max |dlogprob| %.2g, |dhidden| %.2g\n", b,
           worst_lp, worst_h);
    PS_CHECK(worst_lp < 1e-4 && worst_h < 1e-4);
  }
  /* rows are independent: row 1 alone gives the same tokens */
  ps_llm_generation one = {0};
  ps_llm_prompt p1 = {.B = 1, .T = T, .input_ids = &prompt[1][0]};
  PS_CHECK_OK(g->generate(c.self, c.ctx, &p1, &sp, &one, &err), err);
  if (one.tokens) PS_CHECK(memcmp(one.tokens, out.tokens + M, sizeof(int32_t) * M) == 0);
  /* ... and the same bits: the decode step is batch-invariant (qwen2_gemv.c) */
  if (one.tokens)
    PS_CHECK_MSG(memcmp(one.logprobs, out.logprobs + M, sizeof(float) * M) == 0 &&
                     memcmp(one.hidden, out.hidden + M * D, sizeof(float) * M * D) == 0,
                 "row 1 alone: log-probs or hidden states differ in their bits from the batch's");
  /* stop ids: stop at row 0's third token */
  int32_t stop = out.tokens[2];
  int64_t first = 0;
  while (out.tokens[first] != stop) first++;
  sp.stop_ids = &stop;
  sp.n_stop = 1;
  ps_llm_generation st = {0};
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &st, &err), err);
  if (st.tokens) {
    PS_CHECK(st.lengths[0] == first + 1);
    PS_CHECK(st.tokens[first] == stop);
    for (int64_t i = first + 1; i < M; i++) PS_CHECK(st.tokens[i] == -1 && st.logprobs[i] == 0);
    /* row 1 goes on unless it also emits the stop id */
    int64_t f1 = 0;
    while (f1 < M && out.tokens[M + f1] != stop) f1++;
    PS_CHECK(st.lengths[1] == MIN(f1 + 1, M));
    PS_CHECK(memcmp(st.tokens + M, out.tokens + M, sizeof(int32_t) * (size_t)st.lengths[1]) == 0);
  }
  g->generation_clear(&st);
  g->generation_clear(&one);
  g->generation_clear(&out);
  /* the forward still works (and trains) after generation */
  g_autoptr(ps_tensor) t = qw_ids(1, T, prompt[0]);
  qw_set_input(&c, "input_ids", t, FALSE);
  PS_CHECK(qw_forward(&c));
  qw_clear(&c);
}

static void test_sampling(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 10);
  qw_comp c;
  if (!qw_init(&c, CFG "}", 2)) return;
  qw_randomize(&c, &rng, 0.2);
  const ps_llm_generate_iface *g = gen_of(&c);
  enum { T = 4, M = 6, V = 40, D = 32 };
  static const int32_t prompt[T] = {3, 1, 4, 1};
  ps_llm_prompt pr = {.B = 1, .T = T, .input_ids = prompt};
  ps_rng r1, r2;
  ps_rng_seed(&r1, 123);
  ps_rng_seed(&r2, 123);
  ps_llm_sampling sp = {.max_new_tokens = M, .temperature = 0.7, .top_p = 1, .rng = &r1};
  ps_llm_generation a = {0}, b = {0}, gr = {0}, tp = {0};
  GError *err = NULL;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &a, &err), err);
  sp.rng = &r2;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &b, &err), err);
  if (a.tokens && b.tokens) PS_CHECK(memcmp(a.tokens, b.tokens, sizeof(int32_t) * M) == 0);
  /* log-probs of the tempered distribution at each sampled position */
  if (a.tokens) {
    int32_t seq[T + M];
    memcpy(seq, prompt, sizeof prompt);
    double worst = 0;
    for (int i = 0; i < M; i++) {
      float logits[V], hidden[D];
      if (!full_last(&c, seq, T + i, NULL, logits, hidden, V, D)) break;
      worst = MAX(worst, fabs(a.logprobs[i] - log_softmax_at(logits, V, a.tokens[i], 0.7)));
      seq[T + i] = a.tokens[i];
    }
    PS_CHECK_MSG(worst < 1e-4, "sampled log-probs off by %g", worst);
  }
  /* a tiny nucleus keeps only the most probable token: greedy */
  sp.temperature = 0;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &gr, &err), err);
  sp.temperature = 1.3;
  sp.top_p = 1e-6;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &tp, &err), err);
  if (gr.tokens && tp.tokens) PS_CHECK(memcmp(gr.tokens, tp.tokens, sizeof(int32_t) * M) == 0);
  g->generation_clear(&a);
  g->generation_clear(&b);
  g->generation_clear(&gr);
  g->generation_clear(&tp);
  /* errors */
  sp.max_new_tokens = 0;
  PS_CHECK_FAILS_WITH(g->generate(c.self, c.ctx, &pr, &sp, &a, &err), err, "max_new_tokens");
  static const int32_t bad[T] = {3, 1, 40, 1};
  ps_llm_prompt pb = {.B = 1, .T = T, .input_ids = bad};
  sp.max_new_tokens = 2;
  PS_CHECK_FAILS_WITH(g->generate(c.self, c.ctx, &pb, &sp, &a, &err), err,
                      "outside the vocabulary");
  qw_clear(&c);
}

/* qwen2_sample's draws against the tempered, top-p truncated distribution. */
static void test_sampler_distribution(void) {
  enum { V = 6, DRAWS = 60000 };
  const float logits[V] = {2.0f, 1.0f, 0.5f, 0.0f, -1.0f, 1.5f};
  const double temp = 0.8, top_p = 0.9;
  double p[V], z = 0;
  for (int v = 0; v < V; v++) z += (p[v] = exp(logits[v] / temp));
  for (int v = 0; v < V; v++) p[v] /= z;
  /* nucleus: descending 0, 5, 1, 2, 3, 4; keep until the mass reaches 0.9 */
  const int order[V] = {0, 5, 1, 2, 3, 4};
  gboolean keep[V] = {0};
  double mass = 0;
  for (int r = 0; r < V && mass < top_p; r++) {
    keep[order[r]] = TRUE;
    mass += p[order[r]];
  }
  float work[V];
  int32_t idx[V];
  int64_t count[V] = {0};
  ps_rng rng;
  ps_rng_seed(&rng, 99);
  double lp_err = 0;
  for (int i = 0; i < DRAWS; i++) {
    float lp;
    int32_t t = qwen2_sample(logits, V, temp, top_p, &rng, &lp, work, idx);
    PS_CHECK(t >= 0 && t < V);
    if (t < 0 || t >= V) break;
    count[t]++;
    lp_err = MAX(lp_err, fabs(lp - log(p[t])));
  }
  double chi2 = 0;
  int dof = -1;
  for (int v = 0; v < V; v++) {
    if (!keep[v]) {
      PS_CHECK_MSG(count[v] == 0, "token %d outside the nucleus drawn %ld times", v,
                   (long)count[v]);
      continue;
    }
    double e = DRAWS * p[v] / mass;
    chi2 += (count[v] - e) * (count[v] - e) / e;
    dof++;
  }
  /* dof = 3 here; P(chi2 > 16.3) = 0.001 */
  printf("sampler: chi-square %.2f with %d degrees of freedom; max |dlogprob| %.2g\n", chi2, dof,
         lp_err);
  PS_CHECK(dof == 3 && chi2 < 16.3);
  PS_CHECK(lp_err < 1e-5);
  float lp;
  PS_CHECK(qwen2_sample(logits, V, 0.0, 1.0, &rng, &lp, work, idx) == 0);
  PS_CHECK_NEAR(lp, log_softmax_at(logits, V, 0, 1.0), 1e-6);
}

/* After a prompt with image-style M-RoPE positions, decoding continues at
 * max position + 1 in every stream (HF rope_deltas). */
static void test_mrope_continuation(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 12);
  qw_comp c;
  if (!qw_init(&c, CFG ", mrope_section: [1, 2, 1]}", 3)) return;
  qw_randomize(&c, &rng, 0.4);
  const ps_llm_generate_iface *g = gen_of(&c);
  enum { T = 6, M = 4, V = 40, D = 32 };
  static const int32_t prompt[T] = {1, 2, 2, 2, 2, 9};
  static const int32_t p3[3][T] = {{0, 1, 1, 1, 1, 3}, {0, 1, 1, 2, 2, 3}, {0, 1, 2, 1, 2, 3}};
  ps_llm_prompt pr = {.B = 1, .T = T, .input_ids = prompt, .position_ids = &p3[0][0]};
  ps_llm_sampling sp = {.max_new_tokens = M, .temperature = 0, .top_p = 1, .pad_id = -1};
  ps_llm_generation out = {0};
  GError *err = NULL;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pr, &sp, &out, &err), err);
  if (!out.tokens) return;
  int32_t seq[T + M], pos[3 * (T + M)];
  memcpy(seq, prompt, sizeof prompt);
  for (int i = 0; i < M; i++) {
    int n = T + i;
    for (int s = 0; s < 3; s++)
      for (int t = 0; t < n; t++) pos[s * n + t] = t < T ? p3[s][t] : 4 + (t - T);
    float logits[V], hidden[D];
    if (!full_last(&c, seq, n, pos, logits, hidden, V, D)) break;
    PS_CHECK_MSG(out.tokens[i] == argmax(logits, V), "M-RoPE step %d: cached %d, full %d", i,
                 out.tokens[i], argmax(logits, V));
    seq[n] = out.tokens[i];
  }
  g->generation_clear(&out);
  qw_clear(&c);
}

/* A left-padded batch decodes each row as if it were alone: padding keys
 * are masked and positions follow cumsum(mask) - 1; the forward with the
 * same mask and positions gives the unpadded logits at the real tokens. */
static void test_left_padding(void) {
  ps_rng rng;
  ps_rng_seed(&rng, 13);
  qw_comp c;
  if (!qw_init(&c, CFG "}", 4)) return;
  qw_randomize(&c, &rng, 0.4);
  const ps_llm_generate_iface *g = gen_of(&c);
  enum { T = 6, M = 5, V = 40 };
  static const int32_t batch[2][T] = {{0, 0, 0, 12, 5, 9}, {4, 8, 15, 16, 23, 4}};
  static const int32_t mask[2][T] = {{0, 0, 0, 1, 1, 1}, {1, 1, 1, 1, 1, 1}};
  static const int32_t alone[3] = {12, 5, 9};
  ps_llm_prompt pb = {.B = 2, .T = T, .input_ids = &batch[0][0], .attention_mask = &mask[0][0]};
  ps_llm_prompt p0 = {.B = 1, .T = 3, .input_ids = alone};
  ps_llm_prompt p1 = {.B = 1, .T = T, .input_ids = &batch[1][0]};
  ps_llm_sampling sp = {.max_new_tokens = M, .temperature = 0, .top_p = 1, .pad_id = -1};
  ps_llm_generation gb = {0}, g0 = {0}, g1 = {0};
  GError *err = NULL;
  PS_CHECK_OK(g->generate(c.self, c.ctx, &pb, &sp, &gb, &err), err);
  PS_CHECK_OK(g->generate(c.self, c.ctx, &p0, &sp, &g0, &err), err);
  PS_CHECK_OK(g->generate(c.self, c.ctx, &p1, &sp, &g1, &err), err);
  if (gb.tokens && g0.tokens && g1.tokens) {
    PS_CHECK(memcmp(gb.tokens, g0.tokens, sizeof(int32_t) * M) == 0);
    PS_CHECK(memcmp(gb.tokens + M, g1.tokens, sizeof(int32_t) * M) == 0);
    double w = 0;
    for (int i = 0; i < M; i++)
      w = MAX(
          w, MAX(fabs(gb.logprobs[i] - g0.logprobs[i]), fabs(gb.logprobs[M + i] - g1.logprobs[i])));
    PS_CHECK_MSG(w < 1e-4, "padded batch log-probs differ by %g", w);
  }
  g->generation_clear(&gb);
  g->generation_clear(&g0);
  g->generation_clear(&g1);
  /* the forward: mask + shifted positions == the unpadded row */
  static const int32_t pos[2][T] = {{1, 1, 1, 0, 1, 2}, {0, 1, 2, 3, 4, 5}};
  g_autoptr(ps_tensor) tb = qw_ids(2, T, &batch[0][0]);
  g_autoptr(ps_tensor) tm = qw_ids(2, T, &mask[0][0]);
  g_autoptr(ps_tensor) tp = qw_ids(2, T, &pos[0][0]);
  qw_set_input(&c, "input_ids", tb, FALSE);
  qw_set_input(&c, "attention_mask", tm, FALSE);
  qw_set_input(&c, "position_ids", tp, FALSE);
  PS_CHECK(qw_forward(&c));
  g_autoptr(ps_tensor) padded = ps_tensor_copy(qw_output(&c, "logits"), NULL);
  g_autoptr(ps_tensor) ta = qw_ids(1, 3, alone);
  qw_set_input(&c, "input_ids", ta, FALSE);
  qw_set_input(&c, "attention_mask", NULL, FALSE);
  qw_set_input(&c, "position_ids", NULL, FALSE);
  PS_CHECK(qw_forward(&c));
  const float *l0 = ps_f32(qw_output(&c, "logits"));
  double w = 0;
  for (int i = 0; i < 3 * V; i++) w = MAX(w, fabs(ps_f32(padded)[3 * V + i] - l0[i]));
  for (int i = 0; i < 3 * V; i++) PS_CHECK(isfinite(ps_f32(padded)[i])); /* pad rows: no NaN */
  PS_CHECK_MSG(w < 1e-4, "padded forward differs from the unpadded row by %g", w);
  qw_clear(&c);
}

int main(void) {
  test_left_padding();
  test_greedy_matches_full(CFG "}");
  test_greedy_matches_full(CFG ", lora: {r: 4, alpha: 8, dropout: 0.1, "
                               "targets: [q_proj, v_proj, o_proj, down_proj]}}");
  test_sampling();
  test_sampler_distribution();
  test_mrope_continuation();
  return ps_test_finish();
}
