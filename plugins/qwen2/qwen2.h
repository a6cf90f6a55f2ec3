/* qwen2.h — the Qwen2 decoder of the qwen2 plugin (internal API).
 *
 * The model is HF transformers' Qwen2ForCausalLM (spec/model.md §4):
 *   h = embed(ids); per layer: h += o(Attn(rope(q(n1 h)), rope(k(n1 h)), v(n1 h)));
 *   h += down(silu(gate(n2 h)) * up(n2 h)); hidden = norm(h); logits = hidden lm_head^T
 * with RMSNorm in float32, rotate-half RoPE (optionally Qwen2-VL M-RoPE
 * sections over 3 position streams), grouped-query causal attention, q/k/v
 * biases, and optional LoRA on any of the seven projections (layers.h).
 *
 * One forward function serves training (full sequence, activations kept for
 * backward) and KV-cached decoding (new tokens attend to the cache plus
 * themselves; nothing kept for backward). Parameters carry their HF names.
 *
 * Devices: every float buffer below (parameters, activations, gradients,
 * the KV cache, scratch) lives in the memory of the model's kernel table
 * `k` and is only touched through it, so the model runs on any device. What
 * the host decides from (token ids, positions, padding masks, labels) stays
 * on the host, with a device copy (`*_h` host, plain name device) for the
 * kernels that read it. */
#pragma once

#include <glib.h>
#include <pathseg/kernels.h>
#include <pathseg/layers.h>
#include <pathseg/plugin.h>

G_BEGIN_DECLS

#define QWEN2_MAX_LAYERS 256

/* The seven projections of a decoder layer, in parameter order. */
typedef enum { QW_Q, QW_K, QW_V, QW_O, QW_GATE, QW_UP, QW_DOWN, QW_NLIN } qwen2_proj;

/* "q_proj", ... (the peft target names). */
const char *qwen2_proj_name(qwen2_proj p);

typedef struct qwen2_cfg {
  int64_t hidden, layers, heads, kv_heads, head_dim, intermediate, vocab;
  gboolean tied; /* lm_head is embed_tokens */
  double rope_theta, rms_eps;
  int32_t n_sections;  /* 0: 1-D RoPE; 3: M-RoPE with 3 position streams */
  int32_t sections[3]; /* mrope_section, sum = head_dim / 2 */
  int64_t lora_r;      /* 0: no LoRA */
  double lora_alpha, lora_dropout;
  guint lora_targets; /* bit p set: LoRA on projection p */
  double init_std;    /* random initialisation std (HF initializer_range 0.02) */
} qwen2_cfg;

/* Fills every size from a preset name ("tiny", "qwen2.5-0.5b", "qwen2.5-3b",
 * "qwen2.5-7b"); FALSE for an unknown name. */
gboolean qwen2_cfg_preset(qwen2_cfg *c, const char *preset, GError **error);
/* Checks the combination (heads divide, sections sum, sizes positive). */
gboolean qwen2_cfg_validate(const qwen2_cfg *c, const char *who, GError **error);
/* Sets the LoRA target bit of a peft target name; FALSE for an unknown one. */
gboolean qwen2_cfg_add_target(qwen2_cfg *c, const char *name, GError **error);

typedef struct qwen2_layer {
  ps_linear lin[QW_NLIN];
  guint i_in_norm, i_post_norm; /* indices into the parameter array */
} qwen2_layer;

/* Activations of one layer for N = B*T rows (kept for backward). */
typedef struct qwen2_acts {
  float *x;               /* (N, D) layer input (residual stream) */
  float *ln1, *rstd1;     /* (N, D), (N) */
  float *q, *k, *v;       /* (N, Hq*hd), (N, Hkv*hd) x2, after RoPE */
  float *att, *lse;       /* (N, Hq*hd) attention output, (B, Hq, T) */
  float *xm;              /* (N, D) residual after attention */
  float *ln2, *rstd2;     /* (N, D), (N) */
  float *gate, *up, *act; /* (N, I) each */
} qwen2_acts;

/* A key/value cache for incremental decoding: per layer K and V of shape
 * (B, cap, Hkv*hd), keys stored after RoPE (as HF's DynamicCache). K and V
 * are memory of the table `mem`; the bookkeeping is host memory. */
