/* test_run.c — runs of pipelines/example.yaml: run directory contents,
 * falling loss, bit-exact resume after a stop, and a non-finite loss that
 * stops the stage with the step and term named while the last good
 * checkpoint survives. */
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>

#include "ps_test.h"

static ps_registry *reg;

static gboolean run_file(const char *path, const char *run_dir, const char *const *extra_sets,
                         const char *resume, char **dir_out, GError **error) {
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s", run_dir));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  for (size_t i = 0; extra_sets && extra_sets[i]; i++) g_ptr_array_add(sets, g_strdup(extra_sets[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p =
      ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = resume, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

static gboolean run(const char *run_dir, const char *const *extra_sets, const char *resume,
                    char **dir_out, GError **error) {
  g_autofree char *path = ps_test_source_path("pipelines/example.yaml");
  return run_file(path, run_dir, extra_sets, resume, dir_out, error);
}

static ps_tensor *checkpoint_tensor(const char *dir, const char *name, char **step) {
  g_autofree char *path = g_build_filename(dir, "checkpoints", "last.safetensors", NULL);
  g_autoptr(ps_safetensors) st = ps_safetensors_open(path, NULL);
  if (!st) return NULL;
  if (step) *step = g_strdup(ps_safetensors_metadata(st, "step"));
  return ps_safetensors_get_f32(st, name, NULL);
}

/* Values of `key` in metrics.jsonl lines of stage fit, in order. */
static GArray *metric(const char *dir, const char *key) {
  g_autofree char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  GArray *values = g_array_new(FALSE, FALSE, sizeof(double));
  if (!g_file_get_contents(path, &text, NULL, NULL)) return values;
  g_autofree char *needle = g_strdup_printf("\"%s\": ", key);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *at = strstr(lines[i], needle);
    if (!at) continue;
    double v = g_ascii_strtod(at + strlen(needle), NULL);
    g_array_append_val(values, v);
  }
  return values;
}

