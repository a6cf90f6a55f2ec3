/* ssl_stage.c — `stage.ssl_pretrain`: self-supervised pre-training of an image
 * encoder (paper section 3.2): MAE plus the stain-invariant self-distillation
 * term of Eq. 1.
 *
 * Each step, on a batch of images x [B, 3, H, W]:
 *  (a) MAE. Noise [B, L] from a stream that is a pure function of (seed,
 *      step) gives the mask exactly as MAE's random_masking does (mae.c).
 *      The encoder sees the WHOLE image with the removed patches filled
 *      (SimMIM-style) instead of a shorter token list, because SAM's
 *      windowed attention, relative positions and conv neck need the full
 *      token grid. The fill is, by default, the per-image, per-channel mean
 *      of the visible pixels: it hides everything about the removed
 *      patches (no statistic of theirs leaks in) and introduces no extreme
 *      value, whereas zeros become the darkest pixel of an H&E tile and
 *      shift MedSAM's per-image min-max normalisation of the visible pixels.
 *      The decoder (ssl.mae_decoder) then works as MAE's: it reads only the
 *      kept positions of the feature map, puts mask tokens at the removed
 *      ones and predicts every patch; the loss is MAE's normalised-pixel
 *      MSE over the removed patches (mae_loss, identical to the fixture).
 *      The target is patchify(x) of the undisturbed image; with norm_pix the
 *      per-patch normalisation also makes it independent of any per-image
 *      affine scaling the encoder applies to its input.
 *  (b) Eq. 1. Two RandStainNA views of each image (augmenter instances named
 *      in `views`; one instance is run twice), converted from u8 HWC to f32
 *      CHW in [0, 1], go through the encoder as one batch of 2B; z = the
 *      mean over positions of its feature map, s = the views' Lab stain
 *      vectors, and L_stain = alpha * mean_b (1 - cos(s_a, s_b)) ||z_a - z_b||^2.
 *      alpha = 0 switches the term off (no views are computed unless
 *      monitor_stain asks for the value).
 *  (c) The variance guard (variance_weight > 0; not in the paper). Alone,
 *      (b) is smallest when the encoder maps every image to the same
 *      features, and nothing in (a) resists that enough: with the
 *      quickstart's alpha the embeddings of different images fell to 4% of
 *      their initial difference in 60 steps. VICReg's hinge on each
 *      channel's standard deviation over the views' tokens keeps it from
 *      collapsing: gamma * mean_c relu(target - std_c) (ssl_stain.h). The
 *      statistics are summed across data-parallel ranks first, so N ranks
 *      compute the loss of one process with N times the batch.
 * Gradients of both terms accumulate before one AdamW step on the encoder
 * and decoder parameters whose roles are in train_roles. Metrics per step:
 * mae_loss, stain_loss, stain_dist (the term without alpha, when computed),
 * var_loss and token_std (with the guard), total, lr, grad_norm.
 *
 * Devices: the stage's own bookkeeping (noise, masks, the masked image, the
 * views' conversion, the stain vectors) is host work on the batch; what the
 * components output (pred, the feature map) lives on the context's device,
 * and the losses over it run through the kernel table (mae_device.h, the
 * *_dev functions of ssl_stain.h), reading back only scalars. */
#include <math.h>
#include <string.h>

#include <pathseg/error.h>
#include <pathseg/loader.h>
#include <pathseg/run.h>

#include "mae.h"
#include "mae_device.h"
#include "../common/param_list.h"
#include "ssl_plugin.h"
#include "ssl_stain.h"

typedef struct {
  char *dataset, *encoder, *decoder, *image_field, *enc_in, *enc_out;
  char *views[2];
  size_t n_views;
  double alpha, mask_ratio, var_weight, var_target;
  gboolean norm_pix, monitor;
  mae_fill fill;
  int64_t steps, batch_size, checkpoint_every, stop_after;
  uint64_t seed;
  ps_schedule schedule;
  ps_adamw_config adamw;
  ps_role roles[PS_ROLE_COUNT];
  size_t n_roles;
} ssl_stage;

