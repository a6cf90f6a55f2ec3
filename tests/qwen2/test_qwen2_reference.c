/* test_qwen2_reference.c — llm.qwen2's forward against an independent
 * double-precision decoder written from spec/model.md §4 (embedding,
 * RMSNorm, q/k/v with bias, rotate-half RoPE with M-RoPE sections over three
 * position streams, causal GQA, SwiGLU, tied or untied head), with random
 * weights and Qwen2.5-VL style positions (an image block whose h/w streams
 * differ from t). Also: for text-only tokens M-RoPE equals 1-D RoPE (the
 * same model with and without mrope_section gives identical logits), and a
 * [B, T] position_ids input is the default arange.
 *
 * Tolerance: float32 against double over two layers at width 16-32 with
 * weights N(0, 0.2): observed errors ~1e-6; 1e-4 absolute catches any
 * wrong section, pairing or head mapping (those change logits by O(0.1)). */
#include "qw_harness.h"

typedef struct {
  int64_t D, L, Hq, Hkv, hd, I, V;
  gboolean tied;
  double theta, eps;
  int sections[3]; /* all 0: 1-D */
} ref_cfg;

static const float *P(qw_comp *c, const char *fmt, int64_t l) {
  g_autofree char *name = g_strdup_printf(fmt, l);
  ps_param *p = qw_param(c, name);
  g_assert(p);
  return ps_f32(p->value);
}

static void rms(double *y, const double *x, const float *w, int64_t D, double eps) {
  double ss = 0;
  for (int64_t i = 0; i < D; i++) ss += x[i] * x[i];
  double r = 1.0 / sqrt(ss / D + eps);
  for (int64_t i = 0; i < D; i++) y[i] = x[i] * r * w[i];
}

static void lin(double *y, const double *x, const float *W, const float *b, int64_t in,
                int64_t out) {
  for (int64_t o = 0; o < out; o++) {
    double s = b ? b[o] : 0;
    for (int64_t i = 0; i < in; i++) s += (double)W[o * in + i] * x[i];
    y[o] = s;
  }
}

/* rotate-half RoPE on one head vector with the stream of each frequency */
static void rope(double *v, const ref_cfg *r, const int32_t *pos3, int64_t n, int64_t N) {
  int64_t half = r->hd / 2;
  for (int64_t j = 0; j < half; j++) {
    int s = 0;
    if (r->sections[0] + r->sections[1] + r->sections[2] > 0)
      s = j < r->sections[0] ? 0 : j < r->sections[0] + r->sections[1] ? 1 : 2;
    double ang = pos3[s * N + n] * pow(r->theta, -2.0 * j / r->hd);
    double a = v[j], b = v[j + half];
    v[j] = a * cos(ang) - b * sin(ang);
    v[j + half] = b * cos(ang) + a * sin(ang);
  }
}