int main(int argc, char **argv) {
  GError *error = NULL;
  reg = ps_registry_new();
  const char *extra[] = {argc > 1 ? argv[1] : NULL, NULL};
  ps_registry_scan(reg, extra, NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-run-XXXXXX", NULL);

  /* A: 40 straight steps. */
  const char *a_sets[] = {"stages.fit.steps=40", "stages.fit.checkpoint_every=10",
                          "stages.fit.eval_every=20", "stages.fit.eval_metrics=[mse.loss]", NULL};
  g_autofree char *dir_a = NULL;
  PS_CHECK_OK(run(tmp, a_sets, NULL, &dir_a, &error), error);
  if (!dir_a) return ps_test_finish();
  g_autofree char *yaml = g_build_filename(dir_a, "pipeline.yaml", NULL);
  g_autofree char *log = g_build_filename(dir_a, "log.txt", NULL);
  PS_CHECK(g_file_test(yaml, G_FILE_TEST_IS_REGULAR));
  PS_CHECK(g_file_test(log, G_FILE_TEST_IS_REGULAR));
  g_autoptr(GArray) losses = metric(dir_a, "loss");
  PS_CHECK_MSG(losses->len == 40, "%u loss lines", losses->len);
  if (losses->len == 40) {
    double first = g_array_index(losses, double, 0), last = g_array_index(losses, double, 39);
    PS_CHECK_MSG(last < 0.2 * first, "loss did not fall: %g -> %g", first, last);
  }
  g_autoptr(GArray) val = metric(dir_a, "val_loss");
  g_autoptr(GArray) val_mse = metric(dir_a, "val_mse.loss");
  PS_CHECK(val->len == 2 && val_mse->len == 2);
  /* The loss is mse.loss itself, so the extra metric must equal it. */
  for (guint i = 0; i < val->len && i < val_mse->len; i++)
    PS_CHECK_NEAR(g_array_index(val_mse, double, i), g_array_index(val, double, i), 1e-9);
  g_autoptr(GArray) lr = metric(dir_a, "lr");
  g_autoptr(GArray) gn = metric(dir_a, "grad_norm");
  PS_CHECK(lr->len == 40 && gn->len == 40);
  /* The resolved pipeline in the run directory loads again. */
  {
    g_autoptr(ps_pipeline) again = ps_pipeline_load(yaml, NULL, ps_registry_lookup, reg, &error);
    PS_CHECK_OK(again != NULL, error);
  }

  /* Validation never counts an example twice: asking for more batches than
   * the val split fills (256 / 32 = 8) gives the mean over those 8, while 7
   * batches give another mean. */
  {
    double v[3] = {0};
    const char *nb[3] = {"stages.fit.eval_batches=8", "stages.fit.eval_batches=50",
                         "stages.fit.eval_batches=7"};
    for (int i = 0; i < 3; i++) {
      const char *sets[] = {"stages.fit.steps=3", "stages.fit.eval_every=0", nb[i], NULL};
      g_autofree char *dir = NULL;
      PS_CHECK_OK(run(tmp, sets, NULL, &dir, &error), error);
      g_autoptr(GArray) vl = dir ? metric(dir, "val_loss") : NULL;
      PS_CHECK(vl && vl->len == 1);
      if (vl && vl->len == 1) v[i] = g_array_index(vl, double, 0);
    }
    PS_CHECK_MSG(v[0] == v[1], "eval_batches 50 of 8: %.9g vs %.9g", v[1], v[0]);
    PS_CHECK_MSG(v[0] != v[2], "eval_batches 7 and 8 gave the same mean %.9g", v[0]);
  }

  /* B: the same run stopped after 17 steps, then resumed. */
  const char *b_sets[] = {"stages.fit.steps=40", "stages.fit.checkpoint_every=10",
                          "stages.fit.eval_every=20", "stages.fit.stop_after_steps=17", NULL};
  g_autofree char *dir_b = NULL;
  PS_CHECK_FAILS_WITH(run(tmp, b_sets, NULL, &dir_b, &error), error, "--resume");
  g_autofree char *step_b = NULL;
  g_autoptr(ps_tensor) w_mid = dir_b ? checkpoint_tensor(dir_b, "linear/weight", &step_b) : NULL;
  PS_CHECK_MSG(g_strcmp0(step_b, "17") == 0, "checkpoint step %s", step_b ? step_b : "none");
  PS_CHECK_OK(run(tmp, a_sets, dir_b, NULL, &error), error);

  g_autoptr(ps_tensor) w_a = checkpoint_tensor(dir_a, "linear/weight", NULL);
  g_autoptr(ps_tensor) w_b = dir_b ? checkpoint_tensor(dir_b, "linear/weight", NULL) : NULL;
  g_autoptr(ps_tensor) b_a = checkpoint_tensor(dir_a, "linear/bias", NULL);
  g_autoptr(ps_tensor) b_b = dir_b ? checkpoint_tensor(dir_b, "linear/bias", NULL) : NULL;
  PS_CHECK(w_a && w_b && w_a->nbytes == w_b->nbytes && memcmp(w_a->data, w_b->data, w_a->nbytes) == 0);
  PS_CHECK(b_a && b_b && memcmp(b_a->data, b_b->data, b_a->nbytes) == 0);
  /* ... and the resumed run really did continue from the stop, not from 0. */
  PS_CHECK(w_mid && w_a && memcmp(w_mid->data, w_a->data, w_a->nbytes) != 0);
  g_autoptr(GArray) losses_b = dir_b ? metric(dir_b, "loss") : NULL;
  PS_CHECK_MSG(losses_b && losses_b->len == 40, "%u loss lines after resume", losses_b ? losses_b->len : 0);

  /* Resuming a finished run does nothing and succeeds. */
  PS_CHECK_OK(run(tmp, a_sets, dir_a, NULL, &error), error);

  /* C: a pipeline extending the example with a component that turns the
   * prediction into NaN at its 6th forward: the stage stops at step 6 naming
   * the step and the loss term, and the step-5 checkpoint survives. */
  g_autofree char *example = ps_test_source_path("pipelines/example.yaml");
  g_autofree char *poisoned = g_build_filename(tmp, "poisoned.yaml", NULL);
  g_autofree char *text = g_strdup_printf(
      "extends: %s\n"
      "name: poisoned\n"
      "components:\n"
      "  poison: {plugin: test.poison, with: {after: 6}, inputs: {x: linear.y}}\n"
      "  mse: {inputs: {pred: poison.y}}\n",
      example);
  g_file_set_contents(poisoned, text, -1, NULL);
  const char *c_sets[] = {"stages.fit.steps=30", "stages.fit.checkpoint_every=1", "stages.fit.eval_every=100", NULL};
  g_autofree char *dir_c = NULL;
  gboolean ok = run_file(poisoned, tmp, c_sets, NULL, &dir_c, &error);
  PS_CHECK(!ok);
  PS_CHECK_MSG(error && error->code == PS_ERROR_NUMERIC && strstr(error->message, "loss term mse.loss") &&
                   strstr(error->message, "step 6") && strstr(error->message, "NaN"),
               "%s", error ? error->message : "no error");
  g_clear_error(&error);
  g_autofree char *step_c = NULL;
  g_autoptr(ps_tensor) w_c = dir_c ? checkpoint_tensor(dir_c, "linear/weight", &step_c) : NULL;
  PS_CHECK_MSG(w_c != NULL && g_strcmp0(step_c, "5") == 0, "last checkpoint at step %s", step_c ? step_c : "none");
  for (int64_t i = 0; w_c && i < ps_tensor_numel(w_c); i++)
    if (!isfinite(ps_f32(w_c)[i])) {
      PS_CHECK_MSG(FALSE, "the kept checkpoint holds a non-finite weight");
      break;
    }

  /* Gradient accumulation: two micro-batches of 16 are the same examples as one
   * batch of 32 (the loader cuts the same epoch permutation), so the weights
   * agree up to float summation order. */
  const char *big[] = {"stages.fit.steps=10", "stages.fit.batch_size=32", "stages.fit.eval_every=100",
                       "stages.fit.eval_batches=0", NULL};
  const char *acc[] = {"stages.fit.steps=10", "stages.fit.batch_size=16", "stages.fit.accumulate=2",
                       "stages.fit.eval_every=100", "stages.fit.eval_batches=0", NULL};
  g_autofree char *dir_big = NULL, *dir_acc = NULL;
  PS_CHECK_OK(run(tmp, big, NULL, &dir_big, &error), error);
  PS_CHECK_OK(run(tmp, acc, NULL, &dir_acc, &error), error);
  g_autoptr(ps_tensor) w_big = dir_big ? checkpoint_tensor(dir_big, "linear/weight", NULL) : NULL;
  g_autoptr(ps_tensor) w_acc = dir_acc ? checkpoint_tensor(dir_acc, "linear/weight", NULL) : NULL;
  g_autoptr(ps_tensor) w_init = NULL;
  PS_CHECK(w_big && w_acc);
  double worst = 0, moved = 0;
  for (int64_t i = 0; w_big && w_acc && i < ps_tensor_numel(w_big); i++) {
    worst = fmax(worst, fabs(ps_f32(w_big)[i] - ps_f32(w_acc)[i]));
    moved = fmax(moved, fabs(ps_f32(w_big)[i]));
  }
  PS_CHECK_MSG(worst < 1e-4 && moved > 1e-2, "accumulated and big-batch weights differ by %g", worst);
  /* Adam hides a wrongly scaled gradient; the logged gradient norm does not. */
  g_autoptr(GArray) gn_big = dir_big ? metric(dir_big, "grad_norm") : NULL;
  g_autoptr(GArray) gn_acc = dir_acc ? metric(dir_acc, "grad_norm") : NULL;
  PS_CHECK(gn_big && gn_acc && gn_big->len == 10 && gn_acc->len == 10);
  if (gn_big && gn_acc && gn_big->len && gn_acc->len)
    PS_CHECK_NEAR(g_array_index(gn_acc, double, 0), g_array_index(gn_big, double, 0),
                  1e-5 * g_array_index(gn_big, double, 0));

  /* --resume of something that is not a run directory. */
  g_autofree char *nowhere = g_build_filename(tmp, "no-such-run", NULL);
  PS_CHECK_FAILS_WITH(run(tmp, a_sets, nowhere, NULL, &error), error, "no such run directory");

  ps_registry_free(reg);
  g_autofree char *rm = g_strdup_printf("rm -rf '%s'", tmp);
  if (ps_test_failed_ == 0 && system(rm) != 0) fprintf(stderr, "could not remove %s\n", tmp);
  return ps_test_finish();
}
