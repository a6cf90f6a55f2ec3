/* lr_scale.c — per-component learning-rate factors of stage.fit, applied
 * as an exact rescaling of the AdamW step (see lr_scale.h for why that is
 * the same as a per-component learning rate). */
#include "lr_scale.h"

#include <math.h>
#include <pathseg/error.h>
#include <pathseg/kernels.h>
#include <string.h>

typedef struct {
  ps_param *param;
  ps_tensor *old; /* like param->value (same device): the value before the step */
  double factor;
} scaled_param;

struct fit_lr_scale {
  char **names;    /* (n) instance names */
  double *factors; /* (n) */
  gboolean *bound; /* (n) some trainable parameter matched */
  size_t n;
  GArray *params;  /* scaled_param */
};

static void clear_scaled(gpointer p) { ps_tensor_free(((scaled_param *)p)->old); }

void fit_lr_scale_free(fit_lr_scale *s) {
  if (!s) return;
  g_strfreev(s->names);
  g_free(s->factors);
  g_free(s->bound);
  if (s->params) g_array_unref(s->params);
  g_free(s);
}

fit_lr_scale *fit_lr_scale_parse(const char *const *entries, size_t n, GError **error) {
  g_autoptr(fit_lr_scale) s = g_new0(fit_lr_scale, 1);
  s->names = g_new0(char *, n + 1);
  s->factors = g_new0(double, n ? n : 1);
  s->bound = g_new0(gboolean, n ? n : 1);
  s->params = g_array_new(FALSE, TRUE, sizeof(scaled_param));
  g_array_set_clear_func(s->params, clear_scaled);
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(entries[i], '=');
    char *end = NULL;
    double f = eq ? g_ascii_strtod(eq + 1, &end) : NAN;
    if (!eq || eq == entries[i] || !end || end == eq + 1 || *end || !isfinite(f) || f < 0) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "lr_scale: '%s' is not \"instance=factor\" with a finite factor >= 0", entries[i]);
      return NULL;
    }
    for (size_t j = 0; j < i; j++)
      if (strncmp(s->names[j], entries[i], (size_t)(eq - entries[i])) == 0 &&
          s->names[j][eq - entries[i]] == 0) {
        g_set_error(error, PS_ERROR, PS_ERROR_INVALID, "lr_scale: instance '%s' is named twice", s->names[j]);
        return NULL;
      }
    s->names[i] = g_strndup(entries[i], (gsize)(eq - entries[i]));
    s->factors[i] = f;
  }
  s->n = n;
  return g_steal_pointer(&s);
}

static void bind_param(const char *instance, ps_param *param, void *user) {
  fit_lr_scale *s = user;
  if (!param->grad) return; /* frozen in this stage */
  for (size_t i = 0; i < s->n; i++)
    if (strcmp(s->names[i], instance) == 0) {
      s->bound[i] = TRUE;
      if (s->factors[i] == 1.0) return; /* nothing to rescale */
      const ps_tensor *v = param->value;
      scaled_param sp = {param, ps_tensor_new_on(v->device, v->dtype, v->ndim, v->shape, NULL),
                         s->factors[i]};
      if (!sp.old) g_error("lr_scale: out of memory for a copy of %s", param->name);
      g_array_append_val(s->params, sp);
      return;
    }
}

gboolean fit_lr_scale_bind(fit_lr_scale *s, ps_graph *g, GError **error) {
  g_array_set_size(s->params, 0);
  for (size_t i = 0; i < s->n; i++) {
    if (!ps_graph_self(g, s->names[i], NULL)) {
      g_set_error(error, PS_ERROR, PS_ERROR_NOT_FOUND, "lr_scale: no component instance '%s'", s->names[i]);
      return FALSE;
    }
    s->bound[i] = FALSE;
  }
  ps_graph_visit_params(g, bind_param, s);
  for (size_t i = 0; i < s->n; i++)
    if (!s->bound[i]) {
      g_set_error(error, PS_ERROR, PS_ERROR_INVALID,
                  "lr_scale: '%s' has no parameter that trains in this stage (train_roles / "
                  "train_components)", s->names[i]);
      return FALSE;
    }
  return TRUE;
}

size_t fit_lr_scale_count(const fit_lr_scale *s) { return s->params->len; }

void fit_lr_scale_before(fit_lr_scale *s) {
  for (guint i = 0; i < s->params->len; i++) {
    scaled_param *sp = &g_array_index(s->params, scaled_param, i);
    ps_tensor_copy_into(sp->old, sp->param->value, NULL); /* same device, dtype and size */
  }
}

void fit_lr_scale_after(fit_lr_scale *s) {
  for (guint i = 0; i < s->params->len; i++) {
    scaled_param *sp = &g_array_index(s->params, scaled_param, i);
    const ps_kernels *k = ps_kernels_get(sp->param->value->device, NULL);
    float *v = ps_f32(sp->param->value);
    const float *old = ps_f32(sp->old);
    const int64_t n = ps_tensor_numel(sp->param->value);
    /* v = old + f (v - old), on the parameter's device */
    k->axpy(v, -1.0f, old, n);
    k->scale(v, v, (float)sp->factor, n);
    k->axpy(v, 1.0f, old, n);
  }
}
