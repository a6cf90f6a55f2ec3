/* qwen2_backward.c — the shifted next-token cross-entropy of a Qwen2 forward
 * and the backward pass through the whole decoder (lm_head, final norm,
 * every layer's MLP, attention, RoPE and norms, LoRA branches, embeddings).
 * Gradients are added only into the parameters whose grad buffer is set.
 * All through the kernel table (device memory); the shifted targets are made
 * on the host and copied. */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>

#include "qwen2.h"

float qwen2_loss(qwen2_model *m, const int32_t *labels) {
  /* HF ForCausalLMLoss: logits[:, t] predicts labels[:, t + 1]; the last
   * position has no target; mean over the targets that are not -100. */
  const int64_t B = m->B, T = m->T;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++)
      m->targets_h[b * T + t] = t + 1 < T ? labels[b * T + t + 1] : -100;
  m->k->copy_to_device(m->targets, m->targets_h, sizeof(int32_t) * (size_t)(B * T));
  return m->k->crossentropy(NULL, NULL, m->logits, m->targets, B * T, m->cfg.vocab, -100, 0.0f,
                            0.0f);
}

gboolean qwen2_backward(qwen2_model *m, ps_context *ctx, const float *dlogits, const float *dhidden,
                        float dloss, const int32_t *ids, float *demb, GError **error) {
  const qwen2_cfg *c = &m->cfg;
  const ps_kernels *k = m->k;
  const int64_t B = m->B, T = m->T, N = B * T, D = c->hidden, I = c->intermediate, V = c->vocab;
  const int64_t qd = c->heads * c->head_dim, kvd = c->kv_heads * c->head_dim;
#define zero(p, n) k->mem_zero((p), sizeof(float) * (size_t)(n))
  if (!m->saved) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: backward needs a full (non-cached) forward first");
    return FALSE;
  }
  if ((dlogits || dloss != 0.0f) && !m->logits_all) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: backward through the logits needs a forward that computed them all");
    return FALSE;
  }
  if (!qwen2_reserve_bwd(m, N, error)) return FALSE;

  /* lm_head (tied: its gradient lands in embed_tokens). */
  if (dhidden)
    k->copy_on_device(m->dhidden, dhidden, sizeof(float) * (size_t)(N * D));
  else
    zero(m->dhidden, N * D);
  if (dlogits || dloss != 0.0f) {
    if (dlogits)
      k->copy_on_device(m->dlogits, dlogits, sizeof(float) * (size_t)(N * V));
    else
      zero(m->dlogits, N * V);
    if (dloss != 0.0f)
      k->crossentropy(m->dlogits, NULL, m->logits, m->targets, N, V, -100, 0.0f, dloss);
    k->linear_backward(m->dhidden, qwen2_pg(m, m->i_head), NULL, m->dlogits, m->hidden,
                       qwen2_pv(m, m->i_head), N, D, V);
  }
  zero(m->dx, N * D);
  k->rmsnorm_backward(m->dx, qwen2_pg(m, m->i_norm), m->dhidden, m->xf, qwen2_pv(m, m->i_norm),
                      m->rstdf, N, D);

  const ps_rope_desc rq = qwen2_rope_desc(c, N, c->heads), rk = qwen2_rope_desc(c, N, c->kv_heads);
  /* the forward's attention, key-padding bias included (it needs no gradient) */
  const ps_attention_desc d = qwen2_att_desc(m, B, T, T);
  if (!qwen2_reserve_scratch(m, k->attention_scratch(&d, 1), error)) return FALSE;

  /* m->dx holds the gradient of the current layer's output throughout. */
  for (int64_t l = c->layers - 1; l >= 0; l--) {
    qwen2_acts *a = &m->A[l];
    qwen2_layer *L = &m->L[l];
    /* MLP branch: out = xm + down(silu(gate(n2 xm)) * up(n2 xm)). */
    zero(m->dact, N * I);
    ps_linear_backward(&L->lin[QW_DOWN], k, m->dact, m->dx, N);
    zero(m->dgate, N * I);
    zero(m->dup, N * I);
    k->swiglu_backward(m->dgate, m->dup, m->dact, a->gate, a->up, N, I, I);
    zero(m->dln, N * D);
    ps_linear_backward(&L->lin[QW_GATE], k, m->dln, m->dgate, N);
    ps_linear_backward(&L->lin[QW_UP], k, m->dln, m->dup, N);
    k->rmsnorm_backward(m->dx, qwen2_pg(m, L->i_post_norm), m->dln, a->xm,
                        qwen2_pv(m, L->i_post_norm), a->rstd2, N, D);
    /* Attention branch: xm = x + o(attn(rope q, rope k, v)). */
    zero(m->datt, N * qd);
    ps_linear_backward(&L->lin[QW_O], k, m->datt, m->dx, N);
    zero(m->dqr, N * qd);
    zero(m->dkr, N * kvd);
    zero(m->dv, N * kvd);
    k->attention_backward(m->dqr, m->dkr, m->dv, NULL, NULL, NULL, m->datt, a->q, a->k, a->v,
                          a->att, a->lse, &d, m->att_scratch, m->att_scratch_n);
    zero(m->dq, N * qd);
    zero(m->dk, N * kvd);
    k->rope_backward(m->dq, m->dqr, m->pos, &rq);
    k->rope_backward(m->dk, m->dkr, m->pos, &rk);
    zero(m->dln, N * D);
    ps_linear_backward(&L->lin[QW_Q], k, m->dln, m->dq, N);
    ps_linear_backward(&L->lin[QW_K], k, m->dln, m->dk, N);
    ps_linear_backward(&L->lin[QW_V], k, m->dln, m->dv, N);
    k->rmsnorm_backward(m->dx, qwen2_pg(m, L->i_in_norm), m->dln, a->x, qwen2_pv(m, L->i_in_norm),
                        a->rstd1, N, D);
  }
  if (demb) k->axpy(demb, 1.0f, m->dx, N * D);
  float *gemb = qwen2_pg(m, m->i_embed);
  if (gemb && ids) k->embedding_backward(gemb, ids, m->dx, N, V, D);
  return TRUE;
#undef zero
}