static const ps_config_key stage_config[] = {
    {"dataset", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL, "instance name of the dataset component"},
    {"encoder", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL,
     "instance of the image encoder to pre-train (e.g. encoder.medsam); its input port must be "
     "bound to a data field, which the stage fills with the masked image and the views"},
    {"decoder", PS_TYPE_STRING, NULL, PS_NO_RANGE, NULL,
     "instance of ssl.mae_decoder; its features come from the encoder, its mask from a data field"},
    {"views", PS_TYPE_STRING_LIST, "[]", PS_NO_RANGE, NULL,
     "one or two augmenter instances (augmenter.randstainna) giving the views of Eq. 1; one "
     "instance is run twice"},
    {"image_field", PS_TYPE_STRING, "image", PS_NO_RANGE, NULL,
     "batch field with the images [B, 3, H, W] f32 in [0, 1]"},
    {"encoder_input", PS_TYPE_STRING, "image", PS_NO_RANGE, NULL, "the encoder's image input port"},
    {"encoder_output", PS_TYPE_STRING, "embeddings", PS_NO_RANGE, NULL,
     "the encoder's feature-map output port [B, C, h, w]"},
    {"alpha", PS_TYPE_FLOAT, "1.0", 0, 1e9, NULL,
     "weight of the stain-invariant term (0 = off: MAE only)"},
    {"monitor_stain", PS_TYPE_BOOL, "false", PS_NO_RANGE, NULL,
     "compute and log stain_dist even when alpha is 0 (costs a forward of both views)"},
    {"variance_weight", PS_TYPE_FLOAT, "0", 0, 1e9, NULL,
     "gamma of the variance guard against Eq. 1's collapse, gamma * mean_c relu(target - "
     "std_c) over the views' tokens (VICReg; not in the paper; 0 = off)"},
    {"variance_target", PS_TYPE_FLOAT, "1.0", 0, 1e9, NULL,
     "the standard deviation per channel below which the guard pushes back"},
    {"mask_ratio", PS_TYPE_FLOAT, "0.75", 0.0, 0.999, NULL, "fraction of patches removed (MAE)"},
    {"mask_fill", PS_TYPE_ENUM, "mean", PS_NO_RANGE, "mean|zero",
     "pixel value of removed patches: per-image per-channel mean of the visible pixels, or 0"},
    {"norm_pix_loss", PS_TYPE_BOOL, "true", PS_NO_RANGE, NULL,
     "MAE target = per-patch normalised pixels (unbiased variance, eps 1e-6)"},
    {"steps", PS_TYPE_INT, "100", 0, 1e12, NULL, "optimizer steps"},
    {"batch_size", PS_TYPE_INT, "8", 1, 1e6, NULL, "images per step"},
    {"lr", PS_TYPE_FLOAT, "1.5e-4", 0, 10, NULL, "peak learning rate (MAE: 1.5e-4 * batch / 256)"},
    {"min_lr", PS_TYPE_FLOAT, "0", 0, 10, NULL, "final learning rate of the cosine schedule"},
    {"schedule", PS_TYPE_ENUM, "cosine", PS_NO_RANGE, "constant|cosine|robbins_monro",
     "learning-rate schedule"},
    {"warmup_steps", PS_TYPE_INT, "0", 0, 1e12, NULL, "linear warmup (cosine schedule)"},
    {"eta", PS_TYPE_FLOAT, "0.01", 0, 1e6, NULL, "decay of the Robbins-Monro schedule"},
    {"weight_decay", PS_TYPE_FLOAT, "0.05", 0, 10, NULL, "decoupled AdamW weight decay (MAE 0.05)"},
    {"beta1", PS_TYPE_FLOAT, "0.9", 0, 1, NULL, "AdamW beta1"},
    {"beta2", PS_TYPE_FLOAT, "0.95", 0, 1, NULL, "AdamW beta2 (MAE 0.95)"},
    {"clip_norm", PS_TYPE_FLOAT, "1.0", 0, 1e9, NULL,
     "global gradient-norm clip (0 = off, as the MAE recipe)"},
    {"train_roles", PS_TYPE_STRING_LIST, "[backbone, full]", PS_NO_RANGE, NULL,
     "parameter roles of the encoder and decoder that train"},
    {"checkpoint_every", PS_TYPE_INT, "0", 0, 1e12, NULL, "save every N steps (0 = at the end)"},
    {"seed", PS_TYPE_INT, "0", 0, 1e15, NULL,
     "seed of the batches and masks (mixed with the pipeline seed)"},
    {"stop_after_steps", PS_TYPE_INT, "0", 0, 1e12, NULL,
     "stop (checkpoint, resumable) after this many steps in this invocation; 0 = never"},
    {NULL},
};

static void stage_destroy(void *self) {
  ssl_stage *s = self;
  if (!s) return;
  g_free(s->dataset);
  g_free(s->encoder);
  g_free(s->decoder);
  g_free(s->image_field);
  g_free(s->enc_in);
  g_free(s->enc_out);
  g_free(s->views[0]);
  g_free(s->views[1]);
  g_free(s);
}