/* logits (B*T, V) in double */
static double *reference(qw_comp *c, const ref_cfg *r, const int32_t *ids, const int32_t *pos3,
                         int64_t B, int64_t T) {
  const int64_t N = B * T, D = r->D, qd = r->Hq * r->hd, kvd = r->Hkv * r->hd;
  double *x = g_new0(double, N *D), *h = g_new0(double, N *D), *q = g_new0(double, N *qd);
  double *k = g_new0(double, N *kvd), *v = g_new0(double, N *kvd), *att = g_new0(double, N *qd);
  double *t1 = g_new0(double, MAX(r->I, D)), *t2 = g_new0(double, MAX(r->I, D));
  double *p = g_new0(double, T);
  const float *E = P(c, "model.embed_tokens.weight", 0);
  for (int64_t n = 0; n < N; n++)
    for (int64_t i = 0; i < D; i++) x[n * D + i] = E[ids[n] * D + i];
  for (int64_t l = 0; l < r->L; l++) {
    for (int64_t n = 0; n < N; n++) {
      rms(h + n * D, x + n * D, P(c, "model.layers.%ld.input_layernorm.weight", l), D, r->eps);
      lin(q + n * qd, h + n * D, P(c, "model.layers.%ld.self_attn.q_proj.weight", l),
          P(c, "model.layers.%ld.self_attn.q_proj.bias", l), D, qd);
      lin(k + n * kvd, h + n * D, P(c, "model.layers.%ld.self_attn.k_proj.weight", l),
          P(c, "model.layers.%ld.self_attn.k_proj.bias", l), D, kvd);
      lin(v + n * kvd, h + n * D, P(c, "model.layers.%ld.self_attn.v_proj.weight", l),
          P(c, "model.layers.%ld.self_attn.v_proj.bias", l), D, kvd);
      for (int64_t hh = 0; hh < r->Hq; hh++) rope(q + n * qd + hh * r->hd, r, pos3, n, N);
      for (int64_t g = 0; g < r->Hkv; g++) rope(k + n * kvd + g * r->hd, r, pos3, n, N);
    }
    for (int64_t b = 0; b < B; b++)
      for (int64_t hh = 0; hh < r->Hq; hh++) {
        int64_t g = hh / (r->Hq / r->Hkv);
        for (int64_t i = 0; i < T; i++) {
          const double *qi = q + (b * T + i) * qd + hh * r->hd;
          double mx = -INFINITY, s = 0;
          for (int64_t j = 0; j <= i; j++) {
            const double *kj = k + (b * T + j) * kvd + g * r->hd;
            double d = 0;
            for (int64_t e = 0; e < r->hd; e++) d += qi[e] * kj[e];
            p[j] = d / sqrt((double)r->hd);
            mx = MAX(mx, p[j]);
          }
          for (int64_t j = 0; j <= i; j++) s += (p[j] = exp(p[j] - mx));
          double *o = att + (b * T + i) * qd + hh * r->hd;
          for (int64_t e = 0; e < r->hd; e++) {
            double acc = 0;
            for (int64_t j = 0; j <= i; j++) acc += p[j] * v[(b * T + j) * kvd + g * r->hd + e];
            o[e] = acc / s;
          }
        }
      }
    for (int64_t n = 0; n < N; n++) {
      lin(t1, att + n * qd, P(c, "model.layers.%ld.self_attn.o_proj.weight", l), NULL, qd, D);
      for (int64_t i = 0; i < D; i++) x[n * D + i] += t1[i];
      rms(h + n * D, x + n * D, P(c, "model.layers.%ld.post_attention_layernorm.weight", l), D,
          r->eps);
      lin(t1, h + n * D, P(c, "model.layers.%ld.mlp.gate_proj.weight", l), NULL, D, r->I);
      lin(t2, h + n * D, P(c, "model.layers.%ld.mlp.up_proj.weight", l), NULL, D, r->I);
      for (int64_t i = 0; i < r->I; i++) t1[i] = t1[i] / (1 + exp(-t1[i])) * t2[i];
      lin(t2, t1, P(c, "model.layers.%ld.mlp.down_proj.weight", l), NULL, r->I, D);
      for (int64_t i = 0; i < D; i++) x[n * D + i] += t2[i];
    }
  }
  double *logits = g_new0(double, N * r->V);
  const float *head = r->tied ? E : P(c, "lm_head.weight", 0);
  for (int64_t n = 0; n < N; n++) {
    rms(h + n * D, x + n * D, P(c, "model.norm.weight", 0), D, r->eps);
    lin(logits + n * r->V, h + n * D, head, NULL, D, r->V);
  }
  g_free(x), g_free(h), g_free(q), g_free(k), g_free(v), g_free(att), g_free(t1), g_free(t2);
  g_free(p);
  return logits;
}

static double max_err(const ps_tensor *got, const double *want) {
  double e = 0;
  for (int64_t i = 0; i < ps_tensor_numel(got); i++) e = MAX(e, fabs(ps_f32(got)[i] - want[i]));
  return e;
}

static const int32_t ids[] = {5, 17, 3, 3, 3, 3, 40, 2, 9, 33, 3, 3, 3, 3, 1, 7};

static void test_against_reference(const char *yaml, const ref_cfg *r, gboolean mrope_positions) {
  ps_rng rng;
  ps_rng_seed(&rng, 77);
  qw_comp c;
  if (!qw_init(&c, yaml, 1)) return;
  qw_randomize(&c, &rng, 0.2);
  const int64_t B = 2, T = 8, N = B * T;
  /* Qwen2.5-VL get_rope_index for "t t <image 2x2> t t": text 0, 1; the
   * image at t = 2, h = 2 + row, w = 2 + col; text continues at max + 1 = 4. */
  int32_t pos3[3 * 16];
  static const int32_t pt[8] = {0, 1, 2, 2, 2, 2, 4, 5}, ph[8] = {0, 1, 2, 2, 3, 3, 4, 5},
                       pw[8] = {0, 1, 2, 3, 2, 3, 4, 5};
  for (int64_t n = 0; n < N; n++) {
    int64_t t = n % T;
    pos3[n] = mrope_positions ? pt[t] : (int32_t)t;
    pos3[N + n] = mrope_positions ? ph[t] : (int32_t)t;
    pos3[2 * N + n] = mrope_positions ? pw[t] : (int32_t)t;
  }
  g_autoptr(ps_tensor) tids = qw_ids(B, T, ids);
  g_autoptr(ps_tensor) tpos = ps_tensor_new4(PS_DTYPE_I32, 3, B, T, -1, NULL);
  memcpy(tpos->data, pos3, sizeof pos3);
  qw_set_input(&c, "input_ids", tids, FALSE);
  if (mrope_positions) qw_set_input(&c, "position_ids", tpos, FALSE);
  PS_CHECK(qw_forward(&c));
  g_autofree double *want = reference(&c, r, ids, pos3, B, T);
  double e = max_err(qw_output(&c, "logits"), want);
  printf("%s: max |logits - double reference| = %.3g\n", yaml, e);
  PS_CHECK_MSG(e < 1e-4, "logits differ from the double reference by %g", e);
  if (mrope_positions) {
    /* the streams matter: dropping the image positions moves the logits */
    qw_set_input(&c, "position_ids", NULL, FALSE);
    PS_CHECK(qw_forward(&c));
    PS_CHECK(max_err(qw_output(&c, "logits"), want) > 1e-3);
  }
  qw_clear(&c);
}

