/* optim.c — AdamW with decoupled weight decay, global-norm clipping and the
 * learning-rate schedules (see optim.h). */
#include <math.h>
#include <pathseg/comm.h>
#include <pathseg/config.h>
#include <pathseg/kernels.h>
#include <pathseg/optim.h>
#include <string.h>

typedef struct {
  const ps_kernels *k; /* the parameter's device: the update runs there */
  char *key;       /* "INSTANCE/PARAM" */
  size_t instance_len; /* key[0..instance_len) is the instance name */
  ps_param *param; /* owned by the component */
  ps_tensor *m, *v;
  guint bucket;    /* data-parallel runs: the bucket its gradient travels in */
  gboolean ready;  /* its instance's backward is done (this step) */
} slot;

/* Data-parallel gradient reduction (more than one rank): the gradients are
 * packed into buckets of about BUCKET_FLOATS floats in backward order (the
 * last component's parameters first), and each bucket's sum across ranks
 * starts as soon as the backward passes of all its parameters are done —
 * while the components before them still run backward — and is waited for
 * in ps_optim_step. PyTorch DDP buckets the same way (25 MiB there). */
#define BUCKET_FLOATS ((size_t)4 << 20)

typedef struct {
  float *flat;           /* (n) packed gradients */
  size_t n;
  guint waiting;         /* slots whose gradient is not final yet */
  ps_comm_request *request; /* in flight, or NULL */
  gboolean launched;
} bucket;

struct ps_optim {
  ps_adamw_config cfg;
  GArray *slots; /* slot */
  int64_t step;
  int64_t n_params;
  ps_graph *graph;
  ps_comm *comm;     /* ranks; size 1 = no reduction */
  GArray *buckets;   /* bucket */
  gboolean overlap;  /* reduce during the current backward pass */
  gboolean hooked;
};

ps_adamw_config ps_adamw_defaults(void) {
  ps_adamw_config c = {0.9, 0.999, 1e-8, 0.01, FALSE, 1.0};
  return c;
}

typedef struct {
  ps_optim *opt;
  GError **error;
  gboolean failed;
} collect_ctx;

static void collect(const char *instance, ps_param *p, void *user) {
  collect_ctx *cc = user;
  if (!p->grad || cc->failed) return;
  slot s = {NULL, g_strdup_printf("%s/%s", instance, p->name), strlen(instance), p, NULL, NULL, 0,
            FALSE};
  const ps_device dev = p->value->device;
  s.k = ps_kernels_get(dev, cc->error);
  if (s.k && p->grad->device != dev) {
    g_set_error(cc->error, PS_ERROR, PS_ERROR_INVALID,
                "%s: the gradient is not on the parameter's device", s.key);
    s.k = NULL;
  }
  s.m = s.k ? ps_tensor_new_on(dev, PS_DTYPE_F32, p->value->ndim, p->value->shape, cc->error) : NULL;
  s.v = s.m ? ps_tensor_new_on(dev, PS_DTYPE_F32, p->value->ndim, p->value->shape, cc->error) : NULL;
  if (!s.v) cc->failed = TRUE;
  g_array_append_val(cc->opt->slots, s);
  cc->opt->n_params += ps_tensor_numel(p->value);
}

static void launch(ps_optim *opt, guint b, GError **error);

/* The graph's backward hook: `instance`'s gradients are final. */
static void on_backward(const char *instance, void *user) {
  ps_optim *opt = user;
  if (!opt->overlap) return;
  size_t len = strlen(instance);
  for (guint i = 0; i < opt->slots->len; i++) {
    slot *s = &g_array_index(opt->slots, slot, i);
    if (s->ready || s->instance_len != len || strncmp(s->key, instance, len) != 0) continue;
    s->ready = TRUE;
    bucket *bk = &g_array_index(opt->buckets, bucket, s->bucket);
    /* A failed start is retried (and reported) by ps_optim_step. */
    if (--bk->waiting == 0) launch(opt, s->bucket, NULL);
  }
  ps_comm_progress(opt->comm);
}

