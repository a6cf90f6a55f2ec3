/* qwen2_kv.c — the key/value cache of incremental decoding: per layer a
 * (B, cap, Hkv*hd) block for keys (after RoPE) and one for values, the
 * padding mask of the cached keys and each row's next position. The blocks
 * are memory of the model's kernel table; the mask and positions, which the
 * host decides from, are host memory. */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2.h"

qwen2_kv *qwen2_kv_new(const qwen2_cfg *c, const ps_kernels *k, int64_t B, int64_t cap,
                       GError **error) {
  if (B <= 0 || cap <= 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "llm.qwen2: KV cache needs a positive batch and capacity (got %" G_GINT64_FORMAT
                ", %" G_GINT64_FORMAT ")",
                B, cap);
    return NULL;
  }
  qwen2_kv *kv = g_new0(qwen2_kv, 1);
  kv->B = B;
  kv->cap = cap;
  kv->layers = c->layers;
  kv->kvd = c->kv_heads * c->head_dim;
  kv->mem = k;
  kv->k = g_new0(float *, c->layers);
  kv->v = g_new0(float *, c->layers);
  kv->keep = g_try_new0(uint8_t, (gsize)(B * cap));
  kv->next_pos = g_new0(int64_t, B);
  const size_t n = sizeof(float) * (size_t)(B * cap * kv->kvd);
  for (int64_t l = 0; l < c->layers; l++) {
    kv->k[l] = k->mem_alloc(n);
    kv->v[l] = k->mem_alloc(n);
    if (!kv->k[l] || !kv->v[l] || !kv->keep) {
      g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                  "llm.qwen2: out of memory for a KV cache of %" G_GINT64_FORMAT
                  " x %" G_GINT64_FORMAT " tokens",
                  B, cap);
      qwen2_kv_free(kv);
      return NULL;
    }
  }
  return kv;
}

void qwen2_kv_free(qwen2_kv *kv) {
  if (!kv) return;
  for (int64_t l = 0; l < kv->layers; l++) {
    if (kv->k && kv->k[l]) kv->mem->mem_free(kv->k[l]);
    if (kv->v && kv->v[l]) kv->mem->mem_free(kv->v[l]);
  }
  g_free(kv->k);
  g_free(kv->v);
  g_free(kv->keep);
  g_free(kv->next_pos);
  g_free(kv);
}

void qwen2_kv_reset(qwen2_kv *kv) {
  kv->len = 0;
  kv->any_pad = FALSE;
  memset(kv->next_pos, 0, sizeof(int64_t) * (size_t)kv->B);
}
