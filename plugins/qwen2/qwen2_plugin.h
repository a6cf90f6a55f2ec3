/* qwen2_plugin.h — what the files of the qwen2 plugin share: the llm.qwen2
 * instance, the input assembly (ids, embeddings, image placeholders) and the
 * capabilities. */
#pragma once

#include "qwen2.h"
#include <pathseg/generate.h>

G_BEGIN_DECLS

typedef struct qwen2_self {
  qwen2_model *m;
  ps_device dev;          /* the context's: where parameters and activations live */
  int64_t image_token_id; /* -1: none */
  /* Inputs of the last forward. */
  float *emb;       /* (N, D) input embeddings (device) */
  int32_t *ids;     /* (N) ids for the embedding gradient; -1 at image / embeds rows (host) */
  int32_t *ids_d;   /* (N) the same on the device, for the embedding kernels */
  int64_t *img_row; /* (N) row of image_embeds placed there, or -1 (host) */
  int64_t cap_n, B, T, n_image;
  gboolean from_ids, have_loss;
  /* Outputs (views over the model's buffers) and input gradients (device). */
  ps_tensor *logits, *hidden, *loss;
  ps_tensor *d_embeds, *d_image;
  /* Inputs that arrived on another device: host copies of the integer
   * inputs (control data), device copies of the gradients received. */
  ps_tensor *c_ids, *c_pos, *c_mask, *c_labels, *c_emb, *c_img, *c_gl, *c_gh;
  /* Generation. */
  qwen2_kv *kv;
  float *gen_hidden; /* (B, D) host */
  float *gen_logits; /* (B, V) host copy of the logits when the model is not on the CPU */
  int64_t gen_B;
} qwen2_self;

/* Fills self->emb (B*T, D) from ids (B, T, host) or embeds (B, T, D), then
 * puts consecutive rows of image (B, n_image, D) at the image_token_id
 * positions of each row (each row must hold exactly n_image of them).
 * embeds and image are host memory when src_host, else the model's device
 * memory. */
gboolean qwen2_self_inputs(qwen2_self *s, const int32_t *ids, const float *embeds,
                           const float *image, gboolean src_host, int64_t n_image, int64_t B,
                           int64_t T, GError **error);
/* Frees the input rows (device memory of s->m's table: before the model). */
void qwen2_self_free_rows(qwen2_self *s);

/* Sampling from one row of logits (V): greedy when temperature <= 0, else
 * softmax(logits / temperature) restricted to the top-p nucleus. Returns the
 * token and its log-probability log softmax(logits / t)[token] (t = 1 when
 * greedy). `work` holds 2 * V floats / indices of scratch. */
int32_t qwen2_sample(const float *logits, int64_t V, double temperature, double top_p, ps_rng *rng,
                     float *logprob, float *work, int32_t *idx);

extern const ps_fixture_iface qwen2_fixture_iface;
extern const ps_llm_generate_iface qwen2_generate_iface;

G_END_DECLS