static void *stage_create(const ps_config *cfg, ps_context *ctx, GError **error) {
  ssl_stage *s = g_new0(ssl_stage, 1);
  size_t n = 0;
  const char *const *roles = ps_config_string_list(cfg, "train_roles", &n);
  for (size_t i = 0; i < n; i++) {
    if (s->n_roles >= PS_ROLE_COUNT || !ps_role_from_name(roles[i], &s->roles[s->n_roles])) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "train_roles: '%s' is not a role (frozen, full, lora, adapter, backbone)",
                  roles[i]);
      stage_destroy(s);
      return NULL;
    }
    s->n_roles++;
  }
  const char *const *views = ps_config_string_list(cfg, "views", &s->n_views);
  if (s->n_views > 2) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "views: give one or two augmenter instances, not %zu", s->n_views);
    stage_destroy(s);
    return NULL;
  }
  for (size_t i = 0; i < s->n_views; i++) s->views[i] = g_strdup(views[i]);
  s->dataset = g_strdup(ps_config_string(cfg, "dataset"));
  s->encoder = g_strdup(ps_config_string(cfg, "encoder"));
  s->decoder = g_strdup(ps_config_string(cfg, "decoder"));
  s->image_field = g_strdup(ps_config_string(cfg, "image_field"));
  s->enc_in = g_strdup(ps_config_string(cfg, "encoder_input"));
  s->enc_out = g_strdup(ps_config_string(cfg, "encoder_output"));
  s->alpha = ps_config_float(cfg, "alpha");
  s->monitor = ps_config_bool(cfg, "monitor_stain");
  s->var_weight = ps_config_float(cfg, "variance_weight");
  s->var_target = ps_config_float(cfg, "variance_target");
  s->mask_ratio = ps_config_float(cfg, "mask_ratio");
  s->fill = strcmp(ps_config_string(cfg, "mask_fill"), "zero") == 0 ? MAE_FILL_ZERO : MAE_FILL_MEAN;
  s->norm_pix = ps_config_bool(cfg, "norm_pix_loss");
  s->steps = ps_config_int(cfg, "steps");
  s->batch_size = ps_config_int(cfg, "batch_size");
  s->checkpoint_every = ps_config_int(cfg, "checkpoint_every");
  s->stop_after = ps_config_int(cfg, "stop_after_steps");
  s->seed = (uint64_t)ps_config_int(cfg, "seed");
  ps_optim_from_config(cfg, s->steps, &s->schedule, &s->adamw);
  return s;
}

/* ---------------------------------------------------------------------- */
/* Checking the wiring once, before the first step. */

/* The data field an input port of `instance` is bound to; NULL with an error
 * when it is bound to something else or not at all. */
static const char *data_binding(const ps_pipeline *pl, const char *instance, const char *port,
                                GError **error) {
  const ps_pipeline_component *pc = ps_pipeline_get_component(pl, instance);
  for (size_t i = 0; pc && i < pc->n_inputs; i++)
    if (strcmp(pc->inputs[i].port, port) == 0) {
      if (strcmp(pc->inputs[i].source, "data") == 0) return pc->inputs[i].source_port;
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "stage.ssl_pretrain: %s.%s is bound to %s.%s; it must be bound to a data field "
                  "(data.NAME), which the stage fills",
                  instance, port, pc->inputs[i].source, pc->inputs[i].source_port);
      return NULL;
    }
  g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
              "stage.ssl_pretrain: %s has no binding for its input '%s' (bind it to data.NAME)",
              instance, port);
  return NULL;
}

typedef struct {
  const ps_dataset_iface *ds;
  void *ds_self;
  const char *enc_field, *mask_field;
  int64_t patch, chans;
  gboolean stain; /* compute the views this run */
  ps_rng noise_base;
  ps_context *ctx;
  ps_device device; /* the context's: where pred, the feature map and their gradients live */
  const ps_kernels *k;
  /* step buffers, reused while the batch shape stays the same */
  float *noise, *target_h, *stains; /* host: (B, L), (B, L, P), (2B, 6) */
  int64_t noise_cap, target_cap, stains_cap;
  pl_buf target, zs, dz; /* device: (B, L, P), (2B, C), (2B, C) */
  mae_ids loss_rows;
  ssl_var_dev var;
  double *var_stats; /* (C, 3) count, sum, sum of squares per channel */
  int64_t var_n;
  ps_tensor *mask, *masked, *pair; /* host */
  ps_tensor *dpred, *demb;         /* device */
  ps_tensor *cache_img, *cache_pred, *cache_emb, *cache_vi, *cache_vs;
  GArray *ports; /* ps_port: the batch fields plus the stage's own */
  ps_ports data; /* a view of `ports` handed to the graph */
} step_state;

