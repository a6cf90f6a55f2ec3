/* qwen2_inputs.c — assembling llm.qwen2's input embeddings: token ids
 * through the embedding table (checked against the vocabulary), or given
 * embeddings, with image embeddings placed at the image_token_id
 * placeholders (Qwen2.5-VL's masked_scatter, per batch row), and the
 * bookkeeping backward needs (which rows came from the table, which from
 * image_embeds). The ids are read on the host (validation, placeholder
 * positions); the embeddings are assembled in device memory through the
 * kernel table. */
#include <string.h>

#include <pathseg/error.h>

#include "qwen2_plugin.h"

/* Copies rows [n0, n1) of `image` rows r0.. into s->emb rows: one copy per
 * run of consecutive placeholders (an image block is one run). */
static void place_run(qwen2_self *s, const float *image, gboolean src_host, int64_t n0, int64_t r0,
                      int64_t rows) {
  const ps_kernels *k = s->m->k;
  const int64_t D = s->m->cfg.hidden;
  const size_t bytes = sizeof(float) * (size_t)(rows * D);
  if (src_host)
    k->copy_to_device(s->emb + n0 * D, image + r0 * D, bytes);
  else
    k->copy_on_device(s->emb + n0 * D, image + r0 * D, bytes);
}

static void free_rows(qwen2_self *s) {
  if (s->emb) s->m->k->mem_free(s->emb);
  if (s->ids_d) s->m->k->mem_free(s->ids_d);
  s->emb = NULL;
  s->ids_d = NULL;
  g_clear_pointer(&s->ids, g_free);
  g_clear_pointer(&s->img_row, g_free);
  s->cap_n = 0;
}

gboolean qwen2_self_inputs(qwen2_self *s, const int32_t *ids, const float *embeds,
                           const float *image, gboolean src_host, int64_t n_image, int64_t B,
                           int64_t T, GError **error) {
  qwen2_model *m = s->m;
  const ps_kernels *k = m->k;
  const int64_t N = B * T, D = m->cfg.hidden;
  if (N > s->cap_n) {
    free_rows(s);
    s->emb = k->mem_alloc(sizeof(float) * (size_t)(N * D));
    s->ids_d = k->mem_alloc(sizeof(int32_t) * (size_t)N);
    s->ids = g_try_new(int32_t, (gsize)N);
    s->img_row = g_try_new(int64_t, (gsize)N);
    s->cap_n = s->emb && s->ids_d && s->ids && s->img_row ? N : 0;
    if (!s->cap_n) {
      free_rows(s);
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
    k->copy_to_device(s->ids_d, s->ids, sizeof(int32_t) * (size_t)N);
    k->embedding_forward(s->emb, s->ids_d, qwen2_pv(m, m->i_embed), N, m->cfg.vocab, D);
  } else {
    const size_t bytes = sizeof(float) * (size_t)(N * D);
    if (src_host)
      k->copy_to_device(s->emb, embeds, bytes);
    else
      k->copy_on_device(s->emb, embeds, bytes);
    for (int64_t n = 0; n < N; n++) s->ids[n] = -1;
    k->copy_to_device(s->ids_d, s->ids, sizeof(int32_t) * (size_t)N);
  }
  if (image) {
    for (int64_t b = 0; b < B; b++) {
      int64_t j = 0, run0 = -1, run_r = 0, run_n = 0;
      for (int64_t t = 0; t < T; t++) {
        if (ids[b * T + t] != s->image_token_id) continue;
        if (j < n_image) {
          const int64_t n = b * T + t, r = b * n_image + j;
          s->img_row[n] = r;
          if (run_n > 0 && n == run0 + run_n && r == run_r + run_n) {
            run_n++;
          } else {
            if (run_n > 0) place_run(s, image, src_host, run0, run_r, run_n);
            run0 = n;
            run_r = r;
            run_n = 1;
          }
        }
        j++;
      }
      if (run_n > 0) place_run(s, image, src_host, run0, run_r, run_n);
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

void qwen2_self_free_rows(qwen2_self *s) {
  free_rows(s);
}
