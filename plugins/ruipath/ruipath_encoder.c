/* ruipath_encoder.c — the RuiPath ViT (DINOv2 DinoVisionTransformer) forward
 * and backward over the kernel table (see ruipath.h for the model).
 *
 * Activations: the residual stream has one (B*T, D) slice per block
 * boundary in training (stream[i] enters block i, stream[depth] is the
 * pre-norm output) and every block keeps what its backward reads; outside
 * training one slice is updated in place and one block's buffers are reused,
 * so inference memory does not grow with depth. All buffers live in one
 * allocation that is replaced only when the batch or image size changes.
 *
 * Devices: parameters are built and initialised (or loaded) on the host and
 * then moved to the context's device (rp_encoder_to_device); activations,
 * outputs and gradients live in the memory of the kernel table the encoder
 * was made with, and every operation on them goes through that table, so
 * the host never reads them (the patch grid, a host tensor, is the one
 * exception: it is control data). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <pathseg/error.h>

#include "ruipath.h"

typedef struct {
  ps_linear qkv, proj, fc1, fc2;
  int n1w, n1b, n2w, n2b, ls1, ls2; /* parameter indices; ls = -1 without LayerScale */
  guint qkv_first, proj_first, fc1_first, fc2_first;
} rp_block;

/* What one block keeps for backward; rows = B*T. */
typedef struct {
  float *ln1, *mean1, *rstd1; /* (rows, D), (rows), (rows) */
  float *qkv;                 /* (rows, 3D) */
  float *att;                 /* (rows, D) attention output before proj */
  float *lse;                 /* (B, H, T) */
  float *y1;                  /* (rows, D) proj output (before ls1) */
  float *xmid;                /* (rows, D) stream after the attention residual */
  float *ln2, *mean2, *rstd2;
  float *h;  /* (rows, F) fc1 output */
  float *a;  /* (rows, F) GELU output */
  float *y2; /* (rows, D) fc2 output (before ls2) */
} rp_acts;

struct rp_encoder {
  rp_cfg c;
  const ps_kernels *k; /* its memory holds activations (and parameters after to_device) */
  ps_device device;    /* where the parameters are */
  int64_t D, F, H, hd, M, R;
  GArray *params;   /* ps_param */
  GPtrArray *names; /* owned parameter names */
  GPtrArray *owned; /* parameter tensors not owned by a ps_linear */
  int cls, pos, reg, mask, pe_w, pe_b, nw, nb;
  rp_block blocks[RP_MAX_DEPTH];

  /* Geometry of the last forward. */
  int64_t B, T, N, gh, gw, img_h, img_w;
  gboolean trained; /* the last forward kept every block's activations */
  rp_pos_interp interp;
  const ps_tensor *image; /* the last forward's input on the device (caller's or img_dev) */
  ps_tensor *img_dev;     /* a device copy of a host image */

  /* The one allocation of activations (memory of k), carved into the
   * pointers below. */
  float *arena;
  size_t arena_floats;
  int64_t shape_key[4]; /* B, gh, gw, trained: the arena's layout */
  float *pe;            /* (B, D, N) patch-embedding conv output */
  float *pos_i;         /* (1 + N, D) interpolated position embedding */
  float *stream;        /* (depth + 1 or 1, rows, D) */
  rp_acts acts[RP_MAX_DEPTH];
  float *normed, *nmean, *nrstd; /* final norm: (rows, D), (rows), (rows) */

  ps_tensor *t_cls, *t_regs, *t_patches, *t_grid, *t_pos, *t_tokens, *t_prenorm, *dimage;
};

/* ---- parameters ------------------------------------------------------------- */

static int add_param(rp_encoder *e, ps_role role, int ndim, const int64_t *shape, GError **error,
                     const char *fmt, ...) G_GNUC_PRINTF(6, 7);

static int add_param(rp_encoder *e, ps_role role, int ndim, const int64_t *shape, GError **error,
                     const char *fmt, ...) {
  ps_tensor *t = ps_tensor_new(PS_DTYPE_F32, ndim, shape, error);
  if (!t) return -1;
  g_ptr_array_add(e->owned, t);
  va_list ap;
  va_start(ap, fmt);
  char *name = g_strdup_vprintf(fmt, ap);
  va_end(ap);
  g_ptr_array_add(e->names, name);
  ps_param p = {name, t, NULL, role};
  g_array_append_val(e->params, p);
  return (int)e->params->len - 1;
}

static inline ps_param *P(const rp_encoder *e, int i) {
  return &g_array_index(e->params, ps_param, i);
}
static inline float *PV(const rp_encoder *e, int i) { return ps_f32(P(e, i)->value); }
/* The gradient buffer of parameter i, or NULL when it does not train. */
static inline float *PG(const rp_encoder *e, int i) {
  if (i < 0) return NULL;
  ps_tensor *g = P(e, i)->grad;
  return g ? ps_f32(g) : NULL;
}

static gboolean lin_trains(const ps_linear *l) {
  return (l->g_weight && *l->g_weight) || (l->g_bias && *l->g_bias) ||
         (l->g_lora_a && *l->g_lora_a) || (l->g_lora_b && *l->g_lora_b);
}