static void step_state_clear(step_state *st) {
  pl_buf *bufs[] = {&st->target, &st->zs, &st->dz};
  g_clear_pointer(&st->var_stats, g_free);
  g_clear_pointer(&st->noise, g_free);
  g_clear_pointer(&st->target_h, g_free);
  g_clear_pointer(&st->stains, g_free);
  mae_ids_clear(&st->loss_rows);
  ssl_var_dev_clear(&st->var);
  for (size_t i = 0; i < G_N_ELEMENTS(bufs); i++) pl_buf_free(bufs[i]);
  ps_tensor *ts[] = {st->mask,      st->masked,     st->dpred,     st->pair,     st->demb,
                     st->cache_img, st->cache_pred, st->cache_emb, st->cache_vi, st->cache_vs};
  for (size_t i = 0; i < G_N_ELEMENTS(ts); i++) ps_tensor_free(ts[i]);
  if (st->ports) g_array_free(st->ports, TRUE);
}

static gboolean check_wiring(ssl_stage *s, ps_run *run, step_state *st, GError **error) {
  ps_graph *g = ps_run_graph(run);
  const ps_pipeline *pl = ps_run_pipeline(run);
  const ps_component_desc *desc = NULL;
  st->ds_self = ps_graph_self(g, s->dataset, &desc);
  st->ds = st->ds_self ? ps_graph_capability(g, s->dataset, "dataset") : NULL;
  if (!st->ds) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "stage.ssl_pretrain: dataset '%s' is not a component with the dataset capability",
                s->dataset);
    return FALSE;
  }
  if (!ps_graph_self(g, s->encoder, &desc)) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "stage.ssl_pretrain: encoder '%s' is not a component of the pipeline", s->encoder);
    return FALSE;
  }
  if (!(st->enc_field = data_binding(pl, s->encoder, s->enc_in, error))) return FALSE;
  const ps_pipeline_component *dc = ps_pipeline_get_component(pl, s->decoder);
  if (!dc || strcmp(dc->desc->name, "ssl.mae_decoder") != 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.ssl_pretrain: decoder '%s' must be an ssl.mae_decoder component%s%s",
                s->decoder, dc ? ", not " : " of the pipeline", dc ? dc->desc->name : "");
    return FALSE;
  }
  gboolean features_ok = FALSE;
  for (size_t i = 0; i < dc->n_inputs; i++)
    if (strcmp(dc->inputs[i].port, "features") == 0)
      features_ok = strcmp(dc->inputs[i].source, s->encoder) == 0 &&
                    strcmp(dc->inputs[i].source_port, s->enc_out) == 0;
  if (!features_ok) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.ssl_pretrain: %s.features must be bound to %s.%s", s->decoder, s->encoder,
                s->enc_out);
    return FALSE;
  }
  if (!(st->mask_field = data_binding(pl, s->decoder, "mask", error))) return FALSE;
  if (strcmp(st->mask_field, st->enc_field) == 0 || strcmp(st->mask_field, s->image_field) == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.ssl_pretrain: %s.mask is bound to data.%s, which is also the image; bind "
                "it to a field of its own (e.g. data.mae_mask)",
                s->decoder, st->mask_field);
    return FALSE;
  }
  st->patch = ps_config_int(dc->config, "patch_size");
  st->chans = ps_config_int(dc->config, "in_chans");
  st->stain = s->alpha > 0.0 || s->monitor || s->var_weight > 0.0;
  if (st->stain && s->n_views == 0) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.ssl_pretrain: alpha is %g (or monitor_stain or variance_weight is on) but "
                "no views are "
                "named; set views: [an augmenter.randstainna instance] or alpha: 0",
                s->alpha);
    return FALSE;
  }
  for (size_t v = 0; v < s->n_views; v++) {
    const ps_pipeline_component *vc = ps_pipeline_get_component(pl, s->views[v]);
    gboolean has_image = FALSE, has_stain = FALSE;
    for (size_t i = 0; vc && vc->desc->outputs[i].name; i++) {
      has_image |= strcmp(vc->desc->outputs[i].name, "image") == 0;
      has_stain |= strcmp(vc->desc->outputs[i].name, "stain") == 0;
    }
    if (!has_image || !has_stain) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "stage.ssl_pretrain: view '%s' must be a component with outputs image and stain "
                  "(augmenter.randstainna)",
                  s->views[v]);
      return FALSE;
    }
  }
  ps_rng base;
  ps_rng_seed(&base, s->seed ^ (uint64_t)ps_run_pipeline(run)->seed * 0x9e3779b97f4a7c15ULL);
  st->noise_base = ps_rng_fork(&base, 0x6d6165 /* "mae" */);
  st->ports = g_array_new(FALSE, TRUE, sizeof(ps_port));
  st->ctx = ps_run_context(run);
  st->device = ps_context_device(st->ctx);
  return (st->k = ps_context_kernels(st->ctx, error)) != NULL;
}