/* Buckets over the slots in reverse order (the order backward finishes). */
static void make_buckets(ps_optim *opt) {
  opt->buckets = g_array_new(FALSE, TRUE, sizeof(bucket));
  bucket cur = {0};
  for (guint i = opt->slots->len; i-- > 0;) {
    slot *s = &g_array_index(opt->slots, slot, i);
    size_t n = (size_t)ps_tensor_numel(s->param->grad);
    if (cur.n > 0 && cur.n + n > BUCKET_FLOATS) {
      g_array_append_val(opt->buckets, cur);
      memset(&cur, 0, sizeof cur);
    }
    s->bucket = opt->buckets->len;
    cur.n += n;
    cur.waiting++;
  }
  if (cur.n > 0) g_array_append_val(opt->buckets, cur);
  for (guint b = 0; b < opt->buckets->len; b++) {
    bucket *bk = &g_array_index(opt->buckets, bucket, b);
    bk->flat = g_new(float, bk->n);
  }
}

ps_optim *ps_optim_new(ps_graph *g, const ps_adamw_config *cfg, GError **error) {
  g_autoptr(ps_optim) opt = g_new0(ps_optim, 1);
  opt->cfg = cfg ? *cfg : ps_adamw_defaults();
  opt->slots = g_array_new(FALSE, TRUE, sizeof(slot));
  opt->graph = g;
  opt->comm = ps_context_comm(ps_graph_context(g));
  collect_ctx cc = {opt, error, FALSE};
  ps_graph_visit_params(g, collect, &cc);
  if (cc.failed) return NULL;
  if (ps_comm_size(opt->comm) > 1) {
    make_buckets(opt);
    ps_graph_set_backward_hook(g, on_backward, opt);
    opt->hooked = TRUE;
  }
  return g_steal_pointer(&opt);
}

void ps_optim_reduce_during_backward(ps_optim *opt) { opt->overlap = ps_comm_size(opt->comm) > 1; }

/* Packs bucket b's gradients and starts their sum across ranks. */
static void launch(ps_optim *opt, guint b, GError **error) {
  bucket *bk = &g_array_index(opt->buckets, bucket, b);
  if (bk->launched) return;
  size_t at = 0;
  for (guint i = opt->slots->len; i-- > 0;) {
    slot *s = &g_array_index(opt->slots, slot, i);
    if (s->bucket != b) continue;
    size_t n = (size_t)ps_tensor_numel(s->param->grad);
    memcpy(bk->flat + at, s->param->grad->data, n * sizeof(float));
    at += n;
  }
  bk->request = ps_comm_iallreduce_f32(opt->comm, bk->flat, bk->n, error);
  bk->launched = bk->request != NULL;
}

/* Finishes every bucket's reduction and leaves each gradient the mean over
 * ranks (the ranks' losses are means over their shards). */
static gboolean reduce_grads(ps_optim *opt, GError **error) {
  const float inv = 1.0f / (float)ps_comm_size(opt->comm);
  gboolean ok = TRUE;
  for (guint b = 0; b < opt->buckets->len; b++) {
    bucket *bk = &g_array_index(opt->buckets, bucket, b);
    if (ok && !bk->launched) {
      launch(opt, b, error);
      ok = bk->launched;
    }
  }
  for (guint b = 0; b < opt->buckets->len; b++) {
    bucket *bk = &g_array_index(opt->buckets, bucket, b);
    if (bk->launched && !ps_comm_wait(bk->request, ok ? error : NULL)) ok = FALSE;
    bk->request = NULL;
    bk->launched = FALSE;
    bk->waiting = 0;
  }
  for (guint i = opt->slots->len; i-- > 0;) {
    slot *s = &g_array_index(opt->slots, slot, i);
    g_array_index(opt->buckets, bucket, s->bucket).waiting++;
    s->ready = FALSE;
  }
  opt->overlap = FALSE;
  if (!ok) return FALSE;
  guint b = G_MAXUINT;
  size_t at = 0;
  for (guint i = opt->slots->len; i-- > 0;) {
    slot *s = &g_array_index(opt->slots, slot, i);
    if (s->bucket != b) {
      b = s->bucket;
      at = 0;
    }
    const float *src = g_array_index(opt->buckets, bucket, b).flat + at;
    float *gr = s->param->grad->data;
    int64_t n = ps_tensor_numel(s->param->grad);
    for (int64_t k = 0; k < n; k++) gr[k] = src[k] * inv;
    at += (size_t)n;
  }
  return TRUE;
}