static void fill_normal(float *x, int64_t n, double std, ps_rng *rng) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)(std * ps_rng_normal(rng));
}

static void fill_const(float *x, int64_t n, float v) {
  for (int64_t i = 0; i < n; i++) x[i] = v;
}

static gboolean add_linear(rp_encoder *e, ps_linear *l, guint *first, int64_t in, int64_t out,
                           gboolean bias, gboolean lora, ps_rng *rng, ps_rng *lora_rng,
                           GError **error, const char *fmt, int block) {
  if (!ps_linear_init(l, in, out, bias, rng ? e->c.init_std : 0.0, rng, error)) return FALSE;
  if (lora && !ps_linear_add_lora(l, e->c.lora_r, e->c.lora_alpha, e->c.lora_dropout, lora_rng,
                                  error))
    return FALSE;
  g_autofree char *prefix = g_strdup_printf(fmt, block);
  *first = e->params->len;
  ps_linear_params(l, prefix, PS_ROLE_BACKBONE, e->params, e->names);
  return TRUE;
}

static gboolean build_params(rp_encoder *e, ps_rng *rng, GError **error) {
  const rp_cfg *c = &e->c;
  const int64_t D = e->D, MM = e->M * e->M;
  ps_rng lora_rng;
  ps_rng_seed(&lora_rng, 0x52756950617468ull); /* used only when no rng is given */
  ps_rng *lrng = rng ? rng : &lora_rng;
  const ps_role bb = PS_ROLE_BACKBONE;
  /* Checkpoint order: embeddings, blocks, final norm. */
  {
    const int64_t s_cls[] = {1, 1, D}, s_pos[] = {1, 1 + MM, D}, s_reg[] = {1, e->R, D},
                  s_mask[] = {1, D},
                  s_pe[] = {D, c->in_chans, c->patch_size, c->patch_size}, s_vec[] = {D};
    e->reg = -1;
    if ((e->cls = add_param(e, bb, 3, s_cls, error, "cls_token")) < 0 ||
        (e->pos = add_param(e, bb, 3, s_pos, error, "pos_embed")) < 0 ||
        (e->R > 0 && (e->reg = add_param(e, bb, 3, s_reg, error, "register_tokens")) < 0) ||
        (e->mask = add_param(e, bb, 2, s_mask, error, "mask_token")) < 0 ||
        (e->pe_w = add_param(e, bb, 4, s_pe, error, "patch_embed.proj.weight")) < 0 ||
        (e->pe_b = add_param(e, bb, 1, s_vec, error, "patch_embed.proj.bias")) < 0)
      return FALSE;
  }
  for (int64_t i = 0; i < c->depth; i++) {
    rp_block *b = &e->blocks[i];
    const int64_t vec[] = {D};
    int bi = (int)i;
    if ((b->n1w = add_param(e, bb, 1, vec, error, "blocks.%d.norm1.weight", bi)) < 0 ||
        (b->n1b = add_param(e, bb, 1, vec, error, "blocks.%d.norm1.bias", bi)) < 0)
      return FALSE;
    const gboolean lora = c->lora_r > 0;
    if (!add_linear(e, &b->qkv, &b->qkv_first, D, 3 * D, c->qkv_bias, lora && c->lora_qkv, rng,
                    lrng, error, "blocks.%d.attn.qkv", bi) ||
        !add_linear(e, &b->proj, &b->proj_first, D, D, c->proj_bias, lora && c->lora_proj, rng,
                    lrng, error, "blocks.%d.attn.proj", bi))
      return FALSE;
    b->ls1 = b->ls2 = -1;
    if (c->init_values > 0 &&
        (b->ls1 = add_param(e, bb, 1, vec, error, "blocks.%d.ls1.gamma", bi)) < 0)
      return FALSE;
    if ((b->n2w = add_param(e, bb, 1, vec, error, "blocks.%d.norm2.weight", bi)) < 0 ||
        (b->n2b = add_param(e, bb, 1, vec, error, "blocks.%d.norm2.bias", bi)) < 0)
      return FALSE;
    if (!add_linear(e, &b->fc1, &b->fc1_first, D, e->F, c->ffn_bias, FALSE, rng, lrng, error,
                    "blocks.%d.mlp.fc1", bi) ||
        !add_linear(e, &b->fc2, &b->fc2_first, e->F, D, c->ffn_bias, FALSE, rng, lrng, error,
                    "blocks.%d.mlp.fc2", bi))
      return FALSE;
    if (c->init_values > 0 &&
        (b->ls2 = add_param(e, bb, 1, vec, error, "blocks.%d.ls2.gamma", bi)) < 0)
      return FALSE;
  }
  const int64_t vec[] = {D};
  if ((e->nw = add_param(e, bb, 1, vec, error, "norm.weight")) < 0 ||
      (e->nb = add_param(e, bb, 1, vec, error, "norm.bias")) < 0)
    return FALSE;
  /* The array no longer grows: bind the linear layers' gradient slots. */
  for (int64_t i = 0; i < c->depth; i++) {
    rp_block *b = &e->blocks[i];
    ps_linear_bind(&b->qkv, e->params, b->qkv_first);
    ps_linear_bind(&b->proj, e->params, b->proj_first);
    ps_linear_bind(&b->fc1, e->params, b->fc1_first);
    ps_linear_bind(&b->fc2, e->params, b->fc2_first);
  }
  /* Initialisation as DINOv2's init_weights (normal instead of truncated
   * normal): norms 1/0, LayerScale init_values, tokens ~N(0, 1e-6). */
  for (int64_t i = 0; i < c->depth; i++) {
    rp_block *b = &e->blocks[i];
    fill_const(PV(e, b->n1w), D, 1.0f);
    fill_const(PV(e, b->n2w), D, 1.0f);
    if (b->ls1 >= 0) fill_const(PV(e, b->ls1), D, (float)c->init_values);
    if (b->ls2 >= 0) fill_const(PV(e, b->ls2), D, (float)c->init_values);
  }
  fill_const(PV(e, e->nw), D, 1.0f);
  if (rng) {
    fill_normal(PV(e, e->cls), D, 1e-6, rng);
    fill_normal(PV(e, e->pos), (1 + MM) * D, 0.02, rng);
    if (e->reg >= 0) fill_normal(PV(e, e->reg), e->R * D, 1e-6, rng);
    /* nn.Conv2d's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias. */
    const int64_t fan = c->in_chans * c->patch_size * c->patch_size;
    const double bound = 1.0 / sqrt((double)fan);
    float *w = PV(e, e->pe_w), *bias = PV(e, e->pe_b);
    for (int64_t j = 0; j < D * fan; j++) w[j] = (float)((2 * ps_rng_uniform_f64(rng) - 1) * bound);
    for (int64_t j = 0; j < D; j++) bias[j] = (float)((2 * ps_rng_uniform_f64(rng) - 1) * bound);
  }
  return TRUE;
}