/* The batch's fields with f1 (and f2, when not NULL) set to t1 (t2), added
 * when the batch lacks them. Valid until the next call. */
static const ps_ports *with_field(step_state *st, const ps_ports *batch, const char *f1,
                                  ps_tensor *t1, const char *f2, ps_tensor *t2) {
  g_array_set_size(st->ports, 0);
  for (size_t i = 0; i < batch->count; i++) {
    ps_port p = batch->items[i];
    if ((f1 && strcmp(p.name, f1) == 0) || (f2 && strcmp(p.name, f2) == 0)) continue;
    g_array_append_val(st->ports, p);
  }
  ps_port a = {f1, t1, FALSE}, b = {f2, t2, FALSE};
  if (f1) g_array_append_val(st->ports, a);
  if (f2) g_array_append_val(st->ports, b);
  st->data = (ps_ports){(ps_port *)st->ports->data, st->ports->len};
  return &st->data;
}

/* ---------------------------------------------------------------------- */
/* One step. */

/* A host array of at least n floats in *p (capacity *cap). */
static float *host_floats(float **p, int64_t *cap, int64_t n) {
  if (*cap < n) {
    *p = g_renew(float, *p, n);
    *cap = n;
  }
  return *p;
}

typedef struct {
  double mae, stain, dist, var, token_std;
  gboolean have_dist;
} step_losses;

static gboolean mae_pass(ssl_stage *s, ps_graph *g, step_state *st, const ps_ports *batch,
                         int64_t step, step_losses *out, GError **error) {
  const ps_tensor *img = ps_ports_get(batch, s->image_field);
  const int64_t ishape[4] = {-1, st->chans, -1, -1};
  if (!img) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND,
                "stage.ssl_pretrain: the dataset's batch has no field '%s' (image_field)",
                s->image_field);
    return FALSE;
  }
  if (!ps_tensor_check(img, "stage.ssl_pretrain image_field", PS_DTYPE_F32, 4, ishape, error))
    return FALSE;
  /* the masking is host work on the batch */
  if (!(img = ps_tensor_on_device(img, PS_DEVICE_CPU, &st->cache_img, error))) return FALSE;
  const int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
  const int64_t p = st->patch;
  if (H % p || W % p) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "stage.ssl_pretrain: images of %" G_GINT64_FORMAT "x%" G_GINT64_FORMAT
                " are not a whole number of %" G_GINT64_FORMAT "-pixel patches",
                H, W, p);
    return FALSE;
  }
  const int64_t gh = H / p, gw = W / p, L = gh * gw, PD = p * p * C;
  const int64_t Lk = mae_len_keep(L, s->mask_ratio);
  if (Lk < 1) {
    g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                "stage.ssl_pretrain: mask_ratio %g keeps no patch of %" G_GINT64_FORMAT,
                s->mask_ratio, L);
    return FALSE;
  }
  const int64_t mshape[2] = {B, L}, pshape[3] = {B, L, PD};
  const ps_kernels *k = st->k;
  float *noise = host_floats(&st->noise, &st->noise_cap, B * L);
  float *target_h = host_floats(&st->target_h, &st->target_cap, B * L * PD);
  if (!pl_buf_ensure(&st->target, k, B * L * PD, error) ||
      !ps_tensor_ensure(&st->mask, PS_DTYPE_F32, 2, mshape, error) ||
      !ps_tensor_ensure(&st->masked, PS_DTYPE_F32, 4, img->shape, error) ||
      !ps_tensor_ensure_on(&st->dpred, st->device, PS_DTYPE_F32, 3, pshape, error))
    return FALSE;
  /* noise = torch.rand(N, L) of this step, then MAE's random_masking */
  ps_rng r = ps_rng_fork(&st->noise_base, (uint64_t)step);
  for (int64_t i = 0; i < B * L; i++) noise[i] = ps_rng_uniform(&r);
  mae_masking_from_noise(NULL, NULL, ps_f32(st->mask), noise, B, L, Lk);
  mae_mask_image(ps_f32(st->masked), ps_f32(img), ps_f32(st->mask), B, C, gh, gw, p, s->fill);

  const ps_ports *data = with_field(st, batch, st->enc_field, st->masked, st->mask_field, st->mask);
  const char *targets[] = {s->decoder, NULL};
  if (!ps_graph_forward(g, data, targets, error)) return FALSE;
  const ps_tensor *pred = ps_graph_output(g, s->decoder, "pred");
  if (!pred ||
      !ps_tensor_check(pred, "stage.ssl_pretrain: decoder pred", PS_DTYPE_F32, 3, pshape, error)) {
    if (error && !*error)
      g_set_error(error, PS_ERROR, PS_ERROR_SHAPE, "stage.ssl_pretrain: the decoder made no pred");
    g_prefix_error(
        error, "(does the encoder's feature grid match %" G_GINT64_FORMAT "-pixel patches?) ", p);
    return FALSE;
  }
  /* the target on the host from the batch, then to pred's device for the loss */
  mae_patchify(target_h, ps_f32(img), B, C, gh, gw, p);
  k->copy_to_device(st->target.p, target_h, (size_t)(B * L * PD) * sizeof(float));
  if (!(pred = ps_tensor_on_device(pred, st->device, &st->cache_pred, error))) return FALSE;
  k->mem_zero(st->dpred->data, st->dpred->nbytes);
  if (!mae_loss_dev(k, st->ctx, &st->loss_rows, ps_f32(st->dpred), ps_f32(pred), st->target.p,
                    ps_f32(st->mask), B, L, PD, s->norm_pix, 1e-6, 1.0, &out->mae, error))
    return FALSE;
  if (!isfinite(out->mae)) return TRUE; /* the caller stops with the step named */
  return ps_graph_seed_grad(g, s->decoder, "pred", st->dpred, error) && ps_graph_backward(g, error);
}

