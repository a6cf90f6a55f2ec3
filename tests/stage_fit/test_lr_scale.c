/* test_lr_scale.c — stage.fit's `lr_scale: [instance=factor]` on
 * pipelines/example.yaml: lr 0.01 with [linear=3] must train the linear
 * layer exactly as lr 0.03 does (AdamW's step is linear in lr, weight decay
 * included), [linear=0] must leave it at its initial values, and a
 * malformed entry or an unknown instance is an error naming it. */
#include <math.h>
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"

static ps_registry *reg;
static char *tmp;

static gboolean run(const char *const *extra_sets, char **dir_out, GError **error) {
  g_autofree char *path = ps_test_source_path("pipelines/example.yaml");
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s", tmp));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  /* weight decay on, so the test also covers the decoupled decay term */
  g_ptr_array_add(sets, g_strdup("stages.fit.weight_decay=0.1"));
  g_ptr_array_add(sets, g_strdup("stages.fit.steps=8"));
  g_ptr_array_add(sets, g_strdup("stages.fit.checkpoint_every=0"));
  g_ptr_array_add(sets, g_strdup("stages.fit.eval_every=0"));
  for (size_t i = 0; extra_sets && extra_sets[i]; i++) g_ptr_array_add(sets, g_strdup(extra_sets[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p = ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = NULL, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

static ps_tensor *weight(const char *dir, const char *name) {
  if (!dir) return NULL;
  g_autofree char *path = g_build_filename(dir, "checkpoints", "last.safetensors", NULL);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, NULL);
  return st ? ps_safetensors_get_f32(st, name, NULL) : NULL;
}

/* max |a - b| / (max |b| + tiny) over the elements */
static double rel_diff(const ps_tensor *a, const ps_tensor *b) {
  if (!a || !b || a->nbytes != b->nbytes) return INFINITY;
  double num = 0, den = 1e-30;
  for (int64_t i = 0; i < ps_tensor_numel(a); i++) {
    num = fmax(num, fabs((double)ps_f32(a)[i] - ps_f32(b)[i]));
    den = fmax(den, fabs((double)ps_f32(b)[i]));
  }
  return num / den;
}

int main(int argc, char **argv) {
  GError *error = NULL;
  reg = ps_registry_new();
  const char *extra[] = {argc > 1 ? argv[1] : NULL, NULL};
  ps_registry_scan(reg, extra, NULL);
  tmp = g_dir_make_tmp("ps-lrscale-XXXXXX", NULL);

  const char *plain_sets[] = {"stages.fit.lr=0.03", NULL};
  const char *scaled_sets[] = {"stages.fit.lr=0.01", "stages.fit.lr_scale=[linear=3]", NULL};
  const char *frozen_sets[] = {"stages.fit.lr=0.01", "stages.fit.lr_scale=[linear=0]", NULL};
  const char *init_sets[] = {"stages.fit.steps=0", NULL};
  const char *slow_sets[] = {"stages.fit.lr=0.01", NULL};
  g_autofree char *d_plain = NULL, *d_scaled = NULL, *d_frozen = NULL, *d_init = NULL, *d_slow = NULL;
  PS_CHECK_OK(run(plain_sets, &d_plain, &error), error);
  PS_CHECK_OK(run(scaled_sets, &d_scaled, &error), error);
  PS_CHECK_OK(run(frozen_sets, &d_frozen, &error), error);
  PS_CHECK_OK(run(init_sets, &d_init, &error), error);
  PS_CHECK_OK(run(slow_sets, &d_slow, &error), error);

  const char *names[] = {"linear/weight", "linear/bias"};
  for (size_t k = 0; k < G_N_ELEMENTS(names); k++) {
    g_autoptr(ps_tensor) plain = weight(d_plain, names[k]);
    g_autoptr(ps_tensor) scaled = weight(d_scaled, names[k]);
    g_autoptr(ps_tensor) frozen = weight(d_frozen, names[k]);
    g_autoptr(ps_tensor) init = weight(d_init, names[k]);
    g_autoptr(ps_tensor) slow = weight(d_slow, names[k]);
    PS_CHECK(plain && scaled && frozen && init && slow);
    /* lr 0.01 x 3 == lr 0.03, up to f32 rounding of p_old + f (p_new - p_old) */
    double d = rel_diff(scaled, plain);
    PS_CHECK_MSG(d < 1e-5, "%s: lr_scale 3 differs from lr x 3 by %.3g (relative)", names[k], d);
    /* ... and the factor did something: lr 0.01 alone ends elsewhere */
    double d_slow_plain = rel_diff(slow, plain);
    PS_CHECK_MSG(d_slow_plain > 1e-3, "%s: lr 0.01 and 0.03 end at the same place (%.3g)", names[k], d_slow_plain);
    /* factor 0: the parameters never move */
    PS_CHECK_MSG(frozen && init && frozen->nbytes == init->nbytes && memcmp(frozen->data, init->data, init->nbytes) == 0,
                 "%s moved with lr_scale 0", names[k]);
  }

  /* Errors name the entry. */
  const char *bad_entry[] = {"stages.fit.lr_scale=[linear]", NULL};
  PS_CHECK_FAILS_WITH(run(bad_entry, NULL, &error), error, "'linear' is not \"instance=factor\"");
  const char *bad_factor[] = {"stages.fit.lr_scale=[linear=-1]", NULL};
  PS_CHECK_FAILS_WITH(run(bad_factor, NULL, &error), error, "'linear=-1'");
  const char *unknown[] = {"stages.fit.lr_scale=[nosuch=2]", NULL};
  PS_CHECK_FAILS_WITH(run(unknown, NULL, &error), error, "no component instance 'nosuch'");
  const char *twice[] = {"stages.fit.lr_scale=[linear=2, linear=3]", NULL};
  PS_CHECK_FAILS_WITH(run(twice, NULL, &error), error, "named twice");
  /* an instance with nothing to train in this stage */
  const char *untrained[] = {"stages.fit.lr_scale=[mse=2]", NULL};
  PS_CHECK_FAILS_WITH(run(untrained, NULL, &error), error, "'mse' has no parameter that trains");

  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  g_free(tmp);
  ps_registry_free(reg);
  return ps_test_finish();
}