#define SIZES "hidden: 32, layers: 2, heads: 4, kv_heads: 2, intermediate: 40, vocab: 48, "

/* Text-only tokens: M-RoPE (any sections) == 1-D RoPE, bit for bit. */
static void test_text_only_equals_1d(void) {
  ps_rng r1, r2;
  ps_rng_seed(&r1, 5);
  ps_rng_seed(&r2, 5);
  qw_comp a, b;
  if (!qw_init(&a, "{" SIZES "tied: true}", 1)) return;
  if (!qw_init(&b, "{" SIZES "tied: true, mrope_section: [1, 3, 0]}", 1)) return;
  qw_randomize(&a, &r1, 0.2);
  qw_randomize(&b, &r2, 0.2);
  g_autoptr(ps_tensor) tids = qw_ids(2, 8, ids);
  qw_set_input(&a, "input_ids", tids, FALSE);
  qw_set_input(&b, "input_ids", tids, FALSE);
  PS_CHECK(qw_forward(&a));
  PS_CHECK(qw_forward(&b));
  const ps_tensor *la = qw_output(&a, "logits"), *lb = qw_output(&b, "logits");
  PS_CHECK(memcmp(la->data, lb->data, la->nbytes) == 0);
  /* 3 equal explicit streams, and a [B, T] input replicated to 3 streams */
  int32_t p3[3 * 16], p1[16];
  for (int n = 0; n < 16; n++) p1[n] = p3[n] = p3[16 + n] = p3[32 + n] = 3 + n % 8;
  g_autoptr(ps_tensor) t3 = ps_tensor_new4(PS_DTYPE_I32, 3, 2, 8, -1, NULL);
  g_autoptr(ps_tensor) t1 = qw_ids(2, 8, p1);
  memcpy(t3->data, p3, sizeof p3);
  qw_set_input(&a, "position_ids", t1, FALSE);
  qw_set_input(&b, "position_ids", t3, FALSE);
  PS_CHECK(qw_forward(&a));
  PS_CHECK(qw_forward(&b));
  la = qw_output(&a, "logits");
  lb = qw_output(&b, "logits");
  PS_CHECK(memcmp(la->data, lb->data, la->nbytes) == 0);
  qw_set_input(&b, "position_ids", t1, FALSE);
  PS_CHECK(qw_forward(&b));
  PS_CHECK(memcmp(la->data, qw_output(&b, "logits")->data, la->nbytes) == 0);
  qw_clear(&a);
  qw_clear(&b);
}

int main(void) {
  ref_cfg r = {32, 2, 4, 2, 8, 40, 48, FALSE, 1e6, 1e-6, {0, 0, 0}};
  test_against_reference("{" SIZES "tied: false}", &r, FALSE);
  ref_cfg rm = {32, 2, 4, 2, 8, 40, 48, TRUE, 100.0, 1e-5, {1, 2, 1}};
  test_against_reference("{" SIZES "tied: true, rope_theta: 100.0, rms_eps: 1e-5, "
                         "mrope_section: [1, 2, 1]}",
                         &rm, TRUE);
  /* head_dim other than hidden / heads (q_proj (24, 32), o_proj (32, 24)) */
  ref_cfg rq = {32, 2, 2, 1, 12, 40, 48, TRUE, 50.0, 1e-6, {2, 3, 1}};
  test_against_reference("{hidden: 32, layers: 2, heads: 2, kv_heads: 1, head_dim: 12, "
                         "intermediate: 40, vocab: 48, tied: true, rope_theta: 50.0, "
                         "mrope_section: [2, 3, 1]}",
                         &rq, TRUE);
  test_text_only_equals_1d();
  return ps_test_finish();
}