/* Runs the view instance `view` on the batch; copies its image (as f32 CHW) into
 * st->pair at images [slot*B, slot*B + B) and its stains into st->stains. */
static gboolean run_view(ssl_stage *s, ps_graph *g, step_state *st, const ps_ports *batch,
                         const char *view, int64_t slot, int64_t B, int64_t H, int64_t W,
                         GError **error) {
  const char *targets[] = {view, NULL};
  if (!ps_graph_forward(g, batch, targets, error)) return FALSE;
  const ps_tensor *vi = ps_graph_output(g, view, "image");
  const ps_tensor *vs = ps_graph_output(g, view, "stain");
  const int64_t ishape[4] = {B, H, W, st->chans}, sshape[2] = {B, 6};
  g_autofree char *wi = g_strdup_printf("stage.ssl_pretrain: view %s image", view);
  g_autofree char *ws = g_strdup_printf("stage.ssl_pretrain: view %s stain", view);
  if (!vi || !vs) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no image/stain output", wi);
    return FALSE;
  }
  if (!ps_tensor_check(vi, wi, PS_DTYPE_U8, 4, ishape, error) ||
      !ps_tensor_check(vs, ws, PS_DTYPE_F32, 2, sshape, error))
    return FALSE;
  /* the views' outputs are batch data: converted on the host */
  if (!(vi = ps_tensor_on_device(vi, PS_DEVICE_CPU, &st->cache_vi, error)) ||
      !(vs = ps_tensor_on_device(vs, PS_DEVICE_CPU, &st->cache_vs, error)))
    return FALSE;
  const int64_t C = st->chans;
  ssl_u8_hwc_to_f32_chw(ps_f32(st->pair) + slot * B * C * H * W, vi->data, B, H, W, C);
  memcpy(st->stains + slot * B * 6, vs->data, vs->nbytes);
  return TRUE;
}

