/* qwen2_forward.c — the forward pass of the Qwen2 decoder (full sequence or
 * KV-cached continuation), as HF's Qwen2ForCausalLM computes it in eager
 * mode: pre-norm residual layers, rotate-half RoPE applied to q and k before
 * caching, GQA causal attention with scale 1/sqrt(head_dim), SwiGLU MLP.
 * Every float it touches is the model's device memory, reached through the
 * kernel table only; positions and the padding mask are made on the host
 * and copied. */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>

#include "qwen2.h"

gboolean qwen2_reserve_scratch(qwen2_model *m, int64_t n, GError **error) {
  if (n <= m->att_scratch_n) return TRUE;
  if (m->att_scratch) m->k->mem_free(m->att_scratch);
  m->att_scratch = m->k->mem_alloc(sizeof(float) * (size_t)MAX(n, 1));
  m->att_scratch_n = m->att_scratch ? n : 0;
  if (!m->att_scratch)
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "llm.qwen2: out of memory for %" G_GINT64_FORMAT " floats of attention scratch", n);
  return m->att_scratch != NULL;
}

ps_rope_desc qwen2_rope_desc(const qwen2_cfg *c, int64_t N, int64_t H) {
  ps_rope_desc r = {0};
  r.N = N;
  r.H = H;
  r.D = c->head_dim;
  r.theta = (float)c->rope_theta;
  r.n_sections = c->n_sections;
  for (int i = 0; i < 3; i++) r.sections[i] = c->sections[i];
  return r;
}

/* Additive score of a padding key. Every query also sees its own key (see
 * padding_bias), so no row is fully masked and the softmax, its log-sum-exp
 * and the backward stay exact: a padding position attends to itself only
 * (HF gives such rows a meaningless uniform mix; either way they only feed
 * padding positions). */
#define QW_PAD_SCORE (-1e30f)

/* The mask is built on the host (from the host's padding flags) and copied. */
static gboolean reserve_bias(qwen2_model *m, int64_t n, GError **error) {
  if (n <= m->bias_n) return TRUE;
  g_free(m->bias_h);
  if (m->bias) m->k->mem_free(m->bias);
  m->bias_h = g_try_new(float, (gsize)n);
  m->bias = m->k->mem_alloc(sizeof(float) * (size_t)n);
  m->bias_n = m->bias && m->bias_h ? n : 0;
  if (!m->bias_n)
    g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                "llm.qwen2: out of memory for a %" G_GINT64_FORMAT "-float padding mask", n);
  return m->bias_n != 0;
}

static gboolean attention(qwen2_model *m, qwen2_acts *a, int64_t l, int64_t B, int64_t T,
                          qwen2_kv *kv, GError **error) {
  const qwen2_cfg *c = &m->cfg;
  const ps_kernels *k = m->k;
  const int64_t qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
  if (!kv) {
    ps_attention_desc d = qwen2_att_desc(m, B, T, T);
    if (!qwen2_reserve_scratch(m, k->attention_scratch(&d, 0), error)) return FALSE;
    k->attention_forward(a->att, a->lse, a->q, a->k, a->v, &d, m->att_scratch, m->att_scratch_n);
    return TRUE;
  }
  /* Keys are cached after RoPE; the cache's batch stride is its capacity, so
   * each batch row is its own attention call over the filled length (the new
   * tokens were counted in by the caller). */
  const int64_t Tk = kv->len + T;
  ps_attention_desc d = qwen2_att_desc(m, 1, T, Tk);
  d.bias_sb = d.bias_sh = 0;
  if (!qwen2_reserve_scratch(m, k->attention_scratch(&d, 0), error)) return FALSE;
  for (int64_t b = 0; b < B; b++) {
    float *kc = kv->k[l] + b * kv->cap * kvd, *vc = kv->v[l] + b * kv->cap * kvd;
    k->copy_on_device(kc + kv->len * kvd, a->k + b * T * kvd, sizeof(float) * (size_t)(T * kvd));
    k->copy_on_device(vc + kv->len * kvd, a->v + b * T * kvd, sizeof(float) * (size_t)(T * kvd));
    if (d.bias) d.bias = m->bias + b * T * Tk;
    k->attention_forward(a->att + b * T * qd, a->lse + b * c->heads * T, a->q + b * T * qd, kc, vc,
                         &d, m->att_scratch, m->att_scratch_n);
  }
  return TRUE;
}

