/* test_conv_stage.c — `stage.convert` through a pipeline and the built
 * plugin: the EBHI-Seg pairs of tests/data become a manifest that
 * dataset.benchmark reads; a bad format name is a schema error naming the
 * choices; a conversion with nothing usable fails the run. */
#include <glib/gstdio.h>
#include <pathseg/dataset.h>
#include <pathseg/host.h>
#include <pathseg/run.h>

#include "ps_test.h"

static ps_registry *reg;

static gboolean run(const char *dir, const char *format, const char *input, const char *out, GError **error) {
  g_autofree char *yaml = g_build_filename(dir, "convert.yaml", NULL);
  g_autofree char *text = g_strdup_printf(
      "name: convert\nseed: 1\nrun_dir: %s/runs\nstages:\n  convert:\n    plugin: stage.convert\n"
      "    format: %s\n    input_dir: \"%s\"\n    out_dir: \"%s\"\n    seed: 5\n",
      dir, format, input, out);
  if (!g_file_set_contents(yaml, text, -1, error)) return FALSE;
  g_autoptr(ps_pipeline) p = ps_pipeline_load(yaml, NULL, ps_registry_lookup, reg, error);
  if (!p) return FALSE;
  ps_run_options opts = {.quiet = TRUE};
  return ps_run_execute(p, reg, &opts, NULL, error);
}

int main(void) {
  GError *error = NULL;
  reg = ps_registry_new();
  ps_registry_scan(reg, NULL, NULL);
  PS_CHECK(ps_registry_find(reg, "stage.convert") != NULL);
  g_autofree char *tmp = g_dir_make_tmp("ps-conv-stage-XXXXXX", NULL);
  const char *data = g_getenv("PATHSEG_TEST_DATA");
  g_autofree char *ebhi = g_build_filename(data ? data : "tests/data", "ebhi-seg", NULL);
  g_autofree char *out = g_build_filename(tmp, "ebhi", NULL);
  PS_CHECK_OK(run(tmp, "ebhi_seg", ebhi, out, &error), error);
  g_autofree char *manifest = g_build_filename(out, "manifest.jsonl", NULL);

  /* dataset.benchmark serves the rows (the manifest is the one it reads). */
  const ps_component_desc *d = ps_registry_find(reg, "dataset.benchmark");
  if (d) {
    g_autofree char *yaml = g_strdup_printf("{manifest: \"%s\", image_tokens: 4, max_length: 400}", manifest);
    g_autoptr(ps_config) cfg = ps_config_parse(d->config, yaml, "test", &error);
    PS_CHECK_OK(cfg != NULL, error);
    g_autoptr(ps_context) ctx = ps_context_new(PS_DEVICE_CPU, 1, 1);
    ps_component *c = cfg ? ps_component_new(d, cfg, "bench", ctx, &error) : NULL;
    PS_CHECK_OK(c != NULL, error);
    if (c) {
      const ps_dataset_iface *ds = ps_component_capability(c, "dataset");
      PS_CHECK_OK(ds && ps_dataset_open(ds, ps_component_self(c), &error), error);
      int64_t total = 0;
      const char *splits[] = {"train", "val", "test"};
      for (int s = 0; ds && s < 3; s++) total += ds->size(ps_component_self(c), splits[s]);
      PS_CHECK_MSG(total == 7, "dataset.benchmark sees %" G_GINT64_FORMAT " rows", total);
      ps_component_free(c);
    }
  }

  PS_CHECK_FAILS_WITH(run(tmp, "kumar", ebhi, out, &error), error, "glas|crag");
  g_autofree char *empty = g_build_filename(tmp, "empty", NULL);
  g_mkdir_with_parents(empty, 0755);
  g_autofree char *out2 = g_build_filename(tmp, "out2", NULL);
  PS_CHECK_FAILS_WITH(run(tmp, "cpm15", empty, out2, &error), error, "nothing usable");
  g_autofree char *cmd = g_strdup_printf("rm -rf '%s'", tmp);
  if (!g_getenv("PS_KEEP_TMP")) PS_CHECK(system(cmd) == 0);
  ps_registry_free(reg);
  return ps_test_finish();
}