rp_encoder *rp_encoder_new(const rp_cfg *c, const ps_kernels *k, ps_rng *rng, GError **error) {
  if (!rp_cfg_validate(c, "encoder.ruipath", error)) return NULL;
  rp_encoder *e = g_new0(rp_encoder, 1);
  e->c = *c;
  e->k = k;
  e->D = c->embed_dim;
  e->F = (int64_t)((double)c->embed_dim * c->mlp_ratio);
  e->H = c->num_heads;
  e->hd = e->D / e->H;
  e->M = c->img_size / c->patch_size;
  e->R = c->num_register_tokens;
  e->params = g_array_new(FALSE, TRUE, sizeof(ps_param));
  e->names = g_ptr_array_new_with_free_func(g_free);
  e->owned = g_ptr_array_new_with_free_func((GDestroyNotify)ps_tensor_free);
  if (!build_params(e, rng, error)) {
    rp_encoder_free(e);
    return NULL;
  }
  return e;
}

void rp_encoder_free(rp_encoder *e) {
  if (!e) return;
  /* ps_linear owns its weight, bias and LoRA tensors; the rest of the
   * parameter tensors are in `owned`. */
  for (int64_t i = 0; i < e->c.depth; i++) {
    ps_linear_clear(&e->blocks[i].qkv);
    ps_linear_clear(&e->blocks[i].proj);
    ps_linear_clear(&e->blocks[i].fc1);
    ps_linear_clear(&e->blocks[i].fc2);
  }
  if (e->owned) g_ptr_array_free(e->owned, TRUE);
  if (e->params) g_array_free(e->params, TRUE);
  if (e->names) g_ptr_array_free(e->names, TRUE);
  if (e->arena) e->k->mem_free(e->arena);
  ps_tensor_free(e->img_dev);
  ps_tensor_free(e->t_cls);
  ps_tensor_free(e->t_regs);
  ps_tensor_free(e->t_patches);
  ps_tensor_free(e->t_grid);
  ps_tensor_free(e->t_pos);
  ps_tensor_free(e->t_tokens);
  ps_tensor_free(e->t_prenorm);
  ps_tensor_free(e->dimage);
  g_free(e);
}

const rp_cfg *rp_encoder_cfg(const rp_encoder *e) { return &e->c; }

ps_param_list rp_encoder_params(rp_encoder *e) {
  return (ps_param_list){(ps_param *)(void *)e->params->data, e->params->len};
}

gboolean rp_encoder_load(rp_encoder *e, rp_getter get, rp_has has, void *user, const char *what,
                         GError **error) {
  for (guint i = 0; i < e->params->len; i++) {
    ps_param *p = P(e, (int)i);
    /* LoRA matrices and the unused mask token are optional in a checkpoint. */
    gboolean optional = strstr(p->name, ".lora_") != NULL || i == (guint)e->mask;
    if (optional && has && !has(user, p->name)) continue;
    g_autoptr(ps_tensor) t = get(user, p->name, error);
    if (!t) return FALSE;
    g_autofree char *label = g_strdup_printf("%s: parameter %s", what, p->name);
    if (!ps_tensor_check(t, label, PS_DTYPE_F32, p->value->ndim, p->value->shape, error))
      return FALSE;
    if (!ps_tensor_copy_into(p->value, t, error)) return FALSE;
  }
  return TRUE;
}