void ps_optim_free(ps_optim *opt) {
  if (!opt) return;
  if (opt->hooked) ps_graph_set_backward_hook(opt->graph, NULL, NULL);
  for (guint b = 0; opt->buckets && b < opt->buckets->len; b++) {
    bucket *bk = &g_array_index(opt->buckets, bucket, b);
    if (bk->request) ps_comm_wait(bk->request, NULL);
    g_free(bk->flat);
  }
  if (opt->buckets) g_array_free(opt->buckets, TRUE);
  for (guint i = 0; i < opt->slots->len; i++) {
    slot *s = &g_array_index(opt->slots, slot, i);
    g_free(s->key);
    ps_tensor_free(s->m);
    ps_tensor_free(s->v);
  }
  g_array_free(opt->slots, TRUE);
  g_free(opt);
}

double ps_optim_grad_norm(const ps_optim *opt) {
  double sum = 0;
  for (guint i = 0; i < opt->slots->len; i++) {
    const slot *s = &g_array_index(opt->slots, slot, i);
    sum += s->k->sum_squares(s->param->grad->data, ps_tensor_numel(s->param->grad));
  }
  return sqrt(sum);
}

void ps_optim_scale_grads(ps_optim *opt, double factor) {
  for (guint i = 0; i < opt->slots->len; i++) {
    slot *s = &g_array_index(opt->slots, slot, i);
    float *gr = s->param->grad->data;
    s->k->scale(gr, gr, (float)factor, ps_tensor_numel(s->param->grad));
  }
}

gboolean ps_optim_step(ps_optim *opt, double lr, double *grad_norm, GError **error) {
  if (opt->buckets && !reduce_grads(opt, error)) {
    g_prefix_error(error, "step %" G_GINT64_FORMAT ": summing gradients across ranks: ", opt->step + 1);
    return FALSE;
  }
  double norm = ps_optim_grad_norm(opt);
  if (grad_norm) *grad_norm = norm;
  if (!isfinite(norm)) {
    for (guint i = 0; i < opt->slots->len; i++) {
      const slot *s = &g_array_index(opt->slots, slot, i);
      const float *gr = s->param->grad->data;
      int64_t bad = s->k->find_nonfinite(gr, ps_tensor_numel(s->param->grad));
      if (bad >= 0) {
        float value = 0;
        s->k->copy_to_host(&value, gr + bad, sizeof value);
        g_set_error(error, PS_ERROR, PS_ERROR_NUMERIC,
                    "step %" G_GINT64_FORMAT ": gradient of '%s' is %s (element %" G_GINT64_FORMAT
                    "); parameters were not updated",
                    opt->step + 1, s->key, isnan(value) ? "NaN" : "infinite", bad);
        return FALSE;
      }
    }
  }
  double clip = opt->cfg.clip_norm > 0 && norm > opt->cfg.clip_norm ? opt->cfg.clip_norm / norm : 1.0;
  opt->step++;
  const double b1 = opt->cfg.beta1, b2 = opt->cfg.beta2, eps = opt->cfg.eps;
  const double c1 = 1.0 - pow(b1, (double)opt->step), c2 = 1.0 - pow(b2, (double)opt->step);
  for (guint i = 0; i < opt->slots->len; i++) {
    slot *s = &g_array_index(opt->slots, slot, i);
    float *p = s->param->value->data;
    const float *gr = s->param->grad->data;
    float *m = s->m->data, *v = s->v->data;
    int64_t n = ps_tensor_numel(s->param->value);
    gboolean decay = opt->cfg.weight_decay > 0 && (s->param->value->ndim > 1 || opt->cfg.decay_1d);
    const float wd = decay ? (float)(lr * opt->cfg.weight_decay) : 0.0f;
    const float step_size = (float)(lr / c1), inv_sqrt_c2 = (float)(1.0 / sqrt(c2));
    s->k->adamw_step(p, gr, m, v, NULL, n, (float)clip, (float)b1, (float)b2, wd, step_size,
                     inv_sqrt_c2, (float)eps);
  }
  return TRUE;
}