ps_attention_desc qwen2_att_desc(const qwen2_model *m, int64_t nb, int64_t Tq, int64_t Tk) {
  const qwen2_cfg *c = &m->cfg;
  ps_attention_desc d = {0};
  d.B = nb;
  d.Hq = c->heads;
  d.Hkv = c->kv_heads;
  d.Tq = Tq;
  d.Tk = Tk;
  d.D = c->head_dim;
  d.scale = (float)(1.0 / sqrt((double)c->head_dim));
  d.causal = 1;
  if (m->use_bias) {
    d.bias = m->bias;
    d.bias_sb = Tq * Tk;
    d.bias_sh = 0;
  }
  return d;
}

/* Builds the key-padding bias of this call into m->bias and sets
 * m->use_bias; with kv, records the new tokens' mask in the cache first. */
static gboolean padding_bias(qwen2_model *m, const int32_t *mask, int64_t B, int64_t T,
                             qwen2_kv *kv, GError **error) {
  gboolean pad = FALSE;
  for (int64_t n = 0; mask && n < B * T; n++) pad = pad || mask[n] == 0;
  if (kv) {
    for (int64_t b = 0; b < B; b++)
      for (int64_t t = 0; t < T; t++)
        kv->keep[b * kv->cap + kv->len + t] = !mask || mask[b * T + t];
    kv->any_pad = kv->any_pad || pad;
    pad = kv->any_pad;
  }
  m->use_bias = pad;
  if (!pad) return TRUE;
  const int64_t Tk = kv ? kv->len + T : T;
  if (!reserve_bias(m, B * T * Tk, error)) {
    m->use_bias = FALSE;
    return FALSE;
  }
  for (int64_t b = 0; b < B; b++)
    for (int64_t j = 0; j < Tk; j++) {
      gboolean keep = kv ? kv->keep[b * kv->cap + j] : mask[b * T + j] != 0;
      /* query i's own key is j = i + Tk - T */
      for (int64_t i = 0; i < T; i++)
        m->bias_h[(b * T + i) * Tk + j] = keep || j == i + Tk - T ? 0.0f : QW_PAD_SCORE;
    }
  m->k->copy_to_device(m->bias, m->bias_h, sizeof(float) * (size_t)(B * T * Tk));
  return TRUE;
}