gboolean rp_encoder_to_device(rp_encoder *e, ps_device device, GError **error) {
  for (guint i = 0; i < e->params->len; i++) {
    ps_param *p = P(e, (int)i);
    if (!ps_tensor_move_to(p->value, device, error)) {
      g_prefix_error(error, "encoder.ruipath: parameter %s: ", p->name);
      return FALSE;
    }
  }
  e->device = device;
  return TRUE;
}

gboolean rp_encoder_last_geometry(const rp_encoder *e, int64_t *B, int64_t *N) {
  *B = e->B;
  *N = e->N;
  return e->arena != NULL;
}

/* ---- activation memory ------------------------------------------------------ */

/* Carves n floats (rounded up to 64 bytes) from the running offset; with
 * base NULL it only counts. */
static float *carve(float *base, size_t *off, int64_t n) {
  float *p = base ? base + *off : NULL;
  *off += ((size_t)n + 15) & ~(size_t)15;
  return p;
}

static size_t lay_out(rp_encoder *e, float *base) {
  const int64_t D = e->D, F = e->F, rows = e->B * e->T, N = e->N;
  const int nblk = e->trained ? (int)e->c.depth : 1;
  size_t off = 0;
  e->pe = carve(base, &off, e->B * D * N);
  e->pos_i = carve(base, &off, (1 + N) * D);
  e->stream = carve(base, &off, (e->trained ? e->c.depth + 1 : 1) * rows * D);
  for (int i = 0; i < nblk; i++) {
    rp_acts *A = &e->acts[i];
    A->ln1 = carve(base, &off, rows * D);
    A->mean1 = carve(base, &off, rows);
    A->rstd1 = carve(base, &off, rows);
    A->qkv = carve(base, &off, rows * 3 * D);
    A->att = carve(base, &off, rows * D);
    A->lse = carve(base, &off, e->B * e->H * e->T);
    A->y1 = carve(base, &off, rows * D);
    A->xmid = e->trained ? carve(base, &off, rows * D) : NULL;
    A->ln2 = carve(base, &off, rows * D);
    A->mean2 = carve(base, &off, rows);
    A->rstd2 = carve(base, &off, rows);
    A->h = carve(base, &off, rows * F);
    A->a = carve(base, &off, rows * F);
    A->y2 = carve(base, &off, rows * D);
  }
  e->normed = carve(base, &off, rows * D);
  e->nmean = carve(base, &off, rows);
  e->nrstd = carve(base, &off, rows);
  return off;
}

static gboolean ensure_memory(rp_encoder *e, GError **error) {
  const int64_t key[4] = {e->B, e->gh, e->gw, e->trained};
  const gboolean relaid = !e->arena || memcmp(key, e->shape_key, sizeof key) != 0;
  if (relaid) {
    size_t need = lay_out(e, NULL);
    if (need > e->arena_floats) {
      if (e->arena) e->k->mem_free(e->arena);
      e->arena_floats = 0;
      e->arena = e->k->mem_alloc(need * sizeof(float));
      if (!e->arena) {
        g_set_error(error, PS_ERROR, PS_ERROR_FAILED,
                    "encoder.ruipath: out of %s memory for %zu MiB of activations", e->k->name,
                    need * sizeof(float) >> 20);
        return FALSE;
      }
      e->arena_floats = need;
    }
    lay_out(e, e->arena);
    memcpy(e->shape_key, key, sizeof key);
  }
  const int64_t D = e->D;
  const int64_t s_cls[] = {e->B, D}, s_regs[] = {e->B, e->R, D}, s_pat[] = {e->B, e->N, D},
                s_grid[] = {2}, s_pos[] = {1, 1 + e->N, D};
  /* The patch grid is control data that consumers read on the host. */
  const ps_device dev = e->device;
  if (!ps_tensor_ensure_on(&e->t_cls, dev, PS_DTYPE_F32, 2, s_cls, error) ||
      !ps_tensor_ensure_on(&e->t_regs, dev, PS_DTYPE_F32, 3, s_regs, error) ||
      !ps_tensor_ensure_on(&e->t_patches, dev, PS_DTYPE_F32, 3, s_pat, error) ||
      !ps_tensor_ensure_on(&e->t_grid, PS_DEVICE_CPU, PS_DTYPE_I32, 1, s_grid, error) ||
      !ps_tensor_ensure_on(&e->t_pos, dev, PS_DTYPE_F32, 3, s_pos, error))
    return FALSE;
  /* Views of the stream for the fixture traces (training only), remade
   * only when the layout moved. */
  if (relaid) {
    g_clear_pointer(&e->t_tokens, ps_tensor_free);
    g_clear_pointer(&e->t_prenorm, ps_tensor_free);
    if (e->trained) {
      const int64_t s_tok[] = {e->B, e->T, D};
      const int64_t slice = e->B * e->T * D;
      e->t_tokens = ps_tensor_new_view(PS_DTYPE_F32, 3, s_tok, e->stream, error);
      e->t_prenorm = e->t_tokens ? ps_tensor_new_view(PS_DTYPE_F32, 3, s_tok,
                                                      e->stream + e->c.depth * slice, error)
                                 : NULL;
      if (!e->t_prenorm) return FALSE;
      /* Views of the arena: device memory when the arena is (not owned). */
      e->t_tokens->device = e->t_prenorm->device = dev;
    }
  }
  return TRUE;
}