typedef struct qwen2_kv {
  int64_t B, cap, len; /* batch, capacity and filled length in tokens */
  int64_t layers, kvd; /* kvd = Hkv * hd */
  const ps_kernels *mem;
  float **k, **v;   /* [layers] -> (B, cap, kvd), device */
  uint8_t *keep;    /* (B, cap) 0 where the cached key is padding (host) */
  gboolean any_pad; /* some cached key is padding */
  /* (B) position of each row's next token: one past the largest position
   * the row has used (HF rope_deltas for M-RoPE; the real-token count with
   * left padding; the length otherwise). */
  int64_t *next_pos;
} qwen2_kv;

qwen2_kv *qwen2_kv_new(const qwen2_cfg *c, const ps_kernels *k, int64_t B, int64_t cap,
                       GError **error);
void qwen2_kv_free(qwen2_kv *kv);
void qwen2_kv_reset(qwen2_kv *kv);

typedef enum {
  QWEN2_LOGITS_ALL,  /* logits for every row: (B*T, V) */
  QWEN2_LOGITS_LAST, /* logits for the last token of each batch row: (B, V) */
  QWEN2_LOGITS_NONE,
} qwen2_logits_mode;

typedef struct qwen2_model {
  qwen2_cfg cfg;
  const ps_kernels *k;           /* the device's table: every buffer below is its memory */
  gboolean host;                 /* k is the CPU table (the decode step may run qwen2_gemv_rows) */
  GArray *params;                /* ps_param */
  GPtrArray *names;              /* owned parameter names */
  guint i_embed, i_norm, i_head; /* i_head == i_embed when tied */
  qwen2_layer *L;
  /* Forward state: rows allocated, last call's sizes. */
  int64_t cap_n, B, T;
  gboolean saved;        /* the last forward was a full pass that backward can use */
  gboolean logits_all;   /* ... and it computed the logits of every row */
  qwen2_acts *A;         /* [layers] */
  float *xf;             /* (N, D) final residual */
  float *hidden, *rstdf; /* (N, D) final-norm output, (N) */
  float *logits;         /* (N, V) */
  float *last;           /* (N, D) off the CPU: the last rows of `hidden` gathered for the head */
  int32_t *pos, *pos_h;  /* (3, N) positions of the last forward (device, host) */
  int32_t *targets, *targets_h; /* (N) shifted labels of the last loss (device, host) */
  int32_t *ids;                 /* (ids_n) token ids of qwen2_embed (device) */
  int64_t ids_n;
  float *bias, *bias_h; /* (B, T, Tk) additive key-padding mask of the last forward, or unused */
  int64_t bias_n;
  gboolean use_bias; /* the last full forward had padding */
  float *att_scratch;
  int64_t att_scratch_n;
  /* Backward buffers (N rows). */
  float *dx, *dln, *dq, *dk, *dv, *dqr, *dkr, *datt, *dgate, *dup, *dact, *dhidden, *dlogits;
  int64_t cap_bwd;
} qwen2_model;

/* Builds the parameters on the host (random init from `rng` with
 * cfg->init_std when rng is non-NULL, else zeros and norms 1) and binds the
 * LoRA layers. k: the table of the device the model will run on; call
 * qwen2_model_move_to once the parameters are final. */