static gboolean stain_pass(ssl_stage *s, ps_run *run, ps_graph *g, step_state *st,
                           const ps_ports *batch, step_losses *out, GError **error) {
  const ps_tensor *img = ps_ports_get(batch, s->image_field);
  const int64_t B = img->shape[0], C = img->shape[1], H = img->shape[2], W = img->shape[3];
  const int64_t pshape[4] = {2 * B, C, H, W};
  if (!ps_tensor_ensure(&st->pair, PS_DTYPE_F32, 4, pshape, error)) return FALSE;
  host_floats(&st->stains, &st->stains_cap, 2 * B * 6);
  for (int64_t v = 0; v < 2; v++)
    if (!run_view(s, g, st, batch, s->views[s->n_views == 2 ? v : 0], v, B, H, W, error))
      return FALSE;
  const ps_ports *data = with_field(st, batch, st->enc_field, st->pair, NULL, NULL);
  const char *targets[] = {s->encoder, NULL};
  if (!ps_graph_forward(g, data, targets, error)) return FALSE;
  const ps_tensor *emb = ps_graph_output(g, s->encoder, s->enc_out);
  if (!emb || emb->dtype != PS_DTYPE_F32 || emb->ndim != 4 || emb->shape[0] != 2 * B) {
    g_set_error(error, PS_ERROR, PS_ERROR_SHAPE,
                "stage.ssl_pretrain: %s.%s must be a [2B, C, h, w] f32 feature map for the two "
                "views",
                s->encoder, s->enc_out);
    return FALSE;
  }
  const int64_t E = emb->shape[1], HW = emb->shape[2] * emb->shape[3];
  const ps_kernels *k = st->k;
  ps_context *ctx = st->ctx;
  if (!(emb = ps_tensor_on_device(emb, st->device, &st->cache_emb, error)) ||
      !pl_buf_ensure(&st->zs, k, 2 * B * E, error) || !pl_buf_ensure(&st->dz, k, 2 * B * E, error))
    return FALSE;
  if (!ssl_pool_mean_dev(k, ctx, st->zs.p, ps_f32(emb), 2 * B, E, HW, error)) return FALSE;
  pl_buf_zero(&st->dz);
  if (!ssl_stain_loss_dev(k, ctx, st->dz.p, st->dz.p + B * E, st->zs.p, st->zs.p + B * E,
                          st->stains, st->stains + B * 6, B, E, 6, s->alpha, 1.0, &out->stain,
                          &out->dist, error))
    return FALSE;
  out->have_dist = TRUE;
  const gboolean guard = s->var_weight > 0.0;
  if ((s->alpha <= 0.0 && !guard) || !isfinite(out->stain)) return TRUE;
  if (!ps_tensor_ensure_on(&st->demb, st->device, PS_DTYPE_F32, 4, emb->shape, error) ||
      !ssl_pool_mean_backward_dev(k, ctx, ps_f32(st->demb), st->dz.p, 2 * B, E, HW, error))
    return FALSE; /* demb is zeros when alpha is 0 */
  if (guard) {
    if (st->var_n != E) { /* once per channel count, not per step */
      st->var_stats = g_renew(double, st->var_stats, (size_t)(3 * E));
      st->var_n = E;
    }
    memset(st->var_stats, 0, sizeof(double) * (size_t)(3 * E));
    if (!ssl_variance_stats_dev(&st->var, k, ctx, st->var_stats, ps_f32(emb), 2 * B, E, HW, error))
      return FALSE;
    ps_comm *comm = ps_run_comm(run);
    if (ps_comm_size(comm) > 1 &&
        !ps_comm_allreduce_f64(comm, st->var_stats, (size_t)(3 * E), error))
      return FALSE;
    if (!ssl_variance_loss_dev(&st->var, k, ps_f32(st->demb), st->var_stats, 2 * B, E, HW,
                               s->var_weight, s->var_target, &out->var, &out->token_std, error))
      return FALSE;
    if (!isfinite(out->var)) return TRUE; /* the caller reports the term */
  }
  return ps_graph_seed_grad(g, s->encoder, s->enc_out, st->demb, error) &&
         ps_graph_backward(g, error);
}