/* ---- forward ---------------------------------------------------------------- */

/* out = x + gamma * y per row (gamma NULL: 1); out: (rows, D), x: (rows, D),
 * y: (rows, D), gamma: (D). In place (out == x) in inference, where y is a
 * reused buffer that nothing reads again: it takes gamma * y, then x += it.
 * In training y is kept for backward and out is a separate slice: out =
 * gamma * y, then out += x. Either way each element is fl(fl(gamma y) + x). */
static void residual(const ps_kernels *k, float *out, const float *x, float *y, const float *gamma,
                     int64_t rows, int64_t D) {
  const int64_t n = rows * D;
  if (out == x) {
    if (gamma) k->layerscale_forward(y, y, gamma, rows, D);
    k->axpy(out, 1.0f, y, n);
  } else if (gamma) {
    k->layerscale_forward(out, y, gamma, rows, D);
    k->axpy(out, 1.0f, x, n);
  } else {
    k->add_forward(out, x, y, n);
  }
}

static ps_attention_desc att_desc(const rp_encoder *e) {
  ps_attention_desc d;
  memset(&d, 0, sizeof d);
  d.B = e->B;
  d.Hq = d.Hkv = e->H;
  d.Tq = d.Tk = e->T;
  d.D = e->hd;
  d.ldq = d.ldk = d.ldv = 3 * e->D;
  d.scale = (float)(1.0 / sqrt((double)e->hd));
  return d;
}

static ps_conv2d_desc conv_desc(const rp_encoder *e) {
  ps_conv2d_desc d = {e->B, e->c.in_chans, e->img_h, e->img_w, e->D,
                      e->c.patch_size, e->c.patch_size, e->c.patch_size, 0};
  return d;
}

static float *scratch_floats(ps_context *ctx, int64_t n) {
  return ps_context_scratch(ctx, sizeof(float) * (size_t)MAX(n, 1));
}

static gboolean block_forward(rp_encoder *e, ps_context *ctx, int i, GError **error) {
  rp_block *b = &e->blocks[i];
  rp_acts *A = &e->acts[e->trained ? i : 0];
  const ps_kernels *k = e->k;
  const int64_t D = e->D, rows = e->B * e->T, slice = rows * D;
  float *xin = e->stream + (e->trained ? i : 0) * slice;
  float *xout = e->stream + (e->trained ? i + 1 : 0) * slice;
  float *xmid = e->trained ? A->xmid : xin;
  const float eps = (float)e->c.layer_norm_eps;

  k->layernorm_forward(A->ln1, A->mean1, A->rstd1, xin, PV(e, b->n1w), PV(e, b->n1b), rows, D, eps);
  if (!ps_linear_forward(&b->qkv, k, ctx, A->qkv, A->ln1, rows, error)) return FALSE;
  ps_attention_desc ad = att_desc(e);
  int64_t sf = k->attention_scratch(&ad, 0);
  float *scr = scratch_floats(ctx, sf);
  k->attention_forward(A->att, A->lse, A->qkv, A->qkv + D, A->qkv + 2 * D, &ad, scr, sf);
  if (!ps_linear_forward(&b->proj, k, ctx, A->y1, A->att, rows, error)) return FALSE;
  residual(k, xmid, xin, A->y1, b->ls1 >= 0 ? PV(e, b->ls1) : NULL, rows, D);

  k->layernorm_forward(A->ln2, A->mean2, A->rstd2, xmid, PV(e, b->n2w), PV(e, b->n2b), rows, D, eps);
  if (!ps_linear_forward(&b->fc1, k, ctx, A->h, A->ln2, rows, error)) return FALSE;
  k->gelu_forward(A->a, A->h, rows * e->F);
  if (!ps_linear_forward(&b->fc2, k, ctx, A->y2, A->a, rows, error)) return FALSE;
  residual(k, xout, xmid, A->y2, b->ls2 >= 0 ? PV(e, b->ls2) : NULL, rows, D);
  return TRUE;
}

