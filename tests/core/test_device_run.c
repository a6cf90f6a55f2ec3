/* test_device_run.c — training runs with `device: cuda` on the CUDA emulator
 * (kernels/emu), against the same runs on the CPU: pipelines/example.yaml
 * through stage.fit, so the graph (gradient buffers, seeds, accumulation),
 * the optimizer (squared norm, clipping, AdamW, non-finite checks), lr_scale,
 * validation, checkpoints and --resume all run their device paths. The
 * emulator's kernels are the CPU kernels, so every logged number and every
 * saved tensor must be bitwise equal; its device memory faults on any host
 * access, so a device path that reads device memory on the host crashes
 * this test. */
#include <pathseg/host.h>
#include <pathseg/run.h>
#include <pathseg/safetensors.h>

#include "emu_device.h"
#include "ps_test.h"

static ps_registry *reg;
static char *tmp;

static gboolean run_file(const char *path, const char *device, const char *const *extra_sets,
                         const char *resume, char **dir_out, GError **error) {
  g_autoptr(GPtrArray) sets = g_ptr_array_new_with_free_func(g_free);
  g_ptr_array_add(sets, g_strdup_printf("run_dir=%s", tmp));
  g_ptr_array_add(sets, g_strdup("threads=1"));
  g_ptr_array_add(sets, g_strdup_printf("device=%s", device));
  for (size_t i = 0; extra_sets && extra_sets[i]; i++)
    g_ptr_array_add(sets, g_strdup(extra_sets[i]));
  g_ptr_array_add(sets, NULL);
  g_autoptr(ps_pipeline) p =
      ps_pipeline_load(path, (const char *const *)sets->pdata, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.resume_dir = resume, .quiet = TRUE};
  return ps_run_execute(p, reg, &opts, dir_out, error);
}

static gboolean run(const char *device, const char *const *extra_sets, const char *resume,
                    char **dir_out, GError **error) {
  g_autofree char *path = ps_test_source_path("pipelines/example.yaml");
  return run_file(path, device, extra_sets, resume, dir_out, error);
}

/* The last checkpoints' parameters (and optimizer state), bitwise. */
static void check_same_checkpoint(const char *dir_a, const char *dir_b, const char *what,
                                  gboolean with_optim) {
  g_autofree char *pa = g_build_filename(dir_a, "checkpoints", "last.safetensors", NULL);
  g_autofree char *pb = g_build_filename(dir_b, "checkpoints", "last.safetensors", NULL);
  g_autoptr(ps_safetensors) a = ps_safetensors_open(pa, NULL);
  g_autoptr(ps_safetensors) b = ps_safetensors_open(pb, NULL);
  PS_CHECK_MSG(a && b, "%s: checkpoints missing", what);
  if (!a || !b) return;
  const char *names[] = {"linear/weight",         "linear/bias",         "optim.m.linear/weight",
                         "optim.v.linear/weight", "optim.m.linear/bias", NULL};
  /* A stage's final checkpoint keeps no optimizer state; a stopped one does. */
  for (size_t i = 0; names[i] && (with_optim || i < 2); i++) {
    const ps_tensor *ta = ps_safetensors_get(a, names[i], NULL);
    const ps_tensor *tb = ps_safetensors_get(b, names[i], NULL);
    PS_CHECK_MSG(ta && tb && ta->nbytes == tb->nbytes &&
                     memcmp(ta->data, tb->data, ta->nbytes) == 0,
                 "%s: %s differs (%s)", what, names[i], !ta || !tb ? "missing" : "values");
  }
  PS_CHECK_MSG(g_strcmp0(ps_safetensors_metadata(a, "step"), ps_safetensors_metadata(b, "step")) ==
                   0,
               "%s: step", what);
}

/* The printed values of `key` in metrics.jsonl, in order (compared as text:
 * equal text is equal doubles). */