int64_t ps_optim_step_count(const ps_optim *opt) { return opt->step; }
int64_t ps_optim_param_count(const ps_optim *opt) { return opt->n_params; }

gboolean ps_optim_save(const ps_optim *opt, ps_safetensors_writer *w, GError **error) {
  for (guint i = 0; i < opt->slots->len; i++) {
    const slot *s = &g_array_index(opt->slots, slot, i);
    g_autofree char *mk = g_strconcat("optim.m.", s->key, NULL);
    g_autofree char *vk = g_strconcat("optim.v.", s->key, NULL);
    if (!ps_safetensors_writer_add(w, mk, s->m, error) ||
        !ps_safetensors_writer_add(w, vk, s->v, error))
      return FALSE;
  }
  g_autofree char *step = g_strdup_printf("%" G_GINT64_FORMAT, opt->step);
  ps_safetensors_writer_set_metadata(w, "optim.step", step);
  return TRUE;
}

gboolean ps_optim_load(ps_optim *opt, ps_safetensors *st, GError **error) {
  const char *step = ps_safetensors_metadata(st, "optim.step");
  if (!step) {
    g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "%s: no optimizer state (metadata optim.step)",
                ps_safetensors_path(st));
    return FALSE;
  }
  for (guint i = 0; i < opt->slots->len; i++) {
    slot *s = &g_array_index(opt->slots, slot, i);
    ps_tensor *dst[2] = {s->m, s->v};
    const char *kind[2] = {"optim.m.", "optim.v."};
    for (int j = 0; j < 2; j++) {
      g_autofree char *key = g_strconcat(kind[j], s->key, NULL);
      const ps_tensor *t = ps_safetensors_get(st, key, error);
      if (!t) return FALSE;
      if (!ps_tensor_check(t, key, PS_DTYPE_F32, dst[j]->ndim, dst[j]->shape, error) ||
          !ps_tensor_copy_into(dst[j], t, error))
        return FALSE;
    }
  }
  opt->step = g_ascii_strtoll(step, NULL, 10);
  return TRUE;
}

gboolean ps_schedule_from_name(const char *name, ps_schedule_kind *out) {
  static const char *const names[] = {"constant", "cosine", "robbins_monro"};
  for (int i = 0; i < 3; i++)
    if (g_strcmp0(name, names[i]) == 0) {
      *out = (ps_schedule_kind)i;
      return TRUE;
    }
  return FALSE;
}

double ps_schedule_lr(const ps_schedule *s, int64_t step) {
  switch (s->kind) {
  case PS_SCHEDULE_CONSTANT:
    return s->lr;
  case PS_SCHEDULE_COSINE: {
    if (step < s->warmup_steps) return s->lr * (double)(step + 1) / (double)s->warmup_steps;
    int64_t span = s->total_steps - s->warmup_steps;
    double t = span > 0 ? (double)(step - s->warmup_steps) / (double)span : 1.0;
    if (t > 1) t = 1;
    return s->min_lr + (s->lr - s->min_lr) * 0.5 * (1.0 + cos(G_PI * t));
  }
  case PS_SCHEDULE_ROBBINS_MONRO:
    return s->lr / (1.0 + s->eta * (double)step);
  }
  return s->lr;
}

void ps_optim_from_config(const ps_config *cfg, int64_t total_steps, ps_schedule *schedule,
                          ps_adamw_config *adamw) {
  memset(schedule, 0, sizeof *schedule);
  ps_schedule_from_name(ps_config_string(cfg, "schedule"), &schedule->kind);
  schedule->lr = ps_config_float(cfg, "lr");
  schedule->min_lr = ps_config_float(cfg, "min_lr");
  schedule->eta = ps_config_float(cfg, "eta");
  schedule->warmup_steps = ps_config_int(cfg, "warmup_steps");
  schedule->total_steps = total_steps;
  *adamw = ps_adamw_defaults();
  adamw->beta1 = ps_config_float(cfg, "beta1");
  adamw->beta2 = ps_config_float(cfg, "beta2");
  adamw->weight_decay = ps_config_float(cfg, "weight_decay");
  adamw->clip_norm = ps_config_float(cfg, "clip_norm");
}