gboolean rp_encoder_forward(rp_encoder *e, ps_context *ctx, const ps_tensor *image,
                            rp_outputs *out, GError **error) {
  const rp_cfg *c = &e->c;
  const ps_kernels *k = e->k;
  const int64_t shape[4] = {-1, c->in_chans, -1, -1};
  if (!ps_tensor_check(image, "encoder.ruipath input image", PS_DTYPE_F32, 4, shape, error))
    return FALSE;
  const int64_t Himg = image->shape[2], Wimg = image->shape[3], p = c->patch_size;
  if (image->shape[0] < 1 || Himg < p || Wimg < p || Himg % p != 0 || Wimg % p != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "encoder.ruipath input image: %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " pixels (batch %" G_GINT64_FORMAT ") is not a non-empty multiple of the patch size %" G_GINT64_FORMAT
                " (DINOv2's PatchEmbed asserts this)",
                Himg, Wimg, image->shape[0], p);
    return FALSE;
  }
  rp_pos_interp plan;
  if (!rp_pos_interp_plan(&plan, e->M, Himg, Wimg, p, c->interpolate_offset,
                          c->interpolate_antialias, error))
    return FALSE;
  e->interp = plan;
  e->B = image->shape[0];
  e->img_h = Himg;
  e->img_w = Wimg;
  e->gh = Himg / p;
  e->gw = Wimg / p;
  e->N = e->gh * e->gw;
  e->T = 1 + e->R + e->N;
  e->trained = ps_context_training(ctx);
  /* Shapes above come from the caller's tensor; kernels read the device copy. */
  e->image = ps_tensor_on_device(image, e->device, &e->img_dev, error);
  if (!e->image || !ensure_memory(e, error)) return FALSE;

  const int64_t B = e->B, D = e->D, N = e->N, T = e->T, R = e->R;
  /* Patch embedding: (B, C, H, W) -> (B, D, gh, gw). */
  ps_conv2d_desc cd = conv_desc(e);
  int64_t csf = k->conv2d_scratch(&cd);
  k->conv2d_forward(e->pe, ps_f32(e->image), PV(e, e->pe_w), PV(e, e->pe_b), &cd,
                    scratch_floats(ctx, csf), csf);
  /* Position embedding for this grid. */
  float *pscr = scratch_floats(ctx, 2 * D * MAX(e->M * e->M, N));
  rp_pos_interp_forward(&e->interp, k, e->pos_i, PV(e, e->pos), D, pscr);
  /* Tokens [cls + pos0, registers, patches + pos]: registers are inserted
   * after the position embedding was added, so they get none. Per image:
   * the cls row, the (N, D) transpose of the conv's (D, N) output plus the
   * position rows in place, and the register rows broadcast to every image
   * (source stride 0). */
  const float *cls = PV(e, e->cls);
  float *x0 = e->stream;
  for (int64_t b = 0; b < B; b++) {
    float *img = x0 + b * T * D, *patches = img + (1 + R) * D;
    k->add_forward(img, cls, e->pos_i, D);
    k->transpose_forward(patches, e->pe + b * D * N, 1, D, N);
    k->add_forward(patches, patches, e->pos_i + D, N * D);
  }
  if (R > 0) k->copy_2d(x0 + D, T * D, PV(e, e->reg), 0, B, R * D, 0);
  for (int i = 0; i < (int)c->depth; i++)
    if (!block_forward(e, ctx, i, error)) return FALSE;

  const float *last = e->stream + (e->trained ? c->depth : 0) * B * T * D;
  k->layernorm_forward(e->normed, e->nmean, e->nrstd, last, PV(e, e->nw), PV(e, e->nb), B * T, D,
                       (float)c->layer_norm_eps);
  /* Split the normed tokens of each image (T rows) into the three outputs. */
  k->copy_2d(ps_f32(e->t_cls), D, e->normed, T * D, B, D, 0);
  if (R > 0) k->copy_2d(ps_f32(e->t_regs), R * D, e->normed + D, T * D, B, R * D, 0);
  k->copy_2d(ps_f32(e->t_patches), N * D, e->normed + (1 + R) * D, T * D, B, N * D, 0);
  ((int32_t *)e->t_grid->data)[0] = (int32_t)e->gh; /* host tensor */
  ((int32_t *)e->t_grid->data)[1] = (int32_t)e->gw;
  k->copy_on_device(e->t_pos->data, e->pos_i, e->t_pos->nbytes);
  out->cls = e->t_cls;
  out->registers = e->t_regs;
  out->patches = e->t_patches;
  out->grid = e->t_grid;
  out->pos_embed = e->t_pos;
  out->tokens = e->t_tokens;
  out->prenorm = e->t_prenorm;
  return TRUE;
}

/* ---- backward --------------------------------------------------------------- */

/* Does any parameter of block i train? */
static gboolean block_trains(const rp_encoder *e, int i) {
  const rp_block *b = &e->blocks[i];
  return PG(e, b->n1w) || PG(e, b->n1b) || PG(e, b->n2w) || PG(e, b->n2b) || PG(e, b->ls1) ||
         PG(e, b->ls2) || lin_trains(&b->qkv) || lin_trains(&b->proj) || lin_trains(&b->fc1) ||
         lin_trains(&b->fc2);
}

/* Backward scratch, rows = B*T. */
typedef struct {
  float *dy;   /* (rows, D) gradient of a branch output (y1 / y2) */
  float *dF1;  /* (rows, F) gradient of the GELU output */
  float *dF2;  /* (rows, F) gradient of fc1's output */
  float *dln;  /* (rows, D) gradient of a LayerNorm output */
  float *dqkv; /* (rows, 3D) */
  float *datt; /* (rows, D) */
  float *ascr; /* attention backward scratch */
  int64_t ascr_n;
} rp_bwd;

/* dx: (rows, D) holds the gradient w.r.t. block i's output and becomes the
 * gradient w.r.t. its input. need_in: something below block i needs it.
 * Every step is skipped when neither a parameter nor the input needs it. */