static GPtrArray *metric_values(const char *dir, const char *key) {
  g_autofree char *path = g_build_filename(dir, "metrics.jsonl", NULL);
  g_autofree char *text = NULL;
  GPtrArray *values = g_ptr_array_new_with_free_func(g_free);
  if (!g_file_get_contents(path, &text, NULL, NULL)) return values;
  g_autofree char *needle = g_strdup_printf("\"%s\": ", key);
  g_auto(GStrv) lines = g_strsplit(text, "\n", -1);
  for (size_t i = 0; lines[i]; i++) {
    const char *at = strstr(lines[i], needle);
    if (!at) continue;
    at += strlen(needle);
    g_ptr_array_add(values, g_strndup(at, strcspn(at, ",}")));
  }
  return values;
}

static void check_same_metrics(const char *dir_a, const char *dir_b, const char *what,
                               guint expect_loss_lines) {
  const char *keys[] = {"loss", "grad_norm", "lr", "val_loss", "mse.loss", NULL};
  for (size_t k = 0; keys[k]; k++) {
    g_autoptr(GPtrArray) a = metric_values(dir_a, keys[k]);
    g_autoptr(GPtrArray) b = metric_values(dir_b, keys[k]);
    gboolean same = a->len == b->len;
    for (guint i = 0; same && i < a->len; i++) same = strcmp(a->pdata[i], b->pdata[i]) == 0;
    PS_CHECK_MSG(same, "%s: metric %s differs (%u vs %u values)", what, keys[k], a->len, b->len);
    if (k == 0) PS_CHECK_MSG(a->len == expect_loss_lines, "%s: %u loss lines", what, a->len);
  }
}