static gboolean stage_run(void *self, ps_run *run, GError **error) {
  ssl_stage *s = self;
  ps_graph *g = ps_run_graph(run);
  step_state st = {0};
  gboolean ok = check_wiring(s, run, &st, error);
  g_autoptr(ps_loader) loader = NULL;
  g_autoptr(ps_optim) opt = NULL;
  int64_t start = 0;
  if (ok) {
    uint64_t seed = s->seed ^ (uint64_t)ps_run_pipeline(run)->seed * 0x9e3779b97f4a7c15ULL;
    /* With several ranks each takes its slice of every batch (DP). */
    ps_comm *comm = ps_run_comm(run);
    ps_loader_options lopt = {.split = "train",
                              .batch_size = s->batch_size,
                              .seed = seed,
                              .shuffle = TRUE,
                              .prefetch = TRUE,
                              .shard_index = ps_comm_rank(comm),
                              .shard_count = ps_comm_size(comm)};
    loader = ps_loader_new(st.ds, st.ds_self, &lopt, error);
    if (!loader) g_prefix_error(error, "stage.ssl_pretrain: dataset '%s': ", s->dataset);
    ok = loader != NULL;
  }
  if (ok) {
    const char *only[] = {s->encoder, s->decoder, NULL};
    int64_t n = ps_graph_set_trainable(g, s->roles, s->n_roles, only, error);
    if (n == 0)
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "stage.ssl_pretrain: no parameter of %s or %s has a role in train_roles",
                  s->encoder, s->decoder);
    ok = n > 0;
    if (ok) {
      opt = ps_optim_new(g, &s->adamw, error);
      ok = opt && ps_run_resume(run, opt, &start, error);
    }
    if (ok)
      ps_run_log(run,
                 "ssl_pretrain: %" G_GINT64_FORMAT " parameters of %s and %s for %" G_GINT64_FORMAT
                 " steps; mask ratio %g, alpha %g%s",
                 n, s->encoder, s->decoder, s->steps, s->mask_ratio, s->alpha,
                 st.stain ? "" : " (stain term off)");
  }
  ps_context_set_training(ps_run_context(run), TRUE);
  for (int64_t step = start; ok && step < s->steps; step++) {
    if (s->stop_after > 0 && step - start >= s->stop_after) ps_run_request_stop(run);
    if (!(ok = ps_run_agree_stop(run, error))) break;
    if (ps_run_cancelled(run)) {
      ps_run_log(run, "interrupted: saving a checkpoint at step %" G_GINT64_FORMAT, step);
      ok = ps_run_save_checkpoint(run, step, opt, error);
      break;
    }
    ps_graph_zero_grad(g);
    const ps_ports *batch = ps_loader_get(loader, step, error);
    step_losses l = {0};
    ok = batch && mae_pass(s, g, &st, batch, step, &l, error);
    if (ok && st.stain && isfinite(l.mae)) ok = stain_pass(s, run, g, &st, batch, &l, error);
    if (!ok) break;
    double total = l.mae + l.stain + l.var;
    if (!isfinite(total)) {
      const char *term = !isfinite(l.mae)     ? "mae_loss"
                         : !isfinite(l.stain) ? "stain_loss"
                                              : "var_loss";
      const double bad = !isfinite(l.mae) ? l.mae : !isfinite(l.stain) ? l.stain : l.var;
      g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                  "step %" G_GINT64_FORMAT ": loss term %s is %s; stopped (the last checkpoint is "
                  "the last good state)",
                  step + 1, term, isnan(bad) ? "NaN" : "infinite");
      ok = FALSE;
      break;
    }
    const double lr = ps_schedule_lr(&s->schedule, step);
    double norm = 0.0;
    if (!(ok = ps_optim_step(opt, lr, &norm, error))) break;
    if (ps_comm_size(ps_run_comm(run)) > 1) { /* log the whole step's losses */
      double sums[2] = {l.mae, l.stain};
      if (!(ok = ps_comm_allreduce_f64(ps_run_comm(run), sums, 2, error))) break;
      l.mae = sums[0] / ps_comm_size(ps_run_comm(run));
      l.stain = sums[1] / ps_comm_size(ps_run_comm(run));
      total = l.mae + l.stain + l.var; /* var is already the whole batch's */
    }
    ps_context_reset_scratch(ps_run_context(run));
    if (s->var_weight > 0.0)
      ps_run_metrics(run, step + 1, "mae_loss", l.mae, "stain_loss", l.stain, "stain_dist", l.dist,
                     "var_loss", l.var, "token_std", l.token_std, "total", total, "lr", lr,
                     "grad_norm", norm, NULL);
    else if (l.have_dist)
      ps_run_metrics(run, step + 1, "mae_loss", l.mae, "stain_loss", l.stain, "stain_dist", l.dist,
                     "total", total, "lr", lr, "grad_norm", norm, NULL);
    else
      ps_run_metrics(run, step + 1, "mae_loss", l.mae, "stain_loss", l.stain, "total", total, "lr",
                     lr, "grad_norm", norm, NULL);
    ps_run_progress(run, step + 1, s->steps, "mae %.4g  stain %.4g  lr %.3g", l.mae, l.stain, lr);
    if (s->checkpoint_every > 0 && (step + 1) % s->checkpoint_every == 0)
      ok = ps_run_save_checkpoint(run, step + 1, opt, error);
  }
  step_state_clear(&st);
  return ok;
}

static const ps_stage_iface stage_iface = {sizeof(ps_stage_iface), stage_run,
                                           PS_STAGE_DATA_PARALLEL};

static const void *stage_capability(const char *name) {
  return strcmp(name, "stage") == 0 ? &stage_iface : NULL;
}

static const ps_port_desc no_ports[] = {{NULL}};

static const ps_component_vtable stage_vtable = {
    sizeof(ps_component_vtable), stage_create, stage_destroy, NULL, NULL, NULL,
};

const ps_component_desc ssl_stage_desc = {
    sizeof(ps_component_desc),
    PS_KIND_STAGE,
    "stage.ssl_pretrain",
    "Self-supervised pre-training of an image encoder (paper section 3.2): MAE with "
    "SimMIM-style pixel masking and an ssl.mae_decoder, plus the stain-invariant term "
    "alpha * (1 - cos(s_a, s_b)) * ||z_a - z_b||^2 over two RandStainNA views (Eq. 1).",
    stage_config,
    no_ports,
    no_ports,
    &stage_vtable,
    stage_capability,
};
