/* qwen2_inputs.c — assembling llm.qwen2's input embeddings: token ids
 * through the embedding table (checked against the vocabulary), or given
 * embeddings, with image embeddings placed at the image_token_id
 * placeholders (Qwen2.5-VL's masked_scatter, per batch row), and the
 * bookkeeping backward needs (which rows came from the table, which from
 * image_embeds). */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2_plugin.h"

gboolean qwen2_self_inputs(qwen2_self *s, const int32_t *ids, const float *embeds,
                           const float *image, int64_t n_image, int64_t B, int64_t T,
                           GError **error) {
  qwen2_model *m = s->m;
  const int64_t N = B * T, D = m->cfg.hidden;
  if (N > s->cap_n) {
    g_free(s->emb);
    g_free(s->ids);
    g_free(s->img_row);
    s->emb = g_try_new(float, (gsize)(N * D));
    s->ids = g_try_new(int32_t, (gsize)N);
    s->img_row = g_try_new(int64_t, (gsize)N);
    s->cap_n = s->emb && s->ids && s->img_row ? N : 0;
    if (!s->cap_n) {
      g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                  "llm.qwen2: out of memory for %" G_GINT64_FORMAT " input rows", N);
      return FALSE;
    }
  }
  s->B = B;
  s->T = T;
  s->n_image = image ? n_image : 0;
  s->from_ids = ids != NULL;
  for (int64_t n = 0; n < N; n++) s->img_row[n] = -1;
  if (ids) {
    /* Placeholders get embedded as any token and are overwritten below; for
     * the gradient they are not table rows. */
    for (int64_t n = 0; n < N; n++) {
      gboolean img = image && ids[n] == s->image_token_id;
      if (!img && (ids[n] < 0 || ids[n] >= m->cfg.vocab)) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                    "llm.qwen2: input_ids[%" G_GINT64_FORMAT ", %" G_GINT64_FORMAT
                    "] = %d is outside the vocabulary [0, %" G_GINT64_FORMAT ")",
                    n / T, n % T, ids[n], m->cfg.vocab);
        return FALSE;
      }
      s->ids[n] = img ? -1 : ids[n];
    }
    m->k->embedding_forward(s->emb, s->ids, qwen2_pv(m, m->i_embed), N, m->cfg.vocab, D);
  } else {
    memcpy(s->emb, embeds, sizeof(float) * (size_t)(N * D));
    for (int64_t n = 0; n < N; n++) s->ids[n] = -1;
  }
  if (image) {
    for (int64_t b = 0; b < B; b++) {
      int64_t j = 0;
      for (int64_t t = 0; t < T; t++) {
        if (ids[b * T + t] != s->image_token_id) continue;
        if (j < n_image) {
          s->img_row[b * T + t] = b * n_image + j;
          memcpy(s->emb + (b * T + t) * D, image + (b * n_image + j) * D,
                 sizeof(float) * (size_t)D);
        }
        j++;
      }
      if (j != n_image) {
        g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                    "llm.qwen2: row %" G_GINT64_FORMAT " of input_ids holds %" G_GINT64_FORMAT
                    " image tokens (id %" G_GINT64_FORMAT ") but image_embeds has %" G_GINT64_FORMAT
                    " rows per batch entry",
                    b, j, s->image_token_id, n_image);
        return FALSE;
      }
    }
  }
  return TRUE;
}