int main(int argc, char **argv) {
  ps_test_use_cuda_emulator();
  GError *error = NULL;
  reg = ps_registry_new();
  const char *extra[] = {argc > 1 ? argv[1] : NULL, NULL};
  ps_registry_scan(reg, extra, NULL);
  tmp = g_dir_make_tmp("ps-devrun-XXXXXX", NULL);

  /* 40 steps with validation, clipping (the default clip_norm 1) and
   * checkpoints, on both devices. */
  const char *sets[] = {"stages.fit.steps=40", "stages.fit.checkpoint_every=10",
                        "stages.fit.eval_every=20", "stages.fit.eval_metrics=[mse.loss]", NULL};
  g_autofree char *dir_cpu = NULL, *dir_dev = NULL;
  PS_CHECK_OK(run("cpu", sets, NULL, &dir_cpu, &error), error);
  PS_CHECK_OK(run("cuda", sets, NULL, &dir_dev, &error), error);
  if (!dir_cpu || !dir_dev) return ps_test_finish();
  check_same_metrics(dir_cpu, dir_dev, "device vs cpu", 40);
  check_same_checkpoint(dir_cpu, dir_dev, "device vs cpu", FALSE);

  /* Stopped after 17 steps on either device: the same parameters and
   * optimizer state; resumed on the device: the same as straight. */
  const char *stop[] = {"stages.fit.steps=40",
                        "stages.fit.checkpoint_every=10",
                        "stages.fit.eval_every=20",
                        "stages.fit.eval_metrics=[mse.loss]",
                        "stages.fit.stop_after_steps=17",
                        NULL};
  g_autofree char *dir_stop = NULL, *dir_cross = NULL;
  PS_CHECK_FAILS_WITH(run("cuda", stop, NULL, &dir_stop, &error), error, "--resume");
  PS_CHECK_FAILS_WITH(run("cpu", stop, NULL, &dir_cross, &error), error, "--resume");
  if (dir_stop && dir_cross) check_same_checkpoint(dir_cross, dir_stop, "stopped at 17", TRUE);
  if (dir_stop) {
    PS_CHECK_OK(run("cuda", sets, dir_stop, NULL, &error), error);
    check_same_checkpoint(dir_cpu, dir_stop, "device resume vs straight", FALSE);
  }
  if (dir_cross) { /* a CPU checkpoint continues on the device */
    PS_CHECK_OK(run("cuda", sets, dir_cross, NULL, &error), error);
    check_same_checkpoint(dir_cpu, dir_cross, "cpu stop, device resume", FALSE);
  }

  /* Gradient accumulation and per-component learning rates on the device. */
  const char *acc[] = {"stages.fit.steps=10",
                       "stages.fit.batch_size=16",
                       "stages.fit.accumulate=3",
                       "stages.fit.lr_scale=[linear=0.3]",
                       "stages.fit.eval_every=100",
                       "stages.fit.eval_batches=0",
                       NULL};
  g_autofree char *dir_acc_cpu = NULL, *dir_acc_dev = NULL;
  PS_CHECK_OK(run("cpu", acc, NULL, &dir_acc_cpu, &error), error);
  PS_CHECK_OK(run("cuda", acc, NULL, &dir_acc_dev, &error), error);
  if (dir_acc_cpu && dir_acc_dev) {
    check_same_metrics(dir_acc_cpu, dir_acc_dev, "accumulate + lr_scale", 10);
    check_same_checkpoint(dir_acc_cpu, dir_acc_dev, "accumulate + lr_scale", FALSE);
  }

  /* precision: bf16 (f32 master weights, bf16 products): it trains, and its
   * weights are near the f32 run's but not equal (the products really were
   * rounded). On the CPU it is refused. */
  const char *bf16_sets[] = {"stages.fit.steps=40",      "stages.fit.checkpoint_every=10",
                             "stages.fit.eval_every=20", "stages.fit.eval_metrics=[mse.loss]",
                             "precision=bf16",           NULL};
  g_autofree char *dir_bf16 = NULL;
  PS_CHECK_OK(run("cuda", bf16_sets, NULL, &dir_bf16, &error), error);
  if (dir_bf16) {
    g_autofree char *pa = g_build_filename(dir_dev, "checkpoints", "last.safetensors", NULL);
    g_autofree char *pb = g_build_filename(dir_bf16, "checkpoints", "last.safetensors", NULL);
    g_autoptr(ps_safetensors) a = ps_safetensors_open(pa, NULL);
    g_autoptr(ps_safetensors) b = ps_safetensors_open(pb, NULL);
    const ps_tensor *wa = a ? ps_safetensors_get(a, "linear/weight", NULL) : NULL;
    const ps_tensor *wb = b ? ps_safetensors_get(b, "linear/weight", NULL) : NULL;
    double diff = 0, scale = 0;
    for (int64_t i = 0; wa && wb && i < ps_tensor_numel(wa); i++) {
      diff = fmax(diff, fabs(ps_f32(wa)[i] - ps_f32(wb)[i]));
      scale = fmax(scale, fabs(ps_f32(wa)[i]));
    }
    PS_CHECK_MSG(wa && wb && diff > 0 && diff < 0.02 * scale,
                 "bf16 weights differ from f32 by %g (scale %g)", diff, scale);
    g_autoptr(GPtrArray) losses = metric_values(dir_bf16, "loss");
    PS_CHECK(losses->len == 40 && losses->len > 0 &&
             g_ascii_strtod(losses->pdata[39], NULL) <
                 0.2 * g_ascii_strtod(losses->pdata[0], NULL));
  }
  PS_CHECK_FAILS_WITH(run("cpu", bf16_sets, NULL, NULL, &error), error,
                      "precision: bf16 needs device: cuda");

  /* A NaN from a host component between two device ones (the graph moves
   * the tensors across) stops the stage at step 6 naming the loss term. */
  g_autofree char *example = ps_test_source_path("pipelines/example.yaml");
  g_autofree char *poisoned = g_build_filename(tmp, "poisoned.yaml", NULL);
  g_autofree char *text =
      g_strdup_printf("extends: %s\n"
                      "name: poisoned\n"
                      "components:\n"
                      "  poison: {plugin: test.poison, with: {after: 6}, inputs: {x: linear.y}}\n"
                      "  mse: {inputs: {pred: poison.y}}\n",
                      example);
  g_file_set_contents(poisoned, text, -1, NULL);
  const char *c_sets[] = {"stages.fit.steps=30", "stages.fit.checkpoint_every=1",
                          "stages.fit.eval_every=100", NULL};
  g_autofree char *dir_nan = NULL;
  gboolean ok = run_file(poisoned, "cuda", c_sets, NULL, &dir_nan, &error);
  PS_CHECK(!ok);
  PS_CHECK_MSG(error && error->code == PS_ERROR_NUMERIC && strstr(error->message, "mse.loss") &&
                   strstr(error->message, "step 6"),
               "%s", error ? error->message : "no error");
  g_clear_error(&error);

  ps_registry_free(reg);
  ps_test_rm_tree(tmp);
  g_free(tmp);
  return ps_test_finish();
}