qwen2_model *qwen2_model_new(const qwen2_cfg *c, const ps_kernels *k, ps_rng *rng, GError **error);
/* Moves every parameter value to `device` (k's device) in place. */
gboolean qwen2_model_move_to(qwen2_model *m, ps_device device, GError **error);
void qwen2_model_free(qwen2_model *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(qwen2_model, qwen2_model_free)
ps_param_list qwen2_model_params(qwen2_model *m);
/* Grows the activation (forward) and gradient (backward) buffers to N rows. */
gboolean qwen2_reserve_rows(qwen2_model *m, int64_t N, GError **error);
gboolean qwen2_reserve_bwd(qwen2_model *m, int64_t N, GError **error);
/* Grows m->ids to n ids. */
gboolean qwen2_reserve_ids(qwen2_model *m, int64_t n, GError **error);
/* Grows m->att_scratch to n floats. */
gboolean qwen2_reserve_scratch(qwen2_model *m, int64_t n, GError **error);
static inline ps_param *qwen2_param(qwen2_model *m, guint i) {
  return &g_array_index(m->params, ps_param, i);
}
static inline float *qwen2_pv(qwen2_model *m, guint i) {
  return ps_f32(qwen2_param(m, i)->value);
}
static inline float *qwen2_pg(qwen2_model *m, guint i) {
  ps_tensor *g = qwen2_param(m, i)->grad;
  return g ? ps_f32(g) : NULL;
}

/* A tensor by name, from a checkpoint or a fixture: f32 copy, or NULL with
 * *error unset when the name is absent, or NULL with an error. */
typedef ps_tensor *(*qwen2_getter)(void *user, const char *name, GError **error);
/* Loads every base parameter, accepting both `model.*` and
 * `model.language_model.*`; LoRA tensors (when r > 0) are looked up under
 * peft's saved names `base_model.model.<path>.lora_{A,B}.weight` (either
 * prefix) only when `lora` is TRUE. `what` names the source in errors. */
gboolean qwen2_model_load(qwen2_model *m, qwen2_getter get, void *user, gboolean base,
                          gboolean lora, const char *what, GError **error);
/* Loads from a safetensors file (the `checkpoint` / `adapter` configs). */
gboolean qwen2_model_load_file(qwen2_model *m, const char *path, gboolean base, gboolean lora,
                               GError **error);

/* Forward of B rows of T tokens given their input embeddings emb (B*T, D,
 * device memory). pos, mask: host memory.
 * pos: (S, B*T) position streams (S = 3 with M-RoPE, else 1), or NULL for
 * the default (kv->next_pos[b] + t, or t, in every stream; HF's forward
 * does not shift positions for padding either). mask: (B*T) 1 for real
 * tokens, 0 for padding (keys never attended to), or NULL for none. With
 * kv, the new keys/values are appended to the cache (which must have room)
 * and the queries attend to everything cached; backward is then
 * unavailable. Results: m->hidden (B*T, D); m->logits (B*T, V) or (B, V)
 * per `mode`. */
gboolean qwen2_forward(qwen2_model *m, ps_context *ctx, const float *emb, const int32_t *pos,
                       const int32_t *mask, int64_t B, int64_t T, qwen2_kv *kv,
                       qwen2_logits_mode mode, GError **error);

/* ps_linear_forward for the projections of a forward pass. seq_rows: the
 * rows of one sequence (T) when each sequence must get the same bits
 * whatever the batch (generation with the KV cache; no backward may follow
 * a decode step), else N. A decode step (seq_rows = 1)
 * runs as qwen2_gemv_rows; longer sequences as one product each
 * (qwen2_gemv.c). y: (N, out), x: (N, in). */
gboolean qwen2_linear_forward(ps_linear *l, const ps_kernels *k, ps_context *ctx, float *y,
                              const float *x, int64_t N, int64_t seq_rows, GError **error);
/* y: (N, out) = x w^T (+ bias); x: N rows of `in` floats, x_stride apart;
 * w: (out, in). Each element is summed in a fixed order: the same bits for
 * any N, thread count or CPU. */
void qwen2_gemv_rows(float *y, const float *x, int64_t x_stride, const float *w, const float *bias,
                     int64_t N, int64_t in, int64_t out);

/* The attention of nb batch rows, Tq queries, Tk keys (causal, GQA, scale
 * 1/sqrt(hd)), with m->bias as key-padding mask when m->use_bias. */
ps_attention_desc qwen2_att_desc(const qwen2_model *m, int64_t nb, int64_t Tq, int64_t Tk);
/* The RoPE descriptor of N tokens with H heads. */
ps_rope_desc qwen2_rope_desc(const qwen2_cfg *c, int64_t N, int64_t H);

/* Mean shifted next-token cross-entropy of the last full forward's logits
 * against labels (B, T) (position t predicts labels[t+1]; -100 ignored).
 * Keeps the shifted targets for qwen2_backward. */
float qwen2_loss(qwen2_model *m, const int32_t *labels);

/* Backward of the last full forward. dlogits (B*T, V), dhidden (B*T, D) or
 * NULL; dloss: gradient of qwen2_loss's value (0: none). Parameter gradients
 * are added where their grad buffers exist; demb (B*T, D) receives
 * d/d(input embeddings) when non-NULL (added). The embedding table's grad
 * (when it trains) receives the scatter of demb over `ids` (B*T), where ids
 * outside [0, V) (image positions) are skipped; ids may be NULL. Every
 * pointer is device memory (the table's). */
gboolean qwen2_backward(qwen2_model *m, ps_context *ctx, const float *dlogits, const float *dhidden,
                        float dloss, const int32_t *ids, float *demb, GError **error);

/* emb (N, D, device) = embed_tokens[ids]; ids (N, host memory) must be in
 * [0, V) (checked: error); they are copied to m->ids for the kernel. */
gboolean qwen2_embed(qwen2_model *m, float *emb, const int32_t *ids, int64_t N, GError **error);

G_END_DECLS