gboolean qwen2_forward(qwen2_model *m, ps_context *ctx, const float *emb, const int32_t *pos,
                       const int32_t *mask, int64_t B, int64_t T, qwen2_kv *kv,
                       qwen2_logits_mode mode, GError **error) {
  const qwen2_cfg *c = &m->cfg;
  const ps_kernels *k = m->k;
  const int64_t N = B * T, D = c->hidden, I = c->intermediate, V = c->vocab;
  /* With the KV cache (generation: no backward follows) every sequence's
   * products are its own, so its bits never depend on the batch; T = 1 is
   * a decode step. Without it (training, scoring) one product of N rows,
   * whose inputs the backward needs. */
  const int64_t seq_rows = kv ? T : N;
  const float eps = (float)c->rms_eps;
  m->saved = FALSE;
  if (B <= 0 || T <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "llm.qwen2: empty input (B %" G_GINT64_FORMAT ", T %" G_GINT64_FORMAT ")", B, T);
    return FALSE;
  }
  if (kv && (kv->B != B || kv->len + T > kv->cap || kv->layers != c->layers)) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: KV cache (batch %" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                " of %" G_GINT64_FORMAT " tokens used) cannot take %" G_GINT64_FORMAT
                " x %" G_GINT64_FORMAT " more tokens",
                kv->B, kv->len, kv->cap, B, T);
    return FALSE;
  }
  if (!qwen2_reserve_rows(m, N, error)) return FALSE;
  const int64_t S = c->n_sections ? c->n_sections : 1;
  /* Positions are decided on the host (next_pos below reads them back). */
  if (pos) {
    memcpy(m->pos_h, pos, sizeof(int32_t) * (size_t)(S * N));
  } else {
    for (int64_t s = 0; s < S; s++)
      for (int64_t n = 0; n < N; n++)
        m->pos_h[s * N + n] = (int32_t)((kv ? kv->next_pos[n / T] : 0) + n % T);
  }
  k->copy_to_device(m->pos, m->pos_h, sizeof(int32_t) * (size_t)(S * N));
  if (!padding_bias(m, mask, B, T, kv, error)) return FALSE;
  const ps_rope_desc rq = qwen2_rope_desc(c, N, c->heads), rk = qwen2_rope_desc(c, N, c->kv_heads);

  k->copy_on_device(m->A[0].x, emb, sizeof(float) * (size_t)(N * D));
  for (int64_t l = 0; l < c->layers; l++) {
    qwen2_acts *a = &m->A[l];
    qwen2_layer *L = &m->L[l];
    float *next = l + 1 < c->layers ? m->A[l + 1].x : m->xf;
    k->rmsnorm_forward(a->ln1, a->rstd1, a->x, qwen2_pv(m, L->i_in_norm), N, D, eps);
    if (!qwen2_linear_forward(&L->lin[QW_Q], k, ctx, a->q, a->ln1, N, seq_rows, error) ||
        !qwen2_linear_forward(&L->lin[QW_K], k, ctx, a->k, a->ln1, N, seq_rows, error) ||
        !qwen2_linear_forward(&L->lin[QW_V], k, ctx, a->v, a->ln1, N, seq_rows, error))
      return FALSE;
    k->rope_forward(a->q, a->q, m->pos, &rq);
    k->rope_forward(a->k, a->k, m->pos, &rk);
    if (!attention(m, a, l, B, T, kv, error)) return FALSE;
    if (!qwen2_linear_forward(&L->lin[QW_O], k, ctx, a->xm, a->att, N, seq_rows, error))
      return FALSE;
    k->axpy(a->xm, 1.0f, a->x, N * D);
    k->rmsnorm_forward(a->ln2, a->rstd2, a->xm, qwen2_pv(m, L->i_post_norm), N, D, eps);
    if (!qwen2_linear_forward(&L->lin[QW_GATE], k, ctx, a->gate, a->ln2, N, seq_rows, error) ||
        !qwen2_linear_forward(&L->lin[QW_UP], k, ctx, a->up, a->ln2, N, seq_rows, error))
      return FALSE;
    k->swiglu_forward(a->act, a->gate, a->up, N, I, I);
    if (!qwen2_linear_forward(&L->lin[QW_DOWN], k, ctx, next, a->act, N, seq_rows, error))
      return FALSE;
    k->axpy(next, 1.0f, a->xm, N * D);
  }
  k->rmsnorm_forward(m->hidden, m->rstdf, m->xf, qwen2_pv(m, m->i_norm), N, D, eps);
  const float *head = qwen2_pv(m, m->i_head);
  if (mode == QWEN2_LOGITS_ALL) {
    k->linear_forward(m->logits, m->hidden, head, NULL, N, D, V);
  } else if (mode == QWEN2_LOGITS_LAST && m->host) {
    /* One row per sequence, T rows apart: the head (V x D, the largest
     * matrix) read once for all of them, batch-invariant. */
    qwen2_gemv_rows(m->logits, m->hidden + (T - 1) * D, T * D, head, NULL, B, D, V);
  } else if (mode == QWEN2_LOGITS_LAST) {
    /* Off the CPU (qwen2_gemv_rows is a CPU kernel): gather the last rows
     * and one product through the table, whose bits may depend on B. */
    k->copy_2d(m->last, D, m->hidden + (T - 1) * D, T * D, B, D, 0);
    k->linear_forward(m->logits, m->last, head, NULL, B, D, V);
  }
  m->B = B;
  m->T = T;
  if (kv) {
    /* HF continues after the largest position used (M-RoPE rope_deltas;
     * cumsum positions with left padding); for plain 1-D positions this is
     * just the length. */
    for (int64_t b = 0; b < B; b++) {
      int64_t mx = kv->next_pos[b] - 1;
      for (int64_t s = 0; s < S; s++)
        for (int64_t t = 0; t < T; t++) mx = MAX(mx, (int64_t)m->pos_h[s * N + b * T + t]);
      kv->next_pos[b] = mx + 1;
    }
    kv->len += T;
  } else {
    m->saved = TRUE;
    m->logits_all = mode == QWEN2_LOGITS_ALL;
  }
  return TRUE;
}