static void block_backward(rp_encoder *e, int i, float *dx, gboolean need_in, rp_bwd *w) {
  rp_block *b = &e->blocks[i];
  const rp_acts *A = &e->acts[i];
  const ps_kernels *k = e->k;
  const int64_t D = e->D, F = e->F, rows = e->B * e->T;
  const float *xin = e->stream + i * rows * D;

  /* Which gradients are needed, from the bottom of the block up. */
  const gboolean need_dln1 = need_in || PG(e, b->n1w) || PG(e, b->n1b);
  const gboolean need_dqkv = need_dln1 || lin_trains(&b->qkv);
  const gboolean need_dy1 = need_dqkv || lin_trains(&b->proj);
  const gboolean need_dxmid = need_dy1 || PG(e, b->ls1);
  const gboolean need_dln2 = need_dxmid || PG(e, b->n2w) || PG(e, b->n2b);
  const gboolean need_dh = need_dln2 || lin_trains(&b->fc1);
  const gboolean need_dy2 = need_dh || lin_trains(&b->fc2);

  /* MLP branch: xout = xmid + ls2 * y2. dx stays the gradient of xmid. */
  if (need_dy2) {
    k->mem_zero(w->dy, sizeof(float) * (size_t)(rows * D));
    if (b->ls2 >= 0)
      k->layerscale_backward(w->dy, PG(e, b->ls2), dx, A->y2, PV(e, b->ls2), rows, D);
    else
      k->copy_on_device(w->dy, dx, sizeof(float) * (size_t)(rows * D));
    float *da = NULL;
    if (need_dh) {
      da = w->dF1;
      k->mem_zero(da, sizeof(float) * (size_t)(rows * F));
    }
    ps_linear_backward(&b->fc2, k, da, w->dy, rows);
    if (need_dh) {
      k->mem_zero(w->dF2, sizeof(float) * (size_t)(rows * F));
      k->gelu_backward(w->dF2, A->h, da, rows * F);
      float *dln2 = NULL;
      if (need_dln2) {
        dln2 = w->dln;
        k->mem_zero(dln2, sizeof(float) * (size_t)(rows * D));
      }
      ps_linear_backward(&b->fc1, k, dln2, w->dF2, rows);
      if (need_dln2)
        k->layernorm_backward(need_dxmid ? dx : NULL, PG(e, b->n2w), PG(e, b->n2b), dln2, A->xmid,
                              PV(e, b->n2w), A->mean2, A->rstd2, rows, D);
    }
  } else if (b->ls2 >= 0 && PG(e, b->ls2)) {
    k->layerscale_backward(NULL, PG(e, b->ls2), dx, A->y2, PV(e, b->ls2), rows, D);
  }
  if (!need_dxmid) return;

  /* Attention branch: xmid = xin + ls1 * y1. */
  if (!need_dy1) {
    if (b->ls1 >= 0 && PG(e, b->ls1))
      k->layerscale_backward(NULL, PG(e, b->ls1), dx, A->y1, PV(e, b->ls1), rows, D);
    return;
  }
  k->mem_zero(w->dy, sizeof(float) * (size_t)(rows * D));
  if (b->ls1 >= 0)
    k->layerscale_backward(w->dy, PG(e, b->ls1), dx, A->y1, PV(e, b->ls1), rows, D);
  else
    k->copy_on_device(w->dy, dx, sizeof(float) * (size_t)(rows * D));
  float *datt = NULL;
  if (need_dqkv) {
    datt = w->datt;
    k->mem_zero(datt, sizeof(float) * (size_t)(rows * D));
  }
  ps_linear_backward(&b->proj, k, datt, w->dy, rows);
  if (!need_dqkv) return;
  k->mem_zero(w->dqkv, sizeof(float) * (size_t)(rows * 3 * D));
  ps_attention_desc ad = att_desc(e);
  k->attention_backward(w->dqkv, w->dqkv + D, w->dqkv + 2 * D, NULL, NULL, NULL, datt, A->qkv,
                        A->qkv + D, A->qkv + 2 * D, A->att, A->lse, &ad, w->ascr, w->ascr_n);
  float *dln1 = NULL;
  if (need_dln1) {
    dln1 = w->dln;
    k->mem_zero(dln1, sizeof(float) * (size_t)(rows * D));
  }
  ps_linear_backward(&b->qkv, k, dln1, w->dqkv, rows);
  if (need_dln1)
    k->layernorm_backward(need_in ? dx : NULL, PG(e, b->n1w), PG(e, b->n1b), dln1, xin,
                          PV(e, b->n1w), A->mean1, A->rstd1, rows, D);
}

gboolean rp_encoder_backward(rp_encoder *e, ps_context *ctx, const float *dcls, const float *dregs,
                             const float *dpatches, ps_tensor **dimage, GError **error) {
  if (!e->arena || !e->image) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "encoder.ruipath: backward before forward");
    return FALSE;
  }
  if (!e->trained) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "encoder.ruipath: backward needs a forward in training mode (activations of "
                "every block are kept only then)");
    return FALSE;
  }
  const ps_kernels *k = e->k;
  const int64_t B = e->B, D = e->D, N = e->N, T = e->T, R = e->R, rows = B * T;
  const int depth = (int)e->c.depth;

  /* need[i]: something at or below the input of block i needs its gradient. */
  gboolean need[RP_MAX_DEPTH + 1];
  const gboolean patch_path = PG(e, e->pe_w) || PG(e, e->pe_b) || dimage;
  need[0] = patch_path || PG(e, e->cls) || PG(e, e->pos) || PG(e, e->reg);
  for (int i = 0; i < depth; i++) need[i + 1] = need[i] || block_trains(e, i);
  const gboolean norm_trains = PG(e, e->nw) || PG(e, e->nb);
  if (dimage) *dimage = NULL;
  if (!need[depth] && !norm_trains) return TRUE;
  if (!dcls && !dregs && !dpatches) {
    /* No gradient flows in: the parameters' gradients are unchanged, but
     * an image gradient must still be an (all-zero) tensor. */
    if (dimage) {
      if (!ps_tensor_ensure_on(&e->dimage, e->device, PS_DTYPE_F32, 4, e->image->shape, error))
        return FALSE;
      k->mem_zero(e->dimage->data, e->dimage->nbytes);
      *dimage = e->dimage;
    }
    return TRUE;
  }

  /* Gradient of the final norm's output, assembled from the three outputs. */
  float *dnormed = scratch_floats(ctx, rows * D);
  k->mem_zero(dnormed, sizeof(float) * (size_t)(rows * D));
  if (dcls) k->copy_2d(dnormed, T * D, dcls, D, B, D, 0);
  if (dregs && R > 0) k->copy_2d(dnormed + D, T * D, dregs, R * D, B, R * D, 0);
  if (dpatches) k->copy_2d(dnormed + (1 + R) * D, T * D, dpatches, N * D, B, N * D, 0);
  float *dx = scratch_floats(ctx, rows * D);
  k->mem_zero(dx, sizeof(float) * (size_t)(rows * D));
  k->layernorm_backward(need[depth] ? dx : NULL, PG(e, e->nw), PG(e, e->nb), dnormed,
                        e->stream + depth * rows * D, PV(e, e->nw), e->nmean, e->nrstd, rows, D);
  if (!need[depth]) return TRUE;

  rp_bwd w;
  w.dy = scratch_floats(ctx, rows * D);
  w.dF1 = scratch_floats(ctx, rows * e->F);
  w.dF2 = scratch_floats(ctx, rows * e->F);
  w.dln = scratch_floats(ctx, rows * D);
  w.dqkv = scratch_floats(ctx, rows * 3 * D);
  w.datt = scratch_floats(ctx, rows * D);
  ps_attention_desc ad = att_desc(e);
  w.ascr_n = k->attention_scratch(&ad, 1);
  w.ascr = scratch_floats(ctx, w.ascr_n);
  for (int i = depth - 1; i >= 0; i--) {
    if (!need[i + 1]) break; /* nothing at or below block i needs anything */
    block_backward(e, i, dx, need[i], &w);
  }
  if (!need[0]) return TRUE;

  /* Embeddings: dx is the gradient w.r.t. the tokens entering block 0. */
  if (PG(e, e->cls))
    for (int64_t b = 0; b < B; b++) k->axpy(PG(e, e->cls), 1.0f, dx + b * T * D, D);
  if (e->reg >= 0 && PG(e, e->reg))
    for (int64_t b = 0; b < B; b++) k->axpy(PG(e, e->reg), 1.0f, dx + (b * T + 1) * D, R * D);
  if (PG(e, e->pos)) {
    /* The interpolated table is shared by the batch: sum, then the adjoint
     * of the bicubic resampling. */
    float *dpos_i = scratch_floats(ctx, (1 + N) * D);
    k->mem_zero(dpos_i, sizeof(float) * (size_t)((1 + N) * D));
    for (int64_t b = 0; b < B; b++) {
      k->axpy(dpos_i, 1.0f, dx + b * T * D, D);
      k->axpy(dpos_i + D, 1.0f, dx + (b * T + 1 + R) * D, N * D);
    }
    float *pscr = scratch_floats(ctx, 2 * D * MAX(e->M * e->M, N));
    rp_pos_interp_backward(&e->interp, k, PG(e, e->pos), dpos_i, D, pscr);
  }
  if (patch_path) {
    /* (B, N, D) rows of dx -> (B, D, N) as the conv's output layout. */
    float *dpe = scratch_floats(ctx, B * D * N);
    for (int64_t b = 0; b < B; b++)
      k->transpose_forward(dpe + b * D * N, dx + (b * T + 1 + R) * D, 1, N, D);
    float *dimg = NULL;
    if (dimage) {
      if (!ps_tensor_ensure_on(&e->dimage, e->device, PS_DTYPE_F32, 4, e->image->shape, error))
        return FALSE;
      k->mem_zero(e->dimage->data, e->dimage->nbytes);
      dimg = ps_f32(e->dimage);
      *dimage = e->dimage;
    }
    ps_conv2d_desc cd = conv_desc(e);
    int64_t csf = k->conv2d_scratch(&cd);
    k->conv2d_backward(dimg, PG(e, e->pe_w), PG(e, e->pe_b), dpe, ps_f32(e->image), PV(e, e->pe_w),
                       &cd, scratch_floats(ctx, csf), csf);
  }
  return TRUE;
}
